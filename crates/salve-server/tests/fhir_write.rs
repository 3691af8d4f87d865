//! The FHIR R4 write side, on SQLite and PostgreSQL: Patient and Appointment create and update
//! with versions (`ETag`, `If-Match`, 412), conditional create by MRN, transaction Bundles that
//! write all or nothing, the patient's answer as an `AppointmentResponse` (it moves the visit
//! and its reminders as their reply to a reminder does), reads of AuditEvent and Provenance by
//! id, scope refusals, and every resource written checked by the two third-party validators.
//! `fhirpy` creates and updates a Patient over HTTP.

mod common;
mod fhir_validators;
mod messaging_world;

use std::net::SocketAddr;

use axum::http::StatusCode;
use common::{App, Reply, Req, count};
use fhir_validators::validate;
use messaging_world::World;
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::{Principal, Scope};
use salve_store::CatalogKind;
use salve_testkit::TestDatabase;
use salve_testkit::peers::{fhir_python, run_peer};
use serde_json::{Value, json};

const MR: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const EHR_MRN: &str = "http://ehr.example/mrn";

fn fhir_patient(given: &str, mrn: &str, phone: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{
            "type": {"coding": [{"system": MR, "code": "MR"}]},
            "system": EHR_MRN,
            "value": mrn,
        }],
        "name": [{"use": "official", "family": "Quintanilla", "given": [given]}],
        "birthDate": "1971-03-14",
        "telecom": [
            {"system": "phone", "value": phone, "rank": 1},
            {"system": "email", "value": format!("{}@example.org", given.to_lowercase()), "rank": 2},
        ],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}, "preferred": true}],
    })
}

fn fhir_appointment(patient_ref: &str, start: &str) -> Value {
    json!({
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "minutesDuration": 30,
        "appointmentType": {"text": "Annual checkup"},
        "participant": [
            {"actor": {"reference": patient_ref}, "status": "needs-action"},
            {"actor": {"type": "Location", "display": "Main St"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/ehr-7", "display": "Dr Lee"}, "status": "accepted"},
        ],
    })
}

async fn send(app: &App, req: Req, token: &str) -> Reply {
    let r = app.send(req.bearer(token)).await;
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/fhir+json"),
        "{}: content type {ct}: {}",
        r.status,
        r.text
    );
    r
}

fn header(r: &Reply, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn issue(r: &Reply) -> (String, String) {
    let v = r.json();
    assert_eq!(v["resourceType"], "OperationOutcome", "{}", r.text);
    (
        v["issue"][0]["code"].as_str().unwrap_or("").to_owned(),
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

async fn catalog(app: &App) {
    for (kind, name) in [
        (CatalogKind::AppointmentType, "Annual checkup"),
        (CatalogKind::AppointmentType, "Follow-up"),
        (CatalogKind::Location, "Main St"),
        (CatalogKind::Provider, "Dr Lee"),
    ] {
        app.store
            .upsert_catalog_item(
                app.practice,
                &Principal::Operator,
                &RequestContext::default(),
                kind,
                name,
                true,
                true,
            )
            .await
            .unwrap();
    }
}

async fn narrow_token(app: &App, scopes: &[Scope]) -> String {
    let t = salve_crypto::token::mint("salve");
    app.store
        .create_token(Actor::Cli, app.practice, scopes, "narrow", &t.hash)
        .await
        .unwrap();
    t.secret.as_str().to_owned()
}

#[tokio::test]
async fn patients_and_appointments_are_created_and_updated_with_versions() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let app = &w.app;
        catalog(app).await;
        let token = app.token.clone();
        let mut served: Vec<Value> = Vec::new();

        // Create: 201, Location with the version, ETag, the resource as stored.
        let r = send(
            app,
            Req::post("/fhir/r4/Patient").json(&fhir_patient("Ana", "MRN-2041", "(312) 555-0142")),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let ana = r.json();
        let id = ana["id"].as_str().unwrap().to_owned();
        assert!(
            header(&r, "location").ends_with(&format!("/fhir/r4/Patient/{id}/_history/1")),
            "{:?}",
            r.headers
        );
        assert_eq!(header(&r, "etag"), "W/\"1\"");
        assert_eq!(ana["meta"]["versionId"], "1");
        assert_eq!(ana["identifier"][0]["value"], "MRN-2041");
        assert_eq!(ana["telecom"][0]["value"], "+13125550142");
        assert_eq!(
            ana["communication"][0]["language"]["coding"][0]["code"],
            "es"
        );
        served.push(ana.clone());
        // What the Location names is served.
        let location = header(&r, "location");
        let path = &location[location.find("/fhir/r4").unwrap()..];
        let r = send(app, Req::get(path), &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json(), ana);
        let r = send(app, Req::get(format!("/fhir/r4/Patient/{id}")), &token).await;
        assert_eq!(header(&r, "etag"), "W/\"1\"");

        // Conditional create: the MRN exists, so the existing patient, 200, no duplicate.
        let before = w.rows("patients").await;
        let r = send(
            app,
            Req::post("/fhir/r4/Patient")
                .header("if-none-exist", format!("identifier={EHR_MRN}|MRN-2041"))
                .json(&fhir_patient("Ana", "MRN-2041", "+13125550142")),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["id"], id.as_str());
        assert_eq!(w.rows("patients").await, before);
        let r = send(
            app,
            Req::post("/fhir/r4/Patient")
                .header("if-none-exist", "name=Ana")
                .json(&fhir_patient("Ana", "MRN-2041", "+13125550142")),
            &token,
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "only identifier conditions"
        );

        // Update with the version read: 200, version 2.
        let mut changed = ana.clone();
        changed["name"][0]["given"] = json!(["Ana", "Maria"]);
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Patient/{id}"))
                .header("if-match", "W/\"1\"")
                .json(&changed),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(header(&r, "etag"), "W/\"2\"");
        assert_eq!(r.json()["name"][0]["given"][0], "Ana Maria");
        served.push(r.json());
        // A stale If-Match: 412, and nothing changed.
        let mut stale = changed.clone();
        stale["name"][0]["family"] = json!("Rivera");
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Patient/{id}"))
                .header("if-match", "W/\"1\"")
                .json(&stale),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
        assert_eq!(issue(&r).0, "conflict");
        served.push(r.json());
        let now = send(app, Req::get(format!("/fhir/r4/Patient/{id}")), &token).await;
        assert_eq!(now.json()["meta"]["versionId"], "2");
        let v2 = send(
            app,
            Req::get(format!("/fhir/r4/Patient/{id}/_history/2")),
            &token,
        )
        .await;
        assert_eq!(v2.status, StatusCode::OK, "{}", v2.text);
        assert_eq!(v2.json(), now.json());
        let v1 = send(
            app,
            Req::get(format!("/fhir/r4/Patient/{id}/_history/1")),
            &token,
        )
        .await;
        assert_eq!(
            v1.status,
            StatusCode::NOT_FOUND,
            "earlier versions are not kept"
        );
        assert_eq!(now.json()["name"][0]["family"], "Quintanilla");
        // The body's id must be the URL's; a bad birth date is named, never echoed.
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Patient/{}", uuid::Uuid::now_v7())).json(&changed),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let mut bad = changed.clone();
        bad["birthDate"] = json!("1971-02-30");
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Patient/{id}")).json(&bad),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.json()["issue"][0]["expression"][0], "Patient.birthDate");
        assert!(!r.text.contains("1971-02-30") && !r.text.contains("Quintanilla"));
        served.push(r.json());

        // Appointment: created against the patient, catalog by name.
        let r = send(
            app,
            Req::post("/fhir/r4/Appointment").json(&fhir_appointment(
                &format!("Patient/{id}"),
                "2026-12-08T09:30:00-06:00",
            )),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let appt = r.json();
        let appt_id = appt["id"].as_str().unwrap().to_owned();
        assert_eq!(header(&r, "etag"), "W/\"1\"");
        assert!(header(&r, "location").ends_with(&format!("/Appointment/{appt_id}/_history/1")));
        assert_eq!(appt["appointmentType"]["text"], "Annual checkup");
        assert_eq!(appt["participant"][1]["actor"]["display"], "Main St");
        served.push(appt.clone());
        // Moved: version 2; the JSON API sees the same visit.
        let mut moved = appt.clone();
        moved["start"] = json!("2026-12-09T15:00:00Z");
        moved.as_object_mut().unwrap().remove("end");
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Appointment/{appt_id}"))
                .header("if-match", "W/\"1\"")
                .json(&moved),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(header(&r, "etag"), "W/\"2\"");
        served.push(r.json());
        let json_api = app
            .send(Req::get(format!("/api/v1/appointments/{appt_id}")).bearer(&token))
            .await;
        assert_eq!(json_api.json()["starts_at"], "2026-12-09T09:00:00-06:00");
        assert_eq!(json_api.json()["version"], 2);
        // A stale version changes nothing.
        let mut cancelled = moved.clone();
        cancelled["status"] = json!("cancelled");
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Appointment/{appt_id}"))
                .header("if-match", "W/\"1\"")
                .json(&cancelled),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
        // Cancelled with the current version.
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Appointment/{appt_id}"))
                .header("if-match", "W/\"2\"")
                .json(&cancelled),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["status"], "cancelled");
        assert_eq!(r.json()["meta"]["versionId"], "3");
        served.push(r.json());
        // Another patient's id in an update is refused: an appointment never changes patient.
        let mut other = cancelled.clone();
        other["participant"][0]["actor"]["reference"] =
            json!(format!("Patient/{}", uuid::Uuid::now_v7()));
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Appointment/{appt_id}")).json(&other),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

        // AuditEvent and Provenance by id.
        w.grant(&id, "sms_plain", "care_messages").await;
        let audit = send(
            app,
            Req::get(format!("/fhir/r4/AuditEvent?patient={id}&_count=1")),
            &token,
        )
        .await
        .json();
        let event = audit["entry"][0]["resource"].clone();
        let one = send(
            app,
            Req::get(format!(
                "/fhir/r4/AuditEvent/{}",
                event["id"].as_str().unwrap()
            )),
            &token,
        )
        .await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(one.json(), event);
        served.push(one.json());
        let provenance = send(
            app,
            Req::get(format!("/fhir/r4/Provenance?patient={id}")),
            &token,
        )
        .await
        .json();
        let first = provenance["entry"][0]["resource"].clone();
        let one = send(
            app,
            Req::get(format!(
                "/fhir/r4/Provenance/{}",
                first["id"].as_str().unwrap()
            )),
            &token,
        )
        .await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(one.json(), first);
        served.push(one.json());
        let r = send(
            app,
            Req::get(format!("/fhir/r4/Provenance/{}", uuid::Uuid::now_v7())),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // Only a Patient is created conditionally.
        let r = send(
            app,
            Req::post("/fhir/r4/Appointment")
                .header("if-none-exist", "identifier=A-1")
                .json(&fhir_appointment(
                    &format!("Patient/{id}"),
                    "2026-12-08T09:30:00-06:00",
                )),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

        // The CapabilityStatement says what is written, and how.
        let meta = send(app, Req::get("/fhir/r4/metadata"), &token)
            .await
            .json();
        let rest = &meta["rest"][0];
        assert_eq!(rest["interaction"][0]["code"], "transaction");
        let resource = |kind: &str| {
            rest["resource"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["type"] == kind)
                .unwrap()
                .clone()
        };
        let codes = |r: &Value| -> Vec<String> {
            r["interaction"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["code"].as_str().unwrap().to_owned())
                .collect()
        };
        let patient = resource("Patient");
        assert!(codes(&patient).contains(&"create".to_owned()));
        assert!(codes(&patient).contains(&"update".to_owned()));
        assert_eq!(patient["versioning"], "versioned-update");
        assert_eq!(patient["conditionalCreate"], true);
        assert_eq!(resource("Appointment")["versioning"], "versioned-update");
        assert_eq!(
            codes(&resource("AppointmentResponse")),
            ["read", "search-type", "create"]
        );
        assert!(codes(&resource("AuditEvent")).contains(&"read".to_owned()));
        served.push(meta);

        let rows = app.practice_audit().await;
        assert_eq!(count(&rows, "patient.create", "success"), 1);
        assert_eq!(count(&rows, "patient.update", "success"), 1);
        assert_eq!(count(&rows, "appointment.create", "success"), 1);
        assert_eq!(count(&rows, "appointment.cancel", "success"), 1);
        app.assert_audit_verifies().await;
        validate(&served);
    }
}

fn bundle(entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

#[tokio::test]
async fn a_transaction_writes_all_of_its_entries_or_none() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let app = &w.app;
        catalog(app).await;
        let token = app.token.clone();
        let (patients0, appointments0) = (w.rows("patients").await, w.rows("appointments").await);
        let ana = "urn:uuid:0b0c3d2e-6a43-4c1e-9a42-0d8a4c0c5a11";
        let ben = "urn:uuid:5f1e7a90-2b7c-4d0e-8f51-7a0e3b9d6c22";
        let r = send(
            app,
            Req::post("/fhir/r4").json(&bundle(vec![
                // The appointment comes first; its patient is created before it all the same.
                json!({"resource": fhir_appointment(ana, "2026-12-08T09:30:00-06:00"), "request": {"method": "POST", "url": "Appointment"}}),
                json!({"fullUrl": ana, "resource": fhir_patient("Ana", "MRN-1", "+13125550142"), "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=MRN-1"}}),
                json!({"fullUrl": ben, "resource": fhir_patient("Ben", "MRN-2", "+13125550177"), "request": {"method": "POST", "url": "Patient"}}),
                json!({"resource": fhir_appointment(ben, "2026-12-09T09:30:00-06:00"), "request": {"method": "POST", "url": "Appointment"}}),
            ])),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let response = r.json();
        assert_eq!(response["type"], "transaction-response");
        let statuses: Vec<&str> = response["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["201 Created"; 4]);
        let entry = |i: usize| response["entry"][i]["resource"].clone();
        let ana_id = entry(1)["id"].as_str().unwrap().to_owned();
        assert_eq!(
            entry(0)["participant"][0]["actor"]["reference"],
            format!("Patient/{ana_id}"),
            "the urn:uuid: became the patient's id"
        );
        assert_eq!(response["entry"][1]["response"]["etag"], "W/\"1\"");
        assert_eq!(
            response["entry"][1]["response"]["location"],
            format!("Patient/{ana_id}/_history/1")
        );
        let mut served = vec![response.clone()];
        served.extend((0..4).map(entry));
        assert_eq!(w.rows("patients").await, patients0 + 2);
        assert_eq!(w.rows("appointments").await, appointments0 + 2);

        // Again, with Ana's MRN as the condition: found, not duplicated; Ana updated by PUT.
        let mut ana_v2 = entry(1);
        ana_v2["name"][0]["given"] = json!(["Ana", "Sofia"]);
        let r = send(
            app,
            Req::post("/fhir/r4").json(&bundle(vec![
                json!({"fullUrl": ana, "resource": fhir_patient("Ana", "MRN-1", "+13125550142"), "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=MRN-1"}}),
                json!({"resource": ana_v2, "request": {"method": "PUT", "url": format!("Patient/{ana_id}"), "ifMatch": "W/\"1\""}}),
            ])),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let response = r.json();
        assert_eq!(response["entry"][0]["response"]["status"], "200 OK");
        assert_eq!(response["entry"][0]["resource"]["id"], ana_id.as_str());
        assert_eq!(response["entry"][1]["response"]["etag"], "W/\"2\"");
        served.push(response);
        assert_eq!(w.rows("patients").await, patients0 + 2);

        // A third entry the store refuses (a stale version): the first two are not written.
        let before = (w.rows("patients").await, w.rows("appointments").await);
        let cleo = "urn:uuid:9d7c1b3a-1f2e-4a5b-8c6d-0e1f2a3b4c33";
        let r = send(
            app,
            Req::post("/fhir/r4").json(&bundle(vec![
                json!({"fullUrl": cleo, "resource": fhir_patient("Cleo", "MRN-3", "+13125550188"), "request": {"method": "POST", "url": "Patient"}}),
                json!({"resource": fhir_appointment(cleo, "2026-12-10T09:30:00-06:00"), "request": {"method": "POST", "url": "Appointment"}}),
                json!({"resource": entry(1), "request": {"method": "PUT", "url": format!("Patient/{ana_id}"), "ifMatch": "W/\"1\""}}),
            ])),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
        let outcome = r.json();
        assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[2]");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .starts_with("entry 2:")
        );
        served.push(outcome);
        assert_eq!(w.rows("patients").await, before.0, "Cleo was not kept");
        assert_eq!(w.rows("appointments").await, before.1);
        // A bad third entry found before the database (an impossible birth date): named, not
        // quoted, and nothing written.
        let mut bad = fhir_patient("Dara", "MRN-4", "+13125550199");
        bad["birthDate"] = json!("1980-02-31");
        let r = send(
            app,
            Req::post("/fhir/r4").json(&bundle(vec![
                json!({"fullUrl": cleo, "resource": fhir_patient("Cleo", "MRN-3", "+13125550188"), "request": {"method": "POST", "url": "Patient"}}),
                json!({"resource": fhir_appointment(cleo, "2026-12-10T09:30:00-06:00"), "request": {"method": "POST", "url": "Appointment"}}),
                json!({"resource": bad, "request": {"method": "POST", "url": "Patient"}}),
            ])),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(
            r.json()["issue"][0]["expression"][0],
            "Bundle.entry[2].resource.Patient.birthDate"
        );
        for phi in ["1980-02-31", "Dara", "Cleo", "MRN-4", "+13125550199"] {
            assert!(!r.text.contains(phi), "{phi} in {}", r.text);
        }
        // The same MRN twice in one transaction: the second insert fails, the first is undone.
        let r = send(
            app,
            Req::post("/fhir/r4").json(&bundle(vec![
                json!({"resource": fhir_patient("Cleo", "MRN-3", "+13125550188"), "request": {"method": "POST", "url": "Patient"}}),
                json!({"resource": fhir_patient("Cleo", "MRN-3", "+13125550188"), "request": {"method": "POST", "url": "Patient"}}),
            ])),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert!(!r.text.contains("MRN-3"));
        // Caps: entry count and batch.
        let many: Vec<Value> = (0..1001)
            .map(|_| json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}))
            .collect();
        let r = send(app, Req::post("/fhir/r4").json(&bundle(many)), &token).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
        let mut batch = bundle(Vec::new());
        batch["type"] = json!("batch");
        let r = send(app, Req::post("/fhir/r4").json(&batch), &token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            (w.rows("patients").await, w.rows("appointments").await,),
            (before.0, before.1),
            "no refused transaction wrote anything"
        );
        app.assert_audit_verifies().await;
        validate(&served);
    }
}

#[tokio::test]
async fn an_appointment_response_moves_the_visit_and_its_reminders_like_a_reply() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let app = &w.app;
        catalog(app).await;
        let r = w
            .admin(Req::put("/api/v1/practice/messaging").json(&json!({
                "sender_name": "Lakeside Clinic",
                "phone": "(312) 555-0100",
                "hours_text": "Mon-Fri 8am-5pm",
                "expected_reply_text": "within 1 business day",
                "front_desk_sees_clinical": false,
            })))
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        let token = app.token.clone();
        let r = send(
            app,
            Req::post("/fhir/r4/Patient").json(&fhir_patient("Ana", "MRN-1", "+13125550142")),
            &token,
        )
        .await;
        let ana = r.json()["id"].as_str().unwrap().to_owned();
        w.grant(&ana, "sms_plain", "appointment_reminders").await;
        // Visits on Friday 2026-11-27 and the next Thursday (the clock is Wednesday 09:00 in
        // Chicago).
        let mut visits = Vec::new();
        for start in ["2026-11-27T09:00:00-06:00", "2026-12-03T09:00:00-06:00"] {
            let r = send(
                app,
                Req::post("/fhir/r4/Appointment")
                    .json(&fhir_appointment(&format!("Patient/{ana}"), start)),
                &token,
            )
            .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            visits.push(r.json()["id"].as_str().unwrap().to_owned());
        }
        // Thursday 09:00: Friday's 24-hour reminder is queued.
        app.clock.set(time::macros::datetime!(2026-11-26 15:00 UTC));
        let pass = salve_server::reminders::run_once(&w.worker).await.unwrap();
        assert_eq!(pass.sent, 1, "{pass:?}");
        let reminders = |id: String| async move {
            let r = app
                .send(Req::get(format!("/api/v1/appointments/{id}/reminders")).bearer(&app.token))
                .await;
            r.json()["reminders"].as_array().unwrap().clone()
        };
        // Decided and handed to the outbox, not yet delivered by the worker.
        let before = reminders(visits[0].clone()).await;
        assert_eq!(before.last().unwrap()["state"], "sent", "{before:?}");

        let answer = |visit: &str, status: &str| {
            json!({
                "resourceType": "AppointmentResponse",
                "appointment": {"reference": format!("Appointment/{visit}")},
                "actor": {"reference": format!("Patient/{ana}")},
                "participantStatus": status,
            })
        };
        let mut served = Vec::new();
        // Declined: the visit is cancelled and its queued reminder withdrawn.
        let r = send(
            app,
            Req::post("/fhir/r4/AppointmentResponse").json(&answer(&visits[0], "declined")),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.json()["participantStatus"], "declined");
        served.push(r.json());
        let visit = send(
            app,
            Req::get(format!("/fhir/r4/Appointment/{}", visits[0])),
            &token,
        )
        .await
        .json();
        assert_eq!(visit["status"], "cancelled");
        assert_eq!(visit["participant"][0]["status"], "declined");
        served.push(visit);
        assert_eq!(
            reminders(visits[0].clone()).await.last().unwrap()["state"],
            "withdrawn"
        );
        let json_api = app
            .send(Req::get(format!("/api/v1/appointments/{}", visits[0])).bearer(&token))
            .await
            .json();
        assert_eq!(json_api["status_source"], "patient_reply");
        // A declined visit cannot be accepted afterwards (a patient's answer is final).
        let r = send(
            app,
            Req::post("/fhir/r4/AppointmentResponse").json(&answer(&visits[0], "accepted")),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

        // Accepted: confirmed.
        let r = send(
            app,
            Req::post("/fhir/r4/AppointmentResponse").json(&answer(&visits[1], "accepted")),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let again = send(
            app,
            Req::post("/fhir/r4/AppointmentResponse").json(&answer(&visits[1], "accepted")),
            &token,
        )
        .await;
        assert_eq!(
            again.status,
            StatusCode::OK,
            "the same answer again changes nothing"
        );
        let visit = send(
            app,
            Req::get(format!("/fhir/r4/Appointment/{}", visits[1])),
            &token,
        )
        .await;
        let version = header(&visit, "etag");
        let mut visit = visit.json();
        assert_eq!(visit["participant"][0]["status"], "accepted");
        // The EHR writes the visit back as `booked` (FHIR's word for it): still confirmed.
        visit["minutesDuration"] = json!(45);
        visit.as_object_mut().unwrap().remove("end");
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Appointment/{}", visits[1]))
                .header("if-match", version)
                .json(&visit),
            &token,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["participant"][0]["status"], "accepted");
        assert_eq!(r.json()["minutesDuration"], 45);

        // Read and search, derived from the visits.
        let one = send(
            app,
            Req::get(format!("/fhir/r4/AppointmentResponse/{}", visits[1])),
            &token,
        )
        .await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(one.json()["participantStatus"], "accepted");
        served.push(one.json());
        let found = send(
            app,
            Req::get(format!(
                "/fhir/r4/AppointmentResponse?patient=Patient/{ana}"
            )),
            &token,
        )
        .await
        .json();
        assert_eq!(found["total"], 2);
        served.push(found);
        let by_visit = send(
            app,
            Req::get(format!(
                "/fhir/r4/AppointmentResponse?appointment=Appointment/{}",
                visits[0]
            )),
            &token,
        )
        .await
        .json();
        assert_eq!(by_visit["total"], 1);
        let r = send(app, Req::get("/fhir/r4/AppointmentResponse"), &token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // Someone else as the actor is refused.
        let mut wrong = answer(&visits[1], "declined");
        wrong["actor"]["reference"] = json!(format!("Patient/{}", uuid::Uuid::now_v7()));
        let r = send(
            app,
            Req::post("/fhir/r4/AppointmentResponse").json(&wrong),
            &token,
        )
        .await;
        assert!(r.status.is_client_error(), "{}", r.text);
        let everything = send(
            app,
            Req::get(format!("/fhir/r4/Patient/{ana}/$everything")),
            &token,
        )
        .await
        .json();
        assert!(
            everything["entry"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["resource"]["resourceType"] == "AppointmentResponse")
        );
        served.push(everything);
        app.assert_audit_verifies().await;
        validate(&served);
    }
}

#[tokio::test]
async fn writes_outside_a_tokens_scopes_are_refused_and_change_nothing() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let app = &w.app;
        catalog(app).await;
        let read_only = narrow_token(app, &[Scope::PatientsRead, Scope::AppointmentsRead]).await;
        let patients_only = narrow_token(app, &[Scope::PatientsWrite]).await;
        let before = w.rows("patients").await;

        let r = send(
            app,
            Req::post("/fhir/r4/Patient").json(&fhir_patient("Ana", "MRN-1", "+13125550142")),
            &read_only,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let (code, why) = issue(&r);
        assert_eq!(code, "forbidden");
        assert!(why.contains("patients:write"), "{why}");
        // A conditional create reads: it needs patients:read as well.
        let r = send(
            app,
            Req::post("/fhir/r4/Patient")
                .header("if-none-exist", "identifier=MRN-1")
                .json(&fhir_patient("Ana", "MRN-1", "+13125550142")),
            &patients_only,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(issue(&r).1.contains("patients:read"));
        // A transaction is refused as a whole when one entry is out of scope, naming it.
        let urn = "urn:uuid:0b0c3d2e-6a43-4c1e-9a42-0d8a4c0c5a11";
        let r = send(
            app,
            Req::post("/fhir/r4").json(&bundle(vec![
                json!({"fullUrl": urn, "resource": fhir_patient("Ana", "MRN-1", "+13125550142"), "request": {"method": "POST", "url": "Patient"}}),
                json!({"resource": fhir_appointment(urn, "2026-12-08T09:30:00-06:00"), "request": {"method": "POST", "url": "Appointment"}}),
            ])),
            &patients_only,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let (_, why) = issue(&r);
        assert!(
            why.starts_with("entry 1:") && why.contains("appointments:write"),
            "{why}"
        );
        let r = send(
            app,
            Req::post("/fhir/r4").json(&bundle(Vec::new())),
            &read_only,
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "no write scope at all: the gate"
        );
        let r = send(
            app,
            Req::post("/fhir/r4/AppointmentResponse")
                .json(&json!({"resourceType": "AppointmentResponse"})),
            &patients_only,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // Another practice's token cannot update this practice's patient.
        let r = send(
            app,
            Req::post("/fhir/r4/Patient").json(&fhir_patient("Ben", "MRN-2", "+13125550177")),
            &app.token,
        )
        .await;
        let ben = r.json();
        let r = send(
            app,
            Req::put(format!("/fhir/r4/Patient/{}", ben["id"].as_str().unwrap())).json(&ben),
            &app.other_token,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(w.rows("patients").await, before + 1, "only Ben");
        let rows = app.practice_audit().await;
        assert!(count(&rows, "patient.create", "denied") >= 1);
        assert!(count(&rows, "appointment.create", "denied") >= 1);
    }
}

#[tokio::test]
async fn fhirpy_creates_and_updates_a_patient() {
    let Some(python) = fhir_python() else {
        eprintln!("skipped: fhirpy");
        return;
    };
    for db in TestDatabase::all().await {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = App::with_config(db, |c| {
            c.public_url = Some(format!("http://127.0.0.1:{port}"));
        })
        .await;
        let router = app.router.clone();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        let input = json!({
            "url": format!("http://127.0.0.1:{port}/fhir/r4"),
            "token": app.token,
            "patient": fhir_patient("Ana", "MRN-9", "+13125550142"),
        });
        let python = python.clone();
        let out = tokio::task::spawn_blocking(move || {
            run_peer(&python, "fhir_write_client.py", &[], &input)
        })
        .await
        .unwrap();
        server.abort();
        let id = out["created"]["id"].as_str().unwrap().to_owned();
        assert_eq!(out["created"]["version"], "1");
        assert_eq!(out["updated"]["id"], id.as_str());
        assert_eq!(out["updated"]["version"], "2");
        assert_eq!(out["read"]["family"], "Rivera");
        assert_eq!(
            out["conditional"]["id"],
            id.as_str(),
            "found by MRN, not duplicated"
        );
        let stored = app
            .store
            .read_patient(
                app.practice,
                &Principal::Operator,
                &RequestContext::default(),
                id.parse().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(stored.record.family_name.expose(), "Rivera");
        assert_eq!(stored.version, 2);
    }
}

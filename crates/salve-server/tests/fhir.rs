//! The FHIR R4 read API over a practice seeded through the JSON API (consent at intake, staff
//! messages by SMS and by secure link, a patient's reply and STOP through the local outbox,
//! an appointment): searches, reads, paging, `$everything`, errors as OperationOutcome, the
//! audit of every read, and every resource served checked by two third-party validators
//! (`fhir.resources` 6.4 in Python, `@medplum/core` 4.5 in Node). `fhirpy` reads the API over
//! HTTP. The validators are skipped, saying so, when not installed outside CI.

mod common;
mod fhir_validators;
mod messaging_world;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::http::StatusCode;
use common::{App, Reply, Req, count, patient_body};
use fhir_validators::validate;
use messaging_world::{CLINICAL_TEXT, SAFE_TEXT, World};
use salve_core::audit::RequestContext;
use salve_core::permissions::{Principal, Role, Scope};
use salve_store::CatalogKind;
use salve_testkit::TestDatabase;
use salve_testkit::peers::{fhir_python, run_peer};
use serde_json::{Value, json};

const ANA_PHONE: &str = "+13125550142";
const BEN_PHONE: &str = "+13125550177";

async fn fhir(app: &App, token: &str, path: &str) -> Reply {
    let r = app.send(Req::get(path).bearer(token)).await;
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/fhir+json"),
        "{path}: {} content type {ct}: {}",
        r.status,
        r.text
    );
    r
}

async fn ok(app: &App, path: &str) -> Value {
    let r = fhir(app, &app.token, path).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    r.json()
}

fn resources(bundle: &Value) -> Vec<Value> {
    assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn ids(bundle: &Value) -> Vec<String> {
    resources(bundle)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

/// The path and query of a link this server made.
fn local(url: &str) -> String {
    let at = url.find("/fhir/r4").expect("a link into /fhir/r4");
    url[at..].to_owned()
}

fn outcome_code(r: &Reply) -> String {
    let v = r.json();
    assert_eq!(v["resourceType"], "OperationOutcome", "{}", r.text);
    v["issue"][0]["code"].as_str().unwrap().to_owned()
}

struct Seeded {
    ana: String,
    ben: String,
    appointment: String,
}

/// Ana (MRN, phone, email) and Ben: consent at intake, a direct text and a secure message to
/// Ana, her reply and her STOP through the local outbox, one text to Ben, a visit for Ana.
async fn seed(w: &World) -> Seeded {
    let app = &w.app;
    let r = w
        .admin(Req::post("/api/v1/admin/providers").json(&json!({
            "kind": "local_outbox", "label": "Demo outbox", "credentials": {},
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ana = app
        .create_patient(
            &app.token,
            &patient_body("Ana", Some("MRN-2041"), ANA_PHONE),
        )
        .await;
    let ben = app
        .create_patient(&app.token, &patient_body("Ben", None, BEN_PHONE))
        .await;
    for patient in [&ana, &ben] {
        w.grant(patient, "sms_plain", "care_messages").await;
        w.grant(patient, "sms_notify", "care_messages").await;
        w.grant(patient, "portal", "care_messages").await;
    }
    w.sent_message(&ana, json!({"text": SAFE_TEXT})).await;
    let png = {
        use base64::Engine;
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::RgbImage::new(2, 2)
            .write_to(&mut bytes, image::ImageFormat::Png)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(bytes.into_inner())
    };
    w.sent_message(
        &ana,
        json!({
            "text": CLINICAL_TEXT,
            "attachments": [{"file_name": "lab-results.png", "content_base64": png}],
        }),
    )
    .await;
    w.sent_message(&ben, json!({"text": SAFE_TEXT})).await;
    w.run_worker().await;
    for text in ["Thanks, I will call tomorrow morning.", "STOP"] {
        w.tick();
        let r = w
            .admin(
                Req::post("/api/v1/admin/outbox/inbound")
                    .json(&json!({"from": ANA_PHONE, "text": text})),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        w.run_worker().await;
    }
    let item = |kind, name: &'static str| async move {
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
            .unwrap()
    };
    let checkup = item(CatalogKind::AppointmentType, "Annual checkup").await;
    let main_st = item(CatalogKind::Location, "Main St").await;
    let dr_lee = item(CatalogKind::Provider, "Dr Lee").await;
    let r = app
        .send(
            Req::post("/api/v1/appointments")
                .bearer(&app.token)
                .json(&json!({
                    "patient_id": ana,
                    "starts_at": "2026-12-08T09:30:00-06:00",
                    "time_zone": "America/Chicago",
                    "duration_minutes": 30,
                    "appointment_type_id": checkup.to_string(),
                    "location_id": main_st.to_string(),
                    "provider_id": dr_lee.to_string(),
                })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let appointment = r.json()["id"].as_str().unwrap().to_owned();
    Seeded {
        ana,
        ben,
        appointment,
    }
}

#[tokio::test]
async fn the_fhir_api_serves_a_seeded_practice_as_valid_r4() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let s = seed(&w).await;
        let app = &w.app;
        // Everything served, for the validators: bundles and the resources in them.
        let mut served: Vec<Value> = Vec::new();
        let keep = |v: &Value, served: &mut Vec<Value>| {
            served.push(v.clone());
            if v["resourceType"] == "Bundle" {
                served.extend(resources(v));
            }
        };

        let meta = ok(app, "/fhir/r4/metadata").await;
        assert_eq!(meta["resourceType"], "CapabilityStatement");
        assert_eq!(meta["fhirVersion"], "4.0.1");
        let served_types: BTreeSet<&str> = meta["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            served_types,
            BTreeSet::from([
                "Patient",
                "Communication",
                "Consent",
                "Provenance",
                "AuditEvent",
                "Appointment",
                "AppointmentResponse",
                "Binary"
            ])
        );
        keep(&meta, &mut served);

        // Patient: read and each search parameter.
        let ana = ok(app, &format!("/fhir/r4/Patient/{}", s.ana)).await;
        assert_eq!(ana["name"][0]["family"], "Quintanilla");
        assert_eq!(ana["identifier"][0]["value"], "MRN-2041");
        assert_eq!(ana["birthDate"], "1971-03-14");
        keep(&ana, &mut served);
        let by_mrn = ok(app, "/fhir/r4/Patient?identifier=MRN-2041").await;
        assert_eq!(ids(&by_mrn), vec![s.ana.clone()]);
        keep(&by_mrn, &mut served);
        let by_phone = ok(app, "/fhir/r4/Patient?telecom=%2B13125550177").await;
        assert_eq!(ids(&by_phone), vec![s.ben.clone()]);
        let by_email = ok(app, "/fhir/r4/Patient?telecom=email%7Cana%40example.org").await;
        assert_eq!(ids(&by_email), vec![s.ana.clone()]);
        let by_name = ok(app, "/fhir/r4/Patient?name=Quintanilla&_count=1").await;
        assert_eq!(by_name["total"], 2);
        assert_eq!(ids(&by_name).len(), 1);
        let page2 = ok(app, &local(&next_link(&by_name).expect("a next page"))).await;
        assert_eq!(ids(&page2).len(), 1);
        assert_ne!(ids(&page2), ids(&by_name));
        assert_eq!(next_link(&page2), None);
        let by_birth = ok(app, "/fhir/r4/Patient?birthdate=1971-03-14&name=Ana").await;
        assert_eq!(ids(&by_birth), vec![s.ana.clone()]);
        let none = ok(app, "/fhir/r4/Patient?birthdate=lt1971-03-14").await;
        assert_eq!(ids(&none), Vec::<String>::new());
        // Plain listing pages with a cursor until the last page.
        let mut seen = Vec::new();
        let mut path = "/fhir/r4/Patient?_count=1".to_owned();
        loop {
            let page = ok(app, &path).await;
            seen.extend(ids(&page));
            keep(&page, &mut served);
            match next_link(&page) {
                Some(url) => path = local(&url),
                None => break,
            }
        }
        assert_eq!(seen, vec![s.ana.clone(), s.ben.clone()]);

        // Communication: one per message (internal notes never), threads, channels.
        let comms = ok(app, &format!("/fhir/r4/Communication?patient={}", s.ana)).await;
        let list = resources(&comms);
        keep(&comms, &mut served);
        assert!(list.len() >= 4, "two sent, two received: {comms}");
        for c in &list {
            assert_eq!(c["subject"]["reference"], format!("Patient/{}", s.ana));
        }
        let reply = list
            .iter()
            .find(|c| c["payload"][0]["contentString"] == "Thanks, I will call tomorrow morning.")
            .expect("Ana's reply");
        assert_eq!(reply["sender"]["reference"], format!("Patient/{}", s.ana));
        assert_eq!(reply["medium"][0]["coding"][0]["code"], "SMSWRIT");
        assert!(
            reply["inResponseTo"][0]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Communication/"),
            "{reply}"
        );
        let clinical = list
            .iter()
            .find(|c| c["payload"][0]["contentString"] == CLINICAL_TEXT)
            .expect("the secure message");
        assert_eq!(
            clinical["recipient"][0]["reference"],
            format!("Patient/{}", s.ana)
        );
        assert_eq!(
            clinical["payload"][1]["contentAttachment"]["contentType"],
            "image/png"
        );
        let binary = ok(
            app,
            &local(
                clinical["payload"][1]["contentAttachment"]["url"]
                    .as_str()
                    .unwrap(),
            ),
        )
        .await;
        assert_eq!(binary["resourceType"], "Binary");
        assert_eq!(binary["contentType"], "image/png");
        assert!(
            binary["data"].as_str().unwrap().starts_with("iVBORw0KGgo"),
            "a PNG"
        );
        keep(&binary, &mut served);
        let stop = list
            .iter()
            .find(|c| c["payload"][0]["contentString"] == "STOP")
            .expect("the STOP")
            .clone();
        let one = ok(
            app,
            &format!("/fhir/r4/Communication/{}", reply["id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(&one, reply);
        let windowed = ok(
            app,
            "/fhir/r4/Communication?sent=ge2000-01-01&_lastUpdated=lt2100-01-01&_count=2",
        )
        .await;
        assert_eq!(ids(&windowed).len(), 2);
        assert!(
            windowed["total"].as_u64().unwrap() > list.len() as u64,
            "Ben's too"
        );
        let future = ok(app, "/fhir/r4/Communication?sent=gt2100-01-01").await;
        assert_eq!(ids(&future), Vec::<String>::new());
        keep(&windowed, &mut served);

        // Consent: one per channel × purpose, its history, and the STOP as evidence.
        let consents = ok(app, &format!("/fhir/r4/Consent?patient={}", s.ana)).await;
        keep(&consents, &mut served);
        let sms = resources(&consents)
            .into_iter()
            .find(|c| c["id"].as_str().unwrap().ends_with(".sms.care"))
            .expect("plain SMS for care messages");
        assert_eq!(sms["status"], "inactive", "revoked by STOP: {sms}");
        let version = sms["meta"]["versionId"].as_str().unwrap().to_owned();
        assert_eq!(version, "2");
        let sms_id = sms["id"].as_str().unwrap().to_owned();
        let history = ok(app, &format!("/fhir/r4/Consent/{sms_id}/_history")).await;
        assert_eq!(history["type"], "history");
        assert_eq!(history["total"], 2);
        keep(&history, &mut served);
        let v1 = ok(app, &format!("/fhir/r4/Consent/{sms_id}/_history/1")).await;
        assert_eq!(v1["status"], "active");
        keep(&v1, &mut served);
        let r = fhir(app, &app.token, &format!("/fhir/r4/Consent/{sms_id}")).await;
        assert_eq!(r.headers.get("etag").unwrap(), "W/\"2\"");
        let provenance = ok(app, &format!("/fhir/r4/Provenance?target=Consent/{sms_id}")).await;
        keep(&provenance, &mut served);
        let p = resources(&provenance);
        assert_eq!(p.len(), 2);
        let revoked = p
            .iter()
            .find(|p| p["target"][0]["reference"] == format!("Consent/{sms_id}/_history/2"))
            .unwrap();
        assert_eq!(
            revoked["entity"][0]["what"]["reference"],
            format!("Communication/{}", stop["id"].as_str().unwrap()),
            "the STOP is the revocation's evidence"
        );

        // Appointment.
        let appt = ok(app, &format!("/fhir/r4/Appointment/{}", s.appointment)).await;
        assert_eq!(appt["status"], "booked");
        assert_eq!(appt["minutesDuration"], 30);
        keep(&appt, &mut served);
        let appts = ok(
            app,
            &format!(
                "/fhir/r4/Appointment?patient={}&date=2026-12-08&status=booked",
                s.ana
            ),
        )
        .await;
        assert_eq!(ids(&appts), vec![s.appointment.clone()]);
        let cancelled = ok(app, "/fhir/r4/Appointment?status=cancelled").await;
        assert_eq!(ids(&cancelled), Vec::<String>::new());

        // AuditEvent: this practice's log, by patient, paged.
        let audit = ok(
            app,
            &format!("/fhir/r4/AuditEvent?patient={}&_count=5", s.ana),
        )
        .await;
        keep(&audit, &mut served);
        assert_eq!(ids(&audit).len(), 5);
        let older = ok(app, &local(&next_link(&audit).expect("older rows"))).await;
        assert!(!ids(&older).is_empty());
        assert!(ids(&older).iter().all(|id| !ids(&audit).contains(id)));
        let read_event = resources(&audit)
            .into_iter()
            .find(|e| e["subtype"][0]["code"] == "read")
            .expect("a read of Ana");
        assert_eq!(read_event["type"]["code"], "rest");
        assert_eq!(
            read_event["entity"][0]["what"]["reference"],
            format!("Patient/{}", s.ana)
        );

        // $everything: Ana's, and nothing of Ben's.
        let everything = ok(app, &format!("/fhir/r4/Patient/{}/$everything", s.ana)).await;
        keep(&everything, &mut served);
        let kinds: BTreeSet<String> = resources(&everything)
            .iter()
            .map(|r| r["resourceType"].as_str().unwrap().to_owned())
            .collect();
        for kind in [
            "Patient",
            "Communication",
            "Consent",
            "Provenance",
            "Appointment",
            "AuditEvent",
        ] {
            assert!(kinds.contains(kind), "{kind} in {kinds:?}");
        }
        let text = everything.to_string();
        assert!(!text.contains(&s.ben), "another patient in $everything");
        assert!(!text.contains(BEN_PHONE) && !text.contains("ben@example.org"));
        let accesses = resources(&everything)
            .into_iter()
            .filter(|r| r["resourceType"] == "AuditEvent")
            .count();
        assert!(accesses > 3, "the accesses to Ana's record");

        // Errors are OperationOutcomes.
        let r = app
            .send(Req::get(format!("/fhir/r4/Patient/{}", s.ana)))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(outcome_code(&r), "login");
        keep(&r.json(), &mut served);
        let r = fhir(
            app,
            &app.other_token,
            &format!("/fhir/r4/Patient/{}", s.ana),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "another practice's token");
        assert_eq!(outcome_code(&r), "not-found");
        let r = fhir(app, &app.token, "/fhir/r4/Observation").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(outcome_code(&r), "not-found");
        let r = fhir(app, &app.token, "/fhir/r4/Patient?shoe_size=42").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(outcome_code(&r), "invalid");
        assert!(!r.text.contains("42"));
        let r = fhir(app, &app.token, "/fhir/r4/Patient?_count=0").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = fhir(app, &app.token, "/fhir/r4/Consent").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "a patient is required");
        let r = fhir(app, &app.token, "/fhir/r4/Patient/not-an-id").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        keep(&r.json(), &mut served);
        let r = app
            .send(Req::delete(format!("/fhir/r4/Patient/{}", s.ana)).bearer(&app.token))
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(outcome_code(&r), "not-supported");
        // A token without the scope, and an auditor (no patient content).
        let t = salve_crypto::token::mint("salve");
        app.store
            .create_token(
                salve_core::audit::Actor::Cli,
                app.practice,
                &[Scope::PatientsRead],
                "narrow",
                &t.hash,
            )
            .await
            .unwrap();
        let narrow = t.secret.as_str().to_owned();
        let r = fhir(
            app,
            &narrow,
            &format!("/fhir/r4/Communication?patient={}", s.ana),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(outcome_code(&r), "forbidden");
        assert!(r.text.contains("messages:read"));
        let r = fhir(app, &narrow, "/fhir/r4/AuditEvent").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let (_, auditor) = messaging_world::session(app, Role::Auditor).await;
        let r = w
            .as_staff(&auditor, Req::get(format!("/fhir/r4/Patient/{}", s.ana)))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(outcome_code(&r), "forbidden");
        let r = w
            .as_staff(
                &auditor,
                Req::get(format!("/fhir/r4/AuditEvent?patient={}&_count=1", s.ana)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        // Reads are audited like the JSON API's.
        let rows = app.practice_audit().await;
        let token_reads = rows
            .iter()
            .filter(|r| {
                r.action == "patient.read"
                    && r.actor_kind == "token"
                    && r.targets == vec![s.ana.clone()]
            })
            .count();
        assert!(token_reads >= 2, "Patient/{{id}} and $everything");
        assert!(count(&rows, "conversation.read", "success") >= 3);
        assert!(count(&rows, "consent.read", "success") >= 4);
        assert_eq!(count(&rows, "attachment.read", "success"), 1, "the Binary");
        assert!(
            count(&rows, "audit.export", "success") >= 2,
            "reading the log is logged"
        );
        assert!(count(&rows, "conversation.read", "denied") == 0);
        app.assert_audit_verifies().await;

        validate(&served);
    }
}

#[tokio::test]
async fn fhirpy_searches_pages_and_reads_salve() {
    let Some(python) = fhir_python() else {
        return;
    };
    let db = TestDatabase::sqlite();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = App::with_config(db, |c| {
        c.public_url = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    let mut created = Vec::new();
    for (i, given) in ["Ana", "Ben", "Cleo", "Dara", "Eli"].iter().enumerate() {
        created.push(
            app.create_patient(
                &app.token,
                &patient_body(given, None, &format!("+131255501{:02}", 40 + i)),
            )
            .await,
        );
    }
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
        "count": 2,
        "patient": created[2],
    });
    let out = tokio::task::spawn_blocking(move || run_peer(&python, "fhir_client.py", &[], &input))
        .await
        .unwrap();
    server.abort();
    assert_eq!(out["patients"], json!(created), "every page, in order");
    assert_eq!(out["first_page"].as_array().unwrap().len(), 2);
    assert_eq!(
        out["read"],
        json!({"id": created[2], "family": "Quintanilla"})
    );
    assert_eq!(out["communications"], json!([]));
}

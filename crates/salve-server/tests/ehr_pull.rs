//! Reading patients and appointments from the EHR, against a real FHIR server (npm
//! `@medplum/fhir-router` 4.5.2 over its in-memory repository, `fhir_ehr_server.cjs`), on
//! SQLite and PostgreSQL: the scheduled pull on Salve's clock, paging by `next` links,
//! idempotent re-pulls, changes and cancellations (withdrawing reminders), skipped resources
//! with their reasons, the lease, and a failed run that keeps the cursor.

use axum::http::StatusCode;
use salve_core::Clock;
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use salve_testkit::peers::fhir_ehr::Server;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

mod common;
mod messaging_world;

use common::Req;
use messaging_world::World;

const MRN_SYSTEM: &str = "urn:oid:2.16.840.1.113883.19.5.99";
const BEARER: &str = "ehr-test-bearer-9f2c";

struct Ehr {
    server: Server,
    http: reqwest::Client,
}

impl Ehr {
    /// Writes a resource through the EHR's FHIR API (as the EHR's own users would).
    async fn write(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}/{path}", self.server.base()))
            .bearer_auth(BEARER)
            .header("content-type", "application/fhir+json")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn create(&self, body: Value) -> Value {
        let t = body["resourceType"].as_str().unwrap().to_owned();
        self.write(reqwest::Method::POST, &t, body).await
    }

    async fn update(&self, body: Value) -> Value {
        let path = format!(
            "{}/{}",
            body["resourceType"].as_str().unwrap(),
            body["id"].as_str().unwrap()
        );
        self.write(reqwest::Method::PUT, &path, body).await
    }

    async fn log(&self) -> Vec<Value> {
        self.http
            .get(self.server.control("log"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn at(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn appointment(patient: &str, start: time::OffsetDateTime, minutes: i64) -> Value {
    json!({
        "resourceType": "Appointment",
        "status": "booked",
        "serviceType": [{ "coding": [{ "code": "CHK", "display": "Annual checkup" }] }],
        "start": at(start),
        "end": at(start + time::Duration::minutes(minutes)),
        "participant": [
            { "actor": { "reference": format!("Patient/{patient}") }, "status": "accepted" },
            { "actor": { "reference": "Practitioner/dr-lee", "display": "Dr Lee" }, "status": "accepted" },
            { "actor": { "reference": "Location/main", "display": "Main St" }, "status": "accepted" }
        ]
    })
}

/// As an admin signed in now (sessions time out as the test clock jumps).
async fn admin(w: &World, req: Req) -> common::Reply {
    let (_, cookie) = messaging_world::session(&w.app, Role::Admin).await;
    w.as_staff(&cookie, req).await
}

async fn pull_status(w: &World) -> Value {
    let r = admin(w, Req::get("/api/v1/ehr/pull")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn api(w: &World, req: Req) -> Value {
    let r = w.app.send(req.bearer(&w.app.token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn patient_by_mrn(w: &World, mrn: &str) -> Value {
    let v = api(
        w,
        Req::post("/api/v1/patients/lookup").json(&json!({ "mrn": mrn })),
    )
    .await;
    v["patients"][0].clone()
}

async fn appointments_of(w: &World, patient: &str) -> Vec<Value> {
    let v = api(
        w,
        Req::get(format!("/api/v1/appointments?patient_id={patient}")),
    )
    .await;
    v["appointments"].as_array().cloned().unwrap_or_default()
}

async fn story(db: TestDatabase) -> Option<()> {
    let ehr = Ehr {
        server: Server::start(&["--bearer", BEARER]).await?,
        http: reqwest::Client::new(),
    };
    let w = World::new(db).await;
    for (kind, name) in [
        ("appointment_type", "Annual checkup"),
        ("location", "Main St"),
        ("location", "Annex"),
        ("provider", "Dr Lee"),
    ] {
        let r = w
            .admin(Req::put("/api/v1/catalog").json(&json!({
                "kind": kind, "name": name, "sms_safe": true, "active": true
            })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
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

    // Before a connection exists the pull cannot be turned on.
    let r = w
        .admin(Req::put("/api/v1/ehr/pull").json(&json!({"enabled": true})))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let connection = |token: &str| {
        json!({
            "base_url": ehr.server.base(),
            "auth": { "kind": "bearer", "token": token },
            "patient_identifier_system": MRN_SYSTEM,
            "write": "communication",
            "push_consent": false,
            "enabled": true,
        })
    };
    let r = w
        .admin(Req::put("/api/v1/ehr/connection").json(&connection(BEARER)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = w
        .admin(Req::put("/api/v1/ehr/pull").json(&json!({"enabled": true, "interval_secs": 5})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = w
        .admin(Req::put("/api/v1/ehr/pull").json(&json!({"enabled": true})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["interval_secs"], 900);

    // The EHR's own records.
    let ana = ehr
        .create(json!({
            "resourceType": "Patient",
            "identifier": [{ "system": MRN_SYSTEM, "value": "LK-0142" }],
            "name": [{ "use": "official", "family": "Quintanilla", "given": ["Ana"] }],
            "birthDate": "1971-03-14",
            "telecom": [{ "system": "phone", "value": "(312) 555-0142", "use": "mobile" }],
            "communication": [{ "language": { "coding": [{ "system": "urn:ietf:bcp:47", "code": "es" }] }, "preferred": true }]
        }))
        .await;
    let ben = ehr
        .create(json!({
            "resourceType": "Patient",
            "name": [{ "family": "Okafor", "given": ["Ben"] }],
            "birthDate": "1980-07-01",
            "telecom": [{ "system": "email", "value": "ben@example.org" }]
        }))
        .await;
    // No birth date: Salve does not register it.
    ehr.create(json!({
        "resourceType": "Patient",
        "name": [{ "family": "Nobody", "given": ["Partial"] }]
    }))
    .await;
    let now = w.app.clock.now();
    let visit = (now + time::Duration::days(3))
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let ana_id = ana["id"].as_str().unwrap();
    let ben_id = ben["id"].as_str().unwrap();
    let ana_visit = ehr.create(appointment(ana_id, visit, 30)).await;
    ehr.create(appointment(ben_id, visit + time::Duration::hours(2), 45))
        .await;
    // Its patient is not one the EHR gave Salve.
    ehr.create(appointment("not-in-the-ehr", visit, 30)).await;

    // Due (just turned on): pages of two, following the EHR's next links.
    let run = salve_server::ehr::pull::pull_now(&w.worker, w.app.practice, Some(2))
        .await
        .unwrap()
        .expect("ran");
    assert_eq!(
        (run.created, run.updated, run.skipped),
        (4, 0, 2),
        "{run:?}"
    );
    assert!(run.error.is_none(), "{run:?}");
    let log = ehr.log().await;
    let searches = |t: &str| {
        log.iter()
            .filter(|e| e["method"] == "GET" && e["path"] == format!("/fhir/{t}"))
            .count()
    };
    assert_eq!(
        (searches("Patient"), searches("Appointment")),
        (2, 2),
        "{log:?}"
    );
    let status = pull_status(&w).await;
    assert!(status["last_error"].is_null(), "{status}");
    assert!(status["last_success_at"].is_string());
    assert_eq!(status["created"], 4);
    let reasons = status["skip_reasons"].to_string();
    assert!(
        reasons.contains("whose patient has not been pulled"),
        "{reasons}"
    );
    assert!(
        reasons.contains("without a name or birth date"),
        "{reasons}"
    );
    assert!(!reasons.contains("Partial") && !reasons.contains("not-in-the-ehr"));

    let salve_ana = patient_by_mrn(&w, "LK-0142").await;
    assert_eq!(salve_ana["given_name"], "Ana");
    assert_eq!(salve_ana["family_name"], "Quintanilla");
    assert_eq!(salve_ana["birth_date"], "1971-03-14");
    assert_eq!(salve_ana["preferred_language"], "es");
    let ana_salve_id = salve_ana["id"].as_str().unwrap().to_owned();
    let visits = appointments_of(&w, &ana_salve_id).await;
    assert_eq!(visits.len(), 1, "{visits:?}");
    assert_eq!(visits[0]["duration_minutes"], 30);
    assert_eq!(visits[0]["status"], "booked");
    let visit_id = visits[0]["id"].as_str().unwrap().to_owned();
    let visit_version = visits[0]["version"].clone();
    assert_eq!(w.rows("patients").await, 2);
    assert_eq!(w.rows("appointments").await, 2);
    let audit = w.app.practice_audit().await;
    assert_eq!(common::count(&audit, "patient.create", "success"), 2);
    assert_eq!(common::count(&audit, "appointment.create", "success"), 2);

    // Reminders follow the pulled visit: Ana agreed to texts, the 24-hour one goes out.
    w.grant(&ana_salve_id, "sms_plain", "appointment_reminders")
        .await;
    w.app.clock.set(visit - time::Duration::hours(23));
    let pass = salve_server::reminders::run_once(&w.worker).await.unwrap();
    assert_eq!(pass.sent, 1, "{pass:?}");

    // Another instance holds the lease: this one does not run, though the pull is due.
    assert!(
        w.worker
            .store
            .take_ehr_pull_lease(w.app.practice, "another-instance", 600)
            .await
            .unwrap()
    );
    assert_eq!(
        salve_server::ehr::pull::run_due(&w.worker).await.unwrap(),
        0
    );
    assert!(pull_status(&w).await["running"] == true);
    // Its lease runs out (that instance died).
    w.app.clock.advance(time::Duration::minutes(11));

    // Nothing new in the EHR: a run (due again on Salve's clock) changes nothing.
    let audit_before = w.app.practice_audit().await.len();
    assert_eq!(
        salve_server::ehr::pull::run_due(&w.worker).await.unwrap(),
        1
    );
    assert_eq!(
        w.app.practice_audit().await.len(),
        audit_before,
        "nothing audited"
    );
    let status = pull_status(&w).await;
    assert_eq!(
        (status["created"].clone(), status["updated"].clone()),
        (json!(0), json!(0)),
        "{status}"
    );
    assert_eq!(w.rows("patients").await, 2);
    assert_eq!(w.rows("appointments").await, 2);
    let again = appointments_of(&w, &ana_salve_id).await;
    assert_eq!(again[0]["version"], visit_version);
    assert_eq!(
        patient_by_mrn(&w, "LK-0142").await["version"],
        salve_ana["version"]
    );

    // The EHR changes Ana's name and cancels her visit: the next run applies both, and the
    // queued reminder is withdrawn.
    let mut renamed = ana.clone();
    renamed["name"] =
        json!([{ "use": "official", "family": "Quintanilla-Ruiz", "given": ["Ana"] }]);
    ehr.update(renamed).await;
    let mut cancelled = ana_visit.clone();
    cancelled["status"] = json!("cancelled");
    ehr.update(cancelled).await;
    w.app.clock.advance(time::Duration::minutes(16));
    assert_eq!(
        salve_server::ehr::pull::run_due(&w.worker).await.unwrap(),
        1
    );
    let status = pull_status(&w).await;
    assert_eq!(
        (status["created"].clone(), status["updated"].clone()),
        (json!(0), json!(2)),
        "{status}"
    );
    assert_eq!(
        patient_by_mrn(&w, "LK-0142").await["family_name"],
        "Quintanilla-Ruiz"
    );
    let visits = appointments_of(&w, &ana_salve_id).await;
    assert_eq!(visits[0]["status"], "cancelled");
    let reminders = api(
        &w,
        Req::get(format!("/api/v1/appointments/{visit_id}/reminders")),
    )
    .await;
    let reminders = reminders["reminders"].as_array().unwrap().clone();
    assert_eq!(
        reminders.last().unwrap()["state"],
        "withdrawn",
        "{reminders:?}"
    );
    let audit = w.app.practice_audit().await;
    assert_eq!(common::count(&audit, "appointment.cancel", "success"), 1);
    assert_eq!(common::count(&audit, "patient.update", "success"), 1);
    assert_eq!(w.rows("patients").await, 2);

    // The EHR refuses Salve's token: the run fails with a PHI-free reason, the cursor stays.
    let before = pull_status(&w).await;
    let r = admin(
        &w,
        Req::put("/api/v1/ehr/connection").json(&connection("not-the-token")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    w.app.clock.advance(time::Duration::minutes(16));
    assert_eq!(
        salve_server::ehr::pull::run_due(&w.worker).await.unwrap(),
        1
    );
    let status = pull_status(&w).await;
    assert_eq!(status["last_error_kind"], "http_401", "{status}");
    assert_eq!(
        status["last_error"],
        "the EHR refused Salve's credentials (Patient, HTTP 401, issue: login)"
    );
    assert_eq!(status["last_success_at"], before["last_success_at"]);
    assert_eq!(status["patient_cursor"], before["patient_cursor"]);
    assert_eq!(status["appointment_cursor"], before["appointment_cursor"]);

    // The EHR gone altogether: a retryable failure, recorded the same way.
    drop(ehr);
    w.app.clock.advance(time::Duration::minutes(16));
    assert_eq!(
        salve_server::ehr::pull::run_due(&w.worker).await.unwrap(),
        1
    );
    let status = pull_status(&w).await;
    let kind = status["last_error_kind"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(["connect", "network"].contains(&kind.as_str()), "{status}");
    assert_eq!(status["patient_cursor"], before["patient_cursor"]);
    Some(())
}

#[tokio::test]
async fn patients_and_appointments_are_pulled_from_the_ehr() {
    for db in TestDatabase::all().await {
        if story(db).await.is_none() {
            return;
        }
    }
}

/// A well-formed CSRF token (the double-submit cookie and the form field carry the same one).
const CSRF: &str = "demo-csrf-token-0123456789abcdefghijklmnopq";

async fn page(w: &World, req: Req) -> common::Reply {
    w.app
        .send(
            req.header(
                "cookie",
                format!(
                    "{}={}; __Host-salve_csrf={CSRF}",
                    salve_server::HOST_COOKIE,
                    w.admin
                ),
            )
            .same_origin(),
        )
        .await
}

#[tokio::test]
async fn the_admin_page_schedules_the_pull_and_shows_its_last_run() {
    let w = World::new(TestDatabase::sqlite()).await;
    let r = page(&w, Req::get("/admin/ehr/pull")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Connect the EHR first"), "{}", r.text);
    let body = |minutes: &str| format!("csrf={CSRF}&interval_minutes={minutes}&enabled=on");
    // No connection yet: not saved.
    let r = page(&w, Req::post("/admin/ehr/pull").form(&body("15"))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    let r = w
        .admin(Req::put("/api/v1/ehr/connection").json(&json!({
            "base_url": "http://127.0.0.1:9/fhir",
            "auth": { "kind": "bearer", "token": BEARER },
            "patient_identifier_system": MRN_SYSTEM,
            "write": "communication",
            "push_consent": false,
            "enabled": true,
        })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = page(&w, Req::post("/admin/ehr/pull").form(&body("0"))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("Interval: an interval between"),
        "{}",
        r.text
    );
    let r = page(&w, Req::post("/admin/ehr/pull").form(&body("30"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.headers["location"], "/admin/ehr/pull?done=saved");

    // Nothing listens at that address: the run fails and the page says why.
    let r = page(
        &w,
        Req::post("/admin/ehr/pull/run").form(&format!("csrf={CSRF}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = page(&w, Req::get("/admin/ehr/pull?done=ran")).await;
    assert!(r.text.contains("On, every 30 minutes"), "{}", r.text);
    assert!(r.text.contains("Last run failed"), "{}", r.text);
    assert!(
        r.text.contains("the EHR did not answer the Patient search"),
        "{}",
        r.text
    );
    let audit = w.app.practice_audit().await;
    assert_eq!(common::count(&audit, "ehr.connection.change", "success"), 2);
}

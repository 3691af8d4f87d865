//! Writing into the EHR, against a real FHIR server (npm `@medplum/fhir-router` 4.5.2 over its
//! in-memory repository, `salve-testkit/peers/fhir_ehr_server.cjs`), on SQLite and PostgreSQL:
//! the connection and the client; messages as Communications, a closed conversation as a
//! DocumentReference with a PDF, consent changes as Consents; conditional create so a retry
//! never duplicates; SMART backend services with the key Salve generated (and a wrong key
//! refused); the status staff see. The worker is driven pass by pass on the manual clock.

use axum::http::StatusCode;
use base64::Engine;
use salve_core::Clock;
use salve_testkit::TestDatabase;
use salve_testkit::peers::fhir_ehr::Server;
use serde_json::{Value, json};

mod common;
mod messaging_world;

use common::{Req, count, patient_body};
use messaging_world::{SAFE_TEXT, World};

const MRN_SYSTEM: &str = "urn:oid:2.16.840.1.113883.19.5.99";
const MRN: &str = "LK-0142";
const BEARER: &str = "ehr-test-bearer-9f2c";
const CLIENT_ID: &str = "salve-lakeside";
const NOTE: &str = "Internal: patient sounded worried, call back tomorrow.";

struct Ehr {
    server: Server,
    http: reqwest::Client,
}

impl Ehr {
    async fn start(args: &[&str]) -> Option<Self> {
        Some(Self {
            server: Server::start(args).await?,
            http: reqwest::Client::new(),
        })
    }

    async fn post(&self, what: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.server.control(what))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{what}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    /// The EHR's own chart for the patient (its MRN under the EHR's system); returns its id.
    async fn seed_patient(&self) -> String {
        let p = self
            .post(
                "seed",
                json!({
                    "resourceType": "Patient",
                    "identifier": [{ "system": MRN_SYSTEM, "value": MRN }],
                    "name": [{ "family": "Quintanilla", "given": ["Ana"] }],
                    "birthDate": "1971-03-14",
                }),
            )
            .await;
        p["id"].as_str().unwrap().to_owned()
    }

    async fn get(&self, what: &str) -> Vec<Value> {
        self.http
            .get(self.server.control(what))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    }

    async fn stored(&self, resource_type: &str) -> Vec<Value> {
        self.get(&format!("store/{resource_type}")).await
    }
}

async fn ana(w: &World) -> String {
    w.app
        .create_patient(
            &w.app.token,
            &patient_body("Ana", Some(MRN), "+13125550142"),
        )
        .await
}

async fn connect(w: &World, body: Value) -> Value {
    let r = w
        .admin(Req::put("/api/v1/ehr/connection").json(&body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

fn bearer_connection(ehr: &Ehr, write: &str) -> Value {
    json!({
        "base_url": ehr.server.base(),
        "auth": { "kind": "bearer", "token": BEARER },
        "patient_identifier_system": MRN_SYSTEM,
        "write": write,
        "push_consent": true,
        "enabled": true,
    })
}

fn smart_connection(ehr: &Ehr, write: &str, new_key: bool) -> Value {
    json!({
        "base_url": ehr.server.base(),
        "auth": { "kind": "smart", "client_id": CLIENT_ID, "token_url": ehr.server.token_url(), "new_key": new_key },
        "patient_identifier_system": MRN_SYSTEM,
        "write": write,
        "push_consent": false,
        "enabled": true,
    })
}

/// One pass of the EHR writer; returns how many writes it handled.
async fn run_ehr(w: &World) -> usize {
    w.tick();
    salve_server::ehr::run_once(&w.worker, "w").await.unwrap()
}

fn has_identifier(resource: &Value, system: &str, value: &str) -> bool {
    resource["identifier"].as_array().is_some_and(|ids| {
        ids.iter()
            .any(|i| i["system"] == system && i["value"] == value)
    })
}

/// Every resource validates with @medplum/core (besides the host's validation on write).
fn validate_with_medplum(resources: Vec<Value>) {
    let Some(tools) = salve_testkit::peers::medplum_tools() else {
        return;
    };
    let n = resources.len();
    let report = salve_testkit::peers::run_peer(
        std::path::Path::new("node"),
        "medplum_validate.cjs",
        &[tools.as_path()],
        &Value::Array(resources),
    );
    assert_eq!(report["checked"], n, "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
}

#[tokio::test]
async fn the_client_creates_conditionally_and_signs_in_with_the_generated_key() {
    use salve_server::ehr::client::{EhrClient, EhrError};
    for db in TestDatabase::all().await {
        let Some(ehr) = Ehr::start(&["--smart", CLIENT_ID]).await else {
            return;
        };
        let w = World::new(db).await;
        let chart = ehr.seed_patient().await;
        let view = connect(&w, smart_connection(&ehr, "communication", false)).await;
        ehr.post("jwks", view["jwks"].clone()).await;
        let now = w.app.clock.now().unix_timestamp();
        ehr.post("now", json!({"now": now})).await;
        let conn = w
            .app
            .store
            .ehr_connection(w.app.practice)
            .await
            .unwrap()
            .unwrap();
        let client = EhrClient::new();

        assert_eq!(
            client
                .find_patient(&conn, now, MRN_SYSTEM, MRN)
                .await
                .unwrap(),
            Some(chart.clone())
        );
        assert_eq!(
            client
                .find_patient(&conn, now, MRN_SYSTEM, "LK-0000")
                .await
                .unwrap(),
            None
        );
        let resource = json!({
            "resourceType": "Communication",
            "identifier": [{ "system": "urn:salve:message", "value": "m-1" }],
            "status": "completed",
            "subject": { "reference": format!("Patient/{chart}") },
        });
        let first = client
            .conditional_create(&conn, now, &resource, ("urn:salve:message", "m-1"))
            .await
            .unwrap();
        let again = client
            .conditional_create(&conn, now, &resource, ("urn:salve:message", "m-1"))
            .await
            .unwrap();
        assert_eq!(first, again, "the second create found the first");
        assert_eq!(ehr.stored("Communication").await.len(), 1);

        // Refused for good, with a reason that keeps only the issue code.
        let invalid = json!({ "resourceType": "Communication", "status": "completed", "note_to_self": "Ana Quintanilla" });
        let e = client
            .conditional_create(&conn, now, &invalid, ("urn:salve:message", "m-2"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            EhrError::Refused {
                kind: "http_400".into(),
                reason:
                    "the EHR found the resource invalid (Communication, HTTP 400, issue: structure)"
                        .into(),
            }
        );
        // Retried: the EHR is unavailable.
        ehr.post("fail", json!({"status": 503, "count": 1})).await;
        let e = client
            .conditional_create(&conn, now, &resource, ("urn:salve:message", "m-1"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            EhrError::Retry {
                kind: "http_503".into()
            }
        );
        // One assertion, one token, for all of that.
        let log = ehr.get("log").await;
        assert_eq!(
            log.iter().filter(|e| e["path"] == "/auth/token").count(),
            1,
            "{log:?}"
        );

        // A new key the EHR was not given: its assertion is refused.
        let renewed = connect(&w, smart_connection(&ehr, "communication", true)).await;
        assert_ne!(renewed["key_id"], view["key_id"]);
        let conn = w
            .app
            .store
            .ehr_connection(w.app.practice)
            .await
            .unwrap()
            .unwrap();
        match client
            .conditional_create(&conn, now, &resource, ("urn:salve:message", "m-1"))
            .await
        {
            Err(EhrError::Refused { kind, reason }) => {
                assert_eq!(kind, "token_refused");
                assert!(reason.contains("invalid_client"), "{reason}");
            }
            other => panic!("refused expected: {other:?}"),
        }

        // A bearer token the EHR does not accept.
        let Some(other) = Ehr::start(&["--bearer", BEARER]).await else {
            return;
        };
        let mut wrong = bearer_connection(&other, "communication");
        wrong["auth"]["token"] = json!("not-the-token");
        connect(&w, wrong).await;
        let conn = w
            .app
            .store
            .ehr_connection(w.app.practice)
            .await
            .unwrap()
            .unwrap();
        let e = client
            .find_patient(&conn, now, MRN_SYSTEM, MRN)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            EhrError::Refused {
                kind: "http_401".into(),
                reason: "the EHR refused Salve's credentials (Patient, HTTP 401, issue: login)"
                    .into(),
            }
        );
    }
}

/// A well-formed CSRF token (the double-submit cookie and the form field carry the same one).
const CSRF: &str = "demo-csrf-token-0123456789abcdefghijklmnopq";

async fn page(w: &World, cookie: &str, req: Req) -> common::Reply {
    w.app
        .send(
            req.header(
                "cookie",
                format!(
                    "{}={cookie}; __Host-salve_csrf={CSRF}",
                    salve_server::HOST_COOKIE
                ),
            )
            .same_origin(),
        )
        .await
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[tokio::test]
async fn the_admin_page_sets_up_the_connection_and_shows_salves_public_key() {
    let w = World::new(TestDatabase::sqlite()).await;
    let r = page(&w, &w.admin, Req::get("/admin/ehr")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Connect the EHR"), "{}", r.text);
    let r = page(&w, &w.clinician, Req::get("/admin/ehr")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let fields = |base: &'static str| {
        form(&[
            ("csrf", CSRF),
            ("base_url", base),
            ("patient_identifier_system", MRN_SYSTEM),
            ("write", "document"),
            ("push_consent", "on"),
            ("auth", "smart"),
            ("client_id", CLIENT_ID),
            ("token_url", "https://ehr.example.org/oauth2/token"),
            ("enabled", "on"),
        ])
    };
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/ehr").form(&fields("http://ehr.example.org/fhir")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("FHIR base URL: an https:// URL"),
        "{}",
        r.text
    );
    assert!(r.text.contains(CLIENT_ID), "the form keeps what was typed");

    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/ehr").form(&fields("https://ehr.example.org/fhir/r4")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.headers["location"], "/admin/ehr?done=saved");
    let r = page(&w, &w.admin, Req::get("/admin/ehr?done=saved")).await;
    assert!(r.text.contains("EHR connection saved."));
    assert!(
        r.text.contains("&#34;crv&#34;: &#34;P-384&#34;"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains(&format!("/ehr/{}/jwks.json", w.app.practice))
    );
    assert!(
        r.text
            .contains("Each closed conversation as a PDF transcript, and consent changes")
    );
    let audit = w.app.practice_audit().await;
    assert_eq!(common::count(&audit, "ehr.connection.change", "success"), 1);
}

#[tokio::test]
async fn messages_and_consent_are_written_once_each_and_staff_see_it() {
    for db in TestDatabase::all().await {
        let Some(ehr) = Ehr::start(&["--bearer", BEARER]).await else {
            return;
        };
        let w = World::new(db).await;
        let chart = ehr.seed_patient().await;
        // Bad input is refused with the fields named.
        let r = w
            .admin(Req::put("/api/v1/ehr/connection").json(&json!({
                "base_url": "http://ehr.example.org/fhir",
                "auth": { "kind": "bearer" },
                "patient_identifier_system": "",
                "write": "everything",
                "push_consent": true,
                "enabled": true,
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        for field in [
            "base_url",
            "patient_identifier_system",
            "write",
            "auth.token",
        ] {
            assert!(r.text.contains(field), "{field}: {}", r.text);
        }
        // Only admins set it up.
        let r = w
            .clinician(
                Req::put("/api/v1/ehr/connection").json(&bearer_connection(&ehr, "communication")),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let view = connect(&w, bearer_connection(&ehr, "communication")).await;
        assert_eq!(view["auth"], "bearer");
        assert!(
            !view.to_string().contains(BEARER),
            "the token is never shown: {view}"
        );

        let patient = ana(&w).await;
        let grant = w.grant(&patient, "sms_plain", "care_messages").await;
        let sent = w.sent_message(&patient, json!({"text": SAFE_TEXT})).await;
        let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
        let r = w
            .clinician(
                Req::post(format!("/api/v1/conversations/{conversation}/notes"))
                    .json(&json!({"text": NOTE})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let before = w.message(&sent).await;
        assert_eq!(before["ehr"]["status"], "pending", "{before}");

        assert_eq!(
            run_ehr(&w).await,
            2,
            "the consent event and the message; never the note"
        );
        assert_eq!(run_ehr(&w).await, 0);

        let communications = ehr.stored("Communication").await;
        assert_eq!(communications.len(), 1, "{communications:?}");
        let c = &communications[0];
        assert!(
            has_identifier(c, "urn:salve:message", sent["id"].as_str().unwrap()),
            "{c}"
        );
        assert!(
            has_identifier(c, "urn:salve:conversation", &conversation),
            "{c}"
        );
        assert_eq!(c["subject"]["reference"], format!("Patient/{chart}"));
        assert_eq!(c["recipient"][0]["reference"], format!("Patient/{chart}"));
        assert_eq!(c["payload"][0]["contentString"], SAFE_TEXT);
        assert!(
            !c.to_string().contains(&patient),
            "Salve's patient id stays in Salve: {c}"
        );
        assert!(!c.to_string().contains(NOTE));
        let consents = ehr.stored("Consent").await;
        assert_eq!(consents.len(), 1, "{consents:?}");
        assert!(
            has_identifier(&consents[0], "urn:salve:consent-event", &grant),
            "{}",
            consents[0]
        );
        assert_eq!(
            consents[0]["patient"]["reference"],
            format!("Patient/{chart}")
        );
        assert_eq!(consents[0]["status"], "active");

        // Every write was a conditional create on Salve's identifier.
        let log = ehr.get("log").await;
        let posts: Vec<&Value> = log.iter().filter(|e| e["method"] == "POST").collect();
        assert_eq!(posts.len(), 2, "{log:?}");
        assert!(
            posts.iter().all(|p| p["ifNoneExist"]
                .as_str()
                .unwrap()
                .starts_with("identifier=urn%3Asalve%3A")),
            "{log:?}"
        );

        // Staff see it, in the API and on the page; the note has no EHR status.
        let m = w.message(&sent).await;
        assert_eq!(m["ehr"]["status"], "written", "{m}");
        assert_eq!(m["ehr"]["label"], "written to the record");
        assert_eq!(m["ehr"]["resource_type"], "Communication");
        assert_eq!(m["ehr"]["remote_id"], c["id"]);
        let thread = w.conversation(&conversation).await;
        let note = thread["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["direction"] == "note")
            .unwrap();
        assert!(note.get("ehr").is_none(), "{note}");
        let page = w
            .clinician(Req::get(format!("/inbox/{conversation}")))
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.text.contains("EHR: Written to the record"),
            "{}",
            page.text
        );

        // Audited with ids and the resource type, never content.
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "ehr.write", "success"), 2);
        assert_eq!(count(&audit, "ehr.connection.change", "success"), 1);
        let row = audit
            .iter()
            .find(|r| r.action == "ehr.write" && r.targets.contains(&"Communication".to_owned()))
            .unwrap();
        assert_eq!(row.targets[0], patient);
        assert!(
            row.targets
                .contains(&sent["id"].as_str().unwrap().to_owned())
        );
        assert!(
            !row.targets
                .iter()
                .any(|t| t.contains("Ana") || t.contains(MRN))
        );

        let mut all = communications;
        all.extend(consents);
        validate_with_medplum(all);
    }
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_does_not_duplicate() {
    for db in TestDatabase::all().await {
        let Some(ehr) = Ehr::start(&["--bearer", BEARER]).await else {
            return;
        };
        let w = World::new(db).await;
        ehr.seed_patient().await;
        let patient = ana(&w).await;
        w.grant(&patient, "sms_plain", "care_messages").await;
        connect(&w, bearer_connection(&ehr, "communication")).await;
        // The EHR stores the message, then answers 503 (the answer is lost on the way back).
        ehr.post("fail", json!({"status": 503, "count": 1, "after": true}))
            .await;
        let sent = w.sent_message(&patient, json!({"text": SAFE_TEXT})).await;
        assert_eq!(run_ehr(&w).await, 1);
        let m = w.message(&sent).await;
        assert_eq!(m["ehr"]["status"], "pending", "{m}");
        assert!(
            m["ehr"]["label"].as_str().unwrap().contains("http_503"),
            "{m}"
        );
        assert_eq!(ehr.stored("Communication").await.len(), 1);
        // Not due before its backoff.
        assert_eq!(run_ehr(&w).await, 0);
        w.app.advance(time::Duration::minutes(2));
        assert_eq!(run_ehr(&w).await, 1);
        assert_eq!(
            ehr.stored("Communication").await.len(),
            1,
            "the retry found the first copy"
        );
        let m = w.message(&sent).await;
        assert_eq!(m["ehr"]["status"], "written", "{m}");
        let log = ehr.get("log").await;
        let statuses: Vec<&Value> = log
            .iter()
            .filter(|e| e["method"] == "POST")
            .map(|e| &e["status"])
            .collect();
        assert_eq!(statuses, vec![&json!(503), &json!(200)], "{log:?}");
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "ehr.write", "failure"), 1);
        assert_eq!(count(&audit, "ehr.write", "success"), 1);

        // A write refused for good: a 4xx with an OperationOutcome, reason without PHI.
        ehr.post("fail", json!({"status": 422, "count": 1})).await;
        let refused = w.sent_message(&patient, json!({"text": SAFE_TEXT})).await;
        assert_eq!(run_ehr(&w).await, 1);
        let m = w.message(&refused).await;
        assert_eq!(m["ehr"]["status"], "failed", "{m}");
        assert_eq!(
            m["ehr"]["reason"],
            "the EHR found the resource invalid (Communication, HTTP 422, issue: transient)"
        );
        w.app.advance(time::Duration::hours(2));
        assert_eq!(run_ehr(&w).await, 0, "a refused write is not retried");
    }
}

#[tokio::test]
async fn a_closed_conversation_is_one_document_with_a_pdf_through_smart() {
    for db in TestDatabase::all().await {
        let Some(ehr) = Ehr::start(&["--smart", CLIENT_ID]).await else {
            return;
        };
        let w = World::new(db).await;
        let chart = ehr.seed_patient().await;
        let view = connect(&w, smart_connection(&ehr, "document", false)).await;
        assert_eq!(view["auth"], "smart");
        let jwks = view["jwks"].clone();
        assert_eq!(jwks["keys"][0]["kty"], "EC");
        assert_eq!(jwks["keys"][0]["crv"], "P-384");
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "public key only: {jwks}"
        );
        // The same keys at the public URL the EHR can fetch.
        let practice = w.app.practice;
        let r = w
            .app
            .send(Req::get(format!("/ehr/{practice}/jwks.json")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json(), jwks);
        // The EHR's admin registers Salve's public key; the EHR's clock is Salve's.
        ehr.post("jwks", jwks).await;
        ehr.post("now", json!({"now": w.app.clock.now().unix_timestamp()}))
            .await;

        let patient = ana(&w).await;
        w.grant(&patient, "sms_plain", "care_messages").await;
        let sent = w.sent_message(&patient, json!({"text": SAFE_TEXT})).await;
        let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
        let r = w
            .clinician(
                Req::post(format!("/api/v1/conversations/{conversation}/notes"))
                    .json(&json!({"text": NOTE})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(
            run_ehr(&w).await,
            0,
            "document mode writes nothing per message"
        );
        let r = w
            .clinician(
                Req::put(format!("/api/v1/conversations/{conversation}/state"))
                    .json(&json!({"state": "closed"})),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        // Closing again is not a second close.
        let r = w
            .clinician(
                Req::put(format!("/api/v1/conversations/{conversation}/state"))
                    .json(&json!({"state": "closed"})),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        assert_eq!(run_ehr(&w).await, 1);

        let documents = ehr.stored("DocumentReference").await;
        assert_eq!(documents.len(), 1, "{documents:?}");
        let d = &documents[0];
        assert_eq!(d["subject"]["reference"], format!("Patient/{chart}"));
        assert!(
            has_identifier(d, "urn:salve:conversation", &conversation),
            "{d}"
        );
        let attachment = &d["content"][0]["attachment"];
        assert_eq!(attachment["contentType"], "application/pdf");
        let pdf = base64::engine::general_purpose::STANDARD
            .decode(attachment["data"].as_str().unwrap())
            .unwrap();
        assert!(pdf.starts_with(b"%PDF"), "a PDF");
        let text = String::from_utf8_lossy(&pdf);
        assert!(
            text.contains("Please call the office"),
            "the message is in the transcript"
        );
        assert!(
            !text.contains("sounded worried"),
            "the internal note is not"
        );
        assert!(ehr.stored("Communication").await.is_empty());

        let thread = w.conversation(&conversation).await;
        assert_eq!(thread["ehr_transcript"]["status"], "written", "{thread}");
        assert_eq!(
            thread["ehr_transcript"]["resource_type"],
            "DocumentReference"
        );
        let page = w
            .clinician(Req::get(format!("/inbox/{conversation}")))
            .await;
        assert!(
            page.text
                .contains("Transcript in the EHR: Written to the record"),
            "{}",
            page.text
        );

        // The token endpoint saw one assertion, and FHIR requests used its token.
        let log = ehr.get("log").await;
        assert_eq!(
            log.iter().filter(|e| e["path"] == "/auth/token").count(),
            1,
            "{log:?}"
        );
        validate_with_medplum(documents);
    }
}

#[tokio::test]
async fn a_key_the_ehr_does_not_know_is_refused_and_staff_see_why() {
    for db in TestDatabase::all().await {
        let Some(ehr) = Ehr::start(&["--smart", CLIENT_ID]).await else {
            return;
        };
        let w = World::new(db).await;
        ehr.seed_patient().await;
        let view = connect(&w, smart_connection(&ehr, "communication", false)).await;
        ehr.post("jwks", view["jwks"].clone()).await;
        ehr.post("now", json!({"now": w.app.clock.now().unix_timestamp()}))
            .await;
        let patient = ana(&w).await;
        w.grant(&patient, "sms_plain", "care_messages").await;
        let first = w.sent_message(&patient, json!({"text": SAFE_TEXT})).await;
        assert_eq!(run_ehr(&w).await, 1);
        assert_eq!(w.message(&first).await["ehr"]["status"], "written");

        // A new key Salve made, not registered with the EHR: its assertion is refused.
        let renewed = connect(&w, smart_connection(&ehr, "communication", true)).await;
        assert_ne!(renewed["key_id"], view["key_id"]);
        let second = w.sent_message(&patient, json!({"text": SAFE_TEXT})).await;
        assert_eq!(run_ehr(&w).await, 1);
        let m = w.message(&second).await;
        assert_eq!(m["ehr"]["status"], "failed", "{m}");
        let reason = m["ehr"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("token endpoint refused") && reason.contains("invalid_client"),
            "{reason}"
        );
        let conversation = second["conversation_id"].as_str().unwrap();
        let page = w
            .clinician(Req::get(format!("/inbox/{conversation}")))
            .await;
        assert!(page.text.contains("EHR: Failed: the EHR"), "{}", page.text);
        assert_eq!(ehr.stored("Communication").await.len(), 1);
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "ehr.write", "failure"), 1);
    }
}

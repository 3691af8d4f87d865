//! Writing into the EHR, against a real FHIR server (npm `@medplum/fhir-router` 4.5.2 over its
//! in-memory repository, `salve-testkit/peers/fhir_ehr_server.cjs`), on SQLite and PostgreSQL:
//! the connection, and the client creating conditionally and signing in as a SMART
//! backend-services client with the key Salve generated (a key the EHR does not know refused).

use axum::http::StatusCode;
use salve_core::Clock;
use salve_testkit::TestDatabase;
use salve_testkit::peers::fhir_ehr::Server;
use serde_json::{Value, json};

mod common;
mod messaging_world;

use common::Req;
use messaging_world::World;

const MRN_SYSTEM: &str = "urn:oid:2.16.840.1.113883.19.5.99";
const MRN: &str = "LK-0142";
const BEARER: &str = "ehr-test-bearer-9f2c";
const CLIENT_ID: &str = "salve-lakeside";

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

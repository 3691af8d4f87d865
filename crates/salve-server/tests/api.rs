//! The HTTP API exercised in-process (the router driven with `oneshot`), on SQLite always and
//! on PostgreSQL when configured.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use salve_core::audit::Actor;
use salve_core::permissions::Scope;
use salve_core::{ManualClock, PracticeId};
use salve_crypto::MasterKey;
use salve_server::{Access, AppState, ServerConfig, build_router, route_specs};
use salve_store::{Store, StoreOptions};
use salve_testkit::{Kind, TestDatabase};
use serde_json::{Value, json};
use time::macros::datetime;
use tower::ServiceExt;

struct App {
    router: Router,
    store: Arc<Store>,
    practice: PracticeId,
    token: String,
    read_only_token: String,
    other_token: String,
    _db: Option<TestDatabase>,
}

async fn token(store: &Store, practice: PracticeId, scopes: &[Scope]) -> String {
    let t = salve_crypto::token::mint("salve");
    store
        .create_token(Actor::Cli, practice, scopes, "test", &t.hash)
        .await
        .unwrap();
    t.secret.as_str().to_owned()
}

async fn app_with(db: TestDatabase, config: impl FnOnce(&mut ServerConfig)) -> App {
    let options = StoreOptions::new(db.url.clone());
    Store::migrate(&options).await.unwrap();
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-25 09:00 UTC)));
    let store = Arc::new(
        Store::open(&options, MasterKey::generate(), clock.clone())
            .await
            .unwrap(),
    );
    let practice = store
        .create_practice(Actor::Cli, "Lakeside", "US", "America/Chicago")
        .await
        .unwrap()
        .id;
    let other = store
        .create_practice(Actor::Cli, "Elsewhere", "US", "America/Denver")
        .await
        .unwrap()
        .id;
    let mut cfg = ServerConfig::local("127.0.0.1:0".parse().unwrap());
    config(&mut cfg);
    let state = AppState::new(store.clone(), clock, cfg);
    App {
        router: build_router(state),
        token: token(&store, practice, &Scope::ALL).await,
        read_only_token: token(&store, practice, &[Scope::PatientsRead]).await,
        other_token: token(&store, other, &Scope::ALL).await,
        store,
        practice,
        _db: Some(db),
    }
}

async fn app(db: TestDatabase) -> App {
    app_with(db, |_| {}).await
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl App {
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Body>,
        content_type: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.unwrap_or_else(Body::empty)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some(&self.token), None, None)
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            Method::POST,
            path,
            Some(&self.token),
            Some(Body::from(body.to_string())),
            Some("application/json"),
        )
        .await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(
            Method::PATCH,
            path,
            Some(&self.token),
            Some(Body::from(body.to_string())),
            Some("application/json"),
        )
        .await
    }

    async fn audit_rows(&self) -> Vec<(String, String, String)> {
        sqlx::query_as(
            "SELECT action, targets, outcome FROM audit_events WHERE scope = $1 ORDER BY seq",
        )
        .bind(self.practice.to_string())
        .fetch_all(self.store.pool_for_tests())
        .await
        .unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(self.store.pool_for_tests())
            .await
            .unwrap()
    }
}

fn patient(given: &str, phone: &str) -> Value {
    json!({
        "given_name": given,
        "family_name": "Quintanilla",
        "birth_date": "1971-03-14",
        "mrn": format!("MRN-{given}"),
        "contacts": [
            {"kind": "phone", "value": phone, "role": "self"},
            {"kind": "email", "value": format!("{given}@example.org"), "role": "self"}
        ]
    })
}

#[tokio::test]
async fn every_patient_call_writes_exactly_one_audit_event_naming_its_patients() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let mut before = app.audit_rows().await.len();
        let mut expect = async |reply: Reply, status: StatusCode, action: &str, ids: &[&str]| {
            assert_eq!(reply.status, status, "{}", reply.text);
            let rows = app.audit_rows().await;
            assert_eq!(rows.len(), before + 1, "exactly one event for {action}");
            let (got, targets, outcome) = rows.last().unwrap();
            assert_eq!(got, action);
            assert_eq!(outcome, "success");
            let targets: Vec<String> = serde_json::from_str(targets).unwrap();
            let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            let mut targets_sorted = targets.clone();
            targets_sorted.sort();
            want.sort();
            assert_eq!(targets_sorted, want, "{action} names its patients");
            before = rows.len();
            reply
        };
        let a = app
            .post("/api/v1/patients", patient("Zebulon", "+13125550101"))
            .await;
        let a_id = a.json()["id"].as_str().unwrap().to_owned();
        expect(a, StatusCode::CREATED, "patient.create", &[&a_id]).await;
        let b = app
            .post("/api/v1/patients", patient("Yolanda", "+13125550101"))
            .await;
        let b_id = b.json()["id"].as_str().unwrap().to_owned();
        expect(b, StatusCode::CREATED, "patient.create", &[&b_id]).await;

        let r = app.get(&format!("/api/v1/patients/{a_id}")).await;
        let r = expect(r, StatusCode::OK, "patient.read", &[&a_id]).await;
        assert_eq!(r.json()["given_name"], "Zebulon");
        assert_eq!(r.json()["contacts"][0]["value"], "+13125550101");

        let r = app.get("/api/v1/patients?limit=10").await;
        expect(r, StatusCode::OK, "patient.list", &[&a_id, &b_id]).await;
        let r = app
            .post("/api/v1/patients/search", json!({"query": "zebu"}))
            .await;
        expect(r, StatusCode::OK, "patient.search", &[&a_id]).await;
        let r = app
            .post(
                "/api/v1/patients/lookup",
                json!({"phone": "(312) 555-0101"}),
            )
            .await;
        let r = expect(r, StatusCode::OK, "patient.lookup", &[&a_id, &b_id]).await;
        assert_eq!(r.json()["patients"].as_array().unwrap().len(), 2);
        let r = app
            .post("/api/v1/patients/lookup", json!({"mrn": "mrn-zebulon"}))
            .await;
        expect(r, StatusCode::OK, "patient.lookup", &[&a_id]).await;
        let r = app
            .post(
                "/api/v1/patients/lookup",
                json!({"email": "YOLANDA@example.org"}),
            )
            .await;
        expect(r, StatusCode::OK, "patient.lookup", &[&b_id]).await;
        let r = app
            .patch(
                &format!("/api/v1/patients/{a_id}"),
                json!({"family_name": "Okonkwo", "mrn": null}),
            )
            .await;
        let r = expect(r, StatusCode::OK, "patient.update", &[&a_id]).await;
        assert_eq!(r.json()["family_name"], "Okonkwo");
        assert_eq!(r.json()["mrn"], Value::Null);
        assert_eq!(r.json()["version"], 2);
    }
}

#[tokio::test]
async fn an_audit_insert_that_fails_makes_the_call_fail_and_changes_nothing() {
    for db in TestDatabase::all().await {
        let kind = db.kind;
        let app = app(db).await;
        let created = app
            .post("/api/v1/patients", patient("Zebulon", "+13125550101"))
            .await;
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let sql: &[&str] = match kind {
            Kind::Sqlite => &[
                "CREATE TRIGGER audit_fails BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected'); END",
            ],
            Kind::Postgres => &[
                "CREATE FUNCTION audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$",
                "CREATE TRIGGER audit_fails BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_fails()",
            ],
        };
        for s in sql {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*s))
                .execute(app.store.pool_for_tests())
                .await
                .unwrap();
        }
        let patients = app.count("patients").await;
        let contacts = app.count("contacts").await;
        let r = app
            .post("/api/v1/patients", patient("Xavier", "+13125550102"))
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !r.text.contains("Xavier") && !r.text.contains("injected"),
            "{}",
            r.text
        );
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
        let r = app
            .patch(
                &format!("/api/v1/patients/{id}"),
                json!({"given_name": "Wilhelmina"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        // A read that cannot be audited does not disclose anything.
        let r = app.get(&format!("/api/v1/patients/{id}")).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!r.text.contains("Zebulon"));
        let r = app
            .post("/api/v1/patients/search", json!({"query": "zebulon"}))
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!r.text.contains("Zebulon"));
        assert_eq!(app.count("patients").await, patients);
        assert_eq!(app.count("contacts").await, contacts);
        sqlx::raw_sql("DROP TRIGGER audit_fails ON audit_events")
            .execute(app.store.pool_for_tests())
            .await
            .ok();
        sqlx::raw_sql("DROP TRIGGER audit_fails")
            .execute(app.store.pool_for_tests())
            .await
            .ok();
        let r = app.get(&format!("/api/v1/patients/{id}")).await;
        assert_eq!(
            r.json()["given_name"],
            "Zebulon",
            "the failed update changed nothing"
        );
    }
}

type BadCase<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    StatusCode,
    Option<&'a str>,
);

const PHI: [&str; 6] = [
    "Zebulon",
    "Quintanilla",
    "1971-03-14",
    "5550199",
    "zeb.secret",
    "MRNSECRET",
];

fn assert_no_phi(text: &str) {
    for s in PHI {
        assert!(!text.contains(s), "response echoes `{s}`: {text}");
    }
}

#[tokio::test]
async fn bad_input_gets_a_problem_that_names_the_field_and_stores_nothing() {
    for db in TestDatabase::all().await {
        let app = app_with(db, |c| c.max_body_bytes = 4096).await;
        let good = json!({
            "given_name": "Zebulon", "family_name": "Quintanilla", "birth_date": "1971-03-14", "mrn": "MRNSECRET",
            "contacts": [{"kind": "phone", "value": "+13125550199", "role": "self"}]
        });
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            v.to_string()
        };
        // (case, body, content type, expected status, field the problem must name)
        let cases: Vec<BadCase<'_>> = vec![
            (
                "malformed JSON",
                r#"{"given_name": "Zebulon", "family_name": "Quintanilla""#.into(),
                None,
                StatusCode::BAD_REQUEST,
                None,
            ),
            (
                "not JSON at all",
                "Zebulon Quintanilla 1971-03-14".into(),
                None,
                StatusCode::BAD_REQUEST,
                None,
            ),
            (
                "wrong type",
                with(&|v| v["given_name"] = json!(["Zebulon"])),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("given_name"),
            ),
            (
                "number for a string",
                with(&|v| v["birth_date"] = json!(19710314)),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("birth_date"),
            ),
            (
                "unknown field",
                with(&|v| v["nickname"] = json!("Zebulon")),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("(body)"),
            ),
            (
                "name-like unknown field",
                with(&|v| v["Quintanilla"] = json!(1)),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("(body)"),
            ),
            (
                "unknown nested field",
                with(&|v| v["contacts"][0]["note"] = json!("Zebulon")),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("contacts[0]"),
            ),
            (
                "PHI-looking unknown field",
                with(&|v| v["Zebulon Quintanilla"] = json!(1)),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
            ),
            (
                "invalid phone",
                with(&|v| v["contacts"][0]["value"] = json!("555-zeb.secret")),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("contacts[0].value"),
            ),
            (
                "too short phone",
                with(&|v| v["contacts"][0]["value"] = json!("5550199")),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("contacts[0].value"),
            ),
            (
                "unknown contact kind",
                with(&|v| v["contacts"][0]["kind"] = json!("fax-Zebulon")),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("contacts[0].kind"),
            ),
            (
                "bad date",
                with(&|v| v["birth_date"] = json!("14/03/1971")),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("birth_date"),
            ),
            (
                "future date",
                with(&|v| v["birth_date"] = json!("2999-01-01")),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("birth_date"),
            ),
            (
                "bad email",
                with(&|v| {
                    v["contacts"][0] =
                        json!({"kind": "email", "value": "zeb.secret@", "role": "self"})
                }),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("contacts[0].value"),
            ),
            (
                "missing field",
                with(&|v| {
                    v.as_object_mut().unwrap().remove("family_name");
                }),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("family_name"),
            ),
            (
                "array body",
                json!([good.clone()]).to_string(),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
            ),
            (
                "oversized body",
                with(&|v| {
                    v["family_name"] = json!(format!("Quintanilla{}", "Zebulon".repeat(1000)))
                }),
                None,
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
            ),
            (
                "wrong content type",
                good.to_string(),
                Some("text/plain"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
            ),
            (
                "bad time zone",
                with(&|v| v["time_zone"] = json!("Zebulon/Quintanilla")),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("time_zone"),
            ),
        ];
        let before = app.audit_rows().await.len();
        for (name, body, content_type, status, field) in cases {
            let r = app
                .send(
                    Method::POST,
                    "/api/v1/patients",
                    Some(&app.token),
                    Some(Body::from(body)),
                    Some(content_type.unwrap_or("application/json")),
                )
                .await;
            assert_eq!(r.status, status, "{name}: {}", r.text);
            assert_eq!(
                r.headers[header::CONTENT_TYPE],
                "application/problem+json",
                "{name}"
            );
            assert_no_phi(&r.text);
            let problem = r.json();
            assert_eq!(problem["status"], status.as_u16(), "{name}");
            assert!(
                problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}"
            );
            assert!(problem["request_id"].is_string(), "{name}");
            if let Some(field) = field {
                let named = problem["errors"].as_array().into_iter().flatten().any(|e| {
                    e["field"].as_str().is_some_and(|f| f.starts_with(field))
                        && e["expected"].as_str().is_some_and(|x| !x.is_empty())
                });
                assert!(named, "{name}: the problem names `{field}`: {}", r.text);
            }
        }
        // Bad look-ups and patches too.
        let r = app
            .post("/api/v1/patients/lookup", json!({"phone": "zeb.secret"}))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_no_phi(&r.text);
        let r = app
            .post(
                "/api/v1/patients/lookup",
                json!({"phone": "+13125550199", "mrn": "MRNSECRET"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_no_phi(&r.text);
        let r = app.get("/api/v1/patients?limit=Zebulon").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_no_phi(&r.text);
        let r = app.get("/api/v1/patients/Zebulon").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_no_phi(&r.text);
        assert_eq!(app.count("patients").await, 0, "nothing partial is stored");
        assert_eq!(app.count("contacts").await, 0);
        assert_eq!(app.count("patient_keys").await, 0);
        assert_eq!(
            app.audit_rows().await.len(),
            before,
            "rejected input touched no patient"
        );
        let ok = app.post("/api/v1/patients", good.clone()).await;
        assert_eq!(
            ok.status,
            StatusCode::CREATED,
            "the good body works: {}",
            ok.text
        );
        let id = ok.json()["id"].as_str().unwrap().to_owned();
        let r = app
            .patch(
                &format!("/api/v1/patients/{id}"),
                json!({"birth_date": "Zebulon"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_no_phi(&r.text);
        let r = app.get(&format!("/api/v1/patients/{id}")).await;
        assert_eq!(
            r.json()["birth_date"],
            "1971-03-14",
            "a rejected patch changed nothing"
        );
    }
}

#[tokio::test]
async fn another_practice_sees_nothing() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let r = app
            .post("/api/v1/patients", patient("Zebulon", "+13125550101"))
            .await;
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let other = Some(app.other_token.as_str());
        let r = app
            .send(
                Method::GET,
                &format!("/api/v1/patients/{id}"),
                other,
                None,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let unknown = app
            .send(
                Method::GET,
                &format!("/api/v1/patients/{}", uuid::Uuid::now_v7()),
                other,
                None,
                None,
            )
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(
            r.json()["detail"],
            unknown.json()["detail"],
            "another practice's id looks like no id at all"
        );
        let body = |v: Value| Some(Body::from(v.to_string()));
        let r = app
            .send(
                Method::PATCH,
                &format!("/api/v1/patients/{id}"),
                other,
                body(json!({"given_name": "X"})),
                Some("application/json"),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = app
            .send(Method::GET, "/api/v1/patients", other, None, None)
            .await;
        assert_eq!(r.json()["patients"].as_array().unwrap().len(), 0);
        for lookup in [
            json!({"phone": "+13125550101"}),
            json!({"mrn": "MRN-Zebulon"}),
            json!({"email": "Zebulon@example.org"}),
        ] {
            let r = app
                .send(
                    Method::POST,
                    "/api/v1/patients/lookup",
                    other,
                    body(lookup),
                    Some("application/json"),
                )
                .await;
            assert_eq!(r.json()["patients"].as_array().unwrap().len(), 0);
        }
        let r = app
            .send(
                Method::POST,
                "/api/v1/patients/search",
                other,
                body(json!({"query": "Zebulon"})),
                Some("application/json"),
            )
            .await;
        assert_eq!(r.json()["patients"].as_array().unwrap().len(), 0);
        let r = app.get(&format!("/api/v1/patients/{id}")).await;
        assert_eq!(
            r.json()["given_name"],
            "Zebulon",
            "unchanged by the other practice"
        );
    }
}

#[tokio::test]
async fn tokens_are_checked_and_refusals_audited() {
    let app = app(TestDatabase::sqlite()).await;
    let r = app
        .send(Method::GET, "/api/v1/patients", None, None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"salve\""
    );
    let r = app
        .send(
            Method::GET,
            "/api/v1/patients",
            Some("salve_not-a-real-token"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .send(
            Method::POST,
            "/api/v1/patients",
            Some(&app.read_only_token),
            Some(Body::from(patient("Zebulon", "+13125550101").to_string())),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("patients:write"));
    assert_eq!(app.count("patients").await, 0);
    let rows = app.audit_rows().await;
    assert_eq!(rows.last().unwrap().0, "access.denied");
    assert_eq!(rows.last().unwrap().2, "denied");
    let system: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE scope = 'system' AND action = 'access.denied'",
    )
    .fetch_one(app.store.pool_for_tests())
    .await
    .unwrap();
    assert_eq!(
        system, 2,
        "unauthenticated attempts are on the system chain"
    );
    let r = app
        .send(
            Method::GET,
            "/api/v1/patients",
            Some(&app.read_only_token),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let body = patient("Zebulon", "+13125550101").to_string();
        let send = |key: &'static str, body: String| {
            let req = Request::builder()
                .method(Method::POST)
                .uri("/api/v1/patients")
                .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", key)
                .body(Body::from(body))
                .unwrap();
            app.router.clone().oneshot(req)
        };
        let first = send("k-1", body.clone()).await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        let first_body: Value = serde_json::from_slice(
            &axum::body::to_bytes(first.into_body(), usize::MAX)
                .await
                .unwrap(),
        )
        .unwrap();
        let again = send("k-1", body.clone()).await.unwrap();
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again_body: Value = serde_json::from_slice(
            &axum::body::to_bytes(again.into_body(), usize::MAX)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(first_body["id"], again_body["id"]);
        assert_eq!(app.count("patients").await, 1);
        let different = send("k-1", patient("Yolanda", "+13125550102").to_string())
            .await
            .unwrap();
        assert_eq!(different.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(app.count("patients").await, 1);
        // MRN conflicts are 409.
        let r = app
            .post("/api/v1/patients", patient("Zebulon", "+13125550103"))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT);
    }
}

#[tokio::test]
async fn eight_concurrent_writers_leave_one_valid_chain() {
    for db in TestDatabase::all().await {
        let app = Arc::new(app(db).await);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..5 {
                    let phone = format!("+1312555{:04}", 1000 + t * 10 + i);
                    let r = app
                        .post("/api/v1/patients", patient(&format!("P{t}x{i}"), &phone))
                        .await;
                    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
                    let id = r.json()["id"].as_str().unwrap().to_owned();
                    let r = app.get(&format!("/api/v1/patients/{id}")).await;
                    assert_eq!(r.status, StatusCode::OK);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(app.count("patients").await, 40);
        let rows = app.audit_rows().await;
        assert_eq!(rows.iter().filter(|r| r.0 == "patient.create").count(), 40);
        assert_eq!(rows.iter().filter(|r| r.0 == "patient.read").count(), 40);
        app.store.write_checkpoints(None).await.unwrap();
        let report = app.store.verify_audit(None).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
}

#[tokio::test]
async fn every_declared_route_exists_and_token_routes_refuse_anonymous_callers() {
    let app = app(TestDatabase::sqlite()).await;
    let openapi = app
        .send(Method::GET, "/api/v1/openapi.json", None, None, None)
        .await
        .json();
    for spec in route_specs() {
        let path = spec
            .path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{*file}", "salve.css");
        let r = app.send(spec.method.clone(), &path, None, None, None).await;
        if spec.page {
            // Pages send a signed-out visitor to sign in, and refuse a form without its token.
            let expected = match (&spec.access, &spec.method) {
                (Access::Public, &Method::GET) => StatusCode::OK,
                (_, &Method::GET) => StatusCode::SEE_OTHER,
                _ => StatusCode::FORBIDDEN,
            };
            assert_eq!(r.status, expected, "page {} {}", spec.method, spec.path);
            continue;
        }
        assert_ne!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {}",
            spec.method,
            spec.path
        );
        // FHIR's own description is its CapabilityStatement, not the OpenAPI document.
        if spec.path.starts_with("/fhir/") {
            match spec.access {
                Access::Op(_) | Access::OpAny(_) => {
                    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", spec.path)
                }
                _ => assert!(!r.status.is_server_error(), "{}", spec.path),
            }
            continue;
        }
        match spec.access {
            Access::Session(_) => assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{} {} needs a session",
                spec.method,
                spec.path
            ),
            Access::Op(_) | Access::OpAny(_) => {
                assert_eq!(
                    r.status,
                    StatusCode::UNAUTHORIZED,
                    "{} {} must need a token or a session",
                    spec.method,
                    spec.path
                );
                let documented = &openapi["paths"][spec.path][spec.method.as_str().to_lowercase()];
                assert!(
                    documented.is_object(),
                    "{} {} is in the OpenAPI document",
                    spec.method,
                    spec.path
                );
                assert!(
                    documented["security"].is_array(),
                    "{} {} documents its security",
                    spec.method,
                    spec.path
                );
            }
            Access::MetricsToken => assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "metrics are off by default"
            ),
            // Opening a link only redirects; the verification steps need a link cookie.
            Access::PatientLink | Access::AccountLink if spec.method == Method::GET => {
                assert_eq!(r.status, StatusCode::SEE_OTHER)
            }
            // A token request without an assertion is an OAuth error.
            Access::ClientAssertion => assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{} {}",
                spec.method,
                spec.path
            ),
            // An unknown provider: 404 before any signature is looked at.
            Access::ProviderSignature => assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{} {}",
                spec.method,
                spec.path
            ),
            Access::PatientLink | Access::PatientSession | Access::AccountLink => assert!(
                r.status.is_client_error(),
                "{} {}: {}",
                spec.method,
                spec.path,
                r.status
            ),
            // Signing in with no body is a client error, not a server one.
            Access::Public if spec.method == Method::POST && spec.path.starts_with("/api/v1/") => {
                assert!(
                    r.status.is_client_error(),
                    "{} {}: {}",
                    spec.method,
                    spec.path,
                    r.status
                )
            }
            // A public document named by an id in its path (a practice's EHR key set): the
            // placeholder names none.
            Access::Public if spec.path.ends_with("/jwks.json") => assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{} {}",
                spec.method,
                spec.path
            ),
            Access::Public => assert!(
                r.status.is_success(),
                "{} {}: {}",
                spec.method,
                spec.path,
                r.status
            ),
        }
    }
    let r = app
        .send(Method::GET, "/no/such/route", None, None, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn metrics_use_route_templates_and_need_their_token() {
    let app = app_with(TestDatabase::sqlite(), |c| {
        c.metrics_token = Some(salve_server::MetricsToken(
            "metrics-token-0123456789".into(),
        ))
    })
    .await;
    let r = app
        .post("/api/v1/patients", patient("Zebulon", "+13125550101"))
        .await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    app.get(&format!("/api/v1/patients/{id}")).await;
    let r = app.send(Method::GET, "/metrics", None, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .send(
            Method::GET,
            "/metrics",
            Some("wrong-token-0123456789"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .send(
            Method::GET,
            "/metrics",
            Some("metrics-token-0123456789"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.contains("route=\"/api/v1/patients/{id}\""),
        "{}",
        r.text
    );
    assert!(!r.text.contains(&id), "no raw path or id in metrics");
    // CSP reports are counted by directive only; their URIs never reach metrics or logs.
    let report = json!({"csp-report": {"document-uri": "https://clinic.example/p/Zebulon",
        "blocked-uri": "https://evil.example/?q=Quintanilla", "violated-directive": "script-src 'self'"}});
    let r = app
        .send(
            Method::POST,
            "/csp-report",
            None,
            Some(Body::from(report.to_string())),
            Some("application/csp-report"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let bogus = json!({"csp-report": {"violated-directive": "Zebulon-directive"}});
    app.send(
        Method::POST,
        "/csp-report",
        None,
        Some(Body::from(bogus.to_string())),
        None,
    )
    .await;
    let r = app
        .send(
            Method::GET,
            "/metrics",
            Some("metrics-token-0123456789"),
            None,
            None,
        )
        .await;
    assert!(r.text.contains("directive=\"script-src\""), "{}", r.text);
    assert!(r.text.contains("directive=\"other\""));
    assert!(!r.text.contains("Zebulon") && !r.text.contains("Quintanilla"));
    assert!(r.headers.contains_key("x-request-id"));
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn readiness_and_security_headers() {
    let app = app_with(TestDatabase::sqlite(), |c| {
        c.public_url = Some("https://clinic.example".into())
    })
    .await;
    let r = app.send(Method::GET, "/readyz", None, None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    assert!(
        r.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    app.store.close().await;
    let r = app.send(Method::GET, "/readyz", None, None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn a_shredded_patient_is_gone_but_others_stay() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let a = app
            .post("/api/v1/patients", patient("Zebulon", "+13125550101"))
            .await
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let b = app
            .post("/api/v1/patients", patient("Yolanda", "+13125550102"))
            .await
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.store
            .shred_patient(
                app.practice,
                &salve_core::permissions::Principal::Operator,
                &Default::default(),
                a.parse().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            app.get(&format!("/api/v1/patients/{a}")).await.status,
            StatusCode::GONE
        );
        assert_eq!(
            app.get(&format!("/api/v1/patients/{b}")).await.status,
            StatusCode::OK
        );
        let r = app
            .post("/api/v1/patients/lookup", json!({"phone": "+13125550101"}))
            .await;
        assert_eq!(r.json()["patients"].as_array().unwrap().len(), 0);
        let r = app
            .post("/api/v1/patients/search", json!({"query": "quintanilla"}))
            .await;
        assert_eq!(r.json()["patients"].as_array().unwrap().len(), 1);
        let report = app.store.verify_audit(None).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
}

//! Break-glass with a controllable clock: denied → reason given → allowed → expires → denied;
//! audited, the privacy officer notified, and the grant in the auditor's report. Also the
//! guidelines acknowledgment gate.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use salve_channels::LocalOutbox;
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::{Principal, Role, Scope};
use salve_core::{Clock, ManualClock, PracticeId, Sensitive, UserId};
use salve_crypto::MasterKey;
use salve_server::{AppState, ServerConfig, build_router};
use salve_store::{SessionStage, Store, StoreOptions};
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::macros::datetime;
use tower::ServiceExt;

struct World {
    router: Router,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    practice: PracticeId,
    outbox: LocalOutbox,
    _db: TestDatabase,
}

impl World {
    async fn new(db: TestDatabase) -> Self {
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
        let outbox = LocalOutbox::new(
            db.dir.path().join("outbox"),
            store.outbox_key().await.unwrap(),
        );
        let state = AppState::new(
            store.clone(),
            clock.clone(),
            ServerConfig::local("127.0.0.1:0".parse().unwrap()),
        )
        .with_provider(Arc::new(LocalOutbox::new(
            outbox.dir().to_path_buf(),
            store.outbox_key().await.unwrap(),
        )));
        Self {
            router: build_router(state),
            store,
            clock,
            practice,
            outbox,
            _db: db,
        }
    }

    /// A staff member with an active session (idle timeout stretched to 4 h so the clock can
    /// jump past the break-glass period); returns the user and the session cookie.
    async fn staff(&self, email: &str, role: Role, privacy_officer: bool) -> (UserId, String) {
        let user = self
            .store
            .create_user(
                &Actor::Cli,
                &RequestContext::default(),
                self.practice,
                &Sensitive::new(email.to_owned()),
                &Sensitive::new(format!("{role} user")),
                None,
                role,
                privacy_officer,
            )
            .await
            .unwrap();
        let token = salve_crypto::token::mint("salve_s");
        let now = salve_core::clock::to_micros(self.clock.now());
        self.store
            .create_session(
                user,
                self.practice,
                SessionStage::Active,
                &token.hash,
                4 * 3600,
                now + 12 * 3600 * 1_000_000,
            )
            .await
            .unwrap();
        (user, format!("salve_session={}", token.secret.as_str()))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, cookie)
            .header("sec-fetch-site", "same-origin");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let resp = self
            .router
            .clone()
            .oneshot(
                req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn audit_actions(&self) -> Vec<(String, String, String)> {
        sqlx::query_as(
            "SELECT action, targets, outcome FROM audit_events WHERE scope = $1 ORDER BY seq",
        )
        .bind(self.practice.to_string())
        .fetch_all(self.store.pool_for_tests())
        .await
        .unwrap()
    }
}

fn patient() -> Value {
    json!({"given_name": "Vera", "family_name": "Ingram", "birth_date": "1966-05-05",
           "contacts": [{"kind": "phone", "value": "+13125550123", "role": "self"}]})
}

#[tokio::test]
async fn break_glass_opens_a_restricted_patient_for_a_while_and_tells_the_officer() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let (_admin, admin) = w.staff("admin@lakeside.example", Role::Admin, false).await;
        let (officer, _) = w.staff("privacy@lakeside.example", Role::Staff, true).await;
        let (clinician_id, clinician) = w
            .staff("dr.lee@lakeside.example", Role::Clinician, false)
            .await;
        let (_, front_desk) = w.staff("desk@lakeside.example", Role::Staff, false).await;
        let (_, auditor) = w
            .staff("audit@lakeside.example", Role::Auditor, false)
            .await;

        let (status, created) = w
            .send(Method::POST, "/api/v1/patients", &admin, Some(patient()))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = created["id"].as_str().unwrap().to_owned();
        let (status, _) = w
            .send(
                Method::PUT,
                &format!("/api/v1/patients/{id}/restriction"),
                &admin,
                Some(json!({"restricted": true, "users": []})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        // Denied: the clinician must break the glass; the front desk cannot even see it.
        let read = format!("/api/v1/patients/{id}");
        let (status, problem) = w.send(Method::GET, &read, &clinician, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(problem["type"], "urn:salve:problem:break-glass-required");
        let (status, _) = w.send(Method::GET, &read, &front_desk, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, list) = w
            .send(Method::GET, "/api/v1/patients", &clinician, None)
            .await;
        assert_eq!(list["patients"].as_array().unwrap().len(), 0);

        // A reason is required, and only clinicians may give one.
        let glass = format!("/api/v1/patients/{id}/break-glass");
        let (status, problem) = w
            .send(
                Method::POST,
                &glass,
                &clinician,
                Some(json!({"category": "curiosity", "reason": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
        let reason = json!({"category": "emergency_treatment", "reason": "Patient arrived unresponsive at the front desk"});
        let (status, _) = w
            .send(Method::POST, &glass, &front_desk, Some(reason.clone()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, granted) = w
            .send(Method::POST, &glass, &clinician, Some(reason.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{granted}");
        assert!(
            granted["expires_at"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-25T10:00")
        );

        // Allowed, in reads and lists, for this clinician only.
        let (status, got) = w.send(Method::GET, &read, &clinician, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["given_name"], "Vera");
        let (_, list) = w
            .send(Method::GET, "/api/v1/patients", &clinician, None)
            .await;
        assert_eq!(list["patients"].as_array().unwrap().len(), 1);
        let (status, _) = w.send(Method::GET, &read, &front_desk, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Expires after the practice's period (60 minutes).
        w.clock.advance(time::Duration::minutes(59));
        let (status, _) = w.send(Method::GET, &read, &clinician, None).await;
        assert_eq!(status, StatusCode::OK);
        w.clock.advance(time::Duration::minutes(2));
        let (status, _) = w.send(Method::GET, &read, &clinician, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "the grant expired");

        // Audited: the grant (reason sealed), the denied reads, the allowed reads.
        let actions = w.audit_actions().await;
        let glass_row = actions
            .iter()
            .find(|(a, _, _)| a == "patient.break_glass")
            .expect("audited");
        assert!(glass_row.1.contains(&id));
        assert!(
            actions
                .iter()
                .any(|(a, t, o)| a == "patient.read" && o == "denied" && t.contains(&id))
        );
        assert!(
            actions
                .iter()
                .any(|(a, t, o)| a == "patient.read" && o == "success" && t.contains(&id))
        );
        let sealed: Vec<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT context FROM audit_events WHERE action = 'patient.break_glass'",
        )
        .fetch_all(w.store.pool_for_tests())
        .await
        .unwrap();
        let bytes = sealed[0].clone().unwrap();
        assert!(
            !bytes.windows(12).any(|x| x == b"unresponsive"),
            "the reason is sealed"
        );

        // The privacy officer was told, without patient details.
        let officer_email = w
            .store
            .user_profile(officer)
            .await
            .unwrap()
            .email
            .expose()
            .clone();
        let sent = w.outbox.list().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, officer_email);
        assert!(!sent[0].body.contains("Vera") && !sent[0].body.contains(&id));
        assert!(actions.iter().any(|(a, t, o)| a == "notification.sent"
            && o == "success"
            && t.contains(&officer.to_string())));

        // The auditor's report shows who, which patient, why.
        let (status, report) = w
            .send(Method::GET, "/api/v1/audit/break-glass", &auditor, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let grant = &report["grants"][0];
        assert_eq!(grant["user_id"], clinician_id.to_string());
        assert_eq!(grant["patient_id"], id);
        assert_eq!(grant["category"], "emergency_treatment");
        assert_eq!(
            grant["reason"],
            "Patient arrived unresponsive at the front desk"
        );
        let (status, _) = w
            .send(Method::GET, "/api/v1/audit/break-glass", &admin, None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "the report is the auditor's");
        let report = w.store.verify_audit(None).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        let _ = Principal::Operator;
        let _ = Scope::ALL;
    }
}

#[tokio::test]
async fn staff_acknowledge_each_version_of_the_guidelines_before_working() {
    let w = World::new(TestDatabase::sqlite()).await;
    let (_, admin) = w.staff("admin@lakeside.example", Role::Admin, false).await;
    let (desk_id, desk) = w.staff("desk@lakeside.example", Role::Staff, false).await;
    // No guidelines yet: nothing to acknowledge.
    let (status, _) = w.send(Method::GET, "/api/v1/patients", &desk, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, g) = w
        .send(
            Method::PUT,
            "/api/v1/guidelines",
            &admin,
            Some(json!({"body": "Lab results never go by plain SMS."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["version"], 1);
    let (status, problem) = w.send(Method::GET, "/api/v1/patients", &desk, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        problem["type"],
        "urn:salve:problem:guidelines-acknowledgment-required"
    );
    let (status, g) = w.send(Method::GET, "/api/v1/guidelines", &desk, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["acknowledgment_required"], true);
    let (status, _) = w
        .send(
            Method::POST,
            "/api/v1/guidelines/acknowledge",
            &desk,
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = w.send(Method::GET, "/api/v1/patients", &desk, None).await;
    assert_eq!(status, StatusCode::OK);
    // A new version needs a new acknowledgment; an old version number is refused.
    w.send(
        Method::PUT,
        "/api/v1/guidelines",
        &admin,
        Some(json!({"body": "Version two."})),
    )
    .await;
    let (status, _) = w.send(Method::GET, "/api/v1/patients", &desk, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = w
        .send(
            Method::POST,
            "/api/v1/guidelines/acknowledge",
            &desk,
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    w.send(
        Method::POST,
        "/api/v1/guidelines/acknowledge",
        &desk,
        Some(json!({"version": 2})),
    )
    .await;
    // Admins see who acknowledged which version.
    let (_, acks) = w
        .send(
            Method::GET,
            "/api/v1/guidelines/acknowledgments",
            &admin,
            None,
        )
        .await;
    assert_eq!(acks["current_version"], 2);
    let desk_acks: Vec<i64> = acks["acknowledgments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["user_id"] == desk_id.to_string())
        .map(|a| a["version"].as_i64().unwrap())
        .collect();
    assert_eq!(desk_acks, vec![2, 1]);
    let (status, _) = w
        .send(
            Method::GET,
            "/api/v1/guidelines/acknowledgments",
            &desk,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let actions = w.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.0 == "guidelines.acknowledge")
            .count(),
        2
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.0 == "guidelines.publish")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_sign_in_lock_is_audited_and_the_admins_are_told() {
    let w = World::new(TestDatabase::sqlite()).await;
    let (admin, _) = w.staff("admin@lakeside.example", Role::Admin, false).await;
    w.staff("desk@lakeside.example", Role::Staff, false).await;
    let attempt = || async {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/session")
            .header(header::CONTENT_TYPE, "application/json")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(
                json!({"email": "desk@lakeside.example", "password": "not the password at all"})
                    .to_string(),
            ))
            .unwrap();
        w.router.clone().oneshot(req).await.unwrap().status()
    };
    for n in 1..=10 {
        assert_eq!(attempt().await, StatusCode::UNAUTHORIZED, "attempt {n}");
        // Wait out each growing delay (at most 64 s before the lock).
        w.clock.advance(time::Duration::minutes(2));
    }
    assert!(
        w.outbox.list().unwrap().len() == 1,
        "one notification per lock"
    );
    let sent = &w.outbox.list().unwrap()[0];
    assert_eq!(sent.to, "admin@lakeside.example");
    assert!(sent.subject.as_deref().unwrap().contains("Sign-in lock"));
    assert!(!sent.body.contains("desk@"), "the message names no account");
    let actions = w.audit_actions().await;
    assert!(
        actions
            .iter()
            .any(|(a, _, o)| a == "auth.locked" && o == "denied")
    );
    assert!(
        actions
            .iter()
            .any(|(a, t, _)| a == "notification.sent" && t.contains(&admin.to_string()))
    );
    // Locked now, even with the right timing: 429 until 15 minutes pass.
    assert_eq!(attempt().await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn teams_are_the_admins_and_other_practices_cannot_touch_them() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let (_, admin) = w.staff("admin@lakeside.example", Role::Admin, false).await;
        let (desk_id, desk) = w.staff("desk@lakeside.example", Role::Staff, false).await;
        let (status, created) = w
            .send(
                Method::POST,
                "/api/v1/teams",
                &admin,
                Some(json!({"name": "Front desk"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let team = created["id"].as_str().unwrap().to_owned();
        let (status, _) = w
            .send(
                Method::POST,
                "/api/v1/teams",
                &admin,
                Some(json!({"name": "Front desk"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = w
            .send(
                Method::POST,
                "/api/v1/teams",
                &desk,
                Some(json!({"name": "Mine"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "staff cannot manage teams");
        let members = format!("/api/v1/teams/{team}/members");
        let (status, _) = w
            .send(
                Method::PUT,
                &members,
                &admin,
                Some(json!({"members": [desk_id.to_string()]})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, list) = w.send(Method::GET, "/api/v1/teams", &desk, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["teams"][0]["members"][0], desk_id.to_string());

        // Another practice's admin: the team, its members and the users are invisible (404).
        let other = w
            .store
            .create_practice(Actor::Cli, "Elsewhere", "US", "America/Denver")
            .await
            .unwrap()
            .id;
        let outsider = w
            .store
            .create_user(
                &Actor::Cli,
                &RequestContext::default(),
                other,
                &Sensitive::new("admin@elsewhere.example".into()),
                &Sensitive::new("Other admin".into()),
                None,
                Role::Admin,
                false,
            )
            .await
            .unwrap();
        let token = salve_crypto::token::mint("salve_s");
        let now = salve_core::clock::to_micros(w.clock.now());
        w.store
            .create_session(
                outsider,
                other,
                SessionStage::Active,
                &token.hash,
                900,
                now + 3600 * 1_000_000,
            )
            .await
            .unwrap();
        let outsider_cookie = format!("salve_session={}", token.secret.as_str());
        let (status, _) = w
            .send(
                Method::PUT,
                &members,
                &outsider_cookie,
                Some(json!({"members": []})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = w
            .send(
                Method::DELETE,
                &format!("/api/v1/teams/{team}"),
                &outsider_cookie,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = w
            .send(
                Method::PUT,
                &format!("/api/v1/users/{desk_id}/role"),
                &outsider_cookie,
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, list) = w
            .send(Method::GET, "/api/v1/teams", &outsider_cookie, None)
            .await;
        assert_eq!(list["teams"].as_array().unwrap().len(), 0);
        let (_, users) = w
            .send(Method::GET, "/api/v1/users", &outsider_cookie, None)
            .await;
        assert_eq!(
            users["users"].as_array().unwrap().len(),
            1,
            "only their own practice's staff"
        );
        // An outsider cannot be made a team member here either.
        let (status, _) = w
            .send(
                Method::PUT,
                &members,
                &admin,
                Some(json!({"members": [outsider.to_string()]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = w
            .send(
                Method::DELETE,
                &format!("/api/v1/teams/{team}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}

//! Staff invitations and password resets: single-use hashed tokens that expire, links whose
//! GET spends nothing, the password policy, sessions ended on a reset, answers that never say
//! whether an account exists.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use salve_channels::LocalOutbox;
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::Role;
use salve_core::{Clock, ManualClock, PracticeId, Sensitive};
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
        let dir = db.dir.path().join("outbox");
        let key = store.outbox_key().await.unwrap();
        let state = AppState::new(
            store.clone(),
            clock.clone(),
            ServerConfig::local("127.0.0.1:8080".parse().unwrap()),
        )
        .with_provider(Arc::new(LocalOutbox::new(dir.clone(), key.clone())));
        Self {
            router: build_router(state),
            store,
            clock,
            practice,
            outbox: LocalOutbox::new(dir, key),
            _db: db,
        }
    }

    async fn admin_cookie(&self) -> String {
        let user = self
            .store
            .create_user(
                &Actor::Cli,
                &RequestContext::default(),
                self.practice,
                &Sensitive::new("admin@lakeside.example".into()),
                &Sensitive::new("Admin".into()),
                None,
                Role::Admin,
                false,
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
                900,
                now + 3600 * 1_000_000,
            )
            .await
            .unwrap();
        format!("salve_session={}", token.secret.as_str())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("sec-fetch-site", "same-origin");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
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
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Follows the emailed link and returns the account cookie.
    async fn follow(&self, text: &str) -> String {
        let path = text
            .split("http://localhost:8080")
            .nth(1)
            .unwrap()
            .to_owned();
        let (status, headers, _) = self.call(Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    async fn sign_in(&self, email: &str, password: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(
                Method::POST,
                "/api/v1/session",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        (status, body)
    }
}

const GOOD: &str = "quiet harbor lantern seventy";

#[tokio::test]
async fn an_invitation_sets_a_password_once() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let admin = w.admin_cookie().await;
        let (status, _, invited) = w
            .call(Method::POST, "/api/v1/users/invite", Some(&admin),
                Some(json!({"email": "nurse.kim@lakeside.example", "display_name": "Kim", "role": "clinician"})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{invited}");
        assert_eq!(invited["invitation_sent"], true);
        let sent = w.outbox.list().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, "nurse.kim@lakeside.example");
        // A link scanner's GET spends nothing.
        let cookie = w.follow(&sent[0].body).await;
        let cookie = {
            let again = w.follow(&sent[0].body).await;
            assert_eq!(again, cookie);
            again
        };
        // No password yet: sign-in fails like any wrong password.
        assert_eq!(
            w.sign_in("nurse.kim@lakeside.example", GOOD).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (status, _, problem) = w
            .call(
                Method::POST,
                "/api/v1/account/password",
                Some(&cookie),
                Some(json!({"password": "password1234"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!problem.to_string().contains("password1234"));
        let (status, _, _) = w
            .call(
                Method::POST,
                "/api/v1/account/password",
                Some(&cookie),
                Some(json!({"password": GOOD})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = w
            .call(
                Method::POST,
                "/api/v1/account/password",
                Some(&cookie),
                Some(json!({"password": "another fine passphrase"})),
            )
            .await;
        assert_eq!(status, StatusCode::GONE, "single use");
        let (status, step) = w.sign_in("nurse.kim@lakeside.example", GOOD).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(step["stage"], "enroll", "MFA is set up at first sign-in");
        // Inviting the same person again is a conflict; an expired invitation is refused.
        let (status, _, _) = w
            .call(Method::POST, "/api/v1/users/invite", Some(&admin),
                Some(json!({"email": "NURSE.KIM@lakeside.example", "display_name": "Kim", "role": "staff"})))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        w.call(
            Method::POST,
            "/api/v1/users/invite",
            Some(&admin),
            Some(
                json!({"email": "late@lakeside.example", "display_name": "Late", "role": "staff"}),
            ),
        )
        .await;
        let late = w
            .follow(&w.outbox.list().unwrap().last().unwrap().body)
            .await;
        w.clock.advance(time::Duration::hours(73));
        let (status, _, _) = w
            .call(
                Method::POST,
                "/api/v1/account/password",
                Some(&late),
                Some(json!({"password": GOOD})),
            )
            .await;
        assert_eq!(status, StatusCode::GONE);
    }
}

#[tokio::test]
async fn a_reset_never_says_whether_an_account_exists_and_ends_sessions() {
    let w = World::new(TestDatabase::sqlite()).await;
    let admin = w.admin_cookie().await;
    w.call(
        Method::POST,
        "/api/v1/users/invite",
        Some(&admin),
        Some(json!({"email": "desk@lakeside.example", "display_name": "Desk", "role": "staff"})),
    )
    .await;
    let invite = w.follow(&w.outbox.list().unwrap()[0].body).await;
    w.call(
        Method::POST,
        "/api/v1/account/password",
        Some(&invite),
        Some(json!({"password": GOOD})),
    )
    .await;
    let before = w.outbox.list().unwrap().len();

    let (unknown_status, _, unknown_body) = w
        .call(
            Method::POST,
            "/api/v1/password-reset",
            None,
            Some(json!({"email": "nobody@lakeside.example"})),
        )
        .await;
    let (known_status, _, known_body) = w
        .call(
            Method::POST,
            "/api/v1/password-reset",
            None,
            Some(json!({"email": "desk@lakeside.example"})),
        )
        .await;
    assert_eq!(unknown_status, StatusCode::ACCEPTED);
    assert_eq!(
        (unknown_status, unknown_body),
        (known_status, known_body),
        "the same answer"
    );
    let sent = w.outbox.list().unwrap();
    assert_eq!(
        sent.len(),
        before + 1,
        "only the real account gets an email"
    );
    let reset_cookie = w.follow(&sent.last().unwrap().body).await;

    // A session of the account ends when the password changes.
    let (_, step) = w.sign_in("desk@lakeside.example", GOOD).await;
    assert_eq!(step["stage"], "enroll");
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL")
        .fetch_one(w.store.pool_for_tests())
        .await
        .unwrap();
    let (status, _, _) = w
        .call(
            Method::POST,
            "/api/v1/account/password",
            Some(&reset_cookie),
            Some(json!({"password": "a brand new harbor phrase"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let live_after: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL")
            .fetch_one(w.store.pool_for_tests())
            .await
            .unwrap();
    assert_eq!(
        live_after,
        live - 1,
        "the desk's half-finished sign-in ended"
    );
    assert_eq!(
        w.sign_in("desk@lakeside.example", GOOD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        w.sign_in("desk@lakeside.example", "a brand new harbor phrase")
            .await
            .0,
        StatusCode::OK
    );

    // At most three reset emails an hour per account.
    for _ in 0..5 {
        w.call(
            Method::POST,
            "/api/v1/password-reset",
            None,
            Some(json!({"email": "desk@lakeside.example"})),
        )
        .await;
    }
    let resets = w
        .outbox
        .list()
        .unwrap()
        .iter()
        .filter(|m| m.subject.as_deref() == Some("Reset your Salve password"))
        .count();
    assert_eq!(resets, 3);
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_events ORDER BY scope, seq")
            .fetch_all(w.store.pool_for_tests())
            .await
            .unwrap();
    for expected in [
        "user.invite",
        "user.password.set",
        "user.password.reset_request",
    ] {
        assert!(actions.iter().any(|a| a == expected), "{expected}");
    }
}

#[tokio::test]
async fn admins_create_list_and_revoke_api_tokens() {
    let w = World::new(TestDatabase::sqlite()).await;
    let admin = w.admin_cookie().await;
    let (status, _, created) = w
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"label": "EHR sync", "scopes": ["patients:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let with_token = |path: &str| {
        Request::builder()
            .uri(path.to_owned())
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .body(Body::empty())
            .unwrap()
    };
    let ok = w
        .router
        .clone()
        .oneshot(with_token("/api/v1/patients"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let (_, _, list) = w
        .call(Method::GET, "/api/v1/tokens", Some(&admin), None)
        .await;
    assert_eq!(list["tokens"][0]["label"], "EHR sync");
    assert!(
        !list.to_string().contains(&secret),
        "the secret is shown once only"
    );
    let (status, _, problem) = w
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"label": "", "scopes": ["patients:delete"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
    let (status, _, _) = w
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let refused = w
        .router
        .clone()
        .oneshot(with_token("/api/v1/patients"))
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "revoked at once"
    );
    let (status, _, _) = w
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

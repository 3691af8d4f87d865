//! Secure links: a scanner's GET burns nothing; wrong date of birth, wrong code, expired,
//! revoked, locked, another patient's link; the code goes only to the link's contact point;
//! no token or code in any logged line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use salve_channels::LocalOutbox;
use salve_core::audit::Actor;
use salve_core::permissions::Scope;
use salve_core::{ManualClock, PracticeId};
use salve_crypto::MasterKey;
use salve_server::{AppState, ServerConfig, build_router};
use salve_store::{Store, StoreOptions};
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::macros::datetime;
use tower::ServiceExt;

struct World {
    router: Router,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    outbox: LocalOutbox,
    token: String,
    _practice: PracticeId,
    _db: TestDatabase,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
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
        let t = salve_crypto::token::mint("salve");
        store
            .create_token(Actor::Cli, practice, &Scope::ALL, "ehr", &t.hash)
            .await
            .unwrap();
        let dir = db.dir.path().join("outbox");
        let key = store.outbox_key().await.unwrap();
        let mut config = ServerConfig::local("127.0.0.1:8080".parse().unwrap());
        config.public_url = Some("https://messages.lakeside.example".into());
        let state = AppState::new(store.clone(), clock.clone(), config)
            .with_provider(Arc::new(LocalOutbox::new(dir.clone(), key.clone())));
        Self {
            router: build_router(state),
            store,
            clock,
            outbox: LocalOutbox::new(dir, key),
            token: t.secret.as_str().to_owned(),
            _practice: practice,
            _db: db,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        cookies: &[&str],
        bearer: bool,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("sec-fetch-site", "same-origin");
        if bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        }
        if !cookies.is_empty() {
            req = req.header(header::COOKIE, cookies.join("; "));
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
        Reply {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn patient(&self, given: &str, dob: &str, phone: &str) -> String {
        let body = json!({"given_name": given, "family_name": "Ngata", "birth_date": dob,
            "contacts": [{"kind": "phone", "value": phone, "role": "self"},
                         {"kind": "email", "value": format!("{given}@example.org"), "role": "self"}]});
        let r = self
            .call(Method::POST, "/api/v1/patients", &[], true, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        r.json["id"].as_str().unwrap().to_owned()
    }

    /// Sends a link to the patient's phone and returns (link id, token from the text message).
    async fn send_link(&self, patient: &str) -> (String, String) {
        let before = self.outbox.list().unwrap().len();
        let r = self
            .call(
                Method::POST,
                &format!("/api/v1/patients/{patient}/secure-links"),
                &[],
                true,
                Some(json!({"contact_index": 0})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let sent = self.outbox.list().unwrap();
        assert_eq!(sent.len(), before + 1);
        let text = &sent.last().unwrap().body;
        assert!(text.starts_with(
            "You have a new secure message from Lakeside: https://messages.lakeside.example/p/"
        ));
        let token = text.rsplit("/p/").next().unwrap().to_owned();
        (r.json["id"].as_str().unwrap().to_owned(), token)
    }

    /// Opens the link like a browser (or a scanner) and returns the link cookie.
    async fn open(&self, token: &str) -> String {
        let r = self
            .call(Method::GET, &format!("/p/{token}"), &[], false, None)
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.headers[header::LOCATION], "/portal/verify");
        assert_eq!(r.headers["referrer-policy"], "no-referrer");
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("Secure")
                && cookie.contains("SameSite=Lax")
        );
        cookie.split(';').next().unwrap().to_owned()
    }

    async fn birth_date(&self, link_cookie: &str, date: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/portal/birth-date",
            &[link_cookie],
            false,
            Some(json!({"birth_date": date})),
        )
        .await
    }

    async fn code(&self, link_cookie: &str, code: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/portal/code",
            &[link_cookie],
            false,
            Some(json!({"code": code})),
        )
        .await
    }

    fn last_code(&self) -> String {
        let sent = self.outbox.list().unwrap();
        let body = &sent.last().unwrap().body;
        body.split("code is ").nth(1).unwrap()[..6].to_owned()
    }

    async fn failures(&self, link: &str) -> i64 {
        sqlx::query_scalar("SELECT failures FROM secure_links WHERE id = $1")
            .bind(link)
            .fetch_one(self.store.pool_for_tests())
            .await
            .unwrap()
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_patient_verifies_with_possession_and_knowledge_and_nothing_leaks() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let ana = w.patient("Ana", "1984-07-02", "+13125550142").await;
        let leo = w.patient("Leo", "2015-03-11", "+13125550143").await;
        let (link, token) = w.send_link(&ana).await;
        let sent_before = w.outbox.list().unwrap().len();

        // A scanner's GET and a preview burn nothing and send nothing.
        let scanner = w.open(&token).await;
        w.open(&token).await;
        assert_eq!(w.failures(&link).await, 0);
        assert_eq!(w.outbox.list().unwrap().len(), sent_before);
        let code_hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT code_hash FROM secure_links WHERE id = $1")
                .bind(&link)
                .fetch_one(w.store.pool_for_tests())
                .await
                .unwrap();
        assert!(code_hash.is_none());
        let cookie = scanner;

        // Wrong date of birth (another patient's): a failure, no code.
        let r = w.birth_date(&cookie, "2015-03-11").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(w.failures(&link).await, 1);
        assert_eq!(w.outbox.list().unwrap().len(), sent_before);

        // Right date of birth: a code goes to the phone the link went to, and nowhere else.
        let r = w.birth_date(&cookie, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
        let sent = w.outbox.list().unwrap();
        assert_eq!(sent.len(), sent_before + 1);
        assert_eq!(sent.last().unwrap().to, "+13125550142");
        let code = w.last_code();

        // Wrong code, then the right one: a patient session for Ana only.
        let wrong = if code == "000000" { "111111" } else { "000000" };
        let r = w.code(&cookie, wrong).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(w.failures(&link).await, 2);
        let r = w.code(&cookie, &code).await;
        assert_eq!(r.status, StatusCode::OK);
        let patient_cookie = r.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let r = w
            .call(
                Method::GET,
                "/api/v1/portal/me",
                &[&patient_cookie],
                false,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json["given_name"], "Ana");
        // A code works once.
        let r = w.code(&cookie, &code).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // The patient session idles out after 10 minutes.
        w.clock.advance(time::Duration::minutes(11));
        let r = w
            .call(
                Method::GET,
                "/api/v1/portal/me",
                &[&patient_cookie],
                false,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // The link stays usable (with verification each time) until it expires.
        let r = w.birth_date(&cookie, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);

        // Locked after five failures of either kind; staff can send a new link.
        let (locked_link, locked_token) = w.send_link(&leo).await;
        let c = w.open(&locked_token).await;
        for n in 0..5 {
            let r = if n % 2 == 0 {
                w.birth_date(&c, "1999-01-01").await
            } else {
                w.code(&c, "123456").await
            };
            let expected = if n == 4 {
                StatusCode::LOCKED
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(r.status, expected, "attempt {n}");
        }
        assert_eq!(w.failures(&locked_link).await, 5);
        let r = w.birth_date(&c, "2015-03-11").await;
        assert_eq!(r.status, StatusCode::LOCKED, "even the right answer");
        let (_, fresh) = w.send_link(&leo).await;
        let c = w.open(&fresh).await;
        let r = w.birth_date(&c, "2015-03-11").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);

        // Revoked.
        let (revoked, revoked_token) = w.send_link(&ana).await;
        let c = w.open(&revoked_token).await;
        let r = w
            .call(
                Method::DELETE,
                &format!("/api/v1/secure-links/{revoked}"),
                &[],
                true,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let r = w.birth_date(&c, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::GONE);

        // Expired after 72 hours.
        let (_, old_token) = w.send_link(&ana).await;
        let c = w.open(&old_token).await;
        w.clock.advance(time::Duration::hours(73));
        let r = w.birth_date(&c, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::GONE);

        // A made-up token is simply not valid.
        let c = w.open("salve_l_not-a-real-token").await;
        let r = w.birth_date(&c, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // Codes are rate-limited per link.
        let (_, limited) = w.send_link(&leo).await;
        let c = w.open(&limited).await;
        for _ in 0..3 {
            let r = w.birth_date(&c, "2015-03-11").await;
            assert_eq!(r.status, StatusCode::ACCEPTED);
        }
        let r = w.birth_date(&c, "2015-03-11").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

        // Everything was audited, and the chain holds.
        let actions: Vec<String> =
            sqlx::query_scalar("SELECT action FROM audit_events ORDER BY scope, seq")
                .fetch_all(w.store.pool_for_tests())
                .await
                .unwrap();
        for expected in [
            "link.create",
            "link.open",
            "link.birth_date_failed",
            "link.code_sent",
            "link.code_failed",
            "link.locked",
            "link.verified",
            "link.revoke",
        ] {
            assert!(actions.iter().any(|a| a == expected), "{expected} audited");
        }
        assert!(w.store.verify_audit(None).await.unwrap().ok());

        // No link token or code in any logged line.
        let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("/p/{token}"), "the route template is logged");
        for record in w.outbox.list().unwrap() {
            if let Some(t) = record.body.split("/p/").nth(1) {
                assert!(!log.contains(t), "a link token was logged");
            } else {
                let code = &record.body.split("code is ").nth(1).unwrap()[..6];
                assert!(!standalone(&log, code), "a one-time code was logged");
            }
        }
        assert!(!log.contains("+1312555"), "no phone number logged");
    }
}

/// Whether `digits` occurs in `text` other than inside a longer run of digits (a latency figure
/// or an id may contain any six digits by chance).
fn standalone(text: &str, digits: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(digits).any(|(i, m)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + m.len()).copied();
        let digit_or_point = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_digit() || b == b'.');
        !digit_or_point(before) && !digit_or_point(after)
    })
}

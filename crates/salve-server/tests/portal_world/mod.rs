//! The in-process world of the portal tests: a practice with an API token, a local outbox,
//! a controllable clock, and helpers for sending, opening and verifying secure links.
#![allow(dead_code)]

use std::sync::Arc;

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

pub struct World {
    pub router: Router,
    pub store: Arc<Store>,
    pub clock: Arc<ManualClock>,
    pub outbox: LocalOutbox,
    pub token: String,
    pub practice: PracticeId,
    pub _db: TestDatabase,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl World {
    pub async fn new(db: TestDatabase) -> Self {
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
            practice,
            _db: db,
        }
    }

    pub async fn call(
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

    pub async fn patient(&self, given: &str, dob: &str, phone: &str) -> String {
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
    pub async fn send_link(&self, patient: &str) -> (String, String) {
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
    pub async fn open(&self, token: &str) -> String {
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

    pub async fn birth_date(&self, link_cookie: &str, date: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/portal/birth-date",
            &[link_cookie],
            false,
            Some(json!({"birth_date": date})),
        )
        .await
    }

    pub async fn code(&self, link_cookie: &str, code: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/portal/code",
            &[link_cookie],
            false,
            Some(json!({"code": code})),
        )
        .await
    }

    pub fn last_code(&self) -> String {
        let sent = self.outbox.list().unwrap();
        let body = &sent.last().unwrap().body;
        body.split("code is ").nth(1).unwrap()[..6].to_owned()
    }

    pub async fn failures(&self, link: &str) -> i64 {
        sqlx::query_scalar("SELECT failures FROM secure_links WHERE id = $1")
            .bind(link)
            .fetch_one(self.store.pool_for_tests())
            .await
            .unwrap()
    }
}

//! The in-process harness for staff identity tests: a fresh store on a `TestDatabase`, a
//! `ManualClock` shared by the store and the server, the router driven with `oneshot`, staff
//! accounts, the real sign-in flow (password, TOTP enrolment or code), and audit queries.
//!
//! Every request gets its own client address unless the test names one (`Req::client_ip`), so
//! the per-address throttle only comes into play in the tests that are about it.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use salve_channels::LocalOutbox;
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::{Role, Scope};
use salve_core::{ManualClock, PracticeId, Sensitive, UserId};
use salve_crypto::MasterKey;
use salve_crypto::totp::{Digits, TotpAlgorithm, TotpSecret};
use salve_server::{AppState, COOKIE, ServerConfig, build_router};
use salve_store::{SessionStage, Store, StoreOptions};
use salve_testkit::{Kind, TestDatabase};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use tower::ServiceExt;

/// Long enough for the policy (12 characters), and the same for every account.
pub const PASSWORD: &str = "quiet lantern orchard 1987";
/// A step boundary (divisible by 30 s), so TOTP steps are easy to reason about.
/// 09:00 in Chicago (the test practice's zone): daytime, so texts are not held by quiet hours.
pub const START: OffsetDateTime = datetime!(2026-11-25 15:00 UTC);

pub struct App {
    pub router: Router,
    pub store: Arc<Store>,
    pub clock: Arc<ManualClock>,
    pub kind: Kind,
    /// The practice the tests act in.
    pub practice: PracticeId,
    /// Another practice, for isolation checks.
    pub other: PracticeId,
    /// An API token of `practice` with every scope.
    pub token: String,
    /// An API token of `other` with every scope.
    pub other_token: String,
    next_ip: AtomicU32,
    next_user: AtomicU32,
    /// The master key's bytes: another instance over the same database opens with them.
    master: [u8; 32],
    _db: TestDatabase,
}

/// A staff account and what its owner knows: password, authenticator, recovery codes.
pub struct Staff {
    pub id: UserId,
    pub practice: PracticeId,
    pub role: Role,
    pub email: String,
    pub password: String,
    pub totp: Option<TotpSecret>,
    pub recovery_codes: Vec<String>,
    /// The last TOTP step this account used (the server refuses it and earlier ones).
    pub last_step: Option<u64>,
}

#[derive(Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
    ip: Option<IpAddr>,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            ip: None,
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    /// The plain-http session cookie.
    pub fn cookie(self, token: &str) -> Self {
        self.header("cookie", format!("{COOKIE}={token}"))
    }
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    /// What a browser adds to a request made by Salve's own pages.
    pub fn same_origin(self) -> Self {
        self.header("sec-fetch-site", "same-origin")
    }
    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(("application/json".into(), body.to_string().into_bytes()));
        self
    }
    pub fn form(mut self, body: &str) -> Self {
        self.body = Some((
            "application/x-www-form-urlencoded".into(),
            body.as_bytes().to_vec(),
        ));
        self
    }
    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    /// The problem document's `type`, or "" for other bodies.
    pub fn problem_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
    /// The problem document without its request id, for comparing two refusals.
    pub fn problem_without_request_id(&self) -> Value {
        let mut v = self.json();
        if let Some(o) = v.as_object_mut() {
            o.remove("request_id");
        }
        v
    }
    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    /// The session token a `Set-Cookie` carries (any cookie name).
    pub fn session_token(&self) -> Option<String> {
        let raw = self.set_cookie()?;
        let first = raw.split(';').next()?;
        let (_, value) = first.split_once('=')?;
        (!value.is_empty()).then(|| value.to_owned())
    }
    pub fn retry_after(&self) -> Option<String> {
        self.headers
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    /// A list response's `patients[].id`.
    pub fn patient_ids(&self) -> Vec<String> {
        self.json()["patients"]
            .as_array()
            .unwrap_or_else(|| panic!("not a patient list: {} {}", self.status, self.text))
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// One audit row, as stored (the context is sealed and not read here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub targets: Vec<String>,
    pub outcome: String,
    pub context: Option<Vec<u8>>,
}

async fn api_token(store: &Store, practice: PracticeId) -> String {
    let t = salve_crypto::token::mint("salve");
    store
        .create_token(Actor::Cli, practice, &Scope::ALL, "test", &t.hash)
        .await
        .unwrap();
    t.secret.as_str().to_owned()
}

/// A new patient as the API takes it (no MRN unless given, so repeated creation cannot clash).
pub fn patient_body(given: &str, mrn: Option<&str>, phone: &str) -> Value {
    let mut v = json!({
        "given_name": given,
        "family_name": "Quintanilla",
        "birth_date": "1971-03-14",
        "contacts": [
            {"kind": "phone", "value": phone, "role": "self"},
            {"kind": "email", "value": format!("{}@example.org", given.to_lowercase()), "role": "self"}
        ]
    });
    if let Some(mrn) = mrn {
        v["mrn"] = json!(mrn);
    }
    v
}

/// RFC 4648 base32 (the authenticator secret's form), padding optional.
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let value = ALPHABET
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .unwrap_or_else(|| panic!("not base32: {}", c as char)) as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

pub fn secret_from_base32(text: &str) -> TotpSecret {
    TotpSecret::from_bytes(&base32_decode(text)).expect("a valid TOTP secret length")
}

impl App {
    pub async fn new(db: TestDatabase) -> Self {
        Self::with_config(db, |_| {}).await
    }

    pub async fn with_config(db: TestDatabase, config: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::with_state(db, config, |state| state).await
    }

    /// As [`App::with_config`], with a last word on the server's state (test hooks).
    pub async fn with_state(
        db: TestDatabase,
        config: impl FnOnce(&mut ServerConfig),
        state: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        let options = StoreOptions::new(db.url.clone());
        Store::migrate(&options).await.unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let master: [u8; 32] = rand::random();
        let store = Arc::new(
            Store::open(&options, MasterKey::from_bytes(master), clock.clone())
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
        // Messages (secure links, notifications to staff) go to a sealed local outbox.
        let outbox = LocalOutbox::new(
            db.dir.path().join("outbox"),
            store.outbox_key().await.unwrap(),
        );
        let state =
            state(AppState::new(store.clone(), clock.clone(), cfg).with_local_outbox(outbox));
        Self {
            router: build_router(state),
            token: api_token(&store, practice).await,
            other_token: api_token(&store, other).await,
            kind: db.kind,
            store,
            clock,
            practice,
            other,
            next_ip: AtomicU32::new(1),
            next_user: AtomicU32::new(1),
            master,
            _db: db,
        }
    }

    /// Another Salve instance over the same database (its own pool), on the same clock.
    pub async fn another_instance(&self) -> Arc<Store> {
        Arc::new(
            Store::open(
                &StoreOptions::new(self._db.url.clone()),
                MasterKey::from_bytes(self.master),
                self.clock.clone(),
            )
            .await
            .unwrap(),
        )
    }

    // ---- time ------------------------------------------------------------------------------

    pub fn now(&self) -> OffsetDateTime {
        salve_core::Clock::now(self.clock.as_ref())
    }

    pub fn advance(&self, by: time::Duration) {
        self.clock.advance(by);
    }

    pub fn step(&self) -> u64 {
        self.now().unix_timestamp() as u64 / 30
    }

    /// Moves the clock to the start of the next TOTP step.
    pub fn next_step(&self) {
        let next = OffsetDateTime::from_unix_timestamp(((self.step() + 1) * 30) as i64).unwrap();
        self.advance(next - self.now());
    }

    // ---- requests --------------------------------------------------------------------------

    /// A fresh client address (10.0.0.0/8), so unrelated requests never share a throttle key.
    pub fn fresh_ip(&self) -> IpAddr {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8))
    }

    pub async fn send(&self, req: Req) -> Reply {
        let mut builder = Request::builder().method(req.method.clone()).uri(&req.path);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let body = match req.body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let mut request = builder.body(body).unwrap();
        let ip = req.ip.unwrap_or_else(|| self.fresh_ip());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Sends a request and returns the response with its body unread: binary bodies
    /// (attachments) and streams (the inbox events) are read by the caller.
    pub async fn send_raw(&self, req: Req) -> axum::response::Response {
        let mut builder = Request::builder().method(req.method.clone()).uri(&req.path);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let body = match req.body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let mut request = builder.body(body).unwrap();
        let ip = req.ip.unwrap_or_else(|| self.fresh_ip());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
        self.router.clone().oneshot(request).await.unwrap()
    }

    /// The local outbox the server sends through (secure links, codes, notifications).
    pub async fn outbox(&self) -> LocalOutbox {
        LocalOutbox::new(
            self._db.dir.path().join("outbox"),
            self.store.outbox_key().await.unwrap(),
        )
    }

    // ---- accounts and sign-in --------------------------------------------------------------

    /// A staff member of `practice` with the shared password, not yet enrolled in MFA.
    pub async fn staff(&self, practice: PracticeId, role: Role) -> Staff {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let email = format!("{}.{n}@lakeside.example", role.as_str());
        let hash = salve_crypto::password::hash_password(
            salve_core::password_policy::normalize(PASSWORD).expose(),
        );
        let id = self
            .store
            .create_user(
                &Actor::Cli,
                &RequestContext::default(),
                practice,
                &Sensitive::new(email.clone()),
                &Sensitive::new(format!("{} {n}", role.as_str())),
                Some(hash),
                role,
                false,
            )
            .await
            .unwrap();
        Staff {
            id,
            practice,
            role,
            email,
            password: PASSWORD.to_owned(),
            totp: None,
            recovery_codes: Vec::new(),
            last_step: None,
        }
    }

    /// An account without a password (no argon2 work), for sessions made directly in the store.
    pub async fn passwordless_user(&self, practice: PracticeId, role: Role) -> UserId {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        self.store
            .create_user(
                &Actor::Cli,
                &RequestContext::default(),
                practice,
                &Sensitive::new(format!("nopw.{n}@lakeside.example")),
                &Sensitive::new(format!("No Password {n}")),
                None,
                role,
                false,
            )
            .await
            .unwrap()
    }

    /// A session row at `stage`, made in the store (not through sign-in); returns its token.
    pub async fn raw_session(
        &self,
        user: UserId,
        practice: PracticeId,
        stage: SessionStage,
    ) -> String {
        let token = salve_crypto::token::mint("salve_s");
        let now = salve_core::clock::to_micros(self.now());
        self.store
            .create_session(
                user,
                practice,
                stage,
                &token.hash,
                900,
                now + 43_200 * 1_000_000,
            )
            .await
            .unwrap();
        token.secret.as_str().to_owned()
    }

    /// `POST /api/v1/session` from Salve's own page.
    pub async fn sign_in(&self, email: &str, password: &str) -> Reply {
        self.send(
            Req::post("/api/v1/session")
                .same_origin()
                .json(&json!({"email": email, "password": password})),
        )
        .await
    }

    /// The current code of an enrolled account.
    pub fn totp_code(&self, staff: &Staff) -> String {
        self.code_for(staff.totp.as_ref().expect("enrolled"))
    }

    pub fn code_for(&self, secret: &TotpSecret) -> String {
        salve_crypto::totp::code_at(
            secret,
            TotpAlgorithm::Sha1,
            Digits::Six,
            self.now().unix_timestamp() as u64,
            NonZeroU64::new(30).unwrap(),
        )
    }

    /// First sign-in: password, enrolment, confirmation. Returns the active session's token.
    pub async fn enroll(&self, staff: &mut Staff) -> String {
        let r = self.sign_in(&staff.email, &staff.password).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["stage"], "enroll");
        let pending = r.session_token().unwrap();
        let r = self
            .send(
                Req::post("/api/v1/session/mfa/enroll")
                    .cookie(&pending)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let secret = secret_from_base32(r.json()["secret"].as_str().unwrap());
        let code = self.code_for(&secret);
        let r = self
            .send(
                Req::post("/api/v1/session/mfa/confirm")
                    .cookie(&pending)
                    .same_origin()
                    .json(&json!({ "code": code })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        staff.recovery_codes = r.json()["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        staff.totp = Some(secret);
        staff.last_step = Some(self.step());
        r.session_token().unwrap()
    }

    /// A later sign-in: password, then the authenticator's code. Moves the clock to the next
    /// TOTP step first when this account already used the current one.
    pub async fn sign_in_with_code(&self, staff: &mut Staff) -> String {
        if staff.last_step >= Some(self.step()) {
            self.next_step();
        }
        let r = self.sign_in(&staff.email, &staff.password).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["stage"], "mfa");
        let pending = r.session_token().unwrap();
        let r = self
            .send(
                Req::post("/api/v1/session/mfa")
                    .cookie(&pending)
                    .same_origin()
                    .json(&json!({ "code": self.totp_code(staff) })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        staff.last_step = Some(self.step());
        r.session_token().unwrap()
    }

    /// An active session for this account, through whichever sign-in it needs.
    pub async fn signed_in(&self, staff: &mut Staff) -> String {
        if staff.totp.is_some() {
            self.sign_in_with_code(staff).await
        } else {
            self.enroll(staff).await
        }
    }

    /// A staff member of the main practice, signed in.
    pub async fn signed_in_staff(&self, role: Role) -> (Staff, String) {
        let mut staff = self.staff(self.practice, role).await;
        let cookie = self.enroll(&mut staff).await;
        (staff, cookie)
    }

    /// Creates a patient with the practice's token; returns its id.
    pub async fn create_patient(&self, token: &str, body: &Value) -> String {
        let r = self
            .send(Req::post("/api/v1/patients").bearer(token).json(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_owned()
    }

    // ---- what the database says ------------------------------------------------------------

    /// The audit chain of a scope (`"system"` or a practice id), oldest first.
    pub async fn audit(&self, scope: &str) -> Vec<AuditRow> {
        /// actor kind, actor id, action, targets (JSON), outcome, sealed context
        type Row = (String, String, String, String, String, Option<Vec<u8>>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT actor_kind, actor_id, action, targets, outcome, context FROM audit_events \
                 WHERE scope = $1 ORDER BY seq",
        )
        .bind(scope.to_owned())
        .fetch_all(self.store.pool_for_tests())
        .await
        .unwrap();
        rows.into_iter()
            .map(
                |(actor_kind, actor_id, action, targets, outcome, context)| AuditRow {
                    actor_kind,
                    actor_id,
                    action,
                    targets: serde_json::from_str(&targets).unwrap(),
                    outcome,
                    context,
                },
            )
            .collect()
    }

    pub async fn practice_audit(&self) -> Vec<AuditRow> {
        self.audit(&self.practice.to_string()).await
    }

    /// How a user's sessions ended, oldest first (`None`: still open).
    pub async fn end_reasons(&self, user: UserId) -> Vec<Option<String>> {
        sqlx::query_scalar(
            "SELECT end_reason FROM sessions WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user.to_string())
        .fetch_all(self.store.pool_for_tests())
        .await
        .unwrap()
    }

    /// Every audit chain verifies.
    pub async fn assert_audit_verifies(&self) {
        let report = self.store.verify_audit(None).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
}

/// Counts rows matching `action` and `outcome`.
pub fn count(rows: &[AuditRow], action: &str, outcome: &str) -> usize {
    rows.iter()
        .filter(|r| r.action == action && r.outcome == outcome)
        .count()
}

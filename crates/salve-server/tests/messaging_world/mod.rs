//! The world of the messaging tests: the common `App` (router, store, manual clock) with an
//! https public URL, staff sessions per role made in the store (no argon2 work), a published
//! consent text, the sealed local outbox the API and the worker write to, and an `AppState`
//! over the same store and outbox so a test can drive the outbox worker with
//! `worker::run_once`.
#![allow(dead_code)]

use axum::http::{StatusCode, header};
use salve_channels::{LocalOutbox, OutboxRecord};
use salve_core::permissions::Role;
use salve_server::{AppState, HOST_COOKIE, ServerConfig};
use salve_store::SessionStage;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};

use super::common::{App, Reply, Req};

pub const BASE: &str = "https://messages.lakeside.example";
/// The birth date `common::patient_body` gives every patient.
pub const BIRTH_DATE: &str = "1971-03-14";
pub const SAFE_TEXT: &str = "Please call the office when you get a chance.";
pub const CLINICAL_TEXT: &str =
    "Your A1C came back at 7.2, so we would like to raise your metformin dose.";

pub struct World {
    pub app: App,
    /// The state the outbox worker runs with: the same store, the same local outbox.
    pub worker: AppState,
    pub outbox: LocalOutbox,
    pub admin: String,
    pub clinician: String,
    /// The clinician's user id.
    pub clinician_id: String,
    pub consent_version: String,
    pub consent_sha: String,
    /// Where the local outbox keeps what it "sent" (another instance writes there too).
    pub outbox_dir: std::path::PathBuf,
}

impl World {
    pub async fn new(db: TestDatabase) -> Self {
        Self::with_state(db, |state| state).await
    }

    /// With a last word on the API server's state (test hooks such as the media resolver).
    pub async fn with_state(db: TestDatabase, state: impl FnOnce(AppState) -> AppState) -> Self {
        let dir = db.dir.path().join("outbox");
        let app = App::with_state(db, |c| c.public_url = Some(BASE.into()), state).await;
        let key = app.store.outbox_key().await.unwrap();
        let worker = AppState::new(
            app.store.clone(),
            app.clock.clone(),
            ServerConfig::local("127.0.0.1:0".parse().unwrap()),
        )
        .with_local_outbox(LocalOutbox::new(dir.clone(), key.clone()));
        let outbox = LocalOutbox::new(dir.clone(), key);
        let (_, admin) = session(&app, Role::Admin).await;
        let (clinician_id, clinician) = session(&app, Role::Clinician).await;
        let r = app
            .send(
                Req::post("/api/v1/consent-texts")
                    .header("cookie", format!("{HOST_COOKIE}={admin}"))
                    .same_origin()
                    .json(&json!({
                        "version": "2026-01",
                        "text": "I agree that Lakeside may text me. Plain texts are not encrypted; \
                                 I can reply STOP at any time."
                    })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let consent_sha = r.json()["sha256"].as_str().unwrap().to_owned();
        Self {
            app,
            worker,
            outbox,
            admin,
            clinician,
            clinician_id,
            consent_version: "2026-01".into(),
            consent_sha,
            outbox_dir: dir,
        }
    }

    /// Moves the manual clock a little, so events recorded one after the other are ordered by
    /// time as they would be in real life.
    pub fn tick(&self) {
        self.app.advance(time::Duration::seconds(1));
    }

    /// A request from a signed-in staff member's browser.
    pub async fn as_staff(&self, cookie: &str, req: Req) -> Reply {
        // Behind an https public URL the session cookie has the `__Host-` name.
        let req = req.header("cookie", format!("{HOST_COOKIE}={cookie}"));
        self.app.send(req.same_origin()).await
    }

    pub async fn clinician(&self, req: Req) -> Reply {
        self.as_staff(&self.clinician, req).await
    }

    pub async fn admin(&self, req: Req) -> Reply {
        self.as_staff(&self.admin, req).await
    }

    /// A patient with a phone (`+1312555` + `last4`) and an email (`{given}@example.org`).
    pub async fn patient(&self, given: &str, last4: &str) -> String {
        self.app
            .create_patient(
                &self.app.token,
                &super::common::patient_body(given, None, &format!("+1312555{last4}")),
            )
            .await
    }

    /// A patient whose only contact point is one phone.
    pub async fn patient_with_phone_only(&self, given: &str, phone: &str) -> String {
        self.app
            .create_patient(
                &self.app.token,
                &json!({
                    "given_name": given,
                    "family_name": "Quintanilla",
                    "birth_date": BIRTH_DATE,
                    "contacts": [{"kind": "phone", "value": phone, "role": "self"}]
                }),
            )
            .await
    }

    fn event(&self, channel: &str, purpose: &str, action: &str) -> Value {
        json!({
            "channel": channel,
            "purpose": purpose,
            "action": action,
            "method": if action == "grant" { "intake_form" } else { "verbal" },
            "consent_text": if action == "grant" {
                json!({"version": self.consent_version, "sha256_hex": self.consent_sha})
            } else {
                Value::Null
            },
            "sms_risk_acknowledged": channel == "sms_plain",
        })
    }

    async fn consent(&self, patient: &str, events: Vec<Value>) -> Vec<String> {
        self.tick();
        let r = self
            .clinician(
                Req::post(format!("/api/v1/patients/{patient}/consent"))
                    .json(&json!({"events": events, "evidence": "signed intake form, scanned"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect()
    }

    /// Grants `channel` for `purpose`; returns the grant's id (the legal basis of later sends).
    pub async fn grant(&self, patient: &str, channel: &str, purpose: &str) -> String {
        let ids = self
            .consent(patient, vec![self.event(channel, purpose, "grant")])
            .await;
        ids[0].clone()
    }

    pub async fn revoke(&self, patient: &str, channel: &str, purpose: &str) -> String {
        let ids = self
            .consent(patient, vec![self.event(channel, purpose, "revoke")])
            .await;
        ids[0].clone()
    }

    /// `POST /api/v1/patients/{id}/messages` as the clinician.
    pub async fn send(&self, patient: &str, body: Value) -> Reply {
        self.tick();
        self.clinician(Req::post(format!("/api/v1/patients/{patient}/messages")).json(&body))
            .await
    }

    /// Sends and expects 201; returns the message.
    pub async fn sent_message(&self, patient: &str, body: Value) -> Value {
        let r = self.send(patient, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()
    }

    /// One pass of the outbox worker; returns how many jobs it handled.
    pub async fn run_worker(&self) -> usize {
        self.tick();
        salve_server::worker::run_once(&self.worker, "w")
            .await
            .unwrap()
    }

    /// Everything the local outbox recorded, oldest first.
    pub fn outbox(&self) -> Vec<OutboxRecord> {
        self.outbox.list().unwrap()
    }

    /// `GET /api/v1/conversations/{id}` as `cookie`.
    pub async fn conversation_as(&self, cookie: &str, id: &str) -> Value {
        let r = self
            .as_staff(cookie, Req::get(format!("/api/v1/conversations/{id}")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()
    }

    pub async fn conversation(&self, id: &str) -> Value {
        self.conversation_as(&self.clinician, id).await
    }

    /// A message as staff now see it in its conversation.
    pub async fn message(&self, sent: &Value) -> Value {
        let conversation = self
            .conversation(sent["conversation_id"].as_str().unwrap())
            .await;
        conversation["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == sent["id"])
            .cloned()
            .unwrap_or_else(|| panic!("message {} not in {conversation}", sent["id"]))
    }

    /// `GET /api/v1/conversations` (with a query string, or "") as the clinician.
    pub async fn inbox(&self, query: &str) -> Vec<Value> {
        let r = self
            .clinician(Req::get(format!("/api/v1/conversations{query}")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()["conversations"].as_array().unwrap().clone()
    }

    /// Follows the secure link in the newest notification like the patient would: open it,
    /// prove the birth date, type the code texted to the same contact point. Returns the
    /// patient session's cookie (`name=value`).
    pub async fn portal_session_from_last_notification(&self) -> String {
        let sent = self.outbox();
        let notification = sent
            .iter()
            .rev()
            .find(|r| r.body.contains("/p/"))
            .expect("a notification with a secure link");
        let token = notification.body.rsplit("/p/").next().unwrap().trim();
        let r = self.app.send(Req::get(format!("/p/{token}"))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let link_cookie = first_cookie(&r);
        let r = self
            .app
            .send(
                Req::post("/api/v1/portal/birth-date")
                    .header("cookie", link_cookie.clone())
                    .same_origin()
                    .json(&json!({"birth_date": BIRTH_DATE})),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        let after = self.outbox();
        let code_message = after.last().unwrap();
        assert_eq!(
            code_message.to, notification.to,
            "the code goes where the link went"
        );
        let code = code_message.body.split("code is ").nth(1).unwrap()[..6].to_owned();
        let r = self
            .app
            .send(
                Req::post("/api/v1/portal/code")
                    .header("cookie", link_cookie)
                    .same_origin()
                    .json(&json!({"code": code})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        first_cookie(&r)
    }

    /// `GET /api/v1/portal/conversations` with a patient session.
    pub async fn portal_conversations(&self, patient_cookie: &str) -> Value {
        let r = self
            .app
            .send(
                Req::get("/api/v1/portal/conversations")
                    .header("cookie", patient_cookie.to_owned())
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()
    }

    /// How many rows a table has (for "nothing was written" checks).
    pub async fn rows(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(self.app.store.pool_for_tests())
            .await
            .unwrap()
    }
}

/// A signed-in staff member of the main practice: (user id, session token).
pub async fn session(app: &App, role: Role) -> (String, String) {
    let user = app.passwordless_user(app.practice, role).await;
    let token = app
        .raw_session(user, app.practice, SessionStage::Active)
        .await;
    (user.to_string(), token)
}

/// The first cookie a response sets, as `name=value`.
pub fn first_cookie(r: &Reply) -> String {
    r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Every explanation in a decision's reasons, joined (for "which words" checks).
pub fn explanations(reasons: &Value) -> String {
    reasons
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| r["explanation"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

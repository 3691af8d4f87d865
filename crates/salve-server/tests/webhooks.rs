//! Provider webhooks end to end, on SQLite and PostgreSQL: signatures made by Twilio's own
//! `RequestValidator` (the official `twilio` PyPI package) are accepted; tampered and downgraded
//! ones get 403, are audited and change nothing; a replay gets 200, changes nothing and is
//! audited. Then the keyword matrix through the Twilio webhook, with the outbox worker sending
//! Salve's replies to a fake Twilio Messages API that records them: bare STOP (Twilio confirms,
//! Salve records it), PARAR (Salve confirms once), STOP while a text is queued, STOP at 23:00
//! (confirmed at once while ordinary texts wait for morning), START after STOP, CANCEL.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use salve_testkit::TestDatabase;
use salve_testkit::peers::run_python;
use serde_json::{Value, json};

mod common;
mod messaging_world;

use common::{Req, count};
use messaging_world::{BASE, SAFE_TEXT, World};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "12345678901234567890123456789012";
const SHARED_KEY: &str = "a-shared-key-for-hmac-sha256-webhooks";
const OUR_NUMBER: &str = "+13125550100";
const ANA_PHONE: &str = "+13125550142";

/// One request's form fields, in order.
type FormFields = Vec<(String, String)>;

/// The Messages API of a fake Twilio: records every send's form, answers like Twilio; also
/// serves one MMS picture (recording whether the request carried credentials).
#[derive(Clone, Default)]
struct FakeTwilio {
    sent: Arc<Mutex<Vec<FormFields>>>,
    media_fetches: Arc<Mutex<Vec<bool>>>,
}

fn png() -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(3, 2)
        .write_to(&mut bytes, image::ImageFormat::Png)
        .unwrap();
    bytes.into_inner()
}

/// Resolves Twilio's media host to the fake (tests only; the server allows loopback media only
/// with `AppState::with_media_for_tests`).
struct MediaHostIsLocal;

#[async_trait::async_trait]
impl salve_channels::Resolver for MediaHostIsLocal {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<std::net::IpAddr>> {
        assert_eq!(
            host, "api.twilio.com",
            "only the allow-listed host is looked up"
        );
        Ok(vec![std::net::Ipv4Addr::LOCALHOST.into()])
    }
}

impl FakeTwilio {
    async fn start() -> (Self, String) {
        let fake = FakeTwilio::default();
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(
                    |State(fake): State<FakeTwilio>, Path(_sid): Path<String>, body: String| async move {
                        let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                            .into_owned()
                            .collect();
                        let n = {
                            let mut sent = fake.sent.lock().unwrap();
                            sent.push(form);
                            sent.len()
                        };
                        (
                            StatusCode::CREATED,
                            axum::Json(json!({"sid": format!("SM{n:032}"), "status": "queued"})),
                        )
                    },
                ),
            )
            .route(
                "/2010-04-01/Accounts/{sid}/Messages/{mm}/Media/{me}",
                axum::routing::get(
                    |State(fake): State<FakeTwilio>, headers: axum::http::HeaderMap| async move {
                        fake.media_fetches
                            .lock()
                            .unwrap()
                            .push(headers.contains_key("authorization"));
                        ([("content-type", "image/png")], png())
                    },
                ),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, base)
    }

    /// Bodies sent to `to`, in order.
    fn bodies_to(&self, to: &str) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|form| form.iter().any(|(k, v)| k == "To" && v == to))
            .filter_map(|form| {
                form.iter()
                    .find(|(k, _)| k == "Body")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }
}

struct Setup {
    w: World,
    twilio: FakeTwilio,
    twilio_base: String,
    provider: String,
    ana: String,
}

async fn setup(db: TestDatabase, extra: Value) -> Setup {
    let (twilio, base) = FakeTwilio::start().await;
    let w = World::with_state(db, |state| {
        state.with_media_for_tests(Arc::new(MediaHostIsLocal))
    })
    .await;
    let r = w
        .admin(Req::post("/api/v1/admin/agreements").json(&json!({
            "vendor": "Twilio Inc.", "basis": "baa", "signed_on": "2026-01-15",
            "document_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let agreement = r.json()["id"].as_str().unwrap().to_owned();
    let base_url = base.clone();
    let mut credentials = json!({
        "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": base,
    });
    for (k, v) in extra.as_object().unwrap() {
        credentials[k] = v.clone();
    }
    let r = w
        .admin(Req::post("/api/v1/admin/providers").json(&json!({
            "kind": "twilio", "label": "Main line", "credentials": credentials,
            "numbers": [OUR_NUMBER], "agreement_id": agreement,
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let provider = r.json()["id"].as_str().unwrap().to_owned();
    let urls = r.json()["webhook_urls"].clone();
    assert_eq!(
        urls,
        json!([
            format!("{BASE}/webhooks/twilio/{provider}/inbound"),
            format!("{BASE}/webhooks/twilio/{provider}/status"),
        ])
    );
    let r = w
        .admin(Req::put("/api/v1/practice/messaging").json(&json!({
            "sender_name": "Lakeside", "phone": "(312) 555-0100", "hours_text": "Mon-Fri 8am-5pm",
            "expected_reply_text": "within 1 business day",
        })))
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let ana = w.patient("Ana", "0142").await;
    Setup {
        w,
        twilio,
        twilio_base: base_url,
        provider,
        ana,
    }
}

/// Twilio's form for an inbound text.
fn inbound_form(sid: &str, body: &str) -> Vec<(String, String)> {
    [
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", ANA_PHONE),
        ("To", OUR_NUMBER),
        ("Body", body),
        ("NumMedia", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The signature Twilio's own validator computes; `None` when the peers are not installed.
fn twilio_signature(
    secret: &str,
    url: &str,
    form: &[(String, String)],
    algorithm: &str,
) -> Option<String> {
    let out = run_python(
        "twilio_validator.py",
        &json!([{"op": "sign", "secret": secret, "url": url, "params": form, "algorithm": algorithm}]),
    )?;
    Some(out[0].as_str().unwrap().to_owned())
}

fn encode(form: &[(String, String)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Setup {
    fn twilio_port(&self) -> u16 {
        self.twilio_base
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn url(&self, which: &str) -> String {
        format!("{BASE}/webhooks/twilio/{}/{which}", self.provider)
    }

    /// Posts a form to a webhook with the given signature headers.
    async fn post(
        &self,
        which: &str,
        form: &[(String, String)],
        headers: &[(&str, &str)],
    ) -> common::Reply {
        let mut req =
            Req::post(format!("/webhooks/twilio/{}/{which}", self.provider)).form(&encode(form));
        for (k, v) in headers {
            req = req.header(k, *v);
        }
        self.w.app.send(req).await
    }

    /// A text from Ana, signed as Twilio signs it; `None` without the peers.
    async fn text(&self, sid: &str, body: &str) -> Option<common::Reply> {
        let form = inbound_form(sid, body);
        let signature = twilio_signature(AUTH_TOKEN, &self.url("inbound"), &form, "HMAC_SHA1")?;
        let r = self
            .post("inbound", &form, &[("x-twilio-signature", &signature)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        Some(r)
    }

    /// An API request with the practice's token (staff sessions do not outlast the hours
    /// these tests skip).
    async fn api(&self, req: Req) -> Value {
        let r = self.w.app.send(req.bearer(&self.w.app.token)).await;
        assert!(r.status.is_success(), "{}: {}", r.status, r.text);
        r.json()
    }

    async fn thread(&self) -> Vec<Value> {
        let list = self
            .api(Req::get(format!(
                "/api/v1/conversations?patient={}",
                self.ana
            )))
            .await;
        match list["conversations"][0]["id"].as_str() {
            Some(id) => self
                .api(Req::get(format!("/api/v1/conversations/{id}")))
                .await["messages"]
                .as_array()
                .unwrap()
                .clone(),
            None => Vec::new(),
        }
    }

    async fn status(&self, sent: &Value) -> String {
        self.thread()
            .await
            .iter()
            .find(|m| m["id"] == sent["id"])
            .map(|m| m["status"].as_str().unwrap().to_owned())
            .unwrap()
    }

    /// A staff text to Ana, sent with the token.
    async fn send(&self, text: &str) -> Value {
        self.api(
            Req::post(format!("/api/v1/patients/{}/messages", self.ana))
                .json(&json!({"text": text})),
        )
        .await
    }

    async fn consent(&self) -> Value {
        self.api(Req::get(format!("/api/v1/patients/{}/consent", self.ana)))
            .await
    }
}

/// `granted` or `revoked` (or never granted).
fn status_of(consent: &Value, channel: &str, purpose: &str) -> &'static str {
    let granted = consent["effective"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["channel"] == channel && s["purpose"] == purpose && s["granted"] == true);
    if granted { "granted" } else { "revoked" }
}

#[tokio::test]
async fn signatures_from_twilios_own_validator_and_replays() {
    for db in TestDatabase::all().await {
        let s = setup(db, json!({})).await;
        let form = inbound_form(
            "SM00000000000000000000000000000001",
            "Can I move my visit to Friday?",
        );
        let url = s.url("inbound");
        let Some(signature) = twilio_signature(AUTH_TOKEN, &url, &form, "HMAC_SHA1") else {
            return;
        };

        // Tampered: the body changed after signing.
        let mut tampered = form.clone();
        tampered[4].1 = "STOP".into();
        let r = s
            .post("inbound", &tampered, &[("x-twilio-signature", &signature)])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        // Missing.
        let r = s.post("inbound", &form, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        // Signed for another URL (another provider's).
        let other = twilio_signature(
            AUTH_TOKEN,
            &url.replace("/inbound", "/status"),
            &form,
            "HMAC_SHA1",
        )
        .unwrap();
        let r = s
            .post("inbound", &form, &[("x-twilio-signature", &other)])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        // A stronger algorithm than this provider is pinned to is refused too: no negotiation.
        let sha256 = twilio_signature(AUTH_TOKEN, &url, &form, "HMAC_SHA256").unwrap();
        let r = s
            .post(
                "inbound",
                &form,
                &[
                    ("x-twilio-signature", &sha256),
                    (
                        "x-twilio-webhooks-signature-settings",
                        "algorithm=HMAC_SHA256",
                    ),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(s.thread().await.is_empty(), "nothing changed");
        let audit = s.w.app.practice_audit().await;
        assert_eq!(count(&audit, "webhook.rejected", "denied"), 4);

        // Valid: the text lands in Ana's thread.
        let r = s
            .post("inbound", &form, &[("x-twilio-signature", &signature)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.text.contains("<Response>"), "{}", r.text);
        let thread = s.thread().await;
        assert_eq!(thread.len(), 1);
        assert_eq!(thread[0]["direction"], "inbound");
        assert_eq!(thread[0]["channel"], "sms");
        assert_eq!(thread[0]["text"], "Can I move my visit to Friday?");

        // Replayed: 200, nothing new, audited.
        let r = s
            .post("inbound", &form, &[("x-twilio-signature", &signature)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(s.thread().await.len(), 1);
        let audit = s.w.app.practice_audit().await;
        assert_eq!(count(&audit, "webhook.duplicate", "success"), 1);
        s.w.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn a_provider_pinned_to_hmac_sha256_refuses_a_sha1_downgrade() {
    for db in TestDatabase::all().await {
        let s = setup(
            db,
            json!({"signature_algorithm": "hmac-sha256", "signing_key": SHARED_KEY}),
        )
        .await;
        let form = inbound_form("SM00000000000000000000000000000002", "Hello");
        let url = s.url("inbound");
        let Some(sha1) = twilio_signature(AUTH_TOKEN, &url, &form, "HMAC_SHA1") else {
            return;
        };
        let r = s
            .post("inbound", &form, &[("x-twilio-signature", &sha1)])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "downgrade: {}", r.text);
        let sha256 = twilio_signature(SHARED_KEY, &url, &form, "HMAC_SHA256").unwrap();
        let r = s
            .post(
                "inbound",
                &form,
                &[
                    ("x-twilio-signature", &sha256),
                    (
                        "x-twilio-webhooks-signature-settings",
                        "algorithm=HMAC_SHA256",
                    ),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let audit = s.w.app.practice_audit().await;
        assert_eq!(count(&audit, "webhook.rejected", "denied"), 1);
    }
}

#[tokio::test]
async fn bare_stop_through_twilio_is_confirmed_by_twilio_and_salve_records_it() {
    for db in TestDatabase::all().await {
        let s = setup(db, json!({})).await;
        s.w.grant(&s.ana, "sms_plain", "care_messages").await;
        // A text is queued when STOP arrives: it is withdrawn, never sent.
        let queued = s.send(SAFE_TEXT).await;
        assert_eq!(queued["delivery"], "direct_sms", "{queued}");
        if s.text("SM00000000000000000000000000000003", "STOP")
            .await
            .is_none()
        {
            return;
        }
        assert_eq!(s.w.run_worker().await, 0);
        assert!(
            s.twilio.bodies_to(ANA_PHONE).is_empty(),
            "Twilio confirmed; Salve sends nothing"
        );
        assert_eq!(s.status(&queued).await, "failed");
        assert_eq!(
            status_of(&s.consent().await, "sms_plain", "care_messages"),
            "revoked"
        );
        let thread = s.thread().await;
        let recorded: Vec<_> = thread
            .iter()
            .filter(|m| m["direction"] == "system")
            .collect();
        assert_eq!(recorded.len(), 1, "{thread:?}");
        assert!(
            recorded[0]["text"]
                .as_str()
                .unwrap()
                .contains("twilio answered"),
            "{}",
            recorded[0]
        );
    }
}

#[tokio::test]
async fn parar_and_stop_pls_are_confirmed_by_salve_once_even_at_night() {
    for db in TestDatabase::all().await {
        let s = setup(db, json!({})).await;
        s.w.grant(&s.ana, "sms_plain", "care_messages").await;
        // 23:00 in Chicago.
        s.w.app.advance(time::Duration::hours(14));
        if s.text("SM00000000000000000000000000000004", "PARAR")
            .await
            .is_none()
        {
            return;
        }
        assert_eq!(s.w.run_worker().await, 1);
        let sent = s.twilio.bodies_to(ANA_PHONE);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].contains("Ya no le enviaremos"),
            "the Spanish confirmation: {}",
            sent[0]
        );
        assert!(sent[0].contains("(312) 555-0100"), "{}", sent[0]);
        assert_eq!(s.w.run_worker().await, 0);
        assert_eq!(
            s.twilio.bodies_to(ANA_PHONE).len(),
            1,
            "exactly one confirmation"
        );

        s.text("SM00000000000000000000000000000005", "stop pls")
            .await;
        s.w.run_worker().await;
        assert_eq!(
            s.twilio.bodies_to(ANA_PHONE).len(),
            2,
            "stop pls is Salve's to confirm"
        );
        assert_eq!(
            status_of(&s.consent().await, "sms_plain", "care_messages"),
            "revoked"
        );
    }
}

#[tokio::test]
async fn quiet_hours_hold_ordinary_texts_but_not_confirmations() {
    for db in TestDatabase::all().await {
        let s = setup(db, json!({})).await;
        s.w.grant(&s.ana, "sms_plain", "care_messages").await;
        s.w.app.advance(time::Duration::hours(14)); // 23:00 in Chicago
        let late = s.send(SAFE_TEXT).await;
        s.w.run_worker().await;
        assert!(
            s.twilio.bodies_to(ANA_PHONE).is_empty(),
            "held until morning"
        );
        assert_eq!(s.status(&late).await, "queued");
        // 08:00 the next morning it goes.
        s.w.app.advance(time::Duration::hours(9));
        s.w.run_worker().await;
        assert_eq!(s.twilio.bodies_to(ANA_PHONE), [SAFE_TEXT]);
    }
}

#[tokio::test]
async fn start_after_stop_restores_notifications_and_cancel_opts_out() {
    for db in TestDatabase::all().await {
        let s = setup(db, json!({})).await;
        s.w.grant(&s.ana, "sms_notify", "care_messages").await;
        s.w.grant(&s.ana, "sms_plain", "care_messages").await;
        if s.text("SM00000000000000000000000000000006", "stop")
            .await
            .is_none()
        {
            return;
        }
        let consent = s.consent().await;
        assert_eq!(
            status_of(&consent, "sms_notify", "care_messages"),
            "revoked"
        );
        s.w.tick();
        s.text("SM00000000000000000000000000000007", "START").await;
        let consent = s.consent().await;
        assert_eq!(
            status_of(&consent, "sms_notify", "care_messages"),
            "granted"
        );
        assert_eq!(
            status_of(&consent, "sms_plain", "care_messages"),
            "revoked",
            "plain texts need the risk acknowledgment again"
        );
        s.w.tick();
        s.text("SM00000000000000000000000000000008", "Cancel").await;
        assert_eq!(
            status_of(&s.consent().await, "sms_notify", "care_messages"),
            "revoked"
        );
        // "cancel my appointment tuesday" is a message for staff, not an opt-out.
        s.w.tick();
        s.text("SM00000000000000000000000000000009", "START").await;
        s.w.tick();
        s.text(
            "SM00000000000000000000000000000010",
            "cancel my appointment tuesday",
        )
        .await;
        assert_eq!(
            status_of(&s.consent().await, "sms_notify", "care_messages"),
            "granted"
        );
    }
}

fn status_form(sid: &str, status: &str) -> Vec<(String, String)> {
    [
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", OUR_NUMBER),
        ("To", ANA_PHONE),
        ("MessageStatus", status),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test]
async fn delivery_reports_move_a_status_forward_only_and_replays_change_nothing() {
    for db in TestDatabase::all().await {
        let s = setup(db, json!({})).await;
        s.w.grant(&s.ana, "sms_plain", "care_messages").await;
        let sent = s.send(SAFE_TEXT).await;
        assert_eq!(s.w.run_worker().await, 1);
        assert_eq!(s.status(&sent).await, "sent");
        // The fake Twilio numbers its messages: this was the first.
        let sid = format!("SM{:032}", 1);
        let url = s.url("status");
        let report = async |status: &str| {
            let form = status_form(&sid, status);
            let signature = twilio_signature(AUTH_TOKEN, &url, &form, "HMAC_SHA1")?;
            let r = s
                .post("status", &form, &[("x-twilio-signature", &signature)])
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            Some(())
        };
        if report("delivered").await.is_none() {
            return;
        }
        assert_eq!(s.status(&sent).await, "delivered");
        // Out of order: an earlier status arrives late and changes nothing.
        report("sent").await;
        assert_eq!(s.status(&sent).await, "delivered");
        // A replay of the same report: 200, nothing changes, audited.
        report("delivered").await;
        let audit = s.w.app.practice_audit().await;
        assert_eq!(count(&audit, "webhook.duplicate", "success"), 1);
        assert_eq!(
            count(&audit, "message.status", "success"),
            2,
            "sent, then delivered"
        );
        // A forged report is refused.
        let form = status_form(&sid, "failed");
        let r = s
            .post(
                "status",
                &form,
                &[("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(s.status(&sent).await, "delivered");
    }
}

#[tokio::test]
async fn an_mms_picture_is_fetched_from_the_allowed_host_sealed_with_the_text_and_deleted() {
    for db in TestDatabase::all().await {
        let s = setup(db, json!({})).await;
        let port = s.twilio_port();
        let media_url = format!(
            "http://api.twilio.com:{port}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM00000000000000000000000000000001/Media/ME00000000000000000000000000000001"
        );
        let mut form = inbound_form(
            "MM00000000000000000000000000000001",
            "Here is my insurance card",
        );
        form.retain(|(k, _)| k != "NumMedia");
        form.push(("NumMedia".into(), "2".into()));
        form.push(("MediaUrl0".into(), media_url.clone()));
        form.push(("MediaContentType0".into(), "image/png".into()));
        // A second "media" URL elsewhere is refused before any connection.
        form.push((
            "MediaUrl1".into(),
            format!("http://169.254.169.254:{port}/latest/meta-data"),
        ));
        form.push(("MediaContentType1".into(), "image/png".into()));
        let Some(signature) = twilio_signature(AUTH_TOKEN, &s.url("inbound"), &form, "HMAC_SHA1")
        else {
            return;
        };
        let r = s
            .post("inbound", &form, &[("x-twilio-signature", &signature)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            *s.twilio.media_fetches.lock().unwrap(),
            [true],
            "one fetch, with the account's credentials"
        );
        let thread = s.thread().await;
        assert_eq!(thread.len(), 1);
        assert_eq!(thread[0]["kind"], "clinical", "pictures are clinical");
        let attachments = thread[0]["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1, "{thread:?}");
        assert_eq!(attachments[0]["media_type"], "image/png");
        // Deletion at the provider was attempted and audited (this fake's media host is not
        // the configured API base, so Twilio's provider refuses to send the DELETE there).
        let audit = s.w.app.practice_audit().await;
        assert_eq!(
            count(&audit, "media.delete", "success") + count(&audit, "media.delete", "failure"),
            1
        );
    }
}

/// An emergency text arrives while the SMS provider's agreement has lapsed: the guidance is held
/// (never sent without a BAA), and the practice's admins are emailed at once, once, with no
/// patient named, so someone calls the patient. The conversation is flagged urgent.
#[tokio::test]
async fn an_emergency_reply_that_cannot_go_out_alerts_the_admins_once() {
    for db in TestDatabase::all().await {
        let s = setup(db, json!({})).await;
        // The agreement on file ends on 2026-11-30 (the clock starts on 2026-11-25).
        let r = s
            .w
            .admin(
                Req::post(format!("/api/v1/admin/providers/{}/agreement", s.provider)).json(
                    &json!({
                        "vendor": "Twilio Inc.", "basis": "baa", "signed_on": "2026-01-15",
                        "expires_on": "2026-11-30",
                        "document_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    }),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        s.w.app.advance(time::Duration::days(6));
        let Some(_) = s
            .text(
                "SM00000000000000000000000000000e01",
                "my chest hurts so bad and i cant breathe",
            )
            .await
        else {
            return;
        };
        let subject = "Salve: an emergency reply could not be sent";
        let alerts = |w: &World| {
            w.outbox()
                .into_iter()
                .filter(|m| m.subject.as_deref() == Some(subject))
                .collect::<Vec<_>>()
        };
        s.w.run_worker().await;
        let sent = alerts(&s.w);
        assert!(!sent.is_empty(), "the admins are alerted");
        for mail in &sent {
            assert!(mail.body.contains("/inbox?urgent=true"), "{}", mail.body);
            for phi in ["Ana", "0142", "chest", "breathe"] {
                assert!(!mail.body.contains(phi), "{phi} in the alert");
            }
        }
        assert!(
            s.twilio.bodies_to(ANA_PHONE).is_empty(),
            "nothing goes out through a provider without an agreement in force"
        );
        // Later passes hold the guidance again without another alert.
        s.w.app.advance(time::Duration::minutes(30));
        s.w.run_worker().await;
        s.w.run_worker().await;
        assert_eq!(
            alerts(&s.w).len(),
            sent.len(),
            "one alert per blocked reply"
        );
        let audit = s.w.app.practice_audit().await;
        assert_eq!(count(&audit, "emergency_reply.blocked", "failure"), 1);
        let urgent = s.api(Req::get("/api/v1/conversations?urgent=true")).await;
        assert_eq!(
            urgent["conversations"].as_array().unwrap().len(),
            1,
            "{urgent}"
        );
    }
}

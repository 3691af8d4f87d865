//! Faults between the outbox worker and a provider, on SQLite and PostgreSQL with the manual
//! clock: a 5xx then recovery delivers once; a connection lost after the provider took the
//! message is reconciled with Twilio (listed, found, not resent) and becomes `unknown` with
//! Telnyx (which cannot be asked); never a duplicate.
//!
//! The fake providers are raw TCP servers, so a test can read a request and then close the
//! connection without answering, as a network fault after acceptance would.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use salve_core::Clock;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;
mod messaging_world;

use common::Req;
use messaging_world::{SAFE_TEXT, World};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "12345678901234567890123456789012";
const OUR_NUMBER: &str = "+13125550100";
const ANA_PHONE: &str = "+13125550142";

/// What the fake does with the next send.
#[derive(Debug, Clone, Copy)]
enum Next {
    Fail500,
    /// Take the message, then close the connection without answering.
    AcceptThenDrop,
    Accept,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Next>>,
    /// Messages the provider took: (To, Body).
    accepted: Mutex<Vec<(String, String)>>,
    /// When the fake's clock says a message was created (RFC 2822), set by the test.
    now_rfc2822: Mutex<String>,
}

struct Request {
    method: String,
    path: String,
    body: String,
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next()?.split_whitespace();
    Some(Request {
        method: first.next()?.to_owned(),
        path: first.next()?.to_owned(),
        body: String::from_utf8_lossy(&buf[head_end..]).to_string(),
    })
}

async fn respond(stream: &mut tokio::net::TcpStream, status: &str, body: &Value) {
    let body = body.to_string();
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn form_value(body: &str, key: &str) -> String {
    form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Fake {
    /// A Twilio (`json: false`, form bodies, list by `To`) or a Telnyx (`json: true`) fake.
    async fn start(telnyx: bool) -> (Arc<Fake>, String) {
        let fake = Arc::new(Fake::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let serving = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let fake = serving.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut stream).await else {
                        return;
                    };
                    fake.handle(&mut stream, req, telnyx).await;
                });
            }
        });
        (fake, base)
    }

    async fn handle(&self, stream: &mut tokio::net::TcpStream, req: Request, telnyx: bool) {
        if req.method == "GET" {
            // Twilio's list, newest first.
            let now = self.now_rfc2822.lock().unwrap().clone();
            let messages: Vec<Value> = self
                .accepted
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .rev()
                .map(|(i, (to, body))| {
                    json!({
                        "sid": format!("SM{:032}", i + 1), "to": to, "from": OUR_NUMBER,
                        "body": body, "direction": "outbound-api", "status": "sent",
                        "date_created": now,
                    })
                })
                .collect();
            assert!(req.path.contains("To=%2B13125550142"), "{}", req.path);
            respond(stream, "200 OK", &json!({"messages": messages})).await;
            return;
        }
        let next = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Next::Accept);
        if let Next::Fail500 = next {
            respond(
                stream,
                "500 Internal Server Error",
                &json!({"code": 20500, "message": "Internal Server Error"}),
            )
            .await;
            return;
        }
        let (to, body) = if telnyx {
            let v: Value = serde_json::from_str(&req.body).unwrap();
            (
                v["to"].as_str().unwrap().to_owned(),
                v["text"].as_str().unwrap().to_owned(),
            )
        } else {
            (form_value(&req.body, "To"), form_value(&req.body, "Body"))
        };
        let n = {
            let mut accepted = self.accepted.lock().unwrap();
            accepted.push((to, body));
            accepted.len()
        };
        match next {
            Next::AcceptThenDrop => {
                let _ = stream.shutdown().await;
            }
            _ if telnyx => {
                respond(
                    stream,
                    "200 OK",
                    &json!({"data": {"id": format!("40317{n:027}-0000-0000-0000-000000000000"), "record_type": "message"}}),
                )
                .await
            }
            _ => respond(stream, "201 Created", &json!({"sid": format!("SM{n:032}"), "status": "queued"})).await,
        }
    }

    fn accepted_to(&self, to: &str) -> usize {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == to)
            .count()
    }
}

async fn world_with(kind: &str, base: &str, db: TestDatabase) -> (World, String) {
    let w = World::new(db).await;
    let r = w
        .admin(Req::post("/api/v1/admin/agreements").json(&json!({
            "vendor": "SMS vendor", "basis": "baa", "signed_on": "2026-01-15",
            "document_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let agreement = r.json()["id"].as_str().unwrap().to_owned();
    let credentials = match kind {
        "twilio" => json!({"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": base}),
        _ => json!({
            "api_key": "KEY0123456789", "base_url": base,
            // Any valid Ed25519 public key: these tests send only.
            "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        }),
    };
    let r = w
        .admin(Req::post("/api/v1/admin/providers").json(&json!({
            "kind": kind, "label": "Main line", "credentials": credentials,
            "numbers": [OUR_NUMBER], "agreement_id": agreement,
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ana = w.patient("Ana", "0142").await;
    w.grant(&ana, "sms_plain", "care_messages").await;
    (w, ana)
}

fn rfc2822(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc2822)
        .unwrap()
}

#[tokio::test]
async fn a_5xx_then_recovery_delivers_once() {
    for db in TestDatabase::all().await {
        let (fake, base) = Fake::start(false).await;
        fake.script.lock().unwrap().push_back(Next::Fail500);
        let (w, ana) = world_with("twilio", &base, db).await;
        let sent = w.sent_message(&ana, json!({"text": SAFE_TEXT})).await;
        assert_eq!(sent["delivery"], "direct_sms", "{sent}");
        w.run_worker().await;
        assert_eq!(fake.accepted_to(ANA_PHONE), 0);
        assert_eq!(w.message(&sent).await["status"], "queued", "to be retried");
        // Not before its backoff (30 s, give or take 20 %).
        w.run_worker().await;
        assert_eq!(fake.accepted_to(ANA_PHONE), 0);
        w.app.advance(time::Duration::seconds(40));
        w.run_worker().await;
        assert_eq!(fake.accepted_to(ANA_PHONE), 1);
        assert_eq!(w.message(&sent).await["status"], "sent");
        w.app.advance(time::Duration::minutes(10));
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(fake.accepted_to(ANA_PHONE), 1, "never a duplicate");
    }
}

#[tokio::test]
async fn a_lost_answer_is_reconciled_with_twilio_and_not_resent() {
    for db in TestDatabase::all().await {
        let (fake, base) = Fake::start(false).await;
        fake.script.lock().unwrap().push_back(Next::AcceptThenDrop);
        let (w, ana) = world_with("twilio", &base, db).await;
        *fake.now_rfc2822.lock().unwrap() = rfc2822(w.app.clock.now() + time::Duration::seconds(5));
        let sent = w.sent_message(&ana, json!({"text": SAFE_TEXT})).await;
        w.run_worker().await;
        assert_eq!(fake.accepted_to(ANA_PHONE), 1);
        let message = w.message(&sent).await;
        assert_eq!(message["status"], "sent", "found by listing: {message}");
        w.app.advance(time::Duration::minutes(10));
        w.run_worker().await;
        assert_eq!(fake.accepted_to(ANA_PHONE), 1, "never a duplicate");
    }
}

#[tokio::test]
async fn a_lost_answer_from_telnyx_becomes_unknown_for_staff() {
    for db in TestDatabase::all().await {
        let (fake, base) = Fake::start(true).await;
        fake.script.lock().unwrap().push_back(Next::AcceptThenDrop);
        let (w, ana) = world_with("telnyx", &base, db).await;
        let sent = w.sent_message(&ana, json!({"text": SAFE_TEXT})).await;
        w.run_worker().await;
        assert_eq!(fake.accepted_to(ANA_PHONE), 1);
        let message = w.message(&sent).await;
        assert_eq!(message["status"], "unknown", "{message}");
        w.app.advance(time::Duration::minutes(10));
        w.run_worker().await;
        assert_eq!(fake.accepted_to(ANA_PHONE), 1, "never resent blindly");
    }
}

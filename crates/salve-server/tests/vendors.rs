//! Business associates, end to end on SQLite and PostgreSQL with the manual clock: a provider
//! that would carry patient data cannot be enabled without a BAA or a self-operation
//! attestation; at the BAA's expiry sending through it stops, the admins are alerted once and
//! the messages stay queued; the renewal releases them, each sent once. The provider is the
//! real SMTP provider talking to a real SMTP server (aiosmtpd, STARTTLS required).

use axum::http::StatusCode;
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use salve_testkit::peers::smtp::{Server, pki};
use serde_json::{Value, json};

mod common;
mod messaging_world;

use common::Req;
use messaging_world::{CLINICAL_TEXT, World};

fn smtp_settings(port: u16, ca_pem: &str) -> Value {
    json!({
        "host": "localhost",
        "port": port,
        "security": "starttls",
        "username": "salve-notify",
        "password": "correct horse battery staple",
        "from_address": "no-reply@lakeside.example",
        "from_name": "Lakeside",
        "root_ca_pem": ca_pem,
    })
}

fn baa(signed_on: &str, expires_on: &str) -> Value {
    json!({
        "vendor": "Relay Mail Inc.",
        "basis": "baa",
        "signed_on": signed_on,
        "expires_on": expires_on,
        "document_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    })
}

/// A message's status, read with the API token (staff sessions do not outlive the days this
/// test skips).
async fn status_of(w: &World, sent: &Value) -> String {
    let r = w
        .app
        .send(
            Req::get(format!(
                "/api/v1/conversations/{}",
                sent["conversation_id"].as_str().unwrap()
            ))
            .bearer(&w.app.token),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == sent["id"])
        .map(|m| m["status"].as_str().unwrap().to_owned())
        .unwrap()
}

fn delivered(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["event"] == "message").collect()
}

#[tokio::test]
async fn an_expired_baa_holds_messages_alerts_admins_once_and_a_renewal_sends_each_once() {
    for db in TestDatabase::all().await {
        let pki = pki("Lakeside relay CA");
        let Some(server) = Server::start("starttls", Some(&pki)).await else {
            return;
        };
        let w = World::new(db).await;
        let settings = smtp_settings(server.port, &pki.ca_pem);
        // This story is about held sends: no unread-message reminder joins them in its 6 days.
        let r = w
            .admin(Req::put("/api/v1/practice/unread-settings").json(&json!({"delay_hours": 720})))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

        // No agreement: refused, whatever the settings.
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "smtp", "label": "Relay", "credentials": settings,
            })))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(
            r.text.contains("Business Associate Agreement"),
            "{}",
            r.text
        );

        // With a BAA in force (the clock starts on 2026-11-25): enabled.
        let r = w
            .admin(Req::post("/api/v1/admin/agreements").json(&baa("2026-01-15", "2026-11-30")))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let agreement = r.json()["id"].as_str().unwrap().to_owned();
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "smtp", "label": "Relay", "credentials": settings,
                "agreement_id": agreement,
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let provider = r.json()["id"].as_str().unwrap().to_owned();
        assert!(
            !r.text.contains("correct horse"),
            "secrets are never echoed"
        );
        let listed = w.admin(Req::get("/api/v1/admin/providers")).await;
        assert!(!listed.text.contains("correct horse"));
        assert_eq!(listed.json()["providers"][0]["coverage"], "in_force");

        // A secure message is announced by email through the provider.
        let ana = w.patient("Ana", "0142").await;
        w.grant(&ana, "email_notify", "care_messages").await;
        let first = w.sent_message(&ana, json!({"text": CLINICAL_TEXT})).await;
        assert_eq!(first["delivery"], "secure_with_notification", "{first}");
        assert_eq!(w.run_worker().await, 1);
        assert_eq!(status_of(&w, &first).await, "sent");

        // The day after the expiry date (in the practice's zone): nothing goes out. Sessions
        // do not last days; the API token does.
        w.app.advance(time::Duration::days(6));
        let (_, admin) = messaging_world::session(&w.app, Role::Admin).await;
        let r = w
            .app
            .send(
                Req::post(format!("/api/v1/patients/{ana}/messages"))
                    .bearer(&w.app.token)
                    .json(&json!({"text": CLINICAL_TEXT})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let second = r.json();
        assert_eq!(w.run_worker().await, 1, "claimed, then held");
        assert_eq!(status_of(&w, &second).await, "queued");
        let listed = w
            .as_staff(&admin, Req::get("/api/v1/admin/providers"))
            .await;
        assert_eq!(listed.json()["providers"][0]["coverage"], "expired");
        let alerts = |w: &World| {
            w.outbox()
                .into_iter()
                .filter(|m| {
                    m.subject
                        .as_deref()
                        .is_some_and(|s| s.contains("Business Associate Agreement expired"))
                })
                .count()
        };
        // Both admins (the first one and the one signed in just now) get the email.
        let alerted = alerts(&w);
        assert_eq!(alerted, 2, "the admins are alerted");
        // Later passes hold it again without a second alert.
        w.app.advance(time::Duration::hours(2));
        w.run_worker().await;
        assert_eq!(status_of(&w, &second).await, "queued");
        assert_eq!(alerts(&w), alerted, "one alert per expiry");
        let audit = w.app.practice_audit().await;
        assert_eq!(
            common::count(&audit, "vendor.agreement.expired", "success"),
            1
        );

        // A renewal releases the held message at once; it is sent once.
        let (_, admin) = messaging_world::session(&w.app, Role::Admin).await;
        let r = w
            .as_staff(
                &admin,
                Req::post(format!("/api/v1/admin/providers/{provider}/agreement"))
                    .json(&baa("2026-12-01", "2027-11-30")),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(w.run_worker().await, 1);
        assert_eq!(status_of(&w, &second).await, "sent");
        assert_eq!(w.run_worker().await, 0, "nothing is sent twice");

        let events = server.finish().await;
        let mails = delivered(&events);
        assert_eq!(mails.len(), 2, "{events:?}");
        for mail in mails {
            assert_eq!(mail["rcpt_tos"], json!(["ana@example.org"]), "{mail}");
            let raw = mail["content"].as_str().unwrap_or_default();
            for word in ["A1C", "metformin", "Quintanilla"] {
                assert!(!raw.contains(word), "{word} in the notification email");
            }
        }
    }
}

#[tokio::test]
async fn a_self_operated_relay_is_attested_instead_and_the_demo_outbox_steps_aside() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let r = w
            .admin(Req::post("/api/v1/admin/agreements").json(&json!({
                "vendor": "Lakeside's own relay", "basis": "self_operated", "attested_on": "2026-11-01",
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let attestation = r.json()["id"].as_str().unwrap().to_owned();
        // Bad agreements are refused with every problem named.
        let r = w
            .admin(Req::post("/api/v1/admin/agreements").json(&json!({
                "vendor": "", "basis": "baa", "signed_on": "2027-01-01", "document_sha256": "abc",
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        for field in ["vendor", "signed_on", "document_sha256"] {
            assert!(r.text.contains(field), "{field}: {}", r.text);
        }
        // The demo outbox first; a real provider then replaces it for the practice.
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "local_outbox", "label": "Demo", "credentials": {},
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let pki = pki("Lakeside relay CA");
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "smtp", "label": "Own relay", "credentials": smtp_settings(2525, &pki.ca_pem),
                "agreement_id": attestation,
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let listed = w.admin(Req::get("/api/v1/admin/providers")).await;
        let providers = listed.json()["providers"].as_array().unwrap().clone();
        let enabled: Vec<_> = providers
            .iter()
            .filter(|p| p["enabled"] == true)
            .map(|p| p["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(enabled, ["smtp"]);
        // And the demo outbox cannot come back beside it.
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "local_outbox", "label": "Demo", "credentials": {},
            })))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.text.contains("demos and development only"), "{}", r.text);
        // Plaintext SMTP is not a setting.
        let mut plain = smtp_settings(25, &pki.ca_pem);
        plain["security"] = json!("none");
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "smtp", "label": "Plain", "credentials": plain, "agreement_id": attestation,
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        // Auditors read the BAA report; they cannot change it.
        let (_, auditor) = messaging_world::session(&w.app, Role::Auditor).await;
        let r = w
            .as_staff(&auditor, Req::get("/api/v1/admin/providers"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = w
            .as_staff(
                &auditor,
                Req::post("/api/v1/admin/agreements").json(&json!({
                    "vendor": "x", "basis": "self_operated", "attested_on": "2026-11-01",
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
}

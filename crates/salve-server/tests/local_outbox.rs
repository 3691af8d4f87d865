//! The local outbox of demo and development mode, on SQLite and PostgreSQL: admins see what it
//! "sent" for their practice (audited), and simulate a patient's text and a delivery report,
//! which take the same path as a real provider's webhooks. Refused for a practice that texts
//! through a real provider, and for anyone but an admin.

use axum::http::StatusCode;
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use serde_json::json;

mod common;
mod messaging_world;

use common::{Req, count};
use messaging_world::{SAFE_TEXT, World};

#[tokio::test]
async fn admins_see_what_was_sent_and_simulate_replies_and_delivery() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "local_outbox", "label": "Demo outbox", "credentials": {},
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let ana = w.patient("Ana", "0142").await;
        w.grant(&ana, "sms_plain", "care_messages").await;
        let sent = w.sent_message(&ana, json!({"text": SAFE_TEXT})).await;
        assert_eq!(w.run_worker().await, 1);

        let r = w.admin(Req::get("/api/v1/admin/outbox")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let list = r.json()["messages"].as_array().unwrap().clone();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["to"], "+13125550142");
        assert_eq!(list[0]["body"], SAFE_TEXT);
        assert_eq!(list[0]["message_id"], sent["id"]);
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "outbox.read", "success"), 1);

        // A delivery report moves the message forward.
        let r = w
            .admin(Req::post("/api/v1/admin/outbox/status").json(&json!({
                "id": list[0]["id"], "status": "delivered",
            })))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(w.message(&sent).await["status"], "delivered");
        let r = w
            .admin(Req::post("/api/v1/admin/outbox/status").json(&json!({
                "id": uuid::Uuid::now_v7(), "status": "delivered",
            })))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

        // A simulated STOP: consent revoked, Salve's one confirmation goes out.
        let r = w
            .admin(Req::post("/api/v1/admin/outbox/inbound").json(&json!({
                "from": "+13125550142", "text": "STOP",
            })))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(w.run_worker().await, 1);
        let r = w.admin(Req::get("/api/v1/admin/outbox")).await;
        let list = r.json()["messages"].as_array().unwrap().clone();
        assert_eq!(list.len(), 2, "{list:?}");
        assert!(
            list[1]["body"].as_str().unwrap().contains("START"),
            "the opt-out confirmation: {}",
            list[1]["body"]
        );
        let r = w
            .clinician(Req::get(format!("/api/v1/patients/{ana}/consent")))
            .await;
        let granted = r.json()["effective"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["channel"] == "sms_plain" && e["granted"] == true);
        assert!(!granted, "{}", r.text);

        // Only admins; bad input is a problem, not a 500.
        let (_, staff) = messaging_world::session(&w.app, Role::Staff).await;
        let r = w.as_staff(&staff, Req::get("/api/v1/admin/outbox")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = w
            .admin(Req::post("/api/v1/admin/outbox/inbound").json(&json!({
                "from": "555-0142", "text": "hi",
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    }
}

#[tokio::test]
async fn simulation_needs_the_local_outbox_as_the_practices_provider() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let r = w
            .admin(Req::post("/api/v1/admin/outbox/inbound").json(&json!({
                "from": "+13125550142", "text": "hello",
            })))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert!(r.text.contains("local_outbox"), "{}", r.text);
    }
}

//! The inbound queues, on SQLite and PostgreSQL, fed through the local outbox's simulated
//! texts (the path of a real provider's webhook): an unknown number's text waits in triage
//! until staff file it with a patient; a family's shared phone lands in triage with both
//! patients as candidates, and its STOP still revokes texting for both; an unclear text goes
//! to review, where staff decide (an opt-out is recorded and confirmed once; "not an opt-out"
//! changes nothing).

use axum::http::StatusCode;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};

mod common;
mod messaging_world;

use common::{Req, count};
use messaging_world::World;

async fn world() -> Vec<World> {
    let mut worlds = Vec::new();
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "local_outbox", "label": "Demo outbox", "credentials": {},
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let r = w
            .admin(Req::put("/api/v1/practice/messaging").json(&json!({
                "sender_name": "Lakeside", "phone": "(312) 555-0100", "hours_text": "Mon-Fri 8am-5pm",
                "expected_reply_text": "within 1 business day",
            })))
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        worlds.push(w);
    }
    worlds
}

async fn text(w: &World, from: &str, body: &str) {
    w.tick();
    let r = w
        .admin(Req::post("/api/v1/admin/outbox/inbound").json(&json!({"from": from, "text": body})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

async fn sms_granted(w: &World, patient: &str) -> bool {
    let r = w
        .clinician(Req::get(format!("/api/v1/patients/{patient}/consent")))
        .await;
    r.json()["effective"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["channel"].as_str().unwrap().starts_with("sms") && e["granted"] == true)
}

async fn triage(w: &World) -> Vec<Value> {
    let r = w.clinician(Req::get("/api/v1/inbound/triage")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_unknown_numbers_text_waits_until_staff_file_it() {
    for w in world().await {
        let ana = w.patient("Ana", "0142").await;
        text(
            &w,
            "+13125550999",
            "Hi, this is Ana on my new phone. Can I get a refill?",
        )
        .await;
        let items = triage(&w).await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["reason"], "unknown_sender");
        assert_eq!(items[0]["from"], "+13125550999");
        assert_eq!(items[0]["candidates"], json!([]));
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "inbound.triage.read", "success"), 1);

        let id = items[0]["id"].as_str().unwrap();
        let r = w
            .clinician(
                Req::post(format!("/api/v1/inbound/triage/{id}/attribute"))
                    .json(&json!({"patient_id": ana})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert!(triage(&w).await.is_empty());
        let again = w
            .clinician(
                Req::post(format!("/api/v1/inbound/triage/{id}/attribute"))
                    .json(&json!({"patient_id": ana})),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "filed once");
        let r = w
            .clinician(Req::get(format!("/api/v1/conversations?patient={ana}")))
            .await;
        let conv = r.json()["conversations"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let messages = w.conversation(&conv).await["messages"].clone();
        assert_eq!(messages[0]["direction"], "inbound");
        assert_eq!(
            messages[0]["text"],
            "Hi, this is Ana on my new phone. Can I get a refill?"
        );
    }
}

#[tokio::test]
async fn a_shared_phone_goes_to_triage_and_its_stop_revokes_for_everyone_on_it() {
    for w in world().await {
        let mum = w.patient_with_phone_only("Maria", "+13125550150").await;
        let son = w.patient_with_phone_only("Mateo", "+13125550150").await;
        for p in [&mum, &son] {
            w.grant(p, "sms_notify", "care_messages").await;
        }
        text(&w, "+13125550150", "Is Mateo's appointment still on?").await;
        let items = triage(&w).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["reason"], "shared_number");
        let mut candidates: Vec<String> = items[0]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        candidates.sort();
        let mut expected = vec![mum.clone(), son.clone()];
        expected.sort();
        assert_eq!(candidates, expected);

        text(&w, "+13125550150", "STOP").await;
        assert!(!sms_granted(&w, &mum).await);
        assert!(!sms_granted(&w, &son).await);
        assert_eq!(
            w.run_worker().await,
            1,
            "one confirmation to the shared phone"
        );
        let confirmations: Vec<_> = w
            .outbox()
            .into_iter()
            .filter(|m| m.to == "+13125550150")
            .collect();
        assert_eq!(confirmations.len(), 1);
    }
}

#[tokio::test]
async fn unclear_texts_wait_for_a_person_who_decides() {
    for w in world().await {
        let ana = w.patient("Ana", "0142").await;
        w.grant(&ana, "sms_notify", "care_messages").await;
        text(
            &w,
            "+13125550142",
            "Honestly I am done with this, thanks Rodrigo",
        )
        .await;
        let r = w.clinician(Req::get("/api/v1/inbound/reviews")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let reviews = r.json()["reviews"].as_array().unwrap().clone();
        assert_eq!(reviews.len(), 1, "{reviews:?}");
        assert_eq!(reviews[0]["patient_id"], ana.as_str());
        assert!(!reviews[0]["reasons"].as_array().unwrap().is_empty());
        assert!(
            !r.text.contains("Rodrigo") && !r.text.contains("Honestly"),
            "reviews carry rule names, not the text: {}",
            r.text
        );
        let id = reviews[0]["id"].as_str().unwrap();
        let r = w
            .clinician(
                Req::post(format!("/api/v1/inbound/reviews/{id}"))
                    .json(&json!({"decision": "maybe"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        let still_granted = sms_granted(&w, &ana).await;
        let r = w
            .clinician(
                Req::post(format!("/api/v1/inbound/reviews/{id}"))
                    .json(&json!({"decision": "opt_out"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert!(
            !sms_granted(&w, &ana).await,
            "revoked (granted before: {still_granted})"
        );
        w.run_worker().await;
        let to_ana: Vec<_> = w
            .outbox()
            .into_iter()
            .filter(|m| m.to == "+13125550142")
            .collect();
        assert_eq!(to_ana.len(), 1, "one confirmation: {to_ana:?}");
        let r = w.clinician(Req::get("/api/v1/inbound/reviews")).await;
        assert_eq!(r.json()["reviews"], json!([]));
        let r = w
            .clinician(
                Req::post(format!("/api/v1/inbound/reviews/{id}"))
                    .json(&json!({"decision": "opt_out"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "decided once");
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "inbound.review.decide", "success"), 1);
    }
}

#[tokio::test]
async fn an_opt_out_from_a_number_no_patient_holds_is_confirmed_once() {
    for w in world().await {
        text(&w, "+13125550777", "PARAR").await;
        let items = triage(&w).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["intent"], "optout");
        assert_eq!(w.run_worker().await, 1);
        let to_them: Vec<_> = w
            .outbox()
            .into_iter()
            .filter(|m| m.to == "+13125550777")
            .collect();
        assert_eq!(to_them.len(), 1, "{to_them:?}");
        assert!(
            to_them[0].body.contains("Ya no le enviaremos"),
            "{}",
            to_them[0].body
        );
        w.app.advance(time::Duration::minutes(10));
        assert_eq!(w.run_worker().await, 0, "never twice");
        // An ordinary text from an unknown number gets no reply.
        text(&w, "+13125550778", "Do you take new patients?").await;
        assert_eq!(w.run_worker().await, 0);
    }
}

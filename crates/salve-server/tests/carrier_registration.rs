//! Carrier registration help, on SQLite and PostgreSQL: the 10DLC / toll-free checklist is
//! computed from what the practice has published, its sample messages are its own saved replies
//! that plain SMS may carry (never a clinical one) plus the reviewed system messages, and only
//! admins and auditors may read it.

use axum::http::StatusCode;
use salve_core::permissions::Role;
use salve_server::HOST_COOKIE;
use salve_store::SessionStage;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};

mod common;
mod messaging_world;

use common::Req;
use messaging_world::{BASE, CLINICAL_TEXT, World};

const PATH: &str = "/api/v1/admin/carrier-registration";

fn done(checklist: &Value, key: &str) -> bool {
    checklist["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == key)
        .unwrap_or_else(|| panic!("no item {key} in {checklist}"))["done"]
        .as_bool()
        .unwrap()
}

fn samples(checklist: &Value, source: &str) -> Vec<String> {
    checklist["sample_messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == source)
        .map(|s| s["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_checklist_follows_what_the_practice_publishes_and_samples_only_sms_safe_replies() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;

        // A fresh practice (the other one: nothing published there): nothing is done, and the
        // draft replies say what is missing.
        let user = w.app.passwordless_user(w.app.other, Role::Admin).await;
        let other_admin = w
            .app
            .raw_session(user, w.app.other, SessionStage::Active)
            .await;
        let r = w
            .app
            .send(
                Req::get(PATH)
                    .header("cookie", format!("{HOST_COOKIE}={other_admin}"))
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let fresh = r.json();
        assert_eq!(fresh["kind"], "10dlc", "10DLC is the default");
        for key in [
            "messaging_settings",
            "consent_text",
            "consent_disclosures",
            "sample_templates",
            "help_and_opt_out_replies",
        ] {
            assert!(!done(&fresh, key), "{key}: {fresh}");
        }
        assert!(samples(&fresh, "template").is_empty());
        assert!(
            fresh["help_text"]
                .as_str()
                .unwrap()
                .contains("[office phone]")
        );

        // The main practice has the world's consent text, which lacks HELP and the rates.
        let r = w.admin(Req::get(format!("{PATH}?kind=10dlc"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let before = r.json();
        assert!(done(&before, "consent_text"));
        assert!(!done(&before, "consent_disclosures"), "{before}");
        assert!(!done(&before, "messaging_settings"));

        // The admin publishes settings, a complete consent text, two SMS-safe saved replies
        // and a clinical one.
        let r = w
            .admin(Req::put("/api/v1/practice/messaging").json(&json!({
                "sender_name": "Lakeside Clinic",
                "phone": "(312) 555-0100",
                "hours_text": "Mon-Fri 8am-5pm",
                "expected_reply_text": "within 1 business day",
                "on_call_number": null,
            })))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        let r = w
            .admin(Req::post("/api/v1/consent-texts").json(&json!({
                "version": "2026-12",
                "text": "I agree to get texts from Lakeside Clinic about my care. Message \
                         frequency varies. Msg & data rates may apply. Reply HELP for help, \
                         STOP to opt out. Plain texts are not encrypted.",
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        for (name, body) in [
            (
                "Reminder",
                "Hi {patient.first_name}, this is {practice.sender_name}: a reminder of your \
                 appointment on {appointment.date} at {appointment.time}. Call {practice.phone} \
                 to reschedule.",
            ),
            (
                "Call us",
                "Hi {patient.first_name}, please call the office when you get a chance.",
            ),
            ("Results", CLINICAL_TEXT),
        ] {
            let r = w
                .admin(Req::post("/api/v1/templates").json(&json!({"name": name, "body": body})))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }

        let r = w.admin(Req::get(format!("{PATH}?kind=toll_free"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let ready = r.json();
        assert_eq!(ready["kind"], "toll_free");
        for item in ready["items"].as_array().unwrap() {
            assert_eq!(item["done"], true, "{item}");
        }
        let from_templates = samples(&ready, "template");
        assert_eq!(
            from_templates,
            [
                "Hi [first name], please call the office when you get a chance.",
                "Hi [first name], this is Lakeside Clinic: a reminder of your appointment on \
                 [date] at [time]. Call (312) 555-0100 to reschedule.",
            ]
        );
        assert!(!r.text.contains("metformin") && !r.text.contains("A1C"));
        let system = samples(&ready, "system_message");
        assert!(
            system.contains(&format!(
                "New secure message from Lakeside Clinic: {BASE}/p/SAMPLE-LINK-NOT-VALID"
            )),
            "{system:?}"
        );
        assert_eq!(
            ready["help_text"],
            "Lakeside Clinic: For help, call (312) 555-0100 (Mon-Fri 8am-5pm). Msg & data rates \
             may apply. Reply STOP to opt out. If this is an emergency, call 911."
        );
        assert!(
            ready["opt_out_text"]
                .as_str()
                .unwrap()
                .starts_with("Lakeside Clinic: You are unsubscribed")
        );
        let flow = ready["opt_in_description"].as_str().unwrap();
        assert!(flow.contains("version 2026-12"), "{flow}");
        let keys: Vec<&str> = ready["form_answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap())
            .collect();
        assert!(keys.contains(&"opt_in_type") && keys.contains(&"message_volume"));

        // A kind Salve does not know is a problem document naming the field.
        let r = w.admin(Req::get(format!("{PATH}?kind=short_code"))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(
            r.headers["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        assert!(r.text.contains("kind"), "{}", r.text);

        // Auditors may read it; front-desk staff and clinicians may not.
        let (_, auditor) = messaging_world::session(&w.app, Role::Auditor).await;
        let r = w.as_staff(&auditor, Req::get(PATH)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let (_, staff) = messaging_world::session(&w.app, Role::Staff).await;
        let r = w.as_staff(&staff, Req::get(PATH)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = w.clinician(Req::get(PATH)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
}

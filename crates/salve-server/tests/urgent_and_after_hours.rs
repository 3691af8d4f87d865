//! A patient's text after hours and in an emergency, on SQLite and PostgreSQL, with the manual
//! clock: the after-hours reply goes at once (not held by quiet hours), once per conversation
//! per 12 hours; emergency guidance goes to every text that suggests an emergency, whatever the
//! consent state and the hour, even right after an after-hours reply, once; the conversation
//! is flagged urgent until a staff member replies.

use axum::http::StatusCode;
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::OffsetDateTime;

mod common;
mod messaging_world;

use common::Req;
use messaging_world::World;

fn chicago(local: &str) -> OffsetDateTime {
    let dt: jiff::civil::DateTime = local.parse().unwrap();
    let ts = dt
        .to_zoned(jiff::tz::TimeZone::get("America/Chicago").unwrap())
        .unwrap()
        .timestamp();
    OffsetDateTime::from_unix_timestamp(ts.as_second()).unwrap()
}

struct Office {
    w: World,
}

impl Office {
    /// Mon-Fri 09:00-17:00 in Chicago, texts through the demo outbox.
    async fn new(db: TestDatabase) -> Self {
        let w = World::new(db).await;
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "local_outbox", "label": "Demo outbox", "credentials": {},
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let r = w
            .admin(Req::put("/api/v1/practice/messaging").json(&json!({
                "sender_name": "Lakeside Clinic",
                "phone": "(312) 555-0100",
                "hours_text": "weekdays",
                "expected_reply_text": "within 1 business day",
                "on_call_number": "(312) 555-0199",
            })))
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        let day = json!([{"start": "09:00", "end": "17:00"}]);
        let r = w
            .admin(Req::put("/api/v1/practice/office-hours").json(&json!({
                "weekly": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day},
            })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        Self { w }
    }

    fn at(&self, local: &str) {
        self.w.app.clock.set(chicago(local));
    }

    async fn text_from(&self, last4: &str, text: &str) {
        let (_, admin) = messaging_world::session(&self.w.app, Role::Admin).await;
        let r = self
            .w
            .as_staff(
                &admin,
                Req::post("/api/v1/admin/outbox/inbound").json(&json!({
                    "from": format!("+1312555{last4}"), "text": text,
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        // The worker runs at the same instant: nothing here waits for quiet hours to end.
        salve_server::worker::run_once(&self.w.worker, "w")
            .await
            .unwrap();
    }

    fn texts_to(&self, last4: &str) -> Vec<String> {
        let to = format!("+1312555{last4}");
        self.w
            .outbox()
            .into_iter()
            .filter(|r| r.to == to)
            .map(|r| r.body)
            .collect()
    }

    async fn api(&self, req: Req) -> common::Reply {
        self.w.app.send(req.bearer(&self.w.app.token)).await
    }

    async fn urgent_conversations(&self) -> Vec<Value> {
        let r = self
            .api(Req::get("/api/v1/conversations?urgent=true"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()["conversations"].as_array().unwrap().clone()
    }
}

fn after_hours(text: &str) -> bool {
    text.contains("Our office is closed now")
}

fn guidance(text: &str) -> bool {
    text.contains(
        "If this is an emergency, call 911. For a mental health crisis, call or text 988.",
    )
}

#[tokio::test]
async fn the_after_hours_reply_goes_at_once_and_once_per_twelve_hours() {
    for db in TestDatabase::all().await {
        let o = Office::new(db).await;
        let ivy = o.w.patient("Ivy", "0150").await;
        o.w.grant(&ivy, "sms_plain", "care_messages").await;

        // Wednesday 23:00, inside the quiet hours: the reply goes at once.
        o.at("2026-11-25T23:00");
        o.text_from("0150", "Can I get a refill of my usual prescription?")
            .await;
        let texts = o.texts_to("0150");
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(after_hours(&texts[0]), "{}", texts[0]);
        assert!(texts[0].contains("Mon-Fri 9am-5pm"), "{}", texts[0]);
        assert!(texts[0].contains("(312) 555-0199"), "{}", texts[0]);
        // Another text the same night: no second reply.
        o.at("2026-11-25T23:30");
        o.text_from("0150", "Also my address changed").await;
        assert_eq!(o.texts_to("0150").len(), 1);
        // Within office hours: no reply at all.
        o.at("2026-11-26T10:00");
        o.text_from("0150", "Thanks").await;
        assert_eq!(o.texts_to("0150").len(), 1);
        // Friday 23:00 again a reply; Saturday 10:59 (under 12 hours) none; 11:00 one more.
        o.at("2026-11-27T23:00");
        o.text_from("0150", "Question about my bill").await;
        assert_eq!(o.texts_to("0150").len(), 2);
        o.at("2026-11-28T10:59");
        o.text_from("0150", "Hello?").await;
        assert_eq!(o.texts_to("0150").len(), 2);
        o.at("2026-11-28T11:00");
        // (Not "Anyone there?": the urgency model flags that bare question, a false alarm the
        // emergency path answers; this test is about the after-hours reply.)
        o.text_from("0150", "Are you open on Monday?").await;
        let texts = o.texts_to("0150");
        assert_eq!(texts.len(), 3);
        assert!(texts.iter().all(|t| after_hours(t)), "{texts:?}");

        // No SMS consent: no after-hours reply (staff still see the text).
        let joe = o.w.patient("Joe", "0151").await;
        o.at("2026-11-28T23:00");
        o.text_from("0151", "When do you open?").await;
        assert!(o.texts_to("0151").is_empty());
        let r = o
            .api(Req::get(format!("/api/v1/conversations?patient={joe}")))
            .await;
        assert_eq!(r.json()["conversations"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn an_emergency_gets_guidance_once_whatever_the_consent_and_the_hour() {
    for db in TestDatabase::all().await {
        let o = Office::new(db).await;
        let hal = o.w.patient("Hal", "0160").await;
        o.w.grant(&hal, "sms_plain", "care_messages").await;

        // After hours: a routine text gets the after-hours reply...
        o.at("2026-11-25T23:00");
        o.text_from("0160", "need to talk to the nurse tomorrow")
            .await;
        // ...then the patient opts out (one confirmation)...
        o.at("2026-11-25T23:02");
        o.text_from("0160", "STOP").await;
        let before = o.texts_to("0160");
        assert_eq!(before.len(), 2, "{before:?}");
        assert!(after_hours(&before[0]));
        // ...and then texts an emergency: the guidance goes anyway, once, and nothing else.
        o.at("2026-11-25T23:05");
        o.text_from("0160", "my chest hurts really bad and i cant breathe")
            .await;
        let texts = o.texts_to("0160");
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(guidance(&texts[2]), "{}", texts[2]);
        assert!(texts[2].contains("(312) 555-0199"));
        assert_eq!(texts.iter().filter(|t| guidance(t)).count(), 1);

        // Flagged urgent for staff, until a staff member replies.
        let urgent = o.urgent_conversations().await;
        assert_eq!(urgent.len(), 1, "{urgent:?}");
        assert_eq!(urgent[0]["patient_id"], hal.as_str());
        assert_eq!(urgent[0]["urgent"], true);
        let r = o
            .api(
                Req::post(format!("/api/v1/patients/{hal}/messages")).json(&json!({
                    "text": "We are calling you now.", "kind": "administrative"
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert!(o.urgent_conversations().await.is_empty());

        // In Spanish, during office hours, from a number no patient holds: still the guidance.
        o.at("2026-11-26T10:00");
        o.text_from("0199", "me quiero morir, tomé muchas pastillas")
            .await;
        let texts = o.texts_to("0199");
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains("988"), "{}", texts[0]);
        assert!(
            texts[0].contains("Si es una emergencia, llame al 911"),
            "{}",
            texts[0]
        );

        // A look-alike is not an emergency.
        o.text_from("0160", "dying to know my chest x-ray results lol")
            .await;
        assert_eq!(o.texts_to("0160").iter().filter(|t| guidance(t)).count(), 1);
        let audit = o.w.app.practice_audit().await;
        assert_eq!(
            common::count(&audit, "emergency_reply.blocked", "failure"),
            0
        );
    }
}

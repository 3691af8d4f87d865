//! Response-time promises, on SQLite and PostgreSQL, with the manual clock. The office is open
//! Monday to Friday 09:00-17:00 in Chicago, Monday 7 December 2026 is a holiday, and the target
//! is four business hours: a text on Friday 4 December at 16:00 is overdue on Tuesday at
//! 12:00, not before. Escalation happens once per waiting episode (emailed without content);
//! a system reply does not end the wait, a staff reply does. The report's median and 90th
//! percentile are checked on fixed data; front desk cannot change the hours, the auditor can
//! read the report.

use axum::http::StatusCode;
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

mod common;
mod messaging_world;

use common::{Req, count};
use messaging_world::{SAFE_TEXT, World, session};
use salve_store::SessionStage;

/// Friday 2026-12-04 16:00 in Chicago (UTC-6).
const FRIDAY_4PM: OffsetDateTime = datetime!(2026-12-04 22:00 UTC);

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
                "sender_name": "Lakeside", "phone": "(312) 555-0100", "hours_text": "Mon-Fri 9am-5pm",
                "expected_reply_text": "within 4 business hours",
            })))
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        let nine_to_five = json!([{"start": "09:00", "end": "17:00"}]);
        let r = w
            .admin(Req::put("/api/v1/practice/office-hours").json(&json!({
                "weekly": {
                    "mon": nine_to_five, "tue": nine_to_five, "wed": nine_to_five,
                    "thu": nine_to_five, "fri": nine_to_five,
                },
                "holidays": [{"date": "2026-12-07", "name": "Staff training day"}],
            })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let view = r.json();
        assert_eq!(view["time_zone"], "America/Chicago", "the practice's zone");
        assert_eq!(view["hours_text_en"], "Mon-Fri 9am-5pm");
        assert_eq!(view["hours_text_es"], "lun. a vie., 9 a 17 h");
        let r = w
            .admin(Req::put("/api/v1/practice/response-settings").json(&json!({
                "target_minutes": 240, "escalation_recipients": [w.clinician_id],
            })))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        worlds.push(w);
    }
    worlds
}

/// A request from a fresh admin (the test's clock jumps by days: sessions made at the start
/// would have expired).
async fn admin(w: &World, req: Req) -> common::Reply {
    let (_, cookie) = session(&w.app, Role::Admin).await;
    w.as_staff(&cookie, req).await
}

/// A request from the clinician who receives escalations, with a session made now.
async fn clinician(w: &World, req: Req) -> common::Reply {
    let cookie = w
        .app
        .raw_session(
            w.clinician_id.parse().unwrap(),
            w.app.practice,
            SessionStage::Active,
        )
        .await;
    w.as_staff(&cookie, req).await
}

async fn inbox(w: &World, query: &str) -> Vec<Value> {
    let r = clinician(w, Req::get(format!("/api/v1/conversations{query}"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["conversations"].as_array().unwrap().clone()
}

/// The patient (phone `+1312555{last4}`) texts at `at`.
async fn text_at(w: &World, at: OffsetDateTime, last4: &str, body: &str) {
    w.app.clock.set(at);
    let r = admin(
        w,
        Req::post("/api/v1/admin/outbox/inbound")
            .json(&json!({"from": format!("+1312555{last4}"), "text": body})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

/// The clinician replies at `at` (through the portal: no consent needed).
async fn reply_at(w: &World, at: OffsetDateTime, patient: &str) {
    w.app.clock.set(at);
    let r = clinician(
        w,
        Req::post(format!("/api/v1/patients/{patient}/messages")).json(&json!({"text": SAFE_TEXT})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn conversation_of(w: &World, patient: &str) -> Value {
    let list = inbox(w, &format!("?patient={patient}")).await;
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].clone()
}

async fn escalate(w: &World, at: OffsetDateTime) -> usize {
    w.app.clock.set(at);
    salve_server::escalation::run_once(&w.worker).await.unwrap()
}

fn escalation_emails(w: &World) -> Vec<salve_channels::OutboxRecord> {
    w.outbox()
        .into_iter()
        .filter(|r| r.subject.as_deref() == Some(salve_server::escalation::SUBJECT))
        .collect()
}

#[tokio::test]
async fn overdue_counts_business_hours_only_and_escalates_once_per_wait() {
    for w in world().await {
        let ana = w.patient("Ana", "0142").await;
        text_at(&w, FRIDAY_4PM, "0142", "Can someone call me about my bill?").await;
        // A HELP text gets Salve's fixed system reply: a system message, not a response.
        text_at(&w, FRIDAY_4PM + time::Duration::minutes(5), "0142", "HELP").await;
        let conv = conversation_of(&w, &ana).await;
        let conv_id = conv["id"].as_str().unwrap().to_owned();
        let detail = clinician(&w, Req::get(format!("/api/v1/conversations/{conv_id}")))
            .await
            .json();
        assert!(
            detail["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["direction"] == "system"),
            "a system reply is in the conversation: {detail}"
        );
        assert_eq!(conv["waiting_since"], "2026-12-04T22:00:00Z");

        // 1 business hour on Friday, none on the weekend or the Monday holiday, 3 on Tuesday.
        for not_yet in [
            datetime!(2026-12-04 23:00 UTC), // Friday 17:00
            datetime!(2026-12-05 18:00 UTC), // Saturday noon
            datetime!(2026-12-07 18:00 UTC), // Monday noon, the holiday
            datetime!(2026-12-08 17:59 UTC), // Tuesday 11:59
        ] {
            assert_eq!(escalate(&w, not_yet).await, 0, "{not_yet}");
            let conv = conversation_of(&w, &ana).await;
            assert_eq!(conv["overdue"], false, "{not_yet}");
            assert!(inbox(&w, "?overdue=true").await.is_empty(), "{not_yet}");
        }
        assert!(escalation_emails(&w).is_empty());

        // Tuesday 12:00: overdue, escalated once, emailed to the chosen clinician only.
        let noon = datetime!(2026-12-08 18:00 UTC);
        assert_eq!(escalate(&w, noon).await, 1);
        assert_eq!(
            escalate(&w, noon).await,
            0,
            "a second run escalates nothing"
        );
        assert_eq!(
            escalate(&w, noon + time::Duration::days(1)).await,
            0,
            "nor does time moving on"
        );
        let emails = escalation_emails(&w);
        assert_eq!(emails.len(), 1, "{emails:?}");
        let clinician_email = w
            .app
            .store
            .user_profile(w.clinician_id.parse().unwrap())
            .await
            .unwrap()
            .email;
        assert_eq!(
            &emails[0].to,
            clinician_email.expose(),
            "the chosen clinician"
        );
        assert!(
            emails[0].body.contains("/inbox?overdue=true"),
            "{}",
            emails[0].body
        );
        for secret in ["Ana", "bill", &conv_id, &ana] {
            assert!(!emails[0].body.contains(secret), "content-free: {secret}");
        }
        let overdue = inbox(&w, "?overdue=true").await;
        assert_eq!(overdue.len(), 1);
        assert_eq!(overdue[0]["id"], conv_id.as_str());
        assert_eq!(overdue[0]["overdue"], true);
        assert_eq!(overdue[0]["escalated"], true);
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "response.escalate", "success"), 1);

        // A staff reply ends the wait.
        reply_at(&w, datetime!(2026-12-09 19:00 UTC), &ana).await;
        let conv = conversation_of(&w, &ana).await;
        assert_eq!(conv["waiting_since"], Value::Null);
        assert_eq!(conv["overdue"], false);
        assert_eq!(conv["escalated"], false);
        assert!(inbox(&w, "?overdue=true").await.is_empty());

        // A new message is a new wait: Wednesday 14:00 -> Thursday 10:00 is four business hours.
        text_at(
            &w,
            datetime!(2026-12-09 20:00 UTC),
            "0142",
            "One more question",
        )
        .await;
        assert_eq!(escalate(&w, datetime!(2026-12-10 15:59 UTC)).await, 0);
        assert_eq!(escalate(&w, datetime!(2026-12-10 16:00 UTC)).await, 1);
        assert_eq!(escalate(&w, datetime!(2026-12-10 16:00 UTC)).await, 0);
        assert_eq!(escalation_emails(&w).len(), 2);
        // A closed conversation is not overdue.
        let r = clinician(
            &w,
            Req::put(format!("/api/v1/conversations/{conv_id}/state"))
                .json(&json!({"state": "closed"})),
        )
        .await;
        assert!(r.status.is_success(), "{}", r.text);
        assert!(inbox(&w, "?overdue=true").await.is_empty());
    }
}

#[tokio::test]
async fn median_and_p90_of_first_responses_on_fixed_data() {
    for w in world().await {
        let thu = |h: i64, m: i64| {
            datetime!(2026-12-03 15:00 UTC)
                + time::Duration::hours(h - 9)
                + time::Duration::minutes(m)
        };
        let patients = [
            ("Ana", "0101"),
            ("Ben", "0102"),
            ("Cal", "0103"),
            ("Dee", "0104"),
            ("Eve", "0105"),
            ("Fay", "0106"),
        ];
        let mut ids = Vec::new();
        for (name, last4) in patients {
            ids.push(w.patient(name, last4).await);
        }
        // Thursday 10:00 texts answered after 15, 30 and 60 minutes.
        text_at(&w, thu(10, 0), "0101", "question").await;
        text_at(
            &w,
            thu(10, 0) + time::Duration::seconds(1),
            "0102",
            "question",
        )
        .await;
        text_at(
            &w,
            thu(10, 0) + time::Duration::seconds(2),
            "0103",
            "question",
        )
        .await;
        text_at(
            &w,
            thu(10, 0) + time::Duration::seconds(3),
            "0106",
            "never answered",
        )
        .await;
        reply_at(&w, thu(10, 15), &ids[0]).await;
        reply_at(&w, thu(10, 30) + time::Duration::seconds(1), &ids[1]).await;
        reply_at(&w, thu(11, 0) + time::Duration::seconds(2), &ids[2]).await;
        // Thursday 16:30 -> Friday 09:30: 30 + 30 business minutes.
        text_at(&w, thu(16, 30), "0104", "question").await;
        reply_at(&w, datetime!(2026-12-04 15:30 UTC), &ids[3]).await;
        // Friday 16:00 -> Tuesday 10:00 across the weekend and the holiday: 1 + 1 hours.
        text_at(&w, FRIDAY_4PM, "0105", "question").await;
        reply_at(&w, datetime!(2026-12-08 16:00 UTC), &ids[4]).await;

        // Durations 900, 1800, 3600, 3600, 7200: nearest rank 3 and 5.
        let (_, auditor) = session(&w.app, Role::Auditor).await;
        let r = w
            .as_staff(
                &auditor,
                Req::get(
                    "/api/v1/reports/response-time?from=2026-11-30T00:00:00Z&to=2026-12-07T00:00:00Z",
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            r.json(),
            json!({
                "episodes": 6, "answered": 5, "median_seconds": 3600, "p90_seconds": 7200,
                "overdue_now": 1,
            })
        );
        // Only Fay's wait is overdue now.
        let overdue = inbox(&w, "?overdue=true").await;
        assert_eq!(overdue.len(), 1, "{overdue:?}");
        assert_eq!(overdue[0]["patient_id"], ids[5].as_str());
        // A period with Friday's wait only.
        let r = admin(
            &w,
            Req::get(
                "/api/v1/reports/response-time?from=2026-12-04T21:00:00Z&to=2026-12-05T00:00:00Z",
            ),
        )
        .await;
        assert_eq!(
            r.json(),
            json!({
                "episodes": 1, "answered": 1, "median_seconds": 7200, "p90_seconds": 7200,
                "overdue_now": 1,
            })
        );
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "report.response_time.read", "success"), 2);
        let r = admin(
            &w,
            Req::get("/api/v1/reports/response-time?from=yesterday&to=2026-12-05T00:00:00Z"),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.json()["errors"][0]["field"], "from");
    }
}

#[tokio::test]
async fn settings_belong_to_the_admin_and_bad_input_names_the_field() {
    for w in world().await {
        let (_, front_desk) = session(&w.app, Role::Staff).await;
        let (auditor_id, auditor) = session(&w.app, Role::Auditor).await;
        let hours = json!({"weekly": {"mon": [{"start": "08:00", "end": "12:00"}]}});
        for cookie in [&front_desk, &auditor, &w.clinician] {
            let r = w
                .as_staff(
                    cookie,
                    Req::put("/api/v1/practice/office-hours").json(&hours),
                )
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        }
        let r = w
            .as_staff(&front_desk, Req::get("/api/v1/reports/response-time?from=2026-11-30T00:00:00Z&to=2026-12-07T00:00:00Z"))
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "front desk reads no report"
        );
        let r = w
            .app
            .send(Req::get("/api/v1/practice/office-hours").bearer(&w.app.token))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "tokens do not administer");

        let r = w
            .admin(Req::put("/api/v1/practice/office-hours").json(&json!({
                "time_zone": "America/Chicago",
                "weekly": {"mon": [{"start": "08:00", "end": "12:00"}, {"start": "11:00", "end": "17:00"}]},
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.json()["errors"][0]["field"], "weekly.mon[1]");
        let r = w
            .admin(Req::put("/api/v1/practice/office-hours").json(&json!({
                "time_zone": "Mars/Olympus", "weekly": {"tue": [{"start": "9am", "end": "17:00"}]},
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        let fields: Vec<Value> = r.json()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].clone())
            .collect();
        assert_eq!(
            fields,
            vec![json!("weekly.tue[0].start"), json!("time_zone")]
        );
        // The earlier hours are unchanged.
        let r = w.admin(Req::get("/api/v1/practice/office-hours")).await;
        assert_eq!(r.json()["weekly"]["fri"][0]["end"], "17:00");
        assert_eq!(r.json()["holidays"][0]["date"], "2026-12-07");

        let r = w
            .admin(Req::put("/api/v1/practice/response-settings").json(&json!({
                "target_minutes": 120, "escalation_recipients": [auditor_id],
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.json()["errors"][0]["field"], "escalation_recipients");
        let r = w
            .admin(Req::put("/api/v1/practice/response-settings").json(&json!({
                "target_minutes": 0, "escalation_recipients": [],
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.json()["errors"][0]["field"], "target_minutes");
        let r = w
            .admin(Req::get("/api/v1/practice/response-settings"))
            .await;
        assert_eq!(
            r.json(),
            json!({"target_minutes": 240, "escalation_recipients": [w.clinician_id]})
        );
        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "practice.hours.update", "success"), 1);
        assert_eq!(
            count(&audit, "practice.response_settings.update", "success"),
            1
        );
    }
}

#[tokio::test]
async fn patients_see_the_promised_reply_time_or_when_the_office_reopens() {
    for w in world().await {
        // Wednesday 25 November, 09:00 in Chicago: open.
        let ana = w.patient("Ana", "0142").await;
        w.grant(&ana, "sms_notify", "care_messages").await;
        w.sent_message(&ana, json!({"text": messaging_world::CLINICAL_TEXT}))
            .await;
        assert_eq!(w.run_worker().await, 1);
        let patient = w.portal_session_from_last_notification().await;
        assert_eq!(
            expected_reply(&w, &patient).await,
            json!({"open": true, "text": "We usually reply within 4 business hours.", "reopens_at": null})
        );
        // The office now opens on Thursdays and Fridays only: closed until Thursday 09:00.
        let nine_to_five = json!([{"start": "09:00", "end": "17:00"}]);
        let r = w
            .admin(Req::put("/api/v1/practice/office-hours").json(&json!({
                "weekly": {"thu": nine_to_five, "fri": nine_to_five},
            })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            expected_reply(&w, &patient).await,
            json!({
                "open": false,
                "text": "Our office is closed now and reopens Thu 9am. We will reply within 4 business \
                         hours after that. If this is an emergency, call 911.",
                "reopens_at": "2026-11-26T15:00:00Z",
            })
        );
    }
}

async fn expected_reply(w: &World, patient_cookie: &str) -> Value {
    let r = w
        .app
        .send(
            Req::get("/api/v1/portal/me")
                .header("cookie", patient_cookie.to_owned())
                .same_origin(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["expected_reply"].clone()
}

#[tokio::test]
async fn the_after_hours_reply_log_feeds_the_twelve_hour_rule() {
    use salve_core::hours::after_hours_reply_due;
    for w in world().await {
        let ana = w.patient("Ana", "0142").await;
        let friday_night = datetime!(2026-12-05 02:00 UTC); // Friday 20:00 Chicago
        text_at(&w, friday_night, "0142", "Are you open tomorrow?").await;
        let conv: salve_core::ConversationId = conversation_of(&w, &ana).await["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let hours = w.app.store.office_hours(w.app.practice).await.unwrap();
        assert!(hours.is_some());
        let last = w.app.store.last_after_hours_reply(conv).await.unwrap();
        assert_eq!(last, None);
        assert!(after_hours_reply_due(hours.as_ref(), last, friday_night));
        w.app
            .store
            .record_after_hours_reply(conv, friday_night)
            .await
            .unwrap();
        let last = w.app.store.last_after_hours_reply(conv).await.unwrap();
        assert_eq!(last, Some(friday_night));
        let later = friday_night + time::Duration::hours(11);
        assert!(!after_hours_reply_due(hours.as_ref(), last, later));
        let next_day = friday_night + time::Duration::hours(12);
        assert!(after_hours_reply_due(hours.as_ref(), last, next_day));
        w.app
            .store
            .record_after_hours_reply(conv, next_day)
            .await
            .unwrap();
        assert_eq!(
            w.app.store.last_after_hours_reply(conv).await.unwrap(),
            Some(next_day),
            "one row per conversation, moved forward"
        );
        // During office hours no reply is due.
        assert!(!after_hours_reply_due(
            hours.as_ref(),
            None,
            datetime!(2026-12-08 16:00 UTC)
        ));
    }
}

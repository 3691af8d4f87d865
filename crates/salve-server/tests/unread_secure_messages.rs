//! Unread secure messages, on SQLite and PostgreSQL with the manual clock: a patient who has
//! not opened a secure message gets one reminder after the practice's delay (3 days unless
//! changed) with a fresh link, the old link revoked; no second reminder, however often the
//! worker runs; still unread the same delay later, the practice admins get one content-free
//! email, audited; a message the patient read gets nothing; a patient who revoked consent
//! meanwhile gets no reminder (the outbox cancels it at claim).

use axum::http::StatusCode;
use salve_channels::{Channel, OutboxRecord};
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::Duration;

mod common;
mod messaging_world;

use common::Req;
use messaging_world::{CLINICAL_TEXT, World};

fn token_of(notification: &OutboxRecord) -> String {
    notification
        .body
        .rsplit("/p/")
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

/// Opens the link and proves the birth date, as the patient would: 202 (a code was sent) for a
/// live link, 410 for an expired or revoked one.
async fn open_link(w: &World, token: &str) -> StatusCode {
    let r = w.app.send(Req::get(format!("/p/{token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = w
        .app
        .send(
            Req::post("/api/v1/portal/birth-date")
                .header("cookie", messaging_world::first_cookie(&r))
                .same_origin()
                .json(&json!({"birth_date": messaging_world::BIRTH_DATE})),
        )
        .await;
    r.status
}

async fn count(w: &World, sql: &str, bind: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(bind.to_owned())
        .fetch_one(w.app.store.pool_for_tests())
        .await
        .unwrap()
}

async fn audited(w: &World, action: &str) -> i64 {
    count(
        w,
        "SELECT COUNT(*) FROM audit_events WHERE action = $1",
        action,
    )
    .await
}

fn assert_content_free(text: &str) {
    for word in [
        "A1C",
        "7.2",
        "metformin",
        "dose",
        "Ana",
        "Quintanilla",
        "5550142",
    ] {
        assert!(!text.contains(word), "{word} in {text}");
    }
}

/// A secure message sent to a new patient with SMS notification consent, announced by one
/// notification the worker sent.
async fn announced(w: &World, given: &str, last4: &str) -> (String, Value) {
    let patient = w.patient(given, last4).await;
    w.grant(&patient, "sms_notify", "care_messages").await;
    let sent = w
        .sent_message(&patient, json!({"text": CLINICAL_TEXT}))
        .await;
    assert_eq!(sent["delivery"], "secure_with_notification", "{sent}");
    let before = w.outbox().len();
    assert_eq!(w.run_worker().await, 1);
    assert_eq!(w.outbox().len(), before + 1);
    (patient, sent)
}

#[tokio::test]
async fn an_unread_secure_message_gets_one_reminder_then_admins_one_alert() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let (_ana, sent) = announced(&w, "Ana", "0142").await;
        let message = sent["id"].as_str().unwrap().to_owned();
        let first = w.outbox()[0].clone();

        // Not before the delay.
        w.app.advance(Duration::hours(71));
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 1);

        // After 3 days: one reminder, same wording and contact point, a new link.
        w.app.advance(Duration::hours(1));
        assert_eq!(w.run_worker().await, 2, "the reminder is queued and sent");
        let out = w.outbox();
        assert_eq!(out.len(), 2);
        let reminder = &out[1];
        assert!(matches!(reminder.channel, Channel::Sms));
        assert_eq!(reminder.to, first.to);
        assert!(
            reminder.body.starts_with("New secure message from "),
            "{}",
            reminder.body
        );
        assert_content_free(&reminder.body);
        assert_ne!(token_of(reminder), token_of(&first));
        assert_eq!(audited(&w, "secure_message.reminder").await, 1);
        // The first link is revoked (not merely expired), the new one is live and the message's.
        assert_eq!(
            count(
                &w,
                "SELECT COUNT(*) FROM secure_links WHERE message_id = $1 AND revoked_at IS NOT NULL",
                &message
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &w,
                "SELECT COUNT(*) FROM secure_links WHERE message_id = $1 AND revoked_at IS NULL",
                &message
            )
            .await,
            1
        );
        assert_eq!(open_link(&w, &token_of(&first)).await, StatusCode::GONE);

        // Never a second reminder.
        assert_eq!(w.run_worker().await, 0);
        w.app.advance(Duration::hours(48));
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 2);

        // Still unread 3 days after the reminder: the admins get one content-free email.
        w.app.advance(Duration::hours(24));
        assert_eq!(w.run_worker().await, 1);
        let out = w.outbox();
        assert_eq!(out.len(), 3, "one admin, one email");
        let email = &out[2];
        assert!(matches!(email.channel, Channel::Email));
        assert_eq!(
            email.subject.as_deref(),
            Some(salve_server::unread::SUBJECT)
        );
        assert!(
            email.body.starts_with(
                "A patient has not opened a secure message sent 6 days ago. Open the inbox: "
            ),
            "{}",
            email.body
        );
        assert!(email.body.ends_with("/inbox"), "{}", email.body);
        assert_content_free(&email.body);
        assert!(!email.body.contains(&message));
        assert!(!email.body.contains(&first.to));
        assert_eq!(audited(&w, "secure_message.unread_alert").await, 1);
        assert_eq!(audited(&w, "notification.sent").await, 1);

        // Once.
        assert_eq!(w.run_worker().await, 0);
        w.app.advance(Duration::days(10));
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 3);
        assert_eq!(audited(&w, "secure_message.reminder").await, 1);
        assert_eq!(audited(&w, "secure_message.unread_alert").await, 1);
    }
}

#[tokio::test]
async fn a_read_message_gets_no_reminder() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let (_bea, sent) = announced(&w, "Bea", "0143").await;
        let patient = w.portal_session_from_last_notification().await;
        let seen = w.portal_conversations(&patient).await;
        assert!(seen.to_string().contains(CLINICAL_TEXT), "{seen}");
        let out = w.outbox().len();

        w.app.advance(Duration::days(4));
        assert_eq!(w.run_worker().await, 0);
        w.app.advance(Duration::days(4));
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), out, "no reminder, no alert");
        assert_eq!(audited(&w, "secure_message.reminder").await, 0);
        assert_eq!(audited(&w, "secure_message.unread_alert").await, 0);
        assert_eq!(
            count(
                &w,
                "SELECT COUNT(*) FROM messages WHERE id = $1 AND patient_read_at IS NOT NULL",
                sent["id"].as_str().unwrap()
            )
            .await,
            1
        );
    }
}

#[tokio::test]
async fn revoked_consent_stops_the_reminder_in_the_outbox() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let (cy, sent) = announced(&w, "Cy", "0144").await;
        w.revoke(&cy, "sms_notify", "care_messages").await;

        w.app.advance(Duration::days(3));
        w.run_worker().await;
        assert_eq!(w.outbox().len(), 1, "no reminder sent");
        // The reminder was recorded (once) and its job cancelled when the worker claimed it.
        assert_eq!(audited(&w, "secure_message.reminder").await, 1);
        assert_eq!(
            count(
                &w,
                "SELECT COUNT(*) FROM outbox_jobs WHERE message_id = $1 AND status = 'cancelled'",
                sent["id"].as_str().unwrap()
            )
            .await,
            1
        );
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 1);
    }
}

#[tokio::test]
async fn the_practice_delay_applies_and_a_reminder_is_recorded_once() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let settings = "/api/v1/practice/unread-settings";
        let r = w.admin(Req::get(settings)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["delay_hours"], 72, "3 days unless changed");
        let r = w
            .clinician(Req::put(settings).json(&json!({"delay_hours": 24})))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "admins only: {}", r.text);
        for bad in [0, 24 * 31] {
            let r = w
                .admin(Req::put(settings).json(&json!({"delay_hours": bad})))
                .await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        }
        let r = w
            .admin(Req::put(settings).json(&json!({"delay_hours": 24})))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(w.admin(Req::get(settings)).await.json()["delay_hours"], 24);
        assert_eq!(audited(&w, "practice.unread_settings").await, 1);

        let (_dee, _sent) = announced(&w, "Dee", "0145").await;
        let first = w.outbox()[0].clone();

        w.app.advance(Duration::hours(24));
        // Two instances finding the same message due: the first records the reminder, the
        // second changes nothing.
        let due = w.app.store.unread_secure_messages_due().await.unwrap();
        assert_eq!(due.len(), 1);
        let token = salve_crypto::token::mint("p");
        let body = salve_core::Sensitive::new(format!("New secure message: x/p/{}", "t"));
        assert!(
            w.app
                .store
                .remind_unread(&due[0], &token.hash, &body, 3600)
                .await
                .unwrap()
        );
        let again = salve_crypto::token::mint("p");
        assert!(
            !w.app
                .store
                .remind_unread(&due[0], &again.hash, &body, 3600)
                .await
                .unwrap()
        );
        assert_eq!(audited(&w, "secure_message.reminder").await, 1);
        assert!(
            w.app
                .store
                .unread_secure_messages_due()
                .await
                .unwrap()
                .is_empty()
        );

        // The first link would still be live after one day: it is revoked, not expired.
        assert_eq!(open_link(&w, &token_of(&first)).await, StatusCode::GONE);
        assert_eq!(
            open_link(&w, token.secret.as_str()).await,
            StatusCode::ACCEPTED
        );
    }
}

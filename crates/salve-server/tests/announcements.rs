//! General practice announcements end to end, on SQLite and PostgreSQL.
//!
//! An announcement to 1,000 patients reaches exactly those with written `announcements`
//! consent, once each: scheduled at 20:50 in the patients' zone, what is queued after 21:00
//! waits for 08:00 (manual clock); a patient who opts out after their message was queued, and
//! one who opts out before their turn, get nothing; the progress counts match the local
//! outbox; audit rows carry ids only. Then a text the policy keeps secure goes out as
//! content-free notifications through a (fake) Twilio number, spaced by the per-number rate
//! limit (one a second on the server's clock), to exactly as many patients as the preview
//! said; who may send; bad input; cancel. Last, recipients chosen by provider, location and
//! upcoming visit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use salve_core::audit::RequestContext;
use salve_core::consent::{
    ConsentAction, ConsentChannel, ConsentEventInput, ConsentMethod, ConsentPurpose, ConsentTextRef,
};
use salve_core::patient::{Contact, ContactKind, ContactRole, PatientRecord};
use salve_core::permissions::{Principal, Role};
use salve_core::{PatientId, Sensitive};
use salve_server::AppState;
use salve_store::Recorder;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::macros::{date, datetime};

mod common;
mod messaging_world;

use common::{AuditRow, Req, count};
use messaging_world::{World, session};

const ANNOUNCEMENT: &str = "Our office is closed on Friday. Have a great weekend!";
const SECURE_ANNOUNCEMENT: &str =
    "Our diabetes support group meets Thursday evening in the main office.";

fn phone(n: usize) -> String {
    format!("+1312555{n:04}")
}

/// A patient made in the store directly (1,000 through the API would be slow).
async fn patient(w: &World, n: usize) -> PatientId {
    let record = PatientRecord {
        given_name: Sensitive::new(format!("Pat{n}")),
        family_name: Sensitive::new("Demo".into()),
        birth_date: date!(1971 - 03 - 14),
        mrn: None,
        preferred_language: "en".into(),
        time_zone: None,
        contacts: vec![Contact {
            kind: ContactKind::Phone,
            value: Sensitive::new(phone(n)),
            role: ContactRole::Patient,
        }],
    };
    w.app
        .store
        .create_patient(
            w.app.practice,
            &Principal::Operator,
            &RequestContext::default(),
            &record,
            None,
        )
        .await
        .unwrap()
        .0
        .id
}

/// Grants with written evidence (an intake form), in the store.
async fn grant(w: &World, patient: PatientId, grants: &[(ConsentChannel, ConsentPurpose)]) {
    let events: Vec<ConsentEventInput> = grants
        .iter()
        .map(|&(channel, purpose)| ConsentEventInput {
            channel,
            purpose,
            action: ConsentAction::Grant,
            method: ConsentMethod::IntakeForm,
            consent_text: Some(ConsentTextRef {
                version: w.consent_version.clone(),
                sha256_hex: w.consent_sha.clone(),
            }),
            sms_risk_acknowledged: channel == ConsentChannel::SmsPlain,
        })
        .collect();
    w.app
        .store
        .record_consent(
            w.app.practice,
            Recorder::Principal(&Principal::Operator),
            &RequestContext::default(),
            patient,
            &events,
            Some(&Sensitive::new("signed intake form, scanned".into())),
        )
        .await
        .unwrap();
}

/// The patient opts out of plain-text announcements (what their STOP records), in the store.
async fn opt_out(w: &World, patient: PatientId) {
    w.tick();
    w.app
        .store
        .record_consent(
            w.app.practice,
            Recorder::Principal(&Principal::Operator),
            &RequestContext::default(),
            patient,
            &[ConsentEventInput::revoke(
                ConsentChannel::SmsPlain,
                ConsentPurpose::Announcements,
                ConsentMethod::Verbal,
            )],
            None,
        )
        .await
        .unwrap();
}

async fn announcement_step(state: &AppState) -> usize {
    salve_server::announcements::run_once(state).await.unwrap()
}

/// Runs the announcement step until every recipient is recorded.
async fn queue_all(state: &AppState) -> usize {
    let mut total = 0;
    loop {
        let n = announcement_step(state).await;
        if n == 0 {
            return total;
        }
        total += n;
    }
}

async fn outbox_pass(state: &AppState) -> usize {
    salve_server::worker::run_once(state, "w").await.unwrap()
}

/// Reads an announcement as an admin signed in now (the clock moves by hours in these tests,
/// past a session's idle limit).
async fn read(w: &World, id: &str) -> Value {
    let (_, admin) = session(&w.app, Role::Admin).await;
    let r = w
        .as_staff(&admin, Req::get(format!("/api/v1/announcements/{id}")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

/// Pending outbox jobs' next attempt times (microseconds), for the quiet-hours check.
async fn pending_attempts(w: &World) -> Vec<i64> {
    sqlx::query_scalar("SELECT next_attempt_at FROM outbox_jobs WHERE status = 'pending'")
        .fetch_all(w.app.store.pool_for_tests())
        .await
        .unwrap()
}

fn micros(t: time::OffsetDateTime) -> i64 {
    salve_core::clock::to_micros(t)
}

/// No audit row of the practice carries a phone number or a word of the announcement.
fn assert_no_phi(audit: &[AuditRow], word: &str) {
    for row in audit {
        for target in &row.targets {
            assert!(
                !target.contains("+1312555") && !target.contains(word),
                "PHI in audit: {row:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_announcement_to_1000_patients_reaches_each_consenting_one_once_after_quiet_hours() {
    for db in TestDatabase::all().await {
        let kind = db.kind;
        let w = World::new(db).await;
        let started = Instant::now();
        // 1,000 patients: 0-3 of every 10 consented in writing to announcements by plain
        // text, 4 to notifications only, 5-6 only to care messages, 7-9 to nothing.
        let mut patients = Vec::with_capacity(1000);
        for n in 0..1000 {
            let id = patient(&w, n).await;
            use ConsentChannel::*;
            use ConsentPurpose::*;
            match n % 10 {
                0..=3 => {
                    grant(
                        &w,
                        id,
                        &[(SmsPlain, Announcements), (SmsPlain, CareMessages)],
                    )
                    .await
                }
                4 => grant(&w, id, &[(SmsNotify, Announcements)]).await,
                5 | 6 => grant(&w, id, &[(SmsPlain, CareMessages)]).await,
                _ => {}
            }
            patients.push(id);
        }
        let made = started.elapsed();
        let consenting: Vec<usize> = (0..1000).filter(|n| n % 10 <= 4).collect();
        assert_eq!(consenting.len(), 500);

        // Announcements need written evidence: a verbal grant is refused.
        let r = w
            .clinician(
                Req::post(format!("/api/v1/patients/{}/consent", patients[7])).json(&json!({
                    "events": [{"channel": "sms_plain", "purpose": "announcements", "action": "grant",
                        "method": "verbal", "sms_risk_acknowledged": true,
                        "consent_text": {"version": w.consent_version, "sha256_hex": w.consent_sha}}],
                })),
            )
            .await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.text);

        // The preview: the policy lets this text go direct; 500 patients can receive it.
        let body = json!({"text": ANNOUNCEMENT, "scheduled_at": "2026-11-25T20:50:00-06:00"});
        let r = w
            .admin(Req::post("/api/v1/announcements/preview").json(&body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["route"], "direct", "{}", r.text);
        assert_eq!(r.json()["recipients"], 500);
        let before = w.rows("announcements").await;
        assert_eq!(before, 0, "a preview writes nothing");

        // Written (a draft), then sent for 20:50 in Chicago; a retry with the same key
        // returns the same draft.
        let create = || {
            Req::post("/api/v1/announcements")
                .header("idempotency-key", "announce-1")
                .json(&body)
        };
        let r = w.admin(create()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let created = r.json();
        assert_eq!(created["status"], "draft");
        assert_eq!(created["recipients"], 500);
        let id = created["id"].as_str().unwrap().to_owned();
        let again = w.admin(create()).await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
        assert_eq!(again.json()["id"], created["id"]);
        assert_eq!(w.rows("announcements").await, 1);
        let r = w
            .admin(Req::post(format!("/api/v1/announcements/{id}/send")).json(&json!({})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["status"], "scheduled");
        assert_eq!(r.json()["scheduled_at"], "2026-11-26T02:50:00Z");
        assert_eq!(announcement_step(&w.worker).await, 0, "not yet due");

        // 20:50: the send starts; the first batch is queued.
        w.app.advance(datetime!(2026-11-26 02:50 UTC) - w.app.now());
        let first = announcement_step(&w.worker).await;
        assert_eq!(first, salve_server::announcements::BATCH);
        let progress = read(&w, &id).await["progress"].clone();
        assert_eq!(progress["recipients"], 500);
        assert_eq!(progress["queued"], 100);
        assert_eq!(progress["pending"], 400);
        // One patient whose message is queued opts out now, and one whose turn has not come
        // opts out at 21:00 (both by plain text, so the revocation is of `sms_plain`).
        assert_eq!(w.rows("outbox_jobs").await, 100);
        let states: Vec<(String, String)> = sqlx::query_as(
            "SELECT patient_id, state FROM announcement_recipients ORDER BY patient_id",
        )
        .fetch_all(w.app.store.pool_for_tests())
        .await
        .unwrap();
        let number = |id: &str| patients.iter().position(|p| p.to_string() == id).unwrap();
        let pick = |state: &str| {
            states
                .iter()
                .map(|(p, s)| (number(p), s))
                .find(|(n, s)| *s == state && n % 10 <= 3)
                .unwrap()
                .0
        };
        let (opt_a, opt_b) = (pick("queued"), pick("pending"));
        opt_out(&w, patients[opt_a]).await;
        let sent_now = outbox_pass(&w.worker).await;
        assert_eq!(
            sent_now, 99,
            "the queued message of who opted out was withdrawn"
        );
        assert_eq!(w.outbox().len(), 99);

        // 21:00: quiet hours. The rest is queued but waits for 08:00.
        w.app.advance(datetime!(2026-11-26 03:00 UTC) - w.app.now());
        opt_out(&w, patients[opt_b]).await;
        let rest = queue_all(&w.worker).await;
        assert_eq!(rest, 400);
        assert_eq!(read(&w, &id).await["status"], "done");
        w.tick();
        outbox_pass(&w.worker).await;
        assert_eq!(w.outbox().len(), 99, "nothing goes during quiet hours");
        let morning = micros(datetime!(2026-11-26 14:00 UTC));
        let waiting = pending_attempts(&w).await;
        assert_eq!(waiting.len(), 399);
        assert!(
            waiting.iter().all(|at| *at == morning),
            "held until 08:00 in Chicago"
        );
        let progress = read(&w, &id).await["progress"].clone();
        assert_eq!(progress["queued"], 399);
        assert_eq!(progress["sent"], 99);
        assert_eq!(progress["held_back_by_reason"]["opted_out_during_send"], 2);

        // 07:59 still nothing; from 08:00 everything goes.
        w.app.advance(datetime!(2026-11-26 13:59 UTC) - w.app.now());
        salve_server::worker::run_once(&w.worker, "w")
            .await
            .unwrap();
        assert_eq!(w.outbox().len(), 99);
        w.app.advance(datetime!(2026-11-26 14:00 UTC) - w.app.now());
        while outbox_pass(&w.worker).await > 0 {}

        // Exactly the consenting patients, once each, minus the two who opted out.
        let sent = w.outbox();
        let mut by_number: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for record in &sent {
            by_number
                .entry(record.to.clone())
                .or_default()
                .push(record.body.clone());
        }
        let expected: Vec<String> = consenting
            .iter()
            .filter(|n| **n != opt_a && **n != opt_b)
            .map(|n| phone(*n))
            .collect();
        assert_eq!(by_number.keys().cloned().collect::<Vec<_>>(), expected);
        for n in &consenting {
            let Some(bodies) = by_number.get(&phone(*n)) else {
                continue;
            };
            assert_eq!(bodies.len(), 1, "once: {n}");
            if n % 10 == 4 {
                // Notifications only: the text waits in the portal behind a link.
                assert!(bodies[0].contains("/p/") && !bodies[0].contains("closed"));
            } else {
                assert_eq!(bodies[0], ANNOUNCEMENT);
            }
        }
        let progress = read(&w, &id).await["progress"].clone();
        assert_eq!(
            progress,
            json!({"recipients": 500, "pending": 0, "queued": 0, "sent": 498, "delivered": 0,
                "failed": 0, "held_back": 2, "held_back_by_reason": {"opted_out_during_send": 2}})
        );
        // Running again changes nothing.
        assert_eq!(queue_all(&w.worker).await, 0);
        assert_eq!(outbox_pass(&w.worker).await, 0);
        assert_eq!(w.outbox().len(), 498);

        let audit = w.app.practice_audit().await;
        assert_eq!(count(&audit, "announcement.create", "success"), 1);
        assert_eq!(count(&audit, "announcement.schedule", "success"), 1);
        assert_eq!(count(&audit, "announcement.start", "success"), 1);
        assert_eq!(count(&audit, "announcement.recipient", "success"), 499);
        assert_eq!(count(&audit, "announcement.recipient", "denied"), 1);
        assert_eq!(count(&audit, "announcement.done", "success"), 1);
        assert_no_phi(&audit, "closed");
        w.app.assert_audit_verifies().await;
        eprintln!(
            "{kind:?}: 1,000 patients made in {made:?}; whole announcement test {:?}",
            started.elapsed()
        );
    }
}

/// A fake Twilio Messages API that records each text.
#[derive(Clone, Default)]
struct FakeTwilio {
    sent: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeTwilio {
    async fn start() -> (Self, String) {
        let fake = FakeTwilio::default();
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(
                    |State(fake): State<FakeTwilio>, Path(_sid): Path<String>, body: String| async move {
                        let form: BTreeMap<String, String> =
                            form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                        let n = {
                            let mut sent = fake.sent.lock().unwrap();
                            sent.push((form["To"].clone(), form["Body"].clone()));
                            sent.len()
                        };
                        (
                            StatusCode::CREATED,
                            axum::Json(json!({"sid": format!("SM{n:032}"), "status": "queued"})),
                        )
                    },
                ),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, base)
    }
}

#[tokio::test]
async fn a_secure_announcement_goes_as_paced_notifications_to_as_many_as_previewed() {
    for db in TestDatabase::all().await {
        let (twilio, base) = FakeTwilio::start().await;
        let w = World::new(db).await;
        let r = w
            .admin(Req::post("/api/v1/admin/agreements").json(&json!({
                "vendor": "Twilio Inc.", "basis": "baa", "signed_on": "2026-01-15",
                "document_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let agreement = r.json()["id"].as_str().unwrap().to_owned();
        let r = w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "twilio", "label": "Main line", "numbers": ["+13125550100"],
                "agreement_id": agreement,
                "credentials": {"account_sid": "AC0123456789abcdef0123456789abcdef",
                    "auth_token": "12345678901234567890123456789012", "base_url": base},
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // The worker sends one text a second per number (the default), on the server's clock.
        let worker = w.worker.clone();

        use ConsentChannel::*;
        use ConsentPurpose::*;
        let mut notify = Vec::new();
        for n in 201..=205 {
            let id = patient(&w, n).await;
            grant(&w, id, &[(SmsNotify, Announcements)]).await;
            notify.push(id);
        }
        // Plain texts only: a secure announcement cannot reach them (no notification consent).
        let plain_only = patient(&w, 206).await;
        grant(&w, plain_only, &[(SmsPlain, Announcements)]).await;
        let care_only = patient(&w, 207).await;
        grant(&w, care_only, &[(SmsNotify, CareMessages)]).await;

        // Who may send: admins and the front desk; clinicians read; tokens never.
        let (_, front_desk) = session(&w.app, Role::Staff).await;
        let body = json!({"text": SECURE_ANNOUNCEMENT});
        let r = w
            .as_staff(
                &front_desk,
                Req::post("/api/v1/announcements/preview").json(&body),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let preview = r.json();
        assert_eq!(preview["route"], "secure", "{preview}");
        assert!(!preview["reasons"].as_array().unwrap().is_empty());
        assert_eq!(preview["recipients"], 5);
        let r = w
            .clinician(Req::post("/api/v1/announcements").json(&body))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = w
            .app
            .send(
                Req::post("/api/v1/announcements")
                    .bearer(&w.app.token)
                    .json(&body),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(w.rows("announcements").await, 0);
        // Bad input is a problem document naming the field, never a 500.
        for bad in [
            json!({"text": "   "}),
            json!({"text": "Hello", "filter": {"upcoming_within_days": 0}}),
            json!({"text": "Hello", "filter": {"everyone": true}}),
            json!({"text": "Your visit on {appointment.date}"}),
            json!({"text": "Hello", "scheduled_at": "Friday"}),
        ] {
            let r = w.admin(Req::post("/api/v1/announcements").json(&bad)).await;
            assert!(r.status.is_client_error(), "{bad}: {} {}", r.status, r.text);
        }

        let r = w
            .as_staff(&front_desk, Req::post("/api/v1/announcements").json(&body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let r = w
            .as_staff(
                &front_desk,
                Req::post(format!("/api/v1/announcements/{id}/send")).json(&json!({})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(queue_all(&worker).await, 5);
        // One pass sends one text; the others wait for the number's next free second.
        let mut sent_at = Vec::new();
        for pass in 0..10 {
            let before = twilio.sent.lock().unwrap().len();
            outbox_pass(&worker).await;
            let after = twilio.sent.lock().unwrap().len();
            assert!(after - before <= 1, "one text a second per number");
            sent_at.extend((before..after).map(|_| w.app.now()));
            if pass == 0 {
                let next = micros(w.app.now() + time::Duration::seconds(1));
                assert_eq!(pending_attempts(&w).await, vec![next; 4]);
            }
            if after == 5 {
                break;
            }
            w.app.advance(time::Duration::seconds(1));
        }
        assert_eq!(sent_at.len(), 5);
        for pair in sent_at.windows(2) {
            assert_eq!(pair[1] - pair[0], time::Duration::seconds(1));
        }

        let sent = twilio.sent.lock().unwrap().clone();
        let numbers: Vec<&str> = sent.iter().map(|(to, _)| to.as_str()).collect();
        let mut sorted = numbers.clone();
        sorted.sort();
        assert_eq!(sorted, (201..=205).map(phone).collect::<Vec<_>>());
        for (_, text) in &sent {
            assert!(text.contains("/p/"), "a notification with a link: {text}");
            assert!(!text.contains("diabetes"), "no content in the notification");
        }
        let r = w
            .clinician(Req::get(format!("/api/v1/announcements/{id}")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let progress = r.json()["progress"].clone();
        assert_eq!(progress["recipients"], preview["recipients"]);
        assert_eq!(progress["sent"], 5);
        assert_eq!(progress["held_back"], 0);
        let r = w.clinician(Req::get("/api/v1/announcements")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["announcements"][0]["status"], "done");

        // A scheduled one cancelled before its time sends nothing; cancelling again changes
        // nothing; a sent one cannot be cancelled; an unknown id is 404.
        let r = w
            .admin(Req::post("/api/v1/announcements").json(&json!({"text": ANNOUNCEMENT})))
            .await;
        let later = r.json()["id"].as_str().unwrap().to_owned();
        let r = w
            .admin(
                Req::post(format!("/api/v1/announcements/{later}/send"))
                    .json(&json!({"scheduled_at": "2026-12-01T10:00:00-06:00"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = w
            .admin(Req::post(format!("/api/v1/announcements/{later}/cancel")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["status"], "cancelled");
        let r = w
            .admin(Req::post(format!("/api/v1/announcements/{later}/cancel")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["status"], "cancelled");
        let r = w
            .admin(Req::post(format!("/api/v1/announcements/{id}/cancel")))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "a sent one: {}", r.text);
        let r = w
            .admin(Req::get(format!(
                "/api/v1/announcements/{}",
                uuid::Uuid::now_v7()
            )))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        let r = w.admin(Req::get("/api/v1/announcements/not-an-id")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        let audit = w.app.practice_audit().await;
        w.app.advance(time::Duration::days(7));
        assert_eq!(queue_all(&worker).await, 0);
        assert_eq!(twilio.sent.lock().unwrap().len(), 5);

        assert_eq!(count(&audit, "announcement.cancel", "success"), 1);
        assert_no_phi(&audit, "diabetes");
    }
}

#[tokio::test]
async fn recipients_by_provider_location_and_upcoming_visit() {
    use salve_store::{CatalogKind, NewAppointment};
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let store = w.app.store.clone();
        let ctx = RequestContext::default();
        let mut items = Vec::new();
        for (kind, name) in [
            (CatalogKind::AppointmentType, "Checkup"),
            (CatalogKind::Location, "Main St"),
            (CatalogKind::Location, "North"),
            (CatalogKind::Provider, "Dr. A"),
            (CatalogKind::Provider, "Dr. B"),
        ] {
            items.push(
                store
                    .upsert_catalog_item(
                        w.app.practice,
                        &Principal::Operator,
                        &ctx,
                        kind,
                        name,
                        true,
                        true,
                    )
                    .await
                    .unwrap(),
            );
        }
        let [checkup, main_st, north, dr_a, dr_b] = items[..] else {
            unreachable!()
        };
        use ConsentChannel::*;
        use ConsentPurpose::*;
        // p0: Dr A at Main St in 2 days; p1: Dr B at Main St in 2 days; p2: Dr A at North in
        // 10 days; p3: no visit; p4: Dr A at Main St in 2 days but no announcements consent.
        let visits = [
            Some((dr_a, main_st, 2)),
            Some((dr_b, main_st, 2)),
            Some((dr_a, north, 10)),
            None,
            Some((dr_a, main_st, 2)),
        ];
        for (n, visit) in visits.iter().enumerate() {
            let id = patient(&w, 300 + n).await;
            if n == 4 {
                grant(&w, id, &[(SmsPlain, CareMessages)]).await;
            } else {
                grant(&w, id, &[(SmsPlain, Announcements)]).await;
            }
            if let Some((provider, location, days)) = visit {
                store
                    .create_appointment(
                        w.app.practice,
                        &Principal::Operator,
                        &ctx,
                        &NewAppointment {
                            patient: id,
                            external_id: None,
                            starts_at: w.app.now() + time::Duration::days(*days),
                            time_zone: "America/Chicago".into(),
                            duration_minutes: 30,
                            appointment_type: checkup,
                            location: *location,
                            provider: *provider,
                        },
                        None,
                    )
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
        for (filter, expected) in [
            (json!({}), 4),
            (json!({"providers": [dr_a]}), 2),
            (json!({"providers": [dr_a, dr_b]}), 3),
            (json!({"providers": [dr_a], "locations": [main_st]}), 1),
            (json!({"upcoming_within_days": 7}), 2),
            (json!({"locations": [north], "upcoming_within_days": 7}), 0),
            (json!({"locations": [north], "upcoming_within_days": 10}), 1),
        ] {
            let r = w
                .admin(
                    Req::post("/api/v1/announcements/preview")
                        .json(&json!({"text": ANNOUNCEMENT, "filter": filter})),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.json()["recipients"], expected, "{filter}");
        }

        // Sent to Dr A's patients in the next week: exactly p0.
        let r = w
            .admin(
                Req::post("/api/v1/announcements").json(&json!({"text": ANNOUNCEMENT,
                "filter": {"providers": [dr_a], "upcoming_within_days": 7}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.json()["recipients"], 1);
        assert_eq!(r.json()["filter"]["providers"], json!([dr_a]));
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let r = w
            .admin(Req::post(format!("/api/v1/announcements/{id}/send")).json(&json!({})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(queue_all(&w.worker).await, 1);
        while outbox_pass(&w.worker).await > 0 {}
        let sent = w.outbox();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, phone(300));
        assert_eq!(sent[0].body, ANNOUNCEMENT);
        assert_eq!(read(&w, &id).await["progress"]["sent"], 1);
    }
}

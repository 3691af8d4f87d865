//! Appointment reminders end to end, on SQLite and PostgreSQL, with the manual clock (never a
//! sleep): due times in the visit's zone across DST, quiet hours, the daily cap (held back,
//! shown, released), downtime (only the latest useful reminder; never a late one), a visit
//! moved or cancelled, the channel policy's SMS-safe flags, and exactly-once delivery with
//! several instances and a restart on PostgreSQL.

use std::sync::Arc;

use axum::http::StatusCode;
use salve_core::audit::RequestContext;
use salve_core::permissions::{Principal, Role};
use salve_core::{AppointmentId, CatalogItemId, Clock, PatientId, UserId};
use salve_server::{AppState, ServerConfig};
use salve_store::{AppointmentPatch, NewAppointment};
use salve_testkit::{Kind, TestDatabase};
use serde_json::{Value, json};
use time::OffsetDateTime;

mod common;
mod messaging_world;

use common::Req;
use messaging_world::World;

const CHICAGO: &str = "America/Chicago";

/// A Chicago wall time as an instant.
fn chicago(local: &str) -> OffsetDateTime {
    let dt: jiff::civil::DateTime = local.parse().unwrap();
    let ts = dt
        .to_zoned(jiff::tz::TimeZone::get(CHICAGO).unwrap())
        .unwrap()
        .timestamp();
    OffsetDateTime::from_unix_timestamp(ts.as_second()).unwrap()
}

struct Clinic {
    w: World,
    checkup: CatalogItemId,
    oncology: CatalogItemId,
    lab: CatalogItemId,
    office: CatalogItemId,
    rivera: CatalogItemId,
}

impl Clinic {
    async fn new(db: TestDatabase) -> Self {
        let w = World::new(db).await;
        let item = async |kind: &str, name: &str, safe: bool| -> CatalogItemId {
            let r = w
                .admin(Req::put("/api/v1/catalog").json(&json!({
                    "kind": kind, "name": name, "sms_safe": safe, "active": true
                })))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.json()["id"].as_str().unwrap().parse().unwrap()
        };
        let r = w
            .admin(Req::put("/api/v1/practice/messaging").json(&json!({
                "sender_name": "Lakeside Clinic",
                "phone": "(312) 555-0100",
                "hours_text": "Mon-Fri 8am-5pm",
                "expected_reply_text": "within 1 business day",
                "front_desk_sees_clinical": false,
            })))
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        Self {
            checkup: item("appointment_type", "Annual checkup", true).await,
            oncology: item("appointment_type", "Oncology consult", false).await,
            lab: item("appointment_type", "Early visit", true).await,
            office: item("location", "Main St office", true).await,
            rivera: item("provider", "Dr. Rivera", true).await,
            w,
        }
    }

    fn staff(&self) -> Principal {
        Principal::Staff {
            practice: self.w.app.practice,
            user: self.w.clinician_id.parse::<UserId>().unwrap(),
            role: Role::Clinician,
        }
    }

    /// A patient with a phone `+1312555{last4}` who agreed to plain-text reminders.
    async fn patient(&self, given: &str, last4: &str) -> PatientId {
        let id = self.w.patient(given, last4).await;
        self.w
            .grant(&id, "sms_plain", "appointment_reminders")
            .await;
        id.parse().unwrap()
    }

    async fn book(&self, patient: PatientId, local: &str, kind: CatalogItemId) -> AppointmentId {
        let new = NewAppointment {
            patient,
            external_id: None,
            starts_at: chicago(local),
            time_zone: CHICAGO.into(),
            duration_minutes: 30,
            appointment_type: kind,
            location: self.office,
            provider: self.rivera,
        };
        let (appointment, _) = self
            .w
            .app
            .store
            .create_appointment(
                self.w.app.practice,
                &self.staff(),
                &RequestContext::default(),
                &new,
                None,
            )
            .await
            .unwrap()
            .unwrap();
        appointment.id
    }

    fn at(&self, local: &str) {
        self.w.app.clock.set(chicago(local));
    }

    async fn remind(&self) -> salve_server::reminders::Pass {
        salve_server::reminders::run_once(&self.w.worker)
            .await
            .unwrap()
    }

    async fn send(&self) -> usize {
        salve_server::worker::run_once(&self.w.worker, "w")
            .await
            .unwrap()
    }

    /// A request with the practice's API token (staff sessions time out as the clock jumps).
    async fn api(&self, req: Req) -> common::Reply {
        self.w.app.send(req.bearer(&self.w.app.token)).await
    }

    async fn reminders(&self, appointment: AppointmentId) -> Vec<Value> {
        let r = self
            .api(Req::get(format!(
                "/api/v1/appointments/{appointment}/reminders"
            )))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()["reminders"].as_array().unwrap().clone()
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

    async fn settings(&self, body: Value) {
        let r = self
            .w
            .admin(Req::put("/api/v1/reminders/settings").json(&body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

fn states(reminders: &[Value]) -> Vec<(String, String)> {
    reminders
        .iter()
        .map(|r| {
            (
                r["slot"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn reminders_keep_the_visits_wall_time_across_dst_and_wait_out_quiet_hours() {
    for db in TestDatabase::all().await {
        let c = Clinic::new(db).await;
        let ana = c.patient("Ana", "0142").await;
        let ben = c.patient("Ben", "0143").await;
        // Monday 09:00 CDT; Chicago springs forward on Sunday 2027-03-14.
        let visit = c.book(ana, "2027-03-15T09:00", c.checkup).await;

        // 72 elapsed hours would be Friday 08:00 CST; three calendar days is Friday 09:00.
        c.at("2027-03-12T08:59");
        assert_eq!(c.remind().await.sent, 0);
        c.at("2027-03-12T09:00");
        assert_eq!(c.remind().await.sent, 1);
        assert_eq!(c.remind().await.sent, 0, "decided once");
        c.send().await;
        let texts = c.texts_to("0142");
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(
            texts[0].starts_with("Lakeside Clinic: reminder of your Annual checkup visit with Dr. Rivera on Mon Mar 15 at 9:00 AM, Main St office."),
            "{}",
            texts[0]
        );
        assert!(texts[0].contains(
            "Reply C to confirm, R to reschedule, X to cancel this visit. STOP to opt out."
        ));
        assert!(texts[0].contains("(312) 555-0100"));

        c.at("2027-03-14T08:59");
        assert_eq!(c.remind().await.sent, 0);
        c.at("2027-03-14T09:00");
        assert_eq!(c.remind().await.sent, 1);
        c.send().await;
        assert_eq!(c.texts_to("0142").len(), 2);
        let list = c.reminders(visit).await;
        assert_eq!(
            states(&list),
            vec![
                ("72h".to_owned(), "sent".to_owned()),
                ("24h".to_owned(), "sent".to_owned())
            ]
        );
        assert!(
            list.iter().all(|r| r["delivery"] == "direct_sms"),
            "{list:?}"
        );
        assert_eq!(list[1]["awaits_answer"], true);

        // A 07:30 visit: its 24-hour reminder is decided at 07:30 but the text waits out the
        // quiet hours (21:00-08:00 in the patient's zone) and goes at 08:00.
        c.book(ben, "2027-03-20T07:30", c.checkup).await;
        c.at("2027-03-19T07:30");
        assert_eq!(c.remind().await.sent, 1);
        c.send().await;
        assert!(c.texts_to("0143").is_empty(), "held by quiet hours");
        c.at("2027-03-19T07:59");
        c.send().await;
        assert!(c.texts_to("0143").is_empty(), "held by quiet hours");
        c.at("2027-03-19T08:00");
        c.send().await;
        assert_eq!(c.texts_to("0143").len(), 1);
    }
}

#[tokio::test]
async fn the_servers_background_pass_sends_due_reminders() {
    for db in TestDatabase::all().await {
        let c = Clinic::new(db).await;
        let ana = c.patient("Ana", "0142").await;
        let ben = c.patient("Ben", "0143").await;
        let visit = c.book(ana, "2026-11-28T09:00", c.checkup).await;
        c.at("2026-11-27T09:00");
        // What `salve serve` runs on every wake-up and every poll period.
        salve_server::worker::background_pass(&c.w.worker, "w").await;
        let texts = c.texts_to("0142");
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains("Reply C to confirm"), "{}", texts[0]);
        salve_server::worker::background_pass(&c.w.worker, "w").await;
        assert_eq!(c.texts_to("0142").len(), 1);
        assert_eq!(c.reminders(visit).await.last().unwrap()["state"], "sent");
        // At most one reminders pass a minute: a reminder due 30 seconds later waits for the
        // next minute's pass.
        c.book(ben, "2026-11-28T09:00:30", c.checkup).await;
        c.w.app.advance(time::Duration::seconds(30));
        salve_server::worker::background_pass(&c.w.worker, "w").await;
        assert!(c.texts_to("0143").is_empty());
        c.w.app.advance(time::Duration::seconds(30));
        salve_server::worker::background_pass(&c.w.worker, "w").await;
        assert_eq!(c.texts_to("0143").len(), 1);
    }
}

#[tokio::test]
async fn the_daily_cap_holds_back_shows_and_staff_release() {
    for db in TestDatabase::all().await {
        let c = Clinic::new(db).await;
        let body = json!({"default_schedule": "26h,24h", "daily_cap": 1, "min_lead_minutes": 120});
        // Only admins change reminder settings.
        let r =
            c.w.clinician(Req::put("/api/v1/reminders/settings").json(&body))
                .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r =
            c.w.admin(Req::put("/api/v1/reminders/settings").json(&json!({
                "default_schedule": "tomorrow", "daily_cap": 0, "min_lead_minutes": 120
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("default_schedule") && r.text.contains("daily_cap"));
        c.settings(body).await;
        let r = c.w.clinician(Req::get("/api/v1/reminders/settings")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let settings = r.json();
        assert_eq!(settings["default_schedule"], "26h,24h");
        let templates = settings["templates"].as_array().unwrap();
        let seg = |t: &str| {
            templates.iter().find(|x| x["template"] == t).unwrap()["segments"]
                .as_u64()
                .unwrap()
        };
        assert!(seg("es_unaccented") < seg("es"), "{templates:?}");

        let ana = c.patient("Ana", "0142").await;
        let visit = c.book(ana, "2026-11-28T09:00", c.checkup).await;
        c.at("2026-11-27T07:00");
        assert_eq!(c.remind().await.sent, 1);
        c.at("2026-11-27T09:00");
        let pass = c.remind().await;
        assert_eq!((pass.sent, pass.held), (0, 1));
        c.send().await;
        assert_eq!(c.texts_to("0142").len(), 1, "the cap held the second back");

        let r = c.api(Req::get("/api/v1/reminders/held")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let held = r.json()["reminders"].as_array().unwrap().clone();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0]["slot"], "24h");
        assert_eq!(held[0]["state"], "held_by_cap");
        assert_eq!(held[0]["appointment_id"], visit.to_string());

        let id = held[0]["id"].as_str().unwrap();
        let r = c
            .api(Req::post(format!("/api/v1/reminders/{id}/release")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["state"], "sent");
        let r = c
            .api(Req::post(format!("/api/v1/reminders/{id}/release")))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        c.send().await;
        assert_eq!(c.texts_to("0142").len(), 2);
        let r = c.api(Req::get("/api/v1/reminders/held")).await;
        assert!(r.json()["reminders"].as_array().unwrap().is_empty());
        let audit = c.w.app.practice_audit().await;
        assert_eq!(common::count(&audit, "reminder.release", "success"), 1);
        assert_eq!(common::count(&audit, "reminder.settings", "success"), 1);
    }
}

#[tokio::test]
async fn after_downtime_only_the_latest_useful_reminder_goes_and_never_a_late_one() {
    for db in TestDatabase::all().await {
        let c = Clinic::new(db).await;
        c.settings(json!({
            "default_schedule": "72h,24h", "daily_cap": 1, "min_lead_minutes": 60,
            "by_type": [{"appointment_type_id": c.lab.to_string(), "schedule": "same_day@06:30"}]
        }))
        .await;
        let ana = c.patient("Ana", "0142").await;
        let carl = c.patient("Carl", "0144").await;
        let dana = c.patient("Dana", "0145").await;
        let ana_visit = c.book(ana, "2026-11-30T09:00", c.checkup).await;
        let carl_visit = c.book(carl, "2026-11-29T12:30", c.checkup).await;

        // Salve was down from Wednesday until Sunday noon.
        c.at("2026-11-29T12:00");
        let pass = c.remind().await;
        assert_eq!(pass.sent, 1, "{pass:?}");
        assert_eq!(
            states(&c.reminders(ana_visit).await),
            vec![
                ("72h".to_owned(), "superseded".to_owned()),
                ("24h".to_owned(), "sent".to_owned())
            ]
        );
        // Carl's visit is 30 minutes away: within the cut-off, so nothing is sent late.
        assert_eq!(
            states(&c.reminders(carl_visit).await),
            vec![
                ("72h".to_owned(), "too_late".to_owned()),
                ("24h".to_owned(), "too_late".to_owned())
            ]
        );
        c.send().await;
        assert_eq!(c.texts_to("0142").len(), 1);
        assert!(c.texts_to("0144").is_empty());

        // A same-day 06:30 reminder for an 08:45 early visit: quiet hours hold it until 08:00,
        // past its cut-off (07:45, the visit minus 60 minutes), so it is withdrawn unsent.
        let dana_visit = c.book(dana, "2026-12-01T08:45", c.lab).await;
        c.at("2026-12-01T06:30");
        let pass = c.remind().await;
        assert_eq!(pass.sent, 1, "{pass:?} {:?}", c.reminders(dana_visit).await);
        c.send().await;
        c.at("2026-12-01T08:00");
        c.send().await;
        assert!(c.texts_to("0145").is_empty());
        let list = c.reminders(dana_visit).await;
        let message = list[0]["message_id"].as_str().unwrap();
        let r = c
            .api(Req::get(format!("/api/v1/conversations?patient={dana}")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let conversation = r.json()["conversations"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = c
            .api(Req::get(format!("/api/v1/conversations/{conversation}")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let detail = r.json();
        let sent = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == message)
            .unwrap()
            .clone();
        assert_eq!(sent["status"], "failed", "{sent}");
        assert!(
            sent["status_reason"].as_str().unwrap().contains("too late"),
            "{sent}"
        );
    }
}

#[tokio::test]
async fn a_moved_or_cancelled_visit_withdraws_its_queued_reminder() {
    for db in TestDatabase::all().await {
        let c = Clinic::new(db).await;
        let ana = c.patient("Ana", "0142").await;
        let visit = c.book(ana, "2026-11-28T09:00", c.checkup).await;
        c.at("2026-11-27T09:00");
        assert_eq!(c.remind().await.sent, 1);
        // Moved before the worker sent it: the queued text is withdrawn.
        let store = &c.w.app.store;
        store
            .update_appointment(
                c.w.app.practice,
                &c.staff(),
                &RequestContext::default(),
                visit,
                &AppointmentPatch {
                    starts_at: Some(chicago("2026-12-02T09:00")),
                    ..AppointmentPatch::default()
                },
                None,
            )
            .await
            .unwrap()
            .unwrap();
        c.send().await;
        assert!(c.texts_to("0142").is_empty());
        // (Its 72-hour moment had passed when it was booked.)
        assert_eq!(
            states(&c.reminders(visit).await),
            vec![
                ("72h".to_owned(), "superseded".to_owned()),
                ("24h".to_owned(), "withdrawn".to_owned())
            ]
        );
        // The new time gets its own reminders.
        c.at("2026-11-29T09:00");
        assert_eq!(c.remind().await.sent, 1);
        c.send().await;
        let texts = c.texts_to("0142");
        assert_eq!(texts.len(), 1);
        assert!(texts[0].contains("Wed Dec 2"), "{}", texts[0]);

        // Cancelled with a reminder queued: withdrawn, and no more reminders.
        c.at("2026-12-01T09:00");
        assert_eq!(c.remind().await.sent, 1);
        store
            .cancel_appointment(
                c.w.app.practice,
                &c.staff(),
                &RequestContext::default(),
                visit,
                None,
            )
            .await
            .unwrap();
        c.send().await;
        assert_eq!(c.texts_to("0142").len(), 1);
        c.at("2026-12-02T08:00");
        assert_eq!(c.remind().await, salve_server::reminders::Pass::default());
        let list = c.reminders(visit).await;
        assert_eq!(list.last().unwrap()["state"], "withdrawn");
        let audit = c.w.app.practice_audit().await;
        assert_eq!(common::count(&audit, "reminder.withdraw", "success"), 2);
    }
}

#[tokio::test]
async fn a_type_not_marked_sms_safe_goes_as_a_secure_notification() {
    for db in TestDatabase::all().await {
        let c = Clinic::new(db).await;
        let ana = c.patient("Ana", "0142").await;
        // Ana agreed to secure-message notifications by text too.
        c.w.grant(&ana.to_string(), "sms_notify", "appointment_reminders")
            .await;
        let visit = c.book(ana, "2026-11-28T09:00", c.oncology).await;
        c.at("2026-11-27T09:00");
        assert_eq!(c.remind().await.sent, 1);
        c.send().await;
        let texts = c.texts_to("0142");
        assert_eq!(texts.len(), 1);
        assert!(
            texts[0].starts_with("New secure message from Lakeside Clinic: http"),
            "{}",
            texts[0]
        );
        assert!(!texts[0].to_lowercase().contains("oncology"));
        let list = c.reminders(visit).await;
        let sent = list.iter().find(|r| r["state"] == "sent").unwrap();
        assert_eq!(sent["delivery"], "secure_with_notification");
        assert_eq!(sent["awaits_answer"], false);

        // No consent for reminders at all: nothing is sent and staff see why.
        let eve = c.w.patient("Eve", "0146").await;
        let eve_visit = c
            .book(eve.parse().unwrap(), "2026-11-28T10:00", c.checkup)
            .await;
        c.at("2026-11-27T10:00");
        let pass = c.remind().await;
        assert_eq!(pass.not_sent, 1, "{pass:?}");
        c.send().await;
        assert!(c.texts_to("0146").is_empty());
        let list = c.reminders(eve_visit).await;
        let last = list.last().unwrap();
        assert_eq!(last["state"], "not_sent", "{list:?}");
        assert!(last["state_reason"].as_str().unwrap().len() > 10);
    }
}

#[tokio::test]
async fn several_instances_and_a_restart_send_each_reminder_exactly_once() {
    for db in TestDatabase::all().await {
        if db.kind != Kind::Postgres {
            continue;
        }
        let c = Clinic::new(db).await;
        let mut patients = Vec::new();
        for i in 0..12 {
            let last4 = format!("{:04}", 300 + i);
            let p = c.patient(&format!("P{i}"), &last4).await;
            c.book(p, &format!("2026-11-28T{:02}:00", 9 + i % 6), c.checkup)
                .await;
            patients.push(last4);
        }
        let instance = async || {
            let store = c.w.app.another_instance().await;
            AppState::new(
                store.clone(),
                c.w.app.clock.clone() as Arc<dyn Clock>,
                ServerConfig::local("127.0.0.1:0".parse().unwrap()),
            )
            .with_local_outbox(salve_channels::LocalOutbox::new(
                c.w.outbox_dir.clone(),
                store.outbox_key().await.unwrap(),
            ))
        };
        let (a, b, d) = (instance().await, instance().await, instance().await);
        c.at("2026-11-27T15:00");
        // Instance A decides every reminder and claims the sends, then dies before sending.
        let pass = salve_server::reminders::run_once(&a).await.unwrap();
        assert_eq!(pass.sent, 12);
        let claimed = a.store.claim_outbox_jobs("a", 5).await.unwrap();
        assert_eq!(claimed.len(), 5);
        drop(a);
        // B and D start together: no reminder is decided twice, each send goes once.
        let (pb, pd) = tokio::join!(
            salve_server::reminders::run_once(&b),
            salve_server::reminders::run_once(&d)
        );
        assert_eq!(pb.unwrap().sent + pd.unwrap().sent, 0);
        let (sb, sd) = tokio::join!(
            salve_server::worker::run_once(&b, "b"),
            salve_server::worker::run_once(&d, "d")
        );
        assert_eq!(sb.unwrap() + sd.unwrap(), 7);
        // After the dead instance's lease runs out its claimed sends are reconciled and sent.
        c.w.app.advance(time::Duration::seconds(
            salve_server::worker::SENDING_LEASE_SECS + 1,
        ));
        let (sb, sd) = tokio::join!(
            salve_server::worker::run_once(&b, "b"),
            salve_server::worker::run_once(&d, "d")
        );
        assert!(sb.unwrap() + sd.unwrap() >= 5);
        // The next day's reminders, decided by two instances at once.
        c.at("2026-11-27T16:00");
        let (pb, pd) = tokio::join!(
            salve_server::reminders::run_once(&b),
            salve_server::reminders::run_once(&d)
        );
        assert_eq!(pb.unwrap().sent + pd.unwrap().sent, 0);
        let records = c.w.outbox();
        assert_eq!(
            records.len(),
            12,
            "{:?}",
            records.iter().map(|r| &r.to).collect::<Vec<_>>()
        );
        assert!(records.iter().all(|r| r.attempt == 1));
        for last4 in patients {
            assert_eq!(c.texts_to(&last4).len(), 1, "{last4}");
        }
        // One sent and one superseded (its 72-hour moment passed before the visits were booked).
        assert_eq!(c.w.rows("appointment_reminders").await, 24);
    }
}

impl Clinic {
    /// Texts go through the demo outbox's simulated inbound path (a provider's webhook path).
    async fn with_outbox_provider(self) -> Self {
        let r = self
            .w
            .admin(Req::post("/api/v1/admin/providers").json(&json!({
                "kind": "local_outbox", "label": "Demo outbox", "credentials": {},
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        self
    }

    /// A patient's text from `+1312555{last4}`, as a fresh admin session simulates it.
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
    }

    async fn status(&self, visit: AppointmentId) -> String {
        let r = self
            .api(Req::get(format!("/api/v1/appointments/{visit}")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()["status"].as_str().unwrap().to_owned()
    }

    /// The staff-only notes in the patient's main conversation.
    async fn notes(&self, patient: PatientId) -> Vec<String> {
        let r = self
            .api(Req::get(format!("/api/v1/conversations?patient={patient}")))
            .await;
        let id = r.json()["conversations"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = self
            .api(Req::get(format!("/api/v1/conversations/{id}")))
            .await;
        r.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["direction"] == "note")
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn replies_to_a_reminder_move_the_visit_and_opt_out_words_still_opt_out() {
    for db in TestDatabase::all().await {
        let c = Clinic::new(db).await.with_outbox_provider().await;
        let names = ["Ana", "Ben", "Carl", "Dana", "Eve", "Gus", "Hal"];
        let mut visits = Vec::new();
        let mut ids = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let p = c.patient(name, &format!("02{i:02}")).await;
            ids.push(p);
            visits.push(
                c.book(p, &format!("2026-11-26T{:02}:00", 9 + i), c.checkup)
                    .await,
            );
        }
        // Fay's visit is reminded later: no reminder awaits her answer yet.
        let fay = c.patient("Fay", "0299").await;
        let fay_visit = c.book(fay, "2026-12-10T09:00", c.checkup).await;
        c.at("2026-11-25T16:00");
        assert_eq!(c.remind().await.sent, names.len());
        c.send().await;
        let sent_before = c.w.outbox().len();

        c.text_from("0200", "C").await; // Ana
        c.text_from("0201", "x").await; // Ben
        c.text_from("0202", "R").await; // Carl
        c.text_from("0203", "CANCEL").await; // Dana: an opt-out, even right after a reminder
        c.text_from("0204", "YES").await; // Eve: confirms while a reminder awaits
        c.text_from("0205", "running 10 min late").await; // Gus
        c.text_from("0206", "Sí").await; // Hal
        c.text_from("0299", "YES").await; // Fay: no reminder awaits; YES is not a confirmation
        c.send().await;

        assert_eq!(c.status(visits[0]).await, "confirmed");
        assert_eq!(c.status(visits[1]).await, "cancelled");
        assert_eq!(c.status(visits[2]).await, "reschedule_requested");
        assert_eq!(c.status(visits[3]).await, "booked");
        assert_eq!(c.status(visits[4]).await, "confirmed");
        assert_eq!(c.status(visits[5]).await, "booked");
        assert_eq!(c.status(visits[6]).await, "confirmed");
        assert_eq!(c.status(fay_visit).await, "booked");

        let last = |last4: &str| c.texts_to(last4).last().cloned().unwrap_or_default();
        assert!(
            last("0200").contains("your visit is confirmed"),
            "{}",
            last("0200")
        );
        assert!(
            last("0201").contains("Your visit is cancelled"),
            "{}",
            last("0201")
        );
        assert!(
            last("0202").contains("request to reschedule"),
            "{}",
            last("0202")
        );
        assert!(
            last("0204").contains("your visit is confirmed"),
            "{}",
            last("0204")
        );
        assert!(
            last("0206").contains("su cita esta confirmada")
                || last("0206").contains("your visit is confirmed"),
            "{}",
            last("0206")
        );
        // Dana gets the one opt-out confirmation, and her consent is revoked.
        let dana = c.texts_to("0203");
        assert_eq!(dana.len(), 2, "{dana:?}");
        assert!(
            dana[1].contains("STOP") || dana[1].to_lowercase().contains("no more"),
            "{}",
            dana[1]
        );
        let r = c
            .api(Req::get(format!("/api/v1/patients/{}/consent", ids[3])))
            .await;
        let reminders_by_sms = r.json()["effective"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["channel"] == "sms_plain" && e["purpose"] == "appointment_reminders")
            .unwrap()["granted"]
            .clone();
        assert_eq!(reminders_by_sms, false, "{}", r.text);
        // Gus is late: no status change, no acknowledgement, a note for staff.
        assert_eq!(c.texts_to("0205").len(), 1);
        assert!(
            c.notes(ids[5])
                .await
                .iter()
                .any(|n| n.contains("running late"))
        );
        assert!(c.notes(ids[2]).await.iter().any(|n| n.starts_with("Task:")));
        assert!(!c.texts_to("0299").iter().any(|t| t.contains("confirmed")));
        // Acks for Ana, Ben, Carl, Eve, Hal; Dana's opt-out confirmation; Fay's YES is an
        // opt-in she already had (its confirmation, if any, is not a visit confirmation).
        assert!(c.w.outbox().len() >= sent_before + 6);

        // Each answer was recorded once, and no reminder awaits any more.
        for (i, answer) in [
            (0, "confirm"),
            (1, "cancel_visit"),
            (2, "reschedule"),
            (4, "confirm"),
            (5, "late"),
            (6, "confirm"),
        ] {
            let list = c.reminders(visits[i]).await;
            let sent = list
                .iter()
                .find(|r| r["state"] == "sent" || r["state"] == "withdrawn")
                .unwrap();
            assert_eq!(sent["answer"], answer, "{}: {list:?}", names[i]);
            assert_eq!(sent["awaits_answer"], false);
        }
        let audit = c.w.app.practice_audit().await;
        assert_eq!(common::count(&audit, "reminder.answer", "success"), 6);
    }
}

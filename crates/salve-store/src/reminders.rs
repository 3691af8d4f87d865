//! Appointment reminders, store side: the practice's schedules and limits, and each reminder
//! decided for a visit. A reminder row, its message, its outbox job and its audit row are
//! written in one transaction, and the row's unique key (appointment, slot, visit time) makes a
//! second instance, or a restarted one, record nothing twice.

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::clock::{from_micros, to_micros};
use salve_core::permissions::Principal;
use salve_core::reminders::{Limits, Schedule, Verdict};
use salve_core::{AppointmentId, CatalogItemId, MessageId, PatientId, PracticeId, ReminderId};
use time::OffsetDateTime;

use crate::messaging::{MessageChannel, OutboundPlan, PlanRefused, SendFacts};
use crate::tx::WriteTx;
use crate::{Result, Store, StoreError};

/// A practice's reminder settings (defaults when it never set any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReminderSettings {
    pub default_schedule: Schedule,
    pub limits: Limits,
    /// Spanish reminders without accents: GSM-7, fewer segments.
    pub spanish_unaccented: bool,
    /// Schedules for given appointment types, instead of the default.
    pub by_type: Vec<(CatalogItemId, Schedule)>,
}

impl ReminderSettings {
    pub fn schedule_for(&self, appointment_type: CatalogItemId) -> &Schedule {
        self.by_type
            .iter()
            .find(|(t, _)| *t == appointment_type)
            .map_or(&self.default_schedule, |(_, s)| s)
    }
}

/// Where a reminder stands, as staff see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderState {
    /// Queued for the outbox (its message shows the delivery).
    Sent,
    /// The daily cap held it back; staff may release it.
    HeldByCap,
    TooLate,
    Superseded,
    /// Its visit changed or was cancelled before it went.
    Withdrawn,
    /// Nothing could carry it (no consent for reminders, no contact point).
    NotSent,
}

impl ReminderState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::HeldByCap => "held_by_cap",
            Self::TooLate => "too_late",
            Self::Superseded => "superseded",
            Self::Withdrawn => "withdrawn",
            Self::NotSent => "not_sent",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Sent,
            Self::HeldByCap,
            Self::TooLate,
            Self::Superseded,
            Self::Withdrawn,
            Self::NotSent,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    fn from_verdict(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Send => Self::Sent,
            Verdict::HeldByCap => Self::HeldByCap,
            Verdict::TooLate => Self::TooLate,
            Verdict::Superseded => Self::Superseded,
        }
    }
}

/// One reminder of a visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub id: ReminderId,
    pub appointment: AppointmentId,
    pub patient: PatientId,
    pub slot: String,
    pub starts_at: OffsetDateTime,
    pub due_at: OffsetDateTime,
    pub state: ReminderState,
    /// Why it was not sent (our own words, never the patient's).
    pub state_reason: Option<String>,
    pub message: Option<MessageId>,
    pub delivery: Option<String>,
    pub awaits_answer: bool,
    pub answer: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A reminder to record for a visit, as [`salve_core::reminders::decide`] judged it.
#[derive(Debug, Clone)]
pub struct NewReminder {
    pub practice: PracticeId,
    pub patient: PatientId,
    pub appointment: AppointmentId,
    pub slot: String,
    pub starts_at: OffsetDateTime,
    pub due_at: OffsetDateTime,
    pub verdict: Verdict,
}

/// What recording a reminder did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now, in this state.
    Recorded {
        id: ReminderId,
        state: ReminderState,
    },
    /// Another instance (or an earlier run) recorded it first: nothing changed.
    AlreadyRecorded,
    /// The visit changed, or was cancelled, since it was read: nothing changed.
    Stale,
}

/// The reminder a patient's text may be answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitingReminder {
    pub id: ReminderId,
    pub appointment: AppointmentId,
    pub patient: PatientId,
}

type ReminderRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    i64,
);

const REMINDER_COLUMNS: &str = "id, appointment_id, patient_id, slot, starts_at, due_at, state, \
    state_reason, message_id, delivery, awaits_answer, answer, created_at";

fn malformed() -> StoreError {
    StoreError::KeyRing("malformed reminder row".into())
}

fn parse_reminder(row: ReminderRow) -> Result<Reminder> {
    let (
        id,
        appt,
        patient,
        slot,
        starts,
        due,
        state,
        reason,
        message,
        delivery,
        awaits,
        answer,
        created,
    ) = row;
    Ok(Reminder {
        id: id.parse().map_err(|_| malformed())?,
        appointment: appt.parse().map_err(|_| malformed())?,
        patient: patient.parse().map_err(|_| malformed())?,
        slot,
        starts_at: from_micros(starts),
        due_at: from_micros(due),
        state: ReminderState::parse(&state).ok_or_else(malformed)?,
        state_reason: reason,
        message: message
            .map(|m| m.parse())
            .transpose()
            .map_err(|_| malformed())?,
        delivery,
        awaits_answer: awaits != 0,
        answer,
        created_at: from_micros(created),
    })
}

fn system_event(
    practice: PracticeId,
    action: Action,
    targets: Vec<String>,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent::in_practice(
        practice,
        Actor::System,
        &RequestContext::default(),
        action,
        targets,
        outcome,
    )
}

/// Visits in these states get reminders; the others (cancelled, done, missed, waiting for a
/// new time) do not.
const REMINDED_STATUSES: &str = "('booked', 'confirmed')";

impl Store {
    pub async fn reminder_settings(&self, practice: PracticeId) -> Result<ReminderSettings> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT default_schedule, daily_cap, min_lead_minutes, spanish_unaccented \
             FROM reminder_settings WHERE practice_id = $1",
        )
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let mut settings = ReminderSettings::default();
        if let Some((schedule, cap, lead, unaccented)) = row {
            settings.default_schedule =
                Schedule::parse("default_schedule", &schedule).map_err(|_| malformed())?;
            settings.limits = Limits {
                daily_cap: u32::try_from(cap).map_err(|_| malformed())?,
                min_lead_minutes: u32::try_from(lead).map_err(|_| malformed())?,
            };
            settings.spanish_unaccented = unaccented != 0;
        }
        let by_type: Vec<(String, String)> = sqlx::query_as(
            "SELECT appointment_type_id, schedule FROM reminder_schedules WHERE practice_id = $1 \
             ORDER BY appointment_type_id",
        )
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        for (id, schedule) in by_type {
            settings.by_type.push((
                id.parse().map_err(|_| malformed())?,
                Schedule::parse("schedule", &schedule).map_err(|_| malformed())?,
            ));
        }
        Ok(settings)
    }

    /// Replaces the practice's reminder settings; every appointment type named must be one of
    /// its catalog's. Audited.
    pub async fn set_reminder_settings(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        settings: &ReminderSettings,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        for (type_id, _) in &settings.by_type {
            let known: Option<String> = sqlx::query_scalar(
                "SELECT id FROM catalog_items WHERE id = $1 AND practice_id = $2 AND kind = 'appointment_type'",
            )
            .bind(type_id.to_string())
            .bind(practice.to_string())
            .fetch_optional(&mut *tx.tx)
            .await?;
            if known.is_none() {
                return Err(StoreError::Invalid(
                    "schedules: an appointment type is not in the practice's catalog".into(),
                ));
            }
        }
        sqlx::query(
            "INSERT INTO reminder_settings (practice_id, default_schedule, daily_cap, min_lead_minutes, \
             spanish_unaccented, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (practice_id) DO UPDATE SET default_schedule = excluded.default_schedule, \
             daily_cap = excluded.daily_cap, min_lead_minutes = excluded.min_lead_minutes, \
             spanish_unaccented = excluded.spanish_unaccented, updated_at = excluded.updated_at",
        )
        .bind(practice.to_string())
        .bind(settings.default_schedule.to_text())
        .bind(i64::from(settings.limits.daily_cap))
        .bind(i64::from(settings.limits.min_lead_minutes))
        .bind(i64::from(settings.spanish_unaccented))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("DELETE FROM reminder_schedules WHERE practice_id = $1")
            .bind(practice.to_string())
            .execute(&mut *tx.tx)
            .await?;
        for (type_id, schedule) in &settings.by_type {
            sqlx::query(
                "INSERT INTO reminder_schedules (practice_id, appointment_type_id, schedule, updated_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(practice.to_string())
            .bind(type_id.to_string())
            .bind(schedule.to_text())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: principal.actor(),
            action: Action::ReminderSettingsChange,
            targets: vec![practice.to_string()],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await
    }

    /// Every reminder recorded for one visit, oldest first (the worker's input to `decide`).
    pub async fn appointment_reminders(
        &self,
        practice: PracticeId,
        appointment: AppointmentId,
    ) -> Result<Vec<Reminder>> {
        let mut conn = self.pool.acquire().await?;
        // Only the constant column list is formatted in.
        let rows: Vec<ReminderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REMINDER_COLUMNS} FROM appointment_reminders \
             WHERE practice_id = $1 AND appointment_id = $2 ORDER BY created_at, id"
        )))
        .bind(practice.to_string())
        .bind(appointment.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(parse_reminder).collect()
    }

    /// Reminders the practice's cap held back for visits still ahead, for staff.
    pub async fn held_reminders(&self, practice: PracticeId) -> Result<Vec<Reminder>> {
        let mut conn = self.pool.acquire().await?;
        let now = to_micros(self.clock.now());
        let rows: Vec<ReminderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REMINDER_COLUMNS} FROM appointment_reminders \
             WHERE practice_id = $1 AND state = 'held_by_cap' AND starts_at > $2 ORDER BY due_at, id"
        )))
        .bind(practice.to_string())
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(parse_reminder).collect()
    }

    /// Records one decided reminder. For one to send, `plan` turns the send facts (read in this
    /// transaction) into the message and outbox job; it may refuse (no consent for reminders),
    /// and then the reminder is recorded as not sent, with the reason for staff.
    pub async fn record_reminder<F>(&self, reminder: &NewReminder, plan: F) -> Result<Recorded>
    where
        F: FnOnce(&SendFacts) -> std::result::Result<OutboundPlan, PlanRefused>,
    {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let practice = reminder.practice;
        if !visit_is_current(&mut tx, reminder).await? {
            return Ok(Recorded::Stale);
        }
        let id = ReminderId::new();
        let state = ReminderState::from_verdict(reminder.verdict);
        let inserted = sqlx::query(
            "INSERT INTO appointment_reminders (id, practice_id, appointment_id, patient_id, slot, \
             starts_at, due_at, state, awaits_answer, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9) \
             ON CONFLICT (appointment_id, slot, starts_at) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .bind(reminder.appointment.to_string())
        .bind(reminder.patient.to_string())
        .bind(&reminder.slot)
        .bind(to_micros(reminder.starts_at))
        .bind(to_micros(reminder.due_at))
        .bind(state.as_str())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(Recorded::AlreadyRecorded);
        }
        let mut targets = vec![
            reminder.patient.to_string(),
            reminder.appointment.to_string(),
            id.to_string(),
        ];
        let mut final_state = state;
        if state == ReminderState::Sent {
            let conv = self
                .main_conversation(&mut tx.tx, practice, reminder.patient, now)
                .await?;
            let facts = self.send_facts(&mut tx.tx, practice, &conv).await?;
            match plan(&facts) {
                Ok(plan) => {
                    let message = self
                        .insert_message(&mut tx, practice, &conv, &Actor::System, &[], &plan)
                        .await?;
                    // Only a plain text asks for C, R or X; a secure notification does not.
                    let awaits = plan.channel == MessageChannel::Sms;
                    sqlx::query(
                        "UPDATE appointment_reminders SET message_id = $1, delivery = $2, \
                         awaits_answer = $3 WHERE id = $4",
                    )
                    .bind(message.to_string())
                    .bind(&plan.delivery)
                    .bind(i64::from(awaits))
                    .bind(id.to_string())
                    .execute(&mut *tx.tx)
                    .await?;
                    targets.push(message.to_string());
                }
                Err(PlanRefused(reason)) => {
                    final_state = ReminderState::NotSent;
                    sqlx::query(
                        "UPDATE appointment_reminders SET state = 'not_sent', state_reason = $1 WHERE id = $2",
                    )
                    .bind(reason)
                    .bind(id.to_string())
                    .execute(&mut *tx.tx)
                    .await?;
                }
            }
        }
        tx.audit(system_event(
            practice,
            Action::ReminderDecide,
            targets,
            if final_state == ReminderState::Sent {
                Outcome::Success
            } else {
                Outcome::Denied
            },
        ));
        tx.commit().await?;
        if final_state == ReminderState::Sent {
            self.inbox_changed();
        }
        Ok(Recorded::Recorded {
            id,
            state: final_state,
        })
    }

    /// Staff send a reminder the cap held back (while its visit is still ahead and unchanged).
    pub async fn release_reminder<F>(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        reminder: ReminderId,
        plan: F,
    ) -> Result<Reminder>
    where
        F: FnOnce(&SendFacts, &Reminder) -> std::result::Result<OutboundPlan, PlanRefused>,
    {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let row: Option<ReminderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REMINDER_COLUMNS} FROM appointment_reminders WHERE id = $1 AND practice_id = $2"
        )))
        .bind(reminder.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let current = parse_reminder(row.ok_or(StoreError::NotFound)?)?;
        if current.state != ReminderState::HeldByCap {
            return Err(StoreError::Conflict(
                "only a reminder the daily cap held back can be released",
            ));
        }
        let check = NewReminder {
            practice,
            patient: current.patient,
            appointment: current.appointment,
            slot: current.slot.clone(),
            starts_at: current.starts_at,
            due_at: current.due_at,
            verdict: Verdict::Send,
        };
        if !visit_is_current(&mut tx, &check).await? || to_micros(current.starts_at) <= now {
            return Err(StoreError::Conflict(
                "the visit changed, was cancelled or has passed",
            ));
        }
        let conv = self
            .main_conversation(&mut tx.tx, practice, current.patient, now)
            .await?;
        let facts = self.send_facts(&mut tx.tx, practice, &conv).await?;
        let plan = plan(&facts, &current).map_err(|PlanRefused(why)| StoreError::Invalid(why))?;
        let message = self
            .insert_message(&mut tx, practice, &conv, &principal.actor(), &[], &plan)
            .await?;
        sqlx::query(
            "UPDATE appointment_reminders SET state = 'sent', message_id = $1, delivery = $2, \
             awaits_answer = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(message.to_string())
        .bind(&plan.delivery)
        .bind(i64::from(plan.channel == MessageChannel::Sms))
        .bind(now)
        .bind(reminder.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: principal.actor(),
            action: Action::ReminderRelease,
            targets: vec![
                current.patient.to_string(),
                current.appointment.to_string(),
                reminder.to_string(),
                message.to_string(),
            ],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await?;
        self.inbox_changed();
        let mut released = current;
        released.state = ReminderState::Sent;
        released.message = Some(message);
        Ok(released)
    }

    /// Inside the transaction that changes or cancels a visit: its reminders still queued are
    /// withdrawn (their outbox jobs cancelled) and none awaits an answer any more. Reminders
    /// for the new time are decided afresh by the worker.
    pub(crate) async fn withdraw_reminders_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        appointment: AppointmentId,
        reason: &str,
    ) -> Result<usize> {
        let now = tx.now_micros();
        let queued: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT r.id, r.patient_id, j.id, j.message_id FROM appointment_reminders r \
             JOIN outbox_jobs j ON j.message_id = r.message_id \
             WHERE r.practice_id = $1 AND r.appointment_id = $2 AND r.state = 'sent' AND j.status = 'pending'",
        )
        .bind(practice.to_string())
        .bind(appointment.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        for (reminder, patient, job, message) in &queued {
            let patient: PatientId = patient.parse().map_err(|_| malformed())?;
            crate::outbox::cancel_job(tx, &self.ring, practice, patient, job, message, reason)
                .await?;
            sqlx::query(
                "UPDATE appointment_reminders SET state = 'withdrawn', state_reason = $1, \
                 awaits_answer = 0, updated_at = $2 WHERE id = $3",
            )
            .bind(reason)
            .bind(now)
            .bind(reminder)
            .execute(&mut *tx.tx)
            .await?;
            tx.audit(system_event(
                practice,
                Action::ReminderWithdraw,
                vec![
                    patient.to_string(),
                    appointment.to_string(),
                    reminder.clone(),
                ],
                Outcome::Success,
            ));
        }
        sqlx::query(
            "UPDATE appointment_reminders SET awaits_answer = 0, updated_at = $1 \
             WHERE practice_id = $2 AND appointment_id = $3 AND awaits_answer = 1",
        )
        .bind(now)
        .bind(practice.to_string())
        .bind(appointment.to_string())
        .execute(&mut *tx.tx)
        .await?;
        Ok(queued.len())
    }

    /// The latest plain-text reminder to one of these patients that still awaits an answer,
    /// for a visit still ahead and still booked or confirmed.
    pub async fn reminder_awaiting_answer(
        &self,
        practice: PracticeId,
        patients: &[PatientId],
    ) -> Result<Option<AwaitingReminder>> {
        let mut conn = self.pool.acquire().await?;
        let now = to_micros(self.clock.now());
        let mut best: Option<(i64, AwaitingReminder)> = None;
        for patient in patients {
            let row: Option<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT r.id, r.appointment_id, r.created_at FROM appointment_reminders r \
                 JOIN appointments a ON a.id = r.appointment_id \
                 WHERE r.practice_id = $1 AND r.patient_id = $2 AND r.awaits_answer = 1 \
                 AND a.starts_at > $3 AND a.starts_at = r.starts_at AND a.status IN {REMINDED_STATUSES} \
                 ORDER BY r.created_at DESC, r.id DESC LIMIT 1"
            )))
            .bind(practice.to_string())
            .bind(patient.to_string())
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((id, appointment, created)) = row
                && best.as_ref().is_none_or(|(at, _)| created > *at)
            {
                best = Some((
                    created,
                    AwaitingReminder {
                        id: id.parse().map_err(|_| malformed())?,
                        appointment: appointment.parse().map_err(|_| malformed())?,
                        patient: *patient,
                    },
                ));
            }
        }
        Ok(best.map(|(_, r)| r))
    }

    /// Inside the inbound transaction: the patient answered this reminder.
    pub(crate) async fn answer_reminder_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        reminder: &AwaitingReminder,
        answer: &str,
    ) -> Result<()> {
        let now = tx.now_micros();
        sqlx::query(
            "UPDATE appointment_reminders SET awaits_answer = 0, answer = $1, answered_at = $2, \
             updated_at = $2 WHERE id = $3 AND practice_id = $4",
        )
        .bind(answer)
        .bind(now)
        .bind(reminder.id.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(system_event(
            practice,
            Action::ReminderAnswer,
            vec![
                reminder.patient.to_string(),
                reminder.appointment.to_string(),
                reminder.id.to_string(),
                answer.to_owned(),
            ],
            Outcome::Success,
        ));
        Ok(())
    }
}

/// The visit is still booked or confirmed, at the time the reminder was decided for.
async fn visit_is_current(tx: &mut WriteTx<'_>, reminder: &NewReminder) -> Result<bool> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT starts_at, status FROM appointments WHERE id = $1 AND practice_id = $2 AND patient_id = $3",
    )
    .bind(reminder.appointment.to_string())
    .bind(reminder.practice.to_string())
    .bind(reminder.patient.to_string())
    .fetch_optional(&mut *tx.tx)
    .await?;
    Ok(row.is_some_and(|(starts, status)| {
        starts == to_micros(reminder.starts_at) && matches!(status.as_str(), "booked" | "confirmed")
    }))
}

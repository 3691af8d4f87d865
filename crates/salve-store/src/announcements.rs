//! General practice announcements, store side. The text is sealed under the practice key.
//! When the send starts, the patients the filter and their consent select are recorded once
//! each (the recipients' primary key); the worker then queues them in batches, each recipient's
//! row, message, outbox job and audit row in one transaction, so a restarted or second instance
//! queues nobody twice. Consent is checked again for each one as it is queued, and again by the
//! outbox when the job is claimed: a patient who opts out mid-send gets nothing.

use std::collections::BTreeMap;

use salve_core::announcements::{
    self, HoldReason, RecipientFilter, RecipientResult, Status, VisitFacts,
};
use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::clock::{from_micros, to_micros};
use salve_core::consent::ConsentState;
use salve_core::permissions::Principal;
use salve_core::policy::Route;
use salve_core::{AnnouncementId, CatalogItemId, PatientId, PracticeId, Sensitive};
use salve_crypto::FieldAad;
use sqlx::AnyConnection;
use time::OffsetDateTime;

use crate::messaging::{OutboundPlan, SendFacts};
use crate::patients::{Idempotency, check_practice};
use crate::{Result, Store, StoreError};

/// A new announcement, as staff wrote it and the channel policy judged it.
#[derive(Debug, Clone)]
pub struct NewAnnouncement {
    pub text: Sensitive<String>,
    /// The policy's decision on the text (JSON, as messages keep it); sealed: it quotes the text.
    pub decision_json: String,
    pub route: Route,
    pub filter: RecipientFilter,
    pub scheduled_at: Option<OffsetDateTime>,
}

/// An announcement as staff see it.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub id: AnnouncementId,
    pub practice: PracticeId,
    pub text: Sensitive<String>,
    pub decision_json: Sensitive<String>,
    pub route: Route,
    pub filter: RecipientFilter,
    pub status: Status,
    pub scheduled_at: Option<OffsetDateTime>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// Chosen when the send started (0 before).
    pub recipients: i64,
    pub queued: i64,
    pub held_back: i64,
    pub created_by: Actor,
    pub created_at: OffsetDateTime,
}

/// Where each recipient stands: counts only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub recipients: i64,
    pub pending: i64,
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub failed: i64,
    pub held_back: BTreeMap<HoldReason, i64>,
}

impl Progress {
    pub fn held_back_total(&self) -> i64 {
        self.held_back.values().sum()
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Batch {
    pub queued: usize,
    pub held_back: usize,
    /// Every recipient is now recorded and the announcement is done.
    pub finished: bool,
}

type Row = (
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    i64,
    String,
    String,
    i64,
);

/// A visit: id, start, status, sealed provider, sealed location.
type VisitRow = (String, i64, String, Vec<u8>, Vec<u8>);
/// Recipients by state, hold reason, job status and message status, with their count.
type ProgressRow = (String, Option<String>, Option<String>, Option<String>, i64);

const COLUMNS: &str = "id, practice_id, body, decision, route, filter, status, scheduled_at, \
    started_at, finished_at, recipient_count, queued_count, held_count, created_by_kind, \
    created_by_id, created_at";

fn malformed() -> StoreError {
    StoreError::KeyRing("malformed announcement row".into())
}

fn actor_of(kind: &str, id: &str) -> Actor {
    match kind {
        "user" => id.parse().map(Actor::User).unwrap_or(Actor::System),
        "token" => id.parse().map(Actor::ApiToken).unwrap_or(Actor::System),
        "cli" => Actor::Cli,
        _ => Actor::System,
    }
}

fn event(
    practice: PracticeId,
    actor: Actor,
    ctx: &RequestContext,
    action: Action,
    targets: Vec<String>,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent::in_practice(practice, actor, ctx, action, targets, outcome)
}

/// Visits in these states count for "with an upcoming appointment".
fn visit_active(status: &str) -> bool {
    matches!(status, "booked" | "confirmed")
}

impl Store {
    async fn parse_announcement(&self, conn: &mut AnyConnection, row: Row) -> Result<Announcement> {
        let (
            id,
            practice,
            body,
            decision,
            route,
            filter,
            status,
            scheduled,
            started,
            finished,
            recipients,
            queued,
            held,
            by_kind,
            by_id,
            created,
        ) = row;
        let practice: PracticeId = practice.parse().map_err(|_| malformed())?;
        let keys = self.ring.practice_keys(conn, practice).await?;
        let text = keys
            .practice
            .open_string(FieldAad::new("announcements", "body", &id), &body)?;
        let decision = keys
            .practice
            .open_string(FieldAad::new("announcements", "decision", &id), &decision)?;
        Ok(Announcement {
            id: id.parse().map_err(|_| malformed())?,
            practice,
            text: Sensitive::new(text),
            decision_json: Sensitive::new(decision),
            route: Route::parse(&route).ok_or_else(malformed)?,
            filter: serde_json::from_str(&filter).map_err(|_| malformed())?,
            status: Status::parse(&status).ok_or_else(malformed)?,
            scheduled_at: scheduled.map(from_micros),
            started_at: started.map(from_micros),
            finished_at: finished.map(from_micros),
            recipients,
            queued,
            held_back: held,
            created_by: actor_of(&by_kind, &by_id),
            created_at: from_micros(created),
        })
    }

    async fn load_announcement(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        id: AnnouncementId,
    ) -> Result<Announcement> {
        // Only the constant column list is formatted in.
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM announcements WHERE id = $1 AND practice_id = $2"
        )))
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        self.parse_announcement(conn, row.ok_or(StoreError::NotFound)?)
            .await
    }

    /// Writes a draft (with its wished time, if any), audited. A repeated `Idempotency-Key`
    /// with the same request returns the first draft (`true`) and writes nothing.
    pub async fn create_announcement(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        new: &NewAnnouncement,
        idempotency: Option<Idempotency>,
    ) -> Result<(Announcement, bool)> {
        check_practice(principal, practice)?;
        new.filter
            .validate()
            .map_err(|e| StoreError::Invalid(format!("{}: {}", e[0].field, e[0].expected)))?;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let actor = principal.actor();
        let actor_key = format!("{}:{}", actor.kind(), actor.id());
        if let Some(idem) = &idempotency
            && let Some(resource) = idem.prior(&mut tx.tx, practice, &actor_key).await?
        {
            let id: AnnouncementId = resource.parse().map_err(|_| malformed())?;
            let found = self.load_announcement(&mut tx.tx, practice, id).await?;
            return Ok((found, true));
        }
        let id = AnnouncementId::new();
        let row = id.to_string();
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        sqlx::query(
            "INSERT INTO announcements (id, practice_id, body, decision, route, filter, status, \
             scheduled_at, recipient_count, queued_count, held_count, created_by_kind, \
             created_by_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, 0, 0, 0, $8, $9, $10, $10)",
        )
        .bind(&row)
        .bind(practice.to_string())
        .bind(keys.practice.seal_str(
            FieldAad::new("announcements", "body", &row),
            new.text.expose(),
        ))
        .bind(keys.practice.seal_str(
            FieldAad::new("announcements", "decision", &row),
            &new.decision_json,
        ))
        .bind(new.route.as_str())
        .bind(serde_json::to_string(&new.filter).map_err(|_| malformed())?)
        .bind(new.scheduled_at.map(to_micros))
        .bind(actor.kind())
        .bind(actor.id())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        if let Some(idem) = &idempotency {
            idem.record(&mut tx, practice, &actor_key, &row);
        }
        tx.audit(event(
            practice,
            actor,
            ctx,
            Action::AnnouncementCreate,
            vec![row.clone()],
            Outcome::Success,
        ));
        let created = self.load_announcement(&mut tx.tx, practice, id).await?;
        tx.commit().await?;
        Ok((created, false))
    }

    pub async fn announcement(
        &self,
        practice: PracticeId,
        id: AnnouncementId,
    ) -> Result<Announcement> {
        let mut conn = self.pool.acquire().await?;
        self.load_announcement(&mut conn, practice, id).await
    }

    /// The practice's announcements, newest first.
    pub async fn announcements(&self, practice: PracticeId) -> Result<Vec<Announcement>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM announcements WHERE practice_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT 200"
        )))
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.parse_announcement(&mut conn, row).await?);
        }
        Ok(out)
    }

    /// The patients an announcement with this filter would go to now: those with
    /// `announcements` consent on a channel that can carry it, matching the filter.
    async fn matching_patients(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        filter: &RecipientFilter,
        route: Route,
        now: OffsetDateTime,
    ) -> Result<Vec<PatientId>> {
        // Only patients with an announcements event in their ledger can have consent.
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT c.patient_id FROM consent_events c \
             JOIN patients p ON p.id = c.patient_id AND p.practice_id = c.practice_id \
             WHERE c.practice_id = $1 AND c.purpose = 'announcements' AND p.shredded_at IS NULL \
             ORDER BY c.patient_id",
        )
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::new();
        for raw in candidates {
            let patient: PatientId = raw.parse().map_err(|_| malformed())?;
            let history = self.consent_history_in(conn, practice, patient).await?;
            if !announcements::reachable(&ConsentState::from_history(&history), route) {
                continue;
            }
            if filter.needs_visits() {
                let visits = self
                    .visit_facts(conn, practice, patient, filter, now)
                    .await?;
                if !filter.matches(&visits, now) {
                    continue;
                }
            }
            out.push(patient);
        }
        Ok(out)
    }

    /// A patient's visits from now on, with provider and location opened only when the
    /// filter names some.
    async fn visit_facts(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patient: PatientId,
        filter: &RecipientFilter,
        now: OffsetDateTime,
    ) -> Result<Vec<VisitFacts>> {
        let rows: Vec<VisitRow> = sqlx::query_as(
            "SELECT id, starts_at, status, provider_id, location_id FROM appointments \
             WHERE practice_id = $1 AND patient_id = $2 AND starts_at >= $3",
        )
        .bind(practice.to_string())
        .bind(patient.to_string())
        .bind(to_micros(now))
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let need_items = !filter.providers.is_empty() || !filter.locations.is_empty();
        let key = if need_items {
            Some(self.ring.patient_key(conn, practice, patient).await?)
        } else {
            None
        };
        let mut out = Vec::with_capacity(rows.len());
        for (id, starts, status, provider, location) in rows {
            // Without provider or location conditions the ids are not needed: a nil id
            // matches nothing and is never looked at.
            let item = |column: &str, sealed: &[u8]| -> Result<CatalogItemId> {
                match &key {
                    Some(key) => key
                        .open_string(FieldAad::new("appointments", column, &id), sealed)?
                        .parse()
                        .map_err(|_| malformed()),
                    None => Ok(CatalogItemId::from_uuid(uuid::Uuid::nil())),
                }
            };
            out.push(VisitFacts {
                starts_at: from_micros(starts),
                active: visit_active(&status),
                provider: item("provider_id", &provider)?,
                location: item("location_id", &location)?,
            });
        }
        Ok(out)
    }

    /// How many patients an announcement with this filter, whose text the policy routes
    /// `route`, would reach now (writes nothing).
    pub async fn count_announcement_recipients(
        &self,
        practice: PracticeId,
        filter: &RecipientFilter,
        route: Route,
    ) -> Result<usize> {
        filter
            .validate()
            .map_err(|e| StoreError::Invalid(format!("{}: {}", e[0].field, e[0].expected)))?;
        let mut conn = self.pool.acquire().await?;
        let now = self.clock.now();
        Ok(self
            .matching_patients(&mut conn, practice, filter, route, now)
            .await?
            .len())
    }

    /// Sends a draft now or at `at` (or at the time it was written with); moves a scheduled
    /// one. Audited.
    pub async fn schedule_announcement(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: AnnouncementId,
        at: Option<OffsetDateTime>,
    ) -> Result<Announcement> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let current = self.load_announcement(&mut tx.tx, practice, id).await?;
        if !current.status.may_schedule() {
            return Err(StoreError::Conflict(
                "only a draft or a scheduled announcement can be sent",
            ));
        }
        let when = at.or(current.scheduled_at).map_or(now, to_micros).max(now);
        sqlx::query(
            "UPDATE announcements SET status = 'scheduled', scheduled_at = $1, updated_at = $2 \
             WHERE id = $3 AND practice_id = $4",
        )
        .bind(when)
        .bind(now)
        .bind(id.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(event(
            practice,
            principal.actor(),
            ctx,
            Action::AnnouncementSchedule,
            vec![id.to_string()],
            Outcome::Success,
        ));
        let out = self.load_announcement(&mut tx.tx, practice, id).await?;
        tx.commit().await?;
        self.inbox_changed();
        Ok(out)
    }

    /// Cancels an announcement not yet finished: recipients not yet queued get nothing, and
    /// messages still waiting in the outbox are withdrawn. Audited. Cancelling a cancelled one
    /// changes nothing; a finished one is a conflict.
    pub async fn cancel_announcement(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: AnnouncementId,
    ) -> Result<Announcement> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let current = self.load_announcement(&mut tx.tx, practice, id).await?;
        // Cancelling again changes nothing (a retried request).
        if current.status == Status::Cancelled {
            return Ok(current);
        }
        if !current.status.may_cancel() {
            return Err(StoreError::Conflict(
                "this announcement has already been sent",
            ));
        }
        let held = sqlx::query(
            "UPDATE announcement_recipients SET state = 'held_back', hold_reason = 'cancelled', \
             updated_at = $1 WHERE announcement_id = $2 AND state = 'pending'",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        let waiting: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT r.patient_id, j.id, j.message_id FROM announcement_recipients r \
             JOIN outbox_jobs j ON j.message_id = r.message_id \
             WHERE r.announcement_id = $1 AND r.state = 'queued' AND j.status = 'pending'",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        for (patient, job, message) in &waiting {
            let patient: PatientId = patient.parse().map_err(|_| malformed())?;
            crate::outbox::cancel_job(
                &mut tx,
                &self.ring,
                practice,
                patient,
                job,
                message,
                "the announcement was cancelled",
            )
            .await?;
        }
        sqlx::query(
            "UPDATE announcements SET status = 'cancelled', held_count = held_count + $1, \
             finished_at = $2, updated_at = $2 WHERE id = $3 AND practice_id = $4",
        )
        .bind(held as i64)
        .bind(now)
        .bind(id.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(event(
            practice,
            principal.actor(),
            ctx,
            Action::AnnouncementCancel,
            vec![id.to_string()],
            Outcome::Success,
        ));
        let out = self.load_announcement(&mut tx.tx, practice, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Counts of where the recipients stand, from their rows, outbox jobs and messages.
    pub async fn announcement_progress(
        &self,
        practice: PracticeId,
        id: AnnouncementId,
    ) -> Result<Progress> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<ProgressRow> = sqlx::query_as(
            "SELECT r.state, r.hold_reason, j.status, m.status, COUNT(*) \
                 FROM announcement_recipients r \
                 LEFT JOIN messages m ON m.id = r.message_id \
                 LEFT JOIN outbox_jobs j ON j.message_id = r.message_id \
                 WHERE r.announcement_id = $1 AND r.practice_id = $2 \
                 GROUP BY r.state, r.hold_reason, j.status, m.status",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let mut p = Progress::default();
        for (state, reason, job, message, n) in rows {
            p.recipients += n;
            let held = match state.as_str() {
                "held_back" => Some(
                    reason
                        .as_deref()
                        .and_then(HoldReason::parse)
                        .ok_or_else(malformed)?,
                ),
                _ => None,
            };
            // A queued recipient always has a job; "pending" here means not queued yet.
            let job = if state == "pending" {
                None
            } else {
                Some(job.as_deref().unwrap_or("pending"))
            };
            match RecipientResult::of(held, job, message.as_deref()) {
                RecipientResult::Pending => p.pending += n,
                RecipientResult::Queued => p.queued += n,
                RecipientResult::Sent => p.sent += n,
                RecipientResult::Delivered => p.delivered += n,
                RecipientResult::Failed => p.failed += n,
                RecipientResult::HeldBack(r) => *p.held_back.entry(r).or_default() += n,
            }
        }
        Ok(p)
    }

    /// Announcements whose time has come, oldest first: (practice, id).
    pub async fn due_announcements(
        &self,
        limit: usize,
    ) -> Result<Vec<(PracticeId, AnnouncementId)>> {
        let mut conn = self.pool.acquire().await?;
        let now = to_micros(self.clock.now());
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT practice_id, id FROM announcements \
             WHERE status IN ('scheduled', 'sending') AND scheduled_at <= $1 \
             ORDER BY scheduled_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(p, i)| {
                Ok((
                    p.parse().map_err(|_| malformed())?,
                    i.parse().map_err(|_| malformed())?,
                ))
            })
            .collect()
    }

    /// Starts a due scheduled announcement: records its recipients (the filter and consent,
    /// now) in one transaction. `false` when it was not scheduled (another instance started
    /// it, or it was cancelled).
    pub async fn start_announcement(
        &self,
        practice: PracticeId,
        id: AnnouncementId,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        // Claimed first: on PostgreSQL a second instance waits here, then finds it started.
        let claimed = sqlx::query(
            "UPDATE announcements SET status = 'sending', started_at = $1, updated_at = $1 \
             WHERE id = $2 AND practice_id = $3 AND status = 'scheduled' AND scheduled_at <= $1",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(false);
        }
        let current = self.load_announcement(&mut tx.tx, practice, id).await?;
        let patients = self
            .matching_patients(&mut tx.tx, practice, &current.filter, current.route, tx.now)
            .await?;
        for patient in &patients {
            sqlx::query(
                "INSERT INTO announcement_recipients (announcement_id, patient_id, practice_id, \
                 state, created_at, updated_at) VALUES ($1, $2, $3, 'pending', $4, $4) \
                 ON CONFLICT (announcement_id, patient_id) DO NOTHING",
            )
            .bind(id.to_string())
            .bind(patient.to_string())
            .bind(practice.to_string())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        sqlx::query("UPDATE announcements SET recipient_count = $1 WHERE id = $2")
            .bind(patients.len() as i64)
            .bind(id.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(event(
            practice,
            Actor::System,
            &RequestContext::default(),
            Action::AnnouncementStart,
            vec![id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(true)
    }

    /// Queues up to `limit` recipients not yet queued, each in its own transaction with its
    /// message, outbox job and audit row. `plan` routes one patient's message from the facts
    /// read in that transaction, or says why they get nothing. When none is left, the
    /// announcement is done.
    pub async fn enqueue_announcement_batch<F>(
        &self,
        practice: PracticeId,
        id: AnnouncementId,
        limit: usize,
        plan: F,
    ) -> Result<Batch>
    where
        F: Fn(&Announcement, &SendFacts) -> std::result::Result<OutboundPlan, HoldReason>,
    {
        let mut batch = Batch::default();
        let announcement = self.announcement(practice, id).await?;
        if announcement.status != Status::Sending {
            return Ok(batch);
        }
        let pending: Vec<String> = {
            let mut conn = self.pool.acquire().await?;
            sqlx::query_scalar(
                "SELECT patient_id FROM announcement_recipients \
                 WHERE announcement_id = $1 AND practice_id = $2 AND state = 'pending' \
                 ORDER BY patient_id LIMIT $3",
            )
            .bind(id.to_string())
            .bind(practice.to_string())
            .bind(limit as i64)
            .fetch_all(&mut *conn)
            .await?
        };
        for raw in &pending {
            let patient: PatientId = raw.parse().map_err(|_| malformed())?;
            match self.enqueue_one(&announcement, patient, &plan).await? {
                Some(true) => batch.queued += 1,
                Some(false) => batch.held_back += 1,
                None => {}
            }
        }
        if batch.queued > 0 {
            self.inbox_changed();
        }
        if pending.len() < limit {
            batch.finished = self.finish_announcement(practice, id).await?;
        }
        Ok(batch)
    }

    /// One recipient: `Some(true)` queued, `Some(false)` held back, `None` when another
    /// instance (or a cancel) got there first.
    async fn enqueue_one<F>(
        &self,
        announcement: &Announcement,
        patient: PatientId,
        plan: &F,
    ) -> Result<Option<bool>>
    where
        F: Fn(&Announcement, &SendFacts) -> std::result::Result<OutboundPlan, HoldReason>,
    {
        let practice = announcement.practice;
        let id = announcement.id.to_string();
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        // Claimed first, and only while the announcement is still sending.
        let claimed = sqlx::query(
            "UPDATE announcement_recipients SET state = 'queued', updated_at = $1 \
             WHERE announcement_id = $2 AND patient_id = $3 AND state = 'pending' \
             AND EXISTS (SELECT 1 FROM announcements a WHERE a.id = $2 AND a.status = 'sending')",
        )
        .bind(now)
        .bind(&id)
        .bind(patient.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(None);
        }
        let conv = self
            .main_conversation(&mut tx.tx, practice, patient, now)
            .await?;
        let decided = match self.send_facts(&mut tx.tx, practice, &conv).await {
            Ok(facts) => plan(announcement, &facts),
            // Shredded since the send started: nobody to reach.
            Err(StoreError::Shredded) => Err(HoldReason::NoContactPoint),
            Err(e) => return Err(e),
        };
        let mut targets = vec![patient.to_string(), id.clone()];
        let queued = match decided {
            Ok(plan) => {
                let message = self
                    .insert_message(&mut tx, practice, &conv, &Actor::System, &[], &plan)
                    .await?;
                sqlx::query(
                    "UPDATE announcement_recipients SET message_id = $1 \
                     WHERE announcement_id = $2 AND patient_id = $3",
                )
                .bind(message.to_string())
                .bind(&id)
                .bind(patient.to_string())
                .execute(&mut *tx.tx)
                .await?;
                sqlx::query(
                    "UPDATE announcements SET queued_count = queued_count + 1, updated_at = $1 WHERE id = $2",
                )
                .bind(now)
                .bind(&id)
                .execute(&mut *tx.tx)
                .await?;
                targets.push(message.to_string());
                true
            }
            Err(reason) => {
                sqlx::query(
                    "UPDATE announcement_recipients SET state = 'held_back', hold_reason = $1 \
                     WHERE announcement_id = $2 AND patient_id = $3",
                )
                .bind(reason.as_str())
                .bind(&id)
                .bind(patient.to_string())
                .execute(&mut *tx.tx)
                .await?;
                sqlx::query(
                    "UPDATE announcements SET held_count = held_count + 1, updated_at = $1 WHERE id = $2",
                )
                .bind(now)
                .bind(&id)
                .execute(&mut *tx.tx)
                .await?;
                targets.push(reason.as_str().to_owned());
                false
            }
        };
        tx.audit(event(
            practice,
            Actor::System,
            &RequestContext::default(),
            Action::AnnouncementRecipient,
            targets,
            if queued {
                Outcome::Success
            } else {
                Outcome::Denied
            },
        ));
        tx.commit().await?;
        Ok(Some(queued))
    }

    /// Marks a sending announcement done once no recipient is pending; `true` if it did.
    async fn finish_announcement(&self, practice: PracticeId, id: AnnouncementId) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let done = sqlx::query(
            "UPDATE announcements SET status = 'done', finished_at = $1, updated_at = $1 \
             WHERE id = $2 AND practice_id = $3 AND status = 'sending' AND NOT EXISTS \
             (SELECT 1 FROM announcement_recipients r WHERE r.announcement_id = $2 AND r.state = 'pending')",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        tx.audit(event(
            practice,
            Actor::System,
            &RequestContext::default(),
            Action::AnnouncementDone,
            vec![id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(true)
    }
}

//! Office hours, holidays and response-time promises: the practice's settings, when each
//! conversation started waiting for a staff reply, escalations (one per waiting episode), the
//! after-hours reply log and the first-response report.
//!
//! "Waiting since" is computed from clear columns only (direction, author kind, time), never
//! from message bodies: the earliest inbound message after the last message staff (a user, or
//! the practice's integration token) sent the patient. System messages (the after-hours reply,
//! opt-out confirmations) and internal notes are not a response. Whether a wait is overdue is
//! business time, decided by salve-core with the practice's hours.

use std::collections::BTreeMap;

use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::clock::{from_micros, to_micros};
use salve_core::hours::{Holiday, Interval, OfficeHours};
use salve_core::permissions::Principal;
use salve_core::response_time::{
    self, DEFAULT_TARGET_MINUTES, Episode, FirstResponseStats, TimelineEvent,
};
use salve_core::{ConversationId, PracticeId, UserId};
use sqlx::AnyConnection;
use time::OffsetDateTime;

use crate::{Result, Store, StoreError};

/// The response target and who is told when a conversation is overdue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSettings {
    /// Business minutes a patient may wait for a staff reply.
    pub target_minutes: i64,
    pub escalation_recipients: Vec<UserId>,
}

/// Where one conversation stands against the response target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseStatus {
    /// When the patient started waiting for a staff reply; `None`: nothing unanswered.
    pub waiting_since: Option<OffsetDateTime>,
    /// Waiting (and not closed) for at least the target, in business time.
    pub overdue: bool,
    /// The current waiting episode was escalated to the practice's chosen people.
    pub escalated: bool,
}

/// A conversation the escalation step found overdue and not yet escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverdueConversation {
    pub practice: PracticeId,
    pub conversation: ConversationId,
    pub waiting_since: OffsetDateTime,
}

/// The first-response report of a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseReport {
    pub stats: FirstResponseStats,
    /// Conversations overdue right now.
    pub overdue_now: usize,
}

/// The hours and target used to judge a practice's waits.
#[derive(Debug, Clone)]
pub(crate) struct ResponsePolicy {
    pub hours: OfficeHours,
    pub target_secs: i64,
}

/// The staff reply that ends a wait: a message sent to the patient by a user or the practice's
/// integration token (not a system message, not a note).
fn staff_reply(alias: &str) -> String {
    format!("{alias}.direction = 'outbound' AND {alias}.author_kind IN ('user', 'token')")
}

fn waiting_since_sql() -> String {
    format!(
        "SELECT MIN(m.created_at) FROM messages m WHERE m.conversation_id = $1 \
         AND m.direction = 'inbound' AND m.created_at > COALESCE((SELECT MAX(r.created_at) \
         FROM messages r WHERE r.conversation_id = $1 AND {}), -1)",
        staff_reply("r")
    )
}

/// Conversation `c` has a patient message after its last staff reply (it is waiting).
fn waiting_condition() -> String {
    format!(
        "(SELECT MAX(i.created_at) FROM messages i WHERE i.conversation_id = c.id \
         AND i.direction = 'inbound') > COALESCE((SELECT MAX(r.created_at) FROM messages r \
         WHERE r.conversation_id = c.id AND {}), -1)",
        staff_reply("r")
    )
}

fn bad(what: &str) -> StoreError {
    StoreError::KeyRing(format!("malformed {what} row"))
}

fn event(
    practice: PracticeId,
    actor: Actor,
    ctx: &RequestContext,
    action: Action,
    targets: Vec<String>,
) -> AuditEvent {
    AuditEvent::in_practice(practice, actor, ctx, action, targets, Outcome::Success)
}

/// The conversation's current waiting start (Unix microseconds), from clear columns.
pub(crate) async fn waiting_since_in(
    conn: &mut AnyConnection,
    conversation: ConversationId,
) -> Result<Option<i64>> {
    let since: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(waiting_since_sql()))
        .bind(conversation.to_string())
        .fetch_one(&mut *conn)
        .await?;
    Ok(since)
}

/// When the conversation last got the after-hours reply.
pub(crate) async fn last_after_hours_reply_in(
    conn: &mut AnyConnection,
    conversation: ConversationId,
) -> Result<Option<OffsetDateTime>> {
    let at: Option<i64> =
        sqlx::query_scalar("SELECT sent_at FROM after_hours_replies WHERE conversation_id = $1")
            .bind(conversation.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(at.map(from_micros))
}

/// Records that the conversation got the after-hours reply at `at` (in the caller's
/// transaction, with the system message itself).
pub(crate) async fn record_after_hours_reply_in(
    conn: &mut AnyConnection,
    conversation: ConversationId,
    at: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO after_hours_replies (conversation_id, practice_id, sent_at) \
         SELECT id, practice_id, $2 FROM conversations WHERE id = $1 \
         ON CONFLICT (conversation_id) DO UPDATE SET sent_at = excluded.sent_at",
    )
    .bind(conversation.to_string())
    .bind(to_micros(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn practice_time_zone(conn: &mut AnyConnection, practice: PracticeId) -> Result<String> {
    sqlx::query_scalar("SELECT time_zone FROM practices WHERE id = $1")
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)
}

/// The practice's configured office hours (`None`: not configured, always open).
pub(crate) async fn office_hours_in(
    conn: &mut AnyConnection,
    practice: PracticeId,
) -> Result<Option<OfficeHours>> {
    let zone: Option<String> =
        sqlx::query_scalar("SELECT time_zone FROM practice_office_hours WHERE practice_id = $1")
            .bind(practice.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(zone) = zone else {
        return Ok(None);
    };
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT weekday, start_minute, end_minute FROM office_hours_intervals \
         WHERE practice_id = $1 ORDER BY weekday, start_minute",
    )
    .bind(practice.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut weekly: [Vec<Interval>; 7] = Default::default();
    for (day, start, end) in rows {
        let interval = u16::try_from(start)
            .ok()
            .zip(u16::try_from(end).ok())
            .and_then(|(s, e)| Interval::new(s, e))
            .ok_or_else(|| bad("office hours"))?;
        weekly
            .get_mut(usize::try_from(day).map_err(|_| bad("office hours"))?)
            .ok_or_else(|| bad("office hours"))?
            .push(interval);
    }
    let holidays: Vec<(String, String)> = sqlx::query_as(
        "SELECT holiday_date, name FROM practice_holidays WHERE practice_id = $1 \
         ORDER BY holiday_date",
    )
    .bind(practice.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let holidays = holidays
        .into_iter()
        .map(|(date, name)| {
            Ok(Holiday {
                date: date.parse().map_err(|_| bad("holiday"))?,
                name,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    OfficeHours::new(&zone, weekly, holidays)
        .map(Some)
        .map_err(|_| bad("office hours"))
}

pub(crate) async fn response_settings_in(
    conn: &mut AnyConnection,
    practice: PracticeId,
) -> Result<ResponseSettings> {
    let target: Option<i64> = sqlx::query_scalar(
        "SELECT target_minutes FROM practice_response_settings WHERE practice_id = $1",
    )
    .bind(practice.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let recipients: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM response_escalation_recipients WHERE practice_id = $1 ORDER BY user_id",
    )
    .bind(practice.to_string())
    .fetch_all(&mut *conn)
    .await?;
    Ok(ResponseSettings {
        target_minutes: target.unwrap_or(DEFAULT_TARGET_MINUTES),
        escalation_recipients: recipients
            .iter()
            .map(|u| u.parse().map_err(|_| bad("escalation recipient")))
            .collect::<Result<_>>()?,
    })
}

pub(crate) async fn response_policy_in(
    conn: &mut AnyConnection,
    practice: PracticeId,
) -> Result<ResponsePolicy> {
    let hours = match office_hours_in(conn, practice).await? {
        Some(hours) => hours,
        None => OfficeHours::always_open(&practice_time_zone(conn, practice).await?),
    };
    let settings = response_settings_in(conn, practice).await?;
    Ok(ResponsePolicy {
        hours,
        target_secs: settings.target_minutes * 60,
    })
}

/// One conversation against the target (`closed`: a closed conversation is never overdue).
pub(crate) async fn response_status_in(
    conn: &mut AnyConnection,
    policy: &ResponsePolicy,
    conversation: ConversationId,
    closed: bool,
    now: OffsetDateTime,
) -> Result<ResponseStatus> {
    let Some(since) = waiting_since_in(conn, conversation).await? else {
        return Ok(ResponseStatus::default());
    };
    let escalated: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM conversation_escalations WHERE conversation_id = $1 \
         AND waiting_since = $2",
    )
    .bind(conversation.to_string())
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    let since = from_micros(since);
    Ok(ResponseStatus {
        waiting_since: Some(since),
        overdue: !closed
            && response_time::is_overdue(since, now, policy.target_secs, &policy.hours),
        escalated: escalated > 0,
    })
}

/// Active staff who can work the inbox (not auditors, not disabled).
async fn active_inbox_staff(conn: &mut AnyConnection, practice: PracticeId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.practice_id = $1 AND m.role IN ('admin', 'clinician', 'staff') \
         AND u.disabled_at IS NULL AND m.disabled_at IS NULL",
    )
    .bind(practice.to_string())
    .fetch_all(&mut *conn)
    .await?)
}

impl Store {
    /// The practice's office hours; `None` until an admin sets them (the practice is then
    /// treated as always open).
    pub async fn office_hours(&self, practice: PracticeId) -> Result<Option<OfficeHours>> {
        let mut conn = self.pool.acquire().await?;
        office_hours_in(&mut conn, practice).await
    }

    /// Replaces the practice's weekly intervals and holidays.
    pub async fn set_office_hours(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        hours: &OfficeHours,
    ) -> Result<()> {
        crate::patients::check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let id = practice.to_string();
        sqlx::query(
            "INSERT INTO practice_office_hours (practice_id, time_zone, updated_at) \
             VALUES ($1, $2, $3) ON CONFLICT (practice_id) DO UPDATE SET \
             time_zone = excluded.time_zone, updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(hours.time_zone())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("DELETE FROM office_hours_intervals WHERE practice_id = $1")
            .bind(&id)
            .execute(&mut *tx.tx)
            .await?;
        for (day, intervals) in hours.weekly().iter().enumerate() {
            for interval in intervals {
                sqlx::query(
                    "INSERT INTO office_hours_intervals (practice_id, weekday, start_minute, \
                     end_minute) VALUES ($1, $2, $3, $4)",
                )
                .bind(&id)
                .bind(day as i64)
                .bind(i64::from(interval.start_minute()))
                .bind(i64::from(interval.end_minute()))
                .execute(&mut *tx.tx)
                .await?;
            }
        }
        sqlx::query("DELETE FROM practice_holidays WHERE practice_id = $1")
            .bind(&id)
            .execute(&mut *tx.tx)
            .await?;
        for holiday in hours.holidays() {
            sqlx::query(
                "INSERT INTO practice_holidays (practice_id, holiday_date, name) VALUES ($1, $2, $3)",
            )
            .bind(&id)
            .bind(holiday.date.to_string())
            .bind(&holiday.name)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.audit(event(
            practice,
            principal.actor(),
            ctx,
            Action::PracticeHoursUpdate,
            vec![id],
        ));
        tx.commit().await
    }

    /// The response target (default four business hours) and escalation recipients.
    pub async fn response_settings(&self, practice: PracticeId) -> Result<ResponseSettings> {
        let mut conn = self.pool.acquire().await?;
        response_settings_in(&mut conn, practice).await
    }

    /// Sets the target and recipients. Recipients must be active staff of the practice who work
    /// the inbox (`StoreError::Invalid` otherwise); the target must be within the allowed range.
    pub async fn set_response_settings(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        settings: &ResponseSettings,
    ) -> Result<()> {
        crate::patients::check_practice(principal, practice)?;
        if !(response_time::MIN_TARGET_MINUTES..=response_time::MAX_TARGET_MINUTES)
            .contains(&settings.target_minutes)
        {
            return Err(StoreError::Invalid(format!(
                "target_minutes must be between {} and {}",
                response_time::MIN_TARGET_MINUTES,
                response_time::MAX_TARGET_MINUTES
            )));
        }
        let mut tx = self.begin().await?;
        let staff = active_inbox_staff(&mut tx.tx, practice).await?;
        let mut recipients: Vec<String> = settings
            .escalation_recipients
            .iter()
            .map(ToString::to_string)
            .collect();
        recipients.sort();
        recipients.dedup();
        if recipients.iter().any(|r| !staff.contains(r)) {
            return Err(StoreError::Invalid(
                "escalation_recipients must be active staff of the practice (not auditors)".into(),
            ));
        }
        let now = tx.now_micros();
        let id = practice.to_string();
        sqlx::query(
            "INSERT INTO practice_response_settings (practice_id, target_minutes, updated_at) \
             VALUES ($1, $2, $3) ON CONFLICT (practice_id) DO UPDATE SET \
             target_minutes = excluded.target_minutes, updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(settings.target_minutes)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("DELETE FROM response_escalation_recipients WHERE practice_id = $1")
            .bind(&id)
            .execute(&mut *tx.tx)
            .await?;
        for user in &recipients {
            sqlx::query(
                "INSERT INTO response_escalation_recipients (practice_id, user_id) VALUES ($1, $2)",
            )
            .bind(&id)
            .bind(user)
            .execute(&mut *tx.tx)
            .await?;
        }
        let mut targets = vec![id];
        targets.extend(recipients);
        tx.audit(event(
            practice,
            principal.actor(),
            ctx,
            Action::ResponseSettingsUpdate,
            targets,
        ));
        tx.commit().await
    }

    /// When the conversation last got the after-hours reply (for
    /// [`salve_core::hours::after_hours_reply_due`]).
    pub async fn last_after_hours_reply(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<OffsetDateTime>> {
        let mut conn = self.pool.acquire().await?;
        last_after_hours_reply_in(&mut conn, conversation).await
    }

    /// Records an after-hours reply on its own (the inbound path records it in its own
    /// transaction with [`record_after_hours_reply_in`]).
    pub async fn record_after_hours_reply(
        &self,
        conversation: ConversationId,
        at: OffsetDateTime,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        record_after_hours_reply_in(&mut tx.tx, conversation, at).await?;
        tx.commit().await
    }

    /// Where one conversation of the practice stands against the response target now.
    pub async fn response_status(
        &self,
        practice: PracticeId,
        conversation: ConversationId,
    ) -> Result<ResponseStatus> {
        let mut conn = self.pool.acquire().await?;
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM conversations WHERE id = $1 AND practice_id = $2",
        )
        .bind(conversation.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let state = state.ok_or(StoreError::NotFound)?;
        let policy = response_policy_in(&mut conn, practice).await?;
        response_status_in(
            &mut conn,
            &policy,
            conversation,
            state == "closed",
            self.clock.now(),
        )
        .await
    }

    /// Conversations (of every practice) that are overdue now and not yet escalated for their
    /// current waiting episode.
    pub async fn overdue_unescalated(&self) -> Result<Vec<OverdueConversation>> {
        let mut conn = self.pool.acquire().await?;
        let now = self.clock.now();
        let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT c.practice_id, c.id FROM conversations c WHERE c.state <> 'closed' AND {} \
             ORDER BY c.practice_id, c.id",
            waiting_condition()
        )))
        .fetch_all(&mut *conn)
        .await?;
        let mut policies: BTreeMap<String, ResponsePolicy> = BTreeMap::new();
        let mut out = Vec::new();
        for (practice, conversation) in rows {
            let practice_id: PracticeId = practice.parse().map_err(|_| bad("conversation"))?;
            let conversation: ConversationId =
                conversation.parse().map_err(|_| bad("conversation"))?;
            if !policies.contains_key(&practice) {
                let policy = response_policy_in(&mut conn, practice_id).await?;
                policies.insert(practice.clone(), policy);
            }
            let policy = &policies[&practice];
            let status = response_status_in(&mut conn, policy, conversation, false, now).await?;
            if let (true, false, Some(since)) =
                (status.overdue, status.escalated, status.waiting_since)
            {
                out.push(OverdueConversation {
                    practice: practice_id,
                    conversation,
                    waiting_since: since,
                });
            }
        }
        Ok(out)
    }

    /// Records the escalation of one waiting episode, with its audit row. Returns the people to
    /// tell (active recipients), or `None` when this episode was already escalated (by another
    /// run or another instance).
    pub async fn record_escalation(
        &self,
        overdue: &OverdueConversation,
    ) -> Result<Option<Vec<UserId>>> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let inserted = sqlx::query(
            "INSERT INTO conversation_escalations (id, practice_id, conversation_id, \
             waiting_since, escalated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (conversation_id, waiting_since) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(overdue.practice.to_string())
        .bind(overdue.conversation.to_string())
        .bind(to_micros(overdue.waiting_since))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        let settings = response_settings_in(&mut tx.tx, overdue.practice).await?;
        let staff = active_inbox_staff(&mut tx.tx, overdue.practice).await?;
        let recipients: Vec<UserId> = settings
            .escalation_recipients
            .into_iter()
            .filter(|u| staff.contains(&u.to_string()))
            .collect();
        let mut targets = vec![overdue.conversation.to_string()];
        targets.extend(recipients.iter().map(ToString::to_string));
        tx.audit(event(
            overdue.practice,
            Actor::System,
            &RequestContext::default(),
            Action::ResponseEscalate,
            targets,
        ));
        tx.commit().await?;
        Ok(Some(recipients))
    }

    /// First-response times of the waiting episodes that started in `[from, to)`, in business
    /// time, with how many conversations are overdue now. Audited.
    pub async fn response_time_report(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<ResponseReport> {
        crate::patients::check_practice(principal, practice)?;
        let mut conn = self.pool.acquire().await?;
        let policy = response_policy_in(&mut conn, practice).await?;
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(
            format!(
                "SELECT m.conversation_id, m.direction, m.author_kind, m.created_at FROM messages m \
                 WHERE m.practice_id = $1 AND (m.direction = 'inbound' OR ({})) \
                 AND m.conversation_id IN (SELECT i.conversation_id FROM messages i \
                 WHERE i.practice_id = $1 AND i.direction = 'inbound' \
                 AND i.created_at >= $2 AND i.created_at < $3) \
                 ORDER BY m.conversation_id, m.created_at, m.id",
                staff_reply("m")
            ),
        ))
        .bind(practice.to_string())
        .bind(to_micros(from))
        .bind(to_micros(to))
        .fetch_all(&mut *conn)
        .await?;
        let mut timelines: BTreeMap<String, Vec<TimelineEvent>> = BTreeMap::new();
        for (conversation, direction, _author, at) in rows {
            let at = from_micros(at);
            timelines
                .entry(conversation)
                .or_default()
                .push(if direction == "inbound" {
                    TimelineEvent::Patient(at)
                } else {
                    TimelineEvent::StaffReply(at)
                });
        }
        let episodes: Vec<Episode> = timelines
            .values()
            .flat_map(|t| response_time::episodes(t))
            .filter(|e| e.waiting_since >= from && e.waiting_since < to)
            .collect();
        let stats = response_time::first_response_stats(&episodes, &policy.hours);
        let open: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT c.id FROM conversations c WHERE c.practice_id = $1 AND c.state <> 'closed' \
             AND {}",
            waiting_condition()
        )))
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let now = self.clock.now();
        let mut overdue_now = 0;
        for id in open {
            let id: ConversationId = id.parse().map_err(|_| bad("conversation"))?;
            if response_status_in(&mut conn, &policy, id, false, now)
                .await?
                .overdue
            {
                overdue_now += 1;
            }
        }
        drop(conn);
        self.record_audit(event(
            practice,
            principal.actor(),
            ctx,
            Action::ResponseReportRead,
            vec![practice.to_string()],
        ))
        .await?;
        Ok(ResponseReport { stats, overdue_now })
    }
}

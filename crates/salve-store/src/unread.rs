//! Unread secure messages: when the patient has not opened a secure message (a staff message
//! kept in the portal and announced by a content-free notification), one reminder with a fresh
//! link (the old link revoked), then, still unread, one alert to the practice admins. The rule
//! is salve-core's ([`salve_core::unread::follow_up`]); the `unread_followups` row, keyed by the
//! message, is what reminds and alerts at most once across runs and instances.

use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::patient::{Contact, ContactKind, ContactRole};
use salve_core::permissions::Principal;
use salve_core::unread::{self, FollowUp, UnreadFacts};
use salve_core::{MessageId, OutboxJobId, PatientId, PracticeId, Sensitive, UserId};
use salve_crypto::FieldAad;

use crate::{Result, Store, StoreError};

const HOUR_MICROS: i64 = 3_600_000_000;

/// A secure message with a follow-up due now.
#[derive(Debug, Clone)]
pub struct UnreadSecureMessage {
    pub practice: PracticeId,
    pub patient: PatientId,
    pub message: MessageId,
    pub sent_at: i64,
    pub reminded_at: Option<i64>,
    pub due: FollowUp,
}

fn bad() -> StoreError {
    StoreError::KeyRing("malformed unread follow-up row".into())
}

fn event(practice: PracticeId, action: Action, targets: Vec<String>) -> AuditEvent {
    AuditEvent::in_practice(
        practice,
        Actor::System,
        &RequestContext::default(),
        action,
        targets,
        Outcome::Success,
    )
}

impl Store {
    /// The practice's delay before the reminder (and again before the staff alert), in hours.
    pub async fn unread_delay_hours(&self, practice: PracticeId) -> Result<i64> {
        let hours: Option<i64> =
            sqlx::query_scalar("SELECT delay_hours FROM unread_settings WHERE practice_id = $1")
                .bind(practice.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(hours.unwrap_or(unread::DEFAULT_DELAY_HOURS))
    }

    /// Sets the practice's delay (hours, within the allowed range). The caller authorizes
    /// (`Operation::PracticeSettingsManage`). Audited.
    pub async fn set_unread_delay_hours(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        hours: i64,
    ) -> Result<()> {
        crate::patients::check_practice(principal, practice)?;
        if !unread::valid_delay_hours(hours) {
            return Err(StoreError::Invalid(format!(
                "delay_hours must be between {} and {}",
                unread::MIN_DELAY_HOURS,
                unread::MAX_DELAY_HOURS
            )));
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query(
            "INSERT INTO unread_settings (practice_id, delay_hours, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (practice_id) DO UPDATE SET delay_hours = excluded.delay_hours, \
             updated_at = excluded.updated_at",
        )
        .bind(practice.to_string())
        .bind(hours)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        let mut event = event(
            practice,
            Action::UnreadSettingsChange,
            vec![practice.to_string()],
        );
        event.actor = principal.actor();
        event.context = ctx.clone();
        tx.audit(event);
        tx.commit().await
    }

    /// Secure messages (of every practice) whose patient has not opened them and whose reminder
    /// or staff alert is due now. Only staff messages announced by a notification count.
    pub async fn unread_secure_messages_due(&self) -> Result<Vec<UnreadSecureMessage>> {
        let now = salve_core::clock::to_micros(self.clock.now());
        type Row = (String, String, String, i64, Option<i64>, Option<i64>, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT m.practice_id, m.patient_id, m.id, m.created_at, f.reminded_at, \
             f.staff_alerted_at, COALESCE(s.delay_hours, $2) FROM messages m \
             LEFT JOIN unread_followups f ON f.message_id = m.id \
             LEFT JOIN unread_settings s ON s.practice_id = m.practice_id \
             WHERE m.direction = 'outbound' AND m.channel = 'portal' \
             AND m.delivery = 'secure_with_notification' AND m.author_kind IN ('user', 'token') \
             AND m.patient_read_at IS NULL AND f.staff_alerted_at IS NULL \
             AND m.created_at <= $1 ORDER BY m.created_at, m.id",
        )
        .bind(now - unread::MIN_DELAY_HOURS * HOUR_MICROS)
        .bind(unread::DEFAULT_DELAY_HOURS)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for (practice, patient, message, sent_at, reminded_at, alerted_at, delay) in rows {
            let facts = UnreadFacts {
                sent_at,
                read_at: None,
                reminded_at,
                alerted_at,
            };
            let due = unread::follow_up(facts, delay * HOUR_MICROS, now);
            if due == FollowUp::Nothing {
                continue;
            }
            out.push(UnreadSecureMessage {
                practice: practice.parse().map_err(|_| bad())?,
                patient: patient.parse().map_err(|_| bad())?,
                message: message.parse().map_err(|_| bad())?,
                sent_at,
                reminded_at,
                due,
            });
        }
        Ok(out)
    }

    /// The patient's preferred language tag (to write their reminder in).
    pub async fn unread_reminder_language(&self, item: &UnreadSecureMessage) -> Result<String> {
        let mut conn = self.pool.acquire().await?;
        let patient = self
            .load_patient(&mut conn, item.practice, item.patient)
            .await?;
        Ok(patient.record.preferred_language)
    }

    /// Queues the one reminder of an unread secure message, in one transaction: revokes the
    /// message's earlier links, stores the new one (`token_hash`, already in `body`), queues the
    /// notification to the contact point and under the consent the first one went with (the
    /// worker re-checks that consent when it claims the job), records the reminder and audits
    /// it. Returns false (and changes nothing) when the message was read or reminded meanwhile.
    pub async fn remind_unread(
        &self,
        item: &UnreadSecureMessage,
        token_hash: &[u8; 32],
        body: &Sensitive<String>,
        ttl_secs: i64,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let message = item.message.to_string();
        let claimed = sqlx::query(
            "INSERT INTO unread_followups (message_id, practice_id, reminded_at) \
             VALUES ($1, $2, $3) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(&message)
        .bind(item.practice.to_string())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        let read_at: Option<i64> =
            sqlx::query_scalar("SELECT patient_read_at FROM messages WHERE id = $1")
                .bind(&message)
                .fetch_one(&mut *tx.tx)
                .await?;
        if claimed == 0 || read_at.is_some() {
            return Ok(false);
        }
        type JobRow = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Vec<u8>,
        );
        let first: Option<JobRow> = sqlx::query_as(
            "SELECT id, medium, purpose, consent_channel, legal_basis, recipient FROM outbox_jobs \
             WHERE message_id = $1 ORDER BY created_at, id LIMIT 1",
        )
        .bind(&message)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some((first_job, medium, purpose, consent_channel, legal_basis, sealed)) = first else {
            return Ok(false);
        };
        let key = self
            .ring
            .patient_key(&mut tx.tx, item.practice, item.patient)
            .await?;
        let recipient = key.open_string(
            FieldAad::new("outbox_jobs", "recipient", &first_job),
            &sealed,
        )?;
        let kind = match crate::Medium::parse(&medium).ok_or_else(bad)? {
            crate::Medium::Sms => ContactKind::Phone,
            crate::Medium::Email => ContactKind::Email,
        };
        sqlx::query(
            "UPDATE secure_links SET revoked_at = $1 WHERE message_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&message)
        .execute(&mut *tx.tx)
        .await?;
        let contact = Contact {
            kind,
            value: Sensitive::new(recipient.clone()),
            role: ContactRole::Patient,
        };
        let link = crate::links::push_link(
            tx.deferred(),
            &key,
            item.practice,
            item.patient,
            &contact,
            token_hash,
            now,
            ttl_secs,
            Some(&message),
        );
        let job = OutboxJobId::new().to_string();
        sqlx::query(
            "INSERT INTO outbox_jobs (id, practice_id, patient_id, message_id, medium, purpose, \
             consent_channel, legal_basis, recipient, body, status, attempts, next_attempt_at, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11, $11)",
        )
        .bind(&job)
        .bind(item.practice.to_string())
        .bind(item.patient.to_string())
        .bind(&message)
        .bind(medium)
        .bind(purpose)
        .bind(consent_channel)
        .bind(legal_basis)
        .bind(key.seal_str(FieldAad::new("outbox_jobs", "recipient", &job), &recipient))
        .bind(key.seal_str(FieldAad::new("outbox_jobs", "body", &job), body.expose()))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(event(
            item.practice,
            Action::SecureMessageReminder,
            vec![item.patient.to_string(), message, link.to_string(), job],
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(true)
    }

    /// Records the one staff alert of a secure message still unread after its reminder, with
    /// its audit row. Returns the practice admins to tell, or `None` when it was already
    /// alerted (another run or instance) or read meanwhile.
    pub async fn record_unread_alert(
        &self,
        item: &UnreadSecureMessage,
    ) -> Result<Option<Vec<UserId>>> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let message = item.message.to_string();
        let marked = sqlx::query(
            "UPDATE unread_followups SET staff_alerted_at = $1 WHERE message_id = $2 \
             AND staff_alerted_at IS NULL AND NOT EXISTS \
             (SELECT 1 FROM messages m WHERE m.id = $2 AND m.patient_read_at IS NOT NULL)",
        )
        .bind(now)
        .bind(&message)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if marked == 0 {
            return Ok(None);
        }
        let admins: Vec<String> = sqlx::query_scalar(
            "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.practice_id = $1 AND m.role = 'admin' AND u.disabled_at IS NULL AND m.disabled_at IS NULL \
             ORDER BY m.user_id",
        )
        .bind(item.practice.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        let recipients: Vec<UserId> = admins
            .iter()
            .map(|u| u.parse().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        let mut targets = vec![item.patient.to_string(), message];
        targets.extend(admins);
        tx.audit(event(
            item.practice,
            Action::SecureMessageUnreadAlert,
            targets,
        ));
        tx.commit().await?;
        Ok(Some(recipients))
    }
}

//! The transactional outbox, worker side: claim due jobs (PostgreSQL: `FOR UPDATE SKIP LOCKED`,
//! any number of instances), re-check consent at claim time, record the outcome. A job left in
//! `sending` by a crash is never blindly re-sent: the worker reconciles it with the provider.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use salve_core::audit::{Action, Actor, Outcome, RequestContext};
use salve_core::confidential::Restrictions;
use salve_core::consent::{ConsentChannel, ConsentPurpose, ConsentState, Medium as ConsentMedium};
use salve_core::patient::{Contact, ContactKind, ContactRole};
use salve_core::{MessageId, OutboxJobId, PatientId, PracticeId, Sensitive};
use salve_crypto::{FieldAad, SymmetricKey};

use crate::consent::placeholders;
use crate::keyring::KeyRing;
use crate::messaging::{Medium, conversation_event};
use crate::tx::WriteTx;
use crate::{Backend, Result, Store, StoreError};

/// A job claimed by this worker, ready to hand to a provider.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: OutboxJobId,
    pub practice: PracticeId,
    pub patient: PatientId,
    pub message: MessageId,
    pub medium: Medium,
    pub recipient: Sensitive<String>,
    pub body: Sensitive<String>,
    pub attempts: i64,
    /// The consent purpose it was queued for, or `emergency` for emergency guidance.
    pub purpose: Option<String>,
    /// A system message (a keyword confirmation, code, after-hours reply or emergency
    /// guidance): never held by quiet hours or the sender's pacing.
    pub system: bool,
    /// The patient's time zone, else the practice's (for quiet hours).
    pub time_zone: String,
}

/// What became of a send.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    Sent {
        provider_id: String,
    },
    /// Worth retrying later (the provider said it did not take the message).
    Retry {
        error_kind: String,
        after_secs: i64,
    },
    /// Refused for good; the reason is shown to staff (sealed: a provider may quote the number).
    Failed {
        error_kind: String,
        reason: String,
    },
    /// Nobody can tell whether it was sent; staff decide.
    Unknown {
        reason: String,
    },
    /// Not attempted: the provider may not carry patient data now (its agreement expired).
    /// The job stays queued, its attempt is not counted, and it is looked at again after
    /// `after_secs` (or at once when the agreement is renewed).
    Held {
        after_secs: i64,
    },
    /// Not attempted: the sender number's rate limit. Queued again for `until` (micros), the
    /// attempt not counted.
    Paced {
        until: i64,
    },
}

const MAX_ATTEMPTS: i64 = 8;

/// A job as `JOB_SELECT` reads it.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    practice_id: String,
    patient_id: String,
    message_id: String,
    medium: String,
    recipient: Vec<u8>,
    body: Vec<u8>,
    attempts: i64,
    consent_channel: Option<String>,
    purpose: Option<String>,
    expires_at: Option<i64>,
    /// The message's direction (`system` for system messages).
    direction: Option<String>,
    /// The patient's time zone, else the practice's.
    time_zone: Option<String>,
}

/// The job rows with what the worker needs to schedule them.
const JOB_SELECT: &str = "SELECT j.id, j.practice_id, j.patient_id, j.message_id, j.medium, \
     j.recipient, j.body, j.attempts, j.consent_channel, j.purpose, j.expires_at, m.direction, \
     COALESCE(p.time_zone, r.time_zone) AS time_zone FROM outbox_jobs j \
     LEFT JOIN messages m ON m.id = j.message_id LEFT JOIN patients p ON p.id = j.patient_id \
     LEFT JOIN practices r ON r.id = j.practice_id";

impl JobRow {
    fn ids(&self) -> Result<(PracticeId, PatientId)> {
        Ok((
            self.practice_id.parse().map_err(|_| malformed())?,
            self.patient_id.parse().map_err(|_| malformed())?,
        ))
    }

    /// The claimed job, its recipient and body opened with the patient's key.
    fn claimed(self, key: &SymmetricKey, attempts: i64) -> Result<ClaimedJob> {
        let (practice, patient) = self.ids()?;
        let open = |column, sealed: &[u8]| {
            key.open_string(FieldAad::new("outbox_jobs", column, &self.id), sealed)
                .map(Sensitive::new)
        };
        Ok(ClaimedJob {
            recipient: open("recipient", &self.recipient)?,
            body: open("body", &self.body)?,
            id: self.id.parse().map_err(|_| malformed())?,
            practice,
            patient,
            message: self.message_id.parse().map_err(|_| malformed())?,
            medium: Medium::parse(&self.medium).ok_or_else(malformed)?,
            attempts,
            system: self.direction.ok_or_else(malformed)? == "system",
            time_zone: self.time_zone.ok_or_else(malformed)?,
            purpose: self.purpose,
        })
    }
}

fn malformed() -> StoreError {
    StoreError::KeyRing("malformed outbox job".into())
}

fn system_ctx() -> RequestContext {
    RequestContext::default()
}

/// What decides whether a patient's queued jobs may still go: their consent history and
/// confidential-communication requests.
#[derive(Default)]
pub(crate) struct JobFacts {
    consent: Vec<salve_core::consent::ConsentEvent>,
    confidential: Vec<salve_core::confidential::ConfidentialRequest>,
}

impl Store {
    /// Claims up to `limit` due jobs for `worker`, marking them `sending` in one transaction.
    /// Jobs whose consent was revoked since they were queued are cancelled instead.
    pub async fn claim_outbox_jobs(&self, worker: &str, limit: usize) -> Result<Vec<ClaimedJob>> {
        if !self
            .any_due(
                "SELECT 1 FROM outbox_jobs WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1",
                &[salve_core::clock::to_micros(self.clock.now())],
            )
            .await?
        {
            return Ok(Vec::new());
        }
        // Shares a durable commit with the sends around it (SQLite group commit); the claim is
        // durable before any of its jobs is handed to a provider.
        let mut tx = self.begin_grouped().await?;
        let now = tx.now_micros();
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE OF j SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // Only constant clauses are formatted in.
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{JOB_SELECT} WHERE j.status = 'pending' AND j.next_attempt_at <= $1 \
             ORDER BY j.next_attempt_at, j.id LIMIT $2{lock}"
        )))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx.tx)
        .await?;
        // The consent and confidential requests of every patient in the batch, two queries
        // per practice (read here, under the write lock, so a revocation is never missed).
        let mut patients: BTreeMap<PracticeId, BTreeSet<PatientId>> = BTreeMap::new();
        for row in &rows {
            if let Ok((practice, patient)) = row.ids() {
                patients.entry(practice).or_default().insert(patient);
            }
        }
        let mut facts: HashMap<PatientId, JobFacts> = HashMap::new();
        for (practice, ids) in patients {
            let ids: Vec<PatientId> = ids.into_iter().collect();
            let mut histories = self
                .consent_histories_in(&mut tx.tx, practice, &ids)
                .await?;
            let mut requests = self
                .confidential_requests_of_in(&mut tx.tx, practice, &ids)
                .await?;
            for patient in ids {
                facts.insert(
                    patient,
                    JobFacts {
                        consent: histories.remove(&patient).unwrap_or_default(),
                        confidential: requests.remove(&patient).unwrap_or_default(),
                    },
                );
            }
        }
        let no_facts = JobFacts::default();
        let mut claimed = Vec::new();
        for row in rows {
            let (practice, patient) = row.ids()?;
            let (id, message) = (row.id.as_str(), row.message_id.as_str());
            // Held by quiet hours, a retry or downtime past its use (a reminder close to its
            // visit): withdrawn, never sent late.
            if row.expires_at.is_some_and(|at| now >= at) {
                cancel_job(
                    &mut tx,
                    &self.ring,
                    practice,
                    patient,
                    id,
                    message,
                    "too late to be useful: it could not be sent before its cut-off",
                )
                .await?;
                continue;
            }
            // Consent or a confidential request may have changed since the job was queued.
            if let Some(reason) = self
                .job_blocked(
                    &mut tx,
                    facts.get(&patient).unwrap_or(&no_facts),
                    practice,
                    patient,
                    id,
                    &row.medium,
                    &row.recipient,
                    row.consent_channel.as_deref(),
                    row.purpose.as_deref(),
                )
                .await?
            {
                cancel_job(&mut tx, &self.ring, practice, patient, id, message, reason).await?;
                continue;
            }
            let key = match self.ring.patient_key(&mut tx.tx, practice, patient).await {
                Ok(key) => key,
                Err(StoreError::Shredded) => {
                    sqlx::query("UPDATE outbox_jobs SET status = 'cancelled', updated_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx.tx)
                        .await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            tx.defer(
                "UPDATE outbox_jobs SET status = 'sending', claimed_by = $1, claimed_at = $2, \
                 attempts = attempts + 1, updated_at = $2 WHERE id = $3",
            )
            .bind(worker.to_owned())
            .bind(now)
            .bind(id.to_owned());
            set_message_status(&mut tx, message, "sending", None);
            let attempts = row.attempts + 1;
            claimed.push(row.claimed(&key, attempts)?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Why a queued job may no longer be sent, if it may not: its consent was revoked, or a
    /// confidential-communication request now excludes its recipient. The rules are
    /// salve-core's; this only reads the facts.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn job_blocked(
        &self,
        tx: &mut WriteTx<'_>,
        facts: &JobFacts,
        practice: PracticeId,
        patient: PatientId,
        job: &str,
        medium: &str,
        sealed_recipient: &[u8],
        channel: Option<&str>,
        purpose: Option<&str>,
    ) -> Result<Option<&'static str>> {
        // Emergency guidance answers the patient's own text, whatever their consent or
        // confidential-communication requests (emergency purposes).
        if purpose == Some(crate::inbound::EMERGENCY_PURPOSE) {
            return Ok(None);
        }
        if let (Some(channel), Some(purpose)) = (
            channel.and_then(ConsentChannel::parse),
            purpose.and_then(ConsentPurpose::parse),
        ) && !ConsentState::from_history(&facts.consent).is_granted(channel, purpose)
        {
            return Ok(Some("consent was revoked before sending"));
        }
        let requests = &facts.confidential;
        if requests.is_empty() {
            return Ok(None);
        }
        let Some(medium) = ConsentMedium::parse(medium) else {
            return Err(malformed());
        };
        let key = match self.ring.patient_key(&mut tx.tx, practice, patient).await {
            Ok(key) => key,
            Err(StoreError::Shredded) => return Ok(None),
            Err(e) => return Err(e),
        };
        let value = key.open_string(
            FieldAad::new("outbox_jobs", "recipient", job),
            sealed_recipient,
        )?;
        let contact = Contact {
            kind: match medium {
                ConsentMedium::Sms => ContactKind::Phone,
                ConsentMedium::Email => ContactKind::Email,
            },
            value: Sensitive::new(value),
            role: ContactRole::Patient,
        };
        Ok(Restrictions::from_requests(requests)
            .allows(&contact, medium)
            .err()
            .map(|_| "a confidential-communication request now excludes this contact point"))
    }

    /// Cancels the patient's pending jobs that may no longer be sent (after a revocation or a
    /// new confidential-communication request), inside the caller's transaction.
    pub(crate) async fn withdraw_blocked_jobs(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<usize> {
        type Row = (
            String,
            String,
            String,
            Vec<u8>,
            Option<String>,
            Option<String>,
        );
        let pending: Vec<Row> = sqlx::query_as(
            "SELECT id, message_id, medium, recipient, consent_channel, purpose FROM outbox_jobs \
             WHERE patient_id = $1 AND practice_id = $2 AND status = 'pending'",
        )
        .bind(patient.to_string())
        .bind(practice.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        let facts = JobFacts {
            consent: self
                .consent_history_in(&mut tx.tx, practice, patient)
                .await?,
            confidential: self
                .confidential_requests_in(&mut tx.tx, practice, patient)
                .await?,
        };
        let mut cancelled = 0;
        for (job, message, medium, recipient, channel, purpose) in pending {
            if let Some(reason) = self
                .job_blocked(
                    tx,
                    &facts,
                    practice,
                    patient,
                    &job,
                    &medium,
                    &recipient,
                    channel.as_deref(),
                    purpose.as_deref(),
                )
                .await?
            {
                cancel_job(tx, &self.ring, practice, patient, &job, &message, reason).await?;
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }

    /// Records what became of a claimed job, with its audit row.
    pub async fn finish_outbox_job(&self, job: &ClaimedJob, outcome: &JobOutcome) -> Result<()> {
        self.finish_outbox_jobs(&[(job.clone(), outcome.clone())])
            .await
    }

    /// Records the outcomes of a batch of sends in one transaction (one durable commit for the
    /// batch; a crash before it leaves the jobs in `sending`, to be reconciled).
    pub async fn finish_outbox_jobs(&self, results: &[(ClaimedJob, JobOutcome)]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_grouped().await?;
        // One read for the whole batch: which jobs are still `sending`, and their threads.
        // Only placeholders are formatted in.
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT j.id, m.conversation_id FROM outbox_jobs j JOIN messages m ON m.id = j.message_id \
             WHERE j.status = 'sending' AND j.id IN ({})",
            placeholders(1, results.len())
        )));
        for (job, _) in results {
            query = query.bind(job.id.to_string());
        }
        let rows: Vec<(String, String)> = query.fetch_all(&mut *tx.tx).await?;
        let mut sending: HashMap<String, String> = rows.into_iter().collect();
        for (job, outcome) in results {
            // Finished elsewhere (reconciled after a lease ran out): nothing changes twice.
            if let Some(conversation) = sending.remove(&job.id.to_string()) {
                self.finish_in(&mut tx, job, outcome, &conversation).await?;
            }
        }
        tx.commit().await?;
        self.inbox_changed();
        Ok(())
    }

    async fn finish_in(
        &self,
        tx: &mut WriteTx<'_>,
        job: &ClaimedJob,
        outcome: &JobOutcome,
        conversation: &str,
    ) -> Result<()> {
        let now = tx.now_micros();
        let id = job.id.to_string();
        let message = job.message.to_string();
        let key = self
            .ring
            .patient_key(&mut tx.tx, job.practice, job.patient)
            .await?;
        let (job_status, message_status, reason, error_kind, provider_id, next, audit_outcome) =
            match outcome {
                JobOutcome::Sent { provider_id } => (
                    "sent",
                    "sent",
                    None,
                    None,
                    Some(provider_id.clone()),
                    now,
                    Outcome::Success,
                ),
                JobOutcome::Retry {
                    error_kind,
                    after_secs,
                } if job.attempts < MAX_ATTEMPTS => (
                    "pending",
                    "queued",
                    None,
                    Some(error_kind.clone()),
                    None,
                    now + after_secs * 1_000_000,
                    Outcome::Failure,
                ),
                JobOutcome::Retry { error_kind, .. } => (
                    "failed",
                    "failed",
                    Some("the provider kept failing; the message was not sent".to_owned()),
                    Some(error_kind.clone()),
                    None,
                    now,
                    Outcome::Failure,
                ),
                JobOutcome::Failed { error_kind, reason } => (
                    "failed",
                    "failed",
                    Some(reason.clone()),
                    Some(error_kind.clone()),
                    None,
                    now,
                    Outcome::Failure,
                ),
                JobOutcome::Held { .. } | JobOutcome::Paced { .. } => {
                    let next = match outcome {
                        JobOutcome::Paced { until } => (*until).max(now),
                        JobOutcome::Held { after_secs } => now + after_secs * 1_000_000,
                        _ => now,
                    };
                    sqlx::query(
                        "UPDATE outbox_jobs SET status = 'pending', attempts = attempts - 1, claimed_by = NULL, \
                         claimed_at = NULL, next_attempt_at = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(next)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx.tx)
                    .await?;
                    set_message_status(tx, &message, "queued", None);
                    return Ok(());
                }
                JobOutcome::Unknown { reason } => (
                    "unknown",
                    "unknown",
                    Some(reason.clone()),
                    None,
                    None,
                    now,
                    Outcome::Failure,
                ),
            };
        tx.defer(
            "UPDATE outbox_jobs SET status = $1, last_error_kind = $2, provider_message_id = $3, \
             next_attempt_at = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(job_status)
        .bind(error_kind)
        .bind(provider_id.clone())
        .bind(next)
        .bind(now)
        .bind(id.clone());
        let sealed_reason = reason
            .as_deref()
            .map(|r| key.seal_str(FieldAad::new("messages", "status_reason", &message), r));
        set_message_status(tx, &message, message_status, sealed_reason);
        if let Some(provider_id) = provider_id {
            tx.defer("UPDATE messages SET provider_message_id = $1 WHERE id = $2")
                .bind(provider_id)
                .bind(message.clone());
        }
        crate::messaging::defer_change(
            tx,
            job.practice,
            conversation.parse().map_err(|_| malformed())?,
            "status",
        );
        tx.audit(conversation_event(
            job.practice,
            Actor::System,
            &system_ctx(),
            Action::MessageStatus,
            vec![job.patient.to_string(), message, id],
            audit_outcome,
        ));
        Ok(())
    }

    /// Jobs left in `sending` longer than `lease_secs` (their worker died): for reconciliation.
    pub async fn stale_outbox_jobs(
        &self,
        worker: &str,
        lease_secs: i64,
    ) -> Result<Vec<ClaimedJob>> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let cutoff = now - lease_secs * 1_000_000;
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE OF j SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // Only constant clauses are formatted in.
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{JOB_SELECT} WHERE j.status = 'sending' AND j.claimed_at <= $1 \
             ORDER BY j.claimed_at LIMIT 100{lock}"
        )))
        .bind(cutoff)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let (practice, patient) = row.ids()?;
            let key = match self.ring.patient_key(&mut tx.tx, practice, patient).await {
                Ok(key) => key,
                Err(StoreError::Shredded) => continue,
                Err(e) => return Err(e),
            };
            // Taken over before anyone asks the provider: another instance reconciling at the
            // same moment, or requeueing it, would otherwise race this one into a second send.
            let taken = sqlx::query(
                "UPDATE outbox_jobs SET claimed_by = $1, claimed_at = $2, updated_at = $2 \
                 WHERE id = $3 AND status = 'sending' AND claimed_at <= $4",
            )
            .bind(worker)
            .bind(now)
            .bind(&row.id)
            .bind(cutoff)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if taken != 1 {
                continue;
            }
            let attempts = row.attempts;
            out.push(row.claimed(&key, attempts)?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Marks that staff were alerted about this blocked send; `false` when they already were
    /// (one alert per job, across retries and instances).
    pub async fn mark_job_alerted(&self, job: &ClaimedJob) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let marked = sqlx::query(
            "UPDATE outbox_jobs SET alerted_at = $1 WHERE id = $2 AND alerted_at IS NULL",
        )
        .bind(now)
        .bind(job.id.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if marked == 1 {
            tx.audit(conversation_event(
                job.practice,
                Actor::System,
                &system_ctx(),
                Action::EmergencyReplyBlocked,
                vec![
                    job.patient.to_string(),
                    job.message.to_string(),
                    job.id.to_string(),
                ],
                Outcome::Failure,
            ));
        }
        tx.commit().await?;
        Ok(marked == 1)
    }

    /// Puts a stale job the provider never received back in the queue.
    pub async fn requeue_outbox_job(&self, job: &ClaimedJob) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query(
            "UPDATE outbox_jobs SET status = 'pending', claimed_by = NULL, claimed_at = NULL, \
             next_attempt_at = $1, updated_at = $1 WHERE id = $2 AND status = 'sending'",
        )
        .bind(now)
        .bind(job.id.to_string())
        .execute(&mut *tx.tx)
        .await?;
        set_message_status(&mut tx, &job.message.to_string(), "queued", None);
        tx.commit().await
    }

    /// The practice's jobs by id, with their message ids: which local-outbox records are
    /// this practice's (the demo outbox directory is the server's).
    pub async fn practice_job_messages(
        &self,
        practice: PracticeId,
    ) -> Result<std::collections::HashMap<uuid::Uuid, MessageId>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, message_id FROM outbox_jobs WHERE practice_id = $1")
                .bind(practice.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(job, message)| {
                Ok((
                    job.parse().map_err(|_| malformed())?,
                    message.parse().map_err(|_| malformed())?,
                ))
            })
            .collect()
    }

    /// The delivery status of each job's message in a practice (job id → `queued`, `sent`,
    /// `delivered`, …), for the local outbox page. No content.
    pub async fn practice_job_statuses(
        &self,
        practice: PracticeId,
    ) -> Result<std::collections::HashMap<uuid::Uuid, String>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT j.id, m.status FROM outbox_jobs j JOIN messages m ON m.id = j.message_id \
             WHERE j.practice_id = $1",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(job, status)| Ok((job.parse().map_err(|_| malformed())?, status)))
            .collect()
    }

    /// Counts of jobs by status (for metrics and tests; no content).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM outbox_jobs GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Sets a message's status at the transaction's commit.
fn set_message_status(
    tx: &mut WriteTx<'_>,
    message: &str,
    status: &str,
    sealed_reason: Option<Vec<u8>>,
) {
    let now = tx.now_micros();
    tx.defer("UPDATE messages SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4")
        .bind(status.to_owned())
        .bind(sealed_reason)
        .bind(now)
        .bind(message.to_owned());
}

/// Cancels a pending job and marks its message failed with a reason staff can read.
pub(crate) async fn cancel_job(
    tx: &mut WriteTx<'_>,
    ring: &KeyRing,
    practice: PracticeId,
    patient: PatientId,
    job: &str,
    message: &str,
    reason: &str,
) -> Result<()> {
    let now = tx.now_micros();
    sqlx::query("UPDATE outbox_jobs SET status = 'cancelled', updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(job)
        .execute(&mut *tx.tx)
        .await?;
    let key = ring.patient_key(&mut tx.tx, practice, patient).await?;
    let channel: Option<String> = sqlx::query_scalar("SELECT channel FROM messages WHERE id = $1")
        .bind(message)
        .fetch_optional(&mut *tx.tx)
        .await?
        .flatten();
    // A secure message's content is in the portal already: only its announcement stops.
    let (status, reason) = if channel.as_deref() == Some("portal") {
        (
            "sent",
            format!("the notification was not sent ({reason}); the message waits in the portal"),
        )
    } else {
        ("failed", reason.to_owned())
    };
    let sealed = key.seal_str(FieldAad::new("messages", "status_reason", message), &reason);
    set_message_status(tx, message, status, Some(sealed));
    tx.audit(conversation_event(
        practice,
        Actor::System,
        &system_ctx(),
        Action::MessageStatus,
        vec![patient.to_string(), message.to_owned(), job.to_owned()],
        Outcome::Denied,
    ));
    Ok(())
}

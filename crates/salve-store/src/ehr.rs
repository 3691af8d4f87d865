//! Writing into the practice's EHR: the connection (one per practice, its secrets sealed under
//! the practice's provider-credential key) and the write queue. A write is queued in the
//! transaction of the event it records (a message, a conversation closed, a consent change)
//! and holds ids only; the worker builds the resource when it sends it.
//!
//! Unlike a text, a write is safe to send again: Salve creates conditionally on its own
//! identifier (`If-None-Exist`), so the EHR returns the first copy instead of making a second.
//! A write left in `sending` by a dead worker is therefore simply queued again.

use std::collections::HashMap;

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::ehr::{MAX_ATTEMPTS, WriteKind, WriteMode};
use salve_core::{ConversationId, MessageId, PatientId, PracticeId, Sensitive};
use salve_crypto::FieldAad;

use crate::tx::WriteTx;
use crate::{Backend, Result, Store, StoreError};

/// How Salve signs in at the EHR.
#[derive(Debug, Clone)]
pub enum EhrAuth {
    Bearer {
        token: Sensitive<String>,
    },
    /// Salve as a SMART backend-services client, with a P-384 key it generated.
    Smart {
        client_id: String,
        token_url: String,
        key_id: String,
        /// PKCS#8 DER.
        private_key: Sensitive<Vec<u8>>,
        /// The public half, as the JWK Set the EHR's administrator registers.
        public_jwks: String,
    },
}

/// A practice's connection, with its secrets opened (for the worker).
#[derive(Debug, Clone)]
pub struct EhrConnection {
    pub practice: PracticeId,
    pub base_url: String,
    pub auth: EhrAuth,
    pub patient_identifier_system: String,
    pub write_mode: WriteMode,
    pub push_consent: bool,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The credentials of a change: a bearer token (`None`: keep the one on file), or SMART
/// (`key`: a newly generated key; `None`: keep the key on file).
pub enum EhrCredentials {
    Bearer(Option<Sensitive<String>>),
    Smart {
        client_id: String,
        token_url: String,
        key: Option<NewEhrKey>,
    },
}

pub struct NewEhrKey {
    pub key_id: String,
    pub private_key: Sensitive<Vec<u8>>,
    pub public_jwks: String,
}

pub struct EhrConnectionInput {
    pub base_url: String,
    pub credentials: EhrCredentials,
    pub patient_identifier_system: String,
    pub write_mode: WriteMode,
    pub push_consent: bool,
    pub enabled: bool,
}

/// A write claimed by a worker.
#[derive(Debug, Clone)]
pub struct ClaimedEhrWrite {
    pub id: String,
    pub practice: PracticeId,
    pub patient: PatientId,
    pub kind: WriteKind,
    pub subject: String,
    pub conversation: Option<ConversationId>,
    pub attempts: i64,
}

/// What became of a write.
#[derive(Debug, Clone)]
pub enum EhrOutcome {
    /// Written (or found already written); the resource's id in the EHR.
    Written { remote_id: String },
    /// Not taken this time; tried again after `after_secs`.
    Retry { error_kind: String, after_secs: i64 },
    /// Refused for good, with a PHI-free reason.
    Failed { error_kind: String, reason: String },
}

/// The state of a record's write, for staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EhrWriteStatus {
    /// `pending`, `sending`, `written` or `failed`.
    pub status: String,
    pub resource_type: &'static str,
    pub remote_id: Option<String>,
    /// Why it failed (PHI-free), or why the last attempt did not go through.
    pub reason: Option<String>,
    pub attempts: i64,
    pub updated_at: i64,
}

type ConnectionRow = (
    String,
    String,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
);

fn malformed(what: &str) -> StoreError {
    StoreError::KeyRing(format!("malformed EHR {what}"))
}

const SECRET_TABLE: &str = "ehr_connections";

impl Store {
    /// The practice's connection with its secrets opened; `None` when none was set up.
    pub async fn ehr_connection(&self, practice: PracticeId) -> Result<Option<EhrConnection>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<ConnectionRow> = sqlx::query_as(
            "SELECT base_url, auth_kind, bearer_token, client_id, token_url, private_key, key_id, \
             public_jwks, patient_identifier_system, write_mode, push_consent, enabled, created_at, \
             updated_at FROM ehr_connections WHERE practice_id = $1",
        )
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((
            base_url,
            auth_kind,
            bearer,
            client_id,
            token_url,
            private_key,
            key_id,
            jwks,
            system,
            mode,
            push_consent,
            enabled,
            created_at,
            updated_at,
        )) = row
        else {
            return Ok(None);
        };
        let keys = self.ring.practice_keys(&mut conn, practice).await?;
        let row_id = practice.to_string();
        let auth = match auth_kind.as_str() {
            "bearer" => EhrAuth::Bearer {
                token: Sensitive::new(keys.provider_credentials.open_string(
                    FieldAad::new(SECRET_TABLE, "bearer_token", &row_id),
                    &bearer.ok_or_else(|| malformed("connection"))?,
                )?),
            },
            "smart" => EhrAuth::Smart {
                client_id: client_id.ok_or_else(|| malformed("connection"))?,
                token_url: token_url.ok_or_else(|| malformed("connection"))?,
                key_id: key_id.ok_or_else(|| malformed("connection"))?,
                private_key: Sensitive::new(
                    keys.provider_credentials
                        .open(
                            FieldAad::new(SECRET_TABLE, "private_key", &row_id),
                            &private_key.ok_or_else(|| malformed("connection"))?,
                        )?
                        .to_vec(),
                ),
                public_jwks: jwks.ok_or_else(|| malformed("connection"))?,
            },
            _ => return Err(malformed("connection")),
        };
        Ok(Some(EhrConnection {
            practice,
            base_url,
            auth,
            patient_identifier_system: system,
            write_mode: WriteMode::parse(&mode).ok_or_else(|| malformed("write mode"))?,
            push_consent: push_consent != 0,
            enabled: enabled != 0,
            created_at,
            updated_at,
        }))
    }

    /// Sets up or changes the practice's connection; audited (never with its secrets).
    pub async fn save_ehr_connection(
        &self,
        actor: Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        input: EhrConnectionInput,
    ) -> Result<()> {
        let current = self.ehr_connection(practice).await?;
        let mut tx = self.begin().await?;
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let row_id = practice.to_string();
        let seal = |column: &str, bytes: &[u8]| {
            keys.provider_credentials
                .seal(FieldAad::new(SECRET_TABLE, column, &row_id), bytes)
        };
        let missing = |what: &str| StoreError::Invalid(format!("{what}: required"));
        type Secrets = (
            &'static str,
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
        );
        let secrets: Secrets = match input.credentials {
            EhrCredentials::Bearer(token) => {
                let token = match (token, current.as_ref().map(|c| &c.auth)) {
                    (Some(t), _) => seal("bearer_token", t.expose().as_bytes()),
                    (None, Some(EhrAuth::Bearer { token })) => {
                        seal("bearer_token", token.expose().as_bytes())
                    }
                    (None, _) => return Err(missing("bearer_token")),
                };
                ("bearer", Some(token), None, None, None, None, None)
            }
            EhrCredentials::Smart {
                client_id,
                token_url,
                key,
            } => {
                let (key_id, private_key, jwks) = match (key, current.as_ref().map(|c| &c.auth)) {
                    (Some(k), _) => (
                        k.key_id,
                        seal("private_key", k.private_key.expose()),
                        k.public_jwks,
                    ),
                    (
                        None,
                        Some(EhrAuth::Smart {
                            key_id,
                            private_key,
                            public_jwks,
                            ..
                        }),
                    ) => (
                        key_id.clone(),
                        seal("private_key", private_key.expose()),
                        public_jwks.clone(),
                    ),
                    (None, _) => return Err(missing("key")),
                };
                (
                    "smart",
                    None,
                    Some(client_id),
                    Some(token_url),
                    Some(private_key),
                    Some(key_id),
                    Some(jwks),
                )
            }
        };
        let (kind, bearer, client_id, token_url, private_key, key_id, jwks) = secrets;
        let now = tx.now_micros();
        sqlx::query(
            "INSERT INTO ehr_connections (practice_id, base_url, auth_kind, bearer_token, client_id, \
             token_url, private_key, key_id, public_jwks, patient_identifier_system, write_mode, \
             push_consent, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) \
             ON CONFLICT (practice_id) DO UPDATE SET base_url = $2, auth_kind = $3, \
             bearer_token = $4, client_id = $5, token_url = $6, private_key = $7, key_id = $8, \
             public_jwks = $9, patient_identifier_system = $10, write_mode = $11, \
             push_consent = $12, enabled = $13, updated_at = $14",
        )
        .bind(&row_id)
        .bind(&input.base_url)
        .bind(kind)
        .bind(bearer)
        .bind(client_id)
        .bind(token_url)
        .bind(private_key)
        .bind(key_id)
        .bind(jwks)
        .bind(&input.patient_identifier_system)
        .bind(input.write_mode.as_str())
        .bind(i64::from(input.push_consent))
        .bind(i64::from(input.enabled))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor,
            action: Action::EhrConnectionChange,
            targets: vec![row_id],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await
    }

    /// Queues a write if the practice's enabled connection writes this kind of record; inside
    /// the transaction of the event, so the event and its write commit together.
    pub(crate) fn queue_ehr_write_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        patient: PatientId,
        kind: WriteKind,
        subject: &str,
        conversation: Option<ConversationId>,
    ) {
        // Written at commit, only if the practice's connection is on and wants this kind.
        let now = tx.now_micros();
        let (sql, mode) = match kind {
            WriteKind::Consent => (QUEUE_CONSENT_WRITE, None),
            WriteKind::Communication => (QUEUE_WRITE_IN_MODE, Some(WriteMode::Communication)),
            WriteKind::Document => (QUEUE_WRITE_IN_MODE, Some(WriteMode::Document)),
        };
        let write = tx
            .defer(sql)
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(practice.to_string())
            .bind(patient.to_string())
            .bind(kind.as_str())
            .bind(subject.to_owned())
            .bind(conversation.map(|c| c.to_string()))
            .bind(now);
        if let Some(mode) = mode {
            write.bind(mode.as_str());
        }
    }

    /// Claims up to `limit` due writes for `worker`. A write left in `sending` longer than
    /// `lease_secs` (its worker died) is claimed again: resending is safe (conditional create).
    pub async fn claim_ehr_writes(
        &self,
        worker: &str,
        limit: usize,
        lease_secs: i64,
    ) -> Result<Vec<ClaimedEhrWrite>> {
        let now = salve_core::clock::to_micros(self.clock.now());
        if !self
            .any_due(
                "SELECT 1 FROM ehr_writes WHERE (status = 'pending' AND next_attempt_at <= $1) \
                 OR (status = 'sending' AND claimed_at <= $2) LIMIT 1",
                &[now, now - lease_secs * 1_000_000],
            )
            .await?
        {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        type Row = (String, String, String, String, String, Option<String>, i64);
        // Only the constant lock clause is formatted in.
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, practice_id, patient_id, kind, subject_id, conversation_id, attempts \
             FROM ehr_writes WHERE (status = 'pending' AND next_attempt_at <= $1) \
             OR (status = 'sending' AND claimed_at <= $2) \
             ORDER BY next_attempt_at, id LIMIT $3{lock}"
        )))
        .bind(now)
        .bind(now - lease_secs * 1_000_000)
        .bind(limit as i64)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, practice, patient, kind, subject, conversation, attempts) in rows {
            sqlx::query(
                "UPDATE ehr_writes SET status = 'sending', claimed_by = $1, claimed_at = $2, \
                 attempts = attempts + 1, updated_at = $2 WHERE id = $3",
            )
            .bind(worker)
            .bind(now)
            .bind(&id)
            .execute(&mut *tx.tx)
            .await?;
            out.push(ClaimedEhrWrite {
                id,
                practice: practice.parse().map_err(|_| malformed("write"))?,
                patient: patient.parse().map_err(|_| malformed("write"))?,
                kind: WriteKind::parse(&kind).ok_or_else(|| malformed("write kind"))?,
                subject,
                conversation: conversation
                    .map(|c| c.parse())
                    .transpose()
                    .map_err(|_| malformed("write"))?,
                attempts: attempts + 1,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records what became of a claimed write, with its `ehr.write` audit row (ids and the
    /// resource type; never content).
    pub async fn finish_ehr_write(
        &self,
        write: &ClaimedEhrWrite,
        outcome: &EhrOutcome,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let mine: Option<String> = sqlx::query_scalar(
            "SELECT status FROM ehr_writes WHERE id = $1 AND status = 'sending'",
        )
        .bind(&write.id)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if mine.is_none() {
            return Ok(());
        }
        let retry = |error_kind: &String| {
            (
                "pending",
                None::<String>,
                Some(error_kind.clone()),
                Some(format!(
                    "the EHR did not take it ({error_kind}); Salve will try again"
                )),
            )
        };
        let (status, remote_id, error_kind, reason, next, audit_outcome) = match outcome {
            EhrOutcome::Written { remote_id } => (
                "written",
                Some(remote_id.clone()),
                None,
                None,
                now,
                Outcome::Success,
            ),
            EhrOutcome::Retry {
                error_kind,
                after_secs,
            } if write.attempts < MAX_ATTEMPTS => {
                let (s, r, k, why) = retry(error_kind);
                (s, r, k, why, now + after_secs * 1_000_000, Outcome::Failure)
            }
            EhrOutcome::Retry { error_kind, .. } => (
                "failed",
                None,
                Some(error_kind.clone()),
                Some(format!(
                    "the EHR kept failing ({error_kind}); Salve stopped trying"
                )),
                now,
                Outcome::Failure,
            ),
            EhrOutcome::Failed { error_kind, reason } => (
                "failed",
                None,
                Some(error_kind.clone()),
                Some(reason.clone()),
                now,
                Outcome::Failure,
            ),
        };
        sqlx::query(
            "UPDATE ehr_writes SET status = $1, remote_id = $2, error_kind = $3, reason = $4, \
             next_attempt_at = $5, claimed_by = NULL, claimed_at = NULL, updated_at = $6 WHERE id = $7",
        )
        .bind(status)
        .bind(remote_id.clone())
        .bind(error_kind)
        .bind(reason)
        .bind(next)
        .bind(now)
        .bind(&write.id)
        .execute(&mut *tx.tx)
        .await?;
        let mut targets = vec![
            write.patient.to_string(),
            write.kind.resource_type().to_owned(),
            write.subject.clone(),
            write.id.clone(),
        ];
        targets.extend(remote_id);
        tx.audit(AuditEvent::in_practice(
            write.practice,
            Actor::System,
            &RequestContext::default(),
            Action::EhrWrite,
            targets,
            audit_outcome,
        ));
        if let Some(conversation) = write.conversation {
            crate::messaging::record_change(&mut tx, write.practice, conversation, "ehr").await?;
        }
        tx.commit().await?;
        self.inbox_changed();
        Ok(())
    }

    /// The latest write of each of these records (messages, or conversations for their
    /// transcripts), for staff: written, failed with its reason, or on its way.
    pub async fn ehr_write_statuses(
        &self,
        practice: PracticeId,
        kind: WriteKind,
        subjects: &[String],
    ) -> Result<HashMap<String, EhrWriteStatus>> {
        let mut out: HashMap<String, EhrWriteStatus> = HashMap::new();
        if subjects.is_empty() {
            return Ok(out);
        }
        type Row = (String, String, Option<String>, Option<String>, i64, i64);
        // Few subjects per call (one conversation's messages): one query each keeps the SQL
        // shared by both backends.
        for subject in subjects {
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT subject_id, status, remote_id, reason, attempts, updated_at FROM ehr_writes \
                 WHERE practice_id = $1 AND kind = $2 AND subject_id = $3 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(practice.to_string())
            .bind(kind.as_str())
            .bind(subject)
            .fetch_all(&self.pool)
            .await?;
            for (subject, status, remote_id, reason, attempts, updated_at) in rows {
                out.insert(
                    subject,
                    EhrWriteStatus {
                        status,
                        resource_type: kind.resource_type(),
                        remote_id,
                        reason,
                        attempts,
                        updated_at,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Counts of writes by status (tests and metrics; no content).
    pub async fn ehr_write_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM ehr_writes GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The message of a queued Communication write: which conversation it is in.
    pub async fn ehr_message_conversation(
        &self,
        practice: PracticeId,
        message: MessageId,
    ) -> Result<Option<ConversationId>> {
        let conv: Option<String> = sqlx::query_scalar(
            "SELECT conversation_id FROM messages WHERE id = $1 AND practice_id = $2",
        )
        .bind(message.to_string())
        .bind(practice.to_string())
        .fetch_optional(&self.pool)
        .await?;
        conv.map(|c| c.parse().map_err(|_| malformed("message")))
            .transpose()
    }
}

const QUEUE_WRITE_IN_MODE: &str = "INSERT INTO ehr_writes (id, practice_id, patient_id, kind, subject_id, conversation_id, \
     status, attempts, next_attempt_at, created_at, updated_at) \
     SELECT $1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7 FROM ehr_connections \
     WHERE practice_id = $2 AND enabled <> 0 AND write_mode = $8";

const QUEUE_CONSENT_WRITE: &str = "INSERT INTO ehr_writes (id, practice_id, patient_id, kind, subject_id, conversation_id, \
     status, attempts, next_attempt_at, created_at, updated_at) \
     SELECT $1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7 FROM ehr_connections \
     WHERE practice_id = $2 AND enabled <> 0 AND push_consent <> 0";

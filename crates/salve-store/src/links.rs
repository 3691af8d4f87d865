//! Secure links and patient sessions: the stored half of a patient proving who they are.
//! Token and code are stored as hashes; the contact point a link went to is sealed under the
//! patient's key.

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::links::{self, LinkState};
use salve_core::patient::ContactKind;
use salve_core::permissions::{Operation, Principal};
use salve_core::{PatientId, PracticeId, Sensitive};
use salve_crypto::FieldAad;

use crate::batch::Batch;
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct LinkInfo {
    pub id: uuid::Uuid,
    pub practice_id: PracticeId,
    pub patient_id: PatientId,
    pub contact_kind: ContactKind,
    pub contact: Sensitive<String>,
    pub state: LinkState,
}

#[derive(Debug, Clone)]
pub struct PatientSession {
    pub id: uuid::Uuid,
    pub practice_id: PracticeId,
    pub patient_id: PatientId,
    pub last_active_at: i64,
    pub expires_at: i64,
}

/// id, practice, patient, kind, sealed contact, expires, revoked, locked
type LinkRow = (
    String,
    String,
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
);

fn link_event(
    link: &LinkInfo,
    action: Action,
    outcome: Outcome,
    ctx: &RequestContext,
) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::Practice(link.practice_id),
        actor: Actor::Anonymous,
        action,
        targets: vec![link.patient_id.to_string(), link.id.to_string()],
        outcome,
        context: ctx.clone(),
    }
}

impl Store {
    /// Creates a link to the patient's `contact_index`-th contact point. Returns the link id,
    /// its expiry and the contact point, for the caller to send the link to.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_link(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        patient: PatientId,
        contact_index: usize,
        token_hash: &[u8; 32],
        ttl_secs: i64,
    ) -> Result<LinkInfo> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        self.guard_patient_op(
            &mut tx.tx,
            practice,
            principal,
            Operation::SecureLinkSend,
            patient,
        )
        .await?;
        let record = self.load_patient(&mut tx.tx, practice, patient).await?;
        let contact = record
            .record
            .contacts
            .get(contact_index)
            .ok_or_else(|| {
                StoreError::Invalid("the patient has no contact point with that index".into())
            })?
            .clone();
        let key = self.ring.patient_key(&mut tx.tx, practice, patient).await?;
        let id = push_link(
            tx.deferred(),
            &key,
            practice,
            patient,
            &contact,
            token_hash,
            now,
            ttl_secs,
            None,
        );
        let info = LinkInfo {
            id,
            practice_id: practice,
            patient_id: patient,
            contact_kind: contact.kind,
            contact: contact.value,
            state: LinkState::Usable,
        };
        let mut event = link_event(&info, Action::LinkCreate, Outcome::Success, ctx);
        event.actor = principal.actor();
        tx.audit(event);
        tx.commit().await?;
        Ok(info)
    }

    /// The link with this token hash, whatever its state.
    pub async fn link_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<LinkInfo>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<LinkRow> = sqlx::query_as(
            "SELECT id, practice_id, patient_id, contact_kind, contact_value, expires_at, revoked_at, locked_at \
             FROM secure_links WHERE token_hash = $1",
        )
        .bind(token_hash.to_vec())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((id, practice, patient, kind, sealed, expires_at, revoked_at, locked_at)) = row
        else {
            return Ok(None);
        };
        let bad = || StoreError::KeyRing("malformed secure link".into());
        let practice: PracticeId = practice.parse().map_err(|_| bad())?;
        let patient: PatientId = patient.parse().map_err(|_| bad())?;
        let key = match self.ring.patient_key(&mut conn, practice, patient).await {
            Ok(key) => key,
            // A shredded patient's links are dead.
            Err(StoreError::Shredded) => return Ok(None),
            Err(e) => return Err(e),
        };
        let now = salve_core::clock::to_micros(self.clock.now());
        Ok(Some(LinkInfo {
            id: id.parse().map_err(|_| bad())?,
            practice_id: practice,
            patient_id: patient,
            contact_kind: ContactKind::parse(&kind).ok_or_else(bad)?,
            contact: Sensitive::new(
                key.open_string(FieldAad::new("secure_links", "contact_value", &id), &sealed)?,
            ),
            state: links::link_state(now, expires_at, revoked_at, locked_at),
        }))
    }

    pub async fn record_link_event(
        &self,
        link: &LinkInfo,
        action: Action,
        outcome: Outcome,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.record_audit(link_event(link, action, outcome, ctx))
            .await
    }

    /// Revokes a link (staff), so it can no longer be used.
    pub async fn revoke_link(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        link: uuid::Uuid,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let patient: Option<String> = sqlx::query_scalar(
            "SELECT patient_id FROM secure_links WHERE id = $1 AND practice_id = $2",
        )
        .bind(link.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let patient: PatientId = patient
            .ok_or(StoreError::NotFound)?
            .parse()
            .map_err(|_| StoreError::KeyRing("malformed secure link".into()))?;
        self.guard_patient_op(
            &mut tx.tx,
            practice,
            principal,
            Operation::SecureLinkSend,
            patient,
        )
        .await?;
        sqlx::query("UPDATE secure_links SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(link.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: principal.actor(),
            action: Action::LinkRevoke,
            targets: vec![patient.to_string(), link.to_string()],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await
    }

    /// Counts one failure against the link's budget, audits it, and locks the link when the
    /// budget is spent. Returns whether the link is now locked.
    pub async fn link_failure(
        &self,
        link: &LinkInfo,
        action: Action,
        ctx: &RequestContext,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let failures: i64 = sqlx::query_scalar(
            "UPDATE secure_links SET failures = failures + 1 WHERE id = $1 RETURNING failures",
        )
        .bind(link.id.to_string())
        .fetch_one(&mut *tx.tx)
        .await?;
        tx.audit(link_event(link, action, Outcome::Failure, ctx));
        let locked = links::locks_after(failures);
        if locked {
            sqlx::query("UPDATE secure_links SET locked_at = $1, code_hash = NULL WHERE id = $2 AND locked_at IS NULL")
                .bind(now)
                .bind(link.id.to_string())
                .execute(&mut *tx.tx)
                .await?;
            tx.audit(link_event(link, Action::LinkLocked, Outcome::Denied, ctx));
        }
        tx.commit().await?;
        Ok(locked)
    }

    /// Whether `birth_date` (YYYY-MM-DD) is the patient's date of birth.
    pub async fn link_birth_date_matches(&self, link: &LinkInfo, birth_date: &str) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let patient = self
            .load_patient(&mut conn, link.practice_id, link.patient_id)
            .await?;
        let stored = salve_core::validation::format_date(patient.record.birth_date);
        Ok(salve_crypto::ct_eq(
            stored.as_bytes(),
            birth_date.trim().as_bytes(),
        ))
    }

    /// How many codes were sent under each key since `since`.
    pub async fn code_sends_since(&self, keys: &[Vec<u8>], since: i64) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM code_sends WHERE limit_key = $1 AND sent_at > $2",
            )
            .bind(key.clone())
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
            out.push(n);
        }
        Ok(out)
    }

    /// Stores a new code for the link (replacing any earlier one) and counts the send.
    pub async fn set_link_code(
        &self,
        link: &LinkInfo,
        code_hash: &[u8; 32],
        limit_keys: &[Vec<u8>],
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let expires = now + links::CODE_TTL.whole_microseconds() as i64;
        sqlx::query("UPDATE secure_links SET code_hash = $1, code_expires_at = $2 WHERE id = $3")
            .bind(code_hash.to_vec())
            .bind(expires)
            .bind(link.id.to_string())
            .execute(&mut *tx.tx)
            .await?;
        for key in limit_keys {
            sqlx::query("INSERT INTO code_sends (limit_key, sent_at) VALUES ($1, $2)")
                .bind(key.clone())
                .bind(now)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.audit(link_event(
            link,
            Action::LinkCodeSent,
            Outcome::Success,
            ctx,
        ));
        tx.commit().await
    }

    /// Spends the link's code if `code_hash` matches it and it has not expired.
    pub async fn use_link_code(&self, link: &LinkInfo, code_hash: &[u8; 32]) -> Result<bool> {
        let now = salve_core::clock::to_micros(self.clock.now());
        let row: Option<(Option<Vec<u8>>, Option<i64>)> =
            sqlx::query_as("SELECT code_hash, code_expires_at FROM secure_links WHERE id = $1")
                .bind(link.id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let Some((Some(stored), Some(expires))) = row else {
            return Ok(false);
        };
        if now >= expires || !salve_crypto::ct_eq(&stored, code_hash) {
            return Ok(false);
        }
        let spent = sqlx::query(
            "UPDATE secure_links SET code_hash = NULL WHERE id = $1 AND code_hash = $2",
        )
        .bind(link.id.to_string())
        .bind(stored)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(spent == 1)
    }

    /// Starts a patient session after a successful verification.
    pub async fn create_patient_session(
        &self,
        link: &LinkInfo,
        token_hash: &[u8; 32],
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let expires = now + links::PATIENT_SESSION_MAX.whole_microseconds() as i64;
        sqlx::query(
            "INSERT INTO patient_sessions (id, token_hash, practice_id, patient_id, link_id, created_at, last_active_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(token_hash.to_vec())
        .bind(link.practice_id.to_string())
        .bind(link.patient_id.to_string())
        .bind(link.id.to_string())
        .bind(now)
        .bind(expires)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("UPDATE secure_links SET failures = 0 WHERE id = $1")
            .bind(link.id.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(link_event(
            link,
            Action::LinkVerified,
            Outcome::Success,
            ctx,
        ));
        tx.commit().await
    }

    /// A live patient session: not ended, not past its maximum, not idle too long. Counts the
    /// request as activity.
    pub async fn patient_session(&self, token_hash: &[u8; 32]) -> Result<Option<PatientSession>> {
        let now = salve_core::clock::to_micros(self.clock.now());
        let row: Option<(String, String, String, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, practice_id, patient_id, last_active_at, expires_at, token_hash FROM patient_sessions \
             WHERE token_hash = $1 AND ended_at IS NULL",
        )
        .bind(token_hash.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, practice, patient, last_active_at, expires_at, stored)) = row else {
            return Ok(None);
        };
        if !salve_crypto::ct_eq(&stored, token_hash) {
            return Ok(None);
        }
        let idle = links::PATIENT_SESSION_IDLE.whole_microseconds() as i64;
        if now >= expires_at || now >= last_active_at + idle {
            sqlx::query("UPDATE patient_sessions SET ended_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&id)
                .execute(&self.pool)
                .await?;
            return Ok(None);
        }
        sqlx::query("UPDATE patient_sessions SET last_active_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&id)
            .execute(&self.pool)
            .await?;
        let bad = || StoreError::KeyRing("malformed patient session".into());
        Ok(Some(PatientSession {
            id: id.parse().map_err(|_| bad())?,
            practice_id: practice.parse().map_err(|_| bad())?,
            patient_id: patient.parse().map_err(|_| bad())?,
            last_active_at: now,
            expires_at,
        }))
    }
}

impl Store {
    /// A verified patient reading their own record, audited as the patient.
    pub async fn read_own_record(
        &self,
        session: &PatientSession,
        ctx: &RequestContext,
    ) -> Result<crate::Patient> {
        let mut tx = self.begin().await?;
        let patient = self
            .load_patient(&mut tx.tx, session.practice_id, session.patient_id)
            .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(session.practice_id),
            actor: Actor::Patient(session.patient_id),
            action: Action::PatientRead,
            targets: vec![session.patient_id.to_string()],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await?;
        Ok(patient)
    }
}

impl Store {
    /// Counts one send under a rate-limit key (e.g. password-reset emails per account).
    pub async fn record_code_send(&self, key: &[u8], at: i64) -> Result<()> {
        sqlx::query("INSERT INTO code_sends (limit_key, sent_at) VALUES ($1, $2)")
            .bind(key.to_vec())
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Stores a secure link inside the caller's transaction; returns its id. `message`: the secure
/// message a notification's link announces (so a reminder can revoke it).
/// Adds a secure link's row to `writes` (often [`crate::tx::WriteTx::deferred`]); its contact is sealed
/// with the patient's key.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_link(
    writes: &mut Batch,
    key: &salve_crypto::SymmetricKey,
    practice: PracticeId,
    patient: PatientId,
    contact: &salve_core::patient::Contact,
    token_hash: &[u8; 32],
    now: i64,
    ttl_secs: i64,
    message: Option<&str>,
) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    let expires_at = now + ttl_secs * 1_000_000;
    writes
        .push(
            "INSERT INTO secure_links (id, token_hash, practice_id, patient_id, contact_kind, contact_value, \
             created_at, expires_at, failures, message_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)",
        )
        .bind(id.to_string())
        .bind(token_hash.to_vec())
        .bind(practice.to_string())
        .bind(patient.to_string())
        .bind(contact.kind.as_str())
        .bind(key.seal_str(
            FieldAad::new("secure_links", "contact_value", &id.to_string()),
            contact.value.expose(),
        ))
        .bind(now)
        .bind(expires_at)
        .bind(message.map(str::to_owned));
    id
}

impl Store {
    /// The preferred language tag of the patient a link was sent to (to write the one-time
    /// code in); the link itself proves nothing yet, so only this one field leaves the store.
    pub async fn link_patient_language(&self, link: &LinkInfo) -> Result<String> {
        let mut conn = self.pool.acquire().await?;
        let patient = self
            .load_patient(&mut conn, link.practice_id, link.patient_id)
            .await?;
        Ok(patient.record.preferred_language)
    }
}

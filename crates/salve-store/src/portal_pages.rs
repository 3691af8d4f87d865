//! What the patient portal's pages read beyond the JSON API: when the practice last read each of
//! the patient's conversations, the patient's own confidential-communication requests, who on
//! staff accessed the patient's record (from the audit log), and ending a patient session.

use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::clock::from_micros;
use salve_core::confidential::ConfidentialRequest;
use salve_core::{ConversationId, PatientId, PracticeId, UserId};
use time::OffsetDateTime;

use crate::links::PatientSession;
use crate::{Result, Store, StoreError};

/// One access to a patient's record by a staff member, as the audit log has it.
#[derive(Debug, Clone)]
pub struct RecordAccess {
    pub at: OffsetDateTime,
    pub user: UserId,
    /// The audit action, e.g. `patient.read`.
    pub action: String,
}

/// The most accesses one page lists.
pub const MAX_ACCESS_ROWS: i64 = 500;

impl Store {
    /// Per conversation of the patient: the newest time any staff member marked it read.
    pub async fn practice_read_marks(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Vec<(ConversationId, OffsetDateTime)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.conversation_id, MAX(r.read_at) FROM conversation_reads r \
             JOIN conversations c ON c.id = r.conversation_id \
             WHERE c.patient_id = $1 AND c.practice_id = $2 GROUP BY r.conversation_id",
        )
        .bind(patient.to_string())
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, at)| {
                Ok((
                    id.parse()
                        .map_err(|_| StoreError::KeyRing("malformed read mark".into()))?,
                    from_micros(at),
                ))
            })
            .collect()
    }

    /// The patient's own confidential-communication requests (for the portal; the patient is
    /// reading what they asked for).
    pub async fn own_confidential_requests(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Vec<ConfidentialRequest>> {
        let mut conn = self.pool.acquire().await?;
        self.confidential_requests_in(&mut conn, practice, patient)
            .await
    }

    /// Staff members' successful actions on this patient's record (the patient is the first
    /// target), newest first. Not audited as a read of the audit log: the patient reads entries
    /// about themself, and this read is itself shown nowhere.
    pub async fn patient_record_accesses(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Vec<RecordAccess>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT occurred_at, actor_id, action FROM audit_events \
             WHERE scope = $1 AND actor_kind = 'user' AND outcome = 'success' AND targets LIKE $2 \
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(practice.to_string())
        .bind(format!("[\"{patient}\"%"))
        .bind(MAX_ACCESS_ROWS)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(at, user, action)| {
                Ok(RecordAccess {
                    at: from_micros(at),
                    user: user
                        .parse()
                        .map_err(|_| StoreError::KeyRing("malformed audit actor".into()))?,
                    action,
                })
            })
            .collect()
    }

    /// The patient signs out: the session ends now (audited as the patient).
    pub async fn end_patient_session(
        &self,
        session: &PatientSession,
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query(
            "UPDATE patient_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(session.id.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent::in_practice(
            session.practice_id,
            Actor::Patient(session.patient_id),
            ctx,
            Action::SessionEnd,
            vec![session.patient_id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await
    }
}

//! What the patient portal's pages read beyond the JSON API: when the practice last read each of
//! the patient's conversations, the patient's own confidential-communication requests, and
//! ending a patient session. (Who accessed the record: `audit_reports::access_report`.)

use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::clock::from_micros;
use salve_core::confidential::ConfidentialRequest;
use salve_core::{ConversationId, PatientId, PracticeId};
use time::OffsetDateTime;

use crate::links::PatientSession;
use crate::{Result, Store, StoreError};

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

    /// The patient signs out: the session ends now (audited as the patient).
    pub async fn end_patient_session(
        &self,
        session: &PatientSession,
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query("UPDATE patient_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
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

//! The HL7 v2 feed's record of accepted messages, by MSH-10 control id, per practice: what makes
//! a resent message answer as before and change nothing. Holds the control id, the message
//! type, a digest of the content and the acknowledgement, never the message itself.

use salve_core::PracticeId;
use salve_core::clock::to_micros;

use crate::{Result, Store};

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Record {
    /// SHA-256 of the message without its MSH segment.
    pub content_sha256: [u8; 32],
    /// e.g. `SIU^S12`.
    pub message_type: String,
    /// `AA`, `AE` or `AR`.
    pub ack_code: String,
    /// MSA-3's text (never personal data).
    pub ack_text: String,
}

/// Control ids are at most 199 characters (HL7 2.5 ST), kept as sent.
pub const MAX_CONTROL_ID_CHARS: usize = 199;

impl Store {
    /// The record of a message this practice's feed accepted before, if any.
    pub async fn hl7_message(
        &self,
        practice: PracticeId,
        control_id: &str,
    ) -> Result<Option<Hl7Record>> {
        let row: Option<(Vec<u8>, String, String, String)> = sqlx::query_as(
            "SELECT content_sha256, message_type, ack_code, ack_text FROM hl7_messages \
             WHERE practice_id = $1 AND control_id = $2",
        )
        .bind(practice.to_string())
        .bind(control_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(digest, message_type, ack_code, ack_text)| {
            let mut content_sha256 = [0u8; 32];
            if digest.len() == 32 {
                content_sha256.copy_from_slice(&digest);
            }
            Hl7Record {
                content_sha256,
                message_type,
                ack_code,
                ack_text,
            }
        }))
    }

    /// Records an accepted message. `false` when the control id was already recorded (another
    /// connection got there first): the caller answers with that record.
    pub async fn record_hl7_message(
        &self,
        practice: PracticeId,
        control_id: &str,
        record: &Hl7Record,
    ) -> Result<bool> {
        let now = to_micros(self.clock.now());
        let inserted = sqlx::query(
            "INSERT INTO hl7_messages (practice_id, control_id, content_sha256, message_type, \
             ack_code, ack_text, processed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (practice_id, control_id) DO NOTHING",
        )
        .bind(practice.to_string())
        .bind(control_id)
        .bind(record.content_sha256.to_vec())
        .bind(&record.message_type)
        .bind(&record.ack_code)
        .bind(&record.ack_text)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }
}

//! Reads for the FHIR R4 API (`salve-server::fhir`): a patient's messages across their
//! conversations, or the practice's messages in a time window, and a patient's consent ledger
//! with the evidence of each event. Each call is gated like the JSON API's reads (restricted
//! patients, team assignments) and writes one audit event in the same transaction.

use std::collections::{BTreeSet, HashMap};

use salve_core::audit::{Action, Outcome, RequestContext};
use salve_core::clock::from_micros;
use salve_core::consent::ConsentEvent;
use salve_core::permissions::{Operation, Principal, TeamGate};
use salve_core::{ConsentEventId, ConversationId, MessageId, PatientId, PracticeId};
use time::OffsetDateTime;

use crate::messaging::{Direction, MessageView, conversation_event};
use crate::patients::check_practice;
use crate::{Result, Store, StoreError};

/// One message as a FHIR `Communication` needs it.
#[derive(Debug, Clone)]
pub struct FhirMessage {
    pub patient: PatientId,
    pub message: MessageView,
    pub updated_at: OffsetDateTime,
    /// When the patient first opened it in the portal.
    pub patient_read_at: Option<OffsetDateTime>,
}

/// Which messages: one patient's, and/or those sent or changed in a window (microseconds;
/// `from` inclusive, `to` exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageWindow {
    pub patient: Option<PatientId>,
    pub sent_from: Option<i64>,
    pub sent_to: Option<i64>,
    pub updated_from: Option<i64>,
    pub updated_to: Option<i64>,
}

/// What a consent event rests on: the inbound message it came from (a STOP), and whether
/// written evidence (an intake form's reference) was recorded with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentProvenance {
    pub event: ConsentEventId,
    pub source_message: Option<MessageId>,
    pub has_evidence: bool,
}

fn refused(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Hidden | StoreError::BreakGlassRequired | StoreError::Forbidden
    )
}

type Times = HashMap<String, (i64, i64, Option<i64>)>;

impl Store {
    /// Messages (internal notes excluded) matching `window`, oldest first. With a patient, a
    /// refusal is an error (audited); without one, conversations this principal may not read
    /// are left out.
    pub async fn fhir_messages(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        window: &MessageWindow,
    ) -> Result<Vec<FhirMessage>> {
        check_practice(principal, practice)?;
        let front_desk = self
            .messaging_settings(practice)
            .await
            .ok()
            .is_some_and(|s| s.front_desk_sees_clinical);
        let mut tx = self.begin().await?;
        if let Some(patient) = window.patient
            && let Err(e) = self
                .guard_patient_op(
                    &mut tx.tx,
                    practice,
                    principal,
                    Operation::ConversationRead,
                    patient,
                )
                .await
        {
            drop(tx);
            if refused(&e) {
                self.record_audit(conversation_event(
                    practice,
                    principal.actor(),
                    ctx,
                    Action::ConversationRead,
                    vec![patient.to_string()],
                    Outcome::Denied,
                ))
                .await?;
            }
            return Err(e);
        }
        let conversations: Vec<String> = sqlx::query_scalar(
            "SELECT c.id FROM conversations c WHERE c.practice_id = $1 \
             AND ($2 = '' OR c.patient_id = $2) AND EXISTS (SELECT 1 FROM messages m \
             WHERE m.conversation_id = c.id AND m.direction <> 'note' \
             AND m.created_at >= $3 AND m.created_at < $4 \
             AND m.updated_at >= $5 AND m.updated_at < $6) ORDER BY c.id",
        )
        .bind(practice.to_string())
        .bind(window.patient.map(|p| p.to_string()).unwrap_or_default())
        .bind(window.sent_from.unwrap_or(i64::MIN))
        .bind(window.sent_to.unwrap_or(i64::MAX))
        .bind(window.updated_from.unwrap_or(i64::MIN))
        .bind(window.updated_to.unwrap_or(i64::MAX))
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut out = Vec::new();
        let mut patients = BTreeSet::new();
        let mut read = Vec::new();
        for id in conversations {
            let id: ConversationId = id
                .parse()
                .map_err(|_| StoreError::KeyRing("malformed conversation id".into()))?;
            let conv = match self
                .guarded_conversation(
                    &mut tx.tx,
                    practice,
                    principal,
                    Operation::ConversationRead,
                    id,
                )
                .await
            {
                Ok(c) => c,
                Err(e) if refused(&e) => continue,
                Err(e) => return Err(e),
            };
            let times = self.message_times(&mut tx.tx, id).await?;
            let messages = self
                .load_messages_where(&mut tx.tx, practice, principal, &conv, front_desk, None)
                .await?;
            for m in messages {
                if m.direction == Direction::Note {
                    continue;
                }
                let Some(&(created, updated, read_at)) = times.get(&m.id.to_string()) else {
                    continue;
                };
                let inside = |v: i64, from: Option<i64>, to: Option<i64>| {
                    from.is_none_or(|f| v >= f) && to.is_none_or(|t| v < t)
                };
                if !inside(created, window.sent_from, window.sent_to)
                    || !inside(updated, window.updated_from, window.updated_to)
                {
                    continue;
                }
                out.push(FhirMessage {
                    patient: conv.patient,
                    message: m,
                    updated_at: from_micros(updated),
                    patient_read_at: read_at.map(from_micros),
                });
            }
            patients.insert(conv.patient.to_string());
            read.push(id.to_string());
        }
        out.sort_by_key(|m| (m.message.created_at, m.message.id));
        let mut targets: Vec<String> = patients.into_iter().collect();
        targets.extend(read);
        tx.audit(conversation_event(
            practice,
            principal.actor(),
            ctx,
            Action::ConversationRead,
            targets,
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(out)
    }

    /// One message by id (not an internal note) with the rest of its conversation, oldest
    /// first (what it answers is found there), gated and audited like its conversation.
    pub async fn fhir_message(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: MessageId,
    ) -> Result<Vec<FhirMessage>> {
        check_practice(principal, practice)?;
        let front_desk = self
            .messaging_settings(practice)
            .await
            .ok()
            .is_some_and(|s| s.front_desk_sees_clinical);
        let mut tx = self.begin().await?;
        let conv: Option<String> = sqlx::query_scalar(
            "SELECT conversation_id FROM messages WHERE id = $1 AND practice_id = $2 \
             AND direction <> 'note'",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let conv_id: ConversationId = conv
            .ok_or(StoreError::NotFound)?
            .parse()
            .map_err(|_| StoreError::KeyRing("malformed conversation id".into()))?;
        let conv = match self
            .guarded_conversation(
                &mut tx.tx,
                practice,
                principal,
                Operation::ConversationRead,
                conv_id,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                drop(tx);
                if refused(&e) {
                    self.record_audit(conversation_event(
                        practice,
                        principal.actor(),
                        ctx,
                        Action::ConversationRead,
                        vec![conv_id.to_string()],
                        Outcome::Denied,
                    ))
                    .await?;
                }
                return Err(e);
            }
        };
        let times = self.message_times(&mut tx.tx, conv_id).await?;
        let messages = self
            .load_messages_where(&mut tx.tx, practice, principal, &conv, front_desk, None)
            .await?;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            if m.direction == Direction::Note {
                continue;
            }
            let Some(&(_, updated, read_at)) = times.get(&m.id.to_string()) else {
                continue;
            };
            out.push(FhirMessage {
                patient: conv.patient,
                message: m,
                updated_at: from_micros(updated),
                patient_read_at: read_at.map(from_micros),
            });
        }
        if !out.iter().any(|m| m.message.id == id) {
            return Err(StoreError::NotFound);
        }
        tx.audit(conversation_event(
            practice,
            principal.actor(),
            ctx,
            Action::ConversationRead,
            vec![conv.patient.to_string(), conv_id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(out)
    }

    async fn message_times(
        &self,
        conn: &mut sqlx::AnyConnection,
        conversation: ConversationId,
    ) -> Result<Times> {
        let rows: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, created_at, updated_at, patient_read_at FROM messages \
             WHERE conversation_id = $1",
        )
        .bind(conversation.to_string())
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, c, u, r)| (id, (c, u, r)))
            .collect())
    }

    /// A patient's consent ledger with what each event rests on (audited as a consent read).
    pub async fn fhir_consent(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        patient: PatientId,
    ) -> Result<(Vec<ConsentEvent>, Vec<ConsentProvenance>)> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        if let Err(e) = self
            .guard_patient_in_team(
                &mut tx.tx,
                practice,
                principal,
                Operation::ConsentRead,
                patient,
                TeamGate::Open,
            )
            .await
        {
            drop(tx);
            if refused(&e) {
                self.record_audit(conversation_event(
                    practice,
                    principal.actor(),
                    ctx,
                    Action::ConsentRead,
                    vec![patient.to_string()],
                    Outcome::Denied,
                ))
                .await?;
            }
            return Err(e);
        }
        let events = self
            .consent_history_in(&mut tx.tx, practice, patient)
            .await?;
        let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT id, source_message_id, CASE WHEN evidence IS NULL THEN 0 ELSE 1 END \
             FROM consent_events WHERE patient_id = $1 AND practice_id = $2",
        )
        .bind(patient.to_string())
        .bind(practice.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        let bad = || StoreError::KeyRing("malformed consent event row".into());
        let sources = rows
            .into_iter()
            .map(|(id, message, evidence)| {
                Ok(ConsentProvenance {
                    event: id.parse().map_err(|_| bad())?,
                    source_message: message.map(|m| m.parse()).transpose().map_err(|_| bad())?,
                    has_evidence: evidence != 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.audit(conversation_event(
            practice,
            principal.actor(),
            ctx,
            Action::ConsentRead,
            vec![patient.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok((events, sources))
    }

    /// Whose ledger a consent event belongs to (to read it, gated and audited, by
    /// `fhir_consent`); `None` for another practice's or no event.
    pub async fn consent_event_patient(
        &self,
        practice: PracticeId,
        event: ConsentEventId,
    ) -> Result<Option<PatientId>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<String> = sqlx::query_scalar(
            "SELECT patient_id FROM consent_events WHERE id = $1 AND practice_id = $2",
        )
        .bind(event.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|p| {
            p.parse()
                .map_err(|_| StoreError::KeyRing("malformed consent event row".into()))
        })
        .transpose()
    }
}

//! What a provider's webhook brings in: patients' texts and delivery reports. Each is applied
//! once (a replay finds its key in `provider_events` and changes nothing); a text, the consent
//! change it carries and the confirmation it calls for commit together.
//!
//! What a text means (opt-out, help, opt-in) and what follows is decided by the caller with
//! `salve_core`'s keyword and consent rules; this module finds the patients, applies the
//! decision and audits.

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::consent::{ConsentEventInput, ConsentState};
use salve_core::patient::ContactKind;
use salve_core::permissions::ContentKind;
use salve_core::{MessageId, PatientId, PracticeId, ProviderId, Sensitive};
use salve_crypto::FieldAad;

use crate::consent::Recorder;
use crate::messaging::{
    Direction, Medium, MessageChannel, MessageStatus, NewJob, OutboundPlan, conversation_event,
    record_change,
};
use crate::tx::WriteTx;
use crate::{Result, Store, StoreError};

/// One text as the provider delivered it.
#[derive(Debug, Clone)]
pub struct InboundSms {
    pub provider: ProviderId,
    pub practice: PracticeId,
    pub provider_message_id: String,
    /// The sender, E.164.
    pub from: Sensitive<String>,
    pub body: Sensitive<String>,
}

/// The patients whose phone on file is the sender's, with their consent state, read in the
/// transaction that applies the text.
pub struct InboundFacts<'a> {
    pub patients: &'a [(PatientId, ConsentState)],
}

/// What the caller decided a text means and calls for.
#[derive(Debug, Clone, Default)]
pub struct InboundReaction {
    /// The intent, for the audit trail and staff (`optout`, `help`, `optin`, `other`).
    pub intent: String,
    /// Consent events to record for each patient (a revocation for an opt-out).
    pub consent: Vec<(PatientId, Vec<ConsentEventInput>)>,
    /// A fixed system reply to text back (a confirmation, the help text).
    pub reply: Option<Sensitive<String>>,
    /// The provider already answered the patient (its own opt-out handling): recorded, not
    /// sent again.
    pub provider_replied: Option<String>,
    /// Rule names for the staff review queue (never the text).
    pub review: Option<Vec<String>>,
    /// How the text is filed: routine or clinical (what the front desk may see).
    pub kind: Option<ContentKind>,
}

/// Where a text went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// Already applied: nothing changed.
    Duplicate,
    /// Into the patient's main conversation.
    Received {
        patient: PatientId,
        message: MessageId,
    },
    /// No single patient: held for staff to attribute.
    Triage { id: String, patients: usize },
}

/// A delivery report.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub provider: ProviderId,
    pub practice: PracticeId,
    pub provider_message_id: String,
    pub status: MessageStatus,
    /// The provider's error code (log-safe), sealed with the message's status reason.
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Applied,
    /// A replay, an older status than the one recorded, or an unknown message.
    Unchanged,
}

/// Delivery statuses only move forward: `queued < sending < sent < delivered < read`; `failed`
/// may follow `sent` (undelivered) but never `delivered` or `read`.
pub fn status_moves_forward(from: MessageStatus, to: MessageStatus) -> bool {
    use MessageStatus::*;
    let rank = |s| match s {
        Queued => Some(0),
        Sending => Some(1),
        Sent | Unknown => Some(2),
        Delivered => Some(3),
        Read => Some(4),
        Failed | Received => None,
    };
    match (rank(from), to) {
        (None, _) => false,
        (Some(r), Failed) => r <= 2,
        (Some(r), to) => rank(to).is_some_and(|t| t > r),
    }
}

fn malformed(what: &str) -> StoreError {
    StoreError::KeyRing(format!("malformed {what}"))
}

/// Claims a webhook event key; `false` when it was already applied.
async fn claim_event(tx: &mut WriteTx<'_>, provider: ProviderId, key: &str) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO provider_events (provider_id, event_key, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(provider.to_string())
    .bind(key)
    .bind(tx.now_micros())
    .execute(&mut *tx.tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

fn webhook_event(
    practice: PracticeId,
    action: Action,
    targets: Vec<String>,
    ctx: &RequestContext,
) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::Practice(practice),
        actor: Actor::System,
        action,
        targets,
        outcome: Outcome::Success,
        context: ctx.clone(),
    }
}

impl Store {
    /// Records a rejected webhook (bad, missing or downgraded signature). Nothing else changes.
    pub async fn record_webhook_rejected(
        &self,
        practice: PracticeId,
        provider: ProviderId,
        reason: &'static str,
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut event = webhook_event(
            practice,
            Action::WebhookRejected,
            vec![provider.to_string(), reason.to_owned()],
            ctx,
        );
        event.outcome = Outcome::Denied;
        self.record_audit(event).await
    }

    /// Applies one inbound text: into the patient's conversation (or triage), with the consent
    /// change, the reply and the review item `react` decides, in one transaction.
    pub async fn receive_sms(
        &self,
        sms: &InboundSms,
        ctx: &RequestContext,
        react: impl FnOnce(&InboundFacts<'_>) -> InboundReaction,
    ) -> Result<InboundOutcome> {
        let mut tx = self.begin().await?;
        let practice = sms.practice;
        if !claim_event(
            &mut tx,
            sms.provider,
            &format!("inbound:{}", sms.provider_message_id),
        )
        .await?
        {
            tx.audit(webhook_event(
                practice,
                Action::WebhookDuplicate,
                vec![sms.provider.to_string(), sms.provider_message_id.clone()],
                ctx,
            ));
            tx.commit().await?;
            return Ok(InboundOutcome::Duplicate);
        }
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let lookup = keys
            .blind_index
            .blind_index(ContactKind::Phone.as_str(), sms.from.expose());
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT c.patient_id FROM contacts c JOIN patients p ON p.id = c.patient_id \
             WHERE c.practice_id = $1 AND c.kind = 'phone' AND c.lookup = $2 AND p.shredded_at IS NULL \
             ORDER BY c.patient_id",
        )
        .bind(practice.to_string())
        .bind(lookup.to_vec())
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut patients = Vec::with_capacity(ids.len());
        for id in ids {
            let id: PatientId = id.parse().map_err(|_| malformed("patient id"))?;
            let history = self.consent_history_in(&mut tx.tx, practice, id).await?;
            patients.push((id, ConsentState::from_history(&history)));
        }
        let reaction = react(&InboundFacts {
            patients: &patients,
        });
        let actor_patient = patients.first().map(|(p, _)| *p);
        let outcome = if let [(patient, _)] = patients.as_slice() {
            let now = tx.now_micros();
            let conv = self
                .main_conversation(&mut tx.tx, practice, *patient, now)
                .await?;
            let plan = OutboundPlan {
                direction: Direction::Inbound,
                body: sms.body.clone(),
                kind: reaction.kind.unwrap_or(ContentKind::Clinical),
                channel: MessageChannel::Sms,
                route: None,
                decision_json: None,
                delivery: "sms".into(),
                status: MessageStatus::Received,
                status_reason: None,
                legal_basis: None,
                job: None,
            };
            let message = self
                .insert_message(
                    &mut tx,
                    practice,
                    &conv,
                    &Actor::Patient(*patient),
                    &[],
                    &plan,
                )
                .await?;
            sqlx::query("UPDATE messages SET provider_message_id = $1 WHERE id = $2")
                .bind(&sms.provider_message_id)
                .bind(message.to_string())
                .execute(&mut *tx.tx)
                .await?;
            InboundOutcome::Received {
                patient: *patient,
                message,
            }
        } else {
            let id = uuid::Uuid::now_v7().to_string();
            let seal = |column: &str, text: &str| {
                keys.practice
                    .seal_str(FieldAad::new("inbound_triage", column, &id), text)
            };
            sqlx::query(
                "INSERT INTO inbound_triage (id, practice_id, provider_id, reason, sender_lookup, sender, body, \
                 intent, provider_message_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&id)
            .bind(practice.to_string())
            .bind(sms.provider.to_string())
            .bind(if patients.is_empty() {
                "unknown_sender"
            } else {
                "shared_number"
            })
            .bind(lookup.to_vec())
            .bind(seal("sender", sms.from.expose()))
            .bind(seal("body", sms.body.expose()))
            .bind(&reaction.intent)
            .bind(&sms.provider_message_id)
            .bind(tx.now_micros())
            .execute(&mut *tx.tx)
            .await?;
            InboundOutcome::Triage {
                id,
                patients: patients.len(),
            }
        };
        let source = match &outcome {
            InboundOutcome::Received { message, .. } => Some(*message),
            _ => None,
        };
        let evidence = Sensitive::new(format!(
            "SMS from the number on file, provider message {}",
            sms.provider_message_id
        ));
        for (patient, events) in &reaction.consent {
            if events.is_empty() {
                continue;
            }
            let recorder = match source {
                Some(m) => Recorder::PatientMessage(*patient, m),
                None => Recorder::Patient(*patient),
            };
            let events = events.clone();
            self.record_consent_in(
                &mut tx,
                practice,
                recorder,
                ctx,
                *patient,
                Some(&evidence),
                |_| events,
            )
            .await?;
        }
        if let Some(patient) = actor_patient {
            let now = tx.now_micros();
            let conv = self
                .main_conversation(&mut tx.tx, practice, patient, now)
                .await?;
            if let Some(reply) = &reaction.reply {
                let plan = OutboundPlan {
                    direction: Direction::System,
                    body: reply.clone(),
                    kind: ContentKind::Administrative,
                    channel: MessageChannel::Sms,
                    route: None,
                    decision_json: None,
                    delivery: "sms".into(),
                    status: MessageStatus::Queued,
                    status_reason: None,
                    legal_basis: None,
                    // A system reply relies on no consent: it answers the patient's own text.
                    job: Some(NewJob {
                        medium: Medium::Sms,
                        recipient: sms.from.clone(),
                        body: reply.clone(),
                        purpose: None,
                        consent_channel: None,
                        legal_basis: None,
                        secure_link: None,
                    }),
                };
                self.insert_message(&mut tx, practice, &conv, &Actor::System, &[], &plan)
                    .await?;
            }
            if let Some(note) = &reaction.provider_replied {
                let plan = OutboundPlan {
                    direction: Direction::System,
                    body: Sensitive::new(note.clone()),
                    kind: ContentKind::Administrative,
                    channel: MessageChannel::Sms,
                    route: None,
                    decision_json: None,
                    delivery: "provider".into(),
                    status: MessageStatus::Sent,
                    status_reason: None,
                    legal_basis: None,
                    job: None,
                };
                self.insert_message(&mut tx, practice, &conv, &Actor::System, &[], &plan)
                    .await?;
            }
        }
        if let Some(reasons) = &reaction.review {
            let (triage, message) = match &outcome {
                InboundOutcome::Triage { id, .. } => (Some(id.clone()), None),
                InboundOutcome::Received { message, .. } => (None, Some(message.to_string())),
                InboundOutcome::Duplicate => (None, None),
            };
            sqlx::query(
                "INSERT INTO keyword_reviews (id, practice_id, patient_id, message_id, triage_id, reasons, state, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'open', $7)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(practice.to_string())
            .bind(actor_patient.map(|p| p.to_string()))
            .bind(message)
            .bind(triage)
            .bind(serde_json::to_string(reasons).map_err(|_| malformed("review reasons"))?)
            .bind(tx.now_micros())
            .execute(&mut *tx.tx)
            .await?;
        }
        let mut targets = vec![sms.provider.to_string(), reaction.intent.clone()];
        match &outcome {
            InboundOutcome::Received { patient, message } => {
                targets.push(patient.to_string());
                targets.push(message.to_string());
            }
            InboundOutcome::Triage { id, .. } => targets.push(id.clone()),
            InboundOutcome::Duplicate => {}
        }
        tx.audit(conversation_event(
            practice,
            actor_patient.map_or(Actor::Anonymous, Actor::Patient),
            ctx,
            Action::MessageReceive,
            targets,
            Outcome::Success,
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(outcome)
    }

    /// Applies a delivery report: the message's status moves forward only; a replay or an older
    /// status changes nothing (and a replay is audited as such).
    pub async fn apply_delivery_report(
        &self,
        report: &DeliveryReport,
        ctx: &RequestContext,
    ) -> Result<ReportOutcome> {
        let mut tx = self.begin().await?;
        let key = format!(
            "status:{}:{}",
            report.provider_message_id,
            report.status.as_str()
        );
        if !claim_event(&mut tx, report.provider, &key).await? {
            tx.audit(webhook_event(
                report.practice,
                Action::WebhookDuplicate,
                vec![
                    report.provider.to_string(),
                    report.provider_message_id.clone(),
                ],
                ctx,
            ));
            tx.commit().await?;
            return Ok(ReportOutcome::Unchanged);
        }
        let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, patient_id, conversation_id, status FROM messages \
             WHERE practice_id = $1 AND provider_message_id = $2 AND direction IN ('outbound', 'system')",
        )
        .bind(report.practice.to_string())
        .bind(&report.provider_message_id)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some((message, patient, conversation, status)) = row else {
            // Not ours (or a notification whose message row is elsewhere): nothing to change.
            tx.commit().await?;
            return Ok(ReportOutcome::Unchanged);
        };
        let current = status
            .as_deref()
            .and_then(MessageStatus::parse)
            .ok_or_else(|| malformed("message status"))?;
        if !status_moves_forward(current, report.status) {
            tx.commit().await?;
            return Ok(ReportOutcome::Unchanged);
        }
        let patient: PatientId = patient.parse().map_err(|_| malformed("patient id"))?;
        let reason = match (&report.error_code, report.status) {
            (Some(code), MessageStatus::Failed) => {
                let key = self
                    .ring
                    .patient_key(&mut tx.tx, report.practice, patient)
                    .await?;
                Some(key.seal_str(
                    FieldAad::new("messages", "status_reason", &message),
                    &format!("the carrier could not deliver the message (error {code})"),
                ))
            }
            _ => None,
        };
        sqlx::query(
            "UPDATE messages SET status = $1, status_reason = COALESCE($2, status_reason), updated_at = $3 WHERE id = $4",
        )
        .bind(report.status.as_str())
        .bind(reason)
        .bind(tx.now_micros())
        .bind(&message)
        .execute(&mut *tx.tx)
        .await?;
        record_change(
            &mut tx,
            report.practice,
            conversation
                .parse()
                .map_err(|_| malformed("conversation id"))?,
            "status",
        )
        .await?;
        tx.audit(conversation_event(
            report.practice,
            Actor::System,
            ctx,
            Action::MessageStatus,
            vec![
                patient.to_string(),
                message,
                report.status.as_str().to_owned(),
            ],
            Outcome::Success,
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(ReportOutcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::status_moves_forward;
    use crate::messaging::MessageStatus::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(status_moves_forward(Sent, Delivered));
        assert!(status_moves_forward(Queued, Sent));
        assert!(status_moves_forward(Delivered, Read));
        assert!(status_moves_forward(Sent, Failed));
        assert!(!status_moves_forward(Delivered, Sent));
        assert!(!status_moves_forward(Delivered, Failed));
        assert!(!status_moves_forward(Failed, Delivered));
        assert!(!status_moves_forward(Sent, Sent));
        assert!(!status_moves_forward(Received, Delivered));
    }
}

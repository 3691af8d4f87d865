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
use salve_core::permissions::Principal;
use salve_core::{MessageId, PatientId, PracticeId, ProviderId, Sensitive};
use salve_crypto::FieldAad;

use crate::consent::Recorder;
use crate::messaging::{
    Direction, Medium, MessageChannel, MessageStatus, NewAttachment, NewJob, OutboundPlan,
    conversation_event, record_change,
};
use crate::patients::check_practice;
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
    /// MMS pictures and documents, already fetched and sanitized. Kept with the message when it
    /// goes to a patient's thread (a text in triage keeps its words only).
    pub attachments: Vec<NewAttachment>,
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
    /// The text suggests an emergency: its conversation is flagged urgent for staff.
    pub urgent: bool,
    /// Emergency guidance (911, 988): sent whatever the consent state, before anything else.
    pub emergency_reply: Option<Sensitive<String>>,
    /// The patient answered the reminder that awaited an answer.
    pub reminder_answer: Option<ReminderAnswer>,
    /// The office is closed: this reply goes unless the conversation got one in the last 12
    /// hours (salve-core `hours::after_hours_reply_due`, decided in this transaction).
    pub after_hours_reply: Option<Sensitive<String>>,
}

/// A patient's answer to a reminder, as the caller judged it.
#[derive(Debug, Clone)]
pub struct ReminderAnswer {
    pub reminder: crate::AwaitingReminder,
    /// `confirm`, `cancel_visit`, `reschedule` or `late`.
    pub answer: &'static str,
    /// The visit's new status, if the answer changes it.
    pub status: Option<salve_core::appointments::AppointmentStatus>,
    /// A note for staff in the patient's conversation ("asked to reschedule").
    pub staff_note: Option<String>,
    /// A fixed acknowledgement texted back.
    pub reply: Option<Sensitive<String>>,
}

/// The outbox purpose of emergency guidance: no consent is checked for it (it answers the
/// patient's own message, for emergency purposes) and a blocked one alerts staff.
pub const EMERGENCY_PURPOSE: &str = "emergency";

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

/// The patients (not shredded) whose phone is this blind-indexed number.
async fn sender_patients(
    conn: &mut sqlx::AnyConnection,
    practice: PracticeId,
    lookup: &[u8],
) -> Result<Vec<PatientId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT c.patient_id FROM contacts c JOIN patients p ON p.id = c.patient_id \
         WHERE c.practice_id = $1 AND c.kind = 'phone' AND c.lookup = $2 AND p.shredded_at IS NULL \
         ORDER BY c.patient_id",
    )
    .bind(practice.to_string())
    .bind(lookup.to_vec())
    .fetch_all(&mut *conn)
    .await?;
    ids.into_iter()
        .map(|id| id.parse().map_err(|_| malformed("patient id")))
        .collect()
}

impl Store {
    /// The patients who hold this phone number, before a text from it is filed (to find the
    /// reminder it may answer).
    pub async fn patients_for_sender(
        &self,
        practice: PracticeId,
        from: &Sensitive<String>,
    ) -> Result<Vec<PatientId>> {
        let mut conn = self.pool.acquire().await?;
        let keys = self.ring.practice_keys(&mut conn, practice).await?;
        let lookup = keys
            .blind_index
            .blind_index(ContactKind::Phone.as_str(), from.expose());
        sender_patients(&mut conn, practice, &lookup).await
    }

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
        let ids = sender_patients(&mut tx.tx, practice, &lookup).await?;
        let mut patients = Vec::with_capacity(ids.len());
        for id in ids {
            let history = self.consent_history_in(&mut tx.tx, practice, id).await?;
            patients.push((id, ConsentState::from_history(&history)));
        }
        let reaction = react(&InboundFacts {
            patients: &patients,
        });
        let actor_patient = patients.first().map(|(p, _)| *p);
        let outcome = if let [(patient, _)] = patients.as_slice() {
            // Pictures are judged clinical: words alone cannot clear them.
            let kind = if sms.attachments.is_empty() {
                reaction.kind.unwrap_or(ContentKind::Clinical)
            } else {
                ContentKind::Clinical
            };
            let message = self
                .file_inbound_sms(
                    &mut tx,
                    practice,
                    *patient,
                    sms.body.clone(),
                    kind,
                    &sms.attachments,
                    &sms.provider_message_id,
                )
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
        // No patient holds this number: replies are sealed under the practice key instead,
        // emergency guidance first.
        if let (InboundOutcome::Triage { id: triage, .. }, None) = (&outcome, actor_patient) {
            for reply in [&reaction.emergency_reply, &reaction.reply]
                .into_iter()
                .flatten()
            {
                let id = uuid::Uuid::now_v7().to_string();
                let now = tx.now_micros();
                sqlx::query(
                    "INSERT INTO practice_replies (id, practice_id, triage_id, recipient, body, status, attempts, \
                     next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)",
                )
                .bind(&id)
                .bind(practice.to_string())
                .bind(triage)
                .bind(keys.practice.seal_str(
                    FieldAad::new("practice_replies", "recipient", &id),
                    sms.from.expose(),
                ))
                .bind(keys.practice.seal_str(
                    FieldAad::new("practice_replies", "body", &id),
                    reply.expose(),
                ))
                .bind(now)
                .execute(&mut *tx.tx)
                .await?;
            }
        }
        if let Some(patient) = actor_patient {
            let now = tx.now_micros();
            let conv = self
                .main_conversation(&mut tx.tx, practice, patient, now)
                .await?;
            if let Some(reply) = &reaction.emergency_reply {
                let plan = system_sms(reply.clone(), sms.from.clone(), Some(EMERGENCY_PURPOSE));
                self.insert_message(&mut tx, practice, &conv, &Actor::System, &[], &plan)
                    .await?;
            }
            if reaction.urgent && matches!(outcome, InboundOutcome::Received { .. }) {
                sqlx::query("UPDATE conversations SET urgent_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(conv.id.to_string())
                    .execute(&mut *tx.tx)
                    .await?;
            }
            if let Some(reply) = &reaction.reply {
                let plan = system_sms(reply.clone(), sms.from.clone(), None);
                self.insert_message(&mut tx, practice, &conv, &Actor::System, &[], &plan)
                    .await?;
            }
            if let (Some(reply), InboundOutcome::Received { .. }) =
                (&reaction.after_hours_reply, &outcome)
            {
                let hours = crate::hours::office_hours_in(&mut tx.tx, practice).await?;
                let last = crate::hours::last_after_hours_reply_in(&mut tx.tx, conv.id).await?;
                if salve_core::hours::after_hours_reply_due(hours.as_ref(), last, tx.now) {
                    let plan = system_sms(reply.clone(), sms.from.clone(), None);
                    self.insert_message(&mut tx, practice, &conv, &Actor::System, &[], &plan)
                        .await?;
                    crate::hours::record_after_hours_reply_in(&mut tx.tx, conv.id, tx.now).await?;
                }
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
        // The answer belongs to the patient the reminder went to (a shared number files the
        // text in triage, but the reminder it answers is known).
        if let Some(answer) = &reaction.reminder_answer {
            let now = tx.now_micros();
            let conv = self
                .main_conversation(&mut tx.tx, practice, answer.reminder.patient, now)
                .await?;
            self.apply_reminder_answer(&mut tx, practice, &conv, answer, &sms.from)
                .await?;
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

/// A text held for staff because no single patient could be matched to it.
#[derive(Debug, Clone)]
pub struct TriageItem {
    pub id: String,
    /// `unknown_sender` or `shared_number`.
    pub reason: String,
    pub intent: String,
    pub from: Sensitive<String>,
    pub text: Sensitive<String>,
    pub received_at: i64,
    /// Patients of the practice with this phone on file (a family's), visible to the caller.
    pub candidates: Vec<PatientId>,
}

/// A possible opt-out waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordReview {
    pub id: String,
    pub patient: Option<PatientId>,
    pub message: Option<MessageId>,
    pub triage: Option<String>,
    /// Rule names, never the text.
    pub reasons: Vec<String>,
    pub created_at: i64,
}

type TriageRow = (String, String, String, Vec<u8>, Vec<u8>, Vec<u8>, i64);

/// A staff member's opt-out decision: the events to record from the patient's consent state,
/// and the confirmation to text.
pub type StaffOptOut<'a> = (
    &'a (dyn Fn(&ConsentState) -> Vec<ConsentEventInput> + Sync),
    Option<Sensitive<String>>,
);

impl Store {
    /// The open triage queue, newest first, with the texts opened. Audited as one read.
    pub async fn list_triage(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
    ) -> Result<Vec<TriageItem>> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let rows: Vec<TriageRow> = sqlx::query_as(
            "SELECT id, reason, intent, sender_lookup, sender, body, received_at FROM inbound_triage \
             WHERE practice_id = $1 AND attributed_at IS NULL ORDER BY received_at DESC, id LIMIT 200",
        )
        .bind(practice.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for (id, reason, intent, lookup, sender, body, received_at) in rows {
            let open = |column: &str, sealed: &[u8]| {
                keys.practice
                    .open_string(FieldAad::new("inbound_triage", column, &id), sealed)
            };
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT patient_id FROM contacts WHERE practice_id = $1 AND kind = 'phone' \
                 AND lookup = $2 ORDER BY patient_id",
            )
            .bind(practice.to_string())
            .bind(&lookup)
            .fetch_all(&mut *tx.tx)
            .await?;
            let mut candidates = Vec::new();
            for p in ids {
                let p: PatientId = p.parse().map_err(|_| malformed("patient id"))?;
                if self.visible(&mut tx.tx, practice, principal, p).await? {
                    candidates.push(p);
                }
            }
            items.push(TriageItem {
                from: Sensitive::new(open("sender", &sender)?),
                text: Sensitive::new(open("body", &body)?),
                id,
                reason,
                intent,
                received_at,
                candidates,
            });
        }
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: principal.actor(),
            action: Action::TriageRead,
            targets: items.iter().map(|i| i.id.clone()).collect(),
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await?;
        Ok(items)
    }

    /// Files a triage text in a patient's main conversation (as the patient's inbound text,
    /// sealed under their key) and closes the triage item. The caller must be allowed to
    /// write to that patient's conversation.
    pub async fn attribute_triage(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: &str,
        patient: PatientId,
        classify: impl FnOnce(&str) -> ContentKind,
    ) -> Result<MessageId> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let row: Option<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT body, provider_message_id FROM inbound_triage WHERE id = $1 AND practice_id = $2 \
             AND attributed_at IS NULL",
        )
        .bind(id)
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let (sealed, provider_message_id) = row.ok_or(StoreError::NotFound)?;
        self.guard_patient_in_team(
            &mut tx.tx,
            practice,
            principal,
            salve_core::permissions::Operation::MessageNote,
            patient,
            salve_core::permissions::TeamGate::Open,
        )
        .await?;
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let body = Sensitive::new(
            keys.practice
                .open_string(FieldAad::new("inbound_triage", "body", id), &sealed)?,
        );
        let kind = classify(body.expose());
        let message = self
            .file_inbound_sms(
                &mut tx,
                practice,
                patient,
                body,
                kind,
                &[],
                &provider_message_id,
            )
            .await?;
        let now = tx.now_micros();
        sqlx::query(
            "UPDATE inbound_triage SET attributed_to = $1, attributed_at = $2 WHERE id = $3",
        )
        .bind(patient.to_string())
        .bind(now)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        // A review raised on the triage text follows it to the patient.
        sqlx::query(
            "UPDATE keyword_reviews SET patient_id = $1, message_id = $2 WHERE triage_id = $3 AND patient_id IS NULL",
        )
        .bind(patient.to_string())
        .bind(message.to_string())
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(conversation_event(
            practice,
            principal.actor(),
            ctx,
            Action::TriageAttribute,
            vec![patient.to_string(), message.to_string(), id.to_owned()],
            Outcome::Success,
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(message)
    }

    /// Open reviews of possible opt-outs, oldest first (ids and rule names only).
    pub async fn open_keyword_reviews(&self, practice: PracticeId) -> Result<Vec<KeywordReview>> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            i64,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, patient_id, message_id, triage_id, reasons, created_at FROM keyword_reviews \
             WHERE practice_id = $1 AND state = 'open' ORDER BY created_at, id",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, patient, message, triage, reasons, created_at)| {
                Ok(KeywordReview {
                    id,
                    patient: patient
                        .map(|p| p.parse().map_err(|_| malformed("patient id")))
                        .transpose()?,
                    message: message
                        .map(|m| m.parse().map_err(|_| malformed("message id")))
                        .transpose()?,
                    triage,
                    reasons: serde_json::from_str(&reasons)
                        .map_err(|_| malformed("review reasons"))?,
                    created_at,
                })
            })
            .collect()
    }

    /// Decides a review. `revoke`: the events to record for its patient (an opt-out decided
    /// by staff), and the confirmation to send to `reply_to`, all in one transaction with the
    /// decision and its audit row. Reviews without a patient (an unattributed text) must be
    /// attributed first.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_keyword_review(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: &str,
        revoke: Option<StaffOptOut<'_>>,
    ) -> Result<()> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT patient_id, message_id FROM keyword_reviews WHERE id = $1 AND practice_id = $2 AND state = 'open'",
        )
        .bind(id)
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let (patient, _message) = row.ok_or(StoreError::NotFound)?;
        let patient: Option<PatientId> = patient
            .map(|p| p.parse().map_err(|_| malformed("patient id")))
            .transpose()?;
        let state = if let Some((decide, reply)) = revoke {
            let patient = patient.ok_or_else(|| {
                StoreError::Invalid("attribute the text to a patient first".into())
            })?;
            self.record_consent_in(
                &mut tx,
                practice,
                Recorder::Principal(principal),
                ctx,
                patient,
                Some(&Sensitive::new(
                    "an unclear text judged by staff to be an opt-out".into(),
                )),
                decide,
            )
            .await?;
            if let Some(reply) = reply {
                self.queue_reply_to_sender(&mut tx, practice, patient, reply)
                    .await?;
            }
            "revoked"
        } else {
            "dismissed"
        };
        sqlx::query(
            "UPDATE keyword_reviews SET state = $1, decided_at = $2, decided_by = $3 WHERE id = $4",
        )
        .bind(state)
        .bind(tx.now_micros())
        .bind(principal.actor().id())
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        let mut targets = vec![id.to_owned(), state.to_owned()];
        targets.extend(patient.map(|p| p.to_string()));
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: principal.actor(),
            action: Action::KeywordReview,
            targets,
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await?;
        self.inbox_changed();
        Ok(())
    }

    /// Queues a system reply to the patient's first phone on file (the number their texts
    /// come from).
    async fn queue_reply_to_sender(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        patient: PatientId,
        reply: Sensitive<String>,
    ) -> Result<()> {
        let key = self.ring.patient_key(&mut tx.tx, practice, patient).await?;
        let phones = crate::patients::load_contacts(&mut tx.tx, practice, patient, &key).await?;
        let Some(phone) = phones
            .into_iter()
            .find(|c| c.kind == ContactKind::Phone)
            .map(|c| c.value)
        else {
            return Ok(());
        };
        let now = tx.now_micros();
        let conv = self
            .main_conversation(&mut tx.tx, practice, patient, now)
            .await?;
        self.insert_message(
            tx,
            practice,
            &conv,
            &Actor::System,
            &[],
            &system_sms(reply, phone, None),
        )
        .await?;
        Ok(())
    }

    /// Files a patient's text in their main conversation, with the provider's message id.
    #[allow(clippy::too_many_arguments)]
    async fn file_inbound_sms(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        patient: PatientId,
        body: Sensitive<String>,
        kind: ContentKind,
        attachments: &[NewAttachment],
        provider_message_id: &str,
    ) -> Result<MessageId> {
        let now = tx.now_micros();
        let conv = self
            .main_conversation(&mut tx.tx, practice, patient, now)
            .await?;
        let plan = OutboundPlan {
            direction: Direction::Inbound,
            body,
            kind,
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
                tx,
                practice,
                &conv,
                &Actor::Patient(patient),
                attachments,
                &plan,
            )
            .await?;
        sqlx::query("UPDATE messages SET provider_message_id = $1 WHERE id = $2")
            .bind(provider_message_id)
            .bind(message.to_string())
            .execute(&mut *tx.tx)
            .await?;
        Ok(message)
    }
}

impl Store {
    /// The patient answered a reminder: the reminder is answered, the visit's status changes
    /// (as the patient's reply may move it), staff get a note, and the patient an
    /// acknowledgement; all in the inbound transaction.
    async fn apply_reminder_answer(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        conv: &crate::messaging::LoadedConversation,
        answer: &ReminderAnswer,
        from: &Sensitive<String>,
    ) -> Result<()> {
        self.answer_reminder_in(tx, practice, &answer.reminder, answer.answer)
            .await?;
        if let Some(status) = answer.status {
            // A move the patient may not make (the visit changed a moment ago) is refused
            // before anything is written: the text is still filed and staff see it.
            match self
                .set_appointment_status_in(
                    tx,
                    practice,
                    answer.reminder.appointment,
                    status,
                    salve_core::appointments::StatusSource::PatientReply,
                    &Actor::Patient(answer.reminder.patient),
                    &RequestContext::default(),
                )
                .await
            {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(note) = &answer.staff_note {
            let plan = OutboundPlan {
                direction: Direction::Note,
                body: Sensitive::new(note.clone()),
                kind: ContentKind::Administrative,
                channel: MessageChannel::Sms,
                route: None,
                decision_json: None,
                delivery: "note".into(),
                status: MessageStatus::Sent,
                status_reason: None,
                legal_basis: None,
                job: None,
            };
            self.insert_message(tx, practice, conv, &Actor::System, &[], &plan)
                .await?;
        }
        if let Some(reply) = &answer.reply {
            let plan = system_sms(reply.clone(), from.clone(), None);
            self.insert_message(tx, practice, conv, &Actor::System, &[], &plan)
                .await?;
        }
        Ok(())
    }
}

/// A fixed system reply by SMS. It relies on no consent: it answers the patient's own text.
fn system_sms(
    reply: Sensitive<String>,
    recipient: Sensitive<String>,
    purpose: Option<&str>,
) -> OutboundPlan {
    OutboundPlan {
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
        job: Some(NewJob {
            medium: Medium::Sms,
            recipient,
            body: reply,
            purpose: purpose.map(str::to_owned),
            consent_channel: None,
            legal_basis: None,
            secure_link: None,
            expires_at: None,
        }),
    }
}

/// A system reply to a number that belongs to no patient, claimed by the worker.
#[derive(Debug, Clone)]
pub struct PracticeReply {
    pub id: String,
    pub practice: PracticeId,
    pub recipient: Sensitive<String>,
    pub body: Sensitive<String>,
    pub attempts: i64,
}

impl Store {
    /// Claims up to `limit` due replies to unknown senders, marking them `sending`.
    pub async fn claim_practice_replies(&self, limit: usize) -> Result<Vec<PracticeReply>> {
        if !self
            .any_due(
                "SELECT 1 FROM practice_replies WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1",
                &[salve_core::clock::to_micros(self.clock.now())],
            )
            .await?
        {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let lock = match self.backend() {
            crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Backend::Sqlite => "",
        };
        // Only the constant lock clause is formatted in.
        type Row = (String, String, Vec<u8>, Vec<u8>, i64);
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, practice_id, recipient, body, attempts FROM practice_replies \
             WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2{lock}"
        )))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, practice, recipient, body, attempts) in rows {
            let practice: PracticeId = practice.parse().map_err(|_| malformed("practice id"))?;
            let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
            let open = |column: &str, sealed: &[u8]| {
                keys.practice
                    .open_string(FieldAad::new("practice_replies", column, &id), sealed)
            };
            let reply = PracticeReply {
                recipient: Sensitive::new(open("recipient", &recipient)?),
                body: Sensitive::new(open("body", &body)?),
                id: id.clone(),
                practice,
                attempts: attempts + 1,
            };
            sqlx::query(
                "UPDATE practice_replies SET status = 'sending', attempts = attempts + 1, claimed_at = $1, \
                 updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(&id)
            .execute(&mut *tx.tx)
            .await?;
            out.push(reply);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records what became of a reply to an unknown sender, with its audit row.
    pub async fn finish_practice_reply(
        &self,
        reply: &PracticeReply,
        outcome: &crate::JobOutcome,
    ) -> Result<()> {
        use crate::JobOutcome;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let (status, provider_id, next, attempts_delta, audit) = match outcome {
            JobOutcome::Sent { provider_id } => {
                ("sent", Some(provider_id.clone()), now, 0, Outcome::Success)
            }
            JobOutcome::Retry { after_secs, .. } if reply.attempts < 8 => (
                "pending",
                None,
                now + after_secs * 1_000_000,
                0,
                Outcome::Failure,
            ),
            JobOutcome::Retry { .. } | JobOutcome::Failed { .. } => {
                ("failed", None, now, 0, Outcome::Failure)
            }
            JobOutcome::Unknown { .. } => ("unknown", None, now, 0, Outcome::Failure),
            JobOutcome::Held { after_secs } => (
                "pending",
                None,
                now + after_secs * 1_000_000,
                -1,
                Outcome::Success,
            ),
            JobOutcome::Paced { until } => {
                ("pending", None, (*until).max(now), -1, Outcome::Success)
            }
        };
        sqlx::query(
            "UPDATE practice_replies SET status = $1, provider_message_id = COALESCE($2, provider_message_id), \
             next_attempt_at = $3, attempts = attempts + $4, claimed_at = NULL, updated_at = $5 \
             WHERE id = $6 AND status = 'sending'",
        )
        .bind(status)
        .bind(provider_id)
        .bind(next)
        .bind(attempts_delta)
        .bind(now)
        .bind(&reply.id)
        .execute(&mut *tx.tx)
        .await?;
        if !matches!(outcome, JobOutcome::Held { .. } | JobOutcome::Paced { .. }) {
            tx.audit(AuditEvent {
                scope: ChainScope::Practice(reply.practice),
                actor: Actor::System,
                action: Action::MessageStatus,
                targets: vec![reply.id.clone(), status.to_owned()],
                outcome: audit,
                context: RequestContext::default(),
            });
        }
        tx.commit().await
    }

    /// Replies a dead worker left in `sending`: nobody can tell whether they went, and they
    /// are never resent blindly.
    pub async fn abandon_stale_practice_replies(&self, lease_secs: i64) -> Result<u64> {
        if !self
            .any_due(
                "SELECT 1 FROM practice_replies WHERE status = 'sending' AND claimed_at <= $1 LIMIT 1",
                &[salve_core::clock::to_micros(self.clock.now()) - lease_secs * 1_000_000],
            )
            .await?
        {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let n = sqlx::query(
            "UPDATE practice_replies SET status = 'unknown', updated_at = $1 \
             WHERE status = 'sending' AND claimed_at <= $2",
        )
        .bind(now)
        .bind(now - lease_secs * 1_000_000)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

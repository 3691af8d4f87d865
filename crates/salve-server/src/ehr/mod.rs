//! Writing into the practice's EHR: the worker that takes queued writes (a message as a
//! `Communication`, a closed conversation as a `DocumentReference` with a PDF transcript, a
//! consent change as a `Consent`), builds the resource from Salve's records, finds the patient's
//! chart by MRN, and creates it conditionally on Salve's identifier.
//!
//! The patient: Salve is not the EHR's master patient index, so it never creates patients
//! there. It searches `Patient?identifier={the EHR's MRN system}|{MRN}` and writes a literal
//! reference `Patient/{id}` (what EHRs require on write; a logical, identifier-only reference
//! is refused by most). No MRN, no match, or several matches: the write fails with that reason.

pub mod client;
pub mod pull;
mod resources;
mod transcript;

use salve_core::audit::RequestContext;
use salve_core::ehr::WriteKind;
use salve_core::permissions::{Principal, Scope};
use salve_store::{ClaimedEhrWrite, EhrConnection, EhrOutcome, MessageWindow, StoreError};
use serde_json::{Value, json};

use crate::AppState;
use client::EhrError;

/// A write in `sending` longer than this belongs to a worker that died; it is sent again
/// (safe: conditional create).
pub const LEASE_SECS: i64 = 120;
const BATCH: usize = 16;

/// Takes every due write once; returns how many were handled. Tests drive it directly.
pub async fn run_once(state: &AppState, worker: &str) -> anyhow::Result<usize> {
    let mut handled = 0;
    loop {
        let writes = state
            .store
            .claim_ehr_writes(worker, BATCH, LEASE_SECS)
            .await?;
        if writes.is_empty() {
            return Ok(handled);
        }
        for write in writes {
            let outcome = match attempt(state, &write).await {
                Ok(remote_id) => EhrOutcome::Written { remote_id },
                Err(EhrError::Retry { kind }) => {
                    tracing::warn!(write = %write.id, error = %kind, "EHR write failed, will retry");
                    EhrOutcome::Retry {
                        error_kind: kind,
                        after_secs: salve_core::delivery::retry_delay_secs(
                            write.attempts,
                            rand::random::<f64>(),
                        ),
                    }
                }
                Err(EhrError::Refused { kind, reason }) => {
                    tracing::warn!(write = %write.id, error = %kind, "EHR write refused");
                    EhrOutcome::Failed {
                        error_kind: kind,
                        reason,
                    }
                }
            };
            state.store.finish_ehr_write(&write, &outcome).await?;
            handled += 1;
        }
    }
}

/// A store failure while preparing a write: logged here (with detail), retried later.
fn store_failure(e: StoreError) -> EhrError {
    match e {
        StoreError::Shredded => EhrError::Refused {
            kind: "shredded".into(),
            reason: "the patient's record was destroyed at the end of its retention".into(),
        },
        StoreError::NotFound => EhrError::Refused {
            kind: "gone".into(),
            reason: "the record to write no longer exists in Salve".into(),
        },
        other => {
            tracing::error!(error = %other.detail(), "reading a record for the EHR failed");
            EhrError::Retry {
                kind: "store".into(),
            }
        }
    }
}

fn refused(kind: &str, reason: &str) -> EhrError {
    EhrError::Refused {
        kind: kind.into(),
        reason: reason.into(),
    }
}

/// Salve reading its own records to copy them into the practice's record: audited as the
/// system, like the HL7 feed.
fn reader(practice: salve_core::PracticeId) -> Principal {
    Principal::System {
        practice,
        scopes: vec![Scope::PatientsRead, Scope::MessagesRead],
    }
}

async fn attempt(state: &AppState, write: &ClaimedEhrWrite) -> Result<String, EhrError> {
    let conn = state
        .store
        .ehr_connection(write.practice)
        .await
        .map_err(store_failure)?
        .filter(|c| c.enabled)
        .ok_or_else(|| {
            refused(
                "disabled",
                "the EHR connection was turned off before this was written",
            )
        })?;
    let now = state.clock.now().unix_timestamp();
    let principal = reader(write.practice);
    let ctx = RequestContext::default();
    let patient = state
        .store
        .read_patient(write.practice, &principal, &ctx, write.patient)
        .await
        .map_err(store_failure)?;
    let mrn = patient.record.mrn.as_ref().ok_or_else(|| {
        refused(
            "no_mrn",
            "the patient has no MRN in Salve, so their chart in the EHR cannot be found",
        )
    })?;
    let chart = state
        .ehr
        .find_patient(&conn, now, &conn.patient_identifier_system, mrn.expose())
        .await?
        .ok_or_else(|| {
            refused(
                "patient_not_found",
                "no patient in the EHR carries this patient's MRN",
            )
        })?;
    let subject = json!({ "reference": format!("Patient/{chart}") });
    let (resource, identifier) = build(state, &conn, write, &principal, &ctx, &subject).await?;
    state
        .ehr
        .conditional_create(
            &conn,
            now,
            &resource,
            (write.kind.identifier_system(), &identifier),
        )
        .await
}

/// The resource for a write, and the value of its Salve identifier.
async fn build(
    state: &AppState,
    _conn: &EhrConnection,
    write: &ClaimedEhrWrite,
    principal: &Principal,
    ctx: &RequestContext,
    subject: &Value,
) -> Result<(Value, String), EhrError> {
    let base = format!("{}/fhir/r4", crate::api::portal::base_url(state));
    match write.kind {
        WriteKind::Communication => {
            let id: salve_core::MessageId = write
                .subject
                .parse()
                .map_err(|_| refused("gone", "the message to write is malformed"))?;
            let thread = state
                .store
                .fhir_message(write.practice, principal, ctx, id)
                .await
                .map_err(store_failure)?;
            let answers = crate::fhir::map::replies(&thread);
            let (m, answers) = thread
                .iter()
                .zip(answers)
                .find(|(m, _)| m.message.id == id)
                .ok_or_else(|| refused("gone", "the record to write no longer exists in Salve"))?;
            Ok((
                resources::communication(m, write.practice, answers, &base, subject),
                id.to_string(),
            ))
        }
        WriteKind::Consent => {
            let (events, _) = state
                .store
                .fhir_consent(write.practice, principal, ctx, write.patient)
                .await
                .map_err(store_failure)?;
            let resource = resources::consent(write.patient, &events, &write.subject, subject)
                .ok_or_else(|| refused("gone", "the record to write no longer exists in Salve"))?;
            Ok((resource, write.subject.clone()))
        }
        WriteKind::Document => {
            let conversation = write
                .conversation
                .ok_or_else(|| refused("gone", "the conversation to write is malformed"))?;
            let messages = state
                .store
                .fhir_messages(
                    write.practice,
                    principal,
                    ctx,
                    &MessageWindow {
                        patient: Some(write.patient),
                        ..MessageWindow::default()
                    },
                )
                .await
                .map_err(store_failure)?;
            let messages: Vec<_> = messages
                .into_iter()
                .filter(|m| m.message.conversation_id == conversation)
                .collect();
            let practice = state
                .store
                .practice(write.practice)
                .await
                .map_err(store_failure)?;
            let patient = state
                .store
                .read_patient(write.practice, principal, ctx, write.patient)
                .await
                .map_err(store_failure)?;
            let pdf = transcript::pdf(&practice.name, &patient, conversation, &messages);
            Ok((
                resources::document(
                    &write.id,
                    conversation,
                    write.practice,
                    subject,
                    &messages,
                    &pdf,
                    state.clock.now(),
                ),
                write.id.clone(),
            ))
        }
    }
}

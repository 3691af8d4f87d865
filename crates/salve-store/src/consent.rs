//! The consent ledger and confidential-communication requests, as stored: append-only events
//! with their evidence. The effective state is computed by `salve_core::consent`.

use std::collections::HashMap;

use salve_core::audit::{Action, Actor, Outcome, RequestContext};
use salve_core::clock::from_micros;
use salve_core::confidential::{ConfidentialRequest, ConfidentialRequestInput, RequestMethod};
use salve_core::consent::{
    ConsentAction, ConsentChannel, ConsentEvent, ConsentEventInput, ConsentMethod, ConsentPurpose,
    ConsentState, ConsentTextRef,
};
use salve_core::permissions::{Operation, Principal, TeamGate};
use salve_core::{
    ConfidentialRequestId, ConsentEventId, MessageId, PatientId, PracticeId, Sensitive, UserId,
};
use salve_crypto::FieldAad;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::messaging::conversation_event;
use crate::patients::check_practice;
use crate::tx::WriteTx;
use crate::{Result, Store, StoreError};

/// A consent text as shown to patients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentText {
    pub version: String,
    pub sha256_hex: String,
    pub body: String,
}

/// Who records a consent event: a staff member or system, or the patient themself.
#[derive(Debug, Clone, Copy)]
pub enum Recorder<'a> {
    Principal(&'a Principal),
    Patient(PatientId),
    /// The system acting on the patient's own message (an SMS keyword).
    PatientMessage(PatientId, MessageId),
}

impl Recorder<'_> {
    fn actor(&self) -> Actor {
        match self {
            Self::Principal(p) => p.actor(),
            Self::Patient(id) | Self::PatientMessage(id, _) => Actor::Patient(*id),
        }
    }
    fn user(&self) -> Option<UserId> {
        match self {
            Self::Principal(Principal::Staff { user, .. }) => Some(*user),
            _ => None,
        }
    }
}

fn malformed(what: &str) -> StoreError {
    StoreError::KeyRing(format!("malformed {what} row"))
}

fn invalid(errors: Vec<salve_core::FieldError>) -> StoreError {
    StoreError::Invalid(
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.expected))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

impl Store {
    /// Publishes a consent text (its wording is the practice's, not PHI). Versions are immutable.
    pub async fn publish_consent_text(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        version: &str,
        body: &str,
    ) -> Result<ConsentText> {
        let version = version.trim();
        if version.is_empty() || version.chars().count() > 64 || body.trim().is_empty() {
            return Err(StoreError::Invalid(
                "a consent text needs a version (1 to 64 characters) and its wording".into(),
            ));
        }
        let sha256_hex = hex::encode(Sha256::digest(body.as_bytes()));
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO consent_texts (practice_id, version, sha256, body, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(practice.to_string())
        .bind(version)
        .bind(&sha256_hex)
        .bind(body)
        .bind(tx.now_micros())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(
                "this consent text version exists; publish a new version",
            ));
        }
        tx.audit(conversation_event(
            practice,
            principal.actor(),
            ctx,
            Action::ConsentRecord,
            vec![format!("consent_text:{version}")],
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(ConsentText {
            version: version.to_owned(),
            sha256_hex,
            body: body.to_owned(),
        })
    }

    pub async fn consent_texts(&self, practice: PracticeId) -> Result<Vec<ConsentText>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT version, sha256, body FROM consent_texts WHERE practice_id = $1 ORDER BY created_at",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(version, sha256_hex, body)| ConsentText {
                version,
                sha256_hex,
                body,
            })
            .collect())
    }

    pub(crate) async fn consent_history_in(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Vec<ConsentEvent>> {
        Ok(self
            .consent_histories_in(conn, practice, &[patient])
            .await?
            .remove(&patient)
            .unwrap_or_default())
    }

    /// The consent histories of several of a practice's patients, in one query.
    pub(crate) async fn consent_histories_in(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patients: &[PatientId],
    ) -> Result<HashMap<PatientId, Vec<ConsentEvent>>> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
            String,
            String,
            i64,
        );
        let mut histories: HashMap<PatientId, Vec<ConsentEvent>> = HashMap::new();
        if patients.is_empty() {
            return Ok(histories);
        }
        // Only placeholders are formatted in.
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT patient_id, id, channel, purpose, action, method, consent_text_version, consent_text_sha256, \
             sms_risk_acknowledged, recorded_by_kind, recorded_by_id, recorded_at FROM consent_events \
             WHERE practice_id = $1 AND patient_id IN ({}) ORDER BY recorded_at, id",
            placeholders(2, patients.len())
        )))
        .bind(practice.to_string());
        for patient in patients {
            query = query.bind(patient.to_string());
        }
        let rows: Vec<Row> = query.fetch_all(&mut *conn).await?;
        for (
            patient,
            id,
            channel,
            purpose,
            action,
            method,
            version,
            sha,
            ack,
            by_kind,
            by_id,
            at,
        ) in rows
        {
            let bad = || malformed("consent event");
            let input = ConsentEventInput {
                channel: ConsentChannel::parse(&channel).ok_or_else(bad)?,
                purpose: ConsentPurpose::parse(&purpose).ok_or_else(bad)?,
                action: ConsentAction::parse(&action).ok_or_else(bad)?,
                method: ConsentMethod::parse(&method).ok_or_else(bad)?,
                consent_text: match (version, sha) {
                    (Some(version), Some(sha256_hex)) => Some(ConsentTextRef {
                        version,
                        sha256_hex,
                    }),
                    _ => None,
                },
                sms_risk_acknowledged: ack != 0,
            };
            let recorded_by = match by_kind.as_str() {
                "user" => Some(by_id.parse().map_err(|_| bad())?),
                _ => None,
            };
            histories
                .entry(patient.parse().map_err(|_| bad())?)
                .or_default()
                .push(ConsentEvent::new(
                    id.parse().map_err(|_| bad())?,
                    from_micros(at),
                    recorded_by,
                    input,
                ));
        }
        Ok(histories)
    }

    pub(crate) async fn confidential_requests_in(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Vec<ConfidentialRequest>> {
        Ok(self
            .confidential_requests_of_in(conn, practice, &[patient])
            .await?
            .remove(&patient)
            .unwrap_or_default())
    }

    /// The confidential-communication requests of several of a practice's patients, in one
    /// query (each opened with its patient's key).
    pub(crate) async fn confidential_requests_of_in(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patients: &[PatientId],
    ) -> Result<HashMap<PatientId, Vec<ConfidentialRequest>>> {
        type Row = (
            String,
            String,
            Vec<u8>,
            String,
            String,
            String,
            i64,
            Option<i64>,
        );
        let mut requests: HashMap<PatientId, Vec<ConfidentialRequest>> = HashMap::new();
        if patients.is_empty() {
            return Ok(requests);
        }
        // Only placeholders are formatted in.
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT patient_id, id, rule, method, recorded_by_kind, recorded_by_id, recorded_at, withdrawn_at \
             FROM confidential_requests WHERE practice_id = $1 AND patient_id IN ({}) ORDER BY recorded_at, id",
            placeholders(2, patients.len())
        )))
        .bind(practice.to_string());
        for patient in patients {
            query = query.bind(patient.to_string());
        }
        let rows: Vec<Row> = query.fetch_all(&mut *conn).await?;
        for (patient, id, rule, method, by_kind, by_id, at, withdrawn) in rows {
            let bad = || malformed("confidential request");
            let patient: PatientId = patient.parse().map_err(|_| bad())?;
            let key = self.ring.patient_key(conn, practice, patient).await?;
            let rule =
                key.open_string(FieldAad::new("confidential_requests", "rule", &id), &rule)?;
            requests
                .entry(patient)
                .or_default()
                .push(ConfidentialRequest {
                    id: id.parse().map_err(|_| bad())?,
                    rule: serde_json::from_str(&rule).map_err(|_| bad())?,
                    method: RequestMethod::parse(&method).ok_or_else(bad)?,
                    recorded_at: from_micros(at),
                    recorded_by: match by_kind.as_str() {
                        "user" => Some(by_id.parse().map_err(|_| bad())?),
                        _ => None,
                    },
                    withdrawn_at: withdrawn.map(from_micros),
                });
        }
        Ok(requests)
    }

    /// A patient's consent history and confidential-communication requests (audited read).
    pub async fn consent_record(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        patient: PatientId,
    ) -> Result<(Vec<ConsentEvent>, Vec<ConfidentialRequest>)> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        self.guard_patient_in_team(
            &mut tx.tx,
            practice,
            principal,
            Operation::ConsentRead,
            patient,
            TeamGate::Open,
        )
        .await?;
        let events = self
            .consent_history_in(&mut tx.tx, practice, patient)
            .await?;
        let requests = self
            .confidential_requests_in(&mut tx.tx, practice, patient)
            .await?;
        tx.audit(conversation_event(
            practice,
            principal.actor(),
            ctx,
            Action::ConsentRead,
            vec![patient.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok((events, requests))
    }

    /// The patient's own consent history (for the portal).
    pub async fn own_consent_state(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<ConsentState> {
        let mut conn = self.pool.acquire().await?;
        let events = self
            .consent_history_in(&mut conn, practice, patient)
            .await?;
        Ok(ConsentState::from_history(&events))
    }

    /// Records consent events (one action: e.g. revoke-all is several events at once), with
    /// their evidence. A revocation takes effect at once: queued sends relying on it stop.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_consent(
        &self,
        practice: PracticeId,
        recorder: Recorder<'_>,
        ctx: &RequestContext,
        patient: PatientId,
        events: &[ConsentEventInput],
        evidence: Option<&Sensitive<String>>,
    ) -> Result<Vec<ConsentEventId>> {
        if events.is_empty() {
            return Err(StoreError::Invalid("nothing to record".into()));
        }
        self.record_consent_from(practice, recorder, ctx, patient, evidence, |_| {
            events.to_vec()
        })
        .await
    }

    /// Records the events `decide` derives from the patient's current consent state, read in the
    /// same transaction (revoke-all cannot miss a grant committed a moment before). Nothing to
    /// record is not an error: it returns no ids.
    pub async fn record_consent_from(
        &self,
        practice: PracticeId,
        recorder: Recorder<'_>,
        ctx: &RequestContext,
        patient: PatientId,
        evidence: Option<&Sensitive<String>>,
        decide: impl FnOnce(&ConsentState) -> Vec<ConsentEventInput>,
    ) -> Result<Vec<ConsentEventId>> {
        let mut tx = self.begin().await?;
        let ids = self
            .record_consent_in(&mut tx, practice, recorder, ctx, patient, evidence, decide)
            .await?;
        if ids.is_empty() {
            return Ok(ids);
        }
        tx.commit().await?;
        self.inbox_changed();
        Ok(ids)
    }

    /// [`Store::record_consent_from`] inside the caller's transaction (an SMS keyword's
    /// revocation commits with the message that carried it). Audited there too.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_consent_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        recorder: Recorder<'_>,
        ctx: &RequestContext,
        patient: PatientId,
        evidence: Option<&Sensitive<String>>,
        decide: impl FnOnce(&ConsentState) -> Vec<ConsentEventInput>,
    ) -> Result<Vec<ConsentEventId>> {
        if let Recorder::Principal(principal) = recorder {
            check_practice(principal, practice)?;
            self.guard_patient_in_team(
                &mut tx.tx,
                practice,
                principal,
                Operation::ConsentRecord,
                patient,
                TeamGate::Open,
            )
            .await?;
        }
        let current = self
            .consent_history_in(&mut tx.tx, practice, patient)
            .await?;
        let events = decide(&ConsentState::from_history(&current));
        if events.is_empty() {
            return Ok(Vec::new());
        }
        for event in &events {
            salve_core::consent::validate(event).map_err(invalid)?;
        }
        let events = &events;
        let key = self.ring.patient_key(&mut tx.tx, practice, patient).await?;
        let now = tx.now_micros();
        let mut ids = Vec::new();
        for event in events {
            if let Some(text) = &event.consent_text {
                let known: Option<String> = sqlx::query_scalar(
                    "SELECT sha256 FROM consent_texts WHERE practice_id = $1 AND version = $2",
                )
                .bind(practice.to_string())
                .bind(&text.version)
                .fetch_optional(&mut *tx.tx)
                .await?;
                if known.as_deref() != Some(text.sha256_hex.as_str()) {
                    return Err(StoreError::Invalid(
                        "consent_text: not a published consent text version and hash of this practice"
                            .into(),
                    ));
                }
            }
            let id = ConsentEventId::new();
            let row = id.to_string();
            let actor = recorder.actor();
            sqlx::query(
                "INSERT INTO consent_events (id, practice_id, patient_id, channel, purpose, action, method, \
                 consent_text_version, consent_text_sha256, sms_risk_acknowledged, recorded_by_kind, \
                 recorded_by_id, evidence, source_message_id, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&row)
            .bind(practice.to_string())
            .bind(patient.to_string())
            .bind(event.channel.as_str())
            .bind(event.purpose.as_str())
            .bind(event.action.as_str())
            .bind(event.method.as_str())
            .bind(event.consent_text.as_ref().map(|t| t.version.clone()))
            .bind(event.consent_text.as_ref().map(|t| t.sha256_hex.clone()))
            .bind(i64::from(event.sms_risk_acknowledged))
            .bind(actor.kind())
            .bind(recorder.user().map(|u| u.to_string()).unwrap_or_else(|| actor.id()))
            .bind(evidence.map(|e| key.seal_str(FieldAad::new("consent_events", "evidence", &row), e.expose())))
            .bind(match recorder {
                Recorder::PatientMessage(_, m) => Some(m.to_string()),
                _ => None,
            })
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
            self.queue_ehr_write_in(
                tx,
                practice,
                patient,
                salve_core::ehr::WriteKind::Consent,
                &row,
                None,
            );
            ids.push(id);
        }
        self.withdraw_blocked_jobs(tx, practice, patient).await?;
        let mut targets = vec![patient.to_string()];
        targets.extend(ids.iter().map(ConsentEventId::to_string));
        tx.audit(conversation_event(
            practice,
            recorder.actor(),
            ctx,
            Action::ConsentRecord,
            targets,
            Outcome::Success,
        ));
        Ok(ids)
    }

    /// Records a confidential-communication request (45 CFR 164.522(b)).
    pub async fn record_confidential_request(
        &self,
        practice: PracticeId,
        recorder: Recorder<'_>,
        ctx: &RequestContext,
        patient: PatientId,
        input: &ConfidentialRequestInput,
        evidence: Option<&Sensitive<String>>,
    ) -> Result<ConfidentialRequestId> {
        salve_core::confidential::validate_request(input).map_err(invalid)?;
        let mut tx = self.begin().await?;
        if let Recorder::Principal(principal) = recorder {
            check_practice(principal, practice)?;
            self.guard_patient_in_team(
                &mut tx.tx,
                practice,
                principal,
                Operation::ConsentRecord,
                patient,
                TeamGate::Open,
            )
            .await?;
        }
        let key = self.ring.patient_key(&mut tx.tx, practice, patient).await?;
        let id = ConfidentialRequestId::new();
        let row = id.to_string();
        let rule =
            serde_json::to_string(&input.rule).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let actor = recorder.actor();
        sqlx::query(
            "INSERT INTO confidential_requests (id, practice_id, patient_id, rule, method, evidence, \
             recorded_by_kind, recorded_by_id, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&row)
        .bind(practice.to_string())
        .bind(patient.to_string())
        .bind(key.seal_str(FieldAad::new("confidential_requests", "rule", &row), &rule))
        .bind(input.method.as_str())
        .bind(evidence.map(|e| key.seal_str(FieldAad::new("confidential_requests", "evidence", &row), e.expose())))
        .bind(actor.kind())
        .bind(recorder.user().map(|u| u.to_string()).unwrap_or_else(|| actor.id()))
        .bind(tx.now_micros())
        .execute(&mut *tx.tx)
        .await?;
        // A request overrides routing at once, queued sends included.
        self.withdraw_blocked_jobs(&mut tx, practice, patient)
            .await?;
        tx.audit(conversation_event(
            practice,
            actor,
            ctx,
            Action::ConfidentialRecord,
            vec![patient.to_string(), row],
            Outcome::Success,
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(id)
    }

    /// Withdraws a confidential-communication request (it stays in the record): by staff for
    /// the patient, or by the patient themself from the portal. Audited as whoever did it.
    pub async fn withdraw_confidential_request(
        &self,
        practice: PracticeId,
        recorder: Recorder<'_>,
        ctx: &RequestContext,
        patient: PatientId,
        id: ConfidentialRequestId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if let Recorder::Principal(principal) = recorder {
            check_practice(principal, practice)?;
            self.guard_patient_in_team(
                &mut tx.tx,
                practice,
                principal,
                Operation::ConsentRecord,
                patient,
                TeamGate::Open,
            )
            .await?;
        }
        let actor = recorder.actor();
        let changed = sqlx::query(
            "UPDATE confidential_requests SET withdrawn_at = $1, withdrawn_by = $2 \
             WHERE id = $3 AND patient_id = $4 AND practice_id = $5 AND withdrawn_at IS NULL",
        )
        .bind(tx.now_micros())
        .bind(format!("{}:{}", actor.kind(), actor.id()))
        .bind(id.to_string())
        .bind(patient.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        tx.audit(conversation_event(
            practice,
            actor,
            ctx,
            Action::ConfidentialRecord,
            vec![patient.to_string(), id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await
    }
}

/// `$first, $first+1, …`: `count` numbered parameters for an `IN (…)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

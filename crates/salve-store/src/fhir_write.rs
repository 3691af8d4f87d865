//! Writes for the FHIR R4 API (`salve-server::fhir`): patients and appointments created or
//! changed one at a time or as a transaction `Bundle`, all in ONE database transaction through
//! the same operations as the JSON API (`insert_patient_in`, `update_patient_in`,
//! `create_appointment_in`, `update_appointment_in`), so validation, gates, audit and the
//! reminders that follow an appointment change are the same. A patient's answer recorded by
//! the EHR (`AppointmentResponse`) moves the visit as the patient's own reply to a reminder does.

use salve_core::appointments::{AppointmentStatus, StatusSource, Transition, coarse_status_change};
use salve_core::audit::{Action, AuditEvent, Outcome, RequestContext};
use salve_core::patient::{InputContext, PatientPatchInput, PatientRecord};
use salve_core::permissions::{Decision, Operation, Principal, authorize};
use salve_core::validation::FieldError;
use salve_core::{AppointmentId, PatientId, PracticeId, Sensitive};

use crate::patients::check_practice;
use crate::tx::WriteTx;
use crate::{Appointment, AppointmentPatch, NewAppointment, Patient, Result, Store, StoreError};

/// The patient an appointment write names: a stored one, or the one another write of the same
/// transaction created (or found), by its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientRef {
    Id(PatientId),
    Entry(usize),
}

/// One write of a FHIR interaction or transaction entry, already parsed and validated as far
/// as can be done without the database.
#[derive(Debug, Clone)]
pub enum FhirWrite {
    /// `if_none_exist`: an MRN; a visible patient with it is returned instead of a new one.
    CreatePatient {
        record: PatientRecord,
        if_none_exist: Option<Sensitive<String>>,
    },
    UpdatePatient {
        id: PatientId,
        patch: PatientPatchInput,
        expected_version: Option<i64>,
    },
    /// `new.patient` is replaced by `patient` once resolved.
    CreateAppointment {
        patient: PatientRef,
        new: NewAppointment,
    },
    /// `patient` must be the appointment's own (an appointment never changes patient).
    UpdateAppointment {
        id: AppointmentId,
        patient: PatientRef,
        patch: AppointmentPatch,
        expected_version: Option<i64>,
    },
}

/// What a write did.
#[derive(Debug, Clone)]
pub enum FhirWritten {
    /// `created`: false when a conditional create found the patient, or for an update.
    Patient { patient: Patient, created: bool },
    Appointment {
        appointment: Appointment,
        created: bool,
    },
}

#[derive(Debug)]
pub enum WriteFailure {
    Store(StoreError),
    Fields(Vec<FieldError>),
    /// A reference to another entry that is not a patient, or not in the transaction.
    Reference,
    /// An appointment written with another patient than its own.
    PatientMismatch,
}

/// The first write that failed, by its index in the request: nothing was written.
#[derive(Debug)]
pub struct EntryFailure {
    pub index: usize,
    pub failure: WriteFailure,
}

/// The most writes one transaction may carry.
pub const MAX_TRANSACTION_ENTRIES: usize = 1000;

/// The order writes are applied in: patients created first (appointments may name them), then
/// appointments created, then updates, each group in request order (FHIR processes POST before
/// PUT).
pub fn processing_order(writes: &[FhirWrite]) -> Vec<usize> {
    let rank = |w: &FhirWrite| match w {
        FhirWrite::CreatePatient { .. } => 0,
        FhirWrite::CreateAppointment { .. } => 1,
        FhirWrite::UpdatePatient { .. } => 2,
        FhirWrite::UpdateAppointment { .. } => 3,
    };
    let mut order: Vec<usize> = (0..writes.len()).collect();
    order.sort_by_key(|&i| (rank(&writes[i]), i));
    order
}

fn require(principal: &Principal, op: Operation) -> Result<()> {
    match authorize(principal, op, None) {
        Decision::Allow => Ok(()),
        _ => Err(StoreError::Forbidden),
    }
}

fn refusal(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Hidden | StoreError::BreakGlassRequired | StoreError::Forbidden
    )
}

impl Store {
    /// Applies `writes` in one transaction: all of them, or (the first failure, by request
    /// index) none. A refused write is audited as denied after the rollback.
    pub async fn fhir_write(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        input: &InputContext,
        writes: &[FhirWrite],
    ) -> Result<std::result::Result<Vec<FhirWritten>, EntryFailure>> {
        check_practice(principal, practice)?;
        if writes.len() > MAX_TRANSACTION_ENTRIES {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_TRANSACTION_ENTRIES} entries in one transaction"
            )));
        }
        let mut tx = self.begin().await?;
        let mut done: Vec<Option<FhirWritten>> = vec![None; writes.len()];
        for index in processing_order(writes) {
            let result = self
                .apply_write(
                    &mut tx,
                    practice,
                    principal,
                    ctx,
                    input,
                    &writes[index],
                    &done,
                )
                .await;
            match result {
                Ok(Ok(w)) => done[index] = Some(w),
                Ok(Err(failure)) => {
                    drop(tx);
                    return Ok(Err(EntryFailure { index, failure }));
                }
                Err(e) => {
                    drop(tx);
                    if refusal(&e) {
                        let (action, targets) = denied_event(&writes[index], &done);
                        self.record_audit(AuditEvent::in_practice(
                            practice,
                            principal.actor(),
                            ctx,
                            action,
                            targets,
                            Outcome::Denied,
                        ))
                        .await?;
                    }
                    return Ok(Err(EntryFailure {
                        index,
                        failure: WriteFailure::Store(e),
                    }));
                }
            }
        }
        tx.commit().await?;
        Ok(Ok(done.into_iter().flatten().collect()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_write(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        input: &InputContext,
        write: &FhirWrite,
        done: &[Option<FhirWritten>],
    ) -> Result<std::result::Result<FhirWritten, WriteFailure>> {
        let actor = principal.actor();
        match write {
            FhirWrite::CreatePatient {
                record,
                if_none_exist,
            } => {
                require(principal, Operation::PatientCreate)?;
                if let Some(mrn) = if_none_exist {
                    // Finding the existing record reads it: the caller must be able to look up.
                    require(principal, Operation::PatientLookup)?;
                    if let Some(patient) =
                        self.patient_by_mrn_in(tx, practice, principal, mrn).await?
                    {
                        tx.audit(AuditEvent::in_practice(
                            practice,
                            actor,
                            ctx,
                            Action::PatientRead,
                            vec![patient.id.to_string()],
                            Outcome::Success,
                        ));
                        return Ok(Ok(FhirWritten::Patient {
                            patient,
                            created: false,
                        }));
                    }
                }
                let patient = self
                    .insert_patient_in(tx, practice, &actor, ctx, record)
                    .await?;
                Ok(Ok(FhirWritten::Patient {
                    patient,
                    created: true,
                }))
            }
            FhirWrite::UpdatePatient {
                id,
                patch,
                expected_version,
            } => {
                match self
                    .update_patient_in(
                        tx,
                        practice,
                        principal,
                        *id,
                        patch,
                        input,
                        *expected_version,
                    )
                    .await?
                {
                    Ok(patient) => {
                        tx.audit(AuditEvent::in_practice(
                            practice,
                            actor,
                            ctx,
                            Action::PatientUpdate,
                            vec![id.to_string()],
                            Outcome::Success,
                        ));
                        Ok(Ok(FhirWritten::Patient {
                            patient,
                            created: false,
                        }))
                    }
                    Err(fields) => Ok(Err(WriteFailure::Fields(fields))),
                }
            }
            FhirWrite::CreateAppointment { patient, new } => {
                let Some(patient) = resolve(*patient, done) else {
                    return Ok(Err(WriteFailure::Reference));
                };
                let new = NewAppointment {
                    patient,
                    ..new.clone()
                };
                Ok(self
                    .create_appointment_in(tx, practice, principal, ctx, &new)
                    .await?
                    .map(|appointment| FhirWritten::Appointment {
                        appointment,
                        created: true,
                    })
                    .map_err(WriteFailure::Fields))
            }
            FhirWrite::UpdateAppointment {
                id,
                patient,
                patch,
                expected_version,
            } => {
                let Some(patient) = resolve(*patient, done) else {
                    return Ok(Err(WriteFailure::Reference));
                };
                let current = self.load_appointment_in(&mut tx.tx, practice, *id).await?;
                // The gate before the comparison, so a hidden visit reads as not found.
                self.guard_patient_op(
                    &mut tx.tx,
                    practice,
                    principal,
                    Operation::AppointmentWrite,
                    current.patient,
                )
                .await?;
                if current.patient != patient {
                    return Ok(Err(WriteFailure::PatientMismatch));
                }
                // FHIR's `booked` is any visit still to come (salve-core decides what it asks).
                let mut patch = patch.clone();
                patch.status = patch
                    .status
                    .and_then(|s| coarse_status_change(current.status, s));
                Ok(self
                    .update_appointment_in(
                        tx,
                        practice,
                        principal,
                        ctx,
                        *id,
                        &patch,
                        *expected_version,
                    )
                    .await?
                    .map(|appointment| FhirWritten::Appointment {
                        appointment,
                        created: false,
                    })
                    .map_err(WriteFailure::Fields))
            }
        }
    }

    /// The patient with this MRN, if this principal may see them (a hidden one is not found:
    /// a create then meets the MRN's uniqueness, as it would without the condition).
    async fn patient_by_mrn_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        principal: &Principal,
        mrn: &Sensitive<String>,
    ) -> Result<Option<Patient>> {
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM patients WHERE practice_id = $1 AND mrn_index = $2 AND shredded_at IS NULL",
        )
        .bind(practice.to_string())
        .bind(keys.blind_index.blind_index("mrn", mrn.expose()).to_vec())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(id) = found else { return Ok(None) };
        let id: PatientId = id
            .parse()
            .map_err(|_| StoreError::KeyRing("malformed patient id".into()))?;
        if !self.visible(&mut tx.tx, practice, principal, id).await? {
            return Ok(None);
        }
        self.load_patient(&mut tx.tx, practice, id).await.map(Some)
    }

    /// The patient's answer about a visit, relayed by the practice's systems (a FHIR
    /// `AppointmentResponse`): the same move as their "C" or "X" reply to a reminder
    /// (`StatusSource::PatientReply`, so a cancelled or past visit stays as it is), audited as
    /// the caller's act; any reminder still awaiting their answer is answered with it.
    pub async fn record_patient_answer(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: AppointmentId,
        patient: PatientId,
        status: AppointmentStatus,
    ) -> Result<(Appointment, Transition)> {
        check_practice(principal, practice)?;
        let answer = match status {
            AppointmentStatus::Confirmed => "confirm",
            AppointmentStatus::Cancelled => "cancel_visit",
            AppointmentStatus::RescheduleRequested => "reschedule",
            _ => {
                return Err(StoreError::Invalid(
                    "a patient answers confirm, cancel or reschedule".into(),
                ));
            }
        };
        let mut tx = self.begin().await?;
        let current = self.load_appointment_in(&mut tx.tx, practice, id).await?;
        if let Err(e) = self
            .guard_patient_op(
                &mut tx.tx,
                practice,
                principal,
                Operation::AppointmentAnswer,
                current.patient,
            )
            .await
        {
            drop(tx);
            if refusal(&e) {
                self.record_audit(AuditEvent::in_practice(
                    practice,
                    principal.actor(),
                    ctx,
                    Action::AppointmentUpdate,
                    vec![current.patient.to_string(), id.to_string()],
                    Outcome::Denied,
                ))
                .await?;
            }
            return Err(e);
        }
        if current.patient != patient {
            return Err(StoreError::Invalid(
                "the actor is not this appointment's patient".into(),
            ));
        }
        let result = self
            .set_appointment_status_in(
                &mut tx,
                practice,
                id,
                status,
                StatusSource::PatientReply,
                &principal.actor(),
                ctx,
            )
            .await?;
        let now = tx.now_micros();
        sqlx::query(
            "UPDATE appointment_reminders SET awaits_answer = 0, answer = $1, answered_at = $2, \
             updated_at = $2 WHERE practice_id = $3 AND appointment_id = $4 AND awaits_answer = 1",
        )
        .bind(answer)
        .bind(now)
        .bind(practice.to_string())
        .bind(id.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(result)
    }
}

fn resolve(r: PatientRef, done: &[Option<FhirWritten>]) -> Option<PatientId> {
    match r {
        PatientRef::Id(id) => Some(id),
        PatientRef::Entry(i) => match done.get(i)? {
            Some(FhirWritten::Patient { patient, .. }) => Some(patient.id),
            _ => None,
        },
    }
}

fn denied_event(write: &FhirWrite, done: &[Option<FhirWritten>]) -> (Action, Vec<String>) {
    match write {
        FhirWrite::CreatePatient { .. } => (Action::PatientCreate, Vec::new()),
        FhirWrite::UpdatePatient { id, .. } => (Action::PatientUpdate, vec![id.to_string()]),
        FhirWrite::CreateAppointment { patient, .. } => (
            Action::AppointmentCreate,
            resolve(*patient, done)
                .map(|p| vec![p.to_string()])
                .unwrap_or_default(),
        ),
        FhirWrite::UpdateAppointment { id, .. } => {
            (Action::AppointmentUpdate, vec![id.to_string()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patients_are_created_before_appointments_and_creates_before_updates() {
        let record = PatientRecord {
            given_name: Sensitive::new("A".into()),
            family_name: Sensitive::new("B".into()),
            birth_date: time::Date::from_calendar_date(1980, time::Month::January, 1).unwrap(),
            mrn: None,
            preferred_language: "en".into(),
            time_zone: None,
            contacts: Vec::new(),
        };
        let appt = FhirWrite::CreateAppointment {
            patient: PatientRef::Entry(2),
            new: NewAppointment {
                patient: PatientId::new(),
                external_id: None,
                starts_at: time::OffsetDateTime::UNIX_EPOCH,
                time_zone: "UTC".into(),
                duration_minutes: 30,
                appointment_type: salve_core::CatalogItemId::new(),
                location: salve_core::CatalogItemId::new(),
                provider: salve_core::CatalogItemId::new(),
            },
        };
        let update = FhirWrite::UpdatePatient {
            id: PatientId::new(),
            patch: PatientPatchInput::default(),
            expected_version: None,
        };
        let create = FhirWrite::CreatePatient {
            record,
            if_none_exist: None,
        };
        let writes = vec![update, appt, create];
        assert_eq!(processing_order(&writes), vec![2, 1, 0]);
    }
}

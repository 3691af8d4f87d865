//! The HL7 v2 appointment feed: an MLLP listener (`mllp`) that takes SIU^S12–S15 and
//! ADT^A04/A08 from a practice's EHR, maps them (`message`, pure) onto the same store operations
//! the JSON API calls (so reminders follow and every change is audited, here as the system),
//! and answers each message with an ACK.
//!
//! A message is routed to a practice by the sender's address and MSH-4 (the configured
//! sources). Messages of one practice are handled one at a time, in arrival order. An accepted
//! message's control id (MSH-10) is recorded for its practice: the same id again is answered
//! with the same ACK and changes nothing; the same id with other content is rejected. Messages
//! that were not accepted are not recorded, so a sender can fix the cause and resend.

pub mod message;
mod mllp;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use salve_core::appointments::{self as rules, AppointmentStatus};
use salve_core::audit::RequestContext;
use salve_core::patient::{
    ContactInput, ContactKind, ContactRole, PatientInput, PatientPatchInput, PatientRecord,
};
use salve_core::permissions::{Principal, Scope};
use salve_core::validation::{self, FieldError};
use salve_core::{CatalogItemId, PracticeId, Sensitive};
use salve_store::{
    Appointment, AppointmentPatch, CatalogKind, Hl7Record, Lookup, NewAppointment, Patient,
    StoreError,
};

use crate::AppState;
use crate::config::Hl7Config;
use message::{
    AckCode, AppointmentFields, CatalogName, Command, ErrorCode, Event, Header, PatientFields,
    Rejection, Start,
};

pub(crate) use mllp::run;

/// What the feed may do: find and write patients and appointments, nothing else.
const SCOPES: [Scope; 4] = [
    Scope::PatientsRead,
    Scope::PatientsWrite,
    Scope::AppointmentsRead,
    Scope::AppointmentsWrite,
];

/// Handles messages for the listener (and for tests, without a socket).
#[derive(Clone)]
pub struct Feed {
    state: AppState,
    config: Arc<Hl7Config>,
    /// One lock per practice: its messages are applied in order, one at a time.
    locks: Arc<Mutex<HashMap<PracticeId, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Feed {
    pub fn new(state: AppState, config: Hl7Config) -> Self {
        Self {
            state,
            config: Arc::new(config),
            locks: Arc::default(),
        }
    }

    pub fn config(&self) -> &Hl7Config {
        &self.config
    }

    fn lock_of(&self, practice: PracticeId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(practice).or_default().clone()
    }

    fn ack_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    fn refuse(&self, header: Option<&Header>, r: &Rejection) -> String {
        tracing::warn!(
            control_id = header.map(|h| h.control_id.as_str()).unwrap_or(""),
            message_type = %header.map(Header::type_label).unwrap_or_default(),
            ack = r.code.as_str(),
            error = r.error.code(),
            location = r.location.unwrap_or(""),
            "hl7 message not accepted"
        );
        message::ack(
            header,
            r.code,
            Some(r),
            &r.text(),
            self.state.clock.now(),
            &Self::ack_id(),
        )
    }

    /// One message from `peer` (a frame's bytes) to its ACK. Never logs the message: only its
    /// control id, type and the outcome.
    pub async fn handle(&self, peer: IpAddr, bytes: &[u8]) -> String {
        let text = message::decode(bytes);
        let header = match message::header(&text) {
            Ok(h) => h,
            Err(r) => return self.refuse(None, &r),
        };
        let Some(practice) = self.config.practice_for(peer, &header.sending_facility) else {
            let r = Rejection::reject(
                ErrorCode::UnknownKey,
                Some("MSH-4"),
                "this sending facility may not send from this address",
            );
            return self.refuse(Some(&header), &r);
        };
        let lock = self.lock_of(practice);
        let _turn = lock.lock().await;
        let digest = message::content_digest(&text);
        match self
            .state
            .store
            .hl7_message(practice, &header.control_id)
            .await
        {
            Ok(Some(done)) => {
                if !salve_crypto::ct_eq(&done.content_sha256, &digest) {
                    let r = Rejection::reject(
                        ErrorCode::DuplicateKey,
                        Some("MSH-10"),
                        "this control id was used before for another message",
                    );
                    return self.refuse(Some(&header), &r);
                }
                tracing::info!(
                    control_id = %header.control_id,
                    message_type = %done.message_type,
                    %practice,
                    "hl7 message already processed: answered as before"
                );
                let code = AckCode::parse(&done.ack_code).unwrap_or(AckCode::Accept);
                return message::ack(
                    Some(&header),
                    code,
                    None,
                    &done.ack_text,
                    self.state.clock.now(),
                    &Self::ack_id(),
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e.detail(), "hl7: cannot read the processed messages");
                return self.refuse(Some(&header), &internal());
            }
        }
        let parsed = match message::parse(&text) {
            Ok(p) => p,
            Err(r) => return self.refuse(Some(&header), &r),
        };
        let ctx = RequestContext {
            ip: Some(peer.to_string()),
            user_agent: Some(format!("HL7 v2 feed ({})", header.sending_application)),
            request_id: Some(format!("hl7:{}", header.control_id)),
            reason: None,
        };
        let principal = Principal::System {
            practice,
            scopes: SCOPES.to_vec(),
        };
        let applied = Apply {
            state: &self.state,
            practice,
            principal: &principal,
            ctx: &ctx,
        }
        .command(&parsed.command)
        .await;
        let done = match applied {
            Ok(done) => done,
            Err(r) => return self.refuse(Some(&header), &r),
        };
        let record = Hl7Record {
            content_sha256: digest,
            message_type: header.type_label(),
            ack_code: AckCode::Accept.as_str().to_owned(),
            ack_text: done.to_owned(),
        };
        if let Err(e) = self
            .state
            .store
            .record_hl7_message(practice, &header.control_id, &record)
            .await
        {
            // The change is made; a resend applies the same values again (no change).
            tracing::error!(error = %e.detail(), "hl7: cannot record a processed message");
        }
        tracing::info!(
            control_id = %header.control_id,
            message_type = %header.type_label(),
            %practice,
            ack = "AA",
            "hl7 message accepted"
        );
        message::ack(
            Some(&header),
            AckCode::Accept,
            None,
            done,
            self.state.clock.now(),
            &Self::ack_id(),
        )
    }
}

fn internal() -> Rejection {
    Rejection {
        code: AckCode::Error,
        error: ErrorCode::InternalError,
        location: None,
        reason: "Salve could not process the message now; resend it later".to_owned(),
    }
}

/// A store error as an AE. Conflicts carry fixed texts (no values); anything else is logged
/// and answered as an internal error.
fn store_rejection(e: StoreError, location: &'static str) -> Rejection {
    match e {
        StoreError::Conflict(m) => Rejection::error(ErrorCode::DuplicateKey, location, m),
        StoreError::NotFound | StoreError::Hidden | StoreError::Shredded => Rejection::error(
            ErrorCode::UnknownKey,
            location,
            "no such record in this practice (or it was destroyed)",
        ),
        other => {
            tracing::error!(error = %other.detail(), "hl7: store error");
            internal()
        }
    }
}

fn field_rejection(errors: &[FieldError], location: impl Fn(&str) -> &'static str) -> Rejection {
    match errors.first() {
        Some(e) => Rejection::error(
            ErrorCode::DataType,
            location(&e.field),
            format!("expected {}", e.expected),
        ),
        None => internal(),
    }
}

fn catalog_location(field: &str) -> &'static str {
    match field {
        "appointment_type_id" => "AIS-3",
        "location_id" => "AIL-3",
        "provider_id" => "AIP-3",
        "starts_at" => "SCH-11",
        "duration_minutes" => "SCH-9",
        _ => "SCH",
    }
}

struct Apply<'a> {
    state: &'a AppState,
    practice: PracticeId,
    principal: &'a Principal,
    ctx: &'a RequestContext,
}

impl Apply<'_> {
    async fn command(&self, command: &Command) -> Result<&'static str, Rejection> {
        match command {
            Command::Patient { event, patient } => {
                let existing = self.find_patient(patient).await?;
                let created = existing.is_none();
                self.upsert_patient(patient, existing).await?;
                Ok(match (event, created) {
                    (_, true) => "patient registered",
                    (Event::Register, false) => "patient already registered; details updated",
                    _ => "patient updated",
                })
            }
            Command::Appointment {
                event,
                patient,
                appointment,
            } => self.appointment(*event, patient, appointment).await,
        }
    }

    async fn find_patient(&self, fields: &PatientFields) -> Result<Option<Patient>, Rejection> {
        let raw = fields
            .mrn
            .as_ref()
            .map(|m| m.expose().as_str())
            .unwrap_or("");
        let mrn = validation::mrn("mrn", raw).map_err(|e| {
            Rejection::error(
                ErrorCode::DataType,
                "PID-3",
                format!("expected {}", e.expected),
            )
        })?;
        let found = self
            .state
            .store
            .lookup_patients(self.practice, self.principal, self.ctx, &Lookup::Mrn(mrn))
            .await
            .map_err(|e| store_rejection(e, "PID-3"))?;
        Ok(found.into_iter().next())
    }

    fn contacts(fields: &PatientFields) -> Vec<ContactInput> {
        let phones = fields.phones.iter().map(|p| (ContactKind::Phone, p));
        let emails = fields.emails.iter().map(|e| (ContactKind::Email, e));
        phones
            .chain(emails)
            .map(|(kind, value)| ContactInput {
                kind,
                value: value.clone(),
                role: ContactRole::Patient,
            })
            .collect()
    }

    /// PID-15, when it is a language Salve knows how to name (else the record keeps its own).
    fn language(fields: &PatientFields) -> Option<String> {
        let raw = fields.language.as_deref()?;
        let raw = match raw {
            "eng" => "en",
            "spa" => "es",
            other => other,
        };
        validation::language("preferred_language", raw).ok()
    }

    /// Registers the patient, or brings an existing one up to date with what PID gives
    /// (contacts of the patient themselves are replaced when PID-13/14 name any; guardians and
    /// caregivers entered in Salve are kept).
    async fn upsert_patient(
        &self,
        fields: &PatientFields,
        existing: Option<Patient>,
    ) -> Result<Patient, Rejection> {
        let store = &self.state.store;
        let input_ctx = store
            .input_context(self.practice)
            .await
            .map_err(|e| store_rejection(e, "PID"))?;
        match existing {
            None => {
                if !fields.complete() {
                    return Err(Rejection::error(
                        ErrorCode::RequiredFieldMissing,
                        if fields.birth_date.is_none() {
                            "PID-7"
                        } else {
                            "PID-5"
                        },
                        "an unknown patient is registered only with their name (PID-5) and birth date (PID-7)",
                    ));
                }
                let text = |v: &Option<Sensitive<String>>| {
                    Sensitive::new(v.as_ref().map(|s| s.expose().clone()).unwrap_or_default())
                };
                let input = PatientInput {
                    given_name: text(&fields.given_name),
                    family_name: text(&fields.family_name),
                    birth_date: text(&fields.birth_date),
                    mrn: fields.mrn.clone(),
                    preferred_language: Self::language(fields),
                    time_zone: None,
                    contacts: Self::contacts(fields),
                };
                let record = PatientRecord::from_input(&input, &input_ctx)
                    .map_err(|e| field_rejection(&e, message::pid_location))?;
                let (patient, _) = store
                    .create_patient(self.practice, self.principal, self.ctx, &record, None)
                    .await
                    .map_err(|e| store_rejection(e, "PID-3"))?;
                Ok(patient)
            }
            Some(current) => {
                let mut patch = PatientPatchInput {
                    given_name: fields.given_name.clone(),
                    family_name: fields.family_name.clone(),
                    birth_date: fields.birth_date.clone(),
                    preferred_language: Self::language(fields),
                    ..Default::default()
                };
                let new_contacts = Self::contacts(fields);
                if !new_contacts.is_empty() {
                    let kept = current
                        .record
                        .contacts
                        .iter()
                        .filter(|c| c.role != ContactRole::Patient)
                        .map(|c| ContactInput {
                            kind: c.kind,
                            value: c.value.clone(),
                            role: c.role,
                        });
                    patch.contacts = Some(new_contacts.into_iter().chain(kept).collect());
                }
                store
                    .update_patient(
                        self.practice,
                        self.principal,
                        self.ctx,
                        current.id,
                        &patch,
                        &input_ctx,
                    )
                    .await
                    .map_err(|e| store_rejection(e, "PID-3"))?
                    .map_err(|e| field_rejection(&e, message::pid_location))
            }
        }
    }

    async fn resolve(
        &self,
        kind: CatalogKind,
        candidates: &[String],
        required: bool,
        location: &'static str,
    ) -> Result<Option<CatalogItemId>, Rejection> {
        if candidates.is_empty() && !required {
            return Ok(None);
        }
        let items: Vec<CatalogName<CatalogItemId>> = self
            .state
            .store
            .catalog(self.practice)
            .await
            .map_err(|e| store_rejection(e, location))?
            .into_iter()
            .filter(|i| i.kind == kind && i.active)
            .map(|i| CatalogName {
                id: i.id,
                name: i.name,
            })
            .collect();
        match message::resolve_catalog(candidates, &items) {
            Some(id) => Ok(Some(id)),
            None if candidates.is_empty() => Err(Rejection::error(
                ErrorCode::RequiredFieldMissing,
                location,
                format!(
                    "required: the practice has several active {}s",
                    kind.as_str().replace('_', " ")
                ),
            )),
            None => Err(Rejection::error(
                ErrorCode::TableValueNotFound,
                location,
                format!(
                    "no active {} of this practice has this name or code",
                    kind.as_str().replace('_', " ")
                ),
            )),
        }
    }

    async fn starts_at(&self, start: Start) -> Result<time::OffsetDateTime, Rejection> {
        let now = self.state.clock.now();
        let at = match start {
            Start::Instant(at) => at,
            Start::Local(wall) => {
                let zone = self
                    .state
                    .store
                    .practice(self.practice)
                    .await
                    .map_err(|e| store_rejection(e, "SCH-11"))?
                    .time_zone;
                let text = format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}",
                    wall.year(),
                    u8::from(wall.month()),
                    wall.day(),
                    wall.hour(),
                    wall.minute()
                );
                rules::local_wall_time(&zone, &text).map_err(|_| {
                    Rejection::error(
                        ErrorCode::DataType,
                        "SCH-11",
                        "this local time does not exist, or happens twice, in the practice's time zone; send it with its UTC offset",
                    )
                })?
            }
        };
        rules::starts_at("starts_at", at, now).map_err(|e| {
            Rejection::error(
                ErrorCode::DataType,
                "SCH-11",
                format!("expected {}", e.expected),
            )
        })
    }

    async fn appointment(
        &self,
        event: Event,
        patient_fields: &PatientFields,
        fields: &AppointmentFields,
    ) -> Result<&'static str, Rejection> {
        let store = &self.state.store;
        let existing = store
            .appointment_by_external_id(
                self.practice,
                self.principal,
                self.ctx,
                &fields.external_id,
            )
            .await
            .map_err(|e| store_rejection(e, "SCH-2"))?;
        let patient = self.find_patient(patient_fields).await?;
        let required = event == Event::Book && existing.is_none();
        let appointment_type = self
            .resolve(
                CatalogKind::AppointmentType,
                &fields.appointment_type,
                required,
                "AIS-3",
            )
            .await?;
        let location = self
            .resolve(CatalogKind::Location, &fields.location, required, "AIL-3")
            .await?;
        let provider = self
            .resolve(CatalogKind::Provider, &fields.provider, required, "AIP-3")
            .await?;
        let starts_at = match fields.start {
            Some(s) => Some(self.starts_at(s).await?),
            None => None,
        };
        let Some(current) = existing else {
            if event != Event::Book {
                return Err(Rejection::error(
                    ErrorCode::UnknownKey,
                    "SCH-2",
                    "no appointment of this practice has this id",
                ));
            }
            let patient = match patient {
                Some(p) => p,
                None => self.upsert_patient(patient_fields, None).await?,
            };
            let zone = store
                .practice(self.practice)
                .await
                .map_err(|e| store_rejection(e, "SCH"))?
                .time_zone;
            let (Some(starts_at), Some(duration_minutes), Some(t), Some(l), Some(p)) = (
                starts_at,
                fields.duration_minutes,
                appointment_type,
                location,
                provider,
            ) else {
                return Err(internal());
            };
            let new = NewAppointment {
                patient: patient.id,
                external_id: Some(fields.external_id.clone()),
                starts_at,
                time_zone: zone,
                duration_minutes,
                appointment_type: t,
                location: l,
                provider: p,
            };
            store
                .create_appointment(self.practice, self.principal, self.ctx, &new, None)
                .await
                .map_err(|e| store_rejection(e, "SCH-2"))?
                .map_err(|e| field_rejection(&e, catalog_location))?;
            return Ok("appointment booked");
        };
        match &patient {
            Some(p) if p.id == current.patient => {}
            Some(_) => {
                return Err(Rejection::error(
                    ErrorCode::UnknownKey,
                    "PID-3",
                    "this appointment belongs to another patient",
                ));
            }
            None => {
                return Err(Rejection::error(
                    ErrorCode::UnknownKey,
                    "PID-3",
                    "no patient of this practice has this identifier",
                ));
            }
        }
        if event == Event::Cancel {
            store
                .cancel_appointment(self.practice, self.principal, self.ctx, current.id, None)
                .await
                .map_err(|e| store_rejection(e, "SCH-2"))?;
            return Ok("appointment cancelled");
        }
        let patch = AppointmentPatch {
            starts_at,
            duration_minutes: fields.duration_minutes,
            appointment_type,
            location,
            provider,
            // A rescheduled visit happens again, even if it had been cancelled.
            status: (event == Event::Reschedule && !current.status.is_upcoming())
                .then_some(AppointmentStatus::Booked),
            ..Default::default()
        };
        self.update(&current, &patch).await?;
        Ok(match event {
            Event::Book => "appointment already booked; details updated",
            Event::Reschedule => "appointment rescheduled",
            _ => "appointment updated",
        })
    }

    async fn update(
        &self,
        current: &Appointment,
        patch: &AppointmentPatch,
    ) -> Result<(), Rejection> {
        self.state
            .store
            .update_appointment(
                self.practice,
                self.principal,
                self.ctx,
                current.id,
                patch,
                None,
            )
            .await
            .map_err(|e| store_rejection(e, "SCH-2"))?
            .map_err(|e| field_rejection(&e, catalog_location))?;
        Ok(())
    }
}

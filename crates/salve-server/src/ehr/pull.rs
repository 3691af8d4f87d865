//! The scheduled pull of patients and appointments from a practice's EHR: when due (on Salve's
//! clock), one instance takes the practice's lease, searches `Patient` then `Appointment` with
//! `_lastUpdated=gt{cursor − overlap}&_sort=_lastUpdated`, follows `next` links (only under the
//! connection's base URL: the token is never sent elsewhere), and applies each resource through
//! the same store operations as the API and the HL7 feed, as the system, audited.
//!
//! Each resource is applied on its own (the store's operations are one transaction each): one
//! bad resource is skipped with a fixed reason and does not hold back the rest, and a failure
//! leaves everything before it applied. A resource is found again by the EHR's id (a link
//! holding the version applied, so an unchanged resource changes nothing) and a new patient by
//! MRN; creates carry an idempotency key derived from the EHR's id, so a create whose link was
//! not written (a crash between the two) finds its first record instead of making a second.

use std::collections::BTreeMap;
use std::time::Duration;

use salve_core::appointments::{self as rules, AppointmentStatus};
use salve_core::audit::RequestContext;
use salve_core::ehr_pull::{
    self as pull, LEASE_SECS, MAX_PAGES, PAGE_SIZE, PulledAppointment, PulledPatient, PulledStatus,
    Skip,
};
use salve_core::patient::{
    ContactInput, ContactKind, ContactRole, PatientInput, PatientPatchInput, PatientRecord,
};
use salve_core::permissions::{Principal, Scope};
use salve_core::validation;
use salve_core::{AppointmentId, CatalogItemId, PatientId, PracticeId, Sensitive};
use salve_store::{
    AppointmentPatch, CatalogKind, EhrConnection, EhrPullRun, Idempotency, Lookup, NewAppointment,
    Patient, StoreError,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::client::EhrError;
use crate::AppState;
use crate::hl7::message::{CatalogName, resolve_catalog};

const SCOPES: [Scope; 4] = [
    Scope::PatientsRead,
    Scope::PatientsWrite,
    Scope::AppointmentsRead,
    Scope::AppointmentsWrite,
];

/// How a resource was applied.
enum Applied {
    Created,
    Updated,
    Unchanged,
}

/// Why a resource was not applied: skipped for good, or a failure of Salve's own (the run
/// stops and the next one tries again from before it).
enum NotApplied {
    Skip(Skip),
    Failed(StoreError),
}

impl From<Skip> for NotApplied {
    fn from(s: Skip) -> Self {
        Self::Skip(s)
    }
}

/// Store errors that say something about the resource (skip it) rather than about Salve.
fn store_error(e: StoreError) -> NotApplied {
    match e {
        StoreError::Conflict(_) | StoreError::IdempotencyMismatch => {
            NotApplied::Skip(Skip::Conflict)
        }
        StoreError::NotFound
        | StoreError::Hidden
        | StoreError::Shredded
        | StoreError::Forbidden
        | StoreError::BreakGlassRequired => NotApplied::Skip(Skip::Refused),
        other => NotApplied::Failed(other),
    }
}

fn idempotency(practice: PracticeId, resource_type: &str, remote_id: &str) -> Idempotency {
    let key: [u8; 32] =
        Sha256::digest(format!("ehr-pull:{practice}:{resource_type}:{remote_id}")).into();
    Idempotency {
        key_hash: key,
        request_hash: key,
    }
}

struct Pull<'a> {
    state: &'a AppState,
    practice: PracticeId,
    conn: &'a EhrConnection,
    principal: Principal,
    ctx: RequestContext,
}

impl Pull<'_> {
    async fn apply_patient(&self, p: &PulledPatient) -> Result<Applied, NotApplied> {
        let store = &self.state.store;
        let link = store
            .ehr_pull_link(self.practice, "Patient", &p.remote.id)
            .await
            .map_err(NotApplied::Failed)?;
        if let Some((_, version)) = &link
            && *version == p.remote.version
        {
            return Ok(Applied::Unchanged);
        }
        let existing = match &link {
            Some((local, _)) => {
                let id: PatientId = local.parse().map_err(|_| Skip::Refused)?;
                Some(
                    store
                        .read_patient(self.practice, &self.principal, &self.ctx, id)
                        .await
                        .map_err(store_error)?,
                )
            }
            None => self.by_mrn(p).await?,
        };
        let input_ctx = store
            .input_context(self.practice)
            .await
            .map_err(NotApplied::Failed)?;
        let contacts = contacts(p);
        let (patient, applied) = match existing {
            None => {
                let (Some(given), Some(family), Some(birth)) =
                    (&p.given_name, &p.family_name, &p.birth_date)
                else {
                    return Err(Skip::PatientIncomplete.into());
                };
                let input = PatientInput {
                    given_name: Sensitive::new(given.clone()),
                    family_name: Sensitive::new(family.clone()),
                    birth_date: Sensitive::new(birth.clone()),
                    mrn: p.mrn.clone().map(Sensitive::new),
                    preferred_language: language(p),
                    time_zone: None,
                    contacts,
                };
                let record = PatientRecord::from_input(&input, &input_ctx)
                    .map_err(|_| Skip::PatientInvalid)?;
                let (patient, _) = store
                    .create_patient(
                        self.practice,
                        &self.principal,
                        &self.ctx,
                        &record,
                        Some(idempotency(self.practice, "Patient", &p.remote.id)),
                    )
                    .await
                    .map_err(store_error)?;
                (patient, Applied::Created)
            }
            Some(current) => {
                let mut patch = PatientPatchInput {
                    given_name: p.given_name.clone().map(Sensitive::new),
                    family_name: p.family_name.clone().map(Sensitive::new),
                    birth_date: p.birth_date.clone().map(Sensitive::new),
                    preferred_language: language(p),
                    ..Default::default()
                };
                if !contacts.is_empty() {
                    // The patient's own contacts follow the EHR; guardians and caregivers
                    // entered in Salve are kept.
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
                    patch.contacts = Some(contacts.into_iter().chain(kept).collect());
                }
                let record = current
                    .record
                    .patched(&patch, &input_ctx)
                    .map_err(|_| Skip::PatientInvalid)?;
                if record == current.record {
                    (current, Applied::Unchanged)
                } else {
                    let patient = store
                        .update_patient(
                            self.practice,
                            &self.principal,
                            &self.ctx,
                            current.id,
                            &patch,
                            &input_ctx,
                        )
                        .await
                        .map_err(store_error)?
                        .map_err(|_| Skip::PatientInvalid)?;
                    (patient, Applied::Updated)
                }
            }
        };
        store
            .set_ehr_pull_link(
                self.practice,
                "Patient",
                &p.remote.id,
                &patient.id.to_string(),
                &p.remote.version,
            )
            .await
            .map_err(NotApplied::Failed)?;
        Ok(applied)
    }

    /// A patient not linked yet: the one with the same MRN, if any.
    async fn by_mrn(&self, p: &PulledPatient) -> Result<Option<Patient>, NotApplied> {
        let Some(mrn) = p.mrn.as_deref() else {
            return Ok(None);
        };
        let mrn = validation::mrn("mrn", mrn).map_err(|_| Skip::PatientInvalid)?;
        let found = self
            .state
            .store
            .lookup_patients(self.practice, &self.principal, &self.ctx, &Lookup::Mrn(mrn))
            .await
            .map_err(store_error)?;
        Ok(found.into_iter().next())
    }

    async fn catalog(
        &self,
        kind: CatalogKind,
        candidates: &[String],
        unknown: Skip,
    ) -> Result<Option<CatalogItemId>, NotApplied> {
        let items: Vec<CatalogName<CatalogItemId>> = self
            .state
            .store
            .catalog(self.practice)
            .await
            .map_err(NotApplied::Failed)?
            .into_iter()
            .filter(|i| i.kind == kind && i.active)
            .map(|i| CatalogName {
                id: i.id,
                name: i.name,
            })
            .collect();
        match resolve_catalog(candidates, &items) {
            Some(id) => Ok(Some(id)),
            None if candidates.is_empty() => Ok(None),
            None => Err(unknown.into()),
        }
    }

    async fn apply_appointment(&self, a: &PulledAppointment) -> Result<Applied, NotApplied> {
        let store = &self.state.store;
        let link = store
            .ehr_pull_link(self.practice, "Appointment", &a.remote.id)
            .await
            .map_err(NotApplied::Failed)?;
        if let Some((_, version)) = &link
            && *version == a.remote.version
        {
            return Ok(Applied::Unchanged);
        }
        let patient: PatientId = store
            .ehr_pull_link(self.practice, "Patient", &a.patient)
            .await
            .map_err(NotApplied::Failed)?
            .and_then(|(local, _)| local.parse().ok())
            .ok_or(Skip::AppointmentUnknownPatient)?;
        let kind = self
            .catalog(
                CatalogKind::AppointmentType,
                &a.appointment_type,
                Skip::UnknownAppointmentType,
            )
            .await?;
        let location = self
            .catalog(CatalogKind::Location, &a.location, Skip::UnknownLocation)
            .await?;
        let provider = self
            .catalog(CatalogKind::Provider, &a.provider, Skip::UnknownProvider)
            .await?;
        let now = self.state.clock.now();
        let in_range = |at: OffsetDateTime| {
            rules::starts_at("starts_at", at, now).map_err(|_| Skip::AppointmentOutOfRange)
        };
        let (appointment, applied) = match &link {
            None => {
                if a.status != PulledStatus::Active {
                    return Err(Skip::AppointmentNotBooked.into());
                }
                let starts_at = in_range(a.starts_at)?;
                let kind = kind.ok_or(Skip::UnknownAppointmentType)?;
                let location = location.ok_or(Skip::UnknownLocation)?;
                let provider = provider.ok_or(Skip::UnknownProvider)?;
                let zone = store
                    .practice(self.practice)
                    .await
                    .map_err(NotApplied::Failed)?
                    .time_zone;
                let new = NewAppointment {
                    patient,
                    external_id: None,
                    starts_at,
                    time_zone: zone,
                    duration_minutes: a.duration_minutes,
                    appointment_type: kind,
                    location,
                    provider,
                };
                let (appointment, _) = store
                    .create_appointment(
                        self.practice,
                        &self.principal,
                        &self.ctx,
                        &new,
                        Some(idempotency(self.practice, "Appointment", &a.remote.id)),
                    )
                    .await
                    .map_err(store_error)?
                    .map_err(|_| Skip::Refused)?;
                (appointment.id, Applied::Created)
            }
            Some((local, _)) => {
                let id: AppointmentId = local.parse().map_err(|_| Skip::Refused)?;
                let current = store
                    .appointment_for_system(self.practice, id)
                    .await
                    .map_err(store_error)?;
                if current.patient != patient {
                    return Err(Skip::AppointmentOtherPatient.into());
                }
                let status = match a.status {
                    PulledStatus::Active if !current.status.is_upcoming() => {
                        Some(AppointmentStatus::Booked)
                    }
                    PulledStatus::Active => None,
                    PulledStatus::Completed => Some(AppointmentStatus::Completed),
                    PulledStatus::Cancelled => Some(AppointmentStatus::Cancelled),
                    PulledStatus::NoShow => Some(AppointmentStatus::NoShow),
                }
                .filter(|s| *s != current.status);
                let starts_at = if a.starts_at == current.starts_at {
                    None
                } else {
                    Some(in_range(a.starts_at)?)
                };
                let patch = AppointmentPatch {
                    starts_at,
                    duration_minutes: (a.duration_minutes != current.duration_minutes)
                        .then_some(a.duration_minutes),
                    appointment_type: kind.filter(|k| *k != current.appointment_type),
                    location: location.filter(|l| *l != current.location),
                    provider: provider.filter(|p| *p != current.provider),
                    status,
                    ..Default::default()
                };
                if patch == AppointmentPatch::default() {
                    (current.id, Applied::Unchanged)
                } else {
                    store
                        .update_appointment(
                            self.practice,
                            &self.principal,
                            &self.ctx,
                            current.id,
                            &patch,
                            None,
                        )
                        .await
                        .map_err(store_error)?
                        .map_err(|_| Skip::Refused)?;
                    (current.id, Applied::Updated)
                }
            }
        };
        store
            .set_ehr_pull_link(
                self.practice,
                "Appointment",
                &a.remote.id,
                &appointment.to_string(),
                &a.remote.version,
            )
            .await
            .map_err(NotApplied::Failed)?;
        Ok(applied)
    }

    async fn apply(&self, resource_type: &str, v: &Value) -> Result<Applied, NotApplied> {
        if resource_type == "Patient" {
            let p = pull::map_patient(v, &self.conn.patient_identifier_system)?;
            self.apply_patient(&p).await
        } else {
            let a = pull::map_appointment(v)?;
            self.apply_appointment(&a).await
        }
    }

    /// Searches one resource type from `cursor` and applies what it finds; returns the new
    /// cursor, or stops at the first failure (the cursor then stays before it).
    async fn resource_type(
        &self,
        resource_type: &str,
        cursor: Option<OffsetDateTime>,
        page_size: usize,
        run: &mut EhrPullRun,
        reasons: &mut BTreeMap<Skip, i64>,
    ) -> Option<OffsetDateTime> {
        let base = &self.conn.base_url;
        let mut url = format!("{base}/{resource_type}?_count={page_size}&_sort=_lastUpdated");
        if let Some(after) = pull::search_after(cursor) {
            url.push_str(&format!("&_lastUpdated=gt{after}"));
        }
        let mut applied = Vec::new();
        let mut failed_at = None;
        'pages: for _ in 0..MAX_PAGES {
            let now = self.state.clock.now().unix_timestamp();
            let bundle = match self
                .state
                .ehr
                .search_page(self.conn, now, resource_type, &url)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    run.error = Some(match e {
                        EhrError::Retry { kind } => (
                            kind.clone(),
                            format!(
                                "the EHR did not answer the {resource_type} search ({kind}); the next run tries again"
                            ),
                        ),
                        EhrError::Refused { kind, reason } => (kind, reason),
                    });
                    break;
                }
            };
            for v in pull::entries(&bundle, resource_type) {
                let at = pull::last_updated(v);
                match self.apply(resource_type, v).await {
                    Ok(Applied::Created) => run.created += 1,
                    Ok(Applied::Updated) => run.updated += 1,
                    Ok(Applied::Unchanged) => run.unchanged += 1,
                    Err(NotApplied::Skip(skip)) => {
                        run.skipped += 1;
                        *reasons.entry(skip).or_default() += 1;
                        tracing::warn!(
                            practice = %self.practice,
                            resource_type,
                            reason = skip.reason(),
                            "ehr pull: resource skipped"
                        );
                    }
                    Err(NotApplied::Failed(e)) => {
                        tracing::error!(error = %e.detail(), resource_type, "ehr pull: store error");
                        run.error = Some((
                            "store".into(),
                            "Salve could not save a pulled record; the next run tries again".into(),
                        ));
                        // Without a timestamp, nothing of this run may count.
                        failed_at = Some(at.unwrap_or(OffsetDateTime::UNIX_EPOCH));
                        break 'pages;
                    }
                }
                applied.extend(at);
            }
            let Some(next) = pull::next_link(&bundle) else {
                break;
            };
            if !next.starts_with(&format!("{base}/")) {
                run.error = Some((
                    "next_link".into(),
                    "the EHR's next-page link points outside its FHIR base URL; Salve did not follow it"
                        .into(),
                ));
                break;
            }
            url = next;
        }
        pull::next_cursor(cursor, &applied, failed_at)
    }
}

fn contacts(p: &PulledPatient) -> Vec<ContactInput> {
    let phones = p.phones.iter().map(|v| (ContactKind::Phone, v));
    let emails = p.emails.iter().map(|v| (ContactKind::Email, v));
    phones
        .chain(emails)
        .map(|(kind, value)| ContactInput {
            kind,
            value: Sensitive::new(value.clone()),
            role: ContactRole::Patient,
        })
        .collect()
}

/// The first of the patient's language tags Salve knows how to name.
fn language(p: &PulledPatient) -> Option<String> {
    p.languages
        .iter()
        .find_map(|l| validation::language("preferred_language", l).ok())
}

/// Runs the practice's pull now, under its lease: `None` when another run holds it (or the
/// pull is off or not configured). The page size is [`PAGE_SIZE`] unless a test asks for smaller pages.
pub async fn pull_now(
    state: &AppState,
    practice: PracticeId,
    page_size: Option<usize>,
) -> anyhow::Result<Option<EhrPullRun>> {
    let owner = format!("pull-{}", uuid::Uuid::new_v4().simple());
    if !state
        .store
        .take_ehr_pull_lease(practice, &owner, LEASE_SECS)
        .await?
    {
        return Ok(None);
    }
    let result = run_leased(state, practice, &owner, page_size.unwrap_or(PAGE_SIZE)).await;
    match result {
        Ok(run) => {
            state.store.finish_ehr_pull(practice, &owner, &run).await?;
            Ok(Some(run))
        }
        Err(e) => {
            let run = EhrPullRun {
                error: Some((
                    "internal".into(),
                    "Salve could not run the pull; the next run tries again".into(),
                )),
                ..Default::default()
            };
            state.store.finish_ehr_pull(practice, &owner, &run).await?;
            Err(e)
        }
    }
}

async fn run_leased(
    state: &AppState,
    practice: PracticeId,
    owner: &str,
    page_size: usize,
) -> anyhow::Result<EhrPullRun> {
    let mut run = EhrPullRun::default();
    let Some(conn) = state.store.ehr_connection(practice).await? else {
        run.error = Some((
            "no_connection".into(),
            "the practice has no EHR connection".into(),
        ));
        return Ok(run);
    };
    let settings = state.store.ehr_pull(practice).await?;
    let (patient_cursor, appointment_cursor) = settings
        .map(|s| (s.patient_cursor, s.appointment_cursor))
        .unwrap_or_default();
    let pull = Pull {
        state,
        practice,
        conn: &conn,
        principal: Principal::System {
            practice,
            scopes: SCOPES.to_vec(),
        },
        ctx: RequestContext {
            ip: None,
            user_agent: Some("EHR pull (FHIR)".into()),
            request_id: Some(format!("ehr-pull:{owner}")),
            reason: None,
        },
    };
    let mut reasons = BTreeMap::new();
    run.patient_cursor = pull
        .resource_type("Patient", patient_cursor, page_size, &mut run, &mut reasons)
        .await;
    // Appointments name their patients: they wait until the patients are in.
    if run.error.is_none() {
        run.appointment_cursor = pull
            .resource_type(
                "Appointment",
                appointment_cursor,
                page_size,
                &mut run,
                &mut reasons,
            )
            .await;
    } else {
        run.appointment_cursor = appointment_cursor;
    }
    run.skip_reasons = reasons
        .into_iter()
        .map(|(skip, n)| (n, skip.reason().to_owned()))
        .collect();
    tracing::info!(
        %practice,
        created = run.created,
        updated = run.updated,
        unchanged = run.unchanged,
        skipped = run.skipped,
        failed = run.error.as_ref().map(|(k, _)| k.as_str()).unwrap_or(""),
        "ehr pull run"
    );
    Ok(run)
}

/// Runs every pull that is due on Salve's clock; returns how many ran.
pub async fn run_due(state: &AppState) -> anyhow::Result<usize> {
    let mut ran = 0;
    for practice in state.store.due_ehr_pulls().await? {
        if pull_now(state, practice, None).await?.is_some() {
            ran += 1;
        }
    }
    Ok(ran)
}

/// Checks for due pulls every `period` until `stop` turns true (started with the worker by
/// `salve serve`).
pub async fn run(state: AppState, period: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = run_due(&state).await {
            tracing::error!(error = %e, "ehr pull pass failed");
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

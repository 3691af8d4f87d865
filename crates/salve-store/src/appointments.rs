//! Appointments: the time, zone, duration and status in clear (reminders are scheduled in SQL);
//! the appointment type, location, provider and the EHR's id sealed under the patient's key,
//! the EHR id also as a blind index so an import finds the appointment again.
//!
//! Every write goes through two places: `insert_in` (a new appointment) and `save_change_in`
//! (any change to an existing one: reschedule, new type/location/provider, status, cancel).
//! Both bump nothing but their own row and add their audit event to the caller's transaction,
//! so whatever must follow a change (withdrawing or rescheduling pending reminders) belongs in
//! those two functions, in the same transaction.

use std::collections::{BTreeSet, HashMap};

use salve_core::appointments::{
    AppointmentStatus, ImportRow, ParsedImport, RowError, StatusSource, Transition,
    TransitionRefused, check_transition,
};
use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::clock::{from_micros, to_micros};
use salve_core::permissions::{Decision, Operation, Principal, authorize};
use salve_core::validation::FieldError;
use salve_core::{AppointmentId, CatalogItemId, PatientId, PracticeId, Sensitive};
use salve_crypto::{FieldAad, SymmetricKey};
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use crate::catalog::{CatalogItem, CatalogKind};
use crate::patients::{Idempotency, check_practice};
use crate::tx::WriteTx;
use crate::{Result, Store, StoreError};

/// The answer to a change made against a version that is no longer current (HTTP 412).
pub const APPOINTMENT_VERSION_CONFLICT: &str =
    "the appointment changed since the version given; read it again";
/// The most appointments one list returns.
pub const MAX_APPOINTMENTS: usize = 500;

const TABLE: &str = "appointments";
const EXTERNAL_INDEX: &str = "appointment_external_id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appointment {
    pub id: AppointmentId,
    pub practice: PracticeId,
    pub patient: PatientId,
    /// The EHR's own id of the appointment.
    pub external_id: Option<Sensitive<String>>,
    /// The instant it starts (UTC).
    pub starts_at: OffsetDateTime,
    /// The IANA zone the patient is told the time in.
    pub time_zone: String,
    pub duration_minutes: i64,
    pub appointment_type: CatalogItemId,
    pub location: CatalogItemId,
    pub provider: CatalogItemId,
    pub status: AppointmentStatus,
    pub status_source: StatusSource,
    /// 1 when created, bumped by every change.
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A new appointment, its fields already validated (salve_core::appointments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAppointment {
    pub patient: PatientId,
    pub external_id: Option<Sensitive<String>>,
    pub starts_at: OffsetDateTime,
    pub time_zone: String,
    pub duration_minutes: i64,
    pub appointment_type: CatalogItemId,
    pub location: CatalogItemId,
    pub provider: CatalogItemId,
}

/// A partial change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppointmentPatch {
    pub starts_at: Option<OffsetDateTime>,
    pub time_zone: Option<String>,
    pub duration_minutes: Option<i64>,
    pub appointment_type: Option<CatalogItemId>,
    pub location: Option<CatalogItemId>,
    pub provider: Option<CatalogItemId>,
    pub status: Option<AppointmentStatus>,
}

/// Which appointments a list returns: one patient's, or those starting in a window, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppointmentFilter {
    pub patient: Option<PatientId>,
    /// Starting at or after.
    pub from: Option<OffsetDateTime>,
    /// Starting before.
    pub to: Option<OffsetDateTime>,
}

/// What a CSV import did (or, for a dry run or a file with errors, would have done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Data rows in the file.
    pub rows: usize,
    /// Appointments created or changed (0 for a dry run or when there are errors).
    pub imported: usize,
    /// Rows already imported exactly so (nothing to change).
    pub unchanged: usize,
    pub errors: Vec<RowError>,
}

/// Who changed an appointment's status, from the principal making the request.
pub fn source_of(principal: &Principal) -> StatusSource {
    match principal {
        Principal::Token { .. } => StatusSource::Api,
        // The EHR's feed: the record system speaks, as in an import.
        Principal::System { .. } => StatusSource::Import,
        Principal::Staff { .. } | Principal::Operator => StatusSource::Staff,
    }
}

fn event(
    practice: PracticeId,
    actor: &Actor,
    ctx: &RequestContext,
    action: Action,
    targets: Vec<String>,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent::in_practice(practice, actor.clone(), ctx, action, targets, outcome)
}

fn malformed() -> StoreError {
    StoreError::KeyRing("malformed appointment row".into())
}

fn require(principal: &Principal, op: Operation) -> Result<()> {
    match authorize(principal, op, None) {
        Decision::Allow => Ok(()),
        _ => Err(StoreError::Forbidden),
    }
}

const COLUMNS: &str = "id, practice_id, patient_id, external_id, starts_at, time_zone, duration_minutes, \
     appointment_type_id, location_id, provider_id, status, status_source, version, created_at, updated_at";

/// The sealed columns of one appointment row.
struct Sealer<'k> {
    key: &'k SymmetricKey,
    row: String,
}

impl Sealer<'_> {
    fn seal(&self, column: &str, value: &str) -> Vec<u8> {
        self.key
            .seal_str(FieldAad::new(TABLE, column, &self.row), value)
    }

    fn open(&self, column: &str, bytes: &[u8]) -> Result<String> {
        Ok(self
            .key
            .open_string(FieldAad::new(TABLE, column, &self.row), bytes)?)
    }
}

impl Store {
    /// Books an appointment. A repeated `Idempotency-Key` with the same body returns the first
    /// answer (`true`); with another body, `IdempotencyMismatch`. Catalog ids that are not
    /// active items of the right kind in this practice are field errors.
    pub async fn create_appointment(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        new: &NewAppointment,
        idempotency: Option<Idempotency>,
    ) -> Result<std::result::Result<(Appointment, bool), Vec<FieldError>>> {
        check_practice(principal, practice)?;
        let actor = principal.actor();
        let actor_key = format!("{}:{}", actor.kind(), actor.id());
        let mut tx = self.begin().await?;
        if let Some(idem) = idempotency
            && let Some(resource) = idem.prior(&mut tx.tx, practice, &actor_key).await?
        {
            let id: AppointmentId = resource.parse().map_err(|_| malformed())?;
            let appointment = self.load_appointment_in(&mut tx.tx, practice, id).await?;
            self.guard_patient_op(
                &mut tx.tx,
                practice,
                principal,
                Operation::AppointmentRead,
                appointment.patient,
            )
            .await?;
            tx.audit(event(
                practice,
                &actor,
                ctx,
                Action::AppointmentRead,
                vec![appointment.patient.to_string(), id.to_string()],
                Outcome::Success,
            ));
            tx.commit().await?;
            return Ok(Ok((appointment, true)));
        }
        let appointment = match self
            .create_appointment_in(&mut tx, practice, principal, ctx, new)
            .await?
        {
            Ok(a) => a,
            Err(errors) => return Ok(Err(errors)),
        };
        if let Some(idem) = idempotency {
            idem.record(&mut tx, practice, &actor_key, &appointment.id.to_string());
        }
        tx.commit().await?;
        Ok(Ok((appointment, false)))
    }

    /// Books an appointment inside the caller's transaction: the patient's gate, the catalog,
    /// the insert and its audit event.
    pub(crate) async fn create_appointment_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        new: &NewAppointment,
    ) -> Result<std::result::Result<Appointment, Vec<FieldError>>> {
        self.guard_patient_op(
            &mut tx.tx,
            practice,
            principal,
            Operation::AppointmentWrite,
            new.patient,
        )
        .await?;
        let catalog = self.catalog_in(&mut tx.tx, practice).await?;
        let errors = catalog_errors(
            &catalog,
            Some(new.appointment_type),
            Some(new.location),
            Some(new.provider),
        );
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        self.insert_in(
            tx,
            practice,
            new,
            source_of(principal),
            Some(&principal.actor()),
            ctx,
        )
        .await
        .map(Ok)
    }

    /// Changes an appointment. `expected_version` (from `If-Match`) must be current, or
    /// `Conflict(APPOINTMENT_VERSION_CONFLICT)`. A patch that changes nothing writes nothing.
    pub async fn update_appointment(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: AppointmentId,
        patch: &AppointmentPatch,
        expected_version: Option<i64>,
    ) -> Result<std::result::Result<Appointment, Vec<FieldError>>> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let saved = match self
            .update_appointment_in(
                &mut tx,
                practice,
                principal,
                ctx,
                id,
                patch,
                expected_version,
            )
            .await?
        {
            Ok(a) => a,
            Err(errors) => return Ok(Err(errors)),
        };
        tx.commit().await?;
        Ok(Ok(saved))
    }

    /// Changes an appointment inside the caller's transaction (see `update_appointment`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_appointment_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: AppointmentId,
        patch: &AppointmentPatch,
        expected_version: Option<i64>,
    ) -> Result<std::result::Result<Appointment, Vec<FieldError>>> {
        let actor = principal.actor();
        let current = self
            .writable(tx, practice, principal, id, expected_version)
            .await?;
        let catalog = self.catalog_in(&mut tx.tx, practice).await?;
        let errors = catalog_errors(
            &catalog,
            patch.appointment_type,
            patch.location,
            patch.provider,
        );
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        let source = source_of(principal);
        let mut next = current.clone();
        next.starts_at = patch.starts_at.unwrap_or(current.starts_at);
        next.time_zone = patch
            .time_zone
            .clone()
            .unwrap_or_else(|| current.time_zone.clone());
        next.duration_minutes = patch.duration_minutes.unwrap_or(current.duration_minutes);
        next.appointment_type = patch.appointment_type.unwrap_or(current.appointment_type);
        next.location = patch.location.unwrap_or(current.location);
        next.provider = patch.provider.unwrap_or(current.provider);
        if let Some(status) = patch.status {
            check_transition(current.status, status, source).map_err(refused)?;
            if status != current.status {
                next.status = status;
                next.status_source = source;
            }
        }
        // A patch that cancels is audited as a cancellation.
        let action = if next.status == AppointmentStatus::Cancelled
            && current.status != AppointmentStatus::Cancelled
        {
            Action::AppointmentCancel
        } else {
            Action::AppointmentUpdate
        };
        let saved = self
            .save_change_in(tx, &current, next, Some((action, &actor)), ctx)
            .await?;
        Ok(Ok(saved))
    }

    /// Cancels an appointment (staff or the practice's systems). Cancelling a cancelled
    /// appointment changes nothing and answers as before.
    pub async fn cancel_appointment(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: AppointmentId,
        expected_version: Option<i64>,
    ) -> Result<Appointment> {
        check_practice(principal, practice)?;
        let actor = principal.actor();
        let mut tx = self.begin().await?;
        let current = self
            .writable(&mut tx, practice, principal, id, expected_version)
            .await?;
        let source = source_of(principal);
        check_transition(current.status, AppointmentStatus::Cancelled, source).map_err(refused)?;
        let mut next = current.clone();
        if current.status != AppointmentStatus::Cancelled {
            next.status = AppointmentStatus::Cancelled;
            next.status_source = source;
        }
        let saved = self
            .save_change_in(
                &mut tx,
                &current,
                next,
                Some((Action::AppointmentCancel, &actor)),
                ctx,
            )
            .await?;
        tx.commit().await?;
        Ok(saved)
    }

    /// One appointment, audited as a read of its patient.
    pub async fn read_appointment(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: AppointmentId,
    ) -> Result<Appointment> {
        check_practice(principal, practice)?;
        let actor = principal.actor();
        let mut tx = self.begin().await?;
        let patient = self.appointment_patient(&mut tx.tx, practice, id).await?;
        let guard = self
            .guard_patient_op(
                &mut tx.tx,
                practice,
                principal,
                Operation::AppointmentRead,
                patient,
            )
            .await;
        let targets = vec![patient.to_string(), id.to_string()];
        if let Err(e) = guard {
            drop(tx);
            if matches!(
                e,
                StoreError::Hidden | StoreError::BreakGlassRequired | StoreError::Forbidden
            ) {
                self.record_audit(event(
                    practice,
                    &actor,
                    ctx,
                    Action::AppointmentRead,
                    targets,
                    Outcome::Denied,
                ))
                .await?;
            }
            return Err(e);
        }
        let appointment = self.load_appointment_in(&mut tx.tx, practice, id).await?;
        tx.audit(event(
            practice,
            &actor,
            ctx,
            Action::AppointmentRead,
            targets,
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(appointment)
    }

    /// The appointment the EHR knows by `external_id` (the HL7 feed's SCH filler id), audited as
    /// a read of it when found. A hidden patient's appointment is `Hidden`, as for `read`.
    pub async fn appointment_by_external_id(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        external_id: &Sensitive<String>,
    ) -> Result<Option<Appointment>> {
        check_practice(principal, practice)?;
        let id: Option<String> = {
            let mut conn = self.pool.acquire().await?;
            let keys = self.ring.practice_keys(&mut conn, practice).await?;
            sqlx::query_scalar(
                "SELECT id FROM appointments WHERE practice_id = $1 AND external_id_index = $2",
            )
            .bind(practice.to_string())
            .bind(
                keys.blind_index
                    .blind_index(EXTERNAL_INDEX, external_id.expose())
                    .to_vec(),
            )
            .fetch_optional(&mut *conn)
            .await?
        };
        let Some(id) = id else { return Ok(None) };
        let id: AppointmentId = id.parse().map_err(|_| malformed())?;
        self.read_appointment(practice, principal, ctx, id)
            .await
            .map(Some)
    }

    /// Appointments of one patient and/or starting in a window, by start time (at most
    /// `MAX_APPOINTMENTS`). Without a patient, restricted patients the principal may not see
    /// are left out. One audit event lists the patients returned.
    pub async fn list_appointments(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        filter: &AppointmentFilter,
    ) -> Result<Vec<Appointment>> {
        check_practice(principal, practice)?;
        require(principal, Operation::AppointmentRead)?;
        let actor = principal.actor();
        let mut tx = self.begin().await?;
        if let Some(patient) = filter.patient {
            self.guard_patient_op(
                &mut tx.tx,
                practice,
                principal,
                Operation::AppointmentRead,
                patient,
            )
            .await?;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM appointments a WHERE practice_id = $1 \
             AND ($2 = '' OR patient_id = $2) AND starts_at >= $3 AND starts_at < $4 \
             AND EXISTS (SELECT 1 FROM patients p WHERE p.id = a.patient_id AND p.shredded_at IS NULL) \
             ORDER BY starts_at, id LIMIT $5"
        )))
        .bind(practice.to_string())
        .bind(filter.patient.map(|p| p.to_string()).unwrap_or_default())
        .bind(filter.from.map(to_micros).unwrap_or(i64::MIN))
        .bind(filter.to.map(to_micros).unwrap_or(i64::MAX))
        .bind(MAX_APPOINTMENTS as i64)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut visible: HashMap<PatientId, bool> = HashMap::new();
        for row in rows {
            let patient: PatientId = row
                .try_get::<String, _>(2)?
                .parse()
                .map_err(|_| malformed())?;
            let may = match visible.get(&patient) {
                Some(v) => *v,
                None => {
                    let v = self
                        .visible(&mut tx.tx, practice, principal, patient)
                        .await?;
                    visible.insert(patient, v);
                    v
                }
            };
            if may {
                out.push(self.appointment_from_row(&mut tx.tx, &row).await?);
            }
        }
        let patients: BTreeSet<String> = out.iter().map(|a| a.patient.to_string()).collect();
        tx.audit(event(
            practice,
            &actor,
            ctx,
            Action::AppointmentRead,
            patients.into_iter().collect(),
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(out)
    }

    /// Every appointment of every practice starting in `[from, to)`, any status, by start
    /// time: for the system's reminders worker. Shredded patients' appointments are skipped.
    /// Not audited (no person reads them here).
    pub async fn appointments_starting_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Appointment>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM appointments a WHERE starts_at >= $1 AND starts_at < $2 \
             AND EXISTS (SELECT 1 FROM patients p WHERE p.id = a.patient_id AND p.shredded_at IS NULL) \
             ORDER BY starts_at, id"
        )))
        .bind(to_micros(from))
        .bind(to_micros(to))
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            match self.appointment_from_row(&mut conn, &row).await {
                Ok(a) => out.push(a),
                // Shredded between the query and its key's look-up.
                Err(StoreError::Shredded) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One appointment, for the system (the reminders worker); not audited.
    pub async fn appointment_for_system(
        &self,
        practice: PracticeId,
        id: AppointmentId,
    ) -> Result<Appointment> {
        let mut conn = self.pool.acquire().await?;
        self.load_appointment_in(&mut conn, practice, id).await
    }

    /// A patient's reply moved their appointment (confirmed, asked to reschedule, cancelled),
    /// in its own transaction. Inside another transaction (the inbound SMS), use
    /// `set_appointment_status_in`.
    pub async fn set_appointment_status_by_patient_reply(
        &self,
        practice: PracticeId,
        id: AppointmentId,
        status: AppointmentStatus,
        ctx: &RequestContext,
    ) -> Result<(Appointment, Transition)> {
        let mut tx = self.begin().await?;
        let patient = self.appointment_patient(&mut tx.tx, practice, id).await?;
        let result = self
            .set_appointment_status_in(
                &mut tx,
                practice,
                id,
                status,
                StatusSource::PatientReply,
                &Actor::Patient(patient),
                ctx,
            )
            .await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Moves an appointment's status within the caller's transaction, if `source` may
    /// (`Conflict` otherwise); audited as `appointment.update` (or `.cancel`) by `actor`.
    /// Setting the status it already has writes nothing and answers `Unchanged`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn set_appointment_status_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        id: AppointmentId,
        status: AppointmentStatus,
        source: StatusSource,
        actor: &Actor,
        ctx: &RequestContext,
    ) -> Result<(Appointment, Transition)> {
        let current = self.load_appointment_in(&mut tx.tx, practice, id).await?;
        let transition = check_transition(current.status, status, source).map_err(refused)?;
        if transition == Transition::Unchanged {
            return Ok((current, transition));
        }
        let mut next = current.clone();
        next.status = status;
        next.status_source = source;
        let action = if status == AppointmentStatus::Cancelled {
            Action::AppointmentCancel
        } else {
            Action::AppointmentUpdate
        };
        let saved = self
            .save_change_in(tx, &current, next, Some((action, actor)), ctx)
            .await?;
        Ok((saved, transition))
    }

    /// Imports a parsed CSV file: every row is matched to a patient by MRN and to the catalog
    /// by name; a row whose `external_id` was imported before updates that appointment. Any
    /// error (or a dry run) imports nothing; the report lists every error. One audit event.
    pub async fn import_appointments(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        parsed: &ParsedImport,
        dry_run: bool,
    ) -> Result<ImportReport> {
        check_practice(principal, practice)?;
        require(principal, Operation::AppointmentImport)?;
        let actor = principal.actor();
        let mut tx = self.begin().await?;
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let catalog = self.catalog_in(&mut tx.tx, practice).await?;
        let mut errors = parsed.errors.clone();
        let mut plans: Vec<(
            &ImportRow,
            PatientId,
            [CatalogItemId; 3],
            Option<Appointment>,
        )> = Vec::new();
        for row in &parsed.rows {
            let mut row_errors = Vec::new();
            let patient = self
                .import_patient(&mut tx, practice, principal, &keys.blind_index, row)
                .await?;
            if patient.is_none() {
                row_errors.push(RowError::row(
                    row.row,
                    "patient_mrn",
                    "no patient of this practice has this MRN",
                ));
            }
            let mut ids = [None; 3];
            for (k, (kind, column, name)) in [
                (
                    CatalogKind::AppointmentType,
                    "appointment_type",
                    &row.appointment_type,
                ),
                (CatalogKind::Location, "location", &row.location),
                (CatalogKind::Provider, "provider", &row.provider),
            ]
            .into_iter()
            .enumerate()
            {
                match find_by_name(&catalog, kind, name) {
                    Ok(id) => ids[k] = Some(id),
                    Err(message) => row_errors.push(RowError::cell(row.row, column, message, name)),
                }
            }
            let existing_id: Option<String> = sqlx::query_scalar(
                "SELECT id FROM appointments WHERE practice_id = $1 AND external_id_index = $2",
            )
            .bind(practice.to_string())
            .bind(
                keys.blind_index
                    .blind_index(EXTERNAL_INDEX, row.external_id.expose())
                    .to_vec(),
            )
            .fetch_optional(&mut *tx.tx)
            .await?;
            let existing = match existing_id {
                Some(id) => {
                    let id: AppointmentId = id.parse().map_err(|_| malformed())?;
                    match self.load_appointment_in(&mut tx.tx, practice, id).await {
                        Ok(a) => Some(a),
                        Err(StoreError::Shredded) => {
                            row_errors.push(RowError::row(
                                row.row,
                                "external_id",
                                "this external_id belongs to a destroyed record",
                            ));
                            None
                        }
                        Err(e) => return Err(e),
                    }
                }
                None => None,
            };
            if let (Some(a), Some(p)) = (&existing, patient)
                && a.patient != p
            {
                row_errors.push(RowError::row(
                    row.row,
                    "external_id",
                    "this external_id was imported for another patient",
                ));
            }
            match (patient, ids) {
                (Some(p), [Some(t), Some(l), Some(v)]) if row_errors.is_empty() => {
                    plans.push((row, p, [t, l, v], existing))
                }
                _ => errors.extend(row_errors),
            }
        }
        errors.sort_by_key(|e| e.row);
        let mut report = ImportReport {
            dry_run,
            rows: parsed.total_rows,
            imported: 0,
            unchanged: 0,
            errors,
        };
        let patients: BTreeSet<String> = plans.iter().map(|p| p.1.to_string()).collect();
        if dry_run || !report.errors.is_empty() {
            // Nothing written: only the audit event.
            drop(tx);
            let outcome = if report.errors.is_empty() {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            self.record_audit(event(
                practice,
                &actor,
                ctx,
                Action::AppointmentImport,
                patients.into_iter().collect(),
                outcome,
            ))
            .await?;
            return Ok(report);
        }
        let mut targets: Vec<String> = patients.into_iter().collect();
        for (row, patient, [appointment_type, location, provider], existing) in plans {
            match existing {
                Some(current) => {
                    let mut next = current.clone();
                    next.starts_at = row.starts_at;
                    next.time_zone = row.time_zone.clone();
                    next.duration_minutes = row.duration_minutes;
                    next.appointment_type = appointment_type;
                    next.location = location;
                    next.provider = provider;
                    if next == current {
                        report.unchanged += 1;
                        continue;
                    }
                    let saved = self
                        .save_change_in(&mut tx, &current, next, None, ctx)
                        .await?;
                    targets.push(saved.id.to_string());
                }
                None => {
                    let new = NewAppointment {
                        patient,
                        external_id: Some(row.external_id.clone()),
                        starts_at: row.starts_at,
                        time_zone: row.time_zone.clone(),
                        duration_minutes: row.duration_minutes,
                        appointment_type,
                        location,
                        provider,
                    };
                    let saved = self
                        .insert_in(&mut tx, practice, &new, StatusSource::Import, None, ctx)
                        .await?;
                    targets.push(saved.id.to_string());
                }
            }
            report.imported += 1;
        }
        // One event for the whole import, naming every patient and appointment it wrote.
        tx.audit(event(
            practice,
            &actor,
            ctx,
            Action::AppointmentImport,
            targets,
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(report)
    }

    // ---- the two write paths -----------------------------------------------------------------

    /// Inserts a new appointment (status booked) with its audit event by `actor` (`None`: the
    /// caller audits, as an import does once for all its rows). Whatever a new appointment
    /// sets off (scheduling its reminders) belongs here.
    async fn insert_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        new: &NewAppointment,
        source: StatusSource,
        actor: Option<&Actor>,
        ctx: &RequestContext,
    ) -> Result<Appointment> {
        let now = tx.now_micros();
        let id = AppointmentId::new();
        let key = self
            .ring
            .patient_key(&mut tx.tx, practice, new.patient)
            .await?;
        let (external, external_index) = match &new.external_id {
            Some(ext) => {
                let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
                let index = keys
                    .blind_index
                    .blind_index(EXTERNAL_INDEX, ext.expose())
                    .to_vec();
                let taken: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM appointments WHERE practice_id = $1 AND external_id_index = $2",
                )
                .bind(practice.to_string())
                .bind(&index)
                .fetch_optional(&mut *tx.tx)
                .await?;
                if taken.is_some() {
                    return Err(StoreError::Conflict(
                        "another appointment of this practice has this external_id",
                    ));
                }
                (Some(ext.expose().clone()), Some(index))
            }
            None => (None, None),
        };
        let sealer = Sealer {
            key: &key,
            row: id.to_string(),
        };
        let appointment = Appointment {
            id,
            practice,
            patient: new.patient,
            external_id: new.external_id.clone(),
            starts_at: new.starts_at,
            time_zone: new.time_zone.clone(),
            duration_minutes: new.duration_minutes,
            appointment_type: new.appointment_type,
            location: new.location,
            provider: new.provider,
            status: AppointmentStatus::Booked,
            status_source: source,
            version: 1,
            created_at: from_micros(now),
            updated_at: from_micros(now),
        };
        sqlx::query(
            "INSERT INTO appointments (id, practice_id, patient_id, external_id, external_id_index, \
             starts_at, time_zone, duration_minutes, appointment_type_id, location_id, provider_id, \
             status, status_source, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $14)",
        )
        .bind(&sealer.row)
        .bind(practice.to_string())
        .bind(new.patient.to_string())
        .bind(external.map(|e| sealer.seal("external_id", &e)))
        .bind(external_index)
        .bind(to_micros(new.starts_at))
        .bind(&new.time_zone)
        .bind(new.duration_minutes)
        .bind(sealer.seal("appointment_type_id", &new.appointment_type.to_string()))
        .bind(sealer.seal("location_id", &new.location.to_string()))
        .bind(sealer.seal("provider_id", &new.provider.to_string()))
        .bind(appointment.status.as_str())
        .bind(source.as_str())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        if let Some(actor) = actor {
            tx.audit(event(
                practice,
                actor,
                ctx,
                Action::AppointmentCreate,
                vec![new.patient.to_string(), id.to_string()],
                Outcome::Success,
            ));
        }
        Ok(appointment)
    }

    /// Writes a change to an existing appointment: bumps its version and `updated_at` (unless
    /// nothing changed) and adds the audit event (`None`: the caller audits). Every change (reschedule, new type, location
    /// or provider, status, cancellation, a re-import) passes here, inside the transaction
    /// that made it: withdrawing or rescheduling the appointment's pending reminders belongs
    /// here too.
    async fn save_change_in(
        &self,
        tx: &mut WriteTx<'_>,
        current: &Appointment,
        mut next: Appointment,
        audit: Option<(Action, &Actor)>,
        ctx: &RequestContext,
    ) -> Result<Appointment> {
        let practice = current.practice;
        let targets = vec![current.patient.to_string(), current.id.to_string()];
        let record = |tx: &mut WriteTx<'_>| {
            if let Some((action, actor)) = audit {
                tx.audit(event(
                    practice,
                    actor,
                    ctx,
                    action,
                    targets.clone(),
                    Outcome::Success,
                ));
            }
        };
        if next == *current {
            record(tx);
            return Ok(next);
        }
        let now = tx.now_micros();
        let key = self
            .ring
            .patient_key(&mut tx.tx, practice, current.patient)
            .await?;
        let sealer = Sealer {
            key: &key,
            row: current.id.to_string(),
        };
        next.version = current.version + 1;
        next.updated_at = from_micros(now);
        let changed = sqlx::query(
            "UPDATE appointments SET starts_at = $1, time_zone = $2, duration_minutes = $3, \
             appointment_type_id = $4, location_id = $5, provider_id = $6, status = $7, \
             status_source = $8, version = $9, updated_at = $10 \
             WHERE id = $11 AND practice_id = $12 AND version = $13",
        )
        .bind(to_micros(next.starts_at))
        .bind(&next.time_zone)
        .bind(next.duration_minutes)
        .bind(sealer.seal("appointment_type_id", &next.appointment_type.to_string()))
        .bind(sealer.seal("location_id", &next.location.to_string()))
        .bind(sealer.seal("provider_id", &next.provider.to_string()))
        .bind(next.status.as_str())
        .bind(next.status_source.as_str())
        .bind(next.version)
        .bind(now)
        .bind(&sealer.row)
        .bind(practice.to_string())
        .bind(current.version)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(StoreError::Conflict(APPOINTMENT_VERSION_CONFLICT));
        }
        // A new time, or a visit no longer booked: reminders still queued for it are withdrawn
        // (the worker decides reminders for a new time afresh).
        let moved = next.starts_at != current.starts_at || next.time_zone != current.time_zone;
        let reminded = |s: AppointmentStatus| {
            matches!(s, AppointmentStatus::Booked | AppointmentStatus::Confirmed)
        };
        if moved || (reminded(current.status) && !reminded(next.status)) {
            let reason = if next.status == AppointmentStatus::Cancelled {
                "withdrawn: the visit was cancelled"
            } else if moved {
                "withdrawn: the visit moved to another time"
            } else {
                "withdrawn: the visit is waiting for a new time"
            };
            self.withdraw_reminders_in(tx, practice, current.id, reason)
                .await?;
        }
        record(tx);
        Ok(next)
    }

    // ---- helpers -----------------------------------------------------------------------------

    /// Loads an appointment for a change: its patient's gate, and the version the caller saw.
    async fn writable(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        principal: &Principal,
        id: AppointmentId,
        expected_version: Option<i64>,
    ) -> Result<Appointment> {
        let patient = self.appointment_patient(&mut tx.tx, practice, id).await?;
        self.guard_patient_op(
            &mut tx.tx,
            practice,
            principal,
            Operation::AppointmentWrite,
            patient,
        )
        .await?;
        let current = self.load_appointment_in(&mut tx.tx, practice, id).await?;
        if let Some(v) = expected_version
            && v != current.version
        {
            return Err(StoreError::Conflict(APPOINTMENT_VERSION_CONFLICT));
        }
        Ok(current)
    }

    async fn appointment_patient(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        id: AppointmentId,
    ) -> Result<PatientId> {
        let patient: Option<String> = sqlx::query_scalar(
            "SELECT patient_id FROM appointments WHERE id = $1 AND practice_id = $2",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        patient
            .ok_or(StoreError::NotFound)?
            .parse()
            .map_err(|_| malformed())
    }

    /// One appointment of this practice, decrypted (`Shredded` once its patient's key is gone).
    pub(crate) async fn load_appointment_in(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        id: AppointmentId,
    ) -> Result<Appointment> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM appointments WHERE id = $1 AND practice_id = $2"
        )))
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
        self.appointment_from_row(conn, &row).await
    }

    async fn appointment_from_row(
        &self,
        conn: &mut AnyConnection,
        row: &sqlx::any::AnyRow,
    ) -> Result<Appointment> {
        let parse_err = |_| malformed();
        let id: AppointmentId = row.try_get::<String, _>(0)?.parse().map_err(parse_err)?;
        let practice: PracticeId = row.try_get::<String, _>(1)?.parse().map_err(parse_err)?;
        let patient: PatientId = row.try_get::<String, _>(2)?.parse().map_err(parse_err)?;
        let key = self.ring.patient_key(conn, practice, patient).await?;
        let sealer = Sealer {
            key: &key,
            row: id.to_string(),
        };
        let catalog_id = |column: &str, index: usize| -> Result<CatalogItemId> {
            sealer
                .open(column, &row.try_get::<Vec<u8>, _>(index)?)?
                .parse()
                .map_err(|_| malformed())
        };
        let external: Option<Vec<u8>> = row.try_get(3)?;
        Ok(Appointment {
            id,
            practice,
            patient,
            external_id: match external {
                Some(bytes) => Some(Sensitive::new(sealer.open("external_id", &bytes)?)),
                None => None,
            },
            starts_at: from_micros(row.try_get(4)?),
            time_zone: row.try_get(5)?,
            duration_minutes: row.try_get(6)?,
            appointment_type: catalog_id("appointment_type_id", 7)?,
            location: catalog_id("location_id", 8)?,
            provider: catalog_id("provider_id", 9)?,
            status: AppointmentStatus::parse(&row.try_get::<String, _>(10)?)
                .ok_or_else(malformed)?,
            status_source: StatusSource::parse(&row.try_get::<String, _>(11)?)
                .ok_or_else(malformed)?,
            version: row.try_get(12)?,
            created_at: from_micros(row.try_get(13)?),
            updated_at: from_micros(row.try_get(14)?),
        })
    }

    /// The patient an import row names by MRN, if the importer may book for them (a restricted
    /// patient hidden from them reads as unknown).
    async fn import_patient(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        principal: &Principal,
        blind: &SymmetricKey,
        row: &ImportRow,
    ) -> Result<Option<PatientId>> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM patients WHERE practice_id = $1 AND mrn_index = $2 AND shredded_at IS NULL",
        )
        .bind(practice.to_string())
        .bind(blind.blind_index("mrn", row.patient_mrn.expose()).to_vec())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(id) = found else { return Ok(None) };
        let id: PatientId = id.parse().map_err(|_| malformed())?;
        match self
            .guard_patient_op(
                &mut tx.tx,
                practice,
                principal,
                Operation::AppointmentWrite,
                id,
            )
            .await
        {
            Ok(()) => Ok(Some(id)),
            Err(StoreError::Hidden | StoreError::BreakGlassRequired | StoreError::NotFound) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

fn refused(_: TransitionRefused) -> StoreError {
    StoreError::Conflict("the appointment's status cannot change this way")
}

/// Field errors for catalog ids that are not active items of the right kind.
fn catalog_errors(
    catalog: &[CatalogItem],
    appointment_type: Option<CatalogItemId>,
    location: Option<CatalogItemId>,
    provider: Option<CatalogItemId>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (id, kind, field, expected) in [
        (
            appointment_type,
            CatalogKind::AppointmentType,
            "appointment_type_id",
            "the id of an active appointment type of this practice",
        ),
        (
            location,
            CatalogKind::Location,
            "location_id",
            "the id of an active location of this practice",
        ),
        (
            provider,
            CatalogKind::Provider,
            "provider_id",
            "the id of an active provider of this practice",
        ),
    ] {
        if let Some(id) = id
            && !catalog
                .iter()
                .any(|item| item.id == id && item.kind == kind && item.active)
        {
            errors.push(FieldError::new(field, expected));
        }
    }
    errors
}

/// An active catalog item of `kind` by name: exactly, or else ignoring case if that names one.
fn find_by_name(
    catalog: &[CatalogItem],
    kind: CatalogKind,
    name: &str,
) -> std::result::Result<CatalogItemId, String> {
    let active = || catalog.iter().filter(|i| i.kind == kind && i.active);
    if let Some(item) = active().find(|i| i.name == name) {
        return Ok(item.id);
    }
    let folded: Vec<_> = active()
        .filter(|i| i.name.to_lowercase() == name.to_lowercase())
        .collect();
    match folded.as_slice() {
        [one] => Ok(one.id),
        [] => Err(format!(
            "no active {} of this practice has this name",
            kind.as_str().replace('_', " ")
        )),
        _ => Err(format!(
            "several {}s of this practice have this name in different case; write it exactly",
            kind.as_str().replace('_', " ")
        )),
    }
}

//! The FHIR write interactions: create and update of `Patient` and `Appointment` (versioned,
//! with `If-Match`; conditional create of a Patient by MRN), the patient's answer as an
//! `AppointmentResponse`, and transaction `Bundle`s. Handlers parse ([`super::write`]), ask
//! `authorize` per entry, call the store's one-transaction write and render. Errors are
//! `OperationOutcome`s naming the FHIR path (and the entry, in a transaction), never a value.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_core::appointments::Transition;
use salve_core::audit::{Action, AuditEvent, Outcome};
use salve_core::permissions::{Decision, DenyReason, Operation, Principal, authorize};
use salve_core::validation::FieldError;
use salve_core::{AppointmentId, CatalogItemId, PracticeId};
use salve_store::{
    APPOINTMENT_VERSION_CONFLICT, AppointmentFilter, EntryFailure, FhirWrite, FhirWritten,
    MAX_TRANSACTION_ENTRIES, PATIENT_VERSION_CONFLICT, StoreError, WriteFailure,
};
use serde_json::{Value, json};

use super::write::{self, Context, EntryKind, Refusal};
use super::{Fhir, Query2, base, map, params};
use crate::AppState;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::ApiError;

/// The largest body of one resource, and of a transaction.
pub const RESOURCE_BODY_LIMIT: usize = 256 * 1024;
pub const TRANSACTION_BODY_LIMIT: usize = 8 * 1024 * 1024;

fn outcome(status: StatusCode, issues: Vec<Value>) -> Response {
    (
        status,
        Fhir(json!({ "resourceType": "OperationOutcome", "issue": issues })),
    )
        .into_response()
}

fn issue(code: &str, diagnostics: String, expression: Option<String>) -> Value {
    let mut i = json!({ "severity": "error", "code": code, "diagnostics": diagnostics });
    if let Some(e) = expression {
        i["expression"] = json!([e]);
    }
    i
}

/// `entry`: the index of the transaction entry at fault.
fn refused(r: Refusal, entry: Option<usize>) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    let code = match r.status {
        404 => "not-found",
        413 => "too-long",
        _ => "invalid",
    };
    let prefix = entry
        .map(|i| format!("Bundle.entry[{i}]."))
        .unwrap_or_default();
    let issues = r
        .issues
        .into_iter()
        .map(|f| {
            let at = entry.map(|i| format!("entry {i}: ")).unwrap_or_default();
            let path = if f.field.starts_with("request") || f.field.starts_with("fullUrl") {
                format!("{prefix}{}", f.field)
            } else if entry.is_some() && f.field != "Bundle.type" && f.field != "Bundle.entry" {
                format!("{prefix}resource.{}", f.field)
            } else {
                f.field.clone()
            };
            issue(
                code,
                format!("{at}`{}`: expected {}", f.field, f.expected),
                Some(path),
            )
        })
        .collect();
    outcome(status, issues)
}

/// A store refusal of one write (`entry`: its transaction index). `None`: not the client's
/// doing (a 5xx), rendered as an `ApiError` by the caller.
fn store_refusal(kind: &str, e: StoreError, entry: Option<usize>) -> Result<Response, ApiError> {
    let at = entry.map(|i| format!("entry {i}: ")).unwrap_or_default();
    let expression = entry.map(|i| format!("Bundle.entry[{i}]"));
    let (status, code, what) = match e {
        StoreError::NotFound | StoreError::Hidden if kind == "Appointment" => (
            StatusCode::NOT_FOUND,
            "not-found",
            "the appointment, or the patient it names, is not in your practice".to_owned(),
        ),
        StoreError::NotFound | StoreError::Hidden => (
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {kind} with this id in your practice"),
        ),
        StoreError::Conflict(m)
            if m == PATIENT_VERSION_CONFLICT || m == APPOINTMENT_VERSION_CONFLICT =>
        {
            (StatusCode::PRECONDITION_FAILED, "conflict", m.to_owned())
        }
        StoreError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.to_owned()),
        StoreError::Forbidden | StoreError::BreakGlassRequired => {
            (StatusCode::FORBIDDEN, "forbidden", "not allowed".to_owned())
        }
        StoreError::Shredded => (
            StatusCode::GONE,
            "deleted",
            "this record's content was destroyed at the end of its retention".to_owned(),
        ),
        StoreError::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
        other => return Err(ApiError::from(other)),
    };
    Ok(outcome(
        status,
        vec![issue(code, format!("{at}{what}"), expression)],
    ))
}

fn failure(kind: &str, f: EntryFailure, transaction: bool) -> Result<Response, ApiError> {
    let entry = transaction.then_some(f.index);
    match f.failure {
        WriteFailure::Store(e) => store_refusal(kind, e, entry),
        WriteFailure::Fields(errors) => {
            let path = if kind == "Patient" {
                write::patient_path
            } else {
                appointment_path
            };
            Ok(refused(
                Refusal {
                    status: 422,
                    issues: errors
                        .into_iter()
                        .map(|e| FieldError::new(path(&e.field), e.expected))
                        .collect(),
                },
                entry,
            ))
        }
        WriteFailure::Reference => Ok(refused(
            Refusal::invalid(
                "Appointment.participant.actor",
                "a Patient created or found by an earlier entry",
            ),
            entry,
        )),
        WriteFailure::PatientMismatch => Ok(refused(
            Refusal {
                status: 422,
                issues: vec![FieldError::new(
                    "Appointment.participant.actor",
                    "the appointment's own patient (an appointment never changes patient)",
                )],
            },
            entry,
        )),
    }
}

fn appointment_path(field: &str) -> &'static str {
    match field {
        "appointment_type_id" => "Appointment.appointmentType",
        "location_id" => "Appointment.participant (Location)",
        "provider_id" => "Appointment.participant (Practitioner)",
        _ => "Appointment",
    }
}

/// The body as JSON; too large or not JSON is an OperationOutcome.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, Response> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let why = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the body is too large"
        } else {
            "the body could not be read"
        };
        outcome(
            status,
            vec![issue(
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "too-long"
                } else {
                    "invalid"
                },
                why.to_owned(),
                None,
            )],
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        outcome(
            StatusCode::BAD_REQUEST,
            vec![issue(
                "structure",
                "the body is not a JSON resource".to_owned(),
                None,
            )],
        )
    })
}

/// What parsing needs, read once per request.
struct Practice {
    id: PracticeId,
    input: salve_core::patient::InputContext,
    time_zone: String,
    catalog: Vec<salve_store::CatalogItem>,
}

impl Practice {
    async fn load(state: &AppState, principal: &Principal) -> Result<Self, ApiError> {
        let id = practice_of(principal)?;
        let p = state.store.practice(id).await?;
        Ok(Self {
            id,
            input: state.store.input_context(id).await?,
            time_zone: p.time_zone,
            catalog: state.store.catalog(id).await?,
        })
    }

    fn ctx(&self, state: &AppState) -> Context<'_> {
        Context {
            practice: self.id,
            input: &self.input,
            now: state.clock.now(),
            time_zone: &self.time_zone,
            catalog: &self.catalog,
        }
    }

    fn names(&self) -> HashMap<CatalogItemId, String> {
        self.catalog
            .iter()
            .map(|i| (i.id, i.name.clone()))
            .collect()
    }
}

/// The operations a write needs (a conditional create also reads).
fn operations(w: &FhirWrite) -> &'static [Operation] {
    match w {
        FhirWrite::CreatePatient {
            if_none_exist: Some(_),
            ..
        } => &[Operation::PatientCreate, Operation::PatientLookup],
        FhirWrite::CreatePatient { .. } => &[Operation::PatientCreate],
        FhirWrite::UpdatePatient { .. } => &[Operation::PatientUpdate],
        FhirWrite::CreateAppointment { .. } | FhirWrite::UpdateAppointment { .. } => {
            &[Operation::AppointmentWrite]
        }
    }
}

fn action(w: &FhirWrite) -> Action {
    match w {
        FhirWrite::CreatePatient { .. } => Action::PatientCreate,
        FhirWrite::UpdatePatient { .. } => Action::PatientUpdate,
        FhirWrite::CreateAppointment { .. } => Action::AppointmentCreate,
        FhirWrite::UpdateAppointment { .. } => Action::AppointmentUpdate,
    }
}

/// The same `authorize` as every route, per write: a token without the scope is refused
/// before anything is read (403, audited).
async fn authorize_writes(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    writes: &[FhirWrite],
    transaction: bool,
) -> Result<Option<Response>, ApiError> {
    for (i, w) in writes.iter().enumerate() {
        for op in operations(w) {
            let why = match authorize(principal, *op, None) {
                Decision::Allow => continue,
                Decision::Deny(DenyReason::MissingScope(s)) => {
                    format!("this token lacks the `{s}` scope")
                }
                Decision::Deny(DenyReason::RoleNotAllowed(r)) => {
                    format!("the {r} role cannot do this")
                }
                _ => "not allowed".to_owned(),
            };
            state
                .store
                .record_audit(AuditEvent::in_practice(
                    practice_of(principal)?,
                    principal.actor(),
                    &client.audit_context(),
                    action(w),
                    Vec::new(),
                    Outcome::Denied,
                ))
                .await?;
            let at = if transaction {
                format!("entry {i}: ")
            } else {
                String::new()
            };
            return Ok(Some(outcome(
                StatusCode::FORBIDDEN,
                vec![issue(
                    "forbidden",
                    format!("{at}{why}"),
                    transaction.then(|| format!("Bundle.entry[{i}]")),
                )],
            )));
        }
    }
    Ok(None)
}

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// A written resource: its kind, id, version, and FHIR form.
fn rendered(
    w: &FhirWritten,
    names: &HashMap<CatalogItemId, String>,
) -> (&'static str, String, i64, Value, bool) {
    match w {
        FhirWritten::Patient { patient, created } => (
            "Patient",
            patient.id.to_string(),
            patient.version,
            map::patient(patient),
            *created,
        ),
        FhirWritten::Appointment {
            appointment,
            created,
        } => (
            "Appointment",
            appointment.id.to_string(),
            appointment.version,
            map::appointment(appointment, names),
            *created,
        ),
    }
}

fn respond_written(
    base: &str,
    w: &FhirWritten,
    names: &HashMap<CatalogItemId, String>,
) -> Response {
    let (kind, id, version, resource, created) = rendered(w, names);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut r = (status, Fhir(resource)).into_response();
    let headers = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/{kind}/{id}/_history/{version}")) {
        headers.insert(header::CONTENT_LOCATION, v.clone());
        if created {
            headers.insert(header::LOCATION, v);
        }
    }
    r
}

/// One write through the same path as a transaction of one entry.
async fn write_one(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    headers: &HeaderMap,
    practice: &Practice,
    kind: &str,
    w: FhirWrite,
) -> Result<Response, ApiError> {
    let writes = vec![w];
    if let Some(refusal) = authorize_writes(state, principal, client, &writes, false).await? {
        return Ok(refusal);
    }
    match state
        .store
        .fhir_write(
            practice.id,
            principal,
            &client.audit_context(),
            &practice.input,
            &writes,
        )
        .await?
    {
        Ok(done) => Ok(respond_written(
            &base(state, headers),
            &done[0],
            &practice.names(),
        )),
        Err(f) => failure(kind, f, false),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Response> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => {
            write::parse_if_match(Some(v.to_str().unwrap_or(""))).map_err(|r| refused(r, None))
        }
    }
}

/// `If-None-Exist`, or (as some clients, fhirpy among them, send it) the same condition as
/// the POST's query string.
pub async fn patient_create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let resource = match json_body(body) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let practice = Practice::load(&state, &principal).await?;
    let ctx = practice.ctx(&state);
    let record = match write::patient_record(&resource, &ctx) {
        Ok(r) => r,
        Err(r) => return Ok(refused(r, None)),
    };
    let header_condition = header_text(&headers, header::HeaderName::from_static("if-none-exist"));
    let query = query.filter(|q| !q.is_empty());
    if header_condition.is_some() && query.is_some() {
        return Ok(refused(
            Refusal::invalid(
                "If-None-Exist",
                "one condition: the header or the query, not both",
            ),
            None,
        ));
    }
    let condition = match header_condition
        .or(query.as_deref())
        .map(write::if_none_exist)
        .transpose()
    {
        Ok(c) => c,
        Err(r) => return Ok(refused(r, None)),
    };
    let w = FhirWrite::CreatePatient {
        record,
        if_none_exist: condition,
    };
    write_one(
        &state, &principal, &client, &headers, &practice, "Patient", w,
    )
    .await
}

pub async fn patient_update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let resource = match json_body(body) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let Ok(pid) = id.parse::<salve_core::PatientId>() else {
        return store_refusal("Patient", StoreError::NotFound, None);
    };
    let expected = match if_match(&headers) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let practice = Practice::load(&state, &principal).await?;
    let patch = match write::patient_patch(&resource, &id, &practice.ctx(&state)) {
        Ok(p) => p,
        Err(r) => return Ok(refused(r, None)),
    };
    let w = FhirWrite::UpdatePatient {
        id: pid,
        patch,
        expected_version: expected,
    };
    write_one(
        &state, &principal, &client, &headers, &practice, "Patient", w,
    )
    .await
}

fn patient_ref(r: write::Reference) -> Result<salve_store::PatientRef, Response> {
    match r {
        write::Reference::Patient(p) => Ok(salve_store::PatientRef::Id(p)),
        write::Reference::Urn(_) => Err(refused(
            Refusal::invalid(
                "Appointment.participant.actor",
                "Patient/{id}: urn:uuid: references only resolve inside a transaction",
            ),
            None,
        )),
    }
}

pub async fn appointment_create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let resource = match json_body(body) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    if headers.contains_key("if-none-exist") {
        return Ok(refused(
            Refusal::invalid(
                "If-None-Exist",
                "absent: conditional create is offered for Patient only",
            ),
            None,
        ));
    }
    let practice = Practice::load(&state, &principal).await?;
    let (r, new) = match write::appointment_new(&resource, &practice.ctx(&state)) {
        Ok(x) => x,
        Err(r) => return Ok(refused(r, None)),
    };
    let patient = match patient_ref(r) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    let w = FhirWrite::CreateAppointment { patient, new };
    write_one(
        &state,
        &principal,
        &client,
        &headers,
        &practice,
        "Appointment",
        w,
    )
    .await
}

pub async fn appointment_update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let resource = match json_body(body) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let Ok(aid) = id.parse::<AppointmentId>() else {
        return store_refusal("Appointment", StoreError::NotFound, None);
    };
    let expected = match if_match(&headers) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let practice = Practice::load(&state, &principal).await?;
    let (r, patch) = match write::appointment_patch(&resource, &id, &practice.ctx(&state)) {
        Ok(x) => x,
        Err(r) => return Ok(refused(r, None)),
    };
    let patient = match patient_ref(r) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    let w = FhirWrite::UpdateAppointment {
        id: aid,
        patient,
        patch,
        expected_version: expected,
    };
    write_one(
        &state,
        &principal,
        &client,
        &headers,
        &practice,
        "Appointment",
        w,
    )
    .await
}

/// `POST /fhir/r4`: a transaction Bundle of Patient and Appointment creates and updates, all
/// or nothing in one database transaction.
pub async fn transaction(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bundle = match json_body(body) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let practice = Practice::load(&state, &principal).await?;
    let parsed = match write::transaction(&bundle, &practice.ctx(&state), MAX_TRANSACTION_ENTRIES) {
        Ok(p) => p,
        Err(e) => {
            let entry = (e.index != usize::MAX).then_some(e.index);
            return Ok(refused(e.refusal, entry));
        }
    };
    let (kinds, writes): (Vec<EntryKind>, Vec<FhirWrite>) = parsed.into_iter().unzip();
    if let Some(refusal) = authorize_writes(&state, &principal, &client, &writes, true).await? {
        return Ok(refusal);
    }
    let done = match state
        .store
        .fhir_write(
            practice.id,
            &principal,
            &client.audit_context(),
            &practice.input,
            &writes,
        )
        .await?
    {
        Ok(done) => done,
        Err(f) => {
            let kind = match kinds.get(f.index) {
                Some(EntryKind::Patient) => "Patient",
                _ => "Appointment",
            };
            return failure(kind, f, true);
        }
    };
    let base = base(&state, &headers);
    let names = practice.names();
    let entries: Vec<Value> = done
        .iter()
        .map(|w| {
            let (kind, id, version, resource, created) = rendered(w, &names);
            json!({
                "fullUrl": format!("{base}/{kind}/{id}"),
                "resource": resource,
                "response": {
                    "status": if created { "201 Created" } else { "200 OK" },
                    "location": format!("{kind}/{id}/_history/{version}"),
                    "etag": etag(version),
                    "lastModified": resource["meta"]["lastUpdated"],
                },
            })
        })
        .collect();
    Ok(Fhir(json!({
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": entries,
    }))
    .into_response())
}

// ---- AppointmentResponse ---------------------------------------------------------------------

/// The patient's answer, recorded by the practice's systems: accepted confirms the visit,
/// declined cancels it, as the patient's "C" or "X" reply to a reminder does.
pub async fn appointment_response_create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let resource = match json_body(body) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let (appointment, patient, status) = match write::appointment_response(&resource) {
        Ok(x) => x,
        Err(r) => return Ok(refused(r, None)),
    };
    let practice = practice_of(&principal)?;
    let (saved, transition) = match state
        .store
        .record_patient_answer(
            practice,
            &principal,
            &client.audit_context(),
            appointment,
            patient,
            status,
        )
        .await
    {
        Ok(x) => x,
        Err(e) => return store_refusal("Appointment", e, None),
    };
    let Some(answer) = map::appointment_response(&saved) else {
        return Ok(outcome(
            StatusCode::CONFLICT,
            vec![issue(
                "conflict",
                "the practice already cancelled this visit: there is no answer to record".into(),
                None,
            )],
        ));
    };
    let status = if transition == Transition::Changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut r = (status, Fhir(answer)).into_response();
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{}/AppointmentResponse/{}",
            base(&state, &headers),
            saved.id
        ))
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub async fn appointment_response_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Fhir, ApiError> {
    let id: AppointmentId = id
        .parse()
        .map_err(|_| super::not_found("AppointmentResponse"))?;
    let a = state
        .store
        .read_appointment(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            id,
        )
        .await
        .map_err(|e| super::store_error("AppointmentResponse", e))?;
    map::appointment_response(&a)
        .map(Fhir)
        .ok_or_else(|| super::not_found("AppointmentResponse"))
}

pub async fn appointment_response_search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    q: Query2,
) -> Result<Fhir, ApiError> {
    let p = super::params(q)?;
    p.check_known(&["appointment", "patient", "actor"])
        .map_err(super::bad)?;
    let base = base(&state, &headers);
    let practice = practice_of(&principal)?;
    let ctx = client.audit_context();
    let empty = || super::paged(&base, "AppointmentResponse", &p, Vec::new()).map(Fhir);
    let list = if let Some(raw) = p.one("appointment").map_err(super::bad)? {
        let Some(id) =
            params::reference_id(raw, "Appointment").and_then(|i| i.parse::<AppointmentId>().ok())
        else {
            return empty();
        };
        match state
            .store
            .read_appointment(practice, &principal, &ctx, id)
            .await
        {
            Ok(a) => vec![a],
            Err(StoreError::NotFound | StoreError::Hidden) => Vec::new(),
            Err(e) => return Err(e.into()),
        }
    } else {
        let patient = match super::patient_param(&p, &["patient", "actor"])? {
            None => {
                return Err(super::bad(
                    "`appointment` or `patient` is required for an AppointmentResponse search",
                ));
            }
            Some(Err(())) => return empty(),
            Some(Ok(id)) => id,
        };
        match state
            .store
            .list_appointments(
                practice,
                &principal,
                &ctx,
                &AppointmentFilter {
                    patient: Some(patient),
                    ..AppointmentFilter::default()
                },
            )
            .await
        {
            Ok(l) => l,
            Err(StoreError::NotFound | StoreError::Hidden) => Vec::new(),
            Err(e) => return Err(e.into()),
        }
    };
    let resources = list.iter().filter_map(map::appointment_response).collect();
    super::paged(&base, "AppointmentResponse", &p, resources).map(Fhir)
}

//! The appointments API: book, change, cancel, read and list appointments, and import them from
//! the EHR's CSV export. Handlers parse, call the store, render; rules live in
//! salve_core::appointments.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_core::appointments::{self as rules, AppointmentStatus};
use salve_core::permissions::Principal;
use salve_core::validation::{self, FieldError};
use salve_core::{AppointmentId, CatalogItemId, PatientId, Sensitive};
use salve_store::{
    APPOINTMENT_VERSION_CONFLICT, Appointment, AppointmentFilter, AppointmentPatch, Idempotency,
    NewAppointment, StoreError,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::{path_id, practice_of};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody};

/// The longest window a list without a patient may cover.
pub const MAX_WINDOW_DAYS: i64 = 31;

/// A new appointment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentCreate {
    pub patient_id: uuid::Uuid,
    /// RFC 3339 with its offset, to the minute.
    #[schema(example = "2027-03-14T09:30:00-05:00")]
    pub starts_at: String,
    /// IANA time zone the patient is told the time in.
    #[schema(example = "America/Chicago")]
    pub time_zone: String,
    /// 5 to 480.
    pub duration_minutes: i64,
    pub appointment_type_id: uuid::Uuid,
    pub location_id: uuid::Uuid,
    pub provider_id: uuid::Uuid,
    /// The EHR's own id; unique in the practice.
    pub external_id: Option<String>,
}

/// Changes to an appointment; absent fields are unchanged. Cancel with
/// `POST /api/v1/appointments/{id}/cancel`; a cancelled appointment is rebooked by setting
/// `status` to `booked`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AppointmentPatchBody {
    pub starts_at: Option<String>,
    pub time_zone: Option<String>,
    pub duration_minutes: Option<i64>,
    pub appointment_type_id: Option<uuid::Uuid>,
    pub location_id: Option<uuid::Uuid>,
    pub provider_id: Option<uuid::Uuid>,
    /// booked, confirmed, reschedule_requested, cancelled, completed or no_show.
    pub status: Option<String>,
}

/// A catalog item an appointment names.
#[derive(Serialize, ToSchema)]
pub struct CatalogRef {
    pub id: uuid::Uuid,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct AppointmentView {
    pub id: uuid::Uuid,
    pub patient_id: uuid::Uuid,
    pub external_id: Option<String>,
    /// RFC 3339, with the offset of `time_zone` at that instant.
    pub starts_at: String,
    pub time_zone: String,
    pub duration_minutes: i64,
    pub appointment_type: CatalogRef,
    pub location: CatalogRef,
    pub provider: CatalogRef,
    pub status: String,
    /// Who set the status: staff, api, import or patient_reply.
    pub status_source: String,
    /// Send as `If-Match` to change the appointment only if nobody changed it since.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AppointmentList {
    pub appointments: Vec<AppointmentView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub patient_id: Option<uuid::Uuid>,
    /// RFC 3339: appointments starting at or after.
    pub from: Option<String>,
    /// RFC 3339: appointments starting before.
    pub to: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Check the file and report, importing nothing.
    pub dry_run: Option<bool>,
}

/// One bad cell or row of an import.
#[derive(Serialize, ToSchema)]
pub struct ImportError {
    /// The spreadsheet row: the header is row 1.
    pub row: usize,
    pub column: String,
    pub message: String,
    /// The cell, escaped (no formulas, no control characters, cut short); never for
    /// `patient_mrn` or `external_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportReportView {
    pub dry_run: bool,
    pub rows: usize,
    pub imported: usize,
    /// Rows already imported exactly so.
    pub unchanged: usize,
    pub errors: Vec<ImportError>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound | StoreError::Hidden => ApiError::not_found("appointment"),
        StoreError::Conflict(m) if m == APPOINTMENT_VERSION_CONFLICT => ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "version-mismatch",
            "Precondition failed",
            m,
        ),
        other => other.into(),
    }
}

/// The `If-Match` version: `"3"`, `W/"3"` or `3`.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::validation(vec![FieldError::new(
                "If-Match",
                "the appointment's version, e.g. \"3\"",
            )])
        })
}

async fn names(
    state: &AppState,
    principal: &Principal,
) -> Result<HashMap<CatalogItemId, String>, ApiError> {
    Ok(state
        .store
        .catalog(practice_of(principal)?)
        .await?
        .into_iter()
        .map(|i| (i.id, i.name))
        .collect())
}

fn view(a: &Appointment, names: &HashMap<CatalogItemId, String>) -> AppointmentView {
    let item = |id: CatalogItemId| CatalogRef {
        id: id.as_uuid(),
        name: names.get(&id).cloned().unwrap_or_default(),
    };
    AppointmentView {
        id: a.id.as_uuid(),
        patient_id: a.patient.as_uuid(),
        external_id: a.external_id.as_ref().map(|e| e.expose().clone()),
        starts_at: rfc3339(rules::in_zone(a.starts_at, &a.time_zone)),
        time_zone: a.time_zone.clone(),
        duration_minutes: a.duration_minutes,
        appointment_type: item(a.appointment_type),
        location: item(a.location),
        provider: item(a.provider),
        status: a.status.as_str().to_owned(),
        status_source: a.status_source.as_str().to_owned(),
        version: a.version,
        created_at: rfc3339(a.created_at),
        updated_at: rfc3339(a.updated_at),
    }
}

/// The appointment as JSON, its version as the `ETag`.
fn respond(
    status: StatusCode,
    a: &Appointment,
    names: &HashMap<CatalogItemId, String>,
) -> Response {
    let mut response = (status, axum::Json(view(a, names))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", a.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// Book an appointment.
#[utoipa::path(post, path = "/api/v1/appointments", tag = "appointments", request_body = AppointmentCreate,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replaying the same key and body returns the first answer")),
    responses(
        (status = 201, body = AppointmentView, description = "booked; `Location` names the appointment"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json", description = "no such patient in your practice"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json", description = "external_id already used"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json", description = "invalid fields, or Idempotency-Key reused with another body"),
    ),
    security(("bearer" = ["appointments:write"]), ("session" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    body: JsonBody<AppointmentCreate>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let now = state.clock.now();
    let b = body.value;
    let mut errors = Vec::new();
    let starts_at = rules::parse_starts_at("starts_at", &b.starts_at, now)
        .map_err(|e| errors.push(e))
        .ok();
    let time_zone = validation::time_zone("time_zone", &b.time_zone)
        .map_err(|e| errors.push(e))
        .ok();
    let duration = rules::duration_minutes("duration_minutes", b.duration_minutes)
        .map_err(|e| errors.push(e))
        .ok();
    let external_id = match &b.external_id {
        Some(raw) => rules::external_id("external_id", raw)
            .map_err(|e| errors.push(e))
            .ok(),
        None => None,
    };
    let (Some(starts_at), Some(time_zone), Some(duration_minutes)) =
        (starts_at, time_zone, duration)
    else {
        return Err(ApiError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let new = NewAppointment {
        patient: PatientId::from_uuid(b.patient_id),
        external_id: external_id.map(|e: Sensitive<String>| e),
        starts_at,
        time_zone,
        duration_minutes,
        appointment_type: CatalogItemId::from_uuid(b.appointment_type_id),
        location: CatalogItemId::from_uuid(b.location_id),
        provider: CatalogItemId::from_uuid(b.provider_id),
    };
    let idempotency = idempotency_key.map(|key_hash| Idempotency {
        key_hash,
        request_hash: body.sha256,
    });
    let (appointment, replayed) = state
        .store
        .create_appointment(
            practice,
            &principal,
            &client.audit_context(),
            &new,
            idempotency,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound | StoreError::Hidden => ApiError::not_found("patient"),
            other => store_error(other),
        })?
        .map_err(ApiError::validation)?;
    let names = names(&state, &principal).await?;
    let mut response = respond(StatusCode::CREATED, &appointment, &names);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/appointments/{}", appointment.id)) {
        headers.insert(header::LOCATION, v);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Read one appointment (its status included: the EHR reads patients' replies back here).
#[utoipa::path(get, path = "/api/v1/appointments/{id}", tag = "appointments",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AppointmentView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["appointments:read"]), ("session" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: AppointmentId = path_id(&id, "appointment")?;
    let appointment = state
        .store
        .read_appointment(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            id,
        )
        .await
        .map_err(store_error)?;
    let names = names(&state, &principal).await?;
    Ok(respond(StatusCode::OK, &appointment, &names))
}

/// Change an appointment: reschedule it, change its type, location, provider, duration or
/// status. With `If-Match`, only if its version is still that one (else 412).
#[utoipa::path(patch, path = "/api/v1/appointments/{id}", tag = "appointments", request_body = AppointmentPatchBody,
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = "The version last read, e.g. \"3\"")),
    responses((status = 200, body = AppointmentView),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json", description = "the status cannot change this way"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json", description = "changed since that version"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["appointments:write"]), ("session" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<AppointmentPatchBody>,
) -> Result<Response, ApiError> {
    let id: AppointmentId = path_id(&id, "appointment")?;
    let expected = if_match(&headers)?;
    let now = state.clock.now();
    let b = body.value;
    let mut errors = Vec::new();
    let mut patch = AppointmentPatch {
        appointment_type: b.appointment_type_id.map(CatalogItemId::from_uuid),
        location: b.location_id.map(CatalogItemId::from_uuid),
        provider: b.provider_id.map(CatalogItemId::from_uuid),
        ..Default::default()
    };
    if let Some(raw) = &b.starts_at {
        patch.starts_at = rules::parse_starts_at("starts_at", raw, now)
            .map_err(|e| errors.push(e))
            .ok();
    }
    if let Some(raw) = &b.time_zone {
        patch.time_zone = validation::time_zone("time_zone", raw)
            .map_err(|e| errors.push(e))
            .ok();
    }
    if let Some(m) = b.duration_minutes {
        patch.duration_minutes = rules::duration_minutes("duration_minutes", m)
            .map_err(|e| errors.push(e))
            .ok();
    }
    if let Some(raw) = &b.status {
        patch.status = AppointmentStatus::parse(raw);
        if patch.status.is_none() {
            errors.push(FieldError::new(
                "status",
                "booked, confirmed, reschedule_requested, cancelled, completed or no_show",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let appointment = state
        .store
        .update_appointment(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            id,
            &patch,
            expected,
        )
        .await
        .map_err(store_error)?
        .map_err(ApiError::validation)?;
    let names = names(&state, &principal).await?;
    Ok(respond(StatusCode::OK, &appointment, &names))
}

/// Cancel an appointment (again: no change). With `If-Match`, only if its version is still
/// that one.
#[utoipa::path(post, path = "/api/v1/appointments/{id}/cancel", tag = "appointments",
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = "The version last read, e.g. \"3\"")),
    responses((status = 200, body = AppointmentView),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::error::Problem, content_type = "application/problem+json", description = "changed since that version")),
    security(("bearer" = ["appointments:write"]), ("session" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: AppointmentId = path_id(&id, "appointment")?;
    let expected = if_match(&headers)?;
    let appointment = state
        .store
        .cancel_appointment(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            id,
            expected,
        )
        .await
        .map_err(store_error)?;
    let names = names(&state, &principal).await?;
    Ok(respond(StatusCode::OK, &appointment, &names))
}

/// List one patient's appointments, or those starting in a window of at most 31 days
/// (`from` and `to` required without `patient_id`), by start time; at most 500.
#[utoipa::path(get, path = "/api/v1/appointments", tag = "appointments", params(ListParams),
    responses((status = 200, body = AppointmentList), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["appointments:read"]), ("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AppointmentList>, ApiError> {
    let Query(params) = params.map_err(|_| {
        ApiError::validation(vec![FieldError::new(
            "query",
            "`patient_id` as a patient id, `from` and `to` as RFC 3339 times, and no other parameters",
        )])
    })?;
    let mut errors = Vec::new();
    let mut time = |field: &str, raw: &Option<String>| {
        raw.as_deref().and_then(|r| {
            OffsetDateTime::parse(r.trim(), &Rfc3339)
                .map_err(|_| {
                    errors.push(FieldError::new(field, "an RFC 3339 time with its offset"))
                })
                .ok()
        })
    };
    let from = time("from", &params.from);
    let to = time("to", &params.to);
    if errors.is_empty() {
        match (from, to) {
            (Some(f), Some(t)) if t <= f => {
                errors.push(FieldError::new("to", "a time after `from`"));
            }
            (Some(f), Some(t))
                if params.patient_id.is_none() && t - f > time::Duration::days(MAX_WINDOW_DAYS) =>
            {
                errors.push(FieldError::new("to", "at most 31 days after `from`"));
            }
            (None, _) | (_, None) if params.patient_id.is_none() => errors.push(FieldError::new(
                "query",
                "`patient_id`, or both `from` and `to`",
            )),
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = AppointmentFilter {
        patient: params.patient_id.map(PatientId::from_uuid),
        from,
        to,
    };
    let appointments = state
        .store
        .list_appointments(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &filter,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound | StoreError::Hidden => ApiError::not_found("patient"),
            other => store_error(other),
        })?;
    let names = names(&state, &principal).await?;
    Ok(axum::Json(AppointmentList {
        appointments: appointments.iter().map(|a| view(a, &names)).collect(),
    }))
}

/// Import appointments from a CSV file (`text/csv`) with the columns external_id, patient_mrn,
/// starts_at (local "YYYY-MM-DD HH:MM"), time_zone, duration_minutes, appointment_type,
/// location, provider (catalog names). Every bad row is reported; a file with any error
/// imports nothing (422). A row whose external_id was imported before updates that
/// appointment, so importing the same file again changes nothing.
#[utoipa::path(post, path = "/api/v1/appointments/import", tag = "appointments", params(ImportParams),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReportView, description = "imported, or a clean dry run"),
        (status = 415, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = ImportReportView, description = "errors: nothing imported")),
    security(("bearer" = ["appointments:write"]), ("session" = [])))]
pub async fn import(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    params: Result<Query<ImportParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|_| {
        ApiError::validation(vec![FieldError::new(
            "dry_run",
            "true or false, and no other parameters",
        )])
    })?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"));
    if !csv {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the file as text/csv",
        ));
    }
    let parsed = rules::parse_import(&body, state.clock.now());
    let report = state
        .store
        .import_appointments(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &parsed,
            params.dry_run.unwrap_or(false),
        )
        .await
        .map_err(store_error)?;
    let status = if report.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let view = ImportReportView {
        dry_run: report.dry_run,
        rows: report.rows,
        imported: report.imported,
        unchanged: report.unchanged,
        errors: report
            .errors
            .into_iter()
            .map(|e| ImportError {
                row: e.row,
                column: e.column,
                message: e.message,
                value: e.value,
            })
            .collect(),
    };
    Ok((status, axum::Json(view)).into_response())
}

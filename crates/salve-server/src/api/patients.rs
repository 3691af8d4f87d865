//! The patients API. Handlers parse, call the store, render; rules live in salve-core.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_core::patient::{
    ContactInput, ContactKind, ContactRole, PatientInput, PatientPatchInput, PatientRecord,
};
use salve_core::permissions::Principal;
use salve_core::validation::{self, FieldError};
use salve_core::{PatientId, Sensitive};
use salve_store::{Idempotency, Lookup, Patient};
use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody};

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ContactKindBody {
    Phone,
    Email,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
pub enum ContactRoleBody {
    #[serde(rename = "self")]
    SelfRole,
    #[serde(rename = "guardian")]
    Guardian,
    #[serde(rename = "caregiver")]
    Caregiver,
}

/// A phone number or email address of the patient, a guardian or a caregiver.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    pub kind: ContactKindBody,
    /// A phone number (E.164 or national format of the practice's region) or an email address.
    pub value: String,
    pub role: ContactRoleBody,
}

/// A new patient.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientCreate {
    pub given_name: String,
    pub family_name: String,
    /// `YYYY-MM-DD`
    #[schema(example = "1984-07-02")]
    pub birth_date: String,
    pub mrn: Option<String>,
    /// BCP 47 language, e.g. `en` or `es-MX`; default `en`.
    pub preferred_language: Option<String>,
    /// IANA time zone; default the practice's.
    pub time_zone: Option<String>,
    #[serde(default)]
    pub contacts: Vec<ContactBody>,
}

fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to a patient. Absent fields are unchanged; `contacts`, when given, replaces the list;
/// `mrn` and `time_zone` may be set to null to clear them.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PatientPatch {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub birth_date: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub mrn: Option<Option<String>>,
    pub preferred_language: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub time_zone: Option<Option<String>>,
    pub contacts: Option<Vec<ContactBody>>,
}

#[derive(Serialize, ToSchema)]
pub struct ContactView {
    pub kind: ContactKindBody,
    /// Normalized: E.164 for phones.
    pub value: String,
    pub role: ContactRoleBody,
}

#[derive(Serialize, ToSchema)]
pub struct PatientView {
    pub id: uuid::Uuid,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: String,
    pub mrn: Option<String>,
    pub preferred_language: String,
    /// The patient's own time zone, if set.
    pub time_zone: Option<String>,
    /// The zone used for this patient: their own, else the practice's.
    pub effective_time_zone: String,
    pub contacts: Vec<ContactView>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct PatientList {
    pub patients: Vec<PatientView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<uuid::Uuid>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1 to 200; default 50.
    pub limit: Option<usize>,
    /// The `next_after` of the previous page.
    pub after: Option<uuid::Uuid>,
}

/// Search by name: every word must appear in the patient's name. Sent in a body, never a URL.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub query: String,
    pub limit: Option<usize>,
}

/// Exactly one of `phone`, `email`, `mrn`. Sent in a body, never a URL.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupBody {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub mrn: Option<String>,
}

fn kind_body(k: ContactKind) -> ContactKindBody {
    match k {
        ContactKind::Phone => ContactKindBody::Phone,
        ContactKind::Email => ContactKindBody::Email,
    }
}

fn role_body(r: ContactRole) -> ContactRoleBody {
    match r {
        ContactRole::Patient => ContactRoleBody::SelfRole,
        ContactRole::Guardian => ContactRoleBody::Guardian,
        ContactRole::Caregiver => ContactRoleBody::Caregiver,
    }
}

fn contact_inputs(list: Vec<ContactBody>) -> Vec<ContactInput> {
    list.into_iter()
        .map(|c| ContactInput {
            kind: match c.kind {
                ContactKindBody::Phone => ContactKind::Phone,
                ContactKindBody::Email => ContactKind::Email,
            },
            value: Sensitive::new(c.value),
            role: match c.role {
                ContactRoleBody::SelfRole => ContactRole::Patient,
                ContactRoleBody::Guardian => ContactRole::Guardian,
                ContactRoleBody::Caregiver => ContactRole::Caregiver,
            },
        })
        .collect()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn view(p: &Patient, practice_zone: &str) -> PatientView {
    let r = &p.record;
    PatientView {
        id: p.id.as_uuid(),
        given_name: r.given_name.expose().clone(),
        family_name: r.family_name.expose().clone(),
        birth_date: validation::format_date(r.birth_date),
        mrn: r.mrn.as_ref().map(|m| m.expose().clone()),
        preferred_language: r.preferred_language.clone(),
        time_zone: r.time_zone.clone(),
        effective_time_zone: r
            .time_zone
            .clone()
            .unwrap_or_else(|| practice_zone.to_owned()),
        contacts: r
            .contacts
            .iter()
            .map(|c| ContactView {
                kind: kind_body(c.kind),
                value: c.value.expose().clone(),
                role: role_body(c.role),
            })
            .collect(),
        version: p.version,
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
    }
}

/// Path ids that do not parse are simply not found: the answer is the same as for another
/// practice's patient.
fn patient_id(raw: &str) -> Result<PatientId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("patient"))
}

fn store_error(e: salve_store::StoreError) -> ApiError {
    match e {
        salve_store::StoreError::NotFound | salve_store::StoreError::Hidden => {
            ApiError::not_found("patient")
        }
        other => other.into(),
    }
}

/// Who may see a restricted patient.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrictionBody {
    pub restricted: bool,
    /// Staff of this practice who may see the patient.
    #[serde(default)]
    pub users: Vec<uuid::Uuid>,
}

/// Mark a patient restricted (VIP, staff member, behavioral health) and name who may see them.
#[utoipa::path(put, path = "/api/v1/patients/{id}/restriction", tag = "patients", request_body = RestrictionBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn set_restriction(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<RestrictionBody>,
) -> Result<StatusCode, ApiError> {
    let id = patient_id(&id)?;
    let users: Vec<salve_core::UserId> = body
        .value
        .users
        .iter()
        .map(|u| salve_core::UserId::from_uuid(*u))
        .collect();
    state
        .store
        .set_restriction(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            id,
            body.value.restricted,
            &users,
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::Invalid(_) => {
                ApiError::validation(vec![salve_core::FieldError::new(
                    "users",
                    "ids of staff who are members of this practice",
                )])
            }
            other => store_error(other),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a patient.
#[utoipa::path(post, path = "/api/v1/patients", tag = "patients", request_body = PatientCreate,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replaying the same key and body returns the first answer")),
    responses(
        (status = 201, body = PatientView, description = "created; `Location` names the patient"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json", description = "MRN already used, or Idempotency-Key reused with another body"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["patients:write"]), ("session" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    body: JsonBody<PatientCreate>,
) -> Result<Response, ApiError> {
    let practice = state.store.practice(practice_of(&principal)?).await?;
    let ctx = state.store.input_context(practice_of(&principal)?).await?;
    let b = body.value;
    let input = PatientInput {
        given_name: Sensitive::new(b.given_name),
        family_name: Sensitive::new(b.family_name),
        birth_date: Sensitive::new(b.birth_date),
        mrn: b.mrn.map(Sensitive::new),
        preferred_language: b.preferred_language,
        time_zone: b.time_zone,
        contacts: contact_inputs(b.contacts),
    };
    let record = PatientRecord::from_input(&input, &ctx).map_err(ApiError::validation)?;
    let idempotency = idempotency_key.map(|key_hash| Idempotency {
        key_hash,
        request_hash: body.sha256,
    });
    let (patient, replayed) = state
        .store
        .create_patient(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &record,
            idempotency,
        )
        .await
        .map_err(store_error)?;
    let mut response = (
        StatusCode::CREATED,
        axum::Json(view(&patient, &practice.time_zone)),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/patients/{}", patient.id)) {
        headers.insert(header::LOCATION, v);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Read one patient.
#[utoipa::path(get, path = "/api/v1/patients/{id}", tag = "patients",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PatientView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["patients:read"]), ("session" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<axum::Json<PatientView>, ApiError> {
    let id = patient_id(&id)?;
    let practice = state.store.practice(practice_of(&principal)?).await?;
    let patient = state
        .store
        .read_patient(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            id,
        )
        .await
        .map_err(store_error)?;
    Ok(axum::Json(view(&patient, &practice.time_zone)))
}

/// Change a patient.
#[utoipa::path(patch, path = "/api/v1/patients/{id}", tag = "patients", request_body = PatientPatch,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PatientView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["patients:write"]), ("session" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<PatientPatch>,
) -> Result<axum::Json<PatientView>, ApiError> {
    let id = patient_id(&id)?;
    let practice = state.store.practice(practice_of(&principal)?).await?;
    let ctx = state.store.input_context(practice_of(&principal)?).await?;
    let b = body.value;
    let patch = PatientPatchInput {
        given_name: b.given_name.map(Sensitive::new),
        family_name: b.family_name.map(Sensitive::new),
        birth_date: b.birth_date.map(Sensitive::new),
        mrn: b.mrn.map(|m| m.map(Sensitive::new)),
        preferred_language: b.preferred_language,
        time_zone: b.time_zone,
        contacts: b.contacts.map(contact_inputs),
    };
    let patient = state
        .store
        .update_patient(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            id,
            &patch,
            &ctx,
        )
        .await
        .map_err(store_error)?
        .map_err(ApiError::validation)?;
    Ok(axum::Json(view(&patient, &practice.time_zone)))
}

/// List the practice's patients, oldest first.
#[utoipa::path(get, path = "/api/v1/patients", tag = "patients", params(ListParams),
    responses((status = 200, body = PatientList)),
    security(("bearer" = ["patients:read"]), ("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<PatientList>, ApiError> {
    let Query(params) = params.map_err(|_| {
        ApiError::validation(vec![FieldError::new(
            "query",
            "`limit` as a number from 1 to 200 and `after` as a patient id, and no other parameters",
        )])
    })?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=salve_store::MAX_PAGE).contains(&limit) {
        return Err(ApiError::validation(vec![FieldError::new(
            "limit",
            "a number from 1 to 200",
        )]));
    }
    let practice = state.store.practice(practice_of(&principal)?).await?;
    let page = state
        .store
        .list_patients(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            params.after.map(PatientId::from_uuid),
            limit,
        )
        .await?;
    Ok(axum::Json(PatientList {
        patients: page
            .patients
            .iter()
            .map(|p| view(p, &practice.time_zone))
            .collect(),
        next_after: page.next_after.map(|p| p.as_uuid()),
    }))
}

/// Search patients by part of their name.
#[utoipa::path(post, path = "/api/v1/patients/search", tag = "patients", request_body = SearchBody,
    responses((status = 200, body = PatientList), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["patients:read"]), ("session" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<SearchBody>,
) -> Result<axum::Json<PatientList>, ApiError> {
    let b = body.value;
    let query = Sensitive::new(b.query);
    let q = query.expose().trim();
    if q.chars().count() < 2 || q.chars().count() > 200 {
        return Err(ApiError::validation(vec![FieldError::new(
            "query",
            "2 to 200 characters of a name",
        )]));
    }
    let limit = b.limit.unwrap_or(50);
    if !(1..=salve_store::MAX_PAGE).contains(&limit) {
        return Err(ApiError::validation(vec![FieldError::new(
            "limit",
            "a number from 1 to 200",
        )]));
    }
    let practice = state.store.practice(practice_of(&principal)?).await?;
    let found = state
        .store
        .search_patients(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            q,
            limit,
        )
        .await?;
    Ok(axum::Json(PatientList {
        patients: found.iter().map(|p| view(p, &practice.time_zone)).collect(),
        next_after: None,
    }))
}

/// Find patients by exact phone, email or MRN. A family phone may match several patients.
#[utoipa::path(post, path = "/api/v1/patients/lookup", tag = "patients", request_body = LookupBody,
    responses((status = 200, body = PatientList), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["patients:read"]), ("session" = [])))]
pub async fn lookup(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<LookupBody>,
) -> Result<axum::Json<PatientList>, ApiError> {
    let practice = state.store.practice(practice_of(&principal)?).await?;
    let b = body.value;
    let lookup = match (b.phone, b.email, b.mrn) {
        (Some(p), None, None) => Lookup::Phone(
            validation::phone("phone", &p, &practice.phone_region)
                .map_err(|e| ApiError::validation(vec![e]))?,
        ),
        (None, Some(e), None) => Lookup::Email(
            validation::email("email", &e).map_err(|e| ApiError::validation(vec![e]))?,
        ),
        (None, None, Some(m)) => {
            Lookup::Mrn(validation::mrn("mrn", &m).map_err(|e| ApiError::validation(vec![e]))?)
        }
        _ => {
            return Err(ApiError::validation(vec![FieldError::new(
                "(body)",
                "exactly one of `phone`, `email` or `mrn`",
            )]));
        }
    };
    let found = state
        .store
        .lookup_patients(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &lookup,
        )
        .await?;
    Ok(axum::Json(PatientList {
        patients: found.iter().map(|p| view(p, &practice.time_zone)).collect(),
        next_after: None,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct NamedStaff {
    pub user_id: uuid::Uuid,
    pub display_name: String,
    /// admin, clinician, staff or auditor
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct RestrictedEntry {
    pub id: uuid::Uuid,
    /// The patient's name, only when you are named on them (or hold break-glass); otherwise
    /// absent: an admin manages restrictions without learning who is restricted.
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// Whether you may change who is named (you are named yourself).
    pub editable: bool,
    /// The staff who may see this patient.
    pub allowed: Vec<NamedStaff>,
}

#[derive(Serialize, ToSchema)]
pub struct RestrictedList {
    pub patients: Vec<RestrictedEntry>,
}

/// The practice's restricted patients and who may see each (audited as a patient list).
#[utoipa::path(get, path = "/api/v1/patients/restricted", tag = "patients",
    responses((status = 200, body = RestrictedList)), security(("session" = [])))]
pub async fn restricted(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
) -> Result<axum::Json<RestrictedList>, ApiError> {
    let practice = practice_of(&principal)?;
    let me = match &principal {
        Principal::Staff { user, .. } => Some(*user),
        _ => None,
    };
    let list = state
        .store
        .restricted_patients(practice, &principal, &client.audit_context())
        .await?;
    let members = state.store.list_members(practice).await?;
    let patients = list
        .into_iter()
        .map(|r| RestrictedEntry {
            id: r.id.as_uuid(),
            given_name: r
                .patient
                .as_ref()
                .map(|p| p.record.given_name.expose().clone()),
            family_name: r
                .patient
                .as_ref()
                .map(|p| p.record.family_name.expose().clone()),
            editable: me.is_none_or(|u| r.named.contains(&u)),
            allowed: r
                .named
                .iter()
                .filter_map(|u| members.iter().find(|(p, _)| p.id == *u))
                .map(|(p, m)| NamedStaff {
                    user_id: p.id.as_uuid(),
                    display_name: p.display_name.expose().clone(),
                    role: m.role.as_str().to_owned(),
                })
                .collect(),
        })
        .collect();
    Ok(axum::Json(RestrictedList { patients }))
}

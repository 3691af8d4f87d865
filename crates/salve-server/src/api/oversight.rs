//! Break-glass, the auditor's break-glass report, and the practice's messaging guidelines.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::permissions::{BreakGlassCategory, Principal, break_glass_reason};
use salve_core::{FieldError, Sensitive};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::{practice_of, rfc3339};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassBody {
    /// emergency_treatment, continuity_of_care, covering_for_colleague, patient_request, other
    pub category: String,
    /// Why this record must be opened now (10 to 1000 characters; sealed).
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct BreakGlassGranted {
    /// Access lasts until then (RFC 3339).
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct BreakGlassEntry {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub patient_id: uuid::Uuid,
    pub category: String,
    pub reason: String,
    pub granted_at: String,
    pub expires_at: String,
    /// Absent until the privacy officer reviews the access.
    pub review: Option<BreakGlassReviewView>,
}

#[derive(Serialize, ToSchema)]
pub struct BreakGlassReviewView {
    pub reviewed_by: uuid::Uuid,
    pub note: String,
    pub reviewed_at: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BreakGlassQuery {
    /// `true`: only reviewed accesses; `false`: only those still to review (default: all).
    pub reviewed: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassReviewBody {
    /// What the review found (1 to 1000 characters; sealed, it may describe the patient).
    pub note: String,
}

#[derive(Serialize, ToSchema)]
pub struct BreakGlassReport {
    pub grants: Vec<BreakGlassEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct GuidelinesView {
    /// 0 when the practice has published none.
    pub version: i64,
    pub body: String,
    /// Whether the caller still has to acknowledge this version.
    pub acknowledgment_required: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuidelinesBody {
    pub body: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeBody {
    pub version: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AcknowledgmentEntry {
    pub user_id: uuid::Uuid,
    pub version: i64,
    pub acknowledged_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AcknowledgmentList {
    pub current_version: i64,
    pub acknowledgments: Vec<AcknowledgmentEntry>,
}

/// Open a restricted patient for a limited time, giving a reason. The privacy officer is told.
#[utoipa::path(post, path = "/api/v1/patients/{id}/break-glass", tag = "patients", request_body = BreakGlassBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = BreakGlassGranted), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn break_glass(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<BreakGlassBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let patient = id.parse().map_err(|_| ApiError::not_found("patient"))?;
    let mut errors = Vec::new();
    let category = BreakGlassCategory::parse(&body.value.category);
    if category.is_none() {
        errors.push(FieldError::new(
            "category",
            "one of emergency_treatment, continuity_of_care, covering_for_colleague, patient_request, other",
        ));
    }
    let reason = break_glass_reason(&body.value.reason)
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(category), Some(reason)) = (category, reason) else {
        return Err(ApiError::validation(errors));
    };
    let ctx = client.audit_context();
    let expires_at = state
        .store
        .break_glass(practice, &principal, &ctx, patient, category, &reason)
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("patient"),
            other => other.into(),
        })?;
    let name = state.store.practice(practice).await?.name;
    let officers = state.store.privacy_officers(practice).await?;
    crate::notify::email_staff(
        &state,
        practice,
        &officers,
        &format!("Break-glass access at {name}"),
        &format!(
            "A clinician at {name} opened a restricted patient's record with break-glass. \
             Review the reason in Salve's break-glass report."
        ),
        &ctx,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(BreakGlassGranted {
            expires_at: rfc3339(expires_at),
        }),
    )
        .into_response())
}

/// Every break-glass access of the practice, with its reason and its review, if any.
#[utoipa::path(get, path = "/api/v1/audit/break-glass", tag = "audit", params(BreakGlassQuery),
    responses((status = 200, body = BreakGlassReport)), security(("bearer" = ["audit:read"]), ("session" = [])))]
pub async fn break_glass_report(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<BreakGlassQuery>,
) -> Result<axum::Json<BreakGlassReport>, ApiError> {
    let practice = practice_of(&principal)?;
    let grants = state
        .store
        .break_glass_report(practice)
        .await?
        .into_iter()
        .filter(|g| q.reviewed.is_none_or(|want| g.review.is_some() == want))
        .map(|g| BreakGlassEntry {
            id: g.id,
            user_id: g.user_id.as_uuid(),
            patient_id: g.patient_id.as_uuid(),
            category: g.category,
            reason: g.reason.expose().clone(),
            granted_at: rfc3339(g.granted_at),
            expires_at: rfc3339(g.expires_at),
            review: g.review.map(|r| BreakGlassReviewView {
                reviewed_by: r.reviewed_by.as_uuid(),
                note: r.note.expose().clone(),
                reviewed_at: rfc3339(r.reviewed_at),
            }),
        })
        .collect();
    Ok(axum::Json(BreakGlassReport { grants }))
}

/// The privacy officer marks one break-glass access reviewed, with a short note (once).
#[utoipa::path(post, path = "/api/v1/audit/break-glass/{id}/review", tag = "audit",
    params(("id" = uuid::Uuid, Path)), request_body = BreakGlassReviewBody,
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn review_break_glass(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<BreakGlassReviewBody>,
) -> Result<StatusCode, ApiError> {
    let practice = practice_of(&principal)?;
    let grant: uuid::Uuid = crate::api::path_id(&id, "break-glass access")?;
    let note = body.value.note.trim();
    if note.is_empty() || note.chars().count() > salve_store::MAX_REVIEW_NOTE_CHARS {
        return Err(ApiError::validation(vec![FieldError::new(
            "note",
            "1 to 1000 characters",
        )]));
    }
    state
        .store
        .review_break_glass(
            practice,
            &principal,
            &client.audit_context(),
            grant,
            &Sensitive::new(note.to_owned()),
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("break-glass access"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

fn staff_user(principal: &Principal) -> Result<salve_core::UserId, ApiError> {
    match principal {
        Principal::Staff { user, .. } => Ok(*user),
        _ => Err(ApiError::forbidden("only staff acknowledge guidelines")),
    }
}

/// The practice's current messaging guidelines.
#[utoipa::path(get, path = "/api/v1/guidelines", tag = "guidelines",
    responses((status = 200, body = GuidelinesView)), security(("session" = [])))]
pub async fn guidelines(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<GuidelinesView>, ApiError> {
    let practice = practice_of(&principal)?;
    let user = staff_user(&principal)?;
    let current = state.store.current_guidelines(practice).await?;
    let pending = state.store.guidelines_pending(practice, user).await?;
    Ok(axum::Json(match current {
        Some(g) => GuidelinesView {
            version: g.version,
            body: g.body,
            acknowledgment_required: pending,
        },
        None => GuidelinesView {
            version: 0,
            body: String::new(),
            acknowledgment_required: false,
        },
    }))
}

/// Publish a new version; every staff member must acknowledge it before going on.
#[utoipa::path(put, path = "/api/v1/guidelines", tag = "guidelines", request_body = GuidelinesBody,
    responses((status = 200, body = GuidelinesView)), security(("session" = [])))]
pub async fn publish_guidelines(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<GuidelinesBody>,
) -> Result<axum::Json<GuidelinesView>, ApiError> {
    let practice = practice_of(&principal)?;
    let text = body.value.body.trim().to_owned();
    if text.is_empty() || text.len() > 100_000 {
        return Err(ApiError::validation(vec![FieldError::new(
            "body",
            "the guidelines' text, up to 100,000 bytes",
        )]));
    }
    let version = state
        .store
        .publish_guidelines(practice, &principal, &client.audit_context(), &text)
        .await?;
    Ok(axum::Json(GuidelinesView {
        version,
        body: text,
        acknowledgment_required: true,
    }))
}

/// Acknowledge having read the current guidelines.
#[utoipa::path(post, path = "/api/v1/guidelines/acknowledge", tag = "guidelines", request_body = AcknowledgeBody,
    responses((status = 204)), security(("session" = [])))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<AcknowledgeBody>,
) -> Result<StatusCode, ApiError> {
    let practice = practice_of(&principal)?;
    let user = staff_user(&principal)?;
    state
        .store
        .acknowledge_guidelines(practice, user, &client.audit_context(), body.value.version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who acknowledged which version.
#[utoipa::path(get, path = "/api/v1/guidelines/acknowledgments", tag = "guidelines",
    responses((status = 200, body = AcknowledgmentList)), security(("session" = [])))]
pub async fn acknowledgments(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<AcknowledgmentList>, ApiError> {
    let practice = practice_of(&principal)?;
    let current = state
        .store
        .current_guidelines(practice)
        .await?
        .map_or(0, |g| g.version);
    let acknowledgments = state
        .store
        .guideline_acknowledgments(practice)
        .await?
        .into_iter()
        .map(|a| AcknowledgmentEntry {
            user_id: a.user_id.as_uuid(),
            version: a.version,
            acknowledged_at: rfc3339(a.acknowledged_at),
        })
        .collect();
    Ok(axum::Json(AcknowledgmentList {
        current_version: current,
        acknowledgments,
    }))
}

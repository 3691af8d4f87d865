//! The practice's staff directory and account administration.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::UserId;
use salve_core::permissions::{Principal, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Serialize, ToSchema)]
pub struct StaffMember {
    pub id: uuid::Uuid,
    pub display_name: String,
    pub email: String,
    /// admin, clinician, staff or auditor
    pub role: String,
    pub privacy_officer: bool,
    pub mfa_enrolled: bool,
    pub disabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct StaffList {
    pub users: Vec<StaffMember>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// admin, clinician, staff or auditor
    pub role: String,
}

/// A user id of this practice's members, or 404 (another practice's user looks like no user).
async fn member(
    state: &AppState,
    practice: salve_core::PracticeId,
    raw: &str,
) -> Result<UserId, ApiError> {
    let user: UserId = raw.parse().map_err(|_| ApiError::not_found("user"))?;
    match state.store.role_in(user, practice).await? {
        Some(_) => Ok(user),
        None => Err(ApiError::not_found("user")),
    }
}

/// The practice's staff.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = StaffList)), security(("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<StaffList>, ApiError> {
    let practice = practice_of(&principal)?;
    let users = state
        .store
        .list_members(practice)
        .await?
        .into_iter()
        .map(|(p, m)| StaffMember {
            id: p.id.as_uuid(),
            display_name: p.display_name.expose().clone(),
            email: p.email.expose().clone(),
            role: m.role.as_str().to_owned(),
            privacy_officer: m.privacy_officer,
            mfa_enrolled: p.mfa_enrolled,
            disabled: p.disabled,
        })
        .collect();
    Ok(axum::Json(StaffList { users }))
}

/// Change a member's role; their sessions in this practice end.
#[utoipa::path(put, path = "/api/v1/users/{id}/role", tag = "users", request_body = RoleBody,
    params(("id" = uuid::Uuid, Path)), responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = [])))]
pub async fn set_role(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<RoleBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let user = member(&state, practice, &id).await?;
    let role = Role::parse(&body.value.role).ok_or_else(|| {
        ApiError::validation(vec![salve_core::FieldError::new(
            "role",
            "one of admin, clinician, staff, auditor",
        )])
    })?;
    state
        .store
        .set_role(
            &principal.actor(),
            &client.audit_context(),
            practice,
            user,
            role,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Remove a member's second factor (lost phone); their sessions end and the next sign-in enrols again.
#[utoipa::path(post, path = "/api/v1/users/{id}/mfa-reset", tag = "users",
    params(("id" = uuid::Uuid, Path)), responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = [])))]
pub async fn reset_mfa(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let user = member(&state, practice, &id).await?;
    state
        .store
        .reset_mfa(&principal.actor(), &client.audit_context(), user)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

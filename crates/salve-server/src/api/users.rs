//! The practice's staff directory and account administration.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::UserId;
use salve_core::permissions::{Principal, Role};
use salve_core::staff_access::DisableRefusal;
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

/// Disable a member in this practice only (their other practices are untouched); their
/// sessions here end and they cannot sign in here until enabled again. Refused for yourself
/// and for the practice's last enabled admin.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json", description = "yourself, or the last enabled admin")),
    security(("session" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let user: UserId = id.parse().map_err(|_| ApiError::not_found("user"))?;
    let verdict = state
        .store
        .disable_member(&principal.actor(), &client.audit_context(), practice, user)
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("user"),
            other => other.into(),
        })?;
    match verdict {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(refusal) => Err(disable_refused(refusal)),
    }
}

pub(crate) fn disable_refused(refusal: DisableRefusal) -> ApiError {
    let (kind, title) = match refusal {
        DisableRefusal::Yourself => ("cannot-disable-yourself", "Cannot disable yourself"),
        DisableRefusal::LastAdmin => ("last-admin", "Last enabled admin"),
    };
    ApiError::new(StatusCode::CONFLICT, kind, title, refusal.explain())
}

/// Enable a member disabled in this practice: they may sign in here again.
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let user: UserId = id.parse().map_err(|_| ApiError::not_found("user"))?;
    state
        .store
        .enable_member(&principal.actor(), &client.audit_context(), practice, user)
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("user"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: uuid::Uuid,
    /// Started (RFC 3339).
    pub started_at: String,
    /// Last request that counted as activity (RFC 3339).
    pub last_active_at: String,
    /// When it ends at the latest (RFC 3339).
    pub expires_at: String,
    /// A coarse description such as "Firefox on Linux" (no address, no version).
    pub client: String,
    /// Whether this is the session making the request.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

pub(crate) fn session_views(
    sessions: Vec<salve_store::SessionSummary>,
    current: Option<salve_core::SessionId>,
) -> SessionList {
    SessionList {
        sessions: sessions
            .into_iter()
            .map(|s| SessionView {
                id: s.id.as_uuid(),
                started_at: crate::api::rfc3339(s.created_at),
                last_active_at: crate::api::rfc3339(s.last_active_at),
                expires_at: crate::api::rfc3339(s.expires_at),
                client: s.client.unwrap_or_else(|| "Unknown browser".to_owned()),
                current: Some(s.id) == current,
            })
            .collect(),
    }
}

/// A member's live sessions in this practice (audited: who looked).
#[utoipa::path(get, path = "/api/v1/users/{id}/sessions", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = SessionList), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn sessions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<axum::Json<SessionList>, ApiError> {
    let practice = practice_of(&principal)?;
    let user = any_member(&state, practice, &id).await?;
    state
        .store
        .record_session_list(&principal.actor(), &client.audit_context(), practice, user)
        .await?;
    let list = state.store.live_sessions(practice, user).await?;
    Ok(axum::Json(session_views(list, None)))
}

/// End one of a member's sessions in this practice.
#[utoipa::path(delete, path = "/api/v1/users/{id}/sessions/{session_id}", tag = "users",
    params(("id" = uuid::Uuid, Path), ("session_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn end_session(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path((id, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let user = any_member(&state, practice, &id).await?;
    let session = session_id
        .parse()
        .map_err(|_| ApiError::not_found("session"))?;
    state
        .store
        .end_member_session(
            &principal.actor(),
            &client.audit_context(),
            practice,
            user,
            session,
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("session"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// End every session a member has in this practice.
#[utoipa::path(post, path = "/api/v1/users/{id}/sessions/end-all", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn end_all_sessions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let user = any_member(&state, practice, &id).await?;
    state
        .store
        .end_member_sessions(&principal.actor(), &client.audit_context(), practice, user)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A member of this practice, enabled or not, or 404.
async fn any_member(
    state: &AppState,
    practice: salve_core::PracticeId,
    raw: &str,
) -> Result<UserId, ApiError> {
    let user: UserId = raw.parse().map_err(|_| ApiError::not_found("user"))?;
    let members = state.store.list_members(practice).await?;
    if members.iter().any(|(p, _)| p.id == user) {
        Ok(user)
    } else {
        Err(ApiError::not_found("user"))
    }
}

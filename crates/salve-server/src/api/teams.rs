//! Teams of the practice.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::permissions::Principal;
use salve_core::{TeamId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Serialize, ToSchema)]
pub struct TeamView {
    pub id: uuid::Uuid,
    pub name: String,
    pub members: Vec<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamList {
    pub teams: Vec<TeamView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamBody {
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersBody {
    pub members: Vec<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamCreated {
    pub id: uuid::Uuid,
}

fn team_id(raw: &str) -> Result<TeamId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("team"))
}

fn not_found_team(e: salve_store::StoreError) -> ApiError {
    match e {
        salve_store::StoreError::NotFound => ApiError::not_found("team"),
        other => other.into(),
    }
}

/// The practice's teams and their members.
#[utoipa::path(get, path = "/api/v1/teams", tag = "users", responses((status = 200, body = TeamList)), security(("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<TeamList>, ApiError> {
    let teams = state
        .store
        .list_teams(practice_of(&principal)?)
        .await?
        .into_iter()
        .map(|t| TeamView {
            id: t.id.as_uuid(),
            name: t.name,
            members: t.members.iter().map(UserId::as_uuid).collect(),
        })
        .collect();
    Ok(axum::Json(TeamList { teams }))
}

/// Create a team.
#[utoipa::path(post, path = "/api/v1/teams", tag = "users", request_body = TeamBody,
    responses((status = 201, body = TeamCreated), (status = 409, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<TeamBody>,
) -> Result<Response, ApiError> {
    let id = state
        .store
        .create_team(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &body.value.name,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TeamCreated { id: id.as_uuid() }),
    )
        .into_response())
}

/// Replace a team's members.
#[utoipa::path(put, path = "/api/v1/teams/{id}/members", tag = "users", request_body = MembersBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn set_members(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<MembersBody>,
) -> Result<StatusCode, ApiError> {
    let members: Vec<UserId> = body
        .value
        .members
        .iter()
        .map(|u| UserId::from_uuid(*u))
        .collect();
    state
        .store
        .set_team_members(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            team_id(&id)?,
            &members,
        )
        .await
        .map_err(not_found_team)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a team.
#[utoipa::path(delete, path = "/api/v1/teams/{id}", tag = "users", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_team(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            team_id(&id)?,
        )
        .await
        .map_err(not_found_team)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rename a team.
#[utoipa::path(put, path = "/api/v1/teams/{id}", tag = "users", request_body = TeamBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn rename(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<TeamBody>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .rename_team(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            team_id(&id)?,
            &body.value.name,
        )
        .await
        .map_err(not_found_team)?;
    Ok(StatusCode::NO_CONTENT)
}

//! The practice's API tokens, for the EHR and scripts. A token is shown once, at creation.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::FieldError;
use salve_core::permissions::{Principal, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{practice_of, rfc3339};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: uuid::Uuid,
    pub label: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// What the token is for, e.g. "EHR sync".
    pub label: String,
    /// patients:read, patients:write, messages:read, messages:write, consent:write,
    /// appointments:read, appointments:write, audit:read (the audit log, FHIR `AuditEvent`),
    /// appointments:answer (a patient's answer about a visit, FHIR `AppointmentResponse`)
    pub scopes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    pub id: uuid::Uuid,
    /// Shown once; only its hash is kept.
    pub token: String,
}

/// The practice's tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "users", responses((status = 200, body = TokenList)), security(("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<TokenList>, ApiError> {
    let tokens = state
        .store
        .list_tokens(practice_of(&principal)?)
        .await?
        .into_iter()
        .map(|t| TokenView {
            id: t.id.as_uuid(),
            label: t.label,
            scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: rfc3339(t.created_at),
            revoked_at: t.revoked_at.map(rfc3339),
        })
        .collect();
    Ok(axum::Json(TokenList { tokens }))
}

/// Create a token; the response is the only time its secret is shown.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "users", request_body = TokenBody,
    responses((status = 201, body = TokenCreated), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: JsonBody<TokenBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let label = body.value.label.trim().to_owned();
    let mut errors = Vec::new();
    if label.is_empty() || label.chars().count() > 100 {
        errors.push(FieldError::new("label", "1 to 100 characters"));
    }
    let scopes = Scope::parse_list(&body.value.scopes.join(" "))
        .map_err(|_| {
            errors.push(FieldError::new(
                "scopes",
                "one or more of patients:read, patients:write",
            ))
        })
        .ok();
    let Some(scopes) = scopes.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let token = salve_crypto::token::mint("salve");
    let id = state
        .store
        .create_token(principal.actor(), practice, &scopes, &label, &token.hash)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenCreated {
            id: id.as_uuid(),
            token: token.secret.to_string(),
        }),
    )
        .into_response())
}

/// Revoke a token at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "users", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let token = id.parse().map_err(|_| ApiError::not_found("token"))?;
    state
        .store
        .revoke_token(
            practice_of(&principal)?,
            principal.actor(),
            &client.audit_context(),
            token,
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("token"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

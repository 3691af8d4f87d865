//! The practice's delay before an unread secure message's reminder (and again before the
//! staff alert): an admin setting.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use salve_core::FieldError;
use salve_core::permissions::Principal;
use salve_core::unread::{MAX_DELAY_HOURS, MIN_DELAY_HOURS, valid_delay_hours};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnreadSettingsBody {
    /// Hours a secure message may stay unopened before the patient gets one reminder with a
    /// fresh link; still unopened the same time later, the practice admins are told
    /// (default 72).
    pub delay_hours: i64,
}

/// The delay before an unread secure message's reminder and staff alert.
#[utoipa::path(get, path = "/api/v1/practice/unread-settings", tag = "settings",
    responses((status = 200, body = UnreadSettingsBody)), security(("session" = [])))]
pub async fn unread_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<UnreadSettingsBody>, ApiError> {
    let delay_hours = state
        .store
        .unread_delay_hours(practice_of(&principal)?)
        .await?;
    Ok(axum::Json(UnreadSettingsBody { delay_hours }))
}

/// Change the delay (audited).
#[utoipa::path(put, path = "/api/v1/practice/unread-settings", tag = "settings", request_body = UnreadSettingsBody,
    responses((status = 204), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn set_unread_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<UnreadSettingsBody>,
) -> Result<StatusCode, ApiError> {
    let hours = body.value.delay_hours;
    if !valid_delay_hours(hours) {
        return Err(ApiError::validation(vec![FieldError::new(
            "delay_hours",
            format!("a whole number of hours from {MIN_DELAY_HOURS} to {MAX_DELAY_HOURS}"),
        )]));
    }
    state
        .store
        .set_unread_delay_hours(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            hours,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! The scheduled pull of patients and appointments from the practice's EHR (admins): on or
//! off, how often, and how the last run went (counts, the last success, the last error and the
//! skip reasons, all PHI-free). A run can be started at once.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use salve_core::FieldError;
use salve_core::clock::to_micros;
use salve_core::ehr_pull::{DEFAULT_INTERVAL_SECS, check_interval};
use salve_core::permissions::Principal;
use salve_store::EhrPull;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{practice_of, rfc3339};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    pub enabled: bool,
    /// Seconds between runs (60 to 86400; 900 when absent).
    pub interval_secs: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct SkipCount {
    pub count: i64,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct PullView {
    pub enabled: bool,
    pub interval_secs: i64,
    pub running: bool,
    pub next_run_at: Option<String>,
    /// The highest `meta.lastUpdated` applied, per resource type.
    pub patient_cursor: Option<String>,
    pub appointment_cursor: Option<String>,
    pub last_run_at: Option<String>,
    pub last_success_at: Option<String>,
    /// Set when the last run failed: a kind (`http_401`, `connect`, `store`, …) and a reason.
    pub last_error_kind: Option<String>,
    pub last_error: Option<String>,
    /// What the last run did.
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub skip_reasons: Vec<SkipCount>,
}

pub(crate) fn view(p: Option<&EhrPull>) -> PullView {
    let t = |at: Option<time::OffsetDateTime>| at.map(|a| rfc3339(to_micros(a)));
    match p {
        None => PullView {
            enabled: false,
            interval_secs: DEFAULT_INTERVAL_SECS,
            running: false,
            next_run_at: None,
            patient_cursor: None,
            appointment_cursor: None,
            last_run_at: None,
            last_success_at: None,
            last_error_kind: None,
            last_error: None,
            created: 0,
            updated: 0,
            unchanged: 0,
            skipped: 0,
            skip_reasons: Vec::new(),
        },
        Some(p) => PullView {
            enabled: p.enabled,
            interval_secs: p.interval_secs,
            running: p.running,
            next_run_at: p.enabled.then(|| rfc3339(to_micros(p.next_run_at))),
            patient_cursor: t(p.patient_cursor),
            appointment_cursor: t(p.appointment_cursor),
            last_run_at: t(p.last_run_at),
            last_success_at: t(p.last_success_at),
            last_error_kind: p.last_error_kind.clone(),
            last_error: p.last_error.clone(),
            created: p.created,
            updated: p.updated,
            unchanged: p.unchanged,
            skipped: p.skipped,
            skip_reasons: p
                .skip_reasons
                .iter()
                .map(|(count, reason)| SkipCount {
                    count: *count,
                    reason: reason.clone(),
                })
                .collect(),
        },
    }
}

async fn current(state: &AppState, principal: &Principal) -> Result<PullView, ApiError> {
    let pull = state.store.ehr_pull(practice_of(principal)?).await?;
    Ok(view(pull.as_ref()))
}

/// The pull's settings and its last run.
#[utoipa::path(get, path = "/api/v1/ehr/pull", tag = "ehr",
    responses((status = 200, body = PullView)),
    security(("session" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<PullView>, ApiError> {
    Ok(axum::Json(current(&state, &principal).await?))
}

/// Turn the pull on or off, or change its interval (the EHR connection must exist).
#[utoipa::path(put, path = "/api/v1/ehr/pull", tag = "ehr", request_body = PullBody,
    responses((status = 200, body = PullView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn save(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<PullBody>,
) -> Result<axum::Json<PullView>, ApiError> {
    let practice = practice_of(&principal)?;
    let body = body.value;
    let interval = check_interval(body.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS))
        .map_err(|why| ApiError::validation(vec![FieldError::new("interval_secs", why)]))?;
    state
        .store
        .set_ehr_pull(
            practice,
            principal.actor(),
            &client.audit_context(),
            body.enabled,
            interval,
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "this practice has no EHR connection yet (PUT /api/v1/ehr/connection first)",
            ),
            other => other.into(),
        })?;
    Ok(axum::Json(current(&state, &principal).await?))
}

/// Run the pull now (when no run is under way) and answer with its status.
#[utoipa::path(post, path = "/api/v1/ehr/pull/run", tag = "ehr",
    responses((status = 200, body = PullView), (status = 409, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<PullView>, ApiError> {
    let practice = practice_of(&principal)?;
    let ran = crate::ehr::pull::pull_now(&state, practice, None)
        .await
        .map_err(|_| ApiError::internal("the pull could not run"))?;
    if ran.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "Conflict",
            "a pull is already running, or the pull is off (PUT /api/v1/ehr/pull)",
        ));
    }
    Ok(axum::Json(current(&state, &principal).await?))
}

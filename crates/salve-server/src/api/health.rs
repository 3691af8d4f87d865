//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The database answers and its schema is this binary's.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "not ready", body = crate::error::Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .store
        .ready()
        .await
        .map(|()| "ready\n")
        .map_err(|e| ApiError::unavailable(e.detail()))
}

pub fn metrics_text(state: &AppState) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `/metrics` on the main listener: only with the configured token.
pub async fn metrics_with_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(expected) = &state.config.metrics_token else {
        return ApiError::not_found("route").into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if salve_crypto::ct_eq(presented.as_bytes(), expected.0.as_bytes()) {
        metrics_text(&state)
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// The directive names browsers report; anything else is counted as "other" so a client
/// cannot put arbitrary text into metrics.
const DIRECTIVES: &[&str] = &[
    "default-src",
    "script-src",
    "script-src-elem",
    "script-src-attr",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "img-src",
    "font-src",
    "connect-src",
    "media-src",
    "object-src",
    "frame-src",
    "child-src",
    "worker-src",
    "manifest-src",
    "form-action",
    "frame-ancestors",
    "base-uri",
];

/// Content-Security-Policy violation reports. Only the violated directive is kept (as a metric):
/// the blocked and document URIs could carry personal data.
pub async fn csp_report(State(state): State<AppState>, body: axum::body::Bytes) -> StatusCode {
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let report = value.get("csp-report").unwrap_or(&value);
    let directive = report
        .get("effective-directive")
        .or_else(|| report.get("violated-directive"))
        .and_then(|d| d.as_str())
        .and_then(|d| d.split_whitespace().next())
        .and_then(|d| DIRECTIVES.iter().find(|known| **known == d))
        .copied()
        .unwrap_or("other");
    state.metrics.csp_report(directive);
    tracing::warn!(directive, "content security policy violation reported");
    StatusCode::NO_CONTENT
}

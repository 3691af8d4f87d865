//! RFC 9457 problem documents. A 5xx says only "internal error" plus the request id; the cause
//! is logged once, here, without personal data.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_core::FieldError;
use salve_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field: where it is and what was expected. Never the submitted value.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ProblemField {
    pub field: String,
    pub expected: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<ProblemField>,
    /// Logged, never sent.
    pub cause: Option<String>,
    pub extra_headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            cause: None,
            extra_headers: Vec::new(),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{one}"),
            _ => format!("{} fields are invalid", errors.len()),
        };
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request has invalid fields",
            detail,
        );
        e.errors = errors
            .into_iter()
            .map(|f| ProblemField {
                field: f.field,
                expected: f.expected,
            })
            .collect();
        e
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is malformed",
            detail,
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no {what} with this id in your practice"),
        )
    }

    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            "send a valid API token as `Authorization: Bearer …`",
        );
        e.extra_headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"salve\""),
        ));
        e
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    /// Logs a failure of background work (a staff email from the worker): status, problem
    /// kind and the internal cause only; never the detail or field messages, which may quote
    /// input.
    pub(crate) fn log_background_failure(&self, task: &'static str) {
        tracing::error!(
            status = self.status.as_u16(),
            problem = self.slug,
            cause = self.cause.as_deref().unwrap_or(""),
            task,
            "background task failed"
        );
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server could not complete the request; quote the request id when reporting it",
        );
        e.cause = Some(cause.into());
        e
    }

    pub fn unavailable(cause: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "the server is not ready",
        );
        e.cause = Some(cause.into());
        e
    }

    pub fn into_problem(self, request_id: Option<String>) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(status = self.status.as_u16(), request_id = request_id.as_deref().unwrap_or(""), cause = %cause, "request failed");
        }
        let body = Problem {
            kind: format!("urn:salve:problem:{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
            request_id,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (k, v) in self.extra_headers {
            headers.insert(k, v);
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_problem(crate::context::current_request_id())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound | StoreError::Hidden => ApiError::not_found("record"),
            StoreError::BreakGlassRequired => ApiError::new(
                StatusCode::FORBIDDEN,
                "break-glass-required",
                "Restricted record",
                "this patient is restricted; opening the record needs a break-glass reason",
            ),
            StoreError::Forbidden => ApiError::forbidden("not allowed"),
            StoreError::Shredded => ApiError::new(
                StatusCode::GONE,
                "shredded",
                "Record destroyed",
                "this record's content was destroyed at the end of its retention period",
            ),
            StoreError::Conflict(what) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", what)
            }
            StoreError::Invalid(what) => ApiError::bad_request(what),
            StoreError::IdempotencyMismatch => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used with a different request body; use a new key",
            ),
            other => ApiError::internal(other.detail()),
        }
    }
}

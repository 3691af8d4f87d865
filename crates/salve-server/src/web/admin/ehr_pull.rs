//! `/admin/ehr/pull`: the scheduled pull of patients and appointments from the practice's EHR
//! (on or off, how often, the last run's counts, error and skip reasons, a run at once),
//! through the API operations of the same name.

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_core::permissions::Principal;
use serde::Deserialize;

use super::{FormFields, frame};
use crate::AppState;
use crate::api::ehr_pull::{self, PullBody, PullView};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

#[derive(Template)]
#[template(path = "admin/ehr_pull.html")]
struct PullPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    connected: bool,
    pull: PullView,
    interval_minutes: i64,
    errors: Vec<String>,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

async fn render(
    state: AppState,
    page: Page,
    principal: Principal,
    session: Option<Extension<SessionCaller>>,
    errors: Vec<String>,
    notice: Option<&'static str>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let connected = state
        .store
        .ehr_connection(crate::api::practice_of(&principal)?)
        .await?
        .is_some();
    let Json(pull) = ehr_pull::read(State(state), Extension(principal)).await?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(page.render_with_status(
        status,
        &PullPage {
            page: &page,
            frame: &frame,
            connected,
            interval_minutes: pull.interval_secs / 60,
            pull,
            errors,
            notice,
        },
    ))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let notice = match query.ok().and_then(|q| q.0.done).as_deref() {
        Some("saved") => Some("Pull settings saved."),
        Some("ran") => Some("The pull ran; its result is below."),
        _ => None,
    };
    render(state, page, principal, session, Vec::new(), notice).await
}

pub(crate) async fn save(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = FormFields::parse(&body);
    let minutes = form.get("interval_minutes").trim().parse::<i64>().ok();
    let result = match minutes {
        Some(m) => {
            ehr_pull::save(
                State(state.clone()),
                Extension(principal.clone()),
                Extension(client),
                JsonBody {
                    value: PullBody {
                        enabled: form.get("enabled") == "on",
                        interval_secs: Some(m.saturating_mul(60)),
                    },
                    sha256: [0; 32],
                },
            )
            .await
        }
        None => Err(ApiError::validation(vec![salve_core::FieldError::new(
            "interval_secs",
            "a whole number of minutes",
        )])),
    };
    match result {
        Ok(_) => Ok(page.redirect("/admin/ehr/pull?done=saved")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let errors = e
                .errors
                .iter()
                .map(|f| format!("Interval: {}.", f.expected))
                .collect();
            render(state, page, principal, session, errors, None).await
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            let errors = vec!["Connect the EHR first.".to_owned()];
            render(state, page, principal, session, errors, None).await
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn run(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
) -> Result<Response, ApiError> {
    match ehr_pull::run(State(state.clone()), Extension(principal.clone())).await {
        Ok(_) => Ok(page.redirect("/admin/ehr/pull?done=ran")),
        Err(e) if e.status == StatusCode::CONFLICT => {
            let errors = vec!["A pull is already running, or the pull is off.".to_owned()];
            render(state, page, principal, session, errors, None).await
        }
        Err(e) => Err(e),
    }
}

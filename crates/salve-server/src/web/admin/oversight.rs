//! `/admin/guidelines` (publish the messaging guidelines; who acknowledged which version) and
//! `/admin/restricted` (restricted patients and who may see each). Each handler calls the API
//! operation of the same name, so authorization and audit are the API's.

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_core::permissions::Principal;
use serde::Deserialize;

use super::{FormFields, frame};
use crate::AppState;
use crate::api::oversight::{self, GuidelinesBody};
use crate::api::patients::{self, RestrictionBody};
use crate::api::users;
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

#[derive(Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

fn done(query: Result<Query<DoneQuery>, QueryRejection>) -> Option<String> {
    query.ok().and_then(|q| q.0.done)
}

/// One staff member's standing with the guidelines.
pub(crate) struct AckRow {
    pub name: String,
    pub role: String,
    /// The latest version they acknowledged, and when (RFC 3339).
    pub latest: Option<(i64, String)>,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "admin/guidelines.html")]
struct GuidelinesPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    version: i64,
    body: String,
    body_error: Option<String>,
    rows: Vec<AckRow>,
    acknowledged: usize,
    notice: Option<&'static str>,
}

async fn render_guidelines(
    state: AppState,
    page: Page,
    principal: Principal,
    session: Option<Extension<SessionCaller>>,
    draft: Option<(String, String)>,
    notice: Option<&'static str>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let Json(current) =
        oversight::guidelines(State(state.clone()), Extension(principal.clone())).await?;
    let Json(acks) =
        oversight::acknowledgments(State(state.clone()), Extension(principal.clone())).await?;
    let Json(staff) = users::list(State(state), Extension(principal)).await?;
    let rows: Vec<AckRow> = staff
        .users
        .into_iter()
        .filter(|u| !u.disabled)
        .map(|u| {
            // Newest version first, as the API lists them.
            let latest = acks
                .acknowledgments
                .iter()
                .filter(|a| a.user_id == u.id)
                .max_by_key(|a| a.version)
                .map(|a| (a.version, a.acknowledged_at.clone()));
            AckRow {
                current: latest
                    .as_ref()
                    .is_some_and(|(v, _)| *v == acks.current_version),
                latest,
                name: u.display_name,
                role: u.role,
            }
        })
        .collect();
    let acknowledged = rows.iter().filter(|r| r.current).count();
    let (body, body_error) = match draft {
        Some((text, error)) => (text, Some(error)),
        None => (current.body.clone(), None),
    };
    let status = if body_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page.render_with_status(
        status,
        &GuidelinesPage {
            page: &page,
            frame: &frame,
            version: current.version,
            body,
            body_error,
            rows,
            acknowledged,
            notice,
        },
    ))
}

pub(crate) async fn guidelines(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let notice = match done(query).as_deref() {
        Some("published") => Some(
            "New version published: every staff member is asked to acknowledge it at their next step.",
        ),
        _ => None,
    };
    render_guidelines(state, page, principal, session, None, notice).await
}

pub(crate) async fn publish_guidelines(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = FormFields::parse(&body).get("body");
    let result = oversight::publish_guidelines(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: GuidelinesBody { body: text.clone() },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/guidelines?done=published")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let error = "Write the guidelines (up to 100,000 characters).".to_owned();
            render_guidelines(state, page, principal, session, Some((text, error)), None).await
        }
        Err(e) => Err(e),
    }
}

/// One staff member who could be named on a restricted patient.
pub(crate) struct StaffChoice {
    pub id: String,
    pub name: String,
    pub role: String,
}

pub(crate) struct RestrictedRow {
    pub id: String,
    /// `None`: the caller is not named on this patient, so the name is not shown.
    pub name: Option<String>,
    pub editable: bool,
    /// (name, role) of the staff who may see the patient.
    pub allowed: Vec<(String, String)>,
    pub allowed_ids: Vec<String>,
}

#[derive(Template)]
#[template(path = "admin/restricted.html")]
struct RestrictedPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    rows: Vec<RestrictedRow>,
    staff: Vec<StaffChoice>,
    notice: Option<&'static str>,
}

pub(crate) async fn restricted(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let Json(list) = patients::restricted(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
    )
    .await?;
    let Json(members) = users::list(State(state), Extension(principal)).await?;
    let rows = list
        .patients
        .into_iter()
        .map(|p| RestrictedRow {
            id: p.id.to_string(),
            name: match (p.given_name, p.family_name) {
                (Some(g), Some(f)) => Some(format!("{g} {f}")),
                _ => None,
            },
            editable: p.editable,
            allowed_ids: p.allowed.iter().map(|a| a.user_id.to_string()).collect(),
            allowed: p
                .allowed
                .into_iter()
                .map(|a| (a.display_name, a.role))
                .collect(),
        })
        .collect();
    let staff = members
        .users
        .into_iter()
        .filter(|u| !u.disabled && u.role != "auditor")
        .map(|u| StaffChoice {
            id: u.id.to_string(),
            name: u.display_name,
            role: u.role,
        })
        .collect();
    let notice = match done(query).as_deref() {
        Some("saved") => Some("Saved who may see this patient."),
        Some("lifted") => Some("Restriction lifted: the patient is visible to all staff again."),
        _ => None,
    };
    Ok(page.render(&RestrictedPage {
        page: &page,
        frame: &frame,
        rows,
        staff,
        notice,
    }))
}

/// Saves who may see a restricted patient (`action=save`, `users` repeated) or lifts the
/// restriction (`action=lift`), through `PUT /api/v1/patients/{id}/restriction`.
pub(crate) async fn save_restriction(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = FormFields::parse(&body);
    let lift = f.get("action") == "lift";
    let users = if lift {
        Vec::new()
    } else {
        f.all("users")
            .map(|u| {
                u.parse::<uuid::Uuid>().map_err(|_| {
                    ApiError::bad_request("a staff member is unknown: reload the page")
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    patients::set_restriction(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id),
        JsonBody {
            value: RestrictionBody {
                restricted: !lift,
                users,
            },
            sha256: [0; 32],
        },
    )
    .await?;
    Ok(page.redirect(if lift {
        "/admin/restricted?done=lifted"
    } else {
        "/admin/restricted?done=saved"
    }))
}

//! `/admin/teams`: the practice's teams (create, rename, delete, choose members), each action
//! the API operation of the same name.

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
use crate::api::teams::{self, MembersBody, TeamBody};
use crate::api::users;
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

pub(crate) struct Member {
    pub id: String,
    pub name: String,
    pub role: String,
}

pub(crate) struct TeamRow {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
    pub member_names: Vec<String>,
}

#[derive(Template)]
#[template(path = "admin/teams.html")]
struct TeamsPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    teams: Vec<TeamRow>,
    staff: Vec<Member>,
    new_name: String,
    error: Option<String>,
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
    new_name: String,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let Json(list) = teams::list(State(state.clone()), Extension(principal.clone())).await?;
    let Json(members) = users::list(State(state), Extension(principal)).await?;
    let name_of = |id: &uuid::Uuid| {
        members
            .users
            .iter()
            .find(|u| u.id == *id)
            .map_or_else(|| "A former member".to_owned(), |u| u.display_name.clone())
    };
    let teams = list
        .teams
        .iter()
        .map(|t| TeamRow {
            id: t.id.to_string(),
            name: t.name.clone(),
            members: t.members.iter().map(ToString::to_string).collect(),
            member_names: t.members.iter().map(name_of).collect(),
        })
        .collect();
    let staff = members
        .users
        .iter()
        .filter(|u| !u.disabled && u.role != "auditor")
        .map(|u| Member {
            id: u.id.to_string(),
            name: u.display_name.clone(),
            role: u.role.clone(),
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page.render_with_status(
        status,
        &TeamsPage {
            page: &page,
            frame: &frame,
            teams,
            staff,
            new_name,
            error,
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
        Some("created") => Some("Team created."),
        Some("renamed") => Some("Team renamed."),
        Some("members") => Some("Members saved."),
        Some("deleted") => Some("Team deleted."),
        _ => None,
    };
    render(state, page, principal, session, String::new(), None, notice).await
}

/// A refused name (empty, too long, taken): the page again with the reason.
fn name_refusal(e: &ApiError) -> Option<String> {
    (e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::CONFLICT)
        .then(|| format!("Not saved: {}.", e.detail))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = FormFields::parse(&body).get("name");
    let result = teams::create(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: TeamBody { name: name.clone() },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/teams?done=created")),
        Err(e) => match name_refusal(&e) {
            Some(error) => render(state, page, principal, session, name, Some(error), None).await,
            None => Err(e),
        },
    }
}

pub(crate) async fn rename(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = FormFields::parse(&body).get("name");
    let result = teams::rename(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        Path(id),
        JsonBody {
            value: TeamBody { name },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/teams?done=renamed")),
        Err(e) => match name_refusal(&e) {
            Some(error) => {
                render(
                    state,
                    page,
                    principal,
                    session,
                    String::new(),
                    Some(error),
                    None,
                )
                .await
            }
            None => Err(e),
        },
    }
}

pub(crate) async fn set_members(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let members = FormFields::parse(&body)
        .all("members")
        .map(|u| {
            u.parse::<uuid::Uuid>()
                .map_err(|_| ApiError::bad_request("a staff member is unknown: reload the page"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    teams::set_members(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id),
        JsonBody {
            value: MembersBody { members },
            sha256: [0; 32],
        },
    )
    .await?;
    Ok(page.redirect("/admin/teams?done=members"))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    teams::delete(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id),
    )
    .await?;
    Ok(page.redirect("/admin/teams?done=deleted"))
}

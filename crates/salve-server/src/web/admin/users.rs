//! `/admin/users`: the practice's staff, with invitations, role changes and MFA resets (each the
//! API operation of the same name).

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_core::permissions::{Decision, Operation, Principal, Role, authorize};
use serde::Deserialize;

use super::{FormFields, frame};
use crate::AppState;
use crate::api::account::{self, InviteBody};
use crate::api::users::{self, RoleBody};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

pub(crate) struct UserRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub privacy_officer: bool,
    pub mfa_enrolled: bool,
    pub disabled: bool,
    pub is_me: bool,
}

/// The invitation form as submitted, and its errors.
#[derive(Default)]
pub(crate) struct InviteForm {
    pub email: String,
    pub name: String,
    pub role: String,
    pub email_error: Option<String>,
    pub name_error: Option<String>,
    pub role_error: Option<String>,
    pub other_error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    users: Vec<UserRow>,
    can_manage: bool,
    roles: [&'static str; 4],
    invite: InviteForm,
    notice: Option<&'static str>,
    /// A refused action (disabling yourself or the last admin), shown at the top.
    error: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct UsersQuery {
    done: Option<String>,
}

async fn render(
    state: AppState,
    page: Page,
    principal: Principal,
    session: Option<Extension<SessionCaller>>,
    invite: InviteForm,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let me = match &principal {
        Principal::Staff { user, .. } => Some(user.as_uuid()),
        _ => None,
    };
    let can_manage = matches!(
        authorize(&principal, Operation::UserManage, None),
        Decision::Allow
    );
    let Json(list) = users::list(State(state), Extension(principal)).await?;
    let status = if invite.email_error.is_some()
        || invite.name_error.is_some()
        || invite.role_error.is_some()
        || invite.other_error.is_some()
    {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok(page.render_with_status(
        status,
        &UsersPage {
            page: &page,
            frame: &frame,
            users: list
                .users
                .into_iter()
                .map(|u| UserRow {
                    is_me: Some(u.id) == me,
                    id: u.id.to_string(),
                    name: u.display_name,
                    email: u.email,
                    role: u.role,
                    privacy_officer: u.privacy_officer,
                    mfa_enrolled: u.mfa_enrolled,
                    disabled: u.disabled,
                })
                .collect(),
            can_manage,
            roles: Role::ALL.map(Role::as_str),
            invite,
            notice,
            error,
        },
    ))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let notice = match query.ok().and_then(|q| q.0.done).as_deref() {
        Some("invited") => {
            Some("Invitation sent: they choose a password from the email within 72 hours.")
        }
        Some("added") => {
            Some("This person already had a Salve account: they were added to the practice.")
        }
        Some("role") => Some("Role changed; their sessions in this practice have ended."),
        Some("mfa") => Some("Authenticator removed; they enrol a new one at their next sign-in."),
        Some("disabled") => Some(
            "Disabled in this practice: their sessions here have ended and they cannot sign in here.",
        ),
        Some("enabled") => Some("Enabled again: they can sign in to this practice."),
        _ => None,
    };
    render(
        state,
        page,
        principal,
        session,
        InviteForm::default(),
        notice,
        None,
    )
    .await
}

pub(crate) async fn invite(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = FormFields::parse(&body);
    let mut form = InviteForm {
        email: f.get("email").trim().to_owned(),
        name: f.get("display_name").trim().to_owned(),
        role: f.get("role"),
        ..InviteForm::default()
    };
    let result = account::invite(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: InviteBody {
                email: form.email.clone(),
                display_name: form.name.clone(),
                role: form.role.clone(),
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(response) => {
            let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            let sent = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["invitation_sent"].as_bool())
                .unwrap_or(true);
            Ok(page.redirect(if sent {
                "/admin/users?done=invited"
            } else {
                "/admin/users?done=added"
            }))
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            for field in &e.errors {
                let message = format!("Expected {}.", field.expected);
                match field.field.as_str() {
                    "email" => form.email_error = Some(message),
                    "display_name" => form.name_error = Some(message),
                    "role" => form.role_error = Some("Choose a role.".into()),
                    _ => form.other_error = Some(message),
                }
            }
            render(state, page, principal, session, form, None, None).await
        }
        Err(e) if e.status == StatusCode::CONFLICT => {
            form.other_error = Some(e.detail.clone());
            render(state, page, principal, session, form, None, None).await
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn set_role(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let role = FormFields::parse(&body).get("role");
    users::set_role(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id),
        JsonBody {
            value: RoleBody { role },
            sha256: [0; 32],
        },
    )
    .await?;
    Ok(page.redirect("/admin/users?done=role"))
}

pub(crate) async fn reset_mfa(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    users::reset_mfa(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id),
    )
    .await?;
    Ok(page.redirect("/admin/users?done=mfa"))
}

pub(crate) async fn disable(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let result = users::disable(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        Path(id),
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/users?done=disabled")),
        // Yourself or the last admin: the list again, with the reason.
        Err(e) if e.status == StatusCode::CONFLICT => {
            let message = format!("Not disabled: {}.", e.detail);
            render(
                state,
                page,
                principal,
                session,
                InviteForm::default(),
                None,
                Some(message),
            )
            .await
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn enable(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    users::enable(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id),
    )
    .await?;
    Ok(page.redirect("/admin/users?done=enabled"))
}

#[derive(Template)]
#[template(path = "admin/sessions.html")]
struct SessionsPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    user_id: String,
    name: String,
    sessions: Vec<crate::api::users::SessionView>,
    notice: Option<&'static str>,
}

/// `/admin/users/{id}/sessions`: one member's live sessions, each can be ended, or all.
pub(crate) async fn sessions(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let Json(list) = users::sessions(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        Path(id.clone()),
    )
    .await?;
    let Json(staff) = users::list(State(state), Extension(principal)).await?;
    let name = staff
        .users
        .into_iter()
        .find(|u| u.id.to_string() == id)
        .map(|u| u.display_name)
        .ok_or_else(|| ApiError::not_found("user"))?;
    let notice = match query.ok().and_then(|q| q.0.done).as_deref() {
        Some("ended") => Some("Session ended."),
        Some("ended-all") => Some("Every session in this practice ended."),
        _ => None,
    };
    Ok(page.render(&SessionsPage {
        page: &page,
        frame: &frame,
        user_id: id,
        name,
        sessions: list.sessions,
        notice,
    }))
}

pub(crate) async fn end_session(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path((id, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    users::end_session(
        State(state),
        Extension(principal),
        Extension(client),
        Path((id.clone(), session_id)),
    )
    .await?;
    Ok(page.redirect(&format!("/admin/users/{id}/sessions?done=ended")))
}

pub(crate) async fn end_all_sessions(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    users::end_all_sessions(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id.clone()),
    )
    .await?;
    Ok(page.redirect(&format!("/admin/users/{id}/sessions?done=ended-all")))
}

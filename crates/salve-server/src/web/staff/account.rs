//! The signed-in person's own account: their passkeys, added with the browser's WebAuthn
//! prompt (static/passkey.js drives the API's registration ceremony) and removed by a form, and
//! their live sessions in this practice, each of which they can end.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::permissions::Principal;

use super::frame;
use crate::AppState;
use crate::api::users::SessionView;
use crate::api::{passkeys, session as session_api};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::web::Page;
use crate::web::frame::StaffFrame;

pub(crate) struct PasskeyRow {
    id: String,
    created_at: String,
    last_used_at: Option<String>,
}

#[derive(Template)]
#[template(path = "staff/account.html")]
struct AccountPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    passkeys: Vec<PasskeyRow>,
    sessions: Vec<SessionView>,
    notice: Option<&'static str>,
}

async fn render(
    state: AppState,
    principal: &Principal,
    session: Option<&SessionCaller>,
    page: Page,
    notice: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let frame = match frame(&state, principal, session, "").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(caller) = session else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let list = match passkeys::list(State(state.clone()), Extension(caller.clone())).await {
        Ok(l) => l.0,
        Err(e) => return e.into_response(),
    };
    let sessions = match session_api::my_sessions(State(state), Extension(caller.clone())).await {
        Ok(l) => l.0.sessions,
        Err(e) => return e.into_response(),
    };
    page.render_with_status(
        status,
        &AccountPage {
            page: &page,
            frame: &frame,
            passkeys: list
                .passkeys
                .into_iter()
                .map(|p| PasskeyRow {
                    id: p.id.to_string(),
                    created_at: p.created_at,
                    last_used_at: p.last_used_at,
                })
                .collect(),
            sessions,
            notice,
        },
    )
}

/// GET /account
pub(crate) async fn show(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
) -> Response {
    render(
        state,
        &principal,
        session.as_deref(),
        page,
        None,
        StatusCode::OK,
    )
    .await
}

/// POST /account/passkeys/{id}/remove, through the API (which audits it).
pub(crate) async fn remove(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
) -> Response {
    let Some(caller) = session.as_deref() else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let (notice, status) = match passkeys::remove(
        State(state.clone()),
        Extension(client),
        Extension(caller.clone()),
        Path(id),
    )
    .await
    {
        Ok(_) => (Some("The passkey was removed."), StatusCode::OK),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            (Some("That passkey is already gone."), StatusCode::NOT_FOUND)
        }
        Err(e) => return e.into_response(),
    };
    render(state, &principal, Some(caller), page, notice, status).await
}

/// POST /account/sessions/{id}/end: ends another of one's own sessions, through the API (which
/// audits it).
pub(crate) async fn end_session(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
) -> Response {
    let Some(caller) = session.as_deref() else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let (notice, status) = match session_api::end_my_session(
        State(state.clone()),
        Extension(client),
        Extension(caller.clone()),
        Path(id),
    )
    .await
    {
        Ok(_) => (Some("That session was signed out."), StatusCode::OK),
        Err(e) if e.status == StatusCode::NOT_FOUND => (
            Some("That session had already ended."),
            StatusCode::NOT_FOUND,
        ),
        Err(e) => return e.into_response(),
    };
    render(state, &principal, Some(caller), page, notice, status).await
}

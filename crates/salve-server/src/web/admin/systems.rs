//! `/admin/systems`: the SMART backend-services clients an EHR or script signs in as (register
//! with public keys and scopes, disable), each action the API operation of the same name.

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
use crate::api::smart::{self, ClientBody, ClientView};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

/// What the register form held, to show it again with the reasons it was refused.
#[derive(Default)]
pub(crate) struct Draft {
    name: String,
    jwks: String,
    scopes: Vec<String>,
}

#[derive(Template)]
#[template(path = "admin/systems.html")]
struct SystemsPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    clients: Vec<ClientView>,
    token_endpoint: String,
    offered: Vec<String>,
    draft: Draft,
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
    draft: Draft,
    errors: Vec<String>,
    notice: Option<&'static str>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let Json(config) = smart::configuration(State(state.clone())).await;
    let Json(list) = smart::list(State(state), Extension(principal)).await?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(page.render_with_status(
        status,
        &SystemsPage {
            page: &page,
            frame: &frame,
            clients: list.clients,
            token_endpoint: config.token_endpoint,
            offered: config.scopes_supported,
            draft,
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
        Some("registered") => Some("System registered. Give it the client id and token URL below."),
        Some("disabled") => Some("System disabled: its tokens stopped working."),
        _ => None,
    };
    render(
        state,
        page,
        principal,
        session,
        Draft::default(),
        Vec::new(),
        notice,
    )
    .await
}

pub(crate) async fn register(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = FormFields::parse(&body);
    let draft = Draft {
        name: form.get("name"),
        jwks: form.get("jwks"),
        scopes: form.all("scopes").map(str::to_owned).collect(),
    };
    let jwks = match serde_json::from_str(&draft.jwks) {
        Ok(value) => value,
        Err(_) => {
            let errors = vec![
                "Public keys: paste the system's JWK Set as JSON ({\"keys\": [...]}).".to_owned(),
            ];
            return render(state, page, principal, session, draft, errors, None).await;
        }
    };
    let result = smart::register(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: ClientBody {
                name: draft.name.clone(),
                jwks,
                scopes: draft.scopes.clone(),
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/systems?done=registered")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let errors = e
                .errors
                .iter()
                .map(|f| {
                    let field = match f.field.as_str() {
                        "jwks" => "Public keys",
                        "scopes" => "Access",
                        _ => "Name",
                    };
                    format!("{field}: {}.", f.expected)
                })
                .collect();
            render(state, page, principal, session, draft, errors, None).await
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn disable(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    smart::disable(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id),
    )
    .await?;
    Ok(page.redirect("/admin/systems?done=disabled"))
}

//! `/admin/ehr`: the practice's EHR connection (where Salve writes messages, transcripts and
//! consent; how it signs in there; Salve's public keys to register), through the API
//! operations of the same name.

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
use crate::api::ehr::{self, AuthBody, ConnectionBody, ConnectionView};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

/// What the form holds (the connection on file, or what was submitted). Secrets are never
/// put back into the form.
#[derive(Default)]
pub(crate) struct Draft {
    base_url: String,
    auth: String,
    client_id: String,
    token_url: String,
    system: String,
    write: String,
    push_consent: bool,
    enabled: bool,
}

#[derive(Template)]
#[template(path = "admin/ehr.html")]
struct EhrPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    current: Option<ConnectionView>,
    jwks: Option<String>,
    draft: Draft,
    errors: Vec<String>,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

fn draft_of(v: &ConnectionView) -> Draft {
    Draft {
        base_url: v.base_url.clone(),
        auth: v.auth.clone(),
        client_id: v.client_id.clone().unwrap_or_default(),
        token_url: v.token_url.clone().unwrap_or_default(),
        system: v.patient_identifier_system.clone(),
        write: v.write.clone(),
        push_consent: v.push_consent,
        enabled: v.enabled,
    }
}

async fn render(
    state: AppState,
    page: Page,
    principal: Principal,
    session: Option<Extension<SessionCaller>>,
    draft: Option<Draft>,
    errors: Vec<String>,
    notice: Option<&'static str>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let current = match ehr::read(State(state), Extension(principal)).await {
        Ok(Json(v)) => Some(v),
        Err(e) if e.status == StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let draft = draft.unwrap_or_else(|| {
        current.as_ref().map(draft_of).unwrap_or_else(|| Draft {
            auth: "smart".into(),
            write: "communication".into(),
            ..Draft::default()
        })
    });
    let jwks = current
        .as_ref()
        .and_then(|c| c.jwks.as_ref())
        .and_then(|j| serde_json::to_string_pretty(j).ok());
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(page.render_with_status(
        status,
        &EhrPage {
            page: &page,
            frame: &frame,
            current,
            jwks,
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
        Some("saved") => Some("EHR connection saved."),
        _ => None,
    };
    render(state, page, principal, session, None, Vec::new(), notice).await
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
    let draft = Draft {
        base_url: form.get("base_url"),
        auth: form.get("auth"),
        client_id: form.get("client_id"),
        token_url: form.get("token_url"),
        system: form.get("patient_identifier_system"),
        write: form.get("write"),
        push_consent: form.get("push_consent") == "on",
        enabled: form.get("enabled") == "on",
    };
    let token = form.get("token");
    let auth = if draft.auth == "bearer" {
        AuthBody::Bearer {
            token: (!token.trim().is_empty()).then_some(token),
        }
    } else {
        AuthBody::Smart {
            client_id: draft.client_id.clone(),
            token_url: draft.token_url.clone(),
            new_key: form.get("new_key") == "on",
        }
    };
    let result = ehr::save(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: ConnectionBody {
                base_url: draft.base_url.clone(),
                auth,
                patient_identifier_system: draft.system.clone(),
                write: draft.write.clone(),
                push_consent: draft.push_consent,
                enabled: draft.enabled,
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/ehr?done=saved")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let errors = e
                .errors
                .iter()
                .map(|f| {
                    let field = match f.field.as_str() {
                        "base_url" => "FHIR base URL",
                        "auth.token" => "Bearer token",
                        "auth.client_id" => "Client id",
                        "auth.token_url" => "Token URL",
                        "patient_identifier_system" => "MRN identifier system",
                        "write" => "What to write",
                        _ => "Connection",
                    };
                    format!("{field}: {}.", f.expected)
                })
                .collect();
            render(state, page, principal, session, Some(draft), errors, None).await
        }
        Err(e) => Err(e),
    }
}

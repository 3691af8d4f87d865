//! Practice settings pages: the SMS-safe catalog (`/admin/catalog`), saved replies
//! (`/admin/templates`), and the practice's messaging profile (`/admin/practice`). Each calls the
//! API operation of the same name; the channel policy's verdicts come from the API's answers.

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_core::permissions::{Decision, Operation, Principal, authorize};
use serde::Deserialize;

use super::{FormFields, frame};
use crate::AppState;
use crate::api::consent::{self, CatalogItemView, MessagingSettingsBody, TemplateBody};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

fn can_manage(principal: &Principal) -> bool {
    matches!(
        authorize(principal, Operation::CatalogManage, None),
        Decision::Allow
    )
}

#[derive(Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

fn done(query: Result<Query<DoneQuery>, QueryRejection>) -> Option<String> {
    query.ok().and_then(|q| q.0.done)
}

/// Problem fields as one sentence for a form.
fn expected(e: &ApiError) -> String {
    if e.errors.is_empty() {
        return e.detail.clone();
    }
    e.errors
        .iter()
        .map(|f| format!("{}: {}", f.field.replace('_', " "), f.expected))
        .collect::<Vec<_>>()
        .join("; ")
}

// ---- catalog ---------------------------------------------------------------------------------

pub(crate) struct CatalogRow {
    pub kind: String,
    pub kind_label: &'static str,
    pub name: String,
    pub sms_safe: bool,
    pub active: bool,
    pub warnings: Vec<String>,
}

#[derive(Template)]
#[template(path = "admin/catalog.html")]
struct CatalogPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    items: Vec<CatalogRow>,
    can_manage: bool,
    notice: Option<String>,
    error: Option<String>,
    name: String,
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "appointment_type" => "Appointment type",
        "location" => "Location",
        "provider" => "Provider",
        _ => "Other",
    }
}

async fn render_catalog(
    state: AppState,
    page: Page,
    principal: Principal,
    session: Option<Extension<SessionCaller>>,
    notice: Option<String>,
    error: Option<String>,
    name: String,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let manage = can_manage(&principal);
    let Json(list) = consent::catalog(State(state), Extension(principal)).await?;
    let mut items: Vec<CatalogRow> = list
        .items
        .into_iter()
        .map(|i| CatalogRow {
            kind_label: kind_label(&i.kind),
            kind: i.kind,
            name: i.name,
            sms_safe: i.sms_safe,
            active: i.active,
            warnings: i.policy_warnings,
        })
        .collect();
    items.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page.render_with_status(
        status,
        &CatalogPage {
            page: &page,
            frame: &frame,
            items,
            can_manage: manage,
            notice,
            error,
            name,
        },
    ))
}

pub(crate) async fn catalog(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let notice = done(query)
        .filter(|d| d == "saved")
        .map(|_| "Saved.".to_owned());
    render_catalog(state, page, principal, session, notice, None, String::new()).await
}

pub(crate) async fn save_catalog_item(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = FormFields::parse(&body);
    let name = f.get("name");
    if name.trim().is_empty() {
        return render_catalog(
            state,
            page,
            principal,
            session,
            None,
            Some("Give the item a name.".into()),
            name,
        )
        .await;
    }
    let result = consent::upsert_catalog_item(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: CatalogItemView {
                id: None,
                kind: f.get("kind"),
                name: name.clone(),
                sms_safe: f.get("sms_safe") == "yes",
                active: f.get("active") == "yes",
                policy_warnings: Vec::new(),
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/catalog?done=saved")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let why = format!("Not saved: {}.", expected(&e));
            render_catalog(state, page, principal, session, None, Some(why), name).await
        }
        Err(e) => Err(e),
    }
}

// ---- saved replies ---------------------------------------------------------------------------

pub(crate) struct TemplateRow {
    pub id: String,
    pub name: String,
    pub body: String,
    pub active: bool,
    pub route: String,
    pub reasons: Vec<String>,
    pub variables: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/templates.html")]
struct TemplatesPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    templates: Vec<TemplateRow>,
    can_manage: bool,
    notice: Option<String>,
    /// The new-template form as submitted, and why it was refused.
    new_name: String,
    new_body: String,
    new_error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn render_templates(
    state: AppState,
    page: Page,
    principal: Principal,
    session: Option<Extension<SessionCaller>>,
    notice: Option<String>,
    new: (String, String, Option<String>),
    row_error: Option<(String, String)>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let manage = can_manage(&principal);
    let Json(list) = consent::templates(State(state), Extension(principal)).await?;
    let failed = new.2.is_some() || row_error.is_some();
    let templates = list
        .templates
        .into_iter()
        .map(|t| {
            let id = t.id.to_string();
            TemplateRow {
                error: row_error
                    .as_ref()
                    .filter(|(rid, _)| *rid == id)
                    .map(|(_, why)| why.clone()),
                id,
                name: t.name,
                body: t.body,
                active: t.active,
                route: t.route,
                reasons: t.reasons.into_iter().map(|r| r.explanation).collect(),
                variables: t.variables.join(", "),
            }
        })
        .collect();
    Ok(page.render_with_status(
        if failed {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        &TemplatesPage {
            page: &page,
            frame: &frame,
            templates,
            can_manage: manage,
            notice,
            new_name: new.0,
            new_body: new.1,
            new_error: new.2,
        },
    ))
}

pub(crate) async fn templates(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let notice = done(query)
        .filter(|d| d == "saved")
        .map(|_| "Saved.".to_owned());
    render_templates(
        state,
        page,
        principal,
        session,
        notice,
        (String::new(), String::new(), None),
        None,
    )
    .await
}

pub(crate) async fn create_template(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = FormFields::parse(&body);
    let (name, text) = (f.get("name"), f.get("body"));
    let result = consent::create_template(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: TemplateBody {
                name: name.clone(),
                body: text.clone(),
                active: true,
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/templates?done=saved")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let why = format!("Not saved: {}.", expected(&e));
            render_templates(
                state,
                page,
                principal,
                session,
                None,
                (name, text, Some(why)),
                None,
            )
            .await
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn update_template(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = FormFields::parse(&body);
    let result = consent::update_template(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        Path(id.clone()),
        JsonBody {
            value: TemplateBody {
                name: f.get("name"),
                body: f.get("body"),
                active: f.get("active") == "yes",
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/templates?done=saved")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let why = format!("Not saved: {}.", expected(&e));
            render_templates(
                state,
                page,
                principal,
                session,
                None,
                (String::new(), String::new(), None),
                Some((id, why)),
            )
            .await
        }
        Err(e) => Err(e),
    }
}

// ---- the practice's messaging profile -------------------------------------------------------

#[derive(Default)]
pub(crate) struct ProfileErrors {
    pub sender_name: Option<String>,
    pub phone: Option<String>,
    pub hours_text: Option<String>,
    pub expected_reply_text: Option<String>,
    pub on_call_number: Option<String>,
    pub other: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/practice.html")]
struct PracticePage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    can_manage: bool,
    s: MessagingSettingsBody,
    errors: ProfileErrors,
    notice: Option<String>,
}

pub(crate) async fn practice(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let manage = can_manage(&principal);
    let Json(s) = consent::messaging_settings(State(state), Extension(principal)).await?;
    Ok(page.render(&PracticePage {
        page: &page,
        frame: &frame,
        can_manage: manage,
        s,
        errors: ProfileErrors::default(),
        notice: done(query)
            .filter(|d| d == "saved")
            .map(|_| "Saved: texts and system messages use these from now on.".to_owned()),
    }))
}

pub(crate) async fn save_practice(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = FormFields::parse(&body);
    let on_call = f.get("on_call_number");
    let submitted = || MessagingSettingsBody {
        sender_name: f.get("sender_name"),
        phone: f.get("phone"),
        hours_text: f.get("hours_text"),
        expected_reply_text: f.get("expected_reply_text"),
        on_call_number: Some(on_call.clone()).filter(|n| !n.trim().is_empty()),
        front_desk_sees_clinical: f.get("front_desk_sees_clinical") == "yes",
    };
    let result = consent::set_messaging_settings(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: submitted(),
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/practice?done=saved")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let mut errors = ProfileErrors::default();
            for field in &e.errors {
                let message = format!("Expected {}.", field.expected);
                match field.field.as_str() {
                    "sender_name" => errors.sender_name = Some(message),
                    "phone" => errors.phone = Some(message),
                    "hours_text" => errors.hours_text = Some(message),
                    "expected_reply_text" => errors.expected_reply_text = Some(message),
                    "on_call_number" => errors.on_call_number = Some(message),
                    _ => errors.other = Some(message),
                }
            }
            if e.errors.is_empty() {
                errors.other = Some(e.detail.clone());
            }
            let frame = frame(&state, &principal, session, "/admin").await?;
            Ok(page.render_with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &PracticePage {
                    page: &page,
                    frame: &frame,
                    can_manage: can_manage(&principal),
                    s: submitted(),
                    errors,
                    notice: None,
                },
            ))
        }
        Err(e) => Err(e),
    }
}

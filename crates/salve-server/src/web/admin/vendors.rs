//! `/admin/providers` (the practice's SMS and email providers, each with the Business Associate
//! Agreement or self-operation attestation that lets it carry patient data) and
//! `/admin/carrier` (the checklist for registering texting numbers with US carriers).

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_core::permissions::{Decision, Operation, Principal, authorize};
use serde::Deserialize;

use super::{FormFields, frame};
use crate::AppState;
use crate::api::carrier::{self, CarrierQuery, CarrierRegistrationView};
use crate::api::providers::{self, AgreementBody, ProviderView};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

/// The agreement form as submitted, and why it was refused.
#[derive(Default)]
pub(crate) struct AgreementForm {
    pub vendor: String,
    pub basis: String,
    pub signed_on: String,
    pub expires_on: String,
    pub document_sha256: String,
    pub attested_on: String,
    pub errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "admin/providers.html")]
struct ProvidersPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    providers: Vec<ProviderView>,
    can_manage: bool,
    form: AgreementForm,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

async fn render_providers(
    state: AppState,
    page: Page,
    principal: Principal,
    session: Option<Extension<SessionCaller>>,
    form: AgreementForm,
    notice: Option<String>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let can_manage = matches!(
        authorize(&principal, Operation::ProviderManage, None),
        Decision::Allow
    );
    let Json(list) = providers::list(State(state), Extension(principal)).await?;
    let status = if form.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(page.render_with_status(
        status,
        &ProvidersPage {
            page: &page,
            frame: &frame,
            providers: list.providers,
            can_manage,
            form,
            notice,
        },
    ))
}

pub(crate) async fn providers_page(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let notice = query
        .ok()
        .and_then(|q| q.0.done)
        .filter(|d| d == "agreement")
        .map(|_| {
            "Agreement recorded. Enable the provider with it (salve admin add-provider or POST /api/v1/admin/providers).".to_owned()
        });
    render_providers(
        state,
        page,
        principal,
        session,
        AgreementForm::default(),
        notice,
    )
    .await
}

pub(crate) async fn record_agreement(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = FormFields::parse(&body);
    let mut form = AgreementForm {
        vendor: f.get("vendor").trim().to_owned(),
        basis: f.get("basis"),
        signed_on: f.get("signed_on").trim().to_owned(),
        expires_on: f.get("expires_on").trim().to_owned(),
        document_sha256: f.get("document_sha256").trim().to_lowercase(),
        attested_on: f.get("attested_on").trim().to_owned(),
        errors: Vec::new(),
    };
    let opt = |v: &str| Some(v.to_owned()).filter(|v| !v.is_empty());
    let result = providers::record_agreement(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        JsonBody {
            value: AgreementBody {
                vendor: form.vendor.clone(),
                basis: form.basis.clone(),
                signed_on: opt(&form.signed_on),
                expires_on: opt(&form.expires_on),
                document_sha256: opt(&form.document_sha256),
                attested_on: opt(&form.attested_on),
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/providers?done=agreement")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            form.errors = if e.errors.is_empty() {
                vec![e.detail.clone()]
            } else {
                e.errors
                    .iter()
                    .map(|f| format!("{}: {}", f.field.replace('_', " "), f.expected))
                    .collect()
            };
            render_providers(state, page, principal, session, form, None).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "admin/carrier.html")]
struct CarrierPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    toll_free: bool,
    view: CarrierRegistrationView,
}

#[derive(Deserialize)]
pub(crate) struct KindQuery {
    kind: Option<String>,
}

pub(crate) async fn carrier_page(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<KindQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let toll_free = query
        .ok()
        .and_then(|q| q.0.kind)
        .is_some_and(|k| k == "toll_free");
    let Json(view) = carrier::checklist(
        State(state),
        Extension(principal),
        Query(CarrierQuery {
            kind: Some(if toll_free { "toll_free" } else { "10dlc" }.to_owned()),
        }),
    )
    .await?;
    Ok(page.render(&CarrierPage {
        page: &page,
        frame: &frame,
        toll_free,
        view,
    }))
}

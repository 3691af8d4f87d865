//! Admin pages: the local outbox (demo and development), patients and their consent at intake,
//! and an index of what exists. Each handler calls the API operation the matching JSON route
//! uses, with the same declared access, and renders the typed result.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use salve_core::permissions::{Decision, Operation, Principal, authorize};

use super::frame::StaffFrame;
use super::{Page, PageRoute, page};
use crate::AppState;
use crate::auth::SessionCaller;
use crate::error::ApiError;
use crate::routes::Access;

mod ehr;
mod ehr_pull;
mod outbox;
mod oversight;
mod patients;
mod settings;
mod systems;
mod teams;
mod users;
mod vendors;

pub(crate) fn routes() -> Vec<PageRoute> {
    use Operation::*;
    vec![
        page(Method::GET, "/admin", Access::Op(UserManage), get(index)),
        page(
            Method::GET,
            "/admin/outbox",
            Access::Op(ProviderManage),
            get(outbox::show),
        ),
        page(
            Method::POST,
            "/admin/outbox/reply",
            Access::Op(ProviderManage),
            post(outbox::reply),
        ),
        page(
            Method::POST,
            "/admin/outbox/status",
            Access::Op(ProviderManage),
            post(outbox::status),
        ),
        page(
            Method::GET,
            "/admin/patients",
            Access::Op(PatientList),
            get(patients::list),
        ),
        page(
            Method::POST,
            "/admin/patients/search",
            Access::Op(PatientSearch),
            post(patients::search),
        ),
        page(
            Method::GET,
            "/admin/patients/{id}/consent",
            Access::Op(ConsentRead),
            get(patients::consent),
        ),
        page(
            Method::POST,
            "/admin/patients/{id}/consent",
            Access::Op(ConsentRecord),
            post(patients::record_consent),
        ),
        page(
            Method::POST,
            "/admin/patients/{id}/confidential",
            Access::Op(ConsentRecord),
            post(patients::record_confidential),
        ),
        page(
            Method::POST,
            "/admin/patients/{id}/confidential/{request_id}/withdraw",
            Access::Op(ConsentRecord),
            post(patients::withdraw_confidential),
        ),
        page(
            Method::GET,
            "/admin/users",
            Access::Op(UserList),
            get(users::show),
        ),
        page(
            Method::POST,
            "/admin/users/invite",
            Access::Op(UserManage),
            post(users::invite),
        ),
        page(
            Method::POST,
            "/admin/users/{id}/role",
            Access::Op(UserManage),
            post(users::set_role),
        ),
        page(
            Method::POST,
            "/admin/users/{id}/mfa-reset",
            Access::Op(UserManage),
            post(users::reset_mfa),
        ),
        page(
            Method::POST,
            "/admin/users/{id}/disable",
            Access::Op(UserManage),
            post(users::disable),
        ),
        page(
            Method::POST,
            "/admin/users/{id}/enable",
            Access::Op(UserManage),
            post(users::enable),
        ),
        page(
            Method::GET,
            "/admin/users/{id}/sessions",
            Access::Op(UserManage),
            get(users::sessions),
        ),
        page(
            Method::POST,
            "/admin/users/{id}/sessions/end-all",
            Access::Op(UserManage),
            post(users::end_all_sessions),
        ),
        page(
            Method::POST,
            "/admin/users/{id}/sessions/{session_id}/end",
            Access::Op(UserManage),
            post(users::end_session),
        ),
        page(
            Method::GET,
            "/admin/guidelines",
            Access::Op(GuidelinesEdit),
            get(oversight::guidelines),
        ),
        page(
            Method::POST,
            "/admin/guidelines",
            Access::Op(GuidelinesEdit),
            post(oversight::publish_guidelines),
        ),
        page(
            Method::GET,
            "/admin/restricted",
            Access::Op(PatientRestrict),
            get(oversight::restricted),
        ),
        page(
            Method::POST,
            "/admin/restricted/{id}",
            Access::Op(PatientRestrict),
            post(oversight::save_restriction),
        ),
        page(
            Method::GET,
            "/admin/ehr",
            Access::Op(TokenManage),
            get(ehr::show),
        ),
        page(
            Method::POST,
            "/admin/ehr",
            Access::Op(TokenManage),
            post(ehr::save),
        ),
        page(
            Method::GET,
            "/admin/ehr/pull",
            Access::Op(TokenManage),
            get(ehr_pull::show),
        ),
        page(
            Method::POST,
            "/admin/ehr/pull",
            Access::Op(TokenManage),
            post(ehr_pull::save),
        ),
        page(
            Method::POST,
            "/admin/ehr/pull/run",
            Access::Op(TokenManage),
            post(ehr_pull::run),
        ),
        page(
            Method::GET,
            "/admin/systems",
            Access::Op(TokenManage),
            get(systems::show),
        ),
        page(
            Method::POST,
            "/admin/systems",
            Access::Op(TokenManage),
            post(systems::register),
        ),
        page(
            Method::POST,
            "/admin/systems/{id}/disable",
            Access::Op(TokenManage),
            post(systems::disable),
        ),
        page(
            Method::GET,
            "/admin/teams",
            Access::Op(TeamManage),
            get(teams::show),
        ),
        page(
            Method::POST,
            "/admin/teams",
            Access::Op(TeamManage),
            post(teams::create),
        ),
        page(
            Method::POST,
            "/admin/teams/{id}/name",
            Access::Op(TeamManage),
            post(teams::rename),
        ),
        page(
            Method::POST,
            "/admin/teams/{id}/members",
            Access::Op(TeamManage),
            post(teams::set_members),
        ),
        page(
            Method::POST,
            "/admin/teams/{id}/delete",
            Access::Op(TeamManage),
            post(teams::delete),
        ),
        page(
            Method::GET,
            "/admin/catalog",
            Access::Op(CatalogRead),
            get(settings::catalog),
        ),
        page(
            Method::POST,
            "/admin/catalog",
            Access::Op(CatalogManage),
            post(settings::save_catalog_item),
        ),
        page(
            Method::GET,
            "/admin/templates",
            Access::Op(CatalogRead),
            get(settings::templates),
        ),
        page(
            Method::POST,
            "/admin/templates",
            Access::Op(CatalogManage),
            post(settings::create_template),
        ),
        page(
            Method::POST,
            "/admin/templates/{id}",
            Access::Op(CatalogManage),
            post(settings::update_template),
        ),
        page(
            Method::GET,
            "/admin/practice",
            Access::Op(CatalogRead),
            get(settings::practice),
        ),
        page(
            Method::POST,
            "/admin/practice",
            Access::Op(CatalogManage),
            post(settings::save_practice),
        ),
        page(
            Method::GET,
            "/admin/providers",
            Access::Op(VendorRead),
            get(vendors::providers_page),
        ),
        page(
            Method::POST,
            "/admin/providers/agreements",
            Access::Op(ProviderManage),
            post(vendors::record_agreement),
        ),
        page(
            Method::GET,
            "/admin/carrier",
            Access::Op(VendorRead),
            get(vendors::carrier_page),
        ),
    ]
}

/// The frame of an admin page; pages are for signed-in staff (an API token gets a refusal).
pub(super) async fn frame(
    state: &AppState,
    principal: &Principal,
    session: Option<Extension<SessionCaller>>,
    current: &str,
) -> Result<StaffFrame, ApiError> {
    let Some(Extension(session)) = session else {
        return Err(ApiError::forbidden("pages are for signed-in staff"));
    };
    StaffFrame::load(state, principal, &session, current).await
}

/// A urlencoded form's fields, in order (a field may repeat: checkboxes).
pub(super) struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub(super) fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `name`, or "".
    pub(super) fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One entry of the admin index.
pub(super) struct Section {
    pub href: &'static str,
    pub title: &'static str,
    pub about: &'static str,
}

const SECTIONS: &[(&str, &str, &str, Operation)] = &[
    (
        "/admin/patients",
        "Patients and consent",
        "Find a patient and record their consent at intake, or a confidential-communication request.",
        Operation::ConsentRecord,
    ),
    (
        "/admin/users",
        "Staff",
        "Staff accounts and roles: invite someone, change a role, reset a lost authenticator.",
        Operation::UserManage,
    ),
    (
        "/admin/teams",
        "Teams",
        "Teams conversations can be assigned to: create, rename, delete, choose members.",
        Operation::TeamManage,
    ),
    (
        "/admin/restricted",
        "Restricted patients",
        "Patients only named staff may see, and who those staff are.",
        Operation::PatientRestrict,
    ),
    (
        "/admin/guidelines",
        "Messaging guidelines",
        "Publish the practice's messaging guidelines and see who acknowledged which version.",
        Operation::GuidelinesEdit,
    ),
    (
        "/admin/catalog",
        "SMS-safe catalog",
        "Appointment types, locations and providers, and which may appear in plain texts.",
        Operation::CatalogManage,
    ),
    (
        "/admin/templates",
        "Saved replies",
        "Reply templates staff pick in the composer, with the channel policy's verdict.",
        Operation::CatalogManage,
    ),
    (
        "/admin/practice",
        "Practice profile",
        "The sender name texts are signed with, phone, hours and expected reply time.",
        Operation::CatalogManage,
    ),
    (
        "/admin/providers",
        "Providers",
        "SMS and email providers, and the Business Associate Agreements that cover them.",
        Operation::VendorRead,
    ),
    (
        "/admin/carrier",
        "Carrier registration",
        "What to submit to register the practice's texting numbers with US carriers.",
        Operation::VendorRead,
    ),
    (
        "/admin/systems",
        "Connected systems",
        "EHRs and scripts that sign in with their own keys (SMART backend services), and what they may read or write.",
        Operation::TokenManage,
    ),
    (
        "/admin/ehr",
        "EHR connection",
        "Write messages, conversation transcripts and consent changes into the practice's EHR.",
        Operation::TokenManage,
    ),
    (
        "/admin/ehr/pull",
        "Reading from the EHR",
        "Take patients and appointments from the practice's EHR on a schedule, and see how the last run went.",
        Operation::TokenManage,
    ),
    (
        "/admin/outbox",
        "Outbox",
        "Every text and email the local outbox \"sent\" (demo and development): reply as the patient, mark delivered.",
        Operation::ProviderManage,
    ),
];

#[derive(Template)]
#[template(path = "admin/index.html")]
struct IndexPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    sections: Vec<Section>,
}

async fn index(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let sections = SECTIONS
        .iter()
        .filter(|(_, _, _, op)| matches!(authorize(&principal, *op, None), Decision::Allow))
        .map(|(href, title, about, _)| Section { href, title, about })
        .collect();
    Ok(page.render(&IndexPage {
        page: &page,
        frame: &frame,
        sections,
    }))
}

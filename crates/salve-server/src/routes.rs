//! The route table: every route with its method, path, the access it requires, and whether it
//! counts as user activity. The router is built from it, and tests enumerate it, so a route
//! cannot exist without a declared access.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::clock::to_micros;
use salve_core::permissions::{Decision, DenyReason, Operation, Principal, authorize};
use salve_store::SessionStage;

use crate::AppState;
use crate::api::{
    account, announcements, appointments, carrier, consent, ehr, ehr_pull, health, hours, inbound,
    inbox_events, messages, outbox, oversight, passkeys, patients, portal, portal_login,
    portal_messages, providers, reminders, session, smart, teams, tokens, users, webhooks,
};
use crate::auth::{self, Caller};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::fhir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials; serves no patient data.
    Public,
    /// An API token with the operation's scope, or a signed-in staff member whose role allows it.
    Op(Operation),
    /// As `Op`, for any one of these operations; the handler asks `authorize` for each part of
    /// the request (a FHIR transaction's entries).
    OpAny(&'static [Operation]),
    /// A staff session cookie at one of these sign-in stages.
    Session(&'static [SessionStage]),
    /// The metrics token (when metrics are served on the main listener).
    MetricsToken,
    /// A patient holding a secure link (checked by the handler: the link's state decides).
    PatientLink,
    /// A patient who verified through a secure link (checked by the handler).
    PatientSession,
    /// A staff invitation or password-reset link (checked by the handler).
    AccountLink,
    /// A provider's webhook: its signature, for the provider the path names (checked by the
    /// handler, which audits a refusal).
    ProviderSignature,
    /// A SMART client's signed JWT assertion, verified with its registered keys (checked by
    /// the handler, which audits a refusal).
    ClientAssertion,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// Requests that do not keep a session alive (status polling, live-update streams).
    pub passive: bool,
    /// An HTML page: CSRF-token checked, and refusals become a sign-in redirect or an error page.
    pub page: bool,
}

const ACTIVE: &[SessionStage] = &[SessionStage::Active];
const MFA: &[SessionStage] = &[SessionStage::Mfa];
const ENROLL: &[SessionStage] = &[SessionStage::Enroll];
const ANY_STAGE: &[SessionStage] = &[
    SessionStage::Mfa,
    SessionStage::Enroll,
    SessionStage::Active,
];

fn table() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    use Access::*;
    use Operation::*;
    let r =
        |method: Method, path: &'static str, access: Access, handler: MethodRouter<AppState>| {
            (
                RouteSpec {
                    method,
                    path,
                    access,
                    passive: false,
                    page: false,
                },
                handler,
            )
        };
    let passive = |(mut spec, handler): (RouteSpec, MethodRouter<AppState>)| {
        spec.passive = true;
        (spec, handler)
    };
    vec![
        r(Method::GET, "/healthz", Public, get(health::healthz)),
        r(Method::GET, "/readyz", Public, get(health::readyz)),
        r(
            Method::GET,
            "/metrics",
            MetricsToken,
            get(health::metrics_with_token),
        ),
        r(
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            get(crate::openapi::document),
        ),
        r(
            Method::POST,
            "/csp-report",
            Public,
            post(health::csp_report),
        ),
        r(
            Method::POST,
            "/api/v1/session",
            Public,
            post(session::sign_in),
        ),
        passive(r(
            Method::GET,
            "/api/v1/session",
            Session(ANY_STAGE),
            get(session::status),
        )),
        r(
            Method::DELETE,
            "/api/v1/session",
            Session(ANY_STAGE),
            delete(session::sign_out),
        ),
        r(
            Method::POST,
            "/api/v1/session/end-all",
            Session(ACTIVE),
            post(session::sign_out_everywhere),
        ),
        r(
            Method::GET,
            "/api/v1/session/sessions",
            Session(ACTIVE),
            get(session::my_sessions),
        ),
        r(
            Method::DELETE,
            "/api/v1/session/sessions/{id}",
            Session(ACTIVE),
            delete(session::end_my_session),
        ),
        r(
            Method::POST,
            "/api/v1/session/mfa",
            Session(MFA),
            post(session::verify_mfa),
        ),
        r(
            Method::POST,
            "/api/v1/session/mfa/enroll",
            Session(ENROLL),
            post(session::begin_enrollment),
        ),
        r(
            Method::POST,
            "/api/v1/session/mfa/confirm",
            Session(ENROLL),
            post(session::confirm_enrollment),
        ),
        r(
            Method::POST,
            "/api/v1/session/mfa/passkey",
            Session(MFA),
            post(passkeys::begin_mfa),
        ),
        r(
            Method::POST,
            "/api/v1/session/mfa/passkey/finish",
            Session(MFA),
            post(passkeys::finish_mfa),
        ),
        r(
            Method::POST,
            "/api/v1/session/passkey",
            Public,
            post(passkeys::begin_sign_in),
        ),
        r(
            Method::POST,
            "/api/v1/session/passkey/finish",
            Public,
            post(passkeys::finish_sign_in),
        ),
        r(
            Method::GET,
            "/api/v1/session/passkeys",
            Session(ACTIVE),
            get(passkeys::list),
        ),
        r(
            Method::POST,
            "/api/v1/session/passkeys/register",
            Session(ACTIVE),
            post(passkeys::begin_registration),
        ),
        r(
            Method::POST,
            "/api/v1/session/passkeys/register/finish",
            Session(ACTIVE),
            post(passkeys::finish_registration),
        ),
        r(
            Method::DELETE,
            "/api/v1/session/passkeys/{id}",
            Session(ACTIVE),
            delete(passkeys::remove),
        ),
        r(Method::GET, "/api/v1/users", Op(UserList), get(users::list)),
        r(
            Method::PUT,
            "/api/v1/users/{id}/role",
            Op(UserManage),
            put(users::set_role),
        ),
        r(
            Method::POST,
            "/api/v1/users/{id}/mfa-reset",
            Op(UserManage),
            post(users::reset_mfa),
        ),
        r(
            Method::POST,
            "/api/v1/users/{id}/disable",
            Op(UserManage),
            post(users::disable),
        ),
        r(
            Method::POST,
            "/api/v1/users/{id}/enable",
            Op(UserManage),
            post(users::enable),
        ),
        r(
            Method::GET,
            "/api/v1/users/{id}/sessions",
            Op(UserManage),
            get(users::sessions),
        ),
        r(
            Method::POST,
            "/api/v1/users/{id}/sessions/end-all",
            Op(UserManage),
            post(users::end_all_sessions),
        ),
        r(
            Method::DELETE,
            "/api/v1/users/{id}/sessions/{session_id}",
            Op(UserManage),
            delete(users::end_session),
        ),
        r(
            Method::POST,
            "/api/v1/patients",
            Op(PatientCreate),
            post(patients::create),
        ),
        r(
            Method::GET,
            "/api/v1/patients",
            Op(PatientList),
            get(patients::list),
        ),
        r(
            Method::POST,
            "/api/v1/patients/search",
            Op(PatientSearch),
            post(patients::search),
        ),
        r(
            Method::POST,
            "/api/v1/patients/lookup",
            Op(PatientLookup),
            post(patients::lookup),
        ),
        r(
            Method::GET,
            "/api/v1/patients/{id}",
            Op(PatientRead),
            get(patients::read),
        ),
        r(
            Method::PATCH,
            "/api/v1/patients/{id}",
            Op(PatientUpdate),
            patch(patients::update),
        ),
        r(
            Method::GET,
            "/api/v1/patients/restricted",
            Op(PatientRestrict),
            get(patients::restricted),
        ),
        r(
            Method::PUT,
            "/api/v1/patients/{id}/restriction",
            Op(PatientRestrict),
            put(patients::set_restriction),
        ),
        r(
            Method::POST,
            "/api/v1/patients/{id}/break-glass",
            Op(BreakGlass),
            post(oversight::break_glass),
        ),
        r(
            Method::GET,
            "/api/v1/audit/break-glass",
            Op(AuditRead),
            get(oversight::break_glass_report),
        ),
        r(
            Method::POST,
            "/api/v1/audit/break-glass/{id}/review",
            Op(BreakGlassReview),
            post(oversight::review_break_glass),
        ),
        r(
            Method::GET,
            "/api/v1/guidelines",
            Op(GuidelinesRead),
            get(oversight::guidelines),
        ),
        r(
            Method::PUT,
            "/api/v1/guidelines",
            Op(GuidelinesEdit),
            put(oversight::publish_guidelines),
        ),
        r(
            Method::POST,
            "/api/v1/guidelines/acknowledge",
            Op(GuidelinesRead),
            post(oversight::acknowledge),
        ),
        r(
            Method::GET,
            "/api/v1/guidelines/acknowledgments",
            Op(GuidelinesEdit),
            get(oversight::acknowledgments),
        ),
        r(
            Method::POST,
            "/api/v1/patients/{id}/secure-links",
            Op(SecureLinkSend),
            post(portal::send_link),
        ),
        r(
            Method::DELETE,
            "/api/v1/secure-links/{id}",
            Op(SecureLinkSend),
            delete(portal::revoke_link),
        ),
        r(
            Method::GET,
            "/p/{token}",
            PatientLink,
            get(portal::open_link),
        ),
        r(
            Method::POST,
            "/api/v1/portal/birth-date",
            PatientLink,
            post(portal::submit_birth_date),
        ),
        r(
            Method::POST,
            "/api/v1/portal/code",
            PatientLink,
            post(portal::submit_code),
        ),
        r(
            Method::GET,
            "/api/v1/portal/me",
            PatientSession,
            get(portal::me),
        ),
        r(
            Method::POST,
            "/api/v1/portal/account",
            PatientSession,
            post(portal_login::create_account),
        ),
        r(
            Method::POST,
            "/api/v1/portal/account/confirm",
            PatientSession,
            post(portal_login::confirm_account),
        ),
        r(
            Method::POST,
            "/api/v1/portal/session",
            Public,
            post(portal_login::sign_in),
        ),
        r(
            Method::POST,
            "/api/v1/portal/session/mfa",
            PatientLink,
            post(portal_login::verify_mfa),
        ),
        r(
            Method::GET,
            "/api/v1/admin/providers",
            Op(VendorRead),
            get(providers::list),
        ),
        r(
            Method::GET,
            "/api/v1/admin/carrier-registration",
            Op(VendorRead),
            get(carrier::checklist),
        ),
        r(
            Method::POST,
            "/api/v1/admin/providers",
            Op(ProviderManage),
            post(providers::create),
        ),
        r(
            Method::POST,
            "/api/v1/admin/agreements",
            Op(ProviderManage),
            post(providers::record_agreement),
        ),
        r(
            Method::POST,
            "/api/v1/admin/providers/{id}/agreement",
            Op(ProviderManage),
            post(providers::renew_agreement),
        ),
        r(
            Method::GET,
            "/api/v1/inbound/triage",
            Op(InboundTriage),
            get(inbound::triage),
        ),
        r(
            Method::POST,
            "/api/v1/inbound/triage/{id}/attribute",
            Op(InboundTriage),
            post(inbound::attribute),
        ),
        r(
            Method::GET,
            "/api/v1/inbound/reviews",
            Op(InboundTriage),
            get(inbound::reviews),
        ),
        r(
            Method::POST,
            "/api/v1/inbound/reviews/{id}",
            Op(InboundTriage),
            post(inbound::decide),
        ),
        r(
            Method::GET,
            "/api/v1/admin/outbox",
            Op(ProviderManage),
            get(outbox::list),
        ),
        r(
            Method::POST,
            "/api/v1/admin/outbox/inbound",
            Op(ProviderManage),
            post(outbox::simulate_inbound),
        ),
        r(
            Method::POST,
            "/api/v1/admin/outbox/status",
            Op(ProviderManage),
            post(outbox::simulate_status),
        ),
        r(
            Method::POST,
            "/webhooks/twilio/{id}/inbound",
            ProviderSignature,
            post(webhooks::twilio),
        ),
        r(
            Method::POST,
            "/webhooks/twilio/{id}/status",
            ProviderSignature,
            post(webhooks::twilio),
        ),
        r(
            Method::POST,
            "/webhooks/telnyx/{id}",
            ProviderSignature,
            post(webhooks::telnyx),
        ),
        r(
            Method::GET,
            "/api/v1/announcements",
            Op(AnnouncementRead),
            get(announcements::list),
        ),
        r(
            Method::POST,
            "/api/v1/announcements",
            Op(AnnouncementSend),
            post(announcements::create),
        ),
        r(
            Method::POST,
            "/api/v1/announcements/preview",
            Op(AnnouncementSend),
            post(announcements::preview),
        ),
        r(
            Method::GET,
            "/api/v1/announcements/{id}",
            Op(AnnouncementRead),
            get(announcements::read),
        ),
        r(
            Method::POST,
            "/api/v1/announcements/{id}/send",
            Op(AnnouncementSend),
            post(announcements::send),
        ),
        r(
            Method::POST,
            "/api/v1/announcements/{id}/cancel",
            Op(AnnouncementSend),
            post(announcements::cancel),
        ),
        r(Method::GET, "/api/v1/teams", Op(UserList), get(teams::list)),
        r(
            Method::POST,
            "/api/v1/teams",
            Op(TeamManage),
            post(teams::create),
        ),
        r(
            Method::PUT,
            "/api/v1/teams/{id}/members",
            Op(TeamManage),
            put(teams::set_members),
        ),
        r(
            Method::PUT,
            "/api/v1/teams/{id}",
            Op(TeamManage),
            put(teams::rename),
        ),
        r(
            Method::DELETE,
            "/api/v1/teams/{id}",
            Op(TeamManage),
            delete(teams::delete),
        ),
        r(
            Method::POST,
            "/api/v1/users/invite",
            Op(UserManage),
            post(account::invite),
        ),
        r(
            Method::POST,
            "/api/v1/password-reset",
            Public,
            post(account::request_reset),
        ),
        r(
            Method::GET,
            "/invite/{token}",
            AccountLink,
            get(account::open_account_link),
        ),
        r(
            Method::GET,
            "/reset/{token}",
            AccountLink,
            get(account::open_account_link),
        ),
        r(
            Method::POST,
            "/api/v1/account/password",
            AccountLink,
            post(account::set_password),
        ),
        r(
            Method::GET,
            "/api/v1/conversations",
            Op(ConversationList),
            get(messages::list),
        ),
        r(
            Method::GET,
            "/api/v1/conversations/{id}",
            Op(ConversationRead),
            get(messages::read),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/{id}/notes",
            Op(MessageNote),
            post(messages::note),
        ),
        r(
            Method::PUT,
            "/api/v1/conversations/{id}/assignment",
            Op(ConversationManage),
            put(messages::assign),
        ),
        r(
            Method::PUT,
            "/api/v1/conversations/{id}/state",
            Op(ConversationManage),
            put(messages::set_state),
        ),
        r(
            Method::POST,
            "/api/v1/conversations/{id}/read",
            Op(ConversationManage),
            post(messages::mark_read),
        ),
        r(
            Method::POST,
            "/api/v1/patients/{id}/messages",
            Op(MessageSend),
            post(messages::send).layer(DefaultBodyLimit::max(messages::ATTACHMENT_BODY_LIMIT)),
        ),
        r(
            Method::POST,
            "/api/v1/patients/{id}/messages/preview",
            Op(MessageSend),
            post(messages::preview).layer(DefaultBodyLimit::max(messages::ATTACHMENT_BODY_LIMIT)),
        ),
        r(
            Method::POST,
            "/api/v1/patients/{id}/conversations",
            Op(MessageSend),
            post(messages::create_topic),
        ),
        r(
            Method::GET,
            "/api/v1/attachments/{id}",
            Op(ConversationRead),
            get(messages::attachment),
        ),
        passive(r(
            Method::GET,
            "/api/v1/inbox/events",
            Op(ConversationList),
            get(inbox_events::stream_changes),
        )),
        r(
            Method::POST,
            "/api/v1/appointments",
            Op(AppointmentWrite),
            post(appointments::create),
        ),
        r(
            Method::GET,
            "/api/v1/appointments",
            Op(AppointmentRead),
            get(appointments::list),
        ),
        r(
            Method::POST,
            "/api/v1/appointments/import",
            Op(AppointmentImport),
            post(appointments::import),
        ),
        r(
            Method::GET,
            "/api/v1/appointments/{id}",
            Op(AppointmentRead),
            get(appointments::read),
        ),
        r(
            Method::PATCH,
            "/api/v1/appointments/{id}",
            Op(AppointmentWrite),
            patch(appointments::update),
        ),
        r(
            Method::POST,
            "/api/v1/appointments/{id}/cancel",
            Op(AppointmentWrite),
            post(appointments::cancel),
        ),
        r(
            Method::GET,
            "/api/v1/patients/{id}/consent",
            Op(ConsentRead),
            get(consent::read),
        ),
        r(
            Method::POST,
            "/api/v1/patients/{id}/consent",
            Op(ConsentRecord),
            post(consent::record),
        ),
        r(
            Method::POST,
            "/api/v1/patients/{id}/consent/revoke-all",
            Op(ConsentRecord),
            post(consent::revoke_all),
        ),
        r(
            Method::POST,
            "/api/v1/patients/{id}/confidential-requests",
            Op(ConsentRecord),
            post(consent::record_confidential),
        ),
        r(
            Method::DELETE,
            "/api/v1/patients/{id}/confidential-requests/{request_id}",
            Op(ConsentRecord),
            delete(consent::withdraw_confidential),
        ),
        r(
            Method::GET,
            "/api/v1/consent-texts",
            Op(CatalogRead),
            get(consent::consent_texts),
        ),
        r(
            Method::POST,
            "/api/v1/consent-texts",
            Op(CatalogManage),
            post(consent::publish_consent_text),
        ),
        r(
            Method::GET,
            "/api/v1/reminders/settings",
            Op(AppointmentRead),
            get(reminders::settings),
        ),
        r(
            Method::PUT,
            "/api/v1/reminders/settings",
            Op(CatalogManage),
            put(reminders::put_settings),
        ),
        r(
            Method::GET,
            "/api/v1/reminders/held",
            Op(AppointmentRead),
            get(reminders::held),
        ),
        r(
            Method::POST,
            "/api/v1/reminders/{id}/release",
            Op(AppointmentWrite),
            post(reminders::release),
        ),
        r(
            Method::GET,
            "/api/v1/appointments/{id}/reminders",
            Op(AppointmentRead),
            get(reminders::of_appointment),
        ),
        r(
            Method::GET,
            "/api/v1/catalog",
            Op(CatalogRead),
            get(consent::catalog),
        ),
        r(
            Method::PUT,
            "/api/v1/catalog",
            Op(CatalogManage),
            put(consent::upsert_catalog_item),
        ),
        r(
            Method::GET,
            "/api/v1/templates",
            Op(CatalogRead),
            get(consent::templates),
        ),
        r(
            Method::POST,
            "/api/v1/templates",
            Op(CatalogManage),
            post(consent::create_template),
        ),
        r(
            Method::PUT,
            "/api/v1/templates/{id}",
            Op(CatalogManage),
            put(consent::update_template),
        ),
        r(
            Method::GET,
            "/api/v1/practice/messaging",
            Op(CatalogRead),
            get(consent::messaging_settings),
        ),
        r(
            Method::PUT,
            "/api/v1/practice/messaging",
            Op(CatalogManage),
            put(consent::set_messaging_settings),
        ),
        r(
            Method::GET,
            "/api/v1/practice/office-hours",
            Op(PracticeSettingsManage),
            get(hours::office_hours),
        ),
        r(
            Method::PUT,
            "/api/v1/practice/office-hours",
            Op(PracticeSettingsManage),
            put(hours::set_office_hours),
        ),
        r(
            Method::GET,
            "/api/v1/practice/response-settings",
            Op(PracticeSettingsManage),
            get(hours::response_settings),
        ),
        r(
            Method::PUT,
            "/api/v1/practice/response-settings",
            Op(PracticeSettingsManage),
            put(hours::set_response_settings),
        ),
        r(
            Method::GET,
            "/api/v1/practice/unread-settings",
            Op(PracticeSettingsManage),
            get(crate::api::unread::unread_settings),
        ),
        r(
            Method::PUT,
            "/api/v1/practice/unread-settings",
            Op(PracticeSettingsManage),
            put(crate::api::unread::set_unread_settings),
        ),
        r(
            Method::GET,
            "/api/v1/reports/response-time",
            Op(ReportRead),
            get(hours::response_time_report),
        ),
        r(
            Method::DELETE,
            "/api/v1/portal/confidential-requests/{request_id}",
            PatientSession,
            delete(portal::withdraw_own_confidential),
        ),
        r(
            Method::GET,
            "/api/v1/portal/conversations",
            PatientSession,
            get(portal_messages::conversations),
        ),
        r(
            Method::POST,
            "/api/v1/portal/messages",
            PatientSession,
            post(portal_messages::reply)
                .layer(DefaultBodyLimit::max(messages::ATTACHMENT_BODY_LIMIT)),
        ),
        r(
            Method::GET,
            "/api/v1/portal/attachments/{id}",
            PatientSession,
            get(portal_messages::attachment),
        ),
        // FHIR R4 (read side): errors leave as OperationOutcome (`fhir::outcome_layer`).
        r(
            Method::GET,
            "/fhir/r4/metadata",
            Public,
            get(fhir::metadata),
        ),
        r(
            Method::GET,
            "/fhir/r4/Patient",
            Op(PatientSearch),
            get(fhir::patient_search),
        ),
        r(
            Method::GET,
            "/fhir/r4/Patient/{id}",
            Op(PatientRead),
            get(fhir::patient_read),
        ),
        r(
            Method::GET,
            "/fhir/r4/Patient/{id}/$everything",
            Op(PatientRead),
            get(fhir::patient_everything),
        ),
        r(
            Method::GET,
            "/fhir/r4/Communication",
            Op(ConversationRead),
            get(fhir::communication_search),
        ),
        r(
            Method::GET,
            "/fhir/r4/Communication/{id}",
            Op(ConversationRead),
            get(fhir::communication_read),
        ),
        r(
            Method::GET,
            "/fhir/r4/Binary/{id}",
            Op(ConversationRead),
            get(fhir::binary_read),
        ),
        r(
            Method::GET,
            "/fhir/r4/Consent",
            Op(ConsentRead),
            get(fhir::consent_search),
        ),
        r(
            Method::GET,
            "/fhir/r4/Consent/{id}",
            Op(ConsentRead),
            get(fhir::consent_read),
        ),
        r(
            Method::GET,
            "/fhir/r4/Consent/{id}/_history",
            Op(ConsentRead),
            get(fhir::consent_history),
        ),
        r(
            Method::GET,
            "/fhir/r4/Consent/{id}/_history/{vid}",
            Op(ConsentRead),
            get(fhir::consent_vread),
        ),
        r(
            Method::GET,
            "/fhir/r4/Provenance",
            Op(ConsentRead),
            get(fhir::provenance_search),
        ),
        r(
            Method::GET,
            "/fhir/r4/AuditEvent",
            Op(AuditRead),
            get(fhir::audit_event_search),
        ),
        r(
            Method::GET,
            "/fhir/r4/Appointment",
            Op(AppointmentRead),
            get(fhir::appointment_search),
        ),
        r(
            Method::GET,
            "/fhir/r4/Appointment/{id}",
            Op(AppointmentRead),
            get(fhir::appointment_read),
        ),
        // FHIR writes: bodies capped; a transaction's entries are each authorized by the handler.
        r(
            Method::POST,
            "/fhir/r4",
            OpAny(&[PatientCreate, PatientUpdate, AppointmentWrite]),
            post(fhir::interactions::transaction).layer(DefaultBodyLimit::max(
                fhir::interactions::TRANSACTION_BODY_LIMIT,
            )),
        ),
        r(
            Method::POST,
            "/fhir/r4/Patient",
            Op(PatientCreate),
            post(fhir::interactions::patient_create).layer(DefaultBodyLimit::max(
                fhir::interactions::RESOURCE_BODY_LIMIT,
            )),
        ),
        r(
            Method::PUT,
            "/fhir/r4/Patient/{id}",
            Op(PatientUpdate),
            put(fhir::interactions::patient_update).layer(DefaultBodyLimit::max(
                fhir::interactions::RESOURCE_BODY_LIMIT,
            )),
        ),
        r(
            Method::POST,
            "/fhir/r4/Appointment",
            Op(AppointmentWrite),
            post(fhir::interactions::appointment_create).layer(DefaultBodyLimit::max(
                fhir::interactions::RESOURCE_BODY_LIMIT,
            )),
        ),
        r(
            Method::PUT,
            "/fhir/r4/Appointment/{id}",
            Op(AppointmentWrite),
            put(fhir::interactions::appointment_update).layer(DefaultBodyLimit::max(
                fhir::interactions::RESOURCE_BODY_LIMIT,
            )),
        ),
        r(
            Method::POST,
            "/fhir/r4/AppointmentResponse",
            Op(AppointmentAnswer),
            post(fhir::interactions::appointment_response_create).layer(DefaultBodyLimit::max(
                fhir::interactions::RESOURCE_BODY_LIMIT,
            )),
        ),
        r(
            Method::GET,
            "/fhir/r4/AppointmentResponse",
            Op(AppointmentRead),
            get(fhir::interactions::appointment_response_search),
        ),
        r(
            Method::GET,
            "/fhir/r4/AppointmentResponse/{id}",
            Op(AppointmentRead),
            get(fhir::interactions::appointment_response_read),
        ),
        r(
            Method::GET,
            "/fhir/r4/Patient/{id}/_history/{vid}",
            Op(PatientRead),
            get(fhir::patient_vread),
        ),
        r(
            Method::GET,
            "/fhir/r4/Appointment/{id}/_history/{vid}",
            Op(AppointmentRead),
            get(fhir::appointment_vread),
        ),
        r(
            Method::GET,
            "/fhir/r4/AuditEvent/{id}",
            Op(AuditRead),
            get(fhir::audit_event_read),
        ),
        r(
            Method::GET,
            "/fhir/r4/Provenance/{id}",
            Op(ConsentRead),
            get(fhir::provenance_read),
        ),
        // Any other resource type: an OperationOutcome saying so (serves no data).
        r(
            Method::GET,
            "/fhir/r4/{type}",
            Public,
            get(fhir::unsupported),
        ),
        r(
            Method::GET,
            "/fhir/r4/{type}/{id}",
            Public,
            get(fhir::unsupported),
        ),
        r(
            Method::GET,
            "/api/v1/tokens",
            Op(TokenManage),
            get(tokens::list),
        ),
        r(
            Method::POST,
            "/api/v1/tokens",
            Op(TokenManage),
            post(tokens::create),
        ),
        r(
            Method::DELETE,
            "/api/v1/tokens/{id}",
            Op(TokenManage),
            delete(tokens::revoke),
        ),
        r(
            Method::GET,
            "/fhir/r4/.well-known/smart-configuration",
            Public,
            get(smart::configuration),
        ),
        r(
            Method::POST,
            smart::TOKEN_PATH,
            ClientAssertion,
            post(smart::token),
        ),
        r(
            Method::GET,
            "/api/v1/smart-clients",
            Op(TokenManage),
            get(smart::list),
        ),
        r(
            Method::POST,
            "/api/v1/smart-clients",
            Op(TokenManage),
            post(smart::register),
        ),
        r(
            Method::DELETE,
            "/api/v1/smart-clients/{id}",
            Op(TokenManage),
            delete(smart::disable),
        ),
        r(
            Method::GET,
            "/api/v1/ehr/connection",
            Op(TokenManage),
            get(ehr::read),
        ),
        r(
            Method::PUT,
            "/api/v1/ehr/connection",
            Op(TokenManage),
            put(ehr::save),
        ),
        r(
            Method::GET,
            "/api/v1/ehr/pull",
            Op(TokenManage),
            get(ehr_pull::read),
        ),
        r(
            Method::PUT,
            "/api/v1/ehr/pull",
            Op(TokenManage),
            put(ehr_pull::save),
        ),
        r(
            Method::POST,
            "/api/v1/ehr/pull/run",
            Op(TokenManage),
            post(ehr_pull::run),
        ),
        // Salve's public keys for a practice's EHR (public by nature: the EHR fetches them).
        r(
            Method::GET,
            "/ehr/{practice}/jwks.json",
            Public,
            get(ehr::jwks),
        ),
    ]
}

/// Every route and its declared access, for tests and documentation.
pub fn route_specs() -> Vec<RouteSpec> {
    all().into_iter().map(|(spec, _)| spec).collect()
}

fn all() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    let mut routes = table();
    routes.extend(crate::web::table());
    routes
}

pub(crate) fn router(state: &AppState) -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    // A path's method routers merge; only one of them may carry the FHIR fallback.
    let mut with_fallback = std::collections::BTreeSet::new();
    for (spec, handler) in all() {
        let passive = spec.passive;
        let handler = match spec.access {
            Access::Public
            | Access::MetricsToken
            | Access::PatientLink
            | Access::PatientSession
            | Access::AccountLink
            | Access::ProviderSignature
            | Access::ClientAssertion => handler,
            Access::Op(op) => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |State(s): State<AppState>, req: Request, next: Next| {
                    op_gate(s, Ops::One(op), passive, req, next)
                },
            )),
            Access::OpAny(ops) => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |State(s): State<AppState>, req: Request, next: Next| {
                    op_gate(s, Ops::Any(ops), passive, req, next)
                },
            )),
            Access::Session(stages) => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |State(s): State<AppState>, req: Request, next: Next| {
                    session_gate(s, stages, passive, req, next)
                },
            )),
        };
        let handler = if spec.path.starts_with(fhir::PREFIX) {
            let handler = handler.route_layer(middleware::from_fn(fhir::outcome_layer));
            if with_fallback.insert(spec.path) {
                handler.fallback(fhir::method_not_allowed)
            } else {
                handler
            }
        } else {
            handler
        };
        let handler = if spec.page {
            handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::web::page_layer,
            ))
        } else {
            handler
        };
        router = router.route(spec.path, handler);
    }
    router
}

fn context(req: &Request) -> RequestContext {
    req.extensions()
        .get::<ClientInfo>()
        .map(|c| c.audit_context())
        .unwrap_or_default()
}

/// Records a refused request, then answers with `error` (or with the audit failure).
async fn refuse(
    state: &AppState,
    scope: ChainScope,
    actor: Actor,
    context: RequestContext,
    error: ApiError,
) -> Response {
    let event = AuditEvent {
        scope,
        actor,
        action: Action::AccessDenied,
        targets: Vec::new(),
        outcome: Outcome::Denied,
        context,
    };
    match state.store.record_audit(event).await {
        Ok(()) => error.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn cross_site() -> ApiError {
    ApiError::forbidden("cross-site request refused: send it from Salve's own pages")
}

/// Resolves the caller, asks the permission table, counts activity, and passes the principal on.
/// The operation(s) a gate asks `authorize` about.
#[derive(Clone, Copy)]
enum Ops {
    One(Operation),
    /// Allowed when any one is; the handler authorizes each part of the request.
    Any(&'static [Operation]),
}

impl Ops {
    fn decide(self, principal: &Principal) -> Decision {
        match self {
            Ops::One(op) => authorize(principal, op, None),
            Ops::Any(ops) => {
                let mut first = None;
                for op in ops {
                    match authorize(principal, *op, None) {
                        Decision::Allow => return Decision::Allow,
                        d => {
                            first.get_or_insert(d);
                        }
                    }
                }
                first.unwrap_or(Decision::Deny(DenyReason::TokenNotAllowed))
            }
        }
    }

    fn is_guidelines(self) -> bool {
        matches!(
            self,
            Ops::One(Operation::GuidelinesRead | Operation::GuidelinesEdit)
        )
    }
}

async fn op_gate(
    state: AppState,
    op: Ops,
    passive: bool,
    mut req: Request,
    next: Next,
) -> Response {
    let ctx = context(&req);
    let caller = match auth::resolve(&state, req.headers(), &ctx).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let principal = match caller {
        None => {
            return refuse(
                &state,
                ChainScope::System,
                Actor::Anonymous,
                ctx,
                ApiError::unauthorized(),
            )
            .await;
        }
        Some(Caller::Token(t)) => Principal::Token {
            practice: t.practice_id,
            token: t.token_id,
            scopes: t.scopes,
        },
        Some(Caller::Session(s)) => {
            let session = &s.session;
            let scope = ChainScope::Practice(session.practice_id);
            let actor = Actor::User(session.user_id);
            if session.stage != SessionStage::Active {
                return refuse(&state, scope, actor, ctx, ApiError::unauthorized()).await;
            }
            if !auth::csrf_ok(&state, req.method(), req.headers()) {
                return refuse(&state, scope, actor, ctx, cross_site()).await;
            }
            let role = match state
                .store
                .role_in(session.user_id, session.practice_id)
                .await
            {
                Ok(Some(role)) => role,
                Ok(None) => {
                    return refuse(&state, scope, actor, ctx, ApiError::unauthorized()).await;
                }
                Err(e) => return ApiError::from(e).into_response(),
            };
            if !passive
                && let Err(e) = state
                    .store
                    .touch_session(session.id, to_micros(state.clock.now()))
                    .await
            {
                return ApiError::from(e).into_response();
            }
            // Staff acknowledge the current messaging guidelines before anything else.
            if !op.is_guidelines() {
                match state
                    .store
                    .guidelines_pending(session.practice_id, session.user_id)
                    .await
                {
                    Ok(false) => {}
                    Ok(true) => {
                        let error = ApiError::new(
                            axum::http::StatusCode::FORBIDDEN,
                            "guidelines-acknowledgment-required",
                            "Guidelines to acknowledge",
                            "read and acknowledge the practice's messaging guidelines first (GET /api/v1/guidelines)",
                        );
                        return refuse(&state, scope, actor, ctx, error).await;
                    }
                    Err(e) => return ApiError::from(e).into_response(),
                }
            }
            req.extensions_mut().insert(s.clone());
            Principal::Staff {
                practice: session.practice_id,
                user: session.user_id,
                role,
            }
        }
    };
    let scope = principal
        .practice()
        .map_or(ChainScope::System, ChainScope::Practice);
    match op.decide(&principal) {
        Decision::Allow => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Decision::Deny(reason) => {
            let detail = match reason {
                DenyReason::MissingScope(scope) => format!("this token lacks the `{scope}` scope"),
                DenyReason::TokenNotAllowed => {
                    "API tokens cannot do this; sign in as staff".to_owned()
                }
                DenyReason::RoleNotAllowed(role) => format!("the {role} role cannot do this"),
                DenyReason::Restricted => "not allowed".to_owned(),
                DenyReason::OtherTeam => {
                    "this conversation is assigned to a team you are not in".to_owned()
                }
            };
            refuse(
                &state,
                scope,
                principal.actor(),
                ctx,
                ApiError::forbidden(detail),
            )
            .await
        }
        Decision::BreakGlassRequired => {
            refuse(
                &state,
                scope,
                principal.actor(),
                ctx,
                ApiError::forbidden("not allowed"),
            )
            .await
        }
    }
}

/// Sign-in steps and sign-out: a session cookie at one of `stages`.
async fn session_gate(
    state: AppState,
    stages: &'static [SessionStage],
    passive: bool,
    mut req: Request,
    next: Next,
) -> Response {
    let ctx = context(&req);
    let caller = match auth::resolve(&state, req.headers(), &ctx).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(Caller::Session(s)) = caller else {
        return refuse(
            &state,
            ChainScope::System,
            Actor::Anonymous,
            ctx,
            ApiError::unauthorized(),
        )
        .await;
    };
    let scope = ChainScope::Practice(s.session.practice_id);
    let actor = Actor::User(s.session.user_id);
    if !auth::stage_allows(stages, s.session.stage) {
        return refuse(&state, scope, actor, ctx, ApiError::unauthorized()).await;
    }
    if !auth::csrf_ok(&state, req.method(), req.headers()) {
        return refuse(&state, scope, actor, ctx, cross_site()).await;
    }
    if s.session.stage == SessionStage::Active
        && !passive
        && let Err(e) = state
            .store
            .touch_session(s.session.id, to_micros(state.clock.now()))
            .await
    {
        return ApiError::from(e).into_response();
    }
    req.extensions_mut().insert(s);
    next.run(req).await
}

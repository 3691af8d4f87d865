//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{
    account, announcements, appointments, carrier, consent, ehr, ehr_pull, health, hours, inbound,
    inbox_events, messages, outbox, oversight, passkeys, patients, portal, portal_login,
    portal_messages, providers, reminders, session, smart, teams, tokens, users,
};
use crate::error::{Problem, ProblemField};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::COOKIE))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Salve API", description = "Patient messaging for medical practices. Errors are RFC 9457 problem documents."),
    paths(
        health::healthz, health::readyz,
        patients::create, patients::list, patients::read, patients::update, patients::search, patients::lookup,
        patients::set_restriction, patients::restricted,
        session::sign_in, session::status, session::sign_out, session::sign_out_everywhere, session::my_sessions, session::end_my_session, session::verify_mfa,
        session::begin_enrollment, session::confirm_enrollment,
        passkeys::begin_registration, passkeys::finish_registration, passkeys::list, passkeys::remove,
        passkeys::begin_mfa, passkeys::finish_mfa, passkeys::begin_sign_in, passkeys::finish_sign_in,
        users::list, users::set_role, users::reset_mfa, users::disable, users::enable, users::sessions, users::end_session, users::end_all_sessions,
        oversight::break_glass, oversight::break_glass_report, oversight::review_break_glass, oversight::guidelines, oversight::publish_guidelines,
        oversight::acknowledge, oversight::acknowledgments,
        portal::send_link, portal::revoke_link, portal::submit_birth_date, portal::submit_code, portal::me, portal::withdraw_own_confidential,
        portal_login::create_account, portal_login::confirm_account, portal_login::sign_in, portal_login::verify_mfa,
        teams::list, teams::create, teams::set_members, teams::delete, teams::rename,
        providers::list, providers::create, providers::record_agreement, providers::renew_agreement,
        outbox::list, outbox::simulate_inbound, outbox::simulate_status,
        inbound::triage, inbound::attribute, inbound::reviews, inbound::decide,
        carrier::checklist,
        account::invite, account::request_reset, account::set_password,
        tokens::list, tokens::create, tokens::revoke,
        smart::configuration, smart::token, smart::register, smart::list, smart::disable,
        ehr::read, ehr::save, ehr::jwks, ehr_pull::read, ehr_pull::save, ehr_pull::run,
        messages::send, messages::preview, messages::list, messages::read, messages::create_topic, messages::note,
        messages::assign, messages::set_state, messages::mark_read, messages::attachment, inbox_events::stream_changes,
        consent::read, consent::record, consent::revoke_all, consent::record_confidential, consent::withdraw_confidential,
        consent::consent_texts, consent::publish_consent_text, consent::catalog, consent::upsert_catalog_item,
        consent::templates, consent::create_template, consent::update_template, consent::messaging_settings,
        consent::set_messaging_settings,
        hours::office_hours, hours::set_office_hours, hours::response_settings, hours::set_response_settings,
        hours::response_time_report,
        crate::api::unread::unread_settings, crate::api::unread::set_unread_settings,
        portal_messages::conversations, portal_messages::reply, portal_messages::attachment,
        reminders::settings, reminders::put_settings, reminders::held, reminders::of_appointment, reminders::release,
        appointments::create, appointments::read, appointments::update, appointments::cancel, appointments::list,
        appointments::import,
        announcements::preview, announcements::create, announcements::send, announcements::cancel,
        announcements::list, announcements::read,
    ),
    components(schemas(Problem, ProblemField, patients::PatientCreate, patients::PatientPatch, patients::PatientView,
        patients::PatientList, patients::ContactBody, patients::ContactView, patients::SearchBody, patients::LookupBody,
        patients::RestrictionBody, patients::NamedStaff, patients::RestrictedEntry, patients::RestrictedList, session::SignInBody, session::SignInStep, session::PracticeChoice, session::MfaBody, session::ConfirmBody,
        session::Enrollment, session::RecoveryCodes, session::SessionStatus,
        passkeys::PasskeyChallenge, passkeys::PasskeyAnswer, passkeys::PasskeySignInBody, passkeys::PasskeyInfo, passkeys::PasskeyList, users::StaffMember, users::StaffList, users::RoleBody, users::SessionView, users::SessionList,
        oversight::BreakGlassBody, oversight::BreakGlassGranted, oversight::BreakGlassEntry, oversight::BreakGlassReport, oversight::BreakGlassReviewView, oversight::BreakGlassReviewBody,
        oversight::GuidelinesView, oversight::GuidelinesBody, oversight::AcknowledgeBody, oversight::AcknowledgmentEntry,
        oversight::AcknowledgmentList, portal::SendLinkBody, portal::LinkSent, portal::BirthDateBody, portal::CodeBody,
        portal::PortalStep, portal::PortalMe, portal_login::AccountBody, portal_login::PatientSignInBody, portal_login::PatientSignInStep, teams::TeamView, teams::TeamList, providers::AgreementBody, providers::AgreementCreated, providers::ProviderBody, providers::ProviderCreated, providers::AgreementView, providers::ProviderView, providers::ProviderList, inbound::TriageView, inbound::TriageList, inbound::AttributeBody, inbound::Attributed, inbound::ReviewView, inbound::ReviewList, inbound::ReviewDecision, outbox::OutboxEntry, outbox::OutboxList, outbox::SimulatedText, outbox::SimulatedStatus, carrier::CarrierRegistrationView, carrier::ChecklistItemView,
        carrier::SampleMessageView, carrier::FormAnswerView, teams::TeamBody, teams::MembersBody,
        teams::TeamCreated, account::InviteBody, account::Invited, account::ResetBody, account::ResetAccepted,
        account::PasswordBody, tokens::TokenView, tokens::TokenList, tokens::TokenBody, tokens::TokenCreated,
        smart::SmartConfiguration, smart::TokenResponse, smart::ClientBody, smart::ClientView, smart::ClientList,
        ehr::AuthBody, ehr::ConnectionBody, ehr::ConnectionView, ehr::EhrStatusView, ehr_pull::PullBody, ehr_pull::PullView, ehr_pull::SkipCount,
        messages::SendBody, messages::AttachmentUpload, messages::ReasonView, messages::PreviewView, messages::AttachmentView,
        messages::MessageOut, messages::ConversationView, messages::ConversationList, messages::ConversationDetailView,
        messages::NoteBody, messages::AssignBody, messages::StateBody, messages::TopicBody, messages::Created,
        consent::ConsentTextRefBody, consent::ConsentEventBody, consent::RecordConsentBody, consent::RevokeAllBody,
        consent::ConsentEventView, consent::EffectiveConsent, consent::ConfidentialRequestView, consent::ConsentRecordView,
        consent::RecordedConsent, consent::ConfidentialBody, consent::ConsentTextBody, consent::ConsentTextView,
        consent::ConsentTextList, consent::CatalogItemView, consent::CatalogList, consent::TemplateBody, consent::TemplateView,
        consent::TemplateList, consent::MessagingSettingsBody,
        portal_messages::PortalConversation, portal_messages::PortalConversations, portal_messages::PortalReplyBody,
        reminders::TypeSchedule, reminders::SettingsBody, reminders::TemplateSample, reminders::SettingsView,
        reminders::ReminderView, reminders::ReminderList,
        appointments::AppointmentCreate, appointments::AppointmentPatchBody, appointments::CatalogRef,
        appointments::AppointmentView, appointments::AppointmentList, appointments::ImportError,
        appointments::ImportReportView,
        hours::IntervalBody, hours::HolidayBody, hours::OfficeHoursBody, hours::OfficeHoursView,
        hours::ResponseSettingsBody, hours::ResponseTimeReport, hours::ExpectedReply,
        announcements::FilterBody, announcements::AnnouncementBody, announcements::SendBody,
        announcements::AnnouncementPreview, announcements::ProgressView, announcements::AnnouncementView,
        announcements::AnnouncementList,
        crate::api::unread::UnreadSettingsBody)),
    modifiers(&BearerAuth),
    tags((name = "patients", description = "Patients of the caller's practice"),
        (name = "session", description = "Staff sign-in, second factor, sign-out"),
        (name = "users", description = "The practice's staff"),
        (name = "audit", description = "Reports for the practice's auditors"),
        (name = "guidelines", description = "The practice's messaging guidelines"),
        (name = "portal", description = "Patients verifying a secure link: possession of the phone or inbox plus a knowledge check"), (name = "operations", description = "Health and readiness"),
        (name = "ehr", description = "Writing messages, transcripts and consent into the practice's EHR"),
        (name = "inbox", description = "The team inbox: conversations, sending, notes, assignment, live updates"),
        (name = "consent", description = "Consent ledger and confidential-communication requests"),
        (name = "settings", description = "Catalog, saved replies and messaging settings"),
        (name = "appointments", description = "Appointments (booked, changed and cancelled through the API or a CSV import), their reminders and the patients' answers"),
        (name = "announcements", description = "General practice announcements to patients who consented to them")),
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

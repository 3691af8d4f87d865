//! The audit vocabulary: who did what to which records, with what outcome.

use std::fmt;

use crate::ids::{PatientId, PracticeId, TokenId, UserId};

/// One chain per practice, plus one for actions outside any practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainScope {
    System,
    Practice(PracticeId),
}

impl ChainScope {
    pub const SYSTEM_KEY: &'static str = "system";

    /// The stored form: `system` or the practice id.
    pub fn key(&self) -> String {
        match self {
            Self::System => Self::SYSTEM_KEY.to_owned(),
            Self::Practice(id) => id.to_string(),
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        if raw == Self::SYSTEM_KEY {
            Some(Self::System)
        } else {
            raw.parse().ok().map(Self::Practice)
        }
    }
}

impl fmt::Display for ChainScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::Practice(id) => write!(f, "practice {id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    System,
    /// An operator at the command line of the server host.
    Cli,
    ApiToken(TokenId),
    User(UserId),
    /// Someone not yet identified (a failed sign-in): no id to record.
    Anonymous,
    /// A patient who proved who they are through a secure link.
    Patient(PatientId),
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Cli => "cli",
            Self::ApiToken(_) => "token",
            Self::User(_) => "user",
            Self::Anonymous => "anonymous",
            Self::Patient(_) => "patient",
        }
    }
    pub fn id(&self) -> String {
        match self {
            Self::System | Self::Cli | Self::Anonymous => String::new(),
            Self::ApiToken(id) => id.to_string(),
            Self::User(id) => id.to_string(),
            Self::Patient(id) => id.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PracticeCreate,
    TokenCreate,
    TokenRevoke,
    PatientCreate,
    PatientRead,
    PatientList,
    PatientSearch,
    PatientLookup,
    PatientUpdate,
    PatientShred,
    PatientRestrict,
    PatientBreakGlass,
    /// The privacy officer marked a break-glass access reviewed, with a sealed note.
    BreakGlassReview,
    GuidelinesPublish,
    GuidelinesAcknowledge,
    NotificationSent,
    LinkCreate,
    LinkOpen,
    LinkRevoke,
    LinkDateOfBirthFailed,
    LinkCodeSent,
    LinkCodeFailed,
    LinkLocked,
    LinkVerified,
    PatientAccountCreate,
    PatientAccountActivate,
    PatientSignIn,
    PatientSignInLocked,
    TeamChange,
    UserInvite,
    PasswordResetRequest,
    PasswordSet,
    KeysRotateBegin,
    KeysRotateFinish,
    BackupRestore,
    AccessDenied,
    UserCreate,
    UserDisable,
    /// An admin enabled a staff member disabled in the practice.
    UserEnable,
    MembershipChange,
    MfaReset,
    MfaEnroll,
    PasskeyRegister,
    PasskeyRemove,
    SignIn,
    SignInLocked,
    SessionEnd,
    SessionsRevoked,
    /// An admin listed a staff member's sessions.
    SessionList,
    ConversationList,
    ConversationRead,
    ConversationAssign,
    ConversationState,
    MessageSend,
    MessageReceive,
    MessageNote,
    MessageStatus,
    MessageDuplicate,
    AttachmentRead,
    ConsentRecord,
    ConsentRead,
    ConfidentialRecord,
    CatalogChange,
    TemplateChange,
    MessagingSettingsChange,
    AgreementRecord,
    ProviderChange,
    /// An agreement expired: sending through the provider stopped and the admins were alerted.
    AgreementExpired,
    /// A webhook whose signature was missing, wrong or of a weaker algorithm than pinned.
    WebhookRejected,
    /// A webhook already applied (a replay); nothing changed.
    WebhookDuplicate,
    /// An admin listed what the local (demo) outbox sent.
    OutboxRead,
    /// Staff read the queue of texts not matched to one patient.
    TriageRead,
    /// Staff filed such a text in a patient's conversation.
    TriageAttribute,
    /// Staff decided a possible opt-out (revoked, or not an opt-out).
    KeywordReview,
    /// Inbound media deleted at the provider once sealed here (or the attempt failed).
    MediaDelete,
    /// Emergency guidance could not go out (provider down, agreement expired): staff alerted.
    EmergencyReplyBlocked,
    /// A reminder decided for a visit: sent, or held by the cap, too late or superseded.
    ReminderDecide,
    /// A queued reminder withdrawn because its visit changed or was cancelled.
    ReminderWithdraw,
    /// Staff released a reminder the daily cap held back.
    ReminderRelease,
    /// A patient answered a reminder (confirm, cancel this visit, reschedule).
    ReminderAnswer,
    /// Staff read a visit's reminders or the held-back list.
    ReminderRead,
    /// An admin changed reminder schedules or limits.
    ReminderSettingsChange,
    // Appointments (targets: the patient, then the appointment).
    AppointmentCreate,
    AppointmentUpdate,
    AppointmentCancel,
    AppointmentRead,
    /// A CSV import of appointments (a dry run, a refused import, or one that wrote them).
    AppointmentImport,
    /// An admin changed the practice's office hours or holidays.
    PracticeHoursUpdate,
    /// An admin changed the response target or who is told of overdue conversations.
    ResponseSettingsUpdate,
    /// A conversation waited longer than the response target: the chosen staff were told.
    ResponseEscalate,
    /// Someone read the first-response-time report.
    ResponseReportRead,
    /// Staff wrote an announcement (a draft; its text is sealed, never in the audit row).
    AnnouncementCreate,
    /// Staff sent or scheduled an announcement.
    AnnouncementSchedule,
    /// Staff cancelled an announcement.
    AnnouncementCancel,
    /// The worker started an announcement: its recipients were chosen.
    AnnouncementStart,
    /// One recipient's announcement queued (success) or held back (denied).
    AnnouncementRecipient,
    /// Every recipient of an announcement was recorded.
    AnnouncementDone,
    /// A secure message the patient had not opened: one reminder with a fresh link was queued
    /// (the old link revoked).
    SecureMessageReminder,
    /// A secure message still unopened after its reminder: the practice admins were told.
    SecureMessageUnreadAlert,
    /// An admin changed the delay before an unread secure message's reminder.
    UnreadSettingsChange,
    /// An auditor exported audit rows (a CSV file); targets: the patient when filtered by one.
    AuditExport,
    /// An admin registered a SMART backend-services client (its public keys and scopes).
    SmartClientRegister,
    /// An admin disabled a SMART client; its live access tokens were revoked.
    SmartClientDisable,
    /// A SMART client's signed assertion was accepted and an access token issued.
    SmartTokenIssue,
    /// A token request was refused (bad signature, expired or replayed assertion, scope).
    SmartTokenRefuse,
    /// An admin set up or changed the practice's EHR connection (never its secrets).
    EhrConnectionChange,
    /// A write into the EHR: written, refused (with a PHI-free reason), or retried. Targets:
    /// the patient, the resource type, the record written and the queue entry.
    EhrWrite,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PracticeCreate => "practice.create",
            Self::TokenCreate => "token.create",
            Self::TokenRevoke => "token.revoke",
            Self::PatientCreate => "patient.create",
            Self::PatientRead => "patient.read",
            Self::PatientList => "patient.list",
            Self::PatientSearch => "patient.search",
            Self::PatientLookup => "patient.lookup",
            Self::PatientUpdate => "patient.update",
            Self::PatientShred => "patient.shred",
            Self::PatientRestrict => "patient.restrict",
            Self::PatientBreakGlass => "patient.break_glass",
            Self::BreakGlassReview => "break_glass.review",
            Self::GuidelinesPublish => "guidelines.publish",
            Self::GuidelinesAcknowledge => "guidelines.acknowledge",
            Self::NotificationSent => "notification.sent",
            Self::LinkCreate => "link.create",
            Self::LinkOpen => "link.open",
            Self::LinkRevoke => "link.revoke",
            Self::LinkDateOfBirthFailed => "link.birth_date_failed",
            Self::LinkCodeSent => "link.code_sent",
            Self::LinkCodeFailed => "link.code_failed",
            Self::LinkLocked => "link.locked",
            Self::LinkVerified => "link.verified",
            Self::PatientAccountCreate => "patient.account.create",
            Self::PatientAccountActivate => "patient.account.activate",
            Self::PatientSignIn => "patient.sign_in",
            Self::PatientSignInLocked => "patient.sign_in_locked",
            Self::TeamChange => "team.change",
            Self::UserInvite => "user.invite",
            Self::PasswordResetRequest => "user.password.reset_request",
            Self::PasswordSet => "user.password.set",
            Self::KeysRotateBegin => "keys.rotate.begin",
            Self::KeysRotateFinish => "keys.rotate.finish",
            Self::BackupRestore => "backup.restore",
            Self::AccessDenied => "access.denied",
            Self::UserCreate => "user.create",
            Self::UserDisable => "user.disable",
            Self::UserEnable => "user.enable",
            Self::MembershipChange => "user.membership",
            Self::MfaReset => "user.mfa.reset",
            Self::MfaEnroll => "user.mfa.enroll",
            Self::PasskeyRegister => "user.passkey.register",
            Self::PasskeyRemove => "user.passkey.remove",
            Self::SignIn => "auth.sign_in",
            Self::SignInLocked => "auth.locked",
            Self::SessionEnd => "session.end",
            Self::SessionsRevoked => "session.revoke_all",
            Self::SessionList => "session.list",
            Self::ConversationList => "conversation.list",
            Self::ConversationRead => "conversation.read",
            Self::ConversationAssign => "conversation.assign",
            Self::ConversationState => "conversation.state",
            Self::MessageSend => "message.send",
            Self::MessageReceive => "message.receive",
            Self::MessageNote => "message.note",
            Self::MessageStatus => "message.status",
            Self::MessageDuplicate => "message.duplicate",
            Self::AttachmentRead => "attachment.read",
            Self::ConsentRecord => "consent.record",
            Self::ConsentRead => "consent.read",
            Self::ConfidentialRecord => "confidential.record",
            Self::CatalogChange => "catalog.change",
            Self::TemplateChange => "template.change",
            Self::MessagingSettingsChange => "practice.messaging_settings",
            Self::AgreementRecord => "vendor.agreement.record",
            Self::ProviderChange => "vendor.provider.change",
            Self::AgreementExpired => "vendor.agreement.expired",
            Self::WebhookRejected => "webhook.rejected",
            Self::WebhookDuplicate => "webhook.duplicate",
            Self::OutboxRead => "outbox.read",
            Self::TriageRead => "inbound.triage.read",
            Self::TriageAttribute => "inbound.triage.attribute",
            Self::KeywordReview => "inbound.review.decide",
            Self::MediaDelete => "media.delete",
            Self::EmergencyReplyBlocked => "emergency_reply.blocked",
            Self::ReminderDecide => "reminder.decide",
            Self::ReminderWithdraw => "reminder.withdraw",
            Self::ReminderRelease => "reminder.release",
            Self::ReminderAnswer => "reminder.answer",
            Self::ReminderRead => "reminder.read",
            Self::ReminderSettingsChange => "reminder.settings",
            Self::AppointmentCreate => "appointment.create",
            Self::AppointmentUpdate => "appointment.update",
            Self::AppointmentCancel => "appointment.cancel",
            Self::AppointmentRead => "appointment.read",
            Self::AppointmentImport => "appointment.import",
            Self::PracticeHoursUpdate => "practice.hours.update",
            Self::ResponseSettingsUpdate => "practice.response_settings.update",
            Self::ResponseEscalate => "response.escalate",
            Self::ResponseReportRead => "report.response_time.read",
            Self::AnnouncementCreate => "announcement.create",
            Self::AnnouncementSchedule => "announcement.schedule",
            Self::AnnouncementCancel => "announcement.cancel",
            Self::AnnouncementStart => "announcement.start",
            Self::AnnouncementRecipient => "announcement.recipient",
            Self::AnnouncementDone => "announcement.done",
            Self::SecureMessageReminder => "secure_message.reminder",
            Self::SecureMessageUnreadAlert => "secure_message.unread_alert",
            Self::UnreadSettingsChange => "practice.unread_settings",
            Self::AuditExport => "audit.export",
            Self::SmartClientRegister => "smart.client_register",
            Self::SmartClientDisable => "smart.client_disable",
            Self::SmartTokenIssue => "smart.token_issue",
            Self::SmartTokenRefuse => "smart.token_refuse",
            Self::EhrConnectionChange => "ehr.connection.change",
            Self::EhrWrite => "ehr.write",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
        }
    }
}

/// Where a request came from. Sealed before storage: an IP address identifies a patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Free text an operator typed (e.g. a reason); sealed.
    pub reason: Option<String>,
}

/// An audit event before it is placed on its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub scope: ChainScope,
    pub actor: Actor,
    pub action: Action,
    /// Ids of the records touched (patients, tokens, practices); never PHI.
    pub targets: Vec<String>,
    pub outcome: Outcome,
    pub context: RequestContext,
}

impl AuditEvent {
    /// An event on a practice's chain: the one way the store builds them.
    pub fn in_practice(
        practice: PracticeId,
        actor: Actor,
        context: &RequestContext,
        action: Action,
        targets: Vec<String>,
        outcome: Outcome,
    ) -> Self {
        Self {
            scope: ChainScope::Practice(practice),
            actor,
            action,
            targets,
            outcome,
            context: context.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_round_trip() {
        let p = ChainScope::Practice(PracticeId::new());
        assert_eq!(ChainScope::parse(&p.key()), Some(p));
        assert_eq!(ChainScope::parse("system"), Some(ChainScope::System));
        assert_eq!(ChainScope::parse("bogus"), None);
    }
}

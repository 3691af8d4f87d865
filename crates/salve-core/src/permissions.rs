//! Who may do what: the one place that answers "is this allowed?"; handlers and the store ask.
//!
//! API tokens carry scopes. Staff carry a role in one practice. Restricted patients (VIPs, staff
//! who are patients, behavioral health) are visible only to the people named on them, or to a
//! clinician who breaks the glass with a reason.

use std::fmt;

use crate::ids::{PracticeId, TokenId, UserId};

/// What an API token was granted. A token belongs to exactly one practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    PatientsRead,
    PatientsWrite,
    MessagesRead,
    MessagesWrite,
    ConsentWrite,
    AppointmentsRead,
    AppointmentsWrite,
    /// The practice's audit log (FHIR `AuditEvent`); named as a SMART v2 system scope.
    AuditEventRead,
    /// Relay a patient's answer about a visit (FHIR `AppointmentResponse`): confirm or cancel
    /// as the patient would, without the power to reschedule or rebook.
    AppointmentsAnswer,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::PatientsRead,
        Scope::PatientsWrite,
        Scope::MessagesRead,
        Scope::MessagesWrite,
        Scope::ConsentWrite,
        Scope::AppointmentsRead,
        Scope::AppointmentsWrite,
        Scope::AuditEventRead,
        Scope::AppointmentsAnswer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PatientsRead => "patients:read",
            Self::PatientsWrite => "patients:write",
            Self::MessagesRead => "messages:read",
            Self::MessagesWrite => "messages:write",
            Self::ConsentWrite => "consent:write",
            Self::AppointmentsRead => "appointments:read",
            Self::AppointmentsWrite => "appointments:write",
            Self::AuditEventRead => "audit:read",
            Self::AppointmentsAnswer => "appointments:answer",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Parses a comma- or space-separated list; unknown names are an error naming the bad entry
    /// (scope names are not personal data).
    pub fn parse_list(raw: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for part in raw.split([',', ' ']).filter(|p| !p.is_empty()) {
            let scope = Self::parse(part).ok_or_else(|| {
                format!(
                    "unknown scope `{part}`; known scopes: {}",
                    Self::ALL.map(Scope::as_str).join(", ")
                )
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required".into());
        }
        scopes.sort();
        Ok(scopes)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A staff member's role in one practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Practice settings, users, teams, tokens.
    Admin,
    Clinician,
    /// Front desk.
    Staff,
    /// The audit log and reports; no patient content.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Clinician, Role::Staff, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Clinician => "clinician",
            Self::Staff => "staff",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a request can ask to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    PatientCreate,
    PatientRead,
    PatientList,
    PatientSearch,
    PatientLookup,
    PatientUpdate,
    /// Mark a patient restricted and name who may see them.
    PatientRestrict,
    /// See the practice's staff directory (names and roles).
    UserList,
    /// Create, disable, change roles, reset MFA.
    UserManage,
    TeamManage,
    AuditRead,
    /// Mark a break-glass access reviewed, with a note (the privacy officer: the auditor role).
    BreakGlassReview,
    /// Open a restricted patient with a reason.
    BreakGlass,
    /// Read and acknowledge the practice's messaging guidelines.
    GuidelinesRead,
    /// Publish guidelines and see who acknowledged them.
    GuidelinesEdit,
    /// Send a patient a secure link, or revoke one.
    SecureLinkSend,
    /// Create, list and revoke the practice's API tokens.
    TokenManage,
    /// The inbox: list conversations (no message content).
    ConversationList,
    /// Read one patient's conversation.
    ConversationRead,
    /// Send a patient a message.
    MessageSend,
    /// Write an internal note (never sent to the patient).
    MessageNote,
    /// Assign, close, snooze a conversation; mark it read.
    ConversationManage,
    /// See a patient's consent and confidential-communication history.
    ConsentRead,
    /// Record a consent, a revocation or a confidential-communication request.
    ConsentRecord,
    /// See the catalog (appointment types, locations, providers) and saved replies.
    CatalogRead,
    /// Edit the catalog, saved replies, and the practice's messaging settings.
    CatalogManage,
    /// Configure SMS and email providers and record Business Associate Agreements.
    ProviderManage,
    /// See the practice's providers and agreements (no credentials): the BAA report.
    VendorRead,
    /// Work the inbound queues: texts no single patient could be matched to (attribute them)
    /// and possible opt-outs a person must decide.
    InboundTriage,
    /// See a patient's appointments (time, type, location, provider, status).
    AppointmentRead,
    /// Book, change and cancel appointments.
    AppointmentWrite,
    /// Record a patient's own answer about a visit (confirm, cancel) on their behalf.
    AppointmentAnswer,
    /// Import appointments from a CSV file (the EHR's export).
    AppointmentImport,
    /// Office hours, holidays, the response target and who is told of overdue conversations.
    PracticeSettingsManage,
    /// Practice reports without patient content (first-response times).
    ReportRead,
    /// Compose, schedule, send and cancel a general practice announcement (one text to many
    /// patients): an administrative act of the practice, so the admins and the front desk.
    AnnouncementSend,
    /// See announcements and their progress (counts, never a recipient's contact).
    AnnouncementRead,
}

impl Operation {
    pub const ALL: [Operation; 37] = [
        Operation::PatientCreate,
        Operation::PatientRead,
        Operation::PatientList,
        Operation::PatientSearch,
        Operation::PatientLookup,
        Operation::PatientUpdate,
        Operation::PatientRestrict,
        Operation::UserList,
        Operation::UserManage,
        Operation::TeamManage,
        Operation::AuditRead,
        Operation::BreakGlassReview,
        Operation::BreakGlass,
        Operation::GuidelinesRead,
        Operation::GuidelinesEdit,
        Operation::SecureLinkSend,
        Operation::TokenManage,
        Operation::ConversationList,
        Operation::ConversationRead,
        Operation::MessageSend,
        Operation::MessageNote,
        Operation::ConversationManage,
        Operation::ConsentRead,
        Operation::ConsentRecord,
        Operation::CatalogRead,
        Operation::CatalogManage,
        Operation::ProviderManage,
        Operation::VendorRead,
        Operation::InboundTriage,
        Operation::AppointmentRead,
        Operation::AppointmentWrite,
        Operation::AppointmentAnswer,
        Operation::AppointmentImport,
        Operation::PracticeSettingsManage,
        Operation::ReportRead,
        Operation::AnnouncementSend,
        Operation::AnnouncementRead,
    ];

    /// Operations whose resource is one patient (and so may be restricted).
    pub fn is_patient_operation(self) -> bool {
        matches!(
            self,
            Self::PatientRead
                | Self::PatientUpdate
                | Self::PatientRestrict
                | Self::BreakGlass
                | Self::SecureLinkSend
                | Self::ConversationRead
                | Self::MessageSend
                | Self::MessageNote
                | Self::ConversationManage
                | Self::ConsentRead
                | Self::ConsentRecord
                | Self::AppointmentRead
                | Self::AppointmentWrite
                | Self::AppointmentAnswer
        )
    }

    /// Operations on one conversation, where a team assignment limits who may act.
    pub fn is_conversation_operation(self) -> bool {
        matches!(
            self,
            Self::ConversationRead
                | Self::MessageSend
                | Self::MessageNote
                | Self::ConversationManage
        )
    }
}

/// The scope a token needs for an operation; `None`: tokens may not do it.
pub fn required_scope(op: Operation) -> Option<Scope> {
    match op {
        Operation::PatientCreate | Operation::PatientUpdate | Operation::SecureLinkSend => {
            Some(Scope::PatientsWrite)
        }
        Operation::PatientRead
        | Operation::PatientList
        | Operation::PatientSearch
        | Operation::PatientLookup
        | Operation::ConsentRead => Some(Scope::PatientsRead),
        Operation::ConversationList | Operation::ConversationRead | Operation::CatalogRead => {
            Some(Scope::MessagesRead)
        }
        Operation::MessageSend | Operation::MessageNote | Operation::ConversationManage => {
            Some(Scope::MessagesWrite)
        }
        Operation::ConsentRecord => Some(Scope::ConsentWrite),
        Operation::AppointmentRead => Some(Scope::AppointmentsRead),
        Operation::AppointmentWrite | Operation::AppointmentImport => {
            Some(Scope::AppointmentsWrite)
        }
        Operation::AuditRead => Some(Scope::AuditEventRead),
        Operation::AppointmentAnswer => Some(Scope::AppointmentsAnswer),
        _ => None,
    }
}

use Operation as Op;

/// The staff permission table, as data.
const ROLE_TABLE: &[(Role, &[Operation])] = &[
    (
        Role::Admin,
        &[
            Op::PatientCreate,
            Op::PatientRead,
            Op::PatientList,
            Op::PatientSearch,
            Op::PatientLookup,
            Op::PatientUpdate,
            Op::PatientRestrict,
            Op::SecureLinkSend,
            Op::UserList,
            Op::UserManage,
            Op::TeamManage,
            Op::TokenManage,
            Op::GuidelinesRead,
            Op::GuidelinesEdit,
            Op::ConversationList,
            Op::ConversationRead,
            Op::MessageSend,
            Op::MessageNote,
            Op::ConversationManage,
            Op::ConsentRead,
            Op::ConsentRecord,
            Op::CatalogRead,
            Op::CatalogManage,
            Op::ProviderManage,
            Op::VendorRead,
            Op::InboundTriage,
            Op::AppointmentRead,
            Op::AppointmentWrite,
            Op::AppointmentAnswer,
            Op::AppointmentImport,
            Op::PracticeSettingsManage,
            Op::ReportRead,
            Op::AnnouncementSend,
            Op::AnnouncementRead,
        ],
    ),
    (
        Role::Clinician,
        &[
            Op::PatientCreate,
            Op::PatientRead,
            Op::PatientList,
            Op::PatientSearch,
            Op::PatientLookup,
            Op::PatientUpdate,
            Op::SecureLinkSend,
            Op::UserList,
            Op::BreakGlass,
            Op::GuidelinesRead,
            Op::ConversationList,
            Op::ConversationRead,
            Op::MessageSend,
            Op::MessageNote,
            Op::ConversationManage,
            Op::ConsentRead,
            Op::ConsentRecord,
            Op::CatalogRead,
            Op::InboundTriage,
            Op::AppointmentRead,
            Op::AppointmentWrite,
            Op::AppointmentAnswer,
            Op::AppointmentImport,
            Op::AnnouncementRead,
        ],
    ),
    (
        Role::Staff,
        &[
            Op::PatientCreate,
            Op::PatientRead,
            Op::PatientList,
            Op::PatientSearch,
            Op::PatientLookup,
            Op::PatientUpdate,
            Op::UserList,
            Op::GuidelinesRead,
            Op::ConversationList,
            Op::ConversationRead,
            Op::MessageSend,
            Op::MessageNote,
            Op::ConversationManage,
            Op::ConsentRead,
            Op::ConsentRecord,
            Op::CatalogRead,
            Op::InboundTriage,
            Op::AppointmentRead,
            Op::AppointmentWrite,
            Op::AppointmentAnswer,
            Op::AppointmentImport,
            Op::AnnouncementSend,
            Op::AnnouncementRead,
        ],
    ),
    (
        Role::Auditor,
        &[
            Op::AuditRead,
            Op::BreakGlassReview,
            Op::UserList,
            Op::GuidelinesRead,
            Op::ConsentRead,
            Op::VendorRead,
            Op::ReportRead,
        ],
    ),
];

pub fn role_allows(role: Role, op: Operation) -> bool {
    ROLE_TABLE
        .iter()
        .any(|(r, ops)| *r == role && ops.contains(&op))
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Token {
        practice: PracticeId,
        token: TokenId,
        scopes: Vec<Scope>,
    },
    Staff {
        practice: PracticeId,
        user: UserId,
        role: Role,
    },
    /// An operator at the server's command line, who holds the master key anyway.
    Operator,
    /// Salve itself acting for one practice's systems of record, limited to `scopes` as a token
    /// is: the HL7 v2 feed. Audited as the system.
    System {
        practice: PracticeId,
        scopes: Vec<Scope>,
    },
}

impl Principal {
    /// The one practice this principal may act in (`None`: the operator, any practice).
    pub fn practice(&self) -> Option<PracticeId> {
        match self {
            Self::Token { practice, .. }
            | Self::Staff { practice, .. }
            | Self::System { practice, .. } => Some(*practice),
            Self::Operator => None,
        }
    }

    pub fn actor(&self) -> crate::audit::Actor {
        match self {
            Self::Token { token, .. } => crate::audit::Actor::ApiToken(*token),
            Self::Staff { user, .. } => crate::audit::Actor::User(*user),
            Self::Operator => crate::audit::Actor::Cli,
            Self::System { .. } => crate::audit::Actor::System,
        }
    }

    /// Which restricted patients appear in this principal's lists and searches.
    pub fn restricted_visibility(&self) -> RestrictedVisibility {
        match self {
            // An integration token acts for the practice's systems of record.
            Self::Token { .. } | Self::System { .. } | Self::Operator => RestrictedVisibility::All,
            Self::Staff { user, .. } => RestrictedVisibility::NamedOrGranted(*user),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestrictedVisibility {
    All,
    /// Only those naming this user, or for which the user holds a live break-glass grant.
    NamedOrGranted(UserId),
}

/// What the gate knows about one patient (and, for conversation operations, its conversation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PatientGuard {
    pub restricted: bool,
    /// The principal is one of the people named on this restricted patient.
    pub named: bool,
    /// The principal holds an unexpired break-glass grant for this patient.
    pub break_glass: bool,
    pub team: TeamGate,
}

/// A conversation assigned to a team is for that team (and its assignee and the admins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TeamGate {
    /// Not assigned to a team, or the principal is its assignee.
    #[default]
    Open,
    Member,
    Outsider,
}

/// Whether a message's content is clinical or administrative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentKind {
    Clinical,
    Administrative,
}

impl ContentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clinical => "clinical",
            Self::Administrative => "administrative",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "clinical" => Some(Self::Clinical),
            "administrative" => Some(Self::Administrative),
            _ => None,
        }
    }
}

/// May this principal see the content of a message of this kind? The front desk sees clinical
/// content only where the practice allows it; everyone sees what they wrote themselves.
pub fn may_see_content(
    principal: &Principal,
    kind: ContentKind,
    front_desk_sees_clinical: bool,
    own_message: bool,
) -> bool {
    match principal {
        Principal::Operator | Principal::Token { .. } | Principal::System { .. } => true,
        Principal::Staff { role, .. } => match (role, kind) {
            _ if own_message => true,
            (Role::Auditor, _) => false,
            (_, ContentKind::Administrative) => true,
            (Role::Admin | Role::Clinician, ContentKind::Clinical) => true,
            (Role::Staff, ContentKind::Clinical) => front_desk_sees_clinical,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
    /// Allowed only after the clinician gives a reason (break-glass).
    BreakGlassRequired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    MissingScope(Scope),
    TokenNotAllowed,
    RoleNotAllowed(Role),
    Restricted,
    /// The conversation is assigned to a team the principal is not in.
    OtherTeam,
}

/// The only gate. `patient` is given for operations on one patient.
pub fn authorize(principal: &Principal, op: Operation, patient: Option<&PatientGuard>) -> Decision {
    match principal {
        Principal::Operator => Decision::Allow,
        Principal::Token { scopes, .. } | Principal::System { scopes, .. } => {
            match required_scope(op) {
                None => Decision::Deny(DenyReason::TokenNotAllowed),
                Some(needed) if !scopes.contains(&needed) => {
                    Decision::Deny(DenyReason::MissingScope(needed))
                }
                Some(_) => Decision::Allow,
            }
        }
        Principal::Staff { role, .. } => {
            if !role_allows(*role, op) {
                return Decision::Deny(DenyReason::RoleNotAllowed(*role));
            }
            // Another team's conversation: a clinician may break the glass, the front desk not.
            if let Some(p) = patient
                && op.is_conversation_operation()
                && p.team == TeamGate::Outsider
                && *role != Role::Admin
                && !p.break_glass
            {
                return if role_allows(*role, Op::BreakGlass) {
                    Decision::BreakGlassRequired
                } else {
                    Decision::Deny(DenyReason::OtherTeam)
                };
            }
            match patient {
                Some(p) if p.restricted && !p.named && !p.break_glass => {
                    if op != Op::BreakGlass && role_allows(*role, Op::BreakGlass) {
                        Decision::BreakGlassRequired
                    } else if op == Op::BreakGlass {
                        Decision::Allow
                    } else {
                        Decision::Deny(DenyReason::Restricted)
                    }
                }
                _ => Decision::Allow,
            }
        }
    }
}

/// Why a clinician broke the glass; the free-text reason comes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakGlassCategory {
    EmergencyTreatment,
    ContinuityOfCare,
    CoveringForColleague,
    PatientRequest,
    Other,
}

impl BreakGlassCategory {
    pub const ALL: [BreakGlassCategory; 5] = [
        Self::EmergencyTreatment,
        Self::ContinuityOfCare,
        Self::CoveringForColleague,
        Self::PatientRequest,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmergencyTreatment => "emergency_treatment",
            Self::ContinuityOfCare => "continuity_of_care",
            Self::CoveringForColleague => "covering_for_colleague",
            Self::PatientRequest => "patient_request",
            Self::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }
}

/// A break-glass reason: written out, 10 to 1000 characters.
pub fn break_glass_reason(raw: &str) -> Result<crate::Sensitive<String>, crate::FieldError> {
    let trimmed = raw.trim();
    let n = trimmed.chars().count();
    if !(10..=1000).contains(&n) || trimmed.chars().any(|c| c.is_control() && c != '\n') {
        return Err(crate::FieldError::new(
            "reason",
            "a written reason of 10 to 1000 characters",
        ));
    }
    Ok(crate::Sensitive::new(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scopes: &[Scope]) -> Principal {
        Principal::Token {
            practice: PracticeId::new(),
            token: TokenId::new(),
            scopes: scopes.to_vec(),
        }
    }

    fn staff(role: Role) -> Principal {
        Principal::Staff {
            practice: PracticeId::new(),
            user: UserId::new(),
            role,
        }
    }

    #[test]
    fn tokens_need_exactly_their_scope_and_never_administer() {
        for op in Operation::ALL {
            match required_scope(op) {
                Some(needed) => {
                    assert_eq!(authorize(&token(&[needed]), op, None), Decision::Allow);
                    let others: Vec<Scope> =
                        Scope::ALL.into_iter().filter(|s| *s != needed).collect();
                    assert_eq!(
                        authorize(&token(&others), op, None),
                        Decision::Deny(DenyReason::MissingScope(needed))
                    );
                }
                None => assert_eq!(
                    authorize(&token(&Scope::ALL), op, None),
                    Decision::Deny(DenyReason::TokenNotAllowed)
                ),
            }
        }
    }

    #[test]
    fn the_system_principal_is_held_to_its_scopes_and_audited_as_the_system() {
        let practice = PracticeId::new();
        let feed = Principal::System {
            practice,
            scopes: vec![Scope::PatientsWrite, Scope::AppointmentsWrite],
        };
        assert_eq!(feed.actor(), crate::audit::Actor::System);
        assert_eq!(feed.practice(), Some(practice));
        assert_eq!(
            authorize(&feed, Op::AppointmentWrite, None),
            Decision::Allow
        );
        assert_eq!(authorize(&feed, Op::PatientCreate, None), Decision::Allow);
        assert_eq!(
            authorize(&feed, Op::MessageSend, None),
            Decision::Deny(DenyReason::MissingScope(Scope::MessagesWrite))
        );
        assert_eq!(
            authorize(&feed, Op::UserManage, None),
            Decision::Deny(DenyReason::TokenNotAllowed)
        );
    }

    #[test]
    fn the_role_table_is_what_the_product_promises() {
        let allowed = |role| -> Vec<Operation> {
            Operation::ALL
                .into_iter()
                .filter(|op| authorize(&staff(role), *op, None) == Decision::Allow)
                .collect()
        };
        assert!(allowed(Role::Admin).contains(&Op::UserManage));
        assert!(
            !allowed(Role::Admin).contains(&Op::AuditRead),
            "separation of duties"
        );
        for role in [Role::Admin, Role::Clinician, Role::Staff] {
            assert!(
                !allowed(role).contains(&Op::BreakGlassReview),
                "only the privacy officer reviews break-glass: {role:?}"
            );
        }
        assert!(!allowed(Role::Clinician).contains(&Op::UserManage));
        assert!(allowed(Role::Clinician).contains(&Op::BreakGlass));
        assert!(!allowed(Role::Staff).contains(&Op::BreakGlass));
        assert_eq!(
            allowed(Role::Auditor),
            vec![
                Op::UserList,
                Op::AuditRead,
                Op::BreakGlassReview,
                Op::GuidelinesRead,
                Op::ConsentRead,
                Op::VendorRead,
                Op::ReportRead
            ]
        );
        assert!(allowed(Role::Admin).contains(&Op::PracticeSettingsManage));
        assert!(allowed(Role::Admin).contains(&Op::ReportRead));
        for role in [Role::Clinician, Role::Staff, Role::Auditor] {
            assert!(
                !allowed(role).contains(&Op::PracticeSettingsManage),
                "{role:?}"
            );
        }
        for role in [Role::Clinician, Role::Staff] {
            assert!(!allowed(role).contains(&Op::ReportRead), "{role:?}");
        }
        assert!(allowed(Role::Admin).contains(&Op::ProviderManage));
        for role in [Role::Clinician, Role::Staff, Role::Auditor] {
            assert!(!allowed(role).contains(&Op::ProviderManage), "{role:?}");
        }
        assert!(
            !allowed(Role::Auditor).contains(&Op::PatientRead),
            "no patient content"
        );
        // Announcements go to many patients at once: the admins and the front desk send them;
        // clinicians see them; tokens never broadcast.
        for role in [Role::Admin, Role::Staff] {
            assert!(allowed(role).contains(&Op::AnnouncementSend), "{role:?}");
            assert!(allowed(role).contains(&Op::AnnouncementRead), "{role:?}");
        }
        assert!(!allowed(Role::Clinician).contains(&Op::AnnouncementSend));
        assert!(allowed(Role::Clinician).contains(&Op::AnnouncementRead));
        assert!(!allowed(Role::Auditor).contains(&Op::AnnouncementRead));
        assert_eq!(required_scope(Op::AnnouncementSend), None);
        assert_eq!(required_scope(Op::AnnouncementRead), None);
    }

    #[test]
    fn front_desk_nurses_clinicians_and_admins_manage_appointments_auditors_do_not() {
        let appointment_ops = [
            Op::AppointmentRead,
            Op::AppointmentWrite,
            Op::AppointmentImport,
        ];
        for role in [Role::Admin, Role::Clinician, Role::Staff] {
            for op in appointment_ops {
                assert_eq!(
                    authorize(&staff(role), op, None),
                    Decision::Allow,
                    "{role} {op:?}"
                );
            }
        }
        for op in appointment_ops {
            // An appointment's type, place and provider are patient content.
            assert_eq!(
                authorize(&staff(Role::Auditor), op, None),
                Decision::Deny(DenyReason::RoleNotAllowed(Role::Auditor))
            );
        }
        assert_eq!(
            required_scope(Op::AppointmentRead),
            Some(Scope::AppointmentsRead)
        );
        assert_eq!(
            required_scope(Op::AppointmentWrite),
            Some(Scope::AppointmentsWrite)
        );
        assert_eq!(
            required_scope(Op::AppointmentImport),
            Some(Scope::AppointmentsWrite)
        );
        assert_eq!(
            authorize(
                &token(&[Scope::PatientsWrite, Scope::MessagesWrite]),
                Op::AppointmentWrite,
                None
            ),
            Decision::Deny(DenyReason::MissingScope(Scope::AppointmentsWrite))
        );
        // A restricted patient's appointments are as hidden as the patient.
        let restricted = PatientGuard {
            restricted: true,
            ..PatientGuard::default()
        };
        assert_eq!(
            authorize(&staff(Role::Staff), Op::AppointmentRead, Some(&restricted)),
            Decision::Deny(DenyReason::Restricted)
        );
        assert_eq!(
            Scope::parse_list("appointments:read,appointments:write").unwrap(),
            vec![Scope::AppointmentsRead, Scope::AppointmentsWrite]
        );
    }

    #[test]
    fn restricted_patients_need_a_name_or_the_glass() {
        let restricted = PatientGuard {
            restricted: true,
            named: false,
            break_glass: false,
            team: TeamGate::Open,
        };
        assert_eq!(
            authorize(&staff(Role::Clinician), Op::PatientRead, Some(&restricted)),
            Decision::BreakGlassRequired
        );
        assert_eq!(
            authorize(&staff(Role::Staff), Op::PatientRead, Some(&restricted)),
            Decision::Deny(DenyReason::Restricted)
        );
        assert_eq!(
            authorize(&staff(Role::Clinician), Op::BreakGlass, Some(&restricted)),
            Decision::Allow
        );
        let named = PatientGuard {
            named: true,
            ..restricted
        };
        assert_eq!(
            authorize(&staff(Role::Staff), Op::PatientRead, Some(&named)),
            Decision::Allow
        );
        let granted = PatientGuard {
            break_glass: true,
            ..restricted
        };
        assert_eq!(
            authorize(&staff(Role::Clinician), Op::PatientRead, Some(&granted)),
            Decision::Allow
        );
        assert_eq!(
            authorize(&token(&Scope::ALL), Op::PatientRead, Some(&restricted)),
            Decision::Allow
        );
        assert_eq!(
            authorize(
                &staff(Role::Admin),
                Op::PatientRead,
                Some(&PatientGuard::default())
            ),
            Decision::Allow
        );
    }

    #[test]
    fn break_glass_needs_a_real_reason() {
        assert!(break_glass_reason("x").is_err());
        assert!(break_glass_reason("          ").is_err());
        assert!(break_glass_reason(&"y".repeat(1001)).is_err());
        assert_eq!(
            break_glass_reason("  covering Dr. Lee's patients today ")
                .unwrap()
                .expose(),
            "covering Dr. Lee's patients today"
        );
        for c in BreakGlassCategory::ALL {
            assert_eq!(BreakGlassCategory::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn only_named_admins_change_a_restricted_patients_list() {
        // Otherwise an admin could quietly name themselves and read the record.
        let restricted = PatientGuard {
            restricted: true,
            named: false,
            break_glass: false,
            team: TeamGate::Open,
        };
        assert_eq!(
            authorize(&staff(Role::Admin), Op::PatientRestrict, Some(&restricted)),
            Decision::Deny(DenyReason::Restricted)
        );
        let named = PatientGuard {
            named: true,
            ..restricted
        };
        assert_eq!(
            authorize(&staff(Role::Admin), Op::PatientRestrict, Some(&named)),
            Decision::Allow
        );
    }

    #[test]
    fn scope_and_role_names_parse_strictly() {
        assert_eq!(
            Scope::parse_list("patients:write, patients:read").unwrap(),
            vec![Scope::PatientsRead, Scope::PatientsWrite]
        );
        assert!(Scope::parse_list("patients:delete").is_err());
        assert!(Scope::parse_list("").is_err());
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_team_conversation_is_for_its_team_its_assignee_admins_and_the_glass() {
        let outsider = PatientGuard {
            team: TeamGate::Outsider,
            ..PatientGuard::default()
        };
        for op in Operation::ALL
            .into_iter()
            .filter(|o| o.is_conversation_operation())
        {
            assert_eq!(
                authorize(&staff(Role::Staff), op, Some(&outsider)),
                Decision::Deny(DenyReason::OtherTeam),
                "front desk {op:?}"
            );
            assert_eq!(
                authorize(&staff(Role::Clinician), op, Some(&outsider)),
                Decision::BreakGlassRequired,
                "clinician {op:?}"
            );
            let glass = PatientGuard {
                break_glass: true,
                ..outsider
            };
            assert_eq!(
                authorize(&staff(Role::Clinician), op, Some(&glass)),
                Decision::Allow
            );
            for role in [Role::Clinician, Role::Staff] {
                for gate in [TeamGate::Member, TeamGate::Open] {
                    let inside = PatientGuard {
                        team: gate,
                        ..PatientGuard::default()
                    };
                    assert_eq!(authorize(&staff(role), op, Some(&inside)), Decision::Allow);
                }
            }
            assert_eq!(
                authorize(&staff(Role::Admin), op, Some(&outsider)),
                Decision::Allow
            );
        }
        // Consent is the patient's, not the conversation's: a team assignment does not hide it.
        assert_eq!(
            authorize(&staff(Role::Staff), Op::ConsentRead, Some(&outsider)),
            Decision::Allow
        );
    }

    #[test]
    fn clinical_content_is_for_clinicians_and_a_front_desk_the_practice_allows() {
        use ContentKind::*;
        let cases = [
            (Role::Admin, Clinical, false, true),
            (Role::Clinician, Clinical, false, true),
            (Role::Staff, Clinical, false, false),
            (Role::Staff, Clinical, true, true),
            (Role::Staff, Administrative, false, true),
            (Role::Auditor, Administrative, true, false),
            (Role::Auditor, Clinical, true, false),
        ];
        for (role, kind, allowed_by_practice, expected) in cases {
            assert_eq!(
                may_see_content(&staff(role), kind, allowed_by_practice, false),
                expected,
                "{role} {kind:?} {allowed_by_practice}"
            );
        }
        assert!(may_see_content(&staff(Role::Staff), Clinical, false, true));
        assert!(may_see_content(
            &token(&[Scope::MessagesRead]),
            Clinical,
            false,
            false
        ));
    }

    #[test]
    fn auditors_never_read_or_send_messages() {
        for op in [
            Op::ConversationList,
            Op::ConversationRead,
            Op::MessageSend,
            Op::MessageNote,
            Op::ConversationManage,
        ] {
            assert_eq!(
                authorize(&staff(Role::Auditor), op, None),
                Decision::Deny(DenyReason::RoleNotAllowed(Role::Auditor))
            );
        }
        assert_eq!(
            authorize(&staff(Role::Auditor), Op::ConsentRead, None),
            Decision::Allow
        );
    }
}

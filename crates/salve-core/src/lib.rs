//! Salve's domain: identifiers, validated inputs, permissions, the audit vocabulary, and the
//! messaging rules (consent, confidential communications, system messages, routing).
//! No I/O, no async, no SQL: every rule here is testable in isolation.

pub mod announcements;
pub mod appointments;
pub mod audit;
pub mod carrier;
pub mod client_family;
pub mod clock;
pub mod confidential;
pub mod consent;
pub mod delivery;
pub mod ehr;
pub mod ehr_pull;
pub mod fnv;
pub mod hours;
pub mod ids;
pub mod inbound;
pub mod keywords;
pub mod links;
pub mod outgoing;
pub mod password_policy;
pub mod patient;
pub mod permissions;
pub mod policy;
pub mod reminders;
pub mod response_time;
pub mod routing;
pub mod sensitive;
pub mod smart;
pub mod staff_access;
pub mod system_messages;
pub mod templates;
pub mod throttle;
pub mod unread;
pub mod urgency;
pub mod validation;
pub mod vendors;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{
    AgreementId, AnnouncementId, AppointmentId, AttachmentId, CatalogItemId, ConfidentialRequestId,
    ConsentEventId, ConversationId, MessageId, OutboxJobId, PatientId, PracticeId, ProviderId,
    ReminderId, SessionId, SmartClientId, TeamId, TemplateId, TokenId, UserId,
};
pub use sensitive::Sensitive;
pub use validation::FieldError;

//! Salve's domain: identifiers, validated inputs, permissions and the audit vocabulary.
//! No I/O, no async, no SQL: every rule here is testable in isolation.

pub mod audit;
pub mod clock;
pub mod ids;
pub mod links;
pub mod password_policy;
pub mod patient;
pub mod permissions;
pub mod policy;
pub mod sensitive;
pub mod templates;
pub mod throttle;
pub mod validation;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{
    AttachmentId, CatalogItemId, ConfidentialRequestId, ConsentEventId, ConversationId, MessageId,
    OutboxJobId, PatientId, PracticeId, SessionId, TeamId, TemplateId, TokenId, UserId,
};
pub use sensitive::Sensitive;
pub use validation::FieldError;

//! Channels that carry messages out of Salve. Every provider sits behind [`Provider`]; the
//! [`LocalOutbox`] stands in for SMS and email in the demo and in tests; [`SmtpProvider`]
//! sends email notifications through an SMTP relay.

mod email;
mod media;
mod outbox;

use async_trait::async_trait;
use salve_core::Sensitive;
use serde::{Deserialize, Serialize};

pub use email::{
    ErrorClass, SmtpConfig, SmtpConfigError, SmtpFailure, SmtpProvider, SmtpSecurity, SmtpTimeouts,
};
pub use media::{
    BasicCredentials, FetchPolicy, FetchedMedia, HostPattern, InvalidHostPattern, MAX_REDIRECTS,
    MediaError, MediaFetcher, MediaType, Resolver, SystemResolver, TELNYX_MEDIA_HOSTS,
    TWILIO_MEDIA_HOSTS, TWILIO_MEDIA_REDIRECT_HOSTS, is_public_address,
};
pub use outbox::{LocalOutbox, OutboxRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sms,
    Email,
}

/// One message to send. `id` is stable across retries, so a provider can refuse a duplicate.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub id: uuid::Uuid,
    pub channel: Channel,
    /// E.164 phone number or email address.
    pub to: Sensitive<String>,
    pub subject: Option<String>,
    pub body: Sensitive<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The provider's id for the message, for reconciliation.
    pub provider_id: String,
}

/// Why a send failed. Only [`ProviderError::kind`] is logged; the text is for the caller.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the message; retrying will not help.
    #[error("rejected by the provider: {0}")]
    Rejected(String),
    /// The provider could not be reached or failed; whether it sent is unknown.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

impl ProviderError {
    /// What may be logged: the kind only. A provider's own text can quote the recipient.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "rejected",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// What a provider can say about a send whose outcome was lost (a crash, a timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciliation {
    Sent(SendReceipt),
    /// The provider never received it: sending it now is not a duplicate.
    NotSent,
    CannotTell,
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Sends, and returns only once the provider has durably accepted the message.
    async fn send(&self, message: &OutgoingMessage) -> Result<SendReceipt, ProviderError>;
    /// Whether the provider has the message with this id. Providers that cannot look a message
    /// up say `CannotTell`, and the message becomes `unknown` for staff instead of being resent.
    async fn reconcile(&self, _message: &OutgoingMessage) -> Reconciliation {
        Reconciliation::CannotTell
    }
}

#[cfg(test)]
mod tests {
    use super::ProviderError;

    #[test]
    fn only_the_kind_is_for_logs() {
        let e = ProviderError::Rejected("The 'To' number +13125550142 is not valid".into());
        assert_eq!(e.kind(), "rejected");
        assert!(!e.kind().contains("555"));
        assert_eq!(
            ProviderError::Unavailable("timeout".into()).kind(),
            "unavailable"
        );
    }
}

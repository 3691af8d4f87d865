//! Channels that carry messages out of Salve. Every provider sits behind [`Provider`]; the
//! [`LocalOutbox`] stands in for SMS and email in the demo and in tests, [`twilio`] speaks the
//! Twilio Messages API (and the vendors that copy it), [`telnyx`] the Telnyx v2 messaging API,
//! [`SmtpProvider`] sends email notifications through an SMTP relay, and [`MediaFetcher`]
//! fetches inbound MMS media without being usable against the server's own network.
//!
//! What may reach a log line: [`ProviderError::kind`] and [`ProviderError::code`], the
//! `Display` of every error type in this crate, [`DeliveryStatus`] and provider message ids.
//! Phone numbers, message text and providers' own error texts only ever travel in
//! [`Sensitive`] values, for sealed storage.

mod email;
mod http_util;
mod media;
mod outbox;
pub mod telnyx;
pub mod twilio;

use async_trait::async_trait;
use salve_core::Sensitive;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// The provider's id for the message, for reconciliation and status callbacks.
    pub provider_id: String,
}

/// Why a send (or another provider call) failed.
///
/// `Display`, `Debug`, [`kind`](Self::kind) and [`code`](Self::code) are log-safe: they are
/// built from Salve's own constants and numeric provider codes only. The provider's own text,
/// which can quote the recipient, is in [`detail`](Self::detail), for sealed storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider did not take the message and said so, or was never reached (connect
    /// error, 429, 5xx): retry later.
    #[error("transient provider error ({code})")]
    Transient {
        code: String,
        detail: Sensitive<String>,
    },
    /// The provider refused the message for good (invalid number, unsubscribed recipient,
    /// rejected content): fail it and show the reason to staff.
    #[error("permanent provider error ({code})")]
    Permanent {
        code: String,
        detail: Sensitive<String>,
    },
    /// The request may have reached the provider but the answer was lost (a timeout or a
    /// dropped connection after sending): reconcile before any retry.
    #[error("ambiguous provider error ({code})")]
    Ambiguous {
        code: String,
        detail: Sensitive<String>,
    },
}

impl ProviderError {
    pub fn transient(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Transient {
            code: code.into(),
            detail: Sensitive::new(detail.into()),
        }
    }
    pub fn permanent(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Permanent {
            code: code.into(),
            detail: Sensitive::new(detail.into()),
        }
    }
    pub fn ambiguous(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Ambiguous {
            code: code.into(),
            detail: Sensitive::new(detail.into()),
        }
    }

    /// Log-safe: `transient`, `permanent` or `ambiguous`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transient { .. } => "transient",
            Self::Permanent { .. } => "permanent",
            Self::Ambiguous { .. } => "ambiguous",
        }
    }

    /// Log-safe and short: `http_503`, `twilio_21610`, `telnyx_40300`, `timeout`, `connect`, …
    pub fn code(&self) -> &str {
        match self {
            Self::Transient { code, .. }
            | Self::Permanent { code, .. }
            | Self::Ambiguous { code, .. } => code,
        }
    }

    /// The provider's own explanation. May quote the recipient: sealed storage only.
    pub fn detail(&self) -> &Sensitive<String> {
        match self {
            Self::Transient { detail, .. }
            | Self::Permanent { detail, .. }
            | Self::Ambiguous { detail, .. } => detail,
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

/// What a provider does by itself, so Salve does not do it twice or forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The provider answers STOP/START/HELP itself and blocks opted-out recipients.
    pub handles_opt_out_keywords: bool,
    /// [`Provider::reconcile`] can find a message whose send outcome was lost.
    pub can_reconcile: bool,
    /// The sender number is picked by the provider (Twilio Messaging Service, Telnyx
    /// messaging profile), not fixed by Salve.
    pub picks_sender_number: bool,
    /// [`Provider::delete_media`] removes inbound media from the provider.
    pub can_delete_media: bool,
}

/// Where a provider's inbound media may be fetched from, and with what credentials (only ever
/// sent to the allow-listed start hosts).
#[derive(Clone)]
pub struct MediaAccess {
    pub policy: FetchPolicy,
    pub credentials: Option<BasicCredentials>,
}

/// A webhook request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// The configured public URL of the webhook endpoint, including path and query, exactly
    /// as the provider was told to call it (not the URL the server saw behind a proxy).
    pub public_url: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The raw body, unparsed.
    pub body: &'a [u8],
}

/// Why a webhook was refused. Log-safe: never echoes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header missing")]
    Missing,
    #[error("signature or timestamp header malformed")]
    Malformed,
    /// Signed with another algorithm than the one pinned for this provider (a downgrade).
    #[error("signature algorithm not the configured one")]
    WrongAlgorithm,
    #[error("timestamp outside the replay window")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// Why a webhook body could not be read. Log-safe: never echoes the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unsupported content type")]
    ContentType,
    #[error("body is not valid {0}")]
    Syntax(&'static str),
    #[error("required field {0} missing")]
    Missing(&'static str),
    #[error("field {0} has an invalid value")]
    Invalid(&'static str),
}

/// Inbound media as the provider hosts it. URLs name provider resources, not people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    pub url: String,
    pub content_type: String,
}

/// A message a patient sent.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub provider_message_id: String,
    pub from: Sensitive<String>,
    /// Salve's own number (or sender id).
    pub to: String,
    pub body: Sensitive<String>,
    pub media: Vec<MediaRef>,
    /// Twilio Advanced Opt-Out's `OptOutType` (`STOP`, `START`, `HELP`), when the provider
    /// classified the message as a keyword.
    pub opt_out_type: Option<String>,
}

/// Delivery status of an outgoing message, as providers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Accepted,
    Scheduled,
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Canceled,
    Read,
    /// A status this version of Salve does not know. Never replaces a known one.
    Other,
}

impl DeliveryStatus {
    /// Callbacks arrive out of order: a status only replaces one of lower rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Other => 0,
            Self::Accepted | Self::Scheduled => 1,
            Self::Queued => 2,
            Self::Sending => 3,
            Self::Sent => 4,
            Self::Delivered | Self::Undelivered | Self::Failed | Self::Canceled => 5,
            Self::Read => 6,
        }
    }

    /// Whether a callback with `self` should replace the recorded `current`.
    pub fn advances(self, current: DeliveryStatus) -> bool {
        self.rank() > current.rank()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Read => "read",
            Self::Other => "other",
        }
    }
}

/// A delivery report for a message Salve sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub provider_message_id: String,
    pub status: DeliveryStatus,
    /// The provider's error code (log-safe: digits and letters only), if it gave one.
    pub error_code: Option<String>,
}

#[derive(Debug, Clone)]
pub enum WebhookEvent {
    Inbound(InboundMessage),
    Status(StatusUpdate),
    /// A genuine event of a type Salve does not act on; answer 2xx and drop it.
    Ignored,
}

/// What [`Provider::delete_media`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaDeletion {
    Deleted,
    /// It was gone already.
    NotFound,
    /// The provider has no API to delete it; it expires on the provider's schedule.
    Unsupported,
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Sends, and returns only once the provider has durably accepted the message.
    async fn send(&self, message: &OutgoingMessage) -> Result<SendReceipt, ProviderError>;

    /// Whether the provider has the message. `attempt_started` is when the lost attempt began
    /// (`None` when unknown, e.g. a job found in `sending` after a crash). Providers that
    /// cannot look a message up say `CannotTell`, and the message becomes `unknown` for staff
    /// instead of being resent.
    async fn reconcile(
        &self,
        _message: &OutgoingMessage,
        _attempt_started: Option<OffsetDateTime>,
    ) -> Reconciliation {
        Reconciliation::CannotTell
    }

    /// Checks that a webhook came from the provider. `now` is the server's clock.
    fn verify_webhook(
        &self,
        _request: &WebhookRequest<'_>,
        _now: OffsetDateTime,
    ) -> Result<(), SignatureError> {
        Err(SignatureError::Missing)
    }

    /// Reads a verified webhook body. `content_type` is the request's `Content-Type` header.
    fn parse_webhook(
        &self,
        _body: &[u8],
        _content_type: Option<&str>,
    ) -> Result<WebhookEvent, ParseError> {
        Err(ParseError::ContentType)
    }

    /// How to fetch this provider's inbound media (allowed hosts, credentials); `None` when
    /// it delivers none.
    fn media_access(&self) -> Option<MediaAccess> {
        None
    }

    /// Deletes inbound media from the provider once Salve has its own sealed copy.
    async fn delete_media(&self, _media: &MediaRef) -> Result<MediaDeletion, ProviderError> {
        Ok(MediaDeletion::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kind_and_code_are_for_logs() {
        let e =
            ProviderError::permanent("twilio_21211", "The 'To' number +13125550142 is not valid");
        assert_eq!(e.kind(), "permanent");
        assert_eq!(e.code(), "twilio_21211");
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains("555"), "{shown}");
            assert!(shown.contains("twilio_21211"), "{shown}");
        }
        assert!(e.detail().expose().contains("+13125550142"));
        assert_eq!(ProviderError::transient("http_503", "").kind(), "transient");
        assert_eq!(ProviderError::ambiguous("timeout", "").kind(), "ambiguous");
    }

    /// Arbitrary bytes (and mangled real bodies) as webhook bodies, headers and URLs: errors,
    /// never panics.
    #[test]
    fn garbage_webhooks_never_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let samples: [&[u8]; 3] = [
            b"MessageSid=SM0123456789abcdef0123456789abcdef&From=%2B1&To=%2B2&Body=x&NumMedia=1&MediaUrl0=u&MediaContentType0=t&MessageStatus=sent",
            br#"{"data":{"event_type":"message.received","payload":{"id":"a","from":{"phone_number":"1"},"to":[{"phone_number":"2","status":"sent"}],"text":"x","media":[{"url":"u","content_type":"t"}]}}}"#,
            b"%%%&&==\xff",
        ];
        let signing = twilio::WebhookSigning {
            algorithm: twilio::SignatureAlgorithm::HmacSha1,
            secret: secrecy::SecretString::from("t".to_string()),
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        for round in 0..3000 {
            let mut body = samples[round % samples.len()].to_vec();
            let len = (next() % 64) as usize;
            for _ in 0..len {
                let r = next();
                match r % 3 {
                    0 if !body.is_empty() => {
                        let i = (r as usize / 3) % body.len();
                        body[i] = (r >> 40) as u8;
                    }
                    1 if !body.is_empty() => {
                        body.truncate((r as usize / 3) % body.len());
                    }
                    _ => body.push((r >> 32) as u8),
                }
            }
            let _ = twilio::parse_webhook(&body, Some("application/x-www-form-urlencoded"));
            let _ = telnyx::parse_webhook(&body, Some("application/json"));
            let text = String::from_utf8_lossy(&body).into_owned();
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_bytes(&body) {
                headers.insert("x-twilio-signature", v.clone());
                headers.insert("x-twilio-webhooks-signature-settings", v.clone());
                headers.insert("telnyx-signature-ed25519", v.clone());
                headers.insert("telnyx-timestamp", v.clone());
                headers.insert("content-type", v);
            }
            let _ = twilio::verify_signature(&signing, &text, &headers, &body);
            let _ = telnyx::verify_signature(
                &key,
                std::time::Duration::from_secs(300),
                &headers,
                &body,
                time::OffsetDateTime::UNIX_EPOCH,
            );
        }
    }

    #[test]
    fn status_only_moves_forward() {
        use DeliveryStatus::*;
        assert!(Sent.advances(Queued));
        assert!(Delivered.advances(Sent));
        assert!(Read.advances(Delivered));
        assert!(
            !Sent.advances(Delivered),
            "a late 'sent' does not undo 'delivered'"
        );
        assert!(!Queued.advances(Sending));
        assert!(!Failed.advances(Delivered));
        assert!(!Other.advances(Queued));
        assert!(Undelivered.advances(Sent));
    }
}

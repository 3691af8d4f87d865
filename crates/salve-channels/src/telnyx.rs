//! SMS through the Telnyx v2 messaging API.
//!
//! - Sending: `POST {base}/v2/messages`, JSON, bearer API key.
//! - Reconciling: Telnyx has no documented way to find a message by recipient and text, so a
//!   lost answer is `CannotTell` (the message becomes `unknown` for staff).
//! - Webhooks: Ed25519 over `{telnyx-timestamp}|{raw body}` (`telnyx-signature-ed25519`,
//!   base64), checked against the account's public key, with a replay window around the
//!   server's clock (300 s by default, as Telnyx's own SDK; future timestamps too).
//! - Opt-out: Telnyx blocks a recipient who sent STOP (and the other standard keywords) at the
//!   messaging-profile level by default; a send to them fails with error 40300.
//! - Media: inbound MMS links are temporary and Telnyx documents no call to delete them.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, VerifyingKey};
use salve_core::Sensitive;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::http_util::{classify_status, classify_transport, read_limited, safe_code, trim_base};
use crate::{
    Capabilities, Channel, DeliveryStatus, InboundMessage, MediaDeletion, MediaRef,
    OutgoingMessage, ParseError, Provider, ProviderError, SendReceipt, SignatureError,
    StatusUpdate, WebhookEvent, WebhookRequest,
};

pub const DEFAULT_BASE_URL: &str = "https://api.telnyx.com";
pub const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "telnyx-timestamp";
const MAX_MEDIA: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelnyxSender {
    /// A fixed number (or alphanumeric sender id).
    From(String),
    /// A messaging profile whose number pool picks the number.
    MessagingProfile(String),
}

#[derive(Debug, Clone)]
pub struct TelnyxConfig {
    pub base_url: String,
    pub api_key: SecretString,
    pub sender: TelnyxSender,
    /// Sent as `webhook_url` with every message (otherwise the profile's URL is used).
    pub webhook_url: Option<String>,
    /// The account's webhook public key, base64 (Mission Control, "Keys & Credentials").
    pub public_key: String,
    pub replay_window: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl TelnyxConfig {
    pub fn new(api_key: SecretString, sender: TelnyxSender, public_key: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            api_key,
            sender,
            webhook_url: None,
            public_key: public_key.into(),
            replay_window: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the webhook public key must be 32 bytes of base64 (an Ed25519 public key)")]
    PublicKey,
    #[error("the HTTP client could not be built")]
    Client(#[source] reqwest::Error),
}

#[derive(Debug)]
pub struct TelnyxProvider {
    config: TelnyxConfig,
    base: String,
    public_key: VerifyingKey,
    http: reqwest::Client,
}

impl TelnyxProvider {
    pub fn new(config: TelnyxConfig) -> Result<Self, ConfigError> {
        let public_key = parse_public_key(&config.public_key).ok_or(ConfigError::PublicKey)?;
        let http = crate::http_util::client(config.connect_timeout, config.request_timeout)
            .map_err(ConfigError::Client)?;
        Ok(Self {
            base: trim_base(&config.base_url),
            public_key,
            config,
            http,
        })
    }
}

fn parse_public_key(b64: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = BASE64.decode(b64.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Telnyx's error body: `{"errors": [{"code": "40300", "title": "…", "detail": "…"}]}`.
#[derive(Deserialize)]
struct ApiErrors {
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    code: Option<serde_json::Value>,
    title: Option<String>,
    detail: Option<String>,
}

fn code_text(code: &serde_json::Value) -> Option<String> {
    match code {
        serde_json::Value::String(s) => safe_code(s),
        serde_json::Value::Number(n) => safe_code(&n.to_string()),
        _ => None,
    }
}

async fn error_from(response: reqwest::Response) -> ProviderError {
    let status = response.status();
    let body = read_limited(response).await;
    let first = serde_json::from_slice::<ApiErrors>(&body)
        .ok()
        .and_then(|e| e.errors.into_iter().next());
    let code = first
        .as_ref()
        .and_then(|e| e.code.as_ref())
        .and_then(code_text)
        .map(|c| format!("telnyx_{c}"));
    let detail = match first {
        Some(e) => [e.title, e.detail]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": "),
        None => format!("HTTP {}", status.as_u16()),
    };
    classify_status(status, code, detail)
}

#[derive(Deserialize)]
struct Created {
    data: Option<CreatedData>,
}

#[derive(Deserialize)]
struct CreatedData {
    id: Option<String>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[async_trait]
impl Provider for TelnyxProvider {
    /// Telnyx's inbound media links need no credentials.
    fn media_access(&self) -> Option<crate::MediaAccess> {
        Some(crate::MediaAccess {
            policy: crate::FetchPolicy::telnyx(),
            credentials: None,
        })
    }

    fn name(&self) -> &'static str {
        "telnyx"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            handles_opt_out_keywords: true,
            can_reconcile: false,
            picks_sender_number: matches!(self.config.sender, TelnyxSender::MessagingProfile(_)),
            can_delete_media: false,
        }
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<SendReceipt, ProviderError> {
        if message.channel != Channel::Sms {
            return Err(ProviderError::permanent(
                "channel_unsupported",
                "this provider sends SMS only",
            ));
        }
        let mut body = serde_json::json!({
            "to": message.to.expose(),
            "text": message.body.expose(),
        });
        match &self.config.sender {
            TelnyxSender::From(from) => body["from"] = from.as_str().into(),
            TelnyxSender::MessagingProfile(id) => body["messaging_profile_id"] = id.as_str().into(),
        }
        if let Some(url) = &self.config.webhook_url {
            body["webhook_url"] = url.as_str().into();
        }
        let body = Sensitive::new(body.to_string());
        let response = self
            .http
            .post(format!("{}/v2/messages", self.base))
            .bearer_auth(self.config.api_key.expose_secret())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.expose().clone())
            .send()
            .await
            .map_err(classify_transport)?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        let created: Created = response.json().await.map_err(|e| {
            ProviderError::ambiguous("response_unreadable", e.without_url().to_string())
        })?;
        match created.data.and_then(|d| d.id) {
            Some(id) if valid_id(&id) => Ok(SendReceipt { provider_id: id }),
            _ => Err(ProviderError::ambiguous(
                "response_unreadable",
                "the answer to a send had no message id",
            )),
        }
    }

    fn verify_webhook(
        &self,
        request: &WebhookRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<(), SignatureError> {
        verify_signature(
            &self.public_key,
            self.config.replay_window,
            request.headers,
            request.body,
            now,
        )
    }

    fn parse_webhook(
        &self,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<WebhookEvent, ParseError> {
        parse_webhook(body, content_type)
    }

    async fn delete_media(&self, _media: &MediaRef) -> Result<MediaDeletion, ProviderError> {
        Ok(MediaDeletion::Unsupported)
    }
}

/// Verifies `telnyx-signature-ed25519` over `{telnyx-timestamp}|{body}`, and that the timestamp
/// is within `window` of `now` (either side).
pub fn verify_signature(
    key: &VerifyingKey,
    window: Duration,
    headers: &http::HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), SignatureError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Malformed)?;
    let timestamp_text = headers
        .get(TIMESTAMP_HEADER)
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Malformed)?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    let age = i128::from(now.unix_timestamp()) - i128::from(timestamp);
    if age.unsigned_abs() > u128::from(window.as_secs()) {
        return Err(SignatureError::Stale);
    }
    let signature: [u8; 64] = BASE64
        .decode(signature.trim())
        .map_err(|_| SignatureError::Malformed)?
        .try_into()
        .map_err(|_| SignatureError::Malformed)?;
    let mut signed = Vec::with_capacity(timestamp_text.len() + 1 + body.len());
    signed.extend_from_slice(timestamp_text.as_bytes());
    signed.push(b'|');
    signed.extend_from_slice(body);
    key.verify_strict(&signed, &Signature::from_bytes(&signature))
        .map_err(|_| SignatureError::Mismatch)
}

#[derive(Deserialize)]
struct Envelope {
    data: Option<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    event_type: Option<String>,
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    id: Option<String>,
    from: Option<Endpoint>,
    // Absent and `null` both mean none.
    to: Option<Vec<Endpoint>>,
    text: Option<String>,
    media: Option<Vec<Media>>,
    errors: Option<Vec<ApiError>>,
}

#[derive(Deserialize)]
struct Endpoint {
    phone_number: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct Media {
    url: Option<String>,
    content_type: Option<String>,
}

fn delivery_status(status: &str) -> DeliveryStatus {
    match status {
        "scheduled" => DeliveryStatus::Scheduled,
        "queued" => DeliveryStatus::Queued,
        "sending" => DeliveryStatus::Sending,
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "delivery_failed" => DeliveryStatus::Undelivered,
        "sending_failed" => DeliveryStatus::Failed,
        "delivery_unconfirmed" => DeliveryStatus::Sent,
        _ => DeliveryStatus::Other,
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    // Telnyx sends `application/json`; a missing header is read as JSON too.
    content_type.is_none_or(|c| {
        let c = c.split(';').next().unwrap_or("").trim();
        c.eq_ignore_ascii_case("application/json")
    })
}

/// Reads `message.received` and delivery events (`message.sent`, `message.finalized`); other
/// event types are [`WebhookEvent::Ignored`].
pub fn parse_webhook(body: &[u8], content_type: Option<&str>) -> Result<WebhookEvent, ParseError> {
    if !is_json(content_type) {
        return Err(ParseError::ContentType);
    }
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|_| ParseError::Syntax("JSON"))?;
    let data = envelope.data.ok_or(ParseError::Missing("data"))?;
    let event_type = data.event_type.ok_or(ParseError::Missing("event_type"))?;
    let inbound = match event_type.as_str() {
        "message.received" => true,
        "message.sent" | "message.finalized" => false,
        _ => return Ok(WebhookEvent::Ignored),
    };
    let payload = data.payload.ok_or(ParseError::Missing("payload"))?;
    let id = payload.id.ok_or(ParseError::Missing("payload.id"))?;
    if !valid_id(&id) {
        return Err(ParseError::Invalid("payload.id"));
    }
    let first_to = payload.to.unwrap_or_default().into_iter().next();
    if !inbound {
        let status = first_to
            .and_then(|t| t.status)
            .ok_or(ParseError::Missing("payload.to.status"))?;
        return Ok(WebhookEvent::Status(StatusUpdate {
            provider_message_id: id,
            status: delivery_status(&status),
            error_code: payload
                .errors
                .as_deref()
                .unwrap_or_default()
                .first()
                .and_then(|e| e.code.as_ref())
                .and_then(code_text),
        }));
    }
    let from = payload
        .from
        .and_then(|f| f.phone_number)
        .ok_or(ParseError::Missing("payload.from"))?;
    let to = first_to
        .and_then(|t| t.phone_number)
        .ok_or(ParseError::Missing("payload.to"))?;
    let media = payload.media.unwrap_or_default();
    if media.len() > MAX_MEDIA {
        return Err(ParseError::Invalid("payload.media"));
    }
    let media = media
        .into_iter()
        .map(|m| match (m.url, m.content_type) {
            (Some(url), Some(content_type)) => Ok(MediaRef { url, content_type }),
            _ => Err(ParseError::Missing("payload.media.url")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WebhookEvent::Inbound(InboundMessage {
        provider_message_id: id,
        from: Sensitive::new(from),
        to,
        body: Sensitive::new(payload.text.unwrap_or_default()),
        media,
        opt_out_type: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse() {
        let received = br#"{"data":{"event_type":"message.received","id":"e1","payload":{"id":"40385f64-5717-4562-b3fc-2c963f66afa6","from":{"phone_number":"+13125550142"},"to":[{"phone_number":"+13125550100","status":"webhook_delivered"}],"text":"Thanks","media":[{"url":"https://media.telnyx.example/a.jpg","content_type":"image/jpeg"}]}}}"#;
        match parse_webhook(received, Some("application/json")).unwrap() {
            WebhookEvent::Inbound(m) => {
                assert_eq!(m.from.expose(), "+13125550142");
                assert_eq!(m.to, "+13125550100");
                assert_eq!(m.body.expose(), "Thanks");
                assert_eq!(m.media.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let finalized = br#"{"data":{"event_type":"message.finalized","payload":{"id":"40385f64-5717-4562-b3fc-2c963f66afa6","to":[{"phone_number":"+13125550142","status":"delivery_failed"}],"errors":[{"code":"40001","title":"Not routable"}]}}}"#;
        match parse_webhook(finalized, None).unwrap() {
            WebhookEvent::Status(s) => {
                assert_eq!(s.status, DeliveryStatus::Undelivered);
                assert_eq!(s.error_code.as_deref(), Some("40001"));
            }
            other => panic!("{other:?}"),
        }
        let nulls = br#"{"data":{"event_type":"message.received","payload":{"id":"abc-1","from":{"phone_number":"+13125550142"},"to":[{"phone_number":"+13125550100"}],"text":null,"media":null,"errors":null}}}"#;
        match parse_webhook(nulls, None).unwrap() {
            WebhookEvent::Inbound(m) => {
                assert!(m.media.is_empty());
                assert_eq!(m.body.expose(), "");
            }
            other => panic!("{other:?}"),
        }
        let other = br#"{"data":{"event_type":"call.initiated","payload":{}}}"#;
        assert!(matches!(
            parse_webhook(other, None).unwrap(),
            WebhookEvent::Ignored
        ));
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"data\":null}",
            b"{\"data\":{\"event_type\":\"message.received\"}}",
            b"{\"data\":{\"event_type\":\"message.received\",\"payload\":{\"id\":\"+1312 555\"}}}",
            b"{\"data\":{\"event_type\":\"message.sent\",\"payload\":{\"id\":\"x\",\"to\":[]}}}",
        ] {
            let e = parse_webhook(body, Some("application/json")).unwrap_err();
            assert!(!e.to_string().contains("555"));
        }
        assert_eq!(
            parse_webhook(b"{}", Some("text/plain")).unwrap_err(),
            ParseError::ContentType
        );
    }

    #[test]
    fn a_bad_public_key_is_a_config_error() {
        let config = |key: &str| {
            TelnyxConfig::new(
                SecretString::from("KEYs3cr3t".to_string()),
                TelnyxSender::From("+13125550100".into()),
                key,
            )
        };
        assert!(matches!(
            TelnyxProvider::new(config("not base64")),
            Err(ConfigError::PublicKey)
        ));
        assert!(matches!(
            TelnyxProvider::new(config("AAAA")),
            Err(ConfigError::PublicKey)
        ));
        let debug = format!("{:?}", config("AAAA"));
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }
}

//! SMS through the Twilio Messages API (2010-04-01), or any vendor that speaks it: the base
//! URL is configurable.
//!
//! - Sending: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP
//!   basic auth with the Auth Token or an API key. `ShortenUrls` is never set (links to Salve
//!   must reach the patient as written).
//! - Reconciling a lost answer: the recipient's newest messages are listed and matched on
//!   recipient, sender, body and creation time.
//! - Webhooks: `X-Twilio-Signature`, base64 of an HMAC over the URL followed by the sorted POST
//!   parameters, as Twilio's own `RequestValidator` computes it. HMAC-SHA1 with the Auth Token
//!   by default; HMAC-SHA256 with a Webhook Setting's SharedKey secret when Twilio adds
//!   `X-Twilio-Webhooks-Signature-Settings: key=…,algorithm=HMAC_SHA256`. The algorithm is
//!   pinned in the configuration; a request signed with any other is refused.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use salve_core::Sensitive;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::http_util::{classify_status, classify_transport, read_limited, safe_code, trim_base};
use crate::{
    Capabilities, Channel, DeliveryStatus, InboundMessage, MediaDeletion, MediaRef,
    OutgoingMessage, ParseError, Provider, ProviderError, Reconciliation, SendReceipt,
    SignatureError, StatusUpdate, WebhookEvent, WebhookRequest,
};

pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
pub const SIGNATURE_SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";
/// Inbound MMS carry at most 10 media.
const MAX_MEDIA: usize = 10;
/// How many of the recipient's newest messages reconciliation looks at.
const RECONCILE_PAGE_SIZE: u32 = 50;

/// How Salve authenticates to the API.
#[derive(Debug, Clone)]
pub enum TwilioAuth {
    AuthToken(SecretString),
    /// An API key (`SK…`) and its secret: revocable without changing the Auth Token.
    ApiKey {
        sid: String,
        secret: SecretString,
    },
}

/// Who the message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    /// A fixed number (or alphanumeric sender id).
    From(String),
    /// A Messaging Service (`MG…`): Twilio picks the number from its pool.
    MessagingService(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// Twilio's default: signed with the account's Auth Token.
    HmacSha1,
    /// A Webhook Setting with a SharedKey: signed with the SharedKey secret. Twilio's
    /// Webhooks configuration API that sets this up is a Public Beta and, per Twilio's page,
    /// not a HIPAA Eligible Service: check before enabling it for patient messaging.
    HmacSha256,
}

impl SignatureAlgorithm {
    /// The name used in `X-Twilio-Webhooks-Signature-Settings`.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC_SHA1",
            Self::HmacSha256 => "HMAC_SHA256",
        }
    }
}

/// How webhooks are signed: the pinned algorithm and its secret (the Auth Token for
/// HMAC-SHA1, the SharedKey secret for HMAC-SHA256).
#[derive(Debug, Clone)]
pub struct WebhookSigning {
    pub algorithm: SignatureAlgorithm,
    pub secret: SecretString,
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// `https://api.twilio.com`, or a compatible vendor's API.
    pub base_url: String,
    pub account_sid: String,
    pub auth: TwilioAuth,
    pub sender: TwilioSender,
    /// Sent as `StatusCallback` with every message, so delivery reports come back.
    pub status_callback_url: Option<String>,
    pub webhook_signing: WebhookSigning,
    pub connect_timeout: Duration,
    /// The whole request: a send that takes longer is `Ambiguous` and reconciled.
    pub request_timeout: Duration,
    /// How far Twilio's clock may be behind Salve's when matching a message's creation
    /// time against the start of the attempt being reconciled.
    pub reconcile_clock_skew: Duration,
}

impl TwilioConfig {
    /// Twilio's API with default timeouts (5 s to connect, 15 s per request).
    pub fn new(
        account_sid: impl Into<String>,
        auth: TwilioAuth,
        sender: TwilioSender,
        webhook_signing: WebhookSigning,
    ) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            account_sid: account_sid.into(),
            auth,
            sender,
            status_callback_url: None,
            webhook_signing,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            reconcile_clock_skew: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the account SID must be 34 characters starting with AC")]
    AccountSid,
    #[error("the HTTP client could not be built")]
    Client(#[source] reqwest::Error),
}

#[derive(Debug)]
pub struct TwilioProvider {
    config: TwilioConfig,
    base: String,
    http: reqwest::Client,
}

impl TwilioProvider {
    pub fn new(config: TwilioConfig) -> Result<Self, ConfigError> {
        let sid = &config.account_sid;
        if sid.len() != 34
            || !sid.starts_with("AC")
            || !sid.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ConfigError::AccountSid);
        }
        let http = crate::http_util::client(config.connect_timeout, config.request_timeout)
            .map_err(ConfigError::Client)?;
        Ok(Self {
            base: trim_base(&config.base_url),
            config,
            http,
        })
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base, self.config.account_sid
        )
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.auth {
            TwilioAuth::AuthToken(token) => {
                request.basic_auth(&self.config.account_sid, Some(token.expose_secret()))
            }
            TwilioAuth::ApiKey { sid, secret } => {
                request.basic_auth(sid, Some(secret.expose_secret()))
            }
        }
    }

    /// The media's `{MessageSid}/Media/{MediaSid}`, if the URL is a media resource of this
    /// account on the configured API (credentials go nowhere else).
    fn media_path(&self, url: &str) -> Option<(String, String)> {
        let prefix = format!(
            "{}/2010-04-01/Accounts/{}/Messages/",
            self.base, self.config.account_sid
        );
        let rest = url.strip_prefix(&prefix)?;
        let rest = rest.strip_suffix(".json").unwrap_or(rest);
        let (message, media) = rest.split_once("/Media/")?;
        let sid = |s: &str| {
            (s.len() == 34 && s.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| s.to_string())
        };
        Some((sid(message)?, sid(media)?))
    }
}

/// Twilio's error body: `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`.
#[derive(Deserialize)]
struct ApiError {
    code: Option<u64>,
    message: Option<String>,
}

async fn error_from(response: reqwest::Response) -> ProviderError {
    let status = response.status();
    let body = read_limited(response).await;
    let parsed: Option<ApiError> = serde_json::from_slice(&body).ok();
    let code = parsed
        .as_ref()
        .and_then(|e| e.code)
        .map(|c| format!("twilio_{c}"));
    let detail = match parsed {
        Some(ApiError {
            code: Some(c),
            message: Some(m),
        }) => format!("Twilio error {c}: {m}"),
        Some(ApiError {
            message: Some(m), ..
        }) => m,
        _ => format!("HTTP {}", status.as_u16()),
    };
    classify_status(status, code, detail)
}

#[derive(Deserialize)]
struct MessageResource {
    sid: Option<String>,
    to: Option<String>,
    from: Option<String>,
    body: Option<String>,
    messaging_service_sid: Option<String>,
    date_created: Option<String>,
    direction: Option<String>,
}

#[derive(Deserialize)]
struct MessageList {
    #[serde(default)]
    messages: Vec<MessageResource>,
    next_page_uri: Option<String>,
}

fn valid_sid(sid: &str) -> bool {
    !sid.is_empty() && sid.len() <= 64 && sid.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[async_trait]
impl Provider for TwilioProvider {
    fn media_access(&self) -> Option<crate::MediaAccess> {
        let credentials = match &self.config.auth {
            TwilioAuth::AuthToken(token) => {
                crate::BasicCredentials::new(&self.config.account_sid, token.expose_secret())
            }
            TwilioAuth::ApiKey { sid, secret } => {
                crate::BasicCredentials::new(sid, secret.expose_secret())
            }
        };
        Some(crate::MediaAccess {
            policy: crate::FetchPolicy::twilio(),
            credentials: Some(credentials),
        })
    }

    fn name(&self) -> &'static str {
        "twilio"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Twilio answers STOP/START/HELP on long codes and refuses sends to opted-out
            // recipients (error 21610) unless the account turned that off.
            handles_opt_out_keywords: true,
            can_reconcile: true,
            picks_sender_number: matches!(self.config.sender, TwilioSender::MessagingService(_)),
            can_delete_media: true,
        }
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<SendReceipt, ProviderError> {
        if message.channel != Channel::Sms {
            return Err(ProviderError::permanent(
                "channel_unsupported",
                "this provider sends SMS only",
            ));
        }
        let mut form: Vec<(&str, &str)> = vec![
            ("To", message.to.expose().as_str()),
            ("Body", message.body.expose().as_str()),
        ];
        match &self.config.sender {
            TwilioSender::From(from) => form.push(("From", from)),
            TwilioSender::MessagingService(sid) => form.push(("MessagingServiceSid", sid)),
        }
        if let Some(callback) = &self.config.status_callback_url {
            form.push(("StatusCallback", callback));
        }
        let response = self
            .authed(self.http.post(self.messages_url()))
            .form(&form)
            .send()
            .await
            .map_err(classify_transport)?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        // Twilio took it: from here on, not knowing the sid is ambiguous, not a failure.
        let created: MessageResource = response.json().await.map_err(|e| {
            ProviderError::ambiguous("response_unreadable", e.without_url().to_string())
        })?;
        match created.sid {
            Some(sid) if valid_sid(&sid) => Ok(SendReceipt { provider_id: sid }),
            _ => Err(ProviderError::ambiguous(
                "response_unreadable",
                "the answer to a send had no message sid",
            )),
        }
    }

    /// Lists the recipient's newest messages (from the configured number, if fixed) and looks
    /// for this body created at or after the attempt started. The `DateSent>` filter is not
    /// used: a message still queued has no send date yet and would be missed.
    async fn reconcile(
        &self,
        message: &OutgoingMessage,
        attempt_started: Option<OffsetDateTime>,
    ) -> Reconciliation {
        let page_size = RECONCILE_PAGE_SIZE.to_string();
        let mut query: Vec<(&str, &str)> = vec![
            ("To", message.to.expose().as_str()),
            ("PageSize", page_size.as_str()),
        ];
        if let TwilioSender::From(from) = &self.config.sender {
            query.push(("From", from));
        }
        let Ok(response) = self
            .authed(self.http.get(self.messages_url()))
            .query(&query)
            .send()
            .await
        else {
            return Reconciliation::CannotTell;
        };
        if !response.status().is_success() {
            return Reconciliation::CannotTell;
        }
        let Ok(list) = response.json::<MessageList>().await else {
            return Reconciliation::CannotTell;
        };
        let not_before =
            attempt_started.map(|t| t - self.config.reconcile_clock_skew - time::Duration::SECOND);
        let ours = |m: &MessageResource| {
            let sender_matches = match &self.config.sender {
                TwilioSender::From(from) => m.from.as_deref() == Some(from.as_str()),
                TwilioSender::MessagingService(sid) => {
                    m.messaging_service_sid.as_deref() == Some(sid.as_str())
                }
            };
            sender_matches
                && m.to.as_deref() == Some(message.to.expose().as_str())
                && m.body.as_deref() == Some(message.body.expose().as_str())
                && m.direction
                    .as_deref()
                    .is_none_or(|d| d.starts_with("outbound"))
        };
        let created = |m: &MessageResource| {
            m.date_created.as_deref().and_then(|d| {
                OffsetDateTime::parse(d, &time::format_description::well_known::Rfc2822).ok()
            })
        };
        let mut older_seen = false;
        let mut undated_match = false;
        for m in &list.messages {
            let when = created(m);
            let recent = match (not_before, when) {
                (Some(bound), Some(when)) => Some(when >= bound),
                _ => None,
            };
            if recent == Some(false) {
                older_seen = true;
            }
            if !ours(m) {
                continue;
            }
            match recent {
                Some(true) => {
                    if let Some(sid) = m.sid.clone().filter(|s| valid_sid(s)) {
                        return Reconciliation::Sent(SendReceipt { provider_id: sid });
                    }
                    return Reconciliation::CannotTell;
                }
                // An earlier send of the same text: not this attempt.
                Some(false) => {}
                // No bound, or no date: cannot be told apart from an earlier identical send.
                None => undated_match = true,
            }
        }
        if undated_match {
            return Reconciliation::CannotTell;
        }
        // Not found. Only a complete look proves absence: the list ended, or it reached
        // messages older than the attempt.
        if list.next_page_uri.is_none() || older_seen {
            Reconciliation::NotSent
        } else {
            Reconciliation::CannotTell
        }
    }

    fn verify_webhook(
        &self,
        request: &WebhookRequest<'_>,
        _now: OffsetDateTime,
    ) -> Result<(), SignatureError> {
        verify_signature(
            &self.config.webhook_signing,
            request.public_url,
            request.headers,
            request.body,
        )
    }

    fn parse_webhook(
        &self,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<WebhookEvent, ParseError> {
        parse_webhook(body, content_type)
    }

    async fn delete_media(&self, media: &MediaRef) -> Result<MediaDeletion, ProviderError> {
        let Some((message_sid, media_sid)) = self.media_path(&media.url) else {
            return Err(ProviderError::permanent(
                "media_url_foreign",
                "the media URL is not a media resource of this account on the configured API",
            ));
        };
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages/{message_sid}/Media/{media_sid}.json",
            self.base, self.config.account_sid
        );
        let response = self
            .authed(self.http.delete(url))
            .send()
            .await
            .map_err(classify_transport)?;
        match response.status().as_u16() {
            200..=299 => Ok(MediaDeletion::Deleted),
            404 => Ok(MediaDeletion::NotFound),
            _ => Err(error_from(response).await),
        }
    }
}

// ---- webhook signatures ----

fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| {
            c.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The algorithm a request says it was signed with, read as Twilio's validator reads
/// `X-Twilio-Webhooks-Signature-Settings` (`key=…,algorithm=…`; absent means HMAC_SHA1).
/// `None` for an algorithm Salve does not know.
fn requested_algorithm(settings: Option<&str>) -> Option<SignatureAlgorithm> {
    let mut name = "HMAC_SHA1".to_string();
    for part in settings.unwrap_or("").split(',') {
        if let Some((key, value)) = part.split_once('=')
            && key.trim() == "algorithm"
            && !value.trim().is_empty()
        {
            name = value.trim().to_ascii_uppercase();
            break;
        }
    }
    match name.as_str() {
        "HMAC_SHA1" => Some(SignatureAlgorithm::HmacSha1),
        "HMAC_SHA256" => Some(SignatureAlgorithm::HmacSha256),
        _ => None,
    }
}

/// The URL without a port and with the scheme's default port, as Twilio's validator tries
/// both (Twilio's own signing is not consistent about the port).
fn url_variants(url: &str) -> (String, String) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), url.to_string());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (netloc, tail) = rest.split_at(end);
    let host_start = netloc.rfind('@').map_or(0, |i| i + 1);
    let host = &netloc[host_start..];
    // A port is what follows the last ':' outside IPv6 brackets.
    let port_at = host
        .rfind(':')
        .filter(|&i| !host[i..].contains(']') && host[i + 1..].bytes().all(|b| b.is_ascii_digit()))
        .filter(|&i| i + 1 < host.len());
    match port_at {
        Some(i) => {
            let without = format!("{scheme}://{}{}{tail}", &netloc[..host_start], &host[..i]);
            (without, url.to_string())
        }
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            (url.to_string(), format!("{scheme}://{netloc}:{port}{tail}"))
        }
    }
}

/// The string Twilio signs: the URL, then each parameter name followed by its value, names
/// sorted, each name's distinct values sorted (exactly as Twilio's `RequestValidator`).
fn signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut s = String::from(url);
    for (k, v) in pairs {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

fn mac_bytes(algorithm: SignatureAlgorithm, secret: &[u8], data: &[u8]) -> Vec<u8> {
    // new_from_slice cannot fail for HMAC: any key length is accepted.
    match algorithm {
        SignatureAlgorithm::HmacSha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        SignatureAlgorithm::HmacSha256 => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn mac_verifies(algorithm: SignatureAlgorithm, secret: &[u8], data: &[u8], tag: &[u8]) -> bool {
    match algorithm {
        SignatureAlgorithm::HmacSha1 => Hmac::<sha1::Sha1>::new_from_slice(secret)
            .map(|mut mac| {
                mac.update(data);
                mac.verify_slice(tag).is_ok()
            })
            .unwrap_or(false),
        SignatureAlgorithm::HmacSha256 => Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map(|mut mac| {
                mac.update(data);
                mac.verify_slice(tag).is_ok()
            })
            .unwrap_or(false),
    }
}

/// `X-Twilio-Signature` for a request: what Twilio (and Twilio's `RequestValidator`)
/// computes. For tests and for tools that replay webhooks.
pub fn compute_signature(
    algorithm: SignatureAlgorithm,
    secret: &str,
    url: &str,
    params: &[(String, String)],
) -> String {
    BASE64.encode(mac_bytes(
        algorithm,
        secret.as_bytes(),
        signed_string(url, params).as_bytes(),
    ))
}

fn query_of(url: &str) -> &str {
    let without_fragment = url.split('#').next().unwrap_or("");
    without_fragment.split_once('?').map_or("", |(_, q)| q)
}

/// Verifies a Twilio webhook against the pinned algorithm and secret.
pub fn verify_signature(
    signing: &WebhookSigning,
    public_url: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Malformed)?;
    let tag = BASE64
        .decode(signature.trim())
        .map_err(|_| SignatureError::Malformed)?;
    let settings = match headers.get(SIGNATURE_SETTINGS_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| SignatureError::Malformed)?),
    };
    if requested_algorithm(settings) != Some(signing.algorithm) {
        return Err(SignatureError::WrongAlgorithm);
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let params: Vec<(String, String)> = if is_form(content_type) {
        form_urlencoded::parse(body).into_owned().collect()
    } else {
        // A JSON (or other) body: the URL carries the body's SHA-256 and only the URL is
        // signed.
        let expected = form_urlencoded::parse(query_of(public_url).as_bytes())
            .find(|(k, _)| k == "bodySHA256")
            .map(|(_, v)| v.into_owned())
            .ok_or(SignatureError::Mismatch)?;
        let actual = hex::encode(sha2::Sha256::digest(body));
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            actual.as_bytes(),
            expected.as_bytes(),
        )) {
            return Err(SignatureError::Mismatch);
        }
        Vec::new()
    };
    let secret = signing.secret.expose_secret().as_bytes();
    let (without_port, with_port) = url_variants(public_url);
    let ok_without = mac_verifies(
        signing.algorithm,
        secret,
        signed_string(&without_port, &params).as_bytes(),
        &tag,
    );
    let ok_with = mac_verifies(
        signing.algorithm,
        secret,
        signed_string(&with_port, &params).as_bytes(),
        &tag,
    );
    if ok_without | ok_with {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

// ---- webhook bodies ----

fn delivery_status(status: &str) -> DeliveryStatus {
    match status {
        "accepted" => DeliveryStatus::Accepted,
        "scheduled" => DeliveryStatus::Scheduled,
        "queued" => DeliveryStatus::Queued,
        "sending" => DeliveryStatus::Sending,
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "undelivered" => DeliveryStatus::Undelivered,
        "failed" => DeliveryStatus::Failed,
        "canceled" => DeliveryStatus::Canceled,
        "read" => DeliveryStatus::Read,
        _ => DeliveryStatus::Other,
    }
}

/// Reads an inbound message or a status callback (form-encoded, as Twilio sends them).
pub fn parse_webhook(body: &[u8], content_type: Option<&str>) -> Result<WebhookEvent, ParseError> {
    if !is_form(content_type) {
        return Err(ParseError::ContentType);
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let sid = get("MessageSid")
        .or_else(|| get("SmsSid"))
        .ok_or(ParseError::Missing("MessageSid"))?;
    if !valid_sid(sid) {
        return Err(ParseError::Invalid("MessageSid"));
    }
    if let Some(status) = get("MessageStatus").filter(|s| *s != "received" && *s != "receiving") {
        return Ok(WebhookEvent::Status(StatusUpdate {
            provider_message_id: sid.to_string(),
            status: delivery_status(status),
            error_code: get("ErrorCode").and_then(safe_code),
        }));
    }
    let from = get("From").ok_or(ParseError::Missing("From"))?;
    let to = get("To").ok_or(ParseError::Missing("To"))?;
    let num_media: usize = match get("NumMedia") {
        None | Some("") => 0,
        Some(n) => n.parse().map_err(|_| ParseError::Invalid("NumMedia"))?,
    };
    if num_media > MAX_MEDIA {
        return Err(ParseError::Invalid("NumMedia"));
    }
    let mut media = Vec::with_capacity(num_media);
    for i in 0..num_media {
        let url = get(&format!("MediaUrl{i}")).ok_or(ParseError::Missing("MediaUrl"))?;
        let content_type =
            get(&format!("MediaContentType{i}")).ok_or(ParseError::Missing("MediaContentType"))?;
        media.push(MediaRef {
            url: url.to_string(),
            content_type: content_type.to_string(),
        });
    }
    Ok(WebhookEvent::Inbound(InboundMessage {
        provider_message_id: sid.to_string(),
        from: Sensitive::new(from.to_string()),
        to: to.to_string(),
        body: Sensitive::new(get("Body").unwrap_or("").to_string()),
        media,
        opt_out_type: get("OptOutType")
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_uppercase),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_and_bad_sids_are_refused() {
        let config = TwilioConfig::new(
            "AC0123456789abcdef0123456789abcdef",
            TwilioAuth::ApiKey {
                sid: "SK0123456789abcdef0123456789abcdef".into(),
                secret: SecretString::from("apis3cr3t".to_string()),
            },
            TwilioSender::MessagingService("MG0123456789abcdef0123456789abcdef".into()),
            WebhookSigning {
                algorithm: SignatureAlgorithm::HmacSha256,
                secret: SecretString::from("sh4redkey".to_string()),
            },
        );
        let provider = TwilioProvider::new(config.clone()).unwrap();
        for shown in [format!("{config:?}"), format!("{provider:?}")] {
            assert!(
                !shown.contains("s3cr3t") && !shown.contains("sh4redkey"),
                "{shown}"
            );
        }
        assert!(provider.capabilities().picks_sender_number);
        for sid in [
            "",
            "AC",
            "XX0123456789abcdef0123456789abcdef",
            "AC0123456789abcdef0123456789abcde/",
        ] {
            let mut bad = config.clone();
            bad.account_sid = sid.into();
            assert!(matches!(
                TwilioProvider::new(bad),
                Err(ConfigError::AccountSid)
            ));
        }
    }

    #[test]
    fn url_variants_add_or_remove_the_port() {
        assert_eq!(
            url_variants("https://example.com/sms?x=1"),
            (
                "https://example.com/sms?x=1".into(),
                "https://example.com:443/sms?x=1".into()
            )
        );
        assert_eq!(
            url_variants("https://example.com:443/sms"),
            (
                "https://example.com/sms".into(),
                "https://example.com:443/sms".into()
            )
        );
        assert_eq!(
            url_variants("http://example.com"),
            ("http://example.com".into(), "http://example.com:80".into())
        );
        // Nonsense does not panic.
        for bad in ["", "://", "https://", "https://:", "https://[::1", "x"] {
            let _ = url_variants(bad);
        }
    }

    #[test]
    fn the_settings_header_names_the_algorithm() {
        assert_eq!(
            requested_algorithm(None),
            Some(SignatureAlgorithm::HmacSha1)
        );
        assert_eq!(
            requested_algorithm(Some("key=webhooks_sharedkey_1,algorithm=HMAC_SHA256")),
            Some(SignatureAlgorithm::HmacSha256)
        );
        assert_eq!(
            requested_algorithm(Some("key=k")),
            Some(SignatureAlgorithm::HmacSha1)
        );
        assert_eq!(requested_algorithm(Some("algorithm=HMAC_MD5")), None);
    }

    #[test]
    fn inbound_and_status_forms_parse() {
        let form = Some("application/x-www-form-urlencoded; charset=utf-8");
        let inbound = b"MessageSid=SM0123456789abcdef0123456789abcdef&From=%2B13125550142&To=%2B13125550100&Body=STOP&NumMedia=1&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2Fm&MediaContentType0=image%2Fjpeg&OptOutType=STOP";
        match parse_webhook(inbound, form).unwrap() {
            WebhookEvent::Inbound(m) => {
                assert_eq!(m.from.expose(), "+13125550142");
                assert_eq!(m.body.expose(), "STOP");
                assert_eq!(m.media.len(), 1);
                assert_eq!(m.media[0].content_type, "image/jpeg");
                assert_eq!(m.opt_out_type.as_deref(), Some("STOP"));
                assert!(
                    !format!("{m:?}").contains("0142"),
                    "the patient's number is redacted"
                );
            }
            other => panic!("{other:?}"),
        }
        let status = b"MessageSid=SM0123456789abcdef0123456789abcdef&MessageStatus=undelivered&ErrorCode=30003&To=%2B13125550142";
        match parse_webhook(status, form).unwrap() {
            WebhookEvent::Status(s) => {
                assert_eq!(s.status, DeliveryStatus::Undelivered);
                assert_eq!(s.error_code.as_deref(), Some("30003"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_forms_are_errors_not_panics() {
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(
            parse_webhook(b"x", Some("application/json")).unwrap_err(),
            ParseError::ContentType
        );
        assert!(parse_webhook(b"", form).is_err());
        assert!(parse_webhook(b"\xff\xfe=%%%", form).is_err());
        assert!(
            parse_webhook(
                b"MessageSid=SMx&From=a&To=b&NumMedia=99999999999999999999",
                form
            )
            .is_err()
        );
        assert!(parse_webhook(b"MessageSid=SMx&From=a&To=b&NumMedia=2&MediaUrl0=u", form).is_err());
        let e = parse_webhook(b"MessageSid=SM+1312&From=%2B13125550142", form).unwrap_err();
        assert!(!e.to_string().contains("555"));
    }
}

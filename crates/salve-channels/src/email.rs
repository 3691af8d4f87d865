//! Email notifications over SMTP ([`SmtpProvider`]), for a practice's own relay or a mail
//! service's submission port.
//!
//! What goes out: one plain-text email per [`OutgoingMessage`], whose subject and body are the
//! notification text the caller gives (the caller guarantees it holds no PHI). The provider
//! adds nothing about the patient beyond the recipient address: `From` is the practice,
//! `Message-ID` is `<{message id}@{practice domain}>` (the id is an opaque UUID that stays the
//! same across retries, so a relay's logs and a receiving system can match a resend to the
//! first try), and `Auto-Submitted: auto-generated` keeps auto-responders from replying.
//!
//! How it goes out: always over TLS, either implicit TLS (port 465) or STARTTLS that is
//! *required* (never opportunistic): a server that does not offer STARTTLS, or whose
//! certificate does not verify, gets no credentials and no message. Roots are the system's
//! (the `ca-certificates` store) plus, optionally, a practice's own private CA.
//!
//! The session is driven one command at a time (connect, STARTTLS, AUTH, MAIL, RCPT, DATA,
//! content) so that a failure can be told apart by *when* it happened: see [`classify`].

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use lettre::address::{Address, Envelope};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::{ExposeSecret, SecretString};

use crate::{Channel, OutgoingMessage, Provider, ProviderError, Reconciliation, SendReceipt};

/// How the connection to the relay is secured. There is deliberately no plaintext option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain TCP, then `STARTTLS`, which the server must offer (usually port 587). Nothing
    /// else (no AUTH, no envelope) is sent before TLS is up.
    StartTls,
    /// TLS from the first byte (usually port 465).
    ImplicitTls,
}

/// How long each part of a send may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpTimeouts {
    /// TCP connect, TLS handshake (implicit TLS), greeting and first EHLO.
    pub connect: Duration,
    /// Each command before the message content: STARTTLS (with its handshake), AUTH, MAIL,
    /// RCPT, DATA.
    pub command: Duration,
    /// From the first byte of the message content to the server's final reply. Running out
    /// here leaves the outcome unknown ([`ErrorClass::Ambiguous`]).
    pub data: Duration,
}

impl Default for SmtpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            command: Duration::from_secs(30),
            data: Duration::from_secs(60),
        }
    }
}

/// Settings for [`SmtpProvider`]. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// The relay's host name: connected to, and the name its certificate must carry.
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    pub password: SecretString,
    /// The practice's sending address; its domain also names the `Message-ID`.
    pub from_address: String,
    /// Shown as the sender, e.g. "Example Family Practice".
    pub from_name: String,
    /// PEM certificates of a private CA (a practice's own relay), trusted in addition to the
    /// system's roots.
    pub extra_root_ca_pem: Option<String>,
    /// The name given in EHLO; the from address's domain when not set.
    pub hello_name: Option<String>,
    /// Used when a message has no subject of its own.
    pub default_subject: String,
    pub timeouts: SmtpTimeouts,
}

/// Why an [`SmtpConfig`] cannot be used. Holds no secret.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("smtp host is empty")]
    EmptyHost,
    #[error("smtp from address is not a valid email address")]
    FromAddress,
    #[error("smtp extra root CA: {0}")]
    RootCa(String),
    #[error("smtp TLS settings: {0}")]
    Tls(String),
}

/// How a failed send should be treated. This is the one place that decides it: see
/// [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Not sent; trying again later may work.
    Transient,
    /// Not sent, and trying again will not help without a change (the address, the
    /// configuration, the relay's policy).
    Permanent,
    /// The message may or may not have been accepted: resending could duplicate it.
    Ambiguous,
}

/// A classified send failure: a log-safe `code` (a fixed string such as `smtp_tls`,
/// `smtp_5xx`, `smtp_outcome_unknown`) and a `detail` for the caller, which can quote the
/// server and so the recipient: `Debug` and `Display` show the class and code only.
pub struct SmtpFailure {
    pub class: ErrorClass,
    pub code: &'static str,
    detail: String,
}

impl SmtpFailure {
    fn new(class: ErrorClass, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            class,
            code,
            detail: detail.into(),
        }
    }

    /// What went wrong, in words; may quote the server (and so the recipient). Not for logs.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Debug for SmtpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpFailure")
            .field("class", &self.class)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SmtpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} smtp failure ({})", self.class, self.code)
    }
}

impl From<SmtpFailure> for ProviderError {
    fn from(failure: SmtpFailure) -> Self {
        let detail = failure.detail.clone();
        match failure.class {
            ErrorClass::Permanent => ProviderError::permanent(failure.code, detail),
            ErrorClass::Transient => ProviderError::transient(failure.code, detail),
            ErrorClass::Ambiguous => ProviderError::ambiguous(failure.code, detail),
        }
    }
}

/// Where in the SMTP session a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before connecting: checking and building the message.
    Prepare,
    /// TCP connect, implicit TLS handshake, greeting, EHLO.
    Connect,
    /// STARTTLS and its handshake.
    StartTls,
    Auth,
    /// MAIL, RCPT, DATA: the server has not been sent the content yet.
    Envelope,
    /// The content is being sent or has been sent, and the final reply is awaited.
    Content,
}

/// What went wrong, before it is classified.
enum Failure<'a> {
    Smtp(&'a lettre::transport::smtp::Error),
    TimedOut,
    /// STARTTLS was required and the server's EHLO did not offer it.
    StartTlsNotOffered,
    /// About to authenticate on a connection that is not encrypted (never expected).
    NotEncrypted,
    /// The message is not for [`Channel::Email`].
    WrongChannel,
    /// The recipient is not an email address.
    BadRecipient,
    /// The email could not be built from the message.
    Message(&'a lettre::error::Error),
    /// The message needs an extension (SMTPUTF8, 8BITMIME) the server lacks.
    Unsupported(&'static str),
}

/// The one classification of SMTP failures, returning the class and a log-safe code:
///
/// | failure | class | code |
/// |---|---|---|
/// | a reply to AUTH: 4xx / 5xx (e.g. 535 bad credentials) | Transient / Permanent | `smtp_auth` |
/// | any other 4xx reply (451, 452, 421 …) | Transient | `smtp_4xx` |
/// | any other 5xx reply (550 mailbox unavailable, 554 …), even to the content | Permanent | `smtp_5xx` |
/// | STARTTLS not offered, a TLS error (unknown issuer, wrong name, not TLS at all) | Permanent | `smtp_tls` |
/// | no reply *after the content started*: timeout, reset, closed, TLS or parse error | Ambiguous | `smtp_outcome_unknown` |
/// | the same before the content: while connecting / later | Transient | `smtp_connect` / `smtp_network`, `smtp_timeout` |
/// | the relay lacks something needed (no usable AUTH mechanism, no 8BITMIME / SMTPUTF8) | Permanent | `smtp_auth` / `smtp_unsupported` |
/// | a message for another channel, a recipient that is not an address, an unbuildable email | Permanent | `smtp_wrong_channel`, `smtp_bad_recipient`, `smtp_message` |
///
/// A TLS failure is a configuration problem (the relay, its certificate or our roots), never
/// a reason to fall back to plaintext. Once the content has started, only an explicit reply
/// says what happened: the server may have queued the message just before the connection
/// failed.
fn classify(stage: Stage, failure: &Failure<'_>) -> (ErrorClass, &'static str) {
    use ErrorClass::*;
    let error = match failure {
        Failure::StartTlsNotOffered | Failure::NotEncrypted => return (Permanent, "smtp_tls"),
        Failure::WrongChannel => return (Permanent, "smtp_wrong_channel"),
        Failure::BadRecipient => return (Permanent, "smtp_bad_recipient"),
        Failure::Message(_) => return (Permanent, "smtp_message"),
        Failure::Unsupported(_) => return (Permanent, "smtp_unsupported"),
        Failure::TimedOut if stage == Stage::Content => return (Ambiguous, "smtp_outcome_unknown"),
        Failure::TimedOut => return (Transient, "smtp_timeout"),
        Failure::Smtp(error) => error,
    };
    if error.status().is_some() {
        return match (stage, error.is_permanent()) {
            (Stage::Auth, true) => (Permanent, "smtp_auth"),
            (Stage::Auth, false) => (Transient, "smtp_auth"),
            (_, true) => (Permanent, "smtp_5xx"),
            (_, false) => (Transient, "smtp_4xx"),
        };
    }
    // Without a reply, the content may have been queued, whatever broke (TLS included).
    if stage == Stage::Content {
        return (Ambiguous, "smtp_outcome_unknown");
    }
    if error.is_tls() || is_tls_error(*error) {
        return (Permanent, "smtp_tls");
    }
    if error.is_client() {
        // lettre refused before sending anything: the server lacks what the message needs.
        return match stage {
            Stage::Auth => (Permanent, "smtp_auth"),
            _ => (Permanent, "smtp_unsupported"),
        };
    }
    match stage {
        Stage::Connect => (Transient, "smtp_connect"),
        _ => (Transient, "smtp_network"),
    }
}

/// Whether a rustls error is somewhere in the chain. lettre reports handshake failures as
/// connection errors wrapping an `io::Error`, whose `source()` skips the error it wraps, so
/// `io::Error::get_ref` is looked into as well.
fn is_tls_error(error: &(dyn StdError + 'static)) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_tls_error(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn fail(stage: Stage, failure: Failure<'_>) -> SmtpFailure {
    let (class, code) = classify(stage, &failure);
    let detail = match failure {
        Failure::Smtp(e) => e.to_string(),
        Failure::TimedOut => format!("timed out ({stage:?})"),
        Failure::StartTlsNotOffered => {
            "the server did not offer STARTTLS; nothing was sent in plaintext".to_owned()
        }
        Failure::NotEncrypted => "the connection is not encrypted".to_owned(),
        Failure::WrongChannel => "the SMTP provider only sends email".to_owned(),
        Failure::BadRecipient => "the recipient is not a valid email address".to_owned(),
        Failure::Message(e) => e.to_string(),
        Failure::Unsupported(what) => what.to_owned(),
    };
    SmtpFailure::new(class, code, detail)
}

/// Runs one step of the session within `limit`, classifying its failure by `stage`.
async fn step<T>(
    limit: Duration,
    stage: Stage,
    future: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SmtpFailure> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(fail(stage, Failure::Smtp(&e))),
        Err(_) => Err(fail(stage, Failure::TimedOut)),
    }
}

/// Sends [`Channel::Email`] messages through an SMTP relay: one connection per message.
pub struct SmtpProvider {
    config: SmtpConfig,
    from: Mailbox,
    hello: ClientId,
    tls: TlsParameters,
}

impl fmt::Debug for SmtpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SmtpProvider {
    /// Checks the configuration and loads the trusted roots (the system's, plus the extra CA).
    pub fn new(config: SmtpConfig) -> Result<Self, SmtpConfigError> {
        if config.host.trim().is_empty() {
            return Err(SmtpConfigError::EmptyHost);
        }
        let address: Address = config
            .from_address
            .parse()
            .map_err(|_| SmtpConfigError::FromAddress)?;
        let hello = ClientId::Domain(
            config
                .hello_name
                .clone()
                .unwrap_or_else(|| address.domain().to_owned()),
        );
        let from = Mailbox::new(Some(config.from_name.clone()), address);
        let mut tls = TlsParameters::builder(config.host.clone())
            .certificate_store(CertificateStore::Default);
        if let Some(pem) = &config.extra_root_ca_pem {
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(SmtpConfigError::RootCa("no PEM certificate found".into()));
            }
            let certificate = Certificate::from_pem(pem.as_bytes())
                .map_err(|e| SmtpConfigError::RootCa(e.to_string()))?;
            tls = tls.add_root_certificate(certificate);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| SmtpConfigError::Tls(e.to_string()))?;
        Ok(Self {
            config,
            from,
            hello,
            tls,
        })
    }

    /// The email for `message`, with its envelope.
    fn email(&self, message: &OutgoingMessage, to: Address) -> Result<Message, SmtpFailure> {
        let subject = message
            .subject
            .clone()
            .unwrap_or_else(|| self.config.default_subject.clone());
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject)
            .message_id(Some(format!(
                "<{}@{}>",
                message.id,
                self.from.email.domain()
            )))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.expose().clone())
            .map_err(|e| fail(Stage::Prepare, Failure::Message(&e)))
    }

    /// Sends `message` and says precisely how a failure should be treated. [`Provider::send`]
    /// is this, mapped onto [`ProviderError`].
    pub async fn send_classified(
        &self,
        message: &OutgoingMessage,
    ) -> Result<SendReceipt, SmtpFailure> {
        if message.channel != Channel::Email {
            return Err(fail(Stage::Prepare, Failure::WrongChannel));
        }
        let to: Address = message
            .to
            .expose()
            .parse()
            .map_err(|_| fail(Stage::Prepare, Failure::BadRecipient))?;
        let email = self.email(message, to)?;
        let content = email.formatted();

        let timeouts = self.config.timeouts;
        let implicit = match self.config.security {
            SmtpSecurity::ImplicitTls => Some(self.tls.clone()),
            SmtpSecurity::StartTls => None,
        };
        let mut connection = step(
            timeouts.connect,
            Stage::Connect,
            AsyncSmtpConnection::connect_tokio1(
                (self.config.host.as_str(), self.config.port),
                Some(timeouts.connect),
                &self.hello,
                implicit,
                None,
            ),
        )
        .await?;
        let outcome = self
            .session(&mut connection, email.envelope(), &content)
            .await;
        match &outcome {
            // Accepted: a failed QUIT changes nothing.
            Ok(()) => {
                let _ = tokio::time::timeout(timeouts.command, connection.quit()).await;
            }
            // The server answered and the connection is sound: say goodbye. Otherwise the
            // connection is dropped (closed) as it is.
            Err(f) if matches!(f.code, "smtp_4xx" | "smtp_5xx" | "smtp_auth") => {
                let _ = tokio::time::timeout(timeouts.command, connection.abort()).await;
            }
            Err(_) => {}
        }
        outcome?;
        Ok(SendReceipt {
            provider_id: format!("<{}@{}>", message.id, self.from.email.domain()),
        })
    }

    async fn session(
        &self,
        connection: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        content: &[u8],
    ) -> Result<(), SmtpFailure> {
        let timeouts = self.config.timeouts;
        if self.config.security == SmtpSecurity::StartTls {
            if !connection.can_starttls() {
                return Err(fail(Stage::StartTls, Failure::StartTlsNotOffered));
            }
            step(
                timeouts.command,
                Stage::StartTls,
                connection.starttls(self.tls.clone(), &self.hello),
            )
            .await?;
        }
        if !connection.is_encrypted() {
            // Unreachable by construction; checked so that no change above can ever send the
            // password in plaintext.
            return Err(fail(Stage::Auth, Failure::NotEncrypted));
        }
        let credentials = Credentials::new(
            self.config.username.clone(),
            self.config.password.expose_secret().to_owned(),
        );
        step(
            timeouts.command,
            Stage::Auth,
            connection.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
        )
        .await?;

        let mut parameters = Vec::new();
        let server = connection.server_info();
        let non_ascii_address = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii_address {
            if !server.supports_feature(Extension::SmtpUtfEight) {
                return Err(fail(
                    Stage::Envelope,
                    Failure::Unsupported(
                        "an address is not ASCII and the server does not support SMTPUTF8",
                    ),
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !content.is_ascii() {
            if !server.supports_feature(Extension::EightBitMime) {
                return Err(fail(
                    Stage::Envelope,
                    Failure::Unsupported(
                        "the message is not ASCII and the server does not support 8BITMIME",
                    ),
                ));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        step(
            timeouts.command,
            Stage::Envelope,
            connection.command(Mail::new(envelope.from().cloned(), parameters)),
        )
        .await?;
        for recipient in envelope.to() {
            step(
                timeouts.command,
                Stage::Envelope,
                connection.command(Rcpt::new(recipient.clone(), Vec::new())),
            )
            .await?;
        }
        step(timeouts.command, Stage::Envelope, connection.command(Data)).await?;
        step(timeouts.data, Stage::Content, connection.message(content)).await?;
        Ok(())
    }
}

#[async_trait]
impl Provider for SmtpProvider {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<SendReceipt, ProviderError> {
        self.send_classified(message).await.map_err(Into::into)
    }

    fn capabilities(&self) -> crate::Capabilities {
        crate::Capabilities {
            handles_opt_out_keywords: false,
            can_reconcile: false,
            picks_sender_number: false,
            can_delete_media: false,
        }
    }

    /// SMTP has no way to ask a relay whether it has a message.
    async fn reconcile(
        &self,
        _message: &OutgoingMessage,
        _attempt_started: Option<time::OffsetDateTime>,
    ) -> Reconciliation {
        Reconciliation::CannotTell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "smtp.example.org".into(),
            port: 587,
            security: SmtpSecurity::StartTls,
            username: "notifications".into(),
            password: SecretString::from("hunter2-correct-horse"),
            from_address: "no-reply@practice.example".into(),
            from_name: "Example Family Practice".into(),
            extra_root_ca_pem: None,
            hello_name: None,
            default_subject: "You have a new secure message".into(),
            timeouts: SmtpTimeouts::default(),
        }
    }

    #[test]
    fn the_password_never_prints() {
        let provider = SmtpProvider::new(config()).unwrap();
        for shown in [format!("{:?}", config()), format!("{provider:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("smtp.example.org"));
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut c = config();
        c.from_address = "not an address".into();
        assert!(matches!(
            SmtpProvider::new(c),
            Err(SmtpConfigError::FromAddress)
        ));
        let mut c = config();
        c.extra_root_ca_pem = Some("garbage".into());
        assert!(matches!(
            SmtpProvider::new(c),
            Err(SmtpConfigError::RootCa(_))
        ));
        let mut c = config();
        c.host = " ".into();
        assert!(matches!(
            SmtpProvider::new(c),
            Err(SmtpConfigError::EmptyHost)
        ));
    }

    #[tokio::test]
    async fn what_cannot_be_sent_is_refused_before_connecting() {
        // The host does not resolve: reaching the network would fail differently.
        let mut c = config();
        c.host = "smtp.invalid".into();
        let provider = SmtpProvider::new(c).unwrap();
        let mut message = OutgoingMessage {
            id: uuid::Uuid::new_v4(),
            channel: Channel::Sms,
            to: salve_core::Sensitive::new("+13125550142".into()),
            subject: None,
            body: salve_core::Sensitive::new("A secure message is waiting".into()),
        };
        let failure = provider.send_classified(&message).await.unwrap_err();
        assert_eq!(
            (failure.class, failure.code),
            (ErrorClass::Permanent, "smtp_wrong_channel")
        );
        message.channel = Channel::Email;
        let failure = provider.send_classified(&message).await.unwrap_err();
        assert_eq!(
            (failure.class, failure.code),
            (ErrorClass::Permanent, "smtp_bad_recipient")
        );
        assert!(!failure.detail().contains("555"), "{}", failure.detail());
    }

    #[test]
    fn timeouts_are_ambiguous_only_once_the_content_started() {
        for (stage, expected) in [
            (Stage::Connect, (ErrorClass::Transient, "smtp_timeout")),
            (Stage::Auth, (ErrorClass::Transient, "smtp_timeout")),
            (Stage::Envelope, (ErrorClass::Transient, "smtp_timeout")),
            (
                Stage::Content,
                (ErrorClass::Ambiguous, "smtp_outcome_unknown"),
            ),
        ] {
            assert_eq!(classify(stage, &Failure::TimedOut), expected, "{stage:?}");
        }
        assert_eq!(
            classify(Stage::StartTls, &Failure::StartTlsNotOffered),
            (ErrorClass::Permanent, "smtp_tls")
        );
    }

    #[test]
    fn a_rustls_error_inside_an_io_error_is_a_tls_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_tls_error(&io));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!is_tls_error(&reset));
    }

    #[test]
    fn the_mapping_onto_provider_error_keeps_each_class() {
        let f = |class| ProviderError::from(SmtpFailure::new(class, "smtp_x", "detail"));
        assert_eq!(f(ErrorClass::Permanent).kind(), "permanent");
        assert_eq!(f(ErrorClass::Transient).kind(), "transient");
        assert_eq!(f(ErrorClass::Ambiguous).kind(), "ambiguous");
        assert_eq!(f(ErrorClass::Ambiguous).code(), "smtp_x");
        let shown = format!(
            "{:?} {}",
            SmtpFailure::new(
                ErrorClass::Permanent,
                "smtp_5xx",
                "550 <jane@x.org> unknown"
            ),
            SmtpFailure::new(
                ErrorClass::Permanent,
                "smtp_5xx",
                "550 <jane@x.org> unknown"
            ),
        );
        assert!(!shown.contains("jane"), "{shown}");
    }
}

//! The stored configuration of each provider kind (the JSON an admin submits, sealed at rest),
//! and building the provider from it. Unknown fields are refused, so a typo is an error, not a
//! silently ignored setting.

use std::sync::Arc;

use salve_channels::telnyx::{TelnyxConfig, TelnyxProvider, TelnyxSender};
use salve_channels::twilio::{
    SignatureAlgorithm, TwilioAuth, TwilioConfig, TwilioProvider, TwilioSender, WebhookSigning,
};
use salve_channels::{Provider, SmtpConfig, SmtpProvider, SmtpSecurity, SmtpTimeouts};
use salve_core::FieldError;
use salve_core::vendors::ProviderKind;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpSettings {
    host: String,
    port: u16,
    /// `starttls` or `tls` (implicit); there is no plaintext option.
    security: String,
    username: String,
    password: String,
    from_address: String,
    #[serde(default)]
    from_name: Option<String>,
    /// PEM of a private CA that signed the relay's certificate.
    #[serde(default)]
    root_ca_pem: Option<String>,
}

/// Twilio, or a vendor speaking its Messages API. The Auth Token signs webhooks (and sends,
/// unless an API key is given).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TwilioSettings {
    account_sid: String,
    auth_token: String,
    #[serde(default)]
    api_key_sid: Option<String>,
    #[serde(default)]
    api_key_secret: Option<String>,
    /// `MG…`: Twilio picks the sender number from the service's pool.
    #[serde(default)]
    messaging_service_sid: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    /// `hmac-sha1` (Twilio's default) or `hmac-sha256` (a webhook SharedKey).
    #[serde(default)]
    signature_algorithm: Option<String>,
    /// The SharedKey secret, for `hmac-sha256`.
    #[serde(default)]
    signing_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TelnyxSettings {
    api_key: String,
    /// The account's Ed25519 webhook public key, base64.
    public_key: String,
    #[serde(default)]
    messaging_profile_id: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
}

/// What a provider needs besides its stored settings: its numbers and where its webhooks
/// come back to.
pub struct Wiring<'a> {
    pub numbers: &'a [String],
    /// The provider's webhook URLs (`crate::channels::webhook_urls`).
    pub webhook_urls: &'a [String],
}

fn one(field: &str, expected: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError::new(field, expected)]
}

fn twilio(
    settings: TwilioSettings,
    wiring: &Wiring<'_>,
) -> Result<TwilioProvider, Vec<FieldError>> {
    let auth = match (settings.api_key_sid, settings.api_key_secret) {
        (Some(sid), Some(secret)) => TwilioAuth::ApiKey {
            sid,
            secret: secret.into(),
        },
        (None, None) => TwilioAuth::AuthToken(settings.auth_token.clone().into()),
        _ => {
            return Err(one(
                "credentials.api_key_secret",
                "api_key_sid and api_key_secret together, or neither",
            ));
        }
    };
    let sender = match (settings.messaging_service_sid, wiring.numbers.first()) {
        (Some(service), _) => TwilioSender::MessagingService(service),
        (None, Some(number)) => TwilioSender::From(number.clone()),
        (None, None) => {
            return Err(one(
                "numbers",
                "a sender number, or credentials.messaging_service_sid",
            ));
        }
    };
    let webhook_signing = match settings
        .signature_algorithm
        .as_deref()
        .unwrap_or("hmac-sha1")
    {
        "hmac-sha1" => WebhookSigning {
            algorithm: SignatureAlgorithm::HmacSha1,
            secret: settings.auth_token.into(),
        },
        "hmac-sha256" => WebhookSigning {
            algorithm: SignatureAlgorithm::HmacSha256,
            secret: settings
                .signing_key
                .ok_or_else(|| {
                    one(
                        "credentials.signing_key",
                        "the SharedKey secret for hmac-sha256",
                    )
                })?
                .into(),
        },
        _ => {
            return Err(one(
                "credentials.signature_algorithm",
                "hmac-sha1 or hmac-sha256",
            ));
        }
    };
    let mut config = TwilioConfig::new(settings.account_sid, auth, sender, webhook_signing);
    if let Some(base) = settings.base_url {
        config.base_url = base;
    }
    config.status_callback_url = wiring.webhook_urls.get(1).cloned();
    TwilioProvider::new(config).map_err(|e| one("credentials", e.to_string()))
}

fn telnyx(
    settings: TelnyxSettings,
    wiring: &Wiring<'_>,
) -> Result<TelnyxProvider, Vec<FieldError>> {
    let sender = match (settings.messaging_profile_id, wiring.numbers.first()) {
        (Some(profile), _) => TelnyxSender::MessagingProfile(profile),
        (None, Some(number)) => TelnyxSender::From(number.clone()),
        (None, None) => {
            return Err(one(
                "numbers",
                "a sender number, or credentials.messaging_profile_id",
            ));
        }
    };
    let mut config = TelnyxConfig::new(settings.api_key.into(), sender, settings.public_key);
    if let Some(base) = settings.base_url {
        config.base_url = base;
    }
    config.webhook_url = wiring.webhook_urls.first().cloned();
    TelnyxProvider::new(config).map_err(|e| one("credentials", e.to_string()))
}

fn field_errors(kind: ProviderKind, e: &serde_json::Error) -> Vec<FieldError> {
    // serde's message names the field, never a value.
    vec![FieldError::new(
        "credentials",
        format!("{} settings: {e}", kind.as_str()),
    )]
}

fn smtp_config(settings: SmtpSettings) -> Result<SmtpConfig, Vec<FieldError>> {
    let security = match settings.security.as_str() {
        "starttls" => SmtpSecurity::StartTls,
        "tls" => SmtpSecurity::ImplicitTls,
        _ => {
            return Err(vec![FieldError::new(
                "credentials.security",
                "starttls or tls (plaintext SMTP is not offered)",
            )]);
        }
    };
    Ok(SmtpConfig {
        host: settings.host,
        port: settings.port,
        security,
        username: settings.username,
        password: settings.password.into(),
        from_name: settings
            .from_name
            .unwrap_or_else(|| settings.from_address.clone()),
        from_address: settings.from_address,
        extra_root_ca_pem: settings.root_ca_pem,
        hello_name: None,
        default_subject: "A secure message".into(),
        timeouts: SmtpTimeouts::default(),
    })
}

/// Builds the provider a stored configuration describes. `Ok(None)` for the local outbox,
/// which is the server's own.
pub fn build(
    kind: ProviderKind,
    credentials: &serde_json::Value,
    wiring: &Wiring<'_>,
) -> Result<Option<Arc<dyn Provider>>, Vec<FieldError>> {
    match kind {
        ProviderKind::LocalOutbox => {
            if credentials.as_object().is_some_and(|o| o.is_empty()) {
                Ok(None)
            } else {
                Err(vec![FieldError::new(
                    "credentials",
                    "an empty object for the local outbox",
                )])
            }
        }
        ProviderKind::Smtp => {
            let settings: SmtpSettings =
                serde_json::from_value(credentials.clone()).map_err(|e| field_errors(kind, &e))?;
            let provider = SmtpProvider::new(smtp_config(settings)?)
                .map_err(|e| vec![FieldError::new("credentials", e.to_string())])?;
            Ok(Some(Arc::new(provider)))
        }
        ProviderKind::Twilio => {
            let settings: TwilioSettings =
                serde_json::from_value(credentials.clone()).map_err(|e| field_errors(kind, &e))?;
            Ok(Some(Arc::new(twilio(settings, wiring)?)))
        }
        ProviderKind::Telnyx => {
            let settings: TelnyxSettings =
                serde_json::from_value(credentials.clone()).map_err(|e| field_errors(kind, &e))?;
            Ok(Some(Arc::new(telnyx(settings, wiring)?)))
        }
    }
}

/// Checks that `credentials` is a valid configuration for `kind` with these numbers.
pub fn parse(
    kind: ProviderKind,
    credentials: &serde_json::Value,
    numbers: &[String],
) -> Result<(), Vec<FieldError>> {
    build(
        kind,
        credentials,
        &Wiring {
            numbers,
            webhook_urls: &[],
        },
    )
    .map(|_| ())
}

//! The stored configuration of each provider kind (the JSON an admin submits, sealed at rest),
//! and building the provider from it. Unknown fields are refused, so a typo is an error, not a
//! silently ignored setting.

use std::sync::Arc;

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
        ProviderKind::Twilio | ProviderKind::Telnyx => Err(vec![FieldError::new(
            "kind",
            "this provider kind is not available in this build yet",
        )]),
    }
}

/// Checks that `credentials` is a valid configuration for `kind`.
pub fn parse(kind: ProviderKind, credentials: &serde_json::Value) -> Result<(), Vec<FieldError>> {
    build(kind, credentials).map(|_| ())
}

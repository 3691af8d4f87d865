//! The stored configuration of each provider kind, and building the provider from it.

use salve_core::FieldError;
use salve_core::vendors::ProviderKind;

/// Checks that `credentials` is a valid configuration for `kind`.
pub fn parse(kind: ProviderKind, credentials: &serde_json::Value) -> Result<(), Vec<FieldError>> {
    let required: &[&str] = match kind {
        ProviderKind::Twilio => &["account_sid", "auth_token"],
        ProviderKind::Telnyx => &["api_key", "public_key"],
        ProviderKind::Smtp => &[
            "host",
            "port",
            "security",
            "username",
            "password",
            "from_address",
        ],
        ProviderKind::LocalOutbox => &[],
    };
    let errors: Vec<FieldError> = required
        .iter()
        .filter(|k| credentials.get(**k).is_none_or(serde_json::Value::is_null))
        .map(|k| FieldError::new(format!("credentials.{k}"), "required"))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

//! Which provider carries a practice's message: the practice's enabled provider for the medium,
//! when its agreement lets it carry patient data today; otherwise the message waits. A practice
//! with no provider configured falls back to the server's default channel (the local outbox in
//! the demo and in development, nothing in production).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use salve_channels::Provider;
use salve_core::vendors::{Coverage, ProviderKind};
use salve_core::{PracticeId, ProviderId};
use salve_store::{Medium, ProviderRecord};

use crate::AppState;

/// Providers built from their stored configuration, kept while the process runs. A changed
/// configuration is a new provider row, so an id always means the same configuration.
#[derive(Default)]
pub struct ProviderRegistry {
    built: Mutex<HashMap<ProviderId, Arc<dyn Provider>>>,
}

/// What to do with a message now.
pub enum Route {
    Send(Arc<dyn Provider>),
    /// The provider's agreement does not cover today: keep the message queued.
    Hold {
        provider: Box<ProviderRecord>,
        coverage: Coverage,
    },
}

impl ProviderRegistry {
    /// The route for a practice's message on `medium`.
    pub async fn route(
        &self,
        state: &AppState,
        practice: PracticeId,
        medium: Medium,
    ) -> anyhow::Result<Route> {
        let Some(record) = state.store.enabled_provider(practice, medium).await? else {
            return Ok(Route::Send(state.provider.clone()));
        };
        let today = state.store.practice_today(practice).await?;
        let coverage = record.coverage(today);
        if !coverage.allows_sending() {
            return Ok(Route::Hold {
                provider: Box::new(record),
                coverage,
            });
        }
        Ok(Route::Send(self.build(state, &record)?))
    }

    /// The provider a stored record describes, built once.
    pub fn build(
        &self,
        state: &AppState,
        record: &ProviderRecord,
    ) -> anyhow::Result<Arc<dyn Provider>> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = built.get(&record.id) {
            return Ok(p.clone());
        }
        let credentials: serde_json::Value = serde_json::from_str(record.credentials.expose())
            .map_err(|_| anyhow::anyhow!("provider {} has unreadable settings", record.id))?;
        let urls = webhook_urls(
            state.config.public_url.as_deref().unwrap_or(""),
            record.kind,
            record.id,
        );
        let wiring = crate::provider_config::Wiring {
            numbers: &record.numbers,
            webhook_urls: if state.config.public_url.is_some() {
                &urls
            } else {
                &[]
            },
        };
        let provider = match crate::provider_config::build(record.kind, &credentials, &wiring) {
            Ok(Some(provider)) => provider,
            // The server's own local outbox: there is one per data directory.
            Ok(None) => state.provider.clone(),
            Err(_) => anyhow::bail!("provider {} has invalid settings", record.id),
        };
        built.insert(record.id, provider.clone());
        Ok(provider)
    }
}

/// Checks a provider's configuration as an admin submits it and returns what is sealed.
/// Every problem is reported with its field; secrets are never echoed back.
pub fn check_credentials(
    kind: ProviderKind,
    credentials: &serde_json::Value,
    numbers: &[String],
) -> Result<String, Vec<salve_core::FieldError>> {
    use salve_core::FieldError;
    if !credentials.is_object() {
        return Err(vec![FieldError::new(
            "credentials",
            "an object with the provider's settings",
        )]);
    }
    let mut errors = Vec::new();
    if matches!(kind, ProviderKind::Smtp | ProviderKind::LocalOutbox) && !numbers.is_empty() {
        errors.push(FieldError::new("numbers", "none for this kind of provider"));
    }
    if errors.is_empty()
        && let Err(mut more) = crate::provider_config::parse(kind, credentials, numbers)
    {
        errors.append(&mut more);
    }
    if errors.is_empty() {
        Ok(credentials.to_string())
    } else {
        Err(errors)
    }
}

/// Where the vendor should post inbound messages and delivery reports for this provider.
pub fn webhook_urls(public_url: &str, kind: ProviderKind, id: ProviderId) -> Vec<String> {
    let base = public_url.trim_end_matches('/');
    match kind {
        ProviderKind::Twilio => vec![
            format!("{base}/webhooks/twilio/{id}/inbound"),
            format!("{base}/webhooks/twilio/{id}/status"),
        ],
        ProviderKind::Telnyx => vec![format!("{base}/webhooks/telnyx/{id}")],
        ProviderKind::Smtp | ProviderKind::LocalOutbox => Vec::new(),
    }
}

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
pub struct ProviderRegistry {
    built: Mutex<HashMap<ProviderId, Arc<dyn Provider>>>,
    pacer: Mutex<salve_core::delivery::Pacer<ProviderId>>,
}

impl Default for ProviderRegistry {
    fn default() -> Self {
        Self::new(1.0)
    }
}

/// What to do with a message now.
#[derive(Clone)]
pub enum Route {
    /// Send; `paced`: the provider sends from a fixed number, whose sends are spaced.
    Send {
        provider: Arc<dyn Provider>,
        paced: Option<ProviderId>,
    },
    /// The provider's agreement does not cover today: keep the message queued.
    Hold {
        provider: Box<ProviderRecord>,
        coverage: Coverage,
    },
}

impl ProviderRegistry {
    /// `sms_per_second`: how many texts one sender number may send a second.
    pub fn new(sms_per_second: f64) -> Self {
        Self {
            built: Mutex::default(),
            pacer: Mutex::new(salve_core::delivery::Pacer::new(sms_per_second)),
        }
    }

    /// Waits for the sender's next free slot (wall-clock time: carriers count real seconds).
    /// Takes the sender number's next send slot at `now_micros` (the server's clock), or says
    /// when it frees up; a deferred send reserves nothing and asks again then.
    pub fn pace(&self, sender: ProviderId, now_micros: i64) -> Result<(), i64> {
        self.pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_take(sender, now_micros)
    }

    /// The route for a practice's message on `medium`.
    pub async fn route(
        &self,
        state: &AppState,
        practice: PracticeId,
        medium: Medium,
    ) -> anyhow::Result<Route> {
        let Some(record) = state.store.enabled_provider(practice, medium).await? else {
            return Ok(Route::Send {
                provider: state.provider.clone(),
                paced: None,
            });
        };
        let today = state.store.practice_today(practice).await?;
        let coverage = record.coverage(today);
        if !coverage.allows_sending() {
            return Ok(Route::Hold {
                provider: Box::new(record),
                coverage,
            });
        }
        let provider = self.build(state, &record)?;
        let paced = (medium == Medium::Sms
            && record.kind != ProviderKind::LocalOutbox
            && !provider.capabilities().picks_sender_number)
            .then_some(record.id);
        Ok(Route::Send { provider, paced })
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

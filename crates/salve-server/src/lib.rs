//! Salve's HTTP server: the JSON API under `/api/v1` (OpenAPI at `/api/v1/openapi.json`),
//! health and readiness, Prometheus metrics, and the audit checkpoint worker.
//!
//! Handlers parse, authorize (through the route table and `salve_core::permissions`), call the
//! store, and render. Errors are RFC 9457 problem documents that never echo submitted values.

// ApiError is built once per failed request and returned straight away; boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod announcements;
mod api;
pub mod attachments;
mod auth;
pub mod channels;
mod config;
mod context;
pub mod ehr;
mod error;
pub mod escalation;
mod extract;
pub mod fhir;
pub mod hl7;
mod metrics;
mod notify;
mod openapi;
mod outbound;
mod provider_config;
pub mod reminders;
mod routes;
mod serve;
pub mod unread;
mod web;
pub mod worker;

use std::sync::Arc;

use salve_core::Clock;
use salve_store::Store;

pub use auth::{COOKIE, HOST_COOKIE};
pub use config::{ConfigError, Hl7Config, Hl7Source, MetricsToken, ServerConfig, TlsFiles};
pub use routes::{Access, RouteSpec, route_specs};
pub use serve::{build_router, serve};

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<metrics::Metrics>,
    /// Bounds concurrent CPU- and memory-heavy work: argon2 (19 MiB each) and image decoding.
    pub hash_permits: Arc<tokio::sync::Semaphore>,
    /// The default channel: for practices with no provider configured (the local outbox in the
    /// demo and in development), and for notifications to staff.
    pub provider: Arc<dyn salve_channels::Provider>,
    /// The practices' configured providers.
    pub providers: Arc<channels::ProviderRegistry>,
    /// The local outbox, when this server runs in demo or development mode (its sent messages
    /// can be listed, and inbound texts and delivery reports simulated, by admins).
    pub local_outbox: Option<Arc<salve_channels::LocalOutbox>>,
    /// Resolves the hosts of inbound media (the system's resolver; tests map names).
    pub media_resolver: Arc<dyn salve_channels::Resolver>,
    /// Tests only: inbound media may come from loopback (never set by any configuration).
    media_from_loopback: bool,
    /// The passkey relying party; `None` when the public URL cannot name one.
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    /// When this process last decided reminders (server clock, micros): at most one pass a
    /// minute, however often commits wake the worker (a pass opens every visit ahead).
    reminders_last_pass: Arc<std::sync::atomic::AtomicI64>,
    /// The outbound FHIR client that writes into practices' EHRs (caches SMART tokens).
    pub ehr: Arc<ehr::client::EhrClient>,
}

impl AppState {
    pub fn new(store: Arc<Store>, clock: Arc<dyn Clock>, config: ServerConfig) -> Self {
        let sms_per_second = config.sms_per_second_per_number;
        let webauthn = match api::passkeys::relying_party(&config) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                tracing::warn!(error = %e, "passkeys are unavailable");
                None
            }
        };
        Self {
            webauthn,
            store,
            clock,
            config: Arc::new(config),
            metrics: Arc::new(metrics::Metrics::new()),
            hash_permits: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            provider: Arc::new(NoChannel),
            providers: Arc::new(channels::ProviderRegistry::new(sms_per_second)),
            local_outbox: None,
            media_resolver: Arc::new(salve_channels::SystemResolver),
            media_from_loopback: false,
            reminders_last_pass: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            ehr: Arc::new(ehr::client::EhrClient::new()),
        }
    }

    /// Whether a reminders pass is due (a minute since the last one on the server clock); if
    /// so, it counts as started now.
    pub(crate) fn reminders_due_for_a_pass(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = salve_core::clock::to_micros(self.clock.now());
        let last = self.reminders_last_pass.load(Ordering::Relaxed);
        if last != i64::MIN && now.saturating_sub(last) < 60_000_000 {
            return false;
        }
        self.reminders_last_pass
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    pub fn with_provider(mut self, provider: Arc<dyn salve_channels::Provider>) -> Self {
        self.provider = provider;
        self
    }

    /// Tests only: inbound media hosts resolve through `resolver`, and loopback addresses are
    /// allowed, so a test server can stand in for a provider's media host.
    #[doc(hidden)]
    pub fn with_media_for_tests(mut self, resolver: Arc<dyn salve_channels::Resolver>) -> Self {
        self.media_resolver = resolver;
        self.media_from_loopback = true;
        self
    }

    pub(crate) fn media_from_loopback(&self) -> bool {
        self.media_from_loopback
    }

    /// Demo and development mode: the local outbox is the default channel, and admins can see
    /// what it "sent" and simulate replies.
    pub fn with_local_outbox(mut self, outbox: salve_channels::LocalOutbox) -> Self {
        let outbox = Arc::new(outbox);
        self.provider = outbox.clone();
        self.local_outbox = Some(outbox);
        self
    }
}

/// Used until a channel is configured: every send fails, and the failure is audited.
struct NoChannel;

#[async_trait::async_trait]
impl salve_channels::Provider for NoChannel {
    fn name(&self) -> &'static str {
        "none"
    }
    fn capabilities(&self) -> salve_channels::Capabilities {
        salve_channels::Capabilities {
            handles_opt_out_keywords: false,
            can_reconcile: false,
            picks_sender_number: false,
            can_delete_media: false,
        }
    }
    async fn send(
        &self,
        _message: &salve_channels::OutgoingMessage,
    ) -> Result<salve_channels::SendReceipt, salve_channels::ProviderError> {
        // Kept as before the error split (the worker reconciles, this cannot tell, staff see
        // `unknown`); whether it should rather be `transient` (retried) is the worker's owner's
        // call.
        Err(salve_channels::ProviderError::ambiguous(
            "no_channel",
            "no message channel is configured",
        ))
    }
}

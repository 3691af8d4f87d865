//! Server settings (already merged from flags, environment and file by the CLI) and the
//! start-up checks that refuse unsafe combinations.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A bearer secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The URL patients and staff use, e.g. `https://messages.example-clinic.org`.
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Serve `/metrics` on this separate listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Or serve `/metrics` on the main listener to holders of this token.
    pub metrics_token: Option<MetricsToken>,
    /// Append-only file outside the data directory that receives every signed checkpoint.
    pub audit_anchor: Option<PathBuf>,
    pub checkpoint_interval: Duration,
    /// How often the outbox worker looks for due jobs besides being woken by a commit.
    pub outbox_poll: Duration,
    /// When non-urgent texts wait (in each patient's time zone); `None`: never.
    pub quiet_hours: Option<salve_core::delivery::QuietHours>,
    /// Texts one sender number may send a second (not applied when the provider picks the
    /// number from a pool).
    pub sms_per_second_per_number: f64,
    /// How often a live-update stream re-checks its session (expiry, revocation).
    pub stream_session_check: Duration,
    /// A live-update stream is closed after this long; the client reconnects (and is
    /// authenticated again), which also spreads streams over restarted instances.
    pub stream_max_lifetime: Duration,
    pub max_body_bytes: usize,
    pub tls: Option<TlsFiles>,
}

impl ServerConfig {
    pub fn local(listen: SocketAddr) -> Self {
        Self {
            listen,
            public_url: None,
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            metrics_token: None,
            audit_anchor: None,
            checkpoint_interval: Duration::from_secs(60),
            outbox_poll: Duration::from_secs(5),
            quiet_hours: Some(salve_core::delivery::QuietHours::default()),
            sms_per_second_per_number: 1.0,
            stream_session_check: Duration::from_secs(5),
            stream_max_lifetime: Duration::from_secs(30 * 60),
            max_body_bytes: 64 * 1024,
            tls: None,
        }
    }

    pub fn public_url_is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    /// Refuses to expose patient data in clear on a network: a listener that is not loopback
    /// needs TLS here, or an https public URL (TLS terminated by a proxy in front).
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::PublicUrl);
        }
        if !self.listen.ip().is_loopback() && self.tls.is_none() && !self.public_url_is_https() {
            return Err(ConfigError::CleartextListener(self.listen));
        }
        if let Some(m) = self.metrics_listen
            && m == self.listen
        {
            return Err(ConfigError::MetricsSameListener);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "refusing to listen on {0} without TLS: patient data would cross the network in clear. \
         Use --tls-cert/--tls-key, or put a TLS proxy in front and set --public-url https://…, \
         or listen on 127.0.0.1"
    )]
    CleartextListener(std::net::SocketAddr),
    #[error("--public-url must start with https:// or http://")]
    PublicUrl,
    #[error("--metrics-listen must differ from --listen")]
    MetricsSameListener,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_on_the_network_is_refused() {
        let mut c = ServerConfig::local("0.0.0.0:8080".parse().unwrap());
        assert!(matches!(c.check(), Err(ConfigError::CleartextListener(_))));
        c.public_url = Some("http://clinic.example".into());
        assert!(c.check().is_err());
        c.public_url = Some("https://clinic.example".into());
        assert!(c.check().is_ok());
        c.public_url = None;
        c.tls = Some(TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        });
        assert!(c.check().is_ok());
        assert!(
            ServerConfig::local("127.0.0.1:8080".parse().unwrap())
                .check()
                .is_ok()
        );
        assert!(
            ServerConfig::local("[::1]:8080".parse().unwrap())
                .check()
                .is_ok()
        );
    }

    #[test]
    fn metrics_token_never_prints() {
        let mut c = ServerConfig::local("127.0.0.1:1".parse().unwrap());
        c.metrics_token = Some(MetricsToken("s3cret-token".into()));
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}

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

/// One system allowed to send the HL7 v2 feed: from these addresses, naming this sending
/// facility (MSH-4.1), for this practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Source {
    pub practice: salve_core::PracticeId,
    pub sending_facility: String,
    pub addresses: Vec<IpNet>,
}

/// The HL7 v2 (MLLP) appointment feed's listener.
#[derive(Debug, Clone)]
pub struct Hl7Config {
    pub listen: SocketAddr,
    /// TLS on the MLLP connection; required unless `listen` is loopback.
    pub tls: Option<TlsFiles>,
    pub sources: Vec<Hl7Source>,
    /// The largest message (frame) accepted; a larger one closes the connection.
    pub max_message_bytes: usize,
    /// How long a connection may take to deliver a started message, and may stay idle.
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Connections served at once; more wait for a free slot.
    pub max_connections: usize,
}

impl Hl7Config {
    pub fn new(listen: SocketAddr, sources: Vec<Hl7Source>) -> Self {
        Self {
            listen,
            tls: None,
            sources,
            max_message_bytes: 1024 * 1024,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_connections: 32,
        }
    }

    /// Whether any source may connect from `ip` (others are closed before a byte is read).
    pub fn address_allowed(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical(ip);
        self.sources
            .iter()
            .any(|s| s.addresses.iter().any(|n| n.contains(&ip)))
    }

    /// The practice a message from `ip` naming `facility` (MSH-4.1) is for.
    pub fn practice_for(
        &self,
        ip: std::net::IpAddr,
        facility: &str,
    ) -> Option<salve_core::PracticeId> {
        let ip = canonical(ip);
        self.sources
            .iter()
            .find(|s| s.sending_facility == facility && s.addresses.iter().any(|n| n.contains(&ip)))
            .map(|s| s.practice)
    }
}

/// An IPv4 peer on an IPv6 socket as IPv4, so `10.0.0.0/8` matches `::ffff:10.1.2.3`.
fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
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
    /// The HL7 v2 appointment feed; `None`: no listener.
    pub hl7: Option<Hl7Config>,
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
            hl7: None,
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
        if let Some(h) = &self.hl7 {
            if h.listen == self.listen || Some(h.listen) == self.metrics_listen {
                return Err(ConfigError::Hl7SameListener);
            }
            if !h.listen.ip().is_loopback() && h.tls.is_none() {
                return Err(ConfigError::Hl7Cleartext(h.listen));
            }
            if h.sources.is_empty() {
                return Err(ConfigError::Hl7NoSources);
            }
            if h.sources
                .iter()
                .any(|s| s.sending_facility.trim().is_empty() || s.addresses.is_empty())
            {
                return Err(ConfigError::Hl7Source);
            }
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
    #[error("hl7.listen must differ from the web and metrics listeners")]
    Hl7SameListener,
    #[error(
        "refusing to run the HL7 listener on {0} without TLS: patient data would cross the network \
         in clear. Set hl7.tls_cert and hl7.tls_key, or listen on 127.0.0.1 behind a VPN or TLS tunnel"
    )]
    Hl7Cleartext(std::net::SocketAddr),
    #[error("the HL7 listener needs at least one [[hl7.sources]] entry")]
    Hl7NoSources,
    #[error("every [[hl7.sources]] entry needs a sending_facility and at least one address")]
    Hl7Source,
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
    fn the_hl7_listener_needs_tls_off_loopback_and_maps_sources_to_practices() {
        let practice = salve_core::PracticeId::new();
        let source = Hl7Source {
            practice,
            sending_facility: "LAKESIDE".into(),
            addresses: vec!["10.1.0.0/16".parse().unwrap()],
        };
        let mut c = ServerConfig::local("127.0.0.1:8080".parse().unwrap());
        c.hl7 = Some(Hl7Config::new(
            "0.0.0.0:2575".parse().unwrap(),
            vec![source.clone()],
        ));
        assert!(matches!(c.check(), Err(ConfigError::Hl7Cleartext(_))));
        c.hl7.as_mut().unwrap().listen = "127.0.0.1:2575".parse().unwrap();
        assert!(c.check().is_ok());
        c.hl7.as_mut().unwrap().sources.clear();
        assert_eq!(c.check(), Err(ConfigError::Hl7NoSources));
        let h = Hl7Config::new("127.0.0.1:2575".parse().unwrap(), vec![source]);
        let inside: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let outside: std::net::IpAddr = "10.2.0.1".parse().unwrap();
        assert!(h.address_allowed(inside) && h.address_allowed(mapped));
        assert!(!h.address_allowed(outside));
        assert_eq!(h.practice_for(inside, "LAKESIDE"), Some(practice));
        assert_eq!(h.practice_for(inside, "OTHER"), None);
        assert_eq!(h.practice_for(outside, "LAKESIDE"), None);
    }

    #[test]
    fn metrics_token_never_prints() {
        let mut c = ServerConfig::local("127.0.0.1:1".parse().unwrap());
        c.metrics_token = Some(MetricsToken("s3cret-token".into()));
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}

//! Fetching inbound MMS media without letting a media URL turn the server against its own
//! network (SSRF).
//!
//! An inbound MMS webhook names its media by URL. [`MediaFetcher::fetch`] follows such a URL
//! only when every step checks out:
//!
//! 1. the URL is `https` (plain `http` only to loopback, and only with the test-only setting);
//! 2. its host is a DNS name on the provider's allow-list ([`FetchPolicy::hosts`]; a redirect may
//!    also land on [`FetchPolicy::redirect_hosts`]); IP literals are refused;
//! 3. the name is resolved once, through the pluggable [`Resolver`], and **every** address is
//!    checked by [`is_public_address`]: if any one is loopback, private, link-local, reserved
//!    and so on, the whole host is refused;
//! 4. the connection goes only to the addresses that were checked: the HTTP client of each hop
//!    is given a resolver that answers with those addresses and nothing else, so there is no
//!    second lookup for a rebinding DNS server to answer differently;
//! 5. redirects are followed by hand, at most [`MAX_REDIRECTS`], each hop checked again from
//!    step 1; credentials go only to the origin the fetch started at, and are dropped for good
//!    at the first change of origin;
//! 6. the body is read to at most [`FetchPolicy::max_bytes`] (a larger `Content-Length` is
//!    refused before reading), the whole fetch is bounded by [`FetchPolicy::timeout`], and the
//!    declared `Content-Type` must be allowed and agree with the body's magic bytes.
//!
//! Errors ([`MediaError`]) carry no URL, token, host name or body: their `Display` is safe to log.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use salve_core::Sensitive;

/// The most redirects one fetch follows (Twilio needs one: `api.twilio.com` to its CDN).
pub const MAX_REDIRECTS: usize = 3;

/// Where Twilio media URLs start: the REST API's media resource, which requires HTTP basic
/// authentication (API key and secret, or account SID and auth token). Regional API hosts
/// (`api.<edge>.<region>.twilio.com`) can be added by configuration.
pub const TWILIO_MEDIA_HOSTS: &[&str] = &["api.twilio.com"];

/// Where Twilio redirects media requests: its media CDN (`mms.twiliocdn.com`,
/// `media.twiliocdn.com`), reached by a 302/307 with a signed URL. Redirect targets only: a
/// fetch cannot start here, so credentials are never sent here.
///
/// Older Twilio accounts were redirected to `s3-external-1.amazonaws.com`; that host is not a
/// default because any AWS customer's bucket is served from it.
pub const TWILIO_MEDIA_REDIRECT_HOSTS: &[&str] = &["*.twiliocdn.com"];

/// Where Telnyx inbound MMS media URLs (`media[].url` in `message.received`) point: signed,
/// short-lived links that need no credentials.
pub const TELNYX_MEDIA_HOSTS: &[&str] = &["media.telnyx.com"];

const USER_AGENT: &str = "Salve-media-fetcher";

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a fetch was refused or failed. `Display` names the reason only: no URL (media URLs carry
/// signatures and tokens), no host, no address, no content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Not a URL, or one with user information in it.
    #[error("media URL is malformed")]
    InvalidUrl,
    /// The host is an IP literal or not on the allow-list; nothing was resolved or opened.
    #[error("media host is not allowed")]
    ForbiddenHost,
    /// The host resolves to at least one forbidden address; no connection was opened.
    #[error("media host resolves to a forbidden address")]
    ForbiddenAddress,
    /// A scheme other than https (or http to loopback with the test-only setting).
    #[error("media URL is not https")]
    NotHttps,
    /// `Content-Length` or the body read so far exceeds the size limit.
    #[error("media is larger than the size limit")]
    TooLarge,
    /// The whole fetch, redirects and body included, took longer than the time limit.
    #[error("media fetch timed out")]
    Timeout,
    /// The declared type is missing or not allowed, or the body is not what it claims to be.
    #[error("media content type is not allowed or does not match the content")]
    BadContent,
    /// Too many redirects, or a redirect without a usable `Location`.
    #[error("media redirects refused (too many, or no usable location)")]
    Redirects,
    /// The media server answered with a status that is neither success nor redirect.
    #[error("media server answered HTTP {0}")]
    Http(u16),
    /// Name resolution, connection, TLS or reading failed. The text is a fixed phrase.
    #[error("media transport failed ({0})")]
    Transport(&'static str),
}

impl MediaError {
    /// A short, stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidUrl => "invalid_url",
            Self::ForbiddenHost => "forbidden_host",
            Self::ForbiddenAddress => "forbidden_address",
            Self::NotHttps => "not_https",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::BadContent => "bad_content",
            Self::Redirects => "redirects",
            Self::Http(_) => "http",
            Self::Transport(_) => "transport",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Address check

/// Whether `ip` may be connected to: a globally routed unicast address.
///
/// Refused, for IPv4: `0.0.0.0/8` (unspecified, "this network"), `10/8`, `100.64/10` (CGNAT),
/// `127/8`, `169.254/16` (link-local, cloud metadata), `172.16/12`, `192.0.0/24`, `192.0.2/24`,
/// `192.88.99/24`, `192.168/16`, `198.18/15` (benchmarking), `198.51.100/24`, `203.0.113/24`,
/// `224/4` (multicast) and `240/4` (reserved, broadcast).
///
/// For IPv6 only global unicast `2000::/3` is allowed, less `2001::/23` (IETF protocol
/// assignments: Teredo, benchmarking, ORCHID), `2001:db8::/32` and `3fff::/20` (documentation).
/// Forms that embed an IPv4 address are judged by that address: IPv4-mapped `::ffff:a.b.c.d`,
/// SIIT `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96` and 6to4 `2002::/16`. The deprecated
/// IPv4-compatible `::a.b.c.d` (all of `::/96`, with `::` and `::1`) is refused outright, as is
/// everything outside `2000::/3`: ULA `fc00::/7`, link-local `fe80::/10`, multicast `ff00::/8`,
/// local-use NAT64 `64:ff9b:1::/48`, discard `100::/64`.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_public(v4),
        IpAddr::V6(v6) => v6_is_public(v6),
    }
}

/// `(network, prefix length)` of every IPv4 range that is not publicly routed.
const FORBIDDEN_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

fn v4_is_public(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    !FORBIDDEN_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX << (32 - u32::from(len));
        ip & mask == u32::from(net)
    })
}

fn v6_is_public(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // IPv4-mapped ::ffff:a.b.c.d
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return v4_is_public(embedded(s[6], s[7]));
    }
    // ::/96: unspecified, loopback and the deprecated IPv4-compatible form
    if s[..6] == [0; 6] {
        return false;
    }
    // SIIT IPv4-translated ::ffff:0:a.b.c.d
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return v4_is_public(embedded(s[6], s[7]));
    }
    // NAT64 well-known prefix 64:ff9b::/96
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return v4_is_public(embedded(s[6], s[7]));
    }
    // 6to4 2002:AABB:CCDD::/48
    if s[0] == 0x2002 {
        return v4_is_public(embedded(s[1], s[2]));
    }
    // Only global unicast from here on.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    let ietf = s[0] == 0x2001 && s[1] < 0x0200; // 2001::/23
    let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000);
    !(ietf || documentation)
}

/// `127/8` and `::1`: what the test-only loopback setting lets through.
fn is_plain_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution

/// Resolves a host name to addresses. Called once per hop, with a DNS name (never an IP
/// literal), lower-case and without a trailing dot. The answer is checked before use.
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let addrs = tokio::net::lookup_host((host, 0)).await?;
        Ok(addrs.map(|a| a.ip()).collect())
    }
}

/// What each hop's HTTP client resolves with: the addresses already checked for this host,
/// and nothing for any other name.
struct PinnedResolver {
    host: String,
    addrs: Vec<SocketAddr>,
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let result: Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>> =
            if normalize_host(name.as_str()) == self.host {
                Ok(Box::new(self.addrs.clone().into_iter()))
            } else {
                Err("name was not checked for this hop".into())
            };
        Box::pin(std::future::ready(result))
    }
}

// ---------------------------------------------------------------------------------------------
// Policy

/// A host on an allow-list: an exact DNS name (`api.twilio.com`), or `*.` and a name
/// (`*.twiliocdn.com`), which matches any name below it but not the name itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    name: String,
    wildcard: bool,
}

/// A host pattern that is not a DNS name, or a wildcard too broad to be meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a host name or *.name pattern: {0:?}")]
pub struct InvalidHostPattern(pub String);

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, InvalidHostPattern> {
        let invalid = || InvalidHostPattern(raw.to_owned());
        let lowered = normalize_host(raw.trim());
        let (wildcard, name) = match lowered.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lowered),
        };
        let labels: Vec<&str> = name.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let last_is_numeric = labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
        if name.len() > 253
            || !labels.iter().all(label_ok)
            || last_is_numeric
            || (wildcard && labels.len() < 2)
        {
            return Err(invalid());
        }
        Ok(Self { name, wildcard })
    }

    /// Whether `host` (already lower-case, without a trailing dot) is covered.
    pub fn matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.len() > self.name.len() + 1
                && host.ends_with(&self.name)
                && host.as_bytes()[host.len() - self.name.len() - 1] == b'.'
        } else {
            host == self.name
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)
    }
}

fn patterns(raw: &[&str]) -> Vec<HostPattern> {
    raw.iter()
        .filter_map(|p| HostPattern::parse(p).ok())
        .collect()
}

/// A kind of media Salve accepts, each one recognisable by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    Jpeg,
    Png,
    Gif,
    Webp,
    /// HEIC/HEIF (iPhone photos); declared as `image/heic` or `image/heif`.
    Heic,
    Pdf,
}

impl MediaType {
    /// The canonical MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Heic => "image/heic",
            Self::Pdf => "application/pdf",
        }
    }

    /// Reads a `Content-Type` header value; parameters (`; charset=...`) are ignored.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or("").trim();
        let known = [
            ("image/jpeg", Self::Jpeg),
            ("image/jpg", Self::Jpeg),
            ("image/pjpeg", Self::Jpeg),
            ("image/png", Self::Png),
            ("image/gif", Self::Gif),
            ("image/webp", Self::Webp),
            ("image/heic", Self::Heic),
            ("image/heif", Self::Heic),
            ("application/pdf", Self::Pdf),
        ];
        known
            .iter()
            .find(|(mime, _)| essence.eq_ignore_ascii_case(mime))
            .map(|&(_, t)| t)
    }

    /// What the content is, by its magic bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        const HEIF_BRANDS: &[&[u8; 4]] = &[
            b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
        ];
        if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else if bytes.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else if bytes.len() >= 12
            && &bytes[4..8] == b"ftyp"
            && HEIF_BRANDS.iter().any(|b| &bytes[8..12] == *b)
        {
            Some(Self::Heic)
        } else {
            None
        }
    }
}

/// What a [`MediaFetcher`] may fetch. Not deserialisable on purpose: the server builds it from
/// its own configuration, which must never offer `allow_loopback_for_tests`.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Hosts a fetch may start at; the only ones that ever receive credentials.
    pub hosts: Vec<HostPattern>,
    /// Further hosts a redirect may lead to (a provider's CDN).
    pub redirect_hosts: Vec<HostPattern>,
    /// Accepted media types; the declared type must be one and the body must match it.
    pub allowed_types: Vec<MediaType>,
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
    /// Limit for the whole fetch: resolution, every hop, and the body.
    pub timeout: Duration,
    /// **Tests only; never set in production.** Permits loopback addresses (`127/8`, `::1`) and
    /// plain `http` to them, so tests can serve media from a local server. Every other check
    /// still applies.
    pub allow_loopback_for_tests: bool,
}

impl FetchPolicy {
    /// Twilio's documented media hosts ([`TWILIO_MEDIA_HOSTS`], [`TWILIO_MEDIA_REDIRECT_HOSTS`]).
    pub fn twilio() -> Self {
        Self::for_hosts(
            patterns(TWILIO_MEDIA_HOSTS),
            patterns(TWILIO_MEDIA_REDIRECT_HOSTS),
        )
    }

    /// Telnyx's media host ([`TELNYX_MEDIA_HOSTS`]).
    pub fn telnyx() -> Self {
        Self::for_hosts(patterns(TELNYX_MEDIA_HOSTS), Vec::new())
    }

    /// The given hosts with the default limits: 5 MiB (Twilio's per-message cap), 30 seconds,
    /// JPEG, PNG, GIF, HEIC and PDF.
    pub fn for_hosts(hosts: Vec<HostPattern>, redirect_hosts: Vec<HostPattern>) -> Self {
        Self {
            hosts,
            redirect_hosts,
            allowed_types: vec![
                MediaType::Jpeg,
                MediaType::Png,
                MediaType::Gif,
                MediaType::Heic,
                MediaType::Pdf,
            ],
            max_bytes: 5 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            allow_loopback_for_tests: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fetching

/// HTTP basic credentials for the provider's media host (Twilio). Sent only to the origin the
/// fetch starts at. Both parts print as `[redacted]`.
#[derive(Clone)]
pub struct BasicCredentials {
    username: Sensitive<String>,
    password: Sensitive<String>,
}

impl BasicCredentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: Sensitive::new(username.into()),
            password: Sensitive::new(password.into()),
        }
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// Media that passed every check. The bytes are a patient's content: `Debug` shows the type and
/// length only.
pub struct FetchedMedia {
    pub bytes: Vec<u8>,
    pub content_type: MediaType,
}

impl fmt::Debug for FetchedMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedMedia")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Fetches media under a [`FetchPolicy`]; see the module documentation for the checks.
pub struct MediaFetcher {
    policy: FetchPolicy,
    resolver: Arc<dyn Resolver>,
    /// Built on the first https hop: ring and the operating system's root certificates.
    tls: OnceLock<Option<rustls::ClientConfig>>,
}

impl fmt::Debug for MediaFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaFetcher")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// One checked hop: where to connect, and whether it is TLS.
struct Hop {
    host: String,
    addrs: Vec<SocketAddr>,
    https: bool,
}

/// Scheme, host and port: credentials stay within the origin the fetch started at.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(normalize_host) == b.host_str().map(normalize_host)
        && a.port_or_known_default() == b.port_or_known_default()
}

fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn transport(e: &reqwest::Error) -> MediaError {
    MediaError::Transport(if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else if e.is_builder() {
        "client"
    } else {
        "request"
    })
}

impl MediaFetcher {
    pub fn new(policy: FetchPolicy, resolver: Arc<dyn Resolver>) -> Self {
        Self {
            policy,
            resolver,
            tls: OnceLock::new(),
        }
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Fetches `url`, following allowed redirects, and returns the checked media.
    pub async fn fetch(
        &self,
        url: &str,
        credentials: Option<BasicCredentials>,
    ) -> Result<FetchedMedia, MediaError> {
        tokio::time::timeout(
            self.policy.timeout,
            self.fetch_within_time(url, credentials),
        )
        .await
        .unwrap_or(Err(MediaError::Timeout))
    }

    async fn fetch_within_time(
        &self,
        url: &str,
        mut credentials: Option<BasicCredentials>,
    ) -> Result<FetchedMedia, MediaError> {
        let origin = Url::parse(url).map_err(|_| MediaError::InvalidUrl)?;
        let mut url = origin.clone();
        let mut redirects = 0;
        loop {
            let hop = self.check_hop(&url, redirects == 0).await?;
            let client = self.client_for(hop)?;
            let mut request = client.get(url.clone());
            if let Some(c) = &credentials {
                request = request.basic_auth(c.username.expose(), Some(c.password.expose()));
            }
            let response = request.send().await.map_err(|e| transport(&e))?;
            let status = response.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                if redirects == MAX_REDIRECTS {
                    return Err(MediaError::Redirects);
                }
                redirects += 1;
                let next = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|location| url.join(location).ok())
                    .ok_or(MediaError::Redirects)?;
                if !same_origin(&next, &origin) {
                    credentials = None;
                }
                url = next;
                continue;
            }
            if !response.status().is_success() {
                return Err(MediaError::Http(status));
            }
            return self.read_body(response).await;
        }
    }

    /// Everything that must hold before a connection is opened for `url`.
    async fn check_hop(&self, url: &Url, first: bool) -> Result<Hop, MediaError> {
        let https = match url.scheme() {
            "https" => true,
            "http" if self.policy.allow_loopback_for_tests => false,
            _ => return Err(MediaError::NotHttps),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(MediaError::InvalidUrl);
        }
        let host = url.host_str().ok_or(MediaError::InvalidUrl)?;
        // IP literals bypass name resolution in the HTTP client, so they are never allowed.
        // (The URL parser has already turned forms like `0x7f.1` into dotted decimal.)
        if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
            return Err(MediaError::ForbiddenHost);
        }
        let host = normalize_host(host);
        let allowed = self.policy.hosts.iter().any(|p| p.matches(&host))
            || (!first && self.policy.redirect_hosts.iter().any(|p| p.matches(&host)));
        if !allowed {
            return Err(MediaError::ForbiddenHost);
        }
        let port = url.port_or_known_default().ok_or(MediaError::InvalidUrl)?;

        let ips = self
            .resolver
            .resolve(&host)
            .await
            .map_err(|_| MediaError::Transport("resolve"))?;
        if ips.is_empty() {
            return Err(MediaError::Transport("resolve"));
        }
        let loopback_ok = self.policy.allow_loopback_for_tests;
        if !ips
            .iter()
            .all(|&ip| is_public_address(ip) || (loopback_ok && is_plain_loopback(ip)))
        {
            return Err(MediaError::ForbiddenAddress);
        }
        if !https && !ips.iter().all(|&ip| is_plain_loopback(ip)) {
            return Err(MediaError::NotHttps);
        }
        Ok(Hop {
            host,
            addrs: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            https,
        })
    }

    /// A client for one hop: it can reach only the hop's checked addresses, follows no
    /// redirects, uses no proxy and keeps no connections.
    fn client_for(&self, hop: Hop) -> Result<reqwest::Client, MediaError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .referer(false)
            .pool_max_idle_per_host(0)
            .user_agent(USER_AGENT)
            .dns_resolver(Arc::new(PinnedResolver {
                host: hop.host,
                addrs: hop.addrs,
            }));
        if hop.https {
            let tls = self
                .tls
                .get_or_init(native_tls_config)
                .clone()
                .ok_or(MediaError::Transport("tls"))?;
            builder = builder.use_preconfigured_tls(tls).https_only(true);
        }
        builder.build().map_err(|e| transport(&e))
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<FetchedMedia, MediaError> {
        let max = self.policy.max_bytes;
        if response.content_length().is_some_and(|len| len > max) {
            return Err(MediaError::TooLarge);
        }
        let declared = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(MediaType::from_content_type)
            .filter(|t| self.policy.allowed_types.contains(t))
            .ok_or(MediaError::BadContent)?;
        let capacity = response.content_length().unwrap_or(0).min(max);
        let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
            if (bytes.len() as u64).saturating_add(chunk.len() as u64) > max {
                return Err(MediaError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        if MediaType::sniff(&bytes) != Some(declared) {
            return Err(MediaError::BadContent);
        }
        Ok(FetchedMedia {
            bytes,
            content_type: declared,
        })
    }
}

/// TLS with ring and the operating system's roots; `None` if rustls refuses the configuration.
fn native_tls_config() -> Option<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable or unparsable certificates are skipped; with none, every https fetch fails
    // with `Transport`, which is the safe outcome.
    let loaded = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(loaded.certs);
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .ok()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

//! The media fetcher cannot be turned against the server (issue 6, "Must show": SSRF).
//!
//! Forbidden addresses are refused at the resolver and address check, before any connection:
//! each of those tests points the URL's port at a local listener that counts accepted
//! connections and asserts it accepted none. Everything that does need a server uses a tiny
//! HTTP/1.1 server on 127.0.0.1 and the test-only loopback setting; host names reach it through
//! a fake resolver.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use salve_channels::{
    BasicCredentials, FetchPolicy, HostPattern, MAX_REDIRECTS, MediaError, MediaFetcher, MediaType,
    Resolver, SystemResolver, TELNYX_MEDIA_HOSTS, TWILIO_MEDIA_HOSTS, TWILIO_MEDIA_REDIRECT_HOSTS,
    is_public_address,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01";
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n";
/// `ACtest:s3cret-token` in base64.
const AUTH: &str = "Basic QUN0ZXN0OnMzY3JldC10b2tlbg==";

fn creds() -> Option<BasicCredentials> {
    Some(BasicCredentials::new("ACtest", "s3cret-token"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Fake resolver

/// Answers from a fixed table and records every name it was asked for.
#[derive(Default)]
struct FakeResolver {
    table: HashMap<String, Vec<IpAddr>>,
    calls: Mutex<Vec<String>>,
}

impl FakeResolver {
    fn new(entries: &[(&str, &[&str])]) -> Arc<Self> {
        let table = entries
            .iter()
            .map(|(host, ips)| (host.to_string(), ips.iter().map(|s| ip(s)).collect()))
            .collect();
        Arc::new(Self {
            table,
            calls: Mutex::default(),
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Resolver for FakeResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.calls.lock().unwrap().push(host.to_owned());
        self.table
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
    }
}

/// Never answers: resolution counts against the time limit too.
struct StuckResolver;

#[async_trait]
impl Resolver for StuckResolver {
    async fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
        std::future::pending().await
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server on 127.0.0.1

#[derive(Clone)]
enum Reply {
    /// Status, headers, body; `Content-Length` is added unless `with_length` is false.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        with_length: bool,
    },
    /// Reads the request and never answers.
    Hang,
    /// Headers claiming a huge body, then nothing.
    HugeLength,
    /// A PNG without `Content-Length`, streamed until the client goes away.
    Endless,
}

fn ok(content_type: &str, body: &[u8]) -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![("Content-Type", content_type.to_owned())],
        body: body.to_vec(),
        with_length: true,
    }
}

fn redirect(status: u16, location: String) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Location", location)],
        body: Vec::new(),
        with_length: true,
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    /// The `Host` header without the port.
    host: String,
    path: String,
    authorization: Option<String>,
}

struct Server {
    port: u16,
    accepts: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Server {
            port,
            accepts: Arc::default(),
            seen: Arc::default(),
            routes: Arc::default(),
        };
        let (accepts, seen, routes) = (
            server.accepts.clone(),
            server.seen.clone(),
            server.routes.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepts.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, seen.clone(), routes.clone()));
            }
        });
        server
    }

    fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        // A TLS ClientHello (record type 22): this server only speaks plain HTTP, so hang up.
        if head.first() == Some(&0x16) {
            return;
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_owned();
    let mut host = String::new();
    let mut authorization = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("host") {
                host = value.rsplit_once(':').map_or(value, |(h, _)| h).to_owned();
            } else if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.to_owned());
            }
        }
    }
    seen.lock().unwrap().push(Seen {
        host,
        path: path.clone(),
        authorization,
    });
    let reply = routes.lock().unwrap().get(&path).cloned();
    let reply = reply.unwrap_or(Reply::Full {
        status: 404,
        headers: Vec::new(),
        body: Vec::new(),
        with_length: true,
    });
    match reply {
        Reply::Full {
            status,
            headers,
            body,
            with_length,
        } => {
            let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
            for (name, value) in headers {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            if with_length {
                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => std::future::pending().await,
        Reply::HugeLength => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            std::future::pending().await
        }
        Reply::Endless => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err()
                || stream.write_all(PNG).await.is_err()
            {
                return;
            }
            let chunk = vec![0u8; 16 * 1024];
            while stream.write_all(&chunk).await.is_ok() {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policies

fn hosts(raw: &[&str]) -> Vec<HostPattern> {
    raw.iter().map(|h| HostPattern::parse(h).unwrap()).collect()
}

/// `a.media.test` may start a fetch; `*.cdn.test` only be redirected to.
fn policy() -> FetchPolicy {
    let mut p = FetchPolicy::for_hosts(hosts(&["a.media.test"]), hosts(&["*.cdn.test"]));
    p.timeout = Duration::from_secs(10);
    p
}

fn loopback_policy() -> FetchPolicy {
    let mut p = policy();
    p.allow_loopback_for_tests = true;
    p
}

fn fetcher(policy: FetchPolicy, resolver: &Arc<FakeResolver>) -> MediaFetcher {
    MediaFetcher::new(policy, resolver.clone())
}

// ---------------------------------------------------------------------------------------------
// The address check

#[test]
fn address_check_refuses_every_non_public_range() {
    let forbidden = [
        // IPv4
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.5",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.0.1",
        "100.64.0.1",
        "100.127.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "192.88.99.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        // IPv6
        "::",
        "::1",
        "fe80::1",
        "febf::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "fec0::1",
        "100::1",
        "2001:db8::1",
        "3fff::1",
        "2001::1",      // Teredo
        "2001:2::1",    // benchmarking
        "64:ff9b:1::1", // local-use NAT64
        "5f00::1",      // SRv6 SIDs
        // IPv4 inside IPv6
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.5",
        "::ffff:0.0.0.0",
        "::127.0.0.1",        // IPv4-compatible (deprecated)
        "::8.8.8.8",          // IPv4-compatible, refused whatever it embeds
        "::ffff:0:127.0.0.1", // SIIT
        "64:ff9b::127.0.0.1",
        "64:ff9b::a9fe:a9fe", // NAT64 169.254.169.254
        "64:ff9b::192.168.1.1",
        "2002:7f00:1::1",    // 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1", // 6to4 of 169.254.169.254
        "2002:0a00:0005::",  // 6to4 of 10.0.0.5
    ];
    for addr in forbidden {
        assert!(!is_public_address(ip(addr)), "{addr} must be refused");
    }

    let allowed = [
        "8.8.8.8",
        "1.1.1.1",
        "54.172.60.1",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "169.253.1.1",
        "192.0.1.1",
        "198.20.0.1",
        "223.255.255.255",
        "2606:4700::1111",
        "2001:4860:4860::8888",
        "2a00:1450:4001::1",
        "2001:200::1",
        "3ffe:ffff::1",
        "64:ff9b::808:808", // NAT64 of 8.8.8.8
        "::ffff:8.8.8.8",
        "2002:0808:0808::1", // 6to4 of 8.8.8.8
    ];
    for addr in allowed {
        assert!(is_public_address(ip(addr)), "{addr} must be allowed");
    }
}

#[test]
fn host_patterns_match_names_and_label_anchored_wildcards() {
    let exact = HostPattern::parse("API.Twilio.com.").unwrap();
    assert!(exact.matches("api.twilio.com"));
    assert!(!exact.matches("xapi.twilio.com"));
    assert!(!exact.matches("api.twilio.com.evil.test"));

    let wild = HostPattern::parse("*.twiliocdn.com").unwrap();
    assert!(wild.matches("mms.twiliocdn.com"));
    assert!(wild.matches("a.b.twiliocdn.com"));
    assert!(!wild.matches("twiliocdn.com"));
    assert!(!wild.matches("eviltwiliocdn.com"));
    assert!(!wild.matches("mms.twiliocdn.com.evil.test"));

    for bad in [
        "",
        "*",
        "*.com",
        "*.*.test",
        "a..b",
        "-a.test",
        "a b.test",
        "127.0.0.1",
        "[::1]",
        "host:443",
        "a.test/x",
        "ex*ample.test",
    ] {
        assert!(HostPattern::parse(bad).is_err(), "{bad:?} must not parse");
    }

    // The documented defaults all parse.
    for raw in TWILIO_MEDIA_HOSTS
        .iter()
        .chain(TWILIO_MEDIA_REDIRECT_HOSTS)
        .chain(TELNYX_MEDIA_HOSTS)
    {
        assert!(HostPattern::parse(raw).is_ok(), "{raw}");
    }
    assert_eq!(FetchPolicy::twilio().hosts.len(), TWILIO_MEDIA_HOSTS.len());
    assert_eq!(
        FetchPolicy::twilio().redirect_hosts.len(),
        TWILIO_MEDIA_REDIRECT_HOSTS.len()
    );
    assert_eq!(FetchPolicy::telnyx().hosts.len(), TELNYX_MEDIA_HOSTS.len());
    assert!(!FetchPolicy::twilio().allow_loopback_for_tests);
    assert!(!FetchPolicy::telnyx().allow_loopback_for_tests);
}

#[test]
fn media_types_come_from_headers_and_magic_bytes() {
    assert_eq!(
        MediaType::from_content_type("Image/PNG; charset=binary"),
        Some(MediaType::Png)
    );
    assert_eq!(
        MediaType::from_content_type("image/jpg"),
        Some(MediaType::Jpeg)
    );
    assert_eq!(MediaType::from_content_type("text/html"), None);
    assert_eq!(MediaType::from_content_type(""), None);

    assert_eq!(MediaType::sniff(PNG), Some(MediaType::Png));
    assert_eq!(MediaType::sniff(PDF), Some(MediaType::Pdf));
    assert_eq!(
        MediaType::sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"),
        Some(MediaType::Jpeg)
    );
    assert_eq!(MediaType::sniff(b"GIF89a\x01\0"), Some(MediaType::Gif));
    assert_eq!(
        MediaType::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
        Some(MediaType::Webp)
    );
    assert_eq!(
        MediaType::sniff(b"\0\0\0\x18ftypheic\0\0\0\0"),
        Some(MediaType::Heic)
    );
    assert_eq!(MediaType::sniff(b"\0\0\0\x18ftypavif\0\0\0\0"), None);
    assert_eq!(MediaType::sniff(b"<!doctype html>"), None);
    assert_eq!(MediaType::sniff(b""), None);
    assert_eq!(MediaType::sniff(b"\x89PN"), None);
}

// ---------------------------------------------------------------------------------------------
// Refused before any connection

#[tokio::test]
async fn forbidden_addresses_are_refused_before_any_connection() {
    // A connection to 127.0.0.1 on this port would be counted; none may happen.
    let listener = Server::start().await;
    for addr in [
        "127.0.0.1",
        "169.254.169.254",
        "10.0.0.5",
        "192.168.1.1",
        "172.16.3.4",
        "100.64.0.1",
        "fe80::1",
        "fc00::1",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",
    ] {
        let resolver = FakeResolver::new(&[("a.media.test", &[addr])]);
        let f = fetcher(policy(), &resolver);
        let url = format!("https://a.media.test:{}/Media/ME123", listener.port);
        assert_eq!(
            f.fetch(&url, creds()).await.unwrap_err(),
            MediaError::ForbiddenAddress,
            "{addr}"
        );
        // Refused at the address check, right after the one resolution.
        assert_eq!(resolver.calls(), vec!["a.media.test"], "{addr}");
    }
    assert_eq!(listener.accepts(), 0);
    assert!(listener.seen().is_empty());
}

#[tokio::test]
async fn one_forbidden_address_refuses_the_whole_host() {
    // Loopback is allowed here, so the listener's address alone would be fetched: a fetcher
    // that dropped the forbidden address and used the rest would connect to it.
    let listener = Server::start().await;
    listener.route("/img", ok("image/png", PNG));
    for bad in [
        "169.254.169.254",
        "10.0.0.5",
        "fe80::1",
        "::ffff:192.168.0.1",
    ] {
        let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1", bad])]);
        let f = fetcher(loopback_policy(), &resolver);
        let err = f
            .fetch(&listener.url("a.media.test", "/img"), None)
            .await
            .unwrap_err();
        assert_eq!(err, MediaError::ForbiddenAddress, "{bad}");
    }
    // A public address beside loopback, without the test setting: refused too.
    let resolver = FakeResolver::new(&[("a.media.test", &["8.8.8.8", "127.0.0.1"])]);
    let url = format!("https://a.media.test:{}/img", listener.port);
    assert_eq!(
        fetcher(policy(), &resolver)
            .fetch(&url, None)
            .await
            .unwrap_err(),
        MediaError::ForbiddenAddress
    );
    assert_eq!(listener.accepts(), 0);
}

#[tokio::test]
async fn hosts_off_the_allow_list_are_refused_before_resolving() {
    let resolver = FakeResolver::new(&[("evil.test", &["8.8.8.8"]), ("x.cdn.test", &["8.8.8.8"])]);
    let f = fetcher(policy(), &resolver);
    for url in [
        "https://evil.test/x.png",
        "https://a.media.test.evil.test/x.png",
        "https://aa.media.test/x.png",
        // A redirect-only host cannot start a fetch.
        "https://x.cdn.test/x.png",
        // IP literals never match, in any spelling.
        "https://127.0.0.1/x.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/x.png",
        "https://[::ffff:127.0.0.1]/x.png",
        "https://0x7f.1/x.png",
        "https://2130706433/x.png",
    ] {
        assert_eq!(
            f.fetch(url, creds()).await.unwrap_err(),
            MediaError::ForbiddenHost,
            "{url}"
        );
    }
    assert!(resolver.calls().is_empty());
}

#[tokio::test]
async fn only_https_is_fetched() {
    let resolver = FakeResolver::new(&[("a.media.test", &["8.8.8.8"])]);
    let f = fetcher(policy(), &resolver);
    for url in [
        "http://a.media.test/x.png",
        "ftp://a.media.test/x.png",
        "file:///etc/passwd",
        "data:image/png;base64,iVBORw0KGgo=",
        "gopher://a.media.test/",
    ] {
        assert_eq!(
            f.fetch(url, None).await.unwrap_err(),
            MediaError::NotHttps,
            "{url}"
        );
    }
    assert!(resolver.calls().is_empty());

    // With the test setting, plain http is still refused unless every address is loopback.
    let f = fetcher(loopback_policy(), &resolver);
    assert_eq!(
        f.fetch("http://a.media.test/x.png", None)
            .await
            .unwrap_err(),
        MediaError::NotHttps
    );
}

#[tokio::test]
async fn malformed_urls_are_refused_without_panicking() {
    let resolver = FakeResolver::new(&[("a.media.test", &["8.8.8.8"])]);
    let f = fetcher(policy(), &resolver);
    for url in [
        "",
        "not a url",
        "https://",
        "//a.media.test/x.png",
        "https://ACtest:s3cret@a.media.test/x.png",
        "https://a.media.test:99999/x.png",
    ] {
        assert_eq!(
            f.fetch(url, None).await.unwrap_err(),
            MediaError::InvalidUrl,
            "{url}"
        );
    }
    assert!(resolver.calls().is_empty());
}

#[tokio::test]
async fn loopback_needs_the_test_setting() {
    let server = Server::start().await;
    server.route("/img", ok("image/png", PNG));
    let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1"])]);
    let url = server.url("a.media.test", "/img");

    assert_eq!(
        fetcher(policy(), &resolver)
            .fetch(&url, None)
            .await
            .unwrap_err(),
        MediaError::NotHttps
    );
    let https = format!("https://a.media.test:{}/img", server.port);
    assert_eq!(
        fetcher(policy(), &resolver)
            .fetch(&https, None)
            .await
            .unwrap_err(),
        MediaError::ForbiddenAddress
    );
    assert_eq!(server.accepts(), 0);

    let media = fetcher(loopback_policy(), &resolver)
        .fetch(&url, None)
        .await
        .unwrap();
    assert_eq!(media.bytes, PNG);
    assert_eq!(server.accepts(), 1);
}

// ---------------------------------------------------------------------------------------------
// Through a local server (loopback allowed for tests)

#[tokio::test]
async fn fetches_media_with_its_type_and_credentials() {
    let server = Server::start().await;
    server.route("/Media/ME1", ok("image/png", PNG));
    server.route("/doc", ok("application/pdf", PDF));
    let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1"])]);
    let f = fetcher(loopback_policy(), &resolver);

    let media = f
        .fetch(&server.url("a.media.test", "/Media/ME1"), creds())
        .await
        .unwrap();
    assert_eq!(media.content_type, MediaType::Png);
    assert_eq!(media.bytes, PNG);
    let debug = format!("{media:?}");
    assert!(debug.contains("Png") && !debug.contains("IHDR"), "{debug}");

    let doc = f
        .fetch(&server.url("a.media.test", "/doc"), None)
        .await
        .unwrap();
    assert_eq!(doc.content_type, MediaType::Pdf);

    let seen = server.seen();
    assert_eq!(seen[0].authorization.as_deref(), Some(AUTH));
    assert_eq!(seen[0].host, "a.media.test");
    assert_eq!(seen[1].authorization, None);
}

#[tokio::test]
async fn a_redirect_to_a_host_off_the_list_is_refused() {
    let server = Server::start().await;
    server.route(
        "/start",
        redirect(302, server.url("internal.corp.test", "/img")),
    );
    server.route("/img", ok("image/png", PNG));
    let resolver = FakeResolver::new(&[
        ("a.media.test", &["127.0.0.1"]),
        ("internal.corp.test", &["127.0.0.1"]),
    ]);
    let f = fetcher(loopback_policy(), &resolver);
    assert_eq!(
        f.fetch(&server.url("a.media.test", "/start"), creds())
            .await
            .unwrap_err(),
        MediaError::ForbiddenHost
    );
    assert_eq!(resolver.calls(), vec!["a.media.test"]);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_metadata_address_is_refused_without_connecting() {
    let a = Server::start().await;
    // Loopback is allowed, so this server would be reached if the forbidden address were
    // merely skipped.
    let target = Server::start().await;
    target.route("/latest/meta-data/", ok("image/png", PNG));
    a.route(
        "/start",
        redirect(307, target.url("meta.cdn.test", "/latest/meta-data/")),
    );
    a.route(
        "/start-v6",
        redirect(307, target.url("meta6.cdn.test", "/latest/meta-data/")),
    );
    let resolver = FakeResolver::new(&[
        ("a.media.test", &["127.0.0.1"]),
        ("meta.cdn.test", &["169.254.169.254", "127.0.0.1"]),
        ("meta6.cdn.test", &["::ffff:169.254.169.254"]),
    ]);
    let f = fetcher(loopback_policy(), &resolver);
    for path in ["/start", "/start-v6"] {
        assert_eq!(
            f.fetch(&a.url("a.media.test", path), creds())
                .await
                .unwrap_err(),
            MediaError::ForbiddenAddress,
            "{path}"
        );
    }
    assert_eq!(
        resolver.calls(),
        vec![
            "a.media.test",
            "meta.cdn.test",
            "a.media.test",
            "meta6.cdn.test"
        ]
    );
    assert_eq!(target.accepts(), 0);
}

#[tokio::test]
async fn credentials_go_to_the_first_host_only() {
    let a = Server::start().await;
    let b = Server::start().await;
    a.route(
        "/Media/ME1",
        redirect(302, b.url("mms.cdn.test", "/signed")),
    );
    b.route("/signed", ok("image/png", PNG));
    let resolver = FakeResolver::new(&[
        ("a.media.test", &["127.0.0.1"]),
        ("mms.cdn.test", &["127.0.0.1"]),
    ]);
    let f = fetcher(loopback_policy(), &resolver);

    let media = f
        .fetch(&a.url("a.media.test", "/Media/ME1"), creds())
        .await
        .unwrap();
    assert_eq!(media.bytes, PNG);
    assert_eq!(a.seen()[0].authorization.as_deref(), Some(AUTH));
    assert_eq!(
        b.seen(),
        vec![Seen {
            host: "mms.cdn.test".into(),
            path: "/signed".into(),
            authorization: None,
        }]
    );
    // Each hop was resolved once, by the checked resolver.
    assert_eq!(resolver.calls(), vec!["a.media.test", "mms.cdn.test"]);
}

#[tokio::test]
async fn credentials_once_dropped_stay_dropped() {
    // A -> B -> A: the second visit to A comes after a change of host and carries nothing.
    let server = Server::start().await;
    server.route("/start", redirect(302, server.url("b.cdn.test", "/bounce")));
    server.route("/bounce", redirect(302, server.url("a.media.test", "/img")));
    server.route("/img", ok("image/png", PNG));
    // Same host, relative location: credentials kept.
    server.route("/same", redirect(301, "/img".to_owned()));
    let resolver = FakeResolver::new(&[
        ("a.media.test", &["127.0.0.1"]),
        ("b.cdn.test", &["127.0.0.1"]),
    ]);
    let f = fetcher(loopback_policy(), &resolver);

    f.fetch(&server.url("a.media.test", "/start"), creds())
        .await
        .unwrap();
    let auth: Vec<_> = server
        .seen()
        .iter()
        .map(|s| (s.host.clone(), s.path.clone(), s.authorization.is_some()))
        .collect();
    assert_eq!(
        auth,
        vec![
            ("a.media.test".into(), "/start".into(), true),
            ("b.cdn.test".into(), "/bounce".into(), false),
            ("a.media.test".into(), "/img".into(), false),
        ]
    );

    f.fetch(&server.url("a.media.test", "/same"), creds())
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[3].authorization.as_deref(), Some(AUTH));
    assert_eq!(seen[4].path, "/img");
    assert_eq!(seen[4].authorization.as_deref(), Some(AUTH));
}

#[tokio::test]
async fn redirects_are_limited() {
    let server = Server::start().await;
    server.route("/loop", redirect(302, "/loop".to_owned()));
    server.route(
        "/no-location",
        Reply::Full {
            status: 302,
            headers: Vec::new(),
            body: Vec::new(),
            with_length: true,
        },
    );
    server.route(
        "/to-http-elsewhere",
        redirect(302, "ftp://a.media.test/x".into()),
    );
    let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1"])]);
    let f = fetcher(loopback_policy(), &resolver);

    assert_eq!(
        f.fetch(&server.url("a.media.test", "/loop"), None)
            .await
            .unwrap_err(),
        MediaError::Redirects
    );
    assert_eq!(server.seen().len(), 1 + MAX_REDIRECTS);
    assert_eq!(
        f.fetch(&server.url("a.media.test", "/no-location"), None)
            .await
            .unwrap_err(),
        MediaError::Redirects
    );
    assert_eq!(
        f.fetch(&server.url("a.media.test", "/to-http-elsewhere"), None)
            .await
            .unwrap_err(),
        MediaError::NotHttps
    );
}

#[tokio::test]
async fn too_large_media_is_refused() {
    let server = Server::start().await;
    server.route("/declared", Reply::HugeLength);
    server.route("/endless", Reply::Endless);
    let mut big = PNG.to_vec();
    big.resize(70_000, 0);
    server.route(
        "/no-length",
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type", "image/png".into())],
            body: big,
            with_length: false,
        },
    );
    let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1"])]);
    let mut p = loopback_policy();
    p.max_bytes = 64 * 1024;
    let f = fetcher(p, &resolver);
    // The server never sends the body it announces: only the up-front check can answer.
    for path in ["/declared", "/no-length", "/endless"] {
        assert_eq!(
            f.fetch(&server.url("a.media.test", path), None)
                .await
                .unwrap_err(),
            MediaError::TooLarge,
            "{path}"
        );
    }
}

#[tokio::test]
async fn content_must_be_allowed_and_match_its_declared_type() {
    let server = Server::start().await;
    server.route("/pdf-as-png", ok("image/png", PDF));
    server.route(
        "/html-as-png",
        ok("image/png", b"<html><body>hi</body></html>"),
    );
    server.route("/html", ok("text/html", b"<html></html>"));
    server.route("/octets", ok("application/octet-stream", PNG));
    server.route(
        "/untyped",
        Reply::Full {
            status: 200,
            headers: Vec::new(),
            body: PNG.to_vec(),
            with_length: true,
        },
    );
    server.route("/png-as-jpeg", ok("image/jpeg", PNG));
    server.route("/pdf", ok("application/pdf", PDF));
    server.route("/empty", ok("image/png", b""));
    let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1"])]);
    let f = fetcher(loopback_policy(), &resolver);
    for path in [
        "/pdf-as-png",
        "/html-as-png",
        "/html",
        "/octets",
        "/untyped",
        "/png-as-jpeg",
        "/empty",
    ] {
        assert_eq!(
            f.fetch(&server.url("a.media.test", path), None)
                .await
                .unwrap_err(),
            MediaError::BadContent,
            "{path}"
        );
    }

    // A type the policy does not allow is refused even when the body matches it.
    let mut images_only = loopback_policy();
    images_only.allowed_types = vec![MediaType::Png, MediaType::Jpeg];
    assert_eq!(
        fetcher(images_only, &resolver)
            .fetch(&server.url("a.media.test", "/pdf"), None)
            .await
            .unwrap_err(),
        MediaError::BadContent
    );
}

#[tokio::test]
async fn error_statuses_and_unknown_names_are_reported() {
    let server = Server::start().await;
    let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1"])]);
    let mut p = loopback_policy();
    p.hosts = hosts(&["a.media.test", "gone.media.test"]);
    let f = fetcher(p, &resolver);
    assert_eq!(
        f.fetch(&server.url("a.media.test", "/missing"), None)
            .await
            .unwrap_err(),
        MediaError::Http(404)
    );
    assert_eq!(
        f.fetch(&server.url("gone.media.test", "/x"), None)
            .await
            .unwrap_err(),
        MediaError::Transport("resolve")
    );
}

#[tokio::test]
async fn slow_servers_and_resolvers_time_out() {
    let server = Server::start().await;
    server.route("/hang", Reply::Hang);
    let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1"])]);
    let mut p = loopback_policy();
    p.timeout = Duration::from_millis(300);
    assert_eq!(
        fetcher(p.clone(), &resolver)
            .fetch(&server.url("a.media.test", "/hang"), None)
            .await
            .unwrap_err(),
        MediaError::Timeout
    );
    assert_eq!(server.accepts(), 1);

    let stuck = MediaFetcher::new(p, Arc::new(StuckResolver));
    assert_eq!(
        stuck
            .fetch("https://a.media.test/x.png", None)
            .await
            .unwrap_err(),
        MediaError::Timeout
    );
}

#[tokio::test]
async fn errors_and_secrets_are_safe_to_log() {
    let resolver = FakeResolver::new(&[("a.media.test", &["169.254.169.254"])]);
    let f = fetcher(policy(), &resolver);
    let err = f
        .fetch(
            "https://a.media.test/Accounts/AC1/Media/ME1?Signature=TOPSECRET",
            creds(),
        )
        .await
        .unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        for leak in ["TOPSECRET", "a.media.test", "169.254", "ME1", "s3cret"] {
            assert!(!text.contains(leak), "{text}");
        }
    }
    let all = [
        MediaError::InvalidUrl,
        MediaError::ForbiddenHost,
        MediaError::ForbiddenAddress,
        MediaError::NotHttps,
        MediaError::TooLarge,
        MediaError::Timeout,
        MediaError::BadContent,
        MediaError::Redirects,
        MediaError::Http(403),
        MediaError::Transport("connect"),
    ];
    let kinds: std::collections::HashSet<_> = all.iter().map(MediaError::kind).collect();
    assert_eq!(kinds.len(), all.len());

    let c = BasicCredentials::new("ACtest", "s3cret-token");
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("ACtest") && !debug.contains("s3cret"),
        "{debug}"
    );
}

/// Guards the test server itself: a plain connection is counted.
#[tokio::test]
async fn the_counting_listener_counts() {
    let listener = Server::start().await;
    let addr = SocketAddr::from(([127, 0, 0, 1], listener.port));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: probe\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert!(out.starts_with(b"HTTP/1.1 404"));
    assert_eq!(listener.accepts(), 1);
}

/// Answers with the local server first and the metadata address on every later call, like a
/// rebinding DNS server with a zero TTL.
struct RebindingResolver {
    calls: AtomicUsize,
}

#[async_trait]
impl Resolver for RebindingResolver {
    async fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
        let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
        Ok(vec![if first {
            ip("127.0.0.1")
        } else {
            ip("169.254.169.254")
        }])
    }
}

#[tokio::test]
async fn the_connection_uses_the_checked_answer_without_asking_again() {
    // Names under `.test` do not resolve on this machine: a fetch that succeeds connected to
    // the address the checked resolver gave, not to a second lookup of its own.
    let server = Server::start().await;
    server.route("/img", ok("image/png", PNG));
    let resolver = Arc::new(RebindingResolver {
        calls: AtomicUsize::new(0),
    });
    let f = MediaFetcher::new(loopback_policy(), resolver.clone());
    let media = f
        .fetch(&server.url("a.media.test", "/img"), None)
        .await
        .unwrap();
    assert_eq!(media.bytes, PNG);
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn the_system_resolver_answer_is_checked_too() {
    // `localhost` resolves from the hosts file, without a network.
    let mut p = FetchPolicy::for_hosts(hosts(&["localhost"]), Vec::new());
    p.timeout = Duration::from_secs(10);
    let f = MediaFetcher::new(p, Arc::new(SystemResolver));
    assert_eq!(
        f.fetch("https://localhost/x.png", None).await.unwrap_err(),
        MediaError::ForbiddenAddress
    );
}

#[tokio::test]
async fn https_hops_speak_tls_to_the_checked_address() {
    // The local server speaks plain HTTP, so the TLS handshake fails; what matters is that the
    // https client is built (rustls, ring, OS roots) and connects to the pinned address.
    let server = Server::start().await;
    server.route("/img", ok("image/png", PNG));
    let resolver = FakeResolver::new(&[("a.media.test", &["127.0.0.1"])]);
    let f = fetcher(loopback_policy(), &resolver);
    let url = format!("https://a.media.test:{}/img", server.port);
    assert_eq!(
        f.fetch(&url, None).await.unwrap_err(),
        MediaError::Transport("connect")
    );
    assert_eq!(server.accepts(), 1);
    assert!(server.seen().is_empty());
}

#[test]
fn fetches_can_be_spawned() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MediaFetcher>();
    let resolver = FakeResolver::new(&[]);
    let f = Arc::new(fetcher(policy(), &resolver));
    let fut = async move { f.fetch("https://a.media.test/x.png", creds()).await };
    assert_send(&fut);
}

//! Per-request context: a request id, the client's address (believing `X-Forwarded-For` only
//! from trusted proxies), one log line with the route template (never the raw path), metrics,
//! and security headers.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use salve_core::audit::RequestContext;

use crate::AppState;

tokio::task_local! {
    static REQUEST_ID: String;
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Who is calling, for audit rows (sealed there) and throttling.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub request_id: String,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn audit_context(&self) -> RequestContext {
        RequestContext {
            ip: self.ip.map(|i| i.to_string()),
            user_agent: self.user_agent.clone(),
            request_id: Some(self.request_id.clone()),
            reason: None,
        }
    }
}

/// The route template a request matched, carried out on the response for logging.
#[derive(Clone)]
struct RouteTemplate(String);

const REQUEST_ID_HEADER: &str = "x-request-id";

/// Accepts a proxy's request id only when it is a plain token, so nothing a client sends
/// ends up in logs verbatim.
fn incoming_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    (!v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then(|| v.to_owned())
}

fn client_ip(state: &AppState, req: &Request) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    let trusted = |ip: &IpAddr| state.config.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    // Walk X-Forwarded-For from the right; the first untrusted hop is the client.
    let mut client = peer;
    for value in req.headers().get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return Some(peer);
        };
        for hop in text.split(',').rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if trusted(&ip) => client = ip,
                Ok(ip) => return Some(ip),
                Err(_) => return Some(client),
            }
        }
    }
    Some(client)
}

pub async fn request_context(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = incoming_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let info = ClientInfo {
        request_id: request_id.clone(),
        ip: client_ip(&state, &req),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    };
    let method = req.method().clone();
    req.extensions_mut().insert(info);
    let span = tracing::info_span!("request", method = %method, route = tracing::field::Empty, request_id = %request_id);
    let mut response = {
        use tracing::Instrument;
        REQUEST_ID
            .scope(request_id.clone(), next.run(req))
            .instrument(span.clone())
            .await
    };
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if route == "unmatched" {
        span.record("route", route.as_str());
    }
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    state
        .metrics
        .observe(method.as_str(), &route, status, elapsed.as_secs_f64());
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    security_headers(&state, headers);
    response
}

/// Runs after routing, so the matched template is known.
pub async fn record_route(req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    if let Some(t) = &template {
        tracing::Span::current().record("route", t.as_str());
    }
    let mut response = next.run(req).await;
    if let Some(t) = template {
        response.extensions_mut().insert(RouteTemplate(t));
    }
    response
}

fn security_headers(state: &AppState, headers: &mut axum::http::HeaderMap) {
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cache-control", "no-store");
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; report-uri /csp-report",
    );
    set(headers, "x-frame-options", "DENY");
    if state.config.public_url_is_https() {
        set(
            headers,
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        );
    }
}

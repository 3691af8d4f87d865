//! Who is calling: an API token (`Authorization: Bearer`, cookies ignored) or a staff session
//! (an opaque cookie). Session expiry, activity, and CSRF checks live here; whether the caller
//! may do the operation is asked of `salve_core::permissions`.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use salve_core::clock::to_micros;
use salve_store::{Session, SessionEnd, SessionStage, TokenPrincipal};

use crate::AppState;
use crate::error::ApiError;

pub const COOKIE: &str = "salve_session";
/// With https the `__Host-` prefix pins the cookie to this host, path `/`, `Secure`.
pub const HOST_COOKIE: &str = "__Host-salve_session";

pub fn cookie_name(state: &AppState) -> &'static str {
    if state.config.public_url_is_https() {
        HOST_COOKIE
    } else {
        COOKIE
    }
}

/// `HttpOnly; SameSite=Lax` (Strict would break links from email); `Secure` with https.
pub fn set_cookie(state: &AppState, token: &str) -> HeaderValue {
    let secure = if state.config.public_url_is_https() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax{secure}",
        cookie_name(state)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn clear_cookie(state: &AppState) -> HeaderValue {
    let secure = if state.config.public_url_is_https() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        cookie_name(state)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The session behind the request's cookie, with its token hash.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub session: Session,
}

pub enum Caller {
    Token(TokenPrincipal),
    Session(SessionCaller),
}

/// Resolves the caller. Bearer tokens win and cookies are then ignored. An expired session is
/// ended (and audited) here and treated as absent.
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    ctx: &salve_core::audit::RequestContext,
) -> Result<Option<Caller>, ApiError> {
    if let Some(token) = bearer(headers) {
        let found = state
            .store
            .authenticate_token(&salve_crypto::token::hash(token))
            .await?;
        return Ok(found.map(Caller::Token));
    }
    let Some(token) = cookie(headers, cookie_name(state)) else {
        return Ok(None);
    };
    let Some(session) = state
        .store
        .session_by_token(&salve_crypto::token::hash(token))
        .await?
    else {
        return Ok(None);
    };
    let now = to_micros(state.clock.now());
    let ended = if now >= session.expires_at {
        Some(SessionEnd::Absolute)
    } else if now >= session.idle_deadline() {
        Some(SessionEnd::Idle)
    } else {
        None
    };
    if let Some(reason) = ended {
        state.store.end_session(&session, reason, ctx).await?;
        return Ok(None);
    }
    Ok(Some(Caller::Session(SessionCaller { session })))
}

/// Cookie-authenticated requests that change something must come from our own pages: the
/// browser's `Sec-Fetch-Site` says so, or else `Origin` names our origin.
pub fn csrf_ok(state: &AppState, method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match &state.config.public_url {
        Some(url) => origin == url.trim_end_matches('/'),
        None => headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|host| {
                origin == format!("http://{host}") || origin == format!("https://{host}")
            }),
    }
}

/// The stage a session must be in for a route.
pub fn stage_allows(required: &[SessionStage], stage: SessionStage) -> bool {
    required.contains(&stage)
}

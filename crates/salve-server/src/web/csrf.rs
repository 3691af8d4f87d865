//! CSRF for pages: a random token in its own cookie, echoed by every form (`csrf` field) and every
//! htmx request (`X-CSRF-Token`), compared in constant time. This sits on top of the
//! `Sec-Fetch-Site`/`Origin` check in `auth::csrf_ok`, and also covers forms used before sign-in.

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::AppState;

pub const COOKIE: &str = "salve_csrf";
pub const HOST_COOKIE: &str = "__Host-salve_csrf";
pub const HEADER: &str = "x-csrf-token";
pub const FIELD: &str = "csrf";

pub fn cookie_name(state: &AppState) -> &'static str {
    if state.config.public_url_is_https() {
        HOST_COOKIE
    } else {
        COOKIE
    }
}

/// The token the browser holds, if it looks like one of ours.
pub fn current(state: &AppState, headers: &HeaderMap) -> Option<String> {
    crate::auth::cookie(headers, cookie_name(state))
        .filter(|t| {
            t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
}

pub fn mint() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// `SameSite=Strict`: the token only travels with our own pages' requests.
pub fn set_cookie(state: &AppState, token: &str) -> HeaderValue {
    let secure = if state.config.public_url_is_https() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict{secure}",
        cookie_name(state)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_differ_and_match_only_themselves() {
        let a = mint();
        let b = mint();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(matches(&a, &a.clone()));
        assert!(!matches(&a, &b));
        assert!(!matches(&a, &a[..42]));
        assert!(!matches(&a, ""));
    }
}

//! What the HTTP providers share: the client, error classification, log-safe codes.

use std::time::Duration;

use crate::ProviderError;

/// The longest error body read from a provider: error JSON is small, and a hostile or broken
/// peer must not make Salve buffer without bound.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub(crate) fn client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        // A provider API never redirects; following one could carry credentials elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("salve/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A transport error, classified by whether the request can have reached the provider.
pub(crate) fn classify_transport(e: reqwest::Error) -> ProviderError {
    let e = e.without_url();
    let detail = e.to_string();
    if e.is_builder() {
        // Nothing was sent, and building the same request again fails the same way.
        ProviderError::permanent("request_invalid", detail)
    } else if e.is_connect() {
        // No connection: the request was never sent.
        let code = if e.is_timeout() {
            "connect_timeout"
        } else {
            "connect"
        };
        ProviderError::transient(code, detail)
    } else if e.is_timeout() {
        // Connected and (maybe) sent, then no answer in time.
        ProviderError::ambiguous("timeout", detail)
    } else {
        // The connection broke while sending or waiting: it may have been taken.
        ProviderError::ambiguous("connection_lost", detail)
    }
}

/// A provider's own error code, if it is short and made of letters and digits only (so it
/// can be logged); anything else is dropped.
pub(crate) fn safe_code(code: &str) -> Option<String> {
    let ok = !code.is_empty()
        && code.len() <= 16
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| code.to_ascii_lowercase())
}

/// An HTTP error answer, classified by status. `provider_code` is already prefixed and safe
/// (`twilio_21610`); `detail` is the provider's text (sealed).
pub(crate) fn classify_status(
    status: reqwest::StatusCode,
    provider_code: Option<String>,
    detail: String,
) -> ProviderError {
    let http = format!("http_{}", status.as_u16());
    match status.as_u16() {
        // Too many requests, or the server timed out waiting for our request: not taken.
        429 | 408 => ProviderError::transient(http, detail),
        // Wrong credentials: an operator fixes them, and the messages then go out.
        401 => ProviderError::transient(provider_code.unwrap_or(http), detail),
        500..=599 => ProviderError::transient(http, detail),
        400..=499 => ProviderError::permanent(provider_code.unwrap_or(http), detail),
        // A 1xx/3xx final answer: not a success, and not a refusal either.
        _ => ProviderError::ambiguous(http, detail),
    }
}

/// Reads an error body, at most [`MAX_ERROR_BODY`] bytes. A failure to read gives an empty body:
/// the status alone classifies the error.
pub(crate) async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    out
}

pub(crate) fn trim_base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_safe_or_dropped() {
        assert_eq!(safe_code("40300").as_deref(), Some("40300"));
        assert_eq!(safe_code("+13125550142"), None);
        assert_eq!(safe_code("a b"), None);
        assert_eq!(safe_code(""), None);
        assert_eq!(safe_code(&"9".repeat(40)), None);
    }

    #[test]
    fn statuses_classify() {
        let s = |n| reqwest::StatusCode::from_u16(n).unwrap();
        assert_eq!(
            classify_status(s(503), None, String::new()).kind(),
            "transient"
        );
        assert_eq!(
            classify_status(s(503), None, String::new()).code(),
            "http_503"
        );
        assert_eq!(
            classify_status(s(429), None, String::new()).kind(),
            "transient"
        );
        let e = classify_status(s(400), Some("twilio_21211".into()), String::new());
        assert_eq!((e.kind(), e.code()), ("permanent", "twilio_21211"));
        assert_eq!(
            classify_status(s(404), None, String::new()).code(),
            "http_404"
        );
    }
}

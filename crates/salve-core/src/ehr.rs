//! Writing into a practice's EHR: what may be configured (the endpoint, what is written), what
//! becomes of a failed write (retried or refused for good), and the reason staff see, which is
//! built only from fixed vocabularies so that nothing an EHR echoes back (a name, a phone)
//! reaches Salve's database in clear.

use std::net::IpAddr;

/// What is written for conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Each message as a `Communication`, as it is recorded.
    Communication,
    /// Each closed conversation as a `DocumentReference` with a PDF transcript.
    Document,
}

impl WriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Communication => "communication",
            Self::Document => "document",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "communication" => Some(Self::Communication),
            "document" => Some(Self::Document),
            _ => None,
        }
    }
}

/// One queued write: what it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A message (not an internal note).
    Communication,
    /// A conversation, at its close.
    Document,
    /// A consent ledger event.
    Consent,
}

impl WriteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Communication => "communication",
            Self::Document => "document",
            Self::Consent => "consent",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "communication" => Some(Self::Communication),
            "document" => Some(Self::Document),
            "consent" => Some(Self::Consent),
            _ => None,
        }
    }

    pub fn resource_type(self) -> &'static str {
        match self {
            Self::Communication => "Communication",
            Self::Document => "DocumentReference",
            Self::Consent => "Consent",
        }
    }

    /// The identifier system of the resource Salve writes: conditional create searches on it,
    /// so a retry finds the first write instead of making a second.
    pub fn identifier_system(self) -> &'static str {
        match self {
            Self::Communication => "urn:salve:message",
            Self::Document => "urn:salve:transcript",
            Self::Consent => "urn:salve:consent-event",
        }
    }
}

/// After this many failed attempts a retryable write is given up (about a day and a half of
/// backoff at one hour).
pub const MAX_ATTEMPTS: i64 = 40;

/// Checks and normalizes the EHR's FHIR base URL: https, or http to a loopback address only
/// (a test server, a local proxy); no credentials, query or fragment. The trailing slash goes.
pub fn check_base_url(raw: &str) -> Result<String, &'static str> {
    check_url(raw, "the FHIR base URL")
}

/// The same rules for the SMART token URL.
pub fn check_token_url(raw: &str) -> Result<String, &'static str> {
    check_url(raw, "the token URL")
}

fn check_url(raw: &str, _what: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.len() > 2000 {
        return Err("at most 2000 characters");
    }
    let (https, rest) = if let Some(rest) = raw.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = raw.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("an https:// URL (http:// only to a loopback address)");
    };
    if rest.contains(['?', '#', '@']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL without credentials, query or fragment");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = host_of(authority).ok_or("a URL with a host")?;
    if !https && !is_loopback(host) {
        return Err("an https:// URL (http:// only to a loopback address)");
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(authority: &str) -> Option<&str> {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What to do after the EHR answered with `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Written,
    /// The EHR did not take it and may later: a timeout, throttling, a server error.
    Retry,
    /// Refused for good (a 4xx other than 408 and 429): retrying would be refused again.
    Refused,
}

pub fn disposition(status: u16) -> Disposition {
    match status {
        200..=299 => Disposition::Written,
        408 | 429 | 500..=599 => Disposition::Retry,
        _ => Disposition::Refused,
    }
}

/// The FHIR R4 `IssueType` codes: the only words of an `OperationOutcome` Salve keeps.
const ISSUE_TYPES: &[&str] = &[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
];

/// A reason for staff that names the resource, the HTTP status and the `OperationOutcome`'s
/// issue codes, and nothing the EHR wrote in free text (its diagnostics may quote the record).
pub fn refusal_reason(resource_type: &str, status: u16, issue_codes: &[&str]) -> String {
    let mut codes: Vec<&str> = issue_codes
        .iter()
        .filter_map(|c| ISSUE_TYPES.iter().find(|k| **k == *c).copied())
        .collect();
    codes.dedup();
    let what = match status {
        401 | 403 => "the EHR refused Salve's credentials",
        404 => "the EHR has no such endpoint",
        409 | 412 => "the EHR reported a conflict",
        422 | 400 => "the EHR found the resource invalid",
        _ => "the EHR refused the write",
    };
    if codes.is_empty() {
        format!("{what} ({resource_type}, HTTP {status})")
    } else {
        format!(
            "{what} ({resource_type}, HTTP {status}, issue: {})",
            codes.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_https_or_loopback_http() {
        assert_eq!(
            check_base_url("https://ehr.example.org/fhir/r4/").unwrap(),
            "https://ehr.example.org/fhir/r4"
        );
        assert!(check_base_url("http://127.0.0.1:8080/fhir").is_ok());
        assert!(check_base_url("http://localhost:8080").is_ok());
        assert!(check_base_url("http://[::1]:8080/fhir").is_ok());
        assert!(check_base_url("http://ehr.example.org/fhir").is_err());
        assert!(check_base_url("http://10.0.0.5/fhir").is_err());
        assert!(check_base_url("ftp://ehr.example.org").is_err());
        assert!(check_base_url("https://user:pw@ehr.example.org").is_err());
        assert!(check_base_url("https://ehr.example.org/fhir?x=1").is_err());
        assert!(check_base_url("https:///fhir").is_err());
        // A loopback-looking name that is not loopback.
        assert!(check_base_url("http://127.0.0.1.example.org/fhir").is_err());
    }

    #[test]
    fn failures_split_into_retry_and_refused() {
        assert_eq!(disposition(201), Disposition::Written);
        assert_eq!(disposition(200), Disposition::Written);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(disposition(s), Disposition::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 412, 422, 301] {
            assert_eq!(disposition(s), Disposition::Refused, "{s}");
        }
    }

    #[test]
    fn reasons_keep_only_issue_codes() {
        let r = refusal_reason(
            "Communication",
            400,
            &["invalid", "Ana Lopez +13125550142", "invalid"],
        );
        assert_eq!(
            r,
            "the EHR found the resource invalid (Communication, HTTP 400, issue: invalid)"
        );
        assert!(!r.contains("Ana"));
        assert_eq!(
            refusal_reason("Consent", 401, &[]),
            "the EHR refused Salve's credentials (Consent, HTTP 401)"
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            WriteKind::Communication,
            WriteKind::Document,
            WriteKind::Consent,
        ] {
            assert_eq!(WriteKind::parse(k.as_str()), Some(k));
        }
        for m in [WriteMode::Communication, WriteMode::Document] {
            assert_eq!(WriteMode::parse(m.as_str()), Some(m));
        }
    }
}

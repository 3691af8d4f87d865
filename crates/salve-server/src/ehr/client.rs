//! The outbound FHIR client: Salve writing into a practice's EHR. It authenticates with the
//! practice's bearer token or as a SMART backend-services client (an ES384 client assertion
//! signed with the key Salve generated for the connection, tokens cached until shortly before
//! they expire), creates conditionally on Salve's identifier (`If-None-Exist`) so that a retry
//! never makes a second copy, and sorts failures into retryable (network, timeouts, 408, 429,
//! 5xx) and refused (other 4xx), keeping only a PHI-free reason.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use salve_core::PracticeId;
use salve_core::ehr::{Disposition, disposition, refusal_reason};
use salve_store::{EhrAuth, EhrConnection};
use serde::Serialize;
use serde_json::Value;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// An EHR's error answer is read up to this size (an OperationOutcome is small).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Assertions live well under the five minutes SMART allows.
const ASSERTION_LIFETIME_SECS: i64 = 240;
/// A cached token is not used in its last minute.
const TOKEN_MARGIN_SECS: i64 = 60;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const FHIR_JSON: &str = "application/fhir+json";
/// The SMART v2 system scopes Salve asks for: create the three resources it writes, and find
/// patients by identifier.
pub const REQUESTED_SCOPES: &str = "system/Communication.c system/DocumentReference.c system/Consent.c system/Patient.rs system/Appointment.rs";
/// RFC 6749 §5.2 error codes: the only words of a token refusal Salve keeps.
const OAUTH_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

/// Why a request did not succeed. Every string here is log-safe and PHI-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EhrError {
    /// Try again later: the EHR did not take it.
    Retry { kind: String },
    /// Refused for good.
    Refused { kind: String, reason: String },
}

impl EhrError {
    fn retry(kind: impl Into<String>) -> Self {
        Self::Retry { kind: kind.into() }
    }
    fn refused(kind: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Refused {
            kind: kind.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone)]
struct CachedToken {
    /// Which credentials it was issued for (a changed connection gets a new token).
    for_credentials: String,
    token: String,
    expires_at: i64,
}

pub struct EhrClient {
    http: reqwest::Client,
    tokens: Mutex<HashMap<PracticeId, CachedToken>>,
}

impl Default for EhrClient {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
}

fn network_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "network"
    }
}

/// Reads at most [`MAX_ERROR_BODY`] of an answer.
async fn bounded_body(mut response: reqwest::Response) -> Vec<u8> {
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

/// The issue codes of an `OperationOutcome` body (nothing else of it).
fn issue_codes(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|v| v["resourceType"] == "OperationOutcome")
        .and_then(|v| v["issue"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["code"].as_str().map(str::to_owned))
        .collect()
}

impl EhrClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // An EHR that redirects a write is misconfigured; following could resend the body
            // somewhere unexpected.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Salve/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The `Authorization` header value for a request to this connection's EHR, `now` on
    /// Salve's clock (unix seconds).
    async fn authorization(&self, conn: &EhrConnection, now: i64) -> Result<String, EhrError> {
        match &conn.auth {
            EhrAuth::Bearer { token } => Ok(format!("Bearer {}", token.expose())),
            EhrAuth::Smart {
                client_id,
                token_url,
                key_id,
                private_key,
                ..
            } => {
                let credentials = format!("{client_id} {token_url} {key_id}");
                if let Some(cached) = self.cached(conn.practice, &credentials, now) {
                    return Ok(format!("Bearer {cached}"));
                }
                let (token, expires_in) = self
                    .request_token(client_id, token_url, key_id, private_key.expose(), now)
                    .await?;
                let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                tokens.insert(
                    conn.practice,
                    CachedToken {
                        for_credentials: credentials,
                        token: token.clone(),
                        expires_at: now + expires_in,
                    },
                );
                Ok(format!("Bearer {token}"))
            }
        }
    }

    fn cached(&self, practice: PracticeId, credentials: &str, now: i64) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(&practice)
            .filter(|t| t.for_credentials == credentials && now < t.expires_at - TOKEN_MARGIN_SECS)
            .map(|t| t.token.clone())
    }

    fn forget_token(&self, practice: PracticeId) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&practice);
    }

    /// The client-credentials grant with a signed assertion (RFC 7523, SMART backend services).
    async fn request_token(
        &self,
        client_id: &str,
        token_url: &str,
        key_id: &str,
        pkcs8: &[u8],
        now: i64,
    ) -> Result<(String, i64), EhrError> {
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(key_id.to_owned());
        header.typ = Some("JWT".into());
        let claims = AssertionClaims {
            iss: client_id,
            sub: client_id,
            aud: token_url,
            exp: now + ASSERTION_LIFETIME_SECS,
            iat: now,
            jti: hex::encode(salve_crypto::random_bytes::<16>()),
        };
        let assertion = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8))
            .map_err(|_| {
                EhrError::refused(
                    "key",
                    "Salve's key for this EHR connection cannot sign (generate a new one)",
                )
            })?;
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", REQUESTED_SCOPES),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ];
        let response = self
            .http
            .post(token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| EhrError::retry(format!("token_{}", network_kind(&e))))?;
        let status = response.status().as_u16();
        let body = bounded_body(response).await;
        match disposition(status) {
            Disposition::Written => {}
            Disposition::Retry => return Err(EhrError::retry(format!("token_http_{status}"))),
            Disposition::Refused => {
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .and_then(|c| OAUTH_ERRORS.iter().find(|k| **k == c).copied());
                let reason = match code {
                    Some(code) => format!(
                        "the EHR's token endpoint refused Salve's sign-in (HTTP {status}, {code}); check the client id and that Salve's public key is registered"
                    ),
                    None => {
                        format!("the EHR's token endpoint refused Salve's sign-in (HTTP {status})")
                    }
                };
                return Err(EhrError::refused("token_refused", reason));
            }
        }
        let value: Value =
            serde_json::from_slice(&body).map_err(|_| EhrError::retry("token_unreadable"))?;
        let token = value["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| EhrError::retry("token_unreadable"))?
            .to_owned();
        let expires_in = value["expires_in"].as_i64().unwrap_or(300).clamp(1, 3600);
        Ok((token, expires_in))
    }

    /// Sends one request with the connection's credentials; a SMART token the EHR no longer
    /// accepts (401) is dropped and a fresh one tried once.
    async fn send(
        &self,
        conn: &EhrConnection,
        now: i64,
        build: impl Fn(String) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, EhrError> {
        let smart = matches!(conn.auth, EhrAuth::Smart { .. });
        let mut retried = false;
        loop {
            let auth = self.authorization(conn, now).await?;
            let response = build(auth)
                .send()
                .await
                .map_err(|e| EhrError::retry(network_kind(&e)))?;
            if smart && !retried && response.status() == reqwest::StatusCode::UNAUTHORIZED {
                self.forget_token(conn.practice);
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    async fn refusal(resource_type: &str, response: reqwest::Response) -> EhrError {
        let status = response.status().as_u16();
        match disposition(status) {
            Disposition::Retry | Disposition::Written => EhrError::retry(format!("http_{status}")),
            Disposition::Refused => {
                let body = bounded_body(response).await;
                let codes = issue_codes(&body);
                let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
                EhrError::refused(
                    format!("http_{status}"),
                    refusal_reason(resource_type, status, &codes),
                )
            }
        }
    }

    /// Creates `resource` unless the EHR already holds one with this identifier; returns the
    /// resource's id in the EHR either way.
    pub async fn conditional_create(
        &self,
        conn: &EhrConnection,
        now: i64,
        resource: &Value,
        identifier: (&str, &str),
    ) -> Result<String, EhrError> {
        let resource_type = resource["resourceType"].as_str().unwrap_or("Resource");
        let url = format!("{}/{resource_type}", conn.base_url);
        let body = serde_json::to_vec(resource)
            .map_err(|_| EhrError::refused("encode", "the resource could not be encoded"))?;
        let if_none_exist = format!(
            "identifier={}",
            form_encode(&format!("{}|{}", identifier.0, identifier.1))
        );
        let response = self
            .send(conn, now, |auth| {
                self.http
                    .post(&url)
                    .header(reqwest::header::AUTHORIZATION, auth)
                    .header(reqwest::header::CONTENT_TYPE, FHIR_JSON)
                    .header(reqwest::header::ACCEPT, FHIR_JSON)
                    .header("If-None-Exist", &if_none_exist)
                    .body(body.clone())
            })
            .await?;
        if disposition(response.status().as_u16()) != Disposition::Written {
            return Err(Self::refusal(resource_type, response).await);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| id_from_location(l, resource_type));
        let body = bounded_body(response).await;
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .or(location);
        // Written, but the EHR did not say under which id: still written.
        Ok(id.unwrap_or_default())
    }

    /// The EHR's Patient with this identifier: `None` when there is none; refused when several
    /// match (Salve cannot tell which chart is the patient's).
    pub async fn find_patient(
        &self,
        conn: &EhrConnection,
        now: i64,
        system: &str,
        value: &str,
    ) -> Result<Option<String>, EhrError> {
        let url = format!(
            "{}/Patient?identifier={}",
            conn.base_url,
            form_encode(&format!("{system}|{value}"))
        );
        let response = self
            .send(conn, now, |auth| {
                self.http
                    .get(&url)
                    .header(reqwest::header::AUTHORIZATION, auth)
                    .header(reqwest::header::ACCEPT, FHIR_JSON)
            })
            .await?;
        if disposition(response.status().as_u16()) != Disposition::Written {
            return Err(Self::refusal("Patient", response).await);
        }
        let body = bounded_body(response).await;
        let bundle: Value = serde_json::from_slice(&body)
            .map_err(|_| EhrError::retry("patient_search_unreadable"))?;
        let ids: Vec<String> = bundle["entry"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["resource"]["resourceType"] == "Patient")
                    .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        match ids.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => Err(EhrError::refused(
                "patient_ambiguous",
                "several patients in the EHR carry this patient's MRN; Salve cannot tell which chart is theirs",
            )),
        }
    }
}

impl EhrClient {
    /// One page of a search (`url` under the connection's base URL, checked by the caller):
    /// the searchset Bundle. For the scheduled pull.
    pub async fn search_page(
        &self,
        conn: &EhrConnection,
        now: i64,
        resource_type: &str,
        url: &str,
    ) -> Result<Value, EhrError> {
        let response = self
            .send(conn, now, |auth| {
                self.http
                    .get(url)
                    .header(reqwest::header::AUTHORIZATION, auth)
                    .header(reqwest::header::ACCEPT, FHIR_JSON)
            })
            .await?;
        if disposition(response.status().as_u16()) != Disposition::Written {
            return Err(Self::refusal(resource_type, response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| EhrError::retry(network_kind(&e)))?;
        serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(|v| v["resourceType"] == "Bundle")
            .ok_or_else(|| EhrError::retry("search_unreadable"))
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (for a query or `If-None-Exist`).
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The id in `…/{type}/{id}` or `…/{type}/{id}/_history/{v}`.
fn id_from_location(location: &str, resource_type: &str) -> Option<String> {
    let parts: Vec<&str> = location.trim_end_matches('/').split('/').collect();
    let at = parts.iter().rposition(|p| *p == resource_type)?;
    parts
        .get(at + 1)
        .filter(|id| !id.is_empty())
        .map(|id| (*id).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_locations() {
        assert_eq!(
            id_from_location(
                "https://ehr/fhir/Communication/abc/_history/2",
                "Communication"
            ),
            Some("abc".into())
        );
        assert_eq!(
            id_from_location("Communication/abc", "Communication"),
            Some("abc".into())
        );
        assert_eq!(id_from_location("https://ehr/fhir", "Communication"), None);
    }

    #[test]
    fn only_issue_codes_are_read_from_an_outcome() {
        let body = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Ana Lopez"}]}"#;
        assert_eq!(issue_codes(body), vec!["invalid".to_owned()]);
        assert!(issue_codes(b"<html>").is_empty());
    }

    #[test]
    fn the_identifier_is_form_encoded() {
        assert_eq!(
            form_encode("urn:salve:message|0190"),
            "urn%3Asalve%3Amessage%7C0190"
        );
    }
}

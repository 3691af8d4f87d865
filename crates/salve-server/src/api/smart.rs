//! SMART Backend Services (the SMART App Launch "backend services" profile): an EHR or script
//! registered by the practice with its public keys gets a short-lived access token by signing a
//! JWT assertion (`private_key_jwt`, ES384 or RS384). The token is an API token with the Salve
//! scopes its SMART scopes grant, so every route authorizes it the same way.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use salve_core::FieldError;
use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::clock::to_micros;
use salve_core::permissions::Principal;
use salve_core::smart::{self, AssertionClaims, SystemScope};
use salve_store::{SmartClient, SmartTokenGrant, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{practice_of, rfc3339};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

pub const TOKEN_PATH: &str = "/oauth2/token";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ALGORITHMS: [Algorithm; 2] = [Algorithm::ES384, Algorithm::RS384];
const MAX_KEYS: usize = 10;
const MIN_RSA_BITS: usize = 2048;
/// Larger than any honest request (a 4096-bit RS384 assertion is under 1 KB).
const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

fn token_url(state: &AppState) -> String {
    format!("{}{TOKEN_PATH}", crate::api::portal::base_url(state))
}

#[derive(Serialize, ToSchema)]
pub struct SmartConfiguration {
    pub token_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub scopes_supported: Vec<String>,
    pub capabilities: Vec<&'static str>,
}

/// What a backend-services client needs to discover the token endpoint.
#[utoipa::path(get, path = "/fhir/r4/.well-known/smart-configuration", tag = "smart",
    responses((status = 200, body = SmartConfiguration)))]
pub async fn configuration(State(state): State<AppState>) -> axum::Json<SmartConfiguration> {
    axum::Json(SmartConfiguration {
        token_endpoint: token_url(&state),
        grant_types_supported: vec!["client_credentials"],
        token_endpoint_auth_methods_supported: vec!["private_key_jwt"],
        token_endpoint_auth_signing_alg_values_supported: vec!["ES384", "RS384"],
        scopes_supported: smart::offered_scopes(),
        capabilities: vec!["client-confidential-asymmetric"],
    })
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// An OAuth error (RFC 6749 §5.2: `error`, `error_description`), which is also an RFC 9457
/// problem: OAuth clients read the first two fields, everything else the rest.
struct OAuthError {
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
            "type": format!("https://salve.dev/problems/oauth-{}", self.error.replace('_', "-")),
            "title": "The token request was refused",
            "status": 400,
            "detail": self.description,
        });
        let mut response = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        no_store(&mut response);
        response
    }
}

fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    iss: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    #[serde(default)]
    jti: String,
}

/// The client an assertion claims to come from, read before its signature is checked (only to
/// pick the keys that must verify it).
fn claimed_client(assertion: &str) -> Option<salve_core::SmartClientId> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: UnverifiedClaims = serde_json::from_slice(&bytes).ok()?;
    claims.iss?.parse().ok()
}

/// Verifies the assertion with the client's registered keys: the one its `kid` names, or any
/// key of the header's algorithm when it names none.
fn verify(assertion: &str, client: &SmartClient) -> Result<Claims, OAuthError> {
    let invalid = |why: &str| OAuthError::new("invalid_client", why);
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid("the client assertion is not a signed JWT"))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(invalid("the assertion must be signed with ES384 or RS384"));
    }
    let keys: JwkSet = serde_json::from_str(&client.jwks)
        .map_err(|_| invalid("the client's registered keys cannot be read"))?;
    let mut validation = Validation::new(header.alg);
    // Time, audience and issuer are checked by salve_core::smart against Salve's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let candidates = keys.keys.iter().filter(|k| match &header.kid {
        Some(kid) => k.common.key_id.as_deref() == Some(kid.as_str()),
        None => key_algorithm(k) == Some(header.alg),
    });
    for jwk in candidates {
        if key_algorithm(jwk) != Some(header.alg) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
            return Ok(data.claims);
        }
    }
    Err(invalid(
        "the assertion's signature does not verify with the client's registered keys",
    ))
}

/// The algorithm a registered key can verify: P-384 keys ES384, RSA keys RS384.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => {
            Some(Algorithm::ES384)
        }
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS384),
        _ => None,
    }
}

async fn refuse(
    state: &AppState,
    client: &SmartClient,
    ctx: &RequestContext,
    error: OAuthError,
) -> Result<Response, ApiError> {
    let mut context = ctx.clone();
    context.reason = Some(error.description.clone());
    state
        .store
        .record_audit(AuditEvent {
            scope: ChainScope::Practice(client.practice_id),
            actor: Actor::Anonymous,
            action: Action::SmartTokenRefuse,
            targets: vec![client.id.to_string()],
            outcome: Outcome::Denied,
            context,
        })
        .await?;
    Ok(error.into_response())
}

/// The client-credentials grant with a signed client assertion (form-encoded, RFC 7523).
#[utoipa::path(post, path = "/oauth2/token", tag = "smart",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "grant_type=client_credentials, scope, client_assertion_type, client_assertion"),
    responses((status = 200, body = TokenResponse), (status = 400, description = "an OAuth error, also an RFC 9457 problem")))]
pub async fn token(
    State(state): State<AppState>,
    Extension(client_info): Extension<ClientInfo>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_TOKEN_REQUEST_BYTES {
        return Ok(OAuthError::new("invalid_request", "the request is too large").into_response());
    }
    let field = |name: &str| {
        form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Ok(OAuthError::new(
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            )
            .into_response());
        }
        None => {
            return Ok(OAuthError::new("invalid_request", "grant_type is required").into_response());
        }
    }
    if field("client_assertion_type").as_deref() != Some(ASSERTION_TYPE) {
        return Ok(OAuthError::new(
            "invalid_request",
            format!("client_assertion_type must be {ASSERTION_TYPE}"),
        )
        .into_response());
    }
    let Some(assertion) = field("client_assertion") else {
        return Ok(
            OAuthError::new("invalid_request", "client_assertion is required").into_response(),
        );
    };
    let unknown = || {
        OAuthError::new(
            "invalid_client",
            "the assertion's iss names no active client",
        )
        .into_response()
    };
    let Some(client_id) = claimed_client(&assertion) else {
        return Ok(unknown());
    };
    let Some(client) = state.store.smart_client(client_id).await? else {
        return Ok(unknown());
    };
    let ctx = client_info.audit_context();
    if client.disabled_at.is_some() {
        return refuse(
            &state,
            &client,
            &ctx,
            OAuthError::new("invalid_client", "this client was disabled"),
        )
        .await;
    }
    let claims = match verify(&assertion, &client) {
        Ok(claims) => claims,
        Err(e) => return refuse(&state, &client, &ctx, e).await,
    };
    let aud = match claims.aud {
        Audience::One(a) => vec![a],
        Audience::Many(list) => list,
    };
    let now = state.clock.now().unix_timestamp();
    if let Err(e) = smart::check_assertion(
        &AssertionClaims {
            iss: &claims.iss,
            sub: &claims.sub,
            aud: &aud,
            exp: claims.exp,
            nbf: claims.nbf,
            iat: claims.iat,
            jti: &claims.jti,
        },
        &client.id.to_string(),
        &token_url(&state),
        now,
    ) {
        let error = OAuthError::new("invalid_client", e.describe());
        return refuse(&state, &client, &ctx, error).await;
    }
    let granted = field("scope")
        .ok_or_else(|| smart::ScopeError("scope is required".into()))
        .and_then(|raw| smart::parse_scopes(&raw))
        .and_then(|asked| {
            let registered = smart::parse_scopes(&client.scopes)?;
            smart::grant(&asked, &registered)
        });
    let (granted, scopes) = match granted {
        Ok(g) => g,
        Err(e) => {
            return refuse(&state, &client, &ctx, OAuthError::new("invalid_scope", e.0)).await;
        }
    };
    let secret = salve_crypto::token::mint("salve");
    let expires_at = state.clock.now() + time::Duration::seconds(smart::ACCESS_TOKEN_LIFETIME_SECS);
    let issued = state
        .store
        .issue_smart_token(
            &client,
            &ctx,
            SmartTokenGrant {
                jti: &claims.jti,
                jti_expires_at: claims.exp.saturating_mul(1_000_000),
                scopes: &scopes,
                token_hash: &secret.hash,
                expires_at: to_micros(expires_at),
            },
        )
        .await;
    match issued {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            let error = OAuthError::new(
                "invalid_client",
                "this assertion was already used (its jti was seen before)",
            );
            return refuse(&state, &client, &ctx, error).await;
        }
        Err(other) => return Err(other.into()),
    }
    let mut response = axum::Json(TokenResponse {
        access_token: secret.secret.to_string(),
        token_type: "bearer",
        expires_in: smart::ACCESS_TOKEN_LIFETIME_SECS,
        scope: granted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    /// What the client is, e.g. "EHR sync".
    pub name: String,
    /// The client's public keys as a JWK Set: P-384 (ES384) or RSA of 2048 bits or more (RS384).
    #[schema(value_type = Object)]
    pub jwks: serde_json::Value,
    /// SMART v2 system scopes it may ask for, e.g. `system/Communication.rs`.
    pub scopes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ClientView {
    /// The `client_id`: the `iss` and `sub` of its assertions.
    pub client_id: uuid::Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub key_ids: Vec<String>,
    pub token_endpoint: String,
    pub created_at: String,
    pub disabled_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
}

fn view(state: &AppState, client: SmartClient) -> ClientView {
    let key_ids = serde_json::from_str::<JwkSet>(&client.jwks)
        .map(|set| {
            set.keys
                .into_iter()
                .filter_map(|k| k.common.key_id)
                .collect()
        })
        .unwrap_or_default();
    ClientView {
        client_id: client.id.as_uuid(),
        name: client.name,
        scopes: client
            .scopes
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        key_ids,
        token_endpoint: token_url(state),
        created_at: rfc3339(client.created_at),
        disabled_at: client.disabled_at.map(rfc3339),
    }
}

/// Checks a submitted JWK Set: public keys only, of the kinds and sizes Salve verifies.
fn check_jwks(raw: &serde_json::Value) -> Result<String, String> {
    let keys = raw
        .get("keys")
        .and_then(|k| k.as_array())
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEYS)
        .ok_or_else(|| format!("a JWK Set with 1 to {MAX_KEYS} keys"))?;
    for key in keys {
        let private = ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|member| key.get(member).is_some());
        if private {
            return Err("public keys only: a private key was submitted; keep it with the client and register its public half".into());
        }
        let jwk: Jwk = serde_json::from_value(key.clone())
            .map_err(|_| "each key a JWK (kty EC with crv P-384, or kty RSA)".to_owned())?;
        match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => {}
            AlgorithmParameters::RSA(rsa) => {
                let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(rsa.n.trim_end_matches('='))
                    .map_err(|_| "an RSA key's n in base64url".to_owned())?;
                let bits =
                    modulus.len() * 8 - modulus.first().map_or(8, |b| b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err(format!("RSA keys of at least {MIN_RSA_BITS} bits"));
                }
            }
            _ => return Err("keys for ES384 (EC P-384) or RS384 (RSA)".into()),
        }
        if DecodingKey::from_jwk(&jwk).is_err() {
            return Err("each key usable for verification".into());
        }
    }
    serde_json::to_string(&serde_json::json!({ "keys": keys })).map_err(|_| "a JWK Set".to_owned())
}

/// Register a SMART backend-services client with its public keys and the scopes it may ask for.
#[utoipa::path(post, path = "/api/v1/smart-clients", tag = "smart", request_body = ClientBody,
    responses((status = 201, body = ClientView), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn register(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client_info): Extension<ClientInfo>,
    body: JsonBody<ClientBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let body = body.value;
    let name = body.name.trim().to_owned();
    let mut errors = Vec::new();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(FieldError::new("name", "1 to 100 characters"));
    }
    let jwks = check_jwks(&body.jwks)
        .map_err(|why| errors.push(FieldError::new("jwks", &why)))
        .ok();
    let scopes = smart::parse_scopes(&body.scopes.join(" "))
        .map_err(|e| errors.push(FieldError::new("scopes", &e.0)))
        .ok();
    let (Some(jwks), Some(scopes)) = (jwks, scopes) else {
        return Err(ApiError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let scopes = scopes
        .iter()
        .map(SystemScope::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let id = state
        .store
        .register_smart_client(
            principal.actor(),
            &client_info.audit_context(),
            practice,
            &name,
            &jwks,
            &scopes,
        )
        .await?;
    let client = state
        .store
        .smart_client(id)
        .await?
        .ok_or_else(|| ApiError::internal("a registered client vanished"))?;
    Ok((StatusCode::CREATED, axum::Json(view(&state, client))).into_response())
}

/// The practice's SMART clients (their public keys are not repeated here).
#[utoipa::path(get, path = "/api/v1/smart-clients", tag = "smart",
    responses((status = 200, body = ClientList)), security(("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<ClientList>, ApiError> {
    let clients = state
        .store
        .list_smart_clients(practice_of(&principal)?)
        .await?
        .into_iter()
        .map(|c| view(&state, c))
        .collect();
    Ok(axum::Json(ClientList { clients }))
}

/// Disable a client: it gets no new tokens and the ones it holds stop working at once.
#[utoipa::path(delete, path = "/api/v1/smart-clients/{id}", tag = "smart", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client_info): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id
        .parse()
        .map_err(|_| ApiError::not_found("SMART client"))?;
    state
        .store
        .disable_smart_client(
            principal.actor(),
            &client_info.audit_context(),
            practice_of(&principal)?,
            id,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("SMART client"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

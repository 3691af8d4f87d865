//! The practice's EHR connection (admins): where Salve writes (a FHIR R4 base URL), how it
//! signs in (a bearer token, or as a SMART backend-services client with a P-384 key Salve
//! generates and whose public JWK Set it publishes), and what it writes. Secrets are never
//! shown again; changes are audited as `ehr.connection.change`.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use salve_core::FieldError;
use salve_core::Sensitive;
use salve_core::ehr::{WriteMode, check_base_url, check_token_url};
use salve_core::permissions::Principal;
use salve_store::{
    EhrAuth, EhrConnection, EhrConnectionInput, EhrCredentials, EhrWriteStatus, NewEhrKey,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{practice_of, rfc3339};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthBody {
    /// A token the EHR issued for Salve (absent on a change: keep the one on file).
    Bearer { token: Option<String> },
    /// Salve as a SMART backend-services client: the client id the EHR gave it and the EHR's
    /// token URL. Salve generates its key the first time (or when `new_key` is true).
    Smart {
        client_id: String,
        token_url: String,
        #[serde(default)]
        new_key: bool,
    },
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    /// The EHR's FHIR R4 base URL: https (http only to a loopback address).
    pub base_url: String,
    pub auth: AuthBody,
    /// The EHR's identifier system for MRNs: a patient's chart is found by it.
    pub patient_identifier_system: String,
    /// `communication` (each message) or `document` (each closed conversation, a PDF).
    pub write: String,
    /// Also write each consent change as a `Consent`.
    pub push_consent: bool,
    pub enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionView {
    pub base_url: String,
    /// `bearer` or `smart`.
    pub auth: String,
    pub client_id: Option<String>,
    pub token_url: Option<String>,
    pub key_id: Option<String>,
    /// The public keys to register with the EHR (SMART only).
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    /// Where the EHR can fetch them.
    pub jwks_url: Option<String>,
    /// The scopes Salve asks the EHR for.
    pub scopes: Option<String>,
    pub patient_identifier_system: String,
    pub write: String,
    pub push_consent: bool,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// Where the EHR fetches Salve's public keys for this practice.
pub fn jwks_url(state: &AppState, practice: salve_core::PracticeId) -> String {
    format!(
        "{}/ehr/{practice}/jwks.json",
        crate::api::portal::base_url(state)
    )
}

pub(crate) fn view(state: &AppState, c: &EhrConnection) -> ConnectionView {
    let (auth, client_id, token_url, key_id, jwks) = match &c.auth {
        EhrAuth::Bearer { .. } => ("bearer", None, None, None, None),
        EhrAuth::Smart {
            client_id,
            token_url,
            key_id,
            public_jwks,
            ..
        } => (
            "smart",
            Some(client_id.clone()),
            Some(token_url.clone()),
            Some(key_id.clone()),
            serde_json::from_str(public_jwks).ok(),
        ),
    };
    let smart = auth == "smart";
    ConnectionView {
        base_url: c.base_url.clone(),
        auth: auth.into(),
        client_id,
        token_url,
        key_id,
        jwks,
        jwks_url: smart.then(|| jwks_url(state, c.practice)),
        scopes: smart.then(|| crate::ehr::client::REQUESTED_SCOPES.to_owned()),
        patient_identifier_system: c.patient_identifier_system.clone(),
        write: c.write_mode.as_str().into(),
        push_consent: c.push_consent,
        enabled: c.enabled,
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
    }
}

/// A new P-384 key for Salve as a SMART client, and its public JWK Set.
fn new_key() -> Result<NewEhrKey, ApiError> {
    let pkcs8 = salve_crypto::ec_key::generate_p384()
        .map_err(|_| ApiError::internal("generating a P-384 key failed"))?;
    let public = salve_crypto::ec_key::p384_public(&pkcs8)
        .map_err(|_| ApiError::internal("reading a generated key failed"))?;
    let key_id = format!("salve-{}", hex::encode(salve_crypto::random_bytes::<8>()));
    let jwks = json!({ "keys": [{
        "kty": "EC", "crv": "P-384", "x": public.x, "y": public.y,
        "kid": key_id, "use": "sig", "alg": "ES384",
    }]});
    Ok(NewEhrKey {
        key_id,
        private_key: Sensitive::new(pkcs8.to_vec()),
        public_jwks: jwks.to_string(),
    })
}

fn plain(raw: &str, max: usize) -> Option<String> {
    let v = raw.trim();
    (!v.is_empty()
        && v.chars().count() <= max
        && !v.chars().any(|c| c.is_whitespace() || c.is_control()))
    .then(|| v.to_owned())
}

/// The practice's EHR connection (never its secrets).
#[utoipa::path(get, path = "/api/v1/ehr/connection", tag = "ehr",
    responses((status = 200, body = ConnectionView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<ConnectionView>, ApiError> {
    let conn = state
        .store
        .ehr_connection(practice_of(&principal)?)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "this practice has no EHR connection yet (PUT one)",
            )
        })?;
    Ok(axum::Json(view(&state, &conn)))
}

/// Set up or change the practice's EHR connection.
#[utoipa::path(put, path = "/api/v1/ehr/connection", tag = "ehr", request_body = ConnectionBody,
    responses((status = 200, body = ConnectionView), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn save(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<ConnectionBody>,
) -> Result<axum::Json<ConnectionView>, ApiError> {
    let practice = practice_of(&principal)?;
    let body = body.value;
    let mut errors = Vec::new();
    let base_url = check_base_url(&body.base_url)
        .map_err(|why| errors.push(FieldError::new("base_url", why)))
        .ok();
    let system = plain(&body.patient_identifier_system, 500);
    if system.is_none() {
        errors.push(FieldError::new(
            "patient_identifier_system",
            "the EHR's MRN identifier system (a URI, e.g. urn:oid:…)",
        ));
    }
    let mode = WriteMode::parse(&body.write);
    if mode.is_none() {
        errors.push(FieldError::new("write", "communication or document"));
    }
    let current = state.store.ehr_connection(practice).await?;
    let credentials = match body.auth {
        AuthBody::Bearer { token } => {
            let token = match token.as_deref().map(|t| plain(t, 4096)) {
                Some(Some(t)) => Some(Sensitive::new(t)),
                Some(None) => {
                    errors.push(FieldError::new("auth.token", "the token, without spaces"));
                    None
                }
                None if matches!(
                    current.as_ref().map(|c| &c.auth),
                    Some(EhrAuth::Bearer { .. })
                ) =>
                {
                    None
                }
                None => {
                    errors.push(FieldError::new("auth.token", "the token the EHR issued"));
                    None
                }
            };
            EhrCredentials::Bearer(token)
        }
        AuthBody::Smart {
            client_id,
            token_url,
            new_key: wants_new,
        } => {
            let client_id = plain(&client_id, 200).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "auth.client_id",
                    "the client id the EHR gave Salve",
                ));
                String::new()
            });
            let token_url = check_token_url(&token_url).unwrap_or_else(|why| {
                errors.push(FieldError::new("auth.token_url", why));
                String::new()
            });
            let has_key = matches!(
                current.as_ref().map(|c| &c.auth),
                Some(EhrAuth::Smart { .. })
            );
            let key = if wants_new || !has_key {
                Some(new_key()?)
            } else {
                None
            };
            EhrCredentials::Smart {
                client_id,
                token_url,
                key,
            }
        }
    };
    let (Some(base_url), Some(system), Some(mode)) = (base_url, system, mode) else {
        return Err(ApiError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    state
        .store
        .save_ehr_connection(
            principal.actor(),
            &client.audit_context(),
            practice,
            EhrConnectionInput {
                base_url,
                credentials,
                patient_identifier_system: system,
                write_mode: mode,
                push_consent: body.push_consent,
                enabled: body.enabled,
            },
        )
        .await?;
    let conn = state
        .store
        .ehr_connection(practice)
        .await?
        .ok_or_else(|| ApiError::internal("a saved EHR connection vanished"))?;
    Ok(axum::Json(view(&state, &conn)))
}

/// Salve's public keys for this practice's EHR connection (a JWK Set the EHR registers, or
/// fetches from this URL). Public keys only; nothing else is served here.
#[utoipa::path(get, path = "/ehr/{practice}/jwks.json", tag = "ehr", params(("practice" = uuid::Uuid, Path)),
    responses((status = 200, description = "a JWK Set"), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn jwks(
    State(state): State<AppState>,
    Path(practice): Path<String>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let practice = practice
        .parse()
        .map_err(|_| ApiError::not_found("key set"))?;
    let conn = state.store.ehr_connection(practice).await?;
    match conn.map(|c| c.auth) {
        Some(EhrAuth::Smart { public_jwks, .. }) => {
            let value = serde_json::from_str(&public_jwks)
                .map_err(|_| ApiError::internal("a stored key set is unreadable"))?;
            Ok((StatusCode::OK, axum::Json(value)))
        }
        _ => Err(ApiError::not_found("key set")),
    }
}

/// How a record's write into the EHR stands, for staff.
#[derive(Serialize, ToSchema, Clone)]
pub struct EhrStatusView {
    /// `pending`, `sending`, `written` or `failed`.
    pub status: String,
    /// `Communication`, `DocumentReference` or `Consent`.
    pub resource_type: String,
    /// The resource's id in the EHR, once written.
    pub remote_id: Option<String>,
    /// Why it failed, or why the last attempt did not go through (never patient data).
    pub reason: Option<String>,
    /// In words: "written to the record", "failed: …", "waiting to be written".
    pub label: String,
    pub updated_at: String,
}

pub(crate) fn status_view(s: &EhrWriteStatus) -> EhrStatusView {
    let label = match s.status.as_str() {
        "written" => "written to the record".to_owned(),
        "failed" => format!(
            "failed: {}",
            s.reason.as_deref().unwrap_or("no reason was given")
        ),
        _ => match &s.reason {
            Some(r) => format!("waiting to be written: {r}"),
            None => "waiting to be written".to_owned(),
        },
    };
    EhrStatusView {
        status: s.status.clone(),
        resource_type: s.resource_type.to_owned(),
        remote_id: s.remote_id.clone(),
        reason: s.reason.clone(),
        label,
        updated_at: rfc3339(s.updated_at),
    }
}

//! The practice's SMS and email providers and their Business Associate Agreements (admins),
//! and the BAA report (admins and auditors). Credentials go in and are never shown again.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::permissions::Principal;
use salve_core::vendors::{AgreementBasis, AgreementTerms, Coverage, ProviderKind};
use salve_core::{AgreementId, FieldError, ProviderId, Sensitive};
use salve_store::{NewProvider, ProviderSummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

/// A Business Associate Agreement (`basis: "baa"`: `signed_on`, optional `expires_on`,
/// `document_sha256` of the signed document), or an attestation that the practice operates the
/// service itself (`basis: "self_operated"`: `attested_on`). Dates are YYYY-MM-DD.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementBody {
    pub vendor: String,
    /// `baa` or `self_operated`.
    pub basis: String,
    pub signed_on: Option<String>,
    pub expires_on: Option<String>,
    /// Hex SHA-256 of the signed document.
    pub document_sha256: Option<String>,
    pub attested_on: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementCreated {
    pub id: uuid::Uuid,
}

/// A provider to enable. `credentials` is the kind's configuration with its secrets (see the
/// README's "Providers" section); it is sealed and never returned.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    /// `twilio`, `telnyx`, `smtp` or `local_outbox` (demo and development only).
    pub kind: String,
    pub label: String,
    #[schema(value_type = Object)]
    pub credentials: serde_json::Value,
    /// The practice's sender numbers (E.164) for SMS providers.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// The agreement that covers this vendor (required for providers that carry patient data).
    pub agreement_id: Option<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderCreated {
    pub id: uuid::Uuid,
    /// The URLs to configure at the vendor for inbound messages and delivery reports.
    pub webhook_urls: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementView {
    pub id: uuid::Uuid,
    pub vendor: String,
    pub basis: String,
    pub effective_on: String,
    pub expires_on: Option<String>,
    pub document_sha256: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    pub id: uuid::Uuid,
    pub kind: String,
    pub label: String,
    pub enabled: bool,
    pub numbers: Vec<String>,
    pub agreement: Option<AgreementView>,
    /// `not_needed`, `in_force`, `expired` or `missing` on the practice's date today.
    pub coverage: String,
    pub webhook_urls: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

fn date(field: &str, raw: Option<&str>) -> Result<jiff::civil::Date, FieldError> {
    raw.and_then(|r| r.parse().ok())
        .ok_or_else(|| FieldError::new(field, "a date as YYYY-MM-DD"))
}

/// Parses the body into terms and checks them on the practice's `today`, collecting every
/// field error.
pub(crate) fn agreement_terms(
    body: &AgreementBody,
    today: jiff::civil::Date,
) -> Result<AgreementTerms, ApiError> {
    let mut errors: Vec<FieldError> = salve_core::vendors::check_vendor(&body.vendor)
        .into_iter()
        .collect();
    let basis = match body.basis.as_str() {
        "baa" => {
            let signed_on =
                date("signed_on", body.signed_on.as_deref()).map_err(|e| errors.push(e));
            let expires_on = match body.expires_on.as_deref() {
                None => Ok(None),
                Some(raw) => date("expires_on", Some(raw))
                    .map(Some)
                    .map_err(|e| errors.push(e)),
            };
            let mut sha = [0u8; 32];
            let hash_ok = body
                .document_sha256
                .as_deref()
                .is_some_and(|h| hex::decode_to_slice(h.trim(), &mut sha).is_ok());
            if !hash_ok {
                errors.push(FieldError::new(
                    "document_sha256",
                    "the SHA-256 of the signed agreement, as 64 hexadecimal characters",
                ));
            }
            if body.attested_on.is_some() {
                errors.push(FieldError::new("attested_on", "absent for a BAA"));
            }
            match (signed_on, expires_on) {
                // Built even with a bad hash, so the dates are checked too (errors stay).
                (Ok(signed_on), Ok(expires_on)) => Some(AgreementBasis::Baa {
                    signed_on,
                    expires_on,
                    document_sha256: sha,
                }),
                _ => None,
            }
        }
        "self_operated" => {
            for (field, present) in [
                ("signed_on", body.signed_on.is_some()),
                ("expires_on", body.expires_on.is_some()),
                ("document_sha256", body.document_sha256.is_some()),
            ] {
                if present {
                    errors.push(FieldError::new(field, "absent for a self-operated service"));
                }
            }
            date("attested_on", body.attested_on.as_deref())
                .map_err(|e| errors.push(e))
                .ok()
                .map(|attested_on| AgreementBasis::SelfOperated { attested_on })
        }
        _ => {
            errors.push(FieldError::new("basis", "baa or self_operated"));
            None
        }
    };
    if let Some(basis) = basis {
        let terms = AgreementTerms {
            vendor: body.vendor.clone(),
            basis,
        };
        if let Err(more) = terms.validate(today) {
            errors.extend(more.into_iter().filter(|e| e.field != "vendor"));
        }
        if errors.is_empty() {
            return Ok(terms);
        }
    }
    Err(ApiError::validation(errors))
}

fn coverage_str(c: Coverage) -> &'static str {
    match c {
        Coverage::NotNeeded => "not_needed",
        Coverage::InForce => "in_force",
        Coverage::Expired { .. } => "expired",
        Coverage::Missing => "missing",
    }
}

fn webhook_urls(state: &AppState, kind: ProviderKind, id: ProviderId) -> Vec<String> {
    let base = state
        .config
        .public_url
        .as_deref()
        .unwrap_or("https://YOUR-PUBLIC-URL");
    crate::channels::webhook_urls(base, kind, id)
}

fn view(state: &AppState, p: ProviderSummary) -> ProviderView {
    ProviderView {
        id: p.id.as_uuid(),
        kind: p.kind.as_str().into(),
        label: p.label,
        enabled: p.enabled,
        webhook_urls: webhook_urls(state, p.kind, p.id),
        numbers: p.numbers,
        coverage: coverage_str(p.coverage).into(),
        agreement: p.agreement.map(|a| {
            let (basis, effective_on, expires_on, sha) = match a.basis {
                AgreementBasis::Baa {
                    signed_on,
                    expires_on,
                    document_sha256,
                } => (
                    "baa",
                    signed_on,
                    expires_on,
                    Some(hex::encode(document_sha256)),
                ),
                AgreementBasis::SelfOperated { attested_on } => {
                    ("self_operated", attested_on, None, None)
                }
            };
            AgreementView {
                id: a.id.as_uuid(),
                vendor: a.vendor,
                basis: basis.into(),
                effective_on: effective_on.to_string(),
                expires_on: expires_on.map(|d| d.to_string()),
                document_sha256: sha,
            }
        }),
    }
}

/// The practice's providers, their agreements and whether each may carry patient data today.
#[utoipa::path(get, path = "/api/v1/admin/providers", tag = "providers",
    responses((status = 200, body = ProviderList)), security(("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<ProviderList>, ApiError> {
    let providers = state
        .store
        .list_providers(practice_of(&principal)?)
        .await?
        .into_iter()
        .map(|p| view(&state, p))
        .collect();
    Ok(axum::Json(ProviderList { providers }))
}

/// Record a Business Associate Agreement or a self-operation attestation.
#[utoipa::path(post, path = "/api/v1/admin/agreements", tag = "providers", request_body = AgreementBody,
    responses((status = 201, body = AgreementCreated), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn record_agreement(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<AgreementBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let terms = agreement_terms(&body.value, state.store.practice_today(practice).await?)?;
    let id = state
        .store
        .record_agreement(practice, principal.actor(), &client.audit_context(), &terms)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AgreementCreated { id: id.as_uuid() }),
    )
        .into_response())
}

/// Enable a provider for the practice. Refused without an agreement in force for a provider
/// that would carry patient data; a new provider replaces the enabled one of its medium.
#[utoipa::path(post, path = "/api/v1/admin/providers", tag = "providers", request_body = ProviderBody,
    responses((status = 201, body = ProviderCreated), (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<ProviderBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let body = body.value;
    let kind = ProviderKind::parse(&body.kind).ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "kind",
            "twilio, telnyx, smtp or local_outbox",
        )])
    })?;
    let credentials = crate::channels::check_credentials(kind, &body.credentials, &body.numbers)
        .map_err(ApiError::validation)?;
    let id = state
        .store
        .add_provider(
            practice,
            principal.actor(),
            &client.audit_context(),
            &NewProvider {
                kind,
                label: body.label,
                credentials: Sensitive::new(credentials),
                numbers: body.numbers,
                agreement: body.agreement_id.map(AgreementId::from_uuid),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ProviderCreated {
            id: id.as_uuid(),
            webhook_urls: webhook_urls(&state, kind, id),
        }),
    )
        .into_response())
}

/// Record a renewed agreement for a provider. Messages held while the old one was expired
/// become due at once, each sent once.
#[utoipa::path(post, path = "/api/v1/admin/providers/{id}/agreement", tag = "providers", request_body = AgreementBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = AgreementCreated), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn renew_agreement(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<AgreementBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let provider: ProviderId = crate::api::path_id(&id, "provider")?;
    let terms = agreement_terms(&body.value, state.store.practice_today(practice).await?)?;
    let agreement = state
        .store
        .renew_agreement(
            practice,
            provider,
            principal.actor(),
            &client.audit_context(),
            &terms,
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("provider"),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AgreementCreated {
            id: agreement.as_uuid(),
        }),
    )
        .into_response())
}

//! The inbound queues staff work: texts no single patient could be matched to (an unknown
//! number, or a phone a family shares), to file in the right patient's conversation; and
//! possible opt-outs the classifier was not sure of, for a person to decide.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::PatientId;
use salve_core::consent::{ConsentMethod, sms_opt_out};
use salve_core::permissions::Principal;
use salve_core::system_messages::{Extra, Language, SystemMessageKind, render};
use salve_core::{FieldError, Sensitive};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{practice_of, rfc3339};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Serialize, ToSchema)]
pub struct TriageView {
    pub id: uuid::Uuid,
    /// `unknown_sender` or `shared_number`
    pub reason: String,
    /// What the text seemed to be: `optout`, `help`, `optin` or `other`.
    pub intent: String,
    pub from: String,
    pub text: String,
    pub received_at: String,
    /// Patients with this phone on file (a family's), to choose from.
    pub candidates: Vec<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct TriageList {
    pub items: Vec<TriageView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeBody {
    pub patient_id: uuid::Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct Attributed {
    pub message_id: uuid::Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct ReviewView {
    pub id: uuid::Uuid,
    pub patient_id: Option<uuid::Uuid>,
    pub message_id: Option<uuid::Uuid>,
    /// Set while the text still waits in triage.
    pub triage_id: Option<uuid::Uuid>,
    /// Why the text may be an opt-out (rule names).
    pub reasons: Vec<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReviewList {
    pub reviews: Vec<ReviewView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecision {
    /// `opt_out` (texting is revoked for the practice and confirmed once) or `not_opt_out`.
    pub decision: String,
}

fn uuid_of(raw: &str) -> Option<uuid::Uuid> {
    raw.parse().ok()
}

/// Texts waiting to be filed with a patient, newest first. Audited.
#[utoipa::path(get, path = "/api/v1/inbound/triage", tag = "messages",
    responses((status = 200, body = TriageList)), security(("session" = [])))]
pub async fn triage(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
) -> Result<axum::Json<TriageList>, ApiError> {
    let practice = practice_of(&principal)?;
    let items = state
        .store
        .list_triage(practice, &principal, &client.audit_context())
        .await?
        .into_iter()
        .map(|i| TriageView {
            id: uuid_of(&i.id).unwrap_or_default(),
            reason: i.reason,
            intent: i.intent,
            from: i.from.expose().clone(),
            text: i.text.expose().clone(),
            received_at: rfc3339(i.received_at),
            candidates: i.candidates.iter().map(PatientId::as_uuid).collect(),
        })
        .collect();
    Ok(axum::Json(TriageList { items }))
}

/// File a triage text in a patient's conversation, as the patient's text.
#[utoipa::path(post, path = "/api/v1/inbound/triage/{id}/attribute", tag = "messages", request_body = AttributeBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = Attributed), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn attribute(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<AttributeBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let id: uuid::Uuid = crate::api::path_id(&id, "triage item")?;
    let message = state
        .store
        .attribute_triage(
            practice,
            &principal,
            &client.audit_context(),
            &id.to_string(),
            PatientId::from_uuid(body.value.patient_id),
            salve_core::outgoing::inbound_kind,
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound | salve_store::StoreError::Hidden => {
                ApiError::not_found("triage item or patient")
            }
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Attributed {
            message_id: message.as_uuid(),
        }),
    )
        .into_response())
}

/// Possible opt-outs waiting for a person, oldest first.
#[utoipa::path(get, path = "/api/v1/inbound/reviews", tag = "messages",
    responses((status = 200, body = ReviewList)), security(("session" = [])))]
pub async fn reviews(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<ReviewList>, ApiError> {
    let practice = practice_of(&principal)?;
    let reviews = state
        .store
        .open_keyword_reviews(practice)
        .await?
        .into_iter()
        .map(|r| ReviewView {
            id: uuid_of(&r.id).unwrap_or_default(),
            patient_id: r.patient.map(|p| p.as_uuid()),
            message_id: r.message.map(|m| m.as_uuid()),
            triage_id: r.triage.as_deref().and_then(uuid_of),
            reasons: r.reasons,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(axum::Json(ReviewList { reviews }))
}

/// Decide a possible opt-out. An opt-out revokes texting for the practice (recorded as the
/// patient's request, decided by this staff member) and is confirmed to the patient once.
#[utoipa::path(post, path = "/api/v1/inbound/reviews/{id}", tag = "messages", request_body = ReviewDecision,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn decide(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<ReviewDecision>,
) -> Result<StatusCode, ApiError> {
    let practice = practice_of(&principal)?;
    let id: uuid::Uuid = crate::api::path_id(&id, "review")?;
    let opt_out = match body.value.decision.as_str() {
        "opt_out" => true,
        "not_opt_out" => false,
        _ => {
            return Err(ApiError::validation(vec![FieldError::new(
                "decision",
                "opt_out or not_opt_out",
            )]));
        }
    };
    let revoke_all = |state: &salve_core::consent::ConsentState| {
        sms_opt_out(state, ConsentMethod::FreeTextRequest)
    };
    let reply = if opt_out {
        let settings = state.store.messaging_settings(practice).await?;
        let fields = settings.practice_fields();
        render(
            SystemMessageKind::OptOutConfirmation,
            Language::En,
            &fields,
            Extra::None,
        )
        .ok()
        .map(Sensitive::new)
    } else {
        None
    };
    state
        .store
        .decide_keyword_review(
            practice,
            &principal,
            &client.audit_context(),
            &id.to_string(),
            opt_out.then_some((&revoke_all as &(dyn Fn(&_) -> _ + Sync), reply)),
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("review"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

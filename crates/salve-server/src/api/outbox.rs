//! The local outbox, for demos and development: what it "sent" for this practice (admins only,
//! audited), and simulated inbound texts and delivery reports, which take the same path as a
//! real provider's webhooks. Absent (404) on a server without a local outbox; simulation is
//! refused for a practice whose texting provider is a real one.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_channels::{DeliveryStatus, InboundMessage};
use salve_core::audit::{Action, AuditEvent, ChainScope, Outcome};
use salve_core::permissions::Principal;
use salve_core::vendors::ProviderKind;
use salve_core::{FieldError, Sensitive};
use salve_store::{Medium, ProviderRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Serialize, ToSchema)]
pub struct OutboxEntry {
    /// The outbox job (and provider message) id.
    pub id: uuid::Uuid,
    pub message_id: uuid::Uuid,
    /// 1, or more when the same job was sent again (a duplicate: should never happen).
    pub attempt: u32,
    /// `sms` or `email`
    pub channel: String,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    pub sent_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct OutboxList {
    pub messages: Vec<OutboxEntry>,
}

/// A text "from" a patient's phone.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatedText {
    /// E.164, e.g. +13125550142.
    pub from: String,
    pub text: String,
}

/// A delivery report for a message the local outbox sent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatedStatus {
    /// The outbox entry's id.
    pub id: uuid::Uuid,
    /// `delivered`, `undelivered`, `failed` or `read`
    pub status: String,
}

fn outbox(state: &AppState) -> Result<&salve_channels::LocalOutbox, ApiError> {
    state.local_outbox.as_deref().ok_or_else(|| {
        ApiError::not_found("local outbox (it runs only in demo and development mode)")
    })
}

/// The practice's local-outbox provider row, which simulated webhooks are filed under.
async fn local_provider(
    state: &AppState,
    principal: &Principal,
) -> Result<ProviderRecord, ApiError> {
    let practice = practice_of(principal)?;
    match state.store.enabled_provider(practice, Medium::Sms).await? {
        Some(record) if record.kind == ProviderKind::LocalOutbox => Ok(record),
        Some(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "real-provider",
            "A real provider is configured",
            "this practice texts through a real provider; the local outbox cannot simulate its texts",
        )),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no-local-outbox",
            "No local outbox provider",
            "add the local outbox as the practice's provider first (POST /api/v1/admin/providers with kind local_outbox)",
        )),
    }
}

/// What the local outbox sent for this practice, newest last. Audited.
#[utoipa::path(get, path = "/api/v1/admin/outbox", tag = "providers",
    responses((status = 200, body = OutboxList), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
) -> Result<axum::Json<OutboxList>, ApiError> {
    let practice = practice_of(&principal)?;
    let outbox = outbox(&state)?;
    let jobs = state.store.practice_job_messages(practice).await?;
    let records = outbox
        .list()
        .map_err(|e| ApiError::internal(format!("reading the local outbox: {}", e.kind())))?;
    let messages: Vec<OutboxEntry> = records
        .into_iter()
        .filter_map(|r| {
            let message = jobs.get(&r.id)?;
            Some(OutboxEntry {
                id: r.id,
                message_id: message.as_uuid(),
                attempt: r.attempt,
                channel: match r.channel {
                    salve_channels::Channel::Sms => "sms".into(),
                    salve_channels::Channel::Email => "email".into(),
                },
                to: r.to,
                subject: r.subject,
                body: r.body,
                sent_at: r.sent_at,
            })
        })
        .collect();
    state
        .store
        .record_audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: principal.actor(),
            action: Action::OutboxRead,
            targets: messages.iter().map(|m| m.message_id.to_string()).collect(),
            outcome: Outcome::Success,
            context: client.audit_context(),
        })
        .await?;
    Ok(axum::Json(OutboxList { messages }))
}

/// Simulate a patient's text to the practice: it takes the path of a real provider's
/// webhook (keywords, consent, the conversation or triage, replies through the outbox).
#[utoipa::path(post, path = "/api/v1/admin/outbox/inbound", tag = "providers", request_body = SimulatedText,
    responses((status = 202), (status = 409, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn simulate_inbound(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<SimulatedText>,
) -> Result<Response, ApiError> {
    let outbox = outbox(&state)?;
    let record = local_provider(&state, &principal).await?;
    let body = body.value;
    let digits = body.from.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::validation(vec![FieldError::new(
            "from",
            "a phone number in E.164 form, such as +13125550142",
        )]));
    }
    if body.text.chars().count() > 1600 {
        return Err(ApiError::validation(vec![FieldError::new(
            "text",
            "at most 1600 characters (10 SMS segments)",
        )]));
    }
    let message = InboundMessage {
        provider_message_id: format!("local-in-{}", uuid::Uuid::now_v7()),
        from: Sensitive::new(body.from),
        to: String::new(),
        body: Sensitive::new(body.text),
        media: Vec::new(),
        opt_out_type: None,
    };
    crate::api::webhooks::inbound_text(&state, &record, outbox, message, &client.audit_context())
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Simulate a delivery report for a message the local outbox sent.
#[utoipa::path(post, path = "/api/v1/admin/outbox/status", tag = "providers", request_body = SimulatedStatus,
    responses((status = 202), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn simulate_status(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<SimulatedStatus>,
) -> Result<Response, ApiError> {
    let outbox = outbox(&state)?;
    let record = local_provider(&state, &principal).await?;
    let status = match body.value.status.as_str() {
        "delivered" => DeliveryStatus::Delivered,
        "undelivered" => DeliveryStatus::Undelivered,
        "failed" => DeliveryStatus::Failed,
        "read" => DeliveryStatus::Read,
        _ => {
            return Err(ApiError::validation(vec![FieldError::new(
                "status",
                "delivered, undelivered, failed or read",
            )]));
        }
    };
    let jobs = state.store.practice_job_messages(record.practice).await?;
    let sent = outbox
        .list()
        .map_err(|e| ApiError::internal(format!("reading the local outbox: {}", e.kind())))?
        .into_iter()
        .filter(|r| r.id == body.value.id && jobs.contains_key(&r.id))
        .max_by_key(|r| r.attempt)
        .ok_or_else(|| ApiError::not_found("outbox message"))?;
    crate::api::webhooks::delivery(
        &state,
        &record,
        salve_channels::StatusUpdate {
            provider_message_id: format!("local-{}-{}", sent.id, sent.attempt),
            status,
            error_code: (status == DeliveryStatus::Failed).then(|| "30005".to_owned()),
        },
        &client.audit_context(),
    )
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

//! General practice announcements: staff write one text, choose who receives it (everyone with
//! `announcements` consent, or by provider, location or upcoming visit), see how many it would
//! reach and what the channel policy decides, then send it now or at a time. The outbox worker
//! sends it with the per-number rate limit and quiet hours; progress is counts only.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use salve_core::announcements::{self as rules, RecipientFilter, Status};
use salve_core::consent::ConsentPurpose;
use salve_core::outgoing::{self, Draft, PatientFacts, Plan};
use salve_core::permissions::Principal;
use salve_core::templates::{self, Variable};
use salve_core::{AnnouncementId, CatalogItemId};
use salve_store::{Announcement, NewAnnouncement, Progress};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::messages::{ReasonView, fmt_time, not_found};
use crate::api::{path_id, practice_of};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody};

/// Variables an announcement may use: the patient's first name and the practice's own
/// details (nothing about a visit: an announcement is not about one).
pub(crate) const VARIABLES: [Variable; 5] = [
    Variable::PatientFirstName,
    Variable::PracticeName,
    Variable::PracticePhone,
    Variable::PracticeSenderName,
    Variable::PracticePortalLink,
];

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    /// Patients with an upcoming visit with one of these providers (catalog item ids).
    #[serde(default)]
    pub providers: Vec<uuid::Uuid>,
    /// … at one of these locations (catalog item ids).
    #[serde(default)]
    pub locations: Vec<uuid::Uuid>,
    /// … starting within this many days (1 to 365).
    pub upcoming_within_days: Option<u32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementBody {
    /// The text; may use {patient.first_name}, {practice.name}, {practice.phone},
    /// {practice.sender_name} and {practice.portal_link}.
    pub text: String,
    /// Every patient with `announcements` consent when absent.
    #[serde(default)]
    pub filter: FilterBody,
    /// RFC 3339: when to send it once sent for scheduling (default: at once).
    pub scheduled_at: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// RFC 3339: send at this time instead of now (or the time given when it was written).
    pub scheduled_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AnnouncementPreview {
    /// `direct` (plain SMS allowed by content) or `secure` (a notification with a link).
    pub route: String,
    pub reasons: Vec<ReasonView>,
    /// How many patients it would reach now (consent and filter).
    pub recipients: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ProgressView {
    pub recipients: i64,
    /// Chosen, not yet queued.
    pub pending: i64,
    /// In the outbox (perhaps waiting out quiet hours or the rate limit).
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub failed: i64,
    pub held_back: i64,
    /// Held back by reason: `no_consent`, `opted_out_during_send`, `no_contact_point`,
    /// `confidential_request`, `cancelled`.
    pub held_back_by_reason: BTreeMap<String, i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AnnouncementView {
    pub id: uuid::Uuid,
    pub text: String,
    pub route: String,
    pub reasons: Vec<ReasonView>,
    pub filter: FilterBody,
    /// `draft`, `scheduled`, `sending`, `done` or `cancelled`.
    pub status: String,
    pub scheduled_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub created_at: String,
    /// With a preview's count for a draft or a scheduled one (who it would reach now).
    pub recipients: Option<usize>,
    pub progress: Option<ProgressView>,
}

#[derive(Serialize, ToSchema)]
pub struct AnnouncementList {
    pub announcements: Vec<AnnouncementView>,
}

fn parse_time(field: &str, raw: &str) -> Result<time::OffsetDateTime, ApiError> {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::bad_request(format!("`{field}` must be an RFC 3339 date and time")))
}

fn filter_of(body: &FilterBody) -> Result<RecipientFilter, ApiError> {
    let filter = RecipientFilter {
        providers: body
            .providers
            .iter()
            .map(|u| CatalogItemId::from_uuid(*u))
            .collect(),
        locations: body
            .locations
            .iter()
            .map(|u| CatalogItemId::from_uuid(*u))
            .collect(),
        upcoming_within_days: body.upcoming_within_days,
    };
    filter.validate().map_err(ApiError::validation)?;
    Ok(filter)
}

fn filter_view(filter: &RecipientFilter) -> FilterBody {
    FilterBody {
        providers: filter.providers.iter().map(|p| p.as_uuid()).collect(),
        locations: filter.locations.iter().map(|l| l.as_uuid()).collect(),
        upcoming_within_days: filter.upcoming_within_days,
    }
}

/// Checks the text and the variables it uses.
pub(crate) fn checked_text(raw: &str) -> Result<String, ApiError> {
    let text = rules::validate_text(raw).map_err(|e| ApiError::validation(vec![e]))?;
    let parsed = templates::parse(&text).map_err(ApiError::validation)?;
    if parsed.variables().iter().any(|v| !VARIABLES.contains(v)) {
        return Err(ApiError::bad_request(
            "an announcement may only use {patient.first_name} and the practice's name, phone, \
             sender name and portal link",
        ));
    }
    Ok(text)
}

/// The channel policy's decision on the text: the same for every recipient (routing by
/// consent and confidential requests is per patient, when it is queued).
pub(crate) fn decide(text: &str, sender_name: &str) -> Plan {
    outgoing::plan_staff_message(
        &Draft {
            text,
            has_attachment: false,
            filled: Vec::new(),
            force_secure: false,
            purpose: ConsentPurpose::Announcements,
            kind: None,
        },
        &PatientFacts {
            consent: &[],
            confidential: &[],
            contacts: &[],
            sender_name,
        },
    )
}

fn reasons(plan_json: &str) -> Vec<ReasonView> {
    serde_json::from_str::<serde_json::Value>(plan_json)
        .ok()
        .and_then(|v| v.get("reasons").cloned())
        .and_then(|r| r.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|r| ReasonView {
            rule: r["rule"].as_str().unwrap_or_default().to_owned(),
            matched_text: r["matched_text"].as_str().unwrap_or_default().to_owned(),
            explanation: r["explanation"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

fn progress_view(p: &Progress) -> ProgressView {
    ProgressView {
        recipients: p.recipients,
        pending: p.pending,
        queued: p.queued,
        sent: p.sent,
        delivered: p.delivered,
        failed: p.failed,
        held_back: p.held_back_total(),
        held_back_by_reason: p
            .held_back
            .iter()
            .map(|(r, n)| (r.as_str().to_owned(), *n))
            .collect(),
    }
}

async fn view(
    state: &AppState,
    a: &Announcement,
    with_progress: bool,
) -> Result<AnnouncementView, ApiError> {
    let started = !matches!(a.status, Status::Draft | Status::Scheduled);
    let recipients = if with_progress && !started {
        Some(
            state
                .store
                .count_announcement_recipients(a.practice, &a.filter, a.route)
                .await?,
        )
    } else {
        None
    };
    let progress = if with_progress && started {
        Some(progress_view(
            &state.store.announcement_progress(a.practice, a.id).await?,
        ))
    } else {
        None
    };
    Ok(AnnouncementView {
        id: a.id.as_uuid(),
        text: a.text.expose().clone(),
        route: a.route.as_str().into(),
        reasons: reasons(a.decision_json.expose()),
        filter: filter_view(&a.filter),
        status: a.status.as_str().into(),
        scheduled_at: a.scheduled_at.map(fmt_time),
        started_at: a.started_at.map(fmt_time),
        finished_at: a.finished_at.map(fmt_time),
        created_at: fmt_time(a.created_at),
        recipients,
        progress,
    })
}

async fn sender_name(state: &AppState, principal: &Principal) -> Result<String, ApiError> {
    Ok(state
        .store
        .messaging_settings(practice_of(principal)?)
        .await?
        .sender_name)
}

/// How many patients an announcement would reach now and what the policy decides; writes
/// nothing.
#[utoipa::path(post, path = "/api/v1/announcements/preview", tag = "announcements", request_body = AnnouncementBody,
    responses((status = 200, body = AnnouncementPreview), (status = 400, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn preview(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: JsonBody<AnnouncementBody>,
) -> Result<axum::Json<AnnouncementPreview>, ApiError> {
    let practice = practice_of(&principal)?;
    let text = checked_text(&body.value.text)?;
    let filter = filter_of(&body.value.filter)?;
    if let Some(raw) = &body.value.scheduled_at {
        parse_time("scheduled_at", raw)?;
    }
    let plan = decide(&text, &sender_name(&state, &principal).await?);
    let recipients = state
        .store
        .count_announcement_recipients(practice, &filter, plan.decision.route)
        .await?;
    let json = serde_json::to_string(&plan.decision).unwrap_or_default();
    Ok(axum::Json(AnnouncementPreview {
        route: plan.decision.route.as_str().into(),
        reasons: reasons(&json),
        recipients,
    }))
}

/// Write an announcement (a draft, with the policy's decision and the count it would reach
/// now). Send it with `/send`.
#[utoipa::path(post, path = "/api/v1/announcements", tag = "announcements", request_body = AnnouncementBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replaying the same key and body returns the first answer")),
    responses((status = 201, body = AnnouncementView), (status = 400, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<AnnouncementBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let text = checked_text(&body.value.text)?;
    let filter = filter_of(&body.value.filter)?;
    let scheduled_at = body
        .value
        .scheduled_at
        .as_deref()
        .map(|raw| parse_time("scheduled_at", raw))
        .transpose()?;
    let plan = decide(&text, &sender_name(&state, &principal).await?);
    let idempotency = key.map(|key_hash| salve_store::Idempotency {
        key_hash,
        request_hash: sha2::Sha256::new()
            .chain_update(b"announcement")
            .chain_update(body.sha256)
            .finalize()
            .into(),
    });
    let (created, replayed) = state
        .store
        .create_announcement(
            practice,
            &principal,
            &client.audit_context(),
            &NewAnnouncement {
                text: salve_core::Sensitive::new(text),
                decision_json: serde_json::to_string(&plan.decision).unwrap_or_default(),
                route: plan.decision.route,
                filter,
                scheduled_at,
            },
            idempotency,
        )
        .await?;
    let mut response = (
        StatusCode::CREATED,
        axum::Json(view(&state, &created, true).await?),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Send a draft now, or at `scheduled_at` (or the time it was written with).
#[utoipa::path(post, path = "/api/v1/announcements/{id}/send", tag = "announcements", request_body = SendBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AnnouncementView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn send(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<SendBody>,
) -> Result<axum::Json<AnnouncementView>, ApiError> {
    let practice = practice_of(&principal)?;
    let id = path_id::<AnnouncementId>(&id, "announcement")?;
    let at = body
        .value
        .scheduled_at
        .as_deref()
        .map(|raw| parse_time("scheduled_at", raw))
        .transpose()?;
    let scheduled = state
        .store
        .schedule_announcement(practice, &principal, &client.audit_context(), id, at)
        .await
        .map_err(not_found("announcement"))?;
    Ok(axum::Json(view(&state, &scheduled, true).await?))
}

/// Cancel an announcement not yet finished: nobody not yet queued receives it, and messages
/// still waiting in the outbox are withdrawn.
#[utoipa::path(post, path = "/api/v1/announcements/{id}/cancel", tag = "announcements",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AnnouncementView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<axum::Json<AnnouncementView>, ApiError> {
    let practice = practice_of(&principal)?;
    let id = path_id::<AnnouncementId>(&id, "announcement")?;
    let cancelled = state
        .store
        .cancel_announcement(practice, &principal, &client.audit_context(), id)
        .await
        .map_err(not_found("announcement"))?;
    Ok(axum::Json(view(&state, &cancelled, true).await?))
}

/// The practice's announcements, newest first (without progress: open one for that).
#[utoipa::path(get, path = "/api/v1/announcements", tag = "announcements",
    responses((status = 200, body = AnnouncementList)), security(("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<AnnouncementList>, ApiError> {
    let practice = practice_of(&principal)?;
    let mut announcements = Vec::new();
    for a in state.store.announcements(practice).await? {
        announcements.push(view(&state, &a, false).await?);
    }
    Ok(axum::Json(AnnouncementList { announcements }))
}

/// One announcement with its progress: recipients, queued, sent, delivered, failed, and held
/// back by reason (or, before it starts, how many it would reach now).
#[utoipa::path(get, path = "/api/v1/announcements/{id}", tag = "announcements",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AnnouncementView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<axum::Json<AnnouncementView>, ApiError> {
    let practice = practice_of(&principal)?;
    let id = path_id::<AnnouncementId>(&id, "announcement")?;
    let a = state
        .store
        .announcement(practice, id)
        .await
        .map_err(not_found("announcement"))?;
    Ok(axum::Json(view(&state, &a, true).await?))
}

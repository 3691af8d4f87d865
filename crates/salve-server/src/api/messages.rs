//! The team inbox: conversations, sending (with a preview of where a message will go and why),
//! notes, assignment, state, read marks and attachments. Handlers parse, call the domain
//! (`salve_core::outgoing`) and the store, and render; the rules live in salve-core.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use salve_core::consent::ConsentPurpose;
use salve_core::outgoing::{self, Draft, PatientFacts, Plan};
use salve_core::permissions::{ContentKind, Principal};
use salve_core::policy::FilledValue;
use salve_core::templates::{self, TemplateValues, Variable};
use salve_core::{AttachmentId, ConversationId, PatientId, Sensitive, TeamId, TemplateId, UserId};
use salve_store::{
    Assignment, AttachmentReader, CatalogKind, ConversationState, ConversationSummary,
    ConversationTarget, InboxFilter, MessageChannel, MessageStatus, MessageView, NewAttachment,
    OutboundPlan, PlanRefused, SendFacts, StoreError,
};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::portal::base_url;
use crate::api::{path_id, practice_of};
use crate::attachments;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody};

/// A message body: what fits a long text or a short letter.
pub const MAX_TEXT_CHARS: usize = 5_000;
pub const MAX_ATTACHMENTS: usize = 5;
/// Requests that carry attachments (base64) may be this large.
pub const ATTACHMENT_BODY_LIMIT: usize = 24 * 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentUpload {
    pub file_name: Option<String>,
    /// The file, base64 (standard alphabet).
    pub content_base64: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Free text; or leave empty and name a saved reply in `template_id`.
    #[serde(default)]
    pub text: Option<String>,
    pub template_id: Option<uuid::Uuid>,
    /// Values for the template's appointment variables, e.g. `{"appointment.location": "Main St office"}`.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// `care_messages` (default), `appointment_reminders` or `announcements`.
    pub purpose: Option<String>,
    /// Keep the content in the portal even if plain SMS would be allowed.
    #[serde(default)]
    pub force_secure: bool,
    /// `clinical` or `administrative`; by default what the policy keeps secure is clinical.
    pub kind: Option<String>,
    /// A topic thread of this patient; the main thread by default.
    pub conversation_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub attachments: Vec<AttachmentUpload>,
}

#[derive(Serialize, ToSchema)]
pub struct ReasonView {
    pub rule: String,
    pub matched_text: String,
    pub explanation: String,
}

#[derive(Serialize, ToSchema)]
pub struct PreviewView {
    /// `direct` (plain SMS allowed by content) or `secure`.
    pub route: String,
    pub reasons: Vec<ReasonView>,
    /// `direct_sms`, `secure_with_notification` or `portal_only`.
    pub delivery: String,
    /// Where it will go and why, for staff.
    pub explanation: Vec<String>,
    pub kind: String,
    /// The text as it will be sent (a template rendered).
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct AttachmentView {
    pub id: uuid::Uuid,
    pub media_type: String,
    pub file_name: String,
    pub size: i64,
}

#[derive(Serialize, ToSchema)]
pub struct MessageOut {
    pub id: uuid::Uuid,
    pub conversation_id: uuid::Uuid,
    /// `inbound`, `outbound`, `note` or `system`.
    pub direction: String,
    pub channel: Option<String>,
    pub kind: String,
    /// `user`, `patient`, `token` or `system`.
    pub author_kind: String,
    pub author_id: Option<String>,
    /// Absent when the reader may not see this clinical content.
    pub text: Option<String>,
    pub hidden: bool,
    pub route: Option<String>,
    pub reasons: Option<serde_json::Value>,
    pub delivery: Option<String>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
    /// The consent event this send relied on.
    pub legal_basis: Option<uuid::Uuid>,
    pub created_at: String,
    pub attachments: Vec<AttachmentView>,
    /// Its write into the practice's EHR as a `Communication`, when the practice writes
    /// messages there (staff views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ehr: Option<crate::api::ehr::EhrStatusView>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationView {
    pub id: uuid::Uuid,
    pub patient_id: uuid::Uuid,
    pub patient_name: Option<String>,
    pub main: bool,
    pub topic: Option<String>,
    pub state: String,
    pub snoozed_until: Option<String>,
    pub assigned_user: Option<uuid::Uuid>,
    pub assigned_team: Option<uuid::Uuid>,
    pub last_message_at: String,
    pub unread: i64,
    /// RFC 3339: when the patient started waiting for a staff reply (absent: nothing unanswered).
    pub waiting_since: Option<String>,
    /// Waiting longer than the practice's response target, counted in business hours.
    pub overdue: bool,
    /// The current wait was escalated to the practice's chosen people.
    pub escalated: bool,
    /// A patient's text suggested an emergency; cleared by a staff reply.
    pub urgent: bool,
    /// `portal`, `sms` or `email`: how the newest message that used a channel went (absent:
    /// only notes so far).
    pub last_channel: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationView>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationDetailView {
    pub conversation: ConversationView,
    pub messages: Vec<MessageOut>,
    /// The latest transcript of this conversation written into the EHR as a
    /// `DocumentReference` (when the practice writes closed conversations there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ehr_transcript: Option<crate::api::ehr::EhrStatusView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// `mine`, `my_teams`, `unassigned` (default: all)
    pub assignment: Option<String>,
    pub unread: Option<bool>,
    /// Only conversations waiting longer than the practice's response target.
    pub overdue: Option<bool>,
    /// Only conversations flagged urgent (a patient's text suggested an emergency).
    pub urgent: Option<bool>,
    /// `open`, `snoozed` or `closed`
    pub state: Option<String>,
    pub patient: Option<uuid::Uuid>,
    /// RFC 3339: conversations last active before this (paging)
    pub before: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub text: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    pub user_id: Option<uuid::Uuid>,
    pub team_id: Option<uuid::Uuid>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    /// `open`, `snoozed` or `closed`
    pub state: String,
    /// RFC 3339, with `snoozed`.
    pub snoozed_until: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicBody {
    pub topic: String,
}

#[derive(Serialize, ToSchema)]
pub struct Created {
    pub id: uuid::Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttachmentQuery {
    /// Show in the browser (sandboxed) instead of downloading.
    pub inline: Option<bool>,
}

pub(crate) fn fmt_time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(field: &str, raw: &str) -> Result<time::OffsetDateTime, ApiError> {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::bad_request(format!("`{field}` must be an RFC 3339 date and time")))
}

pub(crate) fn conversation_view(c: &ConversationSummary) -> ConversationView {
    ConversationView {
        id: c.id.as_uuid(),
        patient_id: c.patient_id.as_uuid(),
        patient_name: c.patient_name.as_ref().map(|n| n.expose().clone()),
        main: c.is_main,
        topic: c.topic.as_ref().map(|t| t.expose().clone()),
        state: c.state.as_str().into(),
        snoozed_until: c.snoozed_until.map(fmt_time),
        assigned_user: c.assigned_user.map(|u| u.as_uuid()),
        assigned_team: c.assigned_team.map(|t| t.as_uuid()),
        last_message_at: fmt_time(c.last_message_at),
        unread: c.unread,
        waiting_since: c.waiting_since.map(fmt_time),
        overdue: c.overdue,
        escalated: c.escalated,
        urgent: c.urgent,
        last_channel: c.last_channel.clone(),
    }
}

pub(crate) fn message_out(m: &MessageView) -> MessageOut {
    let author_id = match &m.author {
        salve_core::audit::Actor::User(u) => Some(u.to_string()),
        salve_core::audit::Actor::ApiToken(t) => Some(t.to_string()),
        salve_core::audit::Actor::Patient(p) => Some(p.to_string()),
        _ => None,
    };
    MessageOut {
        id: m.id.as_uuid(),
        conversation_id: m.conversation_id.as_uuid(),
        direction: m.direction.as_str().into(),
        channel: m.channel.map(|c| c.as_str().into()),
        kind: m.kind.as_str().into(),
        author_kind: m.author.kind().into(),
        author_id,
        text: m.body.as_ref().map(|b| b.expose().clone()),
        hidden: m.body.is_none(),
        route: m.route.map(|r| r.as_str().into()),
        reasons: m
            .decision
            .as_ref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d.expose()).ok())
            .and_then(|v| v.get("reasons").cloned()),
        delivery: m.delivery.clone(),
        status: m.status.map(|s| s.as_str().into()),
        status_reason: m.status_reason.as_ref().map(|r| r.expose().clone()),
        legal_basis: m.legal_basis.map(|b| b.as_uuid()),
        created_at: fmt_time(m.created_at),
        attachments: m
            .attachments
            .iter()
            .map(|a| AttachmentView {
                id: a.id.as_uuid(),
                media_type: a.media_type.clone(),
                file_name: a.file_name.expose().clone(),
                size: a.size,
            })
            .collect(),
        ehr: None,
    }
}

pub(crate) fn not_found(what: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound | StoreError::Hidden => ApiError::not_found(what),
        other => other.into(),
    }
}

fn checked_text(raw: &str) -> Result<Sensitive<String>, ApiError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("`text` is empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request(format!(
            "`text` is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::bad_request("`text` contains control characters"));
    }
    Ok(Sensitive::new(text.to_owned()))
}

/// Decodes, checks and cleans the uploads (type by content; images re-encoded), off the async
/// runtime and a few at a time: decoding a large photo takes time and memory.
pub(crate) async fn clean_uploads(
    state: &AppState,
    uploads: &[AttachmentUpload],
) -> Result<Vec<NewAttachment>, ApiError> {
    if uploads.len() > MAX_ATTACHMENTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ATTACHMENTS} attachments per message"
        )));
    }
    let mut out = Vec::with_capacity(uploads.len());
    for (i, upload) in uploads.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(upload.content_base64.as_bytes())
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "attachments[{i}].content_base64 is not valid base64"
                ))
            })?;
        let name = upload.file_name.clone();
        let _permit = state
            .hash_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("shutting down"))?;
        let clean =
            tokio::task::spawn_blocking(move || attachments::sanitize(&bytes, name.as_deref()))
                .await
                .map_err(|_| ApiError::internal("attachment check failed"))?
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "attachment-refused",
                        "Attachment refused",
                        format!("attachments[{i}]: {e}"),
                    )
                })?;
        out.push(NewAttachment {
            media_type: clean.media_type.media_type().to_owned(),
            file_name: clean.file_name,
            bytes: clean.bytes,
        });
    }
    Ok(out)
}

fn purpose_of(raw: Option<&str>) -> Result<ConsentPurpose, ApiError> {
    match raw {
        None => Ok(ConsentPurpose::CareMessages),
        Some(p) => ConsentPurpose::parse(p).ok_or_else(|| {
            ApiError::bad_request(
                "`purpose` must be care_messages, appointment_reminders or announcements",
            )
        }),
    }
}

fn kind_of(raw: Option<&str>) -> Result<Option<ContentKind>, ApiError> {
    raw.map(|k| {
        ContentKind::parse(k)
            .ok_or_else(|| ApiError::bad_request("`kind` must be clinical or administrative"))
    })
    .transpose()
}

/// What a send request asks for, parsed.
struct Request {
    text: Option<Sensitive<String>>,
    template: Option<templates::ParsedTemplate>,
    values: BTreeMap<String, String>,
    purpose: ConsentPurpose,
    force_secure: bool,
    kind: Option<ContentKind>,
    has_attachment: bool,
}

async fn parse_request(
    state: &AppState,
    principal: &Principal,
    body: &SendBody,
) -> Result<Request, ApiError> {
    let template = match body.template_id {
        Some(id) => {
            let saved = state
                .store
                .reply_template(practice_of(principal)?, TemplateId::from_uuid(id))
                .await
                .map_err(not_found("template"))?;
            if !saved.active {
                return Err(ApiError::bad_request("this saved reply is switched off"));
            }
            Some(templates::parse(&saved.body).map_err(ApiError::validation)?)
        }
        None => None,
    };
    let text = match (&body.text, &template) {
        (Some(t), None) => Some(checked_text(t)?),
        (None, Some(_)) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either `text` or `template_id`, not both",
            ));
        }
        (None, None) => return Err(ApiError::bad_request("`text` is required")),
    };
    Ok(Request {
        text,
        template,
        values: body.values.clone(),
        purpose: purpose_of(body.purpose.as_deref())?,
        force_secure: body.force_secure,
        kind: kind_of(body.kind.as_deref())?,
        has_attachment: !body.attachments.is_empty(),
    })
}

/// Renders the text (a template with the patient's and practice's values), and reports each
/// filled value with its SMS-safe flag.
fn rendered(
    request: &Request,
    facts: &SendFacts,
    portal_link: &str,
) -> Result<(String, Vec<FilledValue>), String> {
    if let Some(text) = &request.text {
        return Ok((text.expose().clone(), Vec::new()));
    }
    let Some(template) = &request.template else {
        return Err("`text` is required".into());
    };
    let mut values = TemplateValues::new();
    values
        .set(
            Variable::PatientFirstName,
            facts.patient.record.given_name.expose().clone(),
        )
        .set(Variable::PracticeName, facts.settings.sender_name.clone())
        .set(
            Variable::PracticeSenderName,
            facts.settings.sender_name.clone(),
        )
        .set(Variable::PracticePhone, facts.settings.phone.clone())
        .set(Variable::PracticePortalLink, portal_link.to_owned());
    for (name, value) in &request.values {
        let variable =
            Variable::parse(name).ok_or_else(|| format!("values: unknown variable `{name}`"))?;
        let catalog_kind = match variable {
            Variable::AppointmentType => Some(CatalogKind::AppointmentType),
            Variable::AppointmentLocation => Some(CatalogKind::Location),
            Variable::AppointmentProvider => Some(CatalogKind::Provider),
            _ => None,
        };
        match catalog_kind {
            // Only the practice's own catalog can call a value SMS-safe.
            Some(kind) => {
                let safe = facts
                    .catalog
                    .iter()
                    .any(|c| c.kind == kind && c.active && c.sms_safe && c.name == *value);
                values.set_catalog(variable, value.clone(), safe);
            }
            None => {
                values.set(variable, value.clone());
            }
        }
    }
    let out = template.render(&values).map_err(|e| e.to_string())?;
    if out.text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!(
            "the message is longer than {MAX_TEXT_CHARS} characters"
        ));
    }
    Ok((out.text, out.filled))
}

fn plan_for(request: &Request, facts: &SendFacts, text: &str, filled: Vec<FilledValue>) -> Plan {
    let draft = Draft {
        text,
        has_attachment: request.has_attachment,
        filled,
        force_secure: request.force_secure,
        purpose: request.purpose,
        kind: request.kind,
    };
    outgoing::plan_staff_message(
        &draft,
        &PatientFacts {
            consent: &facts.consent,
            confidential: &facts.confidential,
            contacts: &facts.patient.record.contacts,
            sender_name: &facts.settings.sender_name,
        },
    )
}

fn preview_view(plan: &Plan, text: String) -> PreviewView {
    PreviewView {
        route: plan.decision.route.as_str().into(),
        reasons: plan
            .decision
            .reasons
            .iter()
            .map(|r| ReasonView {
                rule: r.rule.clone(),
                matched_text: r.matched_text.clone(),
                explanation: r.explanation.clone(),
            })
            .collect(),
        delivery: plan.delivery.into(),
        explanation: plan.explanation.clone(),
        kind: plan.kind.as_str().into(),
        text,
    }
}

fn target(patient: PatientId, conversation: Option<uuid::Uuid>) -> ConversationTarget {
    match conversation {
        Some(c) => ConversationTarget::OfPatient(patient, ConversationId::from_uuid(c)),
        None => ConversationTarget::Main(patient),
    }
}

/// Send a patient a message. The channel policy and the patient's consent decide whether it
/// goes by plain SMS or stays in the portal with a content-free notification.
#[utoipa::path(post, path = "/api/v1/patients/{id}/messages", tag = "inbox", request_body = SendBody,
    params(("id" = uuid::Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replaying the same key and body returns the first answer")),
    responses((status = 201, body = MessageOut), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["messages:write"]), ("session" = [])))]
pub async fn send(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    IdempotencyKey(key): IdempotencyKey,
    Path(patient): Path<String>,
    body: JsonBody<SendBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let request = parse_request(&state, &principal, &body.value).await?;
    let uploads = clean_uploads(&state, &body.value.attachments).await?;
    let base = base_url(&state);
    let portal_link = format!("{base}/portal");
    let patient = path_id::<PatientId>(&patient, "patient")?;
    // The request is the patient in the path and the body: the same key and body for another
    // patient is a different request (422), not a retry to answer with the first message.
    let idempotency = key.map(|key_hash| salve_store::Idempotency {
        key_hash,
        request_hash: sha2::Sha256::new()
            .chain_update(patient.as_uuid().as_bytes())
            .chain_update(body.sha256)
            .finalize()
            .into(),
    });
    // Rendered inside the store's transaction: templates need the patient's facts.
    let plan = |facts: &SendFacts| -> Result<OutboundPlan, PlanRefused> {
        let (text, filled) = rendered(&request, facts, &portal_link).map_err(PlanRefused)?;
        let plan = plan_for(&request, facts, &text, filled);
        crate::outbound::store_plan(&plan, request.purpose, facts, &text, &base, None)
    };
    let (message, replayed) = state
        .store
        .send_message(
            practice,
            &principal,
            &client.audit_context(),
            target(patient, body.value.conversation_id),
            &uploads,
            idempotency,
            plan,
        )
        .await
        .map_err(not_found("patient or conversation"))?;
    let mut response = (StatusCode::CREATED, axum::Json(message_out(&message))).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Where a message would go and why, without sending it (shown as staff type).
#[utoipa::path(post, path = "/api/v1/patients/{id}/messages/preview", tag = "inbox", request_body = SendBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PreviewView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["messages:write"]), ("session" = [])))]
pub async fn preview(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient): Path<String>,
    body: JsonBody<SendBody>,
) -> Result<axum::Json<PreviewView>, ApiError> {
    let practice = practice_of(&principal)?;
    let request = parse_request(&state, &principal, &body.value).await?;
    let facts = state
        .store
        .send_facts_for(
            practice,
            &principal,
            target(
                path_id::<PatientId>(&patient, "patient")?,
                body.value.conversation_id,
            ),
        )
        .await
        .map_err(not_found("patient or conversation"))?;
    let portal_link = format!("{}/portal", base_url(&state));
    let (text, filled) = rendered(&request, &facts, &portal_link).map_err(ApiError::bad_request)?;
    let plan = plan_for(&request, &facts, &text, filled);
    Ok(axum::Json(preview_view(&plan, text)))
}

/// The inbox: conversations with unread counts, newest activity first. No message content.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "inbox", params(InboxQuery),
    responses((status = 200, body = ConversationList)),
    security(("bearer" = ["messages:read"]), ("session" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Query(q): Query<InboxQuery>,
) -> Result<axum::Json<ConversationList>, ApiError> {
    let assignment = match q.assignment.as_deref() {
        None | Some("all") => Assignment::Any,
        Some("mine") => Assignment::Mine,
        Some("my_teams") => Assignment::MyTeams,
        Some("unassigned") => Assignment::Unassigned,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`assignment` must be all, mine, my_teams or unassigned",
            ));
        }
    };
    let state_filter = q
        .state
        .as_deref()
        .map(|s| {
            ConversationState::parse(s)
                .ok_or_else(|| ApiError::bad_request("`state` must be open, snoozed or closed"))
        })
        .transpose()?;
    let filter = InboxFilter {
        assignment,
        unread_only: q.unread.unwrap_or(false),
        overdue_only: q.overdue.unwrap_or(false),
        urgent_only: q.urgent.unwrap_or(false),
        state: state_filter,
        patient: q.patient.map(PatientId::from_uuid),
        before: q
            .before
            .as_deref()
            .map(|b| parse_time("before", b))
            .transpose()?,
        limit: q.limit.unwrap_or(50),
    };
    let conversations = state
        .store
        .list_conversations(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &filter,
        )
        .await?;
    Ok(axum::Json(ConversationList {
        conversations: conversations.iter().map(conversation_view).collect(),
    }))
}

/// One conversation with its messages (audited). Clinical content is hidden from a front desk
/// the practice does not allow to see it.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "inbox", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ConversationDetailView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["messages:read"]), ("session" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<axum::Json<ConversationDetailView>, ApiError> {
    let detail = state
        .store
        .read_conversation(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            path_id::<ConversationId>(&id, "conversation")?,
        )
        .await
        .map_err(not_found("conversation"))?;
    let practice = practice_of(&principal)?;
    let ids: Vec<String> = detail.messages.iter().map(|m| m.id.to_string()).collect();
    let written = state
        .store
        .ehr_write_statuses(practice, salve_core::ehr::WriteKind::Communication, &ids)
        .await?;
    let transcript = state
        .store
        .ehr_write_statuses(
            practice,
            salve_core::ehr::WriteKind::Document,
            &[detail.summary.id.to_string()],
        )
        .await?;
    Ok(axum::Json(ConversationDetailView {
        conversation: conversation_view(&detail.summary),
        messages: detail
            .messages
            .iter()
            .map(|m| {
                let mut out = message_out(m);
                out.ehr = written
                    .get(&m.id.to_string())
                    .map(crate::api::ehr::status_view);
                out
            })
            .collect(),
        ehr_transcript: transcript.values().next().map(crate::api::ehr::status_view),
    }))
}

/// Start a topic thread with a patient, beside their main thread.
#[utoipa::path(post, path = "/api/v1/patients/{id}/conversations", tag = "inbox", request_body = TopicBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = Created), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["messages:write"]), ("session" = [])))]
pub async fn create_topic(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(patient): Path<String>,
    body: JsonBody<TopicBody>,
) -> Result<Response, ApiError> {
    let id = state
        .store
        .create_topic_conversation(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            path_id::<PatientId>(&patient, "patient")?,
            &Sensitive::new(body.value.topic),
        )
        .await
        .map_err(not_found("patient"))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Created { id: id.as_uuid() }),
    )
        .into_response())
}

/// An internal note: visible to staff, never sent to the patient.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/notes", tag = "inbox", request_body = NoteBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = MessageOut), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["messages:write"]), ("session" = [])))]
pub async fn note(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<NoteBody>,
) -> Result<Response, ApiError> {
    let text = checked_text(&body.value.text)?;
    let kind = match &principal {
        Principal::Staff {
            role: salve_core::permissions::Role::Staff,
            ..
        } => ContentKind::Administrative,
        _ => ContentKind::Clinical,
    };
    let (message, _) = state
        .store
        .send_message(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            ConversationTarget::Existing(path_id::<ConversationId>(&id, "conversation")?),
            &[],
            None,
            |_| {
                Ok(OutboundPlan {
                    direction: salve_store::Direction::Note,
                    body: text.clone(),
                    kind,
                    channel: MessageChannel::Portal,
                    route: None,
                    decision_json: None,
                    delivery: "note".into(),
                    status: MessageStatus::Sent,
                    status_reason: None,
                    legal_basis: None,
                    job: None,
                })
            },
        )
        .await
        .map_err(not_found("conversation"))?;
    Ok((StatusCode::CREATED, axum::Json(message_out(&message))).into_response())
}

/// Assign a conversation to a person and/or a team (both empty: unassigned).
#[utoipa::path(put, path = "/api/v1/conversations/{id}/assignment", tag = "inbox", request_body = AssignBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["messages:write"]), ("session" = [])))]
pub async fn assign(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<AssignBody>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .assign_conversation(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            path_id::<ConversationId>(&id, "conversation")?,
            body.value.user_id.map(UserId::from_uuid),
            body.value.team_id.map(TeamId::from_uuid),
        )
        .await
        .map_err(not_found("conversation"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Open, close or snooze a conversation.
#[utoipa::path(put, path = "/api/v1/conversations/{id}/state", tag = "inbox", request_body = StateBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["messages:write"]), ("session" = [])))]
pub async fn set_state(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<StateBody>,
) -> Result<StatusCode, ApiError> {
    let new_state = ConversationState::parse(&body.value.state)
        .ok_or_else(|| ApiError::bad_request("`state` must be open, snoozed or closed"))?;
    let until = body
        .value
        .snoozed_until
        .as_deref()
        .map(|t| parse_time("snoozed_until", t))
        .transpose()?;
    state
        .store
        .set_conversation_state(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            path_id::<ConversationId>(&id, "conversation")?,
            new_state,
            until,
        )
        .await
        .map_err(not_found("conversation"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mark a conversation read (for this staff member).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", tag = "inbox",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn mark_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !matches!(principal, Principal::Staff { .. }) {
        // Read marks belong to people; a system has none to keep. Still gated like a read.
        state
            .store
            .check_conversation_access(
                practice_of(&principal)?,
                &principal,
                path_id::<ConversationId>(&id, "conversation")?,
            )
            .await
            .map_err(not_found("conversation"))?;
        return Ok(StatusCode::NO_CONTENT);
    }
    state
        .store
        .mark_conversation_read(
            practice_of(&principal)?,
            &principal,
            path_id::<ConversationId>(&id, "conversation")?,
        )
        .await
        .map_err(not_found("conversation"))?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn attachment_response(
    meta: &salve_store::AttachmentMeta,
    bytes: Vec<u8>,
    inline: bool,
) -> Result<Response, ApiError> {
    let kind = match meta.media_type.as_str() {
        "image/jpeg" => attachments::AttachmentType::Jpeg,
        "image/png" => attachments::AttachmentType::Png,
        "application/pdf" => attachments::AttachmentType::Pdf,
        _ => return Err(ApiError::internal("stored attachment of an unknown type")),
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    for (name, value) in attachments::response_headers(kind, meta.file_name.expose(), inline) {
        headers.insert(name, value);
    }
    headers.remove(header::ETAG);
    Ok(response)
}

/// An attachment's bytes, served sandboxed (`Content-Security-Policy: sandbox`, nosniff).
#[utoipa::path(get, path = "/api/v1/attachments/{id}", tag = "inbox", params(("id" = uuid::Uuid, Path), AttachmentQuery),
    responses((status = 200, description = "the file"), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["messages:read"]), ("session" = [])))]
pub async fn attachment(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    Query(q): Query<AttachmentQuery>,
) -> Result<Response, ApiError> {
    let (meta, bytes) = state
        .store
        .read_attachment(
            practice_of(&principal)?,
            AttachmentReader::Staff(&principal),
            &client.audit_context(),
            path_id::<AttachmentId>(&id, "attachment")?,
        )
        .await
        .map_err(not_found("attachment"))?;
    attachment_response(&meta, bytes, q.inline.unwrap_or(false))
}

//! The team inbox and one conversation: the thread, the patient's consent and restrictions, the
//! composer with its live "where will this go and why", notes, assignment, state, and the
//! break-glass form for a restricted patient. Every action calls the API operation.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use base64::Engine;
use salve_core::permissions::{BreakGlassCategory, Operation, Principal};
use salve_core::{ConversationId, PracticeId};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{allowed, frame};
use crate::AppState;
use crate::api::messages::{self, ConversationView, InboxQuery, MessageOut, PreviewView};
use crate::api::{consent, oversight, practice_of, teams, users};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::web::Page;
use crate::web::frame::StaffFrame;

fn body<T>(value: T) -> JsonBody<T> {
    JsonBody {
        value,
        sha256: [0; 32],
    }
}

/// An API message as a sentence for the page.
fn message(e: &ApiError) -> String {
    let detail = if e.errors.is_empty() {
        e.detail.clone()
    } else {
        e.errors
            .iter()
            .map(|f| format!("{}: expected {}", f.field, f.expected))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut text = detail;
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

// ---- times -------------------------------------------------------------------------------

/// The practice's zone, for showing times as the front desk's clock shows them.
async fn zone(state: &AppState, principal: &Principal) -> String {
    match practice_of(principal) {
        Ok(p) => state
            .store
            .practice(p)
            .await
            .map(|p| p.time_zone)
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// "Nov 25, 09:05" in the practice's zone (RFC 3339 in, as the API renders times).
fn local_time(rfc3339: &str, zone: &str) -> String {
    let Ok(at) =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return rfc3339.to_owned();
    };
    let local = salve_core::appointments::in_zone(at, zone);
    let month = match local.month() {
        time::Month::January => "Jan",
        time::Month::February => "Feb",
        time::Month::March => "Mar",
        time::Month::April => "Apr",
        time::Month::May => "May",
        time::Month::June => "Jun",
        time::Month::July => "Jul",
        time::Month::August => "Aug",
        time::Month::September => "Sep",
        time::Month::October => "Oct",
        time::Month::November => "Nov",
        time::Month::December => "Dec",
    };
    format!(
        "{month} {}, {:02}:{:02}",
        local.day(),
        local.hour(),
        local.minute()
    )
}

// ---- the inbox ---------------------------------------------------------------------------

/// The inbox's views: (query value, label).
const FILTERS: &[(&str, &str)] = &[
    ("open", "Open"),
    ("mine", "Mine"),
    ("my_teams", "My teams"),
    ("unassigned", "Unassigned"),
    ("unread", "Unread"),
    ("urgent", "Urgent"),
    ("overdue", "Overdue"),
    ("snoozed", "Snoozed"),
    ("closed", "Closed"),
    ("all", "All"),
];

#[derive(Deserialize, Default)]
pub(crate) struct InboxParams {
    filter: Option<String>,
}

fn filter_of(raw: Option<&str>) -> &'static str {
    FILTERS
        .iter()
        .find(|(v, _)| Some(*v) == raw)
        .map_or("open", |(v, _)| v)
}

fn inbox_query(filter: &str) -> InboxQuery {
    let mut q = InboxQuery {
        assignment: None,
        unread: None,
        overdue: None,
        urgent: None,
        state: None,
        patient: None,
        before: None,
        limit: Some(100),
    };
    match filter {
        "mine" | "my_teams" | "unassigned" => {
            q.assignment = Some(filter.to_owned());
            q.state = Some("open".into());
        }
        "unread" => q.unread = Some(true),
        "urgent" => q.urgent = Some(true),
        "overdue" => q.overdue = Some(true),
        "open" | "snoozed" | "closed" => q.state = Some(filter.to_owned()),
        _ => {}
    }
    q
}

pub(crate) struct Row {
    id: String,
    name: String,
    topic: Option<String>,
    when: String,
    when_iso: String,
    state: String,
    state_label: String,
    unread: i64,
    urgent: bool,
    overdue: bool,
    escalated: bool,
    channel: Option<&'static str>,
}

fn row(c: &ConversationView, zone: &str) -> Row {
    Row {
        id: c.id.to_string(),
        name: c
            .patient_name
            .clone()
            .unwrap_or_else(|| "(record destroyed)".into()),
        topic: c.topic.clone(),
        when: local_time(&c.last_message_at, zone),
        when_iso: c.last_message_at.clone(),
        state: c.state.clone(),
        state_label: human(&c.state),
        unread: c.unread,
        urgent: c.urgent,
        overdue: c.overdue,
        escalated: c.escalated,
        channel: c.last_channel.as_deref().map(channel_label),
    }
}

pub(crate) struct FilterLink {
    value: &'static str,
    label: &'static str,
    current: bool,
}

#[derive(Template)]
#[template(path = "staff/inbox.html")]
struct InboxPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    filters: Vec<FilterLink>,
    filter: &'static str,
    filter_label: &'static str,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "staff/inbox_list.html")]
struct InboxList {
    filter_label: &'static str,
    rows: Vec<Row>,
}

async fn rows(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    filter: &str,
) -> Result<Vec<Row>, ApiError> {
    let list = messages::list(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client.clone()),
        Query(inbox_query(filter)),
    )
    .await?
    .0;
    let zone = zone(state, principal).await;
    Ok(list.conversations.iter().map(|c| row(c, &zone)).collect())
}

fn label_of(filter: &str) -> &'static str {
    FILTERS
        .iter()
        .find(|(v, _)| *v == filter)
        .map_or("Open", |(_, l)| l)
}

pub(crate) async fn inbox(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Query(q): Query<InboxParams>,
) -> Response {
    let frame = match frame(&state, &principal, session.as_deref(), "/inbox").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let filter = filter_of(q.filter.as_deref());
    let rows = match rows(&state, &principal, &client, filter).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    page.render(&InboxPage {
        page: &page,
        frame: &frame,
        filters: FILTERS
            .iter()
            .map(|(value, label)| FilterLink {
                value,
                label,
                current: *value == filter,
            })
            .collect(),
        filter,
        filter_label: label_of(filter),
        rows,
    })
}

/// The list alone, for the live refresh.
pub(crate) async fn inbox_list(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Query(q): Query<InboxParams>,
) -> Response {
    let filter = filter_of(q.filter.as_deref());
    match rows(&state, &principal, &client, filter).await {
        Ok(rows) => page.render(&InboxList {
            filter_label: label_of(filter),
            rows,
        }),
        Err(e) => e.into_response(),
    }
}

// ---- one conversation ----------------------------------------------------------------------

pub(crate) struct Attachment {
    id: String,
    name: String,
    size: String,
}

pub(crate) struct Msg {
    class: &'static str,
    label: &'static str,
    author: String,
    when: String,
    when_iso: String,
    channel: Option<&'static str>,
    status: Option<String>,
    failed: Option<String>,
    text: Option<String>,
    note: bool,
    attachments: Vec<Attachment>,
    /// Its write into the EHR in words ("written to the record", "failed: …"), and whether it failed.
    ehr: Option<(String, bool)>,
}

fn channel_label(raw: &str) -> &'static str {
    match raw {
        "sms" => "Text message",
        "email" => "Email",
        "portal" => "Secure portal",
        "voice" => "Phone",
        _ => "Other channel",
    }
}

fn human(raw: &str) -> String {
    let text = raw.replace('_', " ");
    match text.get(..1) {
        Some(first) => first.to_uppercase() + &text[1..],
        None => text,
    }
}

fn size(bytes: i64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KB", (bytes + 1023) / 1024)
    }
}

fn msg(m: &MessageOut, names: &HashMap<String, String>, zone: &str) -> Msg {
    let (class, label) = match m.direction.as_str() {
        "inbound" => ("msg inbound", "From the patient"),
        "outbound" => ("msg outbound", "To the patient"),
        "note" => ("msg note", "Internal note — not sent to the patient"),
        _ => ("msg system", "System message"),
    };
    let author = match m.author_kind.as_str() {
        "patient" => "Patient".to_owned(),
        "user" => m
            .author_id
            .as_ref()
            .and_then(|id| names.get(id).cloned())
            .unwrap_or_else(|| "Staff member".into()),
        "token" => "Connected system".into(),
        _ => "Salve".into(),
    };
    let failed = match (m.status.as_deref(), &m.status_reason) {
        (Some("failed"), reason) => Some(
            reason
                .clone()
                .unwrap_or_else(|| "no reason was given".into()),
        ),
        _ => None,
    };
    Msg {
        class,
        label,
        author,
        when: local_time(&m.created_at, zone),
        when_iso: m.created_at.clone(),
        channel: m.channel.as_deref().map(channel_label),
        status: m
            .status
            .as_deref()
            .filter(|_| m.direction != "note")
            .map(human),
        failed,
        text: m.text.clone(),
        note: m.direction == "note",
        ehr: m
            .ehr
            .as_ref()
            .map(|e| (human(&e.label), e.status == "failed")),
        attachments: m
            .attachments
            .iter()
            .map(|a| Attachment {
                id: a.id.to_string(),
                name: a.file_name.clone(),
                size: size(a.size),
            })
            .collect(),
    }
}

pub(crate) struct ConsentLine {
    channel: String,
    purpose: String,
}

pub(crate) struct Restriction {
    rule: &'static str,
    value: String,
}

pub(crate) struct Choice {
    value: String,
    label: String,
    selected: bool,
}

pub(crate) struct SavedReply {
    id: String,
    name: String,
    body: String,
}

/// What the forms of the page keep after a refused submit.
#[derive(Default)]
pub(crate) struct Drafts {
    text: String,
    composer_error: Option<String>,
    note: String,
    note_error: Option<String>,
    action_error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "staff/conversation.html")]
struct ConversationPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    id: String,
    patient_id: String,
    name: String,
    topic: Option<String>,
    state: String,
    state_label: String,
    snoozed_until: Option<String>,
    urgent: bool,
    overdue: bool,
    restricted: bool,
    messages: Vec<Msg>,
    /// The conversation's transcript in the EHR, in words, and whether it failed.
    ehr_transcript: Option<(String, bool)>,
    consent: Option<Vec<ConsentLine>>,
    restrictions: Vec<Restriction>,
    templates: Vec<SavedReply>,
    assignees: Vec<Choice>,
    can_send: bool,
    can_note: bool,
    can_manage: bool,
    idempotency_key: String,
    drafts: Drafts,
}

#[derive(Template)]
#[template(path = "staff/break_glass.html")]
struct BreakGlassPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    id: String,
    categories: Vec<Choice>,
    reason: String,
    error: Option<String>,
}

const CATEGORIES: &[(BreakGlassCategory, &str)] = &[
    (
        BreakGlassCategory::EmergencyTreatment,
        "Emergency treatment",
    ),
    (BreakGlassCategory::ContinuityOfCare, "Continuity of care"),
    (
        BreakGlassCategory::CoveringForColleague,
        "Covering for a colleague",
    ),
    (BreakGlassCategory::PatientRequest, "The patient asked"),
    (BreakGlassCategory::Other, "Other"),
];

#[derive(Deserialize, Default)]
pub(crate) struct ConversationParams {
    sent: Option<String>,
    noted: Option<String>,
    updated: Option<String>,
}

/// Everything a conversation action handler needs to render the page again.
pub(crate) struct Ctx {
    state: AppState,
    principal: Principal,
    client: ClientInfo,
    session: Option<SessionCaller>,
}

fn conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("conversation"))
}

fn practice(principal: &Principal) -> Result<PracticeId, ApiError> {
    practice_of(principal)
}

async fn render_conversation(
    page: &Page,
    ctx: &Ctx,
    id: &str,
    drafts: Drafts,
    status: StatusCode,
) -> Response {
    let Ctx {
        state,
        principal,
        client,
        session,
    } = ctx;
    let frame = match frame(state, principal, session.as_ref(), "/inbox").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let read = messages::read(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client.clone()),
        Path(id.to_owned()),
    )
    .await;
    let detail = match read {
        Ok(d) => d.0,
        Err(e) if e.slug == "break-glass-required" && allowed(principal, Operation::BreakGlass) => {
            return render_break_glass(page, &frame, id, String::new(), None);
        }
        Err(e) => return e.into_response(),
    };
    let conv = &detail.conversation;
    // Opening the thread reads it (a role that may not manage the conversation keeps its marks).
    if allowed(principal, Operation::ConversationManage) {
        let _ = messages::mark_read(
            State(state.clone()),
            Extension(principal.clone()),
            Path(id.to_owned()),
        )
        .await;
    }
    let zone = zone(state, principal).await;
    let staff = if allowed(principal, Operation::UserList) {
        users::list(State(state.clone()), Extension(principal.clone()))
            .await
            .map(|l| l.0.users)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let names: HashMap<String, String> = staff
        .iter()
        .map(|u| (u.id.to_string(), u.display_name.clone()))
        .collect();
    let patient_id = conv.patient_id.to_string();
    let (consent, restrictions) = if allowed(principal, Operation::ConsentRead) {
        match consent::read(
            State(state.clone()),
            Extension(principal.clone()),
            Extension(client.clone()),
            Path(patient_id.clone()),
        )
        .await
        {
            Ok(Json(record)) => (
                Some(
                    record
                        .effective
                        .iter()
                        .filter(|e| e.granted)
                        .map(|e| ConsentLine {
                            channel: consent_channel(&e.channel).to_owned(),
                            purpose: human(&e.purpose),
                        })
                        .collect(),
                ),
                record
                    .confidential_requests
                    .iter()
                    .filter(|r| r.withdrawn_at.is_none())
                    .map(|r| Restriction {
                        rule: match r.rule.as_str() {
                            "only_contact" => "Contact only at",
                            "never_contact" => "Never contact at",
                            "never_medium" => "Never use",
                            _ => "Restriction",
                        },
                        value: r.value.clone(),
                    })
                    .collect(),
            ),
            Err(_) => (None, Vec::new()),
        }
    } else {
        (None, Vec::new())
    };
    let restricted = match practice(principal) {
        Ok(p) => state
            .store
            .patient_is_restricted(p, salve_core::PatientId::from_uuid(conv.patient_id))
            .await
            .unwrap_or(false),
        Err(_) => false,
    };
    let templates = if allowed(principal, Operation::CatalogRead) {
        consent::templates(State(state.clone()), Extension(principal.clone()))
            .await
            .map(|l| {
                l.0.templates
                    .into_iter()
                    .filter(|t| t.active)
                    .map(|t| SavedReply {
                        id: t.id.to_string(),
                        name: t.name,
                        body: t.body,
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let can_manage = allowed(principal, Operation::ConversationManage);
    let mut assignees = vec![Choice {
        value: String::new(),
        label: "Nobody (unassigned)".into(),
        selected: conv.assigned_user.is_none() && conv.assigned_team.is_none(),
    }];
    if can_manage {
        if allowed(principal, Operation::UserList) {
            let teams = teams::list(State(state.clone()), Extension(principal.clone()))
                .await
                .map(|l| l.0.teams)
                .unwrap_or_default();
            for t in teams {
                assignees.push(Choice {
                    selected: conv.assigned_user.is_none() && conv.assigned_team == Some(t.id),
                    value: format!("team:{}", t.id),
                    label: format!("Team: {}", t.name),
                });
            }
        }
        for u in staff.iter().filter(|u| !u.disabled && u.role != "auditor") {
            assignees.push(Choice {
                selected: conv.assigned_user == Some(u.id),
                value: format!("user:{}", u.id),
                label: u.display_name.clone(),
            });
        }
        if let Some(me) = session.as_ref().map(|s| s.session.user_id.as_uuid())
            && !staff.iter().any(|u| u.id == me)
        {
            assignees.push(Choice {
                selected: conv.assigned_user == Some(me),
                value: format!("user:{me}"),
                label: "Me".into(),
            });
        }
    }
    page.render_with_status(
        status,
        &ConversationPage {
            page,
            frame: &frame,
            id: id.to_owned(),
            patient_id,
            name: conv
                .patient_name
                .clone()
                .unwrap_or_else(|| "(record destroyed)".into()),
            topic: conv.topic.clone(),
            state: conv.state.clone(),
            state_label: human(&conv.state),
            snoozed_until: conv.snoozed_until.as_deref().map(|t| local_time(t, &zone)),
            urgent: conv.urgent,
            overdue: conv.overdue,
            restricted,
            messages: detail
                .messages
                .iter()
                .map(|m| msg(m, &names, &zone))
                .collect(),
            ehr_transcript: detail
                .ehr_transcript
                .as_ref()
                .map(|e| (human(&e.label), e.status == "failed")),
            consent,
            restrictions,
            templates,
            assignees,
            can_send: allowed(principal, Operation::MessageSend),
            can_note: allowed(principal, Operation::MessageNote),
            can_manage,
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            drafts,
        },
    )
}

fn consent_channel(raw: &str) -> &'static str {
    match raw {
        "sms_plain" => "Text messages with content",
        "sms_notify" => "Text notifications (no content)",
        "email_notify" => "Email notifications (no content)",
        "portal" => "Secure portal",
        _ => "Other channel",
    }
}

fn render_break_glass(
    page: &Page,
    frame: &StaffFrame,
    id: &str,
    reason: String,
    error: Option<(String, &str)>,
) -> Response {
    let chosen = error.as_ref().map(|(_, c)| *c).unwrap_or("");
    let categories = CATEGORIES
        .iter()
        .map(|(c, label)| Choice {
            value: c.as_str().to_owned(),
            label: (*label).to_owned(),
            selected: c.as_str() == chosen,
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::FORBIDDEN
    };
    page.render_with_status(
        status,
        &BreakGlassPage {
            page,
            frame,
            id: id.to_owned(),
            categories,
            reason,
            error: error.map(|(e, _)| e),
        },
    )
}

pub(crate) async fn conversation(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    Query(q): Query<ConversationParams>,
) -> Response {
    let notice = if q.sent.is_some() {
        Some("Message sent.")
    } else if q.noted.is_some() {
        Some("Note added.")
    } else if q.updated.is_some() {
        Some("Conversation updated.")
    } else {
        None
    };
    let ctx = Ctx {
        state,
        principal,
        client,
        session: session.map(|s| s.0),
    };
    let drafts = Drafts {
        notice,
        ..Drafts::default()
    };
    render_conversation(&page, &ctx, &id, drafts, StatusCode::OK).await
}

// ---- the composer --------------------------------------------------------------------------

#[derive(Default)]
struct Composed {
    text: String,
    template_id: Option<uuid::Uuid>,
    patient_id: String,
    force_secure: bool,
    idempotency_key: String,
    files: Vec<(String, Vec<u8>)>,
}

impl Composed {
    fn set(&mut self, name: &str, value: String) {
        match name {
            "text" => self.text = value,
            "template_id" => self.template_id = value.trim().parse().ok(),
            "patient_id" => self.patient_id = value,
            "force_secure" => self.force_secure = !value.is_empty(),
            "idempotency_key" => self.idempotency_key = value,
            _ => {}
        }
    }

    /// The API's request: a chosen saved reply wins (the page clears the choice when the person
    /// edits the text); else the typed text.
    fn send_body(&self, conversation: &str) -> messages::SendBody {
        let text =
            (!self.text.trim().is_empty() && self.template_id.is_none()).then(|| self.text.clone());
        messages::SendBody {
            text,
            template_id: self.template_id,
            values: Default::default(),
            purpose: None,
            force_secure: self.force_secure,
            kind: None,
            conversation_id: conversation.parse().ok(),
            attachments: self
                .files
                .iter()
                .map(|(name, bytes)| messages::AttachmentUpload {
                    file_name: Some(name.clone()),
                    content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                })
                .collect(),
        }
    }

    /// What makes two submits the same request (same key and same content: one message).
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.text.as_bytes());
        h.update([0]);
        h.update(self.template_id.map(|t| t.to_string()).unwrap_or_default());
        h.update([u8::from(self.force_secure)]);
        for (name, bytes) in &self.files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(Sha256::digest(bytes));
        }
        h.finalize().into()
    }
}

/// Reads the composer: a multipart form (with files) or a plain form.
async fn composed(req: Request, state: &AppState) -> Result<Composed, ApiError> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut out = Composed::default();
    if is_multipart {
        let mut parts = Multipart::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("the form could not be read"))?;
        loop {
            let field = match parts.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too-large",
                        "Too large",
                        "the attachments are too large to send",
                    ));
                }
                Err(_) => return Err(ApiError::bad_request("the form could not be read")),
            };
            let name = field.name().unwrap_or("").to_owned();
            if name == "attachments" {
                let file_name = field.file_name().unwrap_or("").to_owned();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|_| ApiError::bad_request("an attachment could not be read"))?;
                if !bytes.is_empty() {
                    out.files.push((file_name, bytes.to_vec()));
                }
            } else {
                let value = field
                    .text()
                    .await
                    .map_err(|_| ApiError::bad_request("the form could not be read"))?;
                out.set(&name, value);
            }
        }
    } else {
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("the form could not be read"))?;
        for (name, value) in fields {
            out.set(&name, value);
        }
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "staff/route_decision.html")]
struct RouteDecision {
    headline: String,
    reasons: Vec<String>,
    explanation: Vec<String>,
    rendered: Option<String>,
    error: bool,
}

/// "Will go by secure link: mentions a medication (metformin)".
fn headline(p: &PreviewView) -> String {
    let how = match (p.route.as_str(), p.delivery.as_str()) {
        (_, "direct_sms") => "Will go by text message",
        (_, "secure_with_notification") => "Will go by secure link",
        _ => "Will stay in the secure portal (no notification can be sent)",
    };
    let why: Vec<&str> = p.reasons.iter().map(|r| r.explanation.as_str()).collect();
    if why.is_empty() || p.delivery == "direct_sms" {
        how.to_owned()
    } else {
        format!("{how}: {}", why.join("; "))
    }
}

pub(crate) async fn preview(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let form = match composed(req, &state).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let idle = RouteDecision {
        headline: "Type a message to see how it will be sent.".into(),
        reasons: Vec::new(),
        explanation: Vec::new(),
        rendered: None,
        error: false,
    };
    if form.text.trim().is_empty() && form.template_id.is_none() {
        return page.render(&idle);
    }
    let result = messages::preview(
        State(state),
        Extension(principal),
        Path(form.patient_id.clone()),
        body(form.send_body(&id)),
    )
    .await;
    let view = match result {
        Ok(Json(p)) => RouteDecision {
            headline: headline(&p),
            reasons: p.reasons.iter().map(|r| r.explanation.clone()).collect(),
            explanation: p.explanation.clone(),
            rendered: form.template_id.map(|_| p.text.clone()),
            error: false,
        },
        Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::FORBIDDEN => {
            return e.into_response();
        }
        Err(e) => RouteDecision {
            headline: message(&e),
            error: true,
            ..idle
        },
    };
    page.render(&view)
}

pub(crate) async fn send(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let ctx = Ctx {
        state: state.clone(),
        principal: principal.clone(),
        client: client.clone(),
        session: session.map(|s| s.0),
    };
    let refused = |text: String, error: String| Drafts {
        text,
        composer_error: Some(error),
        ..Drafts::default()
    };
    // htmx swaps only successful answers: a refused form comes back as 200 to htmx.
    let refused_status = if page.htmx {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let form = match composed(req, &state).await {
        Ok(f) => f,
        Err(e) => {
            let drafts = refused(String::new(), message(&e));
            return render_conversation(&page, &ctx, &id, drafts, refused_status).await;
        }
    };
    if form.text.trim().is_empty() && form.template_id.is_none() {
        let drafts = refused(
            String::new(),
            "Write a message or choose a saved reply.".into(),
        );
        return render_conversation(&page, &ctx, &id, drafts, refused_status).await;
    }
    let key = (!form.idempotency_key.is_empty()).then(|| {
        let mut h = Sha256::new();
        h.update(b"salve:page-send:");
        h.update(form.idempotency_key.as_bytes());
        <[u8; 32]>::from(h.finalize())
    });
    let body = JsonBody {
        value: form.send_body(&id),
        sha256: form.digest(),
    };
    let result = messages::send(
        State(state),
        Extension(principal),
        Extension(client),
        IdempotencyKey(key),
        Path(form.patient_id.clone()),
        body,
    )
    .await;
    match result {
        Ok(_) => page.redirect(&format!("/inbox/{id}?sent=1")),
        Err(e)
            if matches!(
                e.status,
                StatusCode::BAD_REQUEST
                    | StatusCode::UNPROCESSABLE_ENTITY
                    | StatusCode::PAYLOAD_TOO_LARGE
                    | StatusCode::CONFLICT
            ) =>
        {
            let drafts = refused(form.text.clone(), message(&e));
            render_conversation(&page, &ctx, &id, drafts, refused_status).await
        }
        Err(e) => e.into_response(),
    }
}

// ---- notes, assignment, state ---------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct NoteForm {
    text: Option<String>,
}

pub(crate) async fn note(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    let text = f.text.unwrap_or_default();
    let result = messages::note(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client.clone()),
        Path(id.clone()),
        body(messages::NoteBody { text: text.clone() }),
    )
    .await;
    match result {
        Ok(_) => page.redirect(&format!("/inbox/{id}?noted=1")),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let ctx = Ctx {
                state,
                principal,
                client,
                session: session.map(|s| s.0),
            };
            let drafts = Drafts {
                note: text,
                note_error: Some(message(&e)),
                ..Drafts::default()
            };
            render_conversation(&page, &ctx, &id, drafts, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct AssignForm {
    assignee: Option<String>,
}

pub(crate) async fn assign(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    Form(f): Form<AssignForm>,
) -> Response {
    let raw = f.assignee.unwrap_or_default();
    let (user_id, team_id) = match raw.split_once(':') {
        Some(("user", u)) => (u.parse().ok(), None),
        Some(("team", t)) => (None, t.parse().ok()),
        _ => (None, None),
    };
    if !raw.is_empty() && user_id.is_none() && team_id.is_none() {
        return ApiError::bad_request("choose someone from the list").into_response();
    }
    match messages::assign(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id.clone()),
        body(messages::AssignBody { user_id, team_id }),
    )
    .await
    {
        Ok(_) => page.redirect(&format!("/inbox/{id}?updated=1")),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct StateForm {
    state: Option<String>,
    snooze_hours: Option<String>,
}

/// How long a conversation may be snoozed for from the page (hours).
const SNOOZE_HOURS: &[i64] = &[1, 4, 24, 72, 168];

pub(crate) async fn set_state(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    Form(f): Form<StateForm>,
) -> Response {
    let new_state = f.state.unwrap_or_default();
    let snoozed_until = if new_state == "snoozed" {
        let hours = f
            .snooze_hours
            .as_deref()
            .and_then(|h| h.parse::<i64>().ok())
            .filter(|h| SNOOZE_HOURS.contains(h));
        let Some(hours) = hours else {
            return ApiError::bad_request("choose how long to snooze for").into_response();
        };
        let until = state.clock.now() + time::Duration::hours(hours);
        Some(messages::fmt_time(until))
    } else {
        None
    };
    match messages::set_state(
        State(state),
        Extension(principal),
        Extension(client),
        Path(id.clone()),
        body(messages::StateBody {
            state: new_state,
            snoozed_until,
        }),
    )
    .await
    {
        Ok(_) => page.redirect(&format!("/inbox/{id}?updated=1")),
        Err(e) => e.into_response(),
    }
}

// ---- break-glass ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct BreakGlassForm {
    category: Option<String>,
    reason: Option<String>,
}

pub(crate) async fn break_glass(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    Form(f): Form<BreakGlassForm>,
) -> Response {
    let frame = match frame(&state, &principal, session.as_deref(), "/inbox").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let patient = match async {
        let practice = practice(&principal)?;
        let conv = conversation_id(&id)?;
        state
            .store
            .break_glass_patient(practice, &principal, conv)
            .await
            .map_err(|_| ApiError::not_found("conversation"))
    }
    .await
    {
        Ok(p) => p,
        // Not restricted (any more), or no such conversation: the page itself says which.
        Err(_) => return page.redirect(&format!("/inbox/{id}")),
    };
    let category = f.category.unwrap_or_default();
    let reason = f.reason.unwrap_or_default();
    let result = oversight::break_glass(
        State(state),
        Extension(principal),
        Extension(client),
        Path(patient.to_string()),
        body(oversight::BreakGlassBody {
            category: category.clone(),
            reason: reason.clone(),
        }),
    )
    .await;
    match result {
        Ok(_) => page.redirect(&format!("/inbox/{id}")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let text = e
                .errors
                .iter()
                .map(|f| match f.field.as_str() {
                    "category" => "Choose the kind of emergency access.".to_owned(),
                    "reason" => "Write a reason of 10 to 1000 characters.".to_owned(),
                    _ => format!("{}: expected {}", f.field, f.expected),
                })
                .collect::<Vec<_>>()
                .join(" ");
            render_break_glass(&page, &frame, &id, reason, Some((text, &category)))
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_map_to_the_inbox_query() {
        assert_eq!(filter_of(Some("mine")), "mine");
        assert_eq!(filter_of(Some("nonsense")), "open");
        assert_eq!(filter_of(None), "open");
        let q = inbox_query("mine");
        assert_eq!(q.assignment.as_deref(), Some("mine"));
        assert_eq!(q.state.as_deref(), Some("open"));
        assert_eq!(inbox_query("urgent").urgent, Some(true));
        assert_eq!(inbox_query("closed").state.as_deref(), Some("closed"));
        assert!(inbox_query("all").state.is_none());
    }

    #[test]
    fn times_show_in_the_practice_zone() {
        assert_eq!(
            local_time("2026-11-25T15:05:00Z", "America/Chicago"),
            "Nov 25, 09:05"
        );
        assert_eq!(local_time("2026-11-25T15:05:00Z", ""), "Nov 25, 15:05");
    }

    #[test]
    fn sizes_are_readable() {
        assert_eq!(size(10), "1 KB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MB");
    }
}

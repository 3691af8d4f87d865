//! The auditor's pages: search the practice's audit log (and export it as CSV), a patient's
//! access report, the break-glass and consent reports, and hash-chain verification. Every page
//! requires `AuditRead` (the auditor role; admins do not hold it: separation of duties).

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use salve_core::permissions::{Operation, Principal};
use salve_core::{PatientId, PracticeId, UserId};
use salve_store::audit_reports::{
    AuditEntry, AuditFilter, MAX_EXPORT_ROWS, describe_action, neutralize_cell,
};
use serde::Deserialize;

use crate::AppState;
use crate::api::{oversight, practice_of};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::routes::Access;
use crate::web::frame::StaffFrame;
use crate::web::{Page, PageRoute, page};

mod format;

use format::{Clock, date_bounds};

/// Rows on one page of search results.
const PAGE_ROWS: usize = 50;

pub(crate) fn routes() -> Vec<PageRoute> {
    let audit = Access::Op(Operation::AuditRead);
    vec![
        page(Method::GET, "/audit", audit, get(search)),
        page(
            Method::POST,
            "/audit/find-patient",
            audit,
            post(find_patient),
        ),
        page(
            Method::GET,
            "/audit/patients/{id}",
            audit,
            get(patient_report),
        ),
        page(Method::GET, "/audit/break-glass", audit, get(break_glass)),
        page(
            Method::POST,
            "/audit/break-glass/{id}/review",
            Access::Op(Operation::BreakGlassReview),
            post(review_break_glass),
        ),
        page(Method::GET, "/audit/consent", audit, get(consent)),
        page(Method::GET, "/audit/verify", audit, get(verify_form)),
        page(Method::POST, "/audit/verify", audit, post(verify)),
        page(Method::GET, "/audit/export.csv", audit, get(export)),
    ]
}

/// The search form's fields, as typed (also the export's query).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchParams {
    #[serde(default)]
    patient: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: Option<i64>,
}

/// A field's problem, shown beside it.
#[derive(Default)]
pub(crate) struct FieldErrors {
    patient: Option<String>,
    user: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    query: Option<String>,
}

impl FieldErrors {
    fn any(&self) -> bool {
        self.patient.is_some()
            || self.user.is_some()
            || self.action.is_some()
            || self.from.is_some()
            || self.to.is_some()
    }
}

fn parse_filter(
    params: &SearchParams,
    clock: &Clock,
    actions: &[String],
) -> (AuditFilter, FieldErrors) {
    let mut errors = FieldErrors::default();
    let mut filter = AuditFilter::default();
    let patient = params.patient.trim();
    if !patient.is_empty() {
        match patient.parse::<PatientId>() {
            Ok(p) => filter.patient = Some(p),
            Err(_) => {
                errors.patient = Some("Choose the patient again: find them by name below.".into())
            }
        }
    }
    let user = params.user.trim();
    if !user.is_empty() {
        match user.parse::<UserId>() {
            Ok(u) => filter.user = Some(u),
            Err(_) => errors.user = Some("Choose a staff member from the list.".into()),
        }
    }
    let action = params.action.trim();
    if !action.is_empty() {
        if actions.iter().any(|a| a == action) {
            filter.action = Some(action.to_owned());
        } else {
            errors.action = Some("Choose an action from the list.".into());
        }
    }
    let from = params.from.trim();
    if !from.is_empty() {
        match date_bounds(clock, from) {
            Some((start, _)) => filter.from = Some(start),
            None => errors.from = Some("Enter a date as YYYY-MM-DD.".into()),
        }
    }
    let to = params.to.trim();
    if !to.is_empty() {
        match date_bounds(clock, to) {
            Some((_, end)) => filter.to = Some(end),
            None => errors.to = Some("Enter a date as YYYY-MM-DD.".into()),
        }
    }
    if let (Some(f), Some(t)) = (filter.from, filter.to)
        && f >= t
        && errors.to.is_none()
    {
        errors.to = Some("The end date must be on or after the start date.".into());
    }
    (filter, errors)
}

/// The filters as a query string (without `before`), for paging and the export link.
fn filter_query(params: &SearchParams) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("patient", &params.patient),
        ("user", &params.user),
        ("action", &params.action),
        ("from", &params.from),
        ("to", &params.to),
    ] {
        if !v.trim().is_empty() {
            q.append_pair(k, v.trim());
        }
    }
    q.finish()
}

pub(crate) struct Choice {
    value: String,
    label: String,
    selected: bool,
}

pub(crate) struct Row {
    at: String,
    actor: String,
    role: String,
    action: String,
    code: String,
    target: &'static str,
    patient: Option<String>,
    outcome: String,
    ip: String,
}

fn row(clock: &Clock, e: AuditEntry) -> Row {
    Row {
        at: clock.show(e.at),
        actor: e.actor.name,
        role: e.actor.role,
        action: e.action_label,
        code: e.action,
        target: e.target_kind,
        patient: e.patient.map(|p| p.to_string()),
        outcome: e.outcome,
        ip: e.ip.unwrap_or_default(),
    }
}

pub(crate) struct Candidate {
    id: String,
    name: String,
    birth_date: String,
    mrn: String,
}

#[derive(Template)]
#[template(path = "audit/search.html")]
struct SearchPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    params: &'a SearchParams,
    errors: &'a FieldErrors,
    users: Vec<Choice>,
    actions: Vec<Choice>,
    /// The chosen patient, named when the auditor just picked them.
    patient_chosen: bool,
    query: String,
    candidates: Option<Vec<Candidate>>,
    rows: Vec<Row>,
    searched: bool,
    older: Option<String>,
    export: String,
    zone: String,
}

struct Ctx {
    practice: PracticeId,
    clock: Clock,
    frame: StaffFrame,
}

async fn context(
    state: &AppState,
    principal: &Principal,
    session: &SessionCaller,
) -> Result<Ctx, ApiError> {
    let practice = practice_of(principal)?;
    let frame = StaffFrame::load(state, principal, session, "/audit").await?;
    let zone = state.store.practice(practice).await?.time_zone;
    let now = salve_core::clock::to_micros(state.clock.now());
    Ok(Ctx {
        practice,
        clock: Clock::new(&zone, now),
        frame,
    })
}

async fn choices(
    state: &AppState,
    practice: PracticeId,
    params: &SearchParams,
) -> Result<(Vec<Choice>, Vec<Choice>, Vec<String>), ApiError> {
    let users = state
        .store
        .staff_members(practice)
        .await?
        .into_iter()
        .map(|m| {
            let value = m.id.to_string();
            Choice {
                selected: value == params.user.trim(),
                label: format!("{} ({})", m.name, m.role),
                value,
            }
        })
        .collect();
    let stored = state.store.audit_actions(practice).await?;
    let mut actions: Vec<Choice> = stored
        .iter()
        .map(|a| Choice {
            selected: a == params.action.trim(),
            label: describe_action(a),
            value: a.clone(),
        })
        .collect();
    actions.sort_by_key(|c| c.label.to_lowercase());
    Ok((users, actions, stored))
}

#[allow(clippy::too_many_arguments)]
async fn render_search(
    state: &AppState,
    page: &Page,
    ctx: &Ctx,
    params: &SearchParams,
    query: String,
    candidates: Option<Vec<Candidate>>,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let (users, actions, stored) = choices(state, ctx.practice, params).await?;
    let (filter, filter_errors) = parse_filter(params, &ctx.clock, &stored);
    let searched = candidates.is_none() && !filter_errors.any();
    let (mut rows, mut older) = (Vec::new(), None);
    if searched {
        let found = state
            .store
            .audit_search(ctx.practice, &filter, params.before, PAGE_ROWS)
            .await?;
        older = found.next_before.map(|b| {
            let q = filter_query(params);
            if q.is_empty() {
                format!("/audit?before={b}")
            } else {
                format!("/audit?{q}&before={b}")
            }
        });
        rows = found
            .entries
            .into_iter()
            .map(|e| row(&ctx.clock, e))
            .collect();
    }
    let errors = FieldErrors {
        query: errors.query,
        ..filter_errors
    };
    let export = format!("/audit/export.csv?{}", filter_query(params));
    let status = if errors.any() && status == StatusCode::OK {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        status
    };
    Ok(page.render_with_status(
        status,
        &SearchPage {
            page,
            frame: &ctx.frame,
            params,
            errors: &errors,
            users,
            actions,
            patient_chosen: filter.patient.is_some(),
            query,
            candidates,
            rows,
            searched,
            older,
            export,
            zone: ctx.clock.zone_name(),
        },
    ))
}

/// GET /audit: the search form, and the matching rows newest first.
async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    page: Page,
    Query(params): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let ctx = context(&state, &principal, &session).await?;
    render_search(
        &state,
        &page,
        &ctx,
        &params,
        String::new(),
        None,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

struct FindForm {
    query: String,
}

/// POST /audit/find-patient: finds patients by name (sent in the body, never in a URL) through
/// the patient search, and lists them to choose from.
async fn find_patient(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    Extension(client): Extension<ClientInfo>,
    page: Page,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form = FindForm {
        query: form_urlencoded::parse(&body)
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default(),
    };
    let ctx = context(&state, &principal, &session).await?;
    let params = SearchParams::default();
    let result = state
        .store
        .find_patients_for_audit(
            ctx.practice,
            &principal,
            &client.audit_context(),
            &form.query,
            20,
        )
        .await;
    let (candidates, errors) = match result {
        Ok(found) => (
            found
                .into_iter()
                .map(|p| Candidate {
                    id: p.id.to_string(),
                    name: format!(
                        "{} {}",
                        p.record.given_name.expose(),
                        p.record.family_name.expose()
                    ),
                    birth_date: p.record.birth_date.to_string(),
                    mrn: p
                        .record
                        .mrn
                        .as_ref()
                        .map(|m| m.expose().clone())
                        .unwrap_or_default(),
                })
                .collect(),
            FieldErrors::default(),
        ),
        Err(salve_store::StoreError::Invalid(_)) => (
            Vec::new(),
            FieldErrors {
                query: Some("Enter 2 to 200 characters of the patient's name.".into()),
                ..FieldErrors::default()
            },
        ),
        Err(e) => return Err(e.into()),
    };
    let status = if errors.query.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render_search(
        &state,
        &page,
        &ctx,
        &params,
        form.query,
        Some(candidates),
        errors,
        status,
    )
    .await
}

pub(crate) struct AccessRow {
    at: String,
    actor: String,
    role: String,
    action: &'static str,
    outcome: String,
}

#[derive(Template)]
#[template(path = "audit/patient.html")]
struct PatientPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    rows: Vec<AccessRow>,
    search: String,
    zone: String,
}

/// GET /audit/patients/{id}: who accessed this patient's data, in plain language.
async fn patient_report(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    page: Page,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ctx = context(&state, &principal, &session).await?;
    let patient: PatientId = crate::api::path_id(&id, "patient")?;
    if !state
        .store
        .patient_in_practice(ctx.practice, patient)
        .await?
    {
        return Err(ApiError::not_found("patient"));
    }
    let rows = state
        .store
        .access_report(ctx.practice, patient)
        .await?
        .into_iter()
        .map(|e| AccessRow {
            at: ctx.clock.show(e.at),
            actor: e.actor.name,
            role: e.actor.role,
            action: e.kind.label(),
            outcome: e.outcome,
        })
        .collect();
    Ok(page.render(&PatientPage {
        page: &page,
        frame: &ctx.frame,
        rows,
        search: format!("/audit?patient={patient}"),
        zone: ctx.clock.zone_name(),
    }))
}

pub(crate) struct GrantRow {
    id: String,
    granted_at: String,
    expires_at: String,
    active: bool,
    actor: String,
    role: String,
    category: String,
    reason: String,
    patient: String,
    review: Option<ReviewCell>,
    /// The note as typed and why it was refused, when this row's review form came back.
    error: Option<(String, &'static str)>,
}

pub(crate) struct ReviewCell {
    by: String,
    at: String,
    note: String,
}

/// Which accesses the report shows.
#[derive(Debug, Default, Deserialize)]
struct BreakGlassShow {
    #[serde(default)]
    show: String,
}

impl BreakGlassShow {
    /// `Some(false)`: still to review; `Some(true)`: reviewed; `None`: all.
    fn reviewed(&self) -> Option<bool> {
        match self.show.as_str() {
            "unreviewed" => Some(false),
            "reviewed" => Some(true),
            _ => None,
        }
    }
    fn value(&self) -> &'static str {
        match self.reviewed() {
            Some(false) => "unreviewed",
            Some(true) => "reviewed",
            None => "all",
        }
    }
}

#[derive(Template)]
#[template(path = "audit/break_glass.html")]
struct BreakGlassPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    rows: Vec<GrantRow>,
    zone: String,
    show: &'static str,
    can_review: bool,
    /// A refusal not tied to a form on the page (the access was already reviewed).
    notice: Option<&'static str>,
}

/// GET /audit/break-glass: every break-glass access with its reason and review (the API's
/// report), filtered by reviewed or not.
async fn break_glass(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    Query(show): Query<BreakGlassShow>,
    page: Page,
) -> Result<Response, ApiError> {
    render_break_glass(&state, &principal, &session, &show, page, None).await
}

async fn render_break_glass(
    state: &AppState,
    principal: &Principal,
    session: &SessionCaller,
    show: &BreakGlassShow,
    page: Page,
    error: Option<(String, String, &'static str)>,
) -> Result<Response, ApiError> {
    let ctx = context(state, principal, session).await?;
    let axum::Json(report) = oversight::break_glass_report(
        State(state.clone()),
        Extension(principal.clone()),
        Query(oversight::BreakGlassQuery {
            reviewed: show.reviewed(),
        }),
    )
    .await?;
    let members = state.store.staff_members(ctx.practice).await?;
    let now = salve_core::clock::to_micros(state.clock.now());
    let micros = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(salve_core::clock::to_micros)
            .unwrap_or_default()
    };
    let name_of = |id: uuid::Uuid| {
        members
            .iter()
            .find(|m| m.id.as_uuid() == id)
            .map_or_else(|| "Unknown staff member".to_owned(), |m| m.name.clone())
    };
    let rows: Vec<GrantRow> = report
        .grants
        .into_iter()
        .map(|g| {
            let member = members.iter().find(|m| m.id.as_uuid() == g.user_id);
            let expires = micros(&g.expires_at);
            let id = g.id.to_string();
            GrantRow {
                error: error
                    .as_ref()
                    .filter(|(row, _, _)| *row == id && g.review.is_none())
                    .map(|(_, note, why)| (note.clone(), *why)),
                id,
                granted_at: ctx.clock.show(micros(&g.granted_at)),
                expires_at: ctx.clock.show(expires),
                active: expires > now,
                actor: member.map_or_else(|| "Unknown staff member".into(), |m| m.name.clone()),
                role: member.map_or_else(|| "no longer a member".into(), |m| m.role.clone()),
                category: g.category.replace('_', " "),
                reason: g.reason,
                patient: g.patient_id.to_string(),
                review: g.review.map(|r| ReviewCell {
                    by: name_of(r.reviewed_by),
                    at: ctx.clock.show(micros(&r.reviewed_at)),
                    note: r.note,
                }),
            }
        })
        .collect();
    // Refused for a row that no longer has its form: said at the top instead.
    let notice = error
        .as_ref()
        .filter(|(row, _, _)| {
            !rows
                .iter()
                .any(|r: &GrantRow| r.error.is_some() && r.id == *row)
        })
        .map(|(_, _, why)| *why);
    let status = match &error {
        Some(_) if notice.is_some() => StatusCode::CONFLICT,
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::OK,
    };
    Ok(page.render_with_status(
        status,
        &BreakGlassPage {
            page: &page,
            frame: &ctx.frame,
            rows,
            zone: ctx.clock.zone_name(),
            show: show.value(),
            can_review: salve_core::permissions::authorize(
                principal,
                Operation::BreakGlassReview,
                None,
            ) == salve_core::permissions::Decision::Allow,
            notice,
        },
    ))
}

/// POST /audit/break-glass/{id}/review: the review form, through the API (which authorizes and
/// audits it); a refused note comes back on its row.
async fn review_break_glass(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    page: Page,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form = crate::web::admin::FormFields::parse(&body);
    let note = form.get("note");
    let show = BreakGlassShow {
        show: form.get("show"),
    };
    let result = oversight::review_break_glass(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        Path(id.clone()),
        crate::extract::JsonBody {
            value: oversight::BreakGlassReviewBody { note: note.clone() },
            sha256: [0; 32],
        },
    )
    .await;
    let why = match result {
        Ok(_) => {
            return Ok(page.redirect(&format!("/audit/break-glass?show={}", show.value())));
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            "Write a short note (up to 1000 characters) on what the review found."
        }
        Err(e) if e.status == StatusCode::CONFLICT => "This access was already reviewed.",
        Err(e) => return Err(e),
    };
    render_break_glass(
        &state,
        &principal,
        &session,
        &show,
        page,
        Some((id, note, why)),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct DateRange {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub(crate) struct ConsentRow {
    at: String,
    patient: String,
    by: String,
    role: String,
    channel: String,
    purpose: String,
    granted: bool,
    method: String,
    text_version: String,
}

#[derive(Template)]
#[template(path = "audit/consent.html")]
struct ConsentPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    from: &'a str,
    to: &'a str,
    from_error: Option<String>,
    to_error: Option<String>,
    rows: Vec<ConsentRow>,
    zone: String,
}

/// GET /audit/consent: consent grants and revocations across the practice.
async fn consent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    page: Page,
    Query(range): Query<DateRange>,
) -> Result<Response, ApiError> {
    let ctx = context(&state, &principal, &session).await?;
    let bound = |raw: &str, end: bool| -> Result<Option<i64>, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        date_bounds(&ctx.clock, raw)
            .map(|(s, e)| Some(if end { e } else { s }))
            .ok_or_else(|| "Enter a date as YYYY-MM-DD.".to_owned())
    };
    let from = bound(&range.from, false);
    let to = bound(&range.to, true);
    let (rows, status) = match (&from, &to) {
        (Ok(from), Ok(to)) => {
            let rows = state
                .store
                .consent_changes(ctx.practice, *from, *to)
                .await?
                .into_iter()
                .map(|c| ConsentRow {
                    at: ctx.clock.show(c.at),
                    patient: c.patient.to_string(),
                    by: c.recorded_by.name,
                    role: c.recorded_by.role,
                    channel: salve_core::consent::ConsentChannel::parse(&c.channel)
                        .map_or(c.channel.clone(), |ch| ch.label().to_owned()),
                    purpose: salve_core::consent::ConsentPurpose::parse(&c.purpose)
                        .map_or(c.purpose.clone(), |p| p.label().to_owned()),
                    granted: c.action == "grant",
                    method: c.method.replace('_', " "),
                    text_version: c.consent_text_version.unwrap_or_default(),
                })
                .collect();
            (rows, StatusCode::OK)
        }
        _ => (Vec::new(), StatusCode::UNPROCESSABLE_ENTITY),
    };
    Ok(page.render_with_status(
        status,
        &ConsentPage {
            page: &page,
            frame: &ctx.frame,
            from: range.from.trim(),
            to: range.to.trim(),
            from_error: from.err(),
            to_error: to.err(),
            rows,
            zone: ctx.clock.zone_name(),
        },
    ))
}

pub(crate) struct VerifyResult {
    ok: bool,
    chains: usize,
    rows: u64,
    checkpoints: u64,
    last_checkpoint: Option<String>,
    /// Problems on this practice's chain (and the system chain), in words.
    problems: Vec<String>,
    /// Problems on other practices' chains: counted, not shown.
    elsewhere: usize,
    anchor: String,
}

#[derive(Template)]
#[template(path = "audit/verify.html")]
struct VerifyPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    result: Option<VerifyResult>,
}

/// GET /audit/verify: what verification checks, and the button to run it.
async fn verify_form(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    page: Page,
) -> Result<Response, ApiError> {
    let ctx = context(&state, &principal, &session).await?;
    Ok(page.render(&VerifyPage {
        page: &page,
        frame: &ctx.frame,
        result: None,
    }))
}

/// POST /audit/verify: recomputes every chain, as `salve audit verify` does.
async fn verify(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    page: Page,
) -> Result<Response, ApiError> {
    let ctx = context(&state, &principal, &session).await?;
    let (anchored, anchor) = match &state.config.audit_anchor {
        Some(path) if path.exists() => match salve_store::read_anchor(path) {
            Ok(lines) => (Some(lines), "checked against the anchor file".to_owned()),
            Err(_) => (
                None,
                "the anchor file could not be read: ask the server operator to run `salve audit verify --anchor`".to_owned(),
            ),
        },
        Some(_) => (
            None,
            "no anchor file yet (no checkpoint has been written)".to_owned(),
        ),
        None => (
            None,
            "no anchor file is configured: deleting the newest rows together with their checkpoints cannot be detected here".to_owned(),
        ),
    };
    let report = state.store.verify_audit(anchored.as_deref()).await?;
    let own = salve_core::audit::ChainScope::Practice(ctx.practice).key();
    let (mine, elsewhere): (Vec<_>, Vec<_>) = report
        .problems
        .iter()
        .partition(|p| p.scope == own || p.scope == salve_core::audit::ChainScope::SYSTEM_KEY);
    let last_checkpoint = state
        .store
        .last_checkpoint(ctx.practice)
        .await?
        .map(|(seq, at)| format!("row {seq}, signed {}", ctx.clock.show(at)));
    Ok(page.render(&VerifyPage {
        page: &page,
        frame: &ctx.frame,
        result: Some(VerifyResult {
            ok: report.ok(),
            chains: report.chains,
            rows: report.rows,
            checkpoints: report.checkpoints,
            last_checkpoint,
            problems: mine
                .iter()
                .map(|p| {
                    let chain = if p.scope == own {
                        "This practice's log".to_owned()
                    } else {
                        "The server's log".to_owned()
                    };
                    match p.seq {
                        Some(seq) => format!("{chain}, row {seq}: {}", p.what),
                        None => format!("{chain}: {}", p.what),
                    }
                })
                .collect(),
            elsewhere: elsewhere.len(),
            anchor,
        }),
    }))
}

/// GET /audit/export.csv: the search as a CSV file (every matching row, up to the cap), each
/// cell neutralized against spreadsheet formulas. The export itself is audited.
async fn export(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(session): Extension<SessionCaller>,
    Extension(client): Extension<ClientInfo>,
    page: Page,
    Query(params): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let ctx = context(&state, &principal, &session).await?;
    let stored = state.store.audit_actions(ctx.practice).await?;
    let (filter, errors) = parse_filter(&params, &ctx.clock, &stored);
    if errors.any() {
        return render_search(
            &state,
            &page,
            &ctx,
            &params,
            String::new(),
            None,
            FieldErrors::default(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let found = state
        .store
        .audit_search(ctx.practice, &filter, None, MAX_EXPORT_ROWS)
        .await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, cells: &[&str]| {
        out.write_record(cells.iter().map(|c| neutralize_cell(c).into_owned()))
            .map_err(|e| ApiError::internal(format!("csv: {e}")))
    };
    write(
        &mut out,
        &[
            &format!("time ({})", ctx.clock.zone_name()),
            "actor",
            "role",
            "action",
            "action code",
            "target",
            "patient id",
            "outcome",
            "request ip",
        ],
    )?;
    let count = found.entries.len();
    for e in found.entries {
        let r = row(&ctx.clock, e);
        write(
            &mut out,
            &[
                &r.at,
                &r.actor,
                &r.role,
                &r.action,
                &r.code,
                r.target,
                r.patient.as_deref().unwrap_or_default(),
                &r.outcome,
                &r.ip,
            ],
        )?;
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::internal(format!("csv: {e}")))?;
    state
        .store
        .record_audit_export(
            ctx.practice,
            &principal,
            &client.audit_context(),
            filter.patient,
            count,
        )
        .await?;
    let day = ctx.clock.today();
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"salve-audit-{day}.csv\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

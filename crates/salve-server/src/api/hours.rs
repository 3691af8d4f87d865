//! Office hours and holidays, the response target and who is told of overdue conversations
//! (practice-admin settings), the first-response-time report, and what patients are told about
//! when to expect a reply.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use salve_core::hours::{DAY_KEYS, OfficeHours, OfficeHoursInput};
use salve_core::permissions::Principal;
use salve_core::system_messages::Language;
use salve_core::{FieldError, PracticeId, UserId};
use salve_store::{ResponseSettings, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::messages::fmt_time;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntervalBody {
    /// `HH:MM`, local time of the practice.
    pub start: String,
    /// `HH:MM` (up to `24:00`), after `start`.
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolidayBody {
    /// `YYYY-MM-DD`: closed all day.
    pub date: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfficeHoursBody {
    /// IANA zone; defaults to the practice's time zone.
    pub time_zone: Option<String>,
    /// Day (`mon` ... `sun`) -> opening intervals; a missing day is closed.
    pub weekly: BTreeMap<String, Vec<IntervalBody>>,
    #[serde(default)]
    pub holidays: Vec<HolidayBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OfficeHoursView {
    /// `false`: not set yet; the practice is treated as always open (no after-hours replies,
    /// response targets count every hour).
    pub configured: bool,
    pub time_zone: String,
    pub weekly: BTreeMap<String, Vec<IntervalBody>>,
    pub holidays: Vec<HolidayBody>,
    /// The line system messages use, in English and Spanish.
    pub hours_text_en: Option<String>,
    pub hours_text_es: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseSettingsBody {
    /// Business minutes a patient may wait for a staff reply (default 240).
    pub target_minutes: i64,
    /// Staff told (in the inbox and by a content-free email) when a conversation is overdue.
    #[serde(default)]
    pub escalation_recipients: Vec<uuid::Uuid>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// RFC 3339: the period's start (inclusive); default 30 days before `to`.
    pub from: Option<String>,
    /// RFC 3339: the period's end (exclusive); default now.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseTimeReport {
    /// Waiting episodes that started in the period.
    pub episodes: usize,
    /// Of those, the ones staff answered.
    pub answered: usize,
    /// Business seconds to the first staff reply, over answered episodes (nearest rank).
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
    /// Conversations overdue right now.
    pub overdue_now: usize,
}

/// What the portal tells a patient about when to expect a reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpectedReply {
    /// The office is open now.
    pub open: bool,
    /// A sentence for the patient, in their language.
    pub text: String,
    /// RFC 3339: when the office opens again (when closed).
    pub reopens_at: Option<String>,
}

fn hours_view(hours: Option<&OfficeHours>, default_zone: &str) -> OfficeHoursView {
    let Some(h) = hours else {
        return OfficeHoursView {
            configured: false,
            time_zone: default_zone.to_owned(),
            weekly: BTreeMap::new(),
            holidays: Vec::new(),
            hours_text_en: None,
            hours_text_es: None,
        };
    };
    let weekly = h
        .weekly()
        .iter()
        .enumerate()
        .filter(|(_, intervals)| !intervals.is_empty())
        .map(|(day, intervals)| {
            (
                DAY_KEYS[day].to_owned(),
                intervals
                    .iter()
                    .map(|i| IntervalBody {
                        start: i.start_hhmm(),
                        end: i.end_hhmm(),
                    })
                    .collect(),
            )
        })
        .collect();
    OfficeHoursView {
        configured: true,
        time_zone: h.time_zone().to_owned(),
        weekly,
        holidays: h
            .holidays()
            .into_iter()
            .map(|d| HolidayBody {
                date: d.date.to_string(),
                name: d.name,
            })
            .collect(),
        hours_text_en: Some(h.hours_text(Language::En)),
        hours_text_es: Some(h.hours_text(Language::Es)),
    }
}

/// The practice's office hours and holidays.
#[utoipa::path(get, path = "/api/v1/practice/office-hours", tag = "settings",
    responses((status = 200, body = OfficeHoursView)), security(("session" = [])))]
pub async fn office_hours(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<OfficeHoursView>, ApiError> {
    let practice = practice_of(&principal)?;
    let hours = state.store.office_hours(practice).await?;
    let zone = state.store.practice(practice).await?.time_zone;
    Ok(axum::Json(hours_view(hours.as_ref(), &zone)))
}

/// Replace the office hours and holidays (audited). Bad times, overlapping intervals, an
/// unknown zone or a week without opening time are refused, naming the field.
#[utoipa::path(put, path = "/api/v1/practice/office-hours", tag = "settings", request_body = OfficeHoursBody,
    responses((status = 200, body = OfficeHoursView), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn set_office_hours(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<OfficeHoursBody>,
) -> Result<axum::Json<OfficeHoursView>, ApiError> {
    let practice = practice_of(&principal)?;
    let b = body.value;
    let zone = match b.time_zone {
        Some(zone) => zone,
        None => state.store.practice(practice).await?.time_zone,
    };
    let input = OfficeHoursInput {
        time_zone: zone,
        weekly: b
            .weekly
            .into_iter()
            .map(|(day, intervals)| {
                (
                    day,
                    intervals.into_iter().map(|i| (i.start, i.end)).collect(),
                )
            })
            .collect(),
        holidays: b.holidays.into_iter().map(|h| (h.date, h.name)).collect(),
    };
    let hours = OfficeHours::parse(&input).map_err(ApiError::validation)?;
    state
        .store
        .set_office_hours(practice, &principal, &client.audit_context(), &hours)
        .await?;
    Ok(axum::Json(hours_view(Some(&hours), hours.time_zone())))
}

/// The response target and escalation recipients.
#[utoipa::path(get, path = "/api/v1/practice/response-settings", tag = "settings",
    responses((status = 200, body = ResponseSettingsBody)), security(("session" = [])))]
pub async fn response_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<ResponseSettingsBody>, ApiError> {
    let s = state
        .store
        .response_settings(practice_of(&principal)?)
        .await?;
    Ok(axum::Json(ResponseSettingsBody {
        target_minutes: s.target_minutes,
        escalation_recipients: s
            .escalation_recipients
            .iter()
            .map(|u| u.as_uuid())
            .collect(),
    }))
}

/// Change the response target (business minutes) and who is told of overdue conversations:
/// active staff of the practice who work the inbox (audited).
#[utoipa::path(put, path = "/api/v1/practice/response-settings", tag = "settings", request_body = ResponseSettingsBody,
    responses((status = 204), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn set_response_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<ResponseSettingsBody>,
) -> Result<StatusCode, ApiError> {
    use salve_core::response_time::{MAX_TARGET_MINUTES, MIN_TARGET_MINUTES};
    let b = body.value;
    if !(MIN_TARGET_MINUTES..=MAX_TARGET_MINUTES).contains(&b.target_minutes) {
        return Err(ApiError::validation(vec![FieldError::new(
            "target_minutes",
            format!("a whole number of minutes from {MIN_TARGET_MINUTES} to {MAX_TARGET_MINUTES}"),
        )]));
    }
    let settings = ResponseSettings {
        target_minutes: b.target_minutes,
        escalation_recipients: b
            .escalation_recipients
            .into_iter()
            .map(UserId::from_uuid)
            .collect(),
    };
    match state
        .store
        .set_response_settings(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &settings,
        )
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::Invalid(_)) => Err(ApiError::validation(vec![FieldError::new(
            "escalation_recipients",
            "active staff of this practice who work the inbox (not auditors)",
        )])),
        Err(e) => Err(e.into()),
    }
}

fn parse_time(field: &str, raw: &str) -> Result<time::OffsetDateTime, ApiError> {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339).map_err(|_| {
        ApiError::validation(vec![FieldError::new(field, "an RFC 3339 date and time")])
    })
}

/// First-response times of the waiting episodes that started in `[from, to)`, in business time
/// (median and 90th percentile by nearest rank), and how many conversations are overdue now.
/// For the practice admin and the auditor; no patient content (audited).
#[utoipa::path(get, path = "/api/v1/reports/response-time", tag = "reports", params(ReportQuery),
    responses((status = 200, body = ResponseTimeReport), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn response_time_report(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Query(q): Query<ReportQuery>,
) -> Result<axum::Json<ResponseTimeReport>, ApiError> {
    let to = match q.to.as_deref() {
        Some(raw) => parse_time("to", raw)?,
        None => state.clock.now(),
    };
    let from = match q.from.as_deref() {
        Some(raw) => parse_time("from", raw)?,
        None => to - time::Duration::days(30),
    };
    if to <= from {
        return Err(ApiError::validation(vec![FieldError::new(
            "to",
            "a time after `from`",
        )]));
    }
    let report = state
        .store
        .response_time_report(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            from,
            to,
        )
        .await?;
    Ok(axum::Json(ResponseTimeReport {
        episodes: report.stats.episodes,
        answered: report.stats.answered,
        median_seconds: report.stats.median_seconds,
        p90_seconds: report.stats.p90_seconds,
        overdue_now: report.overdue_now,
    }))
}

/// What the portal tells a patient of `practice` (in `lang`) about when to expect a reply:
/// within office hours, the promised response time; when closed, that the office is closed and
/// when it reopens. A practice without office hours is always open.
pub(crate) async fn expected_reply(
    state: &AppState,
    practice: PracticeId,
    lang: Language,
) -> Result<ExpectedReply, ApiError> {
    let now = state.clock.now();
    let hours = state.store.office_hours(practice).await?;
    let settings = state.store.messaging_settings(practice).await?;
    let target = state
        .store
        .response_settings(practice)
        .await?
        .target_minutes;
    let promise = match (lang, settings.expected_reply_text.trim()) {
        (Language::En, text) if !text.is_empty() => text.to_owned(),
        _ => salve_core::response_time::target_phrase(target, lang),
    };
    let open = hours.as_ref().is_none_or(|h| h.is_open(now));
    if open {
        let text = match lang {
            Language::En => format!("We usually reply {promise}."),
            Language::Es => format!("Normalmente respondemos {promise}."),
        };
        return Ok(ExpectedReply {
            open,
            text,
            reopens_at: None,
        });
    }
    let hours = hours
        .as_ref()
        .ok_or_else(|| ApiError::internal("no hours"))?;
    let when = hours.reopens_text(now, lang);
    let text = match (lang, &when) {
        (Language::En, Some(when)) => {
            format!(
                "Our office is closed now and reopens {when}. We will reply {promise} after that. If this is an emergency, call 911."
            )
        }
        (Language::Es, Some(when)) => {
            format!(
                "Nuestra oficina está cerrada y abre de nuevo el {when}. Le responderemos {promise} a partir de entonces. Si es una emergencia, llame al 911."
            )
        }
        (Language::En, None) => {
            "Our office is closed now. If this is an emergency, call 911.".to_owned()
        }
        (Language::Es, None) => {
            "Nuestra oficina está cerrada. Si es una emergencia, llame al 911.".to_owned()
        }
    };
    Ok(ExpectedReply {
        open,
        text,
        reopens_at: hours.next_open(now).map(fmt_time),
    })
}

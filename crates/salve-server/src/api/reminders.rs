//! Reminder settings (schedules per appointment type, the daily cap, the late cut-off, the
//! Spanish template), a visit's reminders, what the cap held back, and releasing one. The
//! rules (when a reminder is due, what the cap holds) are salve-core's `reminders`.

use axum::Extension;
use axum::extract::{Path, State};
use salve_core::audit::{Action, AuditEvent, ChainScope, Outcome};
use salve_core::permissions::Principal;
use salve_core::reminders::{Limits, ReminderTemplate, Schedule, segments};
use salve_core::templates::{Template, TemplateValues, Variable};
use salve_core::{AppointmentId, CatalogItemId, FieldError, ReminderId};
use salve_store::{Reminder, ReminderSettings};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{path_id, practice_of, rfc3339};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeSchedule {
    pub appointment_type_id: uuid::Uuid,
    /// e.g. `72h,24h,same_day@07:00`; empty for no reminders.
    pub schedule: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// Hours before the visit (whole days keep the wall time across DST), or
    /// `same_day@HH:MM`; default `72h,24h`.
    pub default_schedule: String,
    /// Reminders per appointment per local day (default 1); what it holds back is listed.
    pub daily_cap: u32,
    /// A late reminder is not sent closer to the visit than this (default 120).
    pub min_lead_minutes: u32,
    /// Spanish reminders without accents: GSM-7, fewer segments.
    #[serde(default)]
    pub spanish_unaccented: bool,
    #[serde(default)]
    pub by_type: Vec<TypeSchedule>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateSample {
    /// `en`, `es` or `es_unaccented`.
    pub template: String,
    pub body: String,
    /// The template rendered with sample values, and its length in SMS segments.
    pub sample: String,
    pub segments: usize,
    /// `gsm7` or `ucs2`.
    pub encoding: String,
}

#[derive(Serialize, ToSchema)]
pub struct SettingsView {
    pub default_schedule: String,
    pub daily_cap: u32,
    pub min_lead_minutes: u32,
    pub spanish_unaccented: bool,
    pub by_type: Vec<TypeSchedule>,
    pub templates: Vec<TemplateSample>,
}

#[derive(Serialize, ToSchema)]
pub struct ReminderView {
    pub id: uuid::Uuid,
    pub appointment_id: uuid::Uuid,
    pub patient_id: uuid::Uuid,
    /// `72h`, `24h`, `same_day@07:00`...
    pub slot: String,
    pub starts_at: String,
    pub due_at: String,
    /// `sent`, `held_by_cap`, `too_late`, `superseded`, `withdrawn` or `not_sent`.
    pub state: String,
    pub state_reason: Option<String>,
    pub message_id: Option<uuid::Uuid>,
    /// `direct_sms`, `secure_with_notification`...
    pub delivery: Option<String>,
    pub awaits_answer: bool,
    pub answer: Option<String>,
    pub decided_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReminderList {
    pub reminders: Vec<ReminderView>,
}

fn view(r: Reminder) -> ReminderView {
    ReminderView {
        id: r.id.as_uuid(),
        appointment_id: r.appointment.as_uuid(),
        patient_id: r.patient.as_uuid(),
        slot: r.slot,
        starts_at: rfc3339(salve_core::clock::to_micros(r.starts_at)),
        due_at: rfc3339(salve_core::clock::to_micros(r.due_at)),
        state: r.state.as_str().into(),
        state_reason: r.state_reason,
        message_id: r.message.map(|m| m.as_uuid()),
        delivery: r.delivery,
        awaits_answer: r.awaits_answer,
        answer: r.answer,
        decided_at: rfc3339(salve_core::clock::to_micros(r.created_at)),
    }
}

/// Each template with sample values: what staff check the segment count on.
fn samples() -> Vec<TemplateSample> {
    ReminderTemplate::ALL
        .into_iter()
        .map(|t| {
            let mut values = TemplateValues::new();
            let (date, time) = match t.language() {
                salve_core::system_messages::Language::En => ("Thu Dec 3", "9:30 AM"),
                salve_core::system_messages::Language::Es => ("jue 3 dic", "9:30"),
            };
            values
                .set(Variable::PracticeSenderName, "Oak Street Clinic")
                .set(Variable::PracticePhone, "(312) 555-0100")
                .set(Variable::AppointmentDate, date)
                .set(Variable::AppointmentTime, time)
                .set_catalog(Variable::AppointmentType, "Annual checkup", true)
                .set_catalog(Variable::AppointmentLocation, "Main St office", true)
                .set_catalog(Variable::AppointmentProvider, "Dr. Rivera", true);
            let sample = Template::new(t.body())
                .parse()
                .ok()
                .and_then(|p| p.render(&values).ok())
                .map(|r| r.text)
                .unwrap_or_default();
            TemplateSample {
                template: t.as_str().into(),
                body: t.body().into(),
                segments: segments(&sample),
                encoding: if salve_core::system_messages::is_gsm7(&sample) {
                    "gsm7"
                } else {
                    "ucs2"
                }
                .into(),
                sample,
            }
        })
        .collect()
}

fn settings_view(s: ReminderSettings) -> SettingsView {
    SettingsView {
        default_schedule: s.default_schedule.to_text(),
        daily_cap: s.limits.daily_cap,
        min_lead_minutes: s.limits.min_lead_minutes,
        spanish_unaccented: s.spanish_unaccented,
        by_type: s
            .by_type
            .into_iter()
            .map(|(t, schedule)| TypeSchedule {
                appointment_type_id: t.as_uuid(),
                schedule: schedule.to_text(),
            })
            .collect(),
        templates: samples(),
    }
}

/// The practice's reminder settings, with each template's length in SMS segments.
#[utoipa::path(get, path = "/api/v1/reminders/settings", tag = "appointments",
    responses((status = 200, body = SettingsView)), security(("bearer" = ["appointments:read"]), ("session" = [])))]
pub async fn settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<SettingsView>, ApiError> {
    let practice = practice_of(&principal)?;
    Ok(axum::Json(settings_view(
        state.store.reminder_settings(practice).await?,
    )))
}

/// Replaces the reminder settings (practice admins).
#[utoipa::path(put, path = "/api/v1/reminders/settings", tag = "appointments", request_body = SettingsBody,
    responses((status = 200, body = SettingsView), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<SettingsBody>,
) -> Result<axum::Json<SettingsView>, ApiError> {
    let practice = practice_of(&principal)?;
    let b = body.value;
    let mut errors = Vec::new();
    let default_schedule = Schedule::parse("default_schedule", &b.default_schedule)
        .map_err(|e| errors.push(e))
        .ok();
    if !(1..=4).contains(&b.daily_cap) {
        errors.push(FieldError::new("daily_cap", "from 1 to 4 reminders a day"));
    }
    if b.min_lead_minutes > 24 * 60 {
        errors.push(FieldError::new(
            "min_lead_minutes",
            "at most 1440 minutes (a day)",
        ));
    }
    let mut by_type = Vec::new();
    for (i, t) in b.by_type.iter().enumerate() {
        match Schedule::parse(&format!("by_type[{i}].schedule"), &t.schedule) {
            Ok(s) => by_type.push((CatalogItemId::from_uuid(t.appointment_type_id), s)),
            Err(e) => errors.push(e),
        }
    }
    let Some(default_schedule) = default_schedule.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let settings = ReminderSettings {
        default_schedule,
        limits: Limits {
            daily_cap: b.daily_cap,
            min_lead_minutes: b.min_lead_minutes,
        },
        spanish_unaccented: b.spanish_unaccented,
        by_type,
    };
    state
        .store
        .set_reminder_settings(practice, &principal, &client.audit_context(), &settings)
        .await?;
    Ok(axum::Json(settings_view(
        state.store.reminder_settings(practice).await?,
    )))
}

async fn audit_read(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    targets: Vec<String>,
) -> Result<(), ApiError> {
    state
        .store
        .record_audit(AuditEvent {
            scope: ChainScope::Practice(practice_of(principal)?),
            actor: principal.actor(),
            action: Action::ReminderRead,
            targets,
            outcome: Outcome::Success,
            context: client.audit_context(),
        })
        .await?;
    Ok(())
}

/// Reminders the daily cap held back, for visits still ahead: staff may release them.
#[utoipa::path(get, path = "/api/v1/reminders/held", tag = "appointments",
    responses((status = 200, body = ReminderList)), security(("bearer" = ["appointments:read"]), ("session" = [])))]
pub async fn held(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
) -> Result<axum::Json<ReminderList>, ApiError> {
    let practice = practice_of(&principal)?;
    let reminders = state.store.held_reminders(practice).await?;
    let mut targets: Vec<String> = reminders.iter().map(|r| r.patient.to_string()).collect();
    targets.sort();
    targets.dedup();
    audit_read(&state, &principal, &client, targets).await?;
    Ok(axum::Json(ReminderList {
        reminders: reminders.into_iter().map(view).collect(),
    }))
}

/// One visit's reminders: sent, held back, too late, superseded or withdrawn, and why.
#[utoipa::path(get, path = "/api/v1/appointments/{id}/reminders", tag = "appointments",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ReminderList), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["appointments:read"]), ("session" = [])))]
pub async fn of_appointment(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<axum::Json<ReminderList>, ApiError> {
    let practice = practice_of(&principal)?;
    let id = path_id::<AppointmentId>(&id, "appointment")?;
    // The visit's own gate (and its read audit): another practice's or a restricted
    // patient's visit is not found.
    state
        .store
        .read_appointment(practice, &principal, &client.audit_context(), id)
        .await?;
    let reminders = state.store.appointment_reminders(practice, id).await?;
    Ok(axum::Json(ReminderList {
        reminders: reminders.into_iter().map(view).collect(),
    }))
}

/// Sends a reminder the daily cap held back, now (while its visit is ahead and unchanged).
#[utoipa::path(post, path = "/api/v1/reminders/{id}/release", tag = "appointments",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ReminderView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["appointments:write"]), ("session" = [])))]
pub async fn release(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<axum::Json<ReminderView>, ApiError> {
    let practice = practice_of(&principal)?;
    let id = path_id::<ReminderId>(&id, "reminder")?;
    let settings = state.store.reminder_settings(practice).await?;
    let base = crate::api::portal::base_url(&state);
    let store = state.store.clone();
    let visit_of = |reminder: &Reminder| reminder.appointment;
    // The visit is read before the transaction: the store checks again inside it that the
    // time and status are still those the reminder was decided for.
    let held = store
        .held_reminders(practice)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found("reminder"))?;
    let visit = store
        .appointment_for_system(practice, visit_of(&held))
        .await?;
    let zone = jiff::tz::TimeZone::get(&visit.time_zone).map_err(|_| {
        ApiError::from(salve_store::StoreError::Conflict(
            "the visit's time zone is unknown",
        ))
    })?;
    let expires = salve_core::reminders::expires_at(
        jiff::Timestamp::from_microsecond(salve_core::clock::to_micros(visit.starts_at))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        settings.limits,
    );
    let released = store
        .release_reminder(
            practice,
            &principal,
            &client.audit_context(),
            id,
            |facts, _| {
                crate::reminders::reminder_plan(
                    facts,
                    &visit,
                    &zone,
                    settings.spanish_unaccented,
                    &base,
                    expires,
                )
            },
        )
        .await?;
    Ok(axum::Json(view(released)))
}

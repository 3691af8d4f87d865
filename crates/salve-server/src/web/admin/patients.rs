//! `/admin/patients`: find a patient (by name, in a POST body, never a URL), and record their
//! consent at intake, with the practice's consent text shown verbatim, or a
//! confidential-communication request.

use std::collections::BTreeSet;

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_core::consent::{ConsentChannel, ConsentPurpose};
use salve_core::permissions::Principal;
use serde::Deserialize;

use super::{FormFields, frame};
use crate::AppState;
use crate::api::consent::{
    self, ConfidentialBody, ConsentEventBody, ConsentRecordView, ConsentTextRefBody,
    RecordConsentBody,
};
use crate::api::patients::{self, ListParams, PatientView, SearchBody};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

pub(crate) struct PatientRow {
    pub id: String,
    pub name: String,
    pub birth_date: String,
    pub mrn: String,
}

fn row(p: &PatientView) -> PatientRow {
    PatientRow {
        id: p.id.to_string(),
        name: format!("{} {}", p.given_name, p.family_name),
        birth_date: p.birth_date.clone(),
        mrn: p.mrn.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "admin/patients.html")]
struct PatientsPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    patients: Vec<PatientRow>,
    searched: bool,
    query: String,
    query_error: Option<String>,
    next_after: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    after: Option<uuid::Uuid>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let params = ListParams {
        limit: Some(50),
        after: query.ok().and_then(|q| q.0.after),
    };
    let Json(found) = patients::list(
        State(state),
        Extension(principal),
        Extension(client),
        Ok(Query(params)),
    )
    .await?;
    Ok(page.render(&PatientsPage {
        page: &page,
        frame: &frame,
        patients: found.patients.iter().map(row).collect(),
        searched: false,
        query: String::new(),
        query_error: None,
        next_after: found.next_after.map(|a| a.to_string()),
    }))
}

pub(crate) async fn search(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let query = FormFields::parse(&body).get("query");
    let result = patients::search(
        State(state),
        Extension(principal),
        Extension(client),
        JsonBody {
            value: SearchBody {
                query: query.clone(),
                limit: Some(50),
            },
            sha256: [0; 32],
        },
    )
    .await;
    let (patients, query_error, status) = match result {
        Ok(Json(found)) => (
            found.patients.iter().map(row).collect(),
            None,
            StatusCode::OK,
        ),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => (
            Vec::new(),
            Some("Type at least 2 characters of the patient's name.".to_owned()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => return Err(e),
    };
    Ok(page.render_with_status(
        status,
        &PatientsPage {
            page: &page,
            frame: &frame,
            patients,
            searched: true,
            query,
            query_error,
            next_after: None,
        },
    ))
}

/// One checkbox of the consent form: a channel × purpose.
pub(crate) struct Choice {
    pub value: String,
    /// `value` as an element id.
    pub html_id: String,
    pub label: &'static str,
    pub checked: bool,
}

/// One fieldset of the consent form: a channel and its purposes.
pub(crate) struct ChannelChoices {
    pub legend: &'static str,
    pub hint: &'static str,
    pub choices: Vec<Choice>,
}

pub(crate) struct HistoryRow {
    pub at: String,
    pub action: String,
    pub channel: &'static str,
    pub purpose: &'static str,
    pub method: String,
    pub text_version: String,
    pub sms_ack: bool,
}

pub(crate) struct ConfidentialRow {
    pub id: String,
    pub rule: &'static str,
    pub value: String,
    pub method: String,
    pub recorded_at: String,
    pub withdrawn: bool,
}

#[derive(Default)]
pub(crate) struct FormErrors {
    /// Shown at the SMS acknowledgment.
    pub sms_ack: Option<String>,
    /// Shown at the source of the consent.
    pub method: Option<String>,
    /// Shown at the choices.
    pub choices: Option<String>,
    /// Anything else.
    pub other: Vec<String>,
    /// Confidential-communication form.
    pub confidential: Option<String>,
}

impl FormErrors {
    fn any(&self) -> bool {
        self.sms_ack.is_some()
            || self.method.is_some()
            || self.choices.is_some()
            || !self.other.is_empty()
            || self.confidential.is_some()
    }
}

#[derive(Template)]
#[template(path = "admin/consent.html")]
struct ConsentPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    patient_id: String,
    patient_name: String,
    birth_date: String,
    /// The current consent text: version, SHA-256, body.
    text: Option<(String, String, String)>,
    /// The consent in effect.
    current: Vec<ChannelChoices>,
    /// The form: the consent in effect, or what was submitted.
    channels: Vec<ChannelChoices>,
    sms_ack_checked: bool,
    method: String,
    evidence: String,
    history: Vec<HistoryRow>,
    confidential: Vec<ConfidentialRow>,
    errors: FormErrors,
    saved: Option<&'static str>,
}

fn channel_label(raw: &str) -> &'static str {
    match raw {
        "sms_plain" => "Plain text messages (SMS)",
        "sms_notify" => "Texts that say a secure message is waiting",
        "email_notify" => "Emails that say a secure message is waiting",
        "portal" => "Secure portal",
        _ => "Other",
    }
}

fn purpose_label(raw: &str) -> &'static str {
    match raw {
        "appointment_reminders" => "Appointment reminders",
        "care_messages" => "Care messages",
        "announcements" => "Practice announcements",
        _ => "Other",
    }
}

fn channel_hint(channel: ConsentChannel) -> &'static str {
    match channel {
        ConsentChannel::SmsPlain => {
            "Low-risk content (appointment times, requests to call) straight to the phone, unencrypted."
        }
        ConsentChannel::SmsNotify => "No health information: only a link to the secure message.",
        ConsentChannel::EmailNotify => "No health information: only a link to the secure message.",
        ConsentChannel::Portal => "Messages kept in the secure portal.",
    }
}

/// What the form shows: the current state, or what was submitted (after an error).
struct Shown {
    checked: BTreeSet<String>,
    sms_ack: bool,
    method: String,
    evidence: String,
}

#[allow(clippy::too_many_arguments)]
async fn render(
    state: AppState,
    page: Page,
    principal: Principal,
    client: ClientInfo,
    session: Option<Extension<SessionCaller>>,
    id: String,
    shown: Option<Shown>,
    errors: FormErrors,
    saved: Option<&'static str>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin").await?;
    let Json(patient) = patients::read(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client.clone()),
        Path(id.clone()),
    )
    .await?;
    let Json(record) = consent::read(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
        Path(id.clone()),
    )
    .await?;
    let Json(texts) = consent::consent_texts(State(state), Extension(principal)).await?;
    let text = texts
        .consent_texts
        .into_iter()
        .last()
        .map(|t| (t.version, t.sha256, t.text));
    let shown = shown.unwrap_or_else(|| Shown {
        checked: granted(&record),
        sms_ack: false,
        method: String::new(),
        evidence: String::new(),
    });
    let current = choices(&granted(&record));
    let channels = choices(&shown.checked);
    let history = record
        .history
        .iter()
        .rev()
        .map(|e| HistoryRow {
            at: e.at.clone(),
            action: if e.action == "grant" {
                "Granted".into()
            } else {
                "Revoked".into()
            },
            channel: channel_label(&e.channel),
            purpose: purpose_label(&e.purpose),
            method: e.method.replace('_', " "),
            text_version: e
                .consent_text
                .as_ref()
                .map(|t| t.version.clone())
                .unwrap_or_default(),
            sms_ack: e.sms_risk_acknowledged,
        })
        .collect();
    let confidential = record
        .confidential_requests
        .iter()
        .map(|r| ConfidentialRow {
            id: r.id.to_string(),
            rule: match r.rule.as_str() {
                "only_contact" => "Only at",
                "never_contact" => "Never at",
                _ => "Never by",
            },
            value: r.value.clone(),
            method: r.method.replace('_', " "),
            recorded_at: r.recorded_at.clone(),
            withdrawn: r.withdrawn_at.is_some(),
        })
        .collect();
    let status = if errors.any() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page.render_with_status(
        status,
        &ConsentPage {
            page: &page,
            frame: &frame,
            patient_id: id,
            patient_name: format!("{} {}", patient.given_name, patient.family_name),
            birth_date: patient.birth_date,
            text,
            current,
            channels,
            sms_ack_checked: shown.sms_ack,
            method: shown.method,
            evidence: shown.evidence,
            history,
            confidential,
            errors,
            saved,
        },
    ))
}

fn choices(checked: &BTreeSet<String>) -> Vec<ChannelChoices> {
    ConsentChannel::ALL
        .into_iter()
        .map(|channel| ChannelChoices {
            legend: channel_label(channel.as_str()),
            hint: channel_hint(channel),
            choices: ConsentPurpose::ALL
                .into_iter()
                .map(|purpose| {
                    let value = format!("{}:{}", channel.as_str(), purpose.as_str());
                    Choice {
                        checked: checked.contains(&value),
                        html_id: format!("c-{}-{}", channel.as_str(), purpose.as_str()),
                        value,
                        label: purpose_label(purpose.as_str()),
                    }
                })
                .collect(),
        })
        .collect()
}

/// `channel:purpose` of every grant in effect.
fn granted(record: &ConsentRecordView) -> BTreeSet<String> {
    record
        .effective
        .iter()
        .filter(|e| e.granted)
        .map(|e| format!("{}:{}", e.channel, e.purpose))
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct ConsentQuery {
    saved: Option<String>,
}

pub(crate) async fn consent(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    query: Result<Query<ConsentQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let saved = match query.ok().and_then(|q| q.0.saved).as_deref() {
        Some("consent") => Some("Consent recorded."),
        Some("confidential") => Some("Confidential-communication request recorded."),
        Some("withdrawn") => Some("Confidential-communication request withdrawn."),
        _ => None,
    };
    render(
        state,
        page,
        principal,
        client,
        session,
        id,
        None,
        FormErrors::default(),
        saved,
    )
    .await
}

/// Methods a staff member may record consent by on this form.
const METHODS: [&str; 3] = ["intake_form", "verbal", "free_text_request"];

pub(crate) async fn record_consent(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut shown = Shown {
        checked: BTreeSet::new(),
        sms_ack: false,
        method: String::new(),
        evidence: String::new(),
    };
    let fields = FormFields::parse(&body);
    shown.checked = fields.all("choice").map(str::to_owned).collect();
    shown.sms_ack = fields.get("sms_risk_acknowledged") == "yes";
    shown.method = fields.get("method");
    shown.evidence = fields.get("evidence");
    let (version, sha256) = (fields.get("consent_version"), fields.get("consent_sha256"));
    let mut errors = FormErrors::default();
    if !METHODS.contains(&shown.method.as_str()) {
        errors.method = Some("Choose how the patient gave their consent.".into());
    }
    // The current state, to record only what changed.
    let Json(record) = consent::read(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client.clone()),
        Path(id.clone()),
    )
    .await?;
    let current = granted(&record);
    let mut events = Vec::new();
    for channel in ConsentChannel::ALL {
        for purpose in ConsentPurpose::ALL {
            let key = format!("{}:{}", channel.as_str(), purpose.as_str());
            let wanted = shown.checked.contains(&key);
            let has = current.contains(&key);
            if wanted == has {
                continue;
            }
            events.push(ConsentEventBody {
                channel: channel.as_str().into(),
                purpose: purpose.as_str().into(),
                action: if wanted { "grant" } else { "revoke" }.into(),
                method: shown.method.clone(),
                consent_text: wanted.then(|| ConsentTextRefBody {
                    version: version.clone(),
                    sha256_hex: sha256.clone(),
                }),
                sms_risk_acknowledged: wanted
                    && channel == ConsentChannel::SmsPlain
                    && shown.sms_ack,
            });
        }
    }
    if events.is_empty() {
        errors.choices = Some(
            "Nothing changed: tick what the patient agreed to, untick what they withdrew.".into(),
        );
    }
    if errors.any() {
        return render(
            state,
            page,
            principal,
            client,
            session,
            id,
            Some(shown),
            errors,
            None,
        )
        .await;
    }
    let result = consent::record(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client.clone()),
        Path(id.clone()),
        JsonBody {
            value: RecordConsentBody {
                events,
                evidence: Some(shown.evidence.clone()).filter(|e| !e.trim().is_empty()),
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect(&format!("/admin/patients/{id}/consent?saved=consent"))),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            for f in &e.errors {
                if f.field.ends_with("sms_risk_acknowledged") {
                    errors.sms_ack = Some(
                        "To record consent to plain text messages, the patient must acknowledge that texts are not encrypted: tick the box once they have."
                            .into(),
                    );
                } else if f.field.ends_with(".method") {
                    errors.method = Some(
                        "Practice announcements need written consent: choose the signed intake form, or untick announcements."
                            .into(),
                    );
                } else if f.field.contains("consent_text") {
                    errors.choices = Some(
                        "No consent text is published yet: publish the practice's consent text before recording grants."
                            .into(),
                    );
                } else {
                    errors.other.push(format!("{}: {}", f.field, f.expected));
                }
            }
            if !errors.any() {
                errors.other.push(e.detail.clone());
            }
            render(
                state,
                page,
                principal,
                client,
                session,
                id,
                Some(shown),
                errors,
                None,
            )
            .await
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn record_confidential(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = FormFields::parse(&body);
    let result = consent::record_confidential(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client.clone()),
        Path(id.clone()),
        JsonBody {
            value: ConfidentialBody {
                rule: form.get("rule"),
                value: form.get("value").trim().to_owned(),
                method: form.get("method"),
                evidence: Some(form.get("evidence")).filter(|e| !e.trim().is_empty()),
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect(&format!("/admin/patients/{id}/consent?saved=confidential"))),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let why = e
                .errors
                .iter()
                .map(|f| match f.field.as_str() {
                    "rule" => "choose what the patient asked for".to_owned(),
                    "method" => "choose how the patient asked".to_owned(),
                    "value" => format!("the phone, email or medium: {}", f.expected),
                    _ => f.expected.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            let errors = FormErrors {
                confidential: Some(format!("The request was not recorded: {why}.")),
                ..FormErrors::default()
            };
            render(
                state, page, principal, client, session, id, None, errors, None,
            )
            .await
        }
        Err(e) => Err(e),
    }
}

/// Withdraw a confidential-communication request (it stays in the record, marked withdrawn).
pub(crate) async fn withdraw_confidential(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path((id, request)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    consent::withdraw_confidential(
        State(state),
        Extension(principal),
        Extension(client),
        Path((id.clone(), request)),
    )
    .await?;
    Ok(page.redirect(&format!("/admin/patients/{id}/consent?saved=withdrawn")))
}

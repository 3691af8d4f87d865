//! Consent and confidential-communication requests, consent texts, the catalog of appointment
//! types, locations and providers, saved replies, and the practice's messaging settings.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::confidential::{ConfidentialRequestInput, ConfidentialRule, RequestMethod};
use salve_core::consent::{
    self, ConsentAction, ConsentChannel, ConsentEventInput, ConsentMethod, ConsentPurpose,
    ConsentState, ConsentTextRef, Medium,
};
use salve_core::permissions::Principal;
use salve_core::policy::{self, ClassifyContext};
use salve_core::{ConfidentialRequestId, PatientId, Sensitive, TemplateId};
use salve_store::{CatalogKind, MessagingSettings, Recorder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::messages::{Created, ReasonView, fmt_time, not_found};
use crate::api::{path_id, practice_of};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentTextRefBody {
    pub version: String,
    pub sha256_hex: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentEventBody {
    /// `sms_plain`, `sms_notify`, `email_notify` or `portal`
    pub channel: String,
    /// `appointment_reminders`, `care_messages` or `announcements`
    pub purpose: String,
    /// `grant` or `revoke`
    pub action: String,
    /// `intake_form`, `verbal`, `patient_portal`, `sms_keyword` or `free_text_request`
    pub method: String,
    /// The consent text shown (required for a grant).
    pub consent_text: Option<ConsentTextRefBody>,
    /// The patient acknowledged that plain SMS is not encrypted (required to grant `sms_plain`).
    #[serde(default)]
    pub sms_risk_acknowledged: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConsentBody {
    pub events: Vec<ConsentEventBody>,
    /// A note on the evidence (where the signed form is, what the patient said); sealed.
    pub evidence: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeAllBody {
    pub method: String,
    pub evidence: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentEventView {
    pub id: uuid::Uuid,
    pub at: String,
    pub recorded_by: Option<uuid::Uuid>,
    pub channel: String,
    pub purpose: String,
    pub action: String,
    pub method: String,
    pub consent_text: Option<ConsentTextRefBody>,
    pub sms_risk_acknowledged: bool,
}

#[derive(Serialize, ToSchema)]
pub struct EffectiveConsent {
    pub channel: String,
    pub purpose: String,
    pub granted: bool,
    /// The grant relied on, when granted.
    pub basis: Option<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct ConfidentialRequestView {
    pub id: uuid::Uuid,
    /// `only_contact`, `never_contact` or `never_medium`
    pub rule: String,
    /// The contact point (phone or email) or the medium.
    pub value: String,
    pub method: String,
    pub recorded_at: String,
    pub withdrawn_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentRecordView {
    pub effective: Vec<EffectiveConsent>,
    pub history: Vec<ConsentEventView>,
    pub confidential_requests: Vec<ConfidentialRequestView>,
}

#[derive(Serialize, ToSchema)]
pub struct RecordedConsent {
    pub ids: Vec<uuid::Uuid>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfidentialBody {
    /// `only_contact` ("text this number only"), `never_contact` ("not at the family phone") or
    /// `never_medium` ("never email")
    pub rule: String,
    /// A phone number or email for the contact rules; `sms` or `email` for `never_medium`.
    pub value: String,
    /// `written_form`, `verbal`, `patient_portal` or `free_text_request`
    pub method: String,
    pub evidence: Option<String>,
}

fn bad(field: &str, expected: &str) -> ApiError {
    ApiError::validation(vec![salve_core::FieldError::new(field, expected)])
}

fn event_input(i: usize, b: &ConsentEventBody) -> Result<ConsentEventInput, ApiError> {
    let f = |name: &str| format!("events[{i}].{name}");
    Ok(ConsentEventInput {
        channel: ConsentChannel::parse(&b.channel).ok_or_else(|| {
            bad(
                &f("channel"),
                "sms_plain, sms_notify, email_notify or portal",
            )
        })?,
        purpose: ConsentPurpose::parse(&b.purpose).ok_or_else(|| {
            bad(
                &f("purpose"),
                "appointment_reminders, care_messages or announcements",
            )
        })?,
        action: ConsentAction::parse(&b.action)
            .ok_or_else(|| bad(&f("action"), "grant or revoke"))?,
        method: ConsentMethod::parse(&b.method).ok_or_else(|| {
            bad(
                &f("method"),
                "intake_form, verbal, patient_portal, sms_keyword or free_text_request",
            )
        })?,
        consent_text: b.consent_text.as_ref().map(|t| ConsentTextRef {
            version: t.version.clone(),
            sha256_hex: t.sha256_hex.clone(),
        }),
        sms_risk_acknowledged: b.sms_risk_acknowledged,
    })
}

fn evidence(raw: Option<&String>) -> Result<Option<Sensitive<String>>, ApiError> {
    match raw.map(|e| e.trim()) {
        None | Some("") => Ok(None),
        Some(e) if e.chars().count() > 2000 => Err(bad("evidence", "at most 2000 characters")),
        Some(e) => Ok(Some(Sensitive::new(e.to_owned()))),
    }
}

/// A patient's consent: the effective state per channel and purpose, the full history, and
/// confidential-communication requests.
#[utoipa::path(get, path = "/api/v1/patients/{id}/consent", tag = "consent", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ConsentRecordView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["patients:read"]), ("session" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(patient): Path<String>,
) -> Result<axum::Json<ConsentRecordView>, ApiError> {
    let (events, requests) = state
        .store
        .consent_record(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            path_id::<PatientId>(&patient, "patient")?,
        )
        .await
        .map_err(not_found("patient"))?;
    let current = ConsentState::from_history(&events);
    let mut effective = Vec::new();
    for channel in ConsentChannel::ALL {
        for purpose in ConsentPurpose::ALL {
            effective.push(EffectiveConsent {
                channel: channel.as_str().into(),
                purpose: purpose.as_str().into(),
                granted: current.is_granted(channel, purpose),
                basis: current.basis(channel, purpose).map(|b| b.as_uuid()),
            });
        }
    }
    Ok(axum::Json(ConsentRecordView {
        effective,
        history: events
            .iter()
            .map(|e| ConsentEventView {
                id: e.id.as_uuid(),
                at: fmt_time(e.at),
                recorded_by: e.recorded_by.map(|u| u.as_uuid()),
                channel: e.channel.as_str().into(),
                purpose: e.purpose.as_str().into(),
                action: e.action.as_str().into(),
                method: e.method.as_str().into(),
                consent_text: e.consent_text.as_ref().map(|t| ConsentTextRefBody {
                    version: t.version.clone(),
                    sha256_hex: t.sha256_hex.clone(),
                }),
                sms_risk_acknowledged: e.sms_risk_acknowledged,
            })
            .collect(),
        confidential_requests: requests
            .iter()
            .map(|r| {
                let (rule, value) = match &r.rule {
                    ConfidentialRule::OnlyContact(v) => ("only_contact", v.expose().clone()),
                    ConfidentialRule::NeverContact(v) => ("never_contact", v.expose().clone()),
                    ConfidentialRule::NeverMedium(m) => ("never_medium", m.as_str().to_owned()),
                };
                ConfidentialRequestView {
                    id: r.id.as_uuid(),
                    rule: rule.into(),
                    value,
                    method: r.method.as_str().into(),
                    recorded_at: fmt_time(r.recorded_at),
                    withdrawn_at: r.withdrawn_at.map(fmt_time),
                }
            })
            .collect(),
    }))
}

/// Record grants or revocations with their evidence. A revocation takes effect at once: queued
/// sends that relied on it are stopped.
#[utoipa::path(post, path = "/api/v1/patients/{id}/consent", tag = "consent", request_body = RecordConsentBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = RecordedConsent), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["consent:write"]), ("session" = [])))]
pub async fn record(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(patient): Path<String>,
    body: JsonBody<RecordConsentBody>,
) -> Result<Response, ApiError> {
    let inputs = body
        .value
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| event_input(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() || inputs.len() > 50 {
        return Err(bad("events", "1 to 50 consent events"));
    }
    let mut errors = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if let Err(errs) = consent::validate(input) {
            errors.extend(errs.into_iter().map(|e| {
                salve_core::FieldError::new(format!("events[{i}].{}", e.field), e.expected)
            }));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let ids = state
        .store
        .record_consent(
            practice_of(&principal)?,
            Recorder::Principal(&principal),
            &client.audit_context(),
            path_id::<PatientId>(&patient, "patient")?,
            &inputs,
            evidence(body.value.evidence.as_ref())?.as_ref(),
        )
        .await
        .map_err(not_found("patient"))?;
    Ok(recorded(ids))
}

/// Revoke every consent the patient has given, in one action.
#[utoipa::path(post, path = "/api/v1/patients/{id}/consent/revoke-all", tag = "consent", request_body = RevokeAllBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = RecordedConsent)),
    security(("bearer" = ["consent:write"]), ("session" = [])))]
pub async fn revoke_all(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(patient): Path<String>,
    body: JsonBody<RevokeAllBody>,
) -> Result<Response, ApiError> {
    let method = ConsentMethod::parse(&body.value.method).ok_or_else(|| {
        bad(
            "method",
            "intake_form, verbal, patient_portal, sms_keyword or free_text_request",
        )
    })?;
    let ids = state
        .store
        .record_consent_from(
            practice_of(&principal)?,
            Recorder::Principal(&principal),
            &client.audit_context(),
            path_id::<PatientId>(&patient, "patient")?,
            evidence(body.value.evidence.as_ref())?.as_ref(),
            |current| consent::revoke_all(current, method),
        )
        .await
        .map_err(not_found("patient"))?;
    Ok(recorded(ids))
}

fn recorded(ids: Vec<salve_core::ConsentEventId>) -> Response {
    // Nothing was granted, so nothing was revoked: 200 with no ids.
    let status = if ids.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (
        status,
        axum::Json(RecordedConsent {
            ids: ids.iter().map(|i| i.as_uuid()).collect(),
        }),
    )
        .into_response()
}

/// Record a confidential-communication request (45 CFR 164.522(b)); it overrides routing.
#[utoipa::path(post, path = "/api/v1/patients/{id}/confidential-requests", tag = "consent", request_body = ConfidentialBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = Created), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["consent:write"]), ("session" = [])))]
pub async fn record_confidential(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(patient): Path<String>,
    body: JsonBody<ConfidentialBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let region = state.store.practice(practice).await?.phone_region;
    let b = &body.value;
    let contact = |raw: &str| -> Result<Sensitive<String>, ApiError> {
        if raw.contains('@') {
            salve_core::validation::email("value", raw).map_err(|e| ApiError::validation(vec![e]))
        } else {
            salve_core::validation::phone("value", raw, &region)
                .map_err(|e| ApiError::validation(vec![e]))
        }
    };
    let rule = match b.rule.as_str() {
        "only_contact" => ConfidentialRule::OnlyContact(contact(&b.value)?),
        "never_contact" => ConfidentialRule::NeverContact(contact(&b.value)?),
        "never_medium" => ConfidentialRule::NeverMedium(
            Medium::parse(&b.value).ok_or_else(|| bad("value", "sms or email"))?,
        ),
        _ => return Err(bad("rule", "only_contact, never_contact or never_medium")),
    };
    let method = RequestMethod::parse(&b.method).ok_or_else(|| {
        bad(
            "method",
            "written_form, verbal, patient_portal or free_text_request",
        )
    })?;
    let id = state
        .store
        .record_confidential_request(
            practice,
            Recorder::Principal(&principal),
            &client.audit_context(),
            path_id::<PatientId>(&patient, "patient")?,
            &ConfidentialRequestInput { rule, method },
            evidence(b.evidence.as_ref())?.as_ref(),
        )
        .await
        .map_err(not_found("patient"))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Created { id: id.as_uuid() }),
    )
        .into_response())
}

/// Withdraw a confidential-communication request (it stays in the record).
#[utoipa::path(delete, path = "/api/v1/patients/{id}/confidential-requests/{request_id}", tag = "consent",
    params(("id" = uuid::Uuid, Path), ("request_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["consent:write"]), ("session" = [])))]
pub async fn withdraw_confidential(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path((patient, request)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .withdraw_confidential_request(
            practice_of(&principal)?,
            Recorder::Principal(&principal),
            &client.audit_context(),
            path_id::<PatientId>(&patient, "patient")?,
            // An id that names nothing still goes through the patient's gate, so the answer for
            // a restricted patient does not depend on the id's shape.
            request
                .parse()
                .unwrap_or_else(|_| ConfidentialRequestId::from_uuid(uuid::Uuid::nil())),
        )
        .await
        .map_err(not_found("confidential request"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentTextBody {
    pub version: String,
    /// The exact wording shown to patients.
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentTextView {
    pub version: String,
    pub sha256: String,
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentTextList {
    pub consent_texts: Vec<ConsentTextView>,
}

/// The practice's published consent texts.
#[utoipa::path(get, path = "/api/v1/consent-texts", tag = "consent",
    responses((status = 200, body = ConsentTextList)), security(("bearer" = ["messages:read"]), ("session" = [])))]
pub async fn consent_texts(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<ConsentTextList>, ApiError> {
    let texts = state.store.consent_texts(practice_of(&principal)?).await?;
    Ok(axum::Json(ConsentTextList {
        consent_texts: texts
            .into_iter()
            .map(|t| ConsentTextView {
                version: t.version,
                sha256: t.sha256_hex,
                text: t.body,
            })
            .collect(),
    }))
}

/// Publish a consent text version (immutable; events cite its hash).
#[utoipa::path(post, path = "/api/v1/consent-texts", tag = "consent", request_body = ConsentTextBody,
    responses((status = 201, body = ConsentTextView), (status = 409, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn publish_consent_text(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<ConsentTextBody>,
) -> Result<Response, ApiError> {
    if body.value.text.chars().count() > 20_000 {
        return Err(bad("text", "at most 20000 characters"));
    }
    let text = state
        .store
        .publish_consent_text(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &body.value.version,
            &body.value.text,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ConsentTextView {
            version: text.version,
            sha256: text.sha256_hex,
            text: text.body,
        }),
    )
        .into_response())
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CatalogItemView {
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    /// `appointment_type`, `location` or `provider`
    pub kind: String,
    pub name: String,
    /// The practice allows this value in plain texts.
    pub sms_safe: bool,
    #[serde(default = "yes")]
    pub active: bool,
    /// Why the channel policy would keep this name out of plain texts, if it would.
    #[serde(default)]
    pub policy_warnings: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, ToSchema)]
pub struct CatalogList {
    pub items: Vec<CatalogItemView>,
}

fn name_warnings(name: &str) -> Vec<String> {
    policy::classify(name, &ClassifyContext::default())
        .reasons
        .into_iter()
        .filter(|r| r.rule != "not_allow_listed" && r.rule != "allow_listed")
        .map(|r| r.explanation)
        .collect()
}

/// The practice's appointment types, locations and providers, with their SMS-safe flags.
#[utoipa::path(get, path = "/api/v1/catalog", tag = "settings",
    responses((status = 200, body = CatalogList)), security(("bearer" = ["messages:read"]), ("session" = [])))]
pub async fn catalog(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<CatalogList>, ApiError> {
    let items = state.store.catalog(practice_of(&principal)?).await?;
    Ok(axum::Json(CatalogList {
        items: items
            .into_iter()
            .map(|i| CatalogItemView {
                id: Some(i.id.as_uuid()),
                kind: i.kind.as_str().into(),
                policy_warnings: name_warnings(&i.name),
                name: i.name,
                sms_safe: i.sms_safe,
                active: i.active,
            })
            .collect(),
    }))
}

/// Add or update a catalog item (matched by kind and name).
#[utoipa::path(put, path = "/api/v1/catalog", tag = "settings", request_body = CatalogItemView,
    responses((status = 200, body = CatalogItemView)), security(("session" = [])))]
pub async fn upsert_catalog_item(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<CatalogItemView>,
) -> Result<axum::Json<CatalogItemView>, ApiError> {
    let b = body.value;
    let kind = CatalogKind::parse(&b.kind)
        .ok_or_else(|| bad("kind", "appointment_type, location or provider"))?;
    let id = state
        .store
        .upsert_catalog_item(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            kind,
            &b.name,
            b.sms_safe,
            b.active,
        )
        .await?;
    Ok(axum::Json(CatalogItemView {
        id: Some(id.as_uuid()),
        kind: b.kind,
        policy_warnings: name_warnings(&b.name),
        name: b.name.trim().to_owned(),
        sms_safe: b.sms_safe,
        active: b.active,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    pub name: String,
    /// Text with variables such as `{patient.first_name}` and `{practice.phone}`.
    pub body: String,
    #[serde(default = "yes")]
    pub active: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateView {
    pub id: uuid::Uuid,
    pub name: String,
    pub body: String,
    pub active: bool,
    pub variables: Vec<String>,
    /// The policy's early verdict on the wording (values are checked again at send time).
    pub route: String,
    pub reasons: Vec<ReasonView>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateView>,
}

fn template_view(id: TemplateId, name: String, body: String, active: bool) -> TemplateView {
    let parsed = salve_core::templates::parse(&body).ok();
    let variables = parsed
        .as_ref()
        .map(|p| {
            p.variables()
                .iter()
                .map(|v| v.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let decision = policy::classify(&body, &ClassifyContext::default());
    TemplateView {
        id: id.as_uuid(),
        name,
        body,
        active,
        variables,
        route: decision.route.as_str().into(),
        reasons: decision
            .reasons
            .into_iter()
            .map(|r| ReasonView {
                rule: r.rule,
                matched_text: r.matched_text,
                explanation: r.explanation,
            })
            .collect(),
    }
}

/// Saved replies.
#[utoipa::path(get, path = "/api/v1/templates", tag = "settings",
    responses((status = 200, body = TemplateList)), security(("bearer" = ["messages:read"]), ("session" = [])))]
pub async fn templates(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<TemplateList>, ApiError> {
    let list = state
        .store
        .reply_templates(practice_of(&principal)?)
        .await?;
    Ok(axum::Json(TemplateList {
        templates: list
            .into_iter()
            .map(|t| template_view(t.id, t.name, t.body, t.active))
            .collect(),
    }))
}

async fn save_template(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    id: Option<TemplateId>,
    b: TemplateBody,
) -> Result<TemplateView, ApiError> {
    let parsed = salve_core::templates::parse(&b.body).map_err(ApiError::validation)?;
    let body = parsed.source().to_owned();
    let id = state
        .store
        .save_reply_template(
            practice_of(principal)?,
            principal,
            &client.audit_context(),
            id,
            &b.name,
            &body,
            b.active,
        )
        .await
        .map_err(not_found("template"))?;
    Ok(template_view(id, b.name.trim().to_owned(), body, b.active))
}

/// Save a new reply template; the answer carries the policy's early feedback.
#[utoipa::path(post, path = "/api/v1/templates", tag = "settings", request_body = TemplateBody,
    responses((status = 201, body = TemplateView), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn create_template(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<TemplateBody>,
) -> Result<Response, ApiError> {
    let view = save_template(&state, &principal, &client, None, body.value).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

/// Change a reply template.
#[utoipa::path(put, path = "/api/v1/templates/{id}", tag = "settings", request_body = TemplateBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn update_template(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<TemplateBody>,
) -> Result<axum::Json<TemplateView>, ApiError> {
    Ok(axum::Json(
        save_template(
            &state,
            &principal,
            &client,
            Some(path_id::<TemplateId>(&id, "template")?),
            body.value,
        )
        .await?,
    ))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettingsBody {
    /// The name texts are sent under; it must not reveal a specialty or condition.
    pub sender_name: String,
    pub phone: String,
    pub hours_text: String,
    pub expected_reply_text: String,
    pub on_call_number: Option<String>,
    #[serde(default)]
    pub front_desk_sees_clinical: bool,
}

/// The practice's messaging settings.
#[utoipa::path(get, path = "/api/v1/practice/messaging", tag = "settings",
    responses((status = 200, body = MessagingSettingsBody)), security(("bearer" = ["messages:read"]), ("session" = [])))]
pub async fn messaging_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<MessagingSettingsBody>, ApiError> {
    let s = state
        .store
        .messaging_settings(practice_of(&principal)?)
        .await?;
    Ok(axum::Json(MessagingSettingsBody {
        sender_name: s.sender_name,
        phone: s.phone,
        hours_text: s.hours_text,
        expected_reply_text: s.expected_reply_text,
        on_call_number: s.on_call_number,
        front_desk_sees_clinical: s.front_desk_sees_clinical,
    }))
}

/// Change the messaging settings. A sender name that names a specialty or condition is refused,
/// and so are fields that would make system messages too long for a text.
#[utoipa::path(put, path = "/api/v1/practice/messaging", tag = "settings", request_body = MessagingSettingsBody,
    responses((status = 204), (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn set_messaging_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<MessagingSettingsBody>,
) -> Result<StatusCode, ApiError> {
    let b = body.value;
    let reasons = policy::check_sender_name(&b.sender_name);
    if !reasons.is_empty() {
        return Err(ApiError::validation(vec![salve_core::FieldError::new(
            "sender_name",
            format!(
                "a name that does not reveal health information ({})",
                reasons
                    .iter()
                    .map(|r| r.explanation.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )]));
    }
    let fields = salve_core::system_messages::PracticeFields {
        sender_name: b.sender_name.trim().to_owned(),
        phone: b.phone.trim().to_owned(),
        hours_text: b.hours_text.trim().to_owned(),
        expected_reply_text: b.expected_reply_text.trim().to_owned(),
        on_call_number: b.on_call_number.as_deref().map(|s| s.trim().to_owned()),
    };
    fields
        .validate(salve_core::system_messages::Language::En)
        .map_err(ApiError::validation)?;
    state
        .store
        .set_messaging_settings(
            practice_of(&principal)?,
            &principal,
            &client.audit_context(),
            &MessagingSettings {
                sender_name: fields.sender_name,
                phone: fields.phone,
                hours_text: fields.hours_text,
                expected_reply_text: fields.expected_reply_text,
                on_call_number: fields.on_call_number,
                front_desk_sees_clinical: b.front_desk_sees_clinical,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Carrier registration help (admins and auditors): the checklist for a US 10DLC campaign or a
//! toll-free verification, with sample messages made from the practice's own saved replies.
//! The rules are in `salve_core::carrier`; this reads the practice's settings and renders.

use axum::Extension;
use axum::extract::{Query, State};
use salve_core::FieldError;
use salve_core::carrier::{self, ConsentWording, NamedTemplate, PracticeMessaging};
use salve_core::permissions::Principal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::practice_of;
use crate::error::ApiError;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CarrierQuery {
    /// `10dlc` (a local number; the default) or `toll_free`.
    pub kind: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ChecklistItemView {
    /// Stable name: `messaging_settings`, `sender_name`, `consent_text`, `consent_disclosures`,
    /// `sample_templates`, `help_and_opt_out_replies`.
    pub key: String,
    pub title: String,
    pub done: bool,
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct SampleMessageView {
    pub purpose: String,
    pub text: String,
    /// `template` (a saved reply plain SMS may carry) or `system_message`.
    pub source: String,
}

#[derive(Serialize, ToSchema)]
pub struct FormAnswerView {
    pub key: String,
    pub label: String,
    pub value: String,
}

#[derive(Serialize, ToSchema)]
pub struct CarrierRegistrationView {
    /// `10dlc` or `toll_free`.
    pub kind: String,
    pub items: Vec<ChecklistItemView>,
    pub sample_messages: Vec<SampleMessageView>,
    /// The message flow / call to action for the form.
    pub opt_in_description: String,
    pub help_text: String,
    pub opt_out_text: String,
    pub form_answers: Vec<FormAnswerView>,
}

/// The checklist for registering the practice's texting numbers with US carriers, computed from
/// its messaging settings, newest consent text and saved replies (no patient data).
#[utoipa::path(get, path = "/api/v1/admin/carrier-registration", tag = "providers",
    params(CarrierQuery),
    responses((status = 200, body = CarrierRegistrationView),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn checklist(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<CarrierQuery>,
) -> Result<axum::Json<CarrierRegistrationView>, ApiError> {
    let kind = match q.kind.as_deref() {
        None => carrier::RegistrationKind::TenDlc,
        Some(raw) => carrier::RegistrationKind::parse(raw).ok_or_else(|| {
            ApiError::validation(vec![FieldError::new("kind", "10dlc or toll_free")])
        })?,
    };
    let practice = practice_of(&principal)?;
    let settings = state.store.messaging_settings(practice).await?;
    let fields = settings.practice_fields();
    let consent = state
        .store
        .consent_texts(practice)
        .await?
        .pop()
        .map(|t| ConsentWording {
            version: t.version,
            body: t.body,
        });
    let templates: Vec<NamedTemplate> = state
        .store
        .reply_templates(practice)
        .await?
        .into_iter()
        .map(|t| NamedTemplate {
            name: t.name,
            body: t.body,
            active: t.active,
        })
        .collect();
    let public_url = crate::api::portal::base_url(&state);
    let c = carrier::checklist(
        kind,
        &PracticeMessaging {
            fields: &fields,
            consent: consent.as_ref(),
            templates: &templates,
            public_url: &public_url,
        },
    );
    Ok(axum::Json(CarrierRegistrationView {
        kind: c.kind.as_str().into(),
        items: c
            .items
            .into_iter()
            .map(|i| ChecklistItemView {
                key: i.key.into(),
                title: i.title.into(),
                done: i.done,
                detail: i.detail,
            })
            .collect(),
        sample_messages: c
            .sample_messages
            .into_iter()
            .map(|s| SampleMessageView {
                purpose: s.purpose,
                text: s.text,
                source: match s.source {
                    carrier::SampleSource::Template => "template",
                    carrier::SampleSource::SystemMessage => "system_message",
                }
                .into(),
            })
            .collect(),
        opt_in_description: c.opt_in_description,
        help_text: c.help_text,
        opt_out_text: c.opt_out_text,
        form_answers: c
            .form_answers
            .into_iter()
            .map(|a| FormAnswerView {
                key: a.key.into(),
                label: a.label.into(),
                value: a.value,
            })
            .collect(),
    }))
}

//! The patient's communication preferences: consent per channel × purpose, recorded with the
//! same evidence as staff-recorded consent (the published consent text shown, the method
//! `patient_portal`, the patient as the actor) through the same store operations; and
//! confidential-communication requests ("Only contact me by email").

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use salve_core::Sensitive;
use salve_core::confidential::{ConfidentialRequestInput, ConfidentialRule, RequestMethod};
use salve_core::consent::{
    ConsentAction, ConsentChannel, ConsentEventInput, ConsentMethod, ConsentPurpose,
    ConsentTextRef, Medium,
};
use salve_core::patient::ContactKind;
use salve_store::{ConsentText, Recorder, StoreError};

use super::{PortalFrame, Verified, verified};
use crate::AppState;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::web::Page;

pub struct ChannelBox {
    /// `channel.purpose`
    pub value: String,
    pub id: String,
    pub label: &'static str,
    pub checked: bool,
}

pub struct PurposeGroup {
    pub legend: &'static str,
    pub boxes: Vec<ChannelBox>,
}

/// A request in force, with the id its withdraw button posts to.
pub struct ActiveRequest {
    pub id: String,
    pub label: String,
}

pub struct Choice {
    pub value: String,
    pub id: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "portal/preferences.html")]
struct PreferencesPage<'a> {
    page: &'a Page,
    frame: &'a PortalFrame,
    es: bool,
    groups: Vec<PurposeGroup>,
    consent_text: Option<ConsentText>,
    consent_error: Option<&'static str>,
    risk_error: bool,
    confidential: Vec<ActiveRequest>,
    choices: Vec<Choice>,
    confidential_error: Option<&'static str>,
    saved: Option<&'static str>,
}

fn channel_label(c: ConsentChannel, es: bool) -> &'static str {
    match (c, es) {
        (ConsentChannel::Portal, false) => "Secure messages in this portal",
        (ConsentChannel::Portal, true) => "Mensajes seguros en este portal",
        (ConsentChannel::SmsNotify, false) => "A text that says a message is waiting (no details)",
        (ConsentChannel::SmsNotify, true) => {
            "Un mensaje de texto que avisa que hay un mensaje (sin detalles)"
        }
        (ConsentChannel::EmailNotify, false) => {
            "An email that says a message is waiting (no details)"
        }
        (ConsentChannel::EmailNotify, true) => {
            "Un correo electrónico que avisa que hay un mensaje (sin detalles)"
        }
        (ConsentChannel::SmsPlain, false) => "Regular text messages with details (not encrypted)",
        (ConsentChannel::SmsPlain, true) => "Mensajes de texto normales con detalles (sin cifrar)",
    }
}

fn purpose_label(p: ConsentPurpose, es: bool) -> &'static str {
    match (p, es) {
        (ConsentPurpose::AppointmentReminders, false) => "Appointment reminders",
        (ConsentPurpose::AppointmentReminders, true) => "Recordatorios de citas",
        (ConsentPurpose::CareMessages, false) => "Messages about my care",
        (ConsentPurpose::CareMessages, true) => "Mensajes sobre mi atención",
        (ConsentPurpose::Announcements, false) => "News from the practice",
        (ConsentPurpose::Announcements, true) => "Noticias del consultorio",
    }
}

fn describe_rule(rule: &ConfidentialRule, es: bool) -> String {
    match (rule, es) {
        (ConfidentialRule::NeverMedium(Medium::Sms), false) => {
            "Only contact me by email (no text messages)".to_owned()
        }
        (ConfidentialRule::NeverMedium(Medium::Sms), true) => {
            "Contactarme solo por correo electrónico (sin mensajes de texto)".to_owned()
        }
        (ConfidentialRule::NeverMedium(Medium::Email), false) => {
            "Only contact me by text message (no email)".to_owned()
        }
        (ConfidentialRule::NeverMedium(Medium::Email), true) => {
            "Contactarme solo por mensaje de texto (sin correo electrónico)".to_owned()
        }
        (ConfidentialRule::OnlyContact(v), false) => format!("Only use {}", v.expose()),
        (ConfidentialRule::OnlyContact(v), true) => format!("Usar solo {}", v.expose()),
        (ConfidentialRule::NeverContact(v), false) => format!("Never use {}", v.expose()),
        (ConfidentialRule::NeverContact(v), true) => format!("No usar nunca {}", v.expose()),
    }
}

/// The rules a patient can ask for, from their own contact points; `value` names one.
fn rule_choices(
    contacts: &[salve_core::patient::Contact],
    es: bool,
) -> Vec<(String, ConfidentialRule)> {
    let mut out = Vec::new();
    let has = |k: ContactKind| contacts.iter().any(|c| c.kind == k);
    if has(ContactKind::Email) {
        out.push((
            "medium:sms".to_owned(),
            ConfidentialRule::NeverMedium(Medium::Sms),
        ));
    }
    if has(ContactKind::Phone) {
        out.push((
            "medium:email".to_owned(),
            ConfidentialRule::NeverMedium(Medium::Email),
        ));
    }
    let _ = es;
    for (i, c) in contacts.iter().enumerate() {
        out.push((
            format!("only:{i}"),
            ConfidentialRule::OnlyContact(c.value.clone()),
        ));
        out.push((
            format!("never:{i}"),
            ConfidentialRule::NeverContact(c.value.clone()),
        ));
    }
    out
}

#[derive(Default)]
struct Notes {
    consent_error: Option<&'static str>,
    risk_error: bool,
    confidential_error: Option<&'static str>,
    saved: Option<&'static str>,
    status: Option<StatusCode>,
}

async fn render(
    state: &AppState,
    client: &ClientInfo,
    v: Verified,
    notes: Notes,
) -> Result<Response, ApiError> {
    let es = v.frame.es;
    let practice = v.session.practice_id;
    let patient = v.session.patient_id;
    let current = state.store.own_consent_state(practice, patient).await?;
    let groups = ConsentPurpose::ALL
        .into_iter()
        .map(|p| PurposeGroup {
            legend: purpose_label(p, es),
            boxes: ConsentChannel::ALL
                .into_iter()
                .map(|c| ChannelBox {
                    value: format!("{}.{}", c.as_str(), p.as_str()),
                    id: format!("c-{}-{}", c.as_str(), p.as_str()),
                    label: channel_label(c, es),
                    checked: current.is_granted(c, p),
                })
                .collect(),
        })
        .collect();
    let consent_text = state.store.consent_texts(practice).await?.pop();
    let requests = state
        .store
        .own_confidential_requests(practice, patient)
        .await?;
    let confidential = requests
        .iter()
        .filter(|r| r.withdrawn_at.is_none())
        .map(|r| ActiveRequest {
            id: r.id.to_string(),
            label: describe_rule(&r.rule, es),
        })
        .collect();
    let record = state
        .store
        .read_own_record(&v.session, &client.audit_context())
        .await?;
    let choices = rule_choices(&record.record.contacts, es)
        .into_iter()
        .map(|(value, rule)| Choice {
            id: format!("r-{}", value.replace(':', "-")),
            label: describe_rule(&rule, es),
            value,
        })
        .collect();
    let status = notes.status.unwrap_or(StatusCode::OK);
    let mut response = v.page.render_with_status(
        status,
        &PreferencesPage {
            page: &v.page,
            frame: &v.frame,
            es,
            groups,
            consent_text,
            consent_error: notes.consent_error,
            risk_error: notes.risk_error,
            confidential,
            choices,
            confidential_error: notes.confidential_error,
            saved: notes.saved,
        },
    );
    super::no_store(&mut response);
    Ok(response)
}

pub async fn show(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, ApiError> {
    let v = verified(&state, &client, &headers, page, "/portal/preferences").await?;
    render(&state, &client, v, Notes::default()).await
}

fn pairs(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Saves the consent checkboxes: a grant for each newly ticked box (citing the consent text
/// shown), a revocation for each newly cleared one. Computed from the state read in the same
/// transaction as the write.
pub async fn save_consent(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = verified(&state, &client, &headers, page, "/portal/preferences").await?;
    let es = v.frame.es;
    let form = pairs(&body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let wanted: Vec<(ConsentChannel, ConsentPurpose)> = form
        .iter()
        .filter(|(k, _)| k == "c")
        .filter_map(|(_, v)| {
            let (c, p) = v.split_once('.')?;
            Some((ConsentChannel::parse(c)?, ConsentPurpose::parse(p)?))
        })
        .collect();
    let risk_ok = field("sms_risk").is_some();
    let text = match (field("consent_version"), field("consent_sha256")) {
        (Some(version), Some(sha256_hex)) => Some(ConsentTextRef {
            version,
            sha256_hex,
        }),
        _ => None,
    };
    // What the form asks for, against the state as it is when recorded.
    let decide = |current: &salve_core::consent::ConsentState| {
        let mut events = Vec::new();
        for c in ConsentChannel::ALL {
            for p in ConsentPurpose::ALL {
                let want = wanted.contains(&(c, p));
                let have = current.is_granted(c, p);
                if want && !have {
                    events.push(ConsentEventInput {
                        channel: c,
                        purpose: p,
                        action: ConsentAction::Grant,
                        method: ConsentMethod::PatientPortal,
                        consent_text: text.clone(),
                        sms_risk_acknowledged: c == ConsentChannel::SmsPlain && risk_ok,
                    });
                } else if !want && have {
                    events.push(ConsentEventInput::revoke(
                        c,
                        p,
                        ConsentMethod::PatientPortal,
                    ));
                }
            }
        }
        events
    };
    // The same checks the store applies, first, to say which box needs what.
    let current = state
        .store
        .own_consent_state(v.session.practice_id, v.session.patient_id)
        .await?;
    let planned = decide(&current);
    let mut notes = Notes::default();
    for event in &planned {
        if let Err(errors) = salve_core::consent::validate(event) {
            if errors.iter().any(|e| e.field.contains("sms_risk")) {
                notes.risk_error = true;
            } else {
                notes.consent_error = Some(if es {
                    "Para activar una opción, el consultorio debe publicar primero su texto de consentimiento. Puede desactivar opciones en cualquier momento."
                } else {
                    "To turn something on, the practice must first publish its consent wording. You can turn things off at any time."
                });
            }
        }
    }
    if notes.risk_error || notes.consent_error.is_some() {
        notes.status = Some(StatusCode::UNPROCESSABLE_ENTITY);
        return render(&state, &client, v, notes).await;
    }
    let result = state
        .store
        .record_consent_from(
            v.session.practice_id,
            Recorder::Patient(v.session.patient_id),
            &client.audit_context(),
            v.session.patient_id,
            None,
            decide,
        )
        .await;
    match result {
        Ok(_) => {
            notes.saved = Some(if es {
                "Sus preferencias se guardaron."
            } else {
                "Your preferences were saved."
            });
            render(&state, &client, v, notes).await
        }
        Err(StoreError::Invalid(_)) => {
            notes.consent_error = Some(if es {
                "El texto de consentimiento cambió. Lea el texto nuevo y vuelva a intentarlo."
            } else {
                "The consent wording has changed. Read the new wording and try again."
            });
            notes.status = Some(StatusCode::UNPROCESSABLE_ENTITY);
            render(&state, &client, v, notes).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Records a confidential-communication request chosen from the patient's own contact points.
pub async fn save_confidential(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = verified(&state, &client, &headers, page, "/portal/preferences").await?;
    let es = v.frame.es;
    let form = pairs(&body);
    let chosen = form
        .iter()
        .find(|(k, _)| k == "rule")
        .map(|(_, v)| v.clone());
    let record = state
        .store
        .read_own_record(&v.session, &client.audit_context())
        .await?;
    let rule = chosen.and_then(|c| {
        rule_choices(&record.record.contacts, es)
            .into_iter()
            .find(|(value, _)| *value == c)
            .map(|(_, rule)| rule)
    });
    let mut notes = Notes::default();
    let Some(rule) = rule else {
        notes.confidential_error = Some(if es {
            "Elija una de las opciones."
        } else {
            "Choose one of the options."
        });
        notes.status = Some(StatusCode::UNPROCESSABLE_ENTITY);
        return render(&state, &client, v, notes).await;
    };
    state
        .store
        .record_confidential_request(
            v.session.practice_id,
            Recorder::Patient(v.session.patient_id),
            &client.audit_context(),
            v.session.patient_id,
            &ConfidentialRequestInput {
                rule,
                method: RequestMethod::PatientPortal,
            },
            None::<&Sensitive<String>>,
        )
        .await?;
    notes.saved = Some(if es {
        "Registramos su solicitud. El consultorio la seguirá desde ahora."
    } else {
        "We recorded your request. The practice follows it from now on."
    });
    render(&state, &client, v, notes).await
}

/// Withdraws one of the patient's own requests, through the portal API (which audits it as
/// the patient).
pub async fn withdraw_confidential(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(request): Path<String>,
    page: Page,
) -> Result<Response, ApiError> {
    let v = verified(&state, &client, &headers, page, "/portal/preferences").await?;
    let es = v.frame.es;
    let mut notes = Notes::default();
    match crate::api::portal::withdraw_own_confidential(
        State(state.clone()),
        Extension(client.clone()),
        headers,
        Path(request),
    )
    .await
    {
        Ok(_) => {
            notes.saved = Some(if es {
                "Retiramos su solicitud."
            } else {
                "Your request was withdrawn."
            });
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            notes.confidential_error = Some(if es {
                "Esa solicitud ya no está vigente."
            } else {
                "That request is no longer in force."
            });
            notes.status = Some(StatusCode::NOT_FOUND);
        }
        Err(e) => return Err(e),
    }
    render(&state, &client, v, notes).await
}

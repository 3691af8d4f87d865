//! "Who accessed my record": the staff members who read or changed the patient's record, with
//! their role and when, from the audit log. Names and roles only: no internal ids.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use salve_core::UserId;

use super::conversation::local_time;
use super::{PortalFrame, verified};
use crate::AppState;
use crate::api::messages::fmt_time;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::web::Page;

pub struct AccessRow {
    pub when: String,
    pub name: String,
    pub role: &'static str,
    pub what: &'static str,
}

#[derive(Template)]
#[template(path = "portal/access.html")]
struct AccessPage<'a> {
    page: &'a Page,
    frame: &'a PortalFrame,
    es: bool,
    rows: Vec<AccessRow>,
    truncated: bool,
}

fn role_label(role: Option<salve_core::permissions::Role>, es: bool) -> &'static str {
    use salve_core::permissions::Role;
    match (role, es) {
        (Some(Role::Admin), false) => "Practice administrator",
        (Some(Role::Admin), true) => "Administrador del consultorio",
        (Some(Role::Clinician), false) => "Clinician",
        (Some(Role::Clinician), true) => "Profesional clínico",
        (Some(Role::Staff), false) => "Front desk staff",
        (Some(Role::Staff), true) => "Personal de recepción",
        (Some(Role::Auditor), false) => "Privacy auditor",
        (Some(Role::Auditor), true) => "Auditor de privacidad",
        (None, false) => "No longer with the practice",
        (None, true) => "Ya no trabaja en el consultorio",
    }
}

/// What an audit action means, in the patient's words.
fn action_label(action: &str, es: bool) -> &'static str {
    let read = action.ends_with(".read") || action.ends_with(".list");
    match (action, read, es) {
        ("patient.read", _, false) => "Looked at your details",
        ("patient.read", _, true) => "Consultó sus datos",
        ("conversation.read", _, false) => "Read your messages",
        ("conversation.read", _, true) => "Leyó sus mensajes",
        ("attachment.read", _, false) => "Opened a file you sent or received",
        ("attachment.read", _, true) => "Abrió un archivo enviado o recibido",
        ("message.send", _, false) => "Sent you a message",
        ("message.send", _, true) => "Le envió un mensaje",
        ("consent.read", _, false) => "Looked at your contact preferences",
        ("consent.read", _, true) => "Consultó sus preferencias de contacto",
        (_, true, false) => "Looked at your record",
        (_, true, true) => "Consultó su expediente",
        (_, false, false) => "Worked on your record",
        (_, false, true) => "Trabajó en su expediente",
    }
}

pub async fn show(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, ApiError> {
    let v = verified(&state, &client, &headers, page, "/portal/access").await?;
    let es = v.frame.es;
    let practice = state.store.practice(v.session.practice_id).await?;
    let accesses = state
        .store
        .patient_record_accesses(v.session.practice_id, v.session.patient_id)
        .await?;
    let truncated = accesses.len() as i64 >= salve_store::MAX_ACCESS_ROWS;
    let mut people: HashMap<UserId, (String, &'static str)> = HashMap::new();
    let mut rows = Vec::with_capacity(accesses.len());
    for a in accesses {
        if !people.contains_key(&a.user) {
            let name = match state.store.user_profile(a.user).await {
                Ok(p) => p.display_name.expose().clone(),
                Err(_) => String::new(),
            };
            let role = state.store.role_in(a.user, v.session.practice_id).await?;
            people.insert(a.user, (name, role_label(role, es)));
        }
        let (name, role) = people[&a.user].clone();
        rows.push(AccessRow {
            when: local_time(&fmt_time(a.at), &practice.time_zone, es),
            name,
            role,
            what: action_label(&a.action, es),
        });
    }
    let mut response = v.page.render(&AccessPage {
        page: &v.page,
        frame: &v.frame,
        es,
        rows,
        truncated,
    });
    super::no_store(&mut response);
    Ok(response)
}

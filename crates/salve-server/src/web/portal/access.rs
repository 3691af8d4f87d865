//! "Who accessed my record": the staff members who looked at or changed the patient's record,
//! with their role and when, from the audit log (`Store::access_report`, the same report the
//! practice's auditors read). Names and roles only: no internal ids.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use salve_core::permissions::Role;
use salve_store::audit_reports::AccessKind;

use super::conversation::local_time;
use super::{PortalFrame, verified};
use crate::AppState;
use crate::api::messages::fmt_time;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::web::Page;

/// The most entries one page lists (newest first).
const MAX_ROWS: usize = 500;

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

/// A staff role in the patient's words; `None` for actors that are not staff members.
fn role_label(role: &str, es: bool) -> Option<&'static str> {
    Some(match (Role::parse(role), es) {
        (Some(Role::Admin), false) => "Practice administrator",
        (Some(Role::Admin), true) => "Administrador del consultorio",
        (Some(Role::Clinician), false) => "Clinician",
        (Some(Role::Clinician), true) => "Profesional clínico",
        (Some(Role::Staff), false) => "Front desk staff",
        (Some(Role::Staff), true) => "Personal de recepción",
        (Some(Role::Auditor), false) => "Privacy auditor",
        (Some(Role::Auditor), true) => "Auditor de privacidad",
        (None, false) if role == "no longer a member" => "No longer with the practice",
        (None, true) if role == "no longer a member" => "Ya no trabaja en el consultorio",
        (None, _) => return None,
    })
}

/// What an access was, in the patient's words.
fn kind_label(kind: AccessKind, es: bool) -> &'static str {
    use AccessKind::*;
    match (kind, es) {
        (ViewedRecord, false) => "Looked at your details",
        (ViewedRecord, true) => "Consultó sus datos",
        (FoundInSearch, false) => "Found you in a search",
        (FoundInSearch, true) => "Lo encontró en una búsqueda",
        (CreatedRecord, false) => "Created your record",
        (CreatedRecord, true) => "Creó su expediente",
        (ChangedRecord | RestrictedRecord, false) => "Changed your details",
        (ChangedRecord | RestrictedRecord, true) => "Cambió sus datos",
        (ErasedRecord, false) => "Erased your record",
        (ErasedRecord, true) => "Borró su expediente",
        (BreakGlass, false) => "Opened your record in an emergency",
        (BreakGlass, true) => "Abrió su expediente en una emergencia",
        (ViewedConversation, false) => "Read your messages",
        (ViewedConversation, true) => "Leyó sus mensajes",
        (ChangedConversation | WroteNote | FiledText, false) => "Worked on your messages",
        (ChangedConversation | WroteNote | FiledText, true) => "Trabajó en sus mensajes",
        (SentMessage | SentSecureLink, false) => "Sent you a message",
        (SentMessage | SentSecureLink, true) => "Le envió un mensaje",
        (OpenedAttachment, false) => "Opened a file",
        (OpenedAttachment, true) => "Abrió un archivo",
        (ViewedConsent, false) => "Looked at your contact preferences",
        (ViewedConsent, true) => "Consultó sus preferencias de contacto",
        (RecordedConsent, false) => "Recorded your contact preferences",
        (RecordedConsent, true) => "Registró sus preferencias de contacto",
        (ViewedAppointments, false) => "Looked at your appointments",
        (ViewedAppointments, true) => "Consultó sus citas",
        (ChangedAppointments, false) => "Changed your appointments",
        (ChangedAppointments, true) => "Cambió sus citas",
        (Exported, false) => "Exported records that include yours",
        (Exported, true) => "Exportó registros que incluyen el suyo",
        (Other, false) => "Worked on your record",
        (Other, true) => "Trabajó en su expediente",
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
    let entries = state
        .store
        .access_report(v.session.practice_id, v.session.patient_id)
        .await?;
    let mut rows: Vec<AccessRow> = entries
        .into_iter()
        .filter(|e| e.outcome == "success")
        .filter_map(|e| {
            Some(AccessRow {
                role: role_label(&e.actor.role, es)?,
                when: local_time(
                    &fmt_time(salve_core::clock::from_micros(e.at)),
                    &practice.time_zone,
                    es,
                ),
                name: e.actor.name,
                what: kind_label(e.kind, es),
            })
        })
        .collect();
    let truncated = rows.len() > MAX_ROWS;
    rows.truncate(MAX_ROWS);
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

//! A closed conversation as a PDF for the patient's chart: who it concerns, then each message
//! (never an internal note) with its time, its side and its text, and attachments by name.
//! The same writer as the patient's own download (`pdf-writer`, Helvetica, WinAnsi).

use salve_core::ConversationId;
use salve_core::audit::Actor;
use salve_core::validation::format_date;
use salve_store::{Direction, FhirMessage, Patient};

use crate::fhir::map::instant;
use crate::web::portal::pdf::{Style, Writer};

fn side(m: &FhirMessage, practice: &str) -> String {
    match (m.message.direction, &m.message.author) {
        (Direction::Inbound, _) => "Patient".to_owned(),
        (Direction::System, _) | (_, Actor::System) => format!("{practice} (automatic)"),
        _ => format!("{practice} staff"),
    }
}

pub fn pdf(
    practice: &str,
    patient: &Patient,
    conversation: ConversationId,
    messages: &[FhirMessage],
) -> Vec<u8> {
    let r = &patient.record;
    let title = format!("Messages with {practice}");
    let mut w = Writer::new();
    w.line(&title, &Style::Title);
    w.line(
        &format!(
            "Patient: {} {}, born {}{}",
            r.given_name.expose(),
            r.family_name.expose(),
            format_date(r.birth_date),
            r.mrn
                .as_ref()
                .map(|m| format!(", MRN {}", m.expose()))
                .unwrap_or_default()
        ),
        &Style::Small,
    );
    w.line(&format!("Conversation {conversation}"), &Style::Small);
    w.gap(10.0);
    if messages.is_empty() {
        w.line("There were no messages.", &Style::Body);
    }
    for m in messages {
        w.line(
            &format!("{} — {}", instant(m.message.created_at), side(m, practice)),
            &Style::Heading,
        );
        if let Some(text) = &m.message.body {
            w.line(text.expose(), &Style::Body);
        }
        for a in &m.message.attachments {
            w.line(
                &format!("Attachment: {} ({} bytes)", a.file_name.expose(), a.size),
                &Style::Small,
            );
        }
        w.gap(8.0);
    }
    w.finish(&title)
}

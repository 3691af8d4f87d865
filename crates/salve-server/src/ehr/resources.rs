//! Salve's records as resources to create in the EHR: the read API's mappings (`fhir::map`),
//! with Salve's server-assigned `id` and `meta` removed, Salve's identifier added (what
//! conditional create searches on), and the patient referred to by the EHR's own id.

use base64::Engine;
use salve_core::consent::ConsentEvent;
use salve_core::ehr::WriteKind;
use salve_core::{ConversationId, MessageId, PatientId, PracticeId};
use salve_store::FhirMessage;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::fhir::map;

/// Replaces every `{"reference": "Patient/{salve id}"}` with the EHR's reference.
fn rebase_patient(value: &mut Value, salve: &str, chart: &Value) {
    match value {
        Value::Object(object) => {
            if object.get("reference").and_then(Value::as_str) == Some(salve) {
                *value = chart.clone();
                return;
            }
            for v in object.values_mut() {
                rebase_patient(v, salve, chart);
            }
        }
        Value::Array(items) => {
            for v in items {
                rebase_patient(v, salve, chart);
            }
        }
        _ => {}
    }
}

/// Drops what the EHR assigns itself, points at its chart, and adds Salve's identifier first.
fn for_the_ehr(
    mut resource: Value,
    patient: PatientId,
    chart: &Value,
    kind: WriteKind,
    value: &str,
) -> Value {
    if let Some(object) = resource.as_object_mut() {
        object.remove("id");
        object.remove("meta");
    }
    rebase_patient(&mut resource, &format!("Patient/{patient}"), chart);
    let mut identifiers = vec![json!({ "system": kind.identifier_system(), "value": value })];
    if let Some(existing) = resource["identifier"].as_array() {
        identifiers.extend(existing.iter().cloned());
    }
    resource["identifier"] = Value::Array(identifiers);
    resource
}

/// A message. What it answers is named by Salve's identifier (the EHR's id of that
/// Communication is not known here).
pub fn communication(
    m: &FhirMessage,
    practice: PracticeId,
    answers: Option<MessageId>,
    base: &str,
    chart: &Value,
) -> Value {
    let mut out = for_the_ehr(
        map::communication(m, practice, None, base),
        m.patient,
        chart,
        WriteKind::Communication,
        &m.message.id.to_string(),
    );
    if let Some(previous) = answers {
        out["inResponseTo"] = json!([{
            "type": "Communication",
            "identifier": { "system": WriteKind::Communication.identifier_system(), "value": previous.to_string() },
        }]);
    }
    out
}

/// The version of a channel × purpose consent that a ledger event made.
pub fn consent(
    patient: PatientId,
    events: &[ConsentEvent],
    event: &str,
    chart: &Value,
) -> Option<Value> {
    map::consent_versions(patient, events)
        .into_iter()
        .flat_map(|(_, versions)| versions)
        .find(|(_, e)| e.id.to_string() == event)
        .map(|(n, e)| {
            for_the_ehr(
                map::consent(patient, n, e),
                patient,
                chart,
                WriteKind::Consent,
                event,
            )
        })
}

/// A closed conversation as a clinical note with its PDF transcript (US Core
/// DocumentReference: status, type, category, subject, date, content).
pub fn document(
    write: &str,
    conversation: ConversationId,
    practice: PracticeId,
    chart: &Value,
    messages: &[FhirMessage],
    pdf: &[u8],
    now: OffsetDateTime,
) -> Value {
    let mut out = json!({
        "resourceType": "DocumentReference",
        "identifier": [
            { "system": WriteKind::Document.identifier_system(), "value": write },
            { "system": "urn:salve:conversation", "value": conversation.to_string() },
        ],
        "status": "current",
        "docStatus": "final",
        "type": {
            "coding": [{ "system": "http://loinc.org", "code": "34109-9", "display": "Note" }],
            "text": "Patient messaging transcript",
        },
        "category": [{ "coding": [{
            "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
            "code": "clinical-note",
            "display": "Clinical Note",
        }]}],
        "subject": chart,
        "date": map::instant(now),
        "author": [{
            "type": "Organization",
            "identifier": { "system": "urn:salve:practice", "value": practice.to_string() },
            "display": "the practice",
        }],
        "description": "Secure messaging conversation (Salve)",
        "content": [{
            "attachment": {
                "contentType": "application/pdf",
                "language": "en",
                "data": base64::engine::general_purpose::STANDARD.encode(pdf),
                "title": "Conversation transcript",
                "creation": map::instant(now),
            },
        }],
    });
    if let (Some(first), Some(last)) = (messages.first(), messages.last()) {
        out["context"] = json!({ "period": {
            "start": map::instant(first.message.created_at),
            "end": map::instant(last.message.created_at),
        }});
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_references_point_at_the_chart() {
        let mut v = json!({
            "subject": { "reference": "Patient/abc" },
            "recipient": [{ "reference": "Patient/abc" }, { "reference": "Patient/other" }],
        });
        let chart = json!({ "reference": "Patient/ehr-1" });
        rebase_patient(&mut v, "Patient/abc", &chart);
        assert_eq!(v["subject"], chart);
        assert_eq!(v["recipient"][0], chart);
        assert_eq!(v["recipient"][1]["reference"], "Patient/other");
    }
}

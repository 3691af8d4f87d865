//! Salve's records as FHIR R4 resources: pure functions from store types to JSON, no I/O.
//! Codes follow the R4 code systems named beside each; Salve's own ids use `urn:salve:*`
//! identifier systems.

use std::collections::HashMap;

use salve_core::appointments::{AppointmentStatus, StatusSource};
use salve_core::audit::Actor;
use salve_core::consent::{
    ConsentAction, ConsentChannel, ConsentEvent, ConsentMethod, ConsentPurpose,
};
use salve_core::patient::{ContactKind, ContactRole};
use salve_core::validation;
use salve_core::{CatalogItemId, PatientId};
use salve_store::audit_reports::{AccessEntry, AuditEntry};
use salve_store::{
    Appointment, ConsentProvenance, Direction, FhirMessage, MessageChannel, MessageStatus, Patient,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const FHIR_VERSION: &str = "4.0.1";
const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const PARTICIPATION_MODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// Salve's catalog items, which are not served as resources: named by these identifier systems
/// (the value is the item's Salve id) and their names as `display`.
pub const APPOINTMENT_TYPE_SYSTEM: &str = "urn:salve:appointment-type";
pub const LOCATION_SYSTEM: &str = "urn:salve:location";
pub const PROVIDER_SYSTEM: &str = "urn:salve:provider";

pub fn instant(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub fn instant_micros(micros: i64) -> String {
    instant(salve_core::clock::from_micros(micros))
}

/// The MRN's identifier system: one per practice.
pub fn mrn_system(practice: salve_core::PracticeId) -> String {
    format!("urn:salve:practice:{practice}:mrn")
}

pub fn patient_ref(id: PatientId) -> Value {
    json!({ "reference": format!("Patient/{id}") })
}

/// A reference to something Salve does not serve as a resource: type and Salve identifier.
fn logical(kind: &str, system: &str, value: String, display: Option<&str>) -> Value {
    let mut r = json!({ "type": kind, "identifier": { "system": system, "value": value } });
    if let Some(d) = display {
        r["display"] = json!(d);
    }
    r
}

fn practice_ref(practice: salve_core::PracticeId) -> Value {
    logical(
        "Organization",
        "urn:salve:practice",
        practice.to_string(),
        Some("the practice"),
    )
}

/// Who did something, as a reference.
pub fn actor_ref(actor: &Actor, practice: salve_core::PracticeId, name: Option<&str>) -> Value {
    match actor {
        Actor::Patient(p) => patient_ref(*p),
        Actor::User(u) => logical("Practitioner", "urn:salve:user", u.to_string(), name),
        Actor::ApiToken(t) => logical(
            "Device",
            "urn:salve:api-token",
            t.to_string(),
            Some(name.unwrap_or("API token")),
        ),
        Actor::System => practice_ref(practice),
        Actor::Cli => json!({ "display": "server operator" }),
        Actor::Anonymous => json!({ "display": "unidentified" }),
    }
}

fn meta(version: Option<i64>, updated: OffsetDateTime) -> Value {
    let mut m = json!({ "lastUpdated": instant(updated) });
    if let Some(v) = version {
        m["versionId"] = json!(v.to_string());
    }
    m
}

pub fn patient(p: &Patient) -> Value {
    let r = &p.record;
    let mut out = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": meta(Some(p.version), p.updated_at),
        "active": true,
        "name": [{
            "use": "official",
            "family": r.family_name.expose(),
            "given": [r.given_name.expose()],
        }],
        "birthDate": validation::format_date(r.birth_date),
        "communication": [{
            "language": {
                "coding": [{ "system": "urn:ietf:bcp:47", "code": r.preferred_language }]
            },
            "preferred": true,
        }],
    });
    if let Some(mrn) = &r.mrn {
        out["identifier"] = json!([{
            "use": "usual",
            "type": { "coding": [{ "system": V2_0203, "code": "MR", "display": "Medical record number" }] },
            "system": mrn_system(p.practice_id),
            "value": mrn.expose(),
        }]);
    }
    let telecom = |c: &salve_core::patient::Contact, rank: usize| {
        json!({
            "system": match c.kind { ContactKind::Phone => "phone", ContactKind::Email => "email" },
            "value": c.value.expose(),
            "rank": rank,
        })
    };
    let own: Vec<Value> = r
        .contacts
        .iter()
        .filter(|c| c.role == ContactRole::Patient)
        .enumerate()
        .map(|(i, c)| telecom(c, i + 1))
        .collect();
    if !own.is_empty() {
        out["telecom"] = Value::Array(own);
    }
    let others: Vec<Value> = r
        .contacts
        .iter()
        .filter(|c| c.role != ContactRole::Patient)
        .enumerate()
        .map(|(i, c)| {
            let (code, display) = match c.role {
                ContactRole::Guardian => ("GUARD", "guardian"),
                _ => ("CAREGIVER", "caregiver"),
            };
            json!({
                "relationship": [{
                    "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": code, "display": display }]
                }],
                "telecom": [telecom(c, i + 1)],
            })
        })
        .collect();
    if !others.is_empty() {
        out["contact"] = Value::Array(others);
    }
    out
}

fn communication_status(m: &FhirMessage) -> &'static str {
    match m.message.status {
        Some(MessageStatus::Queued) => "preparation",
        Some(MessageStatus::Sending) => "in-progress",
        Some(MessageStatus::Failed) => "not-done",
        Some(MessageStatus::Unknown) => "unknown",
        Some(
            MessageStatus::Sent
            | MessageStatus::Delivered
            | MessageStatus::Read
            | MessageStatus::Received,
        )
        | None => "completed",
    }
}

fn medium(channel: MessageChannel) -> Value {
    let (code, display) = match channel {
        MessageChannel::Sms => ("SMSWRIT", "SMS written"),
        MessageChannel::Email => ("EMAILWRIT", "email"),
        MessageChannel::Portal => ("ONLINEWRIT", "online written"),
    };
    json!({ "coding": [{ "system": PARTICIPATION_MODE, "code": code, "display": display }] })
}

/// One message as a `Communication`. `in_response_to`: the message it answers (the latest
/// earlier one from the other side of the same conversation).
pub fn communication(
    m: &FhirMessage,
    practice: salve_core::PracticeId,
    in_response_to: Option<salve_core::MessageId>,
    base: &str,
) -> Value {
    let v = &m.message;
    let inbound = v.direction == Direction::Inbound;
    let mut out = json!({
        "resourceType": "Communication",
        "id": v.id.to_string(),
        "meta": meta(None, m.updated_at),
        "identifier": [{ "system": "urn:salve:conversation", "value": v.conversation_id.to_string() }],
        "status": communication_status(m),
        "category": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                "code": if v.direction == Direction::System { "notification" } else { "instruction" },
            }]
        }],
        "subject": patient_ref(m.patient),
        "sent": instant(v.created_at),
    });
    if let Some(channel) = v.channel {
        out["medium"] = json!([medium(channel)]);
    }
    if inbound {
        out["sender"] = patient_ref(m.patient);
        out["recipient"] = json!([practice_ref(practice)]);
        out["received"] = json!(instant(v.created_at));
    } else {
        out["sender"] = actor_ref(&v.author, practice, None);
        out["recipient"] = json!([patient_ref(m.patient)]);
        if let Some(read) = m.patient_read_at {
            out["received"] = json!(instant(read));
        }
    }
    if let Some(previous) = in_response_to {
        out["inResponseTo"] = json!([{ "reference": format!("Communication/{previous}") }]);
    }
    let mut payload = Vec::new();
    if let Some(body) = &v.body
        && !body.expose().is_empty()
    {
        payload.push(json!({ "contentString": body.expose() }));
    }
    for a in &v.attachments {
        payload.push(json!({ "contentAttachment": {
            "contentType": a.media_type,
            "url": format!("{base}/Binary/{}", a.id),
            "size": a.size,
            "title": a.file_name.expose(),
        }}));
    }
    if !payload.is_empty() {
        out["payload"] = Value::Array(payload);
    }
    out
}

/// For each message, the message it answers: the latest earlier one of the same conversation
/// written by the other side (patient vs practice). `messages` are oldest first.
pub fn replies(messages: &[FhirMessage]) -> Vec<Option<salve_core::MessageId>> {
    let mut last_in: std::collections::HashMap<_, salve_core::MessageId> = Default::default();
    let mut last_out: std::collections::HashMap<_, salve_core::MessageId> = Default::default();
    messages
        .iter()
        .map(|m| {
            let conv = m.message.conversation_id;
            let inbound = m.message.direction == Direction::Inbound;
            let answer = if inbound {
                last_out.get(&conv).copied()
            } else {
                last_in.get(&conv).copied()
            };
            if inbound {
                last_in.insert(conv, m.message.id);
            } else {
                last_out.insert(conv, m.message.id);
            }
            answer
        })
        .collect()
}

fn channel_code(c: ConsentChannel) -> &'static str {
    match c {
        ConsentChannel::SmsPlain => "sms",
        ConsentChannel::SmsNotify => "smsn",
        ConsentChannel::EmailNotify => "email",
        ConsentChannel::Portal => "portal",
    }
}

fn purpose_code(p: ConsentPurpose) -> &'static str {
    match p {
        ConsentPurpose::AppointmentReminders => "rem",
        ConsentPurpose::CareMessages => "care",
        ConsentPurpose::Announcements => "ann",
    }
}

/// `{patient}.{channel}.{purpose}`: at most 48 characters, FHIR's id alphabet.
pub fn consent_id(patient: PatientId, channel: ConsentChannel, purpose: ConsentPurpose) -> String {
    format!(
        "{patient}.{}.{}",
        channel_code(channel),
        purpose_code(purpose)
    )
}

pub fn parse_consent_id(id: &str) -> Option<(PatientId, ConsentChannel, ConsentPurpose)> {
    let mut parts = id.split('.');
    let patient = parts.next()?.parse().ok()?;
    let channel = parts.next()?;
    let purpose = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let channel = [
        ConsentChannel::SmsPlain,
        ConsentChannel::SmsNotify,
        ConsentChannel::EmailNotify,
        ConsentChannel::Portal,
    ]
    .into_iter()
    .find(|c| channel_code(*c) == channel)?;
    let purpose = [
        ConsentPurpose::AppointmentReminders,
        ConsentPurpose::CareMessages,
        ConsentPurpose::Announcements,
    ]
    .into_iter()
    .find(|p| purpose_code(*p) == purpose)?;
    Some((patient, channel, purpose))
}

/// The ledger of one patient as versioned `Consent`s: for each channel × purpose with any
/// event, every version (oldest first), version `n` being the state after its `n`th event.
pub fn consent_versions(
    patient: PatientId,
    events: &[ConsentEvent],
) -> Vec<(String, Vec<(i64, &ConsentEvent)>)> {
    let mut out: Vec<(String, Vec<(i64, &ConsentEvent)>)> = Vec::new();
    for e in events {
        let id = consent_id(patient, e.channel, e.purpose);
        match out.iter_mut().find(|(i, _)| *i == id) {
            Some((_, versions)) => {
                let n = versions.len() as i64 + 1;
                versions.push((n, e));
            }
            None => out.push((id, vec![(1, e)])),
        }
    }
    out
}

/// One version of a channel × purpose consent: the state its event left.
pub fn consent(patient: PatientId, version: i64, e: &ConsentEvent) -> Value {
    let granted = e.action == ConsentAction::Grant;
    let mut out = json!({
        "resourceType": "Consent",
        "id": consent_id(patient, e.channel, e.purpose),
        "meta": meta(Some(version), e.at),
        "status": if granted { "active" } else { "inactive" },
        "scope": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
        }]},
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent" }] }],
        "patient": patient_ref(patient),
        "dateTime": instant(e.at),
        "policyRule": { "coding": [{ "system": ACT_CODE, "code": if granted { "OPTIN" } else { "OPTOUT" } }] },
        "provision": {
            "type": if granted { "permit" } else { "deny" },
            "purpose": [{ "system": "urn:salve:consent-purpose", "code": e.purpose.as_str(), "display": e.purpose.label() }],
            "code": [{ "coding": [{ "system": "urn:salve:consent-channel", "code": e.channel.as_str(), "display": e.channel.label() }] }],
        },
    });
    if let Some(text) = &e.consent_text {
        out["policy"] = json!([{ "uri": format!("urn:salve:consent-text:{}:sha256:{}", text.version, text.sha256_hex) }]);
    }
    out
}

fn method_display(m: ConsentMethod) -> &'static str {
    match m {
        ConsentMethod::IntakeForm => "intake form",
        ConsentMethod::Verbal => "verbal, recorded by staff",
        ConsentMethod::PatientPortal => "the patient, in the portal",
        ConsentMethod::SmsKeyword => "an SMS keyword from the patient",
        ConsentMethod::FreeTextRequest => "a request in the patient's own words",
    }
}

/// What a consent version rests on: who recorded it, how, and the inbound message it came
/// from (R4 `Consent.source` cannot reference a `Communication`).
pub fn provenance(
    patient: PatientId,
    practice: salve_core::PracticeId,
    version: i64,
    e: &ConsentEvent,
    source: Option<&ConsentProvenance>,
) -> Value {
    let consent = consent_id(patient, e.channel, e.purpose);
    let who = match e.recorded_by {
        Some(user) => actor_ref(&Actor::User(user), practice, None),
        None => patient_ref(patient),
    };
    let mut entity = vec![json!({
        "role": "source",
        "what": { "display": method_display(e.method) },
    })];
    if let Some(message) = source.and_then(|s| s.source_message) {
        entity = vec![json!({
            "role": "source",
            "what": { "reference": format!("Communication/{message}") },
        })];
    } else if source.is_some_and(|s| s.has_evidence) {
        entity[0]["what"]["display"] =
            json!(format!("{} (evidence on file)", method_display(e.method)));
    }
    json!({
        "resourceType": "Provenance",
        "id": e.id.to_string(),
        "target": [{ "reference": format!("Consent/{consent}/_history/{version}") }],
        "recorded": instant(e.at),
        "activity": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": if version == 1 { "CREATE" } else { "UPDATE" },
        }]},
        "agent": [{
            "type": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "enterer",
            }]},
            "who": who,
        }],
        "entity": entity,
    })
}

pub fn appointment_status(s: AppointmentStatus) -> &'static str {
    match s {
        AppointmentStatus::Booked
        | AppointmentStatus::Confirmed
        | AppointmentStatus::RescheduleRequested => "booked",
        AppointmentStatus::Cancelled => "cancelled",
        AppointmentStatus::Completed => "fulfilled",
        AppointmentStatus::NoShow => "noshow",
    }
}

/// The patient's participation as their answers left it.
fn patient_participation(a: &Appointment) -> &'static str {
    match a.status {
        AppointmentStatus::Confirmed => "accepted",
        AppointmentStatus::Cancelled | AppointmentStatus::RescheduleRequested => "declined",
        _ => "needs-action",
    }
}

/// The EHR's own id of a visit, as an identifier system of the practice.
pub fn appointment_id_system(practice: salve_core::PracticeId) -> String {
    format!("urn:salve:practice:{practice}:appointment")
}

/// `names`: the practice's catalog (type, location and provider are shown by name).
pub fn appointment(a: &Appointment, names: &HashMap<CatalogItemId, String>) -> Value {
    let end = a.starts_at + time::Duration::minutes(a.duration_minutes);
    let name = |id: CatalogItemId| names.get(&id).cloned().unwrap_or_default();
    let item = |kind: &str, system: &str, id: CatalogItemId| {
        let mut actor = logical(kind, system, id.to_string(), None);
        let n = name(id);
        if !n.is_empty() {
            actor["display"] = json!(n);
        }
        json!({ "actor": actor, "required": "required", "status": "accepted" })
    };
    let mut kind = json!({ "coding": [{ "system": APPOINTMENT_TYPE_SYSTEM, "code": a.appointment_type.to_string() }] });
    let type_name = name(a.appointment_type);
    if !type_name.is_empty() {
        kind["coding"][0]["display"] = json!(type_name);
        kind["text"] = json!(type_name);
    }
    let mut out = json!({
        "resourceType": "Appointment",
        "id": a.id.to_string(),
        "meta": meta(Some(a.version), a.updated_at),
        "status": appointment_status(a.status),
        "appointmentType": kind,
        "start": instant(a.starts_at),
        "end": instant(end),
        "minutesDuration": a.duration_minutes,
        "created": instant(a.created_at),
        "participant": [
            { "actor": patient_ref(a.patient), "required": "required", "status": patient_participation(a) },
            item("Location", LOCATION_SYSTEM, a.location),
            item("Practitioner", PROVIDER_SYSTEM, a.provider),
        ],
    });
    if let Some(ext) = &a.external_id {
        out["identifier"] =
            json!([{ "system": appointment_id_system(a.practice), "value": ext.expose() }]);
    }
    if a.status == AppointmentStatus::RescheduleRequested {
        out["comment"] = json!("the patient asked to reschedule");
    }
    out
}

/// The patient's answer about a visit, derived from the appointment (Salve keeps the answer
/// as the visit's status): confirmed is `accepted`; cancelled by the patient's own answer, or
/// asked to reschedule, is `declined`. `None`: the patient has not answered (or the practice,
/// not the patient, cancelled). Its id is the appointment's.
pub fn appointment_response(a: &Appointment) -> Option<Value> {
    let (status, comment) = match (a.status, a.status_source) {
        (AppointmentStatus::Confirmed, _) => ("accepted", None),
        (AppointmentStatus::Cancelled, StatusSource::PatientReply) => ("declined", None),
        (AppointmentStatus::RescheduleRequested, _) => {
            ("declined", Some("the patient asked to reschedule"))
        }
        _ => return None,
    };
    let mut out = json!({
        "resourceType": "AppointmentResponse",
        "id": a.id.to_string(),
        "meta": { "lastUpdated": instant(a.updated_at) },
        "appointment": { "reference": format!("Appointment/{}", a.id) },
        "actor": patient_ref(a.patient),
        "participantStatus": status,
    });
    if let Some(c) = comment {
        out["comment"] = json!(c);
    }
    Some(out)
}

/// IHE Basic Audit Log Patterns: (type, subtype, action) for a stored action.
fn balp(action: &str) -> (Value, Option<Value>, &'static str) {
    let rest = json!({
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "Restful Operation",
    });
    let interaction = |code: &str| {
        Some(json!({ "system": "http://hl7.org/fhir/restful-interaction", "code": code }))
    };
    let dcm = |code: &str, display: &str| json!({ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": code, "display": display });
    let verb = action.rsplit('.').next().unwrap_or("");
    if action == "sign_in" || action.ends_with("sign_in") || action == "session.end" {
        return (dcm("110114", "User Authentication"), None, "E");
    }
    if action.starts_with("audit.") {
        return (dcm("110101", "Audit Log Used"), None, "R");
    }
    match verb {
        "read" | "open" => (rest, interaction("read"), "R"),
        "list" | "search" | "lookup" => (rest, interaction("search-type"), "E"),
        "create" | "send" | "receive" | "import" | "invite" | "note" => {
            (rest, interaction("create"), "C")
        }
        "shred" => (rest, interaction("delete"), "D"),
        "update" | "record" | "change" | "restrict" | "assign" | "state" | "cancel" => {
            (rest, interaction("update"), "U")
        }
        _ => (dcm("110100", "Application Activity"), None, "E"),
    }
}

fn outcome_code(outcome: &str) -> &'static str {
    match outcome {
        "success" => "0",
        "denied" => "4",
        _ => "8",
    }
}

/// The patient an audit row is about (BALP: entity type Person, role Patient).
fn patient_entity(p: PatientId, description: Option<&str>) -> Value {
    let mut entity = json!({
        "what": patient_ref(p),
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" },
        "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient" },
    });
    if let Some(d) = description {
        entity["description"] = json!(d);
    }
    entity
}

/// One row of the audit chain as an `AuditEvent` (id: the row's position in the chain).
pub fn audit_event(e: &AuditEntry, practice: salve_core::PracticeId) -> Value {
    let (kind, subtype, action) = balp(&e.action);
    let actor = match e.actor_kind.as_str() {
        "user" | "token" | "patient" | "system" | "cli" => e.actor.name.as_str(),
        _ => "unidentified",
    };
    let who = match e.actor_kind.as_str() {
        "system" => practice_ref(practice),
        _ => json!({ "display": actor }),
    };
    let mut agent = json!({
        "type": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "code": "humanuser",
            "display": "human user",
        }]},
        "who": who,
        "requestor": true,
    });
    if e.actor_kind != "user" && e.actor_kind != "patient" {
        agent["type"] = json!({ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "code": "dataprocessor",
            "display": "data processor",
        }]});
    }
    if let Some(ip) = &e.ip {
        agent["network"] = json!({ "address": ip, "type": "2" });
    }
    let mut out = json!({
        "resourceType": "AuditEvent",
        "id": e.seq.to_string(),
        "meta": { "lastUpdated": instant_micros(e.at) },
        "type": kind,
        "action": action,
        "recorded": instant_micros(e.at),
        "outcome": outcome_code(&e.outcome),
        "outcomeDesc": e.outcome,
        "agent": [agent],
        "source": {
            "site": practice.to_string(),
            "observer": { "display": "Salve" },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
        "entity": [{
            "what": { "identifier": { "system": "urn:salve:audit-action", "value": e.action } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" },
            "description": e.action_label,
        }],
    });
    if let Some(s) = subtype {
        out["subtype"] = json!([s]);
    }
    if let Some(p) = e.patient
        && let Some(entities) = out["entity"].as_array_mut()
    {
        entities.insert(0, patient_entity(p, None));
    }
    out
}

/// One access to a patient's data (from the patient's access report) as an `AuditEvent`, for
/// `$everything`: ids are `access-{n}` since these rows carry no chain position.
pub fn access_event(n: usize, e: &AccessEntry, patient: PatientId) -> Value {
    let (kind, subtype, action) = balp(&e.action);
    let mut out = json!({
        "resourceType": "AuditEvent",
        "id": format!("access-{n}"),
        "type": kind,
        "action": action,
        "recorded": instant_micros(e.at),
        "outcome": outcome_code(&e.outcome),
        "agent": [{
            "who": { "display": format!("{} ({})", e.actor.name, e.actor.role) },
            "requestor": true,
        }],
        "source": {
            "observer": { "display": "Salve" },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
        "entity": [patient_entity(patient, Some(&e.action))],
    });
    if let Some(s) = subtype {
        out["subtype"] = json!([s]);
    }
    out
}

/// An attachment's content as a `Binary`, readable by those who may read its message.
pub fn binary(id: salve_core::AttachmentId, media_type: &str, bytes: &[u8]) -> Value {
    use base64::Engine;
    json!({
        "resourceType": "Binary",
        "id": id.to_string(),
        "contentType": media_type,
        "data": base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

/// The issue types Salve answers with (R4 `issue-type`).
pub fn operation_outcome(code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }],
    })
}

/// `issue-type` for an HTTP status.
pub fn issue_code(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid",
        401 => "login",
        403 => "forbidden",
        404 | 410 => "not-found",
        405 | 501 => "not-supported",
        409 => "conflict",
        429 => "throttled",
        _ => "exception",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salve_core::consent::ConsentEventInput;
    use salve_core::{ConsentEventId, UserId};

    fn event(
        channel: ConsentChannel,
        purpose: ConsentPurpose,
        action: ConsentAction,
    ) -> ConsentEvent {
        ConsentEvent::new(
            ConsentEventId::new(),
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(20000),
            Some(UserId::new()),
            ConsentEventInput {
                channel,
                purpose,
                action,
                method: ConsentMethod::Verbal,
                consent_text: None,
                sms_risk_acknowledged: false,
            },
        )
    }

    #[test]
    fn consent_ids_fit_fhir_and_round_trip() {
        let patient = PatientId::new();
        for channel in [
            ConsentChannel::SmsPlain,
            ConsentChannel::SmsNotify,
            ConsentChannel::EmailNotify,
            ConsentChannel::Portal,
        ] {
            for purpose in [
                ConsentPurpose::AppointmentReminders,
                ConsentPurpose::CareMessages,
                ConsentPurpose::Announcements,
            ] {
                let id = consent_id(patient, channel, purpose);
                assert!(id.len() <= 64, "{id}");
                assert!(
                    id.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                );
                assert_eq!(parse_consent_id(&id), Some((patient, channel, purpose)));
            }
        }
        assert_eq!(parse_consent_id("nope"), None);
        assert_eq!(parse_consent_id(&format!("{patient}.sms.rem.x")), None);
    }

    #[test]
    fn each_channel_and_purpose_is_one_consent_whose_versions_follow_the_ledger() {
        let patient = PatientId::new();
        let events = [
            event(
                ConsentChannel::SmsPlain,
                ConsentPurpose::CareMessages,
                ConsentAction::Grant,
            ),
            event(
                ConsentChannel::Portal,
                ConsentPurpose::CareMessages,
                ConsentAction::Grant,
            ),
            event(
                ConsentChannel::SmsPlain,
                ConsentPurpose::CareMessages,
                ConsentAction::Revoke,
            ),
        ];
        let versions = consent_versions(patient, &events);
        assert_eq!(versions.len(), 2);
        let (id, sms) = &versions[0];
        assert!(id.ends_with(".sms.care"));
        assert_eq!(sms.len(), 2);
        let latest = consent(patient, sms[1].0, sms[1].1);
        assert_eq!(latest["status"], "inactive");
        assert_eq!(latest["provision"]["type"], "deny");
        assert_eq!(latest["meta"]["versionId"], "2");
        let first = consent(patient, sms[0].0, sms[0].1);
        assert_eq!(first["status"], "active");
        assert_eq!(first["policyRule"]["coding"][0]["code"], "OPTIN");
    }

    #[test]
    fn provenance_points_at_the_version_and_its_inbound_message() {
        let patient = PatientId::new();
        let practice = salve_core::PracticeId::new();
        let mut e = event(
            ConsentChannel::SmsPlain,
            ConsentPurpose::CareMessages,
            ConsentAction::Revoke,
        );
        e.recorded_by = None;
        e.method = ConsentMethod::SmsKeyword;
        let message = salve_core::MessageId::new();
        let source = ConsentProvenance {
            event: e.id,
            source_message: Some(message),
            has_evidence: false,
        };
        let p = provenance(patient, practice, 3, &e, Some(&source));
        assert!(
            p["target"][0]["reference"]
                .as_str()
                .unwrap()
                .ends_with(".sms.care/_history/3")
        );
        assert_eq!(
            p["entity"][0]["what"]["reference"],
            format!("Communication/{message}")
        );
        assert_eq!(
            p["agent"][0]["who"]["reference"],
            format!("Patient/{patient}")
        );
        assert_eq!(p["activity"]["coding"][0]["code"], "UPDATE");
    }

    #[test]
    fn audit_actions_are_coded_after_balp() {
        let (t, s, a) = balp("patient.read");
        assert_eq!(t["code"], "rest");
        assert_eq!(s.unwrap()["code"], "read");
        assert_eq!(a, "R");
        let (_, s, a) = balp("patient.search");
        assert_eq!(s.unwrap()["code"], "search-type");
        assert_eq!(a, "E");
        let (t, s, _) = balp("sign_in");
        assert_eq!(t["code"], "110114");
        assert!(s.is_none());
        assert_eq!(balp("message.send").2, "C");
        assert_eq!(balp("patient.shred").2, "D");
        assert_eq!(outcome_code("denied"), "4");
    }

    fn visit(status: AppointmentStatus, source: StatusSource) -> Appointment {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20000);
        Appointment {
            id: salve_core::AppointmentId::new(),
            practice: salve_core::PracticeId::new(),
            patient: PatientId::new(),
            external_id: None,
            starts_at: at,
            time_zone: "America/Chicago".into(),
            duration_minutes: 30,
            appointment_type: CatalogItemId::new(),
            location: CatalogItemId::new(),
            provider: CatalogItemId::new(),
            status,
            status_source: source,
            version: 3,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn the_patients_answer_is_derived_from_the_visit_and_only_when_they_gave_one() {
        use AppointmentStatus as S;
        let answer =
            |s, src| appointment_response(&visit(s, src)).map(|r| r["participantStatus"].clone());
        assert_eq!(
            answer(S::Confirmed, StatusSource::PatientReply),
            Some(json!("accepted"))
        );
        assert_eq!(
            answer(S::Cancelled, StatusSource::PatientReply),
            Some(json!("declined"))
        );
        assert_eq!(
            answer(S::RescheduleRequested, StatusSource::PatientReply),
            Some(json!("declined"))
        );
        assert_eq!(
            answer(S::Cancelled, StatusSource::Staff),
            None,
            "the practice cancelled"
        );
        assert_eq!(answer(S::Booked, StatusSource::Api), None);
        let a = visit(S::Booked, StatusSource::Api);
        let r = appointment(&a, &HashMap::from([(a.location, "Main St".to_owned())]));
        assert_eq!(r["meta"]["versionId"], "3");
        assert_eq!(r["participant"][1]["actor"]["display"], "Main St");
        assert_eq!(
            r["participant"][1]["actor"]["identifier"]["system"],
            LOCATION_SYSTEM
        );
        assert_eq!(r["participant"][0]["status"], "needs-action");
    }

    #[test]
    fn statuses_map_to_r4_issue_types() {
        assert_eq!(issue_code(401), "login");
        assert_eq!(issue_code(403), "forbidden");
        assert_eq!(issue_code(404), "not-found");
        assert_eq!(issue_code(422), "invalid");
        assert_eq!(issue_code(500), "exception");
    }
}

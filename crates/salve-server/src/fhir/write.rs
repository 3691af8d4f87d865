//! FHIR R4 writes, parsed (pure, no I/O): a `Patient`, `Appointment`, `AppointmentResponse` or
//! transaction `Bundle` becomes the store's writes (`salve_store::FhirWrite`). Validation is
//! salve-core's (`PatientRecord::from_input`, `appointments::*`); this module only reads FHIR's
//! shapes. Errors name a FHIR path and what it must be, never the value sent.

use std::collections::HashMap;

use salve_core::appointments::{self as rules, AppointmentStatus};
use salve_core::patient::{
    ContactInput, ContactKind, ContactRole, DEFAULT_LANGUAGE, InputContext, PatientInput,
    PatientPatchInput, PatientRecord,
};
use salve_core::validation::{self, FieldError};
use salve_core::{AppointmentId, CatalogItemId, PatientId, PracticeId, Sensitive};
use salve_store::{
    AppointmentPatch, CatalogItem, CatalogKind, FhirWrite, NewAppointment, PatientRef,
};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::map::{APPOINTMENT_TYPE_SYSTEM, LOCATION_SYSTEM, PROVIDER_SYSTEM, mrn_system};

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

/// A write refused before the database is asked: HTTP status, and the issues (FHIR path, what
/// it must be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub issues: Vec<FieldError>,
}

impl Refusal {
    pub fn invalid(path: &str, expected: impl Into<String>) -> Self {
        Self {
            status: 400,
            issues: vec![FieldError::new(path, expected)],
        }
    }

    fn fields(issues: Vec<FieldError>) -> Self {
        Self {
            status: 422,
            issues,
        }
    }
}

type Parsed<T> = Result<T, Refusal>;

/// What parsing needs to know about the practice and the moment.
pub struct Context<'a> {
    pub practice: PracticeId,
    pub input: &'a InputContext,
    pub now: OffsetDateTime,
    /// The zone a new appointment's time is told in (FHIR has no field for it).
    pub time_zone: &'a str,
    pub catalog: &'a [CatalogItem],
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn check_type(resource: &Value, kind: &str) -> Parsed<()> {
    if !resource.is_object() || text(resource, "resourceType") != Some(kind) {
        return Err(Refusal::invalid(
            "resourceType",
            format!("a {kind} resource"),
        ));
    }
    Ok(())
}

/// For an update: the body's id must be the one in the URL (FHIR requires it).
fn check_id(resource: &Value, id: &str) -> Parsed<()> {
    if text(resource, "id") != Some(id) {
        return Err(Refusal::invalid(
            "id",
            "the id in the URL (an update names its resource in both)",
        ));
    }
    Ok(())
}

// ---- Patient ---------------------------------------------------------------------------------

/// A Salve field name (from salve-core's validation) as the FHIR path it came from.
pub fn patient_path(field: &str) -> &'static str {
    match field {
        "given_name" => "Patient.name.given",
        "family_name" => "Patient.name.family",
        "birth_date" => "Patient.birthDate",
        "mrn" => "Patient.identifier",
        "preferred_language" => "Patient.communication.language",
        f if f.starts_with("contacts") => "Patient.telecom",
        _ => "Patient",
    }
}

fn coded(concept: &Value, system: &str, code: &str) -> bool {
    array(concept, "coding")
        .iter()
        .any(|c| text(c, "system") == Some(system) && text(c, "code") == Some(code))
}

/// The fields of a FHIR Patient Salve keeps: the official (else usual, else first) name, the
/// MRN (an identifier typed `MR`, or in Salve's MRN system), phone and email telecoms, guardian
/// and caregiver contacts, the preferred language. Other identifiers, telecom systems (fax,
/// pager) and contacts (emergency, next of kin) are not kept: Salve would not message them.
pub fn patient_input(resource: &Value, practice: PracticeId) -> Parsed<PatientInput> {
    check_type(resource, "Patient")?;
    if resource.get("active") == Some(&Value::Bool(false)) {
        return Err(Refusal::fields(vec![FieldError::new(
            "Patient.active",
            "true or absent: Salve keeps only active patients",
        )]));
    }
    let names = array(resource, "name");
    let by_use = |u: &str| names.iter().find(|n| text(n, "use") == Some(u));
    let name = by_use("official")
        .or_else(|| by_use("usual"))
        .or_else(|| names.first());
    let mut errors = Vec::new();
    let (given, family) = match name {
        Some(n) => {
            let given: Vec<&str> = array(n, "given").iter().filter_map(Value::as_str).collect();
            (given.join(" "), text(n, "family").unwrap_or("").to_owned())
        }
        None => (String::new(), String::new()),
    };
    if name.is_none() {
        errors.push(FieldError::new(
            "Patient.name",
            "a name with family and given",
        ));
    }
    let birth = text(resource, "birthDate").unwrap_or("");
    let mrn_system = mrn_system(practice);
    let mrns: Vec<&str> = array(resource, "identifier")
        .iter()
        .filter(|i| {
            text(i, "system") == Some(mrn_system.as_str())
                || i.get("type").is_some_and(|t| coded(t, V2_0203, "MR"))
        })
        .filter_map(|i| text(i, "value"))
        .collect();
    let mrn = match mrns.as_slice() {
        [] => None,
        [one] => Some(Sensitive::new((*one).to_owned())),
        [first, rest @ ..] if rest.iter().all(|m| m == first) => {
            Some(Sensitive::new((*first).to_owned()))
        }
        _ => {
            errors.push(FieldError::new(
                "Patient.identifier",
                "at most one medical record number (type MR)",
            ));
            None
        }
    };
    let mut contacts = telecoms(array(resource, "telecom"), ContactRole::Patient);
    for c in array(resource, "contact") {
        let role = array(c, "relationship").iter().find_map(|r| {
            let roles = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
            if coded(r, roles, "GUARD") {
                Some(ContactRole::Guardian)
            } else if coded(r, roles, "CAREGIVER") {
                Some(ContactRole::Caregiver)
            } else {
                None
            }
        });
        if let Some(role) = role {
            contacts.extend(telecoms(array(c, "telecom"), role));
        }
    }
    let languages = array(resource, "communication");
    let language = languages
        .iter()
        .find(|c| c.get("preferred") == Some(&Value::Bool(true)))
        .or_else(|| languages.first())
        .and_then(|c| {
            let concept = c.get("language")?;
            array(concept, "coding")
                .iter()
                .find_map(|coding| text(coding, "code"))
                .or_else(|| text(concept, "text"))
        })
        .map(str::to_owned);
    if !errors.is_empty() {
        return Err(Refusal::fields(errors));
    }
    Ok(PatientInput {
        given_name: Sensitive::new(given),
        family_name: Sensitive::new(family),
        birth_date: Sensitive::new(birth.to_owned()),
        mrn,
        preferred_language: language,
        time_zone: None,
        contacts,
    })
}

/// Phone (and SMS) and email telecoms, lowest `rank` first.
fn telecoms(list: &[Value], role: ContactRole) -> Vec<ContactInput> {
    let mut kept: Vec<(u64, usize, ContactInput)> = list
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let kind = match text(t, "system")? {
                "phone" | "sms" => ContactKind::Phone,
                "email" => ContactKind::Email,
                _ => return None,
            };
            let rank = t.get("rank").and_then(Value::as_u64).unwrap_or(u64::MAX);
            Some((
                rank,
                i,
                ContactInput {
                    kind,
                    value: Sensitive::new(text(t, "value")?.to_owned()),
                    role,
                },
            ))
        })
        .collect();
    kept.sort_by_key(|(rank, i, _)| (*rank, *i));
    // The same number twice (phone and sms) is one contact.
    let mut out: Vec<ContactInput> = Vec::new();
    for (_, _, c) in kept {
        if !out
            .iter()
            .any(|o| o.kind == c.kind && o.value.expose() == c.value.expose())
        {
            out.push(c);
        }
    }
    out
}

fn field_refusal(errors: Vec<FieldError>, path: fn(&str) -> &'static str) -> Refusal {
    Refusal::fields(
        errors
            .into_iter()
            .map(|e| FieldError::new(path(&e.field), e.expected))
            .collect(),
    )
}

/// A new patient's record, validated.
pub fn patient_record(resource: &Value, ctx: &Context<'_>) -> Parsed<PatientRecord> {
    let input = patient_input(resource, ctx.practice)?;
    PatientRecord::from_input(&input, ctx.input).map_err(|e| field_refusal(e, patient_path))
}

/// An update replaces what FHIR can say (name, birth date, MRN, telecoms and contacts,
/// language); the time zone, which a Patient cannot carry, is kept.
pub fn patient_patch(resource: &Value, id: &str, ctx: &Context<'_>) -> Parsed<PatientPatchInput> {
    check_type(resource, "Patient")?;
    check_id(resource, id)?;
    let input = patient_input(resource, ctx.practice)?;
    // Validated here so that errors name FHIR paths; the store validates again when patching.
    PatientRecord::from_input(&input, ctx.input).map_err(|e| field_refusal(e, patient_path))?;
    Ok(PatientPatchInput {
        given_name: Some(input.given_name),
        family_name: Some(input.family_name),
        birth_date: Some(input.birth_date),
        mrn: Some(input.mrn),
        preferred_language: Some(
            input
                .preferred_language
                .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned()),
        ),
        time_zone: None,
        contacts: Some(input.contacts),
    })
}

/// `If-None-Exist: identifier=[system|]value`: the MRN to look for. Other criteria are refused
/// (Salve would otherwise create a duplicate the client meant to prevent).
pub fn if_none_exist(raw: &str) -> Parsed<Sensitive<String>> {
    let query = raw.split_once('?').map_or(raw, |(_, q)| q);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match pairs.as_slice() {
        [(name, value)] if name == "identifier" => {
            let value = super::params::token_value(value);
            validation::mrn("identifier", value)
                .map_err(|e| Refusal::invalid("If-None-Exist", e.expected))
        }
        _ => Err(Refusal::invalid(
            "If-None-Exist",
            "identifier=[system|]value (the MRN): the only condition Salve supports",
        )),
    }
}

// ---- Appointment -----------------------------------------------------------------------------

/// A reference to a patient as written in a resource: a stored one, or a `urn:uuid:` of
/// another entry of the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Patient(PatientId),
    Urn(String),
}

fn patient_reference(raw: &str, path: &str) -> Parsed<Reference> {
    if raw.starts_with("urn:uuid:") {
        return Ok(Reference::Urn(raw.to_owned()));
    }
    let id = raw.rsplit_once("Patient/").map(|(_, id)| id).unwrap_or("");
    id.parse()
        .map(Reference::Patient)
        .map_err(|_| Refusal::invalid(path, "Patient/{id} of a patient of this practice, or a urn:uuid: of a Patient in this transaction"))
}

/// Which catalog item a resource names: by Salve id (its identifier system) or by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CatalogNames {
    ids: Vec<String>,
    names: Vec<String>,
}

impl CatalogNames {
    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.names.is_empty()
    }
}

/// The item `wanted` names among the practice's active items of `kind`; with nothing named,
/// the only one there is (`required`), else `None` (unchanged).
fn resolve_catalog(
    catalog: &[CatalogItem],
    kind: CatalogKind,
    wanted: &CatalogNames,
    required: bool,
    path: &str,
) -> Parsed<Option<CatalogItemId>> {
    let active: Vec<&CatalogItem> = catalog
        .iter()
        .filter(|i| i.kind == kind && i.active)
        .collect();
    let label = kind.as_str().replace('_', " ");
    if wanted.is_empty() {
        return match active.as_slice() {
            _ if !required => Ok(None),
            [only] => Ok(Some(only.id)),
            _ => Err(Refusal::fields(vec![FieldError::new(
                path,
                format!("required: the practice has several active {label}s"),
            )])),
        };
    }
    for id in &wanted.ids {
        if let Some(item) = active.iter().find(|i| i.id.to_string() == *id) {
            return Ok(Some(item.id));
        }
    }
    for name in &wanted.names {
        if let Some(item) = active.iter().find(|i| i.name == *name) {
            return Ok(Some(item.id));
        }
        let folded: Vec<_> = active
            .iter()
            .filter(|i| i.name.to_lowercase() == name.to_lowercase())
            .collect();
        if let [one] = folded.as_slice() {
            return Ok(Some(one.id));
        }
    }
    Err(Refusal::fields(vec![FieldError::new(
        path,
        format!("an active {label} of this practice, by its Salve id or its name"),
    )]))
}

/// The appointment as far as FHIR can say it, before the catalog and the patient are resolved.
struct AppointmentFields {
    status: AppointmentStatus,
    start: Option<OffsetDateTime>,
    duration: Option<i64>,
    patient: Reference,
    appointment_type: CatalogNames,
    location: CatalogNames,
    provider: CatalogNames,
    external_id: Option<Sensitive<String>>,
}

fn appointment_fields(resource: &Value, now: OffsetDateTime) -> Parsed<AppointmentFields> {
    check_type(resource, "Appointment")?;
    let mut errors = Vec::new();
    let status = match text(resource, "status").unwrap_or("") {
        "booked" => Some(AppointmentStatus::Booked),
        "cancelled" => Some(AppointmentStatus::Cancelled),
        "fulfilled" => Some(AppointmentStatus::Completed),
        "noshow" => Some(AppointmentStatus::NoShow),
        _ => {
            errors.push(FieldError::new(
                "Appointment.status",
                "booked, cancelled, fulfilled or noshow",
            ));
            None
        }
    };
    let start = match text(resource, "start") {
        Some(raw) => match OffsetDateTime::parse(raw, &Rfc3339) {
            Ok(at) => rules::starts_at("Appointment.start", at, now)
                .map_err(|e| errors.push(e))
                .ok(),
            Err(_) => {
                errors.push(FieldError::new(
                    "Appointment.start",
                    "an instant with its offset",
                ));
                None
            }
        },
        None => None,
    };
    let end = match text(resource, "end") {
        Some(raw) => OffsetDateTime::parse(raw, &Rfc3339)
            .map_err(|_| {
                errors.push(FieldError::new(
                    "Appointment.end",
                    "an instant with its offset",
                ))
            })
            .ok(),
        None => None,
    };
    let stated = resource.get("minutesDuration").map(Value::as_i64);
    let from_end = match (start, end) {
        (Some(s), Some(e)) => Some((e - s).whole_minutes()),
        _ => None,
    };
    let duration = match (stated, from_end) {
        (Some(None), _) => {
            errors.push(FieldError::new(
                "Appointment.minutesDuration",
                "whole minutes",
            ));
            None
        }
        (Some(Some(m)), Some(e)) if m != e => {
            errors.push(FieldError::new(
                "Appointment.end",
                "start plus minutesDuration, when both are given",
            ));
            None
        }
        (Some(Some(m)), _) => Some(m),
        (None, e) => e,
    };
    let duration = match duration {
        Some(m) => rules::duration_minutes("Appointment.minutesDuration", m)
            .map_err(|e| errors.push(e))
            .ok(),
        None => None,
    };
    let mut patients = Vec::new();
    let mut location = CatalogNames::default();
    let mut provider = CatalogNames::default();
    for p in array(resource, "participant") {
        let Some(actor) = p.get("actor") else {
            continue;
        };
        let reference = text(actor, "reference").unwrap_or("");
        let kind = text(actor, "type").unwrap_or("");
        let id_system = actor.get("identifier").and_then(|i| text(i, "system"));
        let id_value = actor.get("identifier").and_then(|i| text(i, "value"));
        let is = |k: &str, system: &str| {
            kind == k || reference.starts_with(&format!("{k}/")) || id_system == Some(system)
        };
        if kind == "Patient"
            || reference.starts_with("Patient/")
            || reference.contains("/Patient/")
            || reference.starts_with("urn:uuid:")
        {
            match patient_reference(reference, "Appointment.participant.actor") {
                Ok(r) => patients.push(r),
                Err(e) => errors.extend(e.issues),
            }
            continue;
        }
        let target = if is("Location", LOCATION_SYSTEM) {
            &mut location
        } else if is("Practitioner", PROVIDER_SYSTEM) || is("PractitionerRole", PROVIDER_SYSTEM) {
            &mut provider
        } else {
            continue;
        };
        if let (Some(system), Some(value)) = (id_system, id_value)
            && (system == LOCATION_SYSTEM || system == PROVIDER_SYSTEM)
        {
            target.ids.push(value.to_owned());
        }
        if let Some(d) = text(actor, "display") {
            target.names.push(d.to_owned());
        }
    }
    let mut appointment_type = CatalogNames::default();
    if let Some(t) = resource.get("appointmentType") {
        for c in array(t, "coding") {
            if text(c, "system") == Some(APPOINTMENT_TYPE_SYSTEM)
                && let Some(code) = text(c, "code")
            {
                appointment_type.ids.push(code.to_owned());
            }
            if let Some(d) = text(c, "display") {
                appointment_type.names.push(d.to_owned());
            }
        }
        if let Some(t) = text(t, "text") {
            appointment_type.names.push(t.to_owned());
        }
    }
    let patient = match patients.as_slice() {
        [one] => Some(one.clone()),
        _ => {
            errors.push(FieldError::new(
                "Appointment.participant",
                "exactly one participant whose actor is the Patient",
            ));
            None
        }
    };
    let ids: Vec<&str> = array(resource, "identifier")
        .iter()
        .filter_map(|i| text(i, "value"))
        .collect();
    let external_id = match ids.as_slice() {
        [] => None,
        [one] => rules::external_id("Appointment.identifier", one)
            .map_err(|e| errors.push(e))
            .ok(),
        _ => {
            errors.push(FieldError::new(
                "Appointment.identifier",
                "at most one identifier (the EHR's id of the visit)",
            ));
            None
        }
    };
    let (Some(status), Some(patient)) = (status, patient) else {
        return Err(Refusal::fields(errors));
    };
    if !errors.is_empty() {
        return Err(Refusal::fields(errors));
    }
    Ok(AppointmentFields {
        status,
        start,
        duration,
        patient,
        appointment_type,
        location,
        provider,
        external_id,
    })
}

/// The appointment's type, location and provider resolved against the practice's catalog;
/// each problem is added to `errors`. `required`: a missing item is an error (a new visit).
fn catalog_items(
    ctx: &Context<'_>,
    f: &AppointmentFields,
    required: bool,
    errors: &mut Vec<FieldError>,
) -> [Option<CatalogItemId>; 3] {
    [
        (
            CatalogKind::AppointmentType,
            &f.appointment_type,
            "Appointment.appointmentType",
        ),
        (
            CatalogKind::Location,
            &f.location,
            "Appointment.participant (Location)",
        ),
        (
            CatalogKind::Provider,
            &f.provider,
            "Appointment.participant (Practitioner)",
        ),
    ]
    .map(|(kind, names, path)| {
        resolve_catalog(ctx.catalog, kind, names, required, path)
            .map_err(|e| errors.extend(e.issues))
            .ok()
            .flatten()
    })
}

/// A new appointment: booked, with a start, a duration and its catalog items (by Salve id or
/// name; when the practice has only one of a kind, that one).
pub fn appointment_new(resource: &Value, ctx: &Context<'_>) -> Parsed<(Reference, NewAppointment)> {
    let f = appointment_fields(resource, ctx.now)?;
    let mut errors = Vec::new();
    if f.status != AppointmentStatus::Booked {
        errors.push(FieldError::new(
            "Appointment.status",
            "booked, for a new appointment",
        ));
    }
    if f.start.is_none() {
        errors.push(FieldError::new("Appointment.start", "required"));
    }
    if f.duration.is_none() {
        errors.push(FieldError::new(
            "Appointment.minutesDuration",
            "required (or Appointment.end)",
        ));
    }
    let [t, l, p] = catalog_items(ctx, &f, true, &mut errors);
    let (Some(start), Some(duration), Some(t), Some(l), Some(p), true) =
        (f.start, f.duration, t, l, p, errors.is_empty())
    else {
        return Err(Refusal::fields(errors));
    };
    Ok((
        f.patient,
        NewAppointment {
            // Replaced by the store once the reference is resolved.
            patient: PatientId::from_uuid(uuid::Uuid::nil()),
            external_id: f.external_id,
            starts_at: start,
            time_zone: ctx.time_zone.to_owned(),
            duration_minutes: duration,
            appointment_type: t,
            location: l,
            provider: p,
        },
    ))
}

/// A change to an appointment: its time, duration, catalog items and status. FHIR's `booked`
/// covers Salve's booked, confirmed and reschedule-requested: the store leaves any of those as
/// it is for `booked`. The patient's participation status is not written here (the patient's
/// answer is an `AppointmentResponse`).
pub fn appointment_patch(
    resource: &Value,
    id: &str,
    ctx: &Context<'_>,
) -> Parsed<(Reference, AppointmentPatch)> {
    check_type(resource, "Appointment")?;
    check_id(resource, id)?;
    let f = appointment_fields(resource, ctx.now)?;
    let mut errors = Vec::new();
    let [appointment_type, location, provider] = catalog_items(ctx, &f, false, &mut errors);
    if !errors.is_empty() {
        return Err(Refusal::fields(errors));
    }
    Ok((
        f.patient,
        AppointmentPatch {
            starts_at: f.start,
            time_zone: None,
            duration_minutes: f.duration,
            appointment_type,
            location,
            provider,
            status: Some(f.status),
        },
    ))
}

// ---- AppointmentResponse ---------------------------------------------------------------------

/// A patient's answer: which appointment, which patient, and the status it moves the visit to
/// (`accepted`: confirmed, `declined`: cancelled, as a "C" or "X" reply to a reminder).
pub fn appointment_response(
    resource: &Value,
) -> Parsed<(AppointmentId, PatientId, AppointmentStatus)> {
    check_type(resource, "AppointmentResponse")?;
    let appointment = resource
        .get("appointment")
        .and_then(|a| text(a, "reference"))
        .and_then(|r| r.rsplit_once("Appointment/").map(|(_, id)| id))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            Refusal::invalid(
                "AppointmentResponse.appointment",
                "Appointment/{id} of an appointment of this practice",
            )
        })?;
    let actor = resource
        .get("actor")
        .and_then(|a| text(a, "reference"))
        .unwrap_or("");
    let patient = match patient_reference(actor, "AppointmentResponse.actor")? {
        Reference::Patient(p) => p,
        Reference::Urn(_) => {
            return Err(Refusal::invalid(
                "AppointmentResponse.actor",
                "Patient/{id}: the appointment's patient",
            ));
        }
    };
    let status = match text(resource, "participantStatus") {
        Some("accepted") => AppointmentStatus::Confirmed,
        Some("declined") => AppointmentStatus::Cancelled,
        _ => {
            return Err(Refusal::fields(vec![FieldError::new(
                "AppointmentResponse.participantStatus",
                "accepted or declined: the patient's answer",
            )]));
        }
    };
    Ok((appointment, patient, status))
}

// ---- transaction Bundle ----------------------------------------------------------------------

/// One entry of a transaction, as the response needs to describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Patient,
    Appointment,
}

/// A parsed entry, before its patient reference is resolved against the other entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    CreatePatient {
        if_none_exist: Option<String>,
    },
    UpdatePatient {
        id: String,
        if_match: Option<String>,
    },
    CreateAppointment,
    UpdateAppointment {
        id: String,
        if_match: Option<String>,
    },
}

/// A refusal of one entry, by its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRefusal {
    pub index: usize,
    pub refusal: Refusal,
}

/// `W/"3"`, `"3"` or `3`.
pub fn version_of(raw: &str) -> Option<i64> {
    raw.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

fn entry_request(entry: &Value) -> Parsed<Request> {
    let request = entry
        .get("request")
        .ok_or_else(|| Refusal::invalid("request", "method and url"))?;
    let method = text(request, "method").unwrap_or("");
    let url = text(request, "url").unwrap_or("");
    let url = url.split('?').next().unwrap_or("");
    let parts: Vec<&str> = url.trim_matches('/').split('/').collect();
    let if_match = text(request, "ifMatch").map(str::to_owned);
    let kind = text(
        entry.get("resource").unwrap_or(&Value::Null),
        "resourceType",
    )
    .unwrap_or("");
    let request = match (method, parts.as_slice()) {
        ("POST", ["Patient"]) => Request::CreatePatient {
            if_none_exist: text(request, "ifNoneExist").map(str::to_owned),
        },
        ("PUT", ["Patient", id]) => Request::UpdatePatient {
            id: (*id).to_owned(),
            if_match,
        },
        ("POST", ["Appointment"]) if request.get("ifNoneExist").is_some() => {
            return Err(Refusal::invalid(
                "request.ifNoneExist",
                "absent: conditional create is offered for Patient only",
            ));
        }
        ("POST", ["Appointment"]) => Request::CreateAppointment,
        ("PUT", ["Appointment", id]) => Request::UpdateAppointment {
            id: (*id).to_owned(),
            if_match,
        },
        _ => {
            return Err(Refusal {
                status: 400,
                issues: vec![FieldError::new(
                    "request",
                    "POST Patient, PUT Patient/{id}, POST Appointment or PUT Appointment/{id}: the interactions a transaction may carry here",
                )],
            });
        }
    };
    let expected = match request {
        Request::CreatePatient { .. } | Request::UpdatePatient { .. } => "Patient",
        _ => "Appointment",
    };
    if kind != expected {
        return Err(Refusal::invalid(
            "resource",
            format!("a {expected}, as the request's url names"),
        ));
    }
    Ok(request)
}

/// The writes a transaction Bundle asks for, in request order; ids that do not parse are
/// refused as not found (404).
pub fn transaction(
    bundle: &Value,
    ctx: &Context<'_>,
    max_entries: usize,
) -> Result<Vec<(EntryKind, FhirWrite)>, EntryRefusal> {
    let whole = |refusal| EntryRefusal {
        index: usize::MAX,
        refusal,
    };
    check_type(bundle, "Bundle").map_err(whole)?;
    if text(bundle, "type") != Some("transaction") {
        return Err(whole(Refusal::invalid(
            "Bundle.type",
            "transaction (batch is not supported)",
        )));
    }
    let entries = array(bundle, "entry");
    if entries.len() > max_entries {
        return Err(whole(Refusal {
            status: 413,
            issues: vec![FieldError::new(
                "Bundle.entry",
                format!("at most {max_entries} entries"),
            )],
        }));
    }
    let at = |index| move |refusal| EntryRefusal { index, refusal };
    // fullUrl → the entry that creates that patient.
    let mut urns: HashMap<&str, usize> = HashMap::new();
    let mut requests = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let request = entry_request(e).map_err(at(i))?;
        if let Some(full) = text(e, "fullUrl")
            && full.starts_with("urn:uuid:")
            && urns.insert(full, i).is_some()
        {
            return Err(EntryRefusal {
                index: i,
                refusal: Refusal::invalid("fullUrl", "unique within the Bundle"),
            });
        }
        requests.push(request);
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, (e, request)) in entries.iter().zip(requests).enumerate() {
        let resource = e.get("resource").unwrap_or(&Value::Null);
        let patient_ref = |r: Reference| -> Parsed<PatientRef> {
            match r {
                Reference::Patient(p) => Ok(PatientRef::Id(p)),
                Reference::Urn(u) => match urns.get(u.as_str()) {
                    Some(&j)
                        if text(&entries[j]["resource"], "resourceType") == Some("Patient") =>
                    {
                        Ok(PatientRef::Entry(j))
                    }
                    _ => Err(Refusal::invalid(
                        "Appointment.participant.actor",
                        "a urn:uuid: that is the fullUrl of a Patient entry of this Bundle",
                    )),
                },
            }
        };
        let write = match request {
            Request::CreatePatient {
                if_none_exist: cond,
            } => {
                let record = patient_record(resource, ctx).map_err(at(i))?;
                let cond = cond
                    .as_deref()
                    .map(if_none_exist)
                    .transpose()
                    .map_err(at(i))?;
                (
                    EntryKind::Patient,
                    FhirWrite::CreatePatient {
                        record,
                        if_none_exist: cond,
                    },
                )
            }
            Request::UpdatePatient { id, if_match } => {
                let pid: PatientId = id.parse().map_err(|_| not_found()).map_err(at(i))?;
                let patch = patient_patch(resource, &id, ctx).map_err(at(i))?;
                (
                    EntryKind::Patient,
                    FhirWrite::UpdatePatient {
                        id: pid,
                        patch,
                        expected_version: parse_if_match(if_match.as_deref()).map_err(at(i))?,
                    },
                )
            }
            Request::CreateAppointment => {
                let (r, new) = appointment_new(resource, ctx).map_err(at(i))?;
                (
                    EntryKind::Appointment,
                    FhirWrite::CreateAppointment {
                        patient: patient_ref(r).map_err(at(i))?,
                        new,
                    },
                )
            }
            Request::UpdateAppointment { id, if_match } => {
                let aid: AppointmentId = id.parse().map_err(|_| not_found()).map_err(at(i))?;
                let (r, patch) = appointment_patch(resource, &id, ctx).map_err(at(i))?;
                (
                    EntryKind::Appointment,
                    FhirWrite::UpdateAppointment {
                        id: aid,
                        patient: patient_ref(r).map_err(at(i))?,
                        patch,
                        expected_version: parse_if_match(if_match.as_deref()).map_err(at(i))?,
                    },
                )
            }
        };
        out.push(write);
    }
    Ok(out)
}

fn not_found() -> Refusal {
    Refusal {
        status: 404,
        issues: vec![FieldError::new(
            "request.url",
            "the id of a record of this practice",
        )],
    }
}

pub fn parse_if_match(raw: Option<&str>) -> Parsed<Option<i64>> {
    match raw {
        None => Ok(None),
        Some(r) => version_of(r)
            .map(Some)
            .ok_or_else(|| Refusal::invalid("If-Match", "a version, as W/\"n\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx_parts() -> (PracticeId, InputContext, Vec<CatalogItem>) {
        let item = |kind, name: &str| CatalogItem {
            id: CatalogItemId::new(),
            kind,
            name: name.to_owned(),
            sms_safe: true,
            active: true,
        };
        (
            PracticeId::new(),
            InputContext {
                phone_region: "US".into(),
                today: time::Date::from_calendar_date(2026, time::Month::December, 1).unwrap(),
            },
            vec![
                item(CatalogKind::AppointmentType, "Annual checkup"),
                item(CatalogKind::AppointmentType, "Follow-up"),
                item(CatalogKind::Location, "Main St"),
                item(CatalogKind::Provider, "Dr Lee"),
            ],
        )
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-12-01T12:00:00Z", &Rfc3339).unwrap()
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "identifier": [
                {"system": "http://ehr.example/ssn", "value": "123-45-6789"},
                {"type": {"coding": [{"system": V2_0203, "code": "MR"}]}, "system": "http://ehr.example/mrn", "value": "MRN-77"},
            ],
            "name": [{"use": "nickname", "given": ["Annie"]}, {"use": "official", "family": "Quintanilla", "given": ["Ana", "Maria"]}],
            "birthDate": "1971-03-14",
            "telecom": [
                {"system": "email", "value": "ana@example.org", "rank": 2},
                {"system": "fax", "value": "+13125550100"},
                {"system": "phone", "value": "(312) 555-0142", "rank": 1},
            ],
            "contact": [
                {"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C"}]}], "telecom": [{"system": "phone", "value": "+13125550199"}]},
                {"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GUARD"}]}], "telecom": [{"system": "phone", "value": "+13125550188"}]},
            ],
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}, "preferred": true}],
        })
    }

    #[test]
    fn a_patient_keeps_its_official_name_mrn_phones_and_guardian_only() {
        let (practice, input, catalog) = ctx_parts();
        let ctx = Context {
            practice,
            input: &input,
            now: now(),
            time_zone: "America/Chicago",
            catalog: &catalog,
        };
        let r = patient_record(&patient(), &ctx).unwrap();
        assert_eq!(r.given_name.expose(), "Ana Maria");
        assert_eq!(r.family_name.expose(), "Quintanilla");
        assert_eq!(r.mrn.as_ref().unwrap().expose(), "MRN-77");
        assert_eq!(r.preferred_language, "es");
        let values: Vec<(&str, ContactRole)> = r
            .contacts
            .iter()
            .map(|c| (c.value.expose().as_str(), c.role))
            .collect();
        assert_eq!(
            values,
            vec![
                ("+13125550142", ContactRole::Patient),
                ("ana@example.org", ContactRole::Patient),
                ("+13125550188", ContactRole::Guardian),
            ],
            "the fax and the emergency contact are not kept"
        );
    }

    #[test]
    fn patient_errors_name_fhir_paths_and_never_the_value() {
        let (practice, input, catalog) = ctx_parts();
        let ctx = Context {
            practice,
            input: &input,
            now: now(),
            time_zone: "UTC",
            catalog: &catalog,
        };
        let mut p = patient();
        p["birthDate"] = json!("1971-13-45");
        let e = patient_record(&p, &ctx).unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(e.issues[0].field, "Patient.birthDate");
        assert!(!format!("{e:?}").contains("1971-13"));
        let e = patient_record(&json!({"resourceType": "Observation"}), &ctx).unwrap_err();
        assert_eq!(e.status, 400);
        let e = patient_patch(&patient(), "abc", &ctx).unwrap_err();
        assert_eq!(e.issues[0].field, "id");
        p = patient();
        p["active"] = json!(false);
        assert_eq!(
            patient_record(&p, &ctx).unwrap_err().issues[0].field,
            "Patient.active"
        );
    }

    #[test]
    fn conditions_are_an_mrn_only() {
        assert_eq!(
            if_none_exist("identifier=http://ehr.example/mrn|MRN-77")
                .unwrap()
                .expose(),
            "MRN-77"
        );
        assert_eq!(
            if_none_exist("Patient?identifier=MRN-77").unwrap().expose(),
            "MRN-77"
        );
        assert!(if_none_exist("name=Ana").is_err());
        assert!(if_none_exist("identifier=a&name=b").is_err());
        assert_eq!(version_of("W/\"3\""), Some(3));
        assert_eq!(version_of("\"4\""), Some(4));
        assert_eq!(version_of("W/\"x\""), None);
    }

    fn appointment(patient: &str) -> Value {
        json!({
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2026-12-08T09:30:00-06:00",
            "end": "2026-12-08T10:00:00-06:00",
            "appointmentType": {"text": "annual checkup"},
            "participant": [
                {"actor": {"reference": patient}, "status": "needs-action"},
                {"actor": {"display": "Main St", "type": "Location"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/ehr-99", "display": "Dr Lee"}, "status": "accepted"},
            ],
        })
    }

    #[test]
    fn an_appointment_resolves_its_catalog_by_name_and_its_patient_by_reference() {
        let (practice, input, catalog) = ctx_parts();
        let ctx = Context {
            practice,
            input: &input,
            now: now(),
            time_zone: "America/Chicago",
            catalog: &catalog,
        };
        let (r, new) = appointment_new(
            &appointment("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            r,
            Reference::Urn("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a".into())
        );
        assert_eq!(new.duration_minutes, 30);
        assert_eq!(new.appointment_type, catalog[0].id, "case-folded name");
        assert_eq!(new.location, catalog[2].id);
        assert_eq!(new.provider, catalog[3].id);
        assert_eq!(new.time_zone, "America/Chicago");
        let mut bad = appointment("Patient/nope");
        bad["minutesDuration"] = json!(45);
        let e = appointment_new(&bad, &ctx).unwrap_err();
        let fields: Vec<&str> = e.issues.iter().map(|i| i.field.as_str()).collect();
        assert!(
            fields.contains(&"Appointment.participant.actor"),
            "{fields:?}"
        );
        assert!(fields.contains(&"Appointment.end"), "{fields:?}");
        let mut cancelled = appointment(&format!("Patient/{}", PatientId::new()));
        cancelled["status"] = json!("cancelled");
        assert!(
            appointment_new(&cancelled, &ctx).is_err(),
            "a new visit is booked"
        );
    }

    #[test]
    fn an_update_names_its_status_and_checks_its_id() {
        let (practice, input, catalog) = ctx_parts();
        let ctx = Context {
            practice,
            input: &input,
            now: now(),
            time_zone: "UTC",
            catalog: &catalog,
        };
        let patient = PatientId::new();
        let id = AppointmentId::new();
        let mut a = appointment(&format!("Patient/{patient}"));
        a["id"] = json!(id.to_string());
        a["status"] = json!("cancelled");
        let (r, patch) = appointment_patch(&a, &id.to_string(), &ctx).unwrap();
        assert_eq!(r, Reference::Patient(patient));
        assert_eq!(patch.status, Some(AppointmentStatus::Cancelled));
        assert_eq!(patch.appointment_type, Some(catalog[0].id));
        assert!(appointment_patch(&a, &AppointmentId::new().to_string(), &ctx).is_err());
    }

    #[test]
    fn a_transaction_links_entries_by_urn_and_names_the_bad_entry() {
        let (practice, input, catalog) = ctx_parts();
        let ctx = Context {
            practice,
            input: &input,
            now: now(),
            time_zone: "UTC",
            catalog: &catalog,
        };
        let urn = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
        let mut bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": urn, "resource": patient(), "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=MRN-77"}},
                {"resource": appointment(urn), "request": {"method": "POST", "url": "Appointment"}},
            ],
        });
        let writes = transaction(&bundle, &ctx, 10).unwrap();
        assert_eq!(writes.len(), 2);
        match &writes[1].1 {
            FhirWrite::CreateAppointment { patient, .. } => {
                assert_eq!(*patient, PatientRef::Entry(0))
            }
            other => panic!("{other:?}"),
        }
        let mut conditional = bundle.clone();
        conditional["entry"][1]["request"]["ifNoneExist"] = json!("identifier=A-1");
        let e = transaction(&conditional, &ctx, 10).unwrap_err();
        assert_eq!(
            (e.index, e.refusal.issues[0].field.as_str()),
            (1, "request.ifNoneExist")
        );
        bundle["entry"][1]["resource"]["participant"][0]["actor"]["reference"] =
            json!("urn:uuid:00000000-0000-0000-0000-000000000000");
        let e = transaction(&bundle, &ctx, 10).unwrap_err();
        assert_eq!(e.index, 1);
        let e = transaction(&bundle, &ctx, 1).unwrap_err();
        assert_eq!(e.refusal.status, 413);
        bundle["type"] = json!("batch");
        assert_eq!(
            transaction(&bundle, &ctx, 10).unwrap_err().refusal.issues[0].field,
            "Bundle.type"
        );
    }

    #[test]
    fn an_answer_is_accepted_or_declined_by_the_patient() {
        let a = AppointmentId::new();
        let p = PatientId::new();
        let r = json!({
            "resourceType": "AppointmentResponse",
            "appointment": {"reference": format!("Appointment/{a}")},
            "actor": {"reference": format!("Patient/{p}")},
            "participantStatus": "declined",
        });
        assert_eq!(
            appointment_response(&r).unwrap(),
            (a, p, AppointmentStatus::Cancelled)
        );
        let mut tentative = r.clone();
        tentative["participantStatus"] = json!("tentative");
        assert!(appointment_response(&tentative).is_err());
    }
}

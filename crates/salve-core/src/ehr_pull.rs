//! Reading patients and appointments from a practice's EHR (a scheduled FHIR search on
//! `_lastUpdated`): the pull's settings and cursor, and the mapping of an EHR's `Patient` and
//! `Appointment` onto what Salve keeps. Pure: the server fetches, the store applies.
//!
//! A resource Salve cannot take is skipped with a [`Skip`], whose text is fixed (never a value
//! from the resource), so a run's status can be shown and stored without PHI.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Pulls run every 15 minutes unless configured otherwise.
pub const DEFAULT_INTERVAL_SECS: i64 = 15 * 60;
pub const MIN_INTERVAL_SECS: i64 = 60;
pub const MAX_INTERVAL_SECS: i64 = 24 * 3600;
/// Resources per search page.
pub const PAGE_SIZE: usize = 100;
/// The search starts this far before the cursor: resources saved in the same instant as the
/// last one seen (or committed late, out of timestamp order) are not missed. What was already
/// applied is recognized by its version and changes nothing.
pub const OVERLAP_SECS: i64 = 60;
/// At most this many pages per resource type in one run (the next run carries on).
pub const MAX_PAGES: usize = 50;
/// A run that has not finished after this long (its instance died) may be taken over.
pub const LEASE_SECS: i64 = 10 * 60;

/// Checks a configured interval.
pub fn check_interval(secs: i64) -> Result<i64, &'static str> {
    if (MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err("an interval between 60 seconds and 24 hours")
    }
}

/// The `_lastUpdated` lower bound (exclusive) of the next search: the cursor minus the overlap
/// window, or none at the first run (everything).
pub fn search_after(cursor: Option<OffsetDateTime>) -> Option<String> {
    let at = cursor? - time::Duration::seconds(OVERLAP_SECS);
    let at = at.to_offset(time::UtcOffset::UTC);
    at.format(&Rfc3339).ok()
}

/// The cursor after a run: the highest `lastUpdated` among the resources applied, but when a
/// resource could not be applied (a store failure, to be tried again), nothing at or past its
/// `lastUpdated` counts, so the next run searches from before it.
pub fn next_cursor(
    old: Option<OffsetDateTime>,
    applied: &[OffsetDateTime],
    failed_at: Option<OffsetDateTime>,
) -> Option<OffsetDateTime> {
    let best = applied
        .iter()
        .copied()
        .filter(|at| failed_at.is_none_or(|f| *at < f))
        .max();
    match (old, best) {
        (Some(o), Some(b)) => Some(o.max(b)),
        (o, b) => o.or(b),
    }
}

/// Why a resource was not applied. The texts are fixed: they are stored and shown to staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    NoId,
    NoLastUpdated,
    PatientIncomplete,
    PatientInvalid,
    AppointmentNoStart,
    AppointmentNoDuration,
    AppointmentBadDuration,
    AppointmentOutOfRange,
    AppointmentNoPatient,
    AppointmentUnknownPatient,
    AppointmentOtherPatient,
    AppointmentWaitlist,
    AppointmentNotBooked,
    UnknownAppointmentType,
    UnknownLocation,
    UnknownProvider,
    Conflict,
    Refused,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoId => "a resource without an id",
            Self::NoLastUpdated => "a resource without meta.lastUpdated",
            Self::PatientIncomplete => {
                "a new patient without a name or birth date (Salve registers patients with both)"
            }
            Self::PatientInvalid => {
                "a patient whose name, birth date, phone, email or MRN Salve cannot accept"
            }
            Self::AppointmentNoStart => "an appointment without a start",
            Self::AppointmentNoDuration => "an appointment without an end or minutesDuration",
            Self::AppointmentBadDuration => "an appointment shorter than 5 minutes or over 8 hours",
            Self::AppointmentOutOfRange => "an appointment more than 2 years past or 5 years ahead",
            Self::AppointmentNoPatient => "an appointment without a Patient participant",
            Self::AppointmentUnknownPatient => {
                "an appointment whose patient has not been pulled from the EHR"
            }
            Self::AppointmentOtherPatient => {
                "an appointment that moved to another patient in the EHR (changed by hand in Salve only)"
            }
            Self::AppointmentWaitlist => "a waitlist entry (not a booked visit)",
            Self::AppointmentNotBooked => "an appointment not booked when it was first pulled",
            Self::UnknownAppointmentType => {
                "an appointment whose type names no active appointment type of the practice"
            }
            Self::UnknownLocation => {
                "an appointment whose location names no active location of the practice"
            }
            Self::UnknownProvider => {
                "an appointment whose practitioner names no active provider of the practice"
            }
            Self::Conflict => "a record that conflicts with one already in Salve",
            Self::Refused => "a change Salve's rules refuse",
        }
    }
}

/// What an EHR's `meta` says of a resource's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub id: String,
    /// `versionId`, else `lastUpdated` as given: equal means already applied.
    pub version: String,
    pub last_updated: OffsetDateTime,
}

fn remote(v: &Value) -> Result<Remote, Skip> {
    let id = v["id"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .ok_or(Skip::NoId)?
        .to_owned();
    let raw = v["meta"]["lastUpdated"]
        .as_str()
        .ok_or(Skip::NoLastUpdated)?;
    let last_updated = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| Skip::NoLastUpdated)?;
    let version = match v["meta"]["versionId"].as_str() {
        Some(version) => format!("{version}@{raw}"),
        None => raw.to_owned(),
    };
    Ok(Remote {
        id,
        version,
        last_updated,
    })
}

/// The `lastUpdated` of a resource, when it has one (for the cursor of a skipped resource).
pub fn last_updated(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v["meta"]["lastUpdated"].as_str()?, &Rfc3339).ok()
}

/// An EHR `Patient`, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledPatient {
    pub remote: Remote,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub birth_date: Option<String>,
    /// The identifier under the connection's MRN system.
    pub mrn: Option<String>,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    /// A BCP 47 tag, its primary language first (`en-US` gives `en-US` then `en`).
    pub languages: Vec<String>,
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Maps an EHR `Patient`: the official name (else the first), birth date, the MRN under
/// `mrn_system`, current phones and emails, the preferred language.
pub fn map_patient(v: &Value, mrn_system: &str) -> Result<PulledPatient, Skip> {
    let remote = remote(v)?;
    let names = v["name"].as_array().cloned().unwrap_or_default();
    let current = |n: &&Value| n["period"]["end"].is_null() && n["use"] != "old";
    let name = names
        .iter()
        .filter(current)
        .find(|n| n["use"] == "official")
        .or_else(|| names.iter().find(current));
    let given_name = name.and_then(|n| {
        let given: Vec<String> = n["given"]
            .as_array()
            .map(|g| g.iter().filter_map(text).collect())
            .unwrap_or_default();
        (!given.is_empty()).then(|| given.join(" "))
    });
    let family_name = name.and_then(|n| text(&n["family"]));
    let mrn = v["identifier"].as_array().and_then(|ids| {
        ids.iter()
            .find(|i| i["system"] == mrn_system)
            .and_then(|i| text(&i["value"]))
    });
    let mut phones = Vec::new();
    let mut emails = Vec::new();
    for t in v["telecom"].as_array().into_iter().flatten() {
        if t["use"] == "old" || !t["period"]["end"].is_null() {
            continue;
        }
        let Some(value) = text(&t["value"]) else {
            continue;
        };
        let list = match t["system"].as_str() {
            Some("phone" | "sms") => &mut phones,
            Some("email") => &mut emails,
            _ => continue,
        };
        if !list.contains(&value) {
            list.push(value);
        }
    }
    let comms = v["communication"].as_array().cloned().unwrap_or_default();
    let preferred = comms
        .iter()
        .find(|c| c["preferred"] == true)
        .or_else(|| comms.first());
    let mut languages = Vec::new();
    if let Some(c) = preferred {
        let codes = c["language"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| text(&c["code"]));
        for code in codes {
            let primary = code.split('-').next().unwrap_or_default().to_lowercase();
            languages.push(code);
            if !languages.contains(&primary) && !primary.is_empty() {
                languages.push(primary);
            }
        }
    }
    Ok(PulledPatient {
        remote,
        given_name,
        family_name,
        birth_date: text(&v["birthDate"]),
        mrn,
        phones,
        emails,
        languages,
    })
}

/// What an EHR appointment's status means for Salve's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PulledStatus {
    /// proposed, pending, booked, arrived, checked-in: the visit is on.
    Active,
    Completed,
    Cancelled,
    NoShow,
}

/// An EHR `Appointment`, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledAppointment {
    pub remote: Remote,
    /// The EHR's id of the patient (from `Patient/{id}`).
    pub patient: String,
    pub starts_at: OffsetDateTime,
    pub duration_minutes: i64,
    pub status: PulledStatus,
    /// Names or codes that may name the type, location and provider in Salve's catalog.
    pub appointment_type: Vec<String>,
    pub location: Vec<String>,
    pub provider: Vec<String>,
}

fn concept_names(c: &Value, out: &mut Vec<String>) {
    out.extend(text(&c["text"]));
    for coding in c["coding"].as_array().into_iter().flatten() {
        out.extend(text(&coding["display"]));
        out.extend(text(&coding["code"]));
    }
}

/// The id in a relative reference `{type}/{id}` (or an absolute URL ending so).
fn reference_id(reference: &str, resource_type: &str) -> Option<String> {
    let parts: Vec<&str> = reference.trim_end_matches('/').split('/').collect();
    let at = parts.iter().rposition(|p| *p == resource_type)?;
    parts
        .get(at + 1)
        .filter(|id| !id.is_empty())
        .map(|id| (*id).to_owned())
}

/// Maps an EHR `Appointment`: start, duration (`end` − `start`, else `minutesDuration`),
/// status, its Patient participant, and what names its type, location and practitioner.
pub fn map_appointment(v: &Value) -> Result<PulledAppointment, Skip> {
    let remote = remote(v)?;
    let status = match v["status"].as_str() {
        Some("cancelled" | "entered-in-error") => PulledStatus::Cancelled,
        Some("noshow") => PulledStatus::NoShow,
        Some("fulfilled") => PulledStatus::Completed,
        Some("waitlist") => return Err(Skip::AppointmentWaitlist),
        _ => PulledStatus::Active,
    };
    let start = v["start"]
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or(Skip::AppointmentNoStart)?;
    let end = v["end"]
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
    let duration_minutes = match (end, v["minutesDuration"].as_i64()) {
        (Some(end), _) => (end - start).whole_minutes(),
        (None, Some(m)) => m,
        (None, None) => return Err(Skip::AppointmentNoDuration),
    };
    if !(crate::appointments::MIN_DURATION_MINUTES..=crate::appointments::MAX_DURATION_MINUTES)
        .contains(&duration_minutes)
    {
        return Err(Skip::AppointmentBadDuration);
    }
    let mut patient = None;
    let mut location = Vec::new();
    let mut provider = Vec::new();
    for p in v["participant"].as_array().into_iter().flatten() {
        let actor = &p["actor"];
        let reference = actor["reference"].as_str().unwrap_or_default();
        let kind = reference
            .rsplit('/')
            .nth(1)
            .or_else(|| actor["type"].as_str())
            .unwrap_or_default();
        match kind {
            "Patient" if patient.is_none() => patient = reference_id(reference, "Patient"),
            "Location" => location.extend(text(&actor["display"])),
            "Practitioner" | "PractitionerRole" => provider.extend(text(&actor["display"])),
            _ => {}
        }
    }
    let patient = patient.ok_or(Skip::AppointmentNoPatient)?;
    let mut appointment_type = Vec::new();
    concept_names(&v["appointmentType"], &mut appointment_type);
    for c in v["serviceType"].as_array().into_iter().flatten() {
        concept_names(c, &mut appointment_type);
    }
    Ok(PulledAppointment {
        remote,
        patient,
        starts_at: start,
        duration_minutes,
        status,
        appointment_type,
        location,
        provider,
    })
}

/// The URL of the next page of a searchset, if any.
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| text(&l["url"]))
}

/// The resources of `resource_type` in a searchset (included resources and outcomes left out).
pub fn entries<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"].as_str().is_none_or(|m| m == "match"))
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": { "versionId": "3", "lastUpdated": "2026-12-03T10:00:00.123Z" },
            "identifier": [
                { "system": "urn:other", "value": "X-1" },
                { "system": "urn:mrn", "value": "LK-0142" }
            ],
            "name": [
                { "use": "old", "family": "Lopez", "given": ["Ana"] },
                { "use": "official", "family": "Quintanilla", "given": ["Ana", "Maria"] }
            ],
            "birthDate": "1971-03-14",
            "telecom": [
                { "system": "phone", "value": "(312) 555-0142", "use": "mobile" },
                { "system": "phone", "value": "(312) 555-0000", "use": "old" },
                { "system": "email", "value": "ana@example.org" },
                { "system": "fax", "value": "(312) 555-0199" }
            ],
            "communication": [
                { "language": { "coding": [{ "code": "en" }] } },
                { "language": { "coding": [{ "code": "es-MX" }] }, "preferred": true }
            ]
        })
    }

    #[test]
    fn a_patient_maps_its_current_details() {
        let p = map_patient(&patient(), "urn:mrn").unwrap();
        assert_eq!(p.remote.id, "p1");
        assert_eq!(p.remote.version, "3@2026-12-03T10:00:00.123Z");
        assert_eq!(
            p.remote.last_updated,
            datetime!(2026-12-03 10:00:00.123 UTC)
        );
        assert_eq!(p.given_name.as_deref(), Some("Ana Maria"));
        assert_eq!(p.family_name.as_deref(), Some("Quintanilla"));
        assert_eq!(p.birth_date.as_deref(), Some("1971-03-14"));
        assert_eq!(p.mrn.as_deref(), Some("LK-0142"));
        assert_eq!(p.phones, vec!["(312) 555-0142"]);
        assert_eq!(p.emails, vec!["ana@example.org"]);
        assert_eq!(p.languages, vec!["es-MX", "es"]);
        // Another MRN system: no MRN.
        assert_eq!(map_patient(&patient(), "urn:elsewhere").unwrap().mrn, None);
    }

    #[test]
    fn a_sparse_patient_maps_what_it_has() {
        let p = map_patient(
            &json!({"resourceType": "Patient", "id": "p2", "meta": {"lastUpdated": "2026-12-03T10:00:00Z"}, "name": [{"text": "Ana"}]}),
            "urn:mrn",
        )
        .unwrap();
        assert_eq!(p.remote.version, "2026-12-03T10:00:00Z");
        assert_eq!(
            (p.given_name, p.family_name, p.birth_date),
            (None, None, None)
        );
        assert!(p.phones.is_empty() && p.languages.is_empty());
        assert_eq!(
            map_patient(
                &json!({"resourceType": "Patient", "meta": {"lastUpdated": "2026-12-03T10:00:00Z"}}),
                "x"
            ),
            Err(Skip::NoId)
        );
        assert_eq!(
            map_patient(&json!({"resourceType": "Patient", "id": "a"}), "x"),
            Err(Skip::NoLastUpdated)
        );
    }

    fn appointment() -> Value {
        json!({
            "resourceType": "Appointment",
            "id": "a1",
            "meta": { "versionId": "1", "lastUpdated": "2026-12-03T10:00:00Z" },
            "status": "booked",
            "serviceType": [{ "coding": [{ "code": "CHK", "display": "Annual checkup" }] }],
            "start": "2026-12-07T09:30:00-06:00",
            "end": "2026-12-07T10:00:00-06:00",
            "participant": [
                { "actor": { "reference": "Patient/p1", "display": "Ana Quintanilla" }, "status": "accepted" },
                { "actor": { "reference": "Practitioner/dr1", "display": "Dr Lee" }, "status": "accepted" },
                { "actor": { "reference": "Location/l1", "display": "Main St" }, "status": "accepted" }
            ]
        })
    }

    #[test]
    fn an_appointment_maps_time_status_and_participants() {
        let a = map_appointment(&appointment()).unwrap();
        assert_eq!(a.remote.id, "a1");
        assert_eq!(a.patient, "p1");
        assert_eq!(a.starts_at, datetime!(2026-12-07 15:30 UTC));
        assert_eq!(a.duration_minutes, 30);
        assert_eq!(a.status, PulledStatus::Active);
        assert_eq!(a.appointment_type, vec!["Annual checkup", "CHK"]);
        assert_eq!(a.location, vec!["Main St"]);
        assert_eq!(a.provider, vec!["Dr Lee"]);

        let mut v = appointment();
        v["status"] = json!("cancelled");
        v.as_object_mut().unwrap().remove("end");
        v["minutesDuration"] = json!(45);
        let a = map_appointment(&v).unwrap();
        assert_eq!(
            (a.status, a.duration_minutes),
            (PulledStatus::Cancelled, 45)
        );
        for (status, expected) in [
            ("noshow", PulledStatus::NoShow),
            ("fulfilled", PulledStatus::Completed),
            ("pending", PulledStatus::Active),
            ("entered-in-error", PulledStatus::Cancelled),
        ] {
            v["status"] = json!(status);
            assert_eq!(map_appointment(&v).unwrap().status, expected);
        }
    }

    #[test]
    fn appointments_salve_cannot_take_are_skipped_with_a_reason() {
        let mut v = appointment();
        v["status"] = json!("waitlist");
        assert_eq!(map_appointment(&v), Err(Skip::AppointmentWaitlist));
        let mut v = appointment();
        v.as_object_mut().unwrap().remove("end");
        assert_eq!(map_appointment(&v), Err(Skip::AppointmentNoDuration));
        let mut v = appointment();
        v["end"] = json!("2026-12-07T09:31:00-06:00");
        assert_eq!(map_appointment(&v), Err(Skip::AppointmentBadDuration));
        let mut v = appointment();
        v["participant"].as_array_mut().unwrap().remove(0);
        assert_eq!(map_appointment(&v), Err(Skip::AppointmentNoPatient));
        let mut v = appointment();
        v.as_object_mut().unwrap().remove("start");
        assert_eq!(map_appointment(&v), Err(Skip::AppointmentNoStart));
        // No reason quotes the resource.
        assert!(!Skip::AppointmentUnknownPatient.reason().contains("p1"));
    }

    #[test]
    fn the_cursor_overlaps_and_never_passes_a_failure() {
        assert_eq!(search_after(None), None);
        assert_eq!(
            search_after(Some(datetime!(2026-12-03 10:00:00 -6))).as_deref(),
            Some("2026-12-03T15:59:00Z")
        );
        let t = |s: i64| datetime!(2026-12-03 10:00 UTC) + time::Duration::seconds(s);
        assert_eq!(next_cursor(None, &[], None), None);
        assert_eq!(next_cursor(Some(t(0)), &[], None), Some(t(0)));
        assert_eq!(next_cursor(Some(t(0)), &[t(5), t(3)], None), Some(t(5)));
        // Failed at t(4): t(5) does not count (the failed one must be searched again).
        assert_eq!(
            next_cursor(Some(t(0)), &[t(3), t(5)], Some(t(4))),
            Some(t(3))
        );
        assert_eq!(next_cursor(Some(t(0)), &[t(4)], Some(t(4))), Some(t(0)));
        // Never backwards.
        assert_eq!(next_cursor(Some(t(9)), &[t(3)], None), Some(t(9)));
    }

    #[test]
    fn pages_link_on_and_hold_only_matches() {
        let b = json!({
            "resourceType": "Bundle",
            "link": [{"relation": "self", "url": "a"}, {"relation": "next", "url": "http://ehr/fhir/Patient?_offset=100"}],
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "1"}},
                {"resource": {"resourceType": "OperationOutcome"}}
            ]
        });
        assert_eq!(
            next_link(&b).as_deref(),
            Some("http://ehr/fhir/Patient?_offset=100")
        );
        assert_eq!(entries(&b, "Patient").len(), 1);
        assert_eq!(next_link(&json!({})), None);
    }

    #[test]
    fn intervals_are_bounded() {
        assert!(check_interval(DEFAULT_INTERVAL_SECS).is_ok());
        assert!(check_interval(30).is_err());
        assert!(check_interval(2 * 24 * 3600).is_err());
    }
}

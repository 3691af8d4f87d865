//! HL7 v2 messages of the appointment feed, without I/O: reading the header, mapping SIU and ADT
//! messages to the commands Salve runs, and writing the acknowledgement.
//!
//! Nothing here ever puts a value of the message into a rejection: reasons name the field
//! (`PID-7`) and what it must be, so an ACK, a log line or a metric carries no PHI.

use hl7_parser::Message;
use hl7_parser::message::{Field, Segment, Separators};
use salve_core::Sensitive;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Longest control id kept (HL7 2.5: ST, 199 characters in MSH-10 of 2.7).
pub use salve_store::MAX_CONTROL_ID_CHARS;

/// Acknowledgment codes (HL7 table 0008, original mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Accepted and processed.
    Accept,
    /// An error in the content: the sender should fix and resend.
    Error,
    /// Rejected: wrong type, version, sender, or not a message at all.
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "AA",
            Self::Error => "AE",
            Self::Reject => "AR",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "AA" => Some(Self::Accept),
            "AE" => Some(Self::Error),
            "AR" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// HL7 table 0357 (message error condition codes) used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    TableValueNotFound,
    UnsupportedMessageType,
    UnsupportedEvent,
    UnsupportedProcessingId,
    UnknownKey,
    DuplicateKey,
    InternalError,
}

impl ErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            Self::SegmentSequence => "100",
            Self::RequiredFieldMissing => "101",
            Self::DataType => "102",
            Self::TableValueNotFound => "103",
            Self::UnsupportedMessageType => "200",
            Self::UnsupportedEvent => "201",
            Self::UnsupportedProcessingId => "202",
            Self::UnknownKey => "204",
            Self::DuplicateKey => "205",
            Self::InternalError => "207",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::SegmentSequence => "Segment sequence error",
            Self::RequiredFieldMissing => "Required field missing",
            Self::DataType => "Data type error",
            Self::TableValueNotFound => "Table value not found",
            Self::UnsupportedMessageType => "Unsupported message type",
            Self::UnsupportedEvent => "Unsupported event code",
            Self::UnsupportedProcessingId => "Unsupported processing id",
            Self::UnknownKey => "Unknown key identifier",
            Self::DuplicateKey => "Duplicate key identifier",
            Self::InternalError => "Application internal error",
        }
    }
}

/// Why a message was not accepted. `location` names a segment and field (`PID-7`); `reason`
/// says what was wrong in words that never quote the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: AckCode,
    pub error: ErrorCode,
    pub location: Option<&'static str>,
    pub reason: String,
}

impl Rejection {
    pub fn error(error: ErrorCode, location: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code: AckCode::Error,
            error,
            location: Some(location),
            reason: reason.into(),
        }
    }

    pub fn reject(error: ErrorCode, location: Option<&'static str>, reason: &str) -> Self {
        Self {
            code: AckCode::Reject,
            error,
            location,
            reason: reason.to_owned(),
        }
    }

    /// The MSA-3 text: the location and the reason.
    pub fn text(&self) -> String {
        match self.location {
            Some(l) => format!("{l}: {}", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// The events the feed takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIU^S12: a new appointment.
    Book,
    /// SIU^S13: rescheduled (a cancelled appointment is booked again).
    Reschedule,
    /// SIU^S14: modified (time, duration, type, location, provider).
    Modify,
    /// SIU^S15: cancelled.
    Cancel,
    /// ADT^A04: a patient registered.
    Register,
    /// ADT^A08: a patient's details changed.
    UpdatePatient,
}

impl Event {
    pub fn is_appointment(self) -> bool {
        matches!(
            self,
            Self::Book | Self::Reschedule | Self::Modify | Self::Cancel
        )
    }
}

/// MSH, as far as routing and acknowledging need it. Control ids, applications and facilities
/// are system identifiers, not personal data: they may be logged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-9.1 and MSH-9.2, e.g. `SIU` and `S12`.
    pub message_type: String,
    pub trigger: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
}

impl Header {
    /// `SIU^S12`, for logs and the record: at most three letters or digits each, so a
    /// sender's garbage in MSH-9 never reaches a log line.
    pub fn type_label(&self) -> String {
        let short = |s: &str| -> String {
            s.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(3)
                .collect()
        };
        format!("{}^{}", short(&self.message_type), short(&self.trigger))
    }
}

/// The start time as the message gives it: an instant when it has a UTC offset, else a wall
/// time in the practice's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Instant(OffsetDateTime),
    /// `YYYY-MM-DD HH:MM`, resolved in the practice's zone.
    Local(time::PrimitiveDateTime),
}

/// A patient as PID gives it. Every value is sealed in `Sensitive`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientFields {
    /// PID-3: the repetition of type MR, else the first.
    pub mrn: Option<Sensitive<String>>,
    /// PID-5.2 and PID-5.1.
    pub given_name: Option<Sensitive<String>>,
    pub family_name: Option<Sensitive<String>>,
    /// PID-7 as `YYYY-MM-DD`.
    pub birth_date: Option<Sensitive<String>>,
    /// PID-13 and PID-14 telephone numbers.
    pub phones: Vec<Sensitive<String>>,
    /// PID-13 email addresses (XTN-4).
    pub emails: Vec<Sensitive<String>>,
    /// PID-15.1, lowercased.
    pub language: Option<String>,
}

impl PatientFields {
    /// Whether a new patient can be registered from these fields.
    pub fn complete(&self) -> bool {
        self.mrn.is_some()
            && self.given_name.is_some()
            && self.family_name.is_some()
            && self.birth_date.is_some()
    }
}

/// An appointment as SCH, TQ1 and the AIS/AIL/AIP resource segments give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentFields {
    /// SCH-2.1 (the filler's id), else SCH-1.1 (the placer's).
    pub external_id: Sensitive<String>,
    pub start: Option<Start>,
    pub duration_minutes: Option<i64>,
    /// Names or codes that may name a catalog item, in order of preference.
    pub appointment_type: Vec<String>,
    pub location: Vec<String>,
    pub provider: Vec<String>,
}

/// What a message asks of Salve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Appointment {
        event: Event,
        patient: PatientFields,
        appointment: AppointmentFields,
    },
    Patient {
        event: Event,
        patient: PatientFields,
    },
}

/// A message read: its header, its command, and the digest that tells a resend from another
/// message reusing the control id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub header: Header,
    pub command: Command,
}

/// The text of one component, escape sequences decoded, trimmed; `""` when absent.
fn component(field: Option<&Field<'_>>, n: usize, seps: &Separators) -> String {
    field
        .and_then(|f| f.component(n))
        .map(|c| c.display(seps).to_string().trim().to_owned())
        .unwrap_or_default()
}

fn field<'a, 'm>(segment: Option<&'a Segment<'m>>, n: usize) -> Option<&'a Field<'m>> {
    segment.and_then(|s| s.field(n))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Decodes a frame's bytes: UTF-8, or else Latin-1 (MSH-18 8859/1, the common default).
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
    }
}

/// Parses the structure, leniently about line ends (`\r`, `\n` or `\r\n` between segments).
fn structure(text: &str) -> Result<Message<'_>, Rejection> {
    let trimmed = text.trim_matches(|c| c == '\r' || c == '\n');
    if !trimmed.starts_with("MSH") {
        return Err(Rejection::reject(
            ErrorCode::SegmentSequence,
            Some("MSH"),
            "the message must start with an MSH segment",
        ));
    }
    Message::parse_with_lenient_newlines(trimmed, true).map_err(|_| {
        Rejection::reject(
            ErrorCode::SegmentSequence,
            None,
            "the message is not valid HL7 v2 (segments, separators or escapes)",
        )
    })
}

/// Reads only MSH: enough to route the message to a practice and to acknowledge it.
pub fn header(text: &str) -> Result<Header, Rejection> {
    let message = structure(text)?;
    header_of(&message)
}

fn header_of(message: &Message<'_>) -> Result<Header, Rejection> {
    let seps = &message.separators;
    let msh = message.segment("MSH");
    let h = Header {
        sending_application: component(field(msh, 3), 1, seps),
        sending_facility: component(field(msh, 4), 1, seps),
        receiving_application: component(field(msh, 5), 1, seps),
        receiving_facility: component(field(msh, 6), 1, seps),
        message_type: component(field(msh, 9), 1, seps).to_ascii_uppercase(),
        trigger: component(field(msh, 9), 2, seps).to_ascii_uppercase(),
        control_id: component(field(msh, 10), 1, seps),
        processing_id: component(field(msh, 11), 1, seps).to_ascii_uppercase(),
        version: component(field(msh, 12), 1, seps),
    };
    if h.control_id.is_empty() {
        return Err(Rejection::reject(
            ErrorCode::RequiredFieldMissing,
            Some("MSH-10"),
            "a message control id is required",
        ));
    }
    if h.control_id.chars().count() > MAX_CONTROL_ID_CHARS
        || h.control_id.chars().any(char::is_control)
    {
        return Err(Rejection::reject(
            ErrorCode::DataType,
            Some("MSH-10"),
            "the control id must be at most 199 printable characters",
        ));
    }
    Ok(h)
}

/// The digest of everything but the MSH segment: a resend (same id, same content, perhaps a new
/// MSH-7 time) matches; another message reusing the id does not.
pub fn content_digest(text: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for segment in text
        .split(['\r', '\n'])
        .filter(|s| !s.trim().is_empty() && !s.starts_with("MSH"))
    {
        hasher.update(segment.trim_end().as_bytes());
        hasher.update(b"\r");
    }
    hasher.finalize().into()
}

/// Reads a whole message into the command it asks for.
pub fn parse(text: &str) -> Result<Parsed, Rejection> {
    let message = structure(text)?;
    let header = header_of(&message)?;
    if !matches!(header.processing_id.as_str(), "P" | "T" | "D" | "") {
        return Err(Rejection::reject(
            ErrorCode::UnsupportedProcessingId,
            Some("MSH-11"),
            "the processing id must be P, T or D",
        ));
    }
    let event = match (header.message_type.as_str(), header.trigger.as_str()) {
        ("SIU", "S12") => Event::Book,
        ("SIU", "S13") => Event::Reschedule,
        ("SIU", "S14") => Event::Modify,
        ("SIU", "S15") => Event::Cancel,
        ("ADT", "A04") => Event::Register,
        ("ADT", "A08") => Event::UpdatePatient,
        ("SIU" | "ADT", _) => {
            return Err(Rejection::reject(
                ErrorCode::UnsupportedEvent,
                Some("MSH-9"),
                "this feed takes SIU S12, S13, S14, S15 and ADT A04, A08",
            ));
        }
        _ => {
            return Err(Rejection::reject(
                ErrorCode::UnsupportedMessageType,
                Some("MSH-9"),
                "this feed takes SIU S12, S13, S14, S15 and ADT A04, A08",
            ));
        }
    };
    let patient = patient(&message)?;
    let command = if event.is_appointment() {
        Command::Appointment {
            event,
            appointment: appointment(&message, event)?,
            patient,
        }
    } else {
        Command::Patient { event, patient }
    };
    Ok(Parsed { header, command })
}

fn patient(message: &Message<'_>) -> Result<PatientFields, Rejection> {
    let seps = &message.separators;
    let Some(pid) = message.segment("PID") else {
        return Err(Rejection::error(
            ErrorCode::SegmentSequence,
            "PID",
            "a PID segment is required",
        ));
    };
    let mut fields = PatientFields::default();
    // PID-3: the medical record number (identifier type MR), else the first identifier.
    if let Some(ids) = pid.field(3) {
        let mut first = None;
        for rep in ids.repeats() {
            let id = rep
                .component(1)
                .map(|c| c.display(seps).to_string().trim().to_owned())
                .unwrap_or_default();
            if id.is_empty() {
                continue;
            }
            let kind = rep
                .component(5)
                .map(|c| c.raw_value().trim().to_ascii_uppercase())
                .unwrap_or_default();
            if kind == "MR" {
                fields.mrn = Some(Sensitive::new(id));
                break;
            }
            first.get_or_insert(id);
        }
        if fields.mrn.is_none() {
            fields.mrn = first.map(Sensitive::new);
        }
    }
    if fields.mrn.is_none() {
        return Err(Rejection::error(
            ErrorCode::RequiredFieldMissing,
            "PID-3",
            "the patient's identifier (MRN) is required",
        ));
    }
    fields.family_name = non_empty(component(pid.field(5), 1, seps)).map(Sensitive::new);
    fields.given_name = non_empty(component(pid.field(5), 2, seps)).map(Sensitive::new);
    let dob = component(pid.field(7), 1, seps);
    if !dob.is_empty() {
        fields.birth_date = Some(Sensitive::new(birth_date(&dob)?));
    }
    for n in [13, 14] {
        let Some(f) = pid.field(n) else { continue };
        for rep in f.repeats() {
            let part = |k: usize| {
                rep.component(k)
                    .map(|c| c.display(seps).to_string().trim().to_owned())
                    .unwrap_or_default()
            };
            let (equipment, email) = (part(3).to_ascii_uppercase(), part(4));
            if equipment == "INTERNET" || part(2).eq_ignore_ascii_case("NET") {
                if !email.is_empty() {
                    fields.emails.push(Sensitive::new(email));
                }
                continue;
            }
            // XTN-12 (unformatted), XTN-6 and XTN-7 (area code, number), else XTN-1 (v2.3).
            let number = if !part(12).is_empty() {
                part(12)
            } else if !part(7).is_empty() {
                format!("{}{}", part(6), part(7))
            } else {
                part(1)
            };
            if !number.is_empty() {
                fields.phones.push(Sensitive::new(number));
            }
        }
    }
    fields.language = non_empty(component(pid.field(15), 1, seps).to_ascii_lowercase());
    Ok(fields)
}

/// PID-7 (`YYYYMMDD`, perhaps with a time) as `YYYY-MM-DD`.
fn birth_date(raw: &str) -> Result<String, Rejection> {
    let bad = || Rejection::error(ErrorCode::DataType, "PID-7", "a birth date as YYYYMMDD");
    let ts = hl7_parser::datetime::parse_timestamp(raw, false).map_err(|_| bad())?;
    let (Some(month), Some(day)) = (ts.month, ts.day) else {
        return Err(bad());
    };
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(i32::from(ts.year), month, day).map_err(|_| bad())?;
    Ok(salve_core::validation::format_date(date))
}

/// An HL7 timestamp to the minute, with or without its offset.
fn start(raw: &str, location: &'static str) -> Result<Start, Rejection> {
    let bad = || {
        Rejection::error(
            ErrorCode::DataType,
            location,
            "a start time as YYYYMMDDHHMM[SS][+/-ZZZZ]",
        )
    };
    let ts = hl7_parser::datetime::parse_timestamp(raw, false).map_err(|_| bad())?;
    let (Some(month), Some(day), Some(hour), Some(minute)) = (ts.month, ts.day, ts.hour, ts.minute)
    else {
        return Err(bad());
    };
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(i32::from(ts.year), month, day).map_err(|_| bad())?;
    let at = date
        .with_hms(hour, minute, ts.second.unwrap_or(0))
        .map_err(|_| bad())?;
    if ts.second.unwrap_or(0) != 0 || ts.microsecond.unwrap_or(0) != 0 {
        return Err(Rejection::error(
            ErrorCode::DataType,
            location,
            "a start time in whole minutes",
        ));
    }
    match ts.offset {
        Some(o) => {
            let sign: i8 = if o.hours < 0 { -1 } else { 1 };
            let minutes = i8::try_from(o.minutes).map_err(|_| bad())?;
            let offset =
                time::UtcOffset::from_hms(o.hours, sign * minutes, 0).map_err(|_| bad())?;
            Ok(Start::Instant(at.assume_offset(offset)))
        }
        None => Ok(Start::Local(at)),
    }
}

/// A duration and its units (CE; default minutes) in whole minutes.
fn duration(amount: &str, units: &str, location: &'static str) -> Result<Option<i64>, Rejection> {
    if amount.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Rejection::error(
            ErrorCode::DataType,
            location,
            "a duration as a whole number of minutes (or hours)",
        )
    };
    let n: i64 = amount.parse().map_err(|_| bad())?;
    let factor = match units.to_ascii_uppercase().as_str() {
        "" | "MIN" | "M" | "MINUTES" | "MINUTE" => 1,
        "H" | "HR" | "HRS" | "HOUR" | "HOURS" => 60,
        "S" | "SEC" | "SECONDS" if n % 60 == 0 => return Ok(Some(n / 60)),
        _ => return Err(bad()),
    };
    n.checked_mul(factor).map(Some).ok_or_else(bad)
}

fn appointment(message: &Message<'_>, event: Event) -> Result<AppointmentFields, Rejection> {
    let seps = &message.separators;
    let Some(sch) = message.segment("SCH") else {
        return Err(Rejection::error(
            ErrorCode::SegmentSequence,
            "SCH",
            "an SCH segment is required",
        ));
    };
    let filler = component(sch.field(2), 1, seps);
    let placer = component(sch.field(1), 1, seps);
    let (id, location) = if filler.is_empty() {
        (placer, "SCH-1")
    } else {
        (filler, "SCH-2")
    };
    if id.is_empty() {
        return Err(Rejection::error(
            ErrorCode::RequiredFieldMissing,
            "SCH-2",
            "the appointment's id (filler, or else placer in SCH-1) is required",
        ));
    }
    let external_id = salve_core::appointments::external_id("external_id", &id).map_err(|_| {
        Rejection::error(
            ErrorCode::DataType,
            location,
            "an appointment id of 1 to 100 printable characters",
        )
    })?;
    let ais = message.segment("AIS");
    let tq1 = message.segment("TQ1");
    // The start: SCH-11.4 (v2.3 TQ), TQ1-7 (v2.5), else AIS-4.
    let mut start_at = None;
    for (raw, location) in [
        (component(sch.field(11), 4, seps), "SCH-11"),
        (component(field(tq1, 7), 1, seps), "TQ1-7"),
        (component(field(ais, 4), 1, seps), "AIS-4"),
    ] {
        if !raw.is_empty() {
            start_at = Some(start(&raw, location)?);
            break;
        }
    }
    // The duration: SCH-9/10, AIS-7/8, TQ1-13, else the end in SCH-11.5 or TQ1-8.
    let mut minutes = duration(
        &component(sch.field(9), 1, seps),
        &component(sch.field(10), 1, seps),
        "SCH-9",
    )?;
    if minutes.is_none() {
        minutes = duration(
            &component(field(ais, 7), 1, seps),
            &component(field(ais, 8), 1, seps),
            "AIS-7",
        )?;
    }
    if minutes.is_none() {
        minutes = duration(
            &component(field(tq1, 13), 1, seps),
            &component(field(tq1, 13), 2, seps),
            "TQ1-13",
        )?;
    }
    if minutes.is_none() {
        for (raw, location) in [
            (component(sch.field(11), 5, seps), "SCH-11"),
            (component(field(tq1, 8), 1, seps), "TQ1-8"),
        ] {
            if raw.is_empty() {
                continue;
            }
            let end = start(&raw, location)?;
            minutes = match (start_at, end) {
                (Some(Start::Instant(s)), Start::Instant(e)) => Some((e - s).whole_minutes()),
                (Some(Start::Local(s)), Start::Local(e)) => Some((e - s).whole_minutes()),
                _ => {
                    return Err(Rejection::error(
                        ErrorCode::DataType,
                        location,
                        "the end time must be given like the start time (both with or both without an offset)",
                    ));
                }
            };
            break;
        }
    }
    if event == Event::Book {
        if start_at.is_none() {
            return Err(Rejection::error(
                ErrorCode::RequiredFieldMissing,
                "SCH-11",
                "a new appointment needs its start time (SCH-11.4, TQ1-7 or AIS-4)",
            ));
        }
        if minutes.is_none() {
            return Err(Rejection::error(
                ErrorCode::RequiredFieldMissing,
                "SCH-9",
                "a new appointment needs its duration (SCH-9, AIS-7, or an end time)",
            ));
        }
    }
    if let Some(m) = minutes {
        salve_core::appointments::duration_minutes("duration", m).map_err(|_| {
            Rejection::error(
                ErrorCode::DataType,
                "SCH-9",
                "a duration of 5 to 480 minutes",
            )
        })?;
    }
    // Catalog candidates: codes and names, first the resource segments, then SCH.
    let mut appointment_type = Vec::new();
    for (f, comps) in [
        (field(ais, 3), [2, 1]),
        (sch.field(8), [2, 1]),
        (sch.field(7), [2, 1]),
    ] {
        for c in comps {
            appointment_type.extend(non_empty(component(f, c, seps)));
        }
    }
    let ail = message.segment("AIL");
    let mut location_names = Vec::new();
    for c in [9, 1, 4] {
        location_names.extend(non_empty(component(field(ail, 3), c, seps)));
    }
    let aip = message.segment("AIP");
    let mut provider = Vec::new();
    let xcn = field(aip, 3);
    let (id, family, given, prefix) = (
        component(xcn, 1, seps),
        component(xcn, 2, seps),
        component(xcn, 3, seps),
        component(xcn, 6, seps),
    );
    provider.extend(non_empty(id));
    if !family.is_empty() {
        if !prefix.is_empty() {
            provider.push(format!("{prefix} {family}"));
        }
        if !given.is_empty() {
            provider.push(format!("{given} {family}"));
        }
        provider.push(family);
    }
    Ok(AppointmentFields {
        external_id,
        start: start_at,
        duration_minutes: minutes,
        appointment_type,
        location: location_names,
        provider,
    })
}

/// One catalog item to match against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogName<Id> {
    pub id: Id,
    pub name: String,
}

/// The catalog item the candidates name: the first candidate that names exactly one active
/// item (exactly, else ignoring case). With no candidates at all, the only item there is.
pub fn resolve_catalog<Id: Copy>(candidates: &[String], items: &[CatalogName<Id>]) -> Option<Id> {
    if candidates.is_empty() {
        return match items {
            [only] => Some(only.id),
            _ => None,
        };
    }
    for c in candidates {
        if let Some(item) = items.iter().find(|i| i.name == *c) {
            return Some(item.id);
        }
        let folded: Vec<_> = items
            .iter()
            .filter(|i| i.name.to_lowercase() == c.to_lowercase())
            .collect();
        if let [one] = folded.as_slice() {
            return Some(one.id);
        }
    }
    None
}

/// Where a patient field error points in PID.
pub fn pid_location(field: &str) -> &'static str {
    match field {
        "given_name" => "PID-5",
        "family_name" => "PID-5",
        "birth_date" => "PID-7",
        "mrn" => "PID-3",
        "preferred_language" => "PID-15",
        f if f.starts_with("contacts") => "PID-13",
        _ => "PID",
    }
}

/// The acknowledgement of a message. `incoming` is `None` when the message could not be read
/// at all (MSA-2 is then empty). `ack_id` is this ACK's own control id.
pub fn ack(
    incoming: Option<&Header>,
    code: AckCode,
    rejection: Option<&Rejection>,
    text: &str,
    now: OffsetDateTime,
    ack_id: &str,
) -> String {
    let seps = Separators::default();
    let enc = |s: &str| seps.encode(s).to_string();
    let blank = Header::default();
    let h = incoming.unwrap_or(&blank);
    let timestamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let receiving_app = if h.receiving_application.is_empty() {
        "SALVE".to_owned()
    } else {
        h.receiving_application.clone()
    };
    let version = if h.version.is_empty() {
        "2.5.1"
    } else {
        &h.version
    };
    let processing = if h.processing_id.is_empty() {
        "P"
    } else {
        &h.processing_id
    };
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK^{}^ACK|{}|{}|{}\r",
        enc(&receiving_app),
        enc(&h.receiving_facility),
        enc(&h.sending_application),
        enc(&h.sending_facility),
        timestamp,
        enc(&h.trigger),
        enc(ack_id),
        enc(processing),
        enc(version),
    );
    out.push_str(&format!(
        "MSA|{}|{}|{}\r",
        code.as_str(),
        enc(&h.control_id),
        enc(text)
    ));
    if let Some(r) = rejection {
        // ERR-2 (ERL: segment^sequence^field), ERR-3 (HL7 table 0357), ERR-4 severity.
        let location = r
            .location
            .and_then(|l| l.split_once('-'))
            .map(|(seg, f)| format!("{seg}^1^{f}"))
            .or_else(|| r.location.map(|l| format!("{l}^1")))
            .unwrap_or_default();
        out.push_str(&format!(
            "ERR||{}|{}^{}^HL70357|E||||{}\r",
            location,
            r.error.code(),
            r.error.text(),
            enc(&r.reason)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn msg(segments: &[&str]) -> String {
        segments.join("\r")
    }

    const MSH_S12: &str =
        "MSH|^~\\&|EPIC|LAKESIDE|SALVE|SALVE|202612011200||SIU^S12^SIU_S12|MSG0001|P|2.5.1";
    const PID: &str = "PID|1||12345^^^HOSP^MR~998^^^SSA^SS||Quintanilla^Ana^M||19710314|F|||||^PRN^PH^^1^312^5550142~^NET^Internet^ana@example.org||spa";
    const SCH: &str =
        "SCH|PL-7|EHR-991|||||Checkup^Annual checkup|ROUTINE^Routine|30|MIN|^^^202612070930-0600";
    const AIS: &str = "AIS|1||CHK^Annual checkup|202612070930-0600|||30|MIN";
    const AIL: &str = "AIL|1||MAIN^^^LAKESIDE^^^^^Main St";
    const AIP: &str = "AIP|1||1234^Lee^Sam^^^Dr";

    #[test]
    fn a_new_appointment_is_read_with_its_patient_and_resources() {
        let p = parse(&msg(&[MSH_S12, PID, SCH, AIS, AIL, AIP])).unwrap();
        assert_eq!(p.header.control_id, "MSG0001");
        assert_eq!(p.header.type_label(), "SIU^S12");
        let odd = header("MSH|^~\\&|E|F|||2026||Ana Quintanilla^S12 x|1|P|2.5").unwrap();
        assert_eq!(odd.type_label(), "ANA^S12");
        assert_eq!(p.header.sending_facility, "LAKESIDE");
        let Command::Appointment {
            event,
            patient,
            appointment,
        } = p.command
        else {
            panic!("an appointment command");
        };
        assert_eq!(event, Event::Book);
        assert_eq!(patient.mrn.unwrap().expose(), "12345");
        assert_eq!(patient.given_name.unwrap().expose(), "Ana");
        assert_eq!(patient.family_name.unwrap().expose(), "Quintanilla");
        assert_eq!(patient.birth_date.unwrap().expose(), "1971-03-14");
        assert_eq!(patient.phones[0].expose(), "3125550142");
        assert_eq!(patient.emails[0].expose(), "ana@example.org");
        assert_eq!(patient.language.as_deref(), Some("spa"));
        assert_eq!(appointment.external_id.expose(), "EHR-991");
        assert_eq!(
            appointment.start,
            Some(Start::Instant(datetime!(2026-12-07 09:30 -06:00)))
        );
        assert_eq!(appointment.duration_minutes, Some(30));
        assert_eq!(appointment.appointment_type[0], "Annual checkup");
        assert_eq!(appointment.location[0], "Main St");
        assert!(appointment.provider.contains(&"Dr Lee".to_owned()));
    }

    #[test]
    fn times_without_an_offset_are_wall_times_and_ends_give_durations() {
        let sch = "SCH||EHR-5|||||||||^^^202612070930^202612071015";
        let p = parse(&msg(&[MSH_S12, PID, sch])).unwrap();
        let Command::Appointment { appointment, .. } = p.command else {
            panic!()
        };
        assert_eq!(
            appointment.start,
            Some(Start::Local(datetime!(2026-12-07 09:30)))
        );
        assert_eq!(appointment.duration_minutes, Some(45));
        // No resources named: the catalog's only item will be used.
        assert!(appointment.location.is_empty());
    }

    #[test]
    fn the_first_identifier_is_the_mrn_when_none_is_typed_mr() {
        let pid = "PID|1||A-77^^^X~B-88^^^Y||Doe^Jo";
        let p = parse(&msg(&[
            "MSH|^~\\&|EHR|F|||202612011200||ADT^A08|9|P|2.3",
            pid,
        ]))
        .unwrap();
        let Command::Patient { event, patient } = p.command else {
            panic!()
        };
        assert_eq!(event, Event::UpdatePatient);
        assert_eq!(patient.mrn.unwrap().expose(), "A-77");
        assert!(patient.birth_date.is_none());
    }

    fn rejected(text: &str) -> Rejection {
        parse(text).expect_err("rejected")
    }

    #[test]
    fn bad_messages_are_refused_with_a_location_and_no_values() {
        // Not HL7 at all.
        let r = rejected("hello");
        assert_eq!(r.code, AckCode::Reject);
        // Unknown message types and events: AR.
        let r = rejected(&msg(&["MSH|^~\\&|EHR|F|||2026||ORU^R01|1|P|2.5", PID]));
        assert_eq!(
            (r.code, r.error),
            (AckCode::Reject, ErrorCode::UnsupportedMessageType)
        );
        let r = rejected(&msg(&["MSH|^~\\&|EHR|F|||2026||SIU^S17|1|P|2.5", PID]));
        assert_eq!(
            (r.code, r.error),
            (AckCode::Reject, ErrorCode::UnsupportedEvent)
        );
        // No control id: AR.
        let r = rejected(&msg(&["MSH|^~\\&|EHR|F|||2026||SIU^S12||P|2.5", PID]));
        assert_eq!(r.location, Some("MSH-10"));
        // Missing PID, MRN, SCH, id, start, duration: AE naming the field.
        for (segments, location) in [
            (vec![MSH_S12, SCH], "PID"),
            (vec![MSH_S12, "PID|1||||Doe^Jo", SCH], "PID-3"),
            (vec![MSH_S12, PID], "SCH"),
            (
                vec![MSH_S12, PID, "SCH|||||||||30|MIN|^^^202612070930"],
                "SCH-2",
            ),
            (vec![MSH_S12, PID, "SCH||E1|||||||30|MIN"], "SCH-11"),
            (
                vec![MSH_S12, PID, "SCH||E1|||||||||^^^202612070930"],
                "SCH-9",
            ),
        ] {
            let r = rejected(&msg(&segments));
            assert_eq!(r.code, AckCode::Error, "{location}");
            assert_eq!(r.location, Some(location));
        }
        // Bad dates and durations: AE, data type.
        for (segments, location) in [
            (
                vec![MSH_S12, "PID|1||12345^^^H^MR||Doe^Jo||19711340", SCH],
                "PID-7",
            ),
            (
                vec![MSH_S12, PID, "SCH||E1|||||||30|MIN|^^^202613070930"],
                "SCH-11",
            ),
            (
                vec![MSH_S12, PID, "SCH||E1|||||||30|MIN|^^^2026120709"],
                "SCH-11",
            ),
            (
                vec![MSH_S12, PID, "SCH||E1|||||||30|MIN|^^^20261207093015"],
                "SCH-11",
            ),
            (
                vec![MSH_S12, PID, "SCH||E1|||||||thirty|MIN|^^^202612070930"],
                "SCH-9",
            ),
            (
                vec![MSH_S12, PID, "SCH||E1|||||||3|MIN|^^^202612070930"],
                "SCH-9",
            ),
            (
                vec![MSH_S12, PID, "SCH||E1|||||||30|DAYS|^^^202612070930"],
                "SCH-9",
            ),
        ] {
            let r = rejected(&msg(&segments));
            assert_eq!(
                (r.code, r.error, r.location),
                (AckCode::Error, ErrorCode::DataType, Some(location)),
                "{segments:?}"
            );
        }
        // Reasons never quote the message.
        let r = rejected(&msg(&[
            MSH_S12,
            "PID|1||12345^^^H^MR||Doe^Jo||19711340",
            SCH,
        ]));
        assert!(!r.text().contains("19711340") && !r.text().contains("Doe"));
    }

    #[test]
    fn a_cancel_needs_only_the_appointment_id() {
        let p = parse(&msg(&[
            "MSH|^~\\&|EHR|F|||2026||SIU^S15|7|P|2.5",
            "PID|1||12345^^^H^MR",
            "SCH||EHR-991",
        ]))
        .unwrap();
        let Command::Appointment {
            event, appointment, ..
        } = p.command
        else {
            panic!()
        };
        assert_eq!(event, Event::Cancel);
        assert_eq!(appointment.start, None);
        assert_eq!(appointment.duration_minutes, None);
    }

    #[test]
    fn the_digest_ignores_msh_only() {
        let a = msg(&[MSH_S12, PID, SCH]);
        let b = msg(&[&MSH_S12.replace("202612011200", "202612011201"), PID, SCH]);
        let c = msg(&[MSH_S12, PID, &SCH.replace("30|MIN", "45|MIN")]);
        assert_eq!(content_digest(&a), content_digest(&b));
        assert_ne!(content_digest(&a), content_digest(&c));
        assert_eq!(content_digest(&a), content_digest(&a.replace('\r', "\r\n")));
    }

    #[test]
    fn catalog_names_resolve_exactly_then_ignoring_case_then_the_only_item() {
        let items = vec![
            CatalogName {
                id: 1,
                name: "Main St".to_owned(),
            },
            CatalogName {
                id: 2,
                name: "Annex".to_owned(),
            },
        ];
        assert_eq!(
            resolve_catalog(&["MAIN".into(), "main st".into()], &items),
            Some(1)
        );
        assert_eq!(resolve_catalog(&["Annex".into()], &items), Some(2));
        assert_eq!(resolve_catalog(&["Elsewhere".into()], &items), None);
        assert_eq!(resolve_catalog(&[], &items), None);
        assert_eq!(resolve_catalog(&[], &items[..1]), Some(1));
    }

    #[test]
    fn acks_answer_the_sender_with_the_control_id_and_an_err_segment() {
        let h = header(&msg(&[MSH_S12, PID])).unwrap();
        let now = datetime!(2026-12-01 12:00:05 UTC);
        let ok = ack(Some(&h), AckCode::Accept, None, "booked", now, "A1");
        let parsed = Message::parse(ok.trim_end_matches('\r')).unwrap();
        let msh = parsed.segment("MSH").unwrap();
        assert_eq!(msh.field(3).unwrap().raw_value(), "SALVE");
        assert_eq!(msh.field(5).unwrap().raw_value(), "EPIC");
        assert_eq!(msh.field(6).unwrap().raw_value(), "LAKESIDE");
        assert_eq!(msh.field(9).unwrap().raw_value(), "ACK^S12^ACK");
        assert_eq!(msh.field(10).unwrap().raw_value(), "A1");
        let msa = parsed.segment("MSA").unwrap();
        assert_eq!(msa.field(1).unwrap().raw_value(), "AA");
        assert_eq!(msa.field(2).unwrap().raw_value(), "MSG0001");
        assert!(parsed.segment("ERR").is_none());

        let r = Rejection::error(ErrorCode::DataType, "PID-7", "a birth date as YYYYMMDD");
        let bad = ack(Some(&h), r.code, Some(&r), &r.text(), now, "A2");
        let parsed = Message::parse(bad.trim_end_matches('\r')).unwrap();
        assert_eq!(
            parsed.segment("MSA").unwrap().field(1).unwrap().raw_value(),
            "AE"
        );
        let err = parsed.segment("ERR").unwrap();
        assert_eq!(err.field(2).unwrap().raw_value(), "PID^1^7");
        assert_eq!(
            err.field(3).unwrap().component(1).unwrap().raw_value(),
            "102"
        );
        // Nothing readable: an AR that still parses, with an empty MSA-2.
        let r = rejected("garbage");
        let unreadable = ack(None, r.code, Some(&r), &r.text(), now, "A3");
        let parsed = Message::parse(unreadable.trim_end_matches('\r')).unwrap();
        assert_eq!(
            parsed.segment("MSA").unwrap().field(1).unwrap().raw_value(),
            "AR"
        );
    }

    #[test]
    fn latin1_frames_are_read() {
        assert_eq!(decode(b"Mu\xf1oz"), "Muñoz");
        assert_eq!(decode("Muñoz".as_bytes()), "Muñoz");
    }
}

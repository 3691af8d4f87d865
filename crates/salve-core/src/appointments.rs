//! Appointments: their status and who may move it where, the validation of their schedule
//! (time, zone, duration), and the CSV import's row parsing with the report it echoes back.
//!
//! The import report goes back to the person who uploaded the file, and may be opened in a
//! spreadsheet: every echoed cell is neutralized (no formulas, no control characters, short),
//! and the identifying columns (the patient's MRN, the EHR's id) are never echoed at all.

use std::fmt;

use time::OffsetDateTime;

use crate::sensitive::Sensitive;
use crate::validation::{self, FieldError};

/// Where an appointment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppointmentStatus {
    Booked,
    Confirmed,
    /// The patient asked to move it; staff rebook it.
    RescheduleRequested,
    Cancelled,
    Completed,
    NoShow,
}

impl AppointmentStatus {
    pub const ALL: [AppointmentStatus; 6] = [
        Self::Booked,
        Self::Confirmed,
        Self::RescheduleRequested,
        Self::Cancelled,
        Self::Completed,
        Self::NoShow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Confirmed => "confirmed",
            Self::RescheduleRequested => "reschedule_requested",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
            Self::NoShow => "no_show",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the appointment is still going to happen (reminders are due for it).
    pub fn is_upcoming(self) -> bool {
        matches!(
            self,
            Self::Booked | Self::Confirmed | Self::RescheduleRequested
        )
    }
}

impl fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who set an appointment's current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusSource {
    Staff,
    Api,
    Import,
    PatientReply,
}

impl StatusSource {
    pub const ALL: [StatusSource; 4] = [Self::Staff, Self::Api, Self::Import, Self::PatientReply];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Api => "api",
            Self::Import => "import",
            Self::PatientReply => "patient_reply",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// Why a status change was refused. Carries no personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionRefused {
    pub from: AppointmentStatus,
    pub to: AppointmentStatus,
}

impl fmt::Display for TransitionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an appointment that is {} cannot become {} this way",
            self.from, self.to
        )
    }
}

/// What a requested status change amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Already in that status: nothing to write (a patient who confirms twice).
    Unchanged,
    Changed,
}

/// May `source` move an appointment from `from` to `to`?
///
/// A patient's reply only acts on an appointment still to come, and only confirms it, asks to
/// move it, or cancels it: a cancelled, completed or missed appointment is final for them.
/// Staff (and the practice's systems, through the API or an import) may set any status,
/// including rebooking a cancelled appointment.
pub fn check_transition(
    from: AppointmentStatus,
    to: AppointmentStatus,
    source: StatusSource,
) -> Result<Transition, TransitionRefused> {
    use AppointmentStatus as S;
    if from == to {
        return Ok(Transition::Unchanged);
    }
    let allowed = match source {
        StatusSource::Staff | StatusSource::Api | StatusSource::Import => true,
        StatusSource::PatientReply => {
            from.is_upcoming() && matches!(to, S::Confirmed | S::RescheduleRequested | S::Cancelled)
        }
    };
    if allowed {
        Ok(Transition::Changed)
    } else {
        Err(TransitionRefused { from, to })
    }
}

/// The change a status named in a coarser vocabulary asks for. FHIR's `booked` covers booked,
/// confirmed and reschedule-requested alike, so for a visit still to come it asks for no change
/// (rather than undoing the patient's confirmation); anything else is asked for as named.
pub fn coarse_status_change(
    current: AppointmentStatus,
    requested: AppointmentStatus,
) -> Option<AppointmentStatus> {
    if requested == AppointmentStatus::Booked && current.is_upcoming() {
        None
    } else {
        Some(requested)
    }
}

pub const MIN_DURATION_MINUTES: i64 = 5;
pub const MAX_DURATION_MINUTES: i64 = 480;
/// How far back an appointment may start (an EHR feed catching up on recent visits).
pub const MAX_PAST_DAYS: i64 = 2 * 366;
/// How far ahead an appointment may be booked.
pub const MAX_FUTURE_DAYS: i64 = 5 * 366;
pub const MAX_EXTERNAL_ID_CHARS: usize = 100;
pub const MAX_CATALOG_NAME_CHARS: usize = 200;

/// A duration in whole minutes, 5 to 480.
pub fn duration_minutes(field: &str, minutes: i64) -> Result<i64, FieldError> {
    if (MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&minutes) {
        Ok(minutes)
    } else {
        Err(FieldError::new(
            field,
            format!("a duration of {MIN_DURATION_MINUTES} to {MAX_DURATION_MINUTES} minutes"),
        ))
    }
}

/// A start time within two years back and five years ahead of `now`, to the minute.
pub fn starts_at(
    field: &str,
    at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, FieldError> {
    let earliest = now - time::Duration::days(MAX_PAST_DAYS);
    let latest = now + time::Duration::days(MAX_FUTURE_DAYS);
    if at < earliest || at > latest {
        return Err(FieldError::new(
            field,
            "a start time within two years back and five years ahead",
        ));
    }
    if at.second() != 0 || at.nanosecond() != 0 {
        return Err(FieldError::new(field, "a start time in whole minutes"));
    }
    Ok(at.to_offset(time::UtcOffset::UTC))
}

/// An RFC 3339 start time with its UTC offset, e.g. `2027-03-14T09:30:00-05:00`.
pub fn parse_starts_at(
    field: &str,
    raw: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, FieldError> {
    let at = OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            FieldError::new(
                field,
                "an RFC 3339 time with its offset, such as 2027-03-14T09:30:00-05:00",
            )
        })?;
    starts_at(field, at, now)
}

/// The EHR's own id of an appointment: 1 to 100 printable characters. Sealed when stored.
pub fn external_id(field: &str, raw: &str) -> Result<Sensitive<String>, FieldError> {
    let id = raw.trim();
    let n = id.chars().count();
    if n == 0 || n > MAX_EXTERNAL_ID_CHARS || id.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("an id of 1 to {MAX_EXTERNAL_ID_CHARS} printable characters"),
        ));
    }
    Ok(Sensitive::new(id.to_owned()))
}

/// A wall-clock time in a zone, "YYYY-MM-DD HH:MM", to the instant it names. A time the clocks
/// skip (spring forward) or pass twice (fall back) names no single instant, and is refused.
pub fn local_wall_time(time_zone: &str, raw: &str) -> Result<OffsetDateTime, String> {
    let tz = jiff::tz::TimeZone::get(time_zone)
        .map_err(|_| "the row's time zone is not a known IANA zone".to_owned())?;
    let civil = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", raw.trim())
        .map_err(|_| "expected a local time as YYYY-MM-DD HH:MM".to_owned())?;
    let ambiguous = tz.to_ambiguous_timestamp(civil);
    let ts = match ambiguous.offset() {
        jiff::tz::AmbiguousOffset::Unambiguous { .. } => ambiguous
            .unambiguous()
            .map_err(|_| "this local time names no single instant".to_owned())?,
        jiff::tz::AmbiguousOffset::Gap { .. } => {
            return Err(
                "this local time does not exist in the row's time zone (the clocks skip it at a daylight saving change)"
                    .to_owned(),
            );
        }
        jiff::tz::AmbiguousOffset::Fold { .. } => {
            return Err(
                "this local time happens twice in the row's time zone (the clocks repeat it at a daylight saving change); give the appointment through the API with its UTC offset"
                    .to_owned(),
            );
        }
    };
    OffsetDateTime::from_unix_timestamp(ts.as_second())
        .map_err(|_| "expected a local time as YYYY-MM-DD HH:MM".to_owned())
}

/// An instant as the wall time of a zone (for showing it with the zone's offset); UTC if the
/// zone is unknown.
pub fn in_zone(at: OffsetDateTime, time_zone: &str) -> OffsetDateTime {
    let offset = jiff::tz::TimeZone::get(time_zone)
        .ok()
        .and_then(|tz| {
            let ts = jiff::Timestamp::from_second(at.unix_timestamp()).ok()?;
            time::UtcOffset::from_whole_seconds(tz.to_offset(ts).seconds()).ok()
        })
        .unwrap_or(time::UtcOffset::UTC);
    at.to_offset(offset)
}

/// A catalog name in an import row: trimmed, 1 to 200 characters, no control characters.
pub fn catalog_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_CATALOG_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(format!(
            "expected a catalog name of 1 to {MAX_CATALOG_NAME_CHARS} characters"
        ));
    }
    Ok(name.to_owned())
}

// ---- CSV import -------------------------------------------------------------------------------

/// The import's columns, in any order; all are required.
pub const IMPORT_COLUMNS: [&str; 8] = [
    "external_id",
    "patient_mrn",
    "starts_at",
    "time_zone",
    "duration_minutes",
    "appointment_type",
    "location",
    "provider",
];

/// Columns whose values identify a patient: a report names the column and the reason, never
/// the value.
pub const PHI_COLUMNS: [&str; 2] = ["external_id", "patient_mrn"];

pub const MAX_IMPORT_ROWS: usize = 5000;
/// The longest echoed cell, in characters (longer ones are cut and end with "…").
pub const MAX_ECHO_CHARS: usize = 60;

/// One bad cell (or row) of an import. `row` is the spreadsheet's row number: the header is
/// row 1, the first appointment row 2. `value` is the cell, escaped, for non-identifying
/// columns only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub row: usize,
    pub column: String,
    pub message: String,
    pub value: Option<String>,
}

impl RowError {
    /// An error on one cell; its value is echoed (escaped) unless the column identifies a patient.
    pub fn cell(row: usize, column: &str, message: impl Into<String>, raw: &str) -> Self {
        let value = if PHI_COLUMNS.contains(&column) {
            None
        } else {
            Some(echo_cell(raw))
        };
        Self {
            row,
            column: column.to_owned(),
            message: message.into(),
            value,
        }
    }

    /// An error about a whole row or the file; nothing echoed.
    pub fn row(row: usize, column: &str, message: impl Into<String>) -> Self {
        Self {
            row,
            column: column.to_owned(),
            message: message.into(),
            value: None,
        }
    }
}

/// A cell made safe to echo into a JSON report that may end up in a spreadsheet: a leading
/// `=`, `+`, `-`, `@`, tab or carriage return (a formula, to a spreadsheet) gets a leading
/// apostrophe, control characters are removed, and long cells are cut.
pub fn echo_cell(raw: &str) -> String {
    let first_visible = raw.trim_start_matches(' ').chars().next();
    let formula = matches!(
        raw.chars().next(),
        Some('=' | '+' | '-' | '@' | '\t' | '\r')
    ) || matches!(first_visible, Some('=' | '+' | '-' | '@'));
    let mut out = String::new();
    if formula {
        out.push('\'');
    }
    for (count, c) in raw.chars().filter(|c| !c.is_control()).enumerate() {
        if count == MAX_ECHO_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// One valid import row, before its patient and catalog names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The spreadsheet row number (header = 1).
    pub row: usize,
    pub external_id: Sensitive<String>,
    pub patient_mrn: Sensitive<String>,
    pub starts_at: OffsetDateTime,
    pub time_zone: String,
    pub duration_minutes: i64,
    pub appointment_type: String,
    pub location: String,
    pub provider: String,
}

/// A parsed file: the valid rows, and every error found (all of them, not just the first).
#[derive(Debug, Clone, Default)]
pub struct ParsedImport {
    /// Data rows in the file (valid or not).
    pub total_rows: usize,
    pub rows: Vec<ImportRow>,
    pub errors: Vec<RowError>,
}

/// Parses an import file. Errors are collected per cell; a row with any error is left out of
/// `rows`. A later row repeating an `external_id` of the file is an error.
pub fn parse_import(bytes: &[u8], now: OffsetDateTime) -> ParsedImport {
    let mut out = ParsedImport::default();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(_)) | None => {
            out.errors.push(RowError::row(
                1,
                "",
                format!(
                    "the file needs a header row with the columns {}",
                    IMPORT_COLUMNS.join(", ")
                ),
            ));
            return out;
        }
    };
    // Where each known column is; unknown and repeated columns are errors.
    let mut positions = [usize::MAX; IMPORT_COLUMNS.len()];
    for (i, cell) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(cell).trim().to_ascii_lowercase();
        match IMPORT_COLUMNS.iter().position(|c| *c == name) {
            Some(k) if positions[k] == usize::MAX => positions[k] = i,
            Some(_) => {
                out.errors
                    .push(RowError::cell(1, &name, "this column appears twice", &name))
            }
            None => out.errors.push(RowError {
                row: 1,
                column: String::new(),
                message: "unknown column".into(),
                value: Some(echo_cell(&String::from_utf8_lossy(cell))),
            }),
        }
    }
    for (k, pos) in positions.iter().enumerate() {
        if *pos == usize::MAX {
            out.errors.push(RowError::row(
                1,
                IMPORT_COLUMNS[k],
                "this column is missing",
            ));
        }
    }
    if !out.errors.is_empty() {
        return out;
    }
    let mut seen_external: std::collections::HashMap<String, usize> = Default::default();
    for (index, record) in records.enumerate() {
        let row = index + 2;
        out.total_rows += 1;
        if out.total_rows > MAX_IMPORT_ROWS {
            out.errors.push(RowError::row(
                row,
                "",
                format!("an import holds at most {MAX_IMPORT_ROWS} appointments; split the file"),
            ));
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(_) => {
                out.errors
                    .push(RowError::row(row, "", "this row is not valid CSV"));
                continue;
            }
        };
        if record.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
            // A blank line (often the last one) is not a row.
            out.total_rows -= 1;
            continue;
        }
        if record.len() != header.len() {
            out.errors.push(RowError::row(
                row,
                "",
                format!(
                    "this row has {} cells; the header has {}",
                    record.len(),
                    header.len()
                ),
            ));
            continue;
        }
        let before = out.errors.len();
        let mut cells: [&str; IMPORT_COLUMNS.len()] = [""; IMPORT_COLUMNS.len()];
        for (k, pos) in positions.iter().enumerate() {
            match std::str::from_utf8(&record[*pos]) {
                Ok(s) => cells[k] = s,
                Err(_) => out.errors.push(RowError::row(
                    row,
                    IMPORT_COLUMNS[k],
                    "this cell is not valid UTF-8 text",
                )),
            }
        }
        if out.errors.len() > before {
            continue;
        }
        let [ext, mrn, start, zone, duration, kind, location, provider] = cells;
        let mut errors = Vec::new();
        let external = external_id("external_id", ext)
            .map_err(|e| {
                errors.push(RowError::cell(
                    row,
                    "external_id",
                    format!("expected {}", e.expected),
                    ext,
                ))
            })
            .ok();
        if let Some(id) = &external
            && let Some(first) = seen_external.insert(id.expose().clone(), row)
        {
            errors.push(RowError::row(
                row,
                "external_id",
                format!("the same external_id as row {first}"),
            ));
        }
        let mrn = validation::mrn("patient_mrn", mrn)
            .map_err(|e| {
                errors.push(RowError::cell(
                    row,
                    "patient_mrn",
                    format!("expected {}", e.expected),
                    mrn,
                ))
            })
            .ok();
        let tz = validation::time_zone("time_zone", zone)
            .map_err(|e| {
                errors.push(RowError::cell(
                    row,
                    "time_zone",
                    format!("expected {}", e.expected),
                    zone,
                ))
            })
            .ok();
        let start_at = tz.as_deref().and_then(|tz| {
            local_wall_time(tz, start)
                .and_then(|at| {
                    starts_at("starts_at", at, now).map_err(|e| format!("expected {}", e.expected))
                })
                .map_err(|m| errors.push(RowError::cell(row, "starts_at", m, start)))
                .ok()
        });
        let minutes = match duration.trim().parse::<i64>() {
            Ok(m) => duration_minutes("duration_minutes", m)
                .map_err(|e| format!("expected {}", e.expected)),
            Err(_) => Err("expected a whole number of minutes".to_owned()),
        }
        .map_err(|m| errors.push(RowError::cell(row, "duration_minutes", m, duration)))
        .ok();
        let mut name = |column: &str, raw: &str| {
            catalog_name(raw)
                .map_err(|m| errors.push(RowError::cell(row, column, m, raw)))
                .ok()
        };
        let kind = name("appointment_type", kind);
        let location = name("location", location);
        let provider = name("provider", provider);
        if !errors.is_empty() {
            out.errors.extend(errors);
            continue;
        }
        if let (
            Some(external_id),
            Some(patient_mrn),
            Some(starts_at),
            Some(time_zone),
            Some(duration_minutes),
            Some(appointment_type),
            Some(location),
            Some(provider),
        ) = (
            external, mrn, start_at, tz, minutes, kind, location, provider,
        ) {
            out.rows.push(ImportRow {
                row,
                external_id,
                patient_mrn,
                starts_at,
                time_zone,
                duration_minutes,
                appointment_type,
                location,
                provider,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn booked_in_a_coarser_vocabulary_leaves_an_answered_visit_as_it_is() {
        use AppointmentStatus as S;
        assert_eq!(coarse_status_change(S::Confirmed, S::Booked), None);
        assert_eq!(
            coarse_status_change(S::RescheduleRequested, S::Booked),
            None
        );
        assert_eq!(coarse_status_change(S::Booked, S::Booked), None);
        assert_eq!(
            coarse_status_change(S::Cancelled, S::Booked),
            Some(S::Booked),
            "rebooking a cancelled visit"
        );
        assert_eq!(
            coarse_status_change(S::Confirmed, S::Cancelled),
            Some(S::Cancelled)
        );
    }

    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2027-03-01 12:00 UTC);
    const HEADER: &str = "external_id,patient_mrn,starts_at,time_zone,duration_minutes,appointment_type,location,provider\n";

    #[test]
    fn statuses_and_sources_round_trip() {
        for s in AppointmentStatus::ALL {
            assert_eq!(AppointmentStatus::parse(s.as_str()), Some(s));
        }
        for s in StatusSource::ALL {
            assert_eq!(StatusSource::parse(s.as_str()), Some(s));
        }
        assert_eq!(AppointmentStatus::parse("Booked"), None);
        assert_eq!(StatusSource::parse("robot"), None);
    }

    #[test]
    fn a_patients_reply_acts_only_on_an_appointment_to_come() {
        use AppointmentStatus::*;
        let reply = StatusSource::PatientReply;
        assert_eq!(
            check_transition(Booked, Confirmed, reply),
            Ok(Transition::Changed)
        );
        assert_eq!(
            check_transition(Confirmed, Confirmed, reply),
            Ok(Transition::Unchanged)
        );
        assert_eq!(
            check_transition(Confirmed, RescheduleRequested, reply),
            Ok(Transition::Changed)
        );
        assert_eq!(
            check_transition(Booked, Cancelled, reply),
            Ok(Transition::Changed)
        );
        for from in [Cancelled, Completed, NoShow] {
            for to in [Confirmed, RescheduleRequested, Booked] {
                assert_eq!(
                    check_transition(from, to, reply),
                    Err(TransitionRefused { from, to }),
                    "{from} -> {to}"
                );
            }
        }
        // A patient never marks their own visit done or missed, nor rebooks it.
        for to in [Completed, NoShow, Booked] {
            assert!(check_transition(Confirmed, to, reply).is_err(), "{to}");
        }
    }

    #[test]
    fn staff_may_rebook_a_cancelled_appointment() {
        use AppointmentStatus::*;
        for source in [StatusSource::Staff, StatusSource::Api, StatusSource::Import] {
            assert_eq!(
                check_transition(Cancelled, Booked, source),
                Ok(Transition::Changed)
            );
            assert_eq!(
                check_transition(Booked, NoShow, source),
                Ok(Transition::Changed)
            );
        }
    }

    #[test]
    fn schedules_are_validated() {
        assert!(duration_minutes("d", 4).is_err());
        assert_eq!(duration_minutes("d", 5), Ok(5));
        assert_eq!(duration_minutes("d", 480), Ok(480));
        assert!(duration_minutes("d", 481).is_err());
        let at = parse_starts_at("starts_at", "2027-03-14T09:30:00-05:00", NOW).unwrap();
        assert_eq!(at, datetime!(2027-03-14 14:30 UTC));
        assert!(
            parse_starts_at("starts_at", "2027-03-14T09:30:00", NOW).is_err(),
            "no offset"
        );
        assert!(
            parse_starts_at("starts_at", "2027-03-14T09:30:30Z", NOW).is_err(),
            "seconds"
        );
        assert!(parse_starts_at("starts_at", "2037-03-14T09:30:00Z", NOW).is_err());
        assert!(parse_starts_at("starts_at", "1999-03-14T09:30:00Z", NOW).is_err());
        assert_eq!(
            parse_starts_at("starts_at", "nonsense", NOW)
                .unwrap_err()
                .field,
            "starts_at"
        );
        assert!(external_id("e", "  ").is_err());
        assert!(external_id("e", "A\u{7}").is_err());
        assert_eq!(external_id("e", " EHR-1 ").unwrap().expose(), "EHR-1");
    }

    #[test]
    fn wall_times_at_daylight_saving_changes_are_refused() {
        // New York springs forward on 2027-03-14 at 02:00 and falls back on 2027-11-07 at 02:00.
        let zone = "America/New_York";
        assert_eq!(
            local_wall_time(zone, "2027-03-14 09:30").unwrap(),
            datetime!(2027-03-14 13:30 UTC)
        );
        let gap = local_wall_time(zone, "2027-03-14 02:30").unwrap_err();
        assert!(gap.contains("does not exist"), "{gap}");
        let fold = local_wall_time(zone, "2027-11-07 01:30").unwrap_err();
        assert!(fold.contains("twice"), "{fold}");
        assert!(local_wall_time(zone, "2027-03-14T09:30").is_err());
        let shown = in_zone(datetime!(2027-03-14 13:30 UTC), zone);
        assert_eq!((shown.hour(), shown.offset().whole_hours()), (9, -4));
        assert_eq!(in_zone(datetime!(2027-01-14 13:30 UTC), zone).hour(), 8);
        assert!(local_wall_time(zone, "2027-02-30 09:30").is_err());
    }

    #[test]
    fn echoed_cells_cannot_become_formulas() {
        assert_eq!(
            echo_cell("=HYPERLINK(\"http://x\",\"y\")"),
            "'=HYPERLINK(\"http://x\",\"y\")"
        );
        for lead in ["+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "  =1"] {
            assert!(echo_cell(lead).starts_with('\''), "{lead:?}");
        }
        assert_eq!(echo_cell("\t=1"), "'=1");
        assert_eq!(echo_cell("Dr\u{0}. Lee\n"), "Dr. Lee");
        assert_eq!(echo_cell("Cardiology"), "Cardiology");
        let long = echo_cell(&"x".repeat(500));
        assert_eq!(long.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_clean_file_parses_in_any_column_order() {
        let file = "provider,location,appointment_type,duration_minutes,time_zone,starts_at,patient_mrn,external_id\n\
                    Dr Lee,Main St,Checkup,30,America/Chicago,2027-03-15 09:00,MRN-1,E-1\r\n\
                    Dr Lee,\"Main St, 2nd floor\",Checkup,45,America/Chicago,2027-03-15 10:00,MRN-2,E-2\n\n";
        let parsed = parse_import(file.as_bytes(), NOW);
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(parsed.total_rows, 2);
        assert_eq!(parsed.rows.len(), 2);
        let r = &parsed.rows[1];
        assert_eq!(r.row, 3);
        assert_eq!(r.location, "Main St, 2nd floor");
        assert_eq!(r.starts_at, datetime!(2027-03-15 15:00 UTC));
        assert_eq!(r.duration_minutes, 45);
        assert_eq!(r.patient_mrn.expose(), "MRN-2");
    }

    #[test]
    fn every_bad_row_is_reported_and_identifiers_are_not_echoed() {
        let file = format!(
            "{HEADER}\
             E-1,MRN-1,2027-03-15 09:00,Mars/Olympus,30,Checkup,Main,Dr Lee\n\
             E-2,MRN-2,2027-03-14 02:30,America/New_York,30,Checkup,Main,Dr Lee\n\
             E-3,MRN-3,2027-03-15 09:00,America/Chicago,0,Checkup,Main,Dr Lee\n\
             E-4,MRN-4,2027-03-15 09:00,America/Chicago,\"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",Checkup,Main,\n\
             E-4,,2027-03-15 09:00,America/Chicago,30,Checkup,Main,Dr Lee\n\
             E-6,MRN-6,2027-03-15 09:00\n\
             E-7,MRN-7,2027-03-15 09:00,America/Chicago,30,Checkup,Main,Dr Lee\n"
        );
        let parsed = parse_import(file.as_bytes(), NOW);
        assert_eq!(parsed.total_rows, 7);
        assert_eq!(parsed.rows.len(), 1, "only the last row is clean");
        assert_eq!(parsed.rows[0].row, 8);
        let at = |row: usize, column: &str| {
            parsed
                .errors
                .iter()
                .find(|e| e.row == row && e.column == column)
                .unwrap_or_else(|| panic!("no error at {row}/{column}: {:?}", parsed.errors))
        };
        assert_eq!(at(2, "time_zone").value.as_deref(), Some("Mars/Olympus"));
        assert!(at(3, "starts_at").message.contains("does not exist"));
        assert_eq!(at(4, "duration_minutes").value.as_deref(), Some("0"));
        assert_eq!(
            at(5, "duration_minutes").value.as_deref(),
            Some("'=HYPERLINK(\"http://evil\",\"x\")")
        );
        assert_eq!(at(5, "provider").value.as_deref(), Some(""));
        let mrn = at(6, "patient_mrn");
        assert_eq!(mrn.value, None, "an MRN is never echoed");
        assert!(at(6, "external_id").message.contains("row 5"));
        assert_eq!(at(6, "external_id").value, None);
        assert!(at(7, "").message.contains("cells"));
        let text = format!("{:?}", parsed.errors);
        for id in ["MRN-", "E-1", "E-4"] {
            assert!(!text.contains(id), "{id} echoed: {text}");
        }
    }

    #[test]
    fn headers_must_name_every_column_once() {
        let parsed = parse_import(b"external_id,patient_mrn,when\n", NOW);
        assert!(parsed.rows.is_empty());
        assert!(
            parsed
                .errors
                .iter()
                .any(|e| e.message == "unknown column" && e.value.as_deref() == Some("when"))
        );
        assert!(
            parsed
                .errors
                .iter()
                .any(|e| e.column == "starts_at" && e.message.contains("missing"))
        );
        let empty = parse_import(b"", NOW);
        assert_eq!(empty.errors.len(), 1);
        let bom = format!("\u{feff}{HEADER}E-1,MRN-1,2027-03-15 09:00,America/Chicago,30,A,B,C\n");
        assert_eq!(parse_import(bom.as_bytes(), NOW).rows.len(), 1);
    }
}

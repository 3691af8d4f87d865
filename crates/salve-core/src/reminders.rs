//! Appointment reminders: when each one is due, whether it is still worth sending, what the
//! practice's daily cap holds back, and the reminder text. Pure; the worker reads the facts and
//! stores what [`decide`] returns.
//!
//! - A slot of whole days ("72h", "24h") is counted in calendar days in the appointment's time
//!   zone, so a 09:00 visit is reminded at 09:00 three days before even across a DST change; any
//!   other number of hours is exact elapsed time. "same_day@07:00" is that wall time on the
//!   visit's day, and only when it comes before the visit.
//! - A reminder whose moment passed while Salve was down goes late only while it is still
//!   useful: not within the practice's minimum lead time before the visit (never after it), and
//!   not when a later slot is due as well (then only the latest goes; the earlier one is
//!   recorded as superseded).
//! - The cap counts reminders per appointment per local day; what it holds back is recorded and
//!   shown to staff, never dropped in silence.

use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan};
use serde::Serialize;

use crate::appointments::AppointmentStatus;
use crate::keywords::ReplyIntent;
use crate::system_messages::{Language, SystemMessageKind, sms_segments};
use crate::validation::FieldError;

/// One reminder in a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// This many hours before the visit (whole days in calendar days).
    Before { hours: u32 },
    /// This wall time on the visit's day.
    SameDay { at: Time },
}

/// The most hours before a visit a reminder may be scheduled (two weeks).
pub const MAX_HOURS_BEFORE: u32 = 336;
/// The most reminders one schedule may hold.
pub const MAX_SLOTS: usize = 4;

impl Slot {
    /// The stable key stored with each sent reminder: "72h", "same_day@07:00".
    pub fn key(&self) -> String {
        match self {
            Self::Before { hours } => format!("{hours}h"),
            Self::SameDay { at } => format!("same_day@{:02}:{:02}", at.hour(), at.minute()),
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if let Some(at) = raw.strip_prefix("same_day@") {
            let (h, m) = at.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let at = Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()?;
            return Some(Self::SameDay { at });
        }
        let hours: u32 = raw.strip_suffix('h')?.parse().ok()?;
        (1..=MAX_HOURS_BEFORE)
            .contains(&hours)
            .then_some(Self::Before { hours })
    }

    /// When this reminder is due for a visit at `starts_at` in `zone`; `None` when the slot does
    /// not apply (a same-day time at or after the visit).
    pub fn due_at(&self, starts_at: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let visit = starts_at.to_zoned(zone.clone());
        match *self {
            Self::Before { hours } if hours % 24 == 0 => visit
                .checked_sub(Span::new().days(i64::from(hours / 24)))
                .ok()
                .map(|z| z.timestamp()),
            Self::Before { hours } => starts_at.checked_sub(i64::from(hours).hours()).ok(),
            Self::SameDay { at } => {
                let due = visit
                    .date()
                    .to_datetime(at)
                    .to_zoned(zone.clone())
                    .ok()?
                    .timestamp();
                (due < starts_at).then_some(due)
            }
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A practice's reminders for one appointment type (or its default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub slots: Vec<Slot>,
}

impl Default for Schedule {
    /// 72 and 24 hours before.
    fn default() -> Self {
        Self {
            slots: vec![Slot::Before { hours: 72 }, Slot::Before { hours: 24 }],
        }
    }
}

impl Schedule {
    /// "72h,24h,same_day@07:00"; an empty text means no reminders for this type.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let mut slots = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let slot = Slot::parse(part).ok_or_else(|| {
                FieldError::new(
                    field,
                    format!(
                        "`{}` is not a reminder: use hours before the visit (1h to {MAX_HOURS_BEFORE}h, e.g. 24h) or same_day@HH:MM",
                        part.chars().take(20).collect::<String>()
                    ),
                )
            })?;
            if slots.contains(&slot) {
                return Err(FieldError::new(field, format!("{slot} is listed twice")));
            }
            slots.push(slot);
        }
        if slots.len() > MAX_SLOTS {
            return Err(FieldError::new(
                field,
                format!("at most {MAX_SLOTS} reminders per appointment"),
            ));
        }
        Ok(Self { slots })
    }

    pub fn to_text(&self) -> String {
        self.slots
            .iter()
            .map(Slot::key)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The practice's limits on reminders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reminders per appointment per local day (the frequency cap).
    pub daily_cap: u32,
    /// A late reminder is not sent closer to the visit than this (the late cut-off).
    pub min_lead_minutes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            daily_cap: 1,
            min_lead_minutes: 120,
        }
    }
}

/// What happens to one slot now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Due: send it.
    Send,
    /// Due, but the daily cap is reached: recorded for staff, not sent.
    HeldByCap,
    /// Its moment passed and it is no longer useful (within the lead time, or after the visit).
    TooLate,
    /// A later reminder for the same visit is due too; only that one goes.
    Superseded,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::HeldByCap => "held_by_cap",
            Self::TooLate => "too_late",
            Self::Superseded => "superseded",
        }
    }
}

/// A reminder already recorded for this visit (any verdict), and when it was sent if it was.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub slot_key: String,
    pub sent_at: Option<Timestamp>,
}

/// A slot that is due now, and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSlot {
    pub slot: Slot,
    pub due_at: Timestamp,
    pub verdict: Verdict,
}

/// The reminders of one visit that are due at `now` and not recorded yet, each with its verdict.
pub fn decide(
    starts_at: Timestamp,
    zone: &TimeZone,
    schedule: &Schedule,
    limits: Limits,
    recorded: &[Recorded],
    now: Timestamp,
) -> Vec<DueSlot> {
    let mut due: Vec<(Slot, Timestamp)> = schedule
        .slots
        .iter()
        .filter(|slot| !recorded.iter().any(|r| r.slot_key == slot.key()))
        .filter_map(|slot| slot.due_at(starts_at, zone).map(|at| (*slot, at)))
        .filter(|(_, at)| *at <= now)
        .collect();
    due.sort_by_key(|(_, at)| *at);
    let cutoff = starts_at
        .checked_sub(i64::from(limits.min_lead_minutes).minutes())
        .unwrap_or(starts_at);
    let today = now.to_zoned(zone.clone()).date();
    let mut sent_today = recorded
        .iter()
        .filter_map(|r| r.sent_at)
        .filter(|at| at.to_zoned(zone.clone()).date() == today)
        .count();
    let latest = due.len().saturating_sub(1);
    due.into_iter()
        .enumerate()
        .map(|(i, (slot, due_at))| {
            let verdict = if now >= cutoff {
                Verdict::TooLate
            } else if i < latest {
                Verdict::Superseded
            } else if sent_today >= limits.daily_cap as usize {
                Verdict::HeldByCap
            } else {
                sent_today += 1;
                Verdict::Send
            };
            DueSlot {
                slot,
                due_at,
                verdict,
            }
        })
        .collect()
}

/// When a queued reminder stops being worth sending (the outbox withdraws it after this).
pub fn expires_at(starts_at: Timestamp, limits: Limits) -> Timestamp {
    starts_at
        .checked_sub(i64::from(limits.min_lead_minutes).minutes())
        .unwrap_or(starts_at)
}

/// The reminder texts. Every one names the practice, gives its phone number and says how to opt
/// out; the answers avoid opt-out words (CANCEL always opts out, so cancelling a visit is X).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderTemplate {
    English,
    Spanish,
    /// Spanish without accents: GSM-7, so a short reminder stays in one or two segments
    /// instead of three or four UCS-2 ones.
    SpanishUnaccented,
}

impl ReminderTemplate {
    pub const ALL: [ReminderTemplate; 3] = [Self::English, Self::Spanish, Self::SpanishUnaccented];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::English => "en",
            Self::Spanish => "es",
            Self::SpanishUnaccented => "es_unaccented",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// English for English speakers; for Spanish, the practice chooses accents or one segment.
    pub fn for_language(lang: Language, spanish_unaccented: bool) -> Self {
        match lang {
            Language::En => Self::English,
            Language::Es if spanish_unaccented => Self::SpanishUnaccented,
            Language::Es => Self::Spanish,
        }
    }

    /// The template body, in the variables of [`crate::templates`].
    pub fn body(self) -> &'static str {
        match self {
            Self::English => {
                "{practice.sender_name}: reminder of your {appointment.type} visit with \
                 {appointment.provider} on {appointment.date} at {appointment.time}, \
                 {appointment.location}. Reply C to confirm, R to reschedule, X to cancel this \
                 visit. STOP to opt out. Questions: {practice.phone}"
            }
            Self::Spanish => {
                "{practice.sender_name}: recordatorio de su cita de {appointment.type} con \
                 {appointment.provider} el {appointment.date} a las {appointment.time}, \
                 {appointment.location}. Responda C para confirmar, R para cambiarla, X para \
                 cancelar esta cita. STOP para no recibir más. Llame al {practice.phone}"
            }
            Self::SpanishUnaccented => {
                "{practice.sender_name}: cita de {appointment.type} con {appointment.provider} \
                 el {appointment.date} a las {appointment.time}, {appointment.location}. C \
                 confirma, R cambia, X cancela esta cita. STOP para no recibir mas. \
                 {practice.phone}"
            }
        }
    }

    pub fn language(self) -> Language {
        match self {
            Self::English => Language::En,
            Self::Spanish | Self::SpanishUnaccented => Language::Es,
        }
    }
}

const EN_WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const EN_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
// Unaccented on purpose: "sáb" or "miér" would make the whole text UCS-2.
const ES_WEEKDAYS: [&str; 7] = ["lun", "mar", "mie", "jue", "vie", "sab", "dom"];
const ES_MONTHS: [&str; 12] = [
    "ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic",
];

/// The visit's date and time as the patient reads them, in the visit's time zone:
/// ("Thu Dec 3", "9:30 AM") or ("jue 3 dic", "9:30").
pub fn visit_date_time(starts_at: Timestamp, zone: &TimeZone, lang: Language) -> (String, String) {
    let local = starts_at.to_zoned(zone.clone());
    let date: Date = local.date();
    let weekday = date.weekday().to_monday_zero_offset() as usize;
    let month = (date.month() - 1) as usize;
    match lang {
        Language::En => {
            let hour12 = match local.hour() % 12 {
                0 => 12,
                h => h,
            };
            let ampm = if local.hour() < 12 { "AM" } else { "PM" };
            (
                format!(
                    "{} {} {}",
                    EN_WEEKDAYS[weekday],
                    EN_MONTHS[month],
                    date.day()
                ),
                format!("{hour12}:{:02} {ampm}", local.minute()),
            )
        }
        Language::Es => (
            format!(
                "{} {} {}",
                ES_WEEKDAYS[weekday],
                date.day(),
                ES_MONTHS[month]
            ),
            format!("{}:{:02}", local.hour(), local.minute()),
        ),
    }
}

/// What a patient's answer to a reminder does: the visit's new status, a note for staff (a
/// reschedule request is their task), and the fixed acknowledgement texted back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerEffect {
    pub status: Option<AppointmentStatus>,
    pub staff_note: Option<&'static str>,
    pub acknowledgement: Option<SystemMessageKind>,
}

pub fn answer_effect(intent: ReplyIntent) -> AnswerEffect {
    match intent {
        ReplyIntent::Confirm => AnswerEffect {
            status: Some(AppointmentStatus::Confirmed),
            staff_note: None,
            acknowledgement: Some(SystemMessageKind::VisitConfirmed),
        },
        ReplyIntent::CancelVisit => AnswerEffect {
            status: Some(AppointmentStatus::Cancelled),
            staff_note: Some("The patient cancelled this visit by replying to its reminder."),
            acknowledgement: Some(SystemMessageKind::VisitCancelled),
        },
        ReplyIntent::Reschedule => AnswerEffect {
            status: Some(AppointmentStatus::RescheduleRequested),
            staff_note: Some(
                "Task: the patient asked to reschedule this visit (reply to its reminder). Call \
                 them to find a new time.",
            ),
            acknowledgement: Some(SystemMessageKind::RescheduleRequested),
        },
        ReplyIntent::Late => AnswerEffect {
            status: None,
            staff_note: Some("The patient says they are running late for this visit."),
            acknowledgement: None,
        },
    }
}

/// How many segments a rendered reminder takes (GSM-7 or UCS-2), for the settings page.
pub fn segments(text: &str) -> usize {
    sms_segments(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{self, ClassifyContext, FilledValue, Route};
    use crate::templates::{Template, TemplateValues, Variable};

    fn chicago() -> TimeZone {
        TimeZone::get("America/Chicago").unwrap()
    }

    fn at(zone: &TimeZone, text: &str) -> Timestamp {
        let dt: jiff::civil::DateTime = text.parse().unwrap();
        dt.to_zoned(zone.clone()).unwrap().timestamp()
    }

    fn local(zone: &TimeZone, ts: Timestamp) -> String {
        ts.to_zoned(zone.clone())
            .datetime()
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    }

    #[test]
    fn every_answer_has_its_effect() {
        let confirm = answer_effect(ReplyIntent::Confirm);
        assert_eq!(confirm.status, Some(AppointmentStatus::Confirmed));
        assert_eq!(confirm.staff_note, None);
        let cancel = answer_effect(ReplyIntent::CancelVisit);
        assert_eq!(cancel.status, Some(AppointmentStatus::Cancelled));
        let later = answer_effect(ReplyIntent::Reschedule);
        assert_eq!(later.status, Some(AppointmentStatus::RescheduleRequested));
        assert!(later.staff_note.unwrap().starts_with("Task:"));
        let late = answer_effect(ReplyIntent::Late);
        assert_eq!((late.status, late.acknowledgement), (None, None));
        assert!(late.staff_note.is_some());
    }

    #[test]
    fn slots_parse_and_print() {
        for raw in ["72h", "24h", "2h", "same_day@07:00", "336h"] {
            assert_eq!(Slot::parse(raw).unwrap().key(), raw);
        }
        for bad in [
            "0h",
            "337h",
            "24",
            "h",
            "same_day@7:00",
            "same_day@25:00",
            "-3h",
            "",
        ] {
            assert_eq!(Slot::parse(bad), None, "{bad}");
        }
        let s = Schedule::parse("schedule", "72h, 24h,same_day@07:30").unwrap();
        assert_eq!(s.to_text(), "72h,24h,same_day@07:30");
        assert!(Schedule::parse("schedule", "").unwrap().slots.is_empty());
        assert!(Schedule::parse("schedule", "24h,24h").is_err());
        assert!(Schedule::parse("schedule", "1h,2h,3h,4h,5h").is_err());
        let err = Schedule::parse("schedule", "tomorrow").unwrap_err();
        assert_eq!(err.field, "schedule");
    }

    #[test]
    fn whole_days_keep_the_wall_time_across_dst() {
        let zone = chicago();
        // CDT ends Sunday 2026-11-01: a Monday 09:00 CST visit is reminded Friday 09:00 CDT.
        let visit = at(&zone, "2026-11-02T09:00");
        let due = Slot::Before { hours: 72 }.due_at(visit, &zone).unwrap();
        assert_eq!(local(&zone, due), "2026-10-30 09:00");
        // Exactly 72 elapsed hours would have been 10:00 local.
        assert_ne!(due, visit.checked_sub(72.hours()).unwrap());
        // CDT starts Sunday 2027-03-14.
        let visit = at(&zone, "2027-03-15T08:30");
        let due = Slot::Before { hours: 24 }.due_at(visit, &zone).unwrap();
        assert_eq!(local(&zone, due), "2027-03-14 08:30");
        // Hours that are not whole days are elapsed time: 2h before 08:30 CDT.
        let due = Slot::Before { hours: 2 }.due_at(visit, &zone).unwrap();
        assert_eq!(local(&zone, due), "2027-03-15 06:30");
    }

    #[test]
    fn a_reminder_inside_the_dst_gap_moves_to_the_later_instant() {
        let zone = chicago();
        // 02:30 on 2027-03-14 does not exist in Chicago.
        let visit = at(&zone, "2027-03-15T02:30");
        let due = Slot::Before { hours: 24 }.due_at(visit, &zone).unwrap();
        assert_eq!(local(&zone, due), "2027-03-14 03:30");
    }

    #[test]
    fn due_times_follow_the_visits_own_zone() {
        let madrid = TimeZone::get("Europe/Madrid").unwrap();
        let honolulu = TimeZone::get("Pacific/Honolulu").unwrap();
        let visit_madrid = at(&madrid, "2026-10-26T10:00"); // Madrid leaves CEST on Oct 25
        let due = Slot::Before { hours: 48 }
            .due_at(visit_madrid, &madrid)
            .unwrap();
        assert_eq!(local(&madrid, due), "2026-10-24 10:00");
        let visit_hnl = at(&honolulu, "2026-10-26T10:00"); // no DST in Hawaii
        let due = Slot::Before { hours: 48 }
            .due_at(visit_hnl, &honolulu)
            .unwrap();
        assert_eq!(visit_hnl.as_second() - due.as_second(), 48 * 3600);
    }

    #[test]
    fn same_day_only_before_the_visit() {
        let zone = chicago();
        let slot = Slot::parse("same_day@07:00").unwrap();
        let visit = at(&zone, "2026-12-03T09:30");
        assert_eq!(
            local(&zone, slot.due_at(visit, &zone).unwrap()),
            "2026-12-03 07:00"
        );
        assert_eq!(slot.due_at(at(&zone, "2026-12-03T07:00"), &zone), None);
        assert_eq!(slot.due_at(at(&zone, "2026-12-03T06:00"), &zone), None);
    }

    fn default_decision(visit: &str, now: &str, recorded: &[Recorded]) -> Vec<(String, Verdict)> {
        let zone = chicago();
        decide(
            at(&zone, visit),
            &zone,
            &Schedule::default(),
            Limits::default(),
            recorded,
            at(&zone, now),
        )
        .into_iter()
        .map(|d| (d.slot.key(), d.verdict))
        .collect()
    }

    #[test]
    fn nothing_is_due_before_its_moment() {
        assert!(default_decision("2026-12-10T09:00", "2026-12-07T08:59", &[]).is_empty());
        assert_eq!(
            default_decision("2026-12-10T09:00", "2026-12-07T09:00", &[]),
            vec![("72h".to_owned(), Verdict::Send)]
        );
    }

    #[test]
    fn a_recorded_reminder_is_never_decided_again() {
        let zone = chicago();
        let recorded = [Recorded {
            slot_key: "72h".into(),
            sent_at: Some(at(&zone, "2026-12-07T09:00")),
        }];
        assert!(default_decision("2026-12-10T09:00", "2026-12-08T09:00", &recorded).is_empty());
        assert_eq!(
            default_decision("2026-12-10T09:00", "2026-12-09T09:00", &recorded),
            vec![("24h".to_owned(), Verdict::Send)]
        );
    }

    #[test]
    fn downtime_sends_only_the_latest_useful_reminder() {
        // Down from before the 72h moment until after the 24h one: the 72h is superseded.
        assert_eq!(
            default_decision("2026-12-10T09:00", "2026-12-09T12:00", &[]),
            vec![
                ("72h".to_owned(), Verdict::Superseded),
                ("24h".to_owned(), Verdict::Send)
            ]
        );
    }

    #[test]
    fn late_reminders_stop_at_the_cutoff_and_never_follow_the_visit() {
        let useful = default_decision("2026-12-10T09:00", "2026-12-10T06:59", &[]);
        assert_eq!(
            useful,
            vec![
                ("72h".to_owned(), Verdict::Superseded),
                ("24h".to_owned(), Verdict::Send)
            ]
        );
        for now in [
            "2026-12-10T07:00",
            "2026-12-10T08:59",
            "2026-12-10T09:00",
            "2026-12-11T09:00",
        ] {
            let d = default_decision("2026-12-10T09:00", now, &[]);
            assert!(
                d.iter().all(|(_, v)| *v == Verdict::TooLate),
                "{now}: {d:?}"
            );
            assert_eq!(d.len(), 2);
        }
    }

    #[test]
    fn the_daily_cap_holds_back_and_says_so() {
        let zone = chicago();
        let schedule = Schedule::parse("s", "26h,24h").unwrap();
        let visit = at(&zone, "2026-12-10T09:00");
        let first = decide(
            visit,
            &zone,
            &schedule,
            Limits::default(),
            &[],
            at(&zone, "2026-12-09T07:00"),
        );
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].verdict, Verdict::Send);
        let recorded = [Recorded {
            slot_key: "26h".into(),
            sent_at: Some(at(&zone, "2026-12-09T07:00")),
        }];
        let second = decide(
            visit,
            &zone,
            &schedule,
            Limits::default(),
            &recorded,
            at(&zone, "2026-12-09T09:00"),
        );
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].verdict, Verdict::HeldByCap);
        // A cap of two lets it through.
        let two = Limits {
            daily_cap: 2,
            ..Limits::default()
        };
        let second = decide(
            visit,
            &zone,
            &schedule,
            two,
            &recorded,
            at(&zone, "2026-12-09T09:00"),
        );
        assert_eq!(second[0].verdict, Verdict::Send);
        // A reminder held or skipped earlier counts toward nothing.
        let held = [Recorded {
            slot_key: "26h".into(),
            sent_at: None,
        }];
        let again = decide(
            visit,
            &zone,
            &schedule,
            Limits::default(),
            &held,
            at(&zone, "2026-12-09T09:00"),
        );
        assert_eq!(again[0].verdict, Verdict::Send);
    }

    #[test]
    fn expiry_is_the_cutoff() {
        let zone = chicago();
        let visit = at(&zone, "2026-12-10T09:00");
        assert_eq!(
            local(&zone, expires_at(visit, Limits::default())),
            "2026-12-10 07:00"
        );
    }

    fn render(template: ReminderTemplate, type_safe: bool) -> (String, Vec<FilledValue>) {
        let zone = chicago();
        let (date, time) =
            visit_date_time(at(&zone, "2026-12-03T09:30"), &zone, template.language());
        let mut values = TemplateValues::new();
        values
            .set(Variable::PracticeSenderName, "Oak Street Clinic")
            .set(Variable::PracticePhone, "(312) 555-0100")
            .set(Variable::AppointmentDate, date)
            .set(Variable::AppointmentTime, time)
            .set_catalog(Variable::AppointmentType, "Annual checkup", type_safe)
            .set_catalog(Variable::AppointmentProvider, "Dr. Rivera", true)
            .set_catalog(Variable::AppointmentLocation, "Main St office", true);
        let out = Template::new(template.body())
            .parse()
            .unwrap()
            .render(&values)
            .unwrap();
        (out.text, out.filled)
    }

    #[test]
    fn dates_read_naturally_in_each_language() {
        let zone = chicago();
        let ts = at(&zone, "2026-12-03T14:05");
        assert_eq!(
            visit_date_time(ts, &zone, Language::En),
            ("Thu Dec 3".to_owned(), "2:05 PM".to_owned())
        );
        assert_eq!(
            visit_date_time(ts, &zone, Language::Es),
            ("jue 3 dic".to_owned(), "14:05".to_owned())
        );
        let midnight = at(&zone, "2026-12-03T00:15");
        assert_eq!(visit_date_time(midnight, &zone, Language::En).1, "12:15 AM");
    }

    #[test]
    fn every_reminder_names_the_practice_its_phone_and_opt_out_and_avoids_cancel() {
        for template in ReminderTemplate::ALL {
            let (text, _) = render(template, true);
            assert!(text.contains("Oak Street Clinic"), "{text}");
            assert!(text.contains("(312) 555-0100"), "{text}");
            assert!(text.contains("STOP"), "{text}");
            let lower = text.to_lowercase();
            // CANCEL is an opt-out word: a reminder never asks patients to text it.
            assert!(!text.contains("CANCEL"), "{text}");
            assert!(lower.contains(" c ") || lower.contains("reply c"), "{text}");
            assert!(text.contains(" X "), "{text}");
            assert!(text.contains(" R "), "{text}");
        }
    }

    #[test]
    fn segment_counts() {
        let (en, _) = render(ReminderTemplate::English, true);
        assert!(crate::system_messages::is_gsm7(&en));
        assert_eq!(segments(&en), 2, "{en}");
        let (es, _) = render(ReminderTemplate::Spanish, true);
        assert!(
            !crate::system_messages::is_gsm7(&es),
            "accents make it UCS-2"
        );
        let (plain, _) = render(ReminderTemplate::SpanishUnaccented, true);
        assert!(crate::system_messages::is_gsm7(&plain), "{plain}");
        assert!(segments(&plain) < segments(&es));
        assert!(segments(&plain) <= 2, "{plain}");
    }

    #[test]
    fn the_policy_lets_a_safe_reminder_go_direct_and_keeps_an_unsafe_type_secure() {
        for template in ReminderTemplate::ALL {
            let (text, filled) = render(template, true);
            let ctx = ClassifyContext {
                has_attachment: false,
                values: filled,
                sender_name: Some("Oak Street Clinic".into()),
            };
            let d = policy::classify(&text, &ctx);
            assert_eq!(d.route, Route::Direct, "{text}: {:?}", d.reasons);
            let (text, filled) = render(template, false);
            let ctx = ClassifyContext {
                has_attachment: false,
                values: filled,
                sender_name: Some("Oak Street Clinic".into()),
            };
            assert_eq!(policy::classify(&text, &ctx).route, Route::Secure, "{text}");
        }
    }
}

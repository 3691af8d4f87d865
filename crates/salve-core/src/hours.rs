//! Office hours and holidays of a practice, in its own time zone: whether it is open, when it
//! opens next, how much open ("business") time lies between two instants, the short hours text
//! for system messages, and when an inbound message earns the after-hours reply.
//!
//! A practice with no office hours configured is treated as **always open**
//! ([`OfficeHours::always_open`]): it never sends after-hours replies, and its business time is
//! wall-clock time (a response target then counts every hour). Callers holding an
//! `Option<OfficeHours>` use [`after_hours_reply_due`] and [`OfficeHours::or_always_open`].
//!
//! Intervals are wall-clock times of the practice's zone, so "08:00-17:00" is nine hours on an
//! ordinary day and follows daylight saving time; the instants are computed through the time
//! zone database, so an interval that spans a clock change is an hour shorter or longer. A
//! wall-clock time that does not exist (a spring-forward gap) resolves to the later instant.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use time::OffsetDateTime;

use crate::system_messages::{Language, MAX_HOURS_CHARS};
use crate::validation::FieldError;

/// Minutes in a day: an interval may end at 24:00.
pub const DAY_MINUTES: u16 = 24 * 60;
pub const MAX_INTERVALS_PER_DAY: usize = 6;
pub const MAX_HOLIDAYS: usize = 200;
pub const MAX_HOLIDAY_NAME_CHARS: usize = 60;
/// One after-hours reply per conversation per this many seconds.
pub const AFTER_HOURS_REPLY_INTERVAL_SECS: i64 = 12 * 3600;
/// How far ahead [`OfficeHours::next_open`] looks.
const LOOKAHEAD_DAYS: i32 = 400;
/// A bound on the days [`OfficeHours::business_seconds_between`] walks (about 30 years).
const MAX_WALK_DAYS: i64 = 11_000;

/// Day keys of the weekly schedule, Monday first (index = Monday-zero offset).
pub const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One opening interval of a day, in minutes after local midnight: `start < end <= 1440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    start: u16,
    end: u16,
}

impl Interval {
    pub fn new(start_minute: u16, end_minute: u16) -> Option<Self> {
        (start_minute < end_minute && end_minute <= DAY_MINUTES).then_some(Self {
            start: start_minute,
            end: end_minute,
        })
    }

    pub fn start_minute(self) -> u16 {
        self.start
    }

    pub fn end_minute(self) -> u16 {
        self.end
    }

    /// `HH:MM-HH:MM`.
    pub fn start_hhmm(self) -> String {
        hhmm(self.start)
    }

    pub fn end_hhmm(self) -> String {
        hhmm(self.end)
    }
}

/// `HH:MM` for minutes after midnight (`24:00` for the end of the day).
pub fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes after midnight.
pub fn parse_hhmm(raw: &str) -> Option<u16> {
    let (h, m) = raw.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// A day the office is closed all day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    pub date: Date,
    /// "Thanksgiving": practice configuration, not patient data.
    pub name: String,
}

/// Raw office hours as submitted (strings), before [`OfficeHours::parse`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfficeHoursInput {
    pub time_zone: String,
    /// Day key (`mon` ... `sun`) -> intervals as (`HH:MM`, `HH:MM`). Missing days are closed.
    pub weekly: BTreeMap<String, Vec<(String, String)>>,
    /// (`YYYY-MM-DD`, name).
    pub holidays: Vec<(String, String)>,
}

/// A practice's validated weekly schedule and holidays.
#[derive(Debug, Clone)]
pub struct OfficeHours {
    time_zone: String,
    zone: TimeZone,
    /// Index 0 = Monday. Sorted, non-overlapping.
    weekly: [Vec<Interval>; 7],
    holidays: BTreeMap<Date, String>,
}

impl PartialEq for OfficeHours {
    fn eq(&self, other: &Self) -> bool {
        self.time_zone == other.time_zone
            && self.weekly == other.weekly
            && self.holidays == other.holidays
    }
}

impl Eq for OfficeHours {}

impl OfficeHours {
    /// Checks and builds office hours: a known IANA zone, at most six non-overlapping intervals
    /// a day, some open time in the week, holidays on distinct dates with short names.
    pub fn new(
        time_zone: &str,
        weekly: [Vec<Interval>; 7],
        holidays: Vec<Holiday>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let zone = match crate::validation::time_zone("time_zone", time_zone) {
            Ok(name) => TimeZone::get(&name).ok(),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let mut sorted: [Vec<Interval>; 7] = Default::default();
        for (day, intervals) in weekly.into_iter().enumerate() {
            let key = DAY_KEYS[day];
            if intervals.len() > MAX_INTERVALS_PER_DAY {
                errors.push(FieldError::new(
                    format!("weekly.{key}"),
                    format!("at most {MAX_INTERVALS_PER_DAY} intervals a day"),
                ));
            }
            let mut list = intervals;
            list.sort();
            for (i, pair) in list.windows(2).enumerate() {
                if pair[1].start < pair[0].end {
                    errors.push(FieldError::new(
                        format!("weekly.{key}[{}]", i + 1),
                        "intervals of one day that do not overlap",
                    ));
                }
            }
            sorted[day] = list;
        }
        if sorted.iter().all(Vec::is_empty) {
            errors.push(FieldError::new(
                "weekly",
                "at least one opening interval in the week",
            ));
        }
        if holidays.len() > MAX_HOLIDAYS {
            errors.push(FieldError::new(
                "holidays",
                format!("at most {MAX_HOLIDAYS} holidays"),
            ));
        }
        let mut by_date = BTreeMap::new();
        for (i, holiday) in holidays.into_iter().enumerate() {
            let name = holiday.name.trim().to_owned();
            if name.is_empty()
                || name.chars().count() > MAX_HOLIDAY_NAME_CHARS
                || name.chars().any(char::is_control)
            {
                errors.push(FieldError::new(
                    format!("holidays[{i}].name"),
                    format!("a name of 1 to {MAX_HOLIDAY_NAME_CHARS} characters"),
                ));
            }
            if by_date.insert(holiday.date, name).is_some() {
                errors.push(FieldError::new(
                    format!("holidays[{i}].date"),
                    "one holiday per date",
                ));
            }
        }
        match zone {
            Some(zone) if errors.is_empty() => Ok(Self {
                time_zone: time_zone.trim().to_owned(),
                zone,
                weekly: sorted,
                holidays: by_date,
            }),
            _ => Err(errors),
        }
    }

    /// Parses submitted strings, naming each bad field (`weekly.mon[1].end`,
    /// `holidays[0].date`, ...), then checks as [`OfficeHours::new`].
    pub fn parse(input: &OfficeHoursInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut weekly: [Vec<Interval>; 7] = Default::default();
        for (key, intervals) in &input.weekly {
            let Some(day) = DAY_KEYS.iter().position(|k| k == key) else {
                errors.push(FieldError::new(
                    "weekly",
                    "day keys mon, tue, wed, thu, fri, sat, sun",
                ));
                continue;
            };
            for (i, (start, end)) in intervals.iter().enumerate() {
                let s = parse_hhmm(start);
                let e = parse_hhmm(end);
                if s.is_none() || s == Some(DAY_MINUTES) {
                    errors.push(FieldError::new(
                        format!("weekly.{key}[{i}].start"),
                        "a time as HH:MM from 00:00 to 23:59",
                    ));
                }
                if e.is_none() {
                    errors.push(FieldError::new(
                        format!("weekly.{key}[{i}].end"),
                        "a time as HH:MM from 00:01 to 24:00",
                    ));
                }
                if let (Some(s), Some(e)) = (s, e) {
                    match Interval::new(s, e) {
                        Some(interval) => weekly[day].push(interval),
                        None if s < DAY_MINUTES => errors.push(FieldError::new(
                            format!("weekly.{key}[{i}].end"),
                            "a time after the start, on the same day",
                        )),
                        None => {}
                    }
                }
            }
        }
        let mut holidays = Vec::new();
        for (i, (date, name)) in input.holidays.iter().enumerate() {
            match date.trim().parse::<Date>() {
                Ok(date) if date.year() >= 2000 && date.year() <= 2200 => holidays.push(Holiday {
                    date,
                    name: name.clone(),
                }),
                _ => errors.push(FieldError::new(
                    format!("holidays[{i}].date"),
                    "a date as YYYY-MM-DD",
                )),
            }
        }
        let built = Self::new(&input.time_zone, weekly, holidays);
        match built {
            Ok(hours) if errors.is_empty() => Ok(hours),
            Ok(_) => Err(errors),
            Err(more) => {
                // A week left empty only because its intervals were refused is not news.
                let bad_interval = errors.iter().any(|e| e.field.starts_with("weekly."));
                errors.extend(
                    more.into_iter()
                        .filter(|e| !(bad_interval && e.field == "weekly")),
                );
                Err(errors)
            }
        }
    }

    /// Open every minute of every day, no holidays: the behaviour of a practice that has not
    /// configured office hours.
    pub fn always_open(time_zone: &str) -> Self {
        let zone = TimeZone::get(time_zone).unwrap_or(TimeZone::UTC);
        let name = if TimeZone::get(time_zone).is_ok() {
            time_zone.to_owned()
        } else {
            "UTC".to_owned()
        };
        let whole_day = vec![Interval {
            start: 0,
            end: DAY_MINUTES,
        }];
        Self {
            time_zone: name,
            zone,
            weekly: std::array::from_fn(|_| whole_day.clone()),
            holidays: BTreeMap::new(),
        }
    }

    /// The configured hours, or [`OfficeHours::always_open`] in `time_zone` when there are none.
    pub fn or_always_open(hours: Option<&Self>, time_zone: &str) -> Self {
        hours
            .cloned()
            .unwrap_or_else(|| Self::always_open(time_zone))
    }

    pub fn time_zone(&self) -> &str {
        &self.time_zone
    }

    /// Intervals of each weekday, Monday first.
    pub fn weekly(&self) -> &[Vec<Interval>; 7] {
        &self.weekly
    }

    pub fn holidays(&self) -> Vec<Holiday> {
        self.holidays
            .iter()
            .map(|(date, name)| Holiday {
                date: *date,
                name: name.clone(),
            })
            .collect()
    }

    fn intervals_on(&self, date: Date) -> &[Interval] {
        if self.holidays.contains_key(&date) {
            return &[];
        }
        &self.weekly[date.weekday().to_monday_zero_offset() as usize]
    }

    /// The instants (Unix microseconds) an interval of `date` starts and ends.
    fn span(&self, date: Date, interval: Interval) -> Option<(i64, i64)> {
        Some((
            self.instant(date, interval.start)?,
            self.instant(date, interval.end)?,
        ))
    }

    fn instant(&self, date: Date, minute: u16) -> Option<i64> {
        let (date, minute) = if minute >= DAY_MINUTES {
            (date.tomorrow().ok()?, minute - DAY_MINUTES)
        } else {
            (date, minute)
        };
        let time = Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).ok()?;
        let zoned = date.to_datetime(time).to_zoned(self.zone.clone()).ok()?;
        Some(zoned.timestamp().as_microsecond())
    }

    fn local_date(&self, micros: i64) -> Option<Date> {
        Some(
            Timestamp::from_microsecond(micros)
                .ok()?
                .to_zoned(self.zone.clone())
                .date(),
        )
    }

    /// Whether the office is open at `at` (not a holiday, inside an interval of that day).
    pub fn is_open(&self, at: OffsetDateTime) -> bool {
        let micros = crate::clock::to_micros(at);
        let Some(date) = self.local_date(micros) else {
            return false;
        };
        // The previous day's 24:00 end is this day's midnight; checking the local date is
        // enough because intervals never cross midnight.
        self.intervals_on(date).iter().any(|interval| {
            self.span(date, *interval)
                .is_some_and(|(s, e)| s <= micros && micros < e)
        })
    }

    /// The first instant at or after `at` when the office is open (`at` itself when open);
    /// `None` if it does not open within about a year.
    pub fn next_open(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let micros = crate::clock::to_micros(at);
        let mut date = self.local_date(micros)?.yesterday().ok()?;
        for _ in 0..LOOKAHEAD_DAYS {
            for interval in self.intervals_on(date) {
                if let Some((s, e)) = self.span(date, *interval)
                    && e > micros
                {
                    return Some(crate::clock::from_micros(s.max(micros)));
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// Open time between `from` and `to`, in seconds (0 when `to <= from`). Only the office's
    /// intervals count, holidays and closed days do not; each interval's length is measured
    /// between real instants, so daylight saving changes are counted correctly.
    pub fn business_seconds_between(&self, from: OffsetDateTime, to: OffsetDateTime) -> i64 {
        let (from, to) = (crate::clock::to_micros(from), crate::clock::to_micros(to));
        if to <= from {
            return 0;
        }
        let (Some(first), Some(last)) = (self.local_date(from), self.local_date(to)) else {
            return 0;
        };
        let Ok(mut date) = first.yesterday() else {
            return 0;
        };
        let mut total: i64 = 0;
        let mut walked = 0;
        while date <= last && walked < MAX_WALK_DAYS {
            for interval in self.intervals_on(date) {
                if let Some((s, e)) = self.span(date, *interval) {
                    let (s, e) = (s.max(from), e.min(to));
                    if e > s {
                        total += e - s;
                    }
                }
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
            walked += 1;
        }
        total / 1_000_000
    }

    /// The short hours line for system messages ("Mon-Fri 8am-5pm" / "lun. a vie., 8 a 17 h"),
    /// at most [`MAX_HOURS_CHARS`] characters. Consecutive days with the same intervals are
    /// grouped; when the full text is too long, lunch breaks are left out (first opening to last
    /// closing), and if that is still too long the most common hours are given and the other
    /// days said to vary. Holidays are not listed.
    pub fn hours_text(&self, lang: Language) -> String {
        let groups = self.groups();
        let full = render_groups(&groups, lang, false);
        if full.chars().count() <= MAX_HOURS_CHARS {
            return full;
        }
        let spans = render_groups(&groups, lang, true);
        if spans.chars().count() <= MAX_HOURS_CHARS {
            return spans;
        }
        let main = groups
            .iter()
            .filter(|g| !g.intervals.is_empty())
            .max_by_key(|g| (g.last - g.first, std::cmp::Reverse(g.first)))
            .cloned();
        let Some(main) = main else {
            return String::new();
        };
        let mut text = render_groups(std::slice::from_ref(&main), lang, true);
        text.push_str(match lang {
            Language::En => "; other days vary",
            Language::Es => "; otros días varía",
        });
        text.chars().take(MAX_HOURS_CHARS).collect()
    }

    /// Runs of consecutive weekdays (Monday first) with identical intervals.
    fn groups(&self) -> Vec<DayGroup> {
        let mut groups: Vec<DayGroup> = Vec::new();
        for (day, intervals) in self.weekly.iter().enumerate() {
            match groups.last_mut() {
                Some(g) if g.intervals == *intervals => g.last = day,
                _ => groups.push(DayGroup {
                    first: day,
                    last: day,
                    intervals: intervals.clone(),
                }),
            }
        }
        groups
    }

    /// When the office next opens after `now`, as a short local phrase for patients ("Mon 8am"
    /// / "lun. 8 h"); `None` when it is open now or does not open within a year.
    pub fn reopens_text(&self, now: OffsetDateTime, lang: Language) -> Option<String> {
        if self.is_open(now) {
            return None;
        }
        let at = self.next_open(now)?;
        let zoned = Timestamp::from_microsecond(crate::clock::to_micros(at))
            .ok()?
            .to_zoned(self.zone.clone());
        let day = zoned.weekday().to_monday_zero_offset() as usize;
        let minute = zoned.hour() as u16 * 60 + zoned.minute() as u16;
        Some(match lang {
            Language::En => format!("{} {}", EN_DAYS[day], en_time(minute)),
            Language::Es => format!("{} {} h", ES_DAYS[day], es_time(minute)),
        })
    }
}

#[derive(Debug, Clone)]
struct DayGroup {
    first: usize,
    last: usize,
    intervals: Vec<Interval>,
}

const EN_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const ES_DAYS: [&str; 7] = ["lun.", "mar.", "mié.", "jue.", "vie.", "sáb.", "dom."];

fn en_time(minute: u16) -> String {
    let minute = minute % DAY_MINUTES;
    let (h, m) = (minute / 60, minute % 60);
    let suffix = if h < 12 { "am" } else { "pm" };
    let h12 = if h % 12 == 0 { 12 } else { h % 12 };
    if m == 0 {
        format!("{h12}{suffix}")
    } else {
        format!("{h12}:{m:02}{suffix}")
    }
}

fn es_time(minute: u16) -> String {
    let (h, m) = (minute / 60, minute % 60);
    if m == 0 {
        format!("{h}")
    } else {
        format!("{h}:{m:02}")
    }
}

fn render_groups(groups: &[DayGroup], lang: Language, spans_only: bool) -> String {
    let whole_day = [Interval {
        start: 0,
        end: DAY_MINUTES,
    }];
    let mut parts = Vec::new();
    for group in groups.iter().filter(|g| !g.intervals.is_empty()) {
        let intervals: Vec<Interval> = if spans_only {
            let first = group.intervals.first().map_or(0, |i| i.start);
            let last = group.intervals.last().map_or(0, |i| i.end);
            vec![Interval {
                start: first,
                end: last,
            }]
        } else {
            group.intervals.clone()
        };
        let part = match lang {
            Language::En => {
                let days = if group.first == group.last {
                    EN_DAYS[group.first].to_owned()
                } else {
                    format!("{}-{}", EN_DAYS[group.first], EN_DAYS[group.last])
                };
                let times = if intervals == whole_day {
                    "24 hours".to_owned()
                } else {
                    intervals
                        .iter()
                        .map(|i| format!("{}-{}", en_time(i.start), en_time(i.end)))
                        .collect::<Vec<_>>()
                        .join(" & ")
                };
                format!("{days} {times}")
            }
            Language::Es => {
                let days = if group.first == group.last {
                    ES_DAYS[group.first].to_owned()
                } else {
                    format!("{} a {}", ES_DAYS[group.first], ES_DAYS[group.last])
                };
                let times = if intervals == whole_day {
                    "24 horas".to_owned()
                } else {
                    let list = intervals
                        .iter()
                        .map(|i| format!("{} a {}", es_time(i.start), es_time(i.end)))
                        .collect::<Vec<_>>()
                        .join(" y ");
                    format!("{list} h")
                };
                format!("{days}, {times}")
            }
        };
        parts.push(part);
    }
    parts.join("; ")
}

/// Whether an inbound message at `now` gets the after-hours reply: the office is closed
/// (a practice without configured hours, `None`, is always open and never replies), and the
/// conversation's last after-hours reply is absent or at least twelve hours old. The caller
/// then sends the system message at once (not held by quiet hours or throttling) and records
/// `now` as the conversation's last after-hours reply.
pub fn after_hours_reply_due(
    hours: Option<&OfficeHours>,
    last_after_hours_reply_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    let Some(hours) = hours else {
        return false;
    };
    if hours.is_open(now) {
        return false;
    }
    match last_after_hours_reply_at {
        None => true,
        Some(last) => (now - last).whole_seconds() >= AFTER_HOURS_REPLY_INTERVAL_SECS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn iv(start: &str, end: &str) -> Interval {
        Interval::new(parse_hhmm(start).unwrap(), parse_hhmm(end).unwrap()).unwrap()
    }

    fn weekdays(intervals: &[Interval]) -> [Vec<Interval>; 7] {
        std::array::from_fn(|d| if d < 5 { intervals.to_vec() } else { vec![] })
    }

    fn chicago_lunch() -> OfficeHours {
        OfficeHours::new(
            "America/Chicago",
            weekdays(&[iv("08:00", "12:00"), iv("13:00", "17:00")]),
            vec![Holiday {
                date: jiff::civil::date(2026, 12, 25),
                name: "Christmas Day".into(),
            }],
        )
        .unwrap()
    }

    fn nine_to_five(zone: &str) -> OfficeHours {
        OfficeHours::new(zone, weekdays(&[iv("09:00", "17:00")]), vec![]).unwrap()
    }

    #[test]
    fn open_inside_intervals_closed_at_lunch_at_night_on_weekends_and_holidays() {
        let h = chicago_lunch();
        // Thursday 2026-12-03, Chicago is UTC-6.
        assert!(!h.is_open(datetime!(2026-12-03 13:59:59 UTC)), "07:59");
        assert!(h.is_open(datetime!(2026-12-03 14:00 UTC)), "08:00");
        assert!(h.is_open(datetime!(2026-12-03 17:59:59 UTC)), "11:59:59");
        assert!(!h.is_open(datetime!(2026-12-03 18:00 UTC)), "12:00 lunch");
        assert!(!h.is_open(datetime!(2026-12-03 18:30 UTC)), "12:30 lunch");
        assert!(h.is_open(datetime!(2026-12-03 19:00 UTC)), "13:00");
        assert!(!h.is_open(datetime!(2026-12-03 23:00 UTC)), "17:00 closes");
        assert!(
            !h.is_open(datetime!(2026-12-05 16:00 UTC)),
            "Saturday 10:00"
        );
        assert!(
            !h.is_open(datetime!(2026-12-25 16:00 UTC)),
            "Christmas, a Friday"
        );
        assert!(h.is_open(datetime!(2026-12-24 16:00 UTC)), "Christmas Eve");
    }

    #[test]
    fn next_open_skips_lunch_nights_weekends_and_holidays() {
        let h = chicago_lunch();
        let open = datetime!(2026-12-03 15:00 UTC);
        assert_eq!(h.next_open(open), Some(open), "open now");
        assert_eq!(
            h.next_open(datetime!(2026-12-03 18:10 UTC)),
            Some(datetime!(2026-12-03 19:00 UTC)),
            "after lunch"
        );
        assert_eq!(
            h.next_open(datetime!(2026-12-04 23:30 UTC)),
            Some(datetime!(2026-12-07 14:00 UTC)),
            "Friday evening -> Monday 08:00"
        );
        assert_eq!(
            h.next_open(datetime!(2026-12-24 23:30 UTC)),
            Some(datetime!(2026-12-28 14:00 UTC)),
            "Christmas Eve evening -> past the holiday and the weekend"
        );
    }

    #[test]
    fn business_seconds_count_only_open_time() {
        let h = chicago_lunch();
        // Thursday 10:00 -> 15:00 local: 2h before lunch + 2h after.
        assert_eq!(
            h.business_seconds_between(
                datetime!(2026-12-03 16:00 UTC),
                datetime!(2026-12-03 21:00 UTC)
            ),
            4 * 3600
        );
        // Friday 16:00 -> Monday 09:00 local: 1h Friday + 1h Monday.
        assert_eq!(
            h.business_seconds_between(
                datetime!(2026-12-04 22:00 UTC),
                datetime!(2026-12-07 15:00 UTC)
            ),
            2 * 3600
        );
        // Thursday 24 Dec 16:00 -> Monday 28 Dec 09:00: Christmas (Friday) and the weekend skip.
        assert_eq!(
            h.business_seconds_between(
                datetime!(2026-12-24 22:00 UTC),
                datetime!(2026-12-28 15:00 UTC)
            ),
            2 * 3600
        );
        // A whole ordinary week: 5 x 8h.
        assert_eq!(
            h.business_seconds_between(
                datetime!(2026-11-30 06:00 UTC),
                datetime!(2026-12-07 06:00 UTC)
            ),
            40 * 3600
        );
        // Entirely at night, reversed, empty.
        let night = datetime!(2026-12-04 04:00 UTC);
        assert_eq!(
            h.business_seconds_between(night, night + time::Duration::hours(3)),
            0
        );
        assert_eq!(h.business_seconds_between(night, night), 0);
        assert_eq!(
            h.business_seconds_between(night + time::Duration::hours(30), night),
            0
        );
    }

    fn always_open_in(zone: &str) -> OfficeHours {
        OfficeHours::new(
            zone,
            std::array::from_fn(|_| vec![iv("00:00", "24:00")]),
            vec![],
        )
        .unwrap()
    }

    #[test]
    fn daylight_saving_days_are_an_hour_shorter_or_longer_chicago() {
        let h = always_open_in("America/Chicago");
        // 2027-03-14 spring forward: the local day is 23 hours.
        assert_eq!(
            h.business_seconds_between(
                datetime!(2027-03-14 06:00 UTC),
                datetime!(2027-03-15 05:00 UTC)
            ),
            23 * 3600
        );
        // 2026-11-01 fall back: 25 hours.
        assert_eq!(
            h.business_seconds_between(
                datetime!(2026-11-01 05:00 UTC),
                datetime!(2026-11-02 06:00 UTC)
            ),
            25 * 3600
        );
        // Office hours stay 09:00-17:00 local across the change: Friday 16:00 CST (22:00 UTC)
        // -> Monday 10:00 CDT (15:00 UTC) is 2 hours.
        let nine = nine_to_five("America/Chicago");
        assert_eq!(
            nine.business_seconds_between(
                datetime!(2027-03-12 22:00 UTC),
                datetime!(2027-03-15 15:00 UTC)
            ),
            2 * 3600
        );
        assert!(nine.is_open(datetime!(2027-03-15 14:00 UTC)), "09:00 CDT");
        assert!(!nine.is_open(datetime!(2027-03-15 13:59 UTC)), "08:59 CDT");
        // A 01:00-04:00 interval on the spring-forward day is two real hours; on the fall-back
        // day, four.
        let night_shift = OfficeHours::new(
            "America/Chicago",
            std::array::from_fn(|_| vec![iv("01:00", "04:00")]),
            vec![],
        )
        .unwrap();
        assert_eq!(
            night_shift.business_seconds_between(
                datetime!(2027-03-14 00:00 UTC),
                datetime!(2027-03-15 00:00 UTC)
            ),
            2 * 3600
        );
        assert_eq!(
            night_shift.business_seconds_between(
                datetime!(2026-11-01 00:00 UTC),
                datetime!(2026-11-02 00:00 UTC)
            ),
            4 * 3600
        );
    }

    #[test]
    fn daylight_saving_madrid() {
        // 2027-03-28: 02:00 CET -> 03:00 CEST. 2026-10-25: 03:00 CEST -> 02:00 CET.
        let h = always_open_in("Europe/Madrid");
        assert_eq!(
            h.business_seconds_between(
                datetime!(2027-03-27 23:00 UTC),
                datetime!(2027-03-28 22:00 UTC)
            ),
            23 * 3600
        );
        assert_eq!(
            h.business_seconds_between(
                datetime!(2026-10-24 22:00 UTC),
                datetime!(2026-10-25 23:00 UTC)
            ),
            25 * 3600
        );
        let nine = nine_to_five("Europe/Madrid");
        // Friday 16:00 CET (15:00 UTC) -> Monday 10:00 CEST (08:00 UTC): 2 hours.
        assert_eq!(
            nine.business_seconds_between(
                datetime!(2027-03-26 15:00 UTC),
                datetime!(2027-03-29 08:00 UTC)
            ),
            2 * 3600
        );
        assert!(nine.is_open(datetime!(2027-03-29 07:00 UTC)), "09:00 CEST");
        assert!(!nine.is_open(datetime!(2027-03-26 07:30 UTC)), "08:30 CET");
        assert_eq!(
            nine.next_open(datetime!(2026-10-23 16:30 UTC)),
            Some(datetime!(2026-10-26 08:00 UTC)),
            "Friday 18:30 CEST -> Monday 09:00 CET"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let fields = |input: &OfficeHoursInput| -> Vec<String> {
            OfficeHours::parse(input)
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let mut weekly = BTreeMap::new();
        weekly.insert(
            "mon".to_owned(),
            vec![
                ("08:00".to_owned(), "12:00".to_owned()),
                ("11:00".to_owned(), "17:00".to_owned()),
            ],
        );
        let overlap = OfficeHoursInput {
            time_zone: "America/Chicago".into(),
            weekly: weekly.clone(),
            holidays: vec![],
        };
        assert_eq!(fields(&overlap), vec!["weekly.mon[1]"]);

        let mut bad_times = BTreeMap::new();
        bad_times.insert(
            "tue".to_owned(),
            vec![
                ("25:00".to_owned(), "26:00".to_owned()),
                ("17:00".to_owned(), "09:00".to_owned()),
                ("8".to_owned(), "24:00".to_owned()),
            ],
        );
        bad_times.insert("wed".to_owned(), vec![("09:00".into(), "17:00".into())]);
        let input = OfficeHoursInput {
            time_zone: "Mars/Olympus".into(),
            weekly: bad_times,
            holidays: vec![
                ("2026-13-01".into(), "New Year".into()),
                ("2026-12-25".into(), " ".into()),
            ],
        };
        assert_eq!(
            fields(&input),
            vec![
                "weekly.tue[0].start",
                "weekly.tue[0].end",
                "weekly.tue[1].end",
                "weekly.tue[2].start",
                "holidays[0].date",
                "time_zone",
                "holidays[0].name",
            ]
        );
        let empty = OfficeHoursInput {
            time_zone: "UTC".into(),
            ..Default::default()
        };
        assert_eq!(fields(&empty), vec!["weekly"]);
        let mut funday = BTreeMap::new();
        funday.insert("fun".to_owned(), vec![("09:00".into(), "17:00".into())]);
        let unknown = OfficeHoursInput {
            time_zone: "UTC".into(),
            weekly: funday,
            holidays: vec![],
        };
        assert!(fields(&unknown).contains(&"weekly".to_owned()));
        let twice = OfficeHoursInput {
            time_zone: "UTC".into(),
            weekly: weekly
                .into_keys()
                .map(|k| (k, vec![("09:00".into(), "17:00".into())]))
                .collect(),
            holidays: vec![
                ("2026-12-25".into(), "Christmas".into()),
                ("2026-12-25".into(), "Again".into()),
            ],
        };
        assert_eq!(fields(&twice), vec!["holidays[1].date"]);
        // Errors never echo the submitted value.
        for e in OfficeHours::parse(&input).unwrap_err() {
            assert!(!e.expected.contains("Mars"));
        }
    }

    #[test]
    fn parse_accepts_good_input_and_sorts_intervals() {
        let mut weekly = BTreeMap::new();
        weekly.insert(
            "fri".to_owned(),
            vec![
                ("13:00".to_owned(), "17:00".to_owned()),
                ("8:00".to_owned(), "12:00".to_owned()),
            ],
        );
        weekly.insert("sat".to_owned(), vec![("20:00".into(), "24:00".into())]);
        let h = OfficeHours::parse(&OfficeHoursInput {
            time_zone: " Europe/Madrid ".into(),
            weekly,
            holidays: vec![("2026-12-25".into(), " Navidad ".into())],
        })
        .unwrap();
        assert_eq!(h.time_zone(), "Europe/Madrid");
        assert_eq!(
            h.weekly()[4],
            vec![iv("08:00", "12:00"), iv("13:00", "17:00")]
        );
        assert_eq!(h.weekly()[5][0].end_hhmm(), "24:00");
        assert_eq!(h.holidays()[0].name, "Navidad");
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_hhmm("12:5"), None);
        assert_eq!(parse_hhmm("07:30"), Some(450));
    }

    #[test]
    fn hours_text_in_english_and_spanish() {
        let plain =
            OfficeHours::new("America/Chicago", weekdays(&[iv("08:00", "17:00")]), vec![]).unwrap();
        assert_eq!(plain.hours_text(Language::En), "Mon-Fri 8am-5pm");
        assert_eq!(plain.hours_text(Language::Es), "lun. a vie., 8 a 17 h");

        let mut weekly = weekdays(&[iv("08:00", "12:00"), iv("13:00", "17:30")]);
        weekly[5] = vec![iv("09:00", "12:00")];
        let lunch = OfficeHours::new("America/Chicago", weekly, vec![]).unwrap();
        assert_eq!(
            lunch.hours_text(Language::En),
            "Mon-Fri 8am-12pm & 1pm-5:30pm; Sat 9am-12pm"
        );
        assert_eq!(
            lunch.hours_text(Language::Es),
            "lun. a vie., 8 a 12 y 13 a 17:30 h; sáb., 9 a 12 h"
        );
        assert_eq!(
            always_open_in("UTC").hours_text(Language::En),
            "Mon-Sun 24 hours"
        );
        assert_eq!(
            always_open_in("UTC").hours_text(Language::Es),
            "lun. a dom., 24 horas"
        );
    }

    #[test]
    fn irregular_hours_fall_back_to_something_that_fits() {
        // Every day different, with a break: far too long in full.
        let weekly: [Vec<Interval>; 7] = std::array::from_fn(|d| {
            let d = d as u16;
            vec![
                Interval::new(7 * 60 + d * 5, 11 * 60).unwrap(),
                Interval::new(12 * 60 + 30, 18 * 60 + d * 5).unwrap(),
            ]
        });
        let h = OfficeHours::new("America/Chicago", weekly, vec![]).unwrap();
        for lang in [Language::En, Language::Es] {
            let text = h.hours_text(lang);
            assert!(text.chars().count() <= MAX_HOURS_CHARS, "{text}");
            assert!(!text.is_empty());
        }
        assert_eq!(h.hours_text(Language::En), "Mon 7am-6pm; other days vary");

        // Breaks left out when that is enough.
        let mut weekly = weekdays(&[iv("08:00", "12:30"), iv("13:30", "17:30")]);
        weekly[5] = vec![iv("09:00", "12:00"), iv("12:30", "14:00")];
        weekly[6] = vec![iv("10:00", "11:00"), iv("15:00", "16:00")];
        let h = OfficeHours::new("America/Chicago", weekly, vec![]).unwrap();
        assert_eq!(
            h.hours_text(Language::En),
            "Mon-Fri 8am-5:30pm; Sat 9am-2pm; Sun 10am-4pm"
        );
        for lang in [Language::En, Language::Es] {
            assert!(h.hours_text(lang).chars().count() <= MAX_HOURS_CHARS);
        }
    }

    #[test]
    fn reopens_text_says_when_in_local_time() {
        let h = chicago_lunch();
        assert_eq!(
            h.reopens_text(datetime!(2026-12-04 23:30 UTC), Language::En),
            Some("Mon 8am".into())
        );
        assert_eq!(
            h.reopens_text(datetime!(2026-12-03 18:10 UTC), Language::Es),
            Some("jue. 13 h".into())
        );
        assert_eq!(
            h.reopens_text(datetime!(2026-12-03 15:00 UTC), Language::En),
            None
        );
    }

    #[test]
    fn after_hours_reply_once_per_twelve_hours_and_only_when_closed() {
        let h = chicago_lunch();
        let friday_night = datetime!(2026-12-05 02:00 UTC); // Friday 20:00 Chicago
        assert!(after_hours_reply_due(Some(&h), None, friday_night));
        assert!(!after_hours_reply_due(
            Some(&h),
            Some(friday_night),
            friday_night + time::Duration::hours(11) + time::Duration::minutes(59)
        ));
        assert!(after_hours_reply_due(
            Some(&h),
            Some(friday_night),
            friday_night + time::Duration::hours(12)
        ));
        // Open now: no reply, whatever happened before.
        assert!(!after_hours_reply_due(
            Some(&h),
            None,
            datetime!(2026-12-03 15:00 UTC)
        ));
        // No configured hours: always open, never a reply.
        assert!(!after_hours_reply_due(None, None, friday_night));
        // A recorded reply "in the future" (clock skew) does not trigger another one.
        assert!(!after_hours_reply_due(
            Some(&h),
            Some(friday_night + time::Duration::hours(1)),
            friday_night
        ));
    }

    #[test]
    fn always_open_is_the_default_for_unconfigured_practices() {
        let h = OfficeHours::or_always_open(None, "America/Chicago");
        assert_eq!(h.time_zone(), "America/Chicago");
        let at = datetime!(2026-12-05 08:00 UTC);
        assert!(h.is_open(at));
        assert_eq!(
            h.business_seconds_between(at, at + time::Duration::hours(30)),
            30 * 3600
        );
        assert_eq!(OfficeHours::always_open("Nowhere/Bad").time_zone(), "UTC");
        let configured = chicago_lunch();
        assert_eq!(
            OfficeHours::or_always_open(Some(&configured), "UTC"),
            configured
        );
    }
}

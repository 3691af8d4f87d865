//! Times on the auditor's pages: shown and entered in the practice's time zone.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// The practice's zone, and what "today" is there.
pub(crate) struct Clock {
    zone: TimeZone,
    name: String,
    now: i64,
}

impl Clock {
    /// `zone`: the practice's IANA zone (UTC if unknown); `now`: microseconds.
    pub(crate) fn new(zone: &str, now: i64) -> Clock {
        match TimeZone::get(zone) {
            Ok(tz) => Clock {
                zone: tz,
                name: zone.to_owned(),
                now,
            },
            Err(_) => Clock {
                zone: TimeZone::UTC,
                name: "UTC".to_owned(),
                now,
            },
        }
    }

    pub(crate) fn zone_name(&self) -> String {
        self.name.clone()
    }

    /// `2026-11-25 09:00:00 CST`.
    pub(crate) fn show(&self, micros: i64) -> String {
        Timestamp::from_microsecond(micros)
            .map(|t| {
                t.to_zoned(self.zone.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            })
            .unwrap_or_default()
    }

    /// Today's date in the practice's zone, `2026-11-25`.
    pub(crate) fn today(&self) -> String {
        Timestamp::from_microsecond(self.now)
            .map(|t| t.to_zoned(self.zone.clone()).date().to_string())
            .unwrap_or_default()
    }
}

/// The start of a `YYYY-MM-DD` day in the practice's zone and the start of the next day
/// (microseconds), or `None` when it is not a date.
pub(crate) fn date_bounds(clock: &Clock, raw: &str) -> Option<(i64, i64)> {
    let date: Date = raw.parse().ok()?;
    let start = date.to_zoned(clock.zone.clone()).ok()?;
    let end = date.tomorrow().ok()?.to_zoned(clock.zone.clone()).ok()?;
    Some((
        start.timestamp().as_microsecond(),
        end.timestamp().as_microsecond(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_the_practice_days() {
        let clock = Clock::new("America/Chicago", 0);
        let (start, end) = date_bounds(&clock, "2026-11-25").unwrap();
        assert_eq!(end - start, 24 * 3600 * 1_000_000);
        assert_eq!(clock.show(start), "2026-11-25 00:00:00 CST");
        assert!(date_bounds(&clock, "25/11/2026").is_none());
        assert!(date_bounds(&clock, "2026-02-30").is_none());
        assert_eq!(Clock::new("Nowhere/Nope", 0).zone_name(), "UTC");
    }
}

//! Time is passed in, never read ad hoc, so tests control it without sleeping.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    unix_nanos: AtomicI64,
    lock: Mutex<()>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            unix_nanos: AtomicI64::new(start.unix_timestamp_nanos() as i64),
            lock: Mutex::new(()),
        }
    }

    pub fn advance(&self, by: time::Duration) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.unix_nanos
            .fetch_add(by.whole_nanoseconds() as i64, Ordering::SeqCst);
    }

    pub fn set(&self, to: OffsetDateTime) {
        self.unix_nanos
            .store(to.unix_timestamp_nanos() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.unix_nanos.load(Ordering::SeqCst) as i128)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Microseconds since the Unix epoch: the storage form of every timestamp.
pub fn to_micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

pub fn from_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(datetime!(2026-01-01 00:00 UTC));
        assert_eq!(clock.now(), datetime!(2026-01-01 00:00 UTC));
        clock.advance(time::Duration::minutes(15));
        assert_eq!(clock.now(), datetime!(2026-01-01 00:15 UTC));
    }

    #[test]
    fn micros_round_trip() {
        let at = datetime!(2026-03-04 05:06:07.123456 UTC);
        assert_eq!(from_micros(to_micros(at)), at);
    }
}

/// The calendar date at `at` in the IANA time zone `time_zone` (a practice's "today").
/// `None` for a zone name the time-zone database does not know.
pub fn local_date(at: OffsetDateTime, time_zone: &str) -> Option<jiff::civil::Date> {
    let zone = jiff::tz::TimeZone::get(time_zone).ok()?;
    let instant = jiff::Timestamp::from_second(at.unix_timestamp()).ok()?;
    Some(instant.to_zoned(zone).date())
}

#[cfg(test)]
mod local_date_tests {
    use time::macros::datetime;

    #[test]
    fn the_practice_date_is_taken_in_its_own_zone() {
        let at = datetime!(2026-12-02 03:30 UTC);
        assert_eq!(
            super::local_date(at, "America/Chicago"),
            Some(jiff::civil::date(2026, 12, 1))
        );
        assert_eq!(
            super::local_date(at, "Europe/Berlin"),
            Some(jiff::civil::date(2026, 12, 2))
        );
        assert_eq!(super::local_date(at, "Mars/Olympus"), None);
    }
}

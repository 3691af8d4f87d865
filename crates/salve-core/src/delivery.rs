//! When the outbox may try a send: retries with exponential backoff and jitter, and quiet
//! hours for texts (TCPA and CTIA practice: no non-urgent texts at night, in the patient's own
//! time zone). System messages (opt-out and help confirmations, one-time codes, after-hours
//! replies) are never held by quiet hours.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// First retry after this long; each further one waits twice as long, up to [`MAX_BACKOFF_SECS`].
pub const FIRST_BACKOFF_SECS: i64 = 30;
pub const MAX_BACKOFF_SECS: i64 = 3600;
/// Jitter spreads retries of many jobs that failed together (a provider outage): ±20%.
pub const JITTER: f64 = 0.2;

/// Seconds to wait before attempt `attempts + 1`, after `attempts` failed ones. `unit` is a
/// random number in [0, 1) (the caller's RNG, so tests can pin it).
pub fn retry_delay_secs(attempts: i64, unit: f64) -> i64 {
    let exponent = (attempts.max(1) - 1).min(20) as u32;
    let base = FIRST_BACKOFF_SECS
        .saturating_mul(2_i64.saturating_pow(exponent))
        .min(MAX_BACKOFF_SECS);
    let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    ((base as f64) * factor).round().max(1.0) as i64
}

/// The night during which non-urgent texts wait, in the patient's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: Time,
    pub end: Time,
}

impl Default for QuietHours {
    /// 21:00 to 08:00.
    fn default() -> Self {
        Self {
            start: Time::constant(21, 0, 0, 0),
            end: Time::constant(8, 0, 0, 0),
        }
    }
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )
    }
}

impl QuietHours {
    /// Parses `HH:MM-HH:MM`, or `off` (no quiet hours: `Ok(None)`).
    pub fn parse_setting(raw: &str) -> Result<Option<Self>, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || format!("expected HH:MM-HH:MM (e.g. 21:00-08:00) or off, got {raw:?}");
        let (start, end) = raw.split_once('-').ok_or_else(bad)?;
        let time = |t: &str| -> Result<Time, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
            let h: i8 = h.parse().map_err(|_| bad())?;
            let m: i8 = m.parse().map_err(|_| bad())?;
            Time::new(h, m, 0, 0).map_err(|_| bad())
        };
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(bad());
        }
        Ok(Some(Self { start, end }))
    }

    /// When a non-urgent text due at `now` may go: `None` when it may go now, else the end of
    /// the quiet period in `zone`.
    pub fn release_at(&self, now: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let local = now.to_zoned(zone.clone());
        let time = local.time();
        let quiet = if self.start <= self.end {
            time >= self.start && time < self.end
        } else {
            time >= self.start || time < self.end
        };
        if !quiet {
            return None;
        }
        let today_end = local.date().to_datetime(self.end);
        let end = if time < self.end {
            today_end
        } else {
            today_end.checked_add(1.day()).ok()?
        };
        // A DST gap at the end time resolves to the later instant.
        end.to_zoned(zone.clone()).ok().map(|z| z.timestamp())
    }
}

/// Spacing of sends from one sender number (carriers throttle and filter a number that sends
/// faster than its registration allows; 10DLC long codes: about one message a second). Each
/// key (a sender number, or a provider with a fixed number) gets the next free slot. Not used
/// when the provider picks the number from a pool (a Twilio Messaging Service), which paces
/// itself.
#[derive(Debug, Clone)]
pub struct Pacer<K> {
    interval_micros: i64,
    next_free: std::collections::HashMap<K, i64>,
}

impl<K: std::hash::Hash + Eq> Pacer<K> {
    /// `per_second` messages a second per key (at least one a minute).
    pub fn new(per_second: f64) -> Self {
        let per_second = per_second.clamp(1.0 / 60.0, 1000.0);
        Self {
            interval_micros: (1_000_000.0 / per_second).round() as i64,
            next_free: std::collections::HashMap::new(),
        }
    }

    /// Reserves the next slot for `key` at or after `now_micros`; returns when to send.
    pub fn reserve(&mut self, key: K, now_micros: i64) -> i64 {
        let slot = self
            .next_free
            .get(&key)
            .map_or(now_micros, |&n| n.max(now_micros));
        self.next_free.insert(key, slot + self.interval_micros);
        slot
    }

    /// Takes `key`'s slot if it is free at `now_micros`; otherwise says when it will be, and
    /// reserves nothing (a send deferred to then asks again).
    pub fn try_take(&mut self, key: K, now_micros: i64) -> Result<(), i64> {
        match self.next_free.get(&key) {
            Some(&next) if next > now_micros => Err(next),
            _ => {
                self.next_free
                    .insert(key, now_micros + self.interval_micros);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_take_defers_without_reserving() {
        let mut pacer = Pacer::new(2.0);
        assert_eq!(pacer.try_take("a", 0), Ok(()));
        assert_eq!(pacer.try_take("a", 100_000), Err(500_000));
        // Asking again reserved nothing: the slot is still 500 ms.
        assert_eq!(pacer.try_take("a", 200_000), Err(500_000));
        assert_eq!(pacer.try_take("b", 200_000), Ok(()));
        assert_eq!(pacer.try_take("a", 500_000), Ok(()));
        assert_eq!(pacer.try_take("a", 999_999), Err(1_000_000));
    }

    #[test]
    fn one_number_sends_once_a_second_and_numbers_do_not_wait_for_each_other() {
        let mut pacer = Pacer::new(1.0);
        let t0 = 5_000_000;
        assert_eq!(pacer.reserve("+13125550100", t0), t0);
        assert_eq!(pacer.reserve("+13125550100", t0), t0 + 1_000_000);
        assert_eq!(pacer.reserve("+13125550100", t0 + 100), t0 + 2_000_000);
        assert_eq!(pacer.reserve("+13125550101", t0), t0, "another number");
        // After a quiet spell the number sends at once again.
        assert_eq!(
            pacer.reserve("+13125550100", t0 + 60_000_000),
            t0 + 60_000_000
        );
        let mut fast = Pacer::new(4.0);
        assert_eq!(fast.reserve(1, 0), 0);
        assert_eq!(fast.reserve(1, 0), 250_000);
        let mut absurd = Pacer::new(0.0);
        assert_eq!(absurd.reserve(1, 0), 0);
        assert_eq!(absurd.reserve(1, 0), 60_000_000, "at least one a minute");
    }

    #[test]
    fn retries_back_off_exponentially_with_bounded_jitter() {
        assert_eq!(retry_delay_secs(1, 0.5), 30);
        assert_eq!(retry_delay_secs(2, 0.5), 60);
        assert_eq!(retry_delay_secs(3, 0.5), 120);
        assert_eq!(retry_delay_secs(12, 0.5), MAX_BACKOFF_SECS);
        assert_eq!(retry_delay_secs(1, 0.0), 24);
        assert_eq!(retry_delay_secs(1, 0.999_999), 36);
        assert_eq!(retry_delay_secs(i64::MAX, 0.5), MAX_BACKOFF_SECS);
        assert_eq!(retry_delay_secs(0, 0.5), 30);
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn quiet_hours_hold_a_text_until_morning_in_the_patients_zone() {
        let chicago = TimeZone::get("America/Chicago").unwrap();
        let q = QuietHours::default();
        // 23:00 in Chicago (05:00 UTC next day) waits until 08:00 Chicago.
        assert_eq!(
            q.release_at(at("2026-12-03T05:00:00Z"), &chicago),
            Some(at("2026-12-03T14:00:00Z"))
        );
        // 02:00 local waits until 08:00 the same day.
        assert_eq!(
            q.release_at(at("2026-12-03T08:00:00Z"), &chicago),
            Some(at("2026-12-03T14:00:00Z"))
        );
        // 10:00 local goes now; 20:59 too; 21:00 waits.
        assert_eq!(q.release_at(at("2026-12-03T16:00:00Z"), &chicago), None);
        assert_eq!(q.release_at(at("2026-12-04T02:59:00Z"), &chicago), None);
        assert!(q.release_at(at("2026-12-04T03:00:00Z"), &chicago).is_some());
        // The same instant is daytime in Berlin.
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            q.release_at(at("2026-12-03T05:00:00Z"), &berlin),
            Some(at("2026-12-03T07:00:00Z"))
        );
        assert_eq!(q.release_at(at("2026-12-03T10:00:00Z"), &berlin), None);
    }

    #[test]
    fn the_setting_reads_hours_or_off() {
        assert_eq!(QuietHours::parse_setting("off"), Ok(None));
        let q = QuietHours::parse_setting("21:00-08:00").unwrap().unwrap();
        assert_eq!(q, QuietHours::default());
        assert_eq!(q.to_string(), "21:00-08:00");
        assert_eq!(
            QuietHours::parse_setting("22:30-07:15")
                .unwrap()
                .unwrap()
                .to_string(),
            "22:30-07:15"
        );
        for bad in ["", "21-08", "25:00-08:00", "21:00-21:00", "nine-five"] {
            assert!(QuietHours::parse_setting(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quiet_hours_across_a_daylight_saving_change() {
        let chicago = TimeZone::get("America/Chicago").unwrap();
        // 2027-03-14: clocks go from 02:00 to 03:00. 22:00 CST on the 13th waits until 08:00 CDT.
        assert_eq!(
            QuietHours::default().release_at(at("2027-03-14T04:00:00Z"), &chicago),
            Some(at("2027-03-14T13:00:00Z"))
        );
    }
}

//! Unread secure messages: a patient who has not opened a secure message gets one reminder
//! (with a fresh link) once the practice's delay has passed; if it is still unread the same
//! delay after the reminder, the practice's staff are alerted, once. Times are microseconds
//! since the Unix epoch, as the store keeps them.

/// The delay before the reminder (and again before the staff alert) unless the practice chose
/// another.
pub const DEFAULT_DELAY_HOURS: i64 = 72;
/// The shortest and longest delay a practice may choose.
pub const MIN_DELAY_HOURS: i64 = 1;
pub const MAX_DELAY_HOURS: i64 = 24 * 30;

/// Where one secure message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadFacts {
    /// When the message (and its notification) was sent.
    pub sent_at: i64,
    /// When the patient first saw it in the portal.
    pub read_at: Option<i64>,
    /// When the reminder was queued.
    pub reminded_at: Option<i64>,
    /// When staff were alerted.
    pub alerted_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Nothing,
    SendReminder,
    AlertStaff,
}

/// Whether a practice's delay (hours) is allowed.
pub fn valid_delay_hours(hours: i64) -> bool {
    (MIN_DELAY_HOURS..=MAX_DELAY_HOURS).contains(&hours)
}

/// What is due for one secure message at `now`, with the practice's delay (microseconds).
pub fn follow_up(facts: UnreadFacts, delay_micros: i64, now: i64) -> FollowUp {
    if facts.read_at.is_some() || facts.alerted_at.is_some() {
        return FollowUp::Nothing;
    }
    match facts.reminded_at {
        None if now >= facts.sent_at.saturating_add(delay_micros) => FollowUp::SendReminder,
        Some(reminded) if now >= reminded.saturating_add(delay_micros) => FollowUp::AlertStaff,
        _ => FollowUp::Nothing,
    }
}

/// Whole days between two instants (for the staff alert's wording), at least 1.
pub fn whole_days(from: i64, to: i64) -> i64 {
    ((to - from) / (86_400 * 1_000_000)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;
    const DELAY: i64 = DEFAULT_DELAY_HOURS * HOUR;

    fn facts(read: Option<i64>, reminded: Option<i64>, alerted: Option<i64>) -> UnreadFacts {
        UnreadFacts {
            sent_at: 1_000 * HOUR,
            read_at: read,
            reminded_at: reminded,
            alerted_at: alerted,
        }
    }

    #[test]
    fn nothing_before_the_delay_then_one_reminder() {
        let f = facts(None, None, None);
        assert_eq!(
            follow_up(f, DELAY, f.sent_at + DELAY - 1),
            FollowUp::Nothing
        );
        assert_eq!(
            follow_up(f, DELAY, f.sent_at + DELAY),
            FollowUp::SendReminder
        );
        assert_eq!(
            follow_up(f, DELAY, f.sent_at + 10 * DELAY),
            FollowUp::SendReminder
        );
    }

    #[test]
    fn after_the_reminder_staff_are_alerted_the_same_delay_later_once() {
        let reminded = 1_000 * HOUR + DELAY + HOUR;
        let f = facts(None, Some(reminded), None);
        assert_eq!(follow_up(f, DELAY, reminded), FollowUp::Nothing);
        assert_eq!(follow_up(f, DELAY, reminded + DELAY - 1), FollowUp::Nothing);
        assert_eq!(follow_up(f, DELAY, reminded + DELAY), FollowUp::AlertStaff);
        let done = facts(None, Some(reminded), Some(reminded + DELAY));
        assert_eq!(
            follow_up(done, DELAY, reminded + 5 * DELAY),
            FollowUp::Nothing
        );
    }

    #[test]
    fn a_read_message_needs_nothing() {
        let sent = 1_000 * HOUR;
        for reminded in [None, Some(sent + DELAY)] {
            let f = facts(Some(sent + HOUR), reminded, None);
            assert_eq!(follow_up(f, DELAY, sent + 10 * DELAY), FollowUp::Nothing);
        }
    }

    #[test]
    fn the_delay_is_the_practices() {
        let f = facts(None, None, None);
        assert_eq!(follow_up(f, HOUR, f.sent_at + HOUR), FollowUp::SendReminder);
        assert!(valid_delay_hours(DEFAULT_DELAY_HOURS));
        assert!(!valid_delay_hours(0));
        assert!(!valid_delay_hours(MAX_DELAY_HOURS + 1));
    }

    #[test]
    fn days_are_whole_and_at_least_one() {
        let day = 24 * HOUR;
        assert_eq!(whole_days(0, 3 * day + HOUR), 3);
        assert_eq!(whole_days(0, HOUR), 1);
    }
}

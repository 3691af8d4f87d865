//! Sign-in throttling (NIST SP 800-63B-4 §3.2.2): growing delays after a few failures, a
//! temporary lock after many, applied alike to known and unknown accounts and per address.

use time::Duration;

/// Failures allowed before delays start.
pub const FREE_ATTEMPTS: i64 = 3;
/// At this many consecutive failures the key is locked and the practice's admins are told.
pub const LOCK_AFTER: i64 = 10;
/// The temporary lock.
pub const LOCK_FOR: Duration = Duration::minutes(15);

/// Failures older than this are forgotten, so a shared address (a clinic behind one NAT) is
/// not locked forever by failures spread over days.
pub const FORGET_AFTER: Duration = Duration::hours(1);

/// The failure count to continue from, given the key's last failure.
pub fn carried_failures(previous: i64, last_failure_micros: i64, now_micros: i64) -> i64 {
    if now_micros - last_failure_micros > FORGET_AFTER.whole_microseconds() as i64 {
        0
    } else {
        previous
    }
}

/// How long a key waits after its `failures`-th consecutive failure: nothing for the first
/// few, then 1 s, 2 s, 4 s … doubling, and the full lock from `LOCK_AFTER` on.
pub fn delay_after(failures: i64) -> Duration {
    if failures < FREE_ATTEMPTS {
        return Duration::ZERO;
    }
    if failures >= LOCK_AFTER {
        return LOCK_FOR;
    }
    let doubling = (failures - FREE_ATTEMPTS).min(20) as u32;
    Duration::seconds(1i64 << doubling).min(LOCK_FOR)
}

/// Whether this failure is the one that locks (so admins are notified once per lock).
pub fn locks_now(failures: i64) -> bool {
    failures == LOCK_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_lock() {
        assert_eq!(delay_after(1), Duration::ZERO);
        assert_eq!(delay_after(2), Duration::ZERO);
        assert_eq!(delay_after(3), Duration::seconds(1));
        assert_eq!(delay_after(4), Duration::seconds(2));
        assert_eq!(delay_after(9), Duration::seconds(64));
        assert_eq!(delay_after(10), LOCK_FOR);
        assert_eq!(delay_after(1000), LOCK_FOR);
        let mut previous = Duration::ZERO;
        for n in 1..30 {
            assert!(delay_after(n) >= previous, "never shrinks");
            previous = delay_after(n);
        }
        assert!(locks_now(LOCK_AFTER) && !locks_now(LOCK_AFTER + 1));
    }

    #[test]
    fn old_failures_are_forgotten() {
        let hour = FORGET_AFTER.whole_microseconds() as i64;
        assert_eq!(carried_failures(7, 0, hour), 7);
        assert_eq!(carried_failures(7, 0, hour + 1), 0);
    }
}

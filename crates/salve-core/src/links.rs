//! Secure links: the rules for a patient proving who they are before a secure message opens.
//! Possession of the phone or inbox the link went to, plus a knowledge check (date of birth),
//! plus a one-time code sent back to that same contact point. Not two-factor authentication.

use time::Duration;

/// Date-of-birth and code failures together; the link locks when they are spent.
pub const ATTEMPT_BUDGET: i64 = 5;
/// How long a one-time code works.
pub const CODE_TTL: Duration = Duration::minutes(10);
/// How long a link works unless the practice chooses otherwise.
pub const DEFAULT_LINK_TTL: Duration = Duration::hours(72);
/// A verified patient's session: ended by 10 minutes without activity, or after an hour.
pub const PATIENT_SESSION_IDLE: Duration = Duration::minutes(10);
pub const PATIENT_SESSION_MAX: Duration = Duration::hours(1);

/// How many codes may be sent per window, for each key a send is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimit {
    pub max: i64,
    pub window: Duration,
}

pub const PER_LINK: SendLimit = SendLimit {
    max: 3,
    window: Duration::minutes(10),
};
pub const PER_PATIENT: SendLimit = SendLimit {
    max: 6,
    window: Duration::hours(1),
};
pub const PER_ADDRESS: SendLimit = SendLimit {
    max: 10,
    window: Duration::hours(1),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Usable,
    Expired,
    Revoked,
    Locked,
}

/// What a link's stored times say about it now (microseconds since the epoch).
pub fn link_state(
    now: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    locked_at: Option<i64>,
) -> LinkState {
    if revoked_at.is_some() {
        LinkState::Revoked
    } else if locked_at.is_some() {
        LinkState::Locked
    } else if now >= expires_at {
        LinkState::Expired
    } else {
        LinkState::Usable
    }
}

/// Whether one more failure spends the budget.
pub fn locks_after(failures_including_this: i64) -> bool {
    failures_including_this >= ATTEMPT_BUDGET
}

/// A 6-digit code with leading zeros, from a uniformly drawn number below one million.
pub fn format_code(n: u32) -> String {
    format!("{:06}", n % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_budget() {
        assert_eq!(link_state(5, 10, None, None), LinkState::Usable);
        assert_eq!(link_state(10, 10, None, None), LinkState::Expired);
        assert_eq!(link_state(5, 10, Some(1), None), LinkState::Revoked);
        assert_eq!(link_state(5, 10, None, Some(1)), LinkState::Locked);
        assert!(!locks_after(4) && locks_after(5));
        assert_eq!(format_code(42), "000042");
        assert_eq!(format_code(1_000_042), "000042");
    }
}

pub mod account;
pub mod announcements;
pub mod appointments;
pub mod carrier;
pub mod consent;
pub mod ehr;
pub mod ehr_pull;
pub mod health;
pub mod hours;
pub mod inbound;
pub mod inbox_events;
pub mod messages;
pub mod outbox;
pub mod oversight;
pub mod passkeys;
pub mod patients;
pub mod portal;
pub mod portal_login;
pub mod portal_messages;
pub mod providers;
pub mod reminders;
pub mod session;
pub mod smart;
pub mod teams;
pub mod tokens;
pub mod unread;
pub mod users;
pub mod webhooks;

use salve_core::PracticeId;
use salve_core::permissions::Principal;

use crate::error::ApiError;

/// The one practice a principal acts in; the operator (CLI) has none on the HTTP side.
pub(crate) fn practice_of(principal: &Principal) -> Result<PracticeId, ApiError> {
    principal
        .practice()
        .ok_or_else(|| ApiError::forbidden("an operator has no practice here"))
}

/// A stored timestamp (microseconds) as RFC 3339 for responses.
pub(crate) fn rfc3339(micros: i64) -> String {
    salve_core::clock::from_micros(micros)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An id from the path; anything that is not one names no record (404, never a bare 400).
pub(crate) fn path_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(what))
}

pub mod account;
// Not routed yet: a route exists only once the authorization matrix test covers it
// (crates/salve-server/tests/identity.rs); the messaging routes are the next slice.
#[allow(dead_code)]
pub mod consent;
pub mod health;
#[allow(dead_code)]
pub mod inbox_events;
#[allow(dead_code)]
pub mod messages;
pub mod oversight;
pub mod passkeys;
pub mod patients;
pub mod portal;
pub mod portal_login;
#[allow(dead_code)]
pub mod portal_messages;
pub mod session;
pub mod teams;
pub mod tokens;
pub mod users;

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

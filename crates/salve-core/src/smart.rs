//! SMART Backend Services: which system scopes a client may ask for, what they grant, and
//! whether a signed client assertion's claims are acceptable. The signature itself is checked
//! by the server with a JOSE library; everything decided about the claims is here.
//!
//! Salve authorizes with its own token scopes (`patients:read`, …); a SMART v2 scope such as
//! `system/Patient.rs` is translated into them, so one `authorize` serves both kinds of token.

use std::collections::BTreeSet;
use std::fmt;

use crate::permissions::Scope;

/// The longest an assertion may live: SMART asks servers to refuse `exp` more than five minutes
/// ahead.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;
/// How long an issued access token lives.
pub const ACCESS_TOKEN_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated on `nbf` and `iat`.
const SKEW_SECS: i64 = 60;
const MAX_JTI_LEN: usize = 255;

/// What a write grant of a resource covers: create and update together, or create alone (a
/// resource Salve never updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    CreateUpdate,
    CreateOnly,
}

/// A resource a system scope may name: its read+search scope, its write scope and what that
/// covers.
type Offer = (&'static str, Option<Scope>, Option<(Scope, Writes)>);

/// The resources a system scope may name, and what each interaction group maps to.
const RESOURCES: &[Offer] = &[
    // (resource, read+search, create(+update))
    (
        "Patient",
        Some(Scope::PatientsRead),
        Some((Scope::PatientsWrite, Writes::CreateUpdate)),
    ),
    (
        "Communication",
        Some(Scope::MessagesRead),
        Some((Scope::MessagesWrite, Writes::CreateUpdate)),
    ),
    (
        "Appointment",
        Some(Scope::AppointmentsRead),
        Some((Scope::AppointmentsWrite, Writes::CreateUpdate)),
    ),
    // The patient's answer about a visit: recorded (it moves the appointment as their reply
    // would), never updated; its own scope, so relaying answers cannot reschedule.
    (
        "AppointmentResponse",
        Some(Scope::AppointmentsRead),
        Some((Scope::AppointmentsAnswer, Writes::CreateOnly)),
    ),
    (
        "Consent",
        None,
        Some((Scope::ConsentWrite, Writes::CreateUpdate)),
    ),
    ("AuditEvent", Some(Scope::AuditEventRead), None),
];

/// One parsed `system/<Resource>.<permissions>` scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SystemScope {
    pub resource: String,
    pub read: bool,
    pub write: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SystemScope {
    /// Parses a SMART v2 system scope. Read and search are granted together, as are create and
    /// update, because Salve's own scopes do not separate them: asking for one alone is refused
    /// rather than silently granting its twin.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        let bad = |why: &str| Err(ScopeError(format!("scope `{raw}`: {why}")));
        let Some(rest) = raw.strip_prefix("system/") else {
            return bad("only system/ scopes are offered to backend services");
        };
        let Some((resource, perms)) = rest.split_once('.') else {
            return bad("expected system/<Resource>.<permissions>");
        };
        let Some((_, read_scope, write_scope)) = RESOURCES.iter().find(|(r, ..)| *r == resource)
        else {
            return bad("Salve offers no access to this resource type");
        };
        if perms.is_empty() || !is_ordered_subset(perms, "cruds") {
            return bad("permissions must be SMART v2 letters in the order c, r, u, d, s");
        }
        let has = |c| perms.contains(c);
        if has('d') {
            return bad("delete is not offered");
        }
        if has('r') != has('s') {
            return bad("read and search are granted together: ask for `rs`");
        }
        match write_scope.map(|(_, w)| w) {
            Some(Writes::CreateOnly) if has('u') => {
                return bad("update is not offered for this resource type: ask for `c`");
            }
            Some(Writes::CreateOnly) => {}
            _ if has('c') != has('u') => {
                return bad("create and update are granted together: ask for `cu`");
            }
            _ => {}
        }
        let scope = Self {
            resource: resource.to_owned(),
            read: has('r'),
            write: has('c'),
        };
        if (scope.read && read_scope.is_none()) || (scope.write && write_scope.is_none()) {
            return bad("this interaction is not offered for this resource type");
        }
        Ok(scope)
    }

    /// True when this scope asks for nothing beyond `registered`.
    pub fn within(&self, registered: &SystemScope) -> bool {
        self.resource == registered.resource
            && (!self.read || registered.read)
            && (!self.write || registered.write)
    }

    /// Salve's own scopes this one grants.
    pub fn grants(&self) -> Vec<Scope> {
        let Some((_, read, write)) = RESOURCES.iter().find(|(r, ..)| *r == self.resource) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if self.read {
            out.extend(*read);
        }
        if self.write {
            out.extend(write.map(|(s, _)| s));
        }
        out
    }

    fn create_only(&self) -> bool {
        RESOURCES
            .iter()
            .any(|(r, _, w)| *r == self.resource && matches!(w, Some((_, Writes::CreateOnly))))
    }
}

impl fmt::Display for SystemScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let perms = match (self.write, self.read, self.create_only()) {
            (true, true, false) => "crus",
            (true, false, false) => "cu",
            (true, true, true) => "crs",
            (true, false, true) => "c",
            (false, _, _) => "rs",
        };
        write!(f, "system/{}.{perms}", self.resource)
    }
}

fn is_ordered_subset(perms: &str, order: &str) -> bool {
    let mut rest = order.chars();
    perms.chars().all(|c| rest.by_ref().any(|o| o == c))
}

/// Every scope a client can be registered for, for discovery.
pub fn offered_scopes() -> Vec<String> {
    let mut out = Vec::new();
    for (resource, read, write) in RESOURCES {
        let (w, rw) = match write {
            Some((_, Writes::CreateOnly)) => ("c", "crs"),
            _ => ("cu", "crus"),
        };
        if read.is_some() {
            out.push(format!("system/{resource}.rs"));
        }
        if write.is_some() {
            out.push(format!("system/{resource}.{w}"));
        }
        if read.is_some() && write.is_some() {
            out.push(format!("system/{resource}.{rw}"));
        }
    }
    out
}

/// Parses a space-separated scope list (the OAuth form), refusing duplicates' noise quietly.
pub fn parse_scopes(raw: &str) -> Result<Vec<SystemScope>, ScopeError> {
    let mut out = BTreeSet::new();
    for part in raw.split_whitespace() {
        out.insert(SystemScope::parse(part)?);
    }
    if out.is_empty() {
        return Err(ScopeError("at least one scope is required".into()));
    }
    Ok(out.into_iter().collect())
}

/// What a token request is granted: each requested scope must be within one the client was
/// registered for. The answer names the scopes granted and Salve's scopes behind them.
pub fn grant(
    requested: &[SystemScope],
    registered: &[SystemScope],
) -> Result<(Vec<SystemScope>, Vec<Scope>), ScopeError> {
    for scope in requested {
        if !registered.iter().any(|r| scope.within(r)) {
            return Err(ScopeError(format!(
                "scope `{scope}` was not registered for this client"
            )));
        }
    }
    let mut internal: Vec<Scope> = requested.iter().flat_map(SystemScope::grants).collect();
    internal.sort();
    internal.dedup();
    Ok((requested.to_vec(), internal))
}

/// The claims of a client assertion that decide whether it is acceptable.
#[derive(Debug, Clone)]
pub struct AssertionClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a [String],
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub jti: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionError {
    IssuerMismatch,
    AudienceMismatch,
    Expired,
    TooLongLived,
    NotYetValid,
    MissingJti,
}

impl AssertionError {
    /// A reason fit for an OAuth `error_description` and an audit reason (no secrets).
    pub fn describe(self) -> &'static str {
        match self {
            Self::IssuerMismatch => "iss and sub must both be the client_id",
            Self::AudienceMismatch => "aud must be this token endpoint's URL",
            Self::Expired => "the assertion has expired",
            Self::TooLongLived => "exp may be at most five minutes ahead",
            Self::NotYetValid => "the assertion is not valid yet (nbf or iat in the future)",
            Self::MissingJti => "jti is required (at most 255 characters)",
        }
    }
}

/// Checks an assertion's claims for `client_id` at `now` (seconds) against the token URL.
/// Replay of `jti` is checked by the store, which remembers each until its `exp`.
pub fn check_assertion(
    claims: &AssertionClaims<'_>,
    client_id: &str,
    token_url: &str,
    now: i64,
) -> Result<(), AssertionError> {
    if claims.iss != client_id || claims.sub != client_id {
        return Err(AssertionError::IssuerMismatch);
    }
    if !claims.aud.iter().any(|a| a == token_url) {
        return Err(AssertionError::AudienceMismatch);
    }
    if claims.exp <= now {
        return Err(AssertionError::Expired);
    }
    if claims.exp > now + MAX_ASSERTION_LIFETIME_SECS {
        return Err(AssertionError::TooLongLived);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + SKEW_SECS)
        || claims.iat.is_some_and(|iat| iat > now + SKEW_SECS)
    {
        return Err(AssertionError::NotYetValid);
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(AssertionError::MissingJti);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://salve.example/oauth2/token";

    fn claims<'a>(aud: &'a [String], exp: i64, jti: &'a str) -> AssertionClaims<'a> {
        AssertionClaims {
            iss: "client-1",
            sub: "client-1",
            aud,
            exp,
            nbf: None,
            iat: None,
            jti,
        }
    }

    #[test]
    fn v2_scopes_parse_and_map_to_salve_scopes() {
        let s = SystemScope::parse("system/Patient.rs").unwrap();
        assert_eq!(s.grants(), vec![Scope::PatientsRead]);
        let s = SystemScope::parse("system/Communication.cruds").unwrap_err();
        assert!(s.0.contains("delete"), "{s}");
        let s = SystemScope::parse("system/Communication.crus").unwrap();
        assert_eq!(s.grants(), vec![Scope::MessagesRead, Scope::MessagesWrite]);
        assert_eq!(s.to_string(), "system/Communication.crus");
        let s = SystemScope::parse("system/Appointment.cu").unwrap();
        assert_eq!(s.grants(), vec![Scope::AppointmentsWrite]);
        let s = SystemScope::parse("system/AuditEvent.rs").unwrap();
        assert_eq!(s.grants(), vec![Scope::AuditEventRead]);
        assert!(SystemScope::parse("system/AuditEvent.crus").is_err());
        let s = SystemScope::parse("system/Patient.cu").unwrap();
        assert_eq!(s.grants(), vec![Scope::PatientsWrite]);
    }

    #[test]
    fn an_appointment_response_is_created_never_updated() {
        let s = SystemScope::parse("system/AppointmentResponse.c").unwrap();
        assert_eq!(s.grants(), vec![Scope::AppointmentsAnswer]);
        assert_eq!(s.to_string(), "system/AppointmentResponse.c");
        let s = SystemScope::parse("system/AppointmentResponse.crs").unwrap();
        assert_eq!(
            s.grants(),
            vec![Scope::AppointmentsRead, Scope::AppointmentsAnswer]
        );
        assert_eq!(SystemScope::parse(&s.to_string()).unwrap(), s);
        let e = SystemScope::parse("system/AppointmentResponse.cu").unwrap_err();
        assert!(e.0.contains("update is not offered"), "{e}");
        assert!(SystemScope::parse("system/AppointmentResponse.u").is_err());
        assert!(offered_scopes().contains(&"system/AppointmentResponse.c".to_owned()));
        for scope in offered_scopes() {
            let parsed = SystemScope::parse(&scope).unwrap();
            assert_eq!(parsed.to_string(), scope, "offered scopes round-trip");
        }
    }

    #[test]
    fn half_groups_unknown_resources_and_other_forms_are_refused() {
        for raw in [
            "system/Patient.r",
            "system/Patient.s",
            "system/Patient.c",
            "system/Patient.sr",
            "system/Patient.read",
            "system/Patient.",
            "system/Observation.rs",
            "system/*.rs",
            "patient/Patient.rs",
            "user/Communication.rs",
            "system/Consent.rs",
            "openid",
        ] {
            assert!(SystemScope::parse(raw).is_err(), "{raw} should be refused");
        }
        assert!(parse_scopes("   ").is_err());
    }

    #[test]
    fn a_grant_never_exceeds_the_registration() {
        let registered = parse_scopes("system/Patient.rs system/Communication.crus").unwrap();
        let asked = parse_scopes("system/Communication.rs").unwrap();
        let (granted, internal) = grant(&asked, &registered).unwrap();
        assert_eq!(granted, asked);
        assert_eq!(internal, vec![Scope::MessagesRead]);

        let too_much = parse_scopes("system/Patient.crus").unwrap();
        assert!(grant(&too_much, &registered).is_err());
        let other = parse_scopes("system/Appointment.rs").unwrap();
        assert!(grant(&other, &registered).is_err());
    }

    #[test]
    fn assertion_claims_are_checked_against_client_audience_and_time() {
        let aud = vec![URL.to_owned()];
        let now = 1_000_000;
        assert_eq!(
            check_assertion(&claims(&aud, now + 120, "j1"), "client-1", URL, now),
            Ok(())
        );
        assert_eq!(
            check_assertion(&claims(&aud, now + 120, "j1"), "client-2", URL, now),
            Err(AssertionError::IssuerMismatch)
        );
        let other = vec!["https://elsewhere/token".to_owned()];
        assert_eq!(
            check_assertion(&claims(&other, now + 120, "j1"), "client-1", URL, now),
            Err(AssertionError::AudienceMismatch)
        );
        assert_eq!(
            check_assertion(&claims(&aud, now, "j1"), "client-1", URL, now),
            Err(AssertionError::Expired)
        );
        assert_eq!(
            check_assertion(&claims(&aud, now + 301, "j1"), "client-1", URL, now),
            Err(AssertionError::TooLongLived)
        );
        assert_eq!(
            check_assertion(&claims(&aud, now + 60, ""), "client-1", URL, now),
            Err(AssertionError::MissingJti)
        );
        let mut early = claims(&aud, now + 120, "j1");
        early.nbf = Some(now + 90);
        assert_eq!(
            check_assertion(&early, "client-1", URL, now),
            Err(AssertionError::NotYetValid)
        );
        let mut sub_differs = claims(&aud, now + 120, "j1");
        sub_differs.sub = "someone";
        assert_eq!(
            check_assertion(&sub_differs, "client-1", URL, now),
            Err(AssertionError::IssuerMismatch)
        );
    }
}

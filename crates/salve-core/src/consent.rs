//! The consent ledger's rules: what a valid grant or revocation is, and the effective consent
//! computed from a patient's append-only history.
//!
//! Consent is per channel (how we may reach the patient) and per purpose (what for). The ledger
//! never changes an event; the latest event for a channel×purpose decides, and a revocation
//! takes effect the moment it is recorded (TCPA, FCC 2024 revocation order: any reasonable means).
//!
//! What each method may grant (decided conservatively):
//! - revocations: any method may revoke anything;
//! - every grant carries the consent text that was shown (version and SHA-256);
//! - `sms_plain` needs the patient's acknowledgment that SMS is not encrypted;
//! - `announcements` need written evidence: an intake form or the patient in the portal;
//! - an SMS keyword (START) may grant `sms_notify` only, and never for announcements: a keyword
//!   cannot carry the plain-SMS risk acknowledgment, and it says nothing about email or the
//!   portal. [`sms_keyword_opt_in`] further limits it to restoring purposes that had been
//!   granted before, so START undoes a STOP and never creates a consent from nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{ConsentEventId, UserId};
use crate::validation::FieldError;

/// How a message physically reaches a patient outside the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Medium {
    Sms,
    Email,
}

impl Medium {
    pub const ALL: [Medium; 2] = [Medium::Sms, Medium::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == raw)
    }

    /// The medium a contact point of this kind is reached by (Salve texts phones, never calls).
    pub fn of(kind: crate::patient::ContactKind) -> Self {
        match kind {
            crate::patient::ContactKind::Phone => Self::Sms,
            crate::patient::ContactKind::Email => Self::Email,
        }
    }
}

impl fmt::Display for Medium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A way of reaching the patient that consent is recorded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentChannel {
    /// Health-adjacent content (e.g. appointment details) in a plain, unencrypted SMS.
    SmsPlain,
    /// Texts that only say a secure message is waiting, with a link.
    SmsNotify,
    /// Emails that only say a secure message is waiting, with a link.
    EmailNotify,
    /// Messages kept in the secure portal.
    Portal,
}

impl ConsentChannel {
    pub const ALL: [ConsentChannel; 4] = [
        ConsentChannel::SmsPlain,
        ConsentChannel::SmsNotify,
        ConsentChannel::EmailNotify,
        ConsentChannel::Portal,
    ];
    /// The channels an SMS opt-out (STOP) revokes.
    pub const SMS: [ConsentChannel; 2] = [ConsentChannel::SmsPlain, ConsentChannel::SmsNotify];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SmsPlain => "sms_plain",
            Self::SmsNotify => "sms_notify",
            Self::EmailNotify => "email_notify",
            Self::Portal => "portal",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    /// The medium this channel sends on; `None` for the portal.
    pub fn medium(self) -> Option<Medium> {
        match self {
            Self::SmsPlain | Self::SmsNotify => Some(Medium::Sms),
            Self::EmailNotify => Some(Medium::Email),
            Self::Portal => None,
        }
    }

    /// Words for staff ("plain SMS").
    pub fn label(self) -> &'static str {
        match self {
            Self::SmsPlain => "plain SMS",
            Self::SmsNotify => "SMS notifications",
            Self::EmailNotify => "email notifications",
            Self::Portal => "the secure portal",
        }
    }
}

impl fmt::Display for ConsentChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the patient may be contacted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPurpose {
    AppointmentReminders,
    CareMessages,
    Announcements,
}

impl ConsentPurpose {
    pub const ALL: [ConsentPurpose; 3] = [
        ConsentPurpose::AppointmentReminders,
        ConsentPurpose::CareMessages,
        ConsentPurpose::Announcements,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppointmentReminders => "appointment_reminders",
            Self::CareMessages => "care_messages",
            Self::Announcements => "announcements",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }

    /// Words for staff ("appointment reminders").
    pub fn label(self) -> &'static str {
        match self {
            Self::AppointmentReminders => "appointment reminders",
            Self::CareMessages => "care messages",
            Self::Announcements => "announcements",
        }
    }
}

impl fmt::Display for ConsentPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAction {
    Grant,
    Revoke,
}

impl ConsentAction {
    pub const ALL: [ConsentAction; 2] = [ConsentAction::Grant, ConsentAction::Revoke];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

/// How the grant or revocation was expressed: the evidence's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    /// A signed intake form (paper or electronic): written evidence.
    IntakeForm,
    /// Said to a staff member, who records it.
    Verbal,
    /// The patient, signed in to the portal: written evidence.
    PatientPortal,
    /// A keyword texted by the patient (STOP, START).
    SmsKeyword,
    /// A message in the patient's own words ("please stop texting me").
    FreeTextRequest,
}

impl ConsentMethod {
    pub const ALL: [ConsentMethod; 5] = [
        ConsentMethod::IntakeForm,
        ConsentMethod::Verbal,
        ConsentMethod::PatientPortal,
        ConsentMethod::SmsKeyword,
        ConsentMethod::FreeTextRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::IntakeForm => "intake_form",
            Self::Verbal => "verbal",
            Self::PatientPortal => "patient_portal",
            Self::SmsKeyword => "sms_keyword",
            Self::FreeTextRequest => "free_text_request",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == raw)
    }

    /// Written evidence, as announcements require.
    pub fn is_written(self) -> bool {
        matches!(self, Self::IntakeForm | Self::PatientPortal)
    }
}

/// The exact consent text shown to the patient: its version and the SHA-256 of its wording
/// (computed by the caller; core only checks the shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentTextRef {
    pub version: String,
    pub sha256_hex: String,
}

pub const MAX_TEXT_VERSION_CHARS: usize = 64;

/// One grant or revocation as recorded by staff or by the patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEventInput {
    pub channel: ConsentChannel,
    pub purpose: ConsentPurpose,
    pub action: ConsentAction,
    pub method: ConsentMethod,
    /// Required for a grant.
    pub consent_text: Option<ConsentTextRef>,
    /// The patient acknowledged that plain SMS is not encrypted; required to grant `sms_plain`.
    #[serde(default)]
    pub sms_risk_acknowledged: bool,
}

impl ConsentEventInput {
    /// A revocation of one channel×purpose; revocations need no consent text.
    pub fn revoke(channel: ConsentChannel, purpose: ConsentPurpose, method: ConsentMethod) -> Self {
        Self {
            channel,
            purpose,
            action: ConsentAction::Revoke,
            method,
            consent_text: None,
            sms_risk_acknowledged: false,
        }
    }
}

/// Checks one event against the ledger's rules, reporting every problem.
pub fn validate(input: &ConsentEventInput) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if input.action == ConsentAction::Revoke {
        // Revocation by any reasonable means, with or without evidence beyond the method.
        return Ok(());
    }
    match &input.consent_text {
        None => errors.push(FieldError::new(
            "consent_text",
            "the version and SHA-256 of the consent text shown to the patient",
        )),
        Some(text) => {
            let version = text.version.trim();
            if version.is_empty()
                || version.chars().count() > MAX_TEXT_VERSION_CHARS
                || version.chars().any(char::is_control)
            {
                errors.push(FieldError::new(
                    "consent_text.version",
                    format!("a version label of 1 to {MAX_TEXT_VERSION_CHARS} characters"),
                ));
            }
            let hex_ok = text.sha256_hex.len() == 64
                && text
                    .sha256_hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                errors.push(FieldError::new(
                    "consent_text.sha256_hex",
                    "64 lowercase hexadecimal characters (SHA-256)",
                ));
            }
        }
    }
    if input.channel == ConsentChannel::SmsPlain && !input.sms_risk_acknowledged {
        errors.push(FieldError::new(
            "sms_risk_acknowledged",
            "the patient's acknowledgment that plain SMS is not encrypted, to grant sms_plain",
        ));
    }
    if input.purpose == ConsentPurpose::Announcements && !input.method.is_written() {
        errors.push(FieldError::new(
            "method",
            "written evidence (intake_form or patient_portal) to grant announcements",
        ));
    } else if input.method == ConsentMethod::SmsKeyword
        && input.channel != ConsentChannel::SmsNotify
    {
        errors.push(FieldError::new(
            "method",
            "an SMS keyword may grant sms_notify only; record other grants with evidence",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// One recorded event of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub id: ConsentEventId,
    pub at: OffsetDateTime,
    /// The staff member who recorded it; `None` when the patient did (portal, keyword).
    pub recorded_by: Option<UserId>,
    pub channel: ConsentChannel,
    pub purpose: ConsentPurpose,
    pub action: ConsentAction,
    pub method: ConsentMethod,
    pub consent_text: Option<ConsentTextRef>,
    pub sms_risk_acknowledged: bool,
}

impl ConsentEvent {
    pub fn new(
        id: ConsentEventId,
        at: OffsetDateTime,
        recorded_by: Option<UserId>,
        input: ConsentEventInput,
    ) -> Self {
        Self {
            id,
            at,
            recorded_by,
            channel: input.channel,
            purpose: input.purpose,
            action: input.action,
            method: input.method,
            consent_text: input.consent_text,
            sms_risk_acknowledged: input.sms_risk_acknowledged,
        }
    }

    pub fn input(&self) -> ConsentEventInput {
        ConsentEventInput {
            channel: self.channel,
            purpose: self.purpose,
            action: self.action,
            method: self.method,
            consent_text: self.consent_text.clone(),
            sms_risk_acknowledged: self.sms_risk_acknowledged,
        }
    }
}

/// The effective consent for one channel×purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    /// Nothing recorded.
    Never,
    /// Granted by this event: the legal basis a message relies on.
    Granted { basis: ConsentEventId },
    /// Revoked by this event (possibly never granted before: an opt-out is recorded anyway).
    Revoked { by: ConsentEventId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    status: ConsentStatus,
    last_grant: Option<ConsentEventId>,
}

/// A patient's effective consent, computed from the whole history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentState {
    entries: BTreeMap<(ConsentChannel, ConsentPurpose), Entry>,
}

impl ConsentState {
    /// Replays the history in order of time, then id (ids are time-ordered, so two events in the
    /// same microsecond keep the order they were made in). The latest event per channel×purpose
    /// wins. A grant that breaks the rules of [`validate`] (it should never have been stored) is
    /// ignored; a revocation always counts.
    pub fn from_history(events: &[ConsentEvent]) -> ConsentState {
        let mut ordered: Vec<&ConsentEvent> = events.iter().collect();
        ordered.sort_by_key(|e| (e.at, e.id));
        let mut entries: BTreeMap<(ConsentChannel, ConsentPurpose), Entry> = BTreeMap::new();
        for e in ordered {
            let entry = entries.entry((e.channel, e.purpose)).or_insert(Entry {
                status: ConsentStatus::Never,
                last_grant: None,
            });
            match e.action {
                ConsentAction::Grant => {
                    if validate(&e.input()).is_ok() {
                        entry.status = ConsentStatus::Granted { basis: e.id };
                        entry.last_grant = Some(e.id);
                    }
                }
                ConsentAction::Revoke => entry.status = ConsentStatus::Revoked { by: e.id },
            }
        }
        ConsentState { entries }
    }

    pub fn status(&self, channel: ConsentChannel, purpose: ConsentPurpose) -> ConsentStatus {
        self.entries
            .get(&(channel, purpose))
            .map_or(ConsentStatus::Never, |e| e.status)
    }

    /// The grant a message on this channel for this purpose relies on, if consent is in force.
    pub fn basis(
        &self,
        channel: ConsentChannel,
        purpose: ConsentPurpose,
    ) -> Option<ConsentEventId> {
        match self.status(channel, purpose) {
            ConsentStatus::Granted { basis } => Some(basis),
            _ => None,
        }
    }

    pub fn is_granted(&self, channel: ConsentChannel, purpose: ConsentPurpose) -> bool {
        self.basis(channel, purpose).is_some()
    }

    /// Whether a grant was ever recorded for this channel×purpose (even if later revoked).
    pub fn was_ever_granted(&self, channel: ConsentChannel, purpose: ConsentPurpose) -> bool {
        self.entries
            .get(&(channel, purpose))
            .is_some_and(|e| e.last_grant.is_some())
    }

    /// Whether any channel on this medium is granted for any purpose: the test for system
    /// messages that are not a reply to the patient's own message.
    pub fn any_granted_on(&self, medium: Medium) -> bool {
        self.granted()
            .any(|(channel, _, _)| channel.medium() == Some(medium))
    }

    /// Every channel×purpose in force, with its basis, in a stable order.
    pub fn granted(
        &self,
    ) -> impl Iterator<Item = (ConsentChannel, ConsentPurpose, ConsentEventId)> + '_ {
        self.entries
            .iter()
            .filter_map(|(&(channel, purpose), e)| match e.status {
                ConsentStatus::Granted { basis } => Some((channel, purpose, basis)),
                _ => None,
            })
    }
}

/// One action revoking every channel×purpose currently granted.
pub fn revoke_all(state: &ConsentState, method: ConsentMethod) -> Vec<ConsentEventInput> {
    state
        .granted()
        .map(|(channel, purpose, _)| ConsentEventInput::revoke(channel, purpose, method))
        .collect()
}

/// An SMS opt-out (STOP, or "stop texting me" by other means): revokes every SMS channel for
/// every purpose that is not already revoked, including pairs never granted, so the ledger
/// shows the opt-out. Empty when the patient had already opted out: callers use that to
/// confirm an opt-out only once.
pub fn sms_opt_out(state: &ConsentState, method: ConsentMethod) -> Vec<ConsentEventInput> {
    let mut out = Vec::new();
    for channel in ConsentChannel::SMS {
        for purpose in ConsentPurpose::ALL {
            if !matches!(
                state.status(channel, purpose),
                ConsentStatus::Revoked { .. }
            ) {
                out.push(ConsentEventInput::revoke(channel, purpose, method));
            }
        }
    }
    out
}

/// START: restores `sms_notify` for each purpose other than announcements where it had been
/// granted before and is not in force now. Never grants `sms_plain` (the keyword carries no
/// risk acknowledgment) and never creates a consent the patient had not given with evidence.
/// `consent_text` is the SMS program text the keyword opts back in to.
pub fn sms_keyword_opt_in(
    state: &ConsentState,
    consent_text: &ConsentTextRef,
) -> Vec<ConsentEventInput> {
    ConsentPurpose::ALL
        .into_iter()
        .filter(|&p| p != ConsentPurpose::Announcements)
        .filter(|&p| {
            state.was_ever_granted(ConsentChannel::SmsNotify, p)
                && !state.is_granted(ConsentChannel::SmsNotify, p)
        })
        .map(|purpose| ConsentEventInput {
            channel: ConsentChannel::SmsNotify,
            purpose,
            action: ConsentAction::Grant,
            method: ConsentMethod::SmsKeyword,
            consent_text: Some(consent_text.clone()),
            sms_risk_acknowledged: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

    fn text() -> ConsentTextRef {
        ConsentTextRef {
            version: "intake-2026-01".into(),
            sha256_hex: "ab".repeat(32),
        }
    }

    fn grant(channel: ConsentChannel, purpose: ConsentPurpose) -> ConsentEventInput {
        ConsentEventInput {
            channel,
            purpose,
            action: ConsentAction::Grant,
            method: ConsentMethod::IntakeForm,
            consent_text: Some(text()),
            sms_risk_acknowledged: channel == ConsentChannel::SmsPlain,
        }
    }

    fn event(minutes: i64, input: ConsentEventInput) -> ConsentEvent {
        ConsentEvent::new(
            ConsentEventId::new(),
            T0 + Duration::minutes(minutes),
            None,
            input,
        )
    }

    fn fields(input: &ConsentEventInput) -> Vec<String> {
        match validate(input) {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn names_round_trip() {
        for c in ConsentChannel::ALL {
            assert_eq!(ConsentChannel::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        for p in ConsentPurpose::ALL {
            assert_eq!(ConsentPurpose::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        for a in ConsentAction::ALL {
            assert_eq!(ConsentAction::parse(a.as_str()), Some(a));
        }
        for m in ConsentMethod::ALL {
            assert_eq!(ConsentMethod::parse(m.as_str()), Some(m));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        for m in Medium::ALL {
            assert_eq!(Medium::parse(m.as_str()), Some(m));
        }
        assert_eq!(ConsentChannel::parse("SMS_PLAIN"), None);
        assert_eq!(ConsentPurpose::parse(""), None);
    }

    #[test]
    fn a_complete_grant_is_valid() {
        for channel in ConsentChannel::ALL {
            for purpose in ConsentPurpose::ALL {
                assert_eq!(validate(&grant(channel, purpose)), Ok(()));
            }
        }
    }

    #[test]
    fn a_grant_needs_the_consent_text_shown() {
        let mut g = grant(ConsentChannel::SmsNotify, ConsentPurpose::CareMessages);
        g.consent_text = None;
        assert_eq!(fields(&g), ["consent_text"]);
        g.consent_text = Some(ConsentTextRef {
            version: "  ".into(),
            sha256_hex: "AB".repeat(32),
        });
        assert_eq!(
            fields(&g),
            ["consent_text.version", "consent_text.sha256_hex"]
        );
        g.consent_text = Some(ConsentTextRef {
            version: "v1".into(),
            sha256_hex: "ab".repeat(31),
        });
        assert_eq!(fields(&g), ["consent_text.sha256_hex"]);
        g.consent_text = Some(ConsentTextRef {
            version: "x".repeat(65),
            sha256_hex: "0f".repeat(32),
        });
        assert_eq!(fields(&g), ["consent_text.version"]);
    }

    #[test]
    fn plain_sms_needs_the_risk_acknowledged() {
        let mut g = grant(
            ConsentChannel::SmsPlain,
            ConsentPurpose::AppointmentReminders,
        );
        g.sms_risk_acknowledged = false;
        assert_eq!(fields(&g), ["sms_risk_acknowledged"]);
        // The other channels do not need it.
        let mut n = grant(
            ConsentChannel::SmsNotify,
            ConsentPurpose::AppointmentReminders,
        );
        n.sms_risk_acknowledged = false;
        assert_eq!(validate(&n), Ok(()));
    }

    #[test]
    fn announcements_need_written_evidence() {
        for method in ConsentMethod::ALL {
            for channel in ConsentChannel::ALL {
                let mut g = grant(channel, ConsentPurpose::Announcements);
                g.method = method;
                let ok = validate(&g).is_ok();
                assert_eq!(
                    ok,
                    matches!(
                        method,
                        ConsentMethod::IntakeForm | ConsentMethod::PatientPortal
                    ),
                    "{method:?} {channel:?}"
                );
            }
        }
    }

    #[test]
    fn a_keyword_may_grant_sms_notify_only() {
        for channel in ConsentChannel::ALL {
            for purpose in ConsentPurpose::ALL {
                let mut g = grant(channel, purpose);
                g.method = ConsentMethod::SmsKeyword;
                let ok = validate(&g).is_ok();
                assert_eq!(
                    ok,
                    channel == ConsentChannel::SmsNotify
                        && purpose != ConsentPurpose::Announcements,
                    "{channel:?} {purpose:?}"
                );
            }
        }
    }

    #[test]
    fn verbal_and_free_text_grants_are_allowed_with_their_evidence() {
        for method in [ConsentMethod::Verbal, ConsentMethod::FreeTextRequest] {
            let mut g = grant(ConsentChannel::SmsPlain, ConsentPurpose::CareMessages);
            g.method = method;
            assert_eq!(validate(&g), Ok(()));
        }
    }

    #[test]
    fn any_method_may_revoke_anything_without_evidence() {
        for method in ConsentMethod::ALL {
            for channel in ConsentChannel::ALL {
                for purpose in ConsentPurpose::ALL {
                    let r = ConsentEventInput::revoke(channel, purpose, method);
                    assert_eq!(validate(&r), Ok(()));
                }
            }
        }
    }

    #[test]
    fn the_latest_event_wins_and_revocation_is_immediate() {
        let (ch, p) = (ConsentChannel::SmsPlain, ConsentPurpose::CareMessages);
        let g = event(0, grant(ch, p));
        let r = event(5, ConsentEventInput::revoke(ch, p, ConsentMethod::Verbal));
        let state = ConsentState::from_history(std::slice::from_ref(&g));
        assert_eq!(state.basis(ch, p), Some(g.id));
        assert!(state.is_granted(ch, p));
        // History order in the slice does not matter; time does.
        let state = ConsentState::from_history(&[r.clone(), g.clone()]);
        assert_eq!(state.status(ch, p), ConsentStatus::Revoked { by: r.id });
        assert!(!state.is_granted(ch, p));
        assert_eq!(state.basis(ch, p), None);
        assert!(state.was_ever_granted(ch, p));
        // A later grant restores it, with the new grant as the basis.
        let g2 = event(9, grant(ch, p));
        let state = ConsentState::from_history(&[g, r, g2.clone()]);
        assert_eq!(state.basis(ch, p), Some(g2.id));
    }

    #[test]
    fn same_instant_orders_by_id() {
        let (ch, p) = (ConsentChannel::SmsNotify, ConsentPurpose::CareMessages);
        let first = event(0, grant(ch, p));
        let second = event(0, ConsentEventInput::revoke(ch, p, ConsentMethod::Verbal));
        assert!(first.id < second.id);
        let state = ConsentState::from_history(&[second.clone(), first]);
        assert_eq!(
            state.status(ch, p),
            ConsentStatus::Revoked { by: second.id }
        );
    }

    #[test]
    fn consent_is_per_channel_and_purpose() {
        let g = event(
            0,
            grant(
                ConsentChannel::SmsPlain,
                ConsentPurpose::AppointmentReminders,
            ),
        );
        let state = ConsentState::from_history(std::slice::from_ref(&g));
        for channel in ConsentChannel::ALL {
            for purpose in ConsentPurpose::ALL {
                let expected = channel == ConsentChannel::SmsPlain
                    && purpose == ConsentPurpose::AppointmentReminders;
                assert_eq!(state.is_granted(channel, purpose), expected);
                if !expected {
                    assert_eq!(state.status(channel, purpose), ConsentStatus::Never);
                }
            }
        }
        assert!(state.any_granted_on(Medium::Sms));
        assert!(!state.any_granted_on(Medium::Email));
        assert_eq!(
            ConsentState::from_history(&[]).status(g.channel, g.purpose),
            ConsentStatus::Never
        );
    }

    #[test]
    fn an_invalid_grant_in_the_history_grants_nothing() {
        let (ch, p) = (ConsentChannel::SmsPlain, ConsentPurpose::Announcements);
        let mut bad = grant(ch, p);
        bad.method = ConsentMethod::SmsKeyword;
        bad.sms_risk_acknowledged = false;
        let state = ConsentState::from_history(&[event(0, bad)]);
        assert!(!state.is_granted(ch, p));
        // ...and does not undo an earlier revocation either.
        let r = event(0, ConsentEventInput::revoke(ch, p, ConsentMethod::Verbal));
        let mut bad = grant(ch, p);
        bad.consent_text = None;
        let state = ConsentState::from_history(&[r.clone(), event(1, bad)]);
        assert_eq!(state.status(ch, p), ConsentStatus::Revoked { by: r.id });
    }

    #[test]
    fn revoke_all_revokes_exactly_what_is_granted() {
        let mut history = Vec::new();
        for (i, channel) in ConsentChannel::ALL.into_iter().enumerate() {
            history.push(event(
                i as i64,
                grant(channel, ConsentPurpose::CareMessages),
            ));
        }
        history.push(event(
            10,
            ConsentEventInput::revoke(
                ConsentChannel::Portal,
                ConsentPurpose::CareMessages,
                ConsentMethod::Verbal,
            ),
        ));
        let state = ConsentState::from_history(&history);
        let revocations = revoke_all(&state, ConsentMethod::FreeTextRequest);
        let pairs: Vec<_> = revocations.iter().map(|r| (r.channel, r.purpose)).collect();
        assert_eq!(
            pairs,
            [
                (ConsentChannel::SmsPlain, ConsentPurpose::CareMessages),
                (ConsentChannel::SmsNotify, ConsentPurpose::CareMessages),
                (ConsentChannel::EmailNotify, ConsentPurpose::CareMessages),
            ]
        );
        assert!(revocations.iter().all(|r| r.action == ConsentAction::Revoke
            && r.method == ConsentMethod::FreeTextRequest
            && validate(r).is_ok()));
        // Applying them leaves nothing granted.
        for (i, r) in revocations.into_iter().enumerate() {
            history.push(event(20 + i as i64, r));
        }
        let after = ConsentState::from_history(&history);
        assert_eq!(after.granted().count(), 0);
        assert!(revoke_all(&after, ConsentMethod::Verbal).is_empty());
    }

    #[test]
    fn stop_revokes_every_sms_channel_for_every_purpose_once() {
        let mut history = vec![
            event(
                0,
                grant(
                    ConsentChannel::SmsPlain,
                    ConsentPurpose::AppointmentReminders,
                ),
            ),
            event(
                1,
                grant(ConsentChannel::EmailNotify, ConsentPurpose::CareMessages),
            ),
        ];
        let state = ConsentState::from_history(&history);
        let stop = sms_opt_out(&state, ConsentMethod::SmsKeyword);
        assert_eq!(stop.len(), 6);
        for channel in ConsentChannel::SMS {
            for purpose in ConsentPurpose::ALL {
                assert!(
                    stop.iter()
                        .any(|r| r.channel == channel && r.purpose == purpose)
                );
            }
        }
        for (i, r) in stop.into_iter().enumerate() {
            history.push(event(10 + i as i64, r));
        }
        let after = ConsentState::from_history(&history);
        assert!(!after.any_granted_on(Medium::Sms));
        // Email is untouched; a second STOP has nothing left to revoke.
        assert!(after.is_granted(ConsentChannel::EmailNotify, ConsentPurpose::CareMessages));
        assert!(sms_opt_out(&after, ConsentMethod::SmsKeyword).is_empty());
    }

    #[test]
    fn start_restores_only_sms_notify_that_was_granted_before() {
        let mut history = vec![
            event(
                0,
                grant(
                    ConsentChannel::SmsPlain,
                    ConsentPurpose::AppointmentReminders,
                ),
            ),
            event(
                1,
                grant(
                    ConsentChannel::SmsNotify,
                    ConsentPurpose::AppointmentReminders,
                ),
            ),
            event(
                2,
                grant(ConsentChannel::SmsNotify, ConsentPurpose::Announcements),
            ),
        ];
        // Before any STOP there is nothing to restore.
        assert!(sms_keyword_opt_in(&ConsentState::from_history(&history), &text()).is_empty());
        let stop = sms_opt_out(
            &ConsentState::from_history(&history),
            ConsentMethod::SmsKeyword,
        );
        for (i, r) in stop.into_iter().enumerate() {
            history.push(event(10 + i as i64, r));
        }
        let state = ConsentState::from_history(&history);
        let start = sms_keyword_opt_in(&state, &text());
        let pairs: Vec<_> = start.iter().map(|g| (g.channel, g.purpose)).collect();
        assert_eq!(
            pairs,
            [(
                ConsentChannel::SmsNotify,
                ConsentPurpose::AppointmentReminders
            )]
        );
        assert!(start.iter().all(|g| validate(g).is_ok()));
        for (i, g) in start.into_iter().enumerate() {
            history.push(event(30 + i as i64, g));
        }
        let state = ConsentState::from_history(&history);
        assert!(state.is_granted(
            ConsentChannel::SmsNotify,
            ConsentPurpose::AppointmentReminders
        ));
        assert!(!state.is_granted(
            ConsentChannel::SmsPlain,
            ConsentPurpose::AppointmentReminders
        ));
        assert!(!state.is_granted(ConsentChannel::SmsNotify, ConsentPurpose::Announcements));
    }
}

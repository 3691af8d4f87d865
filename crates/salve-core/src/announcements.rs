//! General practice announcements (an office closure, a flu clinic): one text sent to many
//! patients. Who receives it is a filter over the practice's patients; only patients with
//! written consent for the `announcements` purpose on a channel that can carry it ever do.
//! The text is judged by the channel policy like any staff message, once; routing (consent,
//! confidential-communication requests, contact points) is per patient.
//!
//! Pure: the store reads appointments and consent and applies these rules.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::CatalogItemId;
use crate::FieldError;
use crate::consent::{ConsentChannel, ConsentPurpose, ConsentState};
use crate::policy::Route;

/// At most this many days ahead for "with an upcoming appointment".
pub const MAX_UPCOMING_DAYS: u32 = 365;
/// At most this many providers or locations in one filter.
pub const MAX_FILTER_ITEMS: usize = 50;
/// The longest announcement text (it is sent to many: keep it short; long texts go secure).
pub const MAX_TEXT_CHARS: usize = 1_600;

/// Who an announcement is for, on top of the consent every recipient must have. Every
/// condition given must hold; the appointment conditions hold for one and the same visit
/// (booked or confirmed, not yet started): "patients seeing Dr A at Main St in the next 7
/// days". An empty filter is every patient with `announcements` consent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientFilter {
    /// The visit is with one of these providers (catalog items).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<CatalogItemId>,
    /// The visit is at one of these locations (catalog items).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<CatalogItemId>,
    /// The visit starts within this many days from the send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upcoming_within_days: Option<u32>,
}

/// What the filter needs to know about one visit of a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitFacts {
    pub starts_at: OffsetDateTime,
    /// Booked or confirmed (not cancelled, done, missed, or waiting for a new time).
    pub active: bool,
    pub provider: CatalogItemId,
    pub location: CatalogItemId,
}

impl RecipientFilter {
    /// Checks the limits; every problem is reported with its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(days) = self.upcoming_within_days
            && !(1..=MAX_UPCOMING_DAYS).contains(&days)
        {
            errors.push(FieldError::new(
                "filter.upcoming_within_days",
                format!("from 1 to {MAX_UPCOMING_DAYS} days"),
            ));
        }
        for (field, items) in [
            ("filter.providers", &self.providers),
            ("filter.locations", &self.locations),
        ] {
            if items.len() > MAX_FILTER_ITEMS {
                errors.push(FieldError::new(
                    field,
                    format!("at most {MAX_FILTER_ITEMS} items"),
                ));
            }
            let mut sorted = items.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != items.len() {
                errors.push(FieldError::new(field, "each item once"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Whether the filter looks at appointments at all.
    pub fn needs_visits(&self) -> bool {
        !self.providers.is_empty()
            || !self.locations.is_empty()
            || self.upcoming_within_days.is_some()
    }

    /// Whether a patient with these visits matches (consent is checked separately).
    pub fn matches(&self, visits: &[VisitFacts], now: OffsetDateTime) -> bool {
        if !self.needs_visits() {
            return true;
        }
        let until = self
            .upcoming_within_days
            .map(|d| now + time::Duration::days(i64::from(d)));
        visits.iter().any(|v| {
            v.active
                && v.starts_at >= now
                && until.is_none_or(|u| v.starts_at <= u)
                && (self.providers.is_empty() || self.providers.contains(&v.provider))
                && (self.locations.is_empty() || self.locations.contains(&v.location))
        })
    }
}

/// The channels an announcement may go out on (a direct text, or a notification by text or
/// email); the portal alone never announces anything.
pub const CHANNELS: [ConsentChannel; 3] = [
    ConsentChannel::SmsPlain,
    ConsentChannel::SmsNotify,
    ConsentChannel::EmailNotify,
];

/// Whether the patient's consent allows an announcement on any channel it could use.
pub fn consented(state: &ConsentState) -> bool {
    CHANNELS
        .iter()
        .any(|c| state.is_granted(*c, ConsentPurpose::Announcements))
}

/// Whether an announcement whose text the policy routes `route` can reach this patient: a
/// direct text needs `sms_plain`, or else goes as a notification; a secure one needs
/// `sms_notify` or `email_notify`. (Contact points are checked when it is queued.)
pub fn reachable(state: &ConsentState, route: Route) -> bool {
    let granted = |c| state.is_granted(c, ConsentPurpose::Announcements);
    let notify = granted(ConsentChannel::SmsNotify) || granted(ConsentChannel::EmailNotify);
    match route {
        Route::Direct => notify || granted(ConsentChannel::SmsPlain),
        Route::Secure => notify,
    }
}

/// Whether the patient had consented and has since withdrawn it everywhere.
pub fn withdrawn(state: &ConsentState) -> bool {
    !consented(state)
        && CHANNELS
            .iter()
            .any(|c| state.was_ever_granted(*c, ConsentPurpose::Announcements))
}

/// Where an announcement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Written, not yet sent or scheduled: it may be edited away (cancelled) freely.
    Draft,
    /// Will start at its scheduled time.
    Scheduled,
    /// Recipients are being queued.
    Sending,
    /// Every recipient has been recorded (queued or held back); deliveries may still follow.
    Done,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Self::Draft,
        Self::Scheduled,
        Self::Sending,
        Self::Done,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// A draft (or a scheduled one, to move its time) may be sent or scheduled.
    pub fn may_schedule(self) -> bool {
        matches!(self, Self::Draft | Self::Scheduled)
    }

    /// Anything not finished may be cancelled; recipients not yet queued then get nothing.
    pub fn may_cancel(self) -> bool {
        matches!(self, Self::Draft | Self::Scheduled | Self::Sending)
    }

    /// The worker queues recipients for these, once due.
    pub fn is_due_state(self) -> bool {
        matches!(self, Self::Scheduled | Self::Sending)
    }
}

/// Why a recipient got nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// No consent for announcements on a channel that could carry it.
    NoConsent,
    /// Consent was withdrawn (e.g. STOP) after the send started: before their message was
    /// queued, or while it waited in the outbox.
    OptedOutDuringSend,
    /// No phone or email on file for the consented channel.
    NoContactPoint,
    /// Every consented contact point is excluded by a confidential-communication request.
    ConfidentialRequest,
    /// The announcement was cancelled before this recipient's turn.
    Cancelled,
}

impl HoldReason {
    pub const ALL: [HoldReason; 5] = [
        Self::NoConsent,
        Self::OptedOutDuringSend,
        Self::NoContactPoint,
        Self::ConfidentialRequest,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoConsent => "no_consent",
            Self::OptedOutDuringSend => "opted_out_during_send",
            Self::NoContactPoint => "no_contact_point",
            Self::ConfidentialRequest => "confidential_request",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Why routing left a patient without a send, as a hold reason. `was_consented`: the
    /// patient had consented when the send started (so losing it now is an opt-out).
    pub fn from_wait(reason: crate::routing::WaitReason, state: &ConsentState) -> Self {
        use crate::routing::WaitReason;
        match reason {
            WaitReason::NoContactPoint => Self::NoContactPoint,
            WaitReason::ExcludedByConfidentialRequest => Self::ConfidentialRequest,
            WaitReason::PortalDeclined | WaitReason::NoNotifyConsent => {
                if withdrawn(state) {
                    Self::OptedOutDuringSend
                } else {
                    Self::NoConsent
                }
            }
        }
    }
}

/// One recipient's result, as staff see it in the progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientResult {
    /// Chosen when the send started; not yet queued.
    Pending,
    /// In the outbox (possibly waiting out quiet hours or the rate limit).
    Queued,
    Sent,
    Delivered,
    Failed,
    HeldBack(HoldReason),
}

impl RecipientResult {
    /// A recipient's result from its stored state and, once queued, its outbox job's and
    /// message's statuses.
    pub fn of(
        held: Option<HoldReason>,
        job_status: Option<&str>,
        message_status: Option<&str>,
    ) -> Self {
        if let Some(reason) = held {
            return Self::HeldBack(reason);
        }
        match (job_status, message_status) {
            (None, _) => Self::Pending,
            // Withdrawn from the outbox before it went: a revocation (or a confidential
            // request) recorded mid-send.
            (Some("cancelled"), _) => Self::HeldBack(HoldReason::OptedOutDuringSend),
            (Some("failed" | "unknown"), _) => Self::Failed,
            (Some("sent"), Some("delivered" | "read")) => Self::Delivered,
            (Some("sent"), Some("failed")) => Self::Failed,
            (Some("sent"), _) => Self::Sent,
            _ => Self::Queued,
        }
    }
}

/// Checks an announcement's text: not empty, not too long, no control characters.
pub fn validate_text(raw: &str) -> Result<String, FieldError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(FieldError::new("text", "required"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(FieldError::new(
            "text",
            format!("at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldError::new("text", "no control characters"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{ConsentAction, ConsentEvent, ConsentEventInput, ConsentMethod};
    use crate::consent::{ConsentStatus, ConsentTextRef};
    use crate::routing::WaitReason;
    use crate::{ConsentEventId, ids::CatalogItemId};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 15:00 UTC);

    fn visit(days: i64, provider: CatalogItemId, location: CatalogItemId) -> VisitFacts {
        VisitFacts {
            starts_at: NOW + time::Duration::days(days),
            active: true,
            provider,
            location,
        }
    }

    #[test]
    fn an_empty_filter_is_everyone_consenting() {
        let f = RecipientFilter::default();
        assert!(!f.needs_visits());
        assert!(f.matches(&[], NOW));
        assert_eq!(serde_json::to_string(&f).unwrap(), "{}");
        assert_eq!(serde_json::from_str::<RecipientFilter>("{}").unwrap(), f);
    }

    #[test]
    fn visit_conditions_hold_for_one_and_the_same_visit() {
        let (dr_a, dr_b) = (CatalogItemId::new(), CatalogItemId::new());
        let (main, north) = (CatalogItemId::new(), CatalogItemId::new());
        let f = RecipientFilter {
            providers: vec![dr_a],
            locations: vec![main],
            upcoming_within_days: Some(7),
        };
        assert!(f.needs_visits());
        assert!(f.matches(&[visit(3, dr_a, main)], NOW));
        assert!(!f.matches(&[], NOW), "no visit");
        assert!(!f.matches(&[visit(8, dr_a, main)], NOW), "too far ahead");
        assert!(!f.matches(&[visit(-1, dr_a, main)], NOW), "already past");
        // Dr A at North and Dr B at Main: neither visit is Dr A at Main.
        assert!(!f.matches(&[visit(2, dr_a, north), visit(2, dr_b, main)], NOW));
        let mut cancelled = visit(3, dr_a, main);
        cancelled.active = false;
        assert!(!f.matches(&[cancelled], NOW));
        let any_provider = RecipientFilter {
            providers: vec![dr_a, dr_b],
            ..Default::default()
        };
        assert!(any_provider.matches(&[visit(200, dr_b, north)], NOW));
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<RecipientFilter>(&json).unwrap(), f);
        assert!(serde_json::from_str::<RecipientFilter>("{\"everyone\":true}").is_err());
    }

    #[test]
    fn filters_are_bounded() {
        let id = CatalogItemId::new();
        let bad = RecipientFilter {
            providers: vec![id, id],
            locations: (0..51).map(|_| CatalogItemId::new()).collect(),
            upcoming_within_days: Some(0),
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "filter.upcoming_within_days",
                "filter.providers",
                "filter.locations"
            ]
        );
        let ok = RecipientFilter {
            upcoming_within_days: Some(MAX_UPCOMING_DAYS),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        assert!(
            RecipientFilter {
                upcoming_within_days: Some(MAX_UPCOMING_DAYS + 1),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }

    fn event(
        channel: ConsentChannel,
        purpose: ConsentPurpose,
        action: ConsentAction,
        minute: i64,
    ) -> ConsentEvent {
        let input = ConsentEventInput {
            channel,
            purpose,
            action,
            method: ConsentMethod::IntakeForm,
            consent_text: (action == ConsentAction::Grant).then(|| ConsentTextRef {
                version: "2026-01".into(),
                sha256_hex: "a".repeat(64),
            }),
            sms_risk_acknowledged: channel == ConsentChannel::SmsPlain,
        };
        ConsentEvent::new(
            ConsentEventId::new(),
            NOW + time::Duration::minutes(minute),
            None,
            input,
        )
    }

    #[test]
    fn only_announcement_consent_on_a_sending_channel_counts() {
        use ConsentAction::*;
        let none = ConsentState::from_history(&[]);
        assert!(!consented(&none) && !withdrawn(&none));
        let care_only = ConsentState::from_history(&[event(
            ConsentChannel::SmsPlain,
            ConsentPurpose::CareMessages,
            Grant,
            0,
        )]);
        assert!(!consented(&care_only));
        let portal_only = ConsentState::from_history(&[event(
            ConsentChannel::Portal,
            ConsentPurpose::Announcements,
            Grant,
            0,
        )]);
        assert!(!consented(&portal_only), "the portal announces nothing");
        assert!(!reachable(&portal_only, Route::Direct) && !reachable(&care_only, Route::Direct));
        for channel in CHANNELS {
            let granted = [event(channel, ConsentPurpose::Announcements, Grant, 0)];
            let state = ConsentState::from_history(&granted);
            assert!(
                matches!(
                    state.status(channel, ConsentPurpose::Announcements),
                    ConsentStatus::Granted { .. }
                ),
                "{channel}: the test's grant is valid"
            );
            assert!(consented(&state), "{channel}");
            assert!(reachable(&state, Route::Direct), "{channel}");
            assert_eq!(
                reachable(&state, Route::Secure),
                channel != ConsentChannel::SmsPlain,
                "a secure announcement needs a notification channel: {channel}"
            );
            let revoked = [
                granted[0].clone(),
                event(channel, ConsentPurpose::Announcements, Revoke, 1),
            ];
            let state = ConsentState::from_history(&revoked);
            assert!(!consented(&state) && withdrawn(&state), "{channel}");
            assert_eq!(
                HoldReason::from_wait(WaitReason::NoNotifyConsent, &state),
                HoldReason::OptedOutDuringSend
            );
        }
        assert_eq!(
            HoldReason::from_wait(WaitReason::NoNotifyConsent, &none),
            HoldReason::NoConsent
        );
        assert_eq!(
            HoldReason::from_wait(WaitReason::NoContactPoint, &none),
            HoldReason::NoContactPoint
        );
        assert_eq!(
            HoldReason::from_wait(WaitReason::ExcludedByConfidentialRequest, &none),
            HoldReason::ConfidentialRequest
        );
    }

    #[test]
    fn statuses_and_results() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for r in HoldReason::ALL {
            assert_eq!(HoldReason::parse(r.as_str()), Some(r));
        }
        assert!(Status::Draft.may_schedule() && !Status::Sending.may_schedule());
        assert!(Status::Sending.may_cancel() && !Status::Done.may_cancel());
        assert!(!Status::Cancelled.may_cancel() && !Status::Draft.is_due_state());
        use RecipientResult as R;
        assert_eq!(R::of(None, None, None), R::Pending);
        assert_eq!(R::of(None, Some("pending"), Some("queued")), R::Queued);
        assert_eq!(R::of(None, Some("sending"), Some("sending")), R::Queued);
        assert_eq!(R::of(None, Some("sent"), Some("sent")), R::Sent);
        assert_eq!(R::of(None, Some("sent"), Some("delivered")), R::Delivered);
        assert_eq!(R::of(None, Some("sent"), Some("failed")), R::Failed);
        assert_eq!(R::of(None, Some("failed"), Some("failed")), R::Failed);
        assert_eq!(
            R::of(None, Some("cancelled"), Some("failed")),
            R::HeldBack(HoldReason::OptedOutDuringSend)
        );
        assert_eq!(
            R::of(Some(HoldReason::NoConsent), None, None),
            R::HeldBack(HoldReason::NoConsent)
        );
    }

    #[test]
    fn texts_are_checked() {
        assert!(validate_text("   ").is_err());
        assert!(validate_text(&"a".repeat(MAX_TEXT_CHARS + 1)).is_err());
        assert!(validate_text("closed\u{7}").is_err());
        assert_eq!(
            validate_text("  The office is closed on Friday.\n").unwrap(),
            "The office is closed on Friday."
        );
    }
}

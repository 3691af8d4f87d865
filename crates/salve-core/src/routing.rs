//! Routing: where one outgoing message goes, on what legal basis, and why, in words for staff.
//!
//! Staff messages:
//! - Plain SMS only when the content policy says `Direct`, staff did not mark it secure (staff
//!   can make a message more secure, never less), `sms_plain` is granted for the message's
//!   purpose, and a phone of the patient or a guardian is allowed by the patient's
//!   confidential-communication requests. A caregiver's phone never receives message content by
//!   plain SMS (a caregiver is not necessarily the patient's personal representative); it may
//!   receive content-free notifications.
//! - Otherwise the message is stored for the portal and a content-free notification goes on a
//!   notify channel consented for the purpose: `sms_notify` to a phone, `email_notify` to an
//!   email; the patient's own contacts before a guardian's, a guardian's before a caregiver's;
//!   within one person a phone before an email; then the order the contacts are listed in.
//!   Consent is per channel: `sms_plain` does not imply `sms_notify`.
//! - With no usable notification the message waits in the portal, and staff are told why
//!   ([`WaitReason`]). If the patient revoked the portal channel for the purpose, nothing is
//!   announced (the message still waits; staff must reach the patient another way). A portal
//!   channel never granted is not a refusal: the portal is the default secure place.
//!
//! System messages skip the content policy (fixed wording, no PHI), quiet hours and throttling
//! (those live elsewhere), but not routing:
//! - emergency guidance answers the contact the patient's own message came from, whatever the
//!   consent state and the confidential-communication requests;
//! - the opt-out confirmation and the help reply answer the phone that sent the keyword, whatever
//!   the consent state (after STOP, SMS is revoked: the confirmation still goes, once);
//! - the after-hours reply answers the patient's own message only if some channel on that medium
//!   is granted for some purpose: after an SMS opt-out, only the opt-out confirmation, help and
//!   emergency guidance are texted (send emergency guidance instead when this is withheld);
//! - the opt-in confirmation goes when SMS consent is in force (record the grant first): to the
//!   phone that texted START, or else to the preferred allowed phone;
//! - one-time codes go only to `code_target` (the contact point the secure link went to), which
//!   must still be on file, allowed by the requests, and have some consent on its medium;
//! - a secure-message notification is never routed on its own: it is the notification of a
//!   staff message, and goes with that message's routing and legal basis.
//!
//! Confidential-communication requests and replies (decided): a reply to the contact point the
//! patient just wrote from (emergency guidance, opt-out, help, after-hours, opt-in after START) is
//! allowed even where a request excludes it: the patient chose to write from it, and these
//! replies carry no PHI. Everything else obeys the requests.
//!
//! Re-run routing at send time with the current consent: a revocation while a message is queued
//! then stops it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::confidential::Restrictions;
use crate::consent::{ConsentChannel, ConsentPurpose, ConsentState, ConsentStatus, Medium};
use crate::ids::ConsentEventId;
use crate::patient::{Contact, ContactKind, ContactRole};
use crate::policy::Route;
use crate::system_messages::SystemMessageKind;

/// The message to route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Written by staff (or a reminder), judged by the content policy.
    Staff {
        /// The content policy's verdict on the rendered text.
        content_route: Route,
        /// Staff chose the secure route themselves.
        staff_forced_secure: bool,
        purpose: ConsentPurpose,
    },
    /// One of the fixed system messages.
    System {
        kind: SystemMessageKind,
        /// The contact point the patient's own message came from, when this answers one.
        reply_to: Option<Contact>,
        /// For one-time codes: the contact point the secure link went to.
        code_target: Option<Contact>,
    },
}

/// Why a staff message waits in the portal without a notification. Shown to staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// The patient revoked the portal channel for this purpose.
    PortalDeclined,
    /// Neither `sms_notify` nor `email_notify` is granted for this purpose.
    NoNotifyConsent,
    /// A notify channel is granted, but there is no phone or email of that kind on file.
    NoContactPoint,
    /// Every consented contact point is excluded by a confidential-communication request.
    ExcludedByConfidentialRequest,
}

impl WaitReason {
    pub const ALL: [WaitReason; 4] = [
        WaitReason::PortalDeclined,
        WaitReason::NoNotifyConsent,
        WaitReason::NoContactPoint,
        WaitReason::ExcludedByConfidentialRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PortalDeclined => "portal_declined",
            Self::NoNotifyConsent => "no_notify_consent",
            Self::NoContactPoint => "no_contact_point",
            Self::ExcludedByConfidentialRequest => "excluded_by_confidential_request",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    /// What staff are told.
    pub fn staff_text(self) -> &'static str {
        match self {
            Self::PortalDeclined => {
                "The patient declined the portal for this purpose: the message waits there \
                 unannounced; reach the patient another way."
            }
            Self::NoNotifyConsent => {
                "The patient has not consented to SMS or email notifications for this purpose: \
                 the message waits in the portal until they sign in."
            }
            Self::NoContactPoint => {
                "No phone or email on file for the consented notification channel: the message \
                 waits in the portal."
            }
            Self::ExcludedByConfidentialRequest => {
                "Every consented contact point is excluded by the patient's confidential-\
                 communication requests: the message waits in the portal."
            }
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a system message is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithheldReason {
    /// A reply with nothing to reply to (the patient wrote in the portal: show it there).
    NoReplyContact,
    /// A keyword reply (opt-out, help, opt-in) to something other than a phone.
    ReplyNotToAPhone,
    /// A one-time code without the contact point its link went to.
    NoCodeTarget,
    /// The code's contact point is no longer on the patient's record.
    CodeTargetNotOnFile,
    /// No channel on this medium is granted for any purpose (e.g. after STOP).
    NoConsentOnMedium,
    /// No phone on file to send to.
    NoContactPoint,
    /// The contact point is excluded by a confidential-communication request.
    ExcludedByConfidentialRequest,
    /// Notifications go with the staff message they announce, never on their own.
    SentWithItsMessage,
}

impl WithheldReason {
    pub const ALL: [WithheldReason; 8] = [
        WithheldReason::NoReplyContact,
        WithheldReason::ReplyNotToAPhone,
        WithheldReason::NoCodeTarget,
        WithheldReason::CodeTargetNotOnFile,
        WithheldReason::NoConsentOnMedium,
        WithheldReason::NoContactPoint,
        WithheldReason::ExcludedByConfidentialRequest,
        WithheldReason::SentWithItsMessage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoReplyContact => "no_reply_contact",
            Self::ReplyNotToAPhone => "reply_not_to_a_phone",
            Self::NoCodeTarget => "no_code_target",
            Self::CodeTargetNotOnFile => "code_target_not_on_file",
            Self::NoConsentOnMedium => "no_consent_on_medium",
            Self::NoContactPoint => "no_contact_point",
            Self::ExcludedByConfidentialRequest => "excluded_by_confidential_request",
            Self::SentWithItsMessage => "sent_with_its_message",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

impl fmt::Display for WithheldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The content goes by plain SMS, relying on this `sms_plain` grant.
    DirectSms { to: Contact, basis: ConsentEventId },
    /// The content stays in the portal; a content-free notification goes out, relying on this
    /// `sms_notify` or `email_notify` grant.
    SecureWithNotification {
        medium: Medium,
        to: Contact,
        basis: ConsentEventId,
    },
    /// The content stays in the portal, unannounced.
    PortalOnly { reason: WaitReason },
    /// A system message goes out (no consent event is its basis: see the module's rules).
    SystemSend { medium: Medium, to: Contact },
    /// A system message is not sent.
    Withheld { reason: WithheldReason },
}

impl Delivery {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::DirectSms { .. } => "direct_sms",
            Self::SecureWithNotification { .. } => "secure_with_notification",
            Self::PortalOnly { .. } => "portal_only",
            Self::SystemSend { .. } => "system_send",
            Self::Withheld { .. } => "withheld",
        }
    }

    /// The consent event the send relies on, to be recorded on the message.
    pub fn basis(&self) -> Option<ConsentEventId> {
        match self {
            Self::DirectSms { basis, .. } | Self::SecureWithNotification { basis, .. } => {
                Some(*basis)
            }
            _ => None,
        }
    }

    /// Who receives something now, if anyone.
    pub fn recipient(&self) -> Option<&Contact> {
        match self {
            Self::DirectSms { to, .. }
            | Self::SecureWithNotification { to, .. }
            | Self::SystemSend { to, .. } => Some(to),
            _ => None,
        }
    }
}

/// The decision and its reasons, in order, for staff and for the message's record. The
/// explanation never contains a contact value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub delivery: Delivery,
    pub explanation: Vec<String>,
}

fn role_rank(role: ContactRole) -> u8 {
    match role {
        ContactRole::Patient => 0,
        ContactRole::Guardian => 1,
        ContactRole::Caregiver => 2,
    }
}

fn kind_rank(kind: ContactKind) -> u8 {
    match kind {
        ContactKind::Phone => 0,
        ContactKind::Email => 1,
    }
}

/// The contacts in order of preference: own before guardian before caregiver, phone before
/// email, then as listed.
fn preferred(contacts: &[Contact]) -> Vec<&Contact> {
    let mut ordered: Vec<&Contact> = contacts.iter().collect();
    ordered.sort_by_key(|c| (role_rank(c.role), kind_rank(c.kind)));
    ordered
}

/// "the patient's own phone", "the guardian's email #2": a contact named without its value.
fn describe(contact: &Contact, contacts: &[Contact]) -> String {
    let whose = match contact.role {
        ContactRole::Patient => "the patient's own",
        ContactRole::Guardian => "the guardian's",
        ContactRole::Caregiver => "the caregiver's",
    };
    let what = contact.kind.as_str();
    let same: Vec<&Contact> = contacts
        .iter()
        .filter(|c| c.role == contact.role && c.kind == contact.kind)
        .collect();
    match same.iter().position(|c| c.value == contact.value) {
        Some(_) if same.len() == 1 => format!("{whose} {what}"),
        Some(i) => format!("{whose} {what} #{}", i + 1),
        None => format!("the {what} the patient wrote from"),
    }
}

fn on_file(contact: &Contact, contacts: &[Contact]) -> bool {
    contacts
        .iter()
        .any(|c| c.kind == contact.kind && c.value == contact.value)
}

fn consent_line(
    consent: &ConsentState,
    channel: ConsentChannel,
    purpose: ConsentPurpose,
) -> String {
    let what = format!("Consent to {} for {}", channel.label(), purpose.label());
    match consent.status(channel, purpose) {
        ConsentStatus::Granted { basis } => format!("{what}: granted (event {basis})"),
        ConsentStatus::Revoked { by } => format!("{what}: revoked (event {by})"),
        ConsentStatus::Never => format!("{what}: not recorded"),
    }
}

/// Decides where one outgoing message goes.
pub fn route(
    outgoing: &Outgoing,
    consent: &ConsentState,
    restrictions: &Restrictions,
    contacts: &[Contact],
) -> Routing {
    let mut explanation = Vec::new();
    let delivery = match outgoing {
        Outgoing::Staff {
            content_route,
            staff_forced_secure,
            purpose,
        } => route_staff(
            *content_route,
            *staff_forced_secure,
            *purpose,
            consent,
            restrictions,
            contacts,
            &mut explanation,
        ),
        Outgoing::System {
            kind,
            reply_to,
            code_target,
        } => route_system(
            *kind,
            reply_to.as_ref(),
            code_target.as_ref(),
            consent,
            restrictions,
            contacts,
            &mut explanation,
        ),
    };
    Routing {
        delivery,
        explanation,
    }
}

fn route_staff(
    content_route: Route,
    forced: bool,
    purpose: ConsentPurpose,
    consent: &ConsentState,
    restrictions: &Restrictions,
    contacts: &[Contact],
    why: &mut Vec<String>,
) -> Delivery {
    why.push(match content_route {
        Route::Direct => "Content policy: may go by plain SMS".to_owned(),
        Route::Secure => "Content policy: secure channel only".to_owned(),
    });
    let requested = if forced { Route::Secure } else { Route::Direct };
    let effective = content_route.at_least(requested);
    if forced {
        why.push("Staff marked this message secure".to_owned());
    }

    if effective == Route::Direct {
        why.push(consent_line(consent, ConsentChannel::SmsPlain, purpose));
        if let Some(basis) = consent.basis(ConsentChannel::SmsPlain, purpose) {
            let mut any_phone = false;
            for c in preferred(contacts) {
                if c.kind != ContactKind::Phone {
                    continue;
                }
                any_phone = true;
                if c.role == ContactRole::Caregiver {
                    why.push(format!(
                        "{} not used for plain SMS: message content goes only to the patient's \
                         or a guardian's phone",
                        describe(c, contacts)
                    ));
                    continue;
                }
                match restrictions.allows(c, Medium::Sms) {
                    Ok(()) => {
                        why.push(format!("Sent by plain SMS to {}", describe(c, contacts)));
                        return Delivery::DirectSms {
                            to: c.clone(),
                            basis,
                        };
                    }
                    Err(e) => why.push(format!("{} not used: {e}", describe(c, contacts))),
                }
            }
            if !any_phone {
                why.push("No phone on file for plain SMS".to_owned());
            }
        }
    }

    why.push("The message is stored in the secure portal".to_owned());
    if let ConsentStatus::Revoked { .. } = consent.status(ConsentChannel::Portal, purpose) {
        why.push(consent_line(consent, ConsentChannel::Portal, purpose));
        why.push(WaitReason::PortalDeclined.staff_text().to_owned());
        return Delivery::PortalOnly {
            reason: WaitReason::PortalDeclined,
        };
    }
    let notify = |kind: ContactKind| match kind {
        ContactKind::Phone => ConsentChannel::SmsNotify,
        ContactKind::Email => ConsentChannel::EmailNotify,
    };
    why.push(consent_line(consent, ConsentChannel::SmsNotify, purpose));
    why.push(consent_line(consent, ConsentChannel::EmailNotify, purpose));
    let mut consented_contact = false;
    for c in preferred(contacts) {
        let Some(basis) = consent.basis(notify(c.kind), purpose) else {
            continue;
        };
        consented_contact = true;
        let medium = Medium::of(c.kind);
        match restrictions.allows(c, medium) {
            Ok(()) => {
                why.push(format!(
                    "Content-free notification by {} to {}",
                    medium.as_str(),
                    describe(c, contacts)
                ));
                return Delivery::SecureWithNotification {
                    medium,
                    to: c.clone(),
                    basis,
                };
            }
            Err(e) => why.push(format!("{} not used: {e}", describe(c, contacts))),
        }
    }
    let reason = if !consent.is_granted(ConsentChannel::SmsNotify, purpose)
        && !consent.is_granted(ConsentChannel::EmailNotify, purpose)
    {
        WaitReason::NoNotifyConsent
    } else if !consented_contact {
        WaitReason::NoContactPoint
    } else {
        WaitReason::ExcludedByConfidentialRequest
    };
    why.push(reason.staff_text().to_owned());
    Delivery::PortalOnly { reason }
}

fn withheld(reason: WithheldReason, line: impl Into<String>, why: &mut Vec<String>) -> Delivery {
    why.push(line.into());
    Delivery::Withheld { reason }
}

fn send(to: &Contact, contacts: &[Contact], why: &mut Vec<String>) -> Delivery {
    let medium = Medium::of(to.kind);
    why.push(format!(
        "Sent by {} to {}",
        medium.as_str(),
        describe(to, contacts)
    ));
    Delivery::SystemSend {
        medium,
        to: to.clone(),
    }
}

fn route_system(
    kind: SystemMessageKind,
    reply_to: Option<&Contact>,
    code_target: Option<&Contact>,
    consent: &ConsentState,
    restrictions: &Restrictions,
    contacts: &[Contact],
    why: &mut Vec<String>,
) -> Delivery {
    use SystemMessageKind::*;
    why.push(format!(
        "System message ({}): fixed, reviewed wording without PHI; not subject to the content \
         policy",
        kind.as_str()
    ));
    let consent_on = |medium: Medium| consent.any_granted_on(medium);
    match kind {
        SecureMessageNotification => withheld(
            WithheldReason::SentWithItsMessage,
            "A notification is sent with the message it announces, on that message's consent",
            why,
        ),
        OneTimeCode => {
            let Some(target) = code_target else {
                return withheld(
                    WithheldReason::NoCodeTarget,
                    "A code goes only to the contact point its secure link went to; none given",
                    why,
                );
            };
            if !on_file(target, contacts) {
                return withheld(
                    WithheldReason::CodeTargetNotOnFile,
                    "The contact point the secure link went to is no longer on file",
                    why,
                );
            }
            let medium = Medium::of(target.kind);
            if !consent_on(medium) {
                return withheld(
                    WithheldReason::NoConsentOnMedium,
                    format!(
                        "No consent to any {} messages is in force (opted out?)",
                        medium.as_str()
                    ),
                    why,
                );
            }
            if let Err(e) = restrictions.allows(target, medium) {
                return withheld(
                    WithheldReason::ExcludedByConfidentialRequest,
                    format!("{} not used: {e}", describe(target, contacts)),
                    why,
                );
            }
            why.push("A code goes only to the contact point its secure link went to".to_owned());
            send(target, contacts, why)
        }
        EmergencyGuidance => match reply_to {
            None => withheld(
                WithheldReason::NoReplyContact,
                "Not a reply to a text or email: show the guidance in the portal",
                why,
            ),
            Some(to) => {
                why.push(
                    "Emergency guidance answers the patient's own message, whatever the consent \
                     state"
                        .to_owned(),
                );
                send(to, contacts, why)
            }
        },
        OptOutConfirmation | HelpReply => match reply_to {
            None => withheld(
                WithheldReason::NoReplyContact,
                "Answers a keyword texted by the patient; there is none",
                why,
            ),
            Some(to) if to.kind != ContactKind::Phone => withheld(
                WithheldReason::ReplyNotToAPhone,
                "Keyword replies go by SMS only",
                why,
            ),
            Some(to) => {
                why.push(
                    "Answers the phone that texted the keyword, whatever the consent state"
                        .to_owned(),
                );
                send(to, contacts, why)
            }
        },
        AfterHoursReply | VisitConfirmed | VisitCancelled | RescheduleRequested => match reply_to {
            None => withheld(
                WithheldReason::NoReplyContact,
                "Not a reply to a text or email: shown in the portal instead",
                why,
            ),
            Some(to) => {
                let medium = Medium::of(to.kind);
                if !consent_on(medium) {
                    return withheld(
                        WithheldReason::NoConsentOnMedium,
                        format!(
                            "No consent to any {} messages is in force: send emergency guidance \
                             instead",
                            medium.as_str()
                        ),
                        why,
                    );
                }
                why.push("Answers the patient's own message".to_owned());
                send(to, contacts, why)
            }
        },
        OptInConfirmation => {
            if !consent_on(Medium::Sms) {
                return withheld(
                    WithheldReason::NoConsentOnMedium,
                    "No SMS consent is in force: record the grant before confirming it",
                    why,
                );
            }
            match reply_to {
                Some(to) if to.kind != ContactKind::Phone => withheld(
                    WithheldReason::ReplyNotToAPhone,
                    "Keyword replies go by SMS only",
                    why,
                ),
                Some(to) => {
                    why.push("Answers the phone that texted the keyword".to_owned());
                    send(to, contacts, why)
                }
                None => {
                    let mut any_phone = false;
                    for c in preferred(contacts) {
                        if c.kind != ContactKind::Phone {
                            continue;
                        }
                        any_phone = true;
                        match restrictions.allows(c, Medium::Sms) {
                            Ok(()) => return send(c, contacts, why),
                            Err(e) => why.push(format!("{} not used: {e}", describe(c, contacts))),
                        }
                    }
                    if any_phone {
                        withheld(
                            WithheldReason::ExcludedByConfidentialRequest,
                            "Every phone on file is excluded by a confidential-communication \
                             request",
                            why,
                        )
                    } else {
                        withheld(WithheldReason::NoContactPoint, "No phone on file", why)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The must-show test: every combination of policy decision × consent state ×
    //! confidential-communication restriction × outgoing kind (× which contacts are on file),
    //! checked against `expected`, written from the rules as plainly as possible.

    use super::*;
    use crate::confidential::{ConfidentialRequest, ConfidentialRule, RequestMethod};
    use crate::consent::{
        ConsentAction, ConsentEvent, ConsentEventInput, ConsentMethod, ConsentTextRef, revoke_all,
        sms_opt_out,
    };
    use crate::ids::ConfidentialRequestId;
    use crate::sensitive::Sensitive;
    use std::collections::BTreeMap;
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

    const OWN_PHONE: &str = "+13125550142";
    const GUARDIAN_PHONE: &str = "+13125550100";
    const CAREGIVER_PHONE: &str = "+13125550177";
    const OWN_EMAIL: &str = "ana@example.org";
    const STRANGER_PHONE: &str = "+13125550999";

    fn contact(kind: ContactKind, value: &str, role: ContactRole) -> Contact {
        Contact {
            kind,
            value: Sensitive::new(value.to_owned()),
            role,
        }
    }
    fn own_phone() -> Contact {
        contact(ContactKind::Phone, OWN_PHONE, ContactRole::Patient)
    }
    fn guardian_phone() -> Contact {
        contact(ContactKind::Phone, GUARDIAN_PHONE, ContactRole::Guardian)
    }
    fn caregiver_phone() -> Contact {
        contact(ContactKind::Phone, CAREGIVER_PHONE, ContactRole::Caregiver)
    }
    fn own_email() -> Contact {
        contact(ContactKind::Email, OWN_EMAIL, ContactRole::Patient)
    }
    fn stranger_phone() -> Contact {
        contact(ContactKind::Phone, STRANGER_PHONE, ContactRole::Patient)
    }

    // ---- consent scenarios -------------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum ConsentCase {
        Nothing,
        SmsPlainOnly,
        SmsNotifyOnly,
        EmailNotifyOnly,
        NotifyBoth,
        AllGranted,
        AllRevokedAfterGrant,
        OtherPurposeOnly,
    }
    const CONSENT_CASES: [ConsentCase; 8] = [
        ConsentCase::Nothing,
        ConsentCase::SmsPlainOnly,
        ConsentCase::SmsNotifyOnly,
        ConsentCase::EmailNotifyOnly,
        ConsentCase::NotifyBoth,
        ConsentCase::AllGranted,
        ConsentCase::AllRevokedAfterGrant,
        ConsentCase::OtherPurposeOnly,
    ];

    fn text() -> ConsentTextRef {
        ConsentTextRef {
            version: "intake-2026-01".into(),
            sha256_hex: "0a".repeat(32),
        }
    }

    fn grant(channel: ConsentChannel, purpose: ConsentPurpose) -> ConsentEventInput {
        ConsentEventInput {
            channel,
            purpose,
            action: ConsentAction::Grant,
            method: ConsentMethod::IntakeForm,
            consent_text: Some(text()),
            sms_risk_acknowledged: true,
        }
    }

    /// The consent state of a scenario, and the grant each granted channel×purpose relies on,
    /// kept as the scenario records its events (not read back from the state).
    struct Consent {
        state: ConsentState,
        grants: BTreeMap<(ConsentChannel, ConsentPurpose), ConsentEventId>,
    }

    fn build(history_inputs: Vec<ConsentEventInput>) -> (Vec<ConsentEvent>, ConsentState) {
        let events: Vec<ConsentEvent> = history_inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| {
                ConsentEvent::new(
                    ConsentEventId::new(),
                    T0 + Duration::minutes(i as i64),
                    None,
                    input,
                )
            })
            .collect();
        let state = ConsentState::from_history(&events);
        (events, state)
    }

    fn consent(case: ConsentCase) -> Consent {
        use ConsentChannel::*;
        let channels: &[ConsentChannel] = match case {
            ConsentCase::Nothing => &[],
            ConsentCase::SmsPlainOnly => &[SmsPlain],
            ConsentCase::SmsNotifyOnly => &[SmsNotify],
            ConsentCase::EmailNotifyOnly => &[EmailNotify],
            ConsentCase::NotifyBoth => &[SmsNotify, EmailNotify],
            ConsentCase::AllGranted
            | ConsentCase::AllRevokedAfterGrant
            | ConsentCase::OtherPurposeOnly => &[SmsPlain, SmsNotify, EmailNotify, Portal],
        };
        let purposes: &[ConsentPurpose] = if case == ConsentCase::OtherPurposeOnly {
            &[ConsentPurpose::AppointmentReminders]
        } else {
            &ConsentPurpose::ALL
        };
        let mut inputs = Vec::new();
        for &c in channels {
            for &p in purposes {
                inputs.push(grant(c, p));
            }
        }
        let (events, state) = build(inputs.clone());
        if case == ConsentCase::AllRevokedAfterGrant {
            inputs.extend(revoke_all(&state, ConsentMethod::Verbal));
            let (_, state) = build(inputs);
            return Consent {
                state,
                grants: BTreeMap::new(),
            };
        }
        let grants = events
            .iter()
            .map(|e| ((e.channel, e.purpose), e.id))
            .collect();
        Consent { state, grants }
    }

    impl Consent {
        fn granted(
            &self,
            channel: ConsentChannel,
            purpose: ConsentPurpose,
        ) -> Option<ConsentEventId> {
            self.grants.get(&(channel, purpose)).copied()
        }
        fn portal_revoked(&self, case: ConsentCase) -> bool {
            case == ConsentCase::AllRevokedAfterGrant
        }
        fn anything_on_sms(&self) -> bool {
            self.grants
                .keys()
                .any(|(c, _)| matches!(c, ConsentChannel::SmsPlain | ConsentChannel::SmsNotify))
        }
        fn anything_on_email(&self) -> bool {
            self.grants
                .keys()
                .any(|(c, _)| *c == ConsentChannel::EmailNotify)
        }
    }

    // ---- restriction scenarios ---------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum RestrictionCase {
        Nothing,
        OnlyOwnPhone,
        NeverOwnPhone,
        NeverSms,
        NeverEmail,
        EveryContactExcluded,
    }
    const RESTRICTION_CASES: [RestrictionCase; 6] = [
        RestrictionCase::Nothing,
        RestrictionCase::OnlyOwnPhone,
        RestrictionCase::NeverOwnPhone,
        RestrictionCase::NeverSms,
        RestrictionCase::NeverEmail,
        RestrictionCase::EveryContactExcluded,
    ];

    fn request(rule: ConfidentialRule) -> ConfidentialRequest {
        ConfidentialRequest {
            id: ConfidentialRequestId::new(),
            rule,
            method: RequestMethod::WrittenForm,
            recorded_at: T0,
            recorded_by: None,
            withdrawn_at: None,
        }
    }

    fn restrictions(case: RestrictionCase) -> Restrictions {
        let own = || Sensitive::new(OWN_PHONE.to_owned());
        let rules = match case {
            RestrictionCase::Nothing => vec![],
            RestrictionCase::OnlyOwnPhone => vec![ConfidentialRule::OnlyContact(own())],
            RestrictionCase::NeverOwnPhone => vec![ConfidentialRule::NeverContact(own())],
            RestrictionCase::NeverSms => vec![ConfidentialRule::NeverMedium(Medium::Sms)],
            RestrictionCase::NeverEmail => vec![ConfidentialRule::NeverMedium(Medium::Email)],
            RestrictionCase::EveryContactExcluded => vec![
                ConfidentialRule::NeverMedium(Medium::Sms),
                ConfidentialRule::NeverMedium(Medium::Email),
            ],
        };
        // Plus a withdrawn request that would exclude everything: it must not count.
        let mut withdrawn = request(ConfidentialRule::NeverMedium(Medium::Sms));
        withdrawn.withdrawn_at = Some(T0);
        let mut requests: Vec<_> = rules.into_iter().map(request).collect();
        requests.push(withdrawn);
        Restrictions::from_requests(&requests)
    }

    /// Written from the request, value by value.
    fn may_use(case: RestrictionCase, value: &str) -> bool {
        let is_phone = value.starts_with('+');
        match case {
            RestrictionCase::Nothing => true,
            RestrictionCase::OnlyOwnPhone => !is_phone || value == OWN_PHONE,
            RestrictionCase::NeverOwnPhone => value != OWN_PHONE,
            RestrictionCase::NeverSms => !is_phone,
            RestrictionCase::NeverEmail => is_phone,
            RestrictionCase::EveryContactExcluded => false,
        }
    }

    // ---- contacts on file ----------------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum ContactsCase {
        /// Listed guardian first, to check that the patient's own contact is still preferred.
        Everyone,
        CaregiverPhoneOnly,
        EmailOnly,
        NoContacts,
    }
    const CONTACTS_CASES: [ContactsCase; 4] = [
        ContactsCase::Everyone,
        ContactsCase::CaregiverPhoneOnly,
        ContactsCase::EmailOnly,
        ContactsCase::NoContacts,
    ];

    fn contacts(case: ContactsCase) -> Vec<Contact> {
        match case {
            ContactsCase::Everyone => {
                vec![
                    guardian_phone(),
                    own_email(),
                    caregiver_phone(),
                    own_phone(),
                ]
            }
            ContactsCase::CaregiverPhoneOnly => vec![caregiver_phone()],
            ContactsCase::EmailOnly => vec![own_email()],
            ContactsCase::NoContacts => vec![],
        }
    }

    // ---- outgoing messages -----------------------------------------------------------------

    fn outgoing_cases() -> Vec<(Route, bool, Outgoing)> {
        let contact_choices = || {
            [
                None,
                Some(own_phone()),
                Some(own_email()),
                Some(stranger_phone()),
            ]
        };
        let mut out = Vec::new();
        for content_route in [Route::Direct, Route::Secure] {
            for forced in [false, true] {
                for purpose in ConsentPurpose::ALL {
                    out.push((
                        content_route,
                        forced,
                        Outgoing::Staff {
                            content_route,
                            staff_forced_secure: forced,
                            purpose,
                        },
                    ));
                }
                // System messages do not look at the policy; they are still crossed with it.
                for kind in SystemMessageKind::ALL {
                    for reply_to in contact_choices() {
                        for code_target in contact_choices() {
                            out.push((
                                content_route,
                                forced,
                                Outgoing::System {
                                    kind,
                                    reply_to: reply_to.clone(),
                                    code_target,
                                },
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    // ---- the expected outcome, written plainly -------------------------------------------

    fn is_phone(c: &Contact) -> bool {
        c.kind == ContactKind::Phone
    }

    fn expected(
        outgoing: &Outgoing,
        consent_case: ConsentCase,
        c: &Consent,
        r: RestrictionCase,
        on_file: &[Contact],
    ) -> Delivery {
        match outgoing {
            Outgoing::Staff {
                content_route,
                staff_forced_secure,
                purpose,
            } => {
                let purpose = *purpose;
                // 1. Plain SMS: policy says direct, staff did not force secure, consent,
                //    and the patient's or guardian's phone allowed (own first).
                let plain = c.granted(ConsentChannel::SmsPlain, purpose);
                if let (Route::Direct, false, Some(basis)) =
                    (*content_route, *staff_forced_secure, plain)
                {
                    for role in [ContactRole::Patient, ContactRole::Guardian] {
                        for x in on_file {
                            if x.role == role && is_phone(x) && may_use(r, x.value.expose()) {
                                return Delivery::DirectSms {
                                    to: x.clone(),
                                    basis,
                                };
                            }
                        }
                    }
                }
                // 2. Secure. A declined portal is announced nowhere.
                if c.portal_revoked(consent_case) {
                    return Delivery::PortalOnly {
                        reason: WaitReason::PortalDeclined,
                    };
                }
                let sms = c.granted(ConsentChannel::SmsNotify, purpose);
                let email = c.granted(ConsentChannel::EmailNotify, purpose);
                if sms.is_none() && email.is_none() {
                    return Delivery::PortalOnly {
                        reason: WaitReason::NoNotifyConsent,
                    };
                }
                let mut some_consented_contact = false;
                for role in [
                    ContactRole::Patient,
                    ContactRole::Guardian,
                    ContactRole::Caregiver,
                ] {
                    for (kind, medium, basis) in [
                        (ContactKind::Phone, Medium::Sms, sms),
                        (ContactKind::Email, Medium::Email, email),
                    ] {
                        let Some(basis) = basis else { continue };
                        for x in on_file {
                            if x.role == role && x.kind == kind {
                                some_consented_contact = true;
                                if may_use(r, x.value.expose()) {
                                    return Delivery::SecureWithNotification {
                                        medium,
                                        to: x.clone(),
                                        basis,
                                    };
                                }
                            }
                        }
                    }
                }
                Delivery::PortalOnly {
                    reason: if some_consented_contact {
                        WaitReason::ExcludedByConfidentialRequest
                    } else {
                        WaitReason::NoContactPoint
                    },
                }
            }
            Outgoing::System {
                kind,
                reply_to,
                code_target,
            } => {
                let medium_of = |x: &Contact| {
                    if is_phone(x) {
                        Medium::Sms
                    } else {
                        Medium::Email
                    }
                };
                let consent_on = |m: Medium| match m {
                    Medium::Sms => c.anything_on_sms(),
                    Medium::Email => c.anything_on_email(),
                };
                let send = |x: &Contact| Delivery::SystemSend {
                    medium: medium_of(x),
                    to: x.clone(),
                };
                let no = |reason| Delivery::Withheld { reason };
                match kind {
                    SystemMessageKind::SecureMessageNotification => {
                        no(WithheldReason::SentWithItsMessage)
                    }
                    SystemMessageKind::OneTimeCode => match code_target {
                        None => no(WithheldReason::NoCodeTarget),
                        Some(t) if !on_file.contains(t) => no(WithheldReason::CodeTargetNotOnFile),
                        Some(t) if !consent_on(medium_of(t)) => {
                            no(WithheldReason::NoConsentOnMedium)
                        }
                        Some(t) if !may_use(r, t.value.expose()) => {
                            no(WithheldReason::ExcludedByConfidentialRequest)
                        }
                        Some(t) => send(t),
                    },
                    SystemMessageKind::EmergencyGuidance => match reply_to {
                        None => no(WithheldReason::NoReplyContact),
                        Some(t) => send(t),
                    },
                    SystemMessageKind::OptOutConfirmation | SystemMessageKind::HelpReply => {
                        match reply_to {
                            None => no(WithheldReason::NoReplyContact),
                            Some(t) if !is_phone(t) => no(WithheldReason::ReplyNotToAPhone),
                            Some(t) => send(t),
                        }
                    }
                    SystemMessageKind::AfterHoursReply
                    | SystemMessageKind::VisitConfirmed
                    | SystemMessageKind::VisitCancelled
                    | SystemMessageKind::RescheduleRequested => match reply_to {
                        None => no(WithheldReason::NoReplyContact),
                        Some(t) if !consent_on(medium_of(t)) => {
                            no(WithheldReason::NoConsentOnMedium)
                        }
                        Some(t) => send(t),
                    },
                    SystemMessageKind::OptInConfirmation => {
                        if !c.anything_on_sms() {
                            return no(WithheldReason::NoConsentOnMedium);
                        }
                        match reply_to {
                            Some(t) if !is_phone(t) => no(WithheldReason::ReplyNotToAPhone),
                            Some(t) => send(t),
                            None => {
                                let phones: Vec<&Contact> =
                                    on_file.iter().filter(|x| is_phone(x)).collect();
                                if phones.is_empty() {
                                    return no(WithheldReason::NoContactPoint);
                                }
                                for role in [
                                    ContactRole::Patient,
                                    ContactRole::Guardian,
                                    ContactRole::Caregiver,
                                ] {
                                    for x in &phones {
                                        if x.role == role && may_use(r, x.value.expose()) {
                                            return send(x);
                                        }
                                    }
                                }
                                no(WithheldReason::ExcludedByConfidentialRequest)
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_combination_of_policy_consent_restriction_and_kind() {
        let outgoing = outgoing_cases();
        let every_value = [
            OWN_PHONE,
            GUARDIAN_PHONE,
            CAREGIVER_PHONE,
            OWN_EMAIL,
            STRANGER_PHONE,
        ];
        let mut checked = 0usize;
        let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
        for consent_case in CONSENT_CASES {
            let c = consent(consent_case);
            for restriction_case in RESTRICTION_CASES {
                let r = restrictions(restriction_case);
                for contacts_case in CONTACTS_CASES {
                    let on_file = contacts(contacts_case);
                    for (content_route, forced, out) in &outgoing {
                        let got = route(out, &c.state, &r, &on_file);
                        let want = expected(out, consent_case, &c, restriction_case, &on_file);
                        assert_eq!(
                            got.delivery, want,
                            "{out:?} policy={content_route:?} forced={forced} \
                             consent={consent_case:?} restriction={restriction_case:?} \
                             contacts={contacts_case:?}\nexplanation: {:#?}",
                            got.explanation
                        );
                        // Invariants that hold whatever the rules say.
                        if let Delivery::DirectSms { to, basis } = &got.delivery {
                            assert!(*content_route == Route::Direct && !forced);
                            assert_eq!(to.kind, ContactKind::Phone);
                            assert_ne!(to.role, ContactRole::Caregiver);
                            assert!(matches!(out, Outgoing::Staff { purpose, .. }
                                if c.state.basis(ConsentChannel::SmsPlain, *purpose) == Some(*basis)));
                        }
                        if let Some(to) = got.delivery.recipient() {
                            let is_reply = matches!(out, Outgoing::System { reply_to: Some(t), .. } if t == to);
                            if !is_reply {
                                let medium = Medium::of(to.kind);
                                assert!(r.allows(to, medium).is_ok(), "restriction ignored");
                            }
                        }
                        assert!(!got.explanation.is_empty());
                        for line in &got.explanation {
                            for v in every_value {
                                assert!(!line.contains(v), "contact value in explanation: {line}");
                            }
                        }
                        *seen.entry(got.delivery.as_str()).or_default() += 1;
                        checked += 1;
                    }
                }
            }
        }
        // 2 routes × 2 forced × 8 consent × 6 restrictions × 4 contact sets ×
        // (3 purposes + 10 kinds × 4 reply_to × 4 code_target).
        assert_eq!(checked, 2 * 2 * 8 * 6 * 4 * (3 + 10 * 4 * 4));
        // Every outcome occurs somewhere in the table.
        for kind in [
            "direct_sms",
            "secure_with_notification",
            "portal_only",
            "system_send",
            "withheld",
        ] {
            assert!(
                seen.get(kind).copied().unwrap_or(0) > 0,
                "{kind} never seen"
            );
        }
    }

    // ---- named cases ---------------------------------------------------------------------

    fn staff(route: Route, forced: bool, purpose: ConsentPurpose) -> Outgoing {
        Outgoing::Staff {
            content_route: route,
            staff_forced_secure: forced,
            purpose,
        }
    }

    fn system(
        kind: SystemMessageKind,
        reply_to: Option<Contact>,
        code_target: Option<Contact>,
    ) -> Outgoing {
        Outgoing::System {
            kind,
            reply_to,
            code_target,
        }
    }

    const CARE: ConsentPurpose = ConsentPurpose::CareMessages;

    fn all_granted() -> ConsentState {
        consent(ConsentCase::AllGranted).state
    }

    fn everyone() -> Vec<Contact> {
        contacts(ContactsCase::Everyone)
    }

    #[test]
    fn direct_content_with_consent_goes_by_plain_sms_to_the_patients_own_phone() {
        let c = consent(ConsentCase::AllGranted);
        let routing = route(
            &staff(Route::Direct, false, CARE),
            &c.state,
            &Restrictions::none(),
            &everyone(),
        );
        assert_eq!(
            routing.delivery,
            Delivery::DirectSms {
                to: own_phone(),
                basis: c.granted(ConsentChannel::SmsPlain, CARE).unwrap()
            }
        );
        assert_eq!(
            routing.delivery.basis(),
            c.granted(ConsentChannel::SmsPlain, CARE)
        );
        assert!(
            routing
                .explanation
                .iter()
                .any(|l| l == "Sent by plain SMS to the patient's own phone")
        );
    }

    #[test]
    fn consent_revoked_means_no_plain_sms() {
        let mut history = vec![
            grant(ConsentChannel::SmsPlain, CARE),
            grant(ConsentChannel::SmsNotify, CARE),
        ];
        let (_, state) = build(history.clone());
        assert!(matches!(
            route(
                &staff(Route::Direct, false, CARE),
                &state,
                &Restrictions::none(),
                &everyone()
            )
            .delivery,
            Delivery::DirectSms { .. }
        ));
        history.push(ConsentEventInput::revoke(
            ConsentChannel::SmsPlain,
            CARE,
            ConsentMethod::FreeTextRequest,
        ));
        let (events, state) = build(history);
        let routing = route(
            &staff(Route::Direct, false, CARE),
            &state,
            &Restrictions::none(),
            &everyone(),
        );
        // Falls back to a content-free notification on the notify consent still in force.
        assert_eq!(
            routing.delivery,
            Delivery::SecureWithNotification {
                medium: Medium::Sms,
                to: own_phone(),
                basis: events[1].id
            }
        );
        assert!(
            routing
                .explanation
                .iter()
                .any(|l| l.contains("plain SMS for care messages: revoked"))
        );
        // After STOP nothing is texted for a staff message at all.
        let stop = sms_opt_out(&state, ConsentMethod::SmsKeyword);
        let mut inputs: Vec<_> = events.iter().map(ConsentEvent::input).collect();
        inputs.extend(stop);
        let (_, state) = build(inputs);
        let routing = route(
            &staff(Route::Direct, false, CARE),
            &state,
            &Restrictions::none(),
            &everyone(),
        );
        assert_eq!(
            routing.delivery,
            Delivery::PortalOnly {
                reason: WaitReason::NoNotifyConsent
            }
        );
    }

    #[test]
    fn secure_never_becomes_direct_sms_and_staff_can_only_raise_security() {
        let state = all_granted();
        for forced in [false, true] {
            let d = route(
                &staff(Route::Secure, forced, CARE),
                &state,
                &Restrictions::none(),
                &everyone(),
            )
            .delivery;
            assert!(
                matches!(
                    d,
                    Delivery::SecureWithNotification {
                        medium: Medium::Sms,
                        ..
                    }
                ),
                "{d:?}"
            );
        }
        let routing = route(
            &staff(Route::Direct, true, CARE),
            &state,
            &Restrictions::none(),
            &everyone(),
        );
        assert!(matches!(
            routing.delivery,
            Delivery::SecureWithNotification { .. }
        ));
        assert!(
            routing
                .explanation
                .iter()
                .any(|l| l == "Staff marked this message secure")
        );
    }

    #[test]
    fn restriction_overrides_consent() {
        let c = consent(ConsentCase::AllGranted);
        // "Never text me": consent to plain SMS and SMS notifications notwithstanding.
        let r = restrictions(RestrictionCase::NeverSms);
        let routing = route(
            &staff(Route::Direct, false, CARE),
            &c.state,
            &r,
            &everyone(),
        );
        assert_eq!(
            routing.delivery,
            Delivery::SecureWithNotification {
                medium: Medium::Email,
                to: own_email(),
                basis: c.granted(ConsentChannel::EmailNotify, CARE).unwrap()
            }
        );
        assert!(routing.explanation.iter().any(|l| l.starts_with(
            "the patient's own phone not used: the patient asked never to be texted (request "
        )));
        // "Not at my own phone": the guardian's phone gets the plain SMS instead.
        let r = restrictions(RestrictionCase::NeverOwnPhone);
        let d = route(
            &staff(Route::Direct, false, CARE),
            &c.state,
            &r,
            &everyone(),
        )
        .delivery;
        assert!(matches!(d, Delivery::DirectSms { ref to, .. } if *to == guardian_phone()));
        // Everything excluded: the message waits and staff are told why.
        let r = restrictions(RestrictionCase::EveryContactExcluded);
        let routing = route(
            &staff(Route::Direct, false, CARE),
            &c.state,
            &r,
            &everyone(),
        );
        assert_eq!(
            routing.delivery,
            Delivery::PortalOnly {
                reason: WaitReason::ExcludedByConfidentialRequest
            }
        );
        assert_eq!(
            routing.explanation.last().unwrap(),
            WaitReason::ExcludedByConfidentialRequest.staff_text()
        );
    }

    #[test]
    fn emergency_guidance_answers_despite_revoked_consent_and_restrictions() {
        let revoked = consent(ConsentCase::AllRevokedAfterGrant).state;
        for r in RESTRICTION_CASES {
            for from in [own_phone(), own_email(), guardian_phone()] {
                let d = route(
                    &system(
                        SystemMessageKind::EmergencyGuidance,
                        Some(from.clone()),
                        None,
                    ),
                    &revoked,
                    &restrictions(r),
                    &everyone(),
                )
                .delivery;
                assert_eq!(
                    d,
                    Delivery::SystemSend {
                        medium: Medium::of(from.kind),
                        to: from.clone()
                    }
                );
            }
        }
    }

    #[test]
    fn code_goes_only_to_its_target() {
        let state = all_granted();
        let none = Restrictions::none();
        // The reply contact is never used for a code.
        let d = route(
            &system(
                SystemMessageKind::OneTimeCode,
                Some(own_phone()),
                Some(own_email()),
            ),
            &state,
            &none,
            &everyone(),
        )
        .delivery;
        assert_eq!(
            d,
            Delivery::SystemSend {
                medium: Medium::Email,
                to: own_email()
            }
        );
        // No target: nothing, even though phones are consented.
        let d = route(
            &system(SystemMessageKind::OneTimeCode, Some(own_phone()), None),
            &state,
            &none,
            &everyone(),
        )
        .delivery;
        assert_eq!(
            d,
            Delivery::Withheld {
                reason: WithheldReason::NoCodeTarget
            }
        );
        // A target that is no longer on file: nothing.
        let d = route(
            &system(SystemMessageKind::OneTimeCode, None, Some(stranger_phone())),
            &state,
            &none,
            &everyone(),
        )
        .delivery;
        assert_eq!(
            d,
            Delivery::Withheld {
                reason: WithheldReason::CodeTargetNotOnFile
            }
        );
        // A target excluded since the link went: nothing, and no other contact instead.
        let r = restrictions(RestrictionCase::NeverOwnPhone);
        let d = route(
            &system(SystemMessageKind::OneTimeCode, None, Some(own_phone())),
            &state,
            &r,
            &everyone(),
        )
        .delivery;
        assert_eq!(
            d,
            Delivery::Withheld {
                reason: WithheldReason::ExcludedByConfidentialRequest
            }
        );
    }

    #[test]
    fn after_stop_only_opt_out_help_and_emergency_guidance_are_texted() {
        let (_, granted) = build(vec![
            grant(ConsentChannel::SmsPlain, CARE),
            grant(ConsentChannel::SmsNotify, CARE),
        ]);
        let mut inputs = vec![
            grant(ConsentChannel::SmsPlain, CARE),
            grant(ConsentChannel::SmsNotify, CARE),
        ];
        inputs.extend(sms_opt_out(&granted, ConsentMethod::SmsKeyword));
        let (_, stopped) = build(inputs);
        for kind in SystemMessageKind::ALL {
            let d = route(
                &system(kind, Some(own_phone()), Some(own_phone())),
                &stopped,
                &Restrictions::none(),
                &everyone(),
            )
            .delivery;
            let texted = matches!(
                d,
                Delivery::SystemSend {
                    medium: Medium::Sms,
                    ..
                }
            );
            let allowed = matches!(
                kind,
                SystemMessageKind::OptOutConfirmation
                    | SystemMessageKind::HelpReply
                    | SystemMessageKind::EmergencyGuidance
            );
            assert_eq!(texted, allowed, "{kind:?}: {d:?}");
        }
        // The opt-out confirmation goes to the number that opted out, here the guardian's.
        let d = route(
            &system(
                SystemMessageKind::OptOutConfirmation,
                Some(guardian_phone()),
                None,
            ),
            &stopped,
            &restrictions(RestrictionCase::OnlyOwnPhone),
            &everyone(),
        )
        .delivery;
        assert_eq!(
            d,
            Delivery::SystemSend {
                medium: Medium::Sms,
                to: guardian_phone()
            }
        );
    }

    #[test]
    fn notifications_prefer_the_patients_own_contact_and_caregivers_get_no_content() {
        let c = consent(ConsentCase::AllGranted);
        let none = Restrictions::none();
        // Only a caregiver's phone: no plain SMS, but a content-free notification.
        let routing = route(
            &staff(Route::Direct, false, CARE),
            &c.state,
            &none,
            &[caregiver_phone()],
        );
        assert_eq!(
            routing.delivery,
            Delivery::SecureWithNotification {
                medium: Medium::Sms,
                to: caregiver_phone(),
                basis: c.granted(ConsentChannel::SmsNotify, CARE).unwrap()
            }
        );
        assert!(
            routing
                .explanation
                .iter()
                .any(|l| l.starts_with("the caregiver's phone not used for plain SMS"))
        );
        // Own email before the guardian's phone.
        let d = route(
            &staff(Route::Secure, false, CARE),
            &c.state,
            &none,
            &[guardian_phone(), own_email()],
        )
        .delivery;
        assert!(matches!(
            d,
            Delivery::SecureWithNotification {
                medium: Medium::Email,
                ..
            }
        ));
    }

    #[test]
    fn every_wait_reason_is_reachable_and_explained() {
        let none = Restrictions::none();
        let cases = [
            (
                ConsentCase::AllRevokedAfterGrant,
                ContactsCase::Everyone,
                WaitReason::PortalDeclined,
            ),
            (
                ConsentCase::SmsPlainOnly,
                ContactsCase::Everyone,
                WaitReason::NoNotifyConsent,
            ),
            (
                ConsentCase::SmsNotifyOnly,
                ContactsCase::EmailOnly,
                WaitReason::NoContactPoint,
            ),
            (
                ConsentCase::NotifyBoth,
                ContactsCase::NoContacts,
                WaitReason::NoContactPoint,
            ),
        ];
        for (consent_case, contacts_case, reason) in cases {
            let routing = route(
                &staff(Route::Secure, false, CARE),
                &consent(consent_case).state,
                &none,
                &contacts(contacts_case),
            );
            assert_eq!(
                routing.delivery,
                Delivery::PortalOnly { reason },
                "{consent_case:?}"
            );
            assert_eq!(routing.explanation.last().unwrap(), reason.staff_text());
        }
        for r in WaitReason::ALL {
            assert_eq!(WaitReason::parse(r.as_str()), Some(r));
        }
        for r in WithheldReason::ALL {
            assert_eq!(WithheldReason::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn consent_for_another_purpose_does_not_count() {
        let c = consent(ConsentCase::OtherPurposeOnly);
        let none = Restrictions::none();
        let d = route(
            &staff(Route::Direct, false, ConsentPurpose::AppointmentReminders),
            &c.state,
            &none,
            &everyone(),
        )
        .delivery;
        assert!(matches!(d, Delivery::DirectSms { .. }));
        for purpose in [ConsentPurpose::CareMessages, ConsentPurpose::Announcements] {
            let d = route(
                &staff(Route::Direct, false, purpose),
                &c.state,
                &none,
                &everyone(),
            )
            .delivery;
            assert_eq!(
                d,
                Delivery::PortalOnly {
                    reason: WaitReason::NoNotifyConsent
                }
            );
        }
    }

    #[test]
    fn a_secure_message_notification_is_never_routed_alone() {
        let d = route(
            &system(
                SystemMessageKind::SecureMessageNotification,
                Some(own_phone()),
                Some(own_phone()),
            ),
            &all_granted(),
            &Restrictions::none(),
            &everyone(),
        )
        .delivery;
        assert_eq!(
            d,
            Delivery::Withheld {
                reason: WithheldReason::SentWithItsMessage
            }
        );
    }
}

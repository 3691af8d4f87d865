//! Planning one staff message: the channel policy judges the rendered text, the consent and
//! confidential-communication rules pick the delivery, and both explanations go to staff before
//! and after sending. Pure: the caller reads the facts and stores the plan.

use serde::Serialize;

use crate::confidential::{ConfidentialRequest, Restrictions};
use crate::consent::{ConsentChannel, ConsentEvent, ConsentPurpose, ConsentState, Medium};
use crate::patient::Contact;
use crate::permissions::ContentKind;
use crate::policy::{self, ClassifyContext, Decision, FilledValue, Reason, Route};
use crate::routing::{self, Delivery, Outgoing, Routing};

/// What staff wrote, before routing.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    pub text: &'a str,
    pub has_attachment: bool,
    /// Values a template filled in (empty for free text).
    pub filled: Vec<FilledValue>,
    /// Staff chose the secure route (more secure is always allowed; less never is).
    pub force_secure: bool,
    pub purpose: ConsentPurpose,
    /// Staff's own label; by default a text the policy keeps secure is clinical.
    pub kind: Option<ContentKind>,
}

/// The patient's side of the decision.
#[derive(Debug, Clone, Copy)]
pub struct PatientFacts<'a> {
    pub consent: &'a [ConsentEvent],
    pub confidential: &'a [ConfidentialRequest],
    pub contacts: &'a [Contact],
    pub sender_name: &'a str,
}

/// The whole decision for one message.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The content policy's decision, with staff's choice applied.
    pub decision: Decision,
    #[serde(skip)]
    pub routing: Routing,
    pub delivery: &'static str,
    /// Why it goes where it goes, in words for staff (never a contact value).
    pub explanation: Vec<String>,
    #[serde(skip)]
    pub kind: ContentKind,
}

impl Plan {
    /// The consent channel a queued send relies on, re-checked when the worker claims it.
    pub fn consent_channel(&self) -> Option<ConsentChannel> {
        match &self.routing.delivery {
            Delivery::DirectSms { .. } => Some(ConsentChannel::SmsPlain),
            Delivery::SecureWithNotification {
                medium: Medium::Sms,
                ..
            } => Some(ConsentChannel::SmsNotify),
            Delivery::SecureWithNotification {
                medium: Medium::Email,
                ..
            } => Some(ConsentChannel::EmailNotify),
            _ => None,
        }
    }
}

/// The most SMS segments a direct text may take (GSM-7: 4 x 153 characters; UCS-2, e.g. with
/// an accent or an emoji: 4 x 67).
pub const MAX_DIRECT_SEGMENTS: usize = 4;

pub fn plan_staff_message(draft: &Draft<'_>, patient: &PatientFacts<'_>) -> Plan {
    let ctx = ClassifyContext {
        has_attachment: draft.has_attachment,
        values: draft.filled.clone(),
        sender_name: Some(patient.sender_name.to_owned()),
    };
    let mut decision = policy::classify(draft.text, &ctx);
    let segments = crate::system_messages::sms_segments(draft.text);
    if decision.route == Route::Direct && segments > MAX_DIRECT_SEGMENTS {
        // Carriers split and may reorder long texts, and each part is billed: a long message
        // goes through the portal instead (more secure, never less).
        decision.route = Route::Secure;
        decision.reasons.push(Reason {
            rule: "segment_limit".into(),
            matched_text: String::new(),
            explanation: format!(
                "too long for a text ({segments} SMS segments; at most {MAX_DIRECT_SEGMENTS})"
            ),
        });
    }
    if draft.force_secure && decision.route == Route::Direct {
        decision.route = Route::Secure;
        decision.reasons.push(Reason {
            rule: "staff_choice".into(),
            matched_text: String::new(),
            explanation: "marked secure by staff".into(),
        });
    }
    let outgoing = Outgoing::Staff {
        content_route: decision.route,
        staff_forced_secure: draft.force_secure,
        purpose: draft.purpose,
    };
    let state = ConsentState::from_history(patient.consent);
    let restrictions = Restrictions::from_requests(patient.confidential);
    let routing = routing::route(&outgoing, &state, &restrictions, patient.contacts);
    let kind = draft.kind.unwrap_or(match decision.route {
        Route::Secure => ContentKind::Clinical,
        Route::Direct => ContentKind::Administrative,
    });
    Plan {
        delivery: routing.delivery.as_str(),
        explanation: routing.explanation.clone(),
        decision,
        routing,
        kind,
    }
}

/// The kind of a patient's own message, for who may read it: what the policy would keep
/// secure is clinical.
pub fn inbound_kind(text: &str) -> ContentKind {
    match policy::classify(text, &ClassifyContext::default()).route {
        Route::Secure => ContentKind::Clinical,
        Route::Direct => ContentKind::Administrative,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{ConsentAction, ConsentEventInput, ConsentMethod, ConsentTextRef};
    use crate::patient::{ContactKind, ContactRole};
    use crate::{ConsentEventId, Sensitive};

    fn phone() -> Contact {
        Contact {
            kind: ContactKind::Phone,
            value: Sensitive::new("+15555550101".into()),
            role: ContactRole::Patient,
        }
    }

    fn grant(channel: ConsentChannel) -> ConsentEvent {
        ConsentEvent::new(
            ConsentEventId::new(),
            time::OffsetDateTime::UNIX_EPOCH,
            None,
            ConsentEventInput {
                channel,
                purpose: ConsentPurpose::CareMessages,
                action: ConsentAction::Grant,
                method: ConsentMethod::IntakeForm,
                consent_text: Some(ConsentTextRef {
                    version: "v1".into(),
                    sha256_hex: "0".repeat(64),
                }),
                sms_risk_acknowledged: true,
            },
        )
    }

    fn draft(text: &str) -> Draft<'_> {
        Draft {
            text,
            has_attachment: false,
            filled: Vec::new(),
            force_secure: false,
            purpose: ConsentPurpose::CareMessages,
            kind: None,
        }
    }

    #[test]
    fn a_safe_text_with_plain_sms_consent_goes_direct_and_records_its_basis() {
        let consent = [grant(ConsentChannel::SmsPlain)];
        let contacts = [phone()];
        let facts = PatientFacts {
            consent: &consent,
            confidential: &[],
            contacts: &contacts,
            sender_name: "Oak Street Clinic",
        };
        let plan = plan_staff_message(&draft("Please call the office when you can."), &facts);
        assert_eq!(plan.decision.route, Route::Direct);
        assert_eq!(plan.delivery, "direct_sms");
        assert_eq!(plan.routing.delivery.basis(), Some(consent[0].id));
        assert_eq!(plan.consent_channel(), Some(ConsentChannel::SmsPlain));
        assert_eq!(plan.kind, ContentKind::Administrative);
    }

    #[test]
    fn a_safe_text_too_long_for_four_segments_goes_secure() {
        let consent = [
            grant(ConsentChannel::SmsPlain),
            grant(ConsentChannel::SmsNotify),
        ];
        let contacts = [phone()];
        let facts = PatientFacts {
            consent: &consent,
            confidential: &[],
            contacts: &contacts,
            sender_name: "Oak Street Clinic",
        };
        let sentence = "Please call the office when you can. ";
        let fits = sentence.repeat(16); // 592 GSM-7 characters: 4 segments
        let plan = plan_staff_message(&draft(fits.trim_end()), &facts);
        assert_eq!(plan.decision.route, Route::Direct);
        let long = sentence.repeat(17); // 629 characters: 5 segments
        let plan = plan_staff_message(&draft(long.trim_end()), &facts);
        assert_eq!(plan.decision.route, Route::Secure);
        assert!(
            plan.decision
                .reasons
                .iter()
                .any(|r| r.rule == "segment_limit")
        );
        // An emoji makes the text UCS-2 (67 characters a segment).
        let emoji = format!("{} 🙂", sentence.repeat(8).trim_end());
        assert_eq!(crate::system_messages::sms_segments(&emoji), 5);
        let plan = plan_staff_message(&draft(&emoji), &facts);
        assert_eq!(plan.decision.route, Route::Secure);
    }

    #[test]
    fn staff_can_make_a_message_secure_and_then_it_is_announced_not_sent() {
        let consent = [
            grant(ConsentChannel::SmsPlain),
            grant(ConsentChannel::SmsNotify),
        ];
        let contacts = [phone()];
        let facts = PatientFacts {
            consent: &consent,
            confidential: &[],
            contacts: &contacts,
            sender_name: "Oak Street Clinic",
        };
        let mut d = draft("Please call the office when you can.");
        d.force_secure = true;
        let plan = plan_staff_message(&d, &facts);
        assert_eq!(plan.decision.route, Route::Secure);
        assert!(
            plan.decision
                .reasons
                .iter()
                .any(|r| r.rule == "staff_choice")
        );
        assert_eq!(plan.delivery, "secure_with_notification");
        assert_eq!(plan.consent_channel(), Some(ConsentChannel::SmsNotify));
    }

    #[test]
    fn clinical_content_never_goes_direct_even_with_every_consent() {
        let consent = [
            grant(ConsentChannel::SmsPlain),
            grant(ConsentChannel::SmsNotify),
        ];
        let contacts = [phone()];
        let facts = PatientFacts {
            consent: &consent,
            confidential: &[],
            contacts: &contacts,
            sender_name: "Oak Street Clinic",
        };
        let plan = plan_staff_message(
            &draft("Your metformin refill was sent to the pharmacy."),
            &facts,
        );
        assert_eq!(plan.decision.route, Route::Secure);
        assert_ne!(plan.delivery, "direct_sms");
        assert_eq!(plan.kind, ContentKind::Clinical);
        assert_eq!(
            inbound_kind("my metformin makes me dizzy"),
            ContentKind::Clinical
        );
    }
}

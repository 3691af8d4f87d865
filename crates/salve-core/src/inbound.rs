//! What a patient's text does: the keyword meaning ([`crate::keywords`]) turned into consent
//! changes, the one system reply it calls for, and a review item when a person should look.
//!
//! - An opt-out revokes texting for the whole practice (every SMS channel and purpose) for
//!   every patient whose phone on file sent it, in the transaction that stores the text.
//! - Exactly one confirmation follows. Whether the provider already sent it is decided per
//!   text: a provider with its own keyword handling (Twilio's default) confirms only a bare
//!   English keyword, or says so (`OptOutType` under Twilio's Advanced Opt-Out); then Salve
//!   records the provider's confirmation and sends none. Otherwise (PARAR, "stop pls", free
//!   text) Salve confirms.
//! - HELP gets the help text; START (or YES with no reminder awaiting) restores texting
//!   notifications the patient had before, and is confirmed only when something was restored.
//!   An opt-in the classifier marks for review changes nothing until staff decide; an unclear
//!   opt-out is applied (revoking is the safe direction) and also reviewed.
//! - Every text is also assessed for urgency ([`crate::urgency`]), whatever its intent: an
//!   urgent one gets the emergency guidance at any hour and whatever the consent state, and is
//!   flagged to staff. That is the server's to do; `Reaction::urgent` carries the assessment.

use crate::consent::{
    ConsentEventInput, ConsentMethod, ConsentState, ConsentTextRef, sms_keyword_opt_in, sms_opt_out,
};
use crate::keywords::{
    self, Classification, InboundContext, Intent, twilio_default_help_keyword,
    twilio_default_opt_in_keyword, twilio_default_opt_out_keyword,
};
use crate::system_messages::{Language, SystemMessageKind};
use crate::urgency::{self, Urgency};

/// What the provider told us, and what it does by itself.
#[derive(Debug, Clone, Default)]
pub struct ProviderFacts {
    /// The provider answers STOP/START/HELP itself (Twilio's default opt-out handling).
    pub handles_opt_out_keywords: bool,
    /// Twilio Advanced Opt-Out: the keyword class it matched (`STOP`, `START`, `HELP`).
    pub opt_out_type: Option<String>,
}

/// The decision for one text.
#[derive(Debug, Clone)]
pub struct Reaction {
    pub classification: Classification,
    /// The system reply Salve sends, if any.
    pub reply: Option<SystemMessageKind>,
    /// The provider already answered: recorded, not sent again.
    pub provider_replied: Option<SystemMessageKind>,
    pub language: Language,
    /// Whether the text suggests an emergency (checked before any after-hours de-duplication):
    /// then `SystemMessageKind::EmergencyGuidance` goes out too, at any hour.
    pub urgent: Urgency,
}

impl Reaction {
    /// The emergency reply this text gets, at any hour and whatever the consent state: the
    /// emergency guidance for every urgent text, however it was found urgent (the rules, the
    /// learned model alone, or both) and whether or not the rules saw a crisis. Its one wording
    /// names both 911 and 988 (`system_messages`), so an emergency only the model recognised,
    /// which has no `crisis` flag (that comes from the rules), still hears of 988.
    pub fn emergency_reply(&self) -> Option<SystemMessageKind> {
        self.urgent
            .urgent
            .then_some(SystemMessageKind::EmergencyGuidance)
    }

    /// Whether this text gets the after-hours reply (whether its conversation already had one
    /// in the last twelve hours is the store's to say): the office is closed, the text is
    /// ordinary free text that nothing else answers (no emergency guidance, keyword reply or
    /// reminder answer), and the patient texted under consent to SMS (it answers their own
    /// text on the channel they chose).
    pub fn wants_after_hours_reply(
        &self,
        office_closed: bool,
        answers_a_reminder: bool,
        texted_under_sms_consent: bool,
    ) -> bool {
        office_closed
            && !self.urgent.urgent
            && self.reply.is_none()
            && !answers_a_reminder
            && self.classification.intent == Intent::Other
            && texted_under_sms_consent
    }
}

fn provider_matched(facts: &ProviderFacts, class: &str, bare_keyword: bool) -> bool {
    facts.handles_opt_out_keywords
        && (facts
            .opt_out_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(class))
            || (facts.opt_out_type.is_none() && bare_keyword))
}

/// Spanish words that choose the Spanish wording of the reply.
const SPANISH_MARKERS: &[&str] = &[
    "parar", "alto", "baja", "ayuda", "dejen", "manden", "mandar", "mensajes", "textos", "favor",
    "quiero", "quitenme", "quiteme", "comenzar", "basta", "gracias",
];

/// The language to answer in: Spanish when the text reads Spanish, else English.
pub fn reply_language(text: &str) -> Language {
    let lower = text.to_lowercase();
    let spanish = lower
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| SPANISH_MARKERS.contains(&w));
    if spanish { Language::Es } else { Language::En }
}

/// Decides what a text does (before looking at anyone's consent).
pub fn react(text: &str, ctx: &InboundContext, provider: &ProviderFacts) -> Reaction {
    let classification = keywords::classify(text, ctx);
    let (kind, provider_did) = match classification.intent {
        Intent::OptOut => (
            Some(SystemMessageKind::OptOutConfirmation),
            provider_matched(provider, "STOP", twilio_default_opt_out_keyword(text)),
        ),
        Intent::Help => (
            Some(SystemMessageKind::HelpReply),
            provider_matched(provider, "HELP", twilio_default_help_keyword(text)),
        ),
        // An unclear opt-in ("Sí", "start texting me again?") waits for staff: texting
        // someone who did not clearly ask again would break the opt-out.
        Intent::OptIn if classification.review => (None, false),
        Intent::OptIn => (
            Some(SystemMessageKind::OptInConfirmation),
            provider_matched(provider, "START", twilio_default_opt_in_keyword(text)),
        ),
        Intent::Other => (None, false),
    };
    let (reply, provider_replied) = if provider_did {
        (None, kind)
    } else {
        (kind, None)
    };
    Reaction {
        classification,
        reply,
        provider_replied,
        language: reply_language(text),
        urgent: urgency::assess(text),
    }
}

/// The consent events a text records for one patient whose phone sent it.
/// `program_text`: the SMS consent text a START opts back in to.
pub fn consent_events(
    reaction: &Reaction,
    state: &ConsentState,
    program_text: Option<&ConsentTextRef>,
) -> Vec<ConsentEventInput> {
    match reaction.classification.intent {
        Intent::OptOut => sms_opt_out(state, opt_out_method(&reaction.classification)),
        Intent::OptIn if reaction.classification.review => Vec::new(),
        Intent::OptIn => program_text
            .map(|text| sms_keyword_opt_in(state, text))
            .unwrap_or_default(),
        Intent::Help | Intent::Other => Vec::new(),
    }
}

/// A keyword (STOP, PARAR) is recorded as such; anything else was a request in the patient's
/// own words.
fn opt_out_method(classification: &Classification) -> ConsentMethod {
    if classification
        .reasons
        .iter()
        .any(|r| r.as_str().starts_with("whole-message keyword "))
    {
        ConsentMethod::SmsKeyword
    } else {
        ConsentMethod::FreeTextRequest
    }
}

/// Whether an opt-in is confirmed: only when it restored something (a START from someone who
/// never consented grants nothing, and "you're subscribed" would be untrue).
pub fn confirm_opt_in(events_recorded: usize) -> bool {
    events_recorded > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConsentEventId;
    use crate::consent::{ConsentAction, ConsentChannel, ConsentEvent, ConsentPurpose};

    fn twilio_default() -> ProviderFacts {
        ProviderFacts {
            handles_opt_out_keywords: true,
            opt_out_type: None,
        }
    }

    fn none() -> InboundContext {
        InboundContext::default()
    }

    #[test]
    fn the_after_hours_reply_answers_only_ordinary_text_while_closed() {
        let r = react(
            "Can I get a refill of my usual prescription?",
            &none(),
            &twilio_default(),
        );
        assert!(r.wants_after_hours_reply(true, false, true));
        // Open, a reminder answer, or no SMS consent: none.
        assert!(!r.wants_after_hours_reply(false, false, true));
        assert!(!r.wants_after_hours_reply(true, true, true));
        assert!(!r.wants_after_hours_reply(true, false, false));
        // An opt-out gets its confirmation, an emergency its guidance, never this reply.
        let stop = react("PARAR", &none(), &twilio_default());
        assert!(!stop.wants_after_hours_reply(true, false, true));
        let urgent = react(
            "my dad has crushing chest pain and is sweating",
            &none(),
            &twilio_default(),
        );
        assert!(urgent.emergency_reply().is_some());
        assert!(!urgent.wants_after_hours_reply(true, false, true));
    }

    #[test]
    fn twilio_confirms_a_bare_english_stop_and_salve_records_it() {
        let r = react("STOP", &none(), &twilio_default());
        assert_eq!(r.reply, None);
        assert_eq!(
            r.provider_replied,
            Some(SystemMessageKind::OptOutConfirmation)
        );
        let r = react("  stop ", &none(), &twilio_default());
        assert_eq!(r.reply, None, "Twilio trims whitespace and ignores case");
    }

    #[test]
    fn salve_confirms_what_twilio_does_not() {
        for text in ["PARAR", "stop pls", "please stop texting me", "STOP!!"] {
            let r = react(text, &none(), &twilio_default());
            assert_eq!(
                r.classification.intent,
                Intent::OptOut,
                "{text}: {:?}",
                r.classification
            );
            assert_eq!(
                r.reply,
                Some(SystemMessageKind::OptOutConfirmation),
                "{text}"
            );
            assert_eq!(r.provider_replied, None, "{text}");
        }
        assert_eq!(
            react("PARAR", &none(), &twilio_default()).language,
            Language::Es
        );
    }

    #[test]
    fn advanced_opt_out_says_what_it_matched() {
        let facts = ProviderFacts {
            handles_opt_out_keywords: true,
            opt_out_type: Some("STOP".into()),
        };
        let r = react("PARAR", &none(), &facts);
        assert_eq!(r.reply, None, "the provider said it handled this one");
        assert_eq!(
            r.provider_replied,
            Some(SystemMessageKind::OptOutConfirmation)
        );
        // Advanced Opt-Out with custom keywords says nothing for a text it did not match.
        let facts = ProviderFacts {
            handles_opt_out_keywords: true,
            opt_out_type: Some("HELP".into()),
        };
        assert_eq!(
            react("stop", &none(), &facts).reply,
            Some(SystemMessageKind::OptOutConfirmation)
        );
    }

    #[test]
    fn without_provider_handling_salve_always_confirms() {
        let r = react("STOP", &none(), &ProviderFacts::default());
        assert_eq!(r.reply, Some(SystemMessageKind::OptOutConfirmation));
        let r = react("HELP", &none(), &ProviderFacts::default());
        assert_eq!(r.reply, Some(SystemMessageKind::HelpReply));
        let r = react(
            "cancel my appointment tuesday",
            &none(),
            &ProviderFacts::default(),
        );
        assert_eq!(r.reply, None);
    }

    #[test]
    fn every_text_is_assessed_for_urgency_whatever_its_intent() {
        let r = react("STOP, I can't breathe", &none(), &ProviderFacts::default());
        assert_eq!(r.classification.intent, Intent::OptOut);
        assert!(r.urgent.urgent);
        let r = react("quiero matarme", &none(), &ProviderFacts::default());
        assert!(r.urgent.urgent && r.urgent.crisis);
        assert_eq!(r.reply, None, "the emergency reply is the server's to add");
        assert!(!react("C", &none(), &ProviderFacts::default()).urgent.urgent);
    }

    #[test]
    fn every_urgent_text_gets_the_guidance_naming_911_and_988() {
        let p = ProviderFacts::default();
        // A crisis the rules read.
        let r = react("quiero matarme", &none(), &p);
        assert_eq!(
            r.emergency_reply(),
            Some(SystemMessageKind::EmergencyGuidance)
        );
        // Urgent by the model alone (a possible overdose no rule lists): no rule, so no crisis
        // flag; the same guidance, which names 988 too.
        let text = "I took something I shouldn't have and I feel weird";
        let rules = crate::urgency::assess_rules(text);
        let score = crate::urgency::model::score(text);
        assert!(
            !rules.urgent && score >= crate::urgency::model::threshold(),
            "no longer model-only ({:?}, score {score}): pick another text",
            rules.reasons
        );
        let r = react(text, &none(), &p);
        assert!(r.urgent.urgent && !r.urgent.crisis);
        assert_eq!(
            r.emergency_reply(),
            Some(SystemMessageKind::EmergencyGuidance)
        );
        // A calm text gets none.
        assert_eq!(
            react("can I move my appointment", &none(), &p).emergency_reply(),
            None
        );
    }

    fn granted(channel: ConsentChannel, purpose: ConsentPurpose) -> ConsentEvent {
        ConsentEvent::new(
            ConsentEventId::new(),
            time::OffsetDateTime::UNIX_EPOCH,
            None,
            ConsentEventInput {
                channel,
                purpose,
                action: ConsentAction::Grant,
                method: ConsentMethod::IntakeForm,
                consent_text: Some(program()),
                sms_risk_acknowledged: channel == ConsentChannel::SmsPlain,
            },
        )
    }

    fn program() -> ConsentTextRef {
        ConsentTextRef {
            version: "2026-01".into(),
            sha256_hex: "ab".repeat(32),
        }
    }

    #[test]
    fn an_opt_out_revokes_every_sms_channel_and_start_restores_notifications_only() {
        let history = vec![
            granted(ConsentChannel::SmsPlain, ConsentPurpose::CareMessages),
            granted(ConsentChannel::SmsNotify, ConsentPurpose::CareMessages),
        ];
        let state = ConsentState::from_history(&history);
        let stop = react("STOP", &none(), &ProviderFacts::default());
        let events = consent_events(&stop, &state, Some(&program()));
        assert!(!events.is_empty());
        assert!(events.iter().all(|e| e.action == ConsentAction::Revoke));
        assert!(events.iter().all(|e| e.method == ConsentMethod::SmsKeyword));
        let words = react("please stop texting me", &none(), &ProviderFacts::default());
        assert!(
            consent_events(&words, &state, None)
                .iter()
                .all(|e| e.method == ConsentMethod::FreeTextRequest)
        );
        assert!(events.iter().any(|e| e.channel == ConsentChannel::SmsPlain));
        let mut after = history.clone();
        for e in events {
            after.push(ConsentEvent::new(
                ConsentEventId::new(),
                time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1),
                None,
                e,
            ));
        }
        let state = ConsentState::from_history(&after);
        let start = react("START", &none(), &ProviderFacts::default());
        let events = consent_events(&start, &state, Some(&program()));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].channel, ConsentChannel::SmsNotify);
        assert!(confirm_opt_in(events.len()));
        // An unclear opt-in grants nothing: staff review it.
        let unclear = react("Sí", &none(), &ProviderFacts::default());
        if unclear.classification.intent == Intent::OptIn {
            assert!(unclear.classification.review);
            assert!(consent_events(&unclear, &state, Some(&program())).is_empty());
            assert_eq!(unclear.reply, None);
        }
        // Someone who never consented: START grants nothing and is not confirmed.
        let nobody = ConsentState::from_history(&[]);
        assert!(consent_events(&start, &nobody, Some(&program())).is_empty());
        assert!(!confirm_opt_in(0));
    }
}

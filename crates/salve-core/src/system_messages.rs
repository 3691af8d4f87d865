//! System messages: the closed set of texts Salve sends on its own, with fixed, reviewed wording
//! in English and Spanish. Only practice fields (sender name, phone, hours, expected reply time,
//! on-call number) and a one-time code or secure link are filled in; no template takes any
//! patient data, so none of them can carry PHI. They skip the content policy (their wording is
//! reviewed here, once) but not routing: see `routing.rs` for who may receive each.
//!
//! The wording uses only the GSM 03.38 alphabet in both languages (the Spanish avoids á, í, ó,
//! ú, which that alphabet lacks, without giving up correct Spanish), so a text with plain
//! practice fields fits in two segments of 153 characters. A practice field outside the alphabet
//! turns the whole text into UCS-2 (67 characters a segment);
//! [`PracticeFields::validate`] refuses fields that would then need more than two segments: in
//! practice the texted sender name and the other fields should avoid á, í, ó, ú ("Clinica San
//! José" fits; "Clínica San José" makes the opt-in confirmation three segments).
//! Changing any wording means changing the golden tests below: that is the review.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::links::CODE_TTL;
use crate::validation::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemMessageKind {
    /// Answers STOP: sent once, to the number that opted out.
    OptOutConfirmation,
    /// Answers START, or confirms SMS consent just recorded.
    OptInConfirmation,
    /// Answers HELP.
    HelpReply,
    /// A one-time code for opening a secure link.
    OneTimeCode,
    /// Answers a patient's message outside office hours.
    AfterHoursReply,
    /// "If this is an emergency, call 911. For a mental health crisis, call or text 988":
    /// answers a patient's own message (an urgent-looking text gets it at any hour).
    EmergencyGuidance,
    /// The content-free "New secure message from {sender}: {link}".
    SecureMessageNotification,
    /// Answers C (or another confirm word) to a reminder.
    VisitConfirmed,
    /// Answers X to a reminder: this visit is cancelled (not the texts).
    VisitCancelled,
    /// Answers R to a reminder: staff will call to find a new time.
    RescheduleRequested,
}

impl SystemMessageKind {
    pub const ALL: [SystemMessageKind; 10] = [
        SystemMessageKind::OptOutConfirmation,
        SystemMessageKind::OptInConfirmation,
        SystemMessageKind::HelpReply,
        SystemMessageKind::OneTimeCode,
        SystemMessageKind::AfterHoursReply,
        SystemMessageKind::EmergencyGuidance,
        SystemMessageKind::SecureMessageNotification,
        SystemMessageKind::VisitConfirmed,
        SystemMessageKind::VisitCancelled,
        SystemMessageKind::RescheduleRequested,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptOutConfirmation => "opt_out_confirmation",
            Self::OptInConfirmation => "opt_in_confirmation",
            Self::HelpReply => "help_reply",
            Self::OneTimeCode => "one_time_code",
            Self::AfterHoursReply => "after_hours_reply",
            Self::EmergencyGuidance => "emergency_guidance",
            Self::SecureMessageNotification => "secure_message_notification",
            Self::VisitConfirmed => "visit_confirmed",
            Self::VisitCancelled => "visit_cancelled",
            Self::RescheduleRequested => "reschedule_requested",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// What must be passed as `extra` to [`render`].
    pub fn needs(self) -> ExtraKind {
        match self {
            Self::OneTimeCode => ExtraKind::Code,
            Self::SecureMessageNotification => ExtraKind::Link,
            _ => ExtraKind::None,
        }
    }
}

impl fmt::Display for SystemMessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The languages system messages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    En,
    Es,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::En, Language::Es];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Es => "es",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == raw)
    }

    /// The language for a patient's preferred-language tag (`es`, `es-MX`, ...); English for
    /// any language without reviewed wording.
    pub fn for_tag(tag: &str) -> Self {
        let primary = tag.split('-').next().unwrap_or("");
        if primary.eq_ignore_ascii_case("es") {
            Self::Es
        } else {
            Self::En
        }
    }
}

/// The practice's own words filled into the wording, in the message's language (the caller
/// picks the practice's English or Spanish hours text). None of them is patient data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PracticeFields {
    /// The name shown in texts, already checked by the content policy ("Oak Street Clinic").
    pub sender_name: String,
    /// The office number patients call.
    pub phone: String,
    /// "Mon-Fri 8am-5pm" / "lun. a vie., 8 a 17 h".
    pub hours_text: String,
    /// Completes "We will reply ...": "within 1 business day" / "en un plazo de 24 horas".
    pub expected_reply_text: String,
    /// For urgent questions out of hours, if the practice has an on-call line.
    pub on_call_number: Option<String>,
}

pub const MAX_SENDER_NAME_CHARS: usize = 30;
pub const MAX_PHONE_CHARS: usize = 20;
pub const MAX_HOURS_CHARS: usize = 50;
pub const MAX_EXPECTED_REPLY_CHARS: usize = 30;
/// A secure link: the practice's public URL plus a 43-character token.
pub const MAX_LINK_CHARS: usize = 200;
/// The link length [`PracticeFields::validate`] plans for.
pub const PLANNED_LINK_CHARS: usize = 100;
pub const MAX_SEGMENTS: usize = 2;

impl PracticeFields {
    /// Checks each field, then that every system message in `lang` fits in two segments with
    /// these fields (planning for an 8-digit code and a 100-character link).
    pub fn validate(&self, lang: Language) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |field: &str, value: &str, max: usize| {
            let ok = !value.trim().is_empty()
                && value.trim() == value
                && value.chars().count() <= max
                && !value
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '{' | '}'));
            if !ok {
                errors.push(FieldError::new(
                    field,
                    format!("one line of 1 to {max} characters, without braces"),
                ));
            }
        };
        check("sender_name", &self.sender_name, MAX_SENDER_NAME_CHARS);
        check("phone", &self.phone, MAX_PHONE_CHARS);
        check("hours_text", &self.hours_text, MAX_HOURS_CHARS);
        check(
            "expected_reply_text",
            &self.expected_reply_text,
            MAX_EXPECTED_REPLY_CHARS,
        );
        if let Some(on_call) = &self.on_call_number {
            check("on_call_number", on_call, MAX_PHONE_CHARS);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let link = format!("https://{}", "x".repeat(PLANNED_LINK_CHARS - 8));
        for kind in SystemMessageKind::ALL {
            let extra = match kind.needs() {
                ExtraKind::None => Extra::None,
                ExtraKind::Code => Extra::Code("12345678"),
                ExtraKind::Link => Extra::Link(&link),
            };
            let text = render(kind, lang, self, extra)
                .map_err(|_| vec![FieldError::new("practice_fields", "fields that render")])?;
            if sms_segments(&text) > MAX_SEGMENTS {
                errors.push(FieldError::new(
                    "practice_fields",
                    format!(
                        "shorter texts: the {} message would need more than {MAX_SEGMENTS} SMS \
                         segments (letters such as á, í, ó, ú or emoji halve the room)",
                        kind.as_str()
                    ),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraKind {
    None,
    Code,
    Link,
}

/// The per-message value: a one-time code or a secure link, or nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Extra<'a> {
    None,
    Code(&'a str),
    Link(&'a str),
}

impl fmt::Debug for Extra<'_> {
    // A code or link is a credential: never in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Code(_) => "Code([redacted])",
            Self::Link(_) => "Link([redacted])",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("this system message needs {0:?} as its extra value")]
    WrongExtra(ExtraKind),
    #[error("a one-time code is 4 to 10 digits")]
    BadCode,
    #[error("a secure link is an http(s) URL of at most {MAX_LINK_CHARS} characters")]
    BadLink,
}

fn wording(kind: SystemMessageKind, lang: Language) -> &'static str {
    use Language::*;
    use SystemMessageKind::*;
    match (kind, lang) {
        (OptOutConfirmation, En) => {
            "{sender}: You are unsubscribed and will get no more texts from us. Reply START to \
             get texts again. Questions? Call {phone}."
        }
        (OptOutConfirmation, Es) => {
            "{sender}: Ya no le enviaremos mensajes de texto. Para volver a recibirlos, responda \
             START. Preguntas: llame al {phone}."
        }
        (OptInConfirmation, En) => {
            "{sender}: You will now get texts from us. Msg frequency varies. Msg & data rates \
             may apply. Reply HELP for help, STOP to opt out."
        }
        (OptInConfirmation, Es) => {
            "{sender}: Le enviaremos mensajes de texto. Frecuencia variable. Pueden aplicarse \
             tarifas de mensajes y datos. Responda HELP para ayuda o STOP para cancelar."
        }
        (HelpReply, En) => {
            "{sender}: For help, call {phone} ({hours}). Msg & data rates may apply. Reply STOP \
             to opt out. If this is an emergency, call 911."
        }
        (HelpReply, Es) => {
            "{sender}: Para ayuda, llame al {phone} ({hours}). Pueden aplicarse tarifas de \
             mensajes y datos. Responda STOP para cancelar. Si es una emergencia, llame al 911."
        }
        (OneTimeCode, En) => {
            "{sender}: Your verification code is {code}. It expires in {minutes} minutes. Do \
             not share it with anyone."
        }
        (OneTimeCode, Es) => {
            "{sender}: Su clave de acceso es {code}. Vence en {minutes} minutos. No la comparta \
             con nadie."
        }
        (AfterHoursReply, En) => {
            "{sender}: We got your message. Our office is closed now; our hours are {hours}. We \
             will reply {expected}. If this is an emergency, call 911.{on_call}"
        }
        (AfterHoursReply, Es) => {
            "{sender}: Recibimos su mensaje. Ahora estamos cerrados; nuestro horario es {hours}. \
             Le responderemos {expected}. Si es una emergencia, llame al 911.{on_call}"
        }
        (EmergencyGuidance, En) => {
            "{sender}: If this is an emergency, call 911. For a mental health crisis, call or \
             text 988. Messages are not for emergencies and may not be read right away.{on_call}"
        }
        (EmergencyGuidance, Es) => {
            "{sender}: Si es una emergencia, llame al 911. Para una crisis de salud mental, llame \
             o mande un mensaje de texto al 988. Los mensajes no son para emergencias y puede que \
             no se lean de inmediato.{on_call}"
        }
        (SecureMessageNotification, En) => "New secure message from {sender}: {link}",
        (SecureMessageNotification, Es) => "Nuevo mensaje seguro de {sender}: {link}",
        (VisitConfirmed, En) => {
            "{sender}: Thank you, your visit is confirmed. To change it, call {phone}."
        }
        (VisitConfirmed, Es) => {
            "{sender}: Gracias, su cita esta confirmada. Para cambiarla, llame al {phone}."
        }
        (VisitCancelled, En) => {
            "{sender}: Your visit is cancelled as you asked. To book again, call {phone}."
        }
        (VisitCancelled, Es) => {
            "{sender}: Su cita quedo cancelada como pidio. Para otra cita, llame al {phone}."
        }
        (RescheduleRequested, En) => {
            "{sender}: We got your request to reschedule. Our staff will call you. Questions: \
             {phone}."
        }
        (RescheduleRequested, Es) => {
            "{sender}: Recibimos su pedido de cambiar la cita. Le llamaremos. Preguntas: {phone}."
        }
    }
}

/// The sentence added when the practice has an on-call line.
fn on_call_sentence(lang: Language) -> &'static str {
    match lang {
        Language::En => " For urgent questions, call {number}.",
        Language::Es => " Para urgencias, llame al {number}.",
    }
}

/// Fills `{name}` placeholders in one pass, so a filled-in value is never read as a placeholder.
fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .expect("placeholders are closed in the wording");
        let name = &after[..end];
        out.push_str(&value(name).expect("every placeholder in the wording is known"));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The text of a system message.
pub fn render(
    kind: SystemMessageKind,
    lang: Language,
    fields: &PracticeFields,
    extra: Extra<'_>,
) -> Result<String, RenderError> {
    let (code, link) = match (kind.needs(), extra) {
        (ExtraKind::None, Extra::None) => (None, None),
        (ExtraKind::Code, Extra::Code(code)) => {
            if !(4..=10).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RenderError::BadCode);
            }
            (Some(code), None)
        }
        (ExtraKind::Link, Extra::Link(link)) => {
            let ok = (link.starts_with("https://") || link.starts_with("http://"))
                && link.len() <= MAX_LINK_CHARS
                && link.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(RenderError::BadLink);
            }
            (None, Some(link))
        }
        (needed, _) => return Err(RenderError::WrongExtra(needed)),
    };
    let on_call = match &fields.on_call_number {
        Some(number) => fill(on_call_sentence(lang), |name| {
            (name == "number").then(|| number.clone())
        }),
        None => String::new(),
    };
    Ok(fill(wording(kind, lang), |name| match name {
        "sender" => Some(fields.sender_name.clone()),
        "phone" => Some(fields.phone.clone()),
        "hours" => Some(fields.hours_text.clone()),
        "expected" => Some(fields.expected_reply_text.clone()),
        "on_call" => Some(on_call.clone()),
        "minutes" => Some(CODE_TTL.whole_minutes().to_string()),
        "code" => code.map(str::to_owned),
        "link" => link.map(str::to_owned),
        _ => None,
    }))
}

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{0c}";

/// Whether the text can be sent in the GSM 03.38 alphabet (7-bit, 160 characters a segment).
pub fn is_gsm7(text: &str) -> bool {
    text.chars()
        .all(|c| GSM_BASIC.contains(c) || GSM_EXTENDED.contains(c))
}

/// How many SMS segments the text takes: GSM-7 (160, or 153 per part; extended characters count
/// twice) or else UCS-2 (70, or 67 UTF-16 units per part).
pub fn sms_segments(text: &str) -> usize {
    let (units, single, part) = if is_gsm7(text) {
        let units = text
            .chars()
            .map(|c| if GSM_EXTENDED.contains(c) { 2 } else { 1 })
            .sum();
        (units, 160, 153)
    } else {
        (text.encode_utf16().count(), 70, 67)
    };
    if units <= single {
        1
    } else {
        units.div_ceil(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oak() -> PracticeFields {
        PracticeFields {
            sender_name: "Oak Street Clinic".into(),
            phone: "(312) 555-0100".into(),
            hours_text: "Mon-Fri 8am-5pm".into(),
            expected_reply_text: "within 1 business day".into(),
            on_call_number: Some("(312) 555-0199".into()),
        }
    }

    fn oak_es() -> PracticeFields {
        PracticeFields {
            hours_text: "lun. a vie., 8 a 17 h".into(),
            expected_reply_text: "en un plazo de 24 horas".into(),
            ..oak()
        }
    }

    /// Every field at its maximum length, in the GSM alphabet.
    fn longest() -> PracticeFields {
        PracticeFields {
            sender_name: "S".repeat(MAX_SENDER_NAME_CHARS),
            phone: "9".repeat(MAX_PHONE_CHARS),
            hours_text: "h".repeat(MAX_HOURS_CHARS),
            expected_reply_text: "e".repeat(MAX_EXPECTED_REPLY_CHARS),
            on_call_number: Some("8".repeat(MAX_PHONE_CHARS)),
        }
    }

    fn extra_for(kind: SystemMessageKind, link: &str) -> Extra<'_> {
        match kind.needs() {
            ExtraKind::None => Extra::None,
            ExtraKind::Code => Extra::Code("12345678"),
            ExtraKind::Link => Extra::Link(link),
        }
    }

    fn r(kind: SystemMessageKind, lang: Language, fields: &PracticeFields) -> String {
        let link = "https://portal.oakstreet.example/l/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde";
        render(kind, lang, fields, extra_for(kind, link)).unwrap()
    }

    #[test]
    fn names_round_trip() {
        for k in SystemMessageKind::ALL {
            assert_eq!(SystemMessageKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        for l in Language::ALL {
            assert_eq!(Language::parse(l.as_str()), Some(l));
        }
        assert_eq!(Language::for_tag("es-MX"), Language::Es);
        assert_eq!(Language::for_tag("ES"), Language::Es);
        assert_eq!(Language::for_tag("en-US"), Language::En);
        assert_eq!(Language::for_tag("vi"), Language::En);
    }

    /// The reviewed wording. A change here is a change of what patients read.
    #[test]
    fn golden_wording() {
        use Language::*;
        use SystemMessageKind::*;
        let expected = [
            (
                OptOutConfirmation,
                En,
                "Oak Street Clinic: You are unsubscribed and will get no more texts from us. \
                 Reply START to get texts again. Questions? Call (312) 555-0100.",
            ),
            (
                OptOutConfirmation,
                Es,
                "Oak Street Clinic: Ya no le enviaremos mensajes de texto. Para volver a \
                 recibirlos, responda START. Preguntas: llame al (312) 555-0100.",
            ),
            (
                OptInConfirmation,
                En,
                "Oak Street Clinic: You will now get texts from us. Msg frequency varies. Msg & \
                 data rates may apply. Reply HELP for help, STOP to opt out.",
            ),
            (
                OptInConfirmation,
                Es,
                "Oak Street Clinic: Le enviaremos mensajes de texto. Frecuencia variable. Pueden \
                 aplicarse tarifas de mensajes y datos. Responda HELP para ayuda o STOP para \
                 cancelar.",
            ),
            (
                HelpReply,
                En,
                "Oak Street Clinic: For help, call (312) 555-0100 (Mon-Fri 8am-5pm). Msg & data \
                 rates may apply. Reply STOP to opt out. If this is an emergency, call 911.",
            ),
            (
                HelpReply,
                Es,
                "Oak Street Clinic: Para ayuda, llame al (312) 555-0100 (lun. a vie., 8 a 17 h). \
                 Pueden aplicarse tarifas de mensajes y datos. Responda STOP para cancelar. Si es \
                 una emergencia, llame al 911.",
            ),
            (
                OneTimeCode,
                En,
                "Oak Street Clinic: Your verification code is 12345678. It expires in 10 \
                 minutes. Do not share it with anyone.",
            ),
            (
                OneTimeCode,
                Es,
                "Oak Street Clinic: Su clave de acceso es 12345678. Vence en 10 minutos. No la \
                 comparta con nadie.",
            ),
            (
                AfterHoursReply,
                En,
                "Oak Street Clinic: We got your message. Our office is closed now; our hours are \
                 Mon-Fri 8am-5pm. We will reply within 1 business day. If this is an emergency, \
                 call 911. For urgent questions, call (312) 555-0199.",
            ),
            (
                AfterHoursReply,
                Es,
                "Oak Street Clinic: Recibimos su mensaje. Ahora estamos cerrados; nuestro \
                 horario es lun. a vie., 8 a 17 h. Le responderemos en un plazo de 24 horas. Si \
                 es una emergencia, llame al 911. Para urgencias, llame al (312) 555-0199.",
            ),
            (
                EmergencyGuidance,
                En,
                "Oak Street Clinic: If this is an emergency, call 911. For a mental health crisis, \
                 call or text 988. Messages are not for emergencies and may not be read right \
                 away. For urgent questions, call (312) 555-0199.",
            ),
            (
                EmergencyGuidance,
                Es,
                "Oak Street Clinic: Si es una emergencia, llame al 911. Para una crisis de salud \
                 mental, llame o mande un mensaje de texto al 988. Los mensajes no son para \
                 emergencias y puede que no se lean de inmediato. Para urgencias, llame al (312) \
                 555-0199.",
            ),
            (
                SecureMessageNotification,
                En,
                "New secure message from Oak Street Clinic: https://portal.oakstreet.example/l/\
                 AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde",
            ),
            (
                SecureMessageNotification,
                Es,
                "Nuevo mensaje seguro de Oak Street Clinic: https://portal.oakstreet.example/l/\
                 AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde",
            ),
            (
                VisitConfirmed,
                En,
                "Oak Street Clinic: Thank you, your visit is confirmed. To change it, call (312) \
                 555-0100.",
            ),
            (
                VisitConfirmed,
                Es,
                "Oak Street Clinic: Gracias, su cita esta confirmada. Para cambiarla, llame al \
                 (312) 555-0100.",
            ),
            (
                VisitCancelled,
                En,
                "Oak Street Clinic: Your visit is cancelled as you asked. To book again, call \
                 (312) 555-0100.",
            ),
            (
                VisitCancelled,
                Es,
                "Oak Street Clinic: Su cita quedo cancelada como pidio. Para otra cita, llame al \
                 (312) 555-0100.",
            ),
            (
                RescheduleRequested,
                En,
                "Oak Street Clinic: We got your request to reschedule. Our staff will call you. \
                 Questions: (312) 555-0100.",
            ),
            (
                RescheduleRequested,
                Es,
                "Oak Street Clinic: Recibimos su pedido de cambiar la cita. Le llamaremos. \
                 Preguntas: (312) 555-0100.",
            ),
        ];
        assert_eq!(
            expected.len(),
            SystemMessageKind::ALL.len() * Language::ALL.len()
        );
        for (kind, lang, text) in expected {
            let fields = if lang == Es { oak_es() } else { oak() };
            assert_eq!(r(kind, lang, &fields), text, "{kind:?} {lang:?}");
        }
    }

    #[test]
    fn without_an_on_call_line_the_sentence_is_left_out() {
        let fields = PracticeFields {
            on_call_number: None,
            ..oak()
        };
        let text = r(SystemMessageKind::EmergencyGuidance, Language::En, &fields);
        assert!(text.ends_with("may not be read right away."), "{text}");
        let text = r(SystemMessageKind::AfterHoursReply, Language::Es, &fields);
        assert!(text.ends_with("llame al 911."), "{text}");
    }

    #[test]
    fn emergency_guidance_says_911_in_both_languages() {
        for kind in [
            SystemMessageKind::EmergencyGuidance,
            SystemMessageKind::AfterHoursReply,
            SystemMessageKind::HelpReply,
        ] {
            assert!(r(kind, Language::En, &oak()).contains("If this is an emergency, call 911."));
            assert!(
                r(kind, Language::Es, &oak_es()).contains("Si es una emergencia, llame al 911.")
            );
        }
    }

    #[test]
    fn emergency_guidance_names_911_and_988() {
        // One wording for every urgent text, crisis or not, found by the rules or the model
        // (`inbound::Reaction::emergency_reply`): both numbers, both languages.
        let en = r(SystemMessageKind::EmergencyGuidance, Language::En, &oak());
        assert!(en.contains("If this is an emergency, call 911."), "{en}");
        assert!(
            en.contains("For a mental health crisis, call or text 988."),
            "{en}"
        );
        let es = r(
            SystemMessageKind::EmergencyGuidance,
            Language::Es,
            &oak_es(),
        );
        assert!(es.contains("Si es una emergencia, llame al 911."), "{es}");
        // "mande" rather than "envíe": í is outside the GSM alphabet and would make the whole
        // reply UCS-2 (a third of the room).
        assert!(
            es.contains("llame o mande un mensaje de texto al 988."),
            "{es}"
        );
    }

    #[test]
    fn the_fixed_wording_is_in_the_gsm_alphabet() {
        for kind in SystemMessageKind::ALL {
            for lang in Language::ALL {
                assert!(is_gsm7(wording(kind, lang)), "{kind:?} {lang:?}");
                assert!(is_gsm7(on_call_sentence(lang)));
            }
        }
    }

    #[test]
    fn every_message_fits_two_segments_even_with_the_longest_fields() {
        let longest_link = format!("https://{}", "x".repeat(PLANNED_LINK_CHARS - 8));
        for kind in SystemMessageKind::ALL {
            for lang in Language::ALL {
                for fields in [oak(), oak_es(), longest()] {
                    let text = render(kind, lang, &fields, extra_for(kind, &longest_link)).unwrap();
                    let n = sms_segments(&text);
                    assert!(
                        (1..=MAX_SEGMENTS).contains(&n),
                        "{kind:?} {lang:?} takes {n} segments ({} chars)",
                        text.chars().count()
                    );
                }
                assert_eq!(longest().validate(lang), Ok(()));
                assert_eq!(oak().validate(lang), Ok(()));
            }
        }
        // The short ones fit in one.
        for lang in Language::ALL {
            assert_eq!(
                sms_segments(&r(SystemMessageKind::OneTimeCode, lang, &oak())),
                1
            );
        }
    }

    #[test]
    fn fields_that_would_overflow_in_ucs2_are_refused() {
        let fields = PracticeFields {
            sender_name: "Clínica San José".into(),
            expected_reply_text: "en un día hábil".into(),
            ..oak_es()
        };
        let errors = fields.validate(Language::Es).unwrap_err();
        assert!(errors.iter().all(|e| e.field == "practice_fields"));
        assert!(
            errors
                .iter()
                .any(|e| e.expected.contains("after_hours_reply"))
        );
        // é and ñ are in the GSM alphabet; the same practice written without á, í, ó, ú fits.
        let fields = PracticeFields {
            sender_name: "Clinica San José".into(),
            expected_reply_text: "en un dia habil".into(),
            ..oak_es()
        };
        assert_eq!(fields.validate(Language::Es), Ok(()));
    }

    #[test]
    fn bad_fields_are_named() {
        let fields = PracticeFields {
            sender_name: String::new(),
            phone: "x".repeat(21),
            hours_text: "line\nbreak".into(),
            expected_reply_text: "{link}".into(),
            on_call_number: Some(" 911".into()),
        };
        let errors = fields.validate(Language::En).unwrap_err();
        let names: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            names,
            [
                "sender_name",
                "phone",
                "hours_text",
                "expected_reply_text",
                "on_call_number"
            ]
        );
    }

    #[test]
    fn a_filled_value_is_never_read_as_a_placeholder() {
        let fields = PracticeFields {
            sender_name: "{code}".into(),
            ..oak()
        };
        let text = render(
            SystemMessageKind::OneTimeCode,
            Language::En,
            &fields,
            Extra::Code("4321"),
        )
        .unwrap();
        assert!(text.starts_with("{code}: Your verification code is 4321."));
    }

    #[test]
    fn the_extra_value_must_match_the_kind() {
        let f = oak();
        use SystemMessageKind::*;
        assert_eq!(
            render(OneTimeCode, Language::En, &f, Extra::None),
            Err(RenderError::WrongExtra(ExtraKind::Code))
        );
        assert_eq!(
            render(HelpReply, Language::En, &f, Extra::Code("1234")),
            Err(RenderError::WrongExtra(ExtraKind::None))
        );
        assert_eq!(
            render(
                SecureMessageNotification,
                Language::En,
                &f,
                Extra::Code("1234")
            ),
            Err(RenderError::WrongExtra(ExtraKind::Link))
        );
        assert_eq!(
            render(OneTimeCode, Language::En, &f, Extra::Code("12a4")),
            Err(RenderError::BadCode)
        );
        assert_eq!(
            render(OneTimeCode, Language::En, &f, Extra::Code("123")),
            Err(RenderError::BadCode)
        );
        for bad in ["javascript:alert(1)", "https://a b", ""] {
            assert_eq!(
                render(
                    SecureMessageNotification,
                    Language::En,
                    &f,
                    Extra::Link(bad)
                ),
                Err(RenderError::BadLink)
            );
        }
        let long = format!("https://{}", "x".repeat(MAX_LINK_CHARS));
        assert_eq!(
            render(
                SecureMessageNotification,
                Language::En,
                &f,
                Extra::Link(&long)
            ),
            Err(RenderError::BadLink)
        );
        assert_eq!(format!("{:?}", Extra::Code("1234")), "Code([redacted])");
    }

    #[test]
    fn segment_counting() {
        assert_eq!(sms_segments(""), 1);
        assert_eq!(sms_segments(&"a".repeat(160)), 1);
        assert_eq!(sms_segments(&"a".repeat(161)), 2);
        assert_eq!(sms_segments(&"a".repeat(306)), 2);
        assert_eq!(sms_segments(&"a".repeat(307)), 3);
        // Extended characters count twice.
        assert_eq!(sms_segments(&"€".repeat(80)), 1);
        assert_eq!(sms_segments(&"€".repeat(81)), 2);
        // One character outside the alphabet makes the whole text UCS-2.
        assert!(!is_gsm7("¿Dónde?"));
        assert_eq!(sms_segments(&format!("í{}", "a".repeat(69))), 1);
        assert_eq!(sms_segments(&format!("í{}", "a".repeat(70))), 2);
        assert_eq!(sms_segments(&format!("í{}", "a".repeat(134))), 3);
        assert!(is_gsm7("¿Qué tal? ¡Señor Müller!"));
    }
}

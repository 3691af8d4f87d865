//! Carrier registration help: what a practice needs before US carriers let it text patients,
//! computed from its own data. A 10DLC campaign (a local number, registered with The Campaign
//! Registry) and a toll-free verification ask much the same: who sends (brand), what the texts
//! are for (use case and description), at least two sample messages, how patients opt in
//! (message flow / call to action) with the disclosures they see, the opt-out and help keywords
//! and their replies, and a few flags (embedded links, embedded phone numbers, age-gated
//! content, direct lending). Toll-free verification also asks for the opt-in type, proof of it
//! and the expected monthly volume.
//!
//! Every check here reads the practice's settings, its published consent text and its saved
//! replies: nothing about a patient. Sample messages are the practice's own reply templates
//! that the channel policy would send as plain SMS, filled with bracketed sample values, and the
//! reviewed system messages rendered with the practice's fields.

use serde::Serialize;

use crate::outgoing::MAX_DIRECT_SEGMENTS;
use crate::policy::{self, ClassifyContext, Route};
use crate::system_messages::{self, Extra, Language, PracticeFields, SystemMessageKind};
use crate::templates::{self, TemplateValues, Variable};

/// How the practice's numbers are registered with US carriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RegistrationKind {
    /// A local 10-digit long code: a brand and a campaign at The Campaign Registry.
    #[serde(rename = "10dlc")]
    TenDlc,
    /// An 8XX number: toll-free verification through the messaging provider.
    #[serde(rename = "toll_free")]
    TollFree,
}

impl RegistrationKind {
    pub const ALL: [RegistrationKind; 2] = [Self::TenDlc, Self::TollFree];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenDlc => "10dlc",
            Self::TollFree => "toll_free",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// The keywords Salve answers (see `keywords.rs`), as the registration forms ask for them.
pub const OPT_OUT_KEYWORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
    "PARAR",
    "ALTO",
    "BAJA",
];
pub const HELP_KEYWORDS: &[&str] = &["HELP", "INFO", "AYUDA"];
pub const OPT_IN_KEYWORDS: &[&str] = &["START", "UNSTOP", "YES"];

/// The practice's published consent text (the newest version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentWording {
    pub version: String,
    pub body: String,
}

/// One saved reply template, as the practice wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTemplate {
    pub name: String,
    pub body: String,
    pub active: bool,
}

/// Everything the checklist is computed from.
#[derive(Debug, Clone)]
pub struct PracticeMessaging<'a> {
    /// The messaging settings; an empty `phone` means they were never saved.
    pub fields: &'a PracticeFields,
    pub consent: Option<&'a ConsentWording>,
    pub templates: &'a [NamedTemplate],
    /// The server's public address (no trailing slash needed), for `{practice.portal_link}`
    /// and the sample secure link.
    pub public_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChecklistItem {
    /// Stable name, e.g. `consent_text`.
    pub key: &'static str,
    pub title: &'static str,
    /// Whether Salve found this in order. Items Salve cannot check (the brand's legal details)
    /// are listed in `form_answers`, not here.
    pub done: bool,
    /// What was found, or what to do.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSource {
    /// One of the practice's saved replies.
    Template,
    /// A reviewed system message (`system_messages.rs`).
    SystemMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleMessage {
    /// What the message is for ("Saved reply: Reminder", "HELP reply").
    pub purpose: String,
    pub text: String,
    pub source: SampleSource,
}

/// A suggested answer for one field of the registration form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FormAnswer {
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationChecklist {
    pub kind: RegistrationKind,
    pub items: Vec<ChecklistItem>,
    pub sample_messages: Vec<SampleMessage>,
    /// The message flow / call to action: how patients opt in and what they are told.
    pub opt_in_description: String,
    /// The reply to HELP (English).
    pub help_text: String,
    /// The reply to STOP (English).
    pub opt_out_text: String,
    /// Suggested answers for the rest of the form (use case, description, keywords, flags).
    pub form_answers: Vec<FormAnswer>,
}

/// How many sample messages carriers ask for at least.
pub const MIN_SAMPLES: usize = 2;

/// Sample values for template variables: bracketed, so nobody mistakes them for a patient's.
fn sample_value(variable: Variable, fields: &PracticeFields, portal_url: &str) -> String {
    match variable {
        Variable::PatientFirstName => "[first name]".into(),
        Variable::PracticeName | Variable::PracticeSenderName => fields.sender_name.clone(),
        Variable::PracticePhone => fields.phone.clone(),
        Variable::PracticePortalLink => portal_url.to_owned(),
        Variable::AppointmentDate => "[date]".into(),
        Variable::AppointmentTime => "[time]".into(),
        Variable::AppointmentType => "[visit type]".into(),
        Variable::AppointmentLocation => "[office address]".into(),
        Variable::AppointmentProvider => "[provider name]".into(),
        Variable::StaffFirstName => "[staff name]".into(),
    }
}

/// A saved reply as a sample, if the channel policy would send it as plain SMS. Catalog values
/// count as SMS-safe here: the practice chooses which of its catalog values are.
fn template_sample(
    template: &NamedTemplate,
    fields: &PracticeFields,
    portal_url: &str,
) -> Option<String> {
    if !template.active {
        return None;
    }
    let parsed = templates::parse(&template.body).ok()?;
    let mut values = TemplateValues::new();
    for variable in parsed.variables() {
        let text = sample_value(variable, fields, portal_url);
        if variable.is_catalog() {
            values.set_catalog(variable, text, true);
        } else {
            values.set(variable, text);
        }
    }
    let rendered = parsed.render(&values).ok()?;
    let decision = policy::classify(
        &rendered.text,
        &ClassifyContext {
            has_attachment: false,
            values: rendered.filled,
            sender_name: Some(fields.sender_name.clone()),
        },
    );
    // A direct text too long for a few segments goes secure at send time (`outgoing`).
    let fits = system_messages::sms_segments(&rendered.text) <= MAX_DIRECT_SEGMENTS;
    (decision.route == Route::Direct && fits).then_some(rendered.text)
}

/// The practice's fields with bracketed stand-ins for those never filled in, so the draft
/// replies still read right.
fn fields_for_drafts(fields: &PracticeFields) -> PracticeFields {
    let or = |value: &str, stand_in: &str| {
        if value.trim().is_empty() {
            stand_in.to_owned()
        } else {
            value.to_owned()
        }
    };
    PracticeFields {
        sender_name: or(&fields.sender_name, "[practice name]"),
        phone: or(&fields.phone, "[office phone]"),
        hours_text: or(&fields.hours_text, "[office hours]"),
        expected_reply_text: or(&fields.expected_reply_text, "[reply time]"),
        on_call_number: fields.on_call_number.clone(),
    }
}

fn system_text(
    kind: SystemMessageKind,
    lang: Language,
    fields: &PracticeFields,
    link: &str,
) -> String {
    let extra = match kind.needs() {
        system_messages::ExtraKind::None => Extra::None,
        system_messages::ExtraKind::Code => Extra::Code("123456"),
        system_messages::ExtraKind::Link => Extra::Link(link),
    };
    // The wording and these extras are fixed and valid: rendering cannot fail.
    system_messages::render(kind, lang, fields, extra).unwrap_or_default()
}

/// What a consent text shown at opt-in should disclose, and which of it is missing.
fn missing_disclosures(body: &str) -> Vec<&'static str> {
    let lower = body.to_lowercase();
    let mut missing = Vec::new();
    if !lower.contains("stop") {
        missing.push("how to opt out (reply STOP)");
    }
    if !lower.contains("help") {
        missing.push("how to get help (reply HELP)");
    }
    if !lower.contains("rates") {
        missing.push("that message and data rates may apply");
    }
    if !lower.contains("frequen") {
        missing.push("how often messages come (message frequency varies)");
    }
    missing
}

/// The checklist for registering the practice's numbers of `kind`.
pub fn checklist(
    kind: RegistrationKind,
    practice: &PracticeMessaging<'_>,
) -> RegistrationChecklist {
    let fields = practice.fields;
    let drafts = fields_for_drafts(fields);
    let base = practice.public_url.trim_end_matches('/');
    let portal_url = format!("{base}/portal");
    let sample_link = format!("{base}/p/SAMPLE-LINK-NOT-VALID");
    let mut items = Vec::new();

    // Messaging settings with the office phone.
    let has_phone = !fields.phone.trim().is_empty();
    let settings_ok = has_phone && fields.validate(Language::En).is_ok();
    items.push(ChecklistItem {
        key: "messaging_settings",
        title: "Texting settings saved with the office phone",
        done: settings_ok,
        detail: if settings_ok {
            format!(
                "Texts are sent as {} with {} for questions.",
                fields.sender_name, fields.phone
            )
        } else {
            "Save the sender name, office phone, hours and reply time under Settings > \
             Messaging (PUT /api/v1/practice/messaging): carriers check that HELP replies give \
             a way to reach the practice."
                .into()
        },
    });

    // The sender name: carriers want the brand in every message; HIPAA wants no specialty.
    let name_reasons = policy::check_sender_name(&fields.sender_name);
    let name_ok = !fields.sender_name.trim().is_empty() && name_reasons.is_empty();
    items.push(ChecklistItem {
        key: "sender_name",
        title: "Sender name that identifies the practice without revealing health information",
        done: name_ok,
        detail: if name_ok {
            format!(
                "\"{}\" opens every system message. Use the same name (or the legal name it \
                 abbreviates) as the brand name in the registration.",
                fields.sender_name
            )
        } else if name_reasons.is_empty() {
            "Set the sender name texts are sent under.".into()
        } else {
            let why: Vec<&str> = name_reasons
                .iter()
                .map(|r| r.explanation.as_str())
                .collect();
            format!("Choose another sender name: {}.", why.join("; "))
        },
    });

    // The published consent text is the opt-in wording carriers ask to see.
    items.push(ChecklistItem {
        key: "consent_text",
        title: "Published consent text (the opt-in wording patients agree to)",
        done: practice.consent.is_some(),
        detail: match practice.consent {
            Some(c) => format!(
                "Version {} is what staff record consent against; quote it as the opt-in language.",
                c.version
            ),
            None => {
                "Publish the consent text patients agree to (POST /api/v1/consent-texts).".into()
            }
        },
    });
    let missing = practice
        .consent
        .map(|c| missing_disclosures(&c.body))
        .unwrap_or_else(|| missing_disclosures(""));
    items.push(ChecklistItem {
        key: "consent_disclosures",
        title: "Consent text discloses STOP, HELP, message frequency and rates",
        done: practice.consent.is_some() && missing.is_empty(),
        detail: if missing.is_empty() && practice.consent.is_some() {
            "The consent text says how to opt out and get help, how often texts come, and that \
             rates may apply."
                .into()
        } else {
            format!(
                "Carriers reject opt-in language that does not say {}. Publish a new version \
                 that does.",
                missing.join(", ")
            )
        },
    });

    // Sample messages from the practice's own saved replies.
    let template_samples: Vec<SampleMessage> = practice
        .templates
        .iter()
        .filter_map(|t| {
            template_sample(t, &drafts, &portal_url).map(|text| SampleMessage {
                purpose: format!("Saved reply: {}", t.name),
                text,
                source: SampleSource::Template,
            })
        })
        .collect();
    let active = practice.templates.iter().filter(|t| t.active).count();
    items.push(ChecklistItem {
        key: "sample_templates",
        title: "At least 2 saved replies that plain SMS may carry",
        done: template_samples.len() >= MIN_SAMPLES,
        detail: format!(
            "{} of {} active saved replies would go as plain SMS (the rest stay in the secure \
             portal and cannot be samples). Carriers want at least {MIN_SAMPLES} samples that \
             match the use case; a reply that names the practice ({{practice.sender_name}}) \
             reads best.",
            template_samples.len(),
            active
        ),
    });

    // HELP and STOP replies in both languages.
    let replies_ok = has_phone
        && Language::ALL
            .into_iter()
            .all(|lang| fields.validate(lang).is_ok());
    items.push(ChecklistItem {
        key: "help_and_opt_out_replies",
        title: "HELP and STOP replies in English and Spanish",
        done: replies_ok,
        detail: if replies_ok {
            "Salve answers HELP and STOP itself, in English and Spanish, with the practice's \
             name and phone; both fit in two SMS segments."
                .into()
        } else {
            "The replies need the practice's phone and hours, short enough for two SMS \
             segments in both languages: complete the messaging settings."
                .into()
        },
    });

    let help_text = system_text(
        SystemMessageKind::HelpReply,
        Language::En,
        &drafts,
        &sample_link,
    );
    let opt_out_text = system_text(
        SystemMessageKind::OptOutConfirmation,
        Language::En,
        &drafts,
        &sample_link,
    );
    let opt_in_text = system_text(
        SystemMessageKind::OptInConfirmation,
        Language::En,
        &drafts,
        &sample_link,
    );

    let mut sample_messages = template_samples;
    for (purpose, kind) in [
        (
            "Secure message notification (the content stays in the portal)",
            SystemMessageKind::SecureMessageNotification,
        ),
        ("Opt-in confirmation", SystemMessageKind::OptInConfirmation),
        ("HELP reply", SystemMessageKind::HelpReply),
        ("STOP confirmation", SystemMessageKind::OptOutConfirmation),
    ] {
        sample_messages.push(SampleMessage {
            purpose: purpose.into(),
            text: system_text(kind, Language::En, &drafts, &sample_link),
            source: SampleSource::SystemMessage,
        });
    }

    let sender = &drafts.sender_name;
    let consent_quote = match practice.consent {
        Some(c) => format!(
            " The consent text (version {}) reads: \"{}\"",
            c.version,
            c.body.trim()
        ),
        None => String::new(),
    };
    let opt_in_description = format!(
        "Patients of {sender} opt in to texts on the practice's intake form (paper or \
         electronic), in the patient portal, or by telling staff, who record the consent with \
         the date, method and consent text version in the practice's messaging system. A \
         patient who texted STOP can opt in again by texting START to the practice's texting \
         number.{consent_quote} Opting in is not a condition of care. After opting in, patients \
         receive: \"{opt_in_text}\""
    );

    let mut form_answers = vec![
        FormAnswer {
            key: "use_case",
            label: if kind == RegistrationKind::TenDlc {
                "Campaign use case"
            } else {
                "Use case category"
            },
            value: "Customer Care (conversations with existing patients). Account Notification \
                    also fits if the practice only sends appointment reminders."
                .into(),
        },
        FormAnswer {
            key: "description",
            label: if kind == RegistrationKind::TenDlc {
                "Campaign description"
            } else {
                "Use case summary"
            },
            value: format!(
                "{sender} texts its existing patients who have opted in: appointment \
                 reminders, replies to their questions, and notices that a secure message is \
                 waiting in the patient portal. Texts carry no health details; clinical content \
                 is only read in the portal after the patient verifies their identity. No \
                 marketing."
            ),
        },
        FormAnswer {
            key: "message_flow",
            label: if kind == RegistrationKind::TenDlc {
                "Message flow / call to action"
            } else {
                "Opt-in workflow description"
            },
            value: opt_in_description.clone(),
        },
        FormAnswer {
            key: "opt_out_keywords",
            label: "Opt-out keywords",
            value: OPT_OUT_KEYWORDS.join(", "),
        },
        FormAnswer {
            key: "help_keywords",
            label: "Help keywords",
            value: HELP_KEYWORDS.join(", "),
        },
        FormAnswer {
            key: "opt_in_keywords",
            label: "Opt-in keywords",
            value: OPT_IN_KEYWORDS.join(", "),
        },
        FormAnswer {
            key: "embedded_links",
            label: "Messages include embedded links",
            value: "Yes: secure portal links on the practice's own domain, no URL shorteners."
                .into(),
        },
        FormAnswer {
            key: "embedded_phone",
            label: "Messages include phone numbers",
            value: "Yes: the practice's office number in HELP and STOP replies.".into(),
        },
        FormAnswer {
            key: "age_gated",
            label: "Age-gated content",
            value: "No".into(),
        },
        FormAnswer {
            key: "direct_lending",
            label: "Direct lending or loan arrangement",
            value: "No".into(),
        },
        FormAnswer {
            key: "brand",
            label: if kind == RegistrationKind::TenDlc {
                "Brand (registered first)"
            } else {
                "Business information"
            },
            value: "Not kept in Salve: the practice's legal name and EIN exactly as on IRS \
                    records, address, website, and a business contact. The privacy policy on \
                    the website should say that mobile numbers and opt-in data are not shared \
                    with third parties."
                .into(),
        },
    ];
    if kind == RegistrationKind::TollFree {
        form_answers.push(FormAnswer {
            key: "opt_in_type",
            label: "Opt-in type",
            value: "Paper form or web form (the intake form), or verbal (recorded by staff). \
                    Attach an image of the intake form's texting consent as proof of opt-in."
                .into(),
        });
        form_answers.push(FormAnswer {
            key: "message_volume",
            label: "Estimated monthly message volume",
            value: "Not kept in Salve: estimate from the number of patients who text and \
                    visits a month (roughly two texts per visit)."
                .into(),
        });
    }

    RegistrationChecklist {
        kind,
        items,
        sample_messages,
        opt_in_description,
        help_text,
        opt_out_text,
        form_answers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTAL: &str = "https://messages.oakstreet.example";

    fn oak() -> PracticeFields {
        PracticeFields {
            sender_name: "Oak Street Clinic".into(),
            phone: "(312) 555-0100".into(),
            hours_text: "Mon-Fri 8am-5pm".into(),
            expected_reply_text: "within 1 business day".into(),
            on_call_number: None,
        }
    }

    fn unsaved() -> PracticeFields {
        PracticeFields {
            sender_name: "Oak Street Clinic".into(),
            phone: String::new(),
            hours_text: String::new(),
            expected_reply_text: String::new(),
            on_call_number: None,
        }
    }

    fn consent() -> ConsentWording {
        ConsentWording {
            version: "2026-02".into(),
            body: "I agree to get texts from Oak Street Clinic about my care. Message frequency \
                   varies. Msg & data rates may apply. Reply HELP for help, STOP to opt out."
                .into(),
        }
    }

    fn template(name: &str, body: &str) -> NamedTemplate {
        NamedTemplate {
            name: name.into(),
            body: body.into(),
            active: true,
        }
    }

    fn templates() -> Vec<NamedTemplate> {
        vec![
            template(
                "Reminder",
                "Hi {patient.first_name}, this is {practice.sender_name}: a reminder of your \
                 appointment on {appointment.date} at {appointment.time}. Call {practice.phone} \
                 to reschedule.",
            ),
            template(
                "Call us",
                "Hi {patient.first_name}, please call the office when you get a chance.",
            ),
            template(
                "Results",
                "Your A1C came back at 7.2, so we would like to raise your metformin dose.",
            ),
        ]
    }

    fn item<'a>(c: &'a RegistrationChecklist, key: &str) -> &'a ChecklistItem {
        c.items.iter().find(|i| i.key == key).unwrap()
    }

    #[test]
    fn kinds_round_trip() {
        for k in RegistrationKind::ALL {
            assert_eq!(RegistrationKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(RegistrationKind::parse("short_code"), None);
    }

    #[test]
    fn a_fresh_practice_has_nothing_done_but_still_gets_drafts() {
        let fields = unsaved();
        let c = checklist(
            RegistrationKind::TenDlc,
            &PracticeMessaging {
                fields: &fields,
                consent: None,
                templates: &[],
                public_url: PORTAL,
            },
        );
        for key in [
            "messaging_settings",
            "consent_text",
            "consent_disclosures",
            "sample_templates",
            "help_and_opt_out_replies",
        ] {
            assert!(!item(&c, key).done, "{key}");
        }
        assert!(item(&c, "sender_name").done);
        assert!(c.help_text.contains("[office phone]"), "{}", c.help_text);
        assert!(
            c.opt_out_text
                .starts_with("Oak Street Clinic: You are unsubscribed")
        );
        assert!(
            c.sample_messages
                .iter()
                .all(|s| s.source == SampleSource::SystemMessage)
        );
        assert!(c.form_answers.iter().all(|a| a.key != "opt_in_type"));
    }

    #[test]
    fn a_ready_practice_has_every_item_done_and_only_sms_safe_samples() {
        let fields = oak();
        let consent = consent();
        let templates = templates();
        let c = checklist(
            RegistrationKind::TenDlc,
            &PracticeMessaging {
                fields: &fields,
                consent: Some(&consent),
                templates: &templates,
                public_url: PORTAL,
            },
        );
        for i in &c.items {
            assert!(i.done, "{}: {}", i.key, i.detail);
        }
        let from_templates: Vec<&SampleMessage> = c
            .sample_messages
            .iter()
            .filter(|s| s.source == SampleSource::Template)
            .collect();
        assert_eq!(from_templates.len(), 2, "{from_templates:?}");
        assert_eq!(
            from_templates[0].text,
            "Hi [first name], this is Oak Street Clinic: a reminder of your appointment on \
             [date] at [time]. Call (312) 555-0100 to reschedule."
        );
        assert_eq!(from_templates[1].purpose, "Saved reply: Call us");
        for s in &c.sample_messages {
            assert!(!s.text.contains("metformin"), "{}", s.text);
        }
        let notification = c
            .sample_messages
            .iter()
            .find(|s| s.text.starts_with("New secure message"))
            .unwrap();
        assert_eq!(
            notification.text,
            "New secure message from Oak Street Clinic: \
             https://messages.oakstreet.example/p/SAMPLE-LINK-NOT-VALID"
        );
        assert_eq!(
            c.help_text,
            "Oak Street Clinic: For help, call (312) 555-0100 (Mon-Fri 8am-5pm). Msg & data \
             rates may apply. Reply STOP to opt out. If this is an emergency, call 911."
        );
        assert!(c.opt_in_description.contains("version 2026-02"));
        assert!(
            c.opt_in_description
                .contains("Reply HELP for help, STOP to opt out.")
        );
        assert!(c.opt_in_description.contains("texting START"));
    }

    #[test]
    fn inactive_and_unparsable_templates_are_not_samples() {
        let fields = oak();
        let mut inactive = template("Old", "Please call the office when you get a chance.");
        inactive.active = false;
        let templates = vec![
            inactive,
            template("Broken", "Hi {patient.last_name}, please call the office."),
            // Plain SMS would carry the wording, but not at this length (5 segments).
            template(
                "Long",
                &"Please call the office when you get a chance. ".repeat(14),
            ),
        ];
        let c = checklist(
            RegistrationKind::TollFree,
            &PracticeMessaging {
                fields: &fields,
                consent: None,
                templates: &templates,
                public_url: PORTAL,
            },
        );
        assert!(
            c.sample_messages
                .iter()
                .all(|s| s.source == SampleSource::SystemMessage)
        );
        assert!(!item(&c, "sample_templates").done);
        assert!(item(&c, "sample_templates").detail.starts_with("0 of 2"));
        // The same wording in four segments is a sample.
        let shorter = [template(
            "Long",
            &"Please call the office when you get a chance. ".repeat(12),
        )];
        let c = checklist(
            RegistrationKind::TollFree,
            &PracticeMessaging {
                fields: &fields,
                consent: None,
                templates: &shorter,
                public_url: PORTAL,
            },
        );
        assert!(item(&c, "sample_templates").detail.starts_with("1 of 1"));
    }

    #[test]
    fn consent_text_without_disclosures_is_named() {
        let fields = oak();
        let consent = ConsentWording {
            version: "2026-01".into(),
            body: "I agree that Oak Street may text me. I can reply STOP at any time.".into(),
        };
        let c = checklist(
            RegistrationKind::TenDlc,
            &PracticeMessaging {
                fields: &fields,
                consent: Some(&consent),
                templates: &[],
                public_url: PORTAL,
            },
        );
        assert!(item(&c, "consent_text").done);
        let d = item(&c, "consent_disclosures");
        assert!(!d.done);
        assert!(
            d.detail.contains("HELP") && d.detail.contains("rates"),
            "{}",
            d.detail
        );
        assert!(!d.detail.contains("STOP"), "{}", d.detail);
    }

    #[test]
    fn a_revealing_sender_name_is_not_done_and_sends_nothing_direct() {
        let fields = PracticeFields {
            sender_name: "Oak Street Oncology".into(),
            ..oak()
        };
        let templates = templates();
        let c = checklist(
            RegistrationKind::TenDlc,
            &PracticeMessaging {
                fields: &fields,
                consent: None,
                templates: &templates,
                public_url: PORTAL,
            },
        );
        let name = item(&c, "sender_name");
        assert!(!name.done);
        assert!(name.detail.contains("oncology"), "{}", name.detail);
        assert!(!item(&c, "sample_templates").done);
    }

    #[test]
    fn toll_free_asks_for_opt_in_type_and_volume() {
        let fields = oak();
        let c = checklist(
            RegistrationKind::TollFree,
            &PracticeMessaging {
                fields: &fields,
                consent: None,
                templates: &[],
                public_url: PORTAL,
            },
        );
        let keys: Vec<&str> = c.form_answers.iter().map(|a| a.key).collect();
        assert!(keys.contains(&"opt_in_type") && keys.contains(&"message_volume"));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["kind"], "toll_free");
        assert_eq!(json["sample_messages"][0]["source"], "system_message");
    }
}

//! Confidential communications (45 CFR 164.522(b)): a patient's request to be reached only in
//! certain ways. Active requests override routing: a contact point they exclude is not used,
//! whatever the consent says.
//!
//! Contact points are named by their normalised value (E.164 or email), not by contact row id:
//! contacts are replaced wholesale on edit, and a request must outlive that. The values are
//! `Sensitive` and never appear in explanations; staff are told which rule excluded a contact.
//!
//! How rules combine (decided conservatively): every active request is checked on its own and
//! any one of them can exclude a contact. `OnlyContact` concerns contact points of its own kind
//! ("text this number only" leaves email alone; "never email" is a separate rule), and two
//! different `OnlyContact` of one kind exclude every contact of that kind until staff withdraw
//! the stale one.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::consent::Medium;
use crate::ids::{ConfidentialRequestId, UserId};
use crate::patient::{Contact, ContactKind};
use crate::sensitive::Sensitive;
use crate::validation::FieldError;

/// What the patient asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule", content = "value")]
pub enum ConfidentialRule {
    /// "Text this number only": no other contact point of the same kind.
    OnlyContact(Sensitive<String>),
    /// "Not at the family phone": never this contact point.
    NeverContact(Sensitive<String>),
    /// "Never email": nothing on this medium.
    NeverMedium(Medium),
}

/// The rule's name without its value, for storage and explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    OnlyContact,
    NeverContact,
    NeverMedium,
}

impl RuleKind {
    pub const ALL: [RuleKind; 3] = [
        RuleKind::OnlyContact,
        RuleKind::NeverContact,
        RuleKind::NeverMedium,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnlyContact => "only_contact",
            Self::NeverContact => "never_contact",
            Self::NeverMedium => "never_medium",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl ConfidentialRule {
    pub fn kind(&self) -> RuleKind {
        match self {
            Self::OnlyContact(_) => RuleKind::OnlyContact,
            Self::NeverContact(_) => RuleKind::NeverContact,
            Self::NeverMedium(_) => RuleKind::NeverMedium,
        }
    }
}

/// The kind of contact point a normalised value names: E.164 numbers start with `+`, email
/// addresses contain `@`.
pub fn value_kind(value: &str) -> Option<ContactKind> {
    if value.starts_with('+') && value.len() > 1 && value[1..].bytes().all(|b| b.is_ascii_digit()) {
        Some(ContactKind::Phone)
    } else if value.contains('@') && !value.chars().any(char::is_whitespace) {
        Some(ContactKind::Email)
    } else {
        None
    }
}

/// How the request was made. HIPAA lets a practice ask for it in writing; verbal requests are
/// recorded by the staff member who took them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestMethod {
    WrittenForm,
    Verbal,
    PatientPortal,
    FreeTextRequest,
}

impl RequestMethod {
    pub const ALL: [RequestMethod; 4] = [
        RequestMethod::WrittenForm,
        RequestMethod::Verbal,
        RequestMethod::PatientPortal,
        RequestMethod::FreeTextRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrittenForm => "written_form",
            Self::Verbal => "verbal",
            Self::PatientPortal => "patient_portal",
            Self::FreeTextRequest => "free_text_request",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == raw)
    }
}

/// A request as recorded by staff or by the patient in the portal. Contact values must already
/// be normalised (`validation::phone` / `validation::email`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfidentialRequestInput {
    pub rule: ConfidentialRule,
    pub method: RequestMethod,
}

/// Checks that a contact value is a normalised phone or email.
pub fn validate_request(input: &ConfidentialRequestInput) -> Result<(), Vec<FieldError>> {
    match &input.rule {
        ConfidentialRule::OnlyContact(v) | ConfidentialRule::NeverContact(v)
            if value_kind(v.expose()).is_none() =>
        {
            Err(vec![FieldError::new(
                "value",
                "a phone number in E.164 (+15551234567) or an email address",
            )])
        }
        _ => Ok(()),
    }
}

/// A recorded request. Withdrawn requests stay in the record and stop applying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfidentialRequest {
    pub id: ConfidentialRequestId,
    pub rule: ConfidentialRule,
    pub method: RequestMethod,
    pub recorded_at: OffsetDateTime,
    /// `None` when the patient recorded it in the portal.
    pub recorded_by: Option<UserId>,
    pub withdrawn_at: Option<OffsetDateTime>,
}

impl ConfidentialRequest {
    pub fn is_active(&self) -> bool {
        self.withdrawn_at.is_none()
    }
}

/// Why a contact point may not be used: the request that excludes it, and a sentence for staff
/// that names the rule but never the contact value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub request: ConfidentialRequestId,
    pub rule: RuleKind,
    pub why: String,
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (request {})", self.why, self.request)
    }
}

/// The active confidential-communication requests of one patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    active: Vec<(ConfidentialRequestId, ConfidentialRule)>,
}

impl Restrictions {
    /// Keeps the requests not withdrawn, oldest first (so the first exclusion named is stable).
    pub fn from_requests(requests: &[ConfidentialRequest]) -> Restrictions {
        let mut active: Vec<&ConfidentialRequest> =
            requests.iter().filter(|r| r.is_active()).collect();
        active.sort_by_key(|r| (r.recorded_at, r.id));
        Restrictions {
            active: active.into_iter().map(|r| (r.id, r.rule.clone())).collect(),
        }
    }

    pub fn none() -> Restrictions {
        Restrictions::default()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// May this contact point be used on this medium? `Err` names the first request against.
    pub fn allows(&self, contact: &Contact, medium: Medium) -> Result<(), Exclusion> {
        let value = contact.value.expose();
        for (id, rule) in &self.active {
            let why = match rule {
                ConfidentialRule::NeverMedium(m) if *m == medium => Some(match m {
                    Medium::Sms => "the patient asked never to be texted",
                    Medium::Email => "the patient asked never to be emailed",
                }),
                ConfidentialRule::NeverContact(v) if v.expose() == value => {
                    Some("the patient asked not to be contacted at this contact point")
                }
                ConfidentialRule::OnlyContact(v)
                    if value_kind(v.expose()) == Some(contact.kind) && v.expose() != value =>
                {
                    Some(match contact.kind {
                        ContactKind::Phone => {
                            "the patient asked to be reached only at another phone number"
                        }
                        ContactKind::Email => {
                            "the patient asked to be reached only at another email address"
                        }
                    })
                }
                _ => None,
            };
            if let Some(why) = why {
                return Err(Exclusion {
                    request: *id,
                    rule: rule.kind(),
                    why: why.to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::ContactRole;
    use time::macros::datetime;

    fn s(v: &str) -> Sensitive<String> {
        Sensitive::new(v.to_owned())
    }

    fn contact(kind: ContactKind, value: &str) -> Contact {
        Contact {
            kind,
            value: s(value),
            role: ContactRole::Patient,
        }
    }

    fn request(rule: ConfidentialRule) -> ConfidentialRequest {
        ConfidentialRequest {
            id: ConfidentialRequestId::new(),
            rule,
            method: RequestMethod::WrittenForm,
            recorded_at: datetime!(2026-03-01 09:00 UTC),
            recorded_by: None,
            withdrawn_at: None,
        }
    }

    const MOBILE: &str = "+13125550142";
    const FAMILY: &str = "+13125550100";
    const EMAIL: &str = "ana@example.org";

    fn all() -> [(Contact, Medium); 3] {
        [
            (contact(ContactKind::Phone, MOBILE), Medium::Sms),
            (contact(ContactKind::Phone, FAMILY), Medium::Sms),
            (contact(ContactKind::Email, EMAIL), Medium::Email),
        ]
    }

    fn allowed(r: &Restrictions) -> [bool; 3] {
        all().map(|(c, m)| r.allows(&c, m).is_ok())
    }

    #[test]
    fn no_requests_allow_everything() {
        assert_eq!(allowed(&Restrictions::none()), [true, true, true]);
        assert!(Restrictions::from_requests(&[]).is_empty());
    }

    #[test]
    fn each_rule_excludes_what_it_says() {
        let cases = [
            (
                ConfidentialRule::OnlyContact(s(MOBILE)),
                [true, false, true],
            ),
            (ConfidentialRule::OnlyContact(s(EMAIL)), [true, true, true]),
            (
                ConfidentialRule::OnlyContact(s("other@example.org")),
                [true, true, false],
            ),
            (
                ConfidentialRule::NeverContact(s(FAMILY)),
                [true, false, true],
            ),
            (
                ConfidentialRule::NeverContact(s(EMAIL)),
                [true, true, false],
            ),
            (
                ConfidentialRule::NeverMedium(Medium::Sms),
                [false, false, true],
            ),
            (
                ConfidentialRule::NeverMedium(Medium::Email),
                [true, true, false],
            ),
        ];
        for (rule, expected) in cases {
            let r = Restrictions::from_requests(&[request(rule.clone())]);
            assert_eq!(allowed(&r), expected, "{:?}", rule.kind());
        }
    }

    #[test]
    fn rules_combine_and_two_only_rules_of_one_kind_exclude_both() {
        let r = Restrictions::from_requests(&[
            request(ConfidentialRule::OnlyContact(s(MOBILE))),
            request(ConfidentialRule::NeverMedium(Medium::Email)),
        ]);
        assert_eq!(allowed(&r), [true, false, false]);
        let r = Restrictions::from_requests(&[
            request(ConfidentialRule::OnlyContact(s(MOBILE))),
            request(ConfidentialRule::OnlyContact(s(FAMILY))),
        ]);
        assert_eq!(allowed(&r), [false, false, true]);
    }

    #[test]
    fn withdrawn_requests_stop_applying() {
        let mut req = request(ConfidentialRule::NeverMedium(Medium::Sms));
        req.withdrawn_at = Some(datetime!(2026-04-01 09:00 UTC));
        let r = Restrictions::from_requests(&[req]);
        assert!(r.is_empty());
        assert_eq!(allowed(&r), [true, true, true]);
    }

    #[test]
    fn exclusions_name_the_request_and_never_the_value() {
        let req = request(ConfidentialRule::NeverContact(s(FAMILY)));
        let r = Restrictions::from_requests(std::slice::from_ref(&req));
        let e = r
            .allows(&contact(ContactKind::Phone, FAMILY), Medium::Sms)
            .unwrap_err();
        assert_eq!(e.request, req.id);
        assert_eq!(e.rule, RuleKind::NeverContact);
        for text in [e.to_string(), format!("{e:?}"), format!("{req:?}")] {
            assert!(!text.contains("5550100"), "{text}");
        }
        let only = request(ConfidentialRule::OnlyContact(s(MOBILE)));
        let r = Restrictions::from_requests(std::slice::from_ref(&only));
        let e = r
            .allows(&contact(ContactKind::Phone, FAMILY), Medium::Sms)
            .unwrap_err();
        assert!(!e.why.contains(MOBILE) && !e.why.contains(FAMILY));
    }

    #[test]
    fn the_oldest_active_request_is_named_first() {
        let mut older = request(ConfidentialRule::NeverMedium(Medium::Sms));
        older.recorded_at = datetime!(2026-01-01 09:00 UTC);
        let newer = request(ConfidentialRule::NeverContact(s(MOBILE)));
        let r = Restrictions::from_requests(&[newer, older.clone()]);
        let e = r
            .allows(&contact(ContactKind::Phone, MOBILE), Medium::Sms)
            .unwrap_err();
        assert_eq!(e.request, older.id);
    }

    #[test]
    fn request_values_must_be_normalised_contacts() {
        let ok = |rule| {
            validate_request(&ConfidentialRequestInput {
                rule,
                method: RequestMethod::Verbal,
            })
            .is_ok()
        };
        assert!(ok(ConfidentialRule::OnlyContact(s(MOBILE))));
        assert!(ok(ConfidentialRule::NeverContact(s(EMAIL))));
        assert!(ok(ConfidentialRule::NeverMedium(Medium::Email)));
        assert!(!ok(ConfidentialRule::OnlyContact(s("312 555 0142"))));
        assert!(!ok(ConfidentialRule::NeverContact(s(""))));
        assert!(!ok(ConfidentialRule::NeverContact(s("+"))));
        for m in RequestMethod::ALL {
            assert_eq!(RequestMethod::parse(m.as_str()), Some(m));
        }
        for k in RuleKind::ALL {
            assert_eq!(RuleKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn rules_serialize_with_snake_case_names() {
        let json = serde_json::to_string(&ConfidentialRule::NeverMedium(Medium::Email)).unwrap();
        assert_eq!(json, r#"{"rule":"never_medium","value":"email"}"#);
        let back: ConfidentialRule =
            serde_json::from_str(r#"{"rule":"only_contact","value":"+13125550142"}"#).unwrap();
        assert_eq!(back, ConfidentialRule::OnlyContact(s(MOBILE)));
    }
}

//! The channel policy: may this text go by plain SMS? An allow-list: `Direct` only when every
//! part of the rendered text is an SMS-safe kind and every filled-in value is marked SMS-safe.

use serde::{Deserialize, Serialize};

mod allow;
mod engine;
pub mod eval;
mod frames;
mod scorer;
mod text;
mod vocab;

pub use engine::{Trace, check_sender_name, classify, classify_traced};

/// Where a message's content may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Plain SMS is acceptable (consent permitting).
    Direct,
    /// Content stays in the portal; the patient gets a content-free notification.
    Secure,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Secure => "secure",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "direct" => Some(Self::Direct),
            "secure" => Some(Self::Secure),
            _ => None,
        }
    }

    /// Staff may make a message more secure, never less.
    pub fn at_least(self, other: Route) -> Route {
        self.max(other)
    }
}

/// One reason behind a decision: which rule, which words, and a sentence for staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Stable rule name, e.g. `medication`, `attachment`, `value_not_sms_safe`, `not_allow_listed`.
    pub rule: String,
    /// The words of the text that triggered the rule (may be empty for structural rules).
    pub matched_text: String,
    /// Plain-language explanation shown to staff ("mentions a medication (metformin)").
    pub explanation: String,
}

/// The policy's answer for one rendered text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub route: Route,
    pub reasons: Vec<Reason>,
}

/// What kind of value a template filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    AppointmentType,
    Location,
    Provider,
    /// Other template values (patient first name, practice name or phone, dates, times, links).
    Other,
}

/// A value a template filled into the text, with the practice's SMS-safe flag for catalog values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilledValue {
    pub kind: ValueKind,
    pub text: String,
    /// For catalog values (type, location, provider): whether the practice marked it SMS-safe.
    /// Ignored for `Other`. Absent means not marked.
    #[serde(default)]
    pub sms_safe: bool,
}

impl ValueKind {
    /// Catalog values carry the practice's SMS-safe flag; others do not.
    pub fn is_catalog(self) -> bool {
        !matches!(self, Self::Other)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::AppointmentType => "appointment type",
            Self::Location => "location",
            Self::Provider => "provider",
            Self::Other => "value",
        }
    }
}

/// Everything besides the text that the policy looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassifyContext {
    pub has_attachment: bool,
    /// Values a template filled in; empty for free text.
    pub values: Vec<FilledValue>,
    /// The practice's sender name as shown in texts ("Oak Street Clinic").
    pub sender_name: Option<String>,
}

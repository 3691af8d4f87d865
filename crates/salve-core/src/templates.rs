//! Saved reply templates: text with `{variable}` placeholders such as `{patient.first_name}`.
//!
//! Parsing happens when a template is saved (so staff see mistakes at once) and rendering at
//! send time. Rendering reports every value it filled in, with its kind and the practice's
//! SMS-safe flag, because the channel policy may send a text directly only when every catalog
//! value in it (appointment type, location, provider) is marked SMS-safe.
//!
//! Errors name the field, the position and the variable name, never the rest of the body: a
//! template being written can already contain patient details.

use std::collections::HashMap;
use std::fmt;

use unicode_normalization::UnicodeNormalization;

use crate::policy::{FilledValue, ValueKind};
use crate::validation::FieldError;

/// Ten SMS segments of GSM-7 text; longer replies belong in the portal anyway.
pub const MAX_TEMPLATE_CHARS: usize = 1_600;

/// The field name used in errors from [`parse`].
const BODY_FIELD: &str = "body";

/// Longest variable name we echo back in an error; anything longer is not a name.
const MAX_ECHOED_NAME: usize = 40;

/// A value a template can fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variable {
    PatientFirstName,
    PracticeName,
    PracticePhone,
    /// The sender name shown in texts (checked by the policy, may differ from the legal name).
    PracticeSenderName,
    /// The practice's general portal address (sign-in, sign-up), never a per-message link:
    /// those are single-use and made by the notification code, not typed into templates.
    PracticePortalLink,
    AppointmentDate,
    AppointmentTime,
    AppointmentType,
    AppointmentLocation,
    AppointmentProvider,
    StaffFirstName,
}

impl Variable {
    pub const ALL: [Variable; 11] = [
        Self::PatientFirstName,
        Self::PracticeName,
        Self::PracticePhone,
        Self::PracticeSenderName,
        Self::PracticePortalLink,
        Self::AppointmentDate,
        Self::AppointmentTime,
        Self::AppointmentType,
        Self::AppointmentLocation,
        Self::AppointmentProvider,
        Self::StaffFirstName,
    ];

    /// The dotted name written between braces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PatientFirstName => "patient.first_name",
            Self::PracticeName => "practice.name",
            Self::PracticePhone => "practice.phone",
            Self::PracticeSenderName => "practice.sender_name",
            Self::PracticePortalLink => "practice.portal_link",
            Self::AppointmentDate => "appointment.date",
            Self::AppointmentTime => "appointment.time",
            Self::AppointmentType => "appointment.type",
            Self::AppointmentLocation => "appointment.location",
            Self::AppointmentProvider => "appointment.provider",
            Self::StaffFirstName => "staff.first_name",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == raw)
    }

    /// Which kind of value this is, for the channel policy. Only catalog values carry an
    /// SMS-safe flag; the others are judged by the policy's ordinary rules.
    pub fn value_kind(self) -> ValueKind {
        match self {
            Self::AppointmentType => ValueKind::AppointmentType,
            Self::AppointmentLocation => ValueKind::Location,
            Self::AppointmentProvider => ValueKind::Provider,
            Self::PatientFirstName
            | Self::PracticeName
            | Self::PracticePhone
            | Self::PracticeSenderName
            | Self::PracticePortalLink
            | Self::AppointmentDate
            | Self::AppointmentTime
            | Self::StaffFirstName => ValueKind::Other,
        }
    }

    /// Whether the value comes from the practice's catalog and so has an SMS-safe flag.
    pub fn is_catalog(self) -> bool {
        self.value_kind() != ValueKind::Other
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A template as stored: the body text as staff wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub body: String,
}

impl Template {
    pub fn new(body: impl Into<String>) -> Self {
        Self { body: body.into() }
    }

    pub fn parse(&self) -> Result<ParsedTemplate, Vec<FieldError>> {
        parse(&self.body)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(Variable),
}

/// A template whose syntax and variables have been checked; ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTemplate {
    /// The body, NFC-normalised, as it should be stored.
    source: String,
    segments: Vec<Segment>,
}

/// Checks a template body: known variables only, balanced braces (`{{` and `}}` are literal
/// braces), no control characters besides line breaks and tabs, at most
/// [`MAX_TEMPLATE_CHARS`] characters. Every problem found is reported, not just the first.
pub fn parse(body: &str) -> Result<ParsedTemplate, Vec<FieldError>> {
    // NFC so that "é" typed on different keyboards is stored and matched the same way.
    let source: String = body.nfc().collect();
    let mut errors = Vec::new();

    if source.trim().is_empty() {
        errors.push(FieldError::new(BODY_FIELD, "a non-empty template text"));
    }
    let chars = source.chars().count();
    if chars > MAX_TEMPLATE_CHARS {
        errors.push(FieldError::new(
            BODY_FIELD,
            format!("at most {MAX_TEMPLATE_CHARS} characters (this one has {chars})"),
        ));
    }
    if source
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        errors.push(FieldError::new(
            BODY_FIELD,
            "text without control characters (line breaks and tabs are fine)",
        ));
    }

    let mut segments = Vec::new();
    let mut literal = String::new();
    // (char position, char) so errors can point at a place without quoting the text.
    let mut iter = source.chars().enumerate().peekable();
    while let Some((pos, c)) = iter.next() {
        match c {
            '{' if iter.peek().map(|&(_, n)| n) == Some('{') => {
                iter.next();
                literal.push('{');
            }
            '}' if iter.peek().map(|&(_, n)| n) == Some('}') => {
                iter.next();
                literal.push('}');
            }
            '}' => errors.push(FieldError::new(
                BODY_FIELD,
                format!(
                    "a '}}' closing a variable, or '}}}}' for a literal brace (character {})",
                    pos + 1
                ),
            )),
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                // A `{` inside a variable means the first one was never closed; leave it for
                // the outer loop so that `{a {patient.first_name}` reports one error, not two.
                while let Some(&(_, n)) = iter.peek() {
                    if n == '{' {
                        break;
                    }
                    iter.next();
                    if n == '}' {
                        closed = true;
                        break;
                    }
                    name.push(n);
                }
                if !closed {
                    errors.push(FieldError::new(
                        BODY_FIELD,
                        format!(
                            "a '}}' closing the variable opened at character {}, or '{{{{' for a literal brace",
                            pos + 1
                        ),
                    ));
                    continue;
                }
                match Variable::parse(name.trim()) {
                    Some(var) => {
                        if !literal.is_empty() {
                            segments.push(Segment::Literal(std::mem::take(&mut literal)));
                        }
                        segments.push(Segment::Var(var));
                    }
                    None => errors.push(unknown_variable(name.trim(), pos + 1)),
                }
            }
            _ => literal.push(c),
        }
    }
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }

    if errors.is_empty() {
        Ok(ParsedTemplate { source, segments })
    } else {
        Err(errors)
    }
}

fn unknown_variable(name: &str, position: usize) -> FieldError {
    let known = Variable::ALL.map(Variable::as_str).join(", ");
    // Echo what was between the braces only when it looks like a variable name; otherwise it
    // is free text (possibly about a patient) that staff put in braces.
    let looks_like_name = !name.is_empty()
        && name.len() <= MAX_ECHOED_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_'));
    let what = if looks_like_name {
        format!("{{{name}}} at character {position} is not a known variable")
    } else {
        format!("the text in braces at character {position} is not a variable")
    };
    FieldError::new(BODY_FIELD, format!("a known variable ({known}); {what}"))
}

impl ParsedTemplate {
    /// The NFC-normalised body, to store in place of what was submitted.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The distinct variables used, in order of first use.
    pub fn variables(&self) -> Vec<Variable> {
        let mut out: Vec<Variable> = Vec::new();
        for segment in &self.segments {
            if let Segment::Var(v) = segment
                && !out.contains(v)
            {
                out.push(*v);
            }
        }
        out
    }

    /// Fills in every variable. All missing (or blank) values are reported together.
    pub fn render(&self, values: &TemplateValues) -> Result<Rendered, MissingVariables> {
        let missing: Vec<Variable> = self
            .variables()
            .into_iter()
            .filter(|v| values.get(*v).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(MissingVariables { variables: missing });
        }

        let mut text = String::with_capacity(self.source.len());
        for segment in &self.segments {
            match segment {
                Segment::Literal(s) => text.push_str(s),
                Segment::Var(v) => {
                    if let Some(value) = values.get(*v) {
                        text.push_str(&value.text);
                    }
                }
            }
        }
        let filled = self
            .variables()
            .into_iter()
            .filter_map(|v| {
                values.get(v).map(|value| FilledValue {
                    kind: v.value_kind(),
                    text: value.text.clone(),
                    sms_safe: value.sms_safe,
                })
            })
            .collect();
        Ok(Rendered { text, filled })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Value {
    text: String,
    sms_safe: bool,
}

/// The values available for one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateValues {
    values: HashMap<Variable, Value>,
}

impl TemplateValues {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a value without an SMS-safe flag. For catalog variables (type, location, provider)
    /// this counts as *not* SMS-safe: only [`set_catalog`](Self::set_catalog) can say otherwise.
    pub fn set(&mut self, variable: Variable, text: impl Into<String>) -> &mut Self {
        let sms_safe = !variable.is_catalog();
        self.values.insert(
            variable,
            Value {
                text: text.into(),
                sms_safe,
            },
        );
        self
    }

    /// Sets a catalog value with the practice's SMS-safe flag for it.
    pub fn set_catalog(
        &mut self,
        variable: Variable,
        text: impl Into<String>,
        sms_safe: bool,
    ) -> &mut Self {
        self.values.insert(
            variable,
            Value {
                text: text.into(),
                sms_safe,
            },
        );
        self
    }

    /// A blank value counts as missing: "see you at  with " is worse than an error.
    fn get(&self, variable: Variable) -> Option<&Value> {
        self.values
            .get(&variable)
            .filter(|v| !v.text.trim().is_empty())
    }
}

/// A rendered template and the values filled into it (one entry per distinct variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub filled: Vec<FilledValue>,
}

/// The template uses variables that have no value for this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no value for {}", list(.variables))]
pub struct MissingVariables {
    pub variables: Vec<Variable>,
}

fn list(variables: &[Variable]) -> String {
    variables
        .iter()
        .map(|v| format!("{{{v}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reminder_values() -> TemplateValues {
        let mut values = TemplateValues::new();
        values
            .set(Variable::PatientFirstName, "Ana")
            .set(Variable::PracticeName, "Oak Street Clinic")
            .set(Variable::PracticePhone, "(555) 010-0199")
            .set(Variable::AppointmentDate, "Tuesday, May 5")
            .set(Variable::AppointmentTime, "9:30 AM")
            .set_catalog(Variable::AppointmentProvider, "Dr. Rivera", true)
            .set_catalog(
                Variable::AppointmentLocation,
                "Cancer Center, 3rd floor",
                false,
            );
        values
    }

    #[test]
    fn every_variable_round_trips_by_name() {
        for v in Variable::ALL {
            assert_eq!(Variable::parse(v.as_str()), Some(v));
            let parsed = parse(&format!("x {{{v}}} y")).unwrap();
            assert_eq!(parsed.variables(), vec![v]);
        }
        assert_eq!(Variable::parse("patient.last_name"), None);
    }

    #[test]
    fn catalog_variables_have_their_policy_kinds() {
        assert_eq!(
            Variable::AppointmentType.value_kind(),
            ValueKind::AppointmentType
        );
        assert_eq!(
            Variable::AppointmentLocation.value_kind(),
            ValueKind::Location
        );
        assert_eq!(
            Variable::AppointmentProvider.value_kind(),
            ValueKind::Provider
        );
        assert_eq!(Variable::PatientFirstName.value_kind(), ValueKind::Other);
        assert_eq!(Variable::ALL.iter().filter(|v| v.is_catalog()).count(), 3);
    }

    #[test]
    fn renders_a_reminder() {
        let t = Template::new(
            "Hi {patient.first_name}, a reminder of your visit with {appointment.provider} on \
             {appointment.date} at {appointment.time}. Questions? Call {practice.phone}.",
        );
        let parsed = t.parse().unwrap();
        assert_eq!(parsed.source(), t.body);
        assert_eq!(
            parsed.variables(),
            vec![
                Variable::PatientFirstName,
                Variable::AppointmentProvider,
                Variable::AppointmentDate,
                Variable::AppointmentTime,
                Variable::PracticePhone,
            ]
        );
        let rendered = parsed.render(&reminder_values()).unwrap();
        assert_eq!(
            rendered.text,
            "Hi Ana, a reminder of your visit with Dr. Rivera on Tuesday, May 5 at 9:30 AM. \
             Questions? Call (555) 010-0199."
        );
    }

    #[test]
    fn filled_values_carry_kinds_and_flags_once_per_variable() {
        let parsed =
            parse("{appointment.location} / {appointment.provider} / {appointment.location}")
                .unwrap();
        let rendered = parsed.render(&reminder_values()).unwrap();
        assert_eq!(
            rendered.text,
            "Cancer Center, 3rd floor / Dr. Rivera / Cancer Center, 3rd floor"
        );
        assert_eq!(
            rendered.filled,
            vec![
                FilledValue {
                    kind: ValueKind::Location,
                    text: "Cancer Center, 3rd floor".into(),
                    sms_safe: false,
                },
                FilledValue {
                    kind: ValueKind::Provider,
                    text: "Dr. Rivera".into(),
                    sms_safe: true,
                },
            ]
        );
    }

    #[test]
    fn catalog_value_set_without_a_flag_is_not_sms_safe() {
        let mut values = TemplateValues::new();
        values.set(Variable::AppointmentType, "Annual physical");
        values.set(Variable::PracticeName, "Oak Street Clinic");
        let rendered = parse("{appointment.type} at {practice.name}")
            .unwrap()
            .render(&values)
            .unwrap();
        assert!(!rendered.filled[0].sms_safe);
        assert_eq!(rendered.filled[1].kind, ValueKind::Other);
    }

    #[test]
    fn unknown_variable_is_named_and_the_body_is_not_echoed() {
        let errors = parse("Ana's biopsy is ready, {patient.last_name}").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "body");
        assert!(errors[0].expected.contains("{patient.last_name}"));
        assert!(errors[0].expected.contains("character 24"));
        assert!(!errors[0].expected.contains("biopsy"));

        // Free text in braces is not a variable name and is not quoted back.
        let errors = parse("Note: {HIV test negative}").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].expected.contains("HIV"));
        assert!(errors[0].expected.contains("not a variable"));
    }

    #[test]
    fn every_error_is_reported() {
        let errors = parse("{nope} and {patient.first_name and } and {}").unwrap_err();
        // An unknown name, free text in braces, and an empty pair.
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn unbalanced_braces_are_refused() {
        for body in [
            "Call us {practice.phone",
            "Call us practice.phone}",
            "{",
            "}",
            "{{patient.first_name}",
            "{a {patient.first_name}",
        ] {
            assert!(parse(body).is_err(), "{body:?} should be refused");
        }
    }

    #[test]
    fn doubled_braces_are_literal() {
        let parsed = parse("Use {{code}} then {{{patient.first_name}}}").unwrap();
        assert_eq!(parsed.variables(), vec![Variable::PatientFirstName]);
        let rendered = parsed.render(&reminder_values()).unwrap();
        assert_eq!(rendered.text, "Use {code} then {Ana}");
        assert!(rendered.filled.iter().all(|f| f.kind == ValueKind::Other));
    }

    #[test]
    fn whitespace_inside_braces_is_tolerated() {
        let parsed = parse("Hi { patient.first_name }!").unwrap();
        assert_eq!(parsed.render(&reminder_values()).unwrap().text, "Hi Ana!");
    }

    #[test]
    fn missing_values_are_listed_together() {
        let parsed =
            parse("{appointment.type} at {appointment.location} with {staff.first_name}").unwrap();
        let mut values = reminder_values();
        values.set(Variable::StaffFirstName, "  ");
        let err = parsed.render(&values).unwrap_err();
        assert_eq!(
            err.variables,
            vec![Variable::AppointmentType, Variable::StaffFirstName]
        );
        assert_eq!(
            err.to_string(),
            "no value for {appointment.type}, {staff.first_name}"
        );
    }

    #[test]
    fn spanish_text_is_untouched() {
        let body = "Hola {patient.first_name}: le recordamos su cita el {appointment.date} a las \
                    {appointment.time}. ¿Preguntas? Llame al {practice.phone}. ¡Gracias! — Señora Núñez";
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.source(), body);
        let rendered = parsed.render(&reminder_values()).unwrap();
        assert!(rendered.text.starts_with("Hola Ana: le recordamos"));
        assert!(
            rendered
                .text
                .ends_with("¿Preguntas? Llame al (555) 010-0199. ¡Gracias! — Señora Núñez")
        );
    }

    #[test]
    fn decomposed_accents_are_stored_composed() {
        // "cita mañana" typed with a combining tilde.
        let parsed = parse("cita man\u{0303}ana").unwrap();
        assert_eq!(parsed.source(), "cita mañana");
    }

    #[test]
    fn length_and_content_limits() {
        let at_limit = "a".repeat(MAX_TEMPLATE_CHARS);
        assert!(parse(&at_limit).is_ok());
        // Characters, not bytes: 1,600 "ñ" are 3,200 bytes and still allowed.
        assert!(parse(&"ñ".repeat(MAX_TEMPLATE_CHARS)).is_ok());
        assert!(parse(&"a".repeat(MAX_TEMPLATE_CHARS + 1)).is_err());
        assert!(parse("").is_err());
        assert!(parse("  \n ").is_err());
        assert!(parse("bell\u{7}").is_err());
        assert!(parse("line one\nline two\ttab").is_ok());
    }

    #[test]
    fn a_value_with_braces_is_not_rendered_again() {
        let mut values = TemplateValues::new();
        values.set(Variable::PatientFirstName, "{practice.phone}");
        let text = parse("Hi {patient.first_name}")
            .unwrap()
            .render(&values)
            .unwrap()
            .text;
        assert_eq!(text, "Hi {practice.phone}");
    }
}

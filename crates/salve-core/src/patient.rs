//! Patients and their contact points: what a valid patient record is.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::sensitive::Sensitive;
use crate::validation::{self, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    Phone,
    Email,
}

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::Email => "email",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "phone" => Some(Self::Phone),
            "email" => Some(Self::Email),
            _ => None,
        }
    }
}

/// Whose contact point this is. A family phone may be a guardian's for several patients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactRole {
    #[serde(rename = "self")]
    Patient,
    Guardian,
    Caregiver,
}

impl ContactRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "self",
            Self::Guardian => "guardian",
            Self::Caregiver => "caregiver",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "self" => Some(Self::Patient),
            "guardian" => Some(Self::Guardian),
            "caregiver" => Some(Self::Caregiver),
            _ => None,
        }
    }
}

/// Unvalidated contact fields as they arrive from a client.
#[derive(Debug, Clone)]
pub struct ContactInput {
    pub kind: ContactKind,
    pub value: Sensitive<String>,
    pub role: ContactRole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub kind: ContactKind,
    /// Normalized: E.164 for phones, lowercased domain for emails.
    pub value: Sensitive<String>,
    pub role: ContactRole,
}

/// Unvalidated patient fields as they arrive from a client.
#[derive(Debug, Clone)]
pub struct PatientInput {
    pub given_name: Sensitive<String>,
    pub family_name: Sensitive<String>,
    pub birth_date: Sensitive<String>,
    pub mrn: Option<Sensitive<String>>,
    pub preferred_language: Option<String>,
    pub time_zone: Option<String>,
    pub contacts: Vec<ContactInput>,
}

/// A complete, validated patient record (without its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRecord {
    pub given_name: Sensitive<String>,
    pub family_name: Sensitive<String>,
    pub birth_date: Date,
    pub mrn: Option<Sensitive<String>>,
    pub preferred_language: String,
    /// `None` means "the practice's time zone".
    pub time_zone: Option<String>,
    pub contacts: Vec<Contact>,
}

/// Partial update: absent fields keep their value; `contacts`, when present, replaces the list.
#[derive(Debug, Clone, Default)]
pub struct PatientPatchInput {
    pub given_name: Option<Sensitive<String>>,
    pub family_name: Option<Sensitive<String>>,
    pub birth_date: Option<Sensitive<String>>,
    /// `Some(None)` clears the MRN.
    pub mrn: Option<Option<Sensitive<String>>>,
    pub preferred_language: Option<String>,
    /// `Some(None)` returns to the practice's time zone.
    pub time_zone: Option<Option<String>>,
    pub contacts: Option<Vec<ContactInput>>,
}

pub const MAX_CONTACTS: usize = 10;
pub const DEFAULT_LANGUAGE: &str = "en";

/// Rules a practice applies when reading input, e.g. the region for national phone numbers.
#[derive(Debug, Clone)]
pub struct InputContext {
    pub phone_region: String,
    pub today: Date,
}

fn collect<T>(result: Result<T, FieldError>, errors: &mut Vec<FieldError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn contacts(
    inputs: &[ContactInput],
    ctx: &InputContext,
    errors: &mut Vec<FieldError>,
) -> Vec<Contact> {
    if inputs.len() > MAX_CONTACTS {
        errors.push(FieldError::new(
            "contacts",
            format!("at most {MAX_CONTACTS} contact points"),
        ));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(inputs.len());
    for (i, c) in inputs.iter().enumerate() {
        let field = format!("contacts[{i}].value");
        let value = match c.kind {
            ContactKind::Phone => validation::phone(&field, c.value.expose(), &ctx.phone_region),
            ContactKind::Email => validation::email(&field, c.value.expose()),
        };
        if let Some(value) = collect(value, errors) {
            let duplicate = out
                .iter()
                .any(|o: &Contact| o.kind == c.kind && o.value == value);
            if duplicate {
                errors.push(FieldError::new(field, "each contact point only once"));
            } else {
                out.push(Contact {
                    kind: c.kind,
                    value,
                    role: c.role,
                });
            }
        }
    }
    out
}

impl PatientRecord {
    /// Validates every field, reporting all problems at once.
    pub fn from_input(input: &PatientInput, ctx: &InputContext) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let given_name = collect(
            validation::name("given_name", input.given_name.expose()),
            &mut errors,
        );
        let family_name = collect(
            validation::name("family_name", input.family_name.expose()),
            &mut errors,
        );
        let birth_date = collect(
            validation::birth_date("birth_date", input.birth_date.expose(), ctx.today),
            &mut errors,
        );
        let mrn = match &input.mrn {
            Some(m) => collect(validation::mrn("mrn", m.expose()), &mut errors).map(Some),
            None => Some(None),
        };
        let preferred_language = match &input.preferred_language {
            Some(l) => collect(validation::language("preferred_language", l), &mut errors),
            None => Some(DEFAULT_LANGUAGE.to_owned()),
        };
        let time_zone = match &input.time_zone {
            Some(tz) => collect(validation::time_zone("time_zone", tz), &mut errors).map(Some),
            None => Some(None),
        };
        let contacts = contacts(&input.contacts, ctx, &mut errors);
        match (
            given_name,
            family_name,
            birth_date,
            mrn,
            preferred_language,
            time_zone,
        ) {
            (
                Some(given_name),
                Some(family_name),
                Some(birth_date),
                Some(mrn),
                Some(preferred_language),
                Some(time_zone),
            ) if errors.is_empty() => Ok(Self {
                given_name,
                family_name,
                birth_date,
                mrn,
                preferred_language,
                time_zone,
                contacts,
            }),
            _ => Err(errors),
        }
    }

    /// Applies a partial update, validating only what changes.
    pub fn patched(
        &self,
        patch: &PatientPatchInput,
        ctx: &InputContext,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut next = self.clone();
        if let Some(v) = &patch.given_name
            && let Some(v) = collect(validation::name("given_name", v.expose()), &mut errors)
        {
            next.given_name = v;
        }
        if let Some(v) = &patch.family_name
            && let Some(v) = collect(validation::name("family_name", v.expose()), &mut errors)
        {
            next.family_name = v;
        }
        if let Some(v) = &patch.birth_date
            && let Some(v) = collect(
                validation::birth_date("birth_date", v.expose(), ctx.today),
                &mut errors,
            )
        {
            next.birth_date = v;
        }
        match &patch.mrn {
            Some(Some(v)) => {
                if let Some(v) = collect(validation::mrn("mrn", v.expose()), &mut errors) {
                    next.mrn = Some(v);
                }
            }
            Some(None) => next.mrn = None,
            None => {}
        }
        if let Some(v) = &patch.preferred_language
            && let Some(v) = collect(validation::language("preferred_language", v), &mut errors)
        {
            next.preferred_language = v;
        }
        match &patch.time_zone {
            Some(Some(v)) => {
                if let Some(v) = collect(validation::time_zone("time_zone", v), &mut errors) {
                    next.time_zone = Some(v);
                }
            }
            Some(None) => next.time_zone = None,
            None => {}
        }
        if let Some(list) = &patch.contacts {
            next.contacts = contacts(list, ctx, &mut errors);
        }
        if errors.is_empty() {
            Ok(next)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn ctx() -> InputContext {
        InputContext {
            phone_region: "US".into(),
            today: date!(2026 - 11 - 25),
        }
    }

    fn s(v: &str) -> Sensitive<String> {
        Sensitive::new(v.to_owned())
    }

    fn input() -> PatientInput {
        PatientInput {
            given_name: s("Ana"),
            family_name: s("Ruiz"),
            birth_date: s("1984-07-02"),
            mrn: Some(s("mrn-1")),
            preferred_language: Some("es".into()),
            time_zone: None,
            contacts: vec![ContactInput {
                kind: ContactKind::Phone,
                value: s("312 555 0142"),
                role: ContactRole::Patient,
            }],
        }
    }

    #[test]
    fn a_valid_patient_is_normalized() {
        let p = PatientRecord::from_input(&input(), &ctx()).unwrap();
        assert_eq!(p.mrn.unwrap().expose(), "MRN-1");
        assert_eq!(p.contacts[0].value.expose(), "+13125550142");
        assert_eq!(p.preferred_language, "es");
        assert_eq!(p.time_zone, None);
    }

    #[test]
    fn all_errors_are_reported_with_their_fields() {
        let mut bad = input();
        bad.given_name = s("");
        bad.birth_date = s("yesterday");
        bad.contacts[0].value = s("nope");
        let errors = PatientRecord::from_input(&bad, &ctx()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["given_name", "birth_date", "contacts[0].value"]);
    }

    #[test]
    fn duplicate_contacts_are_refused() {
        let mut bad = input();
        bad.contacts.push(ContactInput {
            kind: ContactKind::Phone,
            value: s("+1 312-555-0142"),
            role: ContactRole::Guardian,
        });
        let errors = PatientRecord::from_input(&bad, &ctx()).unwrap_err();
        assert_eq!(errors[0].field, "contacts[1].value");
    }

    #[test]
    fn patch_changes_only_given_fields() {
        let p = PatientRecord::from_input(&input(), &ctx()).unwrap();
        let patch = PatientPatchInput {
            family_name: Some(s("Ruiz-Lopez")),
            mrn: Some(None),
            ..Default::default()
        };
        let q = p.patched(&patch, &ctx()).unwrap();
        assert_eq!(q.family_name.expose(), "Ruiz-Lopez");
        assert_eq!(q.given_name, p.given_name);
        assert!(q.mrn.is_none());
        let bad = PatientPatchInput {
            birth_date: Some(s("3000-01-01")),
            ..Default::default()
        };
        assert_eq!(p.patched(&bad, &ctx()).unwrap_err()[0].field, "birth_date");
    }
}

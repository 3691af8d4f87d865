//! Parsing of untrusted input into domain values. Errors name the field and what was
//! expected, and never carry the submitted value: it may be PHI.

use std::fmt;

use time::{Date, Month, macros::format_description};

use crate::sensitive::Sensitive;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// A JSON-pointer-like path such as `contacts[1].value`.
    pub field: String,
    /// What the field must be, e.g. "a date as YYYY-MM-DD".
    pub expected: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: expected {}", self.field, self.expected)
    }
}

pub const MAX_NAME_CHARS: usize = 200;

/// A person's name part: trimmed, 1..=200 characters, no control characters.
pub fn name(field: &str, raw: &str) -> Result<Sensitive<String>, FieldError> {
    let trimmed = raw.trim();
    let count = trimmed.chars().count();
    if count == 0 || count > MAX_NAME_CHARS || trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("a non-empty name of at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(Sensitive::new(trimmed.to_owned()))
}

/// A date of birth as `YYYY-MM-DD`, not in the future and not before 1880.
pub fn birth_date(field: &str, raw: &str, today: Date) -> Result<Date, FieldError> {
    let expected = || FieldError::new(field, "a past date as YYYY-MM-DD");
    let format = format_description!("[year]-[month]-[day]");
    let date = Date::parse(raw.trim(), &format).map_err(|_| expected())?;
    let earliest = Date::from_calendar_date(1880, Month::January, 1).map_err(|_| expected())?;
    if date > today || date < earliest {
        return Err(expected());
    }
    Ok(date)
}

pub fn format_date(date: Date) -> String {
    let format = format_description!("[year]-[month]-[day]");
    date.format(&format).unwrap_or_default()
}

/// A medical record number: 1..=64 letters, digits, `-`, `.` or `/`.
pub fn mrn(field: &str, raw: &str) -> Result<Sensitive<String>, FieldError> {
    let trimmed = raw.trim();
    let ok = !trimmed.is_empty()
        && trimmed.len() <= 64
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/'));
    if !ok {
        return Err(FieldError::new(
            field,
            "1 to 64 letters, digits, '-', '.' or '/'",
        ));
    }
    Ok(Sensitive::new(trimmed.to_ascii_uppercase()))
}

/// A BCP 47 language tag limited to language and optional region, e.g. `en`, `es-MX`.
pub fn language(field: &str, raw: &str) -> Result<String, FieldError> {
    let expected = || FieldError::new(field, "a language tag such as \"en\" or \"es-MX\"");
    let mut parts = raw.trim().split('-');
    let lang = parts.next().ok_or_else(expected)?;
    if !(2..=3).contains(&lang.len()) || !lang.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(expected());
    }
    let mut tag = lang.to_ascii_lowercase();
    if let Some(region) = parts.next() {
        let alpha = region.len() == 2 && region.chars().all(|c| c.is_ascii_alphabetic());
        let numeric = region.len() == 3 && region.chars().all(|c| c.is_ascii_digit());
        if !(alpha || numeric) {
            return Err(expected());
        }
        tag.push('-');
        tag.push_str(&region.to_ascii_uppercase());
    }
    if parts.next().is_some() {
        return Err(expected());
    }
    Ok(tag)
}

/// An IANA time zone name known to the bundled time zone database.
pub fn time_zone(field: &str, raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    match jiff::tz::TimeZone::get(name) {
        Ok(_) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(FieldError::new(
            field,
            "an IANA time zone name such as \"America/Chicago\"",
        )),
    }
}

/// A region (ISO 3166 alpha-2 country code) for reading national phone numbers.
pub fn phone_region(field: &str, raw: &str) -> Result<String, FieldError> {
    let region = raw.trim().to_ascii_uppercase();
    if region.len() == 2 && region.parse::<phonenumber::country::Id>().is_ok() {
        Ok(region)
    } else {
        Err(FieldError::new(
            field,
            "a two-letter country code such as \"US\"",
        ))
    }
}

/// A phone number, normalized to E.164. National numbers are read in the practice's region.
pub fn phone(field: &str, raw: &str, region: &str) -> Result<Sensitive<String>, FieldError> {
    let expected = || {
        FieldError::new(
            field,
            "a valid phone number in E.164 (+15551234567) or national format",
        )
    };
    let country = region.parse::<phonenumber::country::Id>().ok();
    let number = phonenumber::parse(country, raw.trim()).map_err(|_| expected())?;
    if !phonenumber::is_valid(&number) {
        return Err(expected());
    }
    Ok(Sensitive::new(
        number.format().mode(phonenumber::Mode::E164).to_string(),
    ))
}

/// An email address: one `@`, a plausible local part, a dotted domain; the domain is lowercased.
pub fn email(field: &str, raw: &str) -> Result<Sensitive<String>, FieldError> {
    let expected = || FieldError::new(field, "an email address such as name@example.org");
    let trimmed = raw.trim();
    if trimmed.len() > 254 {
        return Err(expected());
    }
    let (local, domain) = trimmed.split_once('@').ok_or_else(expected)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && local.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']'
                )
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !(local_ok && domain_ok) {
        return Err(expected());
    }
    Ok(Sensitive::new(format!(
        "{local}@{}",
        domain.to_ascii_lowercase()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 25);

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("given_name", "  Ana ").unwrap().expose(), "Ana");
        assert!(name("given_name", "   ").is_err());
        assert!(name("given_name", &"x".repeat(201)).is_err());
        assert!(name("given_name", "A\u{0007}na").is_err());
    }

    #[test]
    fn birth_dates_must_be_past_real_dates() {
        assert_eq!(
            birth_date("birth_date", "1980-02-29", TODAY).unwrap(),
            date!(1980 - 02 - 29)
        );
        assert!(birth_date("birth_date", "1981-02-29", TODAY).is_err());
        assert!(birth_date("birth_date", "2027-01-01", TODAY).is_err());
        assert!(birth_date("birth_date", "02/03/1980", TODAY).is_err());
        assert!(birth_date("birth_date", "1700-01-01", TODAY).is_err());
    }

    #[test]
    fn errors_never_echo_the_value() {
        let err = birth_date("birth_date", "Jane Secret", TODAY).unwrap_err();
        assert!(!err.to_string().contains("Jane"));
        let err = phone("contacts[0].value", "555-SECRET", "US").unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
        assert_eq!(err.field, "contacts[0].value");
    }

    #[test]
    fn phones_normalize_to_e164() {
        assert_eq!(
            phone("p", "(312) 555-0142", "US").unwrap().expose(),
            "+13125550142"
        );
        assert_eq!(
            phone("p", "+44 20 7946 0958", "US").unwrap().expose(),
            "+442079460958"
        );
        assert!(phone("p", "12345", "US").is_err());
        assert!(phone("p", "not a phone", "US").is_err());
        assert!(phone("p", "+1 555 000", "US").is_err());
    }

    #[test]
    fn emails_are_checked_and_domain_lowercased() {
        assert_eq!(
            email("e", "Ana.Ruiz@Example.ORG").unwrap().expose(),
            "Ana.Ruiz@example.org"
        );
        assert!(email("e", "no-at-sign").is_err());
        assert!(email("e", "a@b").is_err());
        assert!(email("e", "a b@example.org").is_err());
        assert!(email("e", "a@@example.org").is_err());
    }

    #[test]
    fn mrn_languages_and_zones() {
        assert_eq!(mrn("mrn", " ab-123 ").unwrap().expose(), "AB-123");
        assert!(mrn("mrn", "has space").is_err());
        assert_eq!(language("l", "ES-mx").unwrap(), "es-MX");
        assert_eq!(language("l", "en").unwrap(), "en");
        assert!(language("l", "english").is_err());
        assert!(language("l", "en-US-x").is_err());
        assert_eq!(
            time_zone("tz", "America/Chicago").unwrap(),
            "America/Chicago"
        );
        assert!(time_zone("tz", "Mars/Olympus").is_err());
        assert!(time_zone("tz", "").is_err());
    }
}

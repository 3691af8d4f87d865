//! FHIR search parameters: parsing only (pure). Errors name the parameter, never its value.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

/// Default and largest page size (`_count`).
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 200;

/// A search's parameters, in the order the client sent them.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Refuses a parameter this search does not know (ignoring it could return more records
    /// than the client asked for).
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        const COMMON: &[&str] = &["_count", "_offset", "_cursor", "_format"];
        for (name, _) in &self.0 {
            if !known.contains(&name.as_str()) && !COMMON.contains(&name.as_str()) {
                return Err(format!(
                    "unknown or unsupported search parameter `{}`",
                    safe(name)
                ));
            }
        }
        if let Some(f) = self.one("_format")?
            && !matches!(f, "json" | "application/json" | "application/fhir+json")
        {
            return Err("`_format`: only JSON is served".into());
        }
        Ok(())
    }

    pub fn all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_owned();
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parameter's one value; repeating it is an error.
    pub fn one<'a>(&'a self, name: &str) -> Result<Option<&'a str>, String> {
        let mut it = self.all(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(format!("`{name}` may be given once"));
        }
        Ok(first)
    }

    pub fn count(&self) -> Result<usize, String> {
        match self.one("_count")? {
            None => Ok(DEFAULT_COUNT),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_COUNT).contains(n))
                .ok_or_else(|| format!("`_count`: a number from 1 to {MAX_COUNT}")),
        }
    }

    pub fn offset(&self) -> Result<usize, String> {
        match self.one("_offset")? {
            None => Ok(0),
            Some(raw) => raw
                .parse::<usize>()
                .map_err(|_| "`_offset`: a whole number".to_owned()),
        }
    }

    /// The query string of the next page: these parameters without paging ones, plus `extra`.
    pub fn next_query(&self, extra: &[(&str, String)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (n, v) in &self.0 {
            if n != "_offset" && n != "_cursor" {
                s.append_pair(n, v);
            }
        }
        for (n, v) in extra {
            s.append_pair(n, v);
        }
        s.finish()
    }
}

/// Parameter names are echoed in errors: only if they look like names.
fn safe(name: &str) -> &str {
    if name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.'))
    {
        name
    } else {
        "(unprintable)"
    }
}

/// A time window in microseconds: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Window {
    fn narrow(&mut self, from: Option<i64>, to: Option<i64>) {
        if let Some(f) = from {
            self.from = Some(self.from.map_or(f, |x| x.max(f)));
        }
        if let Some(t) = to {
            self.to = Some(self.to.map_or(t, |x| x.min(t)));
        }
    }

    pub fn contains(&self, micros: i64) -> bool {
        self.from.is_none_or(|f| micros >= f) && self.to.is_none_or(|t| micros < t)
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    salve_core::clock::to_micros(t)
}

/// The instants a date or dateTime value covers: a day (UTC) or one instant.
fn span(raw: &str) -> Option<(i64, i64)> {
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        let m = micros(t);
        return Some((m, m + 1));
    }
    let date = Date::parse(
        raw,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    let start = date.with_time(Time::MIDNIGHT).assume_utc();
    Some((micros(start), micros(start + time::Duration::days(1))))
}

/// Every value of a date parameter (`eq`, `ne` refused, `lt`, `le`, `gt`, `ge`; no prefix is
/// `eq`), intersected.
pub fn date_window(params: &Params, name: &str) -> Result<Window, String> {
    let mut w = Window::default();
    for raw in params.all(name) {
        let (prefix, value) = match raw.get(..2) {
            Some(p @ ("eq" | "lt" | "le" | "gt" | "ge")) => (p, &raw[2..]),
            _ => ("eq", raw),
        };
        let (start, end) = span(value).ok_or_else(|| {
            format!("`{name}`: a date (YYYY-MM-DD) or an instant with its zone, with an optional eq/lt/le/gt/ge prefix")
        })?;
        match prefix {
            "eq" => w.narrow(Some(start), Some(end)),
            "lt" => w.narrow(None, Some(start)),
            "le" => w.narrow(None, Some(end)),
            "gt" => w.narrow(Some(end), None),
            _ => w.narrow(Some(start), None),
        }
    }
    Ok(w)
}

/// A token parameter's value without its system (`system|code` → `code`).
pub fn token_value(raw: &str) -> &str {
    raw.rsplit_once('|').map_or(raw, |(_, v)| v)
}

/// A reference parameter's id: `Patient/{id}`, an absolute URL ending so, or a bare id.
pub fn reference_id<'a>(raw: &'a str, kind: &str) -> Option<&'a str> {
    match raw.rsplit_once('/') {
        None => Some(raw),
        Some((head, id)) if head == kind || head.ends_with(&format!("/{kind}")) => Some(id),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn dates_with_prefixes_make_a_window() {
        let day = span("2026-03-01").unwrap();
        assert_eq!(day.1 - day.0, 86_400_000_000);
        let w = date_window(&p(&[("date", "2026-03-01")]), "date").unwrap();
        assert_eq!((w.from, w.to), (Some(day.0), Some(day.1)));
        let w = date_window(
            &p(&[("date", "ge2026-03-01"), ("date", "lt2026-03-02T00:00:00Z")]),
            "date",
        )
        .unwrap();
        assert_eq!((w.from, w.to), (Some(day.0), Some(day.1)));
        let w = date_window(&p(&[("date", "gt2026-03-01")]), "date").unwrap();
        assert_eq!(w.from, Some(day.1));
        assert!(w.contains(day.1) && !w.contains(day.1 - 1));
        let err = date_window(&p(&[("date", "ne2026-03-01")]), "date").unwrap_err();
        assert!(err.starts_with("`date`") && !err.contains("2026"));
        assert!(date_window(&p(&[("date", "yesterday")]), "date").is_err());
    }

    #[test]
    fn unknown_parameters_and_bad_counts_are_refused_without_echoing_values() {
        let params = p(&[("name", "Rivera"), ("_count", "10")]);
        assert!(params.check_known(&["name"]).is_ok());
        assert_eq!(params.count().unwrap(), 10);
        let err = params.check_known(&["identifier"]).unwrap_err();
        assert!(err.contains("`name`") && !err.contains("Rivera"));
        assert!(p(&[("_count", "0")]).count().is_err());
        assert!(p(&[("_count", "201")]).count().is_err());
        assert!(p(&[("_format", "xml")]).check_known(&[]).is_err());
        assert!(
            p(&[("<script>", "x")])
                .check_known(&[])
                .unwrap_err()
                .contains("unprintable")
        );
    }

    #[test]
    fn next_links_drop_old_paging() {
        let params = p(&[("patient", "Patient/1"), ("_offset", "10"), ("_count", "5")]);
        assert_eq!(
            params.next_query(&[("_offset", "15".into())]),
            "patient=Patient%2F1&_count=5&_offset=15"
        );
    }

    #[test]
    fn references_and_tokens() {
        assert_eq!(reference_id("Patient/abc", "Patient"), Some("abc"));
        assert_eq!(
            reference_id("http://x/fhir/r4/Patient/abc", "Patient"),
            Some("abc")
        );
        assert_eq!(reference_id("abc", "Patient"), Some("abc"));
        assert_eq!(reference_id("Group/abc", "Patient"), None);
        assert_eq!(token_value("urn:x|MRN-1"), "MRN-1");
        assert_eq!(token_value("MRN-1"), "MRN-1");
    }
}

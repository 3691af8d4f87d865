//! Scoring the urgency rules against labelled texts (`salve inbound eval --urgency`,
//! tests/urgency_eval.rs), in the shape of [`crate::keywords::eval`]:
//!
//! - urgent recall: labelled urgent texts assessed urgent, over all labelled urgent texts (a
//!   miss leaves someone in an emergency without the 911/988 reply);
//! - false urgent rate: texts labelled not urgent assessed urgent, over those texts.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Urgency, assess};

/// The targets of issue 8.
pub const MIN_RECALL: f64 = 0.99;
pub const MAX_FALSE_URGENT: f64 = 0.15;

/// One labelled line: `{"text": "...", "urgent": true, "lang": "en", "note": "..."}` (`lang` and
/// `note` optional; other fields ignored).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct LabeledCase {
    pub text: String,
    pub urgent: bool,
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

// The text may be real: never print it by accident.
impl std::fmt::Debug for LabeledCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabeledCase")
            .field("urgent", &self.urgent)
            .field("lang", &self.lang)
            .finish_non_exhaustive()
    }
}

/// Counts over a labelled set (or one language of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scores {
    pub cases: usize,
    /// Labelled urgent; of them assessed urgent; of them assessed crisis.
    pub urgent: usize,
    pub urgent_caught: usize,
    pub urgent_crisis: usize,
    /// Labelled not urgent; of them assessed urgent.
    pub not_urgent: usize,
    pub false_urgent: usize,
}

impl Scores {
    pub fn add(&mut self, expected: bool, got: &Urgency) {
        self.cases += 1;
        if expected {
            self.urgent += 1;
            self.urgent_caught += usize::from(got.urgent);
            self.urgent_crisis += usize::from(got.crisis);
        } else {
            self.not_urgent += 1;
            self.false_urgent += usize::from(got.urgent);
        }
    }

    /// Share of urgent texts caught (1.0 when there are none).
    pub fn recall(&self) -> f64 {
        ratio(self.urgent_caught, self.urgent, 1.0)
    }

    /// Share of non-urgent texts assessed urgent (0.0 when there are none).
    pub fn false_urgent_rate(&self) -> f64 {
        ratio(self.false_urgent, self.not_urgent, 0.0)
    }

    pub fn meets_targets(&self) -> bool {
        self.recall() >= MIN_RECALL && self.false_urgent_rate() <= MAX_FALSE_URGENT
    }

    /// One line of figures, with no text in it.
    pub fn summary(&self) -> String {
        format!(
            "{} cases; urgent recall {:.2}% ({}/{}, {} crisis); false urgent {:.2}% ({}/{})",
            self.cases,
            self.recall() * 100.0,
            self.urgent_caught,
            self.urgent,
            self.urgent_crisis,
            self.false_urgent_rate() * 100.0,
            self.false_urgent,
            self.not_urgent,
        )
    }
}

/// A case assessed the wrong way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// Index into the scored cases.
    pub index: usize,
    pub expected: bool,
    pub got: Urgency,
}

/// The scores of a set, overall and per language (`?` when a line has none).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub overall: Scores,
    pub by_lang: BTreeMap<String, Scores>,
    pub misses: Vec<Miss>,
}

/// Assess every case and score the set; misses come back by index so callers decide whether
/// to show their text.
pub fn score(cases: &[LabeledCase]) -> Report {
    let mut report = Report::default();
    for (index, case) in cases.iter().enumerate() {
        let got = assess(&case.text);
        report.overall.add(case.urgent, &got);
        report
            .by_lang
            .entry(case.lang.clone().unwrap_or_else(|| "?".into()))
            .or_default()
            .add(case.urgent, &got);
        if got.urgent != case.urgent {
            report.misses.push(Miss {
                index,
                expected: case.urgent,
                got,
            });
        }
    }
    report
}

fn ratio(num: usize, den: usize, empty: f64) -> f64 {
    if den == 0 {
        empty
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str, urgent: bool, lang: &str) -> LabeledCase {
        LabeledCase {
            text: text.into(),
            urgent,
            lang: Some(lang.into()),
            note: None,
        }
    }

    #[test]
    fn definitions() {
        let r = score(&[]);
        assert_eq!(
            (r.overall.recall(), r.overall.false_urgent_rate()),
            (1.0, 0.0)
        );
        assert!(r.overall.meets_targets());
        let r = score(&[
            case("I can't breathe", true, "en"),
            case("see you tuesday", true, "en"),
            case("quiero matarme", true, "es"),
            case("dying to know my results", false, "en"),
            case("chest pain", false, "en"),
        ]);
        let s = r.overall;
        assert_eq!((s.urgent, s.urgent_caught, s.urgent_crisis), (3, 2, 1));
        assert_eq!((s.not_urgent, s.false_urgent), (2, 1));
        assert_eq!(s.false_urgent_rate(), 0.5);
        assert!(!s.meets_targets());
        assert_eq!(r.by_lang["es"].urgent_caught, 1);
        let missed: Vec<usize> = r.misses.iter().map(|m| m.index).collect();
        assert_eq!(missed, [1, 4]);
        assert!(!s.summary().contains("tuesday"));
    }

    #[test]
    fn debug_does_not_show_the_text() {
        let c = case("Jane Roe, chest pain", true, "en");
        assert!(!format!("{c:?}").contains("Jane"));
    }
}

//! Scoring the classifier against labelled texts (`salve inbound eval`, tests/inbound_eval.rs).
//!
//! - opt-out recall: labelled `optout` texts classified `optout` or sent to review, over all
//!   labelled `optout` texts (a review still reaches a person; a miss keeps texting someone who
//!   asked us to stop);
//! - false opt-out rate: texts not labelled `optout` classified `optout`, over those texts;
//! - help and opt-in accuracy: labelled texts of that intent classified exactly so.

use serde::Deserialize;

use super::{Classification, InboundContext, Intent, classify};

/// One labelled line: `{"text": "...", "intent": "optout", "ambiguous": false,
/// "context": {"reminder_awaiting_answer": true}}` (`ambiguous` and `context` optional).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct LabeledCase {
    pub text: String,
    pub intent: Intent,
    /// A careful human would send this text to review.
    #[serde(default)]
    pub ambiguous: bool,
    #[serde(default)]
    pub context: InboundContext,
}

// The text may be real: never print it by accident.
impl std::fmt::Debug for LabeledCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabeledCase")
            .field("intent", &self.intent)
            .field("ambiguous", &self.ambiguous)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// Counts over a labelled set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scores {
    pub cases: usize,
    /// Labelled opt-out; of them classified opt-out or review; of them classified opt-out.
    pub optout: usize,
    pub optout_caught: usize,
    pub optout_exact: usize,
    /// Not labelled opt-out; of them classified opt-out; of them sent to review.
    pub not_optout: usize,
    pub false_optout: usize,
    pub not_optout_review: usize,
    pub help: usize,
    pub help_correct: usize,
    pub optin: usize,
    pub optin_correct: usize,
    pub other: usize,
    pub other_correct: usize,
    /// Labelled ambiguous; of them sent to review or classified opt-out.
    pub ambiguous: usize,
    pub ambiguous_flagged: usize,
}

impl Scores {
    pub fn add(&mut self, expected: Intent, ambiguous: bool, got: &Classification) {
        self.cases += 1;
        let optout = got.intent == Intent::OptOut;
        if expected == Intent::OptOut {
            self.optout += 1;
            self.optout_caught += usize::from(optout || got.review);
            self.optout_exact += usize::from(optout);
        } else {
            self.not_optout += 1;
            self.false_optout += usize::from(optout);
            self.not_optout_review += usize::from(got.review);
        }
        let exact = usize::from(got.intent == expected);
        match expected {
            Intent::Help => (self.help += 1, self.help_correct += exact),
            Intent::OptIn => (self.optin += 1, self.optin_correct += exact),
            Intent::Other => (self.other += 1, self.other_correct += exact),
            Intent::OptOut => ((), ()),
        };
        if ambiguous {
            self.ambiguous += 1;
            self.ambiguous_flagged += usize::from(optout || got.review);
        }
    }

    /// Share of opt-outs caught (1.0 when there are none).
    pub fn optout_recall(&self) -> f64 {
        ratio(self.optout_caught, self.optout, 1.0)
    }

    /// Share of non-opt-outs classified opt-out (0.0 when there are none).
    pub fn false_optout_rate(&self) -> f64 {
        ratio(self.false_optout, self.not_optout, 0.0)
    }

    /// Share of non-opt-outs sent to review: the staff's workload.
    pub fn review_rate(&self) -> f64 {
        ratio(self.not_optout_review, self.not_optout, 0.0)
    }

    pub fn help_accuracy(&self) -> f64 {
        ratio(self.help_correct, self.help, 1.0)
    }

    pub fn optin_accuracy(&self) -> f64 {
        ratio(self.optin_correct, self.optin, 1.0)
    }

    pub fn other_accuracy(&self) -> f64 {
        ratio(self.other_correct, self.other, 1.0)
    }

    pub fn ambiguous_flagged_rate(&self) -> f64 {
        ratio(self.ambiguous_flagged, self.ambiguous, 1.0)
    }

    /// One line of figures, with no text in it.
    pub fn summary(&self) -> String {
        format!(
            "{} cases; opt-out recall {} ({}/{}, {} exact); false opt-out {} ({}/{}); \
             review on non-opt-outs {} ({}); help {} ({}/{}); opt-in {} ({}/{}); other {} \
             ({}/{}); ambiguous flagged {} ({}/{})",
            self.cases,
            pct(self.optout_recall()),
            self.optout_caught,
            self.optout,
            self.optout_exact,
            pct(self.false_optout_rate()),
            self.false_optout,
            self.not_optout,
            pct(self.review_rate()),
            self.not_optout_review,
            pct(self.help_accuracy()),
            self.help_correct,
            self.help,
            pct(self.optin_accuracy()),
            self.optin_correct,
            self.optin,
            pct(self.other_accuracy()),
            self.other_correct,
            self.other,
            pct(self.ambiguous_flagged_rate()),
            self.ambiguous_flagged,
            self.ambiguous,
        )
    }
}

/// A case the classifier got wrong in a way that counts: a missed opt-out, a false opt-out, or a
/// wrong help/opt-in/other intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// Index into the scored cases.
    pub index: usize,
    pub expected: Intent,
    pub got: Classification,
}

/// Classify every case and score the set; misses come back by index so callers decide whether
/// to show their text.
pub fn score(cases: &[LabeledCase]) -> (Scores, Vec<Miss>) {
    let mut scores = Scores::default();
    let mut misses = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let got = classify(&case.text, &case.context);
        scores.add(case.intent, case.ambiguous, &got);
        let missed = match case.intent {
            Intent::OptOut => got.intent != Intent::OptOut && !got.review,
            expected => got.intent != expected,
        };
        if missed {
            misses.push(Miss {
                index,
                expected: case.intent,
                got,
            });
        }
    }
    (scores, misses)
}

fn ratio(num: usize, den: usize, empty: f64) -> f64 {
    if den == 0 {
        empty
    } else {
        num as f64 / den as f64
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str, intent: Intent) -> LabeledCase {
        LabeledCase {
            text: text.into(),
            intent,
            ambiguous: false,
            context: InboundContext::default(),
        }
    }

    #[test]
    fn definitions() {
        let (s, _) = score(&[]);
        assert_eq!((s.optout_recall(), s.false_optout_rate()), (1.0, 0.0));
        let (s, misses) = score(&[
            case("STOP", Intent::OptOut),
            case("wrong number", Intent::OptOut),
            case("see you tuesday", Intent::OptOut),
            case("stop by the office?", Intent::Other),
            case("CANCEL", Intent::Other),
            case("HELP", Intent::Help),
            case("START", Intent::OptIn),
        ]);
        // "wrong number" goes to review: caught, not exact.
        assert_eq!((s.optout, s.optout_caught, s.optout_exact), (3, 2, 1));
        assert_eq!((s.not_optout, s.false_optout), (4, 1));
        assert_eq!((s.help_correct, s.optin_correct), (1, 1));
        assert_eq!(s.false_optout_rate(), 0.25);
        let missed: Vec<usize> = misses.iter().map(|m| m.index).collect();
        assert_eq!(missed, [2, 4]);
        assert!(!s.summary().contains("tuesday"));
    }

    #[test]
    fn debug_does_not_show_the_text() {
        let c = case("Jane Roe, metformin", Intent::Other);
        assert!(!format!("{c:?}").contains("Jane"));
    }
}

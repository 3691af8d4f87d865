//! The learned half of the urgency detector: a logistic regression over hashed word unigrams,
//! word bigrams and character 3- to 5-grams of the normalised text, trained offline by
//! `tools/urgency-train/train.py` on the labelled sets in `data/urgency/` and exported as
//! `data/urgency/model.txt` (its header names the data, the library versions and the settings).
//!
//! The features here must be computed exactly as `tools/urgency-train/features.py` computes
//! them; `data/urgency/model_check.jsonl` (written by the same script) holds texts with their
//! normalised form, bucket count, bucket sum and score, and the tests below compare.
//!
//! A score is a probability-like number in 0..1; [`threshold`] is the score at and above which
//! the model alone calls a text urgent (chosen by leave-one-set-out on the training sets, see
//! the model file's header). No text is kept or logged: only the score leaves this module.

use crate::fnv::Fnv1a64;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::canonical_combining_class;

const MODEL: &str = include_str!("../../data/urgency/model.txt");

struct Model {
    buckets: u64,
    bias: f64,
    threshold: f64,
    /// The score a verdict of the rules' concept layer alone needs from the model to stand
    /// (see `urgency::combine`).
    gate: f64,
    /// One weight per bucket (dense: lookups are the hot path).
    weights: Vec<f32>,
}

static LOADED: LazyLock<Model> =
    LazyLock::new(|| Model::parse(MODEL).expect("data/urgency/model.txt is well formed"));

impl Model {
    fn parse(raw: &str) -> Result<Self, String> {
        let (mut buckets, mut bias, mut threshold, mut gate) = (None, None, None, None);
        let mut pairs: Vec<(u64, f32)> = Vec::new();
        for (n, line) in raw.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("model.txt line {}", n + 1);
            let (key, value) = line.split_once(' ').ok_or_else(bad)?;
            match key {
                "buckets" => buckets = Some(value.parse::<u64>().map_err(|_| bad())?),
                "bias" => bias = Some(value.parse::<f64>().map_err(|_| bad())?),
                "threshold" => threshold = Some(value.parse::<f64>().map_err(|_| bad())?),
                "gate" => gate = Some(value.parse::<f64>().map_err(|_| bad())?),
                index => pairs.push((
                    index.parse().map_err(|_| bad())?,
                    value.parse().map_err(|_| bad())?,
                )),
            }
        }
        let buckets = buckets.ok_or("model.txt: no buckets")?;
        let mut weights = vec![0.0f32; usize::try_from(buckets).map_err(|_| "buckets")?];
        for (i, w) in pairs {
            *usize::try_from(i)
                .ok()
                .and_then(|i| weights.get_mut(i))
                .ok_or("model.txt: weight index out of range")? = w;
        }
        Ok(Self {
            buckets,
            bias: bias.ok_or("model.txt: no bias")?,
            threshold: threshold.ok_or("model.txt: no threshold")?,
            gate: gate.ok_or("model.txt: no gate")?,
            weights,
        })
    }

    fn score(&self, text: &str) -> f64 {
        let found = buckets_of(text, self.buckets);
        if found.is_empty() {
            return 0.0; // no letter or digit: nothing to read
        }
        let sum: f64 = found
            .iter()
            .map(|&b| f64::from(self.weights[usize::try_from(b).unwrap_or(0)]))
            .sum();
        #[allow(clippy::cast_precision_loss)] // a few thousand features at most
        let norm = (found.len() as f64).sqrt();
        sigmoid(self.bias + sum / norm)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The model's score for a text, 0..1 (higher: more likely an emergency); 0 for a text with no
/// letter or digit.
pub fn score(text: &str) -> f64 {
    LOADED.score(text)
}

/// The score at and above which the model alone calls a text urgent.
pub fn threshold() -> f64 {
    LOADED.threshold
}

/// The score at and above which a verdict resting on the rules' concept layer alone stands
/// (`urgency::combine`); below it that verdict is dropped.
pub fn gate() -> f64 {
    LOADED.gate
}

/// NFD; combining marks and apostrophes dropped; ASCII letters and digits kept, lowercased; anything else a space;
/// spaces collapsed and trimmed. Not `policy::text::fold`, which keeps non-ASCII letters: this
/// must match `tools/urgency-train/features.py` byte for byte, or the weights mean nothing.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true; // no leading space
    for c in text.nfd() {
        if c == '\'' || c == '\u{2019}' || canonical_combining_class(c) != 0 {
            continue;
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The sorted distinct feature buckets of a text (see `tools/urgency-train/features.py`).
pub fn buckets_of(text: &str, buckets: u64) -> Vec<u64> {
    let norm = normalise(text);
    let mut out: Vec<u64> = Vec::with_capacity(4 * norm.len() + 8);
    let words: Vec<&str> = norm.split(' ').filter(|w| !w.is_empty()).collect();
    let w_prefix = Fnv1a64::new().write(b"w:");
    for w in &words {
        out.push(w_prefix.write(w.as_bytes()).finish() % buckets);
    }
    let b_prefix = Fnv1a64::new().write(b"b:");
    for pair in words.windows(2) {
        let h = b_prefix
            .write(pair[0].as_bytes())
            .write(b" ")
            .write(pair[1].as_bytes());
        out.push(h.finish() % buckets);
    }
    let padded = format!(" {norm} ");
    let bytes = padded.as_bytes(); // ASCII only
    let c_prefix = Fnv1a64::new().write(b"c:");
    for n in 3..=5 {
        for gram in bytes.windows(n) {
            out.push(c_prefix.write(gram).finish() % buckets);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The fewest words the model reads ([`crate::urgency::assess`] leaves shorter texts to the
/// rules).
pub const MIN_WORDS: usize = 2;

/// Texts of fewer words than this are few features for the model, and its score on them swings
/// on one word ("Also my address changed" 0.68, "Anyone there?" 0.66): alone it makes them
/// urgent only from [`SHORT_TEXT_THRESHOLD`]. The rules catch 91 of the 93 labelled urgent
/// texts of two to four words by themselves.
pub const SHORT_TEXT_WORDS: usize = 5;
/// The model's threshold for texts under [`SHORT_TEXT_WORDS`] words.
pub const SHORT_TEXT_THRESHOLD: f64 = 0.9;

/// The words of the normalised text.
pub fn words(text: &str) -> usize {
    normalise(text).split(' ').filter(|w| !w.is_empty()).count()
}

/// The number of buckets of the shipped model.
pub fn model_buckets() -> u64 {
    LOADED.buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_folds_case_accents_and_punctuation() {
        assert_eq!(normalise("  Ñandú CAFÉ,  naïve!! "), "nandu cafe naive");
        assert_eq!(normalise("I can’t breathe"), "i cant breathe");
        assert_eq!(normalise("¿¡ 😭 !?"), "");
        assert_eq!(normalise("SpO2 88%"), "spo2 88");
    }

    #[test]
    fn the_model_loads() {
        let m = &*LOADED;
        assert!(m.buckets.is_power_of_two());
        assert_eq!(m.weights.len() as u64, m.buckets);
        // Trained, not empty: thousands of non-zero weights, of both signs.
        assert!(m.weights.iter().filter(|w| **w > 0.0).count() > 1000);
        assert!(m.weights.iter().filter(|w| **w < 0.0).count() > 1000);
        assert!(m.threshold > 0.0 && m.threshold < 1.0);
        assert!(m.gate >= 0.0 && m.gate < m.threshold);
    }

    #[test]
    fn malformed_models_are_refused() {
        assert!(Model::parse("bias 0.1\nthreshold 0.5\ngate 0.1\n").is_err());
        assert!(Model::parse("buckets 4\nbias 0.1\nthreshold 0.5\n").is_err()); // no gate
        assert!(Model::parse("buckets 4\nbias 0.1\nthreshold 0.5\ngate 0.1\n7 1.0\n").is_err());
        assert!(Model::parse("buckets 4\nbias x\nthreshold 0.5\ngate 0.1\n").is_err());
        let m =
            Model::parse("buckets 4\nbias 0.5\nthreshold 0.4\ngate 0.1\n# c\n3 -1.5\n").unwrap();
        assert!((m.gate - 0.1).abs() < 1e-12);
        assert_eq!(m.weights, vec![0.0, 0.0, 0.0, -1.5]);
    }

    /// The Python trainer and this module read texts the same way and score them the same.
    #[test]
    fn features_and_scores_match_the_trainer() {
        let raw = include_str!("../../data/urgency/model_check.jsonl");
        let mut n = 0;
        for line in raw.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap();
            assert_eq!(
                normalise(text),
                v["normalised"].as_str().unwrap(),
                "{text:?}"
            );
            let found = buckets_of(text, model_buckets());
            assert_eq!(
                found.len() as u64,
                v["buckets"].as_u64().unwrap(),
                "{text:?}"
            );
            assert_eq!(
                found.iter().sum::<u64>(),
                v["bucket_sum"].as_u64().unwrap(),
                "{text:?}"
            );
            let expected = v["score"].as_f64().unwrap();
            assert!(
                (score(text) - expected).abs() < 1e-5,
                "{text:?}: {}",
                score(text)
            );
            n += 1;
        }
        assert!(n >= 8, "{n} parity vectors");
    }
}

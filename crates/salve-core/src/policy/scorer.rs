//! The learned direct scorer: a logistic regression over hashed words and word pairs, trained
//! offline by `scripts/policy-scorer.py` on the labelled sets in `data/policy/` (weights and
//! provenance in `data/policy/scorer/weights.tsv`).
//!
//! It never decides alone. `engine::classify` asks it only about a text the rules sent secure
//! for unrecognised words and nothing else: no vocabulary term, clinical frame, attachment,
//! unsafe template value or sender name. It may then turn the text direct when its probability
//! of `direct` reaches the threshold trained with the weights.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::text::fold;
use crate::fnv::Fnv1a64;

const WEIGHTS: &str = include_str!("../../data/policy/scorer/weights.tsv");
/// Hash buckets (as `BUCKETS` in the training script).
const BUCKETS: u64 = 1 << 18;

struct Model {
    threshold: f64,
    intercept: f64,
    weights: HashMap<u32, f64>,
}

static MODEL: LazyLock<Model> = LazyLock::new(|| parse(WEIGHTS));

fn parse(raw: &str) -> Model {
    let mut model = Model {
        threshold: 1.0,
        intercept: 0.0,
        weights: HashMap::new(),
    };
    for line in raw.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let mut parts = line.splitn(2, '\t');
        let key = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        match key {
            "check" => {}
            "threshold" => model.threshold = value.parse().expect("scorer threshold"),
            "intercept" => model.intercept = value.parse().expect("scorer intercept"),
            bucket => {
                let b: u32 = bucket.parse().expect("scorer bucket");
                model
                    .weights
                    .insert(b, value.parse().expect("scorer weight"));
            }
        }
    }
    model
}

fn bucket(h: Fnv1a64) -> u32 {
    (h.finish() % BUCKETS) as u32
}

/// The hashed buckets present in `text`: each folded word (any word with a digit is "0") and
/// each pair of neighbouring words.
fn features(text: &str) -> Vec<u32> {
    let folded = fold(text);
    let toks: Vec<&str> = folded
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.bytes().any(|c| c.is_ascii_digit()) {
                "0"
            } else {
                t
            }
        })
        .collect();
    let mut out: Vec<u32> = Vec::with_capacity(toks.len() * 2);
    for t in &toks {
        let h = Fnv1a64::new().write(b"w:").write(t.as_bytes());
        out.push(bucket(h));
    }
    for pair in toks.windows(2) {
        let h = Fnv1a64::new()
            .write(b"b:")
            .write(pair[0].as_bytes())
            .write(b" ")
            .write(pair[1].as_bytes());
        out.push(bucket(h));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The model's probability that `text` is a direct (SMS-safe) message.
pub fn probability(text: &str) -> f64 {
    let model = &*MODEL;
    let z = features(text)
        .iter()
        .filter_map(|b| model.weights.get(b))
        .sum::<f64>()
        + model.intercept;
    1.0 / (1.0 + (-z).exp())
}

/// `Some(probability)` when the model is confident enough that `text` is direct.
pub fn confidently_direct(text: &str) -> Option<f64> {
    let p = probability(text);
    (p >= MODEL.threshold).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_load_with_a_demanding_threshold() {
        let model = &*MODEL;
        assert!(model.weights.len() > 1000, "{}", model.weights.len());
        assert!((0.9..1.0).contains(&model.threshold), "{}", model.threshold);
    }

    /// The training script writes the probabilities it computed for a few texts: the Rust side
    /// (folding, hashing, weights) must agree with it.
    #[test]
    fn agrees_with_the_training_script() {
        let mut checked = 0;
        for line in WEIGHTS.lines().filter(|l| l.starts_with("check\t")) {
            let mut parts = line.splitn(3, '\t').skip(1);
            let want: f64 = parts.next().unwrap().parse().unwrap();
            let text = parts.next().unwrap();
            let got = probability(text);
            assert!((got - want).abs() < 1e-4, "{text}: {got} vs {want}");
            checked += 1;
        }
        assert!(checked >= 5, "{checked}");
    }

    #[test]
    fn features_fold_and_pair_words() {
        assert_eq!(features("Café"), features("cafe"));
        assert_eq!(features("Room 12"), features("room 7"));
        assert_ne!(features("lost keys"), features("keys lost"));
        assert!(features("").is_empty());
    }
}

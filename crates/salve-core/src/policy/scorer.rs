//! The learned direct scorer: a logistic regression over hashed words and word pairs, trained
//! offline by `scripts/policy-scorer.py` on the labelled sets in `data/policy/` (weights and
//! provenance in `data/policy/scorer/weights.tsv`).
//!
//! It never decides alone. `engine::classify` asks it about a text the rules sent secure for
//! unrecognised words and nothing else (no vocabulary term, clinical frame, attachment, unsafe
//! template value or sender name): it may turn it direct when its probability of `direct`
//! reaches `threshold`. And it checks every text the rules sent direct: it turns it secure when
//! its probability of `secure` reaches `secure_threshold` (both trained with the weights).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::text::fold;
use crate::fnv::Fnv1a64;

const WEIGHTS: &str = include_str!("../../data/policy/scorer/weights.tsv");
/// Hash buckets (as `BUCKETS` in the training script).
const BUCKETS: u64 = 1 << 18;

struct Model {
    threshold: f64,
    secure_threshold: f64,
    intercept: f64,
    weights: HashMap<u32, f64>,
}

static MODEL: LazyLock<Model> = LazyLock::new(|| parse(WEIGHTS));

fn parse(raw: &str) -> Model {
    let mut model = Model {
        threshold: 1.0,
        // Without a trained value the check never fires.
        secure_threshold: f64::INFINITY,
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
            "secure_threshold" => {
                model.secure_threshold = value.parse().expect("scorer secure threshold")
            }
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

/// The folded words the model reads (any word with a digit is "0").
fn tokens(folded: &str) -> Vec<&str> {
    folded
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.bytes().any(|c| c.is_ascii_digit()) {
                "0"
            } else {
                t
            }
        })
        .collect()
}

fn unigram(t: &str) -> u32 {
    bucket(Fnv1a64::new().write(b"w:").write(t.as_bytes()))
}

fn bigram(a: &str, b: &str) -> u32 {
    bucket(
        Fnv1a64::new()
            .write(b"b:")
            .write(a.as_bytes())
            .write(b" ")
            .write(b.as_bytes()),
    )
}

/// The hashed buckets present in `text`: each folded word and each pair of neighbouring words.
fn features(text: &str) -> Vec<u32> {
    let folded = fold(text);
    let toks = tokens(&folded);
    let mut out: Vec<u32> = Vec::with_capacity(toks.len() * 2);
    out.extend(toks.iter().map(|t| unigram(t)));
    out.extend(toks.windows(2).map(|p| bigram(p[0], p[1])));
    out.sort_unstable();
    out.dedup();
    out
}

/// The text's own words, split where `fold` splits them (apostrophes dropped), so that staff
/// see their words rather than folded ones.
fn own_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c == '\'' || c == '\u{2019}' || c == '\u{2018}' {
            continue;
        }
        if c.is_alphanumeric() {
            word.push(c);
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
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

/// Why the model reads a text as secure: its probability of `secure`, and the text's words or
/// word pairs that weighed most towards it (at most [`MAX_SECURE_WORDS`], heaviest first).
#[derive(Debug, Clone, PartialEq)]
pub struct SecureVerdict {
    pub probability: f64,
    pub words: Vec<String>,
}

/// Most words named in a [`SecureVerdict`]: enough to show why, few enough to read.
pub const MAX_SECURE_WORDS: usize = 3;

/// Shortest single word named in a [`SecureVerdict`] (word pairs are always named).
const MIN_NAMED_WORD: usize = 4;

/// `Some` when the model is confident enough that `text` is secure (probability of `secure` at
/// least the trained `secure_threshold`).
pub fn confidently_secure(text: &str) -> Option<SecureVerdict> {
    let p = 1.0 - probability(text);
    (p >= MODEL.secure_threshold).then(|| SecureVerdict {
        probability: p,
        words: heaviest_secure_words(text),
    })
}

/// The text's words and word pairs by their weight towards `secure` (the negative of their
/// weight towards `direct`), heaviest first, positive ones only. Each bucket counts once, as in
/// [`probability`]. Only computed for a text the check turns secure.
fn heaviest_secure_words(text: &str) -> Vec<String> {
    let model = &*MODEL;
    let folded = fold(text);
    let toks = tokens(&folded);
    let own = own_words(text);
    // Splitting is the same as fold's, so the lists align; if some odd character breaks that,
    // the folded words still name the features.
    let name = |i: usize| -> String {
        if own.len() == toks.len() {
            own[i].clone()
        } else {
            toks[i].to_owned()
        }
    };
    let mut named: Vec<(u32, String)> = Vec::with_capacity(toks.len() * 2);
    // Short words ("the", "sus") weigh in, but naming them would tell staff nothing.
    named.extend(
        toks.iter()
            .enumerate()
            .filter(|(_, t)| t.chars().count() >= MIN_NAMED_WORD)
            .map(|(i, t)| (unigram(t), name(i))),
    );
    named.extend(
        toks.windows(2)
            .enumerate()
            .map(|(i, p)| (bigram(p[0], p[1]), format!("{} {}", name(i), name(i + 1)))),
    );
    let mut seen: Vec<u32> = Vec::with_capacity(named.len());
    let mut weighed: Vec<(f64, String)> = Vec::new();
    for (b, n) in named {
        if seen.contains(&b) {
            continue;
        }
        seen.push(b);
        let toward_secure = -model.weights.get(&b).copied().unwrap_or(0.0);
        if toward_secure > 0.0 && !weighed.iter().any(|(_, m)| *m == n) {
            weighed.push((toward_secure, n));
        }
    }
    weighed.sort_by(|a, b| b.0.total_cmp(&a.0));
    weighed
        .into_iter()
        .take(MAX_SECURE_WORDS)
        .map(|(_, n)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_load_with_a_demanding_threshold() {
        let model = &*MODEL;
        assert!(model.weights.len() > 1000, "{}", model.weights.len());
        assert!((0.9..1.0).contains(&model.threshold), "{}", model.threshold);
        assert!(
            (0.5..=1.0).contains(&model.secure_threshold),
            "{}",
            model.secure_threshold
        );
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

    #[test]
    fn own_words_align_with_the_folded_words() {
        let text = "Don't forget: Café 12B, señora!";
        assert_eq!(own_words(text), ["Dont", "forget", "Café", "12B", "señora"]);
        assert_eq!(
            tokens(&fold(text)),
            ["dont", "forget", "cafe", "0", "senora"]
        );
    }

    #[test]
    fn heaviest_secure_words_are_the_texts_own() {
        let words = heaviest_secure_words("Your Biopsy results came back, call us.");
        assert!(
            !words.is_empty() && words.len() <= MAX_SECURE_WORDS,
            "{words:?}"
        );
        let own = own_words("Your Biopsy results came back, call us.");
        for w in &words {
            assert!(w.split(' ').all(|p| own.iter().any(|o| o == p)), "{w}");
        }
    }
}

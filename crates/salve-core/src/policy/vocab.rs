//! Vocabularies of clinical terms (data files built by scripts/policy-vocab.py), matched as whole
//! words on folded text. They explain why a text is secure; the allow-list decides.

use std::collections::HashMap;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::text::fold;

/// One vocabulary: the rule it feeds and how to say it to staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Category {
    pub rule: &'static str,
    /// Completes "mentions ..." ("a medication").
    pub what: &'static str,
}

pub const MEDICATION: Category = Category {
    rule: "medication",
    what: "a medication",
};
pub const TEST: Category = Category {
    rule: "test_or_result",
    what: "a test or result",
};
pub const CONDITION: Category = Category {
    rule: "condition",
    what: "a condition or symptom",
};
pub const PROCEDURE: Category = Category {
    rule: "procedure",
    what: "a procedure or treatment",
};
pub const SPECIALTY: Category = Category {
    rule: "specialty",
    what: "a specialty",
};
pub const PREPARATION: Category = Category {
    rule: "preparation",
    what: "how to prepare for a visit",
};
pub const ANATOMY: Category = Category {
    rule: "anatomy",
    what: "a part of the body",
};
pub const DEVICE: Category = Category {
    rule: "device",
    what: "a medical device",
};
pub const PAPERWORK: Category = Category {
    rule: "medical_paperwork",
    what: "paperwork that implies a health matter",
};

const FILES: &[(Category, &str)] = &[
    (
        MEDICATION,
        include_str!("../../data/policy/vocab/medications.txt"),
    ),
    (TEST, include_str!("../../data/policy/vocab/tests.txt")),
    (
        CONDITION,
        include_str!("../../data/policy/vocab/conditions.txt"),
    ),
    (
        PROCEDURE,
        include_str!("../../data/policy/vocab/procedures.txt"),
    ),
    (
        SPECIALTY,
        include_str!("../../data/policy/vocab/specialties.txt"),
    ),
    (
        PREPARATION,
        include_str!("../../data/policy/vocab/preparation.txt"),
    ),
    (ANATOMY, include_str!("../../data/policy/vocab/anatomy.txt")),
    (DEVICE, include_str!("../../data/policy/vocab/devices.txt")),
    (
        PAPERWORK,
        include_str!("../../data/policy/vocab/paperwork.txt"),
    ),
];

/// Phrases whose clinical-looking words are not clinical ("survey results").
const BENIGN: &str = include_str!("../../data/policy/vocab/benign.txt");

/// Medical word formation: suffixes and prefixes (see the file's header).
const WORD_FORMS: &str = include_str!("../../data/policy/vocab/word_forms.txt");

struct Vocab {
    automaton: AhoCorasick,
    benign: AhoCorasick,
    /// Per pattern: its category.
    category: Vec<Category>,
    /// Single-word terms, for [`is_term`].
    single: HashMap<String, Category>,
    suffixes: Vec<String>,
    prefixes: Vec<String>,
}

/// The words of one `[section]` of a sectioned data file.
pub(super) fn section<'a>(text: &'a str, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let header = format!("[{name}]");
    let mut inside = false;
    text.lines().flat_map(move |line| {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            inside = line == header;
            return "".split_whitespace();
        }
        if inside { line } else { "" }.split_whitespace()
    })
}

static VOCAB: LazyLock<Vocab> = LazyLock::new(|| {
    let mut patterns = Vec::new();
    let mut category = Vec::new();
    let mut single = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for (cat, text) in FILES {
        for line in text.lines() {
            // Files are folded already; folding again keeps a hand edit with an accent working.
            let term = fold(line);
            if !term.is_empty() && seen.insert(term.clone()) {
                if !term.contains(' ') {
                    single.insert(term.clone(), *cat);
                }
                patterns.push(term);
                category.push(*cat);
            }
        }
    }
    let automaton = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(&patterns)
        .expect("policy vocabularies build an automaton");
    let benign: Vec<String> = BENIGN
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(fold)
        .filter(|l| !l.is_empty())
        .collect();
    let benign = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(&benign)
        .expect("benign phrases build an automaton");
    Vocab {
        automaton,
        benign,
        category,
        single,
        suffixes: section(WORD_FORMS, "suffixes").map(str::to_owned).collect(),
        prefixes: section(WORD_FORMS, "prefixes").map(str::to_owned).collect(),
    }
});

/// The category of a single-word vocabulary term ("metformin"), plurals included.
pub fn is_term(folded_word: &str) -> Option<Category> {
    let single = &VOCAB.single;
    if let Some(c) = single.get(folded_word) {
        return Some(*c);
    }
    ["s", "es"].iter().find_map(|ending| {
        folded_word
            .strip_suffix(ending)
            .filter(|stem| stem.len() >= 4)
            .and_then(|stem| single.get(stem))
            .filter(|c| **c != MEDICATION)
            .copied()
    })
}

/// Whether a word is built like a medical term: a medical suffix ("colposcopia",
/// "dapagliflozin"), or a prefix before a vocabulary term ("anticoagulation").
pub fn medical_form(folded_word: &str) -> bool {
    let vocab = &*VOCAB;
    let w = folded_word;
    if vocab
        .suffixes
        .iter()
        .any(|s| w.len() >= s.len() + 3 && w.ends_with(s.as_str()))
    {
        return true;
    }
    vocab.prefixes.iter().any(|p| {
        w.strip_prefix(p.as_str())
            .is_some_and(|rest| rest.len() >= 5 && is_term(rest).is_some())
    })
}

/// Byte ranges of benign phrases in a folded text, at word boundaries.
fn benign_spans(folded: &str) -> Vec<(usize, usize)> {
    let bytes = folded.as_bytes();
    VOCAB
        .benign
        .find_overlapping_iter(folded)
        .filter(|m| {
            (m.start() == 0 || bytes[m.start() - 1] == b' ')
                && (m.end() == bytes.len() || bytes[m.end()] == b' ')
        })
        .map(|m| (m.start(), m.end()))
        .collect()
}

/// Words of `folded` that stand in a benign phrase: the allow-list accepts them here.
pub fn benign_words(folded: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for (start, end) in benign_spans(folded) {
        words.extend(folded[start..end].split(' '));
    }
    words
}

/// A vocabulary term found in a folded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub category: Category,
    /// The words as they appear in the folded text ("metformin", "blood tests").
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// Whole-word hits in `folded` (output of [`fold`]), longest first where they overlap.
/// A plural ending ("tests", "biopsias") still counts as the word.
pub fn find(folded: &str) -> Vec<Hit> {
    let vocab = &*VOCAB;
    let bytes = folded.as_bytes();
    let mut hits: Vec<Hit> = Vec::new();
    for m in vocab.automaton.find_overlapping_iter(folded) {
        let (start, mut end) = (m.start(), m.end());
        if start > 0 && bytes[start - 1] != b' ' {
            continue;
        }
        let boundary = |at: usize| at == bytes.len() || bytes[at] == b' ';
        if !boundary(end) {
            let rest = &folded[end..];
            let plural = ["s", "es"]
                .iter()
                .find(|s| rest.starts_with(**s) && boundary(end + s.len()));
            // Not for drug names: "atra" is a drug, "atras" a Spanish word.
            match plural {
                Some(s)
                    if end - start >= 4 && vocab.category[m.pattern().as_usize()] != MEDICATION =>
                {
                    end += s.len()
                }
                _ => continue,
            }
        }
        hits.push(Hit {
            category: vocab.category[m.pattern().as_usize()],
            text: folded[start..end].to_owned(),
            start,
            end,
        });
    }
    let benign = benign_spans(folded);
    hits.retain(|h| !benign.iter().any(|&(s, e)| s <= h.start && h.end <= e));
    // Keep the longest of overlapping hits ("high blood pressure" over "blood pressure").
    hits.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
    for hit in hits {
        if kept.last().is_some_and(|k| hit.start < k.end) {
            continue;
        }
        kept.push(hit);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(&'static str, String)> {
        find(&fold(text))
            .into_iter()
            .map(|h| (h.category.rule, h.text))
            .collect()
    }

    #[test]
    fn whole_words_only_with_plurals() {
        assert_eq!(
            found("Your metformin refill"),
            [
                ("medication", "metformin".into()),
                ("medication", "refill".into())
            ]
        );
        assert!(found("metforminx").is_empty());
        assert_eq!(
            found("two biopsias"),
            [("test_or_result", "biopsias".into())]
        );
    }

    #[test]
    fn longest_overlapping_term_wins() {
        assert_eq!(
            found("your high blood pressure"),
            [("condition", "high blood pressure".into())]
        );
    }

    #[test]
    fn everyday_words_are_not_terms() {
        for text in [
            "come back",
            "a cold day",
            "fall hours",
            "Oak Street",
            "good morning",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}

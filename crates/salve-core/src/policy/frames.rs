//! Word classes in context. Two jobs, both on folded sentences:
//!
//! - clinical signals made of everyday words, which no single-word list can hold: "your echo",
//!   "wear shorts", "fast for 12 hours", "a letter for your employer", "payment for the X"
//!   (data/policy/vocab/frames.txt);
//! - words that are clinical in some places only ("test", "tablet", "pharmacy"), allowed where
//!   their neighbours say they are not (data/policy/allow/context.txt).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use super::text::{self, fold};
use super::vocab::{self, Category};

const FRAMES: &str = include_str!("../../data/policy/vocab/frames.txt");
const CONTEXT: &str = include_str!("../../data/policy/allow/context.txt");

/// How far (in words, each side) a context word looks for its neighbours.
const NEIGHBOURHOOD: usize = 4;

pub const CLINICAL_ITEM: Category = Category {
    rule: "clinical_item",
    what: "something clinical of the patient's",
};
pub const DRESS: Category = Category {
    rule: "preparation",
    what: "what to wear or bring for a visit",
};
pub const FASTING: Category = Category {
    rule: "preparation",
    what: "fasting before a visit",
};
pub const COMPANION: Category = Category {
    rule: "preparation",
    what: "someone to come along to a visit",
};
pub const DISCUSSION: Category = Category {
    rule: "clinical_reason",
    what: "something of the patient's to talk over",
};
pub const THIRD_PARTY_PAPERWORK: Category = Category {
    rule: "medical_paperwork",
    what: "paperwork for an employer, school or other third party",
};
pub const BILLING_SERVICE: Category = Category {
    rule: "billing_names_service",
    what: "a bill or receipt that names what it was for",
};

type Set = HashSet<&'static str>;

struct ContextLine {
    benign: Set,
    clinical: Set,
}

struct Frames {
    possessives: Set,
    clinical_objects: Set,
    dress_verbs: Set,
    clothing: Set,
    fast_after: Set,
    fast_before: Set,
    negations: Set,
    meals: Set,
    companion_verbs: Set,
    companions: Set,
    discuss_verbs: Set,
    discuss_topics_ok: Set,
    letter_nouns: Set,
    letter_links: Set,
    third_parties: Set,
    billing_nouns: Set,
    billing_links: Set,
    billing_skip: Set,
    billing_ok: Set,
    context: Vec<ContextLine>,
    /// Every word that starts a frame or is a context word: most words are none, one look-up.
    triggers: Set,
    /// Form -> its line in `context`.
    context_forms: HashMap<&'static str, usize>,
}

fn set(name: &str) -> Set {
    vocab::section(FRAMES, name).collect()
}

static FRAMES_DATA: LazyLock<Frames> = LazyLock::new(|| {
    let mut context = Vec::new();
    let mut context_forms = HashMap::new();
    for line in CONTEXT.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split('|').map(|p| p.split_whitespace());
        let forms: Vec<&'static str> = parts.next().map(Iterator::collect).unwrap_or_default();
        let benign: Set = parts.next().map(Iterator::collect).unwrap_or_default();
        let clinical: Set = parts.next().map(Iterator::collect).unwrap_or_default();
        for f in forms {
            context_forms.insert(f, context.len());
        }
        context.push(ContextLine { benign, clinical });
    }
    let mut triggers: Set = context_forms.keys().copied().collect();
    triggers.insert("fast");
    for name in [
        "possessives",
        "dress_verbs",
        "negations",
        "companion_verbs",
        "discuss_verbs",
        "letter_nouns",
        "billing_nouns",
    ] {
        triggers.extend(set(name));
    }
    Frames {
        triggers,
        possessives: set("possessives"),
        clinical_objects: set("clinical_objects"),
        dress_verbs: set("dress_verbs"),
        clothing: set("clothing"),
        fast_after: set("fast_after"),
        fast_before: set("fast_before"),
        negations: set("negations"),
        meals: set("meals"),
        companion_verbs: set("companion_verbs"),
        companions: set("companions"),
        discuss_verbs: set("discuss_verbs"),
        discuss_topics_ok: set("discuss_topics_ok"),
        letter_nouns: set("letter_nouns"),
        letter_links: set("letter_links"),
        third_parties: set("third_parties"),
        billing_nouns: set("billing_nouns"),
        billing_links: set("billing_links"),
        billing_skip: set("billing_skip"),
        billing_ok: set("billing_ok"),
        context,
        context_forms,
    }
});

/// A clinical signal found by a frame: the words that make it, as folded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub category: Category,
    pub text: String,
}

/// What the frames make of one text.
#[derive(Debug, Default)]
pub struct Reading {
    pub signals: Vec<Signal>,
    /// Folded words that their neighbours show to be non-clinical here.
    pub excused: Vec<String>,
    /// The whole text folded (the sentences joined): the same as `fold(text)`.
    pub folded: String,
}

/// Sentences of `text`, folded: frames never reach across a full stop ("Recibimos su pago. Por
/// favor llame").
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let end_mark = matches!(b, b'!' | b'?' | b';' | b'\n')
            || (b == b'.'
                && bytes.get(i + 1).is_none_or(|n| n.is_ascii_whitespace())
                && !ends_with_abbreviation(&text[start..i]));
        if end_mark {
            out.push(fold(&text[start..i]));
            start = i + 1;
        }
    }
    out.push(fold(&text[start..]));
    out.retain(|s| !s.is_empty());
    out
}

/// "Dr." and "Ave." do not end a sentence.
fn ends_with_abbreviation(before: &str) -> bool {
    let last = before
        .rsplit(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    text::ABBREVIATIONS.contains(&last.as_str())
}

/// Read `text` (the rendered message) for frame signals and excused words.
pub fn read(text: &str) -> Reading {
    let f = &*FRAMES_DATA;
    let mut reading = Reading::default();
    let sentences = sentences(text);
    for sentence in &sentences {
        let words: Vec<&str> = sentence.split(' ').collect();
        read_sentence(f, &words, &mut reading);
    }
    reading.folded = sentences.join(" ");
    reading
}

fn is_number(w: &str) -> bool {
    w.bytes().all(|b| b.is_ascii_digit())
}

fn push(reading: &mut Reading, category: Category, words: &[&str]) {
    let s = Signal {
        category,
        text: words.join(" "),
    };
    if !reading.signals.contains(&s) {
        reading.signals.push(s);
    }
}

fn excuse(reading: &mut Reading, word: &str) {
    if !reading.excused.iter().any(|e| e == word) {
        reading.excused.push(word.to_owned());
    }
}

/// Where the "for" of a bill is: within four words that are not amounts.
fn billing_link(f: &Frames, rest: &[&str]) -> Option<usize> {
    let mut words_seen = 0;
    for (k, w) in rest.iter().enumerate() {
        if f.billing_links.contains(w) {
            return Some(k);
        }
        if !is_number(w) {
            words_seen += 1;
            if words_seen >= 4 {
                return None;
            }
        }
    }
    None
}

fn read_sentence(f: &Frames, words: &[&str], reading: &mut Reading) {
    let n = words.len();
    for (i, &w) in words.iter().enumerate() {
        if !f.triggers.contains(w) {
            continue;
        }
        // "your echo", "your latest numbers" ("your log in" is the portal).
        if f.possessives.contains(w) {
            let mut j = i + 1;
            if j < n
                && matches!(
                    words[j],
                    "new"
                        | "latest"
                        | "last"
                        | "recent"
                        | "home"
                        | "nuevo"
                        | "nueva"
                        | "ultimo"
                        | "ultima"
                )
            {
                j += 1;
            }
            if j < n
                && f.clinical_objects.contains(words[j])
                && !(matches!(words[j], "log" | "logs")
                    && words
                        .get(j + 1)
                        .is_some_and(|x| matches!(*x, "in" | "into" | "on")))
            {
                push(reading, CLINICAL_ITEM, &words[i..=j]);
            }
        }
        // "wear shorts", "bring a sweater".
        if f.dress_verbs.contains(w)
            && let Some(k) = (i + 1..n.min(i + 5)).find(|&k| f.clothing.contains(words[k]))
        {
            push(reading, DRESS, &words[i..=k]);
        }
        // "fast for 12 hours", "to fast".
        if w == "fast"
            && (words.get(i + 1).is_some_and(|x| f.fast_after.contains(x))
                || i > 0 && f.fast_before.contains(words[i - 1]))
        {
            push(
                reading,
                FASTING,
                &words[i.saturating_sub(1)..(i + 2).min(n)],
            );
        }
        // "no desayune", "skip breakfast".
        if f.negations.contains(w)
            && let Some(k) = (i + 1..n.min(i + 3)).find(|&k| f.meals.contains(words[k]))
        {
            push(reading, FASTING, &words[i..=k]);
        }
        // "bring someone with you".
        if f.companion_verbs.contains(w)
            && let Some(k) = (i + 1..n.min(i + 4)).find(|&k| f.companions.contains(words[k]))
        {
            push(reading, COMPANION, &words[i..=k]);
        }
        // "talk about your last visit" (not "about your bill").
        if f.discuss_verbs.contains(w)
            && let Some(p) = (i + 1..n.min(i + 4)).find(|&k| f.possessives.contains(words[k]))
        {
            let mut k = p + 1;
            while k < n
                && matches!(
                    words[k],
                    "last"
                        | "recent"
                        | "next"
                        | "new"
                        | "ultima"
                        | "ultimo"
                        | "proxima"
                        | "proximo"
                        | "nueva"
                        | "nuevo"
                )
            {
                k += 1;
            }
            if k < n && !f.discuss_topics_ok.contains(words[k]) {
                push(reading, DISCUSSION, &words[i..=k]);
            }
        }
        // "letter for your employer", "school excuse", "carta para el trabajo".
        if f.letter_nouns.contains(w) {
            // After the noun, only through "for/from/para/de" and a determiner ("forms
            // before work" is a time of day).
            let after = (i + 1..n.min(i + 5))
                .take_while(|&k| {
                    f.third_parties.contains(words[k]) || f.letter_links.contains(words[k])
                })
                .find(|&k| f.third_parties.contains(words[k]));
            let before = (i.saturating_sub(2)..i).find(|&k| f.third_parties.contains(words[k]));
            if let Some(k) = after {
                push(reading, THIRD_PARTY_PAPERWORK, &words[i..=k]);
            } else if let Some(k) = before {
                push(reading, THIRD_PARTY_PAPERWORK, &words[k..=i]);
            }
        }
        // "payment for the ultrasound": after the link word, only generic words may follow.
        if f.billing_nouns.contains(w)
            && let Some(link) = billing_link(f, &words[i + 1..]).map(|k| i + 1 + k)
            // "receipt for $15.00": an amount, not a service.
            && !words.get(link + 1).is_some_and(|x| is_number(x))
        {
            let mut k = link + 1;
            while k < n && (f.billing_skip.contains(words[k]) || is_number(words[k])) {
                k += 1;
            }
            if k < n && !f.billing_ok.contains(words[k]) {
                push(reading, BILLING_SERVICE, &[w, words[link], words[k]]);
            }
        }
        // Context words: allowed only among benign neighbours, with no clinical one near.
        if let Some(&line) = f.context_forms.get(w) {
            let line = &f.context[line];
            let near = words[i.saturating_sub(NEIGHBOURHOOD)..i]
                .iter()
                .chain(&words[i + 1..n.min(i + 1 + NEIGHBOURHOOD)]);
            let (mut benign, mut clinical) = (false, false);
            for x in near {
                benign |= line.benign.contains(x);
                clinical |= line.clinical.contains(x);
            }
            if benign && !clinical {
                excuse(reading, w);
                // The tokenizer splits "driver's" where folding keeps "drivers".
                if let Some(stem) = w.strip_suffix('s')
                    && f.context_forms.get(stem) == f.context_forms.get(w)
                {
                    excuse(reading, stem);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(text: &str) -> Vec<(&'static str, String)> {
        read(text)
            .signals
            .into_iter()
            .map(|s| (s.category.rule, s.text))
            .collect()
    }

    #[test]
    fn everyday_words_in_clinical_frames() {
        assert_eq!(
            signals("Dr. Ames looked at your echo."),
            [("clinical_item", "your echo".into())]
        );
        assert_eq!(
            signals("Please wear shorts on Monday."),
            [("preparation", "wear shorts".into())]
        );
        assert_eq!(
            signals("Remember to fast for 12 hours."),
            [("preparation", "to fast for".into())]
        );
        assert_eq!(
            signals("Su carta para el trabajo está lista."),
            [("medical_paperwork", "carta para el trabajo".into())]
        );
        assert_eq!(
            signals("We got your payment for the consult."),
            [("billing_names_service", "payment for consult".into())]
        );
    }

    #[test]
    fn the_same_words_elsewhere_are_no_signal() {
        for text in [
            "Please log in to your portal.",
            "Please use the side door.",
            "Payment received for your visit on 3/4. Thank you!",
            "Recibimos su pago. Por favor llame si tiene preguntas.",
            "Statement ready: you owe $212.64 for your visit on 1/18.",
            "Please wear a mask in the lobby.",
            "We'll get you in as fast as we can.",
        ] {
            assert!(signals(text).is_empty(), "{text}: {:?}", signals(text));
        }
    }

    #[test]
    fn sentences_fold_like_the_whole_text() {
        for text in [
            "Hi Dr. Lee. Your visit is at 8:30 a.m.! ¿Mañana? Pay $30.00 at x.example/p ;) ok",
            "",
            "...",
            "Line one\nline two.  Three",
        ] {
            assert_eq!(read(text).folded, fold(text), "{text}");
        }
    }

    #[test]
    fn context_words_follow_their_neighbours() {
        let excused = |t: &str| read(t).excused;
        assert_eq!(excused("Take our 2-minute survey"), ["take"]);
        assert_eq!(excused("Test your camera and mic."), ["test"]);
        assert!(excused("Your test came back.").is_empty());
        assert_eq!(
            excused("Use the door by the pharmacy drive-thru."),
            ["pharmacy"]
        );
        assert!(excused("We sent it to the pharmacy.").is_empty());
        assert!(excused("Take one tablet at bedtime.").is_empty());
    }
}

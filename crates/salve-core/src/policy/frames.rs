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
pub const CLINICIAN_REQUEST: Category = Category {
    rule: "clinical_reason",
    what: "a clinician asking to talk, review or see the patient again",
};
pub const CLINICIAN_REVIEW: Category = Category {
    rule: "clinical_reason",
    what: "something a clinician looked at",
};
pub const FOLLOW_UP: Category = Category {
    rule: "clinical_reason",
    what: "a follow-up interval",
};
pub const VISIT_REASON: Category = Category {
    rule: "clinical_reason",
    what: "a call about the last visit",
};
pub const CONFIDENTIAL_VISIT: Category = Category {
    rule: "clinical_reason",
    what: "a confidential visit",
};
pub const AID: Category = Category {
    rule: "device",
    what: "an aid the patient wears or uses",
};
pub const LESION: Category = Category {
    rule: "condition",
    what: "a skin spot",
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
    stay_verbs: Set,
    stay_links: Set,
    discuss_verbs: Set,
    discuss_topics_ok: Set,
    letter_nouns: Set,
    form_nouns: Set,
    letter_links: Set,
    letter_for: Set,
    letter_from_ok: Set,
    third_parties: Set,
    routine_parties: Set,
    party_mods: Set,
    clinicians: Set,
    want_verbs: Set,
    intents: Set,
    /// "go" -> "over": an intent only with its next word.
    intents_with: Vec<(&'static str, &'static str)>,
    message_verbs: Set,
    message_nouns: Set,
    review_verbs: Set,
    review_links: Set,
    determiners: Set,
    clinician_topics_ok: Set,
    not_clinician_after: Set,
    return_verbs: Set,
    return_before_back: Set,
    interval_links: Set,
    interval_words: Set,
    interval_units: Set,
    worn_aids: Set,
    aid_states: Set,
    vision_aids: Set,
    vision_states: Set,
    vision_not: Set,
    lesions: Set,
    lesion_food: Set,
    about_links: Set,
    visit_mods: Set,
    visit_nouns: Set,
    visit_admin: Set,
    confidential: Set,
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
    triggers.insert("back");
    for name in [
        "possessives",
        "dress_verbs",
        "negations",
        "companion_verbs",
        "discuss_verbs",
        "letter_nouns",
        "form_nouns",
        "billing_nouns",
        "companions",
        "clinicians",
        "return_verbs",
        "worn_aids",
        "vision_aids",
        "lesions",
        "about_links",
        "confidential",
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
        stay_verbs: set("stay_verbs"),
        stay_links: set("stay_links"),
        discuss_verbs: set("discuss_verbs"),
        discuss_topics_ok: set("discuss_topics_ok"),
        letter_nouns: set("letter_nouns"),
        form_nouns: set("form_nouns"),
        letter_links: set("letter_links"),
        letter_for: set("letter_for"),
        letter_from_ok: set("letter_from_ok"),
        third_parties: set("third_parties"),
        routine_parties: set("routine_parties"),
        party_mods: set("party_mods"),
        clinicians: set("clinicians"),
        want_verbs: set("want_verbs"),
        intents: set("intents"),
        intents_with: vocab::section(FRAMES, "intents_with")
            .filter_map(|pair| pair.split_once(':'))
            .collect(),
        message_verbs: set("message_verbs"),
        message_nouns: set("message_nouns"),
        review_verbs: set("review_verbs"),
        review_links: set("review_links"),
        determiners: set("determiners"),
        clinician_topics_ok: set("clinician_topics_ok"),
        not_clinician_after: set("not_clinician_after"),
        return_verbs: set("return_verbs"),
        return_before_back: set("return_before_back"),
        interval_links: set("interval_links"),
        interval_words: set("interval_words"),
        interval_units: set("interval_units"),
        worn_aids: set("worn_aids"),
        aid_states: set("aid_states"),
        vision_aids: set("vision_aids"),
        vision_states: set("vision_states"),
        vision_not: set("vision_not"),
        lesions: set("lesions"),
        lesion_food: set("lesion_food"),
        about_links: set("about_links"),
        visit_mods: set("visit_mods"),
        visit_nouns: set("visit_nouns"),
        visit_admin: set("visit_admin"),
        confidential: set("confidential"),
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

/// Whether a word of `set` is within `reach` words of `words[i]`, either side.
fn near(words: &[&str], i: usize, reach: usize, set: &Set) -> bool {
    words[i.saturating_sub(reach)..words.len().min(i + reach + 1)]
        .iter()
        .any(|x| set.contains(x))
}

/// "in 3 months", "en dos semanas", "dentro de 2 semanas": the index in `rest` of the unit.
fn interval_end(f: &Frames, rest: &[&str]) -> Option<usize> {
    let mut k = 0;
    while k < rest.len().min(3) && f.interval_links.contains(rest[k]) {
        k += 1;
    }
    if k == 0
        || !rest
            .get(k)
            .is_some_and(|x| is_number(x) || f.interval_words.contains(x))
    {
        return None;
    }
    rest.get(k + 1)
        .is_some_and(|x| f.interval_units.contains(x))
        .then_some(k + 1)
}

/// A clinician at `words[i]`: "Dr. Pérez quiere hablar con usted", "the doctor would like to
/// go over something", "Dr. Wu reviewed the echo", "Dr. Obi left you a message".
fn clinician_frame(f: &Frames, words: &[&str], i: usize, reading: &mut Reading) {
    let n = words.len();
    let topic_ok = |from: usize| {
        words[from.min(n)..n.min(from + 5)]
            .iter()
            .any(|x| f.discuss_topics_ok.contains(x) || f.clinician_topics_ok.contains(x))
    };
    for j in i + 1..n.min(i + 6) {
        let v = words[j];
        if f.want_verbs.contains(v) {
            let intent = (j + 1..n.min(j + 5)).find(|&k| {
                f.intents.contains(words[k])
                    || f.intents_with
                        .iter()
                        .any(|(a, b)| *a == words[k] && words.get(k + 1) == Some(b))
            });
            if let Some(k) = intent
                && !topic_ok(k + 1)
            {
                push(reading, CLINICIAN_REQUEST, &words[i..=k]);
                return;
            }
        }
        if f.message_verbs.contains(v)
            && let Some(k) = (j + 1..n.min(j + 4)).find(|&k| f.message_nouns.contains(words[k]))
        {
            push(reading, CLINICIAN_REQUEST, &words[i..=k]);
            return;
        }
        if f.review_verbs.contains(v) {
            let mut k = j + 1;
            if k < n && f.review_links.contains(words[k]) {
                k += 1;
            }
            if k < n && (f.determiners.contains(words[k]) || f.possessives.contains(words[k])) {
                k += 1;
                while k < n && matches!(words[k], "new" | "last" | "latest" | "recent") {
                    k += 1;
                }
                if k < n
                    && !f.discuss_topics_ok.contains(words[k])
                    && !f.clinician_topics_ok.contains(words[k])
                {
                    push(reading, CLINICIAN_REVIEW, &words[i..=k]);
                    return;
                }
            }
        }
    }
}

/// Paperwork at `words[i]` for a third party: a letter or note for one is an excuse or a
/// clearance; a form only when it is not the routine kind every school or camp hands out.
fn paperwork_frame(f: &Frames, words: &[&str], i: usize, reading: &mut Reading) {
    let n = words.len();
    let w = words[i];
    let letter = f.letter_nouns.contains(w);
    let party_ok =
        |x: &str| f.third_parties.contains(x) && (letter || !f.routine_parties.contains(x));
    // After the noun, only through link words ("forms before work" is a time of day); a letter
    // may first say what it is ("carta de comprobante de cita para el trabajo").
    let mut via_for = false;
    let mut skipped = 0;
    let mut after = None;
    for (k, &x) in words.iter().enumerate().take(n.min(i + 8)).skip(i + 1) {
        if f.third_parties.contains(x) {
            after = Some(k).filter(|_| party_ok(x));
            break;
        }
        if f.letter_for.contains(x) {
            via_for = true;
        } else if !f.letter_links.contains(x) && !f.party_mods.contains(x) {
            skipped += 1;
            if !letter || via_for || skipped > 3 {
                break;
            }
        }
    }
    let after = after.filter(|_| via_for || !f.letter_from_ok.contains(w));
    let after = after.filter(|&k| k < i + 5 || via_for);
    let before = (i.saturating_sub(2)..i).find(|&k| party_ok(words[k]));
    if let Some(k) = after {
        push(reading, THIRD_PARTY_PAPERWORK, &words[i..=k]);
    } else if let Some(k) = before {
        push(reading, THIRD_PARTY_PAPERWORK, &words[k..=i]);
    }
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
                // "your reading glasses" are for the forms.
                && !words.get(j + 1).is_some_and(|x| f.vision_aids.contains(x))
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
        // "letter for your employer", "school excuse", "paperwork for the DMV".
        if f.letter_nouns.contains(w) || f.form_nouns.contains(w) {
            paperwork_frame(f, words, i, reading);
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
        if f.clinicians.contains(w) && !(i > 0 && f.not_clinician_after.contains(words[i - 1])) {
            clinician_frame(f, words, i, reading);
        }
        // "return in 3 months", "see you back in 2 weeks".
        if (f.return_verbs.contains(w)
            || w == "back"
                && i > 0
                && f.return_before_back.contains(words[i - 1])
                && (words[i - 1] != "you"
                    || i > 1 && (words[i - 2] == "see" || f.want_verbs.contains(words[i - 2]))))
            && let Some(end) = interval_end(f, &words[i + 1..])
        {
            push(reading, FOLLOW_UP, &words[i..=i + 1 + end]);
        }
        // "the boot comes off", "ya llegaron sus lentes".
        if f.worn_aids.contains(w)
            && (i > 0 && words[i - 1] == "walking" || near(words, i, 3, &f.aid_states))
        {
            push(reading, AID, &words[i..=i]);
        }
        if f.vision_aids.contains(w)
            && !near(words, i, 2, &f.vision_not)
            && near(words, i, 3, &f.vision_states)
        {
            push(reading, AID, &words[i..=i]);
        }
        // "the mole on your back", "ese lunar" (not "mole poblano").
        if f.lesions.contains(w)
            && i > 0
            && (f.determiners.contains(words[i - 1]) || f.possessives.contains(words[i - 1]))
            && !near(words, i, 4, &f.lesion_food)
        {
            push(reading, LESION, &words[i - 1..=i]);
        }
        // "call regarding your recent visit" (not a survey or a bill about it).
        if f.about_links.contains(w)
            && words
                .get(i + 1)
                .is_some_and(|x| f.possessives.contains(x) || f.determiners.contains(x))
            && words.get(i + 2).is_some_and(|x| f.visit_mods.contains(x))
            && words.get(i + 3).is_some_and(|x| f.visit_nouns.contains(x))
            && !words
                .iter()
                .any(|x| f.visit_admin.contains(x) || f.billing_nouns.contains(x))
        {
            push(reading, VISIT_REASON, &words[i..=i + 3]);
        }
        if f.confidential.contains(w) && near(words, i, 2, &f.visit_nouns) {
            push(reading, CONFIDENTIAL_VISIT, &words[i..=i]);
        }
        // "have someone stay with you".
        if f.companions.contains(w)
            && let Some(k) = (i + 1..n.min(i + 4)).find(|&k| f.stay_verbs.contains(words[k]))
            && words.get(k + 1).is_some_and(|x| f.stay_links.contains(x))
        {
            push(reading, COMPANION, &words[i..=k + 1]);
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
            [
                ("clinical_reason", "dr ames looked at your echo".into()),
                ("clinical_item", "your echo".into())
            ]
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

    /// Each frame's secure phrasing (English and Spanish) and its direct look-alikes.
    fn rules_of(text: &str) -> Vec<&'static str> {
        read(text).signals.iter().map(|s| s.category.rule).collect()
    }

    fn frame_cases(category: Category, secure: &[&str], direct: &[&str]) {
        for text in secure {
            let found = read(text).signals;
            assert!(
                found.iter().any(|s| s.category == category),
                "{text}: {found:?}"
            );
        }
        for text in direct {
            assert!(
                rules_of(text).is_empty(),
                "{text}: {:?}",
                read(text).signals
            );
        }
    }

    #[test]
    fn a_clinician_asking_to_talk_review_or_see_again() {
        frame_cases(
            CLINICIAN_REQUEST,
            &[
                "The doctor would like to go over something with you from your last visit.",
                "Sra. Lozano, la Dra. Pérez quiere hablar con usted.",
                "La doctora quiere revisar algo con usted.",
                "La doctora le pide que regrese en 3 meses.",
                "Dr. Obi left you a message in the portal.",
                "Dr. Kim wants you to come back next week.",
            ],
            &[
                "Dr. Lee is running late, about 20 minutes.",
                "The doctor is out Friday, we need to move your visit.",
                "El doctor está atrasado 20 minutos.",
                "Dr. Bishop would like to see you for your yearly checkup.",
                "Dr. Lee wants to go over your bill with you.",
                "La doctora quiere hablar de su seguro.",
                "Dr. Patel needs to reschedule your appointment.",
                "Your insurance provider wants to review your claim.",
                "Dr. Lee's patients need to see the front desk first.",
            ],
        );
    }

    #[test]
    fn what_a_clinician_looked_at() {
        frame_cases(
            CLINICIAN_REVIEW,
            &[
                "Dr. Wu reviewed the echo.",
                "Dr. Alvarez reviewed the photos.",
                "La Dra. Soto revisó sus fotos.",
            ],
            &[
                "Dr. Clarke signed the school form.",
                "Dr. Lee reviewed your forms and signed them.",
                "El doctor revisó su formulario.",
            ],
        );
    }

    #[test]
    fn a_follow_up_interval() {
        frame_cases(
            FOLLOW_UP,
            &[
                "Please come back in 2 weeks.",
                "We'd like to see you back in 3 months.",
                "Dr. Cole wants you back in six weeks.",
                "Regrese en dos semanas, por favor.",
                "Vuelva dentro de 3 meses.",
            ],
            &[
                "Dr. Lee will be back in 2 weeks from vacation.",
                "We'll call you back in 10 minutes.",
                "El doctor regresa en 2 semanas de sus vacaciones.",
                "Your next visit is in 3 months.",
            ],
        );
    }

    #[test]
    fn aids_the_patient_wears_or_uses() {
        frame_cases(
            AID,
            &[
                "You can resume running once the boot comes off next week.",
                "Your son's cast can come off at the next visit.",
                "Ya llegaron sus lentes.",
                "Your new glasses are ready to pick up.",
                "Le vamos a quitar el yeso el martes.",
            ],
            &[
                "Please bring your reading glasses for the forms.",
                "We found a pair of sunglasses in the lobby.",
                "Se encontraron unos lentes de sol en el estacionamiento.",
                "Your new glasses case is in the lost and found.",
                "Please wipe the snow off before coming in.",
            ],
        );
    }

    #[test]
    fn a_skin_spot_pointed_at() {
        frame_cases(
            LESION,
            &[
                "Dr. Alvarez thinks the mole should come off.",
                "Your mole check is Thursday.",
                "La doctora quiere ver ese lunar.",
            ],
            &[
                "Feliz Año Nuevo Lunar de parte de todos.",
                "Gracias por el mole poblano, estaba delicioso.",
            ],
        );
    }

    #[test]
    fn a_call_about_the_last_visit() {
        frame_cases(
            VISIT_REASON,
            &[
                "Please call the office regarding your recent visit.",
                "Llámenos sobre su última visita.",
            ],
            &[
                "Please take our survey about your recent visit.",
                "Please let us know if your insurance changed since your last visit.",
                "Tenemos una pregunta sobre su última cita y el pago.",
            ],
        );
    }

    #[test]
    fn confidential_visits_and_watched_recovery() {
        frame_cases(
            CONFIDENTIAL_VISIT,
            &[
                "Your teen's confidential visit is Tuesday at 4.",
                "Su cita confidencial es el martes.",
            ],
            &["Your information is confidential and safe with us."],
        );
        frame_cases(
            COMPANION,
            &[
                "Please have someone stay with you for 24 hours.",
                "Necesita alguien que se quede con usted esa noche.",
            ],
            &["Someone will stay at the front desk until 6."],
        );
    }

    #[test]
    fn letters_for_third_parties_but_not_routine_forms() {
        frame_cases(
            THIRD_PARTY_PAPERWORK,
            &[
                "We have your paperwork for the DMV ready for Dr. Gates to sign.",
                "Ya está lista su carta de comprobante de cita para el trabajo.",
                "We received your request for a letter for your service dog.",
                "Your school note is ready.",
                "Su carta para el trabajo está lista.",
            ],
            &[
                "Bring the school form to your visit.",
                "Ya están listos sus formularios para la guardería.",
                "Recibimos el formulario de la escuela para Sofía.",
                "Traiga una carta del trabajo como comprobante de ingresos.",
                "We received the letter from your employer.",
            ],
        );
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

//! The allow-list: the words that SMS-safe messages are made of (data/policy/allow/*.txt), and
//! which SMS-safe kind each one signals.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use super::text::fold;
use super::vocab;

/// The SMS-safe kinds of PRODUCT.md, "What may go by direct SMS".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SafeKind {
    Appointment,
    CallOffice,
    DocumentReceived,
    Announcement,
    Administration,
}

impl SafeKind {
    pub const ALL: [SafeKind; 5] = [
        Self::Appointment,
        Self::CallOffice,
        Self::DocumentReceived,
        Self::Announcement,
        Self::Administration,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Appointment => "appointment logistics",
            Self::CallOffice => "a request to call the office",
            Self::DocumentReceived => "a document-received confirmation",
            Self::Announcement => "a practice announcement",
            Self::Administration => "practice administration",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`SafeKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    pub fn add(&mut self, other: Kinds) {
        self.0 |= other.0;
    }
    pub fn iter(self) -> impl Iterator<Item = SafeKind> {
        SafeKind::ALL
            .into_iter()
            .filter(move |k| self.0 & k.bit() != 0)
    }
}

/// Hand-curated files: their words are allowed even where a denied beginning matches
/// ("clinic" despite "clinic-").
const CURATED: &[(Option<SafeKind>, &str)] = &[
    (None, include_str!("../../data/policy/allow/common.txt")),
    (None, ORGANISATIONS),
    (
        Some(SafeKind::Appointment),
        include_str!("../../data/policy/allow/appointment.txt"),
    ),
    (
        Some(SafeKind::CallOffice),
        include_str!("../../data/policy/allow/call_office.txt"),
    ),
    (
        Some(SafeKind::DocumentReceived),
        include_str!("../../data/policy/allow/document_received.txt"),
    ),
    (
        Some(SafeKind::Announcement),
        include_str!("../../data/policy/allow/announcement.txt"),
    ),
    (
        Some(SafeKind::Administration),
        include_str!("../../data/policy/allow/administration.txt"),
    ),
];

/// Hand-curated: pharmacies, insurers, stores and services that practices name as landmarks,
/// payers or tools ("CVS", "UnitedHealthcare", "HIPAA").
const ORGANISATIONS: &str = include_str!("../../data/policy/allow/organisations.txt");

/// Generated: frequent English and Spanish words minus health words.
const EVERYDAY: &str = include_str!("../../data/policy/allow/everyday.txt");
/// Generated: health words that no form of may be allowed, and health word beginnings.
const DENIED: &str = include_str!("../../data/policy/allow/denied.txt");
const DENIED_PREFIXES: &str = include_str!("../../data/policy/allow/denied_prefixes.txt");
/// Hand-curated: words never allowed in any form, even when a curated file lists them.
const NEVER: &str = include_str!("../../data/policy/allow/never.txt");

#[derive(Debug, Clone, Copy)]
struct Entry {
    kinds: Kinds,
    curated: bool,
}

struct Lists {
    words: HashMap<String, Entry>,
    denied: HashSet<String>,
    denied_prefixes: Vec<String>,
    never: HashSet<String>,
}

fn entries(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().flat_map(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        // "a.m" and "sign-up" fold to several words; each is listed on its own.
        fold(line)
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    })
}

static LISTS: LazyLock<Lists> = LazyLock::new(|| {
    let mut words: HashMap<String, Entry> = HashMap::new();
    for word in entries(EVERYDAY) {
        words.insert(
            word,
            Entry {
                kinds: Kinds::default(),
                curated: false,
            },
        );
    }
    for (kind, text) in CURATED {
        for word in entries(text) {
            let entry = words.entry(word).or_insert(Entry {
                kinds: Kinds::default(),
                curated: true,
            });
            entry.curated = true;
            if let Some(kind) = kind {
                entry.kinds.add(Kinds(kind.bit()));
            }
        }
    }
    Lists {
        words,
        denied: entries(DENIED).chain(entries(NEVER)).collect(),
        denied_prefixes: entries(DENIED_PREFIXES).collect(),
        never: entries(NEVER).collect(),
    }
});

fn denied(lists: &Lists, word: &str) -> bool {
    lists.denied.contains(word)
        || lists
            .denied_prefixes
            .iter()
            .any(|p| word.starts_with(p.as_str()))
}

/// The kinds a folded word signals, or `None` when the word is not on the allow-list. Listed
/// words stand for their regular forms too ("checking" for "check", "cambiamos" and
/// "mandenos" for "cambiar" and "mandar"), except health words in any form ("expecting" is
/// not allowed because "expect" is).
pub fn lookup(folded_word: &str) -> Option<Kinds> {
    let lists = &*LISTS;
    if lists.never.contains(folded_word) {
        return None;
    }
    let exact = lists.words.get(folded_word);
    if let Some(e) = exact
        && e.curated
    {
        return Some(e.kinds);
    }
    if denied(lists, folded_word) || plural_of_denied(lists, folded_word) {
        return None;
    }
    if let Some(e) = exact {
        return Some(e.kinds);
    }
    let mut found = None;
    for_each_base(folded_word, &mut |base| {
        if found.is_none() && !denied(lists, base) {
            found = lists.words.get(base).map(|e| e.kinds);
        }
    });
    found
}

/// A word with a health sense: denied or never allowed, a vocabulary term, or built like a
/// medical term. Such a word is never taken for a name ("Anticoagulation Clinic",
/// "Bridgeway Recovery") nor for a misspelling of an allowed word.
pub fn is_health_word(folded_word: &str) -> bool {
    LISTS.denied.contains(folded_word) || is_medical_word(folded_word)
}

/// A word that is a vocabulary term, never allowed, or built like a medical term ("colposcopy",
/// "mamograma"): [`is_health_word`] without the frequent words that only sometimes have a
/// health sense ("broken", "take").
pub fn is_medical_word(folded_word: &str) -> bool {
    let lists = &*LISTS;
    lists.never.contains(folded_word)
        // Short beginnings ("ache", "colon", "pill") start surnames too: only long ones here.
        || lists
            .denied_prefixes
            .iter()
            .any(|p| p.len() >= 6 && folded_word.starts_with(p.as_str()))
        || vocab::is_term(folded_word).is_some()
        || vocab::medical_form(folded_word)
}

/// The allowed word an unknown word is one typing slip away from ("reminer", "confim", "yor"),
/// if it is a hand-curated word of four letters or more and no health word is as close.
pub fn typo_of(folded_word: &str) -> Option<Kinds> {
    let lists = &*LISTS;
    let n = folded_word.chars().count();
    // A denied word in any form is known, not mistyped ("stool" is not "tool").
    if !(3..=14).contains(&n)
        || !folded_word.is_ascii()
        || is_health_word(folded_word)
        || denied(lists, folded_word)
        || plural_of_denied(lists, folded_word)
    {
        return None;
    }
    let mut found: Option<Kinds> = None;
    let mut health = false;
    for_each_edit(folded_word, &mut |v| {
        if health {
            return;
        }
        // Hash look-ups only: a few hundred variants per unknown word.
        if lists.never.contains(v) || lists.denied.contains(v) || vocab::is_term(v).is_some() {
            health = true;
            return;
        }
        if found.is_none()
            && v.len() >= 4
            && let Some(e) = lists.words.get(v)
            && e.curated
        {
            found = Some(e.kinds);
        }
    });
    if health { None } else { found }
}

/// Every string one deletion, transposition, substitution or insertion away from `word`
/// (ASCII letters).
fn for_each_edit(word: &str, f: &mut dyn FnMut(&str)) {
    let b = word.as_bytes();
    let mut buf: Vec<u8> = Vec::with_capacity(b.len() + 1);
    let emit = |buf: &[u8], f: &mut dyn FnMut(&str)| {
        if let Ok(s) = std::str::from_utf8(buf) {
            f(s);
        }
    };
    for i in 0..b.len() {
        buf.clear();
        buf.extend_from_slice(&b[..i]);
        buf.extend_from_slice(&b[i + 1..]);
        emit(&buf, f);
        if i + 1 < b.len() {
            buf.clear();
            buf.extend_from_slice(b);
            buf.swap(i, i + 1);
            emit(&buf, f);
        }
        for c in b'a'..=b'z' {
            if c != b[i] {
                buf.clear();
                buf.extend_from_slice(b);
                buf[i] = c;
                emit(&buf, f);
            }
        }
    }
    for i in 0..=b.len() {
        for c in b'a'..=b'z' {
            buf.clear();
            buf.extend_from_slice(&b[..i]);
            buf.push(c);
            buf.extend_from_slice(&b[i..]);
            emit(&buf, f);
        }
    }
}

/// "brazos" when "brazo" is denied, "readings" when "reading" is: the generated everyday list
/// holds plurals of health words on their own.
fn plural_of_denied(lists: &Lists, word: &str) -> bool {
    ["s", "es"].iter().any(|ending| {
        word.strip_suffix(ending)
            .is_some_and(|stem| stem.len() >= 3 && lists.denied.contains(stem))
    })
}

/// Spanish verb endings (longest first) and English suffixes, with what replaces them.
const SPANISH_ENDINGS: &[&str] = &[
    "aremos", "eremos", "iremos", "aremos", "ariamos", "abamos", "ieron", "iendo", "amos", "emos",
    "imos", "aron", "aban", "aras", "ando", "ados", "adas", "idos", "idas", "aba", "ara", "era",
    "ira", "are", "ado", "ada", "ido", "ida", "ian", "ia", "an", "en", "as", "es", "a", "e", "o",
];
const ENCLITICS: &[&str] = &[
    "nos", "les", "los", "las", "me", "le", "lo", "la", "se", "te",
];

fn for_each_base(word: &str, f: &mut dyn FnMut(&str)) {
    let mut buf = String::new();
    // English: plural and tense endings.
    for (suffix, repl) in [
        ("ies", "y"),
        ("es", ""),
        ("s", ""),
        ("ed", ""),
        ("ed", "e"),
        ("ing", ""),
        ("ing", "e"),
    ] {
        // Four letters at least: "dosing" is not a form of "dos".
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.len() >= 4
        {
            buf.clear();
            buf.push_str(stem);
            buf.push_str(repl);
            f(&buf);
        }
    }
    // Spanish: an enclitic pronoun ("mandenos"), then a verb ending back to the infinitive.
    let mut stems = vec![word];
    for e in ENCLITICS {
        if let Some(stem) = word.strip_suffix(e)
            && stem.len() >= 4
        {
            stems.push(stem);
            f(stem);
        }
    }
    for stem in stems {
        // Future and conditional add to the infinitive: "llamaremos", "ayudaria".
        for ending in ["emos", "ian", "ias", "ia", "an", "as", "e", "a"] {
            if let Some(inf) = stem.strip_suffix(ending)
                && inf.len() >= 4
                && (inf.ends_with("ar") || inf.ends_with("er") || inf.ends_with("ir"))
            {
                f(inf);
            }
        }
        for ending in SPANISH_ENDINGS {
            if let Some(root) = stem.strip_suffix(ending)
                && root.len() >= 3
            {
                for inf in ["ar", "er", "ir"] {
                    buf.clear();
                    buf.push_str(root);
                    buf.push_str(inf);
                    f(&buf);
                }
            }
        }
    }
}

/// Words before a capitalised unknown word that make it a name: titles, greetings and the
/// words that introduce a provider, a person or a place ("with Dr. Lee", "this is Jenna",
/// "at Oak Street").
const NAME_LEADS: &[&str] = &[
    "dr", "dra", "drs", "doctor", "doctora", "mr", "mrs", "ms", "miss", "mx", "sr", "sra", "srta",
    "nurse", "np", "pa", "rn", "with", "con", "hi", "hello", "hey", "dear", "hola", "estimado",
    "estimada", "querido", "querida", "at", "en", "from", "de", "del", "to", "and", "y", "thanks",
    "gracias", "team", "equipo", "on", "the", "el", "la", "see", "ver", "por", "by", "for", "para",
    "is", "am", "soy", "habla", "new", "nuevo", "nueva", "our", "nuestro", "nuestra", "w", "calle",
    "avenida", "camino", "paseo",
];

/// Words after a capitalised unknown word that make it part of a name or an address.
const NAME_TRAILS: &[&str] = &[
    "street",
    "st",
    "avenue",
    "ave",
    "av",
    "road",
    "rd",
    "boulevard",
    "blvd",
    "drive",
    "dr",
    "lane",
    "ln",
    "way",
    "court",
    "ct",
    "place",
    "pl",
    "parkway",
    "pkwy",
    "highway",
    "hwy",
    "plaza",
    "square",
    "circle",
    "suite",
    "clinic",
    "clinica",
    "office",
    "building",
    "center",
    "centre",
    "centro",
    "family",
    "medical",
    "practice",
    "primary",
    "campus",
    "hall",
    "tower",
    "calle",
    "avenida",
    "edificio",
    "consultorio",
    "location",
    "locations",
    "ubicacion",
    "partners",
    "associates",
    "group",
    "health",
    "pediatrics",
];

pub fn leads_to_name(folded_word: &str) -> bool {
    NAME_LEADS.contains(&folded_word)
}

pub fn trails_name(folded_word: &str) -> bool {
    NAME_TRAILS.contains(&folded_word)
}

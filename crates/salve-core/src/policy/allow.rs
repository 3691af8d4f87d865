//! The allow-list: the words that SMS-safe messages are made of (data/policy/allow/*.txt), and
//! which SMS-safe kind each one signals.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::text::fold;

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

const FILES: &[(Option<SafeKind>, &str)] = &[
    (None, include_str!("../../data/policy/allow/common.txt")),
    // Generated: frequent English and Spanish words minus health words.
    (None, include_str!("../../data/policy/allow/everyday.txt")),
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

static WORDS: LazyLock<HashMap<String, Kinds>> = LazyLock::new(|| {
    let mut words: HashMap<String, Kinds> = HashMap::new();
    for (kind, text) in FILES {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            // "a.m" and "sign-up" fold to several words; each is listed on its own.
            for word in fold(line).split(' ').filter(|w| !w.is_empty()) {
                let entry = words.entry(word.to_owned()).or_default();
                if let Some(kind) = kind {
                    entry.add(Kinds(kind.bit()));
                }
            }
        }
    }
    words
});

/// The kinds a folded word signals, or `None` when the word is not on the allow-list. Listed
/// words stand for their regular forms too ("checking" for "check", "cambiamos" and
/// "mandenos" for "cambiar" and "mandar"); a form of a health word stays unknown because the
/// health word is never listed.
pub fn lookup(folded_word: &str) -> Option<Kinds> {
    if let Some(k) = WORDS.get(folded_word) {
        return Some(*k);
    }
    let mut found = None;
    for_each_base(folded_word, &mut |base| {
        if found.is_none() {
            found = WORDS.get(base).copied();
        }
    });
    found
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
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.len() >= 3
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
    "is", "am", "soy", "habla", "new", "nuevo", "nueva", "our", "nuestro", "nuestra",
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

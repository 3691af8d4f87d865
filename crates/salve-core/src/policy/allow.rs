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
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = SafeKind> {
        SafeKind::ALL
            .into_iter()
            .filter(move |k| self.0 & k.bit() != 0)
    }
}

const FILES: &[(Option<SafeKind>, &str)] = &[
    (None, include_str!("../../data/policy/allow/common.txt")),
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

/// The kinds a folded word signals, or `None` when the word is not on the allow-list.
pub fn lookup(folded_word: &str) -> Option<Kinds> {
    WORDS.get(folded_word).copied()
}

/// Words before a capitalised unknown word that make it a name: titles, greetings and the
/// prepositions that introduce a provider or a place ("with Dr. Lee", "at Oak Street").
pub fn leads_to_name(folded_word: &str) -> bool {
    matches!(
        folded_word,
        "dr" | "dra"
            | "drs"
            | "doctor"
            | "doctora"
            | "mr"
            | "mrs"
            | "ms"
            | "miss"
            | "mx"
            | "sr"
            | "sra"
            | "srta"
            | "nurse"
            | "np"
            | "pa"
            | "rn"
            | "with"
            | "con"
            | "hi"
            | "hello"
            | "hey"
            | "dear"
            | "hola"
            | "estimado"
            | "estimada"
            | "querido"
            | "querida"
            | "at"
            | "en"
            | "from"
            | "de"
            | "del"
            | "to"
            | "and"
            | "y"
            | "thanks"
            | "gracias"
            | "team"
            | "equipo"
            | "on"
            | "the"
            | "el"
            | "la"
            | "see"
            | "ver"
            | "por"
            | "by"
            | "for"
            | "para"
    )
}

/// Words after a capitalised unknown word that make it part of a name or an address.
pub fn trails_name(folded_word: &str) -> bool {
    matches!(
        folded_word,
        "street"
            | "st"
            | "avenue"
            | "ave"
            | "av"
            | "road"
            | "rd"
            | "boulevard"
            | "blvd"
            | "drive"
            | "dr"
            | "lane"
            | "ln"
            | "way"
            | "court"
            | "ct"
            | "place"
            | "pl"
            | "parkway"
            | "pkwy"
            | "highway"
            | "hwy"
            | "plaza"
            | "square"
            | "circle"
            | "suite"
            | "clinic"
            | "clinica"
            | "office"
            | "building"
            | "center"
            | "centre"
            | "centro"
            | "family"
            | "medical"
            | "practice"
            | "primary"
            | "campus"
            | "hall"
            | "tower"
            | "calle"
            | "avenida"
            | "edificio"
            | "consultorio"
    )
}

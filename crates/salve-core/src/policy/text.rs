//! Text handling for the policy: folding (case, accents, punctuation) and tokenising.

use unicode_normalization::char::decompose_canonical;

/// Lowercase, drop accents and apostrophes, turn everything else that is not a letter or a digit
/// into single spaces. "¿Mañana a las 3?" -> "manana a las 3"; "don't" -> "dont".
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars() {
        if c == '\'' || c == '\u{2019}' || c == '\u{2018}' {
            continue;
        }
        if c.is_alphanumeric() {
            for lower in c.to_lowercase() {
                push_base(lower, &mut out);
            }
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

/// Push `c` without its accents (NFD, combining marks dropped).
fn push_base(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c);
        return;
    }
    decompose_canonical(c, |d| {
        if !is_combining(d) {
            out.push(d);
        }
    });
}

fn is_combining(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// What a piece of the text is, for the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A word, folded ("manana"), with how it was written.
    Word { folded: String, shape: Shape },
    /// Digits, possibly mixed with letters or punctuation: times, dates, amounts, suite
    /// numbers, phone numbers, ordinals ("3rd"), codes.
    Number,
    /// A link or an email address.
    Link,
    /// A value a template filled in (already judged through its catalog flag).
    Slot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Lower,
    /// First letter upper case, not all of it.
    Capitalized,
    /// All letters upper case and more than one of them ("MRI").
    AllCaps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    /// First token of a sentence (or of a line).
    pub sentence_start: bool,
    /// Directly followed by a comma ("Maria, your ...").
    pub comma_after: bool,
}

/// Marks a filled-in value in the text; a private-use character no one types.
pub const SLOT: char = '\u{E000}';

/// Abbreviations whose full stop does not end a sentence.
pub(super) const ABBREVIATIONS: &[&str] = &[
    "dr", "dra", "drs", "mr", "mrs", "ms", "mx", "sr", "sra", "srta", "st", "ste", "ave", "av",
    "blvd", "rd", "ln", "apt", "jr", "no", "np", "pa", "a.m", "p.m", "am", "pm", "etc", "vs",
    "e.g", "i.e", "lic", "dept", "bldg", "fl", "rm", "tel", "ext",
];

/// Split a text into tokens, marking where sentences start.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut sentence_start = true;
    for line in text.lines() {
        sentence_start = true;
        for chunk in line.split_whitespace() {
            sentence_start = push_chunk(chunk, sentence_start, &mut tokens);
        }
    }
    let _ = sentence_start;
    tokens
}

fn is_link(core: &str) -> bool {
    let lower = core.to_ascii_lowercase();
    if lower.contains("://") || lower.starts_with("www.") {
        return true;
    }
    if let Some(at) = lower.find('@') {
        return lower[at..].contains('.');
    }
    // "example.org/pay", "pay.example.com": a dot between letters and a slash or a known ending.
    let has_dot_word = lower
        .split('.')
        .filter(|p| !p.is_empty() && p.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .count()
        >= 2;
    has_dot_word
        && (lower.contains('/')
            || [
                ".com", ".org", ".net", ".edu", ".gov", ".us", ".io", ".health", ".care", ".link",
                ".app", ".ly", ".co", ".invalid", ".example", ".mx",
            ]
            .iter()
            .any(|t| lower.ends_with(t)))
}

/// Push the tokens of one whitespace-separated chunk; returns whether the next token starts a
/// sentence.
fn push_chunk(chunk: &str, sentence_start: bool, tokens: &mut Vec<Token>) -> bool {
    let lead: &[char] = &[
        '(', '"', '\'', '¿', '¡', '*', '[', '\u{201C}', '\u{2018}', '<',
    ];
    let trail: &[char] = &[
        '.', ',', ';', ':', '!', '?', ')', '"', '\'', '*', ']', '\u{201D}', '\u{2019}', '>', '…',
    ];
    let core = chunk.trim_start_matches(lead);
    let stripped = core.trim_end_matches(trail);
    let tail = &core[stripped.len()..];
    let core = stripped;
    if core.is_empty() {
        // Lone punctuation ("-", "—", "?"): ends a sentence only if it says so.
        return sentence_start || tail.contains(['.', '!', '?']);
    }
    let comma_after = tail.starts_with(',');
    let lower = core.to_ascii_lowercase();
    let ends = if tail.contains(['!', '?', ';']) {
        true
    } else if tail.starts_with('.') || tail.starts_with(':') {
        !(tail.starts_with('.') && tail.len() == 1 && ABBREVIATIONS.contains(&lower.as_str()))
    } else {
        false
    };
    if is_link(core) {
        tokens.push(Token {
            kind: Kind::Link,
            sentence_start,
            comma_after,
        });
        return ends;
    }
    let mut first = sentence_start;
    let pieces: Vec<&str> = core
        // Apostrophes split too: "we'll" is "we" and "ll", not the word "well".
        .split(|c: char| !(c.is_alphanumeric() || c == SLOT))
        .filter(|p| !p.is_empty())
        .collect();
    let has_digit = core.chars().any(|c| c.is_ascii_digit());
    let n = pieces.len();
    let mut last_number = false;
    for (i, piece) in pieces.into_iter().enumerate() {
        let comma = comma_after && i + 1 == n;
        let kind = if piece.contains(SLOT) {
            Kind::Slot
        } else if has_digit
            && (piece.chars().any(|c| c.is_ascii_digit()) || piece.chars().count() <= 2)
        {
            // "8:30am", "$45.00", "Suite 2B", "3rd"; letters beside digits ("10 am") stay codes.
            Kind::Number
        } else {
            let folded = fold(piece);
            if folded.is_empty() {
                continue;
            }
            Kind::Word {
                shape: shape(piece),
                folded,
            }
        };
        // "8:30" and "555-0134" are one number, not two.
        let number = kind == Kind::Number;
        if number && last_number {
            if let Some(t) = tokens.last_mut() {
                t.comma_after = comma;
            }
            continue;
        }
        last_number = number;
        tokens.push(Token {
            kind,
            sentence_start: first,
            comma_after: comma,
        });
        first = false;
    }
    ends
}

fn shape(word: &str) -> Shape {
    let letters = word.chars().filter(|c| c.is_alphabetic());
    let (mut upper, mut total) = (0, 0);
    for c in letters {
        total += 1;
        if c.is_uppercase() {
            upper += 1;
        }
    }
    let first_upper = word.chars().next().is_some_and(|c| c.is_uppercase());
    if total > 1 && upper == total {
        Shape::AllCaps
    } else if first_upper {
        Shape::Capitalized
    } else {
        Shape::Lower
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_strips_case_accents_and_punctuation() {
        assert_eq!(fold("¿Mañana a las 3:30?"), "manana a las 3 30");
        assert_eq!(fold("Don't  FORGET—your cita!"), "dont forget your cita");
        assert_eq!(fold("Women’s Health"), "womens health");
        assert_eq!(fold(""), "");
    }

    fn words(text: &str) -> Vec<String> {
        tokenize(text)
            .into_iter()
            .map(|t| match t.kind {
                Kind::Word { folded, .. } => folded,
                Kind::Number => "#".into(),
                Kind::Link => "<link>".into(),
                Kind::Slot => "<slot>".into(),
            })
            .collect()
    }

    #[test]
    fn tokenize_keeps_links_numbers_and_sentences() {
        assert_eq!(
            words(
                "See Dr. Lee at 8:30 a.m. on 12/05. Pay at https://x.example/p?id=1 or pay.example.com."
            ),
            [
                "see", "dr", "lee", "at", "#", "a", "m", "on", "#", "pay", "at", "<link>", "or",
                "<link>"
            ]
        );
        let t = tokenize("Hi. Maria, come in.\nThanks");
        let starts: Vec<bool> = t.iter().map(|t| t.sentence_start).collect();
        assert_eq!(starts, [true, true, false, false, true]);
        assert!(t[1].comma_after);
    }
}

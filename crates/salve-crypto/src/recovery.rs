//! One-time recovery codes: the way back in when a staff member's authenticator is lost.
//! Shown once at enrollment, stored only as hashes, each hash deleted when its code is used.
//!
//! A code is 15 characters of Crockford's base32 (no `i`, `l`, `o` or `u`), shown as
//! `xxxxx-xxxxx-xxxxx`: 75 random bits. Typing is forgiving: case, spaces and dashes do not
//! matter, and `o`, `i`, `l` are read as `0`, `1`, `1`, as Crockford's decoding does.
//!
//! Why SHA-256 and not argon2: the codes are random, so a slow hash buys nothing against
//! guessing them online (that is throttled like any sign-in), and offline, with a stolen
//! table, 2^75 candidates at even 10^12 SHA-256 per second is over a thousand years. Ten
//! characters (50 bits) would not be enough: the hashes are unsalted, so one sweep of 2^50,
//! about a day on one GPU, would reveal every user's codes at once.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{ct_eq, random_bytes};

/// Crockford's base32 alphabet, lowercase. 32 symbols, so `byte % 32` is unbiased.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
pub const CODE_CHARS: usize = 15;
// Five bits per symbol; see the module comment for why fewer than 75 is not enough.
const _: () = assert!(CODE_CHARS * 5 >= 75);
const GROUP: usize = 5;
/// How many codes a user gets at enrollment (and when they ask for a new set).
pub const DEFAULT_COUNT: usize = 10;

/// `n` fresh codes formatted for display, e.g. `7k2mq-x9v0d-htp3e`.
pub fn generate(n: usize) -> Vec<Zeroizing<String>> {
    (0..n).map(|_| generate_one()).collect()
}

fn generate_one() -> Zeroizing<String> {
    let raw = Zeroizing::new(random_bytes::<CODE_CHARS>());
    let mut code = Zeroizing::new(String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP));
    for (i, byte) in raw.iter().enumerate() {
        if i > 0 && i % GROUP == 0 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[usize::from(byte % 32)]));
    }
    code
}

/// Case, spaces and dashes removed; Crockford's look-alikes mapped to their digits.
fn canonical(code: &str) -> Zeroizing<String> {
    Zeroizing::new(
        code.chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .map(|c| match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                other => other,
            })
            .collect(),
    )
}

/// The value to store for a code: SHA-256 over its canonical form (see the module comment).
pub fn hash(code: &str) -> [u8; 32] {
    let canonical = canonical(code);
    let mut hasher = Sha256::new();
    hasher.update(b"salve:recovery:v1:");
    hasher.update(canonical.as_bytes());
    hasher.finalize().into()
}

/// The index of the stored hash that `code` matches, if any; the caller deletes that hash
/// so the code cannot be used again. Every stored hash is compared, in constant time, even
/// after a match. Input that cannot be a code (wrong length, foreign characters) is refused
/// before hashing.
pub fn matches(code: &str, stored_hashes: &[[u8; 32]]) -> Option<usize> {
    let canonical = canonical(code);
    let well_formed =
        canonical.len() == CODE_CHARS && canonical.bytes().all(|b| ALPHABET.contains(&b));
    if !well_formed {
        return None;
    }
    let candidate = hash(&canonical);
    let mut found = None;
    for (i, stored) in stored_hashes.iter().enumerate() {
        if ct_eq(&candidate, stored) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_unique_and_from_the_alphabet() {
        let codes = generate(DEFAULT_COUNT);
        assert_eq!(codes.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 17, "{}", code.as_str());
            let groups: Vec<&str> = code.split('-').collect();
            assert_eq!(groups.len(), 3);
            assert!(groups.iter().all(|g| g.len() == 5));
            assert!(code.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)));
            assert!(!code.contains(['i', 'l', 'o', 'u']));
        }
        let mut distinct: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), codes.len());
    }

    #[test]
    fn a_code_matches_its_own_hash_and_returns_the_index() {
        let codes = generate(3);
        let stored: Vec<[u8; 32]> = codes.iter().map(|c| hash(c)).collect();
        assert_eq!(matches(&codes[1], &stored), Some(1));
        assert_eq!(matches(&codes[2], &stored), Some(2));
        // Once the caller deletes the used hash, the code no longer matches.
        let remaining = [stored[0], stored[2]];
        assert_eq!(matches(&codes[1], &remaining), None);
        assert_eq!(matches(&codes[0], &[]), None);
    }

    #[test]
    fn typing_variations_are_forgiven() {
        let stored = [hash("7k2mq-x9v0d-htp1e")];
        for typed in [
            "7k2mq-x9v0d-htp1e",
            "7K2MQ-X9V0D-HTP1E",
            "7k2mq x9v0d htp1e",
            "7k2mqx9v0dhtp1e",
            " 7k2mq-x9vOd-htpLe ",
            "7k2mq-x9v0d-htpIe",
        ] {
            assert_eq!(matches(typed, &stored), Some(0), "{typed:?}");
        }
    }

    #[test]
    fn malformed_or_wrong_codes_are_refused() {
        let stored = [hash("7k2mq-x9v0d-htp1e")];
        for typed in [
            "",
            "7k2mq-x9v0d-htp1",
            "7k2mq-x9v0d-htp1ee",
            "7k2mq-x9v0d-htp1u",
            "7k2mq_x9v0d_htp1e",
            "7k2mq-x9v0d-htp1f",
            "7k2mq-x9v0d-htp1é",
        ] {
            assert_eq!(matches(typed, &stored), None, "{typed:?}");
        }
    }

    #[test]
    fn hash_is_stable_and_domain_separated() {
        assert_eq!(hash("abcde-fghjk-mnpqr"), hash("ABCDEFGHJKMNPQR"));
        let plain: [u8; 32] = Sha256::digest(b"abcdefghjkmnpqr").into();
        assert_ne!(hash("abcde-fghjk-mnpqr"), plain);
    }
}

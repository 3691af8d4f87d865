//! Bearer and link tokens: 256 bits of randomness; only a SHA-256 hash is ever stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::random_bytes;

/// A freshly minted token (shown once) and the hash to store.
pub struct NewToken {
    pub secret: Zeroizing<String>,
    pub hash: [u8; 32],
}

/// Mints `prefix_` followed by 43 base64url characters (256 random bits). The prefix lets
/// secret scanners recognise leaked tokens.
pub fn mint(prefix: &str) -> NewToken {
    let raw = Zeroizing::new(random_bytes::<32>());
    let secret = Zeroizing::new(format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(raw.as_ref())));
    let hash = hash(&secret);
    NewToken { secret, hash }
}

/// High-entropy tokens need no salt or slow hash: SHA-256 is enough to make a stolen table useless.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_unique_and_hash_consistently() {
        let a = mint("salve");
        let b = mint("salve");
        assert_ne!(a.secret.as_str(), b.secret.as_str());
        assert!(a.secret.starts_with("salve_"));
        assert_eq!(a.secret.len(), "salve_".len() + 43);
        assert_eq!(hash(&a.secret), a.hash);
        assert_ne!(a.hash, b.hash);
    }
}

/// A 6-digit one-time code, drawn uniformly (leading zeros kept), and the hash to store.
pub fn numeric_code() -> NewToken {
    use rand::Rng;
    let n: u32 = rand::rngs::OsRng.gen_range(0..1_000_000);
    let secret = Zeroizing::new(format!("{n:06}"));
    let hash = hash(&secret);
    NewToken { secret, hash }
}

#[cfg(test)]
mod code_tests {
    #[test]
    fn numeric_codes_are_six_digits() {
        for _ in 0..100 {
            let c = super::numeric_code();
            assert_eq!(c.secret.len(), 6);
            assert!(c.secret.chars().all(|ch| ch.is_ascii_digit()));
            assert_eq!(super::hash(&c.secret), c.hash);
        }
    }
}

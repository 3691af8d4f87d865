//! Audit-chain hashing (SHA-256) and Ed25519-signed checkpoints.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// The hash before the first row of every chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// Hashes one row onto the chain: `SHA-256(domain || prev || len-prefixed fields)`.
/// Length prefixes make the encoding unambiguous, so no two field lists hash alike.
pub fn chain_hash(prev: &[u8; 32], fields: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"salve:audit-row:v1");
    h.update(prev);
    for field in fields {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    h.finalize().into()
}

/// What a checkpoint signs: the chain, its length and head hash, and when.
pub fn checkpoint_message(
    scope: &str,
    seq: i64,
    head: &[u8; 32],
    signed_at_micros: i64,
) -> Vec<u8> {
    let mut m = b"salve:audit-checkpoint:v1".to_vec();
    m.extend_from_slice(&(scope.len() as u64).to_be_bytes());
    m.extend_from_slice(scope.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(head);
    m.extend_from_slice(&signed_at_micros.to_be_bytes());
    m
}

/// An audit-signing key, kept as its 32-byte seed in the key ring.
pub struct AuditSigner {
    key: SigningKey,
}

impl AuditSigner {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The key ring stores signing keys as 32-byte secrets; the seed is that secret.
    pub fn from_key(key: &crate::SymmetricKey) -> Self {
        Self::from_seed(key.bytes())
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// Verifies a checkpoint signature against a public key (from the key ring or an anchor file).
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_hash_depends_on_every_field_and_the_boundaries() {
        let base = chain_hash(&GENESIS, &[b"a", b"bc"]);
        assert_ne!(base, chain_hash(&GENESIS, &[b"ab", b"c"]));
        assert_ne!(base, chain_hash(&GENESIS, &[b"a", b"bd"]));
        assert_ne!(base, chain_hash(&[1; 32], &[b"a", b"bc"]));
        assert_eq!(base, chain_hash(&GENESIS, &[b"a", b"bc"]));
    }

    #[test]
    fn checkpoints_verify_and_reject_changes() {
        let signer = AuditSigner::from_seed(&[9; 32]);
        let msg = checkpoint_message("system", 7, &[3; 32], 1000);
        let sig = signer.sign(&msg);
        assert!(verify_signature(&signer.public_key(), &msg, &sig));
        let other = checkpoint_message("system", 8, &[3; 32], 1000);
        assert!(!verify_signature(&signer.public_key(), &other, &sig));
        let stranger = AuditSigner::from_seed(&[8; 32]);
        assert!(!verify_signature(&stranger.public_key(), &msg, &sig));
        assert!(!verify_signature(&signer.public_key(), &msg, &sig[..10]));
    }
}

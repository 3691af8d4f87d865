//! Salve's cryptography, built only from well-kept crates (RustCrypto, dalek):
//! the master key and key wrapping, AEAD field sealing bound to its row, blind indexes,
//! token hashing, password hashing, and audit-chain hashing with signed checkpoints.

pub mod audit;
pub mod ec_key;
pub mod field;
pub mod master;
pub mod password;
pub mod recovery;
pub mod token;
pub mod totp;

pub use field::{FieldAad, SymmetricKey};
pub use master::{MasterKey, MasterKeyError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Wrong key, wrong row, or tampered bytes: AEAD does not say which, on purpose.
    #[error("ciphertext could not be opened (wrong key, wrong record, or modified)")]
    Open,
    #[error("ciphertext is malformed")]
    Malformed,
}

/// Fills a fresh array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

/// Constant-time equality for secrets and their hashes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

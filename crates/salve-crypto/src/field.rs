//! AEAD sealing of single fields (XChaCha20-Poly1305). The associated data binds a ciphertext
//! to its table, column, row and key id, so bytes copied to another row or column fail to open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::{CryptoError, random_bytes};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// A 256-bit symmetric key with an id. Wiped on drop; never printed.
#[derive(Clone)]
pub struct SymmetricKey {
    id: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SymmetricKey({})", self.id)
    }
}

/// Where a sealed value lives. Together with the key id this is the AEAD associated data.
#[derive(Debug, Clone, Copy)]
pub struct FieldAad<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: &'a str,
}

impl<'a> FieldAad<'a> {
    pub fn new(table: &'a str, column: &'a str, row: &'a str) -> Self {
        Self { table, column, row }
    }

    fn encode(&self, key_id: &str) -> Vec<u8> {
        let mut out = b"salve:field:v1".to_vec();
        for part in [self.table, self.column, self.row, key_id] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

impl SymmetricKey {
    pub fn generate(id: impl Into<String>) -> Self {
        Self::from_bytes(id, random_bytes::<32>())
    }

    pub fn from_bytes(id: impl Into<String>, mut bytes: [u8; 32]) -> Self {
        let key = Self {
            id: id.into(),
            bytes: Zeroizing::new(bytes),
        };
        bytes.zeroize();
        key
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.bytes.as_ref().into())
    }

    /// Seals `plaintext`: `version || nonce || ciphertext+tag`. Random 192-bit nonces are safe
    /// to use without a counter.
    pub fn seal(&self, aad: FieldAad<'_>, plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let aad = aad.encode(&self.id);
        let ct = self
            .cipher()
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(
        &self,
        aad: FieldAad<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Malformed);
        }
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        let aad = aad.encode(&self.id);
        self.cipher()
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }

    pub fn seal_str(&self, aad: FieldAad<'_>, plaintext: &str) -> Vec<u8> {
        self.seal(aad, plaintext.as_bytes())
    }

    pub fn open_string(&self, aad: FieldAad<'_>, sealed: &[u8]) -> Result<String, CryptoError> {
        let bytes = self.open(aad, sealed)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CryptoError::Malformed)
    }

    /// Wraps another key under this one; the wrapped key's id is bound as associated data.
    pub fn wrap(&self, key: &SymmetricKey) -> Vec<u8> {
        self.seal(
            FieldAad::new("keyring", "wrapped", &key.id),
            key.bytes.as_ref(),
        )
    }

    pub fn unwrap_key(&self, id: &str, wrapped: &[u8]) -> Result<SymmetricKey, CryptoError> {
        let bytes = self.open(FieldAad::new("keyring", "wrapped", id), wrapped)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        Ok(SymmetricKey::from_bytes(id, arr))
    }

    /// A keyed hash for equality look-ups (blind index). `kind` separates domains, so a phone
    /// number and an MRN with the same text never collide.
    pub fn blind_index(&self, kind: &str, normalized: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.bytes.as_ref())
            .expect("HMAC accepts any key length");
        mac.update(b"salve:blind-index:v1");
        mac.update(&(kind.len() as u64).to_be_bytes());
        mac.update(kind.as_bytes());
        mac.update(normalized.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_fields_open_only_in_their_place() {
        let key = SymmetricKey::generate("k1");
        let aad = FieldAad::new("patients", "given_name", "row-1");
        let sealed = key.seal_str(aad, "Ana");
        assert_eq!(key.open_string(aad, &sealed).unwrap(), "Ana");
        assert!(!sealed.windows(3).any(|w| w == b"Ana"));
        for other in [
            FieldAad::new("patients", "given_name", "row-2"),
            FieldAad::new("patients", "family_name", "row-1"),
            FieldAad::new("contacts", "given_name", "row-1"),
        ] {
            assert_eq!(key.open(other, &sealed).unwrap_err(), CryptoError::Open);
        }
    }

    #[test]
    fn wrong_key_or_key_id_fails() {
        let aad = FieldAad::new("t", "c", "r");
        let sealed = SymmetricKey::generate("k1").seal(aad, b"x");
        assert!(SymmetricKey::generate("k1").open(aad, &sealed).is_err());
        let key = SymmetricKey::from_bytes("k1", [7; 32]);
        let sealed = key.seal(aad, b"x");
        assert!(
            SymmetricKey::from_bytes("k2", [7; 32])
                .open(aad, &sealed)
                .is_err()
        );
    }

    #[test]
    fn tampering_is_detected() {
        let key = SymmetricKey::generate("k");
        let aad = FieldAad::new("t", "c", "r");
        let mut sealed = key.seal(aad, b"secret");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(key.open(aad, &sealed).unwrap_err(), CryptoError::Open);
        assert_eq!(
            key.open(aad, &[1, 2, 3]).unwrap_err(),
            CryptoError::Malformed
        );
    }

    #[test]
    fn nonces_differ_between_seals() {
        let key = SymmetricKey::generate("k");
        let aad = FieldAad::new("t", "c", "r");
        assert_ne!(key.seal(aad, b"same"), key.seal(aad, b"same"));
    }

    #[test]
    fn wrapping_round_trips_and_binds_the_id() {
        let kek = SymmetricKey::generate("master");
        let dek = SymmetricKey::generate("patient-1");
        let wrapped = kek.wrap(&dek);
        let back = kek.unwrap_key("patient-1", &wrapped).unwrap();
        assert_eq!(back.bytes(), dek.bytes());
        assert!(kek.unwrap_key("patient-2", &wrapped).is_err());
    }

    #[test]
    fn blind_index_is_keyed_and_domain_separated() {
        let a = SymmetricKey::generate("a");
        let b = SymmetricKey::generate("b");
        assert_eq!(a.blind_index("phone", "+1"), a.blind_index("phone", "+1"));
        assert_ne!(a.blind_index("phone", "+1"), b.blind_index("phone", "+1"));
        assert_ne!(a.blind_index("phone", "X1"), a.blind_index("mrn", "X1"));
    }

    #[test]
    fn debug_shows_only_the_id() {
        let key = SymmetricKey::from_bytes("kid", [0x41; 32]);
        assert_eq!(format!("{key:?}"), "SymmetricKey(kid)");
    }
}

//! The master key (key-encryption key): loaded from a 0600 file or an environment variable.
//! It only wraps other keys; its fingerprint lets a server refuse a key that does not match.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::field::SymmetricKey;
use crate::random_bytes;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "master key file {0} does not exist; pass the key this database was created with (--master-key-file or SALVE_MASTER_KEY_FILE)"
    )]
    Missing(PathBuf),
    #[error("master key file {path} cannot be read: {kind}")]
    Unreadable {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error(
        "master key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("master key in {0} is malformed: expected 32 bytes in base64 on one line")]
    Malformed(String),
    #[error("master key file {path} could not be created: {kind}")]
    Create {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
}

/// The key-encryption key. Its id is derived from the key itself (a fingerprint), so the
/// database can say which master key wrapped which key without holding the key.
#[derive(Clone, Debug)]
pub struct MasterKey {
    key: SymmetricKey,
}

impl MasterKey {
    pub fn generate() -> Self {
        Self::from_bytes(random_bytes::<32>())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let probe = SymmetricKey::from_bytes("", bytes);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(probe.bytes())
            .expect("HMAC accepts any key length");
        mac.update(b"salve:master-key-fingerprint:v1");
        let fingerprint = hex::encode(&mac.finalize().into_bytes()[..16]);
        Self {
            key: SymmetricKey::from_bytes(format!("mk-{fingerprint}"), bytes),
        }
    }

    /// Reads the base64 form used in key files and `SALVE_MASTER_KEY`.
    pub fn from_base64(source: &str, text: &str) -> Result<Self, MasterKeyError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| MasterKeyError::Malformed(source.to_owned()))?,
        );
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::Malformed(source.to_owned()))?;
        Ok(Self::from_bytes(arr))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.bytes()))
    }

    /// Loads a key file, refusing one that group or others can read.
    pub fn load_file(path: &Path) -> Result<Self, MasterKeyError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MasterKeyError::Missing(path.to_owned()),
            kind => MasterKeyError::Unreadable {
                path: path.to_owned(),
                kind,
            },
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            MasterKeyError::Unreadable {
                path: path.to_owned(),
                kind: e.kind(),
            }
        })?);
        Self::from_base64(&path.display().to_string(), &text)
    }

    /// Creates a new key file with mode 0600; never overwrites an existing file.
    pub fn create_file(path: &Path) -> Result<Self, MasterKeyError> {
        let create_err = |e: std::io::Error| MasterKeyError::Create {
            path: path.to_owned(),
            kind: e.kind(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(create_err)?;
        }
        let key = Self::generate();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(create_err)?;
        let mut line = key.to_base64();
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(create_err)?;
        file.sync_all().map_err(create_err)?;
        Ok(key)
    }

    /// The id under which this key wraps others: `mk-` and 32 hex digits of an HMAC of the key.
    pub fn id(&self) -> &str {
        self.key.id()
    }

    pub fn wrap(&self, key: &SymmetricKey) -> Vec<u8> {
        self.key.wrap(key)
    }

    pub fn unwrap_key(&self, id: &str, wrapped: &[u8]) -> Result<SymmetricKey, crate::CryptoError> {
        self.key.unwrap_key(id, wrapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_created_private_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let key = MasterKey::create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = MasterKey::load_file(&path).unwrap();
        assert_eq!(loaded.id(), key.id());
        assert!(MasterKey::create_file(&path).is_err(), "never overwrites");
    }

    #[test]
    fn open_permissions_missing_and_malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        assert!(matches!(
            MasterKey::load_file(&path),
            Err(MasterKeyError::Missing(_))
        ));
        MasterKey::create_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_file(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            MasterKey::load_file(&path),
            Err(MasterKeyError::Malformed(_))
        ));
    }

    #[test]
    fn fingerprints_identify_keys_without_revealing_them() {
        let a = MasterKey::from_bytes([1; 32]);
        let b = MasterKey::from_bytes([2; 32]);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), MasterKey::from_bytes([1; 32]).id());
        assert!(!a.id().contains(&hex::encode([1u8; 32])));
        assert!(
            !format!("{a:?}").contains("AQEB"),
            "Debug never shows key bytes"
        );
    }

    #[test]
    fn base64_round_trip() {
        let a = MasterKey::generate();
        let b = MasterKey::from_base64("env", &a.to_base64()).unwrap();
        assert_eq!(a.id(), b.id());
        assert!(MasterKey::from_base64("env", "!!").is_err());
    }
}

//! 64-bit FNV-1a: the feature hash of the learned scorers (urgency, channel policy). Their
//! Python trainers hash the same way, so this must never change without retraining both.

const OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const PRIME: u64 = 0x0100_0000_01B3;

/// A running FNV-1a hash; `Copy`, so a hashed prefix ("w:") can be reused for many words.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    pub const fn new() -> Self {
        Self(OFFSET)
    }

    /// The hash continued with `bytes`.
    #[must_use]
    pub fn write(self, bytes: &[u8]) -> Self {
        let mut hash = self.0;
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
        Self(hash)
    }

    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

/// 64-bit FNV-1a of some bytes.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    Fnv1a64::new().write(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_vectors() {
        // FNV-1a 64 test vectors (Fowler/Noll/Vo).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // Continuing a hash is hashing the concatenation.
        let prefix = Fnv1a64::new().write(b"foo");
        assert_eq!(prefix.write(b"bar").finish(), fnv1a64(b"foobar"));
    }
}

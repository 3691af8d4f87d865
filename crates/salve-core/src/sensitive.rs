//! A wrapper for personal data that must never reach a log line by accident.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Holds PHI or a secret. `Debug` and `Display` print a fixed marker, and the value is wiped
/// from memory on drop. Serialization is transparent: rendering to an API response is explicit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T: Zeroize>(T);

pub const REDACTED: &str = "[redacted]";

impl<T: Zeroize> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// Access the value. Call sites are easy to find when reviewing for leaks.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Sensitive<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Sensitive::new(String::from("Jane Roe"));
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(s.expose(), "Jane Roe");
    }

    #[test]
    fn serializes_transparently() {
        let s = Sensitive::new(String::from("x"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"x\"");
    }
}

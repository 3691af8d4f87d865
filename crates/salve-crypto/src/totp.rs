//! Time-based one-time passwords (RFC 6238) for staff MFA, with the enrollment QR code.
//!
//! The HMAC and dynamic truncation come from `totp-rs`; this module adds what that crate
//! leaves to its caller: the replay rule (a code is accepted once: the caller stores the step
//! returned by [`verify`] and passes it back next time), a window evaluated in full whatever
//! matches, and a QR code rendered locally so the secret never leaves the server.

use std::fmt;
use std::num::NonZeroU64;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use crate::{ct_eq, random_bytes};

/// The parameters every authenticator app understands; other values are for tests and
/// interoperability only, because many apps silently ignore `algorithm` and `digits`.
pub const DEFAULT_ALGORITHM: TotpAlgorithm = TotpAlgorithm::Sha1;
pub const DEFAULT_DIGITS: Digits = Digits::Six;
pub const DEFAULT_PERIOD: NonZeroU64 = NonZeroU64::new(30).unwrap();
/// Steps of clock drift accepted either side of the current one (RFC 6238 section 5.2).
pub const DRIFT_STEPS: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl TotpAlgorithm {
    /// The name used in `otpauth://` URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    fn to_crate(self) -> totp_rs::Algorithm {
        match self {
            Self::Sha1 => totp_rs::Algorithm::SHA1,
            Self::Sha256 => totp_rs::Algorithm::SHA256,
            Self::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

/// Code length. RFC 4226 allows 6 to 8; anything else cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digits {
    Six = 6,
    Seven = 7,
    Eight = 8,
}

impl Digits {
    pub fn count(self) -> usize {
        self as usize
    }
}

/// A shared TOTP key. Wiped on drop, never printed; sealed with a field key for storage.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a TOTP secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")]
pub struct SecretLengthError;

/// RFC 4226 section 4: at least 128 bits. 64 bytes is the SHA-512 block size, and the
/// length of the RFC 6238 SHA-512 test seed.
pub const MIN_SECRET_BYTES: usize = 16;
pub const MAX_SECRET_BYTES: usize = 64;

impl TotpSecret {
    /// 160 random bits: the length RFC 4226 recommends, and what HMAC-SHA1 apps expect.
    pub fn generate() -> Self {
        let bytes = Zeroizing::new(random_bytes::<20>());
        Self(Zeroizing::new(bytes.to_vec()))
    }

    /// Rebuilds a secret after unsealing it. The caller's buffer is theirs to wipe.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretLengthError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SecretLengthError);
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// The raw key, for sealing. Call sites are easy to find when reviewing for leaks.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as the `secret=` parameter of an `otpauth://` URI
    /// and for users who type the key in instead of scanning.
    pub fn to_base32(&self) -> Zeroizing<String> {
        // `Secret` (feature `zeroize`) wipes its copy on drop.
        Zeroizing::new(totp_rs::Secret::from(self.as_bytes()).to_base32())
    }

    fn with_totp<R>(
        &self,
        algorithm: TotpAlgorithm,
        digits: Digits,
        period: NonZeroU64,
        f: impl FnOnce(&totp_rs::Totp) -> R,
    ) -> R {
        // Every parameter was validated by its type, so the crate's own checks would only
        // repeat them; its secret copy is zeroized on drop (feature `zeroize`).
        let totp = totp_rs::Builder::new()
            .with_algorithm(algorithm.to_crate())
            .with_digits(digits as u8)
            .with_step_duration(period.get())
            .with_secret(self.as_bytes())
            .build_noncompliant();
        f(&totp)
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

/// The code for the step containing `unix_seconds`. Used by tests and by the enrollment
/// check; sign-in goes through [`verify`].
pub fn code_at(
    secret: &TotpSecret,
    algorithm: TotpAlgorithm,
    digits: Digits,
    unix_seconds: u64,
    period: NonZeroU64,
) -> String {
    secret.with_totp(algorithm, digits, period, |t| {
        t.generate(unix_seconds).to_string()
    })
}

/// Checks a 6-digit SHA-1 code with a 30-second period against the current step and one step
/// either side, and returns the matched step. Steps at or before `last_used_step` are refused,
/// so a code works once: store the returned step and pass it back on the next attempt.
///
/// Spaces are ignored (apps show `123 456`); any other non-digit, or a wrong length, refuses.
/// Every candidate step is computed and compared in constant time, whether or not an earlier
/// one matched. When two steps share a code (one chance in a million), the later step is
/// returned, so that replaying the code within the window is still refused.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    unix_seconds: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    let submitted: Zeroizing<String> = Zeroizing::new(code.chars().filter(|c| *c != ' ').collect());
    if submitted.len() != DEFAULT_DIGITS.count() || !submitted.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let period = DEFAULT_PERIOD.get();
    let current = unix_seconds / period;
    let first = current.saturating_sub(DRIFT_STEPS);
    let last = current.saturating_add(DRIFT_STEPS);
    secret.with_totp(DEFAULT_ALGORITHM, DEFAULT_DIGITS, DEFAULT_PERIOD, |t| {
        let mut matched = None;
        for step in first..=last {
            let Some(at) = step.checked_mul(period) else {
                continue;
            };
            let expected = Zeroizing::new(t.generate(at).to_string());
            let fresh = last_used_step.is_none_or(|used| step > used);
            if ct_eq(expected.as_bytes(), submitted.as_bytes()) && fresh {
                matched = Some(step);
            }
        }
        matched
    })
}

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded, so
/// spaces become `%20` (not `+`) and a colon cannot split the label.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The enrollment URI in the de facto Key URI format, with the default parameters spelled
/// out. It contains the secret: render it into the QR code and the enrollment page only.
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> Zeroizing<String> {
    let issuer = utf8_percent_encode(issuer, URI_COMPONENT);
    let account = utf8_percent_encode(account, URI_COMPONENT);
    Zeroizing::new(format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
         &algorithm={algorithm}&digits={digits}&period={period}",
        secret = secret.to_base32().as_str(),
        algorithm = DEFAULT_ALGORITHM.as_str(),
        digits = DEFAULT_DIGITS.count(),
        period = DEFAULT_PERIOD,
    ))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the text is too long for a QR code")]
pub struct QrTooLong;

/// Renders `text` as a QR code in SVG, without the XML declaration so the markup can sit
/// inline in an HTML page (no image request, no `data:` URI for the CSP to allow). Colours
/// are presentation attributes, not inline styles. Deterministic for the same text.
pub fn qr_svg(text: &str) -> Result<String, QrTooLong> {
    use qrcode::render::svg;
    // Medium error correction keeps otpauth URIs (about 120 bytes) at a small version.
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| QrTooLong)?;
    let rendered = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    let start = rendered.find("<svg").unwrap_or(0);
    Ok(rendered[start..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(seed: &[u8]) -> TotpSecret {
        TotpSecret::from_bytes(seed).unwrap()
    }

    /// RFC 6238 Appendix B, every row, with the seed the reference implementation uses for
    /// each hash (the table in the RFC text lists only the SHA-1 seed).
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let sha1 = secret(b"12345678901234567890");
        let sha256 = secret(b"12345678901234567890123456789012");
        let sha512 = secret(b"1234567890123456789012345678901234567890123456789012345678901234");
        let rows: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, want1, want256, want512) in rows {
            let at = |s: &TotpSecret, a| code_at(s, a, Digits::Eight, time, DEFAULT_PERIOD);
            assert_eq!(at(&sha1, TotpAlgorithm::Sha1), want1, "SHA1 at {time}");
            assert_eq!(
                at(&sha256, TotpAlgorithm::Sha256),
                want256,
                "SHA256 at {time}"
            );
            assert_eq!(
                at(&sha512, TotpAlgorithm::Sha512),
                want512,
                "SHA512 at {time}"
            );
        }
    }

    fn current_code(s: &TotpSecret, t: u64) -> String {
        code_at(s, DEFAULT_ALGORITHM, DEFAULT_DIGITS, t, DEFAULT_PERIOD)
    }

    #[test]
    fn a_code_is_accepted_once() {
        let s = TotpSecret::generate();
        let t = 1_700_000_015;
        let code = current_code(&s, t);
        let step = verify(&s, &code, t, None).expect("fresh code accepted");
        assert_eq!(step, t / 30);
        assert_eq!(verify(&s, &code, t, Some(step)), None, "replay refused");
        assert_eq!(
            verify(&s, &code, t + 10, Some(step)),
            None,
            "replay later in the step"
        );
        // The next step's code is still fine after this one was used.
        let next = current_code(&s, t + 30);
        assert_eq!(verify(&s, &next, t + 30, Some(step)), Some(step + 1));
        // An older code cannot be used after a newer one, even within the drift window.
        assert_eq!(verify(&s, &code, t + 30, Some(step + 1)), None);
    }

    #[test]
    fn one_step_of_drift_is_accepted_two_are_not() {
        let s = TotpSecret::generate();
        let t: u64 = 1_700_000_000;
        let step = t / 30;
        for (offset, accepted) in [
            (-60i64, false),
            (-30, true),
            (0, true),
            (30, true),
            (60, false),
        ] {
            let code = current_code(&s, t.checked_add_signed(offset).unwrap());
            let got = verify(&s, &code, t, None);
            if accepted {
                assert_eq!(got, Some(step.checked_add_signed(offset / 30).unwrap()));
            } else {
                assert_eq!(got, None, "offset {offset}s must be refused");
            }
        }
    }

    #[test]
    fn malformed_codes_are_refused() {
        let s = TotpSecret::generate();
        let t = 1_700_000_000;
        let code = current_code(&s, t);
        assert_eq!(
            verify(&s, &format!("{} {}", &code[..3], &code[3..]), t, None),
            Some(t / 30)
        );
        for bad in [
            "",
            &code[..5],
            &format!("{code}0"),
            &format!("+{}", &code[1..]),
            &format!("{}a", &code[..5]),
            "١٢٣٤٥٦",
            "12345６",
            &format!("{code}\n"),
        ] {
            assert_eq!(verify(&s, bad, t, None), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn time_zero_and_the_end_of_time_do_not_overflow() {
        let s = TotpSecret::generate();
        let code = current_code(&s, 0);
        assert_eq!(verify(&s, &code, 0, None), Some(0));
        let late = u64::MAX - 5;
        let code = current_code(&s, late);
        assert_eq!(verify(&s, &code, late, None), Some(late / 30));
        let _ = verify(&s, "000000", u64::MAX, Some(u64::MAX));
    }

    #[test]
    fn secrets_are_random_sized_and_redacted() {
        let a = TotpSecret::generate();
        let b = TotpSecret::generate();
        assert_eq!(a.as_bytes().len(), 20);
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(format!("{a:?}"), "TotpSecret([redacted])");
        assert_eq!(
            TotpSecret::from_bytes(&[0; 15]).unwrap_err(),
            SecretLengthError
        );
        assert!(TotpSecret::from_bytes(&[0; 65]).is_err());
        let again = TotpSecret::from_bytes(a.as_bytes()).unwrap();
        assert_eq!(again.to_base32().as_str(), a.to_base32().as_str());
    }

    #[test]
    fn base32_is_rfc4648_without_padding() {
        let s = secret(b"12345678901234567890");
        assert_eq!(s.to_base32().as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        // 16 bytes is not a multiple of 5: RFC 4648 would pad with "======".
        let s = secret(b"1234567890123456");
        assert_eq!(s.to_base32().as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY");
    }

    #[test]
    fn otpauth_uri_escapes_issuer_and_account() {
        let s = secret(b"12345678901234567890");
        let uri = otpauth_uri(&s, "Salve: Riverside Clinic", "jane doe@example.org");
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/Salve%3A%20Riverside%20Clinic:jane%20doe%40example.org\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Salve%3A%20Riverside%20Clinic\
             &algorithm=SHA1&digits=6&period=30"
        );
        // Exactly one unescaped colon after the scheme: the issuer/account separator.
        let label = uri.split('?').next().unwrap();
        assert_eq!(label.matches(':').count(), 2);
        assert!(!uri.contains(' '));
        assert!(!uri.contains('+'));
    }

    #[test]
    fn qr_svg_is_inline_svg_and_deterministic() {
        let uri = otpauth_uri(&TotpSecret::generate(), "Salve", "jane@example.org");
        let a = qr_svg(&uri).unwrap();
        let b = qr_svg(&uri).unwrap();
        assert!(a.starts_with("<svg"), "{}", &a[..40]);
        assert!(a.ends_with("</svg>"));
        assert!(!a.contains("style"), "no inline style for the CSP");
        assert_eq!(a, b);
        assert_ne!(a, qr_svg("something else").unwrap());
        assert_eq!(qr_svg(&"x".repeat(8000)), Err(QrTooLong));
    }
}

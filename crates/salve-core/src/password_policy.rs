//! Rules for choosing a new password, after NIST SP 800-63B-4: length, a blocklist of common
//! passwords, and context words. No composition rules (no "one digit, one symbol"): they make
//! passwords harder to remember without making them harder to guess.
//!
//! Passwords are compared and counted after NFKC normalisation, which NIST recommends so that
//! the same password typed on another keyboard or operating system is the same string. Hash
//! the output of [`normalize`], not the raw input, or a password accepted here may not verify.

use std::collections::HashSet;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;

use crate::sensitive::Sensitive;

pub const MIN_CHARS: usize = 12;
/// NIST asks for at least 64; argon2 does not care, and a limit keeps hashing cheap.
pub const MAX_CHARS: usize = 128;
/// Input beyond this many bytes is refused before normalisation does any work on it: four
/// UTF-8 bytes per character, four times over for input typed in decomposed form.
const MAX_INPUT_BYTES: usize = 4 * MAX_CHARS * 4;
/// Context words shorter than this are too likely to appear by chance to refuse.
const MIN_CONTEXT_CHARS: usize = 4;
/// The service's own name, which NIST lists as a context word.
pub const SERVICE_NAME: &str = "salve";

/// See `data/README.md` for where the list comes from. Lowercase, one per line.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|line| !line.is_empty())
        .collect()
});

/// What the password must not contain. Holds personal data, so it has no `Debug`.
#[derive(Clone, Copy)]
pub struct PasswordContext<'a> {
    /// The account's email address; its local part (before `@`, without a `+tag`) and the
    /// words in it are refused.
    pub email: &'a str,
    pub practice_name: &'a str,
}

/// Why a password was refused. The messages are for the person choosing it, and never
/// include the password or the context words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("Use at least {MIN_CHARS} characters. A few unrelated words make a good password.")]
    TooShort,
    #[error("Use at most {MAX_CHARS} characters.")]
    TooLong,
    #[error(
        "This password is too common: it is one attackers try first, or one with numbers or \
         symbols added."
    )]
    Common,
    #[error("This password repeats or counts through characters, which attackers try first.")]
    Predictable,
    #[error("The password must not contain your email address or a part of it.")]
    ContainsEmail,
    #[error("The password must not contain the practice's name.")]
    ContainsPracticeName,
    #[error("The password must not contain the name of this service.")]
    ContainsServiceName,
}

/// The form to count, check and hash: NFKC, nothing else (no trimming, no case folding).
pub fn normalize(password: &str) -> Sensitive<String> {
    Sensitive::new(password.nfkc().collect())
}

/// Checks a new password. The first problem found is returned: length, then context words,
/// then the blocklist and patterns. Comparisons ignore case.
pub fn check(password: &str, context: &PasswordContext<'_>) -> Result<(), PasswordProblem> {
    if password.len() > MAX_INPUT_BYTES {
        return Err(PasswordProblem::TooLong);
    }
    let normalized = normalize(password);
    let count = normalized.expose().chars().count();
    if count < MIN_CHARS {
        return Err(PasswordProblem::TooShort);
    }
    if count > MAX_CHARS {
        return Err(PasswordProblem::TooLong);
    }
    let lower = Sensitive::new(normalized.expose().to_lowercase());
    let compact = Sensitive::new(letters_and_digits(lower.expose()));
    let contains =
        |word: &str| word.chars().count() >= MIN_CONTEXT_CHARS && compact.expose().contains(word);
    if email_words(context.email).iter().any(|w| contains(w)) {
        return Err(PasswordProblem::ContainsEmail);
    }
    if contains(&letters_and_digits(&context_form(context.practice_name))) {
        return Err(PasswordProblem::ContainsPracticeName);
    }
    if contains(SERVICE_NAME) {
        return Err(PasswordProblem::ContainsServiceName);
    }
    if is_common(lower.expose()) {
        return Err(PasswordProblem::Common);
    }
    if is_predictable(lower.expose()) {
        return Err(PasswordProblem::Predictable);
    }
    Ok(())
}

fn context_form(text: &str) -> String {
    text.nfkc().collect::<String>().to_lowercase()
}

fn letters_and_digits(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// `jane.doe+mfa@example.org` gives `janedoe`, `jane` and `doe` (the last is then too short
/// to count). The domain is left alone: it is the practice's, shared by everyone there.
fn email_words(email: &str) -> Vec<String> {
    let local = email.split('@').next().unwrap_or_default();
    let local = context_form(local.split('+').next().unwrap_or_default());
    let mut words = vec![letters_and_digits(&local)];
    words.extend(
        local
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_owned),
    );
    words
}

/// On the list as typed or without spaces, or a listed password (4 characters or more) with
/// only digits, symbols or spaces added before or after it: `password1234`, `!!monkey2024`.
fn is_common(lower: &str) -> bool {
    let unspaced: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    [lower, unspaced.as_str()].into_iter().any(|candidate| {
        let core = candidate.trim_matches(|c: char| !c.is_alphabetic());
        COMMON.contains(candidate)
            || (core.chars().count() >= MIN_CONTEXT_CHARS && COMMON.contains(core))
    })
}

/// A short unit repeated (`abcabcabcabc`, `passwordpassword`: the unit alone would be too
/// short), or a run of consecutive letters or digits (`abcdefghijkl`, `9876543210987`). The
/// upstream list leaves these out because zxcvbn detects them by other means; so must we.
fn is_predictable(lower: &str) -> bool {
    let chars: Vec<char> = lower.chars().collect();
    let n = chars.len();
    let periodic = (1..=n / 2)
        .filter(|&p| p < MIN_CHARS)
        .any(|p| (p..n).all(|i| chars[i] == chars[i - p]));
    let steps: Vec<Option<i8>> = chars.windows(2).map(|w| step(w[0], w[1])).collect();
    let sequential = !steps.is_empty()
        && (steps.iter().all(|s| *s == Some(1)) || steps.iter().all(|s| *s == Some(-1)));
    periodic || sequential
}

/// +1 or -1 between neighbouring digits (9 and 0 are neighbours) or lowercase ASCII letters.
fn step(a: char, b: char) -> Option<i8> {
    let (a, b) = (u32::from(a), u32::from(b));
    let digit = |c: u32| (u32::from('0')..=u32::from('9')).contains(&c);
    let letter = |c: u32| (u32::from('a')..=u32::from('z')).contains(&c);
    if digit(a) && digit(b) {
        match (b + 10 - a) % 10 {
            1 => Some(1),
            9 => Some(-1),
            _ => None,
        }
    } else if letter(a) && letter(b) {
        match i64::from(b) - i64::from(a) {
            1 => Some(1),
            -1 => Some(-1),
            _ => None,
        }
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: PasswordContext<'static> = PasswordContext {
        email: "jane.doe+mfa@riverside.example",
        practice_name: "Riverside Family Medicine",
    };

    fn problem(password: &str) -> Option<PasswordProblem> {
        check(password, &CONTEXT).err()
    }

    #[test]
    fn the_shipped_list_is_loaded_and_lowercase() {
        assert_eq!(COMMON.len(), 30_000);
        assert!(COMMON.contains("password1234"));
        assert!(
            COMMON
                .iter()
                .all(|p| *p == p.to_lowercase() && !p.trim().is_empty())
        );
    }

    #[test]
    fn length_is_counted_in_characters_after_normalisation() {
        assert_eq!(problem(""), Some(PasswordProblem::TooShort));
        assert_eq!(problem("elevenchars"), Some(PasswordProblem::TooShort));
        // Eleven "é" typed as e + combining accent: 22 code points, 11 characters.
        assert_eq!(
            problem(&"e\u{301}".repeat(11)),
            Some(PasswordProblem::TooShort)
        );
        // Twelve two-byte characters are twelve, not 24.
        assert_eq!(problem("ÉcritDéjàVué"), None);
        assert_eq!(problem("двенадцать слов"), None);
        let long: String = "gravel mango kettle ".repeat(7);
        assert_eq!(problem(&long[..MAX_CHARS]), None);
        assert_eq!(
            problem(&format!("{}x", &long[..MAX_CHARS])),
            Some(PasswordProblem::TooLong)
        );
        assert_eq!(
            problem(&"x".repeat(100_000)),
            Some(PasswordProblem::TooLong)
        );
    }

    #[test]
    fn common_passwords_are_refused_whatever_the_case() {
        for password in [
            "password1234",
            "PASSWORD1234",
            "qwerty123456",
            "1qaz2wsx3edc",
            "iloveyou1234",
            "Football2024!",
            "!!monkey123456",
            "p@ssw0rd2024",
            "i love you 1234",
            // Fullwidth forms become ASCII under NFKC.
            "ｐａｓｓｗｏｒｄ１２３４",
        ] {
            assert_eq!(
                problem(password),
                Some(PasswordProblem::Common),
                "{password}"
            );
        }
    }

    #[test]
    fn repeated_and_sequential_patterns_are_refused() {
        for password in [
            "aaaaaaaaaaaa",
            "abcabcabcabc",
            "passwordpassword",
            "121212121212",
            "abcdefghijklm",
            "123456789012",
            "9876543210987",
        ] {
            assert_eq!(
                problem(password),
                Some(PasswordProblem::Predictable),
                "{password}"
            );
        }
        // A repeated unit that is long enough on its own is not refused for repeating.
        assert_eq!(problem("gravel mango gravel mango "), None);
    }

    #[test]
    fn context_words_are_refused() {
        assert_eq!(
            problem("janedoe-secret-garden"),
            Some(PasswordProblem::ContainsEmail)
        );
        assert_eq!(
            problem("Jane.Doe rocks forever"),
            Some(PasswordProblem::ContainsEmail)
        );
        assert_eq!(
            problem("my name is JANE really"),
            Some(PasswordProblem::ContainsEmail)
        );
        assert_eq!(
            problem("riverside-family-medicine!"),
            Some(PasswordProblem::ContainsPracticeName)
        );
        assert_eq!(
            problem("Riverside Family Medicine 2024"),
            Some(PasswordProblem::ContainsPracticeName)
        );
        assert_eq!(
            problem("I sign in to SALVE daily"),
            Some(PasswordProblem::ContainsServiceName)
        );
        // Words of the domain, the +tag and short context words are not refused.
        assert_eq!(problem("example of a mfa passphrase"), None);
        let short = PasswordContext {
            email: "jo@x.example",
            practice_name: "ABC",
        };
        assert_eq!(check("jo and abc went walking", &short), Ok(()));
    }

    #[test]
    fn good_passphrases_are_accepted() {
        for password in [
            "correct horse battery staple",
            "gravel-mango-sunrise-kettle",
            "Tk9#vQ2$mL7!pW4",
            "ein Apfelbaum im Schnee",
            "雨の日はコーヒーを飲みます",
        ] {
            assert_eq!(check(password, &CONTEXT), Ok(()), "{password}");
        }
    }

    #[test]
    fn messages_never_contain_the_password_or_context() {
        for password in [
            "short",
            "password1234",
            "aaaaaaaaaaaa",
            "janedoe-secret-garden",
            "riverside family medicine",
            "salve salve salve",
        ] {
            let message = problem(password)
                .expect("refused")
                .to_string()
                .to_lowercase();
            assert!(!message.contains(&password.to_lowercase()), "{message}");
            for word in ["jane", "riverside", "salve"] {
                assert!(!message.contains(word), "{message}");
            }
        }
    }

    #[test]
    fn normalize_is_nfkc_only() {
        assert_eq!(normalize("e\u{301}").expose(), "é");
        assert_eq!(normalize("ﬁ").expose(), "fi");
        assert_eq!(normalize(" Keep Case ").expose(), " Keep Case ");
    }
}

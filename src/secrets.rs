//! Generated passwords.
//!
//! A lab's secrets are generated once, kept in the ledger's 0600 secrets file
//! and reused on every later run, so a re-run converges instead of rotating
//! credentials.

use rand::Rng;
use rand::seq::SliceRandom;

const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const DIGIT: &[u8] = b"23456789";
/// Symbols that need no quoting in SQL string literals, shell words inside
/// single quotes, JSON, or MySQL option files: no quotes, backslash, `$`,
/// backtick, `#`, `;` or whitespace.
const SYMBOL: &[u8] = b"-_.:+=^*~@%,";

/// Length of generated passwords.
pub const PASSWORD_LEN: usize = 24;

/// A strong random password: [`PASSWORD_LEN`] characters with at least one
/// upper-case letter, lower-case letter, digit and symbol, which satisfies
/// MySQL's `validate_password` STRONG policy.
pub fn generate_password() -> String {
    let mut rng = rand::rng();
    let classes = [UPPER, LOWER, DIGIT, SYMBOL];
    let all: Vec<u8> = classes.concat();
    let mut chars: Vec<u8> = classes
        .iter()
        .map(|c| c[rng.random_range(0..c.len())])
        .collect();
    while chars.len() < PASSWORD_LEN {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    // Start with a letter: some tools treat a leading symbol specially.
    if !chars[0].is_ascii_alphabetic() {
        let pos = chars
            .iter()
            .position(|c| c.is_ascii_alphabetic())
            .expect("has letters");
        chars.swap(0, pos);
    }
    String::from_utf8(chars).expect("ascii")
}

/// Secret names become file keys and appear in messages: keep them simple.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_every_class_and_differ() {
        for _ in 0..200 {
            let p = generate_password();
            assert_eq!(p.len(), PASSWORD_LEN);
            assert!(p.bytes().any(|b| UPPER.contains(&b)));
            assert!(p.bytes().any(|b| LOWER.contains(&b)));
            assert!(p.bytes().any(|b| DIGIT.contains(&b)));
            assert!(p.bytes().any(|b| SYMBOL.contains(&b)));
            assert!(p.as_bytes()[0].is_ascii_alphabetic());
        }
        assert_ne!(generate_password(), generate_password());
    }
}

//! Redaction by value, applied once at every output edge.
//!
//! Secrets are ordinary strings inside a playbook (they must be usable in SQL,
//! commands and configuration), so they cannot be protected by type alone.
//! Instead every secret value the lab knows is registered here, and every byte
//! labrun prints or writes (terminal, JSON, logs, error messages, ledger) passes
//! through [`Redactor::redact`] first.
//!
//! A secret can also show up cut: a server quotes only the first characters
//! of a statement in its error, output is capped or split where labrun keeps
//! a head and a tail. So a long enough *start* or *end* of a secret is
//! masked too where text was cut: a start that runs into the end of a line,
//! a quote or a marker, an end that begins after one. (A piece inside
//! running text is no cut: a password ending in a word must not mask that
//! word everywhere.)

use std::sync::{Arc, RwLock};

/// What a secret value is replaced with.
pub const MASK: &str = "********";

/// Secrets shorter than this are not masked at all: masking "a" everywhere
/// would destroy output without protecting anything.
const MIN_SECRET: usize = 6;

/// The shortest cut-off start or end of a secret that is masked.
const MIN_PART: usize = 8;

/// Shared, cheaply cloneable set of secret values to mask.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a value to mask from now on.
    pub fn add(&self, value: &str) {
        if value.chars().count() < MIN_SECRET {
            return;
        }
        let mut values = self.values.write().expect("redactor lock");
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
            // Longest first, so a secret containing another is masked whole.
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Returns `text` with every registered secret replaced by [`MASK`],
    /// and every cut-off start or end of one (at least [`MIN_PART`]
    /// characters and half the secret).
    pub fn redact(&self, text: &str) -> String {
        let values = self.values.read().expect("redactor lock");
        let mut out = text.to_string();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        for v in values.iter() {
            out = mask_parts(&out, v);
        }
        out
    }
}

/// Masks the longest starts (prefixes) and ends (suffixes) of `secret`
/// found in `text` that are long enough to be no accident.
fn mask_parts(text: &str, secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let min = MIN_PART.max(chars.len().div_ceil(2));
    if chars.len() <= min {
        return text.to_string();
    }
    let head: String = chars[..min].iter().collect();
    let tail: String = chars[chars.len() - min..].iter().collect();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    // A start of the secret: the first `min` characters, then as many
    // more as follow in the text, up to a cut.
    for (at, _) in text.match_indices(&head) {
        let mut end = at + head.len();
        let rest = &text[end..];
        for (c, s) in rest.chars().zip(chars[min..].iter()) {
            if c != *s {
                break;
            }
            end += c.len_utf8();
        }
        if is_cut(text[end..].chars().next()) {
            spans.push((at, end));
        }
    }
    // An end of the secret: the last `min` characters, extended leftwards
    // to a cut.
    for (at, _) in text.match_indices(&tail) {
        let mut start = at;
        let before = &text[..at];
        for (c, s) in before
            .chars()
            .rev()
            .zip(chars[..chars.len() - min].iter().rev())
        {
            if c != *s {
                break;
            }
            start -= c.len_utf8();
        }
        if is_cut(text[..start].chars().next_back()) {
            spans.push((start, at + tail.len()));
        }
    }
    if spans.is_empty() {
        return text.to_string();
    }
    spans.sort();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in spans {
        if end <= pos {
            continue;
        }
        out.push_str(&text[pos..start.max(pos)]);
        out.push_str(MASK);
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Whether text was cut next to a piece of a secret: the piece meets the
/// end of the text or a line, a quote, or the bracket of a marker such as
/// labrun's `[... left out ...]`.
fn is_cut(next: Option<char>) -> bool {
    matches!(
        next,
        None | Some('\n' | '\r' | '\'' | '"' | '`' | '[' | ']' | '…')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redactor::new();
        r.add("s3cret-Value");
        r.add("s3cret-Value-longer");
        assert_eq!(
            r.redact("a s3cret-Value-longer b s3cret-Value"),
            format!("a {MASK} b {MASK}")
        );
    }

    #[test]
    fn ignores_tiny_values() {
        let r = Redactor::new();
        r.add("ab");
        assert_eq!(r.redact("abc"), "abc");
    }

    #[test]
    fn masks_what_a_cut_leaves_of_a_secret() {
        let r = Redactor::new();
        let pw = "Xq7#mLp2$Vz9!Kd4wRt8&Hn3";
        r.add(pw);
        // A server error quoting the statement up to a limit.
        let cut = format!("near 'IDENTIFIED BY '{}' at line 1", &pw[..14]);
        let shown = r.redact(&cut);
        assert_eq!(shown, format!("near 'IDENTIFIED BY '{MASK}' at line 1"));
        // Output kept as head and tail around a dropped middle.
        let split = format!("{}[... 1 MB not shown ...]{}", &pw[..17], &pw[7..]);
        let shown = r.redact(&split);
        assert!(
            !shown.contains(&pw[..8]) && !shown.contains(&pw[16..]),
            "{shown}"
        );
        // Short pieces are left alone: they could be anything.
        assert_eq!(r.redact(&pw[..6]), &pw[..6]);
    }

    #[test]
    fn a_word_a_password_ends_in_is_no_cut() {
        let r = Redactor::new();
        r.add("not-the-password");
        assert_eq!(
            r.redact("the server refused password authentication"),
            "the server refused password authentication"
        );
        assert_eq!(
            r.redact("[... 3 MiB left out ...]the-password\n"),
            format!("[... 3 MiB left out ...]{MASK}\n")
        );
    }
}

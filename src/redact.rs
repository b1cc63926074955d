//! Redaction by value, applied once at every output edge.
//!
//! Secrets are ordinary strings inside a playbook (they must be usable in SQL,
//! commands and configuration), so they cannot be protected by type alone.
//! Instead every secret value the lab knows is registered here, and every byte
//! labrun prints or writes (terminal, JSON, logs, error messages, ledger) passes
//! through [`Redactor::redact`] first.

use std::sync::{Arc, RwLock};

/// What a secret value is replaced with.
pub const MASK: &str = "********";

/// Shared, cheaply cloneable set of secret values to mask.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a value to mask from now on. Very short values are ignored:
    /// masking "a" everywhere would destroy output without protecting anything.
    pub fn add(&self, value: &str) {
        if value.len() < 6 {
            return;
        }
        let mut values = self.values.write().expect("redactor lock");
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
            // Longest first, so a secret containing another is masked whole.
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Returns `text` with every registered secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let values = self.values.read().expect("redactor lock");
        let mut out = text.to_string();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }
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
}

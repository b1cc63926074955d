//! Per-learner parameters: each learner's values come from the course
//! secret and the learner id, through HMAC-SHA256, so the same learner
//! always gets the same values, two learners almost never do, and whoever
//! holds the secret (the instructor grading a class) computes them again
//! without asking anyone. Without a secret every learner gets the defaults.

use std::collections::BTreeMap;
use std::path::Path;

use ring::hmac;
use serde_json::Value;

use super::manifest::{Manifest, ParamKind, TemplatePart, template_parts};

/// Holds the course secret as bytes; never printed.
pub struct CourseSecret(Vec<u8>);

impl std::fmt::Debug for CourseSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CourseSecret(********)")
    }
}

/// The environment variable holding the course secret itself.
pub const SECRET_ENV: &str = "LABRUN_COURSE_SECRET";

impl CourseSecret {
    pub fn new(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.len() < 8 {
            return Err("the course secret must be at least 8 characters".into());
        }
        Ok(CourseSecret(value.as_bytes().to_vec()))
    }

    /// The secret as text, to register with the redactor.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// `LABRUN_COURSE_SECRET`, else the file `file` (from
    /// `--course-secret-file` or `LABRUN_COURSE_SECRET_FILE`), else none.
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Option<Self>, String> {
        if let Some(v) = std::env::var_os(SECRET_ENV).filter(|v| !v.is_empty()) {
            let v = v
                .into_string()
                .map_err(|_| format!("{SECRET_ENV} is not valid UTF-8"))?;
            return Self::new(&v)
                .map(Some)
                .map_err(|e| format!("{SECRET_ENV}: {e}"));
        }
        let Some(path) = file else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("course secret file {}: {e}", path.display()))?;
        Self::new(&text)
            .map(Some)
            .map_err(|e| format!("course secret file {}: {e}", path.display()))
    }
}

/// Learner ids become part of lab names (`<exercise>-<learner>`, at most
/// 48 characters): keep them to what those allow.
pub fn valid_learner(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 23
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// A deterministic byte stream for one parameter of one learner:
/// HMAC-SHA256(secret, domain, exercise, learner, parameter, block number).
struct Seed {
    key: hmac::Key,
    message: Vec<u8>,
    block: u32,
    buf: Vec<u8>,
}

impl Seed {
    fn new(secret: &CourseSecret, exercise: &str, learner: &str, param: &str) -> Self {
        let mut message = b"labrun-exercise-param/1".to_vec();
        for part in [exercise, learner, param] {
            message.push(0);
            message.extend_from_slice(part.as_bytes());
        }
        Seed {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret.0),
            message,
            block: 0,
            buf: Vec::new(),
        }
    }

    fn byte(&mut self) -> u8 {
        if self.buf.is_empty() {
            let mut m = self.message.clone();
            m.extend_from_slice(&self.block.to_be_bytes());
            self.block += 1;
            self.buf = hmac::sign(&self.key, &m).as_ref().to_vec();
            self.buf.reverse();
        }
        self.buf.pop().expect("refilled")
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| (acc << 8) | self.byte() as u64)
    }

    /// A uniform index below `n` (rejection sampling, so no value is favoured).
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

/// The learner's values, by parameter name: derived when there is both a
/// secret and a learner id, else the defaults.
pub fn learner_values(
    manifest: &Manifest,
    learner: Option<&str>,
    secret: Option<&CourseSecret>,
) -> BTreeMap<String, Value> {
    let (Some(learner), Some(secret)) = (learner, secret) else {
        return manifest.defaults();
    };
    manifest
        .params
        .iter()
        .map(|p| {
            let mut seed = Seed::new(secret, &manifest.id, learner, &p.name);
            let value = match &p.kind {
                ParamKind::Fixed => p.default.clone(),
                ParamKind::Choices(c) => c[seed.below(c.len() as u64) as usize].clone(),
                ParamKind::Range(lo, hi) => {
                    let span = (*hi as i128 - *lo as i128 + 1) as u64;
                    Value::from((*lo as i128 + seed.below(span) as i128) as i64)
                }
                ParamKind::Template(t) => {
                    let mut out = String::new();
                    for part in template_parts(t).expect("checked when parsed") {
                        match part {
                            TemplatePart::Text(s) => out.push_str(&s),
                            TemplatePart::Random(charset, n) => {
                                let chars = charset.chars();
                                for _ in 0..n {
                                    out.push(
                                        chars[seed.below(chars.len() as u64) as usize] as char,
                                    );
                                }
                            }
                        }
                    }
                    Value::String(out)
                }
            };
            (p.name.clone(), value)
        })
        .collect()
}

/// Applies `--set KEY=VALUE` to `values` with the same rules and words as a
/// playbook's `params()`: unknown keys and wrong types are refused.
pub fn apply_sets(
    values: &BTreeMap<String, Value>,
    sets: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Value>, String> {
    let defaults: rhai::Map = values
        .iter()
        .map(|(k, v)| (k.as_str().into(), crate::params::json_to_dynamic(v.clone())))
        .collect();
    let merged = crate::params::merge(&defaults, sets)
        .map_err(|e| e.replace("this playbook declares", "this exercise declares"))?;
    Ok(merged
        .into_iter()
        .map(|(k, v)| {
            let json = serde_json::to_value(&v).unwrap_or(Value::Null);
            (k.to_string(), json)
        })
        .collect())
}

/// A value as text, for README placeholders.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            "exercise.toml",
            r#"
id = "ex"
title = "T"
version = "1"
[params.db]
default = "testing"
template = "shop_{letters:6}"
[params.user]
default = "u0"
choices = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"]
[params.port]
default = 1
range = [1000, 1999]
[params.image]
default = "debian-12"
"#,
        )
        .unwrap()
    }

    #[test]
    fn without_a_secret_or_learner_everyone_gets_the_defaults() {
        let m = manifest();
        let s = CourseSecret::new("course-secret-1").unwrap();
        assert_eq!(learner_values(&m, Some("alice"), None), m.defaults());
        assert_eq!(learner_values(&m, None, Some(&s)), m.defaults());
    }

    #[test]
    fn values_are_stable_per_learner_and_differ_between_learners() {
        let m = manifest();
        let s = CourseSecret::new("course-secret-1").unwrap();
        let a = learner_values(&m, Some("alice"), Some(&s));
        assert_eq!(a, learner_values(&m, Some("alice"), Some(&s)));
        let b = learner_values(&m, Some("bob"), Some(&s));
        assert_ne!(a["db"], b["db"]);
        let db = a["db"].as_str().unwrap();
        assert!(db.starts_with("shop_") && db.len() == 11, "{db}");
        assert!(db[5..].chars().all(|c| c.is_ascii_lowercase()), "{db}");
        let port = a["port"].as_i64().unwrap();
        assert!((1000..=1999).contains(&port));
        assert_eq!(a["image"], Value::from("debian-12"));
        // Another secret, other values.
        let other = CourseSecret::new("course-secret-2").unwrap();
        assert_ne!(
            a["db"],
            learner_values(&m, Some("alice"), Some(&other))["db"]
        );
        // Over many learners the choices are all used.
        let users: std::collections::BTreeSet<String> = (0..200)
            .map(|i| learner_values(&m, Some(&format!("l{i}")), Some(&s))["user"].to_string())
            .collect();
        assert_eq!(users.len(), 8);
    }

    #[test]
    fn known_answer_pins_the_derivation() {
        // Changing the derivation would give every learner of a running
        // course new values: this pins it.
        let m = manifest();
        let s = CourseSecret::new("course-secret-1").unwrap();
        let a = learner_values(&m, Some("alice"), Some(&s));
        let mut key = b"labrun-exercise-param/1".to_vec();
        for part in ["ex", "alice", "port"] {
            key.push(0);
            key.extend_from_slice(part.as_bytes());
        }
        key.extend_from_slice(&0u32.to_be_bytes());
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"course-secret-1"), &key);
        let first = u64::from_be_bytes(tag.as_ref()[..8].try_into().unwrap());
        assert!(first < u64::MAX - (u64::MAX % 1000), "no rejection here");
        assert_eq!(a["port"].as_i64().unwrap(), 1000 + (first % 1000) as i64);
    }

    #[test]
    fn sets_are_checked_like_playbook_params() {
        let m = manifest();
        let v = m.defaults();
        let ok = apply_sets(&v, &BTreeMap::from([("port".into(), "1234".into())])).unwrap();
        assert_eq!(ok["port"], Value::from(1234));
        let e = apply_sets(&v, &BTreeMap::from([("nope".into(), "1".into())])).unwrap_err();
        assert!(e.contains("unknown parameter 'nope'") && e.contains("this exercise declares"));
        let e = apply_sets(&v, &BTreeMap::from([("port".into(), "abc".into())])).unwrap_err();
        assert!(e.contains("expected an integer"), "{e}");
    }

    #[test]
    fn secrets_are_checked_and_never_debug_printed() {
        assert!(CourseSecret::new("short").is_err());
        let s = CourseSecret::new("  long-enough-secret\n").unwrap();
        assert_eq!(s.text(), "long-enough-secret");
        assert!(!format!("{s:?}").contains("long-enough"));
        assert!(valid_learner("alice.b-2"));
        assert!(!valid_learner("alice@uni"));
        assert!(!valid_learner(""));
    }
}

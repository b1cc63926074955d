//! Reading what a playbook passed to a binding: options maps checked
//! against their known keys, and values of the kinds bindings take
//! (strings, ports, seconds, flags). Every error names the function and
//! the key, in the same words everywhere.

use std::time::Duration;

use rhai::{Dynamic, Map};

use crate::engine::{RhaiResult, script_error};

/// An options map a binding received, its keys already checked. A key
/// whose value is `()` counts as absent, so `#{timeout: ()}` means the
/// default.
pub struct Options<'a> {
    function: &'a str,
    map: &'a Map,
}

impl<'a> Options<'a> {
    /// Checks `map`: every key is in `known`, every key in `required` is there.
    pub fn new(
        function: &'a str,
        map: &'a Map,
        known: &[&str],
        required: &[&str],
    ) -> RhaiResult<Self> {
        for k in map.keys() {
            if !known.contains(&k.as_str()) {
                return Err(script_error(format!(
                    "{function}: unknown key `{k}`; expected {}",
                    known.join(", ")
                )));
            }
        }
        for r in required {
            if map.get(*r).is_none_or(|v| v.is_unit()) {
                return Err(script_error(format!(
                    "{function}: missing `{r}` (keys: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(Options { function, map })
    }

    pub fn function(&self) -> &'a str {
        self.function
    }

    /// The raw value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&'a Dynamic> {
        self.map.get(key).filter(|v| !v.is_unit())
    }

    /// An error about this call: `function: message`.
    pub fn error(&self, message: impl std::fmt::Display) -> Box<rhai::EvalAltResult> {
        script_error(format!("{}: {message}", self.function))
    }

    pub fn string(&self, key: &str) -> RhaiResult<Option<String>> {
        self.get(key)
            .map(|v| string(self.function, key, v))
            .transpose()
    }

    pub fn port(&self, key: &str) -> RhaiResult<Option<u16>> {
        self.get(key)
            .map(|v| port(self.function, key, v))
            .transpose()
    }

    pub fn seconds(&self, key: &str) -> RhaiResult<Option<Duration>> {
        self.get(key)
            .map(|v| seconds(self.function, key, v))
            .transpose()
    }

    pub fn flag(&self, key: &str) -> RhaiResult<Option<bool>> {
        self.get(key)
            .map(|v| flag(self.function, key, v))
            .transpose()
    }
}

/// A string argument.
pub fn string(function: &str, key: &str, v: &Dynamic) -> RhaiResult<String> {
    v.clone()
        .into_string()
        .map_err(|t| script_error(format!("{function}: `{key}` must be a string, got {t}")))
}

/// A TCP/UDP port (1-65535).
pub fn port(function: &str, key: &str, v: &Dynamic) -> RhaiResult<u16> {
    let n = v
        .as_int()
        .map_err(|t| script_error(format!("{function}: `{key}` must be an integer, got {t}")))?;
    crate::providers::parse_port(n, key).map_err(|e| script_error(format!("{function}: {e}")))
}

/// A positive number of seconds (integer or decimal).
pub fn seconds(function: &str, key: &str, v: &Dynamic) -> RhaiResult<Duration> {
    let secs = if let Ok(i) = v.as_int() {
        i as f64
    } else if let Ok(f) = v.as_float() {
        f
    } else {
        return Err(script_error(format!(
            "{function}: `{key}` must be a number of seconds, got {}",
            v.type_name()
        )));
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(script_error(format!(
            "{function}: `{key}` must be a positive number of seconds, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `true` or `false`.
pub fn flag(function: &str, key: &str, v: &Dynamic) -> RhaiResult<bool> {
    v.as_bool().map_err(|t| {
        script_error(format!(
            "{function}: `{key}` must be true or false, got {t}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Dynamic)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect()
    }

    #[test]
    fn keys_are_checked_and_named() {
        let m = map(&[("prot", Dynamic::from(22_i64))]);
        let e = Options::new("f::g", &m, &["port"], &[]).err().unwrap();
        assert!(
            e.to_string()
                .contains("f::g: unknown key `prot`; expected port")
        );
        let m = map(&[("port", Dynamic::UNIT)]);
        let e = Options::new("f::g", &m, &["port"], &["port"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("f::g: missing `port`"), "{e}");
    }

    #[test]
    fn values_are_read_with_one_wording() {
        let m = map(&[
            ("port", Dynamic::from(70000_i64)),
            ("timeout", Dynamic::from(1.5_f64)),
            ("name", Dynamic::from(3_i64)),
            ("sudo", Dynamic::from("yes")),
            ("none", Dynamic::UNIT),
        ]);
        let o = Options::new("f", &m, &["port", "timeout", "name", "sudo", "none"], &[]).unwrap();
        let e = o.port("port").unwrap_err().to_string();
        assert!(e.contains("f: port 70000 is out of range (1-65535)"), "{e}");
        assert_eq!(
            o.seconds("timeout").unwrap(),
            Some(Duration::from_millis(1500))
        );
        let e = o.string("name").unwrap_err().to_string();
        assert!(e.contains("f: `name` must be a string, got i64"), "{e}");
        let e = o.flag("sudo").unwrap_err().to_string();
        assert!(e.contains("f: `sudo` must be true or false"), "{e}");
        assert_eq!(o.string("none").unwrap(), None, "() is absent");
        assert!(
            seconds("f", "t", &Dynamic::from(-1_i64))
                .unwrap_err()
                .to_string()
                .contains("positive")
        );
    }
}

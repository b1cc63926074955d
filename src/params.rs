//! `--set KEY=VALUE` values and their merge with a playbook's `params()`.

use std::collections::BTreeMap;

use rhai::{Dynamic, Engine, Map};
use serde_json::Value;

/// Splits `KEY=VALUE`.
pub fn parse_set(arg: &str) -> Result<(String, String), String> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| format!("--set expects KEY=VALUE, got '{arg}'"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("--set expects KEY=VALUE, got '{arg}' (empty key)"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// A JSON value as the script value a playbook sees.
pub fn json_to_dynamic(v: Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => b.into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.into(),
        Value::Array(a) => Dynamic::from_array(a.into_iter().map(json_to_dynamic).collect()),
        Value::Object(o) => {
            let m: Map = o
                .into_iter()
                .map(|(k, v)| (k.into(), json_to_dynamic(v)))
                .collect();
            Dynamic::from_map(m)
        }
    }
}

/// Parses a `--set` value: a JSON literal, else a Rhai literal (`#{a: 1}`,
/// `'c'`), else the text itself as a string.
pub fn parse_value(raw: &str) -> Dynamic {
    if let Ok(v) = serde_json::from_str::<Value>(raw) {
        return json_to_dynamic(v);
    }
    // A raw engine has no functions or operators: only literals evaluate.
    if let Ok(v) = Engine::new_raw().eval_expression::<Dynamic>(raw) {
        return v;
    }
    raw.into()
}

/// A type name as a playbook author thinks of it.
fn kind(v: &Dynamic) -> &'static str {
    if v.is_int() {
        "an integer"
    } else if v.is_float() {
        "a number"
    } else if v.is_bool() {
        "true or false"
    } else if v.is_string() {
        "a string"
    } else if v.is_array() {
        "an array"
    } else if v.is_map() {
        "a map"
    } else {
        "a value"
    }
}

/// Merges `sets` into `defaults`. A key the playbook does not declare is an
/// error listing the declared ones; a value whose type differs from the
/// default's is an error too, except that a string default takes the text
/// as given (so `--set db_name=123` stays the string "123").
pub fn merge(defaults: &Map, sets: &BTreeMap<String, String>) -> Result<Map, String> {
    let mut merged = defaults.clone();
    for (key, raw) in sets {
        let Some(default) = defaults.get(key.as_str()) else {
            let mut declared: Vec<&str> = defaults.keys().map(|k| k.as_str()).collect();
            declared.sort();
            return Err(format!(
                "unknown parameter '{key}' in --set; this playbook declares: {}",
                if declared.is_empty() {
                    "(none)".to_string()
                } else {
                    declared.join(", ")
                }
            ));
        };
        let value = if default.is_string() {
            raw.as_str().into()
        } else {
            let v = parse_value(raw);
            if default.is_unit() || v.type_id() == default.type_id() {
                v
            } else if default.is::<f64>() && v.is::<i64>() {
                (v.as_int().unwrap_or_default() as f64).into()
            } else {
                return Err(format!(
                    "--set {key}={raw}: expected {} like the default {}, got {}",
                    kind(default),
                    default,
                    kind(&v)
                ));
            }
        };
        merged.insert(key.as_str().into(), value);
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed() {
        assert_eq!(parse_value("42").as_int().unwrap(), 42);
        assert!(parse_value("true").as_bool().unwrap());
        assert_eq!(parse_value("1.5").as_float().unwrap(), 1.5);
        assert_eq!(parse_value("[1,2]").into_array().unwrap().len(), 2);
        assert!(parse_value("#{a: 1}").is_map());
        assert_eq!(
            parse_value("hello world").into_string().unwrap(),
            "hello world"
        );
        assert!(parse_value("null").is_unit());
    }

    #[test]
    fn unknown_keys_list_the_declared_ones() {
        let mut d = Map::new();
        d.insert("b".into(), 1_i64.into());
        d.insert("a".into(), "x".into());
        let sets = BTreeMap::from([("c".to_string(), "1".to_string())]);
        let e = merge(&d, &sets).unwrap_err();
        assert!(e.contains("'c'") && e.contains("a, b"), "{e}");
    }

    #[test]
    fn string_defaults_keep_text_and_types_are_checked() {
        let mut d = Map::new();
        d.insert("name".into(), "x".into());
        d.insert("port".into(), 1_i64.into());
        let ok = merge(
            &d,
            &BTreeMap::from([("name".to_string(), "123".to_string())]),
        )
        .unwrap();
        assert_eq!(ok["name"].clone().into_string().unwrap(), "123");
        let bad = merge(
            &d,
            &BTreeMap::from([("port".to_string(), "abc".to_string())]),
        );
        assert!(bad.unwrap_err().contains("expected an integer"));
    }
}

//! `exercise.toml`: what an exercise is (id, title, version, time limit,
//! total points) and the parameters each learner gets. Every error names
//! the file, the key and its `line:col`.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::Value;

use super::toml::{self, Spanned, Table};

/// The manifest's file name inside an exercise.
pub const FILE: &str = "exercise.toml";

/// A problem in a text file of the exercise, at a byte range of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanError {
    pub file: String,
    pub span: Range<usize>,
    pub message: String,
}

/// `line`, `col` (both from 1) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// One per-learner parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    /// What everyone gets without a course secret; its type is the
    /// parameter's type.
    pub default: Value,
    pub description: Option<String>,
    pub kind: ParamKind,
}

/// How a learner's value is made from their seed.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    /// Always the default.
    Fixed,
    /// One of these, picked by the seed.
    Choices(Vec<Value>),
    /// An integer from `lo` to `hi`, both included.
    Range(i64, i64),
    /// A string: `{hex:N}`, `{digits:N}`, `{letters:N}` filled from the seed.
    Template(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub id: String,
    pub title: String,
    pub version: String,
    pub time_limit_minutes: Option<u32>,
    /// The total the tasks' points must add up to, when given.
    pub points: Option<u32>,
    /// Where `points` is written, for the error when the tasks disagree.
    pub points_span: Option<Range<usize>>,
    /// In declaration order.
    pub params: Vec<Param>,
}

/// Exercise ids become lab names, package names and JUnit suite names.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 24
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parameter names are Rhai map keys and `{{name}}` placeholders.
pub fn valid_param_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn scalar(v: &toml::Value) -> Option<Value> {
    Some(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        _ => return None,
    })
}

/// Reads a table's keys against the ones it may have, like serde's
/// `deny_unknown_fields`: an unknown key is named with the known ones.
struct Fields<'a> {
    table: &'a Table,
    /// The dotted path of the table, for messages (`""` at the root).
    path: String,
    whole: Range<usize>,
}

impl<'a> Fields<'a> {
    fn new(
        table: &'a Table,
        path: &str,
        whole: Range<usize>,
        known: &[&str],
    ) -> Result<Self, (Range<usize>, String)> {
        for (k, _) in &table.entries {
            if !known.contains(&k.value.as_str()) {
                return Err((
                    k.span.clone(),
                    format!(
                        "unknown field `{}{}`, expected one of {}",
                        prefix(path),
                        k.value,
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(Fields {
            table,
            path: path.to_string(),
            whole,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", prefix(&self.path))
    }

    fn get(&self, key: &str) -> Option<&'a Spanned<toml::Value>> {
        self.table.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Spanned<toml::Value>, (Range<usize>, String)> {
        self.get(key).ok_or_else(|| {
            (
                self.whole.clone(),
                format!("missing field `{}`", self.key(key)),
            )
        })
    }

    fn wrong(&self, key: &str, want: &str, v: &Spanned<toml::Value>) -> (Range<usize>, String) {
        (
            v.span.clone(),
            format!(
                "invalid type: `{}` must be {want}, got {}",
                self.key(key),
                v.value.kind()
            ),
        )
    }

    fn string(&self, key: &str) -> Result<Option<Spanned<String>>, (Range<usize>, String)> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match &v.value {
                toml::Value::String(s) => Ok(Some(Spanned {
                    value: s.clone(),
                    span: v.span.clone(),
                })),
                _ => Err(self.wrong(key, "a string", v)),
            },
        }
    }

    fn required_string(&self, key: &str) -> Result<Spanned<String>, (Range<usize>, String)> {
        self.required(key)?;
        Ok(self.string(key)?.expect("present"))
    }

    fn integer(&self, key: &str) -> Result<Option<Spanned<i64>>, (Range<usize>, String)> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match &v.value {
                toml::Value::Integer(i) => Ok(Some(Spanned {
                    value: *i,
                    span: v.span.clone(),
                })),
                _ => Err(self.wrong(key, "an integer", v)),
            },
        }
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    }
}

/// The type of a parameter value, in an author's words.
pub fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Number(n) if n.is_i64() => "an integer",
        Value::Number(_) => "a number",
        Value::Bool(_) => "true or false",
        _ => "a value",
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    kind_name(a) == kind_name(b)
}

/// The placeholders a template may use, with how many characters each takes.
pub fn template_parts(template: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Text(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in template \"{template}\""))?;
        let inner = &rest[open + 1..open + close];
        let (kind, n) = inner.split_once(':').ok_or_else(|| {
            format!("'{{{inner}}}' in template: expected {{hex:N}}, {{digits:N}} or {{letters:N}}")
        })?;
        let n: usize = n
            .parse()
            .ok()
            .filter(|n| (1..=32).contains(n))
            .ok_or_else(|| format!("'{{{inner}}}' in template: N must be 1 to 32"))?;
        let charset = match kind {
            "hex" => Charset::Hex,
            "digits" => Charset::Digits,
            "letters" => Charset::Letters,
            other => {
                return Err(format!(
                    "'{{{inner}}}' in template: unknown kind '{other}' (hex, digits or letters)"
                ));
            }
        };
        parts.push(TemplatePart::Random(charset, n));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    Ok(parts)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    Hex,
    Digits,
    Letters,
}

impl Charset {
    pub fn chars(self) -> &'static [u8] {
        match self {
            Charset::Hex => b"0123456789abcdef",
            Charset::Digits => b"0123456789",
            Charset::Letters => b"abcdefghijklmnopqrstuvwxyz",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Random(Charset, usize),
}

impl Manifest {
    /// Parses `text` (the contents of `file`).
    pub fn parse(file: &str, text: &str) -> Result<Manifest, SpanError> {
        Self::parse_inner(text).map_err(|(span, message)| SpanError {
            file: file.to_string(),
            span,
            message,
        })
    }

    fn parse_inner(text: &str) -> Result<Manifest, (Range<usize>, String)> {
        let root = toml::parse(text).map_err(|e| (e.span, e.message))?;
        let top = Fields::new(
            &root,
            "",
            0..0,
            &[
                "id",
                "title",
                "version",
                "time_limit_minutes",
                "points",
                "params",
            ],
        )?;
        let id = top.required_string("id")?;
        let title = top.required_string("title")?;
        let version = top.required_string("version")?;
        if !valid_id(&id.value) {
            return Err((
                id.span,
                format!(
                    "`id` \"{}\": use 1-24 letters, digits, '_' or '-', starting with a letter or digit",
                    id.value
                ),
            ));
        }
        for (key, v) in [("title", &title), ("version", &version)] {
            if v.value.trim().is_empty() {
                return Err((v.span.clone(), format!("`{key}` must not be empty")));
            }
        }
        let time_limit_minutes = match top.integer("time_limit_minutes")? {
            Some(t) if !(1..=10_000).contains(&t.value) => {
                return Err((
                    t.span,
                    format!("`time_limit_minutes` must be 1 to 10000, got {}", t.value),
                ));
            }
            Some(t) => Some(t.value as u32),
            None => None,
        };
        let points_field = top.integer("points")?;
        let points = match &points_field {
            Some(p) if !(0..=100_000).contains(&p.value) => {
                return Err((
                    p.span.clone(),
                    format!("`points` must be 0 to 100000, got {}", p.value),
                ));
            }
            Some(p) => Some(p.value as u32),
            None => None,
        };

        let mut params = Vec::new();
        if let Some(p) = top.get("params") {
            let toml::Value::Table(table) = &p.value else {
                return Err(top.wrong("params", "a table ([params.NAME])", p));
            };
            for (name, entry) in &table.entries {
                let key = format!("params.{}", name.value);
                let toml::Value::Table(fields) = &entry.value else {
                    return Err((
                        entry.span.clone(),
                        format!("`{key}` must be a table: [{key}] with `default = ...`"),
                    ));
                };
                params.push(Self::param(&name.value, &key, fields, name.span.clone())?);
            }
        }
        Ok(Manifest {
            id: id.value,
            title: title.value,
            version: version.value,
            time_limit_minutes,
            points,
            points_span: points_field.map(|p| p.span),
            params,
        })
    }

    fn param(
        name: &str,
        key: &str,
        table: &Table,
        at: Range<usize>,
    ) -> Result<Param, (Range<usize>, String)> {
        let f = Fields::new(
            table,
            key,
            at.clone(),
            &["default", "description", "choices", "range", "template"],
        )?;
        if !valid_param_name(name) {
            return Err((
                at,
                format!(
                    "`{key}`: parameter names are letters, digits and '_', starting with a letter"
                ),
            ));
        }
        let default_field = f.required("default")?;
        let default = scalar(&default_field.value).ok_or_else(|| {
            (
                default_field.span.clone(),
                format!("`{key}.default` must be a string, integer, number or boolean"),
            )
        })?;
        let description = f.string("description")?.map(|d| d.value);
        let given = ["choices", "range", "template"]
            .iter()
            .filter(|k| f.get(k).is_some())
            .count();
        if given > 1 {
            return Err((
                at,
                format!("`{key}`: give one of `choices`, `range` or `template`, not several"),
            ));
        }
        let kind = if let Some(c) = f.get("choices") {
            let toml::Value::Array(items) = &c.value else {
                return Err(f.wrong("choices", "an array", c));
            };
            let mut values = Vec::new();
            for v in items {
                match scalar(&v.value) {
                    Some(x) if same_kind(&x, &default) => values.push(x),
                    _ => {
                        return Err((
                            v.span.clone(),
                            format!(
                                "`{key}.choices` must all be {} like the default",
                                kind_name(&default)
                            ),
                        ));
                    }
                }
            }
            if values.is_empty() {
                return Err((c.span.clone(), format!("`{key}.choices` is empty")));
            }
            ParamKind::Choices(values)
        } else if let Some(r) = f.get("range") {
            if !default.is_i64() {
                return Err((
                    r.span.clone(),
                    format!("`{key}.range` needs an integer default"),
                ));
            }
            let bounds: Vec<i64> = match &r.value {
                toml::Value::Array(items) => items
                    .iter()
                    .filter_map(|v| match v.value {
                        toml::Value::Integer(i) => Some(i),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            match (&r.value, bounds.as_slice()) {
                (toml::Value::Array(items), [lo, hi]) if items.len() == 2 && lo <= hi => {
                    ParamKind::Range(*lo, *hi)
                }
                _ => {
                    return Err((
                        r.span.clone(),
                        format!("`{key}.range` must be [low, high], integers with low <= high"),
                    ));
                }
            }
        } else if let Some(t) = f.string("template")? {
            if !default.is_string() {
                return Err((t.span, format!("`{key}.template` needs a string default")));
            }
            template_parts(&t.value).map_err(|e| (t.span.clone(), format!("`{key}`: {e}")))?;
            ParamKind::Template(t.value)
        } else {
            ParamKind::Fixed
        };
        Ok(Param {
            name: name.to_string(),
            default,
            description,
            kind,
        })
    }

    /// The defaults, by name: every learner's values without a course secret.
    pub fn defaults(&self) -> BTreeMap<String, Value> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.default.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "mysql_client_server"
title = "MySQL"
version = "1.0.0"
time_limit_minutes = 90
points = 15

[params.db_name]
default = "testing_123"
template = "shop_{letters:4}"

[params.db_user]
default = "remote_user"
choices = ["app_user", "report_user"]

[params.port]
default = 3306
range = [3300, 3399]

[params.image]
default = "debian-12"
"#;

    #[test]
    fn a_good_manifest_parses_in_order() {
        let m = Manifest::parse("exercise.toml", GOOD).unwrap();
        assert_eq!(m.id, "mysql_client_server");
        assert_eq!(m.time_limit_minutes, Some(90));
        assert_eq!(m.points, Some(15));
        let names: Vec<&str> = m.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["db_name", "db_user", "port", "image"]);
        assert_eq!(m.params[2].kind, ParamKind::Range(3300, 3399));
        assert_eq!(m.params[3].kind, ParamKind::Fixed);
        assert_eq!(m.defaults()["port"], Value::from(3306));
    }

    fn error(text: &str) -> (String, (usize, usize)) {
        let e = Manifest::parse("exercise.toml", text).unwrap_err();
        (e.message.clone(), line_col(text, e.span.start))
    }

    #[test]
    fn errors_name_the_key_and_where_it_is() {
        let (m, at) = error("id = \"x\"\ntitel = \"T\"\nversion = \"1\"\n");
        assert!(m.contains("unknown field `titel`"), "{m}");
        assert_eq!(at, (2, 1));

        let (m, _) = error("id = \"x\"\nversion = \"1\"\n");
        assert!(m.contains("missing field `title`"), "{m}");

        let (m, at) = error("id = \"x y\"\ntitle = \"T\"\nversion = \"1\"\n");
        assert!(m.contains("`id` \"x y\""), "{m}");
        assert_eq!(at, (1, 6));

        let text = "id = \"x\"\ntitle = \"T\"\nversion = \"1\"\n[params.n]\ndefault = 1\nchoices = [1, \"a\"]\n";
        let (m, at) = error(text);
        assert!(
            m.contains("`params.n.choices` must all be an integer"),
            "{m}"
        );
        assert_eq!(at, (6, 15));

        let text = "id = \"x\"\ntitle = \"T\"\nversion = \"1\"\n[params.n]\ndefault = \"a\"\ntemplate = \"a{oct:3}\"\n";
        let (m, _) = error(text);
        assert!(m.contains("unknown kind 'oct'"), "{m}");

        let text = "id = \"x\"\ntitle = \"T\"\nversion = 1\n";
        let (m, at) = error(text);
        assert!(
            m.contains("invalid type: `version` must be a string, got an integer"),
            "{m}"
        );
        assert_eq!(at, (3, 11));

        let text = "id = \"x\"\ntitle = \"T\"\nversion = \"1\"\n[params.n]\ndefaults = 1\n";
        let (m, at) = error(text);
        assert!(m.contains("unknown field `params.n.defaults`"), "{m}");
        assert_eq!(at, (5, 1));
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
    }
}

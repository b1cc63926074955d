//! `exercise.toml`: what an exercise is (id, title, version, time limit,
//! total points) and the parameters each learner gets. Parsed with serde
//! (unknown keys refused); every error names the file, the key and its
//! `line:col`.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    id: Spanned<String>,
    title: Spanned<String>,
    version: Spanned<String>,
    time_limit_minutes: Option<Spanned<i64>>,
    points: Option<Spanned<i64>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<RawParam>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    default: Spanned<toml::Value>,
    description: Option<String>,
    choices: Option<Spanned<Vec<toml::Value>>>,
    range: Option<Spanned<Vec<i64>>>,
    template: Option<Spanned<String>>,
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

/// The dotted path of the key on the line of `offset`: its `[table]`
/// header (if any) and the key itself (if the line has one).
fn key_path(text: &str, offset: usize) -> (Option<String>, Option<String>) {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let header = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']'))
            .then(|| l.trim_matches(['[', ']']).trim().to_string())
    });
    let key = text[start..end]
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    (header, key)
}

/// toml's messages name a wrong value's type but not its key, and an
/// unknown key without its table: add them.
fn name_the_key(text: &str, offset: usize, message: &str) -> String {
    let (header, key) = key_path(text, offset);
    if let (Some(rest), Some(h)) = (message.strip_prefix("unknown field `"), &header) {
        return format!("unknown field `{h}.{rest}");
    }
    if message.starts_with("invalid ")
        && let Some(k) = key
    {
        let path = match header {
            Some(h) => format!("{h}.{k}"),
            None => k,
        };
        return format!("`{path}`: {message}");
    }
    message.to_string()
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
        let err = |span: Range<usize>, message: String| SpanError {
            file: file.to_string(),
            span,
            message,
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = name_the_key(text, span.start, e.message().trim_end());
            err(span, message.replace('\n', "; "))
        })?;

        if !valid_id(raw.id.get_ref()) {
            return Err(err(
                raw.id.span(),
                format!(
                    "`id` \"{}\": use 1-24 letters, digits, '_' or '-', starting with a letter or digit",
                    raw.id.get_ref()
                ),
            ));
        }
        for (key, v) in [("title", &raw.title), ("version", &raw.version)] {
            if v.get_ref().trim().is_empty() {
                return Err(err(v.span(), format!("`{key}` must not be empty")));
            }
        }
        let time_limit_minutes = match &raw.time_limit_minutes {
            Some(t) if !(1..=10_000).contains(t.get_ref()) => {
                return Err(err(
                    t.span(),
                    format!(
                        "`time_limit_minutes` must be 1 to 10000, got {}",
                        t.get_ref()
                    ),
                ));
            }
            Some(t) => Some(*t.get_ref() as u32),
            None => None,
        };
        let points = match &raw.points {
            Some(p) if !(0..=100_000).contains(p.get_ref()) => {
                return Err(err(
                    p.span(),
                    format!("`points` must be 0 to 100000, got {}", p.get_ref()),
                ));
            }
            Some(p) => Some(*p.get_ref() as u32),
            None => None,
        };

        // Declaration order: the map comes sorted by name; the spans say
        // where each one is.
        let mut raw_params: Vec<(String, Spanned<RawParam>)> = raw.params.into_iter().collect();
        raw_params.sort_by_key(|(_, p)| p.span().start);
        let mut params = Vec::new();
        for (name, p) in raw_params {
            let at = p.span();
            let key = format!("params.{name}");
            params.push(Self::param(&name, &key, p.into_inner(), at).map_err(|(s, m)| err(s, m))?);
        }
        Ok(Manifest {
            id: raw.id.into_inner(),
            title: raw.title.into_inner(),
            version: raw.version.into_inner(),
            time_limit_minutes,
            points,
            points_span: raw.points.as_ref().map(|p| p.span()),
            params,
        })
    }

    fn param(
        name: &str,
        key: &str,
        p: RawParam,
        at: Range<usize>,
    ) -> Result<Param, (Range<usize>, String)> {
        if !valid_param_name(name) {
            return Err((
                at,
                format!(
                    "`{key}`: parameter names are letters, digits and '_', starting with a letter"
                ),
            ));
        }
        let default = scalar(p.default.get_ref()).ok_or_else(|| {
            (
                p.default.span(),
                format!("`{key}.default` must be a string, integer, number or boolean"),
            )
        })?;
        let given = [p.choices.is_some(), p.range.is_some(), p.template.is_some()]
            .iter()
            .filter(|g| **g)
            .count();
        if given > 1 {
            return Err((
                at,
                format!("`{key}`: give one of `choices`, `range` or `template`, not several"),
            ));
        }
        let kind = if let Some(c) = p.choices {
            let span = c.span();
            let mut values = Vec::new();
            for v in c.into_inner() {
                match scalar(&v) {
                    Some(v) if same_kind(&v, &default) => values.push(v),
                    _ => {
                        return Err((
                            span,
                            format!(
                                "`{key}.choices` must all be {} like the default",
                                kind_name(&default)
                            ),
                        ));
                    }
                }
            }
            if values.is_empty() {
                return Err((span, format!("`{key}.choices` is empty")));
            }
            ParamKind::Choices(values)
        } else if let Some(r) = p.range {
            let span = r.span();
            if !default.is_i64() {
                return Err((span, format!("`{key}.range` needs an integer default")));
            }
            match r.into_inner().as_slice() {
                [lo, hi] if lo <= hi => ParamKind::Range(*lo, *hi),
                _ => {
                    return Err((
                        span,
                        format!("`{key}.range` must be [low, high] with low <= high"),
                    ));
                }
            }
        } else if let Some(t) = p.template {
            let span = t.span();
            let t = t.into_inner();
            if !default.is_string() {
                return Err((span, format!("`{key}.template` needs a string default")));
            }
            template_parts(&t).map_err(|e| (span.clone(), format!("`{key}`: {e}")))?;
            ParamKind::Template(t)
        } else {
            ParamKind::Fixed
        };
        Ok(Param {
            name: name.to_string(),
            default,
            description: p.description,
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
        assert_eq!(at, (6, 11));

        let text = "id = \"x\"\ntitle = \"T\"\nversion = \"1\"\n[params.n]\ndefault = \"a\"\ntemplate = \"a{oct:3}\"\n";
        let (m, _) = error(text);
        assert!(m.contains("unknown kind 'oct'"), "{m}");

        let text = "id = \"x\"\ntitle = \"T\"\nversion = 1\n";
        let (m, at) = error(text);
        assert_eq!(m, "`version`: invalid type: integer `1`, expected a string");
        assert_eq!(at, (3, 11));

        let text = "id = \"x\"\ntitle = \"T\"\nversion = \"1\"\n[params.n]\ndefaults = 1\n";
        let (m, at) = error(text);
        assert!(m.contains("unknown field `params.n.defaults`"), "{m}");
        assert_eq!(at, (5, 1));

        let text = "id = \"x\"\ntitle = \"T\"\nversion = \"1\"\n[params.n]\ndefault = 1\nrange = [1, \"a\"]\n";
        let (m, at) = error(text);
        assert!(m.starts_with("`params.n.range`: invalid type"), "{m}");
        assert_eq!(at.0, 6);
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
    }
}

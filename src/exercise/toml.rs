//! A reader for the part of TOML that `exercise.toml` uses: comments,
//! `[table]` and `[table.sub]` headers, `key = value` with bare or quoted
//! (and dotted) keys, basic and literal strings, integers, floats,
//! booleans and arrays (over several lines too). Anything else TOML has
//! (inline tables, dates, multi-line strings) is refused by name. Every
//! key and value keeps its byte span, so the manifest's errors point at
//! `line:col`.
//!
//! (The `toml` crate could not be fetched when this was written; the
//! subset is small enough to read exactly, and the manifest code sees only
//! this tree.)

use std::ops::Range;

#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Range<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Array(Vec<Spanned<Value>>),
    Table(Table),
}

impl Value {
    /// The type, in a manifest author's words.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Boolean(_) => "true or false",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// Keys and values in the order they were written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub entries: Vec<(Spanned<String>, Spanned<Value>)>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Spanned<Value>> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Spanned<Value>> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }
}

/// A syntax error at a byte span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub span: Range<usize>,
}

fn err<T>(message: impl Into<String>, span: Range<usize>) -> Result<T, ParseError> {
    Err(ParseError {
        message: message.into(),
        span,
    })
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Spaces and tabs.
    fn blank(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    /// Spaces, newlines and comments (inside arrays).
    fn blank_lines(&mut self) {
        loop {
            self.blank();
            match self.peek() {
                Some('\n' | '\r') => self.pos += 1,
                Some('#') => self.comment(),
                _ => return,
            }
        }
    }

    fn comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.pos += 1;
        }
    }

    /// After a header or a value: optional comment, then the end of the line.
    fn end_of_line(&mut self) -> Result<(), ParseError> {
        self.blank();
        if self.peek() == Some('#') {
            self.comment();
        }
        match self.peek() {
            None => Ok(()),
            Some('\n') => {
                self.pos += 1;
                Ok(())
            }
            Some('\r') if self.text[self.pos..].starts_with("\r\n") => {
                self.pos += 2;
                Ok(())
            }
            Some(c) => err(
                format!("expected the end of the line, found '{c}'"),
                self.pos..self.pos + c.len_utf8(),
            ),
        }
    }

    fn key_part(&mut self) -> Result<Spanned<String>, ParseError> {
        let start = self.pos;
        let value = match self.peek() {
            Some('"') => self.basic_string()?,
            Some('\'') => self.literal_string()?,
            _ => {
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    let found = self
                        .peek()
                        .map_or("the end".to_string(), |c| format!("'{c}'"));
                    return err(format!("expected a key, found {found}"), start..start + 1);
                }
                self.text[start..self.pos].to_string()
            }
        };
        Ok(Spanned {
            value,
            span: start..self.pos,
        })
    }

    /// `a`, `a.b`, `"a b".c`.
    fn key(&mut self) -> Result<Vec<Spanned<String>>, ParseError> {
        let mut parts = vec![self.key_part()?];
        loop {
            self.blank();
            if !self.eat('.') {
                return Ok(parts);
            }
            self.blank();
            parts.push(self.key_part()?);
        }
    }

    fn basic_string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        if self.text[self.pos..].starts_with("\"\"\"") {
            return err(
                "multi-line strings are not supported in exercise.toml; use one line",
                start..start + 3,
            );
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None | Some('\n') => return err("unterminated string", start..at),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some(u @ ('u' | 'U')) => {
                        let n = if u == 'u' { 4 } else { 8 };
                        let hex = self.text.get(self.pos..self.pos + n).unwrap_or("");
                        let c = u32::from_str_radix(hex, 16)
                            .ok()
                            .filter(|_| hex.len() == n)
                            .and_then(char::from_u32);
                        match c {
                            Some(c) => {
                                out.push(c);
                                self.pos += n;
                            }
                            None => return err("invalid unicode escape", at..self.pos + n),
                        }
                    }
                    _ => return err("invalid escape in a string", at..self.pos),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn literal_string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        if self.text[self.pos..].starts_with("'''") {
            return err(
                "multi-line strings are not supported in exercise.toml; use one line",
                start..start + 3,
            );
        }
        self.pos += 1;
        let from = self.pos;
        loop {
            match self.bump() {
                None | Some('\n') => return err("unterminated string", start..self.pos),
                Some('\'') => return Ok(self.text[from..self.pos - 1].to_string()),
                Some(_) => {}
            }
        }
    }

    fn value(&mut self) -> Result<Spanned<Value>, ParseError> {
        let start = self.pos;
        let value = match self.peek() {
            Some('"') => Value::String(self.basic_string()?),
            Some('\'') => Value::String(self.literal_string()?),
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.blank_lines();
                    if self.eat(']') {
                        break;
                    }
                    items.push(self.value()?);
                    self.blank_lines();
                    if self.eat(',') {
                        continue;
                    }
                    self.blank_lines();
                    if self.eat(']') {
                        break;
                    }
                    let at = self.pos;
                    return err("expected ',' or ']' in the array", at..at + 1);
                }
                Value::Array(items)
            }
            Some('{') => {
                return err(
                    "inline tables are not supported in exercise.toml; use a [table]",
                    start..start + 1,
                );
            }
            Some(_) => {
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || "+-._:".contains(c))
                {
                    self.pos += 1;
                }
                let word = &self.text[start..self.pos];
                let span = start..self.pos.max(start + 1);
                match word {
                    "true" => Value::Boolean(true),
                    "false" => Value::Boolean(false),
                    "" => return err("expected a value", span),
                    w => {
                        let digits = w.replace('_', "");
                        if w.contains(':') || (w.len() >= 10 && w.as_bytes()[4] == b'-') {
                            return err("dates and times are not supported in exercise.toml", span);
                        }
                        if let Ok(i) = digits.parse::<i64>() {
                            Value::Integer(i)
                        } else if digits.contains(['.', 'e', 'E'])
                            && let Ok(f) = digits.parse::<f64>()
                        {
                            Value::Float(f)
                        } else {
                            return err(
                                format!("'{w}' is not a value: strings need quotes, e.g. \"{w}\""),
                                span,
                            );
                        }
                    }
                }
            }
            None => return err("expected a value", start..start),
        };
        Ok(Spanned {
            value,
            span: start..self.pos,
        })
    }
}

/// The table a dotted path leads to, created as needed.
fn table_at<'t>(
    root: &'t mut Table,
    path: &[Spanned<String>],
) -> Result<&'t mut Table, ParseError> {
    let mut cur = root;
    for part in path {
        if cur.get(&part.value).is_none() {
            cur.entries.push((
                part.clone(),
                Spanned {
                    value: Value::Table(Table::default()),
                    span: part.span.clone(),
                },
            ));
        }
        match &mut cur.get_mut(&part.value).expect("just made").value {
            Value::Table(t) => cur = t,
            other => {
                return err(
                    format!("`{}` is {}, not a table", part.value, other.kind()),
                    part.span.clone(),
                );
            }
        }
    }
    Ok(cur)
}

/// Parses `text` into its root table.
pub fn parse(text: &str) -> Result<Table, ParseError> {
    let mut p = Parser { text, pos: 0 };
    let mut root = Table::default();
    let mut current: Vec<Spanned<String>> = Vec::new();
    let mut headers: Vec<Vec<String>> = Vec::new();
    loop {
        p.blank_lines();
        let Some(c) = p.peek() else { break };
        if c == '[' {
            let start = p.pos;
            p.pos += 1;
            if p.peek() == Some('[') {
                return err(
                    "arrays of tables ([[...]]) are not supported in exercise.toml",
                    start..start + 2,
                );
            }
            p.blank();
            let path = p.key()?;
            p.blank();
            if !p.eat(']') {
                return err("expected ']' to close the table header", p.pos..p.pos + 1);
            }
            let names: Vec<String> = path.iter().map(|k| k.value.clone()).collect();
            if headers.contains(&names) {
                return err(
                    format!("table [{}] is defined twice", names.join(".")),
                    start..p.pos,
                );
            }
            headers.push(names);
            table_at(&mut root, &path)?;
            current = path;
            p.end_of_line()?;
            continue;
        }
        let key = p.key()?;
        p.blank();
        if !p.eat('=') {
            return err("expected '=' after the key", p.pos..p.pos + 1);
        }
        p.blank();
        let value = p.value()?;
        p.end_of_line()?;
        let (last, parents) = key.split_last().expect("a key has a part");
        let mut path = current.clone();
        path.extend(parents.iter().cloned());
        let table = table_at(&mut root, &path)?;
        if table.get(&last.value).is_some() {
            return err(
                format!("key `{}` is defined twice", last.value),
                last.span.clone(),
            );
        }
        table.entries.push((last.clone(), value));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(t: &'a Table, path: &[&str]) -> &'a Value {
        let mut cur = t;
        for (i, k) in path.iter().enumerate() {
            let v = &cur.get(k).unwrap_or_else(|| panic!("no {k}")).value;
            if i + 1 == path.len() {
                return v;
            }
            match v {
                Value::Table(t) => cur = t,
                _ => panic!("{k} is no table"),
            }
        }
        unreachable!()
    }

    #[test]
    fn the_subset_parses_with_spans() {
        let text = r#"# a comment
id = "ex"   # trailing
title = 'lit\eral'
n = -1_000
f = 2.5
ok = true
list = [
  "a", # one
  "b",
]
[params.db]
default = "x\ty\u00e9"
"quoted key".sub = 3
"#;
        let t = parse(text).unwrap();
        assert_eq!(get(&t, &["id"]), &Value::String("ex".into()));
        assert_eq!(get(&t, &["title"]), &Value::String("lit\\eral".into()));
        assert_eq!(get(&t, &["n"]), &Value::Integer(-1000));
        assert_eq!(get(&t, &["f"]), &Value::Float(2.5));
        assert_eq!(get(&t, &["ok"]), &Value::Boolean(true));
        match get(&t, &["list"]) {
            Value::Array(items) => assert_eq!(items.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            get(&t, &["params", "db", "default"]),
            &Value::String("x\tyé".into())
        );
        assert_eq!(
            get(&t, &["params", "db", "quoted key", "sub"]),
            &Value::Integer(3)
        );
        let id = t.get("id").unwrap();
        assert_eq!(&text[id.span.clone()], "\"ex\"");
        assert_eq!(t.entries[0].0.value, "id");
    }

    #[test]
    fn what_is_not_toml_or_not_supported_is_refused_where_it_is() {
        let cases = [
            ("id = ex\n", "strings need quotes", 5),
            ("id = \"ex\nx", "unterminated string", 5),
            ("id = \"a\"\nid = \"b\"\n", "defined twice", 9),
            ("[a]\n[a]\n", "table [a] is defined twice", 4),
            ("t = {a = 1}\n", "inline tables", 4),
            ("d = 2024-01-01\n", "dates and times", 4),
            ("d = 1e-5x\n", "is not a value", 4),
            ("s = \"\"\"x\"\"\"\n", "multi-line", 4),
            ("a = 1 2\n", "end of the line", 6),
            ("a = [1 2]\n", "expected ',' or ']'", 7),
            ("[[x]]\n", "arrays of tables", 0),
            ("a.b = 1\na = 2\n", "defined twice", 8),
            ("a = 1\na.b = 2\n", "not a table", 6),
        ];
        for (text, needle, at) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(needle), "{text:?}: {}", e.message);
            assert_eq!(e.span.start, at, "{text:?}: {}", e.message);
        }
    }
}

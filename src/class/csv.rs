//! CSV as spreadsheets read and write it (RFC 4180): the roster comes in
//! as CSV, the access sheet and the gradebook go out as CSV. Reading takes
//! quoted fields (with `""` for a quote, commas and line breaks inside), a
//! UTF-8 byte-order mark and CRLF or LF line ends. Writing quotes what must
//! be quoted and defuses text a spreadsheet would run as a formula.

/// One record of a CSV file and the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Parses `text`; records whose fields are all blank are left out. An
/// error says on which line the quoted field that never ends begins.
pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut record_line = 1;
    let mut quoted_since: Option<usize> = None;
    let mut chars = text.chars().peekable();
    let mut push_record = |fields: &mut Vec<String>, start: usize| {
        let record = std::mem::take(fields);
        if record.iter().any(|f| !f.trim().is_empty()) {
            records.push(Record {
                line: start,
                fields: record,
            });
        }
    };
    while let Some(c) = chars.next() {
        if quoted_since.is_some() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted_since = None,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted_since = Some(line),
            ',' => fields.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                push_record(&mut fields, record_line);
                line += 1;
                record_line = line;
            }
            c => field.push(c),
        }
    }
    if let Some(start) = quoted_since {
        return Err(format!(
            "line {start}: a quoted field is never closed (a '\"' is missing)"
        ));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        push_record(&mut fields, record_line);
    }
    Ok(records)
}

/// One field, quoted when it must be. Text a spreadsheet would take for a
/// formula (`=`, `+`, `-`, `@`, a tab or a carriage return first) gets a
/// `'` in front, so a name in a roster cannot run in the instructor's
/// spreadsheet (points are never negative, so numbers stay numbers).
pub fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// One line of fields (a text field each), ending in a line break.
pub fn row<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(records: &[Record]) -> Vec<Vec<&str>> {
        records
            .iter()
            .map(|r| r.fields.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn reads_quotes_line_breaks_bom_and_crlf() {
        let text =
            "\u{feff}id,name\r\nana,\"Silva, Ana\"\r\n\r\nbo,\"say \"\"hi\"\"\nthere\"\n,,\ncy,\n";
        let records = parse(text).unwrap();
        assert_eq!(
            fields(&records),
            vec![
                vec!["id", "name"],
                vec!["ana", "Silva, Ana"],
                vec!["bo", "say \"hi\"\nthere"],
                vec!["cy", ""],
            ]
        );
        assert_eq!(
            records.iter().map(|r| r.line).collect::<Vec<_>>(),
            [1, 2, 4, 7]
        );
        // No line break at the end.
        assert_eq!(fields(&parse("a,b").unwrap()), vec![vec!["a", "b"]]);
    }

    #[test]
    fn an_unclosed_quote_names_its_line() {
        let e = parse("id\nana\n\"bo\nx\n").unwrap_err();
        assert!(
            e.starts_with("line 3: a quoted field is never closed"),
            "{e}"
        );
    }

    #[test]
    fn writes_what_must_be_quoted_quoted_and_defuses_formulas() {
        assert_eq!(field("ana"), "ana");
        assert_eq!(field("Silva, Ana"), "\"Silva, Ana\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field(" padded"), "\" padded\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(row(&["a", "b,c", ""]), "a,\"b,c\",\n");
        // What is written reads back the same (formulas aside).
        let line = row(&["x\"y", "1,2", "multi\nline"]);
        assert_eq!(
            fields(&parse(&line).unwrap()),
            vec![vec!["x\"y", "1,2", "multi\nline"]]
        );
    }
}

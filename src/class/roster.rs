//! The roster: who is in the class. A CSV file with a header line naming
//! its columns: `id` (or `learner`), and optionally `name` and `email`;
//! other columns (a course platform's export has many) are ignored. One
//! learner per line; ids are what `--learner` takes, unique regardless of
//! case (they name labs and files).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::csv;
use crate::exercise::params::valid_learner;

/// One learner of the roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
}

/// Reads the roster file at `path`.
pub fn load(path: &Path) -> Result<Vec<Member>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read roster {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("roster {}: {e}", path.display()))
}

/// Parses a roster; the error names the line and says what to fix, and
/// lists every problem, not only the first.
pub fn parse(text: &str) -> Result<Vec<Member>, String> {
    let records = csv::parse(text)?;
    let Some((header, rows)) = records.split_first() else {
        return Err(
            "it is empty; write a header line (id,name,email), then one learner per line".into(),
        );
    };
    let column = |names: &[&str]| {
        header
            .fields
            .iter()
            .position(|f| names.contains(&f.trim().to_ascii_lowercase().as_str()))
    };
    let Some(id_col) = column(&["id", "learner", "learner_id"]) else {
        return Err(format!(
            "line {}: the header ({}) has no `id` column; the first line names the columns: id (required), name, email",
            header.line,
            header.fields.join(",")
        ));
    };
    let name_col = column(&["name"]);
    let email_col = column(&["email", "e-mail", "mail"]);
    let mut members: Vec<(usize, Member)> = Vec::new();
    let mut problems = Vec::new();
    for row in rows {
        let get = |col: Option<usize>| {
            col.and_then(|c| row.fields.get(c))
                .map(|f| f.trim().to_string())
                .unwrap_or_default()
        };
        let id = get(Some(id_col));
        if !valid_learner(&id) {
            problems.push(format!(
                "line {}: learner id '{}' {}: ids are 1-23 letters, digits, '.', '_' or '-', starting with a letter or digit",
                row.line,
                id.escape_default(),
                if id.is_empty() { "is missing" } else { "is not valid" }
            ));
            continue;
        }
        if let Some((line, first)) = members.iter().find(|(_, m)| m.id.eq_ignore_ascii_case(&id)) {
            problems.push(format!(
                "line {}: learner '{id}' is listed twice (as '{}' on line {line}); ids are unique, whatever their case",
                row.line, first.id
            ));
            continue;
        }
        members.push((
            row.line,
            Member {
                id,
                name: get(name_col),
                email: get(email_col),
            },
        ));
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    if members.is_empty() {
        return Err("it lists no learners (only a header line)".into());
    }
    Ok(members.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_names_and_emails_in_any_column_order() {
        let roster =
            parse("Email,ID,Name,group\nana@example.org,ana,\"Silva, Ana\",A\n,bo,,B\n\n,cy.2,,\n")
                .unwrap();
        assert_eq!(
            roster,
            [
                Member {
                    id: "ana".into(),
                    name: "Silva, Ana".into(),
                    email: "ana@example.org".into()
                },
                Member {
                    id: "bo".into(),
                    name: String::new(),
                    email: String::new()
                },
                Member {
                    id: "cy.2".into(),
                    name: String::new(),
                    email: String::new()
                },
            ]
        );
        // Only the id column is needed.
        assert_eq!(parse("learner\nx\n").unwrap()[0].id, "x");
    }

    #[test]
    fn duplicate_and_malformed_ids_are_each_named_with_their_line() {
        let e = parse("id,name\nana,A\nbad id,B\n,C\nAna,D\n-x,E\n").unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert!(
            lines[0].starts_with("line 3: learner id 'bad id' is not valid"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("line 4: learner id '' is missing"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("line 5: learner 'Ana' is listed twice (as 'ana' on line 2)"),
            "{e}"
        );
        assert!(
            lines[3].starts_with("line 6: learner id '-x' is not valid"),
            "{e}"
        );
        let long = format!("id\n{}\n", "a".repeat(24));
        assert!(parse(&long).unwrap_err().contains("is not valid"));
    }

    #[test]
    fn a_roster_needs_a_header_with_ids_and_a_learner() {
        assert!(parse("").unwrap_err().starts_with("it is empty"));
        assert!(
            parse("name,email\nAna,a@x\n")
                .unwrap_err()
                .starts_with("line 1: the header (name,email) has no `id` column")
        );
        assert!(parse("id\n").unwrap_err().contains("lists no learners"));
        assert!(
            parse("id\n\"ana\n")
                .unwrap_err()
                .contains("line 2: a quoted field is never closed")
        );
    }
}

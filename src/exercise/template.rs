//! `{{name}}` placeholders in the learner's README: filled with the
//! learner's parameters (and `{{learner}}`, `{{lab}}`), and found by
//! `validate` so an unknown name is an error at its `line:col`.

use std::collections::BTreeMap;
use std::ops::Range;

/// Names every README may use besides the exercise's parameters.
pub const BUILTINS: &[&str] = &["learner", "lab", "exercise"];

/// One `{{ name }}` in a text: the name and the byte range of the whole
/// placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    pub span: Range<usize>,
}

/// Every placeholder in `text`, in order. A `{{` without a matching `}}`
/// on its line, or with something other than a name inside, is returned
/// with an empty name so `validate` reports it.
pub fn placeholders(text: &str) -> Vec<Placeholder> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find("{{") {
        let start = from + rel;
        let line_end = text[start..].find('\n').map_or(text.len(), |n| start + n);
        match text[start + 2..line_end].find("}}") {
            Some(close) => {
                let inner = text[start + 2..start + 2 + close].trim();
                let ok = crate::exercise::manifest::valid_param_name(inner);
                let end = start + 2 + close + 2;
                out.push(Placeholder {
                    name: if ok { inner.to_string() } else { String::new() },
                    span: start..end,
                });
                from = end;
            }
            None => {
                out.push(Placeholder {
                    name: String::new(),
                    span: start..start + 2,
                });
                from = start + 2;
            }
        }
    }
    out
}

/// `text` with every placeholder replaced by its value; placeholders
/// without a value are left as written (validate reports them).
pub fn render(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for p in placeholders(text) {
        if let Some(v) = values.get(&p.name) {
            out.push_str(&text[last..p.span.start]);
            out.push_str(v);
            last = p.span.end;
        }
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_filled() {
        let text = "Create {{db_name}} as {{ db_user }}.\nLab: {{lab}}, {{ bad name }} {{open\n";
        let found = placeholders(text);
        let names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["db_name", "db_user", "lab", "", ""]);
        assert_eq!(&text[found[1].span.clone()], "{{ db_user }}");
        let values = BTreeMap::from([
            ("db_name".to_string(), "shop".to_string()),
            ("db_user".to_string(), "app".to_string()),
            ("lab".to_string(), "ex-alice".to_string()),
        ]);
        assert_eq!(
            render(text, &values),
            "Create shop as app.\nLab: ex-alice, {{ bad name }} {{open\n"
        );
    }
}

//! Errors as a user can act on them: `file:line:col`, the line, a caret.

use rhai::{Engine, EvalAltResult, Position};

use super::resolver::Sources;

/// Where something happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub source: String,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.col)
    }
}

fn location(source: &str, pos: Position) -> Option<Location> {
    Some(Location {
        source: source.to_string(),
        line: pos.line()?,
        col: pos.position().unwrap_or(1),
    })
}

/// Renders `message` at `loc` with the quoted source line and a caret.
pub fn render(
    message: &str,
    loc: Option<&Location>,
    sources: &Sources,
    notes: &[String],
) -> String {
    let mut out = format!("error: {message}");
    if let Some(loc) = loc {
        out.push_str(&format!("\n  --> {loc}"));
        if let Some(text) = sources.get(&loc.source)
            && let Some(line) = text.lines().nth(loc.line.saturating_sub(1))
        {
            let num = loc.line.to_string();
            let pad = " ".repeat(num.len());
            let caret_pad: String = line
                .chars()
                .take(loc.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n{pad} |\n{num} | {line}\n{pad} | {caret_pad}^"));
        }
    }
    for n in notes {
        out.push_str(&format!("\n  = {n}"));
    }
    out
}

/// Rhai appends ` (line N, position M)` to messages; the diagnostic shows
/// the location its own way.
fn strip_position(text: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => text
            .trim_end_matches(&format!(" (line {l}, position {c})"))
            .to_string(),
        (Some(l), None) => text.trim_end_matches(&format!(" (line {l})")).to_string(),
        _ => text.to_string(),
    }
}

/// The innermost failure of a runtime error: its message, where it
/// happened, and the chain of calls that led there (outermost first).
pub struct Leaf {
    pub message: String,
    pub location: Option<Location>,
    pub calls: Vec<String>,
    pub not_found: Option<String>,
}

/// The text of a thrown value. Structured errors (maps with a `message`,
/// such as the `mysql` module's `#{message, code, state}`) show their
/// message; anything else its display form.
pub fn thrown_text(v: &rhai::Dynamic) -> String {
    if let Some(map) = v.read_lock::<rhai::Map>()
        && let Some(message) = map.get("message")
        && message.is_string()
    {
        return message.to_string();
    }
    v.to_string()
}

/// Walks Rhai's nested errors down to the one that actually failed.
pub fn leaf(err: &EvalAltResult, main_source: &str) -> Leaf {
    let mut source = main_source.to_string();
    let mut calls = Vec::new();
    let mut cur = err;
    loop {
        match cur {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                // Closures are named anon$<hash>: noise to a reader.
                if let Some(l) = location(&source, *pos).filter(|_| !name.starts_with("anon$")) {
                    calls.push(format!("in call to {name}() at {l}"));
                }
                if !src.is_empty() {
                    source = src.clone();
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, pos) => {
                if let Some(l) = location(&source, *pos) {
                    calls.push(format!("while importing {name} at {l}"));
                }
                source = name.clone();
                cur = inner;
            }
            _ => break,
        }
    }
    let not_found = match cur {
        EvalAltResult::ErrorFunctionNotFound(sig, _) => Some(sig.clone()),
        _ => None,
    };
    let message = match cur {
        EvalAltResult::ErrorRuntime(v, _) => thrown_text(v),
        EvalAltResult::ErrorParsing(t, _) => t.to_string(),
        EvalAltResult::ErrorTerminated(..) => "interrupted".to_string(),
        other => strip_position(&other.to_string(), other.position()),
    };
    Leaf {
        message,
        location: location(&source, cur.position()),
        calls,
        not_found,
    }
}

/// Registered signatures of the function named in a "function not found"
/// signature such as `ec2::launch (i64)`.
pub fn expected_signatures(engine: &Engine, not_found_sig: &str) -> Vec<String> {
    let name = not_found_sig
        .split(['(', ' '])
        .next()
        .unwrap_or(not_found_sig)
        .trim();
    let short = name.rsplit("::").next().unwrap_or(name);
    let all = engine.gen_fn_signatures(false);
    let named = |s: &&String| s.split('(').next().unwrap_or("") == name;
    // `ssh::connect` means that module's connect, not mysql::connect.
    let mut sigs: Vec<String> = all.iter().filter(named).cloned().collect();
    if sigs.is_empty() {
        sigs = all
            .iter()
            .filter(|s| {
                let fname = s.split('(').next().unwrap_or("");
                fname == short || fname.ends_with(&format!("::{short}"))
            })
            .cloned()
            .collect();
    }
    sigs.sort();
    sigs.dedup();
    sigs
}

/// Rhai names argument types as Rust sees them (`&str | ImmutableString |
/// String`); the expected signatures use the names playbooks know.
fn readable_types(sig: &str) -> String {
    let Some(open) = sig.find('(') else {
        return sig.to_string();
    };
    let args = sig[open + 1..].trim_end();
    let args = args.strip_suffix(')').unwrap_or(args);
    let args: Vec<&str> = args
        .split(", ")
        .filter(|t| !t.is_empty())
        .map(|t| match t.trim() {
            "&str | ImmutableString | String" | "ImmutableString" | "String" => "string",
            "Array" => "array",
            "Map" => "map",
            "FnPtr" => "Fn",
            "char" => "char",
            other => other,
        })
        .collect();
    format!("{}({})", sig[..open].trim_end(), args.join(", "))
}

/// What a leaf failure says to a user: a call that matched no function
/// lists the signatures there are.
pub fn leaf_message(l: &Leaf, engine: &Engine) -> String {
    match &l.not_found {
        None => l.message.clone(),
        Some(sig) => {
            let expected = expected_signatures(engine, sig);
            if expected.is_empty() {
                format!("no function {sig}")
            } else {
                format!(
                    "wrong arguments for {}; expected {}",
                    readable_types(sig),
                    expected.join(" or ")
                )
            }
        }
    }
}

/// The full diagnostic for a runtime error.
pub fn runtime_error(
    err: &EvalAltResult,
    main_source: &str,
    sources: &Sources,
    engine: &Engine,
    step: Option<&str>,
) -> String {
    let l = leaf(err, main_source);
    let message = leaf_message(&l, engine);
    let mut notes = Vec::new();
    if let Some(s) = step {
        notes.push(format!("in step '{s}'"));
    }
    notes.extend(l.calls.iter().rev().cloned());
    render(&message, l.location.as_ref(), sources, &notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_types_use_playbook_names() {
        assert_eq!(
            readable_types("apt_install (Session, &str | ImmutableString | String, i64)"),
            "apt_install(Session, string, i64)"
        );
        assert_eq!(readable_types("f (Map, Array, FnPtr)"), "f(map, array, Fn)");
        assert_eq!(readable_types("lab_name ()"), "lab_name()");
        assert_eq!(readable_types("ssh::connect (())"), "ssh::connect(())");
    }

    #[test]
    fn caret_points_at_the_column() {
        let sources = Sources::default();
        sources.insert("p.rhai", "let a = 1;\nlet b = oops;\n");
        let loc = Location {
            source: "p.rhai".into(),
            line: 2,
            col: 9,
        };
        let text = render("bad", Some(&loc), &sources, &["in step 'x'".into()]);
        assert!(text.contains("--> p.rhai:2:9"), "{text}");
        assert!(text.contains("2 | let b = oops;"), "{text}");
        assert!(text.contains("  |         ^"), "{text}");
        assert!(text.ends_with("= in step 'x'"), "{text}");
    }
}

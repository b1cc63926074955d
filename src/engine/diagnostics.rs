//! Errors as a user can act on them: `file:line:col`, the line, a caret.

use rhai::{ASTNode, Engine, EvalAltResult, Expr, FnPtr, Position, Stmt};

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
        other => limit_message(other)
            .unwrap_or_else(|| strip_position(&other.to_string(), other.position())),
    };
    Leaf {
        message,
        location: location(&source, cur.position()),
        calls,
        not_found,
    }
}

/// A resource limit of the engine, named with its value: Rhai's own words
/// ("Too many operations", "Stack overflow") say neither which limit nor
/// how far it goes.
fn limit_message(err: &EvalAltResult) -> Option<String> {
    use super::limits::*;
    const MIB: usize = 1024 * 1024;
    Some(match err {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the playbook ran past labrun's limit of {MAX_OPERATIONS} operations \
             (a loop that never ends?)"
        ),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "function calls nested past labrun's limit of {MAX_CALL_LEVELS} levels \
             (a recursion that never ends?)"
        ),
        EvalAltResult::ErrorTooManyModules(_) => {
            format!("more than labrun's limit of {MAX_MODULES} modules imported")
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => match what.as_str() {
            "Length of string" => format!(
                "a string grew past labrun's limit of {} MiB",
                MAX_STRING_SIZE / MIB
            ),
            "Size of object map" => {
                format!("a map grew past labrun's limit of {MAX_MAP_SIZE} entries")
            }
            // "Size of array/BLOB", "Size of BLOB"
            _ => format!("an array or blob grew past labrun's limit of {MAX_ARRAY_SIZE} items"),
        },
        _ => return None,
    })
}

/// Tells one failure from another as it travels out of the playbook:
/// the innermost error's message and position, which stay the same however
/// many calls wrap it on the way out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureKey {
    message: String,
    position: Option<(usize, usize)>,
}

impl FailureKey {
    pub fn of(err: &EvalAltResult) -> FailureKey {
        let l = leaf(err, "");
        FailureKey {
            message: l.message,
            position: l.location.map(|loc| (loc.line, loc.col)),
        }
    }

    /// The same failure: same message, and the same position where both
    /// know one (an error raised without one gets its call's position on
    /// the way out).
    pub fn same(&self, other: &FailureKey) -> bool {
        self.message == other.message
            && match (self.position, other.position) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
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
        .map(|t| readable_type(t.trim()))
        .collect();
    format!("{}({})", sig[..open].trim_end(), args.join(", "))
}

fn readable_type(t: &str) -> &str {
    match t {
        "&str | ImmutableString | String" | "ImmutableString" | "String" => "string",
        "Array" => "array",
        "Map" => "map",
        "FnPtr" => "Fn",
        other => other,
    }
}

/// What a name called like a function (`q("a")`) is in the playbook when
/// no function has that name.
#[derive(Debug, PartialEq, Eq)]
enum CalledName {
    /// A variable given a closure or `Fn(...)`: `let q = |x| ...;`.
    Closure,
    /// Another variable or a parameter, which may hold a closure.
    Variable,
}

/// Looks at the call at `loc` in its source: Rhai calls a closure held in
/// a variable only with `.call(...)`, and a call `q(...)` looks for a
/// function named `q` instead, so "no function q" means that variable.
fn called_name(sources: &Sources, loc: &Location, name: &str) -> Option<CalledName> {
    let text = sources.get(&loc.source)?;
    let ast = Engine::new_raw().compile(&text).ok()?;
    let at = |pos: &Position| pos.line() == Some(loc.line) && pos.position() == Some(loc.col);
    let mut call_found = false;
    let mut kind = None;
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::FnCall(call, pos)))
            | Some(ASTNode::Expr(Expr::FnCall(call, pos)))
                if at(pos) && call.name == name && call.namespace.is_empty() =>
            {
                call_found = true;
            }
            Some(ASTNode::Stmt(Stmt::Var(var, ..))) if var.0.name == name => {
                if holds_fn(&var.1) {
                    kind = Some(CalledName::Closure);
                } else {
                    kind.get_or_insert(CalledName::Variable);
                }
            }
            _ => {}
        }
        true
    });
    if kind.is_none()
        && ast
            .iter_fn_def()
            .any(|f| f.params.iter().any(|p| p == name))
    {
        kind = Some(CalledName::Variable);
    }
    kind.filter(|_| call_found)
}

/// A closure (`|x| ...`, with or without captured variables) or `Fn(...)`.
fn holds_fn(expr: &Expr) -> bool {
    match expr {
        Expr::DynamicConstant(v, _) => v.is::<FnPtr>(),
        Expr::FnCall(call, _) => matches!(call.name.as_str(), "Fn" | "curry"),
        Expr::Stmt(block) => block.statements().iter().any(|s| match s {
            Stmt::FnCall(call, _) => matches!(call.name.as_str(), "Fn" | "curry"),
            Stmt::Expr(e) => holds_fn(e),
            _ => false,
        }),
        _ => false,
    }
}

/// The arguments of the call `name(...)` at `loc` as written (`"a", 2`),
/// where they are short and on one line.
fn call_arguments(sources: &Sources, loc: &Location, name: &str) -> Option<String> {
    let text = sources.get(&loc.source)?;
    let line = text.lines().nth(loc.line.checked_sub(1)?)?;
    let rest: String = line.chars().skip(loc.col.checked_sub(1)?).collect();
    let rest = rest.strip_prefix(name)?.trim_start().strip_prefix('(')?;
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' | '[' | '{' => depth += 1,
                ')' if depth == 0 => {
                    let args = rest[..i].trim();
                    return (args.chars().count() <= 60).then(|| args.to_string());
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    None
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

/// For a call `q(...)` that matched no function where `q` is a variable
/// of the playbook: says so, and how to call a closure (`q.call(...)`).
fn closure_call_message(l: &Leaf, sources: &Sources, engine: &Engine) -> Option<String> {
    let sig = l.not_found.as_ref()?;
    if !expected_signatures(engine, sig).is_empty() {
        return None;
    }
    let name = sig.split(['(', ' ']).next().unwrap_or(sig);
    let loc = l.location.as_ref()?;
    let kind = called_name(sources, loc, name)?;
    let args = call_arguments(sources, loc, name).unwrap_or_else(|| "...".into());
    Some(match kind {
        CalledName::Closure => format!(
            "no function {}: `{name}` is a closure held in a variable, not a function; \
             call it as `{name}.call({args})`",
            readable_types(sig)
        ),
        CalledName::Variable => format!(
            "no function {}: `{name}` is a variable, not a function; if it holds a \
             closure, call it as `{name}.call({args})`",
            readable_types(sig)
        ),
    })
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
    let message =
        closure_call_message(&l, sources, engine).unwrap_or_else(|| leaf_message(&l, engine));
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

    fn at(line: usize, col: usize) -> Location {
        Location {
            source: "p.rhai".into(),
            line,
            col,
        }
    }

    #[test]
    fn a_call_of_a_variable_is_told_apart_from_a_missing_function() {
        let sources = Sources::default();
        sources.insert(
            "p.rhai",
            "let q = |x| x + 1;\nlet y = 1;\nlet r = |z| z + y;\nq(\"a\", [1, (2)]);\n\
             fn apply(f) { f(1) }\nr(2);\nnope(3);\ny(4);\n",
        );
        assert_eq!(
            called_name(&sources, &at(4, 1), "q"),
            Some(CalledName::Closure)
        );
        assert_eq!(
            called_name(&sources, &at(6, 1), "r"),
            Some(CalledName::Closure)
        );
        assert_eq!(
            called_name(&sources, &at(5, 15), "f"),
            Some(CalledName::Variable)
        );
        assert_eq!(
            called_name(&sources, &at(8, 1), "y"),
            Some(CalledName::Variable)
        );
        assert_eq!(called_name(&sources, &at(7, 1), "nope"), None);
        // Only the call at that position counts.
        assert_eq!(called_name(&sources, &at(6, 1), "q"), None);
        assert_eq!(
            call_arguments(&sources, &at(4, 1), "q").as_deref(),
            Some("\"a\", [1, (2)]")
        );
        assert_eq!(
            call_arguments(&sources, &at(5, 15), "f").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn engine_limits_are_named_with_their_values() {
        // Small limits to reach them fast; the message names labrun's own,
        // the ones every playbook engine is built with.
        let engine = {
            let mut e = Engine::new();
            e.set_max_operations(1_000);
            e.set_max_call_levels(8);
            e.set_max_string_size(1024);
            e
        };
        let cases = [
            ("loop {}", "limit of 500000000 operations"),
            ("fn f(n) { f(n + 1) } f(0);", "limit of 64 levels"),
            (r#"let s = "xx"; loop { s += s; }"#, "limit of 64 MiB"),
        ];
        for (script, expected) in cases {
            let e = engine.run(script).expect_err(script);
            let message = leaf(&e, "p.rhai").message;
            assert!(message.contains(expected), "{script}: {message}");
        }
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

//! Authoring and everyday use without a lab: editor definition files,
//! shell completions, man pages, `labrun secret`, JSON status of no labs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use regex::Regex;

use crate::harness::Test;

const NAME: &str = r"[A-Za-z_][A-Za-z0-9_]*";
/// A parameter list: anything but parentheses, except a nested `()`-pair.
const PARAMS: &str = r"((?:[^()]|\([^()]*\))*)";

/// Splits `a: T, b: Map<x, y>` at the commas outside brackets.
fn split_top(list: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in list.chars() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    parts
}

/// A type as definition files write them: `int`, `Array`, `?`, `()`,
/// `Range<int>`, `range=` (inclusive), `Session`.
fn valid_type(t: &str) -> bool {
    let mut depth = 0i32;
    for c in t.chars() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            c if c.is_ascii_alphanumeric() || " _?&|.,=".contains(c) => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    !t.trim().is_empty() && depth == 0
}

/// Checks a definition file against the format Rhai writes and its
/// language server reads: comments, one `module NAME;` header, then
/// `fn`/`op`/`const`/`let` declarations one per line, `module NAME { }`
/// blocks. Returns the number of declarations.
fn check_definition_file(file: &str, text: &str) -> usize {
    let header = Regex::new(&format!(r"^module (static|{NAME});$")).unwrap();
    let block = Regex::new(&format!(r"^module {NAME} \{{$")).unwrap();
    let func = Regex::new(&format!(
        r"^fn (?:(?:get|set) )?{NAME}\({PARAMS}\)(?: -> (.+))?;$"
    ))
    .unwrap();
    let op = Regex::new(&format!(r"^op ([^\s(]+)\({PARAMS}\)(?: -> (.+))?;$")).unwrap();
    let param = Regex::new(&format!(r"^(?:\.\.\.)?{NAME}: (.+)$")).unwrap();
    let var = Regex::new(&format!(r"^(?:const|let) {NAME}: (.+);$")).unwrap();
    let mut seen_header = false;
    let mut depth = 0;
    let mut count = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = format!("{file}:{}: {line:?}", n + 1);
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if !seen_header {
            assert!(header.is_match(line), "expected the module header at {at}");
            seen_header = true;
            continue;
        }
        if block.is_match(line) {
            depth += 1;
        } else if line == "}" {
            assert!(depth > 0, "unbalanced `}}` at {at}");
            depth -= 1;
        } else if let Some(c) = func.captures(line) {
            for p in split_top(&c[1]) {
                let t = param
                    .captures(&p)
                    .unwrap_or_else(|| panic!("bad parameter {p:?} at {at}"));
                assert!(valid_type(&t[1]), "bad parameter type at {at}");
            }
            if let Some(ret) = c.get(2) {
                assert!(valid_type(ret.as_str()), "bad return type at {at}");
            }
            count += 1;
        } else if let Some(c) = op.captures(line) {
            for t in split_top(&c[2]) {
                assert!(valid_type(&t), "bad operand type at {at}");
            }
            if let Some(ret) = c.get(3) {
                assert!(valid_type(ret.as_str()), "bad result type at {at}");
            }
            count += 1;
        } else if let Some(c) = var.captures(line) {
            assert!(valid_type(&c[1]), "bad type at {at}");
            count += 1;
        } else {
            panic!("not a declaration at {at}");
        }
    }
    assert!(seen_header, "{file} has no module header");
    assert_eq!(depth, 0, "{file}: unclosed module block");
    count
}

/// `fn name(a: T, b: U) -> R;` lines as Rhai script (`fn name(a, b) {}`),
/// so a Rhai engine checks their names and parameter lists.
fn as_script(decls: &[&str]) -> String {
    let func = Regex::new(&format!(r"^fn ({NAME})\({PARAMS}\)(?: -> .+)?;$")).unwrap();
    let mut script = String::new();
    let mut seen = std::collections::HashSet::new();
    for d in decls {
        let c = func
            .captures(d.trim())
            .unwrap_or_else(|| panic!("not a fn: {d}"));
        let params: Vec<String> = split_top(&c[2])
            .iter()
            .map(|p| p.split(':').next().unwrap().trim().to_string())
            .collect();
        // Overloads by type are one script function per arity.
        if seen.insert((c[1].to_string(), params.len())) {
            script.push_str(&format!("fn {}({}) {{}}\n", &c[1], params.join(", ")));
        }
    }
    script
}

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn definitions_cover_everything_docs_lists_and_parse() {
    let t = Test::new();
    let out = t.run_with(&["definitions", "defs"]);
    out.assert_code(0)
        .assert_stdout_contains("defs/ssh.d.rhai")
        .assert_stderr_contains("definition files to defs");
    let files = read_dir(&t.dir().join("defs"));
    for expected in [
        "__builtin__.d.rhai",
        "__builtin-operators__.d.rhai",
        "__static__.d.rhai",
        "ssh.d.rhai",
        "ec2.d.rhai",
        "sg.d.rhai",
        "mysql.d.rhai",
        "check.d.rhai",
        "mysql_server.d.rhai",
        "mysql_client.d.rhai",
    ] {
        assert!(
            files.contains_key(expected),
            "no {expected}: {:?}",
            files.keys()
        );
    }
    for (file, text) in &files {
        assert!(
            check_definition_file(file, text) > 0,
            "{file} declares nothing"
        );
    }

    // Everything `labrun docs` lists is declared where an editor looks.
    let docs = t.run_with(&["docs"]);
    docs.assert_code(0);
    let global = Regex::new(&format!(r"^### `({NAME})\(")).unwrap();
    let method = Regex::new(&format!(r"^### `({NAME})\(this: ({NAME}|\(\))")).unwrap();
    let property = Regex::new(&format!(r"^### `({NAME})\.({NAME}) -> ")).unwrap();
    let module_fn = Regex::new(&format!(r"^### `({NAME})::({NAME})\(")).unwrap();
    let stdlib_fn = Regex::new(&format!(r"^- `({NAME})::({NAME})\((.*)\)`$")).unwrap();
    let type_name = Regex::new(&format!(r"^### type `({NAME})`$")).unwrap();
    let statics = &files["__static__.d.rhai"];
    let mut counts = [0; 6];
    let mut labrun_globals = Vec::new();
    for line in docs.stdout.lines() {
        if let Some(c) = property.captures(line) {
            let decl = format!("fn get {}(this: {})", &c[2], &c[1]);
            assert!(statics.contains(&decl), "no {decl}");
            counts[0] += 1;
        } else if let Some(c) = method.captures(line) {
            let decl = format!("fn {}(this: {}", &c[1], &c[2]);
            assert!(statics.contains(&decl), "no {decl}");
            counts[1] += 1;
        } else if let Some(c) = module_fn.captures(line) {
            let file = format!("{}.d.rhai", &c[1]);
            let decl = format!("fn {}(", &c[2]);
            assert!(files[&file].contains(&decl), "no {decl} in {file}");
            counts[2] += 1;
        } else if let Some(c) = global.captures(line) {
            let decl = format!("\nfn {}(", &c[1]);
            let found: Vec<&str> = statics
                .lines()
                .filter(|l| l.starts_with(&decl[1..]))
                .collect();
            assert!(!found.is_empty(), "no {decl}");
            labrun_globals.extend(found);
            counts[3] += 1;
        } else if let Some(c) = stdlib_fn.captures(line) {
            let file = format!("{}.d.rhai", &c[1]);
            let params: Vec<String> = split_top(&c[3]).iter().map(|p| format!("{p}: ?")).collect();
            let decl = format!("fn {}({}) -> ?;", &c[2], params.join(", "));
            assert!(files[&file].contains(&decl), "no {decl} in {file}");
            assert!(files[&file].contains(&format!("module {};", &c[1])));
            counts[4] += 1;
        } else if let Some(c) = type_name.captures(line) {
            assert!(statics[..400].contains(&c[1]), "type {} not named", &c[1]);
            counts[5] += 1;
        }
    }
    // The docs were read: properties, methods, module functions, globals,
    // stdlib functions and types all appeared.
    for (what, n) in [
        "properties",
        "methods",
        "module fns",
        "globals",
        "stdlib fns",
        "types",
    ]
    .iter()
    .zip(counts)
    {
        assert!(
            n >= 4,
            "only {n} {what} found in labrun docs:\n{}",
            docs.stdout
        );
    }
    // Doc comments travel with the declarations.
    assert!(files["ssh.d.rhai"].contains("/// A session to `instance`"));
    assert!(files["mysql_server.d.rhai"].contains("/// Installs the server package"));

    // Rhai itself accepts the names and parameter lists of labrun's own
    // declarations, as script functions.
    let mut decls: Vec<&str> = labrun_globals;
    for file in [
        "ssh",
        "ec2",
        "sg",
        "mysql",
        "check",
        "mysql_server",
        "mysql_client",
    ] {
        decls.extend(
            files[&format!("{file}.d.rhai")]
                .lines()
                .filter(|l| l.starts_with("fn ")),
        );
    }
    let script = as_script(&decls);
    let engine = rhai::Engine::new_raw();
    let ast = engine
        .compile(&script)
        .unwrap_or_else(|e| panic!("{e}:\n{script}"));
    assert!(ast.iter_functions().count() >= 20, "{script}");

    // Running it again rewrites the same files.
    t.run_with(&["definitions", "defs"]).assert_code(0);
    assert_eq!(read_dir(&t.dir().join("defs")), files);
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let t = Test::new();
    let subcommands = [
        "run",
        "validate",
        "docs",
        "status",
        "destroy",
        "images",
        "definitions",
        "completions",
        "man",
        "secret",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let out = t.run_with(&["completions", shell]);
        out.assert_code(0);
        assert!(out.stdout.len() > 1000, "{shell}: {}", out.stdout);
        for sub in subcommands {
            assert!(out.stdout.contains(sub), "{shell} completion lacks {sub}");
        }
        let flag = if shell == "fish" {
            "-l output"
        } else {
            "--output"
        };
        assert!(out.stdout.contains(flag), "{shell}: no {flag}");
    }
    let bash = t.run_with(&["completions", "bash"]);
    std::fs::write(t.dir().join("labrun.bash"), &bash.stdout).unwrap();
    let check = Command::new("bash")
        .args(["-n", "labrun.bash"])
        .current_dir(t.dir())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Sourced in a shell, it completes subcommands.
    let complete = Command::new("bash")
        .arg("-c")
        .arg(
            "source labrun.bash; COMP_WORDS=(labrun se); COMP_CWORD=1; COMP_LINE='labrun se'; \
             COMP_POINT=9; _labrun labrun se labrun; printf '%s\\n' \"${COMPREPLY[@]}\"",
        )
        .current_dir(t.dir())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&complete.stdout).trim(), "secret");
    t.run_with(&["completions", "tcsh"]).assert_code(2);

    let man = t.run_with(&["man"]);
    man.assert_code(0).assert_stdout_contains(".TH labrun 1");
    for sub in subcommands {
        assert!(man.stdout.contains(sub), "man page lacks {sub}");
    }
    let pages = t.run_with(&["man", "--dir", "man1"]);
    pages.assert_code(0);
    for sub in subcommands {
        let page = t.dir().join(format!("man1/labrun-{sub}.1"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|_| panic!("no {page:?}"));
        assert!(text.contains(&format!(".TH labrun-{sub} 1")), "{text}");
    }
    let secret = std::fs::read_to_string(t.dir().join("man1/labrun-secret.1")).unwrap();
    assert!(
        secret.contains("the only command that shows one"),
        "{secret}"
    );
    // Where groff is installed, the pages render without a warning.
    if Command::new("groff").arg("--version").output().is_ok() {
        let out = Command::new("groff")
            .args([
                "-man",
                "-Tutf8",
                "-ww",
                "-z",
                "man1/labrun.1",
                "man1/labrun-run.1",
            ])
            .current_dir(t.dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
    }
}

#[test]
fn secret_prints_one_value_by_name_and_only_that() {
    let t = Test::new().playbook(
        "sec.rhai",
        r#"let a = secret("db_password"); let b = secret("other.one");
           print(`made ${a} and ${b}`);"#,
    );
    t.run()
        .assert_code(0)
        .assert_stderr_contains("made ******** and ********");
    let secrets = t.secrets("sec");
    let value = secrets["db_password"].as_str().unwrap();

    let out = t.run_with(&["secret", "db_password", "--lab", "sec"]);
    out.assert_code(0);
    assert_eq!(out.stdout, format!("{value}\n"));
    assert_eq!(out.stderr, "");
    // The only lab is the default; LABRUN_LAB names one too.
    let out = t.run_with(&["secret", "other.one"]);
    assert_eq!(out.stdout.trim(), secrets["other.one"].as_str().unwrap());
    let out = t
        .command_with(&["secret", "db_password"])
        .env("LABRUN_LAB", "sec")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), value);

    // An unknown name: exit 2, the names it does have, no value.
    let out = t.run_with(&["secret", "nope", "--lab", "sec"]);
    out.assert_code(2).assert_stderr_contains(
        "lab 'sec' has no secret 'nope'; its secrets: db_password, other.one",
    );
    assert_eq!(out.stdout, "");
    for v in secrets.values() {
        assert!(!out.all().contains(v.as_str().unwrap()), "{}", out.all());
    }
    t.run_with(&["secret", "bad name", "--lab", "sec"])
        .assert_code(2)
        .assert_stderr_contains("invalid secret name 'bad name'");
    t.run_with(&["secret", "db_password", "--lab", "nolab"])
        .assert_code(2)
        .assert_stderr_contains("no lab named 'nolab'");

    // Everything else still masks it: a run that prints it, and status.
    let again = t.run();
    again.assert_code(0);
    assert!(!again.all().contains(value), "{}", again.all());
    let status = t.run_with(&["status", "--output", "json"]);
    assert!(!status.all().contains(value));
}

#[test]
fn status_json_is_one_document_even_with_no_labs() {
    let t = Test::new();
    let out = t.run_with(&["status", "--output", "json"]);
    out.assert_code(0);
    let events = out.events();
    assert_eq!(events.len(), 1, "{}", out.stdout);
    assert_eq!(events[0]["event"], "status");
    assert_eq!(events[0]["labs"], serde_json::json!([]));

    // A lab whose ledger is unreadable is reported in the document.
    std::fs::create_dir_all(t.lab_dir("broken")).unwrap();
    std::fs::write(t.lab_dir("broken").join("ledger.json"), "{not json").unwrap();
    let out = t.run_with(&["status", "--output", "json"]);
    let labs = &out.events()[0]["labs"];
    assert_eq!(labs[0]["lab"], "broken");
    assert!(
        labs[0]["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{labs}"
    );

    // A command that fails ends its JSON with an error event.
    let out = t.run_with(&["destroy", "--output", "json", "--lab", "nolab"]);
    out.assert_code(2);
    let events = out.events();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "error");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("no lab named 'nolab'"),
        "{last}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "destroyed" && e["status"] == "failed")
    );
}

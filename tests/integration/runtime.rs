//! The runtime: CLI, params, secrets, steps, parallel, output, errors,
//! ledger lock, stdlib resolution.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::{Output, Test, finish};

const TYPES: &str = r#"
let p = params(#{ count: 1, name: "x", ratio: 0.5, flag: false, list: [], conf: #{}, any: () });
for k in p.keys() { print(`${k}=${type_of(p[k])}:${p[k]}`); }
"#;

#[test]
fn set_values_are_typed_by_the_defaults() {
    let out = Test::new()
        .playbook("types.rhai", TYPES)
        .args(&[
            "--set",
            "count=5",
            "--set",
            "name=123",
            "--set",
            "ratio=2",
            "--set",
            "flag=true",
        ])
        .args(&[
            "--set",
            "list=[1,2]",
            "--set",
            "conf=#{a: 1}",
            "--set",
            "any=hello",
        ])
        .run();
    out.assert_code(0);
    for line in [
        "count=i64:5",
        "name=string:123",
        "ratio=f64:2.0",
        "flag=bool:true",
        "list=array:[1, 2]",
        "conf=map:#{\"a\": 1}",
        "any=string:hello",
    ] {
        out.assert_stderr_contains(line);
    }
}

#[test]
fn unknown_set_key_lists_declared_keys() {
    let out = Test::new()
        .playbook("types.rhai", TYPES)
        .args(&["--set", "colour=red"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("unknown parameter 'colour'")
        .assert_stderr_contains("any, conf, count, flag, list, name, ratio");
}

#[test]
fn set_value_of_the_wrong_type_is_an_input_error() {
    let out = Test::new()
        .playbook("types.rhai", TYPES)
        .args(&["--set", "count=many"])
        .run();
    out.assert_code(2).assert_stderr_contains(
        "--set count=many: expected an integer like the default 1, got a string",
    );
}

#[test]
fn set_without_params_is_an_input_error() {
    Test::new()
        .playbook("none.rhai", "print(1);")
        .args(&["--set", "a=1"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("declares no parameters");
}

const SECRET: &str = r#"
let pw = secret("db_password");
let classes = [0, 0, 0, 0];
for c in pw.chars() {
    if c >= 'A' && c <= 'Z' { classes[0] += 1; }
    else if c >= 'a' && c <= 'z' { classes[1] += 1; }
    else if c >= '0' && c <= '9' { classes[2] += 1; }
    else { classes[3] += 1; }
}
if pw.len() < 16 || classes.some(|n| n == 0) { throw "weak password"; }
print(`the password is ${pw}`);
step("use it", || { print("inside " + pw); });
"#;

#[test]
fn secrets_are_generated_once_and_redacted_everywhere() {
    let t = Test::new().playbook("sec.rhai", SECRET);
    let first = t.run();
    first.assert_code(0);
    let pw = t.secrets("sec")["db_password"]
        .as_str()
        .unwrap()
        .to_string();
    let mode = std::fs::metadata(t.lab_dir("sec").join("secrets.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!first.all().contains(&pw));
    first.assert_stderr_contains("the password is ********");

    // Reused on the next run, and masked in every output mode.
    for mode in ["human", "plain", "json"] {
        let out = Output::from(t.command().args(["--output", mode]).output().unwrap());
        let text = out.all();
        assert_eq!(out.code, 0, "{text}");
        assert!(
            !text.contains(&pw),
            "{mode} output leaks the secret:\n{text}"
        );
        assert!(text.contains("********"), "{mode}: {text}");
    }
    assert_eq!(t.secrets("sec")["db_password"].as_str().unwrap(), pw);
    let ledger = std::fs::read_to_string(t.lab_dir("sec").join("ledger.json")).unwrap();
    assert!(!ledger.contains(&pw));
}

#[test]
fn secrets_are_redacted_in_error_messages() {
    let t = Test::new().playbook(
        "err.rhai",
        r#"let pw = secret("x"); step("leak", || { throw "cannot log in with " + pw; });"#,
    );
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_contains("cannot log in with ********");
    let pw = t.secrets("err")["x"].as_str().unwrap().to_string();
    assert!(!out.all().contains(&pw));
    let text = Output::from(t.command().args(["--output", "json"]).output().unwrap()).all();
    assert!(!text.contains(&pw) && text.contains("********"), "{text}");
}

#[test]
fn json_events_come_in_order() {
    let out = Test::new()
        .playbook(
            "ev.rhai",
            r#"step("a", || { print("hi"); changed(); }); step("b", || 1);"#,
        )
        .args(&["--output", "json"])
        .run();
    out.assert_code(0);
    let events = out.events();
    let names: Vec<String> = events
        .iter()
        .map(|e| {
            let ev = e["event"].as_str().unwrap();
            match e["step"].as_str() {
                Some(s) if ev.starts_with("step") => format!("{ev}:{s}"),
                _ => ev.to_string(),
            }
        })
        .collect();
    assert_eq!(
        names,
        [
            "run_started",
            "step_started:a",
            "log",
            "step_finished:a",
            "step_started:b",
            "step_finished:b",
            "run_finished"
        ]
    );
    assert_eq!(events[2]["message"], "hi");
    assert_eq!(events[3]["status"], "changed");
    assert!(events[3]["elapsed_ms"].is_u64());
    assert_eq!(events[5]["status"], "ok");
    let end = &events[6];
    assert_eq!(
        (
            end["status"].as_str(),
            end["ok"].as_u64(),
            end["changed"].as_u64(),
            end["failed"].as_u64()
        ),
        (Some("ok"), Some(1), Some(1), Some(0))
    );
}

#[test]
fn failing_run_reports_failed_step_in_json() {
    let out = Test::new()
        .playbook("f.rhai", r#"step("breaks", || throw "nope");"#)
        .args(&["--output", "json"])
        .run();
    out.assert_code(1);
    let events = out.events();
    let fin = events
        .iter()
        .find(|e| e["event"] == "step_finished")
        .unwrap();
    assert_eq!(fin["status"], "failed");
    assert_eq!(fin["error"], "nope");
    let end = events.last().unwrap();
    assert_eq!(end["event"], "run_finished");
    assert_eq!(end["status"], "failed");
    assert_eq!(end["failed"], 1);
}

#[test]
fn syntax_error_names_file_line_column_and_shows_the_line() {
    let out = Test::new()
        .playbook("bad.rhai", "let x = 1;\nlet y = (x + ;\n")
        .run();
    out.assert_code(2)
        .assert_stderr_contains("bad.rhai:2:14")
        .assert_stderr_contains("2 | let y = (x + ;")
        .assert_stderr_contains("|              ^");
    // Nothing ran: no lab state was created.
    assert!(!out.stderr.contains("==>"));
}

#[test]
fn undefined_variable_is_caught_before_running() {
    Test::new()
        .playbook("u.rhai", "step(\"never\", || 1);\nprint(nope);\n")
        .run()
        .assert_code(2)
        .assert_stderr_contains("Undefined variable: nope")
        .assert_stderr_contains("u.rhai:2:7");
}

#[test]
fn runtime_error_names_the_step_and_location() {
    let out = Test::new()
        .playbook("r.rhai", "step(\"ok one\", || 1);\nstep(\"the bad one\", || {\n    let n = 1;\n    n.nothing\n});\n")
        .run();
    out.assert_code(1)
        .assert_stderr_contains("r.rhai:4:7")
        .assert_stderr_contains("4 |     n.nothing")
        .assert_stderr_contains("in step 'the bad one'")
        .assert_stderr_contains("FAILED  the bad one")
        .assert_stderr_contains("failed: ok=1 changed=0 failed=1");
    // Nothing was created, so there is nothing to destroy.
    assert!(!out.stderr.contains("labrun destroy"), "{}", out.stderr);
}

/// A missing module is reported at its `import`, in whichever file has it,
/// with the places searched and the stdlib's module names.
#[test]
fn a_missing_import_names_its_line_and_the_places_searched() {
    Test::new()
        .playbook("m.rhai", "// top\nimport \"mysql_srv\" as m;\n")
        .run()
        .assert_code(2)
        .assert_stderr_contains("Module not found: mysql_srv")
        .assert_stderr_contains(
            "the embedded stdlib: check, mysql_client, mysql_grants, mysql_server, mysql_text",
        )
        .assert_stderr_contains("m.rhai:2:8")
        .assert_stderr_contains("2 | import \"mysql_srv\" as m;");
    Test::new()
        .file("helper.rhai", "fn f() { 1 }\n\nimport \"nope\" as n;\n")
        .playbook("h.rhai", "import \"helper\" as h;\n")
        .run()
        .assert_code(2)
        .assert_stderr_contains("Module not found: nope")
        .assert_stderr_contains("helper.rhai:3:8");
}

/// Errors thrown by namespaced bindings (`sg::ensure`, `mysql::connect`)
/// point at their call like method errors do.
#[test]
fn errors_of_namespaced_calls_name_their_location() {
    Test::new()
        .playbook(
            "n.rhai",
            "let x = 1;\nstep(\"group\", || {\n    sg::ensure(#{ name: \"\" });\n});\n",
        )
        .run()
        .assert_code(1)
        .assert_stderr_contains("sg::ensure: `name` must be 1-64 characters")
        .assert_stderr_contains("n.rhai:3:9")
        .assert_stderr_contains("3 |     sg::ensure(")
        .assert_stderr_contains("in step 'group'");
}

#[test]
fn wrong_argument_types_name_the_expected_signature() {
    Test::new()
        .playbook("w.rhai", "sleep(\"soon\");\n")
        .run()
        .assert_code(1)
        .assert_stderr_contains("wrong arguments for sleep")
        .assert_stderr_contains("sleep(seconds: f64)")
        .assert_stderr_contains("w.rhai:1:1");
    Test::new()
        .playbook("w2.rhai", "step(1, 2);\n")
        .run()
        .assert_code(1)
        .assert_stderr_contains("expected step(name: string, body: Fn) -> Dynamic");
}

#[test]
fn usage_errors_exit_2() {
    Test::new()
        .args(&["run", "x.rhai", "--bogus"])
        .run()
        .assert_code(2);
    Test::new()
        .args(&["missing.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("error: cannot read playbook missing.rhai");
    Test::new()
        .args(&["validate", "missing.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("error: cannot read playbook missing.rhai");
    Test::new()
        .playbook("p.rhai", "1;")
        .args(&["--provider", "mars"])
        .run()
        .assert_code(2);
}

#[test]
fn parallel_runs_closures_concurrently_in_order() {
    let out = Test::new()
        .playbook(
            "par.rhai",
            r#"let r = step("both", || parallel([|| { sleep(1); "a" }, || { sleep(1); "b" }]));
               if r != ["a", "b"] { throw `got ${r}`; }"#,
        )
        .args(&["--output", "json"])
        .run();
    out.assert_code(0);
    let fin = out
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_finished")
        .unwrap();
    let ms = fin["elapsed_ms"].as_u64().unwrap();
    assert!(
        (1000..1900).contains(&ms),
        "two 1 s sleeps in parallel took {ms} ms"
    );
}

#[test]
fn parallel_failures_are_all_named_after_the_others_finish() {
    let out = Test::new()
        .playbook(
            "pf.rhai",
            r#"let done = [];
               let r = parallel([|| throw "first broke", || { sleep(0.3); print("slow one finished"); 2 }, || throw "third broke"]);"#,
        )
        .run();
    out.assert_code(1)
        .assert_stderr_contains("slow one finished")
        .assert_stderr_contains("parallel: 2 of 3 failed")
        .assert_stderr_contains("[1] first broke")
        .assert_stderr_contains("[3] third broke");
}

#[test]
fn steps_inside_parallel_closures_are_reported() {
    let out = Test::new()
        .playbook(
            "ps.rhai",
            r#"parallel([|| step("left", || changed()), || step("right", || 1)]);"#,
        )
        .run();
    out.assert_code(0)
        .assert_stderr_contains("changed left")
        .assert_stderr_contains("ok      right")
        .assert_stderr_contains("ok=1 changed=1 failed=0");
}

#[test]
fn a_second_concurrent_run_of_one_lab_is_refused() {
    let t = Test::new().playbook("slow.rhai", r#"step("hold", || sleep(3));"#);
    let first = t.spawn();
    let lock = t.lab_dir("slow").join("ledger.json");
    let start = Instant::now();
    while !lock.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = t.run();
    second
        .assert_code(1)
        .assert_stderr_contains("lab 'slow' is in use by another labrun");
    finish(first).assert_code(0);
    // A different lab name is independent.
    t.command().args(["--lab", "other"]).output().unwrap();
}

#[test]
fn ctrl_c_stops_at_a_safe_point_and_says_how_to_resume() {
    let t = Test::new().playbook(
        "int.rhai",
        r#"step("long wait", || sleep(30)); step("never", || 1);"#,
    );
    let child = t.spawn();
    std::thread::sleep(Duration::from_millis(700));
    unsafe_kill(child.id() as i32, 2);
    let start = Instant::now();
    let out = finish(child);
    assert!(start.elapsed() < Duration::from_secs(10));
    out.assert_code(130)
        .assert_stderr_contains("interrupted during step 'long wait'")
        .assert_stderr_contains("labrun destroy --lab int");
    assert!(!out.stderr.contains("never"));
    assert!(t.lab_dir("int").join("ledger.json").exists());
}

fn unsafe_kill(pid: i32, sig: i32) {
    let status = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

const USES_CHECK: &str = r#"import "check" as check; print(check::whoami());"#;

#[test]
fn import_prefers_playbook_dir_then_stdlib_dir_then_embedded() {
    // Embedded copy: the shipped check module has no whoami(), so use one it has.
    Test::new()
        .playbook(
            "alone.rhai",
            r#"import "check" as check; check::equal(1 + 1, 2, "sum"); print("embedded ok");"#,
        )
        .run()
        .assert_code(0)
        .assert_stderr_contains("embedded ok");

    // A project stdlib/ beside playbooks/ overrides the embedded copy.
    let t = Test::new()
        .file("stdlib/check.rhai", r#"fn whoami() { "project stdlib" }"#)
        .playbook("playbooks/p.rhai", USES_CHECK);
    t.run()
        .assert_code(0)
        .assert_stderr_contains("project stdlib");

    // LABRUN_STDLIB overrides the project's.
    let t = t.file("other/check.rhai", r#"fn whoami() { "LABRUN_STDLIB" }"#);
    let other = t.dir().join("other").display().to_string();
    let t = t.env("LABRUN_STDLIB", &other);
    t.run()
        .assert_code(0)
        .assert_stderr_contains("LABRUN_STDLIB");

    // The playbook's own directory wins over everything.
    let t = t.file("playbooks/check.rhai", r#"fn whoami() { "playbook dir" }"#);
    t.run()
        .assert_code(0)
        .assert_stderr_contains("playbook dir");
}

#[test]
fn validate_compiles_imports_and_reports_their_errors() {
    let t = Test::new()
        .file("stdlib/helper.rhai", "fn f() {\n    let = 2;\n}\n")
        .file("playbooks/v.rhai", "import \"helper\" as h;\nh::f();\n")
        .args(&["validate", "playbooks/v.rhai"]);
    t.run()
        .assert_code(2)
        .assert_stderr_contains("stdlib/helper.rhai:2:9")
        .assert_stderr_contains("2 |     let = 2;");
    let t = t.file("stdlib/helper.rhai", "fn f() { 2 }\n");
    t.run()
        .assert_code(0)
        .assert_stdout_contains("playbooks/v.rhai: ok");
    // validate never creates lab state.
    assert!(!t.state_dir().join("labs").exists());
}

#[test]
fn docs_lists_registered_functions_with_their_docs() {
    let out = Test::new().arg("docs").run();
    out.assert_code(0)
        .assert_stdout_contains("### `params(defaults: Map) -> Map`")
        .assert_stdout_contains("`--set KEY=VALUE`")
        .assert_stdout_contains("### `parallel(closures: Array) -> Array`")
        .assert_stdout_contains("### `secret(name: string) -> String`")
        .assert_stdout_contains("### `step(name: string, body: Fn) -> Dynamic`")
        .assert_stdout_contains("`check::equal(actual, expected, what)`")
        .assert_stdout_contains("connect_timeout")
        .assert_stdout_contains("## Rhai traps")
        .assert_stdout_contains("`q.call(1)`")
        .assert_stdout_contains("`r.stdout.trim()`")
        .assert_stdout_contains("`labrun definitions`");
    // Printing helpers are one sentence, not eight empty entries.
    assert!(!out.stdout.contains("### `to_debug"), "{}", out.stdout);
    assert!(!out.stdout.contains("### `to_string"), "{}", out.stdout);
}

#[test]
fn shorthand_and_lab_name_and_provider() {
    let out = Test::new()
        .playbook(
            "named.rhai",
            r#"print(`${lab_name()} on ${provider()} in ${lab_dir()}`);"#,
        )
        .args(&["--lab", "my-lab", "--provider", "aws"]);
    let dir = out.state_dir().join("labs/my-lab").display().to_string();
    out.run()
        .assert_code(0)
        .assert_stderr_contains(&format!("my-lab on aws in {dir}"));
    Test::new()
        .playbook("stem.rhai", "print(lab_name());")
        .run()
        .assert_code(0)
        .assert_stderr_contains("\nstem\n");
    Test::new()
        .playbook("x.rhai", "1;")
        .args(&["--lab", "../escape"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("invalid lab name");
}

/// `q("a")` for a closure `q` is a classic Rhai trap: the error says `q` is
/// a closure and shows the call to write, in playbook type names.
#[test]
fn a_closure_called_like_a_function_says_how_to_call_it() {
    let out = Test::new()
        .playbook(
            "q.rhai",
            "let q = |x, n| x + n;\nstep(\"uses q\", || {\n    q(\"a\", 2)\n});\n",
        )
        .run();
    out.assert_code(1)
        .assert_stderr_contains(
            "error: no function q(string, i64): `q` is a closure held in a variable, not a \
             function; call it as `q.call(\"a\", 2)`",
        )
        .assert_stderr_contains("q.rhai:3:5")
        .assert_stderr_contains("in step 'uses q'");
    assert!(!out.stderr.contains("ImmutableString"), "{}", out.stderr);

    // A parameter may hold one: said as a possibility.
    Test::new()
        .playbook("p.rhai", "fn twice(f) { f(1) + f(1) }\ntwice(|x| x);\n")
        .run()
        .assert_code(1)
        .assert_stderr_contains(
            "no function f(i64): `f` is a variable, not a function; if it holds a closure, \
             call it as `f.call(1)`",
        );
    // A name that is nothing at all keeps Rhai's message.
    Test::new()
        .playbook("n.rhai", "nothing_here(1);\n")
        .run()
        .assert_code(1)
        .assert_stderr_contains("no function nothing_here (i64)");
}

/// A failure outside any step is one failure in the summary; one that came
/// out of a step is counted once, by the step, even through `parallel`; a
/// step failure that was caught does not name the step for a later one.
#[test]
fn a_failure_outside_any_step_counts_in_the_summary() {
    let out = Test::new()
        .playbook("o.rhai", "step(\"fine\", || 1);\nthrow \"outside\";\n")
        .args(&["--output", "plain"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("error: outside")
        .assert_stderr_contains("failed: ok=1 changed=0 failed=1");
    assert!(!out.stderr.contains("in step"), "{}", out.stderr);

    let out = Test::new()
        .playbook("o.rhai", "let x = 1;\nx.no_such_method();\n")
        .args(&["--output", "json"])
        .run();
    out.assert_code(1);
    let end = out.events().pop().unwrap();
    assert_eq!(end["event"], "run_finished");
    assert_eq!(end["status"], "failed");
    assert_eq!(end["failed"], 1, "{end}");
    assert_eq!(end["ok"], 0);

    let out = Test::new()
        .playbook(
            "c.rhai",
            "try { step(\"caught\", || throw \"first\"); } catch (e) { }\n\
             fn deploy() { step(\"inner\", || throw \"deep\") }\ndeploy();\n",
        )
        .args(&["--output", "plain"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("in step 'inner'")
        .assert_stderr_contains("failed: ok=0 changed=0 failed=2");

    let out = Test::new()
        .playbook(
            "p.rhai",
            "parallel([|| step(\"a\", || throw \"a fails\"), || step(\"b\", || throw \"b fails\")]);\n",
        )
        .args(&["--output", "plain"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("FAILED  a")
        .assert_stderr_contains("FAILED  b")
        .assert_stderr_contains("failed: ok=0 changed=0 failed=2");

    let out = Test::new()
        .playbook(
            "l.rhai",
            "try { step(\"caught\", || throw \"first\"); } catch (e) { }\nthrow \"later\";\n",
        )
        .args(&["--output", "plain"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("failed: ok=0 changed=0 failed=2");
    assert!(!out.stderr.contains("in step 'caught'"), "{}", out.stderr);
}

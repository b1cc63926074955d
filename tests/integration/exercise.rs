//! Exercises end to end: validation without a lab, the authoring protocol
//! on real instances (the shipped exercise passes it, a check that cannot
//! fail breaks it), a learner doing part of the work by hand over `labrun
//! ssh` and `labrun sg`, per-learner parameters the checks follow, packed
//! copies and tampering, and what the results look like (human, JSON,
//! JUnit). Launches are kept few: each lab costs 20-40 s here.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Output, Test, field_pairs, unique_lab};

pub(crate) const SHIPPED: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/exercises/mysql_client_server");
const SECRET: &str = "course-secret-for-the-tests";

pub(crate) use crate::harness::Cleanup;

/// Containers and networks labelled for `lab`.
pub(crate) fn labelled(lab: &str) -> String {
    let filter = format!("label=labrun.lab={lab}");
    let mut all = String::new();
    for what in [&["ps", "-a", "-q"][..], &["network", "ls", "-q"][..]] {
        let out = Command::new("docker")
            .args(what)
            .args(["--filter", &filter])
            .output()
            .expect("docker CLI");
        all.push_str(String::from_utf8_lossy(&out.stdout).trim());
    }
    all
}

/// `labrun exercise new DIR` in the test's directory, checked.
fn skeleton(t: &Test, dir: &str) -> PathBuf {
    t.run_with(&["exercise", "new", dir]).assert_code(0);
    t.dir().join(dir)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{}", out.all()))
}

fn task<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {report}"))
}

/// Each task's id and status in an exercise result object.
pub(crate) fn statuses(report: &Value) -> Vec<(String, String)> {
    field_pairs(&report["tasks"], "id", "status")
}

/// The JUnit file's one `<testsuite>`, through a real XML parser.
fn junit_suite<'a>(doc: &'a roxmltree::Document<'a>) -> roxmltree::Node<'a, 'a> {
    let root = doc.root_element();
    assert!(root.has_tag_name("testsuites"));
    root.children()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("the JUnit file is written")
}

fn cases<'a>(suite: roxmltree::Node<'a, 'a>) -> Vec<roxmltree::Node<'a, 'a>> {
    suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect()
}

#[test]
fn validate_and_bad_input_say_what_and_where_without_a_lab() {
    let t = Test::new();
    let ex = skeleton(&t, "firstex");
    t.run_with(&["exercise", "validate", "firstex"])
        .assert_code(0)
        .assert_stdout_contains("ok: exercise firstex 0.1.0, 2 tasks, 3 points");
    // The check API is in the reference.
    let docs = t.run_with(&["docs"]);
    for f in [
        "task(id: string, meta: Map, check: Fn)",
        "solution(id: string, body: Fn)",
        "expect(condition: bool, message: string)",
        "fail(message: string)",
        "pass()",
        "partial(fraction: f64, message: string)",
        "learner()",
    ] {
        assert!(docs.stdout.contains(f), "labrun docs lacks {f}");
    }

    // Several problems, each at its file:line:col; exit 2.
    edit(&ex.join("README.md"), "{{word}}", "{{wrod}}");
    edit(
        &ex.join("checks.rhai"),
        "    hints: [`sudo useradd -m ${p.user}`],\n",
        "",
    );
    edit(
        &ex.join("solve.rhai"),
        "solution(\"user\"",
        "solution(\"usr\"",
    );
    edit(&ex.join("exercise.toml"), "points = 3", "points = 4");
    let out = t.run_with(&["exercise", "validate", "firstex"]);
    out.assert_code(2);
    for needle in [
        "unknown placeholder {{wrod}}",
        "firstex/README.md:10:5",
        "task 'user' has no hint",
        "firstex/checks.rhai:24:1",
        "task 'user' is not covered by the solution",
        "solution('usr') solves no task",
        "firstex/solve.rhai:12:1",
        "`points` is 4, but the tasks' points add up to 3",
        "firstex/exercise.toml:8:10",
        "5 problems found",
    ] {
        out.assert_stderr_contains(needle);
    }

    // A malformed exercise.toml names the file, the key and where.
    edit(&ex.join("exercise.toml"), "title =", "titel =");
    t.run_with(&["exercise", "validate", "firstex"])
        .assert_code(2)
        .assert_stderr_contains("unknown field `titel`")
        .assert_stderr_contains("firstex/exercise.toml:4:1");
    std::fs::remove_file(ex.join("exercise.toml")).unwrap();
    t.run_with(&["exercise", "validate", "firstex"])
        .assert_code(2)
        .assert_stderr_contains("firstex/exercise.toml is missing");

    // The top level of checks.rhai runs without a lab: lab work there is
    // refused at its line.
    let other = skeleton(&t, "second");
    edit(
        &other.join("checks.rhai"),
        "let p = params();",
        "let p = params();\nlet s = ssh::connect(ec2::find(\"box\"));",
    );
    t.run_with(&["exercise", "validate", "second"])
        .assert_code(2)
        .assert_stderr_contains("second/checks.rhai:8:")
        .assert_stderr_contains("must only declare");

    // Unknown parameters and wrong types are refused like --set, before
    // anything is launched.
    let third = skeleton(&t, "third");
    t.run_with(&["exercise", "start", "third", "--set", "colour=red"])
        .assert_code(2)
        .assert_stderr_contains(
            "unknown parameter 'colour' in --set; this exercise declares: user, word",
        );
    std::fs::write(
        third.join("exercise.toml"),
        std::fs::read_to_string(third.join("exercise.toml")).unwrap()
            + "\n[params.port]\ndefault = 3306\n",
    )
    .unwrap();
    t.run_with(&["exercise", "start", "third", "--set", "port=abc"])
        .assert_code(2)
        .assert_stderr_contains("--set port=abc: expected an integer like the default 3306");
    // A lab that was never started says how to start it.
    t.run_with(&["exercise", "check", "third", "--learner", "alice"])
        .assert_code(2)
        .assert_stderr_contains("lab 'third-alice' was never started for an exercise")
        .assert_stderr_contains("labrun exercise start third --learner alice");
    t.run_with(&["exercise", "start", "third", "--learner", "a@b"])
        .assert_code(2)
        .assert_stderr_contains("--learner 'a@b'");

    // A packed copy is checked by its digest; a learner copy has no solution.
    t.run_with(&[
        "exercise",
        "pack",
        "third",
        "-o",
        "third.labex",
        "--learner-copy",
    ])
    .assert_code(0)
    .assert_stdout_contains("learner copy: no solution");
    let packed: Value =
        serde_json::from_str(&std::fs::read_to_string(t.dir().join("third.labex")).unwrap())
            .unwrap();
    assert!(packed["files"].get("solve.rhai").is_none());
    assert!(packed["files"].get("checks.rhai").is_some());
    t.run_with(&["exercise", "validate", "third.labex"])
        .assert_code(0)
        .assert_stdout_contains("learner copy");
    let tampered = std::fs::read_to_string(t.dir().join("third.labex"))
        .unwrap()
        .replace("does not exist", "is fine, really");
    std::fs::write(t.dir().join("tampered.labex"), tampered).unwrap();
    let out = t.run_with(&["exercise", "start", "tampered.labex", "--learner", "eve"]);
    out.assert_code(2)
        .assert_stderr_contains("digest does not match its contents");
    assert!(
        !t.lab_dir("third-eve").exists(),
        "nothing was started from a tampered package"
    );
}

#[test]
fn the_shipped_exercise_passes_its_own_test() {
    let lab = unique_lab("exmcs");
    let _cleanup = Cleanup(vec![lab.clone()]);
    let t = Test::new();
    let out = t.run_with(&[
        "exercise",
        "test",
        SHIPPED,
        "--lab",
        &lab,
        "--output",
        "plain",
        "--junit",
        "protocol.xml",
    ]);
    out.assert_code(0)
        .assert_stderr_contains("== checks before the solve (each must fail)")
        .assert_stderr_contains("protocol passed: 8 tasks fail before the solve and pass after it");
    let text = read(&t.dir().join("protocol.xml"));
    let doc = roxmltree::Document::parse(&text).unwrap();
    let suite = junit_suite(&doc);
    assert_eq!(
        suite.attribute("tests"),
        Some("9"),
        "8 tasks and convergence"
    );
    assert_eq!(suite.attribute("failures"), Some("0"));
    assert_eq!(suite.attribute("errors"), Some("0"));
    assert_eq!(cases(suite).len(), 9);
    assert_eq!(labelled(&lab), "", "the test lab is destroyed");
}

#[test]
fn a_check_that_cannot_fail_or_that_throws_breaks_the_protocol() {
    let lab = unique_lab("exbroken");
    let _cleanup = Cleanup(vec![lab.clone()]);
    let t = Test::new();
    let ex = skeleton(&t, "broken");
    // The greeting check passes whatever the lab holds.
    edit(
        &ex.join("checks.rhai"),
        "    let s = host();\n    expect(",
        "    return;\n    let s = host();\n    expect(",
    );
    // And the user check breaks.
    edit(
        &ex.join("checks.rhai"),
        "    let r = host().run(",
        "    let r = host().nope();\n    let r2 = host().run(",
    );
    let out = t.run_with(&[
        "exercise", "test", "broken", "--lab", &lab, "--output", "plain", "--junit", "p.xml",
    ]);
    out.assert_code(1)
        .assert_stderr_contains("check 'greeting' passed before the solve: it cannot fail")
        .assert_stderr_contains("check 'user' broke before the solve")
        .assert_stderr_contains("broken/checks.rhai:32:");
    let text = read(&t.dir().join("p.xml"));
    let doc = roxmltree::Document::parse(&text).unwrap();
    let greeting = cases(junit_suite(&doc))
        .into_iter()
        .find(|c| c.attribute("name").unwrap().starts_with("greeting:"))
        .unwrap();
    let failure = greeting
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("greeting failed the protocol");
    assert!(failure.text().unwrap().contains("cannot fail"), "{text}");
    assert_eq!(labelled(&lab), "", "the test lab is destroyed");
}

#[test]
fn a_learner_does_part_of_the_work_by_hand_and_checks_it() {
    let t = Test::new().env("LABRUN_COURSE_SECRET", SECRET);
    let lab = unique_lab("exlearn");
    let _cleanup = Cleanup(vec![lab.clone()]);
    // The instructor hands out a learner copy; the learner starts from it.
    t.run_with(&[
        "exercise",
        "pack",
        SHIPPED,
        "-o",
        "mcs.labex",
        "--learner-copy",
    ])
    .assert_code(0);
    let start = t.run_with(&[
        "exercise",
        "start",
        "mcs.labex",
        "--learner",
        "ana",
        "--lab",
        &lab,
        "--output",
        "plain",
    ]);
    start
        .assert_code(0)
        .assert_stdout_contains(&format!("labrun ssh mysql-server --lab {lab}"))
        .assert_stdout_contains("1. **firewall**");
    assert!(
        !start.stdout.contains("{{"),
        "every placeholder is filled:\n{}",
        start.stdout
    );

    // Two tasks done by hand: the firewall rule, and the client.
    t.run_with(&[
        "sg",
        "allow",
        "mysql-server-sg",
        "--port",
        "3306",
        "--from",
        "mysql-client",
        "--lab",
        &lab,
    ])
    .assert_code(0)
    .assert_stdout_contains("mysql-server-sg: now allows tcp 3306 from");
    t.run_with(&[
        "sg",
        "allow",
        "mysql-server-sg",
        "--port",
        "99999",
        "--from",
        "mysql-client",
        "--lab",
        &lab,
    ])
    .assert_code(2)
    .assert_stderr_contains("port 99999 is out of range (1-65535)");
    t.run_with(&[
        "ssh",
        "mysql-client",
        "--lab",
        &lab,
        "--",
        "sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-client >/dev/null",
    ])
    .assert_code(0);
    t.run_with(&["ssh", "mysql-client", "--lab", &lab, "--", "false"])
        .assert_code(1);

    let out = t.run_with(&[
        "exercise", "check", "--lab", &lab, "--output", "json", "--junit", "ana.xml",
    ]);
    out.assert_code(1);
    let report = json(&out);
    assert_eq!(report["exercise"], "mysql_client_server");
    assert_eq!(report["learner"], "ana");
    assert_eq!(report["score"], 3);
    assert_eq!(report["max_score"], 15);
    let passed: Vec<String> = statuses(&report)
        .into_iter()
        .filter(|(_, s)| s == "passed")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(passed, ["firewall", "client-installed"]);
    for (id, status) in statuses(&report) {
        let t = task(&report, &id);
        if status != "passed" {
            assert_eq!(status, "failed", "{t}");
            assert!(t["message"].as_str().is_some_and(|m| !m.is_empty()), "{t}");
            assert!(t["hint"].as_str().is_some_and(|h| !h.is_empty()), "{t}");
            assert_eq!(t["points"], 0, "{t}");
        }
    }
    assert!(
        task(&report, "server-running")["message"]
            .as_str()
            .unwrap()
            .contains("no MySQL server is installed")
    );

    let text = read(&t.dir().join("ana.xml"));
    let doc = roxmltree::Document::parse(&text).unwrap();
    let suite = junit_suite(&doc);
    assert_eq!(cases(suite).len(), 8);
    assert_eq!(suite.attribute("failures"), Some("6"));
    assert_eq!(suite.attribute("errors"), Some("0"));
    let firewall = cases(suite)
        .into_iter()
        .find(|c| c.attribute("name").unwrap().starts_with("firewall:"))
        .unwrap();
    assert!(
        firewall.children().all(|n| !n.is_element()),
        "firewall passed"
    );

    // The human form; the second check shows the next hint.
    let human = t.run_with(&["exercise", "check", "--lab", &lab]);
    human
        .assert_code(1)
        .assert_stdout_contains("score: 3/15 (2 of 8 tasks passed)")
        .assert_stdout_contains("FAILED  bind-address")
        .assert_stdout_contains("hint: The running server reads its configuration when it starts");

    // No secret in any output.
    let secrets = t.secrets(&lab);
    let everything = format!(
        "{}{}{}{}",
        start.all(),
        out.all(),
        human.all(),
        std::fs::read_to_string(t.dir().join("ana.xml")).unwrap()
    );
    for v in secrets.values() {
        assert!(
            !everything.contains(v.as_str().unwrap()),
            "a lab secret leaked"
        );
    }
    assert!(!everything.contains(SECRET), "the course secret leaked");

    t.run_with(&["destroy", "--lab", &lab]).assert_code(0);
    assert_eq!(labelled(&lab), "");
    t.run_with(&["exercise", "check", "--lab", &lab])
        .assert_code(2)
        .assert_stderr_contains("has nothing left (destroyed?)");
}

#[test]
fn learners_get_their_own_parameters_and_the_checks_follow_them() {
    let t = Test::new().env("LABRUN_COURSE_SECRET", SECRET);
    let ex = skeleton(&t, "params");
    // A third task whose check throws: an error, not a failure.
    std::fs::write(
        ex.join("checks.rhai"),
        std::fs::read_to_string(ex.join("checks.rhai")).unwrap()
            + "\ntask(\"broken\", #{ title: \"breaks\", points: 0, hints: [\"-\"] }, || {\n    host().nope();\n});\n",
    )
    .unwrap();
    std::fs::write(
        ex.join("solve.rhai"),
        std::fs::read_to_string(ex.join("solve.rhai")).unwrap()
            + "\nsolution(\"broken\", || {});\n",
    )
    .unwrap();
    let (alice, bob) = (unique_lab("exalice"), unique_lab("exbob"));
    let _cleanup = Cleanup(vec![alice.clone(), bob.clone()]);

    let word = |out: &Output| -> String {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains("(one line)"))
            .unwrap_or_else(|| panic!("no task line:\n{}", out.stdout));
        line.split('`').nth(1).unwrap().to_string()
    };
    let a = t.run_with(&[
        "exercise",
        "start",
        "params",
        "--learner",
        "alice",
        "--lab",
        &alice,
    ]);
    a.assert_code(0);
    let b = t.run_with(&[
        "exercise",
        "start",
        "params",
        "--learner",
        "bob",
        "--lab",
        &bob,
    ]);
    b.assert_code(0);
    let (wa, wb) = (word(&a), word(&b));
    assert!(
        wa.starts_with("hello-") && wb.starts_with("hello-"),
        "{wa} {wb}"
    );
    assert_ne!(wa, wb, "two learners, two values");
    // The same learner always gets the same values.
    let again = t.run_with(&[
        "exercise",
        "start",
        "params",
        "--learner",
        "alice",
        "--lab",
        &alice,
    ]);
    again.assert_code(0);
    assert_eq!(word(&again), wa);

    // Alice's lab solved: her checks pass; the broken one is an error with
    // where it broke.
    t.run_with(&["exercise", "solve", "params", "--lab", &alice])
        .assert_code(0);
    let out = t.run_with(&["exercise", "check", "--lab", &alice, "--output", "json"]);
    out.assert_code(1);
    let report = json(&out);
    assert_eq!(
        statuses(&report),
        [
            ("greeting".to_string(), "passed".to_string()),
            ("user".to_string(), "passed".to_string()),
            ("broken".to_string(), "error".to_string())
        ]
    );
    let broken = task(&report, "broken")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(broken.contains("params/checks.rhai:38:"), "{broken}");

    // Bob writes Alice's answer: his check expects his own value.
    t.run_with(&[
        "ssh",
        "box",
        "--lab",
        &bob,
        "--",
        &format!("echo {wa} | sudo tee /srv/greeting.txt"),
    ])
    .assert_code(0);
    let out = t.run_with(&[
        "exercise",
        "check",
        "params",
        "--learner",
        "bob",
        "--lab",
        &bob,
        "--output",
        "json",
    ]);
    out.assert_code(1);
    let report = json(&out);
    let greeting = task(&report, "greeting");
    assert_eq!(greeting["status"], "failed");
    assert_eq!(
        greeting["message"],
        format!("/srv/greeting.txt says \"{wa}\", expected \"{wb}\"")
    );

    // With another course secret than the lab was started with, the check
    // refuses rather than expect values the learner was never given.
    let out = t
        .command_with(&["exercise", "check", "--lab", &bob])
        .env("LABRUN_COURSE_SECRET", "another-course-secret")
        .output()
        .unwrap();
    let out: Output = out.into();
    out.assert_code(2)
        .assert_stderr_contains("not what the course secret gives learner bob");

    for lab in [&alice, &bob] {
        t.run_with(&["destroy", "--lab", lab]).assert_code(0);
    }
}

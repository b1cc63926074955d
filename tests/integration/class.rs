//! Classes end to end: a class of three on the local provider with the
//! shipped exercise (brought up, killed halfway and brought up again, one
//! learner solved, one half done by hand, one untouched, graded into CSV,
//! JSON and HTML that a real browser loads, then removed); a class of
//! thirty on the EC2 emulator (one learner's setup broken and retried,
//! throttled launches, status, grade, down, nothing left tagged); bad
//! input. Local labs cost 20-60 s each here, so there are three.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::aws::{Fault, FaultProxy, Moto, REGION, on_aws};
use crate::exercise::{Cleanup, SHIPPED, labelled, statuses};
use crate::harness::{Test, field_pairs};

const SECRET: &str = "course-secret-for-the-class-tests";
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/class-ec2");

/// A class name no other test (or earlier run) uses: at most 24 characters.
fn unique_class(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{}-{}",
        std::process::id() % 100_000,
        nanos % 100_000
    )
}

fn class_dir(t: &Test, class: &str) -> PathBuf {
    t.state_dir().join("classes").join(class)
}

fn class_json(t: &Test, class: &str) -> Value {
    let path = class_dir(t, class).join("class.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("class.json"))
        .expect("class.json is JSON")
}

/// Learner id → state, from class.json.
fn states(t: &Test, class: &str) -> Vec<(String, String)> {
    field_pairs(&class_json(t, class)["learners"], "id", "state")
}

/// CSV read by hand (quoted fields, doubled quotes, line breaks inside).
fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "the CSV ends mid-row"
    );
    rows
}

/// The CSV's rows as maps from header to field, by the `learner` column.
fn csv_by_learner(path: &Path) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    let rows = read_csv(path);
    let header = rows[0].clone();
    rows[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), header.len(), "{r:?} against {header:?}");
            let map: std::collections::BTreeMap<String, String> =
                header.iter().cloned().zip(r.iter().cloned()).collect();
            (map["learner"].clone(), map)
        })
        .collect()
}

/// The gradebook's result object of `learner`.
fn result<'a>(book: &'a Value, learner: &str) -> &'a Value {
    book["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["learner"] == learner)
        .unwrap_or_else(|| panic!("no result for {learner}"))
}

/// Containers labelled for `lab`, by id.
fn containers(lab: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--no-trunc", "--filter"])
        .arg(format!("label=labrun.lab={lab}"))
        .output()
        .expect("docker CLI");
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

/// One grid cell of the HTML gradebook as the browser has it.
#[derive(Debug)]
struct DomCell {
    learner: String,
    task: String,
    status: String,
    class: String,
    title: Option<String>,
    text: String,
}

/// What Chromium serialises in text and attributes, decoded.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Loads `page` in headless Chromium (Debian's `chromium`) and returns the
/// DOM it built, serialised.
fn browser_dom(page: &Path) -> String {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "the HTML gradebook is checked in a real browser: Debian's chromium (/usr/bin/chromium) \
         is missing; run `bash scripts/setup.sh` (ensure_chromium) or `apt-get install chromium`"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium did not load {}:\n{}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The grid's cells (learner × task) and each learner's score cell.
fn grid(dom: &str) -> (Vec<DomCell>, Vec<(String, String)>) {
    let vdom = tl::parse(dom, tl::ParserOptions::default()).expect("the DOM parses");
    let parser = vdom.parser();
    let attr = |tag: &tl::HTMLTag, name: &str| -> Option<String> {
        tag.attributes()
            .get(name)
            .flatten()
            .map(|b| unescape(&b.as_utf8_str()))
    };
    let mut cells = Vec::new();
    let mut scores = Vec::new();
    for node in vdom.nodes() {
        let Some(tr) = node.as_tag() else { continue };
        if tr.name().as_utf8_str() != "tr" {
            continue;
        }
        let Some(learner) = attr(tr, "data-learner") else {
            continue;
        };
        for child in tr.children().top().iter() {
            let Some(td) = child.get(parser).and_then(|n| n.as_tag()) else {
                continue;
            };
            if td.name().as_utf8_str() != "td" {
                continue;
            }
            let text = unescape(&td.inner_text(parser));
            let class = attr(td, "class").unwrap_or_default();
            if let Some(task) = attr(td, "data-task") {
                cells.push(DomCell {
                    learner: learner.clone(),
                    task,
                    status: attr(td, "data-status").unwrap_or_default(),
                    class,
                    title: attr(td, "title"),
                    text,
                });
            } else if class.split(' ').any(|c| c == "score") {
                scores.push((learner.clone(), text));
            }
        }
    }
    (cells, scores)
}

/// Waits until `f` gives something, or panics naming `what`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_class_of_three_comes_up_after_a_kill_is_graded_full_partial_zero_and_removed() {
    let t = Test::new()
        .env("LABRUN_COURSE_SECRET", SECRET)
        .file(
            "roster.csv",
            "id,name,email\nana,\"Silva, Ana\",ana@example.org\nbo,=Bo,\ncy,Cy <cy@example.org>,cy@example.org\n",
        );
    let class = unique_class("k");
    let labs: Vec<String> = ["ana", "bo", "cy"]
        .iter()
        .map(|l| format!("{class}.{l}"))
        .collect();
    let _cleanup = Cleanup(labs.clone());
    let up = |parallel: &str| -> Vec<String> {
        [
            "class",
            "up",
            SHIPPED,
            "--roster",
            "roster.csv",
            "--name",
            &class,
            "--parallel",
            parallel,
            "--output",
            "plain",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // One lab at a time; killed (SIGKILL) once the first is up.
    let started = Instant::now();
    let log = t.dir().join("first-up.log");
    let mut child = t
        .command_with(&up("1"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("labrun starts");
    wait_for(
        "the first lab up and the second one starting",
        Duration::from_secs(400),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "class up ended ({status}) before it was killed:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // Killed while the second lab is half made.
            let path = class_dir(&t, &class).join("class.json");
            if !path.exists() {
                return None;
            }
            let now = states(&t, &class);
            let count = |state: &str| now.iter().filter(|(_, s)| s == state).count();
            (count("up") == 1 && count("starting") == 1).then_some(())
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let first_up = started.elapsed();
    let after_kill = states(&t, &class);
    let up_first: Vec<&String> = after_kill
        .iter()
        .filter(|(_, s)| s == "up")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(up_first.len(), 1, "{after_kill:?}");
    assert_eq!(
        after_kill.iter().filter(|(_, s)| s == "starting").count(),
        1,
        "{after_kill:?}"
    );
    let first_lab = format!("{class}.{}", up_first[0]);
    let first_containers = containers(&first_lab);
    // Two instances, each with the holder of its network namespace.
    assert_eq!(first_containers.len(), 4, "{first_lab}");

    // Again: it continues where it was killed and makes nothing twice.
    let resumed_at = Instant::now();
    let mut again = up("2");
    again.extend(["--ttl".to_string(), "2h".to_string()]);
    let out = t.run_with(&again);
    out.assert_code(0)
        .assert_stderr_contains("(1 already up)")
        .assert_stdout_contains(&format!("class {class}: 3 of 3 labs up; access sheet"));
    eprintln!(
        "timing: first lab up (and the second half made) in {first_up:?}, then killed; the other two, 2 at a time, in {:?}",
        resumed_at.elapsed()
    );
    assert!(
        !out.stderr
            .contains(&format!("{}  up {first_lab}", up_first[0])),
        "the lab that was up is left alone:\n{}",
        out.stderr
    );
    assert!(states(&t, &class).iter().all(|(_, s)| s == "up"));
    for lab in &labs {
        assert_eq!(
            containers(lab).len(),
            4,
            "lab {lab}: exactly its two instances and their holders"
        );
    }
    assert_eq!(
        containers(&first_lab),
        first_containers,
        "the first lab was not remade"
    );

    // Each learner has their own parameters.
    let params: Vec<Value> = labs
        .iter()
        .map(|lab| {
            let text = std::fs::read_to_string(t.lab_dir(lab).join("exercise.json")).unwrap();
            serde_json::from_str::<Value>(&text).unwrap()["params"].clone()
        })
        .collect();
    for key in ["db_name", "db_user"] {
        let values: std::collections::BTreeSet<&str> =
            params.iter().map(|p| p[key].as_str().unwrap()).collect();
        assert_eq!(values.len(), 3, "{key}: {params:?}");
        assert!(!values.contains("testing_123") && !values.contains("remote_user"));
    }

    // The access sheet: a row per learner and instance; each learner's
    // handout gets them in with OpenSSH, checking the host key it gives.
    let dir = class_dir(&t, &class);
    let sheet = csv_by_learner(&dir.join("access.csv"));
    assert_eq!(sheet.len(), 6, "{sheet:?}");
    let ana_rows: Vec<_> = sheet.iter().filter(|(l, _)| l == "ana").collect();
    assert_eq!(ana_rows.len(), 2);
    assert_eq!(ana_rows[0].1["name"], "Silva, Ana");
    assert_eq!(ana_rows[0].1["host"], "127.0.0.1");
    assert_eq!(
        sheet.iter().find(|(l, _)| l == "bo").unwrap().1["name"],
        "'=Bo"
    );
    let handout_path = dir.join("access").join("ana.txt");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&handout_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let handout = std::fs::read_to_string(&handout_path).unwrap();
    let key = &handout[handout
        .find("-----BEGIN OPENSSH PRIVATE KEY-----")
        .expect("a key")..];
    let key_file = t.dir().join("ana.key");
    std::fs::write(&key_file, key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let known: String = handout
        .lines()
        .filter(|l| l.starts_with("[127.0.0.1]:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(known.lines().count(), 2, "{handout}");
    std::fs::write(t.dir().join("known_hosts"), known).unwrap();
    let command = handout
        .lines()
        .find(|l| l.trim_end().ends_with("# mysql-server"))
        .unwrap_or_else(|| panic!("{handout}"));
    let words: Vec<&str> = command
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(words[..3], ["ssh", "-i", "ana.key"], "{command}");
    let ssh = Command::new("ssh")
        .args(&words[1..words.len() - 1])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "UserKnownHostsFile=known_hosts",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg(words[words.len() - 1])
        .arg("hostname")
        .current_dir(t.dir())
        .output()
        .unwrap();
    assert!(
        ssh.status.success(),
        "the handout's ssh command: {}",
        String::from_utf8_lossy(&ssh.stderr)
    );
    assert!(dir.join("access").join("ana.md").exists());

    // status: a line per learner, from what the engine has now.
    let status = t.run_with(&["class", "status", &class, "--output", "json"]);
    status.assert_code(0);
    let doc = &status.events()[0];
    assert_eq!(doc["event"], "class_status");
    let c = &doc["classes"][0];
    assert_eq!(
        c["expires_at"].as_u64(),
        Some(c["created_at"].as_u64().unwrap() + 7200)
    );
    for l in c["learners"].as_array().unwrap() {
        assert_eq!(l["state"], "up", "{l}");
        let running = l["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["state"] == "running")
            .count();
        assert_eq!(running, 2, "{l}");
    }
    let text = t.run_with(&["class", "status", &class]);
    text.assert_code(0);
    for lab in &labs {
        let line = text
            .stdout
            .lines()
            .find(|l| l.contains(lab.as_str()))
            .unwrap_or_else(|| panic!("{}", text.stdout));
        assert!(
            line.contains("up") && line.contains("2 running") && line.contains("left"),
            "{line}"
        );
    }

    // ana: solved. bo: two tasks by hand. cy: nothing.
    t.run_with(&["exercise", "solve", "--class", &class, "--learner", "ana"])
        .assert_code(0);
    t.run_with(&[
        "sg",
        "allow",
        "mysql-server-sg",
        "--port",
        "3306",
        "--from",
        "mysql-client",
        "--class",
        &class,
        "--learner",
        "bo",
    ])
    .assert_code(0);
    t.run_with(&[
        "ssh",
        "mysql-client",
        "--class",
        &class,
        "--learner",
        "bo",
        "--",
        "sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-client >/dev/null",
    ])
    .assert_code(0);

    let graded_at = Instant::now();
    let grade = t.run_with(&["class", "grade", &class, "--output", "plain"]);
    grade.assert_code(0);
    eprintln!("timing: grading 3 learners took {:?}", graded_at.elapsed());
    let summary = |learner: &str| -> String {
        grade
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{learner} ")))
            .unwrap_or_else(|| panic!("{}", grade.stdout))
            .to_string()
    };
    assert!(summary("ana").contains("15/15") && summary("ana").ends_with("all tasks passed"));
    assert!(summary("bo").contains("3/15"), "{}", summary("bo"));
    assert!(summary("cy").contains("0/15"), "{}", summary("cy"));
    grade.assert_stdout_contains("3 learner(s) graded, average 6/15");

    // CSV: one row per learner, a column per task, total and maximum.
    let csv = csv_by_learner(&dir.join("gradebook.csv"));
    let header = &read_csv(&dir.join("gradebook.csv"))[0];
    let tasks = [
        "firewall",
        "server-running",
        "bind-address",
        "secure-installation",
        "database",
        "remote-user",
        "client-installed",
        "remote-query",
    ];
    assert_eq!(header[5..13], tasks);
    assert_eq!(header[13..], ["total", "max", "error"]);
    let row = |l: &str| csv.iter().find(|(id, _)| id == l).unwrap().1.clone();
    assert_eq!(
        (row("ana")["total"].as_str(), row("ana")["max"].as_str()),
        ("15", "15")
    );
    assert_eq!(row("bo")["total"], "3");
    assert_eq!(row("cy")["total"], "0");
    assert_eq!(row("bo")["name"], "'=Bo", "a formula is defused");
    for l in ["ana", "bo", "cy"] {
        assert_eq!(row(l)["status"], "graded");
    }
    assert_eq!(row("bo")["bind-address"], "0");
    assert_ne!(row("bo")["firewall"], "0");
    assert_ne!(row("bo")["client-installed"], "0");

    // JSON: the result objects, as `exercise check --output json` has them.
    let book: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gradebook.json")).unwrap())
            .unwrap();
    assert_eq!(book["max_score"], 15);
    assert_eq!(result(&book, "ana")["score"], 15);
    assert!(
        statuses(result(&book, "ana"))
            .iter()
            .all(|(_, s)| s == "passed")
    );
    assert_eq!(result(&book, "bo")["score"], 3);
    let bo_passed: Vec<String> = statuses(result(&book, "bo"))
        .into_iter()
        .filter(|(_, s)| s == "passed")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(bo_passed, ["firewall", "client-installed"]);
    assert_eq!(result(&book, "cy")["score"], 0);
    assert!(
        statuses(result(&book, "cy"))
            .iter()
            .all(|(_, s)| s == "failed")
    );
    for r in book["results"].as_array().unwrap() {
        assert_eq!(r["exercise"], "mysql_client_server");
        assert_eq!(r["max_score"], 15);
    }

    // HTML: a real browser loads it; the grid's cells are the results.
    let dom = browser_dom(&dir.join("gradebook.html"));
    let (cells, scores) = grid(&dom);
    assert_eq!(cells.len(), 3 * 8, "{cells:#?}");
    for c in &cells {
        let expected = statuses(result(&book, &c.learner))
            .into_iter()
            .find(|(id, _)| *id == c.task)
            .unwrap()
            .1;
        assert_eq!(c.status, expected, "{c:?}");
        assert!(c.class.split(' ').any(|k| k == expected), "{c:?}");
        let task = result(&book, &c.learner)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == c.task.as_str())
            .unwrap()
            .clone();
        if expected == "passed" {
            assert_eq!(
                c.text,
                format!("{}/{}", task["max_points"], task["max_points"]),
                "{c:?}"
            );
        } else {
            // The failure message on hover, exactly as the check said it.
            assert_eq!(c.title.as_deref(), task["message"].as_str(), "{c:?}");
            assert!(c.text.starts_with("0/"), "{c:?}");
        }
    }
    assert_eq!(
        scores,
        [
            ("ana".to_string(), "15/15".to_string()),
            ("bo".to_string(), "3/15".to_string()),
            ("cy".to_string(), "0/15".to_string())
        ]
    );
    assert!(
        dom.contains("Cy &lt;cy@example.org&gt;"),
        "a name's markup is text"
    );

    // No secret anywhere: the course secret, the labs' passwords.
    let mut everything = format!("{}{}", out.all(), grade.all());
    for f in ["gradebook.csv", "gradebook.json", "gradebook.html"] {
        everything.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
    }
    assert!(!everything.contains(SECRET), "the course secret leaked");
    for lab in &labs {
        for v in t.secrets(lab).values() {
            assert!(
                !everything.contains(v.as_str().unwrap()),
                "a lab secret leaked"
            );
        }
    }

    // cy's lab is gone: cy is an error with the reason, not a zero.
    t.run_with(&["destroy", "--lab", &labs[2]]).assert_code(0);
    let regrade = t.run_with(&["class", "grade", &class, "--output", "plain"]);
    regrade
        .assert_code(1)
        .assert_stderr_contains("1 of 3 learners could not be graded")
        .assert_stdout_contains("2 learner(s) graded, average 9/15; 1 could not be graded (ERROR)");
    let csv = csv_by_learner(&dir.join("gradebook.csv"));
    let cy = &csv.iter().find(|(id, _)| id == "cy").unwrap().1;
    assert_eq!(cy["status"], "error");
    assert_eq!(cy["total"], "");
    assert_eq!(cy["firewall"], "error");
    assert!(
        cy["error"].contains("has nothing left (destroyed?)"),
        "{cy:?}"
    );
    let book: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gradebook.json")).unwrap())
            .unwrap();
    assert_eq!(result(&book, "cy")["score"], Value::Null);
    assert!(
        result(&book, "cy")["error"]
            .as_str()
            .unwrap()
            .contains("has nothing left")
    );
    assert_eq!(result(&book, "ana")["score"], 15);

    // down: nothing labelled is left, and down again is harmless.
    t.run_with(&["class", "down", &class])
        .assert_code(0)
        .assert_stdout_contains(&format!("class {class}: 3 of 3 learners' labs removed"));
    for lab in &labs {
        assert_eq!(labelled(lab), "", "lab {lab} left something");
    }
    assert!(states(&t, &class).iter().all(|(_, s)| s == "down"));
    assert!(
        !dir.join("access").join("ana.txt").exists(),
        "no key handed out any more"
    );
    t.run_with(&["class", "down", &class]).assert_code(0);
}

/// A copy of the EC2 fixture the test may edit.
fn fixture_copy(t: &Test) -> PathBuf {
    let dir = t.dir().join("ec2_class");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "exercise.toml",
        "README.md",
        "setup.rhai",
        "checks.rhai",
        "solve.rhai",
    ] {
        std::fs::copy(Path::new(FIXTURE).join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn a_class_of_thirty_on_the_emulator_survives_throttling_and_a_broken_learner_and_leaves_nothing() {
    let moto = Moto::start();
    // Launches throttled ten times over, as a busy account answers them.
    let proxy = FaultProxy::start(&moto.url, Fault::throttled_launches(10));
    let mut roster = String::from("id,name\n");
    let ids: Vec<String> = (1..30)
        .map(|i| format!("l{i:02}"))
        .chain(["broken1".to_string()])
        .collect();
    for id in &ids {
        roster.push_str(&format!("{id},Learner {id}\n"));
    }
    let t = on_aws(Test::new(), &proxy.url)
        .env("LABRUN_COURSE_SECRET", SECRET)
        .file("roster.csv", &roster);
    let ex = fixture_copy(&t);
    let ex = ex.to_str().unwrap();
    let up = [
        "class",
        "up",
        ex,
        "--roster",
        "roster.csv",
        "--provider",
        "aws",
        "--name",
        "big",
        "--parallel",
        "10",
        "--ttl",
        "1h",
        "--output",
        "plain",
    ];

    let first_at = Instant::now();
    let first = t.run_with(&up);
    let first_time = first_at.elapsed();
    first
        .assert_code(1)
        .assert_stderr_contains("1 of 30 learners' labs did not come up")
        .assert_stderr_contains("  broken1: ")
        .assert_stderr_contains("this learner's setup breaks")
        .assert_stdout_contains("class big: 29 of 30 labs up");
    assert!(
        proxy.faults.load(std::sync::atomic::Ordering::SeqCst) >= 10,
        "launches were throttled"
    );
    let after = states(&t, "big");
    assert_eq!(after.iter().filter(|(_, s)| s == "up").count(), 29);
    assert_eq!(
        after.iter().find(|(id, _)| id == "broken1").unwrap().1,
        "failed"
    );
    // Every live labrun instance, by lab, in one query.
    let by_lab = || -> std::collections::BTreeMap<String, Vec<String>> {
        let v = moto.query(
            REGION,
            "out = {}\n\
             for r in ec2.describe_instances(Filters=[{'Name': 'tag-key', 'Values': ['labrun:lab']}] + LIVE)['Reservations']:\n\
             \x20   for i in r['Instances']:\n\
             \x20       lab = [t['Value'] for t in i['Tags'] if t['Key'] == 'labrun:lab'][0]\n\
             \x20       out.setdefault(lab, []).append(i['InstanceId'])",
        );
        serde_json::from_value(v).unwrap()
    };
    let instance_ids =
        |lab: &str| -> Vec<String> { by_lab().get(lab).cloned().unwrap_or_default() };
    let before = by_lab();
    assert_eq!(before.len(), 29, "{before:?}");
    for id in &ids[..29] {
        assert_eq!(
            before[&format!("big.{id}")].len(),
            1,
            "learner {id}: exactly one instance"
        );
    }
    assert!(instance_ids("big.broken1").is_empty());

    // The instructor fixes the setup; `up` again brings up only the learner
    // that failed.
    let setup = Path::new(ex).join("setup.rhai");
    let text = std::fs::read_to_string(&setup).unwrap();
    let start = text.find("if learner().starts_with(\"broken\")").unwrap();
    let end = start + text[start..].find("\n}\n").unwrap() + 3;
    std::fs::write(&setup, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let retried_at = Instant::now();
    let second = t.run_with(&up);
    let retried = retried_at.elapsed();
    second
        .assert_code(0)
        .assert_stderr_contains("(29 already up)")
        .assert_stderr_contains("exercise ec2_class changed since class big was first brought up")
        .assert_stdout_contains("class big: 30 of 30 labs up");
    eprintln!(
        "timing: 30 labs on the emulator, 10 at a time: {first_time:?} (29 up), then {retried:?} \
         for the one retried"
    );
    let after = by_lab();
    assert_eq!(after.len(), 30);
    for (lab, list) in &before {
        assert_eq!(&after[lab], list, "lab {lab}: nothing made twice");
    }
    assert_eq!(after["big.broken1"].len(), 1);

    // status, with the TTL.
    let status = t.run_with(&["class", "status", "big", "--output", "json"]);
    status.assert_code(0);
    let c = &status.events()[0]["classes"][0];
    assert_eq!(c["learners"].as_array().unwrap().len(), 30);
    assert_eq!(
        c["expires_at"].as_u64(),
        Some(c["created_at"].as_u64().unwrap() + 3600)
    );
    assert_eq!(c["expired"], false);
    for l in c["learners"].as_array().unwrap() {
        assert_eq!(l["state"], "up", "{l}");
        assert_eq!(l["recorded_instances"], 1, "{l}");
    }
    t.run_with(&["class", "status", "big"])
        .assert_code(0)
        .assert_stdout_contains("ttl 1h (");

    // One learner does their task; grading runs all thirty.
    let p: Value = serde_json::from_str(
        &std::fs::read_to_string(t.lab_dir("big.l07").join("exercise.json")).unwrap(),
    )
    .unwrap();
    let port = p["params"]["web_port"].as_i64().unwrap().to_string();
    t.run_with(&[
        "sg",
        "allow",
        "web-sg",
        "--port",
        &port,
        "--from",
        "0.0.0.0/0",
        "--class",
        "big",
        "--learner",
        "l07",
    ])
    .assert_code(0);
    let graded_at = Instant::now();
    let grade = t.run_with(&["class", "grade", "big", "--output", "json"]);
    grade.assert_code(0);
    eprintln!(
        "timing: grading 30 learners on the emulator took {:?}",
        graded_at.elapsed()
    );
    let events = grade.events();
    let book = events.last().unwrap();
    assert_eq!(book["event"], "gradebook");
    assert_eq!(book["results"].as_array().unwrap().len(), 30);
    assert_eq!(result(book, "l07")["score"], 3);
    assert_eq!(result(book, "l08")["score"], 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "learner_finished")
            .count(),
        30
    );

    // Not expired yet: --expired leaves it.
    t.run_with(&["class", "down", "big", "--expired"])
        .assert_code(0)
        .assert_stderr_contains("class big has not expired");
    assert_eq!(instance_ids("big.l01").len(), 1);

    t.run_with(&["class", "down", "big"])
        .assert_code(0)
        .assert_stdout_contains("class big: 30 of 30 learners' labs removed");
    let left = moto.query(
        REGION,
        "tagged = [{'Name': 'tag-key', 'Values': ['labrun:lab']}]\n\
         out = {'instances': [i['InstanceId'] for r in ec2.describe_instances(Filters=tagged + LIVE)['Reservations'] for i in r['Instances']],\n\
                'groups': [g['GroupId'] for g in ec2.describe_security_groups(Filters=tagged)['SecurityGroups']],\n\
                'keys': [k['KeyName'] for k in ec2.describe_key_pairs(Filters=tagged)['KeyPairs']]}",
    );
    assert_eq!(
        left,
        serde_json::json!({"instances": [], "groups": [], "keys": []}),
        "nothing tagged is left"
    );
}

#[test]
fn a_learner_throttled_past_the_providers_retries_is_tried_again() {
    let moto = Moto::start();
    // More throttled launches in a row than the provider tries (6).
    let proxy = FaultProxy::start(&moto.url, Fault::throttled_launches(8));
    let t = on_aws(Test::new(), &proxy.url).file("roster.csv", "id\nsolo\n");
    let ex = fixture_copy(&t);
    let out = t.run_with(&[
        "class",
        "up",
        ex.to_str().unwrap(),
        "--roster",
        "roster.csv",
        "--provider",
        "aws",
        "--name",
        "busy",
        "--output",
        "plain",
    ]);
    out.assert_code(0)
        .assert_stdout_contains("class busy: 1 of 1 labs up");
    assert!(proxy.faults.load(std::sync::atomic::Ordering::SeqCst) > 8);
    let log = std::fs::read_to_string(class_dir(&t, "busy").join("logs/solo.log")).unwrap();
    assert!(
        log.contains(
            "the cloud API is throttling requests (RequestLimitExceeded); trying again in"
        ),
        "{log}"
    );
    assert_eq!(
        moto.instances(REGION, "busy.solo").len(),
        1,
        "launched once"
    );
    t.run_with(&["class", "down", "busy"]).assert_code(0);
    assert!(moto.instances(REGION, "busy.solo").is_empty());
}

#[test]
fn class_bad_input_is_refused_with_clear_messages() {
    let t = Test::new()
        .file("dup.csv", "id,name\nana,A\nbo,B\nAna,C\n")
        .file("bad.csv", "id\nana\nnot ok\n")
        .file("noid.csv", "name,email\nAna,a@x\n")
        .file("roster.csv", "id\nana\nbo\n")
        .file("other.csv", "id\nana\ncy\n");
    // An exercise whose setup makes nothing: no engine needed.
    t.run_with(&["exercise", "new", "quiet"]).assert_code(0);
    std::fs::write(t.dir().join("quiet/setup.rhai"), "let p = params();\n").unwrap();
    let quiet = t.dir().join("quiet").display().to_string();

    t.run_with(&["class", "up", &quiet, "--roster", "dup.csv"])
        .assert_code(2)
        .assert_stderr_contains("line 4: learner 'Ana' is listed twice (as 'ana' on line 2)");
    t.run_with(&["class", "up", &quiet, "--roster", "bad.csv"])
        .assert_code(2)
        .assert_stderr_contains("line 3: learner id 'not ok' is not valid");
    t.run_with(&["class", "up", &quiet, "--roster", "noid.csv"])
        .assert_code(2)
        .assert_stderr_contains("has no `id` column");
    t.run_with(&["class", "up", &quiet, "--roster", "missing.csv"])
        .assert_code(2)
        .assert_stderr_contains("cannot read roster missing.csv");
    t.run_with(&[
        "class",
        "up",
        &quiet,
        "--roster",
        "roster.csv",
        "--ttl",
        "4w",
    ])
    .assert_code(2)
    .assert_stderr_contains("--ttl '4w': 'w' is not a unit");
    t.run_with(&[
        "class",
        "up",
        &quiet,
        "--roster",
        "roster.csv",
        "--name",
        "a.b",
    ])
    .assert_code(2)
    .assert_stderr_contains("class name 'a.b'");
    // An exercise that does not validate: nothing is made.
    t.run_with(&["exercise", "new", "broken"]).assert_code(0);
    let solve = t.dir().join("broken/solve.rhai");
    let text = std::fs::read_to_string(&solve).unwrap();
    std::fs::write(&solve, text + "\nsolution(\"nope\", || {});\n").unwrap();
    let broken = t.run_with(&["class", "up", "broken", "--roster", "roster.csv"]);
    broken
        .assert_code(2)
        .assert_stderr_contains("solution('nope') solves no task")
        .assert_stderr_contains("does not validate; fix it before bringing a class up");
    assert!(!t.state_dir().join("classes").join("broken").exists());

    // A class of two, then its name with another roster or exercise.
    let out = t.run_with(&[
        "class",
        "up",
        &quiet,
        "--roster",
        "roster.csv",
        "--name",
        "wk1",
    ]);
    out.assert_code(0)
        .assert_stderr_contains("no course secret")
        .assert_stdout_contains("class wk1: 2 of 2 labs up");
    assert_eq!(
        states(&t, "wk1"),
        [
            ("ana".to_string(), "up".to_string()),
            ("bo".to_string(), "up".to_string())
        ]
    );
    t.run_with(&[
        "class",
        "up",
        &quiet,
        "--roster",
        "other.csv",
        "--name",
        "wk1",
    ])
    .assert_code(2)
    .assert_stderr_contains("class 'wk1' is in use with another roster")
    .assert_stderr_contains("this roster adds cy and leaves out bo");
    t.run_with(&["exercise", "new", "other"]).assert_code(0);
    t.run_with(&[
        "class",
        "up",
        "other",
        "--roster",
        "roster.csv",
        "--name",
        "wk1",
    ])
    .assert_code(2)
    .assert_stderr_contains("class 'wk1' is in use by exercise 'quiet'");

    // --class on the lab commands.
    t.run_with(&["ssh", "box", "--class", "nope", "--learner", "ana"])
        .assert_code(2)
        .assert_stderr_contains("no class named 'nope'");
    t.run_with(&["ssh", "box", "--class", "wk1"])
        .assert_code(2)
        .assert_stderr_contains("--class wk1 needs --learner ID");
    t.run_with(&["exercise", "check", "--class", "wk1", "--learner", "zed"])
        .assert_code(2)
        .assert_stderr_contains("learner 'zed' is not on class wk1's roster (learners: ana, bo)");
    t.run_with(&[
        "sg",
        "list",
        "--class",
        "wk1",
        "--learner",
        "ana",
        "--lab",
        "x",
    ])
    .assert_code(2)
    .assert_stderr_contains("give one");
    t.run_with(&["exercise", "test", &quiet, "--class", "wk1"])
        .assert_code(2)
        .assert_stderr_contains("`exercise test` runs in a lab of its own");
    t.run_with(&["class", "status", "nope"])
        .assert_code(2)
        .assert_stderr_contains("no class named 'nope'");
    t.run_with(&["class", "down", "--expired"])
        .assert_code(0)
        .assert_stderr_contains("no class has expired");
    t.run_with(&["class", "down", "wk1", "--expired"])
        .assert_code(0)
        .assert_stderr_contains("class wk1 has no TTL");

    // A TTL, then the class made to look two hours old: it has expired.
    t.run_with(&[
        "class",
        "up",
        &quiet,
        "--roster",
        "roster.csv",
        "--name",
        "wk1",
        "--ttl",
        "1h",
    ])
    .assert_code(0)
    .assert_stdout_contains("TTL 1h (");
    let path = class_dir(&t, "wk1").join("class.json");
    let mut state = class_json(&t, "wk1");
    state["created_at"] = (state["created_at"].as_u64().unwrap() - 7200).into();
    std::fs::write(&path, state.to_string()).unwrap();
    t.run_with(&["class", "status", "wk1"])
        .assert_code(0)
        .assert_stdout_contains("ttl 1h (expired 1h ago)");
    t.run_with(&["class", "down", "--expired"])
        .assert_code(0)
        .assert_stdout_contains("class wk1: 2 of 2 learners' labs removed");
    assert!(states(&t, "wk1").iter().all(|(_, s)| s == "down"));
}

//! The shipped lab, end to end on the local provider.

use std::process::Command;

use crate::harness::{Cleanup, Test};

const PLAYBOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/mysql_client_server.rhai"
);

/// A third instance on the lab's network, used to probe the server.
const OUTSIDER: &str = r#"
let admin = sg::ensure(#{ name: "outsider-sg", description: "SSH from the operator" });
admin.allow(#{ port: 22, from: operator_cidr() });
let o = ec2::launch(#{ name: "outsider", security_groups: [admin] });
let server = ec2::find("mysql-server");
let s = ssh::connect(o);
let r = s.run(`nc -z -w 3 ${server.private_ip} 3306`, #{ check: false });
print(`PROBE code=${r.code}`);
"#;

/// What the server of a converged lab says it is, asked over the MySQL
/// protocol from the client, as the lab's remote user.
const FLAVOUR: &str = r#"
let server = ec2::find("mysql-server");
let client = ec2::find("mysql-client");
let db = mysql::connect(#{ host: server.private_ip, user: "remote_user",
    password: secret("mysql_user_password"), via: ssh::connect(client) });
let v = db.server();
print(`FLAVOUR ${v.flavor} ${v.version}`);
print(`DATABASES ${db.query("SHOW DATABASES").map(|r| r.Database)}`);
db.close();
"#;

/// The (flavour, version) line FLAVOUR printed.
fn flavour(t: &Test, lab: &str) -> (String, String) {
    let out = t.run_with(&["flavour.rhai", "--lab", lab]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("DATABASES [") && out.stderr.contains("\"testing_123\""),
        "{}",
        out.stderr
    );
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("FLAVOUR "))
        .unwrap_or_else(|| panic!("no FLAVOUR line:\n{}", out.stderr))
        .to_string();
    let (f, v) = line.split_once(' ').unwrap();
    (f.to_string(), v.to_string())
}

fn docker_out(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string()
}

fn instance_ids(t: &Test, lab: &str) -> Vec<String> {
    let text = std::fs::read_to_string(t.lab_dir(lab).join("ledger.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<String> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "instance")
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

fn labelled(lab: &str) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=labrun.lab={lab}"),
        ])
        .output()
        .expect("docker CLI");
    let nets = Command::new("docker")
        .args([
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=labrun.lab={lab}"),
        ])
        .output()
        .expect("docker CLI");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&nets.stdout).trim()
    )
}

#[test]
fn the_shipped_lab_works_converges_holds_and_cleans_up() {
    let lab = format!("e2e-lab-{}", std::process::id());
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new()
        .file("outsider.rhai", OUTSIDER)
        .file("flavour.rhai", FLAVOUR);
    let mut outputs = Vec::new();

    let first = t.run_with(&[PLAYBOOK, "--lab", &lab, "--output", "json"]);
    first.assert_code(0);
    let events = first.events();
    let show = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "SHOW DATABASES from mysql-client")
        .expect("the SHOW DATABASES step ran");
    assert_eq!(show["status"], "ok");
    let ids = instance_ids(&t, &lab);
    assert_eq!(ids.len(), 2);
    outputs.push(first);
    let (f, v) = flavour(&t, &lab);
    assert_eq!(f, "mariadb", "debian-12 has MariaDB {v}");
    assert!(v.starts_with("10.11."), "{v}");

    // A third instance on the same network is refused on 3306.
    let probe = t.run_with(&["outsider.rhai", "--lab", &lab]);
    probe.assert_code(0);
    assert!(
        probe.stderr.contains("PROBE code=1"),
        "the outsider reached 3306:\n{}",
        probe.stderr
    );
    outputs.push(probe);

    // A second run changes nothing and keeps the instances.
    let second = t.run_with(&[PLAYBOOK, "--lab", &lab, "--output", "json"]);
    second.assert_code(0);
    let end = second.events().pop().unwrap();
    assert_eq!(end["changed"], 0, "{}", second.stdout);
    assert_eq!(end["failed"], 0);
    let mut after = instance_ids(&t, &lab);
    after.retain(|id| ids.contains(id));
    assert_eq!(after, ids);
    outputs.push(second);

    // A database name MySQL rejects (a trailing space) fails the run with
    // the server's words, names the step, and the lab can still be destroyed.
    let bad = t.run_with(&[PLAYBOOK, "--lab", &lab, "--set", "db_name=bad name "]);
    bad.assert_code(1)
        .assert_stderr_contains("FAILED  create database and remote user")
        .assert_stderr_contains("ERROR 1102 (42000) at line 1: Incorrect database name 'bad name '")
        .assert_stderr_contains("in step 'create database and remote user'")
        .assert_stderr_contains(&format!(
            "`labrun destroy --lab {lab}` to remove what it created"
        ));
    outputs.push(bad);

    let ledger_before = std::fs::read_to_string(t.lab_dir(&lab).join("ledger.json")).unwrap();
    let destroy = t.run_with(&["destroy", "--lab", &lab]);
    destroy
        .assert_code(0)
        .assert_stderr_contains("forgot 3 pinned SSH host keys");
    outputs.push(destroy);
    let ledger = std::fs::read_to_string(t.lab_dir(&lab).join("ledger.json")).unwrap();
    let ledger: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    assert_eq!(
        ledger["host_keys"],
        serde_json::json!({}),
        "pins survived destroy"
    );
    assert_eq!(
        labelled(&lab),
        "",
        "something with the lab's label survived destroy"
    );

    // No secret value appears in anything labrun printed, nor in the ledger.
    let secrets = t.secrets(&lab);
    assert!(secrets.len() >= 2);
    for (name, v) in &secrets {
        assert!(
            !ledger_before.contains(v.as_str().unwrap()),
            "secret {name} is in the ledger"
        );
    }
    for out in &outputs {
        for (name, v) in &secrets {
            let v = v.as_str().unwrap();
            assert!(
                !out.all().contains(v),
                "secret {name} leaked:\n{}",
                out.all()
            );
        }
    }
}

const VARIANT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/mysql_two_clients.rhai"
);

/// The shipped variant proves its own claims (the playbook fails when the
/// other client gets through); this checks it ran them and cleans up.
#[test]
fn the_two_clients_variant_admits_only_the_allowed_client() {
    let lab = format!("e2e-two-{}", std::process::id());
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new();

    let run = t.run_with(&[VARIANT, "--lab", &lab, "--output", "json"]);
    run.assert_code(0);
    let events = run.events();
    for step in [
        "allowed-client lists the database",
        "other-client is refused",
    ] {
        let done = events
            .iter()
            .find(|e| e["event"] == "step_finished" && e["step"] == step)
            .unwrap_or_else(|| panic!("step {step:?} did not run:\n{}", run.stdout));
        assert_eq!(done["status"], "ok", "{}", run.stdout);
    }
    assert!(
        run.stdout
            .contains("other-client could not connect, as intended"),
        "{}",
        run.stdout
    );
    assert_eq!(instance_ids(&t, &lab).len(), 3);

    let destroy = t.run_with(&["destroy", "--lab", &lab]);
    destroy.assert_code(0);
    assert_eq!(labelled(&lab), "", "something survived destroy");
    for (name, v) in t.secrets(&lab) {
        let v = v.as_str().unwrap();
        for out in [&run, &destroy] {
            assert!(!out.all().contains(v), "secret {name} leaked");
        }
    }
}

/// The shipped lab on another image: it runs end to end, the server is the
/// flavour the image has, a second run changes nothing, the outsider is
/// refused, and a restart of the server brings MySQL back by itself
/// (systemd) with its group still enforced.
fn shipped_lab_on(image: &str, expect_flavour: &str, version_prefix: &str, unit: &str) {
    let lab = format!("e2e-{image}-{}", std::process::id());
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new()
        .file("outsider.rhai", OUTSIDER)
        .file("flavour.rhai", FLAVOUR);
    let image_arg = format!("image={image}");
    let first = t.run_with(&[
        PLAYBOOK, "--lab", &lab, "--set", &image_arg, "--output", "json",
    ]);
    first.assert_code(0);
    let (f, v) = flavour(&t, &lab);
    assert_eq!(f, expect_flavour, "{image}: {f} {v}");
    assert!(v.starts_with(version_prefix), "{image}: {v}");

    let second = t.run_with(&[
        PLAYBOOK, "--lab", &lab, "--set", &image_arg, "--output", "json",
    ]);
    second.assert_code(0);
    let end = second.events().pop().unwrap();
    assert_eq!(end["changed"], 0, "{image}: {}", second.stdout);
    assert_eq!(end["failed"], 0);

    let server = format!("labrun-{lab}.mysql-server");
    assert_eq!(
        docker_out(&["exec", &server, "systemctl", "is-enabled", unit]),
        "enabled"
    );
    if expect_flavour == "mysql" {
        // The tutorial's file, and validate_password at STRONG.
        let cnf = docker_out(&[
            "exec",
            &server,
            "grep",
            "^bind-address",
            "/etc/mysql/mysql.conf.d/mysqld.cnf",
        ]);
        assert!(cnf.ends_with("= 0.0.0.0"), "{cnf}");
        let policy = docker_out(&[
            "exec",
            &server,
            "mysql",
            "--defaults-extra-file=/root/.my.cnf",
            "-N",
            "-B",
            "-e",
            "SELECT @@GLOBAL.validate_password.policy",
        ]);
        assert_eq!(policy, "STRONG");
    }
    // Restart the server instance; no labrun run in between.
    docker_out(&["restart", "-t", "10", &server]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while docker_out(&["exec", &server, "systemctl", "is-active", unit]) != "active" {
        assert!(
            std::time::Instant::now() < deadline,
            "{image}: {unit} did not come back after a restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let probe = t.run_with(&["outsider.rhai", "--lab", &lab]);
    probe.assert_code(0);
    assert!(
        probe.stderr.contains("PROBE code=1"),
        "{image}: the outsider reached 3306 after a restart:\n{}",
        probe.stderr
    );
    assert_eq!(flavour(&t, &lab).0, expect_flavour);

    let destroy = t.run_with(&["destroy", "--lab", &lab]);
    destroy.assert_code(0);
    assert_eq!(labelled(&lab), "", "something survived destroy");
    for (name, v) in t.secrets(&lab) {
        let v = v.as_str().unwrap();
        for out in [&first, &second, &destroy] {
            assert!(!out.all().contains(v), "secret {name} leaked");
        }
    }
}

/// Debian 13: MariaDB 11.8.
#[test]
fn the_shipped_lab_on_debian_13_runs_mariadb_11() {
    shipped_lab_on("debian-13", "mariadb", "11.8.", "mariadb");
}

/// Debian sid: Oracle's MySQL, configured as the tutorial has it.
#[test]
fn the_shipped_lab_on_debian_sid_runs_mysql() {
    shipped_lab_on("debian-sid", "mysql", "9.", "mysql");
}

//! The shipped lab, end to end on the local provider.

use std::process::Command;

use crate::harness::Test;

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
    let t = Test::new().file("outsider.rhai", OUTSIDER);
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

//! The fault suite: faults injected into real runs of the shipped lab
//! (playbooks/mysql_client_server.rhai on the local provider) to prove that
//! labrun loses nothing and leaves nothing behind. `kill -9` at every step
//! boundary and at random points inside launch and install, sshd killed
//! mid-install, the engine frozen mid-launch (through a relay, never the
//! shared dockerd), an instance removed behind labrun's back, and hostile
//! input. After each: a clear error, a ledger that is valid JSON and names
//! what exists, a re-run that converges, `labrun destroy` leaving nothing
//! labelled, and no secret in anything labrun printed or wrote.
//!
//! The tests here economise (the step-boundary kills are one sequence on
//! one lab, each re-run converging the earlier steps fast); the `long_`
//! tests, run by `bash scripts/fault-suite.sh`, kill at every boundary from
//! scratch and at many random points, and the script prints the counts.
//! Random points come from LABRUN_FAULT_SEED when set (each test prints the
//! seed it used).

mod relay;
mod rig;

use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use rig::{
    Fault, FaultLab, Faulted, INSTALL, LAUNCH, STEPS, container, docker, labelled_containers,
    labelled_networks, runs_in, wait_for,
};

fn started(e: &Value, step: &str) -> bool {
    e["event"] == "step_started" && e["step"] == step
}

fn seeded(test: &str) -> StdRng {
    let seed = std::env::var("LABRUN_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: LABRUN_FAULT_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// Kills labrun as soon as `step` starts; it must not have ended first.
fn kill_at_boundary(lab: &mut FaultLab, step: &'static str) -> Faulted {
    let f = lab.run_faulted(&[], |e| {
        if started(e, step) {
            Fault::kill_now()
        } else {
            None
        }
    });
    assert!(
        f.killed,
        "labrun ended before step {step:?} started:\n{}",
        f.out.all()
    );
    assert_eq!(f.out.code, -1, "killed by a signal:\n{}", f.out.all());
    eprintln!(
        "{}: killed at the start of {step:?} (in {:?}, {:.1}s)",
        lab.lab,
        f.killed_in.as_deref().unwrap_or(""),
        f.took.as_secs_f64()
    );
    // Every step before it finished in this run, none failed.
    let finished = f.finished();
    let before = STEPS.iter().position(|s| *s == step).unwrap();
    for s in &STEPS[..before] {
        assert!(
            finished.iter().any(|(n, st)| n == s && st != "failed"),
            "step {s:?} did not finish before {step:?}:\n{}",
            f.out.all()
        );
    }
    f
}

/// Kills labrun at a random point inside `launch`: once a random number of
/// the lab's containers (holders, instances) exist, and a random few
/// milliseconds later.
fn kill_inside_launch(lab: &mut FaultLab, rng: &mut StdRng) -> Faulted {
    let containers = rng.random_range(0..=4usize);
    let extra = Duration::from_millis(rng.random_range(0..300));
    let name = lab.lab.clone();
    let f = lab.run_faulted(&[], move |e| {
        let name = name.clone();
        started(e, LAUNCH).then(|| {
            Fault::Inject(Box::new(move |k| {
                wait_for(k, "the lab's containers", || {
                    labelled_containers(&name).len() >= containers
                });
                std::thread::sleep(extra);
                k.kill()
            }))
        })
    });
    assert!(f.killed, "labrun was not killed:\n{}", f.out.all());
    eprintln!(
        "{}: killed with {containers} containers +{extra:?} (in {:?})",
        lab.lab,
        f.killed_in.as_deref().unwrap_or("")
    );
    f
}

/// Kills labrun a random 0-8 s into `install` (apt on both instances).
fn kill_inside_install(lab: &mut FaultLab, rng: &mut StdRng) -> Faulted {
    let after = Duration::from_millis(rng.random_range(0..8000));
    let f = lab.run_faulted(&[], move |e| {
        started(e, INSTALL).then_some(Fault::Kill(after))
    });
    assert!(f.killed, "labrun was not killed:\n{}", f.out.all());
    eprintln!(
        "{}: killed {after:?} into install (in {:?})",
        lab.lab,
        f.killed_in.as_deref().unwrap_or("")
    );
    f
}

/// Kills labrun a random 0-2 s after apt starts on the server (first
/// `apt-get update`, on a fresh instance), so that the re-run that follows
/// at once finds it still running.
fn kill_while_apt_runs(lab: &mut FaultLab, rng: &mut StdRng) -> Faulted {
    let after = Duration::from_millis(rng.random_range(0..2000));
    let server = container(&lab.lab, "mysql-server");
    let f = lab.run_faulted(&[], move |e| {
        let server = server.clone();
        started(e, INSTALL).then(|| {
            Fault::Inject(Box::new(move |k| {
                wait_for(k, "apt on mysql-server", || runs_in(&server, "apt-get"));
                std::thread::sleep(after);
                k.kill()
            }))
        })
    });
    assert!(f.killed, "labrun was not killed:\n{}", f.out.all());
    eprintln!(
        "{}: killed {after:?} after apt started (in {:?})",
        lab.lab,
        f.killed_in.as_deref().unwrap_or("")
    );
    f
}

/// Tries to give an account a grant with SQL in it, on the lab's server.
const GRANTS: &str = r#"
import "mysql_server" as mysqld;
let p = params(#{ grant: "SELECT ON testing_123.*" });
let srv = ssh::connect(ec2::find("mysql-server"));
mysqld::create_user(srv, #{ user: "fault_evil", password: secret("fault_evil_password"),
    host: "10.0.0.9", grants: [p.grant] });
"#;

/// What root sees on the lab's server (unix-socket login, from the host).
fn server_sql(lab: &str, sql: &str) -> String {
    let (ok, out) = docker(&[
        "exec",
        &container(lab, "mysql-server"),
        "mysql",
        "-N",
        "-B",
        "-e",
        sql,
    ]);
    assert!(ok, "{sql}: {out}");
    out.trim().to_string()
}

#[test]
fn kill_9_at_every_step_boundary_then_the_lab_converges_and_destroy_leaves_nothing() {
    let mut lab = FaultLab::new("kb");
    for step in STEPS {
        kill_at_boundary(&mut lab, step);
        lab.check_ledger();
    }
    let first = lab.converge();
    let steps: Vec<Value> = first
        .events()
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(|e| e["step"].clone())
        .collect();
    assert_eq!(
        steps, STEPS,
        "the shipped lab's steps changed: update STEPS"
    );

    // Grants with SQL in them, on the converged lab: refused naming the
    // value, and the server unchanged.
    std::fs::write(lab.t.dir().join("grants.rhai"), GRANTS).unwrap();
    let grants_rhai = lab.t.dir().join("grants.rhai").display().to_string();
    for grant in [
        "SELECT ON testing_123.*; DROP DATABASE testing_123",
        "SELECT\t;DROP DATABASE testing_123 ON testing_123.*",
        "ALL ON testing_123.* TO root; --",
    ] {
        let set = format!("grant={grant}");
        let lab_name = lab.lab.clone();
        let out = lab.run_args(&[&grants_rhai, "--lab", &lab_name, "--set", &set]);
        assert_eq!(out.code, 1, "{grant:?} was not refused:\n{}", out.all());
        assert!(
            out.stderr.contains(grant) || out.stderr.contains(&grant.replace('\t', "\\t")),
            "the error does not name {grant:?}:\n{}",
            out.stderr
        );
        lab.tally.faults += 1;
    }
    assert_eq!(
        server_sql(
            &lab.lab,
            "SELECT COUNT(*) FROM mysql.user WHERE user = 'fault_evil'"
        ),
        "0"
    );
    assert_eq!(
        server_sql(&lab.lab, "SHOW DATABASES LIKE 'testing_123'"),
        "testing_123"
    );

    lab.destroy_clean();
    lab.check_no_secret_leaked();
    lab.report("step boundaries");
}

#[test]
fn kill_9_at_random_points_inside_launch_and_install_leaves_nothing_behind() {
    let mut rng = seeded("random kills");
    let mut lab = FaultLab::new("kr");
    kill_inside_launch(&mut lab, &mut rng);
    lab.check_ledger();
    lab.destroy_clean();

    kill_while_apt_runs(&mut lab, &mut rng);
    lab.check_ledger();
    // apt still runs on the instances, holding its locks: the re-run waits
    // for them (an `apt-get update` holds the package lists' lock, which
    // apt's own DPkg::Lock::Timeout does not wait for).
    lab.converge();
    lab.destroy_clean();
    lab.check_no_secret_leaked();
    lab.report("random kills");
}

/// sshd killed on the server while apt runs there: the install fails
/// saying the connection was lost and that the instance still runs.
fn sshd_stopped_mid_install(how: &'static str, test: &str) {
    let mut lab = FaultLab::new("ss");
    let server = container(&lab.lab, "mysql-server");
    let f = lab.run_faulted(&[], move |e| {
        let server = server.clone();
        started(e, INSTALL).then(|| {
            Fault::Inject(Box::new(move |k| {
                let ready = wait_for(k, "apt on mysql-server", || {
                    runs_in(&server, "apt-get") || runs_in(&server, "dpkg")
                });
                if ready {
                    let (ok, out) = docker(&["exec", &server, "sh", "-c", how]);
                    assert!(ok, "{how}: {out}");
                }
                ready
            }))
        })
    });
    assert!(f.injected && !f.killed, "{}", f.out.all());
    assert_eq!(f.out.code, 1, "{}", f.out.all());
    let err = f.error();
    eprintln!("{}: {err}", lab.lab);
    for needle in [
        "connection lost while running `",
        "instance mysql-server (i-",
        "is still running: its sshd stopped?",
    ] {
        assert!(err.contains(needle), "missing {needle:?}: {err}");
    }
    assert!(
        f.finished().contains(&(INSTALL.into(), "failed".into())),
        "{}",
        f.out.all()
    );
    let ledger = lab.check_ledger();
    let instances = ledger["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "instance" && r["state"] == "created")
        .count();
    assert_eq!(instances, 2, "{ledger}");
    lab.destroy_clean();
    lab.check_no_secret_leaked();
    lab.report(test);
}

#[test]
fn sshd_killed_mid_install_is_a_clear_error_and_destroy_is_clean() {
    sshd_stopped_mid_install(
        "systemctl stop ssh.service ssh.socket 2>/dev/null; pkill -KILL -x sshd",
        "sshd killed",
    );
}

#[test]
fn a_frozen_engine_mid_launch_is_a_clear_error_and_destroy_is_clean() {
    let relay = relay::Relay::start();
    let host = relay.host();
    let mut lab = FaultLab::new("fe");
    lab.env("DOCKER_HOST", &host);
    lab.env("LABRUN_ENGINE_TIMEOUT", "10");
    let freezer = relay.freezer();
    let name = lab.lab.clone();
    let f = lab.run_faulted(&[], move |e| {
        let (freezer, name) = (freezer.clone(), name.clone());
        started(e, LAUNCH).then(|| {
            Fault::Inject(Box::new(move |k| {
                let ready = wait_for(k, "a container of the lab", || {
                    !labelled_containers(&name).is_empty()
                });
                freezer.store(ready, Ordering::SeqCst);
                ready
            }))
        })
    });
    assert!(relay.frozen(), "never froze:\n{}", f.out.all());
    assert!(!f.killed);
    assert_eq!(f.out.code, 1, "{}", f.out.all());
    let err = f.error();
    eprintln!("{}: {err}", lab.lab);
    assert!(
        err.contains(&format!(
            "the Docker engine at {host} did not answer within 10 s (is dockerd stopped, paused or hung?)"
        )),
        "{err}"
    );
    // The launch, unless it got done in the moment the freeze took (then
    // the next step's rule apply meets the frozen engine).
    assert!(
        [LAUNCH, STEPS[2]]
            .iter()
            .any(|s| f.finished().contains(&(s.to_string(), "failed".into()))),
        "{}",
        f.out.all()
    );
    eprintln!("{}: the frozen run failed after {:?}", lab.lab, f.took);
    lab.check_ledger();

    // destroy through the frozen engine: a clear error, the ledger intact.
    let lab_name = lab.lab.clone();
    let out = lab.run_args(&["destroy", "--lab", &lab_name]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stderr_contains(&format!(
        "cannot reach the Docker engine at {host}: the engine did not answer within 10 s \
         (dockerd stopped, paused or hung?)"
    ));
    lab.tally.faults += 1;
    lab.check_ledger();

    // The engine is back (the real one): destroy removes it all.
    lab.unset_env("DOCKER_HOST");
    lab.destroy_clean();
    lab.check_no_secret_leaked();
    lab.report("engine frozen");
}

#[test]
fn an_instance_removed_behind_labruns_back_is_a_clear_error_and_the_lab_recovers() {
    let mut lab = FaultLab::new("rm");
    let server = container(&lab.lab, "mysql-server");
    let f = lab.run_faulted(&[], move |e| {
        let server = server.clone();
        started(e, INSTALL).then(|| {
            Fault::Inject(Box::new(move |k| {
                let ready = wait_for(k, "apt on mysql-server", || {
                    runs_in(&server, "apt-get") || runs_in(&server, "dpkg")
                });
                if ready {
                    let (ok, out) = docker(&["rm", "-f", &server]);
                    assert!(ok, "docker rm -f {server}: {out}");
                }
                ready
            }))
        })
    });
    assert!(f.injected && !f.killed, "{}", f.out.all());
    assert_eq!(f.out.code, 1, "{}", f.out.all());
    let err = f.error();
    eprintln!("{}: {err}", lab.lab);
    assert!(
        err.contains("instance mysql-server (i-")
            && err.contains("no longer exists: removed outside labrun?"),
        "{err}"
    );
    lab.check_ledger();
    // A re-run launches it again and converges.
    lab.converge();
    lab.destroy_clean();
    lab.check_no_secret_leaked();
    lab.report("instance removed");
}

/// Small playbooks that take hostile values and would create things after.
const RULE: &str = r#"
let p = params(#{ from: "10.0.0.1/32", port: 3306 });
let g = sg::ensure(#{ name: "g" });
g.allow(#{ port: p.port, from: p.from });
ec2::launch(#{ name: "x", security_groups: [g] });
"#;
const TYPES: &str = r#"
let p = params(#{ rounds: 2, verbose: false, names: ["a"] });
sg::ensure(#{ name: "g" });
ec2::launch(#{ name: "x" });
"#;
const CREATE: &str = r#"
sg::ensure(#{ name: "g" });
ec2::launch(#{ name: "x" });
"#;
const SECRET_PARAM: &str = r#"
import "check" as check;
let p = params(#{ admin_password: "" }, #{ secret: ["admin_password"] });
check::name(p.admin_password, "admin_password", 64, "");
sg::ensure(#{ name: "g" });
ec2::launch(#{ name: "x" });
"#;

#[test]
fn bad_inputs_are_refused_naming_the_value_and_create_nothing() {
    let mut lab = FaultLab::new("bi");
    let name = lab.lab.clone();
    let dir = lab.t.dir().to_path_buf();
    let file = |n: &str, text: &str| {
        let path = dir.join(n);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let rule = file("rule.rhai", RULE);
    let types = file("types.rhai", TYPES);
    let secret_param = file("secret.rhai", SECRET_PARAM);
    let limits = [
        ("operations", "let n = 0;\nloop { n += 1; }\n"),
        (
            "string",
            "let s = \"0123456789abcdef\";\nloop { s += s; }\n",
        ),
        ("depth", "fn f(n) { f(n + 1) }\nf(0);\n"),
    ]
    .map(|(n, text)| file(&format!("{n}.rhai"), &format!("{text}{CREATE}")));
    let secret = "Hunter2-fault;DROP";
    lab.given_secret(secret);
    let pb = rig::PLAYBOOK;
    let set = |kv: &str| vec![pb.to_string(), "--set".into(), kv.into()];

    // (arguments, exit code, what the error must say)
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            set("db_name=x'; DROP DATABASE mysql; --"),
            1,
            "db_name 'x'; DROP DATABASE mysql; --': ''' is not allowed".into(),
        ),
        (
            set("db_user=a`b"),
            1,
            "db_user 'a`b': '`' is not allowed".into(),
        ),
        (set("db_user=root'@'%"), 1, "db_user 'root'@'%'".into()),
        (
            set("db_name=%"),
            1,
            "db_name '%': '%' is not allowed".into(),
        ),
        (
            set("db_name=testing_%"),
            1,
            "db_name 'testing_%': '%' is not allowed".into(),
        ),
        (
            set("db_name=$(touch /tmp/labrun-pwned)"),
            1,
            "db_name '$(touch /tmp/labrun-pwned)'".into(),
        ),
        (set("db_name=a\nb"), 1, "db_name 'a\nb'".into()),
        (
            set("image=$(reboot)"),
            1,
            "ec2::check_launch: 'mysql-server': unknown image '$(reboot)'".into(),
        ),
        (
            set("instance_type=t2.micro;reboot"),
            1,
            "unknown instance_type 't2.micro;reboot'".into(),
        ),
        (
            set("allow_from=0.0.0.0/0"),
            1,
            "allow_from must be \"client\" or \"any\", got \"0.0.0.0/0\"".into(),
        ),
        (set("nope=1"), 2, "unknown parameter 'nope' in --set".into()),
        (
            vec![pb.into(), "--operator-cidr".into(), "10.1.2.300/33".into()],
            2,
            "--operator-cidr: '10.1.2.300/33' is not an IPv4 CIDR".into(),
        ),
        (
            vec![rule.clone(), "--set".into(), "from=10.1.2.300/33".into()],
            1,
            "SecurityGroup.allow: `from`: '10.1.2.300/33' is not an IPv4 CIDR".into(),
        ),
        (
            vec![rule.clone(), "--set".into(), "port=70000".into()],
            1,
            "SecurityGroup.allow: port 70000 is out of range (1-65535)".into(),
        ),
        (
            vec![types.clone(), "--set".into(), "rounds=abc".into()],
            2,
            "--set rounds=abc: expected an integer like the default 2, got a string".into(),
        ),
        (
            vec![types.clone(), "--set".into(), "verbose=maybe".into()],
            2,
            "--set verbose=maybe: expected true or false".into(),
        ),
        (
            vec![types.clone(), "--set".into(), "names=5".into()],
            2,
            "--set names=5: expected an array".into(),
        ),
        (
            vec![limits[0].clone()],
            1,
            "the playbook ran past labrun's limit of 500000000 operations".into(),
        ),
        (
            vec![limits[1].clone()],
            1,
            "a string grew past labrun's limit of 64 MiB".into(),
        ),
        (
            vec![limits[2].clone()],
            1,
            "function calls nested past labrun's limit of 64 levels".into(),
        ),
        (
            vec![
                secret_param.clone(),
                "--set".into(),
                format!("admin_password={secret}"),
            ],
            1,
            "admin_password '********': '-' is not allowed".into(),
        ),
    ];
    for (args, code, expected) in &cases {
        let mut full: Vec<&str> = args.iter().map(String::as_str).collect();
        full.extend(["--lab", &name, "--output", "json"]);
        let out = lab.run_args(&full);
        lab.tally.faults += 1;
        assert_eq!(out.code, *code, "{args:?}:\n{}", out.all());
        assert!(
            out.stderr.contains(expected.as_str()),
            "{args:?}: stderr lacks {expected:?}:\n{}",
            out.stderr
        );
        assert_eq!(
            labelled_containers(&name),
            Vec::<(String, String)>::new(),
            "{args:?} created containers"
        );
        assert_eq!(
            labelled_networks(&name),
            Vec::<String>::new(),
            "{args:?} created a network"
        );
        // A ledger may exist (with the lab's key and secrets); it holds no
        // resource but the rule playbook's empty group `g`, whose rule was
        // refused.
        if lab.ledger_path().exists() {
            let ledger = lab.check_ledger();
            for r in ledger["resources"].as_array().unwrap() {
                assert!(
                    r["kind"] == "security_group"
                        && r["name"] == "g"
                        && r["data"]["rules"] == serde_json::json!([]),
                    "{args:?} left {r}"
                );
            }
        }
    }
    assert!(!std::path::Path::new("/tmp/labrun-pwned").exists());

    // Lab names that are paths: refused before any directory is made.
    for bad in ["a/b", "..", "../escape", "x/../../escape", ".hidden"] {
        let out = lab.run_args(&[pb, "--lab", bad]);
        lab.tally.faults += 1;
        assert_eq!(out.code, 2, "--lab {bad}:\n{}", out.all());
        out.assert_stderr_contains(&format!("invalid lab name '{bad}'"));
    }
    let state = lab.t.state_dir().to_path_buf();
    let mut made: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert!(made.iter().all(|n| n == "labs"), "{made:?}");
    let labs: Vec<String> = std::fs::read_dir(state.join("labs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(labs, vec![name.clone()]);
    assert!(!state.parent().unwrap().join("escape").exists());

    lab.destroy_clean();
    lab.check_no_secret_leaked();
    lab.report("bad inputs");
}

// The long version: `bash scripts/fault-suite.sh` runs these too.

/// Every step boundary from scratch, twice: killed then destroyed, and
/// killed then converged then destroyed.
#[test]
#[ignore = "long: bash scripts/fault-suite.sh"]
fn long_kill_9_at_every_step_boundary_from_scratch() {
    let mut lab = FaultLab::new("lb");
    for step in STEPS {
        kill_at_boundary(&mut lab, step);
        lab.check_ledger();
        lab.destroy_clean();
        kill_at_boundary(&mut lab, step);
        lab.check_ledger();
        lab.converge();
        lab.destroy_clean();
    }
    lab.check_no_secret_leaked();
    lab.report("long: every boundary");
}

/// LABRUN_FAULT_ROUNDS (default 12) kills at random points: inside launch,
/// inside install, anywhere in a run from scratch, anywhere in the re-run
/// of a converged lab. After each, the lab is converged or destroyed at
/// random, and always destroyed in the end.
#[test]
#[ignore = "long: bash scripts/fault-suite.sh"]
fn long_kill_9_at_random_points() {
    let rounds: u32 = std::env::var("LABRUN_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12);
    let mut rng = seeded("long random kills");
    let mut lab = FaultLab::new("lr");
    for _ in 0..rounds {
        match rng.random_range(0..4) {
            0 => {
                kill_inside_launch(&mut lab, &mut rng);
            }
            1 => {
                kill_inside_install(&mut lab, &mut rng);
            }
            2 => {
                let after = Duration::from_millis(rng.random_range(0..40_000));
                let f = lab.run_faulted(&[], move |e| {
                    (e["event"] == "run_started").then_some(Fault::Kill(after))
                });
                eprintln!(
                    "{}: killed {after:?} into a run from scratch (in {:?}, killed: {})",
                    lab.lab, f.killed_in, f.killed
                );
            }
            _ => {
                lab.converge();
                let after = Duration::from_millis(rng.random_range(0..1_500));
                let f = lab.run_faulted(&[], move |e| {
                    (e["event"] == "run_started").then_some(Fault::Kill(after))
                });
                eprintln!(
                    "{}: killed {after:?} into a converged re-run (in {:?}, killed: {})",
                    lab.lab, f.killed_in, f.killed
                );
            }
        }
        lab.check_ledger();
        if rng.random_bool(0.5) {
            lab.converge();
        }
        lab.destroy_clean();
    }
    lab.check_no_secret_leaked();
    lab.report("long: random kills");
}

/// sshd frozen (SIGSTOP, connections held open) rather than killed: the
/// install ends on unanswered keepalives, not at its 30-minute timeout.
#[test]
#[ignore = "long: bash scripts/fault-suite.sh"]
fn long_sshd_frozen_mid_install_is_a_clear_error_within_keepalives() {
    sshd_stopped_mid_install("pkill -STOP -x sshd", "long: sshd frozen");
}

/// The engine frozen as each step that uses it starts (the lab's network
/// and groups, the launch, a rule applied to running instances): each a
/// clear error, and destroy clean once the engine is back.
#[test]
#[ignore = "long: bash scripts/fault-suite.sh"]
fn long_engine_frozen_at_each_step_that_uses_it() {
    let mut lab = FaultLab::new("le");
    for step in [STEPS[0], STEPS[1], STEPS[2]] {
        let relay = relay::Relay::start();
        let host = relay.host();
        lab.env("DOCKER_HOST", &host);
        lab.env("LABRUN_ENGINE_TIMEOUT", "10");
        let freezer = relay.freezer();
        let f = lab.run_faulted(&[], move |e| {
            let freezer = freezer.clone();
            started(e, step).then(|| {
                Fault::Inject(Box::new(move |_| {
                    freezer.store(true, Ordering::SeqCst);
                    true
                }))
            })
        });
        assert_eq!(f.out.code, 1, "{}", f.out.all());
        let err = f.error();
        eprintln!("{}: frozen at {step:?}: {err}", lab.lab);
        // The first engine call of a run is its connection (then the
        // error says it could not reach the engine).
        assert!(
            err.contains(&format!("the Docker engine at {host}"))
                && err.contains("did not answer within 10 s"),
            "{err}"
        );
        assert!(
            f.finished().contains(&(step.into(), "failed".into())),
            "{}",
            f.out.all()
        );
        lab.check_ledger();
        lab.unset_env("DOCKER_HOST");
        // The next round starts from a lab that got as far as `step`.
        if step == STEPS[2] {
            lab.converge();
        }
        lab.destroy_clean();
    }
    lab.check_no_secret_leaked();
    lab.report("long: engine frozen");
}

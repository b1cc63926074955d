//! The fault rig: one lab of the shipped playbook, runs of it watched event
//! by event with a fault injected at a chosen moment, and the checks every
//! fault ends with (nothing labelled left after `destroy`, a ledger that is
//! valid and names what exists, no secret in anything labrun printed or
//! wrote). Counts of faults injected, resources left and secrets leaked
//! are printed per test, and appended to `$LABRUN_FAULT_TALLY` if set (the
//! long script sums them).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::harness::docker;
use crate::harness::{Output, Test};

pub const PLAYBOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/mysql_client_server.rhai"
);

/// The shipped lab's steps, in order.
pub const STEPS: [&str; 10] = [
    "security groups",
    "launch mysql-server and mysql-client",
    "allow 3306 from mysql-client only",
    "wait for SSH",
    "install MySQL server and client",
    "bind-address 0.0.0.0",
    "secure installation",
    "create database and remote user",
    "restart MySQL",
    "SHOW DATABASES from mysql-client",
];
pub const LAUNCH: &str = STEPS[1];
pub const INSTALL: &str = STEPS[4];

/// How long one run may take before the test calls it hung: far beyond
/// any real run here (a base image build and apt on a loaded machine
/// included), so that only a hang reaches it.
pub const RUN_GUARD: Duration = Duration::from_secs(20 * 60);
/// How long an injection waits for the moment it waits for (apt running,
/// a container created) before it gives up.
pub const WAIT_GUARD: Duration = Duration::from_secs(10 * 60);

/// Containers labelled for `lab`: (name, `labrun.role` label).
pub fn labelled_containers(lab: &str) -> Vec<(String, String)> {
    let filter = format!("label=labrun.lab={lab}");
    let (ok, out) = docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.Label \"labrun.role\"}}",
    ]);
    assert!(ok, "docker ps failed (is the engine running?): {out}");
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, role) = l.split_once(' ').unwrap_or((l, ""));
            (name.trim().to_string(), role.trim().to_string())
        })
        .collect()
}

/// Networks labelled for `lab`, by name.
pub fn labelled_networks(lab: &str) -> Vec<String> {
    let filter = format!("label=labrun.lab={lab}");
    let (ok, out) = docker(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ]);
    assert!(ok, "docker network ls failed: {out}");
    out.split_whitespace().map(String::from).collect()
}

/// Volumes labelled for `lab` (labrun makes none; one would be a leak).
pub fn labelled_volumes(lab: &str) -> Vec<String> {
    let filter = format!("label=labrun.lab={lab}");
    let (ok, out) = docker(&["volume", "ls", "-q", "--filter", &filter]);
    assert!(ok, "docker volume ls failed: {out}");
    out.split_whitespace().map(String::from).collect()
}

pub fn container(lab: &str, name: &str) -> String {
    format!("labrun-{lab}.{name}")
}

/// Waits until `ready` holds, labrun has ended (`false`), or WAIT_GUARD
/// passed (a panic on the injecting thread, seen by the test as a fault
/// that was never injected).
pub fn wait_for(killer: &Killer, what: &str, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT_GUARD;
    loop {
        if ready() {
            return true;
        }
        if killer.ended() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT_GUARD:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a process named `name` runs in container `c`.
pub fn runs_in(c: &str, name: &str) -> bool {
    docker(&["exec", c, "pgrep", "-x", name]).0
}

/// Kills one labrun process; shared with the injecting thread and the hang
/// guard. Never signals a process that was already reaped.
#[derive(Clone)]
pub struct Killer {
    child: Arc<Mutex<Child>>,
    killed: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
}

impl Killer {
    /// `kill -9`, unless labrun has ended already; whether it was killed.
    pub fn kill(&self) -> bool {
        let mut child = self.child.lock().unwrap();
        if matches!(child.try_wait(), Ok(None)) {
            child.kill().expect("SIGKILL labrun");
            self.killed.store(true, Ordering::SeqCst);
        }
        self.killed.load(Ordering::SeqCst)
    }

    /// labrun closed its output (it ended, or is ending).
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }
}

/// What happens once the trigger event is seen.
pub enum Fault {
    /// `kill -9` after this long.
    Kill(Duration),
    /// Runs on its own thread while labrun goes on (docker exec, rm -f, a
    /// frozen engine, a kill at a moment of its choosing); returns whether
    /// it injected its fault (labrun may have ended first).
    Inject(Box<dyn FnOnce(&Killer) -> bool + Send>),
}

impl Fault {
    pub fn kill_now() -> Option<Fault> {
        Some(Fault::Kill(Duration::ZERO))
    }
}

/// One watched run.
#[derive(Debug)]
pub struct Faulted {
    pub out: Output,
    /// The trigger was seen and the fault injected (a kill that came
    /// after labrun ended is none).
    pub injected: bool,
    /// labrun was killed (by the fault).
    pub killed: bool,
    /// The step that was running when labrun was killed.
    pub killed_in: Option<String>,
    pub took: Duration,
}

impl Faulted {
    pub fn events(&self) -> Vec<Value> {
        self.out.events()
    }

    /// The whole error of the step that failed (`run_finished` carries only
    /// its first line), else of the run's last event.
    pub fn error(&self) -> String {
        let events = self.events();
        if let Some(e) = events
            .iter()
            .find(|e| e["event"] == "step_finished" && e["status"] == "failed")
        {
            return e["error"].as_str().unwrap_or_default().to_string();
        }
        let last = events.last().expect("labrun printed events");
        last["error"]
            .as_str()
            .or(last["message"].as_str())
            .unwrap_or_else(|| panic!("no error in the last event:\n{}", self.out.all()))
            .to_string()
    }

    /// Statuses of the steps that finished, by name.
    pub fn finished(&self) -> Vec<(String, String)> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "step_finished")
            .map(|e| {
                (
                    e["step"].as_str().unwrap_or("").to_string(),
                    e["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// Faults injected, resources left behind and secrets leaked, per test.
#[derive(Debug, Default)]
pub struct Tally {
    pub faults: u32,
    pub left: usize,
    pub leaked: usize,
    pub runs: u32,
    pub destroys: u32,
}

/// A lab of the shipped playbook, with a unique name, its own state
/// directory and everything labrun printed for it. Whatever carries its
/// label is removed when it drops, passed or failed (a passing test has
/// already checked that `labrun destroy` left nothing).
pub struct FaultLab {
    pub t: Test,
    pub lab: String,
    env: Vec<(String, String)>,
    /// Every output of every run, for the secrets check.
    seen: Vec<String>,
    /// Secrets given with `--set` (the shipped lab's are in secrets.json).
    given_secrets: Vec<String>,
    pub tally: Tally,
    started: Instant,
}

impl FaultLab {
    pub fn new(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        FaultLab {
            t: Test::new(),
            lab: format!("f{prefix}-{}-{}", std::process::id(), nanos % 100_000),
            env: Vec::new(),
            seen: Vec::new(),
            given_secrets: Vec::new(),
            tally: Tally::default(),
            started: Instant::now(),
        }
    }

    pub fn env(&mut self, k: &str, v: &str) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
    }

    pub fn unset_env(&mut self, k: &str) {
        self.env.retain(|(key, _)| key != k);
    }

    /// A secret the test gives labrun (with `--set`): it must never show.
    pub fn given_secret(&mut self, value: &str) {
        self.given_secrets.push(value.to_string());
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.t.command_with(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The shipped lab's arguments for this lab, JSON output, then `extra`.
    pub fn lab_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![PLAYBOOK, "--lab", &self.lab, "--output", "json"];
        args.extend_from_slice(extra);
        args
    }

    /// Runs labrun with `args` to its end; the output is kept.
    pub fn run_args(&mut self, args: &[&str]) -> Output {
        let out: Output = self.command(args).output().expect("labrun runs").into();
        self.seen.push(out.all());
        self.tally.runs += 1;
        out
    }

    /// The shipped lab with `extra` arguments, to its end.
    pub fn run(&mut self, extra: &[&str]) -> Output {
        let args: Vec<String> = self.lab_args(extra).iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_args(&args)
    }

    /// The shipped lab, watched: `trigger` sees each JSON event as labrun
    /// prints it, and the first fault it returns is injected. The run is
    /// killed if it outlives RUN_GUARD, which fails the test.
    pub fn run_faulted(
        &mut self,
        extra: &[&str],
        trigger: impl FnMut(&Value) -> Option<Fault>,
    ) -> Faulted {
        let args: Vec<String> = self.lab_args(extra).iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_faulted_args(&args, trigger)
    }

    pub fn run_faulted_args(
        &mut self,
        args: &[&str],
        mut trigger: impl FnMut(&Value) -> Option<Fault>,
    ) -> Faulted {
        let start = Instant::now();
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("labrun starts");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let killer = Killer {
            child: Arc::new(Mutex::new(child)),
            killed: Arc::new(AtomicBool::new(false)),
            ended: Arc::new(AtomicBool::new(false)),
        };
        let err_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let (done, guard_rx) = mpsc::channel::<()>();
        let guard = {
            let killer = killer.clone();
            std::thread::spawn(move || {
                let fired = guard_rx.recv_timeout(RUN_GUARD).is_err();
                if fired {
                    killer.kill();
                }
                fired
            })
        };

        let mut lines = Vec::new();
        let mut injector = None;
        let mut running: Vec<String> = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                match event["event"].as_str() {
                    Some("step_started") => {
                        running.push(event["step"].as_str().unwrap_or("").to_string())
                    }
                    Some("step_finished") => {
                        let step = event["step"].as_str().unwrap_or("");
                        if let Some(i) = running.iter().rposition(|s| s == step) {
                            running.remove(i);
                        }
                    }
                    _ => {}
                }
                if injector.is_none()
                    && let Some(fault) = trigger(&event)
                {
                    let k = killer.clone();
                    injector = Some(std::thread::spawn(move || match fault {
                        Fault::Kill(after) => {
                            std::thread::sleep(after);
                            k.kill()
                        }
                        Fault::Inject(f) => f(&k),
                    }));
                }
            }
            lines.push(line);
        }
        killer.ended.store(true, Ordering::SeqCst);
        // A killed labrun prints nothing after the kill: the step it was in
        // is the last one started and not finished.
        let killed_in = running.last().cloned().unwrap_or_default();
        let injected = injector
            .map(|i| i.join().expect("the fault's thread panicked"))
            .unwrap_or(false);
        let status = killer.child.lock().unwrap().wait().expect("labrun ends");
        let _ = done.send(());
        let guard_fired = guard.join().unwrap();
        let mut stdout = lines.join("\n");
        if !stdout.is_empty() {
            stdout.push('\n');
        }
        let out = Output {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: err_reader.join().unwrap(),
        };
        self.seen.push(out.all());
        self.tally.runs += 1;
        assert!(
            !guard_fired,
            "labrun hung: killed after {RUN_GUARD:?}:\n{}",
            out.all()
        );
        if injected {
            self.tally.faults += 1;
        }
        let killed = killer.killed.load(Ordering::SeqCst);
        Faulted {
            out,
            injected,
            killed,
            killed_in: killed.then_some(killed_in),
            took: start.elapsed(),
        }
    }

    /// A run, then another that must change nothing.
    pub fn converge(&mut self) -> Output {
        let first = self.run(&[]);
        first.assert_code(0);
        let again = self.run(&[]);
        again.assert_code(0);
        let end = again.events().pop().unwrap();
        assert_eq!(end["event"], "run_finished", "{}", again.stdout);
        assert_eq!(
            end["changed"], 0,
            "a converged lab changed:\n{}",
            again.stdout
        );
        assert_eq!(end["failed"], 0);
        first
    }

    pub fn ledger_path(&self) -> std::path::PathBuf {
        self.t.lab_dir(&self.lab).join("ledger.json")
    }

    /// The ledger, which must be valid JSON and name every instance,
    /// network holder and network that carries the lab's label (helper
    /// containers, the firewall's and the cgroup probe's, live for a moment
    /// and are found by their label).
    pub fn check_ledger(&self) -> Value {
        let text = std::fs::read_to_string(self.ledger_path()).expect("the lab has a ledger");
        let ledger: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ledger.json is not valid JSON ({e}):\n{text}"));
        assert_eq!(ledger["lab"], self.lab.as_str());
        let resources = ledger["resources"].as_array().expect("resources");
        let named = |kind: &str, key: &str, value: &str| {
            resources.iter().any(|r| {
                r["kind"] == kind
                    && (r["data"][key] == value || (key == "name" && r["name"] == value))
            })
        };
        for (name, role) in labelled_containers(&self.lab) {
            let listed = match role.as_str() {
                "" => named("instance", "container", &name),
                "network" => named("instance", "holder", &name),
                _ => true,
            };
            assert!(
                listed,
                "container {name} exists but the ledger does not name it:\n{text}"
            );
        }
        for net in labelled_networks(&self.lab) {
            assert!(
                named("network", "name", &net),
                "network {net} exists but the ledger does not name it:\n{text}"
            );
        }
        ledger
    }

    /// `labrun destroy`: exit 0, and nothing with the
    /// lab's label left, nor any resource or security group in its ledger.
    pub fn destroy_clean(&mut self) -> Output {
        let lab = self.lab.clone();
        let out = self.run_args(&["destroy", "--lab", &lab]);
        self.tally.destroys += 1;
        let containers = labelled_containers(&lab);
        let networks = labelled_networks(&lab);
        let volumes = labelled_volumes(&lab);
        let ledger = self.check_ledger();
        let resources = ledger["resources"].as_array().unwrap().clone();
        let groups = resources
            .iter()
            .filter(|r| r["kind"] == "security_group")
            .count();
        self.tally.left += containers.len() + networks.len() + volumes.len() + resources.len();
        assert_eq!(out.code, 0, "destroy failed:\n{}", out.all());
        assert!(
            containers.is_empty() && networks.is_empty() && volumes.is_empty(),
            "destroy left containers {containers:?}, networks {networks:?}, volumes {volumes:?}:\n{}",
            out.all()
        );
        assert_eq!(groups, 0, "destroy left security groups in the ledger");
        assert!(
            resources.is_empty(),
            "destroy left resources in the ledger: {resources:?}"
        );
        out
    }

    /// No value of the lab's secrets.json, nor a secret given with `--set`,
    /// appears in any output of any run, nor in any file of the lab's
    /// directory but secrets.json itself.
    pub fn check_no_secret_leaked(&mut self) {
        let dir = self.t.lab_dir(&self.lab);
        let mut secrets: Vec<(String, String)> = self
            .given_secrets
            .iter()
            .map(|v| ("--set".to_string(), v.clone()))
            .collect();
        if dir.join("secrets.json").exists() {
            for (name, v) in self.t.secrets(&self.lab) {
                secrets.push((name, v.as_str().expect("a secret is a string").to_string()));
            }
        }
        assert!(!secrets.is_empty(), "nothing to look for: no secrets");
        let mut places: Vec<(String, String)> = self
            .seen
            .iter()
            .enumerate()
            .map(|(n, s)| (format!("the output of run {}", n + 1), s.clone()))
            .collect();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name() == "secrets.json" || !entry.path().is_file() {
                continue;
            }
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            places.push((
                entry.path().display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        let mut leaks = Vec::new();
        for (name, value) in &secrets {
            for (place, text) in &places {
                if text.contains(value.as_str()) {
                    leaks.push(format!("secret {name} in {place}"));
                }
            }
        }
        self.tally.leaked += leaks.len();
        assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
    }

    /// Prints this test's counts (and appends them to $LABRUN_FAULT_TALLY).
    pub fn report(&self, test: &str) {
        let line = format!(
            "fault-tally test={test} faults={} left={} leaked={} runs={} destroys={} seconds={:.0}",
            self.tally.faults,
            self.tally.left,
            self.tally.leaked,
            self.tally.runs,
            self.tally.destroys,
            self.started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        if let Ok(path) = std::env::var("LABRUN_FAULT_TALLY") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            writeln!(f, "{line}").unwrap();
        }
    }
}

impl Drop for FaultLab {
    fn drop(&mut self) {
        crate::harness::remove_leftovers(&self.lab);
    }
}

//! A small builder around the `labrun` binary: a scratch project directory,
//! a private state directory, and assertions on status, stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct Test {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Everything the user saw, both streams.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The NDJSON events on stdout.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "unexpected exit code; output:\n{}",
            self.all()
        );
        self
    }

    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }
}

impl Test {
    pub fn new() -> Self {
        Test {
            dir: tempfile::tempdir().expect("tempdir"),
            state: tempfile::tempdir().expect("tempdir"),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Writes `text` to `rel` inside the project directory.
    pub fn file(self, rel: &str, text: &str) -> Self {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Writes a playbook and makes it the command's first argument.
    pub fn playbook(self, rel: &str, text: &str) -> Self {
        self.file(rel, text).arg(rel)
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn command(&self) -> Command {
        self.command_with(&self.args)
    }

    /// The command with `args` instead of the builder's, in the same
    /// directories and environment (`destroy` or `status` after a run).
    pub fn command_with<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labrun"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("LABRUN_STATE_DIR", self.state.path())
            .env_remove("LABRUN_STDLIB")
            .env_remove("LABRUN_PROVIDER")
            .env_remove("LABRUN_LAB")
            .env_remove("LABRUN_LEARNER")
            .env_remove("LABRUN_COURSE_SECRET")
            .env_remove("LABRUN_COURSE_SECRET_FILE")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self) -> Output {
        self.run_with(&self.args)
    }

    /// Runs labrun with `args` instead of the builder's.
    pub fn run_with<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        self.command_with(args)
            .output()
            .expect("labrun runs")
            .into()
    }

    pub fn spawn(&self) -> Child {
        self.command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("labrun starts")
    }

    /// The lab's secrets file, parsed.
    pub fn secrets(&self, lab: &str) -> serde_json::Map<String, Value> {
        let text =
            std::fs::read_to_string(self.lab_dir(lab).join("secrets.json")).expect("secrets file");
        serde_json::from_str(&text).expect("secrets JSON")
    }

    pub fn lab_dir(&self, lab: &str) -> PathBuf {
        self.state.path().join("labs").join(lab)
    }
}

/// Collects a spawned child's output.
pub fn finish(child: Child) -> Output {
    child.wait_with_output().expect("labrun finishes").into()
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Self {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
}

/// Removes whatever is left of labs when a test ends, failed or not (a
/// passing test has already checked that `labrun destroy` left nothing):
/// every container and network labelled for them, never panicking (it may
/// run while a failed test unwinds).
pub struct Cleanup(pub Vec<String>);

impl Cleanup {
    pub fn one(lab: impl Into<String>) -> Cleanup {
        Cleanup(vec![lab.into()])
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for lab in &self.0 {
            remove_leftovers(lab);
        }
    }
}

/// Removes every container and network labelled for `lab`, quietly.
pub fn remove_leftovers(lab: &str) {
    let quiet = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let filter = format!("label=labrun.lab={lab}");
    for id in quiet(&["ps", "-a", "-q", "--filter", &filter]).split_whitespace() {
        quiet(&["rm", "-f", id]);
    }
    for id in quiet(&["network", "ls", "-q", "--filter", &filter]).split_whitespace() {
        // The package cache is on every lab's network.
        quiet(&["network", "disconnect", "-f", id, "labrun-apt-cache"]);
        quiet(&["network", "rm", id]);
    }
}

/// A lab name no other test (or earlier run) uses.
pub fn unique_lab(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t{prefix}-{}-{}", std::process::id(), nanos % 100_000)
}

/// Runs the docker CLI; (success, stdout + stderr). A missing CLI fails
/// the test: the suite never skips for want of Docker.
pub fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs (scripts/setup.sh installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `(item[a], item[b])` of each item of a JSON array of objects, as strings.
pub fn field_pairs(items: &Value, a: &str, b: &str) -> Vec<(String, String)> {
    let text = |v: &Value, k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("no string {k:?} in {v}"))
            .to_string()
    };
    items
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {items}"))
        .iter()
        .map(|v| (text(v, a), text(v, b)))
        .collect()
}

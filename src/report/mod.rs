//! The one printer: every line labrun shows goes through [`Reporter`].
//!
//! Three renderings of the same events: `human` (live spinner lines while steps
//! run), `plain` (one line per event, for logs and CI) and `json` (NDJSON on
//! stdout, for tools). Redaction happens here, at the edge, so no caller can
//! forget it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressDrawTarget};
use serde_json::{Value, json};

use crate::redact::Redactor;

mod live;
mod step;

use step::StepState;
pub use step::{Status, StepGuard, StepId, current_step, enter_step};

/// How run progress is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputMode {
    /// Live spinner lines on stderr (default when stderr is a terminal).
    Human,
    /// One plain line per event on stderr (default otherwise).
    Plain,
    /// NDJSON events on stdout, one object per line.
    Json,
}

impl OutputMode {
    /// `human` on a terminal, `plain` otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            OutputMode::Human
        } else {
            OutputMode::Plain
        }
    }
}

/// Counts of finished steps, for the closing summary and the exit status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
}

/// Where a captured reporter's output goes instead of the terminal: one
/// learner's lab among many running at once (a class), whose lines would
/// otherwise interleave with the others'. Its lines go to a log file and
/// the name of each step it starts to `on_step`, which keeps the one
/// progress line the class shows for that learner.
pub struct Capture {
    pub log: Mutex<std::fs::File>,
    pub on_step: Box<dyn Fn(&str) + Send + Sync>,
}

pub struct Reporter {
    mode: OutputMode,
    verbose: bool,
    redactor: Redactor,
    started: Instant,
    multi: Option<MultiProgress>,
    steps: Mutex<Vec<StepState>>,
    tally: Mutex<Summary>,
    /// Set by `run_started`: `finish` then closes the run with its summary.
    run_open: Mutex<bool>,
    /// Warnings kept for the very end (after the summary).
    closing: Mutex<Vec<String>>,
    out_lock: Mutex<()>,
    /// Status words in colour: human mode on a terminal, unless NO_COLOR.
    colour: bool,
    /// Set for a reporter whose output is captured (see [`Capture`]).
    capture: Option<Capture>,
}

impl Reporter {
    pub fn new(mode: OutputMode, verbose: bool, redactor: Redactor) -> Self {
        let multi = (mode == OutputMode::Human).then(|| {
            let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            if !std::io::stderr().is_terminal() {
                m.set_draw_target(ProgressDrawTarget::hidden());
            }
            m
        });
        Reporter {
            mode,
            verbose,
            redactor,
            started: Instant::now(),
            multi,
            steps: Mutex::new(Vec::new()),
            tally: Mutex::new(Summary::default()),
            run_open: Mutex::new(false),
            closing: Mutex::new(Vec::new()),
            out_lock: Mutex::new(()),
            colour: mode == OutputMode::Human
                && std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            capture: None,
        }
    }

    /// A plain reporter whose every line (results and errors included) goes
    /// to `capture`'s log, masked by `redactor` like any other output.
    pub fn captured(redactor: Redactor, capture: Capture) -> Self {
        Reporter {
            capture: Some(capture),
            ..Reporter::new(OutputMode::Plain, false, redactor)
        }
    }

    /// Appends `text` (already masked) to the capture log, if this
    /// reporter is captured; `false` if it is not.
    fn captured_line(&self, text: &str) -> bool {
        let Some(capture) = &self.capture else {
            return false;
        };
        let mut log = capture.log.lock().expect("capture log lock");
        let _ = writeln!(log, "{text}");
        true
    }

    /// `text` in an SGR colour when colour is on.
    fn paint(&self, sgr: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    pub fn verbose(&self) -> bool {
        self.verbose
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Writes one human/plain line to stderr, above any live spinners.
    fn line(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.captured_line(&text) {
            return;
        }
        let _guard = self.out_lock.lock().expect("output lock");
        match &self.multi {
            Some(m) if !m.is_hidden() => {
                let _ = m.println(text);
            }
            _ => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }

    /// Writes one JSON event to stdout.
    fn event(&self, mut value: Value) {
        if let Value::Object(map) = &mut value {
            map.insert(
                "elapsed_total_ms".into(),
                json!(self.started.elapsed().as_millis() as u64),
            );
        }
        let text = self.redactor.redact(&value.to_string());
        if self.captured_line(&text) {
            return;
        }
        let _guard = self.out_lock.lock().expect("output lock");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    pub fn run_started(&self, playbook: &str, lab: &str, provider: &str) {
        *self.run_open.lock().expect("run lock") = true;
        match self.mode {
            OutputMode::Json => self.event(json!({"event": "run_started", "playbook": playbook,
                "lab": lab, "provider": provider})),
            _ => self.line(&format!("==> {playbook} (lab {lab}, provider {provider})")),
        }
    }

    /// A message from the playbook (`print`, `debug`) or from labrun itself.
    pub fn log(&self, message: &str) {
        match self.mode {
            OutputMode::Json => {
                let mut ev = json!({"event": "log", "message": message});
                if let Some(id) = current_step() {
                    let steps = self.steps.lock().expect("steps lock");
                    ev["step"] = json!(steps[id.0].name);
                }
                self.event(ev)
            }
            _ => {
                let depth = current_step()
                    .map(|id| self.steps.lock().expect("steps lock")[id.0].depth + 1)
                    .unwrap_or(0);
                for l in message.lines() {
                    self.line(&format!("{}{l}", "  ".repeat(depth)));
                }
            }
        }
    }

    /// A warning from labrun itself.
    pub fn warn(&self, message: &str) {
        match self.mode {
            OutputMode::Json => self.event(json!({"event": "warning", "message": message})),
            _ => self.line(&format!("warning: {message}")),
        }
    }

    /// Counts a failure that no step reported (one outside any step), so
    /// the summary never reads `failed=0` for a run that failed.
    pub fn count_failure(&self) {
        self.tally.lock().expect("tally lock").failed += 1;
    }

    pub fn summary(&self) -> Summary {
        *self.tally.lock().expect("tally lock")
    }

    /// A warning to show after everything else, once the command is over
    /// (what a run leaves running and costing money, say).
    pub fn closing_warning(&self, message: &str) {
        self.closing
            .lock()
            .expect("closing lock")
            .push(message.to_string());
    }

    /// Ends the command's output: the run's summary if a run was started
    /// (`error`: the headline of what stopped it; in JSON, other commands
    /// end with an `error` event), then the closing warnings. Called once,
    /// after any error has been shown.
    pub fn finish(&self, error: Option<&str>) {
        if std::mem::take(&mut *self.run_open.lock().expect("run lock")) {
            self.run_finished(error);
        } else if let (OutputMode::Json, Some(e)) = (self.mode, error) {
            // Other commands' JSON ends with the error too, not only stderr.
            self.event(json!({"event": "error", "message": e}));
        }
        for w in std::mem::take(&mut *self.closing.lock().expect("closing lock")) {
            self.warn(&w);
        }
    }

    fn run_finished(&self, error: Option<&str>) -> Summary {
        let s = self.summary();
        let elapsed = self.started.elapsed();
        let status = if error.is_some() || s.failed > 0 {
            "failed"
        } else {
            "ok"
        };
        match self.mode {
            OutputMode::Json => {
                let mut ev = json!({"event": "run_finished", "status": status, "ok": s.ok,
                    "changed": s.changed, "failed": s.failed,
                    "elapsed_ms": elapsed.as_millis() as u64});
                if let Some(e) = error {
                    ev["error"] = json!(e);
                }
                self.event(ev)
            }
            _ => self.line(&format!(
                "{}: ok={} changed={} failed={} in {}",
                self.paint(if status == "ok" { "32" } else { "1;31" }, status),
                s.ok,
                s.changed,
                s.failed,
                format_duration(elapsed)
            )),
        }
        s
    }

    /// A line of the command's result (a table row, a document) on stdout.
    pub fn print(&self, text: &str) {
        let text = self.redactor.redact(text);
        if self.captured_line(&text) {
            return;
        }
        let _guard = self.out_lock.lock().expect("output lock");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// A command's result as one JSON event on stdout (`--output json`),
    /// masked like everything else.
    pub fn print_event(&self, value: Value) {
        self.event(value);
    }

    /// A secret's value on stdout, unmasked: only `labrun secret` calls
    /// this, for the one value the user asked for by name.
    pub fn reveal(&self, value: &str) {
        let _guard = self.out_lock.lock().expect("output lock");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }

    /// Prints an error diagnostic on stderr (in every mode; JSON consumers
    /// get the message in `run_finished` too). Only `error::render` and the
    /// second Ctrl-C call this.
    pub fn error(&self, text: &str) {
        self.line(text);
    }
}

/// `350ms`, `1.2s`, `2m03s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(350)), "350ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_duration(Duration::from_secs(123)), "2m03s");
    }

    /// What the live display holds for a step: each host's latest line,
    /// in the order the hosts first spoke; host-less output is not a host.
    #[test]
    fn a_step_keeps_each_hosts_latest_line() {
        let r = Reporter::new(OutputMode::Human, false, Redactor::new());
        let step = r.step_started("install", None);
        let other = r.step_started("other", None);
        {
            let _guard = enter_step(Some(step));
            r.host_output("mysql-server", "Unpacking mariadb-server");
            r.host_output("mysql-client", "Unpacking mariadb-client");
            r.output("no host");
            r.host_output("mysql-server", "Setting up mariadb-server\n");
            r.host_output("mysql-client", "   ");
        }
        let lines = |id: StepId| -> Vec<(String, String)> {
            r.steps.lock().unwrap()[id.0]
                .hosts
                .iter()
                .map(|h| (h.host.clone(), h.last.clone()))
                .collect()
        };
        assert_eq!(
            lines(step),
            [
                (
                    "mysql-server".to_string(),
                    "Setting up mariadb-server".to_string()
                ),
                (
                    "mysql-client".to_string(),
                    "Unpacking mariadb-client".to_string()
                ),
            ]
        );
        assert!(lines(other).is_empty());
        r.step_finished(step, None);
        r.step_finished(other, None);
    }

    /// A captured reporter writes nothing to the terminal: every line,
    /// masked, goes to its log, and each step's name to `on_step`.
    #[test]
    fn a_captured_reporter_logs_and_names_its_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learner.log");
        let steps = std::sync::Arc::new(Mutex::new(Vec::new()));
        let redactor = Redactor::new();
        redactor.add("hunter2-secret");
        let r = Reporter::captured(
            redactor,
            Capture {
                log: Mutex::new(std::fs::File::create(&path).unwrap()),
                on_step: Box::new({
                    let steps = steps.clone();
                    move |name: &str| steps.lock().unwrap().push(name.to_string())
                }),
            },
        );
        r.run_started("setup.rhai", "c.ana", "local");
        let step = r.step_started("launch", None);
        r.log("password hunter2-secret");
        r.step_finished(step, None);
        r.print("a result");
        r.error("error: it broke");
        r.finish(None);
        let log = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 7, "{log}");
        assert_eq!(lines[0], "==> setup.rhai (lab c.ana, provider local)");
        assert_eq!(lines[1], "--> launch");
        assert_eq!(lines[2], "password ********");
        assert!(lines[3].starts_with("ok      launch ("), "{log}");
        assert_eq!(lines[4..6], ["a result", "error: it broke"]);
        assert!(
            lines[6].starts_with("ok: ok=1 changed=0 failed=0 in "),
            "{log}"
        );
        assert_eq!(*steps.lock().unwrap(), ["launch"]);
    }

    #[test]
    fn changed_propagates_to_parents() {
        let r = Reporter::new(OutputMode::Plain, false, Redactor::new());
        let outer = r.step_started("outer", None);
        let inner = r.step_started("inner", Some(outer));
        r.mark_changed(inner);
        assert_eq!(r.step_finished(inner, None), Status::Changed);
        assert_eq!(r.step_finished(outer, None), Status::Changed);
        assert_eq!(
            r.summary(),
            Summary {
                ok: 0,
                changed: 2,
                failed: 0
            }
        );
    }
}

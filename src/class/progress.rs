//! What a class command shows while learners' labs run side by side: one
//! line per learner, never the steps of thirty labs interleaved. On a
//! terminal each running learner has a live line (the step it is in, the
//! time so far); in plain mode a line when a learner starts and one when it
//! ends; in JSON mode `learner_started` and `learner_finished` events.
//! Each learner's own run reports into a log file of its own (a captured
//! [`Reporter`]), which the failure line names.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::ProgressBar;
use serde_json::json;

use crate::error::Error;
use crate::report::{Capture, OutputMode, Reporter, format_duration};

/// The display of one class command.
pub struct Progress {
    reporter: Arc<Reporter>,
    /// What the command does to each learner (`up`, `grade`, `down`).
    action: &'static str,
    /// Learner ids are padded to this, so the lines line up.
    width: usize,
}

impl Progress {
    pub fn new(reporter: &Arc<Reporter>, action: &'static str, ids: &[&str]) -> Progress {
        Progress {
            reporter: reporter.clone(),
            action,
            width: ids.iter().map(|i| i.len()).max().unwrap_or(0),
        }
    }

    /// Starts `learner`'s line; `log` is where its run's own lines go
    /// (appended to, so every attempt stays readable).
    pub fn start(&self, learner: &str, lab: &str, log: &Path) -> Result<LearnerLine, Error> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::Failed(format!("cannot open {}: {e}", log.display())))?;
        let prefix = format!("{:<w$}", learner, w = self.width);
        let bar = self
            .reporter
            .live_line(&prefix)
            .inspect(|b| b.set_message(format!("{} {lab}", self.action)));
        match self.reporter.mode() {
            OutputMode::Json => self.reporter.print_event(json!({"event": "learner_started",
                "action": self.action, "learner": learner, "lab": lab})),
            OutputMode::Plain => self
                .reporter
                .log(&format!("{prefix}  {} {lab}", self.action)),
            OutputMode::Human => {}
        }
        let step: Arc<Mutex<Option<ProgressBar>>> = Arc::new(Mutex::new(bar.clone()));
        let on_step = {
            let step = step.clone();
            move |name: &str| {
                if let Some(bar) = step.lock().expect("bar lock").as_ref() {
                    bar.set_message(name.to_string());
                }
            }
        };
        let captured = Reporter::captured(
            self.reporter.redactor().clone(),
            Capture {
                log: Mutex::new(file),
                on_step: Box::new(on_step),
            },
        );
        captured.log(&format!(
            "==== {} {lab} ({learner}) at unix time {}",
            self.action,
            crate::ledger::now_secs()
        ));
        Ok(LearnerLine {
            reporter: self.reporter.clone(),
            learner: learner.to_string(),
            prefix,
            lab: lab.to_string(),
            log: log.to_path_buf(),
            bar,
            started: Instant::now(),
            action: self.action,
            captured: Arc::new(captured),
        })
    }
}

/// One learner's line while its lab is worked on.
pub struct LearnerLine {
    reporter: Arc<Reporter>,
    learner: String,
    prefix: String,
    lab: String,
    log: PathBuf,
    bar: Option<ProgressBar>,
    started: Instant,
    action: &'static str,
    /// What the learner's run reports into.
    pub captured: Arc<Reporter>,
}

impl LearnerLine {
    /// Shows `text` as what the learner's lab is doing now.
    pub fn set(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_string());
        }
    }

    /// Ends the line: `Ok(summary)` or `Err(why)`, one line either way.
    pub fn finish(self, outcome: Result<&str, &str>) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let elapsed = self.started.elapsed();
        let (status, text) = match outcome {
            Ok(t) => ("ok", t),
            Err(t) => ("failed", t),
        };
        self.captured.log(&format!(
            "==== {} {status} after {}: {text}",
            self.action,
            format_duration(elapsed)
        ));
        if self.reporter.mode() == OutputMode::Json {
            let mut ev = json!({"event": "learner_finished", "action": self.action,
                "learner": self.learner, "lab": self.lab, "status": status,
                "elapsed_ms": elapsed.as_millis() as u64, "log": self.log});
            ev[if status == "ok" { "summary" } else { "error" }] = json!(text);
            self.reporter.print_event(ev);
            return;
        }
        let line = match outcome {
            Ok(t) => format!("{}  {t} ({})", self.prefix, format_duration(elapsed)),
            Err(t) => format!(
                "{}  FAILED ({}): {t}\n{}  log: {}",
                self.prefix,
                format_duration(elapsed),
                " ".repeat(self.prefix.len()),
                self.log.display()
            ),
        };
        self.reporter.log(&line);
    }
}

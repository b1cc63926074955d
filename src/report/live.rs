//! The live display: a step's latest output line, one line per host when
//! several speak at once, and lines of their own for long work.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::step::{StepId, current_step};
use super::{OutputMode, Reporter};

/// A host's latest output line within a step. With two or more hosts, each
/// gets a live line of its own under the step's spinner.
pub(super) struct HostLine {
    pub(super) host: String,
    pub(super) last: String,
    pub(super) bar: Option<ProgressBar>,
}

impl Reporter {
    /// A live line of its own (a spinner, `prefix`, the time since it
    /// started, then a message), drawn in human mode on a terminal; `None`
    /// otherwise, where the caller prints plain lines instead.
    pub fn live_line(&self, prefix: &str) -> Option<ProgressBar> {
        let multi = self.multi.as_ref().filter(|m| !m.is_hidden())?;
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} {elapsed:>4.dim} {wide_msg}",
            )
            .expect("static template"),
        );
        bar.set_prefix(self.redactor.redact(prefix));
        bar.enable_steady_tick(Duration::from_millis(100));
        Some(bar)
    }

    /// A line of output from work done for the current step that no host
    /// produced: shown on the step's live line, and logged with `--verbose`.
    pub fn output(&self, line: &str) {
        self.output_line(None, line);
    }

    /// A line of output from `host` (an instance name, or `host:port`) for
    /// the current step, such as a remote command's stdout. While a step
    /// hears from one host its line shows the output; from two or more,
    /// each host gets a live line of its own. With `--verbose`, logged as
    /// `host | line` (JSON: `"host"`).
    pub fn host_output(&self, host: &str, line: &str) {
        self.output_line(Some(host), line);
    }

    fn output_line(&self, host: Option<&str>, line: &str) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        let step = current_step();
        if let Some(id) = step {
            self.show_live(id, host, line);
        }
        if self.verbose {
            match self.mode {
                OutputMode::Json => {
                    let mut ev = json!({"event": "output", "line": line});
                    if let Some(h) = host {
                        ev["host"] = json!(h);
                    }
                    if let Some(id) = step {
                        ev["step"] = json!(self.step_name(id));
                    }
                    self.event(ev)
                }
                _ => match host {
                    Some(h) => self.line(&format!("    {h} | {line}")),
                    None => self.line(&format!("    | {line}")),
                },
            }
        }
    }

    /// Updates step `id`'s live display with `line`.
    fn show_live(&self, id: StepId, host: Option<&str>, line: &str) {
        let mut steps = self.steps.lock().expect("steps lock");
        let step = &mut steps[id.0];
        let Some(host) = host else {
            if let Some(bar) = &step.bar {
                bar.set_message(self.redactor.redact(line));
            }
            return;
        };
        match step.hosts.iter_mut().find(|h| h.host == host) {
            Some(h) => h.last = line.to_string(),
            None => step.hosts.push(HostLine {
                host: host.to_string(),
                last: line.to_string(),
                bar: None,
            }),
        }
        let (Some(multi), Some(step_bar)) = (&self.multi, &step.bar) else {
            return;
        };
        if step.hosts.len() == 1 {
            step_bar.set_message(self.redactor.redact(line));
            return;
        }
        // Two or more hosts: one line each, under the step's spinner.
        step_bar.set_message("");
        let indent = "  ".repeat(step.depth + 1);
        let mut after = step_bar.clone();
        for h in &mut step.hosts {
            let bar = h.bar.get_or_insert_with(|| {
                let bar = multi.insert_after(&after, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {prefix:.bold} {wide_msg:.dim}")
                        .expect("static template"),
                );
                bar.set_prefix(format!("{indent}{} |", self.redactor.redact(&h.host)));
                bar
            });
            if h.host == host || bar.message().is_empty() {
                bar.set_message(self.redactor.redact(&h.last));
            }
            after = bar.clone();
        }
    }

    /// A progress bar for long work outside steps' spinners (image builds),
    /// drawn only in human mode.
    pub fn progress_bar(&self, len: u64, message: &str) -> ProgressBar {
        match &self.multi {
            Some(m) if !m.is_hidden() => {
                let bar = m.add(ProgressBar::new(len));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.cyan} {msg} [{bar:30}] {pos}/{len} {elapsed:.dim}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                bar.set_message(message.to_string());
                bar.enable_steady_tick(Duration::from_millis(100));
                bar
            }
            _ => {
                self.line(&format!("... {message}"));
                ProgressBar::hidden()
            }
        }
    }
}

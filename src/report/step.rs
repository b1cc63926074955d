//! Steps: what a run is made of, which step each thread works for, and
//! how a step starts, changes and ends in each rendering.

use std::cell::Cell;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::live::HostLine;
use super::{OutputMode, Reporter, format_duration};

/// Outcome of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Changed,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
        }
    }
}

/// Identifies a started step; cheap to copy across threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepId(pub(super) usize);

thread_local! {
    static CURRENT_STEP: Cell<Option<StepId>> = const { Cell::new(None) };
}

/// The step the calling thread is working for, if any.
pub fn current_step() -> Option<StepId> {
    CURRENT_STEP.with(|c| c.get())
}

/// Makes `step` the calling thread's current step until the guard drops.
/// `parallel` uses this to carry the parent's step into its worker threads.
pub fn enter_step(step: Option<StepId>) -> StepGuard {
    let previous = CURRENT_STEP.with(|c| c.replace(step));
    StepGuard { previous }
}

pub struct StepGuard {
    previous: Option<StepId>,
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        CURRENT_STEP.with(|c| c.set(self.previous));
    }
}

pub(super) struct StepState {
    pub(super) name: String,
    pub(super) parent: Option<StepId>,
    pub(super) depth: usize,
    pub(super) started: Instant,
    pub(super) changed: bool,
    pub(super) bar: Option<ProgressBar>,
    /// Hosts whose output the step has shown, in the order they spoke.
    pub(super) hosts: Vec<HostLine>,
}

impl Reporter {
    pub fn step_started(&self, name: &str, parent: Option<StepId>) -> StepId {
        let mut steps = self.steps.lock().expect("steps lock");
        let depth = parent.map(|p| steps[p.0].depth + 1).unwrap_or(0);
        let bar = self.multi.as_ref().filter(|m| !m.is_hidden()).map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:.bold} {elapsed:.dim} {wide_msg:.dim}",
                )
                .expect("static template"),
            );
            bar.set_prefix(format!(
                "{}{}",
                "  ".repeat(depth),
                self.redactor.redact(name)
            ));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if let Some(capture) = &self.capture {
            (capture.on_step)(&self.redactor.redact(name));
        }
        let id = StepId(steps.len());
        steps.push(StepState {
            name: name.to_string(),
            parent,
            depth,
            started: Instant::now(),
            changed: false,
            bar,
            hosts: Vec::new(),
        });
        drop(steps);
        match self.mode {
            OutputMode::Json => self.event(json!({"event": "step_started", "step": name})),
            OutputMode::Plain => self.line(&format!("{}--> {name}", "  ".repeat(depth))),
            OutputMode::Human => {}
        }
        id
    }

    /// Records that an operation in `step` (and so in every enclosing step)
    /// changed something.
    pub fn mark_changed(&self, step: StepId) {
        let mut steps = self.steps.lock().expect("steps lock");
        let mut cursor = Some(step);
        while let Some(id) = cursor {
            steps[id.0].changed = true;
            cursor = steps[id.0].parent;
        }
    }

    /// Marks the calling thread's current step changed, if there is one.
    pub fn mark_current_changed(&self) {
        if let Some(id) = current_step() {
            self.mark_changed(id);
        }
    }

    pub fn step_finished(&self, id: StepId, error: Option<&str>) -> Status {
        let mut steps = self.steps.lock().expect("steps lock");
        let step = &mut steps[id.0];
        let status = match (error, step.changed) {
            (Some(_), _) => Status::Failed,
            (None, true) => Status::Changed,
            (None, false) => Status::Ok,
        };
        let elapsed = step.started.elapsed();
        if let Some(bar) = step.bar.take() {
            bar.finish_and_clear();
        }
        for bar in step.hosts.iter_mut().filter_map(|h| h.bar.take()) {
            bar.finish_and_clear();
        }
        let name = step.name.clone();
        let depth = step.depth;
        drop(steps);
        {
            let mut tally = self.tally.lock().expect("tally lock");
            match status {
                Status::Ok => tally.ok += 1,
                Status::Changed => tally.changed += 1,
                Status::Failed => tally.failed += 1,
            }
        }
        match self.mode {
            OutputMode::Json => {
                let mut ev = json!({"event": "step_finished", "step": name,
                    "status": status.as_str(), "elapsed_ms": elapsed.as_millis() as u64});
                if let Some(e) = error {
                    ev["error"] = json!(e);
                }
                self.event(ev)
            }
            _ => {
                let (label, ansi) = match status {
                    Status::Ok => ("ok", "32"),
                    Status::Changed => ("changed", "33"),
                    Status::Failed => ("FAILED", "1;31"),
                };
                self.line(&format!(
                    "{}{}{name} ({})",
                    "  ".repeat(depth),
                    self.paint(ansi, &format!("{label:<8}")),
                    format_duration(elapsed)
                ));
            }
        }
        status
    }

    /// Name of a step, for error messages.
    pub fn step_name(&self, id: StepId) -> String {
        self.steps.lock().expect("steps lock")[id.0].name.clone()
    }
}

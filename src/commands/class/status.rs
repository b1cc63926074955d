//! `labrun class status [CLASS]`: each class (its exercise, provider, TTL)
//! and a line per learner: their lab, its state, its instances as the
//! provider has them now (locally; on AWS as the ledger records them), its
//! age and the time the class has left. Takes no lock, so it works while
//! `up` or `grade` runs. `--output json` prints the same as one document.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::class::state::{ClassState, LabState, LearnerState};
use crate::class::{class_dir, list_classes, ttl};
use crate::commands::status::age;
use crate::error::{Error, Exit};
use crate::ledger::{self, LedgerData, ResourceKind, ResourceState, now_secs};
use crate::providers::{Instance, ProviderKind};
use crate::report::{OutputMode, Reporter};

/// One learner as status shows them.
struct Line<'a> {
    learner: &'a LearnerState,
    /// The state shown: the class's record, corrected by what is there.
    state: String,
    /// Observed instances (local), else `None`.
    instances: Option<Vec<Instance>>,
    /// Instances the ledger records as created.
    recorded: usize,
    observe_error: Option<String>,
    /// When the lab came up, else when its ledger was made.
    since: Option<u64>,
}

pub fn status(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    only: Option<&str>,
) -> Result<Exit, Error> {
    let root = ledger::state_root()?;
    let names = match only {
        Some(name) => {
            crate::class::check_class_name(name)?;
            vec![name.to_string()]
        }
        None => list_classes(&root),
    };
    let mut classes = Vec::new();
    for name in &names {
        if only.is_some() {
            classes.push(super::load(&root, name)?);
        } else if let Some(s) = ClassState::load(&class_dir(&root, name))? {
            classes.push(s);
        }
    }
    let now = now_secs();
    let mut docs: Vec<Value> = Vec::new();
    if classes.is_empty() && reporter.mode() != OutputMode::Json {
        reporter.print(&format!("no classes under {}", root.display()));
    }
    for class in &classes {
        let lines: Vec<Line> = class
            .learners
            .iter()
            .map(|l| observe(runtime, &root, class.provider, l))
            .collect();
        if reporter.mode() == OutputMode::Json {
            docs.push(to_json(class, &lines, now));
        } else {
            for text in text(class, &lines, now) {
                reporter.print(&text);
            }
        }
    }
    if reporter.mode() == OutputMode::Json {
        reporter.print_event(json!({"event": "class_status", "classes": docs}));
    }
    Ok(Exit::Ok)
}

/// What is there of `l`'s lab now.
fn observe<'a>(
    runtime: &tokio::runtime::Runtime,
    root: &std::path::Path,
    provider: ProviderKind,
    l: &'a LearnerState,
) -> Line<'a> {
    let data = LedgerData::load(&root.join("labs").join(&l.lab))
        .ok()
        .flatten();
    let recorded = data.as_ref().map_or(0, |d| {
        d.resources
            .iter()
            .filter(|r| r.kind == ResourceKind::Instance && r.state == ResourceState::Created)
            .count()
    });
    let (instances, observe_error) = match (l.state, runtime.block_on(provider.observe(&l.lab))) {
        // Never tried: nothing to ask the engine about.
        (LabState::Pending, _) | (_, None) => (None, None),
        (_, Some(Ok(list))) => (Some(list), None),
        (_, Some(Err(e))) => (None, Some(e.to_string())),
    };
    let present = instances.as_ref().map_or(recorded, Vec::len);
    let state = match l.state {
        LabState::Up if present == 0 => "gone".to_string(),
        s => s.as_str().to_string(),
    };
    Line {
        learner: l,
        state,
        instances,
        recorded,
        observe_error,
        since: l.up_at.or(data.map(|d| d.created_at)),
    }
}

fn instances_text(line: &Line) -> String {
    match (&line.instances, &line.observe_error) {
        (Some(list), _) => {
            let running = list.iter().filter(|i| i.state == "running").count();
            if list.is_empty() {
                "none".into()
            } else if running == list.len() {
                format!("{running} running")
            } else {
                format!("{running}/{} running", list.len())
            }
        }
        (None, Some(_)) => format!("{} recorded (engine not reachable)", line.recorded),
        (None, None) if line.recorded == 0 => "none".into(),
        (None, None) => format!("{} recorded", line.recorded),
    }
}

fn ttl_text(class: &ClassState, now: u64) -> String {
    match class.expires_at() {
        Some(e) => ttl::left(e, now),
        None => "no TTL".into(),
    }
}

fn text(class: &ClassState, lines: &[Line], now: u64) -> Vec<String> {
    let mut out = vec![format!(
        "class {}  exercise {} {}  provider={}  {} learners  created {} ago  {}{}",
        class.class,
        class.exercise.id,
        class.exercise.version,
        class.provider,
        class.learners.len(),
        age(class.created_at),
        match class.ttl_secs {
            Some(t) => format!(
                "ttl {} ({})",
                ttl::format(std::time::Duration::from_secs(t)),
                ttl_text(class, now)
            ),
            None => "no TTL".into(),
        },
        class
            .down_at
            .map(|d| format!("  down {} ago", age(d)))
            .unwrap_or_default()
    )];
    let w = lines
        .iter()
        .map(|l| l.learner.id.len())
        .chain(["LEARNER".len()])
        .max()
        .unwrap_or(0);
    let lw = lines
        .iter()
        .map(|l| l.learner.lab.len())
        .chain(["LAB".len()])
        .max()
        .unwrap_or(0);
    out.push(format!(
        "  {:<w$}  {:<lw$}  {:<8}  {:<12}  {:<5}  TTL LEFT",
        "LEARNER", "LAB", "STATE", "INSTANCES", "AGE"
    ));
    for l in lines {
        let mut row = format!(
            "  {:<w$}  {:<lw$}  {:<8}  {:<12}  {:<5}  {}",
            l.learner.id,
            l.learner.lab,
            l.state,
            instances_text(l),
            l.since.map(age).unwrap_or_else(|| "-".into()),
            if matches!(l.learner.state, LabState::Down | LabState::Pending) {
                "-".to_string()
            } else {
                ttl_text(class, now)
            }
        );
        if let Some(e) = &l.learner.error {
            row.push_str(&format!("\n  {:<w$}  error: {e}", ""));
        }
        out.push(row);
    }
    out
}

fn to_json(class: &ClassState, lines: &[Line], now: u64) -> Value {
    json!({
        "class": class.class,
        "exercise": class.exercise,
        "provider": class.provider,
        "roster": class.roster,
        "created_at": class.created_at,
        "ttl_secs": class.ttl_secs,
        "expires_at": class.expires_at(),
        "expired": class.expired(now),
        "down_at": class.down_at,
        "learners": lines.iter().map(|l| json!({
            "learner": l.learner.id,
            "name": l.learner.name,
            "email": l.learner.email,
            "lab": l.learner.lab,
            "state": l.state,
            "error": l.learner.error,
            "attempts": l.learner.attempts,
            "up_at": l.learner.up_at,
            "instances": l.instances,
            "recorded_instances": l.recorded,
            "observe_error": l.observe_error,
        })).collect::<Vec<_>>(),
    })
}

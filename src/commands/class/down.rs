//! `labrun class down [CLASS] [--expired]`: removes every learner's lab,
//! a few at a time, as `labrun destroy --lab` does (through the ledger and
//! the labels/tags, so what a crashed `up` made and never recorded goes
//! too), and hands no access out any more. The class's directory stays,
//! with its gradebook; `class up` with the same exercise and roster
//! brings the class up again. `--expired`: only classes past their TTL.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::class::progress::Progress;
use crate::class::state::{Class, ClassState, LabState, LearnerState};
use crate::class::{access, class_dir, list_classes, pool, ttl};
use crate::cli::ClassDownArgs;
use crate::commands::destroy::destroy_lab;
use crate::error::{Error, Exit};
use crate::ledger::{self, LedgerData, now_secs};
use crate::providers::{ProviderKind, ProviderOptions};
use crate::report::{OutputMode, Reporter};

use super::{
    THROTTLE_WAIT, error_throttled, interrupt_flag, log_path, pick_class, with_throttling,
};

pub fn down(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: ClassDownArgs,
) -> Result<Exit, Error> {
    let root = ledger::state_root()?;
    let now = now_secs();
    let names = if args.expired {
        let candidates = match &args.class {
            Some(c) => {
                crate::class::check_class_name(c)?;
                vec![c.clone()]
            }
            None => list_classes(&root),
        };
        let mut expired = Vec::new();
        for name in candidates {
            let state = super::load(&root, &name)?;
            match state.expires_at() {
                Some(e) if now >= e => expired.push(name),
                Some(e) if args.class.is_some() => reporter.log(&format!(
                    "class {name} has not expired ({}): nothing removed",
                    ttl::left(e, now)
                )),
                None if args.class.is_some() => reporter.log(&format!(
                    "class {name} has no TTL (`class up --ttl`), so it never expires: nothing removed"
                )),
                _ => {}
            }
        }
        if expired.is_empty() && args.class.is_none() {
            reporter.log("no class has expired: nothing removed");
        }
        expired
    } else {
        vec![pick_class(&root, args.class.as_deref())?]
    };
    let mut errors = Vec::new();
    for name in names {
        if let Err(e) = down_class(runtime, reporter, &root, &name, &args) {
            if matches!(e, Error::Interrupted(_)) {
                return Err(e);
            }
            errors.push(e);
        }
    }
    match errors.len() {
        0 => Ok(Exit::Ok),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Several(errors)),
    }
}

fn down_class(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    root: &std::path::Path,
    name: &str,
    args: &ClassDownArgs,
) -> Result<(), Error> {
    let state = super::load(root, name)?;
    let dir = class_dir(root, name);
    let lock = Class::lock(&dir, name)?;
    let class = Class::new(&dir, lock, state)?;
    let state = class.snapshot();
    if reporter.mode() != OutputMode::Json {
        reporter.log(&format!(
            "class {name}: removing {} learners' labs ({})",
            state.learners.len(),
            state.provider
        ));
    }
    let (stop, watcher) = interrupt_flag(runtime, reporter);
    let ids: Vec<&str> = state.learners.iter().map(|l| l.id.as_str()).collect();
    let progress = Progress::new(reporter, "down", &ids);
    let options = args.aws.options();
    let labs = root.join("labs");
    let job = |l: &LearnerState| -> Result<(), Error> {
        let log = log_path(class.dir(), &l.id)?;
        let line = progress.start(&l.id, &l.lab, &log)?;
        let result = with_throttling(
            &stop,
            THROTTLE_WAIT,
            |m| {
                line.set(m);
                line.captured.warn(m);
            },
            || remove(runtime, &line.captured, &state, l, &labs, &options),
            error_throttled,
        );
        match &result {
            Ok(()) => {
                class.update_learner(&l.id, |s| {
                    s.state = LabState::Down;
                    s.error = None;
                    s.access.clear();
                })?;
                line.finish(Ok("removed"));
            }
            Err(e) => {
                line.captured.error(&e.user_text());
                line.finish(Err(&e.headline()));
            }
        }
        result
    };
    let results = pool::run(&state.learners, args.parallel as usize, &stop, job);
    watcher.abort();
    let failed: Vec<(String, String)> = state
        .learners
        .iter()
        .zip(&results)
        .filter_map(|(l, r)| match r {
            Some(Ok(())) => None,
            Some(Err(e)) => Some((l.id.clone(), e.headline())),
            None => Some((l.id.clone(), "not removed (interrupted)".into())),
        })
        .collect();
    if failed.is_empty() {
        class.update(|s| s.down_at = Some(now_secs()))?;
    }
    let after = class.snapshot();
    access::write(class.dir(), &labs, &after)?;
    let removed = state.learners.len() - failed.len();
    if reporter.mode() == OutputMode::Json {
        reporter.print_event(json!({"event": "class_down", "class": name,
            "status": if failed.is_empty() { "ok" } else { "failed" },
            "removed": removed, "failed": failed.iter().map(|(l, e)| json!({"learner": l, "error": e})).collect::<Vec<_>>()}));
    } else {
        reporter.print(&format!(
            "class {name}: {removed} of {} learners' labs removed",
            state.learners.len()
        ));
    }
    if stop.load(Ordering::SeqCst) {
        return Err(Error::Interrupted(format!(
            "interrupted: run `labrun class down {name}` again to remove the rest"
        )));
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "class {name}: {} labs were not removed (run `labrun class down {name}` again):\n{}",
        failed.len(),
        failed
            .iter()
            .map(|(l, e)| format!("  {l}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    )))
}

/// Removes one learner's lab. A lab with no ledger was never opened: on
/// AWS nothing was made; locally its labels are still looked for.
fn remove(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    state: &ClassState,
    l: &LearnerState,
    labs: &std::path::Path,
    options: &ProviderOptions,
) -> Result<(), Error> {
    let recorded = LedgerData::load(&labs.join(&l.lab))?.is_some();
    if !recorded && state.provider == ProviderKind::Aws {
        reporter.log(&format!(
            "lab '{}' was never opened: nothing to remove",
            l.lab
        ));
        return Ok(());
    }
    match destroy_lab(runtime, reporter, &l.lab, options) {
        // No ledger and no labelled container or network: nothing was made.
        Err(Error::Input(m)) if !recorded && m.starts_with("no lab named") => {
            reporter.log(&format!("lab '{}': nothing to remove", l.lab));
            Ok(())
        }
        other => other,
    }
}

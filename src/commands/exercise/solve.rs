//! `labrun exercise solve [SOURCE] [--task ID]`: the reference solution
//! applied to the learner's lab, whole or for one task (the "skip" button).

use std::sync::Arc;

use crate::cli::ExerciseSolveArgs;
use crate::engine;
use crate::error::{Error, Exit};
use crate::exercise::{CHECKS, SOLVE};

use super::super::run::OpenLab;
use super::check::{recorded_learner, resolve};
use super::{course_secret, declare, run_solve};

pub fn solve(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<crate::report::Reporter>,
    args: ExerciseSolveArgs,
) -> Result<Exit, Error> {
    let (lab, record, ex) = resolve(args.exercise.as_deref(), &args.learner)?;
    let secret = course_secret(&args.learner, reporter)?;
    let learner = recorded_learner(&ex, &record, secret.as_ref())?;
    if !ex.has(SOLVE) {
        return Err(Error::Input(format!(
            "{} has no {SOLVE}: it is a learner copy, without the reference solution",
            ex.source.display()
        )));
    }
    let tasks = declare(runtime, &ex, &learner, CHECKS, &Default::default())?.tasks;
    if let Some(only) = &args.task
        && !tasks.iter().any(|t| &t.id == only)
    {
        return Err(Error::Input(format!(
            "--task {only}: exercise {} has no such task; its tasks: {}",
            ex.manifest.id,
            tasks
                .iter()
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let open = OpenLab::existing(runtime, reporter, &lab, args.run.aws.options())?
        .ok_or_else(|| Error::Input(format!("lab '{lab}' has no ledger")))?;
    reporter.run_started(
        &engine::source_name(&ex.path(SOLVE)),
        &lab,
        open.provider.as_str(),
    );
    let solved = run_solve(runtime, &open, &ex, &learner, &tasks, args.task.as_deref());
    open.closing_notice();
    let solved = solved?;
    if let Some(only) = &args.task
        && !solved.iter().any(|s| &s.id == only && s.status.is_some())
    {
        return Err(Error::Failed(format!(
            "{SOLVE} has no solution for task '{only}'"
        )));
    }
    reporter.log(&format!(
        "solved {}; `labrun exercise check --lab {lab}` shows where that leaves you",
        match &args.task {
            Some(t) => format!("task {t}"),
            None => "every task".to_string(),
        }
    ));
    Ok(Exit::Ok)
}

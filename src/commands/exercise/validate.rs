//! `labrun exercise validate DIR`: everything that can be known without a
//! lab. Every file compiles; checks.rhai declares tasks, each with a hint;
//! solve.rhai has a solution for each task and none for tasks that do not
//! exist; the points add up to exercise.toml's `points`; every README
//! placeholder is a parameter. All problems are reported at once, each at
//! its `file:line:col`; exit 2 if there is any.

use std::path::Path;
use std::sync::Arc;

use crate::bindings::check::{SolutionSpec, TaskSpec};
use crate::engine::resolver::Sources;
use crate::error::{Error, Exit};
use crate::exercise::template::{self, BUILTINS};
use crate::exercise::{CHECKS, Exercise, README, SETUP, SOLVE};
use crate::report::Reporter;

use super::super::run::compile_offline;
use super::{Learner, at, declare, location};

/// What validation found: the tasks, and every problem as a diagnostic.
pub(crate) struct Validated {
    pub tasks: Vec<TaskSpec>,
    pub solutions: Vec<SolutionSpec>,
}

pub fn validate(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    path: &Path,
) -> Result<Exit, Error> {
    let ex = super::load(path)?;
    let learner = Learner {
        id: None,
        params: ex.manifest.defaults(),
    };
    let v = check_all(runtime, &ex, &learner)?;
    let points: u32 = v.tasks.iter().map(|t| t.points).sum();
    reporter.print(&format!(
        "{}: ok: exercise {} {}, {} task{}, {points} point{}{}",
        path.display(),
        ex.manifest.id,
        ex.manifest.version,
        v.tasks.len(),
        if v.tasks.len() == 1 { "" } else { "s" },
        if points == 1 { "" } else { "s" },
        if ex.has(SOLVE) {
            format!(
                ", {} solution{}",
                v.solutions.len(),
                if v.solutions.len() == 1 { "" } else { "s" }
            )
        } else {
            " (learner copy: no solution)".to_string()
        }
    ));
    Ok(Exit::Ok)
}

/// Validates `ex` for `learner`'s parameters: `Err` lists every problem.
pub(crate) fn check_all(
    runtime: &tokio::runtime::Runtime,
    ex: &Exercise,
    learner: &Learner,
) -> Result<Validated, Error> {
    let sources = Sources::default();
    let mut problems: Vec<String> = Vec::new();
    let name = |f: &str| ex.path(f).display().to_string();

    let mut required = vec![README, SETUP, CHECKS];
    if !ex.learner_copy {
        required.push(SOLVE);
    }
    for f in &required {
        if !ex.has(f) {
            problems.push(format!(
                "error: {} is missing (an exercise has exercise.toml, {README}, {SETUP}, {CHECKS} and {SOLVE})",
                name(f)
            ));
        }
    }

    // README placeholders name parameters (or lab, learner, exercise).
    if let Some(text) = ex.files.get(README) {
        let file = name(README);
        sources.insert(&file, text);
        for p in template::placeholders(text) {
            let known = ex.manifest.params.iter().any(|q| q.name == p.name)
                || BUILTINS.contains(&p.name.as_str());
            if !known {
                let what = if p.name.is_empty() {
                    "a placeholder is {{name}} with a parameter's name inside".to_string()
                } else {
                    format!(
                        "unknown placeholder {{{{{}}}}}; exercise.toml declares: {}",
                        p.name,
                        ex.manifest
                            .params
                            .iter()
                            .map(|q| q.name.as_str())
                            .chain(BUILTINS.iter().copied())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                problems.push(at(
                    &what,
                    Some(&location(&file, text, p.span.start)),
                    &sources,
                ));
            }
        }
    }

    if ex.has(SETUP) {
        let scope = Arc::new(learner.scope(ex, crate::bindings::check::Mode::Collect));
        if let Err(e) = compile_offline(runtime, &ex.path(SETUP), &sources, Some(scope)) {
            problems.push(e.to_string());
        }
    }

    let mut tasks = Vec::new();
    if ex.has(CHECKS) {
        match declare(runtime, ex, learner, CHECKS, &sources) {
            Ok(d) => {
                for s in &d.solutions {
                    problems.push(at(
                        &format!("solution('{}') belongs in {SOLVE}, not {CHECKS}", s.id),
                        s.location.as_ref(),
                        &sources,
                    ));
                }
                tasks = d.tasks;
                if tasks.is_empty() {
                    problems.push(format!(
                        "error: {} declares no task: add task(\"id\", #{{title: \"...\", points: 1, hints: [\"...\"]}}, || {{ ... }})",
                        name(CHECKS)
                    ));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    for t in &tasks {
        if t.hints.is_empty() {
            problems.push(at(
                &format!("task '{}' has no hint: give `hints: [\"...\"]` (a learner who fails it reads the next one)", t.id),
                t.location.as_ref(),
                &sources,
            ));
        }
    }

    let mut solutions = Vec::new();
    if ex.has(SOLVE) {
        match declare(runtime, ex, learner, SOLVE, &sources) {
            Ok(d) => {
                for t in &d.tasks {
                    problems.push(at(
                        &format!("task('{}') belongs in {CHECKS}, not {SOLVE}", t.id),
                        t.location.as_ref(),
                        &sources,
                    ));
                }
                solutions = d.solutions;
            }
            Err(e) => problems.push(e.to_string()),
        }
        for t in &tasks {
            if !solutions.iter().any(|s| s.id == t.id) {
                problems.push(at(
                    &format!(
                        "task '{}' is not covered by the solution: {SOLVE} has no solution(\"{}\", || ...)",
                        t.id, t.id
                    ),
                    t.location.as_ref(),
                    &sources,
                ));
            }
        }
        for (i, s) in solutions.iter().enumerate() {
            if !tasks.iter().any(|t| t.id == s.id) && !tasks.is_empty() {
                problems.push(at(
                    &format!(
                        "solution('{}') solves no task: {CHECKS} declares {}",
                        s.id,
                        tasks
                            .iter()
                            .map(|t| t.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    s.location.as_ref(),
                    &sources,
                ));
            } else if solutions[..i].iter().any(|o| o.id == s.id) {
                problems.push(at(
                    &format!("solution('{}') is declared twice", s.id),
                    s.location.as_ref(),
                    &sources,
                ));
            }
        }
    }

    if let (Some(total), Some(span)) = (ex.manifest.points, &ex.manifest.points_span) {
        let sum: u32 = tasks.iter().map(|t| t.points).sum();
        if !tasks.is_empty() && sum != total {
            let file = name(crate::exercise::manifest::FILE);
            let text = ex.files[crate::exercise::manifest::FILE].clone();
            sources.insert(&file, &text);
            problems.push(at(
                &format!(
                    "`points` is {total}, but the tasks' points add up to {sum} ({})",
                    tasks
                        .iter()
                        .map(|t| format!("{} {}", t.id, t.points))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some(&location(&file, &text, span.start)),
                &sources,
            ));
        }
    }

    if problems.is_empty() {
        Ok(Validated { tasks, solutions })
    } else {
        let count = problems.len();
        problems.push(format!(
            "{}: {count} problem{} found",
            ex.source.display(),
            if count == 1 { "" } else { "s" }
        ));
        Err(Error::Syntax(problems.join("\n\n")))
    }
}

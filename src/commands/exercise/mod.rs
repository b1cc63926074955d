//! `labrun exercise ...`: one file per subcommand; this file holds what
//! they share: loading an exercise, the learner and their parameters, and
//! running an exercise's scripts (their declarations offline, then the
//! checks or the solution against the lab through `run::OpenLab`).

pub(crate) mod check;
mod new;
mod pack;
mod solve;
pub(crate) mod start;
mod test;
pub(crate) mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rhai::Map;
use serde_json::Value;

use crate::bindings::check::{ExerciseScope, Mode, Outcome, SolutionSpec, TaskSpec};
use crate::bindings::{self, LabContext};
use crate::cli::{ExerciseCommand, LearnerArgs};
use crate::engine::diagnostics::{self, Location};
use crate::engine::{self, resolver::Sources};
use crate::error::{Error, Exit};
use crate::exercise::manifest::line_col;
use crate::exercise::params::{self, CourseSecret};
use crate::exercise::results::{TaskResult, TaskStatus};
use crate::exercise::state::ExerciseRecord;
use crate::exercise::{CHECKS, Exercise, LoadError, SOLVE};
use crate::ledger;
use crate::report::Reporter;

use super::run::{OpenLab, compile_offline};

pub fn dispatch(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    command: ExerciseCommand,
) -> Result<Exit, Error> {
    match command {
        ExerciseCommand::New { dir } => new::new(reporter, &dir),
        ExerciseCommand::Validate { exercise } => validate::validate(runtime, reporter, &exercise),
        ExerciseCommand::Test(args) => test::test(runtime, reporter, args),
        ExerciseCommand::Start(args) => start::start(runtime, reporter, args),
        ExerciseCommand::Check(args) => check::check(runtime, reporter, args),
        ExerciseCommand::Solve(args) => solve::solve(runtime, reporter, args),
        ExerciseCommand::Pack {
            exercise,
            output,
            learner_copy,
        } => pack::pack(runtime, reporter, &exercise, &output, learner_copy),
    }
}

/// An error at `loc`, quoted from `sources`, the way script errors are.
pub(super) fn at(message: &str, loc: Option<&Location>, sources: &Sources) -> String {
    diagnostics::render(message, loc, sources, &[])
}

/// Where byte `offset` of the text registered as `file` is.
pub(super) fn location(file: &str, text: &str, offset: usize) -> Location {
    let (line, col) = line_col(text, offset);
    Location {
        source: file.to_string(),
        line,
        col,
    }
}

/// Loads the exercise at `path`; a bad manifest is shown at its line.
pub(crate) fn load(path: &Path) -> Result<Exercise, Error> {
    Exercise::load(path).map_err(|e| match e {
        LoadError::Message(m) => Error::Input(m),
        LoadError::Manifest { error, text } => {
            let sources = Sources::default();
            sources.insert(&error.file, &text);
            let loc = location(&error.file, &text, error.span.start);
            Error::Input(at(&error.message, Some(&loc), &sources))
        }
    })
}

/// The learner id, checked.
pub(super) fn learner(args: &LearnerArgs) -> Result<Option<String>, Error> {
    match args.learner.as_deref().filter(|l| !l.is_empty()) {
        None => Ok(None),
        Some(l) if params::valid_learner(l) => Ok(Some(l.to_string())),
        Some(l) => Err(Error::Input(format!(
            "--learner '{l}': learner ids are 1-23 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))),
    }
}

/// With `--class C`, the lab of learner `id` in that class (`--lab` is
/// then refused: the class names the lab).
pub(super) fn class_lab(args: &LearnerArgs, id: Option<&str>) -> Result<Option<String>, Error> {
    let Some(class) = &args.class else {
        return Ok(None);
    };
    if let Some(lab) = &args.lab {
        return Err(Error::Input(format!(
            "--class {class} and --lab {lab} (or LABRUN_LAB): give one (--class C --learner ID names the lab)"
        )));
    }
    crate::class::member_lab(class, id).map(Some)
}

/// The course secret, if there is one; its value is masked in everything
/// labrun prints or writes from here on.
pub(super) fn course_secret(
    args: &LearnerArgs,
    reporter: &Reporter,
) -> Result<Option<CourseSecret>, Error> {
    course_secret_from(args.course_secret_file.as_deref(), reporter)
}

/// [`course_secret`] from the environment or `file`.
pub(crate) fn course_secret_from(
    file: Option<&Path>,
    reporter: &Reporter,
) -> Result<Option<CourseSecret>, Error> {
    let secret = CourseSecret::from_env_or_file(file).map_err(Error::Input)?;
    if let Some(s) = &secret {
        reporter.redactor().add(&s.text());
    }
    Ok(secret)
}

/// `--set KEY=VALUE` arguments, parsed.
pub(super) fn parse_sets(sets: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for s in sets {
        let (k, v) = crate::params::parse_set(s).map_err(Error::Input)?;
        out.insert(k, v);
    }
    Ok(out)
}

/// The learner's parameter values: derived (or the defaults), then `sets`.
pub(crate) fn learner_params(
    ex: &Exercise,
    learner: Option<&str>,
    secret: Option<&CourseSecret>,
    sets: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Value>, Error> {
    let values = params::learner_values(&ex.manifest, learner, secret);
    params::apply_sets(&values, sets).map_err(Error::Input)
}

pub(super) fn to_map(values: &BTreeMap<String, Value>) -> Map {
    values
        .iter()
        .map(|(k, v)| (k.as_str().into(), crate::params::json_to_dynamic(v.clone())))
        .collect()
}

/// What the learner and their scripts are: shared by every script run of
/// one command.
pub(crate) struct Learner {
    pub id: Option<String>,
    pub params: BTreeMap<String, Value>,
}

impl Learner {
    pub fn scope(&self, ex: &Exercise, mode: Mode) -> ExerciseScope {
        ExerciseScope::new(
            &ex.manifest.id,
            self.id.as_deref(),
            to_map(&self.params),
            mode,
        )
    }

    /// `{{name}}` values for the README.
    pub fn placeholders(&self, ex: &Exercise, lab: &str) -> BTreeMap<String, String> {
        let mut v: BTreeMap<String, String> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), params::display(v)))
            .collect();
        v.insert("learner".into(), self.id.clone().unwrap_or_default());
        v.insert("lab".into(), lab.to_string());
        v.insert("exercise".into(), ex.manifest.id.clone());
        v
    }
}

/// What a script declared when its top level ran without a lab.
pub(crate) struct Declared {
    pub tasks: Vec<TaskSpec>,
    pub solutions: Vec<SolutionSpec>,
}

/// Runs the top level of `script` offline: the tasks and solutions it
/// declares. `sources` collects the texts for diagnostics.
pub(crate) fn declare(
    runtime: &tokio::runtime::Runtime,
    ex: &Exercise,
    learner: &Learner,
    script: &str,
    sources: &Sources,
) -> Result<Declared, Error> {
    let path = ex.path(script);
    let scope = Arc::new(learner.scope(ex, Mode::Collect));
    let ctx = LabContext::offline_exercise(runtime.handle().clone(), &path, Some(scope.clone()));
    let engine = bindings::engine(&ctx, sources);
    let ast = engine::compile(&engine, &path, sources)?;
    if let Err(err) = engine::run(&engine, &ast) {
        let diagnostic =
            diagnostics::runtime_error(&err, &engine::source_name(&path), sources, &engine, None);
        return Err(Error::Input(format!(
            "{diagnostic}\n  = note: the top level of {script} also runs without a lab (for `validate` and \
             before every run) and must only declare; do the lab's work (ssh, ec2, sg, secret) inside the closures"
        )));
    }
    let tasks = scope.tasks.lock().expect("tasks lock").clone();
    let solutions = scope.solutions.lock().expect("solutions lock").clone();
    Ok(Declared { tasks, solutions })
}

/// Runs checks.rhai against the lab: one outcome per declared task, in
/// order. A task the run never reached (its top level threw) is an error
/// with that message.
pub(crate) fn run_checks(
    runtime: &tokio::runtime::Runtime,
    open: &OpenLab,
    ex: &Exercise,
    learner: &Learner,
    declared: &[TaskSpec],
) -> Result<Vec<(TaskSpec, Outcome, Duration)>, Error> {
    let Part { path, sources, ast } = compile_part(runtime, ex, learner, CHECKS)?;
    let scope = Arc::new(learner.scope(ex, Mode::Check));
    let ctx = open.context(&path, BTreeMap::new(), Some(scope.clone()));
    let result = open.run_script(&ctx, &sources, ast);
    if let Err(Error::Interrupted(m)) = result {
        return Err(Error::Interrupted(m));
    }
    let broken = result.err().map(|e| e.headline());
    let specs = scope.tasks.lock().expect("tasks lock").clone();
    let mut outcomes = scope.outcomes.lock().expect("outcomes lock").clone();
    let mut out = Vec::new();
    for spec in declared {
        let found = outcomes.iter().position(|(id, _, _)| id == &spec.id);
        let (outcome, elapsed) = match found {
            Some(i) => {
                let (_, o, e) = outcomes.remove(i);
                (o, e)
            }
            None => (
                Outcome::Error(match &broken {
                    Some(why) => {
                        format!("not checked: checks.rhai stopped before this task: {why}")
                    }
                    None => "not checked: checks.rhai did not declare this task when it ran".into(),
                }),
                Duration::ZERO,
            ),
        };
        let spec = specs
            .iter()
            .find(|s| s.id == spec.id)
            .cloned()
            .unwrap_or_else(|| spec.clone());
        out.push((spec, outcome, elapsed));
    }
    Ok(out)
}

/// Runs solve.rhai against the lab (every task, or `only`): how each
/// solution's step ended.
pub(super) fn run_solve(
    runtime: &tokio::runtime::Runtime,
    open: &OpenLab,
    ex: &Exercise,
    learner: &Learner,
    tasks: &[TaskSpec],
    only: Option<&str>,
) -> Result<Vec<SolutionSpec>, Error> {
    if !ex.has(SOLVE) {
        return Err(Error::Input(format!(
            "{} has no {SOLVE}: it is a learner copy, without the reference solution",
            ex.source.display()
        )));
    }
    let Part { path, sources, ast } = compile_part(runtime, ex, learner, SOLVE)?;
    let mut scope = learner.scope(
        ex,
        Mode::Solve {
            only: only.map(String::from),
        },
    );
    scope.titles = tasks
        .iter()
        .map(|t| (t.id.clone(), t.title.clone()))
        .collect();
    let scope = Arc::new(scope);
    let ctx = open.context(&path, BTreeMap::new(), Some(scope.clone()));
    open.run_script(&ctx, &sources, ast)?;
    let solutions = scope.solutions.lock().expect("solutions lock").clone();
    Ok(solutions)
}

/// One of an exercise's scripts, compiled for a learner.
pub(crate) struct Part {
    pub path: std::path::PathBuf,
    /// The sources its diagnostics quote, kept for running it.
    pub sources: Sources,
    pub ast: rhai::AST,
}

/// Compiles `file` of `ex` with `learner`'s parameters in scope (the
/// collecting scope: compiling runs no task).
pub(crate) fn compile_part(
    runtime: &tokio::runtime::Runtime,
    ex: &Exercise,
    learner: &Learner,
    file: &str,
) -> Result<Part, Error> {
    let path = ex.path(file);
    let sources = Sources::default();
    let scope = Arc::new(learner.scope(ex, Mode::Collect));
    let ast = compile_offline(runtime, &path, &sources, Some(scope))?;
    Ok(Part { path, sources, ast })
}

/// A task's result as the learner sees it.
pub(crate) fn task_result(
    spec: &TaskSpec,
    outcome: &Outcome,
    elapsed: Duration,
    hint: impl FnOnce() -> Option<String>,
) -> TaskResult {
    let max = spec.points as f64;
    let (status, points, message, partial) = match outcome {
        Outcome::Passed(m) => (TaskStatus::Passed, max, m.clone(), false),
        Outcome::Failed(m) => (TaskStatus::Failed, 0.0, Some(m.clone()), false),
        Outcome::Partial(f, m) => (TaskStatus::Failed, max * f, Some(m.clone()), true),
        Outcome::Error(m) => (
            TaskStatus::Error,
            0.0,
            Some(format!("the check itself failed: {m}")),
            false,
        ),
    };
    TaskResult {
        id: spec.id.clone(),
        title: spec.title.clone(),
        status,
        points,
        max_points: max,
        message,
        hint: if status == TaskStatus::Passed {
            None
        } else {
            hint()
        },
        partial,
        elapsed,
    }
}

/// The lab's directory under the state root.
pub(crate) fn lab_dir(lab: &str) -> Result<std::path::PathBuf, crate::error::Error> {
    Ok(ledger::state_root()?.join("labs").join(lab))
}

/// The exercise record of `lab`, or how to start it.
pub(crate) fn started(lab: &str, how: &str) -> Result<ExerciseRecord, Error> {
    let dir = lab_dir(lab)?;
    let record = ExerciseRecord::load(&dir)?;
    let data = ledger::LedgerData::load(&dir)?;
    match (record, data) {
        (Some(r), Some(d)) if !d.resources.is_empty() => Ok(r),
        (Some(_), _) => Err(Error::Input(format!(
            "lab '{lab}' has nothing left (destroyed?); start it again with `{how}`"
        ))),
        (None, _) => Err(Error::Input(format!(
            "lab '{lab}' was never started for an exercise; start it with `{how}`"
        ))),
    }
}

/// `labrun exercise start SOURCE [--learner ID]`, as a learner would type it.
pub(super) fn start_command(source: &str, learner: Option<&str>) -> String {
    match learner {
        Some(l) => format!("labrun exercise start {source} --learner {l}"),
        None => format!("labrun exercise start {source}"),
    }
}

/// Writes `text` (redacted) to `path`, for `--junit`.
pub(super) fn write_report(reporter: &Reporter, path: &Path, text: &str) -> Result<(), Error> {
    let text = reporter.redactor().redact(text);
    std::fs::write(path, text)
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))
}

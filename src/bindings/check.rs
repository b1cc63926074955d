//! The check API: `task`, `solution`, `expect`, `pass`, `fail`, `partial`,
//! and an exercise's `params()` and `learner()`.
//!
//! A check ends in a *verdict*: `pass`, `fail` and `partial` throw a map
//! `#{verdict, message[, fraction]}` that the task runner reads, so they
//! work from any depth of helper functions. Anything else a check throws
//! is an `error`: the check itself broke. Outside an exercise `fail` and
//! `expect` simply stop the playbook with their message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext};

use super::args::{self, Options};
use super::lab::run_step;
use super::{LabContext, func};
use crate::engine::diagnostics::{self, Location};
use crate::engine::{RhaiResult, script_error};
use crate::report::Status;

/// What the scripts of an exercise are run for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Declare only: `task` and `solution` record what they are given and
    /// run nothing (`validate`, and before every check run).
    Collect,
    /// Run every task's check as it is declared.
    Check,
    /// Run the solutions, of every task or of one.
    Solve { only: Option<String> },
}

/// A task as `task(id, meta, check)` declared it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub id: String,
    pub title: String,
    pub points: u32,
    pub hints: Vec<String>,
    pub retries: u32,
    pub wait: Duration,
    pub location: Option<Location>,
}

/// A `solution(id, body)` seen, and how its step ended when it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct SolutionSpec {
    pub id: String,
    pub location: Option<Location>,
    pub status: Option<Status>,
}

/// How one check ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Passed(Option<String>),
    Failed(String),
    /// Part of the points: a fraction strictly between 0 and 1.
    Partial(f64, String),
    /// The check threw: the message, with where.
    Error(String),
}

/// The exercise a script runs for: who the learner is, their parameters,
/// and what the script declared and found.
pub struct ExerciseScope {
    pub exercise: String,
    pub learner: Option<String>,
    pub params: Map,
    pub mode: Mode,
    /// Task titles by id, for naming solution steps.
    pub titles: BTreeMap<String, String>,
    pub tasks: Mutex<Vec<TaskSpec>>,
    pub outcomes: Mutex<Vec<(String, Outcome, Duration)>>,
    pub solutions: Mutex<Vec<SolutionSpec>>,
}

impl ExerciseScope {
    pub fn new(exercise: &str, learner: Option<&str>, params: Map, mode: Mode) -> Self {
        ExerciseScope {
            exercise: exercise.into(),
            learner: learner.map(String::from),
            params,
            mode,
            titles: BTreeMap::new(),
            tasks: Mutex::new(Vec::new()),
            outcomes: Mutex::new(Vec::new()),
            solutions: Mutex::new(Vec::new()),
        }
    }
}

const VERDICT: &str = "verdict";
const TASK_KEYS: &[&str] = &["title", "points", "hints", "retries", "wait"];

/// Task ids name tasks on the command line, in JSON and in JUnit.
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 40
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn verdict(kind: &str, message: &str, fraction: Option<f64>) -> Box<EvalAltResult> {
    let mut m = Map::new();
    m.insert(VERDICT.into(), kind.into());
    m.insert("message".into(), message.into());
    if let Some(f) = fraction {
        m.insert("fraction".into(), f.into());
    }
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from_map(m),
        rhai::Position::NONE,
    ))
}

fn call_location(nctx: &NativeCallContext) -> Option<Location> {
    let pos = nctx.call_position();
    Some(Location {
        source: nctx.call_source().unwrap_or_default().to_string(),
        line: pos.line()?,
        col: pos.position().unwrap_or(1),
    })
}

/// Reads `task`'s meta map.
fn task_spec(id: &str, meta: &Map, location: Option<Location>) -> RhaiResult<TaskSpec> {
    let f = format!("task('{id}')");
    let o = Options::new(&f, meta, TASK_KEYS, &["title"])?;
    let title = o.string("title")?.expect("required");
    if title.trim().is_empty() {
        return Err(o.error("`title` must not be empty"));
    }
    let int = |key: &str, max: i64, default: i64| -> RhaiResult<i64> {
        match o.get(key) {
            None => Ok(default),
            Some(v) => match v.as_int() {
                Ok(n) if (0..=max).contains(&n) => Ok(n),
                Ok(n) => Err(o.error(format!("`{key}` must be 0 to {max}, got {n}"))),
                Err(t) => Err(o.error(format!("`{key}` must be an integer, got {t}"))),
            },
        }
    };
    let points = int("points", 1000, 1)? as u32;
    let retries = int("retries", 100, 0)? as u32;
    let wait = o.seconds("wait")?.unwrap_or(Duration::from_secs(2));
    let mut hints = Vec::new();
    if let Some(h) = o.get("hints") {
        let list = h
            .clone()
            .into_array()
            .map_err(|t| o.error(format!("`hints` must be an array of strings, got {t}")))?;
        for item in &list {
            hints.push(args::string(&f, "hints", item)?);
        }
    }
    Ok(TaskSpec {
        id: id.into(),
        title,
        points,
        hints,
        retries,
        wait,
        location,
    })
}

/// The innermost error of a chain of function calls and imports.
fn innermost(e: &EvalAltResult) -> &EvalAltResult {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => innermost(inner),
        other => other,
    }
}

/// How a check's closure ended, read from its result.
pub fn classify(
    result: &Result<Dynamic, Box<EvalAltResult>>,
    source: &str,
    engine: &Engine,
) -> Outcome {
    let e = match result {
        Ok(v) if v.as_bool() == Ok(false) => {
            return Outcome::Failed("the check returned false".into());
        }
        Ok(_) => return Outcome::Passed(None),
        Err(e) => e,
    };
    if let EvalAltResult::ErrorRuntime(v, _) = innermost(e)
        && let Some(m) = v.read_lock::<Map>()
        && let Some(kind) = m.get(VERDICT)
    {
        let message = m
            .get("message")
            .map(diagnostics::thrown_text)
            .unwrap_or_default();
        let fraction = m.get("fraction").and_then(|f| f.as_float().ok());
        match (kind.to_string().as_str(), fraction) {
            ("passed", _) => {
                return Outcome::Passed((!message.is_empty()).then_some(message));
            }
            ("failed", _) => return Outcome::Failed(message),
            ("partial", Some(f)) if f > 0.0 && f < 1.0 => return Outcome::Partial(f, message),
            _ => {}
        }
    }
    let leaf = diagnostics::leaf(e, source);
    let mut message = diagnostics::leaf_message(&leaf, engine);
    if let Some(at) = leaf.location {
        message.push_str(&format!(" (at {at})"));
    }
    // Where in the checks file the failing call was, when the error is
    // deeper down (in a stdlib module, say).
    if let Some(call) = leaf.calls.first() {
        message.push_str(&format!(" ({call})"));
    }
    Outcome::Error(message)
}

/// Runs one check, again after `wait` while it has not passed and retries
/// are left.
fn run_check(
    c: &LabContext,
    nctx: &NativeCallContext,
    spec: &TaskSpec,
    body: &FnPtr,
) -> RhaiResult<(Outcome, Duration)> {
    let started = Instant::now();
    let source = nctx.call_source().unwrap_or_default().to_string();
    let mut attempt = 0;
    loop {
        c.check_cancel()?;
        let result = body.call_within_context::<Dynamic>(nctx, ());
        c.check_cancel()?;
        let outcome = classify(&result, &source, nctx.engine());
        if matches!(outcome, Outcome::Passed(_)) || attempt >= spec.retries {
            return Ok((outcome, started.elapsed()));
        }
        attempt += 1;
        c.sleep(spec.wait)?;
    }
}

fn scope<'a>(c: &'a LabContext, function: &str) -> RhaiResult<&'a Arc<ExerciseScope>> {
    c.exercise.as_ref().ok_or_else(|| {
        script_error(format!(
            "{function} belongs to an exercise's scripts (checks.rhai, solve.rhai), run by \
             `labrun exercise check|solve|test`, not to a playbook"
        ))
    })
}

pub fn register(engine: &mut Engine, ctx: &Arc<LabContext>) {
    let c = ctx.clone();
    func(
        "task",
        &["id: string", "meta: Map", "check: Fn", "()"],
        "Declares a task of an exercise (checks.rhai) and, when checking, runs
        `check`. `meta`: `title` (required), `points` (default 1), `hints` (an
        array; each failed check shows the next one), `retries` (default 0) and
        `wait` (seconds between tries, default 2) for state that takes time to
        appear. The check passes when it returns (a returned `false` fails it),
        fails at `fail(message)`, an unmet `expect` or `partial`, and is an
        `error` (the check broke, not the learner's work) when it throws
        anything else. The top level of checks.rhai must only declare: it also
        runs without a lab, for `labrun exercise validate`.",
    )
    .register_into_engine(
        engine,
        move |nctx: NativeCallContext, id: &str, meta: Map, check: FnPtr| -> RhaiResult<()> {
            let ex = scope(&c, "task()")?;
            if !valid_task_id(id) {
                return Err(script_error(format!(
                    "task('{id}'): task ids are 1-40 letters, digits, '_' or '-'"
                )));
            }
            if let Mode::Solve { .. } = ex.mode {
                return Err(script_error(format!(
                    "task('{id}'): tasks are declared in checks.rhai; solve.rhai declares solution('{id}', || ...)"
                )));
            }
            let spec = task_spec(id, &meta, call_location(&nctx))?;
            {
                let mut tasks = ex.tasks.lock().expect("tasks lock");
                if tasks.iter().any(|t| t.id == id) {
                    return Err(script_error(format!(
                        "task('{id}'): a task with this id is already declared"
                    )));
                }
                tasks.push(spec.clone());
            }
            if ex.mode == Mode::Check {
                let (outcome, elapsed) = run_check(&c, &nctx, &spec, &check)?;
                ex.outcomes
                    .lock()
                    .expect("outcomes lock")
                    .push((id.to_string(), outcome, elapsed));
            }
            Ok(())
        },
    );

    let c = ctx.clone();
    func(
        "solution",
        &["id: string", "body: Fn", "()"],
        "Declares the reference solution of task `id` (solve.rhai) and, when
        solving, runs `body` as a step named after the task (`labrun exercise
        solve --task ID` runs one). Like checks.rhai, the top level only
        declares. `labrun exercise test` runs the solution twice: the second
        run must change nothing.",
    )
    .register_into_engine(
        engine,
        move |nctx: NativeCallContext, id: &str, body: FnPtr| -> RhaiResult<()> {
            let ex = scope(&c, "solution()")?;
            if ex.mode == Mode::Check {
                return Err(script_error(format!(
                    "solution('{id}'): solutions belong in solve.rhai, not checks.rhai"
                )));
            }
            let mut spec = SolutionSpec {
                id: id.to_string(),
                location: call_location(&nctx),
                status: None,
            };
            if let Mode::Solve { only } = &ex.mode
                && only.as_deref().is_none_or(|o| o == id)
            {
                let name = match ex.titles.get(id) {
                    Some(title) => format!("{id}: {title}"),
                    None => id.to_string(),
                };
                let (_, status) = run_step(&c, &nctx, &name, &body)?;
                spec.status = Some(status);
            }
            ex.solutions.lock().expect("solutions lock").push(spec);
            Ok(())
        },
    );

    func(
        "expect",
        &["condition: bool", "message: string", "()"],
        "Fails the check with `message` unless `condition` is true (in a
        playbook: stops it with `message`). Say what was found, not only what
        was expected: \"MySQL listens on 127.0.0.1 only\", not \"wrong address\".",
    )
    .register_into_engine(engine, |condition: bool, message: &str| -> RhaiResult<()> {
        if condition {
            Ok(())
        } else {
            Err(verdict("failed", message, None))
        }
    });

    func(
        "fail",
        &["message: string", "()"],
        "Fails the check with `message`, which the learner reads (in a
        playbook: stops the playbook with `message`, like `throw`, but reads as
        intent).",
    )
    .register_into_engine(engine, |message: &str| -> RhaiResult<()> {
        Err(verdict("failed", message, None))
    });

    func("pass", &["()"], "Ends the check here: passed.")
        .register_into_engine(engine, || -> RhaiResult<()> {
            Err(verdict("passed", "", None))
        });
    func(
        "pass",
        &["message: string", "()"],
        "Ends the check here: passed, with a message the learner reads.",
    )
    .register_into_engine(engine, |message: &str| -> RhaiResult<()> {
        Err(verdict("passed", message, None))
    });

    for (ty, param) in [("f64", "fraction: f64"), ("i64", "fraction: i64")] {
        let doc = "Ends the check with part of the task's points: `fraction` from 0 to 1
        (0 is `fail`, 1 is `pass`); the task counts as not passed. `message` says
        what is missing, e.g. `partial(0.5, \"no test database: done; anonymous
        users: 2 left\")`.";
        let reg = func("partial", &[param, "message: string", "()"], doc);
        let check = |f: f64, message: &str| -> RhaiResult<()> {
            if !(0.0..=1.0).contains(&f) {
                return Err(script_error(format!(
                    "partial(fraction, message): fraction must be 0 to 1, got {f}"
                )));
            }
            if f == 1.0 {
                Err(verdict("passed", message, None))
            } else if f == 0.0 {
                Err(verdict("failed", message, None))
            } else {
                Err(verdict("partial", message, Some(f)))
            }
        };
        if ty == "f64" {
            reg.register_into_engine(engine, move |f: f64, m: &str| check(f, m));
        } else {
            reg.register_into_engine(engine, move |f: i64, m: &str| check(f as f64, m));
        }
    }

    let c = ctx.clone();
    func(
        "params",
        &["Map"],
        "An exercise's parameters for this learner: exercise.toml's `[params]`,
        each learner's own values when a course secret is set (else the
        defaults). Checks compute what they expect from these.",
    )
    .register_into_engine(engine, move || -> RhaiResult<Map> {
        match &c.exercise {
            Some(ex) => Ok(ex.params.clone()),
            None => Err(script_error(
                "params() without defaults is for exercises (their parameters are in exercise.toml); \
                 a playbook declares its own: params(#{name: default, ...})",
            )),
        }
    });

    let c = ctx.clone();
    func(
        "learner",
        &["String"],
        "The learner id the exercise runs for (`--learner`), or \"\" without one.",
    )
    .register_into_engine(engine, move || -> String {
        c.exercise
            .as_ref()
            .and_then(|ex| ex.learner.clone())
            .unwrap_or_default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut engine = Engine::new();
        engine.register_fn("fail", |m: &str| -> RhaiResult<()> {
            Err(verdict("failed", m, None))
        });
        engine.register_fn("partial", |f: f64, m: &str| -> RhaiResult<()> {
            Err(verdict("partial", m, Some(f)))
        });
        engine
    }

    fn outcome(script: &str) -> Outcome {
        let engine = engine();
        classify(&engine.eval::<Dynamic>(script), "c.rhai", &engine)
    }

    #[test]
    fn verdicts_are_read_from_any_depth_and_everything_else_is_an_error() {
        assert_eq!(outcome("1"), Outcome::Passed(None));
        assert_eq!(
            outcome("false"),
            Outcome::Failed("the check returned false".into())
        );
        assert_eq!(
            outcome("fn f() { fail(\"deep\") } f()"),
            Outcome::Failed("deep".into())
        );
        assert_eq!(
            outcome("partial(0.5, \"half\")"),
            Outcome::Partial(0.5, "half".into())
        );
        match outcome("let x = 1;\nx.nope()") {
            Outcome::Error(m) => {
                assert!(
                    m.starts_with("no function nope (i64) (at c.rhai:2:3)"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        match outcome("fail(1)") {
            Outcome::Error(m) => assert!(
                m.starts_with("wrong arguments for fail(i64); expected fail(_: string)"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        match outcome("throw \"boom\"") {
            Outcome::Error(m) => assert!(m.starts_with("boom (at c.rhai:1:1)"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn task_meta_is_checked_and_named() {
        let mut m = Map::new();
        m.insert("title".into(), "T".into());
        m.insert("hints".into(), Dynamic::from_array(vec!["h".into()]));
        let s = task_spec("a", &m, None).unwrap();
        assert_eq!((s.points, s.retries, s.hints.len()), (1, 0, 1));
        m.insert("pionts".into(), 2_i64.into());
        let e = task_spec("a", &m, None).unwrap_err().to_string();
        assert!(e.contains("task('a'): unknown key `pionts`"), "{e}");
        m.remove("pionts");
        m.insert("points".into(), (-1_i64).into());
        let e = task_spec("a", &m, None).unwrap_err().to_string();
        assert!(e.contains("`points` must be 0 to 1000, got -1"), "{e}");
        assert!(valid_task_id("bind-address"));
        assert!(!valid_task_id("bind address"));
    }
}

//! `labrun class grade [CLASS]`: every learner's checks, a few learners at
//! a time, each exactly as `labrun exercise check` runs them (the
//! parameters the lab was started with; with a course secret at hand, those
//! must be what it gives the learner), without moving on the learner's
//! hints. Writes the gradebook (CSV, JSON, HTML) into the class's
//! directory and prints a summary. A learner who cannot be graded (their
//! lab is gone, never came up, or will not open) is an error with the
//! reason, not a zero.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::class::gradebook::{Column, Gradebook, Row};
use crate::class::progress::Progress;
use crate::class::state::{Class, ClassState, LabState, LearnerState};
use crate::class::{class_dir, html, pool};
use crate::cli::ClassGradeArgs;
use crate::commands::exercise::check::recorded_learner;
use crate::commands::exercise::{
    Learner, course_secret_from, declare, load, run_checks, started, task_result,
};
use crate::commands::run::OpenLab;
use crate::error::{Error, Exit};
use crate::exercise::params::CourseSecret;
use crate::exercise::results::{CheckReport, TaskStatus};
use crate::exercise::{CHECKS, Exercise};
use crate::ledger::{self, now_secs, write_atomic};
use crate::providers::ProviderOptions;
use crate::redact::Redactor;
use crate::report::{OutputMode, Reporter};

use super::{THROTTLE_WAIT, interrupt_flag, log_path, pick_class, throttled, with_throttling};

pub const CSV: &str = "gradebook.csv";
pub const JSON: &str = "gradebook.json";
pub const HTML: &str = "gradebook.html";

pub fn grade(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: ClassGradeArgs,
) -> Result<Exit, Error> {
    let root = ledger::state_root()?;
    let name = pick_class(&root, args.class.as_deref())?;
    let state = super::load(&root, &name)?;
    let dir = class_dir(&root, &name);
    let lock = Class::lock(&dir, &name)?;
    let class = Class::new(&dir, lock, state)?;
    let state = class.snapshot();
    let ex = load(&state.exercise.source).map_err(|e| {
        Error::Input(format!(
            "class {name} runs exercise {} from {}, which cannot be loaded now: {}",
            state.exercise.id,
            state.exercise.source.display(),
            e.headline()
        ))
    })?;
    if ex.manifest.id != state.exercise.id {
        return Err(Error::Input(format!(
            "{} is exercise '{}' now, but class {name} runs '{}'",
            state.exercise.source.display(),
            ex.manifest.id,
            state.exercise.id
        )));
    }
    if ex.digest != state.exercise.digest {
        reporter.warn(&format!(
            "exercise {} changed since class {name}'s labs were set up (digest {} then, {} now); \
             grading with the exercise as it is now",
            ex.manifest.id, state.exercise.digest, ex.digest
        ));
    }
    let secret = course_secret_from(args.course_secret_file.as_deref(), reporter)?;
    // The columns: the tasks as the exercise declares them with its defaults.
    let defaults = Learner {
        id: None,
        params: ex.manifest.defaults(),
    };
    let columns: Vec<Column> = declare(runtime, &ex, &defaults, CHECKS, &Default::default())?
        .tasks
        .iter()
        .map(|t| Column {
            id: t.id.clone(),
            title: t.title.clone(),
            max_points: t.points as f64,
        })
        .collect();

    let (stop, watcher) = interrupt_flag(runtime, reporter);
    let ids: Vec<&str> = state.learners.iter().map(|l| l.id.as_str()).collect();
    let progress = Progress::new(reporter, "grade", &ids);
    let options = args.aws.options();
    let job = |l: &LearnerState| -> Result<CheckReport, String> {
        let log = log_path(class.dir(), &l.id).map_err(|e| e.headline())?;
        let line = progress
            .start(&l.id, &l.lab, &log)
            .map_err(|e| e.headline())?;
        let result = with_throttling(
            &stop,
            THROTTLE_WAIT,
            |m| {
                line.set(m);
                line.captured.warn(m);
            },
            || {
                grade_one(
                    runtime,
                    &line.captured,
                    &state,
                    &ex,
                    secret.as_ref(),
                    l,
                    &options,
                )
            },
            |r| match r {
                Ok(report) => report.tasks.iter().any(|t| {
                    t.status == TaskStatus::Error && t.message.as_deref().is_some_and(throttled)
                }),
                Err(e) => throttled(e),
            },
        );
        match &result {
            Ok(r) => line.finish(Ok(&format!(
                "{}/{}",
                crate::exercise::results::points_text(r.score),
                crate::exercise::results::points_text(r.max_score)
            ))),
            Err(why) => line.finish(Err(why)),
        }
        result
    };
    let results = pool::run(&state.learners, args.parallel as usize, &stop, job);
    watcher.abort();
    if stop.load(Ordering::SeqCst) {
        return Err(Error::Interrupted(
            "interrupted: no gradebook written; run `labrun class grade` again".into(),
        ));
    }

    let mut book = Gradebook {
        class: name.clone(),
        exercise: ex.manifest.id.clone(),
        exercise_title: ex.manifest.title.clone(),
        version: ex.manifest.version.clone(),
        graded_at: now_secs(),
        columns,
        rows: state
            .learners
            .iter()
            .zip(results)
            .map(|(l, r)| Row {
                member: l.member.clone(),
                lab: l.lab.clone(),
                result: r.unwrap_or_else(|| Err("not graded (interrupted)".into())),
            })
            .collect(),
    };
    redact(&mut book, reporter.redactor());
    let files = [
        (CSV, book.csv()),
        (
            JSON,
            serde_json::to_string_pretty(&book.json()).expect("gradebook serializes") + "\n",
        ),
        (HTML, html::page(&book)),
    ];
    for (file, text) in &files {
        write_atomic(
            &class.dir().join(file),
            reporter.redactor().redact(text).as_bytes(),
            0o600,
        )?;
    }
    let (graded, errors) = book.counts();
    if reporter.mode() == OutputMode::Json {
        let mut ev = book.json();
        ev["event"] = json!("gradebook");
        ev["files"] = json!(
            files
                .iter()
                .map(|(f, _)| class.dir().join(f))
                .collect::<Vec<_>>()
        );
        reporter.print_event(ev);
    } else {
        for line in book.summary() {
            reporter.print(&line);
        }
        reporter.print(&format!(
            "gradebook: {} (also {} and {})",
            class.dir().join(HTML).display(),
            CSV,
            JSON
        ));
    }
    if errors == 0 {
        return Ok(Exit::Ok);
    }
    Err(Error::Failed(format!(
        "{errors} of {} learners could not be graded (ERROR in the gradebook; {graded} were): {}",
        book.rows.len(),
        book.rows
            .iter()
            .filter_map(|r| r
                .result
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", r.member.id)))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// One learner's checks, or why they could not be run.
fn grade_one(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    class: &ClassState,
    ex: &Exercise,
    secret: Option<&CourseSecret>,
    l: &LearnerState,
    options: &ProviderOptions,
) -> Result<CheckReport, String> {
    match l.state {
        LabState::Up => {}
        LabState::Down => {
            return Err(format!(
                "lab '{}' was removed by `labrun class down`",
                l.lab
            ));
        }
        LabState::Pending => return Err(format!("lab '{}' was never brought up", l.lab)),
        LabState::Starting | LabState::Failed => {
            return Err(format!(
                "lab '{}' did not come up{}; `labrun class up` tries again",
                l.lab,
                l.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    let how = format!(
        "labrun class up {} --roster {} --name {}",
        class.exercise.source.display(),
        class.roster.display(),
        class.class
    );
    let fail = |e: Error| e.headline();
    let record = started(&l.lab, &how).map_err(fail)?;
    if record.exercise != ex.manifest.id || record.learner.as_deref() != Some(&l.id) {
        return Err(format!(
            "lab '{}' was started for exercise '{}' and learner {}, not this class's",
            l.lab,
            record.exercise,
            record.learner.as_deref().unwrap_or("(none)")
        ));
    }
    let learner = recorded_learner(ex, &record, secret).map_err(fail)?;
    let declared = declare(runtime, ex, &learner, CHECKS, &Default::default()).map_err(fail)?;
    let open = OpenLab::existing(runtime, reporter, &l.lab, options.clone())
        .map_err(fail)?
        .ok_or_else(|| format!("lab '{}' has no ledger", l.lab))?;
    reporter.log(&format!(
        "checking lab {} ({} tasks)",
        l.lab,
        declared.tasks.len()
    ));
    let outcomes = run_checks(runtime, &open, ex, &learner, &declared.tasks).map_err(fail)?;
    drop(open);
    // The instructor's look: the learner's next hint is shown, not used up.
    let tasks = outcomes
        .iter()
        .map(|(spec, outcome, elapsed)| {
            task_result(spec, outcome, *elapsed, || {
                record.clone().next_hint(&spec.id, &spec.hints)
            })
        })
        .collect();
    let report = CheckReport::new(
        &ex.manifest.id,
        &ex.manifest.version,
        learner.id.as_deref(),
        tasks,
    );
    for line in report.human() {
        reporter.log(&line);
    }
    Ok(report)
}

/// Masks every secret in what the gradebook says (before any escaping,
/// which would hide a secret from the redactor).
fn redact(book: &mut Gradebook, r: &Redactor) {
    for row in &mut book.rows {
        match &mut row.result {
            Ok(report) => {
                for t in &mut report.tasks {
                    t.message = t.message.as_deref().map(|m| r.redact(m));
                    t.hint = t.hint.as_deref().map(|h| r.redact(h));
                    t.title = r.redact(&t.title);
                }
            }
            Err(why) => *why = r.redact(why),
        }
    }
}

//! `labrun exercise check [SOURCE] [--learner ID | --lab LAB]`: every
//! task's check against the learner's lab, with the parameters the lab was
//! started with; passed/failed/error, points, what is wrong, the next hint,
//! the score. Exit 0 when every task passed, 1 otherwise.

use std::sync::Arc;

use crate::cli::ExerciseCheckArgs;
use crate::error::{Error, Exit};
use crate::exercise::params::{apply_sets, learner_values};
use crate::exercise::results::CheckReport;
use crate::exercise::state::ExerciseRecord;
use crate::exercise::{CHECKS, Exercise};
use crate::ledger;
use crate::report::{OutputMode, Reporter};

use super::super::run::OpenLab;
use super::{
    Learner, course_secret, declare, learner, run_checks, start_command, started, task_result,
};

/// The lab to work on and the exercise it runs, for `check` and `solve`:
/// from SOURCE and the learner, or `--lab`, or the one exercise lab there is.
pub(super) fn resolve(
    source: Option<&std::path::Path>,
    args: &crate::cli::LearnerArgs,
) -> Result<(String, ExerciseRecord, Exercise), Error> {
    let id = learner(args)?;
    let shown_source = source
        .map(|s| s.display().to_string())
        .unwrap_or_else(|| "EXERCISE".into());
    let how = start_command(&shown_source, id.as_deref());
    let class_lab = super::class_lab(args, id.as_deref())?;
    let (lab, ex) = match (class_lab.as_ref().or(args.lab.as_ref()), source) {
        (Some(lab), src) => {
            ledger::validate_lab_name(lab)?;
            (lab.clone(), src.map(super::load).transpose()?)
        }
        (None, Some(src)) => {
            let ex = super::load(src)?;
            (ex.lab_name(id.as_deref()), Some(ex))
        }
        (None, None) => {
            let root = ledger::state_root()?;
            let labs: Vec<String> = ledger::list_labs(&root)
                .into_iter()
                .filter(|l| {
                    let dir = root.join("labs").join(l);
                    let alive = ledger::LedgerData::load(&dir)
                        .ok()
                        .flatten()
                        .is_some_and(|d| !d.resources.is_empty());
                    alive
                        && ExerciseRecord::load(&dir)
                            .ok()
                            .flatten()
                            .is_some_and(|r| id.is_none() || r.learner == id)
                })
                .collect();
            match labs.as_slice() {
                [one] => (one.clone(), None),
                [] => {
                    return Err(Error::Input(format!(
                        "no exercise lab{} under {}; start one with `{how}`",
                        id.as_deref()
                            .map(|l| format!(" for learner {l}"))
                            .unwrap_or_default(),
                        root.display()
                    )));
                }
                many => {
                    return Err(Error::Input(format!(
                        "several exercise labs ({}); name one with --lab NAME or give the exercise",
                        many.join(", ")
                    )));
                }
            }
        }
    };
    let record = started(&lab, &how)?;
    let ex = match ex {
        Some(ex) => ex,
        None => super::load(&record.source).map_err(|e| {
            Error::Input(format!(
                "lab '{lab}' was started from {}, which cannot be loaded now: {}",
                record.source.display(),
                e.headline()
            ))
        })?,
    };
    if ex.manifest.id != record.exercise {
        return Err(Error::Input(format!(
            "lab '{lab}' was started for exercise '{}', not '{}'",
            record.exercise, ex.manifest.id
        )));
    }
    if id.is_some() && record.learner != id {
        return Err(Error::Input(format!(
            "lab '{lab}' was started for learner {}, not {}",
            record.learner.as_deref().unwrap_or("(none)"),
            id.as_deref().unwrap_or_default()
        )));
    }
    Ok((lab, record, ex))
}

/// The learner's parameters as recorded at start; with a course secret at
/// hand they must also be what the secret gives (else the lab was started
/// with another secret, or its record was edited).
pub(crate) fn recorded_learner(
    ex: &Exercise,
    record: &ExerciseRecord,
    secret: Option<&crate::exercise::params::CourseSecret>,
) -> Result<Learner, Error> {
    if let Some(secret) = secret {
        let derived = learner_values(&ex.manifest, record.learner.as_deref(), Some(secret));
        let expected = apply_sets(&derived, &record.sets).map_err(Error::Input)?;
        if expected != record.params {
            return Err(Error::Input(format!(
                "the lab's recorded parameters are not what the course secret gives learner {} \
                 (was the lab started with another secret, or without one?)",
                record.learner.as_deref().unwrap_or("(none)")
            )));
        }
    }
    Ok(Learner {
        id: record.learner.clone(),
        params: record.params.clone(),
    })
}

pub fn check(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: ExerciseCheckArgs,
) -> Result<Exit, Error> {
    let (lab, mut record, ex) = resolve(args.exercise.as_deref(), &args.learner)?;
    let secret = course_secret(&args.learner, reporter)?;
    let learner = recorded_learner(&ex, &record, secret.as_ref())?;
    if record.digest != ex.digest {
        reporter.warn(&format!(
            "the exercise changed since lab '{lab}' was started (digest {} then, {} now); checking with the exercise as it is now",
            record.digest, ex.digest
        ));
    }
    let declared = declare(runtime, &ex, &learner, CHECKS, &Default::default())?;

    let open = OpenLab::existing(runtime, reporter, &lab, args.aws.options())?
        .ok_or_else(|| Error::Input(format!("lab '{lab}' has no ledger")))?;
    let outcomes = run_checks(runtime, &open, &ex, &learner, &declared.tasks)?;
    let tasks = outcomes
        .iter()
        .map(|(spec, outcome, elapsed)| {
            task_result(spec, outcome, *elapsed, || {
                record.next_hint(&spec.id, &spec.hints)
            })
        })
        .collect();
    record.save(open.ledger.dir())?;
    drop(open);

    let report = CheckReport::new(
        &ex.manifest.id,
        &ex.manifest.version,
        learner.id.as_deref(),
        tasks,
    );
    if args.output == Some(OutputMode::Json) {
        reporter.print(&report.to_json());
    } else {
        for line in report.human() {
            reporter.print(&line);
        }
        let minutes = ledger::now_secs().saturating_sub(record.started_at) / 60;
        reporter.print(&format!(
            "time: {minutes} min since the start{}",
            ex.manifest
                .time_limit_minutes
                .map(|m| format!(" (limit {m} min)"))
                .unwrap_or_default()
        ));
    }
    if let Some(path) = &args.junit {
        super::write_report(reporter, path, &report.junit())?;
    }
    Ok(if report.all_passed() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

//! `labrun exercise test DIR`: the author's proof on real instances (see
//! `exercise::protocol`): setup, checks (each must fail), solve, checks
//! (each must pass), solve again (must change nothing), checks (each must
//! still pass), destroy. Exit 1 naming every task that broke the protocol.

use std::sync::Arc;

use crate::cli::ExerciseTestArgs;
use crate::engine;
use crate::error::{Error, Exit};
use crate::exercise::protocol::{self, Phase, Violation};
use crate::exercise::results::{CheckReport, TaskResult, xml};
use crate::exercise::{Exercise, SETUP, SOLVE};
use crate::ledger::{self, LedgerData};
use crate::report::{Reporter, Status};

use super::super::run::OpenLab;
use super::{
    Learner, course_secret, learner, learner_params, parse_sets, run_checks, run_solve, task_result,
};

pub fn test(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: ExerciseTestArgs,
) -> Result<Exit, Error> {
    let ex = super::load(&args.exercise)?;
    if !ex.has(SOLVE) {
        return Err(Error::Input(format!(
            "{} has no {SOLVE} (a learner copy?): the test needs the reference solution",
            args.exercise.display()
        )));
    }
    if let Some(class) = &args.learner.class {
        return Err(Error::Input(format!(
            "--class {class}: `exercise test` runs in a lab of its own, not in a class's;              use `labrun exercise check --class {class} --learner ID` on a learner's lab"
        )));
    }
    let id = learner(&args.learner)?;
    let secret = course_secret(&args.learner, reporter)?;
    let sets = parse_sets(&args.set)?;
    let params = learner_params(&ex, id.as_deref(), secret.as_ref(), &sets)?;
    let learner = Learner { id, params };
    let validated = super::validate::check_all(runtime, &ex, &learner)?;
    let tasks = validated.tasks;

    let lab = args
        .learner
        .lab
        .clone()
        .unwrap_or_else(|| format!("{}-test", ex.manifest.id));
    ledger::validate_lab_name(&lab)?;
    if LedgerData::load(&super::lab_dir(&lab)?)?.is_some_and(|d| !d.resources.is_empty()) {
        return Err(Error::Input(format!(
            "lab '{lab}' already has resources; the test starts from nothing: \
             `labrun destroy --lab {lab}` first, or pick another with --lab NAME"
        )));
    }

    let super::Part {
        path: setup,
        sources,
        ast,
    } = super::compile_part(runtime, &ex, &learner, SETUP)?;
    let open = OpenLab::open(
        runtime,
        reporter,
        &lab,
        args.run.provider,
        args.run.aws.options(),
    )?;
    open.ledger
        .update(|d| d.playbook = Some(format!("exercise test {}", ex.manifest.id)))?;
    reporter.run_started(&engine::source_name(&setup), &lab, open.provider.as_str());

    let mut journal = Journal::default();
    let outcome = (|| -> Result<(), Error> {
        let scope = Arc::new(learner.scope(&ex, crate::bindings::check::Mode::Collect));
        let ctx = open.context(&setup, Default::default(), Some(scope));
        open.run_script(&ctx, &sources, ast)?;
        journal.phase(
            reporter,
            &ex,
            &learner,
            Phase::BeforeSolve,
            run(runtime, &open, &ex, &learner, &tasks)?,
        );
        reporter.log("== solve");
        run_solve(runtime, &open, &ex, &learner, &tasks, None)?;
        journal.phase(
            reporter,
            &ex,
            &learner,
            Phase::AfterSolve,
            run(runtime, &open, &ex, &learner, &tasks)?,
        );
        reporter.log("== solve again (must change nothing)");
        let again = run_solve(runtime, &open, &ex, &learner, &tasks, None)?;
        let changed: Vec<String> = again
            .iter()
            .filter(|s| s.status == Some(Status::Changed))
            .map(|s| s.id.clone())
            .collect();
        journal.converged = protocol::judge_converged(&changed);
        journal.phase(
            reporter,
            &ex,
            &learner,
            Phase::AfterSecondSolve,
            run(runtime, &open, &ex, &learner, &tasks)?,
        );
        Ok(())
    })();
    open.closing_notice();
    drop(open);

    if args.keep {
        reporter.log(&format!(
            "--keep: lab '{lab}' is still up; `labrun destroy --lab {lab}` removes it"
        ));
    } else if let Err(e) =
        super::super::destroy::destroy_lab(runtime, reporter, &lab, &args.run.aws.options())
    {
        reporter.warn(&format!(
            "the test lab could not be removed: {}",
            e.headline()
        ));
    }
    if let Some(path) = &args.junit {
        super::write_report(
            reporter,
            path,
            &journal.junit(&ex, &tasks, outcome.as_ref().err()),
        )?;
    }
    outcome?;

    let violations = journal.violations();
    if violations.is_empty() {
        reporter.log(&format!(
            "protocol passed: {} task{} fail before the solve and pass after it; the second solve changed nothing",
            tasks.len(),
            if tasks.len() == 1 { "" } else { "s" }
        ));
        Ok(Exit::Ok)
    } else {
        Err(Error::Failed(format!(
            "the exercise broke the protocol:\n  {}",
            violations
                .iter()
                .map(|v| v.message.clone())
                .collect::<Vec<_>>()
                .join("\n  ")
        )))
    }
}

fn run(
    runtime: &tokio::runtime::Runtime,
    open: &OpenLab,
    ex: &Exercise,
    learner: &Learner,
    tasks: &[crate::bindings::check::TaskSpec],
) -> Result<Vec<TaskResult>, Error> {
    Ok(run_checks(runtime, open, ex, learner, tasks)?
        .iter()
        .map(|(spec, outcome, elapsed)| {
            task_result(spec, outcome, *elapsed, || spec.hints.first().cloned())
        })
        .collect())
}

/// What each phase found.
#[derive(Default)]
struct Journal {
    phases: Vec<(Phase, Vec<TaskResult>, Vec<Violation>)>,
    converged: Option<Violation>,
}

impl Journal {
    fn phase(
        &mut self,
        reporter: &Reporter,
        ex: &Exercise,
        learner: &Learner,
        phase: Phase,
        results: Vec<TaskResult>,
    ) {
        reporter.log(&format!("== {}", phase.title()));
        let report = CheckReport::new(
            &ex.manifest.id,
            &ex.manifest.version,
            learner.id.as_deref(),
            results.clone(),
        );
        for line in report.human() {
            reporter.log(&format!("   {line}"));
        }
        let violations = protocol::judge(phase, &results);
        for v in &violations {
            reporter.log(&format!("   BROKEN: {}", v.message));
        }
        self.phases.push((phase, results, violations));
    }

    fn violations(&self) -> Vec<Violation> {
        let mut all: Vec<Violation> = self
            .phases
            .iter()
            .flat_map(|(_, _, v)| v.iter().cloned())
            .collect();
        all.extend(self.converged.clone());
        all
    }

    /// One testcase per task (broken if any phase broke it), one for the
    /// solution's convergence, and one for the run itself if it failed.
    fn junit(
        &self,
        ex: &Exercise,
        tasks: &[crate::bindings::check::TaskSpec],
        error: Option<&Error>,
    ) -> String {
        let violations = self.violations();
        let mut cases = Vec::new();
        for t in tasks {
            let broken: Vec<&Violation> = violations
                .iter()
                .filter(|v| v.task.as_deref() == Some(t.id.as_str()))
                .collect();
            let ran = self.phases.len();
            let time: f64 = self
                .phases
                .iter()
                .flat_map(|(_, r, _)| r.iter().filter(|x| x.id == t.id))
                .map(|x| x.elapsed.as_secs_f64())
                .sum();
            let name = format!("{}: {}", t.id, t.title);
            cases.push(if !broken.is_empty() {
                let text: Vec<String> = broken.iter().map(|v| v.message.clone()).collect();
                case(
                    &ex.manifest.id,
                    &name,
                    time,
                    Some(("failure", &text.join("\n"))),
                )
            } else if ran < 3 {
                case(
                    &ex.manifest.id,
                    &name,
                    time,
                    Some(("skipped", "the protocol did not get this far")),
                )
            } else {
                case(&ex.manifest.id, &name, time, None)
            });
        }
        let converge = "the second solve changes nothing";
        cases.push(match (&self.converged, self.phases.len()) {
            (Some(v), _) => case(
                &ex.manifest.id,
                converge,
                0.0,
                Some(("failure", &v.message)),
            ),
            (None, 3) => case(&ex.manifest.id, converge, 0.0, None),
            _ => case(
                &ex.manifest.id,
                converge,
                0.0,
                Some(("skipped", "the protocol did not get this far")),
            ),
        });
        if let Some(e) = error {
            cases.push(case(
                &ex.manifest.id,
                "setup and solve run",
                0.0,
                Some(("error", &e.user_text())),
            ));
        }
        let count = |tag: &str| {
            cases
                .iter()
                .filter(|c| c.contains(&format!("<{tag} ")))
                .count()
        };
        let (failures, errors, skipped) = (count("failure"), count("error"), count("skipped"));
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{id} protocol\" tests=\"{n}\" failures=\"{failures}\" errors=\"{errors}\">\n  \
             <testsuite name=\"{id} protocol\" tests=\"{n}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">\n{}  </testsuite>\n</testsuites>\n",
            cases.concat(),
            id = xml(&ex.manifest.id),
            n = cases.len(),
        )
    }
}

fn case(class: &str, name: &str, time: f64, problem: Option<(&str, &str)>) -> String {
    let open = format!(
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\"",
        xml(class),
        xml(name)
    );
    match problem {
        None => format!("{open}/>\n"),
        Some((tag, text)) => format!(
            "{open}>\n      <{tag} message=\"{}\">{}</{tag}>\n    </testcase>\n",
            xml(text.lines().next().unwrap_or_default()),
            xml(text)
        ),
    }
}

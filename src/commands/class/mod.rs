//! `labrun class ...`: one file per subcommand; this file holds what they
//! share: finding the class, the learners' log files, Ctrl-C, and waiting
//! out cloud throttling for one learner without failing the class.

mod down;
mod grade;
mod status;
mod up;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::class::state::ClassState;
use crate::class::{self, class_dir};
use crate::cli::ClassCommand;
use crate::error::{Error, Exit};
use crate::ledger::private_dir;
use crate::report::Reporter;

pub fn dispatch(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    command: ClassCommand,
) -> Result<Exit, Error> {
    match command {
        ClassCommand::Up(args) => up::up(runtime, reporter, args),
        ClassCommand::Status { class, .. } => status::status(runtime, reporter, class.as_deref()),
        ClassCommand::Grade(args) => grade::grade(runtime, reporter, args),
        ClassCommand::Down(args) => down::down(runtime, reporter, args),
    }
}

/// The class a command acts on: the one named, else the only one there is.
fn pick_class(root: &Path, name: Option<&str>) -> Result<String, Error> {
    if let Some(name) = name {
        class::check_class_name(name)?;
        return Ok(name.to_string());
    }
    match class::list_classes(root).as_slice() {
        [] => Err(Error::Input(format!(
            "no classes under {}; `labrun class up EXERCISE --roster FILE` makes one",
            root.display()
        ))),
        [one] => Ok(one.clone()),
        many => Err(Error::Input(format!(
            "several classes exist ({}); name one",
            many.join(", ")
        ))),
    }
}

/// The state of class `name`, or an error saying there is no such class.
fn load(root: &Path, name: &str) -> Result<ClassState, Error> {
    ClassState::load(&class_dir(root, name))?.ok_or_else(|| {
        Error::Input(format!(
            "no class named '{name}' under {}; `labrun class status` lists the classes",
            root.display()
        ))
    })
}

/// Where learner `id`'s runs log to: `logs/<id>.log` in the class's directory.
fn log_path(dir: &Path, id: &str) -> Result<PathBuf, Error> {
    let logs = dir.join("logs");
    private_dir(&logs)?;
    Ok(logs.join(format!("{id}.log")))
}

/// A flag set by the first Ctrl-C (no further learner is started; the labs
/// running stop at their next safe point, as each one's own watcher tells
/// it); a second Ctrl-C exits at once.
fn interrupt_flag(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = runtime.spawn(super::run::watch_ctrl_c(stop.clone(), reporter.clone()));
    (stop, watcher)
}

/// Whether `text` is a cloud API's "slow down": a whole class calls one
/// account's API at once, and EC2 answers with `RequestLimitExceeded`
/// (other services with `Throttling...`) when that is too much.
pub(crate) fn throttled(text: &str) -> bool {
    [
        "RequestLimitExceeded",
        "Throttling",
        "TooManyRequests",
        "SlowDown",
    ]
    .iter()
    .any(|code| text.contains(code))
}

/// How often one learner's work is tried again after the provider's own
/// retries gave up on throttling, and the first wait (doubled each time).
const THROTTLE_TRIES: u32 = 6;
pub(super) const THROTTLE_WAIT: Duration = Duration::from_secs(5);

/// Runs `work` for one learner; while it fails because the cloud API
/// throttled it, waits (5 s, 10 s, 20 s... with jitter) and runs it again:
/// every learner's work converges, so trying again is safe, and a class
/// never fails because an account was busy. `say` tells the learner's
/// line and log why it waits.
fn with_throttling<T, E>(
    stop: &AtomicBool,
    first_wait: Duration,
    say: impl Fn(&str),
    mut work: impl FnMut() -> Result<T, E>,
    is_throttled: impl Fn(&Result<T, E>) -> bool,
) -> Result<T, E> {
    let mut wait = first_wait;
    for attempt in 1.. {
        let result = work();
        if attempt >= THROTTLE_TRIES || stop.load(Ordering::SeqCst) || !is_throttled(&result) {
            return result;
        }
        let jittered = wait.mul_f64(1.0 + rand::random::<f64>() / 2.0);
        say(&format!(
            "the cloud API is throttling requests (RequestLimitExceeded); trying again in {}s",
            jittered.as_secs()
        ));
        let deadline = std::time::Instant::now() + jittered;
        while std::time::Instant::now() < deadline {
            if stop.load(Ordering::SeqCst) {
                return result;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
    unreachable!("the loop returns")
}

/// [`with_throttling`]'s test for work that fails with an [`Error`].
fn error_throttled<T>(result: &Result<T, Error>) -> bool {
    result.as_ref().is_err_and(|e| throttled(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_recognised_by_its_codes() {
        assert!(throttled(
            "launching instance 'a': RequestLimitExceeded: Request limit exceeded."
        ));
        assert!(throttled("ThrottlingException: Rate exceeded"));
        assert!(!throttled("UnauthorizedOperation: You are not authorized"));
    }

    #[test]
    fn throttled_work_is_tried_again_and_other_failures_are_not() {
        let stop = AtomicBool::new(false);
        let mut calls = 0;
        let said = std::sync::Mutex::new(Vec::new());
        let out = with_throttling(
            &stop,
            Duration::from_millis(10),
            |m| said.lock().unwrap().push(m.to_string()),
            || {
                calls += 1;
                if calls < 2 {
                    Err(Error::Failed("RequestLimitExceeded: slow down".into()))
                } else {
                    Ok(calls)
                }
            },
            error_throttled,
        );
        assert_eq!(out.unwrap(), 2);
        assert_eq!(said.lock().unwrap().len(), 1);
        let mut calls = 0;
        let out: Result<(), Error> = with_throttling(
            &stop,
            Duration::from_millis(10),
            |_| {},
            || {
                calls += 1;
                Err(Error::Failed("UnauthorizedOperation".into()))
            },
            error_throttled,
        );
        assert!(out.is_err());
        assert_eq!(calls, 1);
    }
}

//! `labrun class up EXERCISE --roster FILE`: one lab per learner, each
//! set up as `labrun exercise start` would (the learner's parameters from
//! the course secret, their own key and lab `<class>.<learner>`), a few at
//! a time. The class's state is written before the first lab and after
//! every change, so running `up` again after a failure, a crash or Ctrl-C
//! continues: labs already up are left alone, the others are tried (again);
//! a lab that half came up converges, it is never made twice. Ends with
//! the access sheet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::class::progress::Progress;
use crate::class::roster::{self, Member};
use crate::class::state::{
    self as cstate, Access, Class, ClassState, ExerciseRef, LabState, LearnerState,
};
use crate::class::{self, access, class_dir, pool, ttl};
use crate::cli::ClassUpArgs;
use crate::commands::exercise::start::{Started, start_lab};
use crate::commands::exercise::{Learner, course_secret_from, learner_params, load};
use crate::error::{Error, Exit};
use crate::exercise::Exercise;
use crate::exercise::params::CourseSecret;
use crate::exercise::state::ExerciseRecord;
use crate::ledger::{self, LedgerData, now_secs};
use crate::providers::{ProviderKind, ProviderOptions};
use crate::report::{OutputMode, Reporter};

use super::{THROTTLE_WAIT, error_throttled, interrupt_flag, log_path, with_throttling};

pub fn up(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: ClassUpArgs,
) -> Result<Exit, Error> {
    // Fail before acting: every input is checked before the first lab.
    let members = roster::load(&args.roster).map_err(Error::Input)?;
    let ttl = args
        .ttl
        .as_deref()
        .map(ttl::parse)
        .transpose()
        .map_err(Error::Input)?;
    let options = args.provider_options();
    if let Some(cidr) = &options.operator_cidr {
        crate::providers::parse_cidr(cidr)
            .map_err(|e| Error::Input(format!("--operator-cidr: {e}")))?;
    }
    let ex = load(&args.exercise)?;
    let name = args.name.clone().unwrap_or_else(|| ex.manifest.id.clone());
    class::check_class_name(&name)?;
    let defaults = Learner {
        id: None,
        params: ex.manifest.defaults(),
    };
    crate::commands::exercise::validate::check_all(runtime, &ex, &defaults).map_err(|e| {
        Error::Syntax(format!(
            "{}\nerror: exercise {} does not validate; fix it before bringing a class up",
            e,
            args.exercise.display()
        ))
    })?;
    let secret = course_secret_from(args.course_secret_file.as_deref(), reporter)?;
    if secret.is_none() {
        reporter.warn(
            "no course secret (LABRUN_COURSE_SECRET or --course-secret-file): every learner gets \
             the exercise's default values",
        );
    }
    let parallel = args
        .parallel
        .map(|p| p as usize)
        .unwrap_or(match args.provider {
            ProviderKind::Local => 4,
            ProviderKind::Aws => 10,
        });

    let root = ledger::state_root()?;
    let dir = class_dir(&root, &name);
    let lock = Class::lock(&dir, &name)?;
    let roster_path = std::path::absolute(&args.roster).unwrap_or(args.roster.clone());
    let state = match ClassState::load(&dir)? {
        None => ClassState {
            class: name.clone(),
            exercise: exercise_ref(&ex),
            provider: args.provider,
            roster: roster_path,
            created_at: now_secs(),
            ttl_secs: ttl.map(|t| t.as_secs()),
            down_at: None,
            learners: members
                .iter()
                .map(|m| LearnerState {
                    member: m.clone(),
                    lab: class::lab_name(&name, &m.id),
                    state: LabState::Pending,
                    error: None,
                    attempts: 0,
                    up_at: None,
                    access: Vec::new(),
                })
                .collect(),
        },
        Some(old) => again(reporter, old, &ex, &members, args.provider, ttl)?,
    };
    let class = Class::new(&dir, lock, state)?;

    let (stop, watcher) = interrupt_flag(runtime, reporter);
    let snapshot = class.snapshot();
    let labs_root = root.join("labs");
    let todo: Vec<LearnerState> = snapshot
        .learners
        .iter()
        .filter(|l| {
            l.state != LabState::Up
                || LedgerData::load(&labs_root.join(&l.lab))
                    .ok()
                    .flatten()
                    .is_none_or(|d| d.resources.is_empty())
        })
        .cloned()
        .collect();
    let already = snapshot.learners.len() - todo.len();
    if reporter.mode() != OutputMode::Json {
        reporter.log(&format!(
            "class {name}: exercise {} {}, {} learner{}{}, provider {}, {} at a time",
            ex.manifest.id,
            ex.manifest.version,
            snapshot.learners.len(),
            if snapshot.learners.len() == 1 {
                ""
            } else {
                "s"
            },
            if already > 0 {
                format!(" ({already} already up)")
            } else {
                String::new()
            },
            args.provider,
            parallel.min(todo.len().max(1)),
        ));
    }

    let ids: Vec<&str> = todo.iter().map(|l| l.id.as_str()).collect();
    let progress = Progress::new(reporter, "up", &ids);
    let job = |l: &LearnerState| {
        bring_up(
            runtime,
            &class,
            &progress,
            &ex,
            secret.as_ref(),
            l,
            &labs_root,
            args.provider,
            &options,
            &stop,
        )
    };
    let results = pool::run(&todo, parallel, &stop, job);
    watcher.abort();
    let interrupted = stop.load(Ordering::SeqCst) || results.iter().any(Option::is_none);

    let state = class.snapshot();
    access::write(class.dir(), &labs_root, &state)?;
    report(reporter, &state, class.dir());
    let failed: Vec<&LearnerState> = state
        .learners
        .iter()
        .filter(|l| l.state != LabState::Up)
        .collect();
    if interrupted {
        return Err(Error::Interrupted(format!(
            "interrupted: {} of {} learners' labs are up. Run the same `labrun class up` again to \
             continue, or `labrun class down {name}` to remove what was made",
            state.learners.len() - failed.len(),
            state.learners.len()
        )));
    }
    if state.provider == ProviderKind::Aws && failed.len() < state.learners.len() {
        reporter.closing_warning(&format!(
            "class {name}'s labs run on AWS until `labrun class down {name}`{}",
            state
                .expires_at()
                .map(|e| format!(
                    " (its TTL ends {}; `labrun class down --expired` then removes it)",
                    crate::class::html::utc(e)
                ))
                .unwrap_or_default()
        ));
    }
    if failed.is_empty() {
        return Ok(Exit::Ok);
    }
    Err(Error::Failed(format!(
        "{} of {} learners' labs did not come up:\n{}\nThe others are up. Run the same `labrun class up` \
         again to try these again (each one's log is in {}).",
        failed.len(),
        state.learners.len(),
        failed
            .iter()
            .map(|l| format!(
                "  {}: {}",
                l.id,
                l.error.as_deref().unwrap_or(l.state.as_str())
            ))
            .collect::<Vec<_>>()
            .join("\n"),
        class.dir().join("logs").display()
    )))
}

fn exercise_ref(ex: &Exercise) -> ExerciseRef {
    ExerciseRef {
        id: ex.manifest.id.clone(),
        version: ex.manifest.version.clone(),
        source: ex.source.clone(),
        digest: ex.digest.clone(),
    }
}

/// A class brought up again: the same exercise and learners (a class name
/// stands for one exercise and one roster), maybe a new TTL or exercise
/// version; names and e-mails follow the roster.
fn again(
    reporter: &Reporter,
    mut old: ClassState,
    ex: &Exercise,
    members: &[Member],
    provider: ProviderKind,
    ttl: Option<std::time::Duration>,
) -> Result<ClassState, Error> {
    let name = old.class.clone();
    let pick = "pick another class name with --name";
    if old.exercise.id != ex.manifest.id {
        return Err(Error::Input(format!(
            "class '{name}' is in use by exercise '{}' (from {}); {pick}",
            old.exercise.id,
            old.exercise.source.display()
        )));
    }
    if old.provider != provider {
        return Err(Error::Input(format!(
            "class '{name}' runs on {}, not {provider}; use --provider {} or {pick}",
            old.provider, old.provider
        )));
    }
    let added: Vec<&str> = members
        .iter()
        .filter(|m| old.learner(&m.id).is_none())
        .map(|m| m.id.as_str())
        .collect();
    let left_out: Vec<&str> = old
        .learners
        .iter()
        .filter(|l| !members.iter().any(|m| m.id == l.id))
        .map(|l| l.id.as_str())
        .collect();
    if !added.is_empty() || !left_out.is_empty() {
        let mut diff = Vec::new();
        if !added.is_empty() {
            diff.push(format!("adds {}", added.join(", ")));
        }
        if !left_out.is_empty() {
            diff.push(format!("leaves out {}", left_out.join(", ")));
        }
        return Err(Error::Input(format!(
            "class '{name}' is in use with another roster ({}, {} learners); this roster {}: \
             use that roster, or {pick}",
            old.roster.display(),
            old.learners.len(),
            diff.join(" and ")
        )));
    }
    if old.exercise.digest != ex.digest {
        reporter.warn(&format!(
            "exercise {} changed since class {name} was first brought up (digest {} then, {} now); \
             labs set up from now on use it as it is now",
            ex.manifest.id, old.exercise.digest, ex.digest
        ));
        old.exercise = exercise_ref(ex);
    }
    if let Some(t) = ttl {
        old.ttl_secs = Some(t.as_secs());
    }
    old.down_at = None;
    for l in &mut old.learners {
        if let Some(m) = members.iter().find(|m| m.id == l.id) {
            l.member = m.clone();
        }
        if l.state == LabState::Down {
            l.state = LabState::Pending;
        }
    }
    Ok(old)
}

/// Sets up one learner's lab; records how it went in the class.
#[allow(clippy::too_many_arguments)]
fn bring_up(
    runtime: &tokio::runtime::Runtime,
    class: &Class,
    progress: &Progress,
    ex: &Exercise,
    secret: Option<&CourseSecret>,
    l: &LearnerState,
    labs_root: &std::path::Path,
    provider: ProviderKind,
    options: &ProviderOptions,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), Error> {
    let log = log_path(class.dir(), &l.id)?;
    let line = progress.start(&l.id, &l.lab, &log)?;
    let result = (|| {
        // A lab of this name that this class never started is someone else's.
        let lab_dir = labs_root.join(&l.lab);
        if l.state == LabState::Pending
            && LedgerData::load(&lab_dir)?.is_some_and(|d| !d.resources.is_empty())
            && ExerciseRecord::load(&lab_dir)?.is_none_or(|r| r.learner.as_deref() != Some(&l.id))
        {
            return Err(Error::Input(format!(
                "lab '{}' already exists and was not made by class {}; remove it with \
                 `labrun destroy --lab {}`, or pick another class name",
                l.lab,
                class.snapshot().class,
                l.lab
            )));
        }
        class.update_learner(&l.id, cstate::starting)?;
        let learner = Learner {
            id: Some(l.id.clone()),
            params: learner_params(ex, Some(&l.id), secret, &BTreeMap::new())?,
        };
        with_throttling(
            stop,
            THROTTLE_WAIT,
            |m| {
                line.set(m);
                line.captured.warn(m);
            },
            || {
                start_lab(
                    runtime,
                    &line.captured,
                    ex,
                    &learner,
                    &BTreeMap::new(),
                    &l.lab,
                    provider,
                    options.clone(),
                )
                // How to get in, from the setup's own connection.
                .and_then(|started| access_of(runtime, &started))
            },
            error_throttled,
        )
    })();
    line.captured
        .finish(result.as_ref().err().map(|e| e.headline()).as_deref());
    match result {
        Ok(access) => {
            let n = access.len();
            class.update_learner(&l.id, |s| cstate::up(s, access))?;
            line.finish(Ok(&format!(
                "up: {n} instance{}",
                if n == 1 { "" } else { "s" }
            )));
            Ok(())
        }
        Err(e) => {
            line.captured.error(&e.user_text());
            let why = e.headline();
            class.update_learner(&l.id, |s| {
                s.state = LabState::Failed;
                s.error = Some(why.clone());
            })?;
            line.finish(Err(&why));
            Err(e)
        }
    }
}

/// How to get into each instance of a lab that just came up.
fn access_of(runtime: &tokio::runtime::Runtime, started: &Started) -> Result<Vec<Access>, Error> {
    let instances = match &started.provider {
        Some(p) => runtime.block_on(p.instances())?,
        None => Vec::new(),
    };
    let mut access: Vec<Access> = instances
        .iter()
        .map(|i| Access {
            instance: i.name.clone(),
            host: i.public_ip.clone(),
            port: if i.ssh_port == 0 { 22 } else { i.ssh_port },
            user: i.user.clone(),
            host_key: started.host_keys.get(&i.id).map(|k| k.trim().to_string()),
        })
        .collect();
    access.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(access)
}

/// What `up` leaves the user with: a line per learner on stdout (or one
/// `class_up` event), and where the access sheet is.
fn report(reporter: &Reporter, state: &ClassState, dir: &std::path::Path) {
    let sheet = dir.join(access::CSV);
    if reporter.mode() == OutputMode::Json {
        let learners: Vec<_> = state
            .learners
            .iter()
            .map(|l| {
                json!({"learner": l.id, "lab": l.lab, "state": l.state, "error": l.error,
                "access": l.access})
            })
            .collect();
        reporter.print_event(json!({"event": "class_up", "class": state.class,
            "exercise": state.exercise.id, "provider": state.provider, "dir": dir,
            "access_sheet": sheet, "learners": learners}));
        return;
    }
    let w = state
        .learners
        .iter()
        .map(|l| l.id.len())
        .chain(["LEARNER".len()])
        .max()
        .unwrap_or(0);
    let lw = state
        .learners
        .iter()
        .map(|l| l.lab.len())
        .chain(["LAB".len()])
        .max()
        .unwrap_or(0);
    reporter.print(&format!(
        "{:<w$}  {:<lw$}  {:<8}  ACCESS",
        "LEARNER", "LAB", "STATE"
    ));
    for l in &state.learners {
        let detail = match l.state {
            LabState::Up => dir
                .join(access::DIR)
                .join(format!("{}.txt", l.id))
                .display()
                .to_string(),
            _ => l.error.clone().unwrap_or_default(),
        };
        reporter.print(&format!(
            "{:<w$}  {:<lw$}  {:<8}  {detail}",
            l.id,
            l.lab,
            l.state.as_str()
        ));
    }
    let up = state
        .learners
        .iter()
        .filter(|l| l.state == LabState::Up)
        .count();
    reporter.print(&format!(
        "class {}: {up} of {} labs up; access sheet {}{}",
        state.class,
        state.learners.len(),
        sheet.display(),
        state
            .ttl_secs
            .map(|t| format!(
                "; TTL {} ({})",
                ttl::format(std::time::Duration::from_secs(t)),
                ttl::left(state.created_at + t, now_secs())
            ))
            .unwrap_or_default()
    ));
}

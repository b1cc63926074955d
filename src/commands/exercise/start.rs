//! `labrun exercise start SOURCE [--learner ID]`: the learner's lab, set
//! up by the exercise's setup.rhai; then their tasks, rendered with their
//! parameters, and how to get in. Starting again converges, like a run.
//! [`start_lab`] is that work without the printing, for `labrun class up`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::ExerciseStartArgs;
use crate::engine;
use crate::error::{Error, Exit};
use crate::exercise::state::ExerciseRecord;
use crate::exercise::{Exercise, README, SETUP, template};
use crate::ledger::{self, ResourceKind};
use crate::providers::{Provider, ProviderKind, ProviderOptions};
use crate::report::{OutputMode, Reporter};

use super::super::run::OpenLab;
use super::{Learner, course_secret, learner, learner_params, parse_sets};

pub fn start(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: ExerciseStartArgs,
) -> Result<Exit, Error> {
    let ex = super::load(&args.exercise)?;
    let id = learner(&args.learner)?;
    let secret = course_secret(&args.learner, reporter)?;
    let sets = parse_sets(&args.set)?;
    let params = learner_params(&ex, id.as_deref(), secret.as_ref(), &sets)?;
    let lab = match super::class_lab(&args.learner, id.as_deref())? {
        Some(lab) => lab,
        None => args
            .learner
            .lab
            .clone()
            .unwrap_or_else(|| ex.lab_name(id.as_deref())),
    };
    let learner = Learner {
        id: id.clone(),
        params,
    };
    let started = start_lab(
        runtime,
        reporter,
        &ex,
        &learner,
        &sets,
        &lab,
        args.run.provider,
        args.run.aws.options(),
    )?;

    let mut how = vec![format!(
        "Exercise {} {} for {} in lab {lab}: {} tasks, {} points{}.",
        ex.manifest.id,
        ex.manifest.version,
        id.as_deref().unwrap_or("(no learner)"),
        started.tasks,
        started.points,
        ex.manifest
            .time_limit_minutes
            .map(|m| format!(", time limit {m} minutes"))
            .unwrap_or_default()
    )];
    how.push(format!(
        "Your tasks (also in {}):",
        started.readme_path.display()
    ));
    let mut tail = Vec::new();
    for i in &started.instance_names {
        tail.push(format!("  labrun ssh {i} --lab {lab}"));
    }
    tail.push(format!("  labrun sg list --lab {lab}"));
    tail.push(format!("  labrun exercise check --lab {lab}"));
    if let Some(secrets) = &started.secrets_path {
        let names = crate::ledger::read_secrets(secrets.parent().unwrap_or(secrets))
            .map(|s| s.into_keys().collect::<Vec<_>>())
            .unwrap_or_default();
        tail.push(format!(
            "Passwords this lab gives you ({}): labrun secret NAME --lab {lab}",
            names.join(", ")
        ));
    }
    tail.push(format!("When you are done: labrun destroy --lab {lab}"));
    let text = format!(
        "{}\n\n{}\n\nGet in and check your work:\n{}",
        how.join("\n"),
        started.readme.trim_end(),
        tail.join("\n")
    );
    if reporter.mode() == OutputMode::Json {
        reporter.log(&text);
    } else {
        reporter.print(&text);
    }
    Ok(Exit::Ok)
}

/// What starting a learner's lab gave.
pub(crate) struct Started {
    /// The learner's tasks, rendered with their values.
    pub readme: String,
    pub readme_path: PathBuf,
    /// The provider as the setup connected it (`None` if it never did),
    /// to ask about the lab without connecting again.
    pub provider: Option<Arc<dyn Provider>>,
    /// The instances the ledger records, by name.
    pub instance_names: Vec<String>,
    pub secrets_path: Option<PathBuf>,
    pub tasks: usize,
    pub points: u32,
    /// Pinned host keys by instance id.
    pub host_keys: BTreeMap<String, String>,
}

/// Sets up `learner`'s lab `lab` with the exercise's setup.rhai (converging
/// if it exists) and records the exercise in it: what `exercise start`
/// and `class up` do for each learner. Everything is checked before
/// anything is created.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_lab(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    ex: &Exercise,
    learner: &Learner,
    sets: &BTreeMap<String, String>,
    lab: &str,
    provider: ProviderKind,
    options: ProviderOptions,
) -> Result<Started, Error> {
    ledger::validate_lab_name(lab)?;
    let id = learner.id.clone();
    let params = learner.params.clone();

    // Fail before acting: the whole exercise must validate for this learner.
    let validated = super::validate::check_all(runtime, ex, learner)?;
    let super::Part {
        path: setup,
        sources,
        ast,
    } = super::compile_part(runtime, ex, learner, SETUP)?;

    let dir = super::lab_dir(lab)?;
    if let Some(r) = ExerciseRecord::load(&dir)? {
        if r.exercise != ex.manifest.id {
            return Err(Error::Input(format!(
                "lab '{lab}' belongs to exercise '{}'; pick another with --lab NAME or remove it with `labrun destroy --lab {lab}`",
                r.exercise
            )));
        }
        let has_resources =
            ledger::LedgerData::load(&dir)?.is_some_and(|d| !d.resources.is_empty());
        if has_resources && (r.params != params || r.learner != id) {
            return Err(Error::Input(format!(
                "lab '{lab}' was started for learner {} with other parameters; `labrun destroy --lab {lab}` first to start over",
                r.learner.as_deref().unwrap_or("(none)")
            )));
        }
    }

    let open = OpenLab::open(runtime, reporter, lab, provider, options)?;
    open.ledger.update(|d| {
        d.playbook = Some(format!("exercise {} ({})", ex.manifest.id, setup.display()))
    })?;
    reporter.run_started(&engine::source_name(&setup), lab, open.provider.as_str());
    let scope = Arc::new(learner.scope(ex, crate::bindings::check::Mode::Collect));
    let ctx = open.context(&setup, Default::default(), Some(scope));
    let result = open.run_script(&ctx, &sources, ast);
    open.closing_notice();
    result?;

    let mut record = ExerciseRecord::load(open.ledger.dir())?.unwrap_or_default();
    let hints_shown = std::mem::take(&mut record.hints_shown);
    let record = ExerciseRecord {
        exercise: ex.manifest.id.clone(),
        version: ex.manifest.version.clone(),
        source: ex.source.clone(),
        digest: ex.digest.clone(),
        learner: id.clone(),
        params,
        sets: sets.clone(),
        started_at: if record.started_at == 0 {
            ledger::now_secs()
        } else {
            record.started_at
        },
        hints_shown,
    };
    record.save(open.ledger.dir())?;

    // The tasks, with this learner's values, kept in the lab directory too.
    let readme = template::render(
        ex.files.get(README).map(String::as_str).unwrap_or_default(),
        &learner.placeholders(ex, lab),
    );
    let readme_path = open.ledger.dir().join(README);
    crate::ledger::write_atomic(&readme_path, readme.as_bytes(), 0o644)?;

    let instance_names: Vec<String> = open
        .ledger
        .resources(ResourceKind::Instance)
        .into_iter()
        .map(|r| r.name)
        .collect();
    let provider = ctx.provider_impl.lock().expect("provider lock").clone();
    let secrets = open.ledger.secrets_path();
    Ok(Started {
        readme,
        readme_path,
        provider,
        instance_names,
        secrets_path: secrets.exists().then_some(secrets),
        tasks: validated.tasks.len(),
        points: validated.tasks.iter().map(|t| t.points).sum(),
        host_keys: open.ledger.snapshot().host_keys,
    })
}

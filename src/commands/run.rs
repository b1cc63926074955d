//! `labrun run PLAYBOOK`: compile, lock the lab, run, report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::RunArgs;
use crate::engine::{self, LabContext, diagnostics, resolver::Sources};
use crate::error::{RunError, exit};
use crate::ledger::{self, Ledger};
use crate::params;
use crate::redact::Redactor;
use crate::report::{OutputMode, Reporter};

pub fn run(runtime: &tokio::runtime::Runtime, args: RunArgs) -> i32 {
    let mode = args.output.unwrap_or_else(OutputMode::detect);
    let reporter = Arc::new(Reporter::new(mode, args.verbose, Redactor::new()));
    match execute(runtime, &args, &reporter) {
        Ok(()) => exit::OK,
        Err(e) => {
            let text = e.user_text();
            if !text.is_empty() {
                reporter.error(&text);
            }
            e.exit_code()
        }
    }
}

/// The lab name: `--lab`, else the playbook's file stem.
pub fn lab_name(args: &RunArgs) -> String {
    args.lab.clone().unwrap_or_else(|| {
        args.playbook
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "lab".into())
    })
}

fn execute(
    runtime: &tokio::runtime::Runtime,
    args: &RunArgs,
    reporter: &Arc<Reporter>,
) -> Result<(), RunError> {
    let mut sets = BTreeMap::new();
    for s in &args.set {
        let (k, v) = params::parse_set(s).map_err(RunError::Input)?;
        sets.insert(k, v);
    }
    let lab = lab_name(args);
    ledger::validate_lab_name(&lab)?;
    let provider_options = args.provider_options();
    if let Some(cidr) = &provider_options.operator_cidr {
        crate::providers::parse_cidr(cidr)
            .map_err(|e| RunError::Input(format!("--operator-cidr: {e}")))?;
    }

    // Fail before acting: compile everything with an engine that has no lab
    // state, then take the lab's lock.
    let sources = Sources::default();
    let ast = {
        let offline = super::offline_context(runtime, &args.playbook);
        let engine = engine::build(&offline, &sources);
        engine::compile(&engine, &args.playbook, &sources)?
    };

    let provider = args.provider;
    let ledger = Arc::new(Ledger::open(
        &ledger::state_root(),
        &lab,
        provider,
        reporter.redactor().clone(),
    )?);
    ledger.update(|d| d.playbook = Some(args.playbook.display().to_string()))?;

    let cancel = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(LabContext {
        lab: lab.clone(),
        provider,
        playbook: args.playbook.clone(),
        reporter: reporter.clone(),
        ledger: Some(ledger.clone()),
        sets: sets.clone(),
        declared_params: Default::default(),
        handle: runtime.handle().clone(),
        cancel: cancel.clone(),
        input_error: AtomicBool::new(false),
        failed_step: Default::default(),
        provider_options,
        provider_impl: Default::default(),
        ssh: Default::default(),
    });
    let engine = Arc::new(engine::build(&ctx, &sources));
    let interrupt = runtime.spawn(watch_ctrl_c(cancel.clone(), reporter.clone()));

    let playbook_name = engine::source_name(&args.playbook);
    reporter.run_started(&playbook_name, &lab, provider.as_str());
    let result = {
        let engine = engine.clone();
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || engine::run(&engine, &ast))
                .await
                .unwrap_or_else(|e| {
                    Err(engine::script_error(format!(
                        "the playbook thread died: {e}"
                    )))
                })
        })
    };
    interrupt.abort();
    let _ = ledger.save();

    let outcome = match result {
        Ok(()) => {
            if !sets.is_empty() && ctx.declared_params.lock().expect("params lock").is_none() {
                Err(RunError::Input(format!(
                    "--set {} given, but {playbook_name} declares no parameters (it never calls params())",
                    sets.keys().cloned().collect::<Vec<_>>().join(", ")
                )))
            } else {
                Ok(())
            }
        }
        Err(err) => {
            let step = ctx.failed_step.lock().expect("failed step lock").clone();
            let diagnostic = diagnostics::runtime_error(
                &err,
                &playbook_name,
                &sources,
                &engine,
                step.as_deref(),
            );
            if cancel.load(Ordering::SeqCst) {
                Err(RunError::Interrupted(format!(
                    "interrupted{}. The lab's state is saved in {}.\n\
                     Run the same command again to resume, or `labrun destroy --lab {lab}` to remove what it created.",
                    step.map(|s| format!(" during step '{s}'"))
                        .unwrap_or_default(),
                    ledger.dir().display()
                )))
            } else if ctx.input_error.load(Ordering::SeqCst) {
                Err(RunError::Input(diagnostic))
            } else if ledger.snapshot().resources.is_empty() {
                // Nothing was created: no cleanup to suggest.
                Err(RunError::Failed(diagnostic))
            } else {
                Err(RunError::Failed(format!(
                    "{diagnostic}\n\nThe lab's state is in {}. Fix and run again to continue, \
                     or `labrun destroy --lab {lab}` to remove what it created.",
                    ledger.dir().display()
                )))
            }
        }
    };
    let short = outcome.as_ref().err().map(|e| first_line(&e.to_string()));
    if let Err(e) = &outcome {
        // The diagnostic comes before the summary, as a reader expects.
        reporter.error(&e.to_string());
    }
    reporter.run_finished(short.as_deref());
    if let Some(notice) = provider.closing_notice(&lab, &ledger.snapshot(), &ctx.provider_options) {
        reporter.warn(&notice);
    }
    outcome.map_err(|e| match e {
        // Already printed; keep the exit code.
        RunError::Input(_) => RunError::Input(String::new()),
        RunError::Failed(_) => RunError::Failed(String::new()),
        RunError::Interrupted(_) => RunError::Interrupted(String::new()),
        other => other,
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

/// First Ctrl-C: stop at the next safe point. Second: leave at once.
async fn watch_ctrl_c(cancel: Arc<AtomicBool>, reporter: Arc<Reporter>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    cancel.store(true, Ordering::SeqCst);
    reporter
        .warn("interrupt: stopping at the next safe point (press Ctrl-C again to exit at once)");
    if tokio::signal::ctrl_c().await.is_ok() {
        reporter.error(
            "interrupted again: exiting now; the ledger is saved up to the last recorded change",
        );
        std::process::exit(exit::INTERRUPTED);
    }
}

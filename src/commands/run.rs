//! `labrun run PLAYBOOK`: compile, lock the lab, run, report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bindings::{self, LabContext, RunSetup};
use crate::cli::RunArgs;
use crate::engine::{self, diagnostics, resolver::Sources};
use crate::error::{Error, Exit};
use crate::ledger::{self, Ledger};
use crate::params;
use crate::report::Reporter;

/// The lab name: `--lab`, else the playbook's file stem.
pub fn lab_name(args: &RunArgs) -> String {
    args.lab.clone().unwrap_or_else(|| {
        args.playbook
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "lab".into())
    })
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: RunArgs,
) -> Result<Exit, Error> {
    let mut sets = BTreeMap::new();
    for s in &args.set {
        let (k, v) = params::parse_set(s).map_err(Error::Input)?;
        sets.insert(k, v);
    }
    let lab = lab_name(&args);
    ledger::validate_lab_name(&lab)?;
    let provider_options = args.provider_options();
    if let Some(cidr) = &provider_options.operator_cidr {
        crate::providers::parse_cidr(cidr)
            .map_err(|e| Error::Input(format!("--operator-cidr: {e}")))?;
    }

    // Fail before acting: compile everything with an engine that has no lab
    // state, then take the lab's lock.
    let sources = Sources::default();
    let ast = {
        let offline = LabContext::offline(runtime.handle().clone(), &args.playbook);
        let engine = bindings::engine(&offline, &sources);
        engine::compile(&engine, &args.playbook, &sources)?
    };

    let provider = args.provider;
    let ledger = Arc::new(Ledger::open(
        &ledger::state_root()?,
        &lab,
        provider,
        reporter.redactor().clone(),
    )?);
    ledger.update(|d| d.playbook = Some(args.playbook.display().to_string()))?;

    let cancel = Arc::new(AtomicBool::new(false));
    let ctx = LabContext::run(
        runtime.handle().clone(),
        RunSetup {
            lab: lab.clone(),
            provider,
            playbook: args.playbook.clone(),
            reporter: reporter.clone(),
            ledger: ledger.clone(),
            sets: sets.clone(),
            provider_options,
            cancel: cancel.clone(),
        },
    );
    let engine = Arc::new(bindings::engine(&ctx, &sources));
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
    if let Some(notice) = provider.closing_notice(&lab, &ledger.snapshot(), &ctx.provider_options) {
        reporter.closing_warning(&notice);
    }

    match result {
        Ok(()) => {
            if !sets.is_empty() && ctx.declared_params.lock().expect("params lock").is_none() {
                Err(Error::Input(format!(
                    "--set {} given, but {playbook_name} declares no parameters (it never calls params())",
                    sets.keys().cloned().collect::<Vec<_>>().join(", ")
                )))
            } else {
                Ok(Exit::Ok)
            }
        }
        Err(err) => {
            let step = ctx.failed_step(&err);
            if step.is_none() && !cancel.load(Ordering::SeqCst) {
                // No step counted this one: it happened outside any.
                reporter.count_failure();
            }
            let diagnostic = diagnostics::runtime_error(
                &err,
                &playbook_name,
                &sources,
                &engine,
                step.as_deref(),
            );
            if cancel.load(Ordering::SeqCst) {
                Err(Error::Interrupted(format!(
                    "interrupted{}. The lab's state is saved in {}.\n\
                     Run the same command again to resume, or `labrun destroy --lab {lab}` to remove what it created.",
                    step.map(|s| format!(" during step '{s}'"))
                        .unwrap_or_default(),
                    ledger.dir().display()
                )))
            } else if ctx.input_error.load(Ordering::SeqCst) {
                Err(Error::Input(diagnostic))
            } else if ledger.snapshot().resources.is_empty() {
                // Nothing was created: no cleanup to suggest.
                Err(Error::Failed(diagnostic))
            } else {
                Err(Error::Failed(format!(
                    "{diagnostic}\n\nThe lab's state is in {}. Fix and run again to continue, \
                     or `labrun destroy --lab {lab}` to remove what it created.",
                    ledger.dir().display()
                )))
            }
        }
    }
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
        std::process::exit(Exit::Interrupted.code());
    }
}

//! `labrun destroy [--lab NAME | --all]`: remove everything a lab created,
//! at the provider its ledger names, found through the ledger and through
//! labels/tags (no playbook needed). The lab's key and secrets stay, so
//! running the playbook again reuses them.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::cli::DestroyArgs;
use crate::error::{Error, Exit};
use crate::keys;
use crate::ledger::{self, Ledger, LedgerData};
use crate::providers::{LabScope, ProviderKind, ProviderOptions};
use crate::report::{OutputMode, Reporter};

pub fn destroy(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: DestroyArgs,
) -> Result<Exit, Error> {
    let root = ledger::state_root()?;
    let labs = targets(&root, &args)?;
    // One lab's failure does not stop the others; every failure is shown.
    let mut errors: Vec<Error> = labs
        .iter()
        .filter_map(
            |lab| match execute(runtime, &root, lab, &args.aws.options(), reporter) {
                Ok(outcome) => outcome.report(reporter).err(),
                Err(e) => {
                    if reporter.mode() == OutputMode::Json {
                        reporter.print_event(json!({"event": "destroyed", "lab": lab,
                        "status": "failed", "error": e.headline()}));
                    }
                    Some(e)
                }
            },
        )
        .collect();
    match errors.len() {
        0 => Ok(Exit::Ok),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Several(errors)),
    }
}

/// The labs to destroy: `--lab`, every lab with `--all`, else the only one.
fn targets(root: &Path, args: &DestroyArgs) -> Result<Vec<String>, Error> {
    let labs = ledger::list_labs(root);
    if args.all {
        return Ok(labs);
    }
    if let Some(lab) = &args.lab {
        ledger::validate_lab_name(lab)?;
        return Ok(vec![lab.clone()]);
    }
    match labs.as_slice() {
        [] => Err(Error::Input(format!("no labs under {}", root.display()))),
        [one] => Ok(vec![one.clone()]),
        many => Err(Error::Input(format!(
            "several labs exist ({}); name one with --lab NAME, or use --all",
            many.join(", ")
        ))),
    }
}

/// Removes one lab, as `labrun destroy --lab LAB` does (`labrun exercise
/// test` ends with this).
pub fn destroy_lab(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    lab: &str,
    options: &ProviderOptions,
) -> Result<(), Error> {
    execute(runtime, &ledger::state_root()?, lab, options, reporter)?.report(reporter)
}

fn execute(
    runtime: &tokio::runtime::Runtime,
    root: &Path,
    lab: &str,
    options: &ProviderOptions,
    reporter: &Arc<Reporter>,
) -> Result<Outcome, Error> {
    let dir = root.join("labs").join(lab);
    let existed = dir.exists();
    let recorded = LedgerData::load(&dir)?;
    // A lab with no ledger here can still have labelled containers on the
    // local engine (a state directory that was removed, say): look there.
    let provider = recorded
        .as_ref()
        .map_or(ProviderKind::Local, |d| d.provider);
    let ledger = Arc::new(Ledger::open(
        root,
        lab,
        provider,
        reporter.redactor().clone(),
    )?);
    let public_key = if recorded.is_some() {
        keys::ensure(&ledger, lab)?.public_line
    } else {
        String::new()
    };
    let scope = LabScope {
        lab: lab.to_string(),
        ledger: ledger.clone(),
        reporter: reporter.clone(),
        public_key,
        // No Ctrl-C handler here: SIGINT ends `destroy` at once, and the
        // ledger forgets a resource only once it is gone.
        cancel: Default::default(),
    };
    let removed = runtime.block_on(async {
        let p = provider.connect(scope, options).await?;
        p.destroy().await
    });
    let left = ledger.snapshot().resources;
    // Host keys pinned for instances that are gone: their ids never come
    // back, and the published ports of local ones are reused by others.
    let mut forgotten = 0;
    if left.is_empty() && removed.is_ok() && !ledger.snapshot().host_keys.is_empty() {
        forgotten = ledger.update(|d| std::mem::take(&mut d.host_keys).len())?;
    }
    drop(ledger);
    if recorded.is_none() && !existed {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let removed = removed.map_err(|source| Error::Destroy {
        lab: lab.to_string(),
        provider,
        source,
    })?;
    if recorded.is_none() && removed.is_empty() {
        return Err(Error::Input(format!(
            "no lab named '{lab}' under {}; `labrun status` lists the labs",
            root.display()
        )));
    }
    Ok(Outcome {
        lab: lab.to_string(),
        provider,
        removed,
        forgotten,
        left: left
            .iter()
            .map(|r| (r.kind.to_string(), r.name.clone()))
            .collect(),
    })
}

/// What destroying one lab did.
struct Outcome {
    lab: String,
    provider: ProviderKind,
    /// What was removed, a line each (`removed network labrun-x`).
    removed: Vec<String>,
    /// Pinned SSH host keys forgotten.
    forgotten: usize,
    /// Resources still recorded afterwards: (kind, name).
    left: Vec<(String, String)>,
}

impl Outcome {
    /// Says what was removed (log lines, or one `destroyed` JSON event);
    /// an error if anything is left.
    fn report(self, reporter: &Reporter) -> Result<(), Error> {
        let Outcome {
            lab,
            provider,
            removed,
            forgotten,
            left,
        } = self;
        let error = (!left.is_empty()).then(|| {
            Error::Failed(format!(
                "lab '{lab}': {} resources are still recorded: {}",
                left.len(),
                left.iter()
                    .map(|(kind, name)| format!("{kind} {name}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        });
        if reporter.mode() == OutputMode::Json {
            let left: Vec<_> = left
                .iter()
                .map(|(kind, name)| json!({"kind": kind, "name": name}))
                .collect();
            let mut ev = json!({"event": "destroyed", "lab": lab, "provider": provider,
                "status": if error.is_none() { "ok" } else { "failed" },
                "removed": removed, "forgotten_host_keys": forgotten, "left": left});
            if let Some(e) = &error {
                ev["error"] = json!(e.headline());
            }
            reporter.print_event(ev);
            return error.map_or(Ok(()), Err);
        }
        for line in &removed {
            reporter.log(line);
        }
        if forgotten > 0 {
            reporter.log(&format!(
                "forgot {forgotten} pinned SSH host key{}",
                if forgotten == 1 { "" } else { "s" }
            ));
        }
        match error {
            None => {
                reporter.log(&format!(
                    "lab '{lab}': {} on {provider}",
                    match removed.len() {
                        0 => "nothing left to remove".to_string(),
                        1 => "removed 1 resource".to_string(),
                        n => format!("removed {n} resources"),
                    },
                ));
                Ok(())
            }
            Some(e) => Err(e),
        }
    }
}

//! `labrun destroy [--lab NAME | --all]`: remove everything a lab created,
//! at the provider its ledger names, found through the ledger and through
//! labels/tags (no playbook needed). The lab's key and secrets stay, so
//! running the playbook again reuses them.

use std::path::Path;
use std::sync::Arc;

use crate::cli::DestroyArgs;
use crate::error::exit;
use crate::keys;
use crate::ledger::{self, Ledger, LedgerData};
use crate::providers::{LabScope, ProviderKind};
use crate::redact::Redactor;
use crate::report::{OutputMode, Reporter};

pub fn destroy(runtime: &tokio::runtime::Runtime, args: DestroyArgs) -> i32 {
    let reporter = Arc::new(Reporter::new(OutputMode::detect(), false, Redactor::new()));
    let root = ledger::state_root();
    let labs = match targets(&root, &args) {
        Ok(labs) => labs,
        Err(message) => {
            reporter.error(&format!("error: {message}"));
            return exit::USAGE;
        }
    };
    let mut code = exit::OK;
    for lab in &labs {
        let result = match execute(runtime, &root, lab, &args, &reporter) {
            Ok(code) => code,
            Err(e) => {
                reporter.error(&format!("error: {e}"));
                exit::FAILED
            }
        };
        code = code.max(result);
    }
    code
}

/// The labs to destroy: `--lab`, every lab with `--all`, else the only one.
fn targets(root: &Path, args: &DestroyArgs) -> Result<Vec<String>, String> {
    let labs = ledger::list_labs(root);
    if args.all {
        return Ok(labs);
    }
    if let Some(lab) = &args.lab {
        ledger::validate_lab_name(lab).map_err(|e| e.to_string())?;
        return Ok(vec![lab.clone()]);
    }
    match labs.as_slice() {
        [] => Err(format!("no labs under {}", root.display())),
        [one] => Ok(vec![one.clone()]),
        many => Err(format!(
            "several labs exist ({}); name one with --lab NAME, or use --all",
            many.join(", ")
        )),
    }
}

fn execute(
    runtime: &tokio::runtime::Runtime,
    root: &Path,
    lab: &str,
    args: &DestroyArgs,
    reporter: &Arc<Reporter>,
) -> Result<i32, String> {
    let dir = root.join("labs").join(lab);
    let existed = dir.exists();
    let recorded = LedgerData::load(&dir).map_err(|e| e.to_string())?;
    // A lab with no ledger here can still have labelled containers on the
    // local engine (a state directory that was removed, say): look there.
    let provider = recorded
        .as_ref()
        .map_or(ProviderKind::Local, |d| d.provider);
    let ledger = Arc::new(
        Ledger::open(root, lab, provider, reporter.redactor().clone())
            .map_err(|e| e.to_string())?,
    );
    let public_key = if recorded.is_some() {
        keys::ensure(&ledger, lab)
            .map_err(|e| e.to_string())?
            .public_line
    } else {
        String::new()
    };
    let scope = LabScope {
        lab: lab.to_string(),
        ledger: ledger.clone(),
        reporter: reporter.clone(),
        public_key,
    };
    let removed = runtime.block_on(async {
        let p = provider.connect(scope, &args.aws.options()).await?;
        p.destroy().await
    });
    let left = ledger.snapshot().resources;
    // Host keys pinned for instances that are gone: their ids never come
    // back, and the published ports of local ones are reused by others.
    let mut forgotten = 0;
    if left.is_empty() && removed.is_ok() && !ledger.snapshot().host_keys.is_empty() {
        forgotten = ledger
            .update(|d| std::mem::take(&mut d.host_keys).len())
            .map_err(|e| e.to_string())?;
    }
    drop(ledger);
    if recorded.is_none() && !existed {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let removed = removed.map_err(|e| format!("destroying lab '{lab}' on {provider}: {e}"))?;
    if recorded.is_none() && removed.is_empty() {
        reporter.error(&format!(
            "error: no lab named '{lab}' under {}; `labrun status` lists the labs",
            root.display()
        ));
        return Ok(exit::USAGE);
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
    if left.is_empty() {
        reporter.log(&format!(
            "lab '{lab}': {} on {provider}",
            match removed.len() {
                0 => "nothing left to remove".to_string(),
                1 => "removed 1 resource".to_string(),
                n => format!("removed {n} resources"),
            },
        ));
        Ok(exit::OK)
    } else {
        Err(format!(
            "lab '{lab}': {} resources are still recorded: {}",
            left.len(),
            left.iter()
                .map(|r| format!("{} {}", r.kind, r.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

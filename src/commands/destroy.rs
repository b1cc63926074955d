//! `labrun destroy --lab NAME`: remove everything the lab created, at the
//! provider its ledger names, found through the ledger and through tags.

use std::sync::Arc;

use crate::cli::DestroyArgs;
use crate::error::exit;
use crate::keys;
use crate::ledger::{self, Ledger, LedgerData};
use crate::providers::{self, LabScope};
use crate::redact::Redactor;
use crate::report::{OutputMode, Reporter};

pub fn destroy(runtime: &tokio::runtime::Runtime, args: DestroyArgs) -> i32 {
    let reporter = Arc::new(Reporter::new(OutputMode::detect(), false, Redactor::new()));
    match execute(runtime, &args, &reporter) {
        Ok(code) => code,
        Err(e) => {
            reporter.error(&format!("error: {e}"));
            exit::FAILED
        }
    }
}

fn execute(
    runtime: &tokio::runtime::Runtime,
    args: &DestroyArgs,
    reporter: &Arc<Reporter>,
) -> Result<i32, String> {
    let lab = &args.lab;
    if let Err(e) = ledger::validate_lab_name(lab) {
        reporter.error(&format!("error: {e}"));
        return Ok(exit::USAGE);
    }
    let root = ledger::state_root();
    let Some(data) = LedgerData::load(&root.join("labs").join(lab)).map_err(|e| e.to_string())?
    else {
        reporter.error(&format!(
            "error: no lab named '{lab}' under {}; `labrun status` lists the labs",
            root.display()
        ));
        return Ok(exit::USAGE);
    };
    let ledger = Arc::new(
        Ledger::open(&root, lab, &data.provider, reporter.redactor().clone())
            .map_err(|e| e.to_string())?,
    );
    let key = keys::ensure(&ledger, lab).map_err(|e| e.to_string())?;
    let scope = LabScope {
        lab: lab.clone(),
        ledger: ledger.clone(),
        reporter: reporter.clone(),
        public_key: key.public_line,
    };
    let removed = runtime
        .block_on(async {
            let provider = providers::connect(&data.provider, scope, &args.aws.options()).await?;
            provider.destroy().await
        })
        .map_err(|e| format!("destroying lab '{lab}' on {}: {e}", data.provider))?;
    for line in &removed {
        reporter.log(line);
    }
    let left = ledger.snapshot().resources;
    if left.is_empty() {
        reporter.log(&format!(
            "lab '{lab}': {} on {}",
            match removed.len() {
                0 => "nothing left to remove".to_string(),
                1 => "removed 1 resource".to_string(),
                n => format!("removed {n} resources"),
            },
            data.provider
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

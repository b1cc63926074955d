//! `labrun destroy`: removes everything a lab created, found through its
//! ledger and the provider's labels alone (no playbook needed). The lab's
//! key and secrets stay, so running the playbook again reuses them.

use std::path::Path;
use std::sync::Arc;

use crate::error::exit;
use crate::keys;
use crate::ledger::{self, Ledger, LedgerData};
use crate::providers::{self, LabScope, ProviderOptions};
use crate::redact::Redactor;
use crate::report::{OutputMode, Reporter};

pub fn destroy(runtime: &tokio::runtime::Runtime, lab: Option<&str>, all: bool) -> i32 {
    let root = ledger::state_root();
    let reporter = Arc::new(Reporter::new(OutputMode::detect(), false, Redactor::new()));
    let labs = match targets(&root, lab, all) {
        Ok(labs) => labs,
        Err(message) => {
            reporter.error(&format!("error: {message}"));
            return exit::USAGE;
        }
    };
    let mut code = exit::OK;
    for lab in labs {
        match destroy_lab(runtime, &root, &lab, &reporter) {
            Ok(lines) if lines.is_empty() => reporter.log(&format!("lab {lab}: nothing to remove")),
            Ok(lines) => {
                for l in &lines {
                    reporter.log(&format!("lab {lab}: {l}"));
                }
                reporter.log(&format!(
                    "lab {lab}: destroyed ({} resources removed; key and secrets kept in {})",
                    lines.len(),
                    root.join("labs").join(&lab).display()
                ));
            }
            Err(message) => {
                reporter.error(&format!("error: lab {lab}: {message}"));
                code = exit::FAILED;
            }
        }
    }
    code
}

/// The labs to destroy: `--lab`, every lab with `--all`, else the only one.
fn targets(root: &Path, lab: Option<&str>, all: bool) -> Result<Vec<String>, String> {
    let labs = ledger::list_labs(root);
    if all {
        return Ok(labs);
    }
    if let Some(lab) = lab {
        ledger::validate_lab_name(lab).map_err(|e| e.to_string())?;
        return Ok(vec![lab.to_string()]);
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

fn destroy_lab(
    runtime: &tokio::runtime::Runtime,
    root: &Path,
    lab: &str,
    reporter: &Arc<Reporter>,
) -> Result<Vec<String>, String> {
    let dir = root.join("labs").join(lab);
    let existed = dir.exists();
    let recorded = LedgerData::load(&dir).map_err(|e| e.to_string())?;
    let (kind, region) = recorded
        .map(|d| (d.provider, d.region))
        .unwrap_or_else(|| ("local".into(), None));
    let ledger = Arc::new(
        Ledger::open(root, lab, &kind, reporter.redactor().clone()).map_err(|e| e.to_string())?,
    );
    let public_key = std::fs::read_to_string(dir.join(keys::PUBLIC_FILE))
        .unwrap_or_default()
        .trim()
        .to_string();
    let scope = LabScope {
        lab: lab.to_string(),
        ledger: ledger.clone(),
        reporter: reporter.clone(),
        public_key,
    };
    let options = ProviderOptions {
        region,
        ..Default::default()
    };
    let result = runtime.block_on(async {
        let provider = providers::connect(&kind, scope, &options).await?;
        provider.destroy().await
    });
    drop(ledger);
    if !existed {
        // Nothing was recorded here before: leave no empty lab behind.
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map_err(|e| e.to_string())
}

//! `labrun secret NAME [--lab LAB]`: one secret's value on stdout. Everything
//! else labrun prints masks secrets; this is the one way to read one
//! without opening the lab's secrets file, and only by name.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Exit};
use crate::ledger;
use crate::report::Reporter;

pub fn secret(reporter: &Arc<Reporter>, name: &str, lab: Option<&str>) -> Result<Exit, Error> {
    if !crate::secrets::valid_secret_name(name) {
        return Err(Error::Input(format!(
            "invalid secret name '{name}': use letters, digits, '_', '-' or '.'"
        )));
    }
    let root = ledger::state_root()?;
    let lab = match lab {
        Some(lab) => {
            ledger::validate_lab_name(lab)?;
            lab.to_string()
        }
        None => only_lab(&root)?,
    };
    let dir = root.join("labs").join(&lab);
    if !dir.is_dir() {
        return Err(Error::Input(format!(
            "no lab named '{lab}' under {}; `labrun status` lists the labs",
            root.display()
        )));
    }
    let secrets = ledger::read_secrets(&dir)?;
    match secrets.get(name) {
        Some(value) => {
            reporter.reveal(value);
            Ok(Exit::Ok)
        }
        None if secrets.is_empty() => Err(Error::Input(format!(
            "lab '{lab}' has no secret '{name}': it has no secrets yet (a playbook makes one with secret(\"{name}\"))"
        ))),
        None => Err(Error::Input(format!(
            "lab '{lab}' has no secret '{name}'; its secrets: {}",
            secrets.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The lab meant when none is named: the only one there is.
fn only_lab(root: &Path) -> Result<String, Error> {
    match ledger::list_labs(root).as_slice() {
        [] => Err(Error::Input(format!("no labs under {}", root.display()))),
        [one] => Ok(one.clone()),
        many => Err(Error::Input(format!(
            "several labs exist ({}); name one with --lab NAME",
            many.join(", ")
        ))),
    }
}

//! `labrun exercise pack DIR -o FILE [--learner-copy]`: one file to hand
//! out, validated first and digest-checked wherever it is used.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Exit};
use crate::exercise::package::Package;
use crate::report::Reporter;

use super::Learner;

pub fn pack(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    dir: &Path,
    output: &Path,
    learner_copy: bool,
) -> Result<Exit, Error> {
    let ex = super::load(dir)?;
    if ex.packed {
        return Err(Error::Input(format!(
            "{} is already a packed file; pack the exercise's directory",
            dir.display()
        )));
    }
    let out_abs = std::path::absolute(output)
        .map_err(|e| Error::Input(format!("{}: {e}", output.display())))?;
    if out_abs.starts_with(&ex.source) {
        return Err(Error::Input(format!(
            "-o {}: write the package outside the exercise directory (it would pack itself next time)",
            output.display()
        )));
    }
    let learner = Learner {
        id: None,
        params: ex.manifest.defaults(),
    };
    super::validate::check_all(runtime, &ex, &learner)?;
    let package = Package::new(
        &ex.manifest.id,
        &ex.manifest.version,
        learner_copy,
        &ex.files,
    );
    crate::ledger::write_atomic(&out_abs, package.to_json().as_bytes(), 0o644)?;
    reporter.print(&format!(
        "packed {} {} ({} files{}) into {}\ndigest {}",
        ex.manifest.id,
        ex.manifest.version,
        package.files.len(),
        if learner_copy {
            ", learner copy: no solution"
        } else {
            ", with the solution"
        },
        output.display(),
        package.digest
    ));
    Ok(Exit::Ok)
}

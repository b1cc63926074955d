//! `labrun definitions [DIR]`: writes the editor definition files.

use std::path::Path;
use std::sync::Arc;

use crate::bindings::{self, LabContext};
use crate::engine::{self, resolver::Sources};
use crate::error::{Error, Exit};
use crate::report::Reporter;

pub fn definitions(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    dir: &Path,
) -> Result<Exit, Error> {
    let ctx = LabContext::offline(runtime.handle().clone(), Path::new("definitions.rhai"));
    let engine = bindings::engine(&ctx, &Sources::default());
    let files = engine::definitions::files(&engine);
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Input(format!("cannot create {}: {e}", dir.display())))?;
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))?;
        reporter.print(&path.display().to_string());
    }
    reporter.log(&format!(
        "wrote {} definition files to {}; the Rhai language server reads them (see README, \"Editor support\")",
        files.len(),
        dir.display()
    ));
    Ok(Exit::Ok)
}

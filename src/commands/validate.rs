//! `labrun validate`: compile everything, run nothing.

use std::path::Path;
use std::sync::Arc;

use crate::bindings::{self, LabContext};
use crate::engine::{self, resolver::Sources};
use crate::error::{Error, Exit};
use crate::report::Reporter;

pub fn validate(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    playbook: &Path,
) -> Result<Exit, Error> {
    let ctx = LabContext::offline(runtime.handle().clone(), playbook);
    let sources = Sources::default();
    let engine = bindings::engine(&ctx, &sources);
    engine::compile(&engine, playbook, &sources)?;
    reporter.print(&format!("{}: ok", playbook.display()));
    Ok(Exit::Ok)
}

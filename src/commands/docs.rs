//! `labrun docs`.

use std::path::Path;
use std::sync::Arc;

use crate::bindings::{self, LabContext};
use crate::engine::{self, resolver::Sources};
use crate::error::{Error, Exit};
use crate::report::Reporter;

pub fn docs(runtime: &tokio::runtime::Runtime, reporter: &Arc<Reporter>) -> Result<Exit, Error> {
    let ctx = LabContext::offline(runtime.handle().clone(), Path::new("docs.rhai"));
    let engine = bindings::engine(&ctx, &Sources::default());
    let text = engine::docs::markdown(&engine);
    reporter.print(text.trim_end_matches('\n'));
    Ok(Exit::Ok)
}

//! `labrun docs`.

use std::path::Path;

use crate::engine::{self, resolver::Sources};
use crate::error::exit;

pub fn docs(runtime: &tokio::runtime::Runtime) -> i32 {
    let ctx = super::offline_context(runtime, Path::new("docs.rhai"));
    let engine = engine::build(&ctx, &Sources::default());
    print!("{}", engine::docs::markdown(&engine));
    exit::OK
}

//! `labrun validate`: compile everything, run nothing.

use std::path::Path;

use crate::engine::{self, resolver::Sources};
use crate::error::exit;

pub fn validate(runtime: &tokio::runtime::Runtime, playbook: &Path) -> i32 {
    let ctx = super::offline_context(runtime, playbook);
    let sources = Sources::default();
    let engine = engine::build(&ctx, &sources);
    match engine::compile(&engine, playbook, &sources) {
        Ok(_) => {
            println!("{}: ok", playbook.display());
            exit::OK
        }
        Err(e) => {
            eprintln!("{}", e.user_text());
            e.exit_code()
        }
    }
}

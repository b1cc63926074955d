//! Rhai bindings only: argument conversion, a call into plain Rust, error
//! mapping. One file per script namespace; all registered by
//! [`register_all`].

pub mod lab;

use std::sync::Arc;

use rhai::{Engine, FuncRegistration};

use crate::engine::LabContext;

/// Registers every binding into `engine`.
pub fn register_all(engine: &mut Engine, ctx: &Arc<LabContext>) {
    lab::register(engine, ctx);
}

/// A function registration carrying its doc comment and parameter names,
/// which `labrun docs` prints. `params` lists `name: Type` entries and ends
/// with the return type.
pub fn func(name: &str, params: &[&str], doc: &str) -> FuncRegistration {
    let comments: Vec<String> = vec![
        doc.trim()
            .lines()
            .map(|l| format!("/// {}", l.trim()))
            .collect::<Vec<_>>()
            .join("\n"),
    ];
    FuncRegistration::new(name)
        .with_params_info(params)
        .with_comments(comments)
}

//! Rhai bindings only: argument conversion, a call into plain Rust, error
//! mapping. One file per script namespace; all registered by
//! [`register_all`].

pub mod ec2;
pub mod lab;
pub mod mysql;
pub mod sg;
pub mod ssh;

use std::sync::Arc;

use rhai::{Engine, FuncRegistration, Map};

use crate::engine::{RhaiResult, script_error};

use crate::engine::LabContext;

/// Registers every binding into `engine`.
pub fn register_all(engine: &mut Engine, ctx: &Arc<LabContext>) {
    lab::register(engine, ctx);
    ec2::register(engine, ctx);
    sg::register(engine, ctx);
    ssh::register(engine, ctx);
    mysql::register(engine, ctx);
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

/// Checks an options map: every key known, every required key present.
pub fn map_keys(function: &str, map: &Map, known: &[&str], required: &[&str]) -> RhaiResult<()> {
    for k in map.keys() {
        if !known.contains(&k.as_str()) {
            return Err(script_error(format!(
                "{function}: unknown key `{k}`; expected {}",
                known.join(", ")
            )));
        }
    }
    for r in required {
        if !map.contains_key(*r) {
            return Err(script_error(format!(
                "{function}: missing `{r}` (keys: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

//! Rhai bindings only: argument conversion, a call into plain Rust, error
//! mapping. One file per script namespace (Rhai's own modules are
//! `stdlib/*.rhai`); all registered by [`register_all`], and [`engine`]
//! builds the engine every command uses.

pub mod args;
pub mod check;
pub mod context;
pub mod ec2;
pub mod lab;
pub mod mysql;
pub mod sg;
pub mod ssh;

use std::sync::Arc;

use rhai::{Engine, FuncRegistration, NativeCallContext};

pub use context::{LabContext, RunSetup, provider_error};

use crate::engine::{RhaiResult, resolver::Sources};

/// The engine for `ctx`, with every labrun function: what `run`,
/// `validate` and `docs` all use.
pub fn engine(ctx: &Arc<LabContext>, sources: &Sources) -> Engine {
    let mut engine = crate::engine::build(&ctx.playbook, &ctx.reporter, &ctx.cancel, sources);
    register_all(&mut engine, ctx);
    engine
}

/// Registers every binding into `engine`.
pub fn register_all(engine: &mut Engine, ctx: &Arc<LabContext>) {
    lab::register(engine, ctx);
    ec2::register(engine, ctx);
    sg::register(engine, ctx);
    ssh::register(engine, ctx);
    mysql::register(engine, ctx);
    check::register(engine, ctx);
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

/// Runs a namespaced binding (`sg::ensure`) and gives its error the call's
/// position: Rhai fills that in for method calls but not for qualified
/// ones, and without it the diagnostic cannot show `file:line:col`.
pub fn at_call<T>(nctx: &NativeCallContext, body: impl FnOnce() -> RhaiResult<T>) -> RhaiResult<T> {
    body().map_err(|mut e| {
        if e.position().is_none() {
            e.set_position(nctx.call_position());
        }
        e
    })
}

/// The item called `name` as a script value, or `()`: what the `find`
/// functions return.
pub fn find_named<T: Clone + Send + Sync + 'static>(
    items: Vec<T>,
    name: &str,
    name_of: impl Fn(&T) -> &str,
) -> rhai::Dynamic {
    items
        .into_iter()
        .find(|x| name_of(x) == name)
        .map(rhai::Dynamic::from)
        .unwrap_or(rhai::Dynamic::UNIT)
}

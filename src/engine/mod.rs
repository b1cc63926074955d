//! The Rhai engine labrun runs playbooks in.
//!
//! One function builds it (limits, strict variables, resolver, printer hooks,
//! every binding), so `run`, `validate` and `docs` all see exactly the same
//! engine.

pub mod context;
pub mod diagnostics;
pub mod docs;
pub mod resolver;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rhai::{AST, Engine, EvalAltResult};

pub use context::{LabContext, RhaiResult, provider_error, script_error};
use resolver::{LabResolver, Sources};

use crate::error::RunError;

/// Resource limits: generous for real labs, small enough to stop a runaway
/// script before it eats the machine.
pub mod limits {
    pub const MAX_OPERATIONS: u64 = 500_000_000;
    pub const MAX_CALL_LEVELS: usize = 64;
    pub const MAX_EXPR_DEPTH: usize = 128;
    pub const MAX_FN_EXPR_DEPTH: usize = 64;
    pub const MAX_STRING_SIZE: usize = 64 * 1024 * 1024;
    pub const MAX_ARRAY_SIZE: usize = 1_000_000;
    pub const MAX_MAP_SIZE: usize = 100_000;
    pub const MAX_MODULES: usize = 256;
}

/// Builds the engine for `ctx`. `sources` collects every compiled text so
/// diagnostics can quote it.
pub fn build(ctx: &Arc<LabContext>, sources: &Sources) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits::MAX_OPERATIONS);
    engine.set_max_call_levels(limits::MAX_CALL_LEVELS);
    engine.set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FN_EXPR_DEPTH);
    engine.set_max_string_size(limits::MAX_STRING_SIZE);
    engine.set_max_array_size(limits::MAX_ARRAY_SIZE);
    engine.set_max_map_size(limits::MAX_MAP_SIZE);
    engine.set_max_modules(limits::MAX_MODULES);
    engine.set_strict_variables(true);
    engine.set_fail_on_invalid_map_property(true);
    engine.set_module_resolver(LabResolver::new(&ctx.playbook, sources.clone()));

    let reporter = ctx.reporter.clone();
    engine.on_print(move |s| reporter.log(s));
    let reporter = ctx.reporter.clone();
    engine.on_debug(move |s, _src, pos| {
        reporter.log(&match pos.line() {
            Some(line) => format!("[debug line {line}] {s}"),
            None => format!("[debug] {s}"),
        })
    });
    let cancel = ctx.cancel.clone();
    engine.on_progress(move |_| cancel.load(Ordering::Relaxed).then(|| "interrupted".into()));

    crate::modules::register_all(&mut engine, ctx);
    engine
}

/// The name diagnostics use for the playbook file.
pub fn source_name(playbook: &Path) -> String {
    playbook.display().to_string()
}

/// Compiles the playbook and everything it imports, so errors surface
/// before anything is done.
pub fn compile(engine: &Engine, playbook: &Path, sources: &Sources) -> Result<AST, RunError> {
    let name = source_name(playbook);
    let text = std::fs::read_to_string(playbook)
        .map_err(|e| RunError::Input(format!("cannot read playbook {name}: {e}")))?;
    sources.insert(&name, &text);
    match engine.compile_into_self_contained(&rhai::Scope::new(), &text) {
        Ok(mut ast) => {
            ast.set_source(name.as_str());
            Ok(ast)
        }
        // Errors in imported modules carry their own file and position.
        Err(err) => Err(RunError::Syntax(diagnostics::runtime_error(
            &err, &name, sources, engine, None,
        ))),
    }
}

/// Runs a compiled playbook on the calling (blocking) thread.
pub fn run(engine: &Engine, ast: &AST) -> Result<(), Box<EvalAltResult>> {
    engine.run_ast(ast)
}

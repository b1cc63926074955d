//! The Rhai engine labrun runs playbooks in: limits, strict variables, the
//! module resolver, printer hooks, compiling and diagnostics. It knows
//! nothing of labrun's functions: `bindings::engine` builds this engine and
//! registers them, so `run`, `validate` and `docs` all see the same one.

pub mod definitions;
pub mod diagnostics;
pub mod docs;
pub mod resolver;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rhai::{AST, Engine, EvalAltResult};

use resolver::{LabResolver, Sources};

use crate::error::Error;
use crate::report::Reporter;

/// Result type of bindings.
pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error for the playbook, with labrun's message.
pub fn script_error(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        message.into().into(),
        rhai::Position::NONE,
    ))
}

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

/// Builds an engine for `playbook` (imports resolve next to it first) with
/// no functions of labrun's own. `sources` collects every compiled text so
/// diagnostics can quote it; `print` and `debug` go to `reporter`; `cancel`
/// stops the script at its next operation.
pub fn build(
    playbook: &Path,
    reporter: &Arc<Reporter>,
    cancel: &Arc<AtomicBool>,
    sources: &Sources,
) -> Engine {
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
    engine.set_module_resolver(LabResolver::new(playbook, sources.clone()));

    let r = reporter.clone();
    engine.on_print(move |s| r.log(s));
    let reporter = reporter.clone();
    engine.on_debug(move |s, _src, pos| {
        reporter.log(&match pos.line() {
            Some(line) => format!("[debug line {line}] {s}"),
            None => format!("[debug] {s}"),
        })
    });
    let cancel = cancel.clone();
    engine.on_progress(move |_| cancel.load(Ordering::Relaxed).then(|| "interrupted".into()));
    engine
}

/// The name diagnostics use for the playbook file.
pub fn source_name(playbook: &Path) -> String {
    playbook.display().to_string()
}

/// Compiles the playbook and everything it imports, so errors surface
/// before anything is done.
pub fn compile(engine: &Engine, playbook: &Path, sources: &Sources) -> Result<AST, Error> {
    let name = source_name(playbook);
    let text = std::fs::read_to_string(playbook)
        .map_err(|e| Error::Input(format!("cannot read playbook {name}: {e}")))?;
    sources.insert(&name, &text);
    match engine.compile_into_self_contained(&rhai::Scope::new(), &text) {
        Ok(mut ast) => {
            ast.set_source(name.as_str());
            Ok(ast)
        }
        // Errors in imported modules carry their own file and position.
        Err(err) => Err(Error::Syntax(diagnostics::runtime_error(
            &err, &name, sources, engine, None,
        ))),
    }
}

/// Runs a compiled playbook on the calling (blocking) thread.
pub fn run(engine: &Engine, ast: &AST) -> Result<(), Box<EvalAltResult>> {
    engine.run_ast(ast)
}

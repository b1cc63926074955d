//! Lab primitives: `params`, `secret`, `step`, `parallel`, `sleep`, ...
//! (`fail` and the rest of the check API are in `check.rs`.)

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext};

use super::LabContext;
use super::args::{self, Options};
use super::func;
use crate::engine::diagnostics;
use crate::engine::{RhaiResult, script_error};
use crate::report::{Status, current_step, enter_step};

pub fn register(engine: &mut Engine, ctx: &Arc<LabContext>) {
    let c = ctx.clone();
    func(
        "params",
        &["defaults: Map", "Map"],
        "The playbook's parameters: `defaults` merged with the command line's
        `--set KEY=VALUE`. A `--set` key not in `defaults` is an error listing the
        declared keys; values are parsed as JSON or Rhai literals where they parse
        (a string default always takes the text as given).",
    )
    .register_into_engine(engine, move |defaults: Map| -> RhaiResult<Map> {
        params(&c, defaults, &Map::new())
    });
    let c = ctx.clone();
    func(
        "params",
        &["defaults: Map", "options: Map", "Map"],
        "`params(defaults)` with `#{secret: [\"key\", ...]}`: the values of those
        parameters (their defaults and what `--set` gives) are secrets, masked as
        `********` in everything labrun prints or writes, like `secret()` values.",
    )
    .register_into_engine(
        engine,
        move |defaults: Map, options: Map| -> RhaiResult<Map> { params(&c, defaults, &options) },
    );

    let c = ctx.clone();
    func(
        "secret",
        &["name: string", "String"],
        "A strong password (24 characters: upper, lower, digit, symbol) generated
        the first time this lab asks for `name` and the same on every later run.
        Kept in the lab's 0600 secrets file; its value is masked as `********` in
        everything labrun prints or writes.",
    )
    .register_into_engine(engine, move |name: &str| -> RhaiResult<String> {
        if !crate::secrets::valid_secret_name(name) {
            return Err(script_error(format!(
                "secret(name): invalid name '{name}'; use letters, digits, '_', '-' or '.'"
            )));
        }
        c.ledger()?
            .secret(name)
            .map_err(|e| script_error(format!("secret('{name}'): {e}")))
    });

    let c = ctx.clone();
    func(
        "mask",
        &["value: string", "()"],
        "Treats `value` as a secret from now on: masked as `********` in everything
        labrun prints or writes, like `secret()` values (for a password that comes
        from elsewhere). Values shorter than 6 characters are not masked.",
    )
    .register_into_engine(engine, move |value: &str| {
        c.reporter.redactor().add(value);
    });

    let c = ctx.clone();
    func(
        "step",
        &["name: string", "body: Fn", "Dynamic"],
        "Runs `body` as a named unit of progress and returns its value. The step
        is reported `changed` if any operation inside changed something, `ok`
        otherwise, `failed` if it threw (the error then propagates). Steps nest.",
    )
    .register_into_engine(
        engine,
        move |nctx: NativeCallContext, name: &str, body: FnPtr| -> RhaiResult<Dynamic> {
            run_step(&c, &nctx, name, &body).map(|(v, _)| v)
        },
    );

    let c = ctx.clone();
    func(
        "parallel",
        &["closures: Array", "Array"],
        "Runs every closure in `closures` at the same time and returns their
        results in the same order. If any fails, the others still finish, and the
        error names every failure.",
    )
    .register_into_engine(
        engine,
        move |nctx: NativeCallContext, closures: Array| -> RhaiResult<Array> {
            c.check_cancel()?;
            run_parallel(&c, &nctx, closures)
        },
    );

    let c = ctx.clone();
    func(
        "sleep",
        &["seconds: f64", "()"],
        "Waits `seconds` (fractions allowed). Ctrl-C interrupts the wait.",
    )
    .register_into_engine(engine, move |seconds: f64| -> RhaiResult<()> {
        sleep(&c, seconds)
    });
    let c = ctx.clone();
    func(
        "sleep",
        &["seconds: i64", "()"],
        "Waits `seconds`. Ctrl-C interrupts the wait.",
    )
    .register_into_engine(engine, move |seconds: i64| -> RhaiResult<()> {
        sleep(&c, seconds as f64)
    });

    let c = ctx.clone();
    func(
        "lab_name",
        &["String"],
        "The lab's name (`--lab`, by default the playbook's file stem).",
    )
    .register_into_engine(engine, move || -> String { c.lab.clone() });

    let c = ctx.clone();
    func(
        "lab_dir",
        &["String"],
        "The lab's state directory: its ledger, SSH key (`id_ed25519`) and 0600
        `secrets.json`. To tell users how to read a password, point them at
        `labrun secret NAME --lab LAB` instead.",
    )
    .register_into_engine(engine, move || -> RhaiResult<String> {
        Ok(c.ledger()?.dir().display().to_string())
    });

    let c = ctx.clone();
    func(
        "provider",
        &["String"],
        "The provider this run uses: `local` or `aws`.",
    )
    .register_into_engine(engine, move || -> String { c.provider.to_string() });

    let c = ctx.clone();
    func(
        "changed",
        &["()"],
        "Marks the current step `changed`. For playbook code that acts on its own
        judgement (built-in operations report their changes themselves).",
    )
    .register_into_engine(engine, move || c.changed());
}

/// Runs `body` as the step `name` (nested in the calling thread's current
/// step) and returns its value and how the step ended: what `step` does,
/// and what an exercise's `solution` does for each task.
pub fn run_step(
    c: &LabContext,
    nctx: &NativeCallContext,
    name: &str,
    body: &FnPtr,
) -> RhaiResult<(Dynamic, Status)> {
    c.check_cancel()?;
    let id = c.reporter.step_started(name, current_step());
    let result = {
        let _guard = enter_step(Some(id));
        body.call_within_context::<Dynamic>(nctx, ())
    };
    match result {
        Ok(v) => {
            let status = c.reporter.step_finished(id, None);
            Ok((v, status))
        }
        Err(e) => {
            let leaf = diagnostics::leaf(&e, "");
            c.step_failed(&e, name);
            c.reporter.step_finished(id, Some(&leaf.message));
            Err(e)
        }
    }
}

/// `params(defaults, options)`: registers the secret parameters' values
/// with the redactor first, so no message about them (a wrong `--set` type,
/// say) can show them.
fn params(ctx: &LabContext, defaults: Map, options: &Map) -> RhaiResult<Map> {
    const F: &str = "params";
    let o = Options::new(F, options, &["secret"], &[])?;
    let mut secret = Vec::new();
    if let Some(list) = o.get("secret") {
        let list = list.clone().into_array().map_err(|t| {
            o.error(format!(
                "`secret` must be an array of parameter names, got {t}"
            ))
        })?;
        for item in list {
            let name = args::string(F, "secret", &item)?;
            if !defaults.contains_key(name.as_str()) {
                return Err(o.error(format!(
                    "`secret` names '{name}', which is not a parameter of `defaults`"
                )));
            }
            secret.push(name);
        }
    }
    let redactor = ctx.reporter.redactor();
    for name in &secret {
        if let Some(raw) = ctx.sets.get(name) {
            redactor.add(raw);
        }
        if let Some(v) = defaults.get(name.as_str()).filter(|v| v.is_string()) {
            redactor.add(&v.to_string());
        }
    }
    let merged = crate::params::merge(&defaults, &ctx.sets).map_err(|e| ctx.input_error(e))?;
    let mut declared = ctx.declared_params.lock().expect("params lock");
    let keys = declared.get_or_insert_with(Vec::new);
    keys.extend(defaults.keys().map(|k| k.to_string()));
    Ok(merged)
}

fn sleep(ctx: &LabContext, seconds: f64) -> RhaiResult<()> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(script_error(format!(
            "sleep(seconds): expected a non-negative number, got {seconds}"
        )));
    }
    ctx.sleep(Duration::from_secs_f64(seconds))
}

/// Calls every closure on its own thread, all sharing the caller's call
/// context (so captured variables and imports work) and its current step.
fn run_parallel(ctx: &LabContext, nctx: &NativeCallContext, closures: Array) -> RhaiResult<Array> {
    let mut fns = Vec::with_capacity(closures.len());
    for (i, item) in closures.into_iter().enumerate() {
        let type_name = item.type_name();
        match item.try_cast::<FnPtr>() {
            Some(mut f) => {
                super::ssh::detach_sessions(&mut f);
                fns.push(f)
            }
            None => {
                return Err(script_error(format!(
                    "parallel(closures): item {} is {type_name}, expected a closure such as `|| work()`",
                    i + 1
                )));
            }
        }
    }
    let parent = current_step();
    let results: Vec<Result<Dynamic, Box<EvalAltResult>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = fns
            .iter()
            .map(|f| {
                scope.spawn(move || {
                    let _guard = enter_step(parent);
                    f.call_within_context::<Dynamic>(nctx, ())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(script_error("a parallel closure panicked")))
            })
            .collect()
    });
    let total = results.len();
    let mut failures = Vec::new();
    let mut errors = Vec::new();
    let mut values = Array::with_capacity(total);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(v) => values.push(v),
            Err(e) => {
                let leaf = diagnostics::leaf(&e, nctx.call_source().unwrap_or(""));
                let at = leaf
                    .location
                    .map(|l| format!(" (at {l})"))
                    .unwrap_or_default();
                failures.push(format!("[{}] {}{at}", i + 1, leaf.message));
                errors.push(e);
            }
        }
    }
    if failures.is_empty() {
        Ok(values)
    } else {
        let err = script_error(format!(
            "parallel: {} of {total} failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        ));
        ctx.parallel_failed(&err, &errors);
        Err(err)
    }
}

//! What every binding can reach while a playbook runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::EvalAltResult;

use super::check::ExerciseScope;
use crate::engine::diagnostics::FailureKey;
use crate::engine::{RhaiResult, script_error};
use crate::ledger::Ledger;
use crate::providers::{LabScope, Provider, ProviderError, ProviderKind, ProviderOptions};
use crate::redact::Redactor;
use crate::report::{OutputMode, Reporter};

/// Shared state of one run (or of an engine built only to validate or to
/// print docs, in which case there is no ledger).
pub struct LabContext {
    pub lab: String,
    pub provider: ProviderKind,
    pub playbook: PathBuf,
    pub reporter: Arc<Reporter>,
    pub ledger: Option<Arc<Ledger>>,
    /// `--set` values, raw text by key.
    pub sets: BTreeMap<String, String>,
    /// Keys declared by `params()`, once it has been called.
    pub declared_params: Mutex<Option<Vec<String>>>,
    pub handle: tokio::runtime::Handle,
    /// Set by the first Ctrl-C; checked at every safe point.
    pub cancel: Arc<AtomicBool>,
    /// Set when the failure is the user's input (exit code 2), not the lab's.
    pub input_error: AtomicBool,
    /// The failures steps reported, each with the innermost step it
    /// failed: the run's error is one of them, or it happened outside any
    /// step.
    pub step_failures: Mutex<Vec<(FailureKey, String)>>,
    pub provider_options: ProviderOptions,
    /// Connected on first use, so playbooks that launch nothing need no
    /// Docker engine or cloud credentials.
    pub provider_impl: Mutex<Option<Arc<dyn Provider>>>,
    /// The run's SSH sessions, one per host.
    pub ssh: crate::ssh::Pool,
    /// The exercise this script belongs to (its checks, solution or
    /// setup), if any: what `task`, `solution` and `params()` work with.
    pub exercise: Option<Arc<ExerciseScope>>,
}

/// What a run's context is made from.
pub struct RunSetup {
    pub lab: String,
    pub provider: ProviderKind,
    pub playbook: PathBuf,
    pub reporter: Arc<Reporter>,
    pub ledger: Arc<Ledger>,
    pub sets: BTreeMap<String, String>,
    pub provider_options: ProviderOptions,
    pub cancel: Arc<AtomicBool>,
    pub exercise: Option<Arc<ExerciseScope>>,
}

impl LabContext {
    fn new(
        lab: String,
        provider: ProviderKind,
        playbook: PathBuf,
        reporter: Arc<Reporter>,
        handle: tokio::runtime::Handle,
    ) -> Self {
        LabContext {
            lab,
            provider,
            playbook,
            reporter,
            ledger: None,
            sets: BTreeMap::new(),
            declared_params: Mutex::new(None),
            handle,
            cancel: Arc::new(AtomicBool::new(false)),
            input_error: AtomicBool::new(false),
            step_failures: Mutex::new(Vec::new()),
            provider_options: ProviderOptions::default(),
            provider_impl: Mutex::new(None),
            ssh: Default::default(),
            exercise: None,
        }
    }

    /// A context with no lab state: enough to compile `playbook` and to
    /// list functions (`validate`, `docs`, the check before a run).
    pub fn offline(handle: tokio::runtime::Handle, playbook: &Path) -> Arc<Self> {
        Self::offline_exercise(handle, playbook, None)
    }

    /// An offline context for a script of an exercise: its top level can
    /// run (declaring tasks and solutions) without a lab.
    pub fn offline_exercise(
        handle: tokio::runtime::Handle,
        script: &Path,
        exercise: Option<Arc<ExerciseScope>>,
    ) -> Arc<Self> {
        let reporter = Arc::new(Reporter::new(OutputMode::Plain, false, Redactor::new()));
        let mut ctx = Self::new(
            "validate".into(),
            ProviderKind::Local,
            script.to_path_buf(),
            reporter,
            handle,
        );
        ctx.exercise = exercise;
        Arc::new(ctx)
    }

    /// The context of a run of a lab whose ledger is open.
    pub fn run(handle: tokio::runtime::Handle, setup: RunSetup) -> Arc<Self> {
        let mut ctx = Self::new(
            setup.lab,
            setup.provider,
            setup.playbook,
            setup.reporter,
            handle,
        );
        ctx.ledger = Some(setup.ledger);
        ctx.sets = setup.sets;
        ctx.provider_options = setup.provider_options;
        ctx.cancel = setup.cancel;
        ctx.exercise = setup.exercise;
        Arc::new(ctx)
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Errors out if Ctrl-C was pressed: bindings call this before acting.
    pub fn check_cancel(&self) -> RhaiResult<()> {
        if self.cancelled() {
            Err(script_error("interrupted"))
        } else {
            Ok(())
        }
    }

    /// Runs async work from the (blocking) script thread.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.handle.block_on(fut)
    }

    /// The ledger, or an error for engines that have none (validate, docs).
    pub fn ledger(&self) -> RhaiResult<&Arc<Ledger>> {
        self.ledger
            .as_ref()
            .ok_or_else(|| script_error("this engine has no lab state (not a run)"))
    }

    /// Sleeps in short slices so Ctrl-C is noticed promptly.
    pub fn sleep(&self, total: Duration) -> RhaiResult<()> {
        let deadline = std::time::Instant::now() + total;
        loop {
            self.check_cancel()?;
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// The lab's provider, connected (and the lab key made) on first use.
    pub fn provider(&self) -> RhaiResult<Arc<dyn Provider>> {
        let mut slot = self.provider_impl.lock().expect("provider lock");
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let ledger = self.ledger()?.clone();
        let key =
            crate::keys::ensure(&ledger, &self.lab).map_err(|e| script_error(e.to_string()))?;
        let scope = LabScope {
            lab: self.lab.clone(),
            ledger,
            reporter: self.reporter.clone(),
            public_key: key.public_line,
            cancel: self.cancel.clone(),
        };
        let p = self
            .block_on(self.provider.connect(scope, &self.provider_options))
            .map_err(|e| provider_error("provider", e))?;
        *slot = Some(p.clone());
        Ok(p)
    }

    /// Marks the current step changed: operations call this when they acted.
    pub fn changed(&self) {
        self.reporter.mark_current_changed();
    }

    /// Records that step `name` failed with `err`. Enclosing steps fail
    /// with the same error after it: the innermost keeps the record.
    pub fn step_failed(&self, err: &EvalAltResult, name: &str) {
        self.record_failure(FailureKey::of(err), name);
    }

    fn record_failure(&self, key: FailureKey, step: &str) {
        let mut failures = self.step_failures.lock().expect("step failures lock");
        if !failures.iter().any(|(k, _)| k.same(&key)) {
            failures.push((key, step.to_string()));
        }
    }

    /// The step `err` came out of (the innermost), or `None` for a failure
    /// outside any step.
    pub fn failed_step(&self, err: &EvalAltResult) -> Option<String> {
        let key = FailureKey::of(err);
        let failures = self.step_failures.lock().expect("step failures lock");
        failures
            .iter()
            .find(|(k, _)| k.same(&key))
            .map(|(_, step)| step.clone())
    }

    /// `parallel`'s own error, made of its closures' failures: when every
    /// one of them came out of a step, it counts as that (first) step's
    /// failure, not as another one.
    pub fn parallel_failed(&self, err: &EvalAltResult, parts: &[Box<EvalAltResult>]) {
        let steps: Vec<Option<String>> = parts.iter().map(|e| self.failed_step(e)).collect();
        if let Some(Some(first)) = steps.first()
            && steps.iter().all(Option::is_some)
        {
            self.record_failure(FailureKey::of(err), first);
        }
    }

    /// Marks this failure as the user's input error (exit code 2).
    pub fn input_error(&self, message: impl Into<String>) -> Box<EvalAltResult> {
        self.input_error.store(true, Ordering::SeqCst);
        script_error(message)
    }
}

/// A provider failure as a playbook error naming the function that failed.
pub fn provider_error(function: &str, e: ProviderError) -> Box<EvalAltResult> {
    script_error(format!("{function}: {e}"))
}

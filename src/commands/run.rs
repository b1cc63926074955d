//! `labrun run PLAYBOOK`: compile, lock the lab, run, report. [`OpenLab`]
//! is that machinery for every command that runs scripts against a lab
//! (the exercise commands run setup, checks and solutions through it).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rhai::AST;

use crate::bindings::check::ExerciseScope;
use crate::bindings::{self, LabContext, RunSetup};
use crate::cli::RunArgs;
use crate::engine::{self, diagnostics, resolver::Sources};
use crate::error::{Error, Exit};
use crate::ledger::{self, Ledger, LedgerData};
use crate::params;
use crate::providers::{ProviderKind, ProviderOptions};
use crate::report::Reporter;

/// The lab name: `--lab`, else the playbook's file stem.
pub fn lab_name(args: &RunArgs) -> String {
    args.lab.clone().unwrap_or_else(|| {
        args.playbook
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "lab".into())
    })
}

/// Compiles `script` and everything it imports with an engine that has no
/// lab state: fail before acting.
pub fn compile_offline(
    runtime: &tokio::runtime::Runtime,
    script: &Path,
    sources: &Sources,
    exercise: Option<Arc<ExerciseScope>>,
) -> Result<AST, Error> {
    let offline = LabContext::offline_exercise(runtime.handle().clone(), script, exercise);
    let engine = bindings::engine(&offline, sources);
    engine::compile(&engine, script, sources)
}

/// The lab a command acts on: the one named, else the only lab there is.
pub fn pick_lab(lab: Option<&str>) -> Result<String, Error> {
    if let Some(lab) = lab {
        ledger::validate_lab_name(lab)?;
        return Ok(lab.to_string());
    }
    let root = ledger::state_root()?;
    match ledger::list_labs(&root).as_slice() {
        [] => Err(Error::Input(format!("no labs under {}", root.display()))),
        [one] => Ok(one.clone()),
        many => Err(Error::Input(format!(
            "several labs exist ({}); name one with --lab NAME",
            many.join(", ")
        ))),
    }
}

/// A lab opened to run scripts against: its ledger (and so its lock), the
/// Ctrl-C flag and its watcher. Dropping it saves the ledger and releases
/// the lock.
pub struct OpenLab {
    pub lab: String,
    pub provider: ProviderKind,
    pub options: ProviderOptions,
    pub ledger: Arc<Ledger>,
    pub cancel: Arc<AtomicBool>,
    reporter: Arc<Reporter>,
    handle: tokio::runtime::Handle,
    interrupt: tokio::task::JoinHandle<()>,
}

impl OpenLab {
    /// Opens (creating if needed) lab `lab` on `provider`.
    pub fn open(
        runtime: &tokio::runtime::Runtime,
        reporter: &Arc<Reporter>,
        lab: &str,
        provider: ProviderKind,
        options: ProviderOptions,
    ) -> Result<OpenLab, Error> {
        ledger::validate_lab_name(lab)?;
        if let Some(cidr) = &options.operator_cidr {
            crate::providers::parse_cidr(cidr)
                .map_err(|e| Error::Input(format!("--operator-cidr: {e}")))?;
        }
        let ledger = Arc::new(Ledger::open(
            &ledger::state_root()?,
            lab,
            provider,
            reporter.redactor().clone(),
        )?);
        let cancel = Arc::new(AtomicBool::new(false));
        let interrupt = runtime.spawn(watch_ctrl_c(cancel.clone(), reporter.clone()));
        Ok(OpenLab {
            lab: lab.to_string(),
            provider,
            options,
            ledger,
            cancel,
            reporter: reporter.clone(),
            handle: runtime.handle().clone(),
            interrupt,
        })
    }

    /// Opens a lab that exists, on the provider its ledger names; `None`
    /// when there is no such lab.
    pub fn existing(
        runtime: &tokio::runtime::Runtime,
        reporter: &Arc<Reporter>,
        lab: &str,
        options: ProviderOptions,
    ) -> Result<Option<OpenLab>, Error> {
        ledger::validate_lab_name(lab)?;
        let dir = ledger::state_root()?.join("labs").join(lab);
        let Some(data) = LedgerData::load(&dir)? else {
            return Ok(None);
        };
        Self::open(runtime, reporter, lab, data.provider, options).map(Some)
    }

    /// The context `script` runs in against this lab.
    pub fn context(
        &self,
        script: &Path,
        sets: BTreeMap<String, String>,
        exercise: Option<Arc<ExerciseScope>>,
    ) -> Arc<LabContext> {
        LabContext::run(
            self.handle.clone(),
            RunSetup {
                lab: self.lab.clone(),
                provider: self.provider,
                playbook: script.to_path_buf(),
                reporter: self.reporter.clone(),
                ledger: self.ledger.clone(),
                sets,
                provider_options: self.options.clone(),
                cancel: self.cancel.clone(),
                exercise,
            },
        )
    }

    /// Runs the compiled `ast` of `ctx.playbook` on a blocking thread; a
    /// failure becomes the full diagnostic, with how to resume or clean up.
    pub fn run_script(
        &self,
        ctx: &Arc<LabContext>,
        sources: &Sources,
        ast: AST,
    ) -> Result<(), Error> {
        let engine = Arc::new(bindings::engine(ctx, sources));
        let result = {
            let engine = engine.clone();
            self.handle.block_on(async move {
                tokio::task::spawn_blocking(move || engine::run(&engine, &ast))
                    .await
                    .unwrap_or_else(|e| {
                        Err(engine::script_error(format!(
                            "the playbook thread died: {e}"
                        )))
                    })
            })
        };
        let _ = self.ledger.save();
        let Err(err) = result else { return Ok(()) };
        let lab = &self.lab;
        let step = ctx.failed_step(&err);
        if step.is_none() && !self.cancel.load(Ordering::SeqCst) {
            // No step counted this one: it happened outside any.
            self.reporter.count_failure();
        }
        let diagnostic = diagnostics::runtime_error(
            &err,
            &engine::source_name(&ctx.playbook),
            sources,
            &engine,
            step.as_deref(),
        );
        Err(if self.cancel.load(Ordering::SeqCst) {
            Error::Interrupted(format!(
                "interrupted{}. The lab's state is saved in {}.\n\
                 Run the same command again to resume, or `labrun destroy --lab {lab}` to remove what it created.",
                step.map(|s| format!(" during step '{s}'"))
                    .unwrap_or_default(),
                self.ledger.dir().display()
            ))
        } else if ctx.input_error.load(Ordering::SeqCst) {
            Error::Input(diagnostic)
        } else if self.ledger.snapshot().resources.is_empty() {
            // Nothing was created: no cleanup to suggest.
            Error::Failed(diagnostic)
        } else {
            Error::Failed(format!(
                "{diagnostic}\n\nThe lab's state is in {}. Fix and run again to continue, \
                 or `labrun destroy --lab {lab}` to remove what it created.",
                self.ledger.dir().display()
            ))
        })
    }

    /// The lab's provider, connected (for commands that act on the lab
    /// without a script: `labrun sg`, `labrun ssh`).
    pub fn connect(
        &self,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<Arc<dyn crate::providers::Provider>, Error> {
        let key = crate::keys::ensure(&self.ledger, &self.lab)?;
        let scope = crate::providers::LabScope {
            lab: self.lab.clone(),
            ledger: self.ledger.clone(),
            reporter: self.reporter.clone(),
            public_key: key.public_line,
            cancel: self.cancel.clone(),
        };
        Ok(runtime.block_on(self.provider.connect(scope, &self.options))?)
    }

    /// What to tell the user once the command is over (AWS: what keeps
    /// costing money).
    pub fn closing_notice(&self) {
        if let Some(notice) =
            self.provider
                .closing_notice(&self.lab, &self.ledger.snapshot(), &self.options)
        {
            self.reporter.closing_warning(&notice);
        }
    }
}

impl Drop for OpenLab {
    fn drop(&mut self) {
        self.interrupt.abort();
        let _ = self.ledger.save();
    }
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: RunArgs,
) -> Result<Exit, Error> {
    let mut sets = BTreeMap::new();
    for s in &args.set {
        let (k, v) = params::parse_set(s).map_err(Error::Input)?;
        sets.insert(k, v);
    }
    let lab = lab_name(&args);
    ledger::validate_lab_name(&lab)?;
    let provider_options = args.provider_options();
    if let Some(cidr) = &provider_options.operator_cidr {
        crate::providers::parse_cidr(cidr)
            .map_err(|e| Error::Input(format!("--operator-cidr: {e}")))?;
    }

    // Fail before acting: compile everything with an engine that has no lab
    // state, then take the lab's lock.
    let sources = Sources::default();
    let ast = compile_offline(runtime, &args.playbook, &sources, None)?;

    let open = OpenLab::open(runtime, reporter, &lab, args.provider, provider_options)?;
    open.ledger
        .update(|d| d.playbook = Some(args.playbook.display().to_string()))?;
    let ctx = open.context(&args.playbook, sets.clone(), None);

    let playbook_name = engine::source_name(&args.playbook);
    reporter.run_started(&playbook_name, &lab, open.provider.as_str());
    let result = open.run_script(&ctx, &sources, ast);
    open.closing_notice();
    result?;
    if !sets.is_empty() && ctx.declared_params.lock().expect("params lock").is_none() {
        return Err(Error::Input(format!(
            "--set {} given, but {playbook_name} declares no parameters (it never calls params())",
            sets.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(Exit::Ok)
}

/// First Ctrl-C: stop at the next safe point. Second: leave at once.
pub(crate) async fn watch_ctrl_c(cancel: Arc<AtomicBool>, reporter: Arc<Reporter>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    cancel.store(true, Ordering::SeqCst);
    reporter
        .warn("interrupt: stopping at the next safe point (press Ctrl-C again to exit at once)");
    if tokio::signal::ctrl_c().await.is_ok() {
        reporter.error(
            "interrupted again: exiting now; the ledger is saved up to the last recorded change",
        );
        std::process::exit(Exit::Interrupted.code());
    }
}

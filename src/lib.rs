//! labrun: run lab playbooks written in Rhai.
//!
//! [`run`] is the whole program; `main` only turns its result into an exit
//! code.

pub mod bindings;
pub mod class;
pub mod cli;
pub mod commands;
pub mod dirs;
pub mod engine;
pub mod error;
pub mod exercise;
pub mod keys;
pub mod ledger;
pub mod mysql;
pub mod params;
pub mod providers;
pub mod redact;
pub mod report;
pub mod secrets;
pub mod ssh;

use std::sync::Arc;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{Error, Exit};
use crate::redact::Redactor;
use crate::report::Reporter;

/// Parses the command line, runs the command, returns the exit code.
pub fn run() -> i32 {
    let args = cli::expand_shorthand(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // clap renders its own usage errors and --help.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.code()
            } else {
                Exit::Ok.code()
            };
        }
    };
    let (mode, verbose) = cli.command.output();
    let reporter = Arc::new(Reporter::new(mode, verbose, Redactor::new()));
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| dispatch(&runtime, &reporter, cli.command));
    let exit = match &result {
        Ok(exit) => *exit,
        Err(e) => error::render(&reporter, e),
    };
    reporter.finish(result.err().map(|e| e.headline()).as_deref());
    exit.code()
}

fn dispatch(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    command: Command,
) -> Result<Exit, Error> {
    match command {
        Command::Run(args) => commands::run::run(runtime, reporter, args),
        Command::Validate { playbook } => {
            commands::validate::validate(runtime, reporter, &playbook)
        }
        Command::Docs => commands::docs::docs(runtime, reporter),
        Command::Status { lab, .. } => commands::status::status(runtime, reporter, lab.as_deref()),
        Command::Destroy(args) => commands::destroy::destroy(runtime, reporter, args),
        Command::Images {
            build,
            rebuild,
            prune,
            ..
        } => commands::images::images(runtime, reporter, &build, rebuild, prune),
        Command::Definitions { dir } => commands::definitions::definitions(runtime, reporter, &dir),
        Command::Completions { shell } => commands::completions::completions(reporter, shell),
        Command::Man { dir } => commands::man::man(reporter, dir.as_deref()),
        Command::Secret { name, lab } => commands::secret::secret(reporter, &name, lab.as_deref()),
        Command::Exercise(command) => commands::exercise::dispatch(runtime, reporter, command),
        Command::Ssh(args) => commands::ssh::ssh(runtime, reporter, args),
        Command::Sg(command) => commands::sg::sg(runtime, reporter, command),
        Command::Class(command) => commands::class::dispatch(runtime, reporter, command),
    }
}

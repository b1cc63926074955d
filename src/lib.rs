//! labrun: run lab playbooks written in Rhai.
//!
//! [`run`] is the whole program; `main` only turns its result into an exit
//! code.

pub mod cli;
pub mod commands;
pub mod dirs;
pub mod engine;
pub mod error;
pub mod keys;
pub mod ledger;
pub mod modules;
pub mod mysql;
pub mod params;
pub mod providers;
pub mod redact;
pub mod report;
pub mod secrets;
pub mod ssh;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::exit;

/// Parses the command line, runs the command, returns the exit code.
pub fn run() -> i32 {
    let args = cli::expand_shorthand(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    match cli.command {
        Command::Run(args) => commands::run::run(&runtime, args),
        Command::Validate { playbook } => commands::validate::validate(&runtime, &playbook),
        Command::Docs => commands::docs::docs(&runtime),
        Command::Status { lab } => commands::status::status(&runtime, lab.as_deref()),
        Command::Destroy(args) => commands::destroy::destroy(&runtime, args),
        Command::Images { build, rebuild } => commands::images::images(&runtime, &build, rebuild),
    }
}

//! `labrun completions SHELL`: a completion script made from the clap
//! definitions, so it knows every subcommand and flag of this build.

use std::sync::Arc;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Exit};
use crate::report::Reporter;

pub fn completions(reporter: &Arc<Reporter>, shell: clap_complete::Shell) -> Result<Exit, Error> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "labrun", &mut script);
    reporter.print(String::from_utf8_lossy(&script).trim_end_matches('\n'));
    Ok(Exit::Ok)
}

//! The command line. Every `///` here is `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::OutputMode;

/// Run lab playbooks: Rhai scripts that build a small infrastructure lab
/// (instances, firewalls, software, users) and prove it works.
///
/// `labrun PLAYBOOK [ARGS]` is short for `labrun run PLAYBOOK [ARGS]`.
#[derive(Debug, Parser)]
#[command(name = "labrun", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommand names, for the `labrun PLAYBOOK` shorthand.
pub const SUBCOMMANDS: &[&str] = &[
    "run", "validate", "docs", "status", "destroy", "images", "help",
];

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a playbook (the default: `labrun PLAYBOOK` means `labrun run PLAYBOOK`)
    Run(RunArgs),
    /// Compile a playbook and every module it imports; run nothing
    Validate {
        /// The playbook (.rhai) to check
        playbook: PathBuf,
    },
    /// Print the playbook API reference (Markdown), generated from the engine
    Docs,
    /// List labs with their instances (IPs, state, age), network and
    /// security groups
    Status {
        /// Show only this lab
        #[arg(long)]
        lab: Option<String>,
    },
    /// Remove everything a lab created (instances, network, security
    /// groups), found through its ledger and its labels; keeps its key and
    /// secrets so a re-run reuses them
    Destroy {
        /// The lab to destroy [default: the only lab there is]
        #[arg(long, env = "LABRUN_LAB")]
        lab: Option<String>,
        /// Destroy every lab
        #[arg(long, conflicts_with = "lab")]
        all: bool,
    },
    /// List the local provider's base images; build them with --build
    Images {
        /// Build this image now if it is not built yet (repeatable)
        #[arg(long = "build", value_name = "NAME")]
        build: Vec<String>,
        /// With --build: build again even if it is cached
        #[arg(long, requires = "build")]
        rebuild: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// Docker containers on this machine, with enforced security groups
    Local,
    /// Amazon EC2
    Aws,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Aws => "aws",
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook (.rhai) to run
    pub playbook: PathBuf,

    /// Set a playbook parameter (repeatable); VALUE is parsed as a JSON or
    /// Rhai literal where it parses, else taken as a string
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Lab name: keys the lab's state, labels and tags [default: playbook's file stem]
    #[arg(long, env = "LABRUN_LAB")]
    pub lab: Option<String>,

    /// Where instances run
    #[arg(long, value_enum, env = "LABRUN_PROVIDER", default_value = "local")]
    pub provider: ProviderKind,

    /// Output format [default: human on a terminal, else plain]
    #[arg(long, value_enum)]
    pub output: Option<OutputMode>,

    /// Show remote commands' output lines as they arrive
    #[arg(short, long)]
    pub verbose: bool,
}

/// `labrun PLAYBOOK ...` → `labrun run PLAYBOOK ...`.
pub fn expand_shorthand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if let Some(first) = args.get(1).and_then(|a| a.to_str())
        && !first.starts_with('-')
        && !SUBCOMMANDS.contains(&first)
    {
        args.insert(1, "run".into());
    }
    args
}

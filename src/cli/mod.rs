//! The command line. Every `///` here is `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::providers::ProviderKind;
use crate::report::OutputMode;

mod class;
mod console;
mod exercise;

pub use class::*;
pub use console::*;
pub use exercise::*;

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
    "run",
    "validate",
    "docs",
    "status",
    "destroy",
    "images",
    "help",
    "definitions",
    "completions",
    "man",
    "secret",
    "exercise",
    "ssh",
    "sg",
    "class",
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
        /// Output format: `json` prints one JSON document [default: text]
        #[arg(long, value_enum)]
        output: Option<OutputMode>,
    },
    /// Remove everything a lab created (instances, network, security groups,
    /// key pair), found through its ledger and its labels/tags; keeps its key
    /// and secrets so a re-run reuses them
    Destroy(DestroyArgs),
    /// List the local provider's base images and its package cache; build
    /// images with --build, remove the package cache with --prune
    Images {
        /// Build this image now if it is not built yet (repeatable)
        #[arg(long = "build", value_name = "NAME")]
        build: Vec<String>,
        /// With --build: build again even if it is cached
        #[arg(long, requires = "build")]
        rebuild: bool,
        /// Remove the shared package cache (its container, the volume of
        /// cached packages, its image); the next launch starts it anew
        #[arg(long, conflicts_with = "build")]
        prune: bool,
        /// Output format: `json` prints NDJSON events, the list last [default: text]
        #[arg(long, value_enum)]
        output: Option<OutputMode>,
    },
    /// Write Rhai definition files (.d.rhai) for editors: completion and
    /// signatures of every labrun function, type and stdlib module
    Definitions {
        /// Where to write them (created if missing)
        #[arg(default_value = ".rhai/definitions")]
        dir: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page labrun(1), or write one page per subcommand with --dir
    Man {
        /// Write labrun.1 and labrun-SUBCOMMAND.1 into this directory instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print one secret's value (the only command that shows one)
    Secret {
        /// The secret's name, as the playbook asks for it (`secret("NAME")`)
        name: String,
        /// The lab it belongs to [default: the only lab there is]
        #[arg(long, env = "LABRUN_LAB")]
        lab: Option<String>,
    },
    /// Exercises: a lab handed to learners as tasks with checks, hints and
    /// points, plus a reference solution (new, validate, test, start, check,
    /// solve, pack)
    #[command(subcommand)]
    Exercise(ExerciseCommand),
    /// Log in to one of a lab's instances over SSH (the lab's key, the pinned
    /// host key, the right port), or run one command there
    Ssh(SshArgs),
    /// A lab's security groups: list them, allow or revoke an ingress rule
    #[command(subcommand)]
    Sg(SgCommand),
    /// Classes: one lab per learner of a roster, brought up, graded and
    /// removed together (up, status, grade, down)
    #[command(subcommand)]
    Class(ClassCommand),
}

impl Command {
    /// How the command reports: `--output` and `-v` where it has them, else
    /// human on a terminal and plain otherwise.
    pub fn output(&self) -> (OutputMode, bool) {
        match self {
            Command::Run(a) => (a.output.unwrap_or_else(OutputMode::detect), a.verbose),
            Command::Status { output, .. } | Command::Images { output, .. } => {
                (output.unwrap_or_else(OutputMode::detect), false)
            }
            Command::Destroy(a) => (a.output.unwrap_or_else(OutputMode::detect), false),
            Command::Exercise(e) => e.output(),
            Command::Class(c) => (c.output().unwrap_or_else(OutputMode::detect), false),
            _ => (OutputMode::detect(), false),
        }
    }
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The lab to remove [default: the only lab there is]
    #[arg(long, env = "LABRUN_LAB")]
    pub lab: Option<String>,

    /// Remove every lab
    #[arg(long, conflicts_with = "lab")]
    pub all: bool,

    /// Output format: `json` prints NDJSON events, one `destroyed` per lab [default: text]
    #[arg(long, value_enum)]
    pub output: Option<OutputMode>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Where the AWS provider connects (the local provider ignores these).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "AWS")]
pub struct AwsArgs {
    /// AWS region [default: AWS_REGION, the profile's region, or the lab's recorded region]
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// AWS profile for credentials and region [default: AWS_PROFILE, else `default`]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// EC2 API endpoint, for an emulator such as moto [default: AWS_ENDPOINT_URL, else AWS's]
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// An empty value (`LABRUN_OPERATOR_CIDR=`) counts as unset.
pub(crate) fn given(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.trim().is_empty())
}

impl AwsArgs {
    pub fn options(&self) -> crate::providers::ProviderOptions {
        crate::providers::ProviderOptions {
            region: given(&self.region),
            profile: given(&self.profile),
            endpoint_url: given(&self.endpoint_url),
            ..Default::default()
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

    /// Where your SSH traffic comes from (CIDR), for rules that admit only you
    /// [default: detected; on AWS your public address, asked of checkip.amazonaws.com]
    #[arg(long, env = "LABRUN_OPERATOR_CIDR", value_name = "CIDR")]
    pub operator_cidr: Option<String>,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// VPC for the lab's groups and instances [default: the region's default VPC]
    #[arg(long, value_name = "VPC_ID", help_heading = "AWS")]
    pub vpc: Option<String>,

    /// Subnet for the lab's instances [default: a default subnet of the VPC]
    #[arg(long, value_name = "SUBNET_ID", help_heading = "AWS")]
    pub subnet: Option<String>,
}

impl RunArgs {
    pub fn provider_options(&self) -> crate::providers::ProviderOptions {
        crate::providers::ProviderOptions {
            operator_cidr: given(&self.operator_cidr),
            vpc: given(&self.vpc),
            subnet: given(&self.subnet),
            ..self.aws.options()
        }
    }
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

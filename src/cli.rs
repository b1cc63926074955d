//! The command line. Every `///` here is `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::providers::ProviderKind;
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
fn given(v: &Option<String>) -> Option<String> {
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

/// `labrun exercise ...`.
#[derive(Debug, Subcommand)]
pub enum ExerciseCommand {
    /// Write a working exercise skeleton to start from into a new directory
    New {
        /// The new exercise's directory; its last part is the exercise id
        dir: PathBuf,
    },
    /// Check an exercise without running anything: every file compiles, every
    /// task has a hint and a solution, points add up, placeholders resolve
    Validate {
        /// The exercise directory (or packed file)
        exercise: PathBuf,
    },
    /// Prove an exercise on real instances: setup, every check fails, solve,
    /// every check passes, solve again changes nothing, checks pass, destroy
    Test(ExerciseTestArgs),
    /// Set up a learner's lab and print their tasks and how to get in
    Start(ExerciseStartArgs),
    /// Check a learner's lab: each task passed or failed, points, what is
    /// wrong and a hint; exit 0 when every task passed, 1 otherwise
    Check(ExerciseCheckArgs),
    /// Apply the reference solution to a learner's lab (the "skip" button)
    Solve(ExerciseSolveArgs),
    /// Pack an exercise into one digest-checked file to hand out
    Pack {
        /// The exercise directory
        exercise: PathBuf,
        /// The file to write
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Leave the reference solution out (solve.rhai, solution/)
        #[arg(long)]
        learner_copy: bool,
    },
}

impl ExerciseCommand {
    fn output(&self) -> (OutputMode, bool) {
        let (mode, verbose) = match self {
            ExerciseCommand::Test(a) => (a.run.output, a.run.verbose),
            ExerciseCommand::Start(a) => (a.run.output, a.run.verbose),
            ExerciseCommand::Solve(a) => (a.run.output, a.run.verbose),
            // The result object is the only thing on stdout: progress and
            // warnings stay on stderr.
            ExerciseCommand::Check(a) => match a.output {
                Some(OutputMode::Json) => (Some(OutputMode::Plain), false),
                other => (other, false),
            },
            _ => (None, false),
        };
        (mode.unwrap_or_else(OutputMode::detect), verbose)
    }
}

/// Who the exercise is for, and where their lab is.
#[derive(Debug, Clone, Default, Args)]
pub struct LearnerArgs {
    /// The learner: their parameters come from the course secret and this id,
    /// and their lab is `<exercise>-<learner>` [default: no learner, the defaults]
    #[arg(long, env = "LABRUN_LEARNER", value_name = "ID")]
    pub learner: Option<String>,

    /// The lab [default: `<exercise>-<learner>`, or `<exercise>`]
    #[arg(long, env = "LABRUN_LAB")]
    pub lab: Option<String>,

    /// The class the learner is in: acts on their lab in that class (with --learner)
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,

    /// A file holding the course secret (LABRUN_COURSE_SECRET, the secret
    /// itself, takes precedence)
    #[arg(long, env = "LABRUN_COURSE_SECRET_FILE", value_name = "FILE")]
    pub course_secret_file: Option<PathBuf>,
}

/// How scripts that act on the lab run and report.
#[derive(Debug, Clone, Args)]
pub struct ExerciseRunArgs {
    /// Where instances run
    #[arg(long, value_enum, env = "LABRUN_PROVIDER", default_value = "local")]
    pub provider: ProviderKind,

    /// Output format [default: human on a terminal, else plain]
    #[arg(long, value_enum)]
    pub output: Option<OutputMode>,

    /// Show remote commands' output lines as they arrive
    #[arg(short, long)]
    pub verbose: bool,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct ExerciseTestArgs {
    /// The exercise directory (or packed file, with its solution)
    pub exercise: PathBuf,

    /// Leave the lab up afterwards, to look around
    #[arg(long)]
    pub keep: bool,

    /// Write the protocol's results as JUnit XML
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Set a parameter for this test (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    #[command(flatten)]
    pub learner: LearnerArgs,

    #[command(flatten)]
    pub run: ExerciseRunArgs,
}

#[derive(Debug, Args)]
pub struct ExerciseStartArgs {
    /// The exercise directory or packed file
    pub exercise: PathBuf,

    /// Set one of the learner's parameters (repeatable); refused like a
    /// playbook's --set when the exercise does not declare it
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    #[command(flatten)]
    pub learner: LearnerArgs,

    #[command(flatten)]
    pub run: ExerciseRunArgs,
}

#[derive(Debug, Args)]
pub struct ExerciseCheckArgs {
    /// The exercise directory or packed file [default: the one the lab was started from]
    pub exercise: Option<PathBuf>,

    /// Result format: `human` (or `plain`) lines, or `json`, one object on
    /// stdout: {exercise, version, learner, score, max_score, tasks}
    #[arg(long, value_enum, hide_possible_values = true)]
    pub output: Option<OutputMode>,

    /// Also write the results as JUnit XML (one testcase per task)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    #[command(flatten)]
    pub learner: LearnerArgs,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct ExerciseSolveArgs {
    /// The exercise directory or packed file, with its solution [default: the
    /// one the lab was started from]
    pub exercise: Option<PathBuf>,

    /// Solve only this task
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,

    #[command(flatten)]
    pub learner: LearnerArgs,

    #[command(flatten)]
    pub run: ExerciseRunArgs,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The instance's name (`labrun status` lists them)
    pub name: String,

    /// The lab [default: the only lab there is]
    #[arg(long, env = "LABRUN_LAB")]
    pub lab: Option<String>,

    #[command(flatten)]
    pub member: ClassMemberArgs,

    /// A command to run instead of a login shell; one argument is a shell
    /// command line as written, several are quoted word by word
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// A learner's lab in a class, named instead of `--lab`.
#[derive(Debug, Clone, Default, Args)]
pub struct ClassMemberArgs {
    /// The class of the learner whose lab this is (with --learner)
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,

    /// The learner in --class
    #[arg(long, env = "LABRUN_LEARNER", value_name = "ID")]
    pub learner: Option<String>,
}

impl ClassMemberArgs {
    /// The lab to act on: the learner's lab in `--class`, else `lab` (or
    /// the only lab there is).
    pub fn lab(&self, lab: Option<&str>) -> Result<String, crate::error::Error> {
        match (&self.class, lab) {
            (None, lab) => crate::commands::run::pick_lab(lab),
            (Some(class), Some(lab)) => Err(crate::error::Error::Input(format!(
                "--class {class} and --lab {lab} (or LABRUN_LAB): give one (--class C --learner ID names the lab)"
            ))),
            (Some(class), None) => crate::class::member_lab(class, self.learner.as_deref()),
        }
    }
}

/// `labrun sg ...`.
#[derive(Debug, Subcommand)]
pub enum SgCommand {
    /// The lab's security groups and their ingress rules
    List {
        /// The lab [default: the only lab there is]
        #[arg(long, env = "LABRUN_LAB")]
        lab: Option<String>,

        #[command(flatten)]
        member: ClassMemberArgs,

        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Allow ingress into a group (like the console's "Edit inbound rules")
    Allow(SgRuleArgs),
    /// Remove an ingress rule from a group
    Revoke(SgRuleArgs),
}

#[derive(Debug, Args)]
pub struct SgRuleArgs {
    /// The group's name or id
    pub group: String,

    /// The port (or first port of a range)
    #[arg(long)]
    pub port: i64,

    /// The last port of a range [default: --port]
    #[arg(long, value_name = "PORT")]
    pub to_port: Option<i64>,

    /// tcp or udp
    #[arg(long, default_value = "tcp")]
    pub protocol: String,

    /// Where traffic may come from: an instance of the lab (its private IP),
    /// a security group of the lab (its members), or a CIDR such as 10.0.0.5/32
    #[arg(long, value_name = "SOURCE")]
    pub from: String,

    /// The lab [default: the only lab there is]
    #[arg(long, env = "LABRUN_LAB")]
    pub lab: Option<String>,

    #[command(flatten)]
    pub member: ClassMemberArgs,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// `labrun class ...`.
#[derive(Debug, Subcommand)]
pub enum ClassCommand {
    /// Bring up one lab per learner of a roster, each with the learner's own
    /// parameters, key and lab; run it again to continue after a failure,
    /// a crash or Ctrl-C (labs already up are left alone)
    Up(ClassUpArgs),
    /// One line per learner: lab state, instances, age, time to live left
    Status {
        /// The class [default: every class]
        class: Option<String>,
        /// Output format: `json` prints one JSON document [default: text]
        #[arg(long, value_enum)]
        output: Option<OutputMode>,
    },
    /// Run every learner's checks, side by side, and write the gradebook
    /// (gradebook.csv, gradebook.json, gradebook.html) into the class's directory
    Grade(ClassGradeArgs),
    /// Remove every learner's lab (found through the ledgers and the
    /// labels/tags, so a crashed `up` leaves nothing behind)
    Down(ClassDownArgs),
}

impl ClassCommand {
    fn output(&self) -> Option<OutputMode> {
        match self {
            ClassCommand::Up(a) => a.output,
            ClassCommand::Status { output, .. } => *output,
            ClassCommand::Grade(a) => a.output,
            ClassCommand::Down(a) => a.output,
        }
    }
}

#[derive(Debug, Args)]
pub struct ClassUpArgs {
    /// The exercise directory or packed file
    pub exercise: PathBuf,

    /// The roster: CSV with a header line naming an `id` column (required)
    /// and optionally `name` and `email`; one learner per line
    #[arg(long, value_name = "FILE")]
    pub roster: PathBuf,

    /// The class's name, part of every learner's lab name (`<class>.<learner>`)
    /// [default: the exercise's id]
    #[arg(long, value_name = "CLASS")]
    pub name: Option<String>,

    /// How many labs to set up at once [default: 4 locally, 10 on AWS]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: Option<u32>,

    /// How long the class lives from its first `up` (90m, 4h, 2d): `class
    /// down --expired` removes it after that [default: no limit]
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,

    /// A file holding the course secret (LABRUN_COURSE_SECRET, the secret
    /// itself, takes precedence)
    #[arg(long, env = "LABRUN_COURSE_SECRET_FILE", value_name = "FILE")]
    pub course_secret_file: Option<PathBuf>,

    /// Where instances run
    #[arg(long, value_enum, env = "LABRUN_PROVIDER", default_value = "local")]
    pub provider: ProviderKind,

    /// Where your SSH traffic comes from (CIDR), for rules that admit only you
    /// [default: detected]
    #[arg(long, env = "LABRUN_OPERATOR_CIDR", value_name = "CIDR")]
    pub operator_cidr: Option<String>,

    /// Output format: one line per learner (human, plain) or NDJSON events
    #[arg(long, value_enum)]
    pub output: Option<OutputMode>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

impl ClassUpArgs {
    pub fn provider_options(&self) -> crate::providers::ProviderOptions {
        crate::providers::ProviderOptions {
            operator_cidr: given(&self.operator_cidr),
            ..self.aws.options()
        }
    }
}

#[derive(Debug, Args)]
pub struct ClassGradeArgs {
    /// The class [default: the only class there is]
    pub class: Option<String>,

    /// How many learners to check at once
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,

    /// A file holding the course secret: with it, every lab's parameters are
    /// checked against what the secret gives its learner
    #[arg(long, env = "LABRUN_COURSE_SECRET_FILE", value_name = "FILE")]
    pub course_secret_file: Option<PathBuf>,

    /// Output format: the summary table (human, plain) or NDJSON events
    /// ending with the gradebook
    #[arg(long, value_enum)]
    pub output: Option<OutputMode>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct ClassDownArgs {
    /// The class [default: the only class there is; with --expired, every expired class]
    pub class: Option<String>,

    /// Only classes past their time to live (`class up --ttl`)
    #[arg(long)]
    pub expired: bool,

    /// How many labs to remove at once
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,

    /// Output format: one line per learner (human, plain) or NDJSON events
    #[arg(long, value_enum)]
    pub output: Option<OutputMode>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

//! `labrun class ...`, and `--class C --learner ID` for commands that act
//! on one learner's lab in a class.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{AwsArgs, given};
use crate::providers::ProviderKind;
use crate::report::OutputMode;

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
    pub(super) fn output(&self) -> Option<OutputMode> {
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

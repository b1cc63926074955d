//! `labrun exercise ...`: the instructor's and the learner's commands.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::AwsArgs;
use crate::providers::ProviderKind;
use crate::report::OutputMode;

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
    pub(super) fn output(&self) -> (OutputMode, bool) {
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

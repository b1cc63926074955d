//! Errors, one enum per boundary; [`Error`] is what stops a command, and
//! [`render`] is the one place that shows it and picks the exit code.

use std::path::PathBuf;

use crate::providers::{ProviderError, ProviderKind};
use crate::report::Reporter;

/// How `labrun` exits: the contract with shells and CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything succeeded.
    Ok,
    /// The playbook (or the command's work) ran and failed.
    Failed,
    /// Usage, syntax or input error: nothing was run.
    Usage,
    /// Interrupted with Ctrl-C.
    Interrupted,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Interrupted => 130,
        }
    }
}

/// Errors of the on-disk lab state.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// There is nowhere private to keep lab state.
    #[error("{0}")]
    NoStateDir(String),
    #[error("{0} is not valid JSON ({1}); fix or remove it")]
    Corrupt(PathBuf, String),
    #[error(
        "lab '{lab}' is in use by another labrun ({holder}); wait for it to finish or stop it, \
         or pick another lab with --lab NAME"
    )]
    Locked { lab: String, holder: String },
    #[error(
        "invalid lab name '{0}': use 1-48 letters, digits, '_', '-' or '.', starting with a letter or digit"
    )]
    BadLabName(String),
    #[error(
        "lab '{lab}' has resources on provider '{recorded}', not '{requested}'; \
         run `labrun destroy --lab {lab}` first or use --provider {recorded}"
    )]
    ProviderMismatch {
        lab: String,
        recorded: ProviderKind,
        requested: ProviderKind,
    },
}

/// Why a command stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line or input (unknown `--set` key, missing file).
    #[error("{0}")]
    Input(String),
    /// The playbook (or a module it imports) does not compile; the text is a
    /// full diagnostic with file, line, column and the source line.
    #[error("{0}")]
    Syntax(String),
    /// The playbook ran and failed; the text is a full diagnostic.
    #[error("{0}")]
    Failed(String),
    /// Stopped by Ctrl-C.
    #[error("{0}")]
    Interrupted(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The provider failed while removing a lab: a failure (exit 1) even
    /// where the provider blames its input, as `destroy` was asked only to
    /// remove.
    #[error("destroying lab '{lab}' on {provider}: {source}")]
    Destroy {
        lab: String,
        provider: ProviderKind,
        #[source]
        source: ProviderError,
    },
    /// What labrun was doing when `source` happened.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
    /// Independent failures of one command (`destroy --all`), each shown.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Several(Vec<Error>),
}

impl Error {
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            Error::Input(_) | Error::Syntax(_) => Exit::Usage,
            Error::Failed(_) | Error::Destroy { .. } => Exit::Failed,
            Error::Interrupted(_) => Exit::Interrupted,
            Error::Ledger(LedgerError::Locked { .. }) => Exit::Failed,
            Error::Ledger(_) => Exit::Usage,
            Error::Provider(e) if e.is_input() => Exit::Usage,
            Error::Provider(_) => Exit::Failed,
            Error::Context { source, .. } => source.exit(),
            Error::Several(all) => all.iter().map(Error::exit).max().unwrap_or(Exit::Failed),
        }
    }

    /// What the user reads: every message starts with `error:` (diagnostics
    /// already do; short errors get it here).
    pub fn user_text(&self) -> String {
        if let Error::Several(all) = self {
            return all
                .iter()
                .map(Error::user_text)
                .collect::<Vec<_>>()
                .join("\n");
        }
        let text = self.to_string();
        if text.starts_with("error:") {
            text
        } else {
            format!("error: {text}")
        }
    }

    /// The first line, without the `error:` prefix: for summaries.
    pub fn headline(&self) -> String {
        self.to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string()
    }
}

/// Shows `err` (once, on stderr, redacted) and returns the exit code it
/// maps to: the one place errors are printed.
pub fn render(reporter: &Reporter, err: &Error) -> Exit {
    reporter.error(&err.user_text());
    err.exit()
}

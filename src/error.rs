//! Error types, one per boundary, and the exit codes they map to.

use std::path::PathBuf;

/// Exit codes: the contract with shells and CI.
pub mod exit {
    /// Everything succeeded.
    pub const OK: i32 = 0;
    /// The playbook ran and failed.
    pub const FAILED: i32 = 1;
    /// Usage, syntax or input error: nothing was run.
    pub const USAGE: i32 = 2;
    /// Interrupted with Ctrl-C.
    pub const INTERRUPTED: i32 = 130;
}

/// Errors of the on-disk lab state.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
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
        recorded: crate::providers::ProviderKind,
        requested: crate::providers::ProviderKind,
    },
}

/// Why `labrun` stopped, as the top level sees it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
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
}

impl RunError {
    /// What the user reads: every message starts with `error:` (diagnostics
    /// already do; short input errors get it here). Empty when already shown.
    pub fn user_text(&self) -> String {
        let text = self.to_string();
        if text.is_empty() || text.starts_with("error:") {
            text
        } else {
            format!("error: {text}")
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Input(_) | RunError::Syntax(_) => exit::USAGE,
            RunError::Failed(_) => exit::FAILED,
            RunError::Interrupted(_) => exit::INTERRUPTED,
            RunError::Ledger(LedgerError::Locked { .. }) => exit::FAILED,
            RunError::Ledger(_) => exit::USAGE,
        }
    }
}

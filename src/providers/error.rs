//! What went wrong at a provider, in the lab's terms, with the cause kept
//! as the error's `source()` where there is one.

use std::path::PathBuf;

/// What went wrong at a provider, with what a user needs to act. The
/// message of each variant is complete for a user; `source()` gives the
/// underlying error to code that wants it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Bad input from the playbook (unknown image or type, malformed CIDR).
    #[error("{0}")]
    Invalid(String),
    /// The provider cannot be reached or used at all; the text says how to fix it.
    #[error("{0}")]
    Unavailable(String),
    /// An API call failed: `action` is what labrun was doing.
    #[error("{action}: {code}: {message}")]
    Api {
        action: String,
        code: String,
        message: String,
    },
    /// An SDK call failed without an answer from the service (a malformed
    /// response, say); the SDK's error is the source.
    #[error("{action}: {message}")]
    Sdk {
        action: String,
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },
    #[error(transparent)]
    Ledger(#[from] crate::error::LedgerError),
    /// A file or directory on this machine (build trees, locks).
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A program labrun runs on this machine (debootstrap, tar, nft) could
    /// not be started or waited for.
    #[error("{what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Such a program ran and failed: its exit status and the end of its
    /// output.
    #[error("{what} failed ({status}){}", if output.is_empty() { String::new() } else { format!(":\n{output}") })]
    Command {
        what: String,
        status: String,
        output: String,
    },
    /// The provider is not in a state labrun can work with (an instance
    /// vanished while launching, a network is full).
    #[error("{0}")]
    State(String),
    /// Ctrl-C stopped the call.
    #[error("interrupted")]
    Interrupted,
    /// What labrun was doing when `source` happened.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<ProviderError>,
    },
}

pub type ProviderResult<T> = Result<T, ProviderError>;

impl ProviderError {
    /// Wraps this error in what labrun was doing.
    pub fn context(self, context: impl Into<String>) -> ProviderError {
        ProviderError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// Whether the innermost error is the playbook's input (exit code 2).
    pub fn is_input(&self) -> bool {
        match self {
            ProviderError::Invalid(_) => true,
            ProviderError::Context { source, .. } => source.is_input(),
            _ => false,
        }
    }
}

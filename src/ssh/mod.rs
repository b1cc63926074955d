//! Remote execution over SSH: the real work behind the `ssh::` bindings.
//!
//! One [`Session`] per host (see [`Pool`]), shared by every operation and by
//! `parallel` closures; each command is a new channel on that connection, so
//! a command costs two round trips and no process start on this side.
//!
//! Built on russh directly (the crate async-ssh2-tokio wraps): labrun pins
//! host keys on first sight and must see the server's key to name both
//! fingerprints when it changes, which async-ssh2-tokio's `ServerCheckMethod`
//! cannot do (it only answers yes or no); and output is streamed line by
//! line to the running step while stdin is written concurrently.
//!
//! Secrets never go on a remote command line: stdin goes through the
//! channel, and `env` values are sent inside the stdin stream and read by a
//! small shell prelude (see [`exec`]) before the command runs.

pub mod capture;
pub mod exec;
pub mod files;
pub mod forward;
pub mod kept;
pub mod pool;
pub mod session;
pub mod system;

use std::path::PathBuf;
use std::time::Duration;

pub use exec::{Output, RunOptions};
pub use pool::Pool;
pub use session::{ConnectOptions, HostKeys, Session};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    /// The ledger key the host key is pinned under: the instance id, or
    /// `host:port` for hosts given by address.
    pub pin_id: String,
    /// A short name for messages (the instance name, or `host:port`).
    pub label: String,
}

impl Target {
    /// `user@host:port`, for messages and pool keys.
    pub fn address(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// `name (host:port)`, or `host:port` when there is no other name.
    pub fn describe(&self) -> String {
        let at = format!("{}:{}", self.host, self.port);
        if self.label.is_empty() || self.label == at {
            at
        } else {
            format!("{} ({at})", self.label)
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("address", &self.address())
            .field("pin_id", &self.pin_id)
            .finish()
    }
}

/// How to log in.
#[derive(Clone)]
pub enum Auth {
    /// An OpenSSH private key file without passphrase (the lab's key).
    KeyFile(PathBuf),
    Password(String),
}

/// What went wrong, with what a user needs to act.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("sshd at {target} did not answer within {}s (last: {last})", waited.as_secs())]
    NotReady {
        target: String,
        waited: Duration,
        last: String,
    },
    #[error(
        "host key of {host} has changed: the lab pinned {pinned}, the host now presents {seen}. \
         If the host was rebuilt on purpose, remove \"{pin_id}\" from host_keys in {ledger}; \
         otherwise someone may be intercepting the connection"
    )]
    HostKeyChanged {
        /// `name (host:port)`, or `host:port`.
        host: String,
        pin_id: String,
        pinned: String,
        seen: String,
        ledger: String,
    },
    #[error("{target}: the server refused {method} authentication as '{user}'")]
    AuthFailed {
        target: String,
        user: String,
        method: &'static str,
    },
    #[error("cannot load the private key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("`{command}` failed on {target} with {status}{}", tail_text(tail))]
    CommandFailed {
        target: String,
        command: String,
        /// `exit code N` or `signal TERM`.
        status: String,
        tail: String,
    },
    #[error("`{command}` on {target} timed out after {}s{}", after.as_secs_f64(),
        if *default { " (the default limit for a command; give `timeout` in seconds to allow longer)" } else { "" })]
    Timeout {
        target: String,
        command: String,
        after: Duration,
        /// The limit was the default, not one the caller gave.
        default: bool,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("{target}: {message}")]
    Connection { target: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn tail_text(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!(":\n  {}", tail.trim_end().replace('\n', "\n  "))
    }
}

pub type SshResult<T> = Result<T, SshError>;

/// Quotes `s` as one shell word (POSIX `sh`).
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        assert_eq!(quote("abc/d-e.f"), "abc/d-e.f");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        for s in ["a b", "it's", "$(x) `y` \\ \"z\"\nline", "*", ""] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn command_failure_names_command_status_and_tail() {
        let e = SshError::CommandFailed {
            target: "ubuntu@h:22".into(),
            command: "false".into(),
            status: "exit code 1".into(),
            tail: "line one\nline two\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "`false` failed on ubuntu@h:22 with exit code 1:\n  line one\n  line two"
        );
    }
}

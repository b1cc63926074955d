//! What can go wrong talking to a MySQL or MariaDB server, with what a user
//! needs to act: the address, and the server's own error code and state.

/// Errors of the `mysql` boundary.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    /// The server refused or failed a statement (or the login): its error
    /// code (e.g. 1045 access denied, 1130 host not allowed), SQLSTATE and
    /// message, as the `mysql` client prints them.
    #[error("ERROR {code} ({state}): {message}")]
    Server {
        code: u16,
        state: String,
        message: String,
    },
    /// No connection could be made to `addr`.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The server did not answer within the time allowed.
    #[error("{addr} did not answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    /// A statement outlived the connection's `query_timeout`; `aftermath`
    /// says whether it was stopped on the server and the connection kept.
    #[error("the statement did not finish within {}s on {addr} (mysql::connect's `query_timeout`){aftermath}", after.as_secs_f64())]
    QueryTimeout {
        addr: String,
        after: std::time::Duration,
        aftermath: String,
    },
    /// Ctrl-C while connecting or while a statement ran.
    #[error("interrupted{aftermath}")]
    Interrupted { aftermath: String },
    /// The connection was closed by `close()` or broke earlier.
    #[error("the connection to {addr} is closed")]
    Closed { addr: String },
    /// A query parameter of a type MySQL cannot take.
    #[error("parameter {which}: {reason}")]
    Param { which: String, reason: String },
    /// Anything else the driver reports (protocol, I/O after connecting).
    #[error("{0}")]
    Driver(String),
}

impl MysqlError {
    /// The server's error code, if the server produced this error.
    pub fn code(&self) -> Option<u16> {
        match self {
            MysqlError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The SQLSTATE, if the server produced this error.
    pub fn state(&self) -> Option<&str> {
        match self {
            MysqlError::Server { state, .. } => Some(state),
            _ => None,
        }
    }

    /// Maps a driver error met while talking to `addr`.
    pub(crate) fn from_driver(e: mysql_async::Error, addr: &str, connecting: bool) -> Self {
        let reason = match &e {
            // The driver wraps I/O errors twice ("Input/output error: ..." x2).
            mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io.to_string(),
            other => other.to_string(),
        };
        match e {
            mysql_async::Error::Server(s) => MysqlError::Server {
                code: s.code,
                state: s.state,
                message: s.message,
            },
            // MySQL 8 and 9 answer a user they do not know from this host
            // with a decoy plugin, sometimes sha256_password, which the
            // driver cannot speak, instead of ERROR 1045.
            mysql_async::Error::Driver(mysql_async::DriverError::UnknownAuthPlugin { name })
                if connecting =>
            {
                MysqlError::Connect {
                    addr: addr.to_string(),
                    reason: format!(
                        "the server asked for authentication plugin {name}, which labrun's \
                         client does not speak; MySQL asks this of an account it does not \
                         have for this user and host (access denied) or of one using that \
                         plugin"
                    ),
                }
            }
            _ if connecting => MysqlError::Connect {
                addr: addr.to_string(),
                reason,
            },
            _ => MysqlError::Driver(reason),
        }
    }
}

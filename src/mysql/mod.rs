//! A MySQL/MariaDB client for playbooks, over mysql_async (no TLS): typed
//! rows, affected-row counts, the server's flavor, and errors that carry the
//! server's error code. The `mysql::` bindings are a thin layer over this.

mod conn;
mod error;
mod password;
mod value;

pub use conn::{ConnectOptions, Db, Flavor, Route, ServerInfo, SqlParams, SqlRow};
pub use error::MysqlError;
pub use password::native_password_hash;
pub use value::{SqlValue, from_column};

//! One client connection to a MySQL or MariaDB server: connect, query,
//! execute, identify the server, close.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Params, Row};

use super::error::MysqlError;
use super::value::{SqlValue, from_column};

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: Option<String>,
    /// How long the connection (TCP, handshake and login) may take.
    pub connect_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> Self {
        ConnectOptions {
            host: host.into(),
            port: 3306,
            user: user.into(),
            password: None,
            database: None,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// A tunnel the connection takes instead of going straight to the server
/// (an SSH local forward): the server then sees the tunnel's far end as the
/// client.
pub struct Route {
    /// The port on 127.0.0.1 whose connections reach the server.
    pub local_port: u16,
    /// What the tunnel goes through, for messages (`via mysql-client`).
    pub via: String,
    /// Kept alive as long as the connection (e.g. the SSH session).
    pub keep: Box<dyn Any + Send + Sync>,
}

/// Which server family answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Mysql,
    Mariadb,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Mysql => "mysql",
            Flavor::Mariadb => "mariadb",
        }
    }
}

/// What `SELECT VERSION()` says about the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// `major.minor.patch`, e.g. `10.11.19` or `8.0.36`.
    pub version: String,
    /// The full version string, e.g. `10.11.19-MariaDB-0+deb12u1`.
    pub full: String,
    pub flavor: Flavor,
}

impl ServerInfo {
    /// Reads a `VERSION()` string.
    pub fn parse(full: &str) -> ServerInfo {
        // Old MariaDB releases prefix the handshake version with "5.5.5-".
        let rest = full.strip_prefix("5.5.5-").unwrap_or(full);
        let version: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let flavor = if full.to_ascii_lowercase().contains("mariadb") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        };
        ServerInfo {
            version: version.trim_end_matches('.').to_string(),
            full: full.to_string(),
            flavor,
        }
    }
}

/// Parameters of a statement: none, `?` placeholders in order, or
/// `:name` placeholders by name.
#[derive(Clone, Debug, Default)]
pub enum SqlParams {
    #[default]
    None,
    Positional(Vec<SqlValue>),
    Named(Vec<(String, SqlValue)>),
}

impl SqlParams {
    fn is_none(&self) -> bool {
        matches!(self, SqlParams::None)
    }

    fn into_driver(self) -> Params {
        match self {
            SqlParams::None => Params::Empty,
            SqlParams::Positional(v) => {
                Params::Positional(v.into_iter().map(SqlValue::into_driver).collect())
            }
            SqlParams::Named(v) => Params::Named(
                v.into_iter()
                    .map(|(k, v)| (k.into_bytes(), v.into_driver()))
                    .collect::<HashMap<_, _>>(),
            ),
        }
    }
}

/// A result row: column names and values, in the server's order.
pub type SqlRow = Vec<(String, SqlValue)>;

/// A connection. Clones share it; `close` closes it for all of them.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
    /// `user@host:port`, plus ` via X` when tunnelled.
    pub label: String,
    pub server: ServerInfo,
}

struct Inner {
    conn: tokio::sync::Mutex<Option<Conn>>,
    addr: String,
    handle: tokio::runtime::Handle,
    /// Whatever must live as long as the connection (e.g. an SSH tunnel).
    _keep: Option<Box<dyn Any + Send + Sync>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.get_mut().take() {
            self.handle.spawn(async move {
                let _ = conn.disconnect().await;
            });
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Db({} {} {})",
            self.label,
            self.server.flavor.as_str(),
            self.server.version
        )
    }
}

impl Db {
    /// Connects over TCP (never a local socket, even for `localhost`:
    /// the address given is the server meant), straight or through `route`.
    pub async fn connect(opts: &ConnectOptions, route: Option<Route>) -> Result<Db, MysqlError> {
        let mut addr = format!("{}:{}", opts.host, opts.port);
        let (host, port, keep) = match route {
            Some(r) => {
                addr = format!("{addr} via {}", r.via);
                ("127.0.0.1".to_string(), r.local_port, Some(r.keep))
            }
            None => (opts.host.clone(), opts.port, None),
        };
        let label = format!("{}@{addr}", opts.user);
        let builder = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port)
            .user(Some(opts.user.clone()))
            .pass(opts.password.clone())
            .db_name(opts.database.clone())
            .prefer_socket(false)
            .socket(None::<String>);
        let secs = opts.connect_timeout.as_secs();
        let mut conn = tokio::time::timeout(opts.connect_timeout, Conn::new(builder))
            .await
            .map_err(|_| MysqlError::Timeout {
                addr: addr.clone(),
                secs,
            })?
            .map_err(|e| MysqlError::from_driver(e, &addr, true))?;
        let full: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| MysqlError::from_driver(e, &addr, false))?;
        let server = ServerInfo::parse(&full.unwrap_or_default());
        Ok(Db {
            inner: Arc::new(Inner {
                conn: tokio::sync::Mutex::new(Some(conn)),
                addr,
                handle: tokio::runtime::Handle::current(),
                _keep: keep,
            }),
            label,
            server,
        })
    }

    fn closed(&self) -> MysqlError {
        MysqlError::Closed {
            addr: self.inner.addr.clone(),
        }
    }

    fn driver(&self, e: mysql_async::Error) -> MysqlError {
        MysqlError::from_driver(e, &self.inner.addr, false)
    }

    /// Runs `sql` and returns the rows of every result set, in order.
    /// Without parameters the text protocol is used (any statement works);
    /// with parameters, a prepared statement.
    pub async fn query(&self, sql: &str, params: SqlParams) -> Result<Vec<SqlRow>, MysqlError> {
        let mut guard = self.inner.conn.lock().await;
        let conn = guard.as_mut().ok_or_else(|| self.closed())?;
        let mut rows = Vec::new();
        if params.is_none() {
            let mut result = conn.query_iter(sql).await.map_err(|e| self.driver(e))?;
            while !result.is_empty() {
                let batch: Vec<Row> = result.collect().await.map_err(|e| self.driver(e))?;
                rows.extend(batch.into_iter().map(convert_row));
            }
        } else {
            let mut result = conn
                .exec_iter(sql, params.into_driver())
                .await
                .map_err(|e| self.driver(e))?;
            while !result.is_empty() {
                let batch: Vec<Row> = result.collect().await.map_err(|e| self.driver(e))?;
                rows.extend(batch.into_iter().map(convert_row));
            }
        }
        Ok(rows)
    }

    /// Runs a statement and returns the rows it affected (for several
    /// statements in one string: the last one's).
    pub async fn exec(&self, sql: &str, params: SqlParams) -> Result<u64, MysqlError> {
        let mut guard = self.inner.conn.lock().await;
        let conn = guard.as_mut().ok_or_else(|| self.closed())?;
        if params.is_none() {
            conn.query_drop(sql).await.map_err(|e| self.driver(e))?;
        } else {
            conn.exec_drop(sql, params.into_driver())
                .await
                .map_err(|e| self.driver(e))?;
        }
        Ok(conn.affected_rows())
    }

    /// Closes the connection (politely: the server logs no aborted
    /// connection). Closing twice is harmless.
    pub async fn close(&self) -> Result<(), MysqlError> {
        let conn = self.inner.conn.lock().await.take();
        if let Some(conn) = conn {
            conn.disconnect().await.map_err(|e| self.driver(e))?;
        }
        Ok(())
    }

    /// Whether `close` has been called.
    pub async fn is_closed(&self) -> bool {
        self.inner.conn.lock().await.is_none()
    }
}

fn convert_row(row: Row) -> SqlRow {
    let columns = row.columns();
    row.unwrap_raw()
        .into_iter()
        .zip(columns.iter())
        .map(|(v, c)| {
            let value = from_column(v.unwrap_or(mysql_async::Value::NULL), c);
            (c.name_str().into_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_and_version_from_version_strings() {
        let m = ServerInfo::parse("10.11.19-MariaDB-0+deb12u1");
        assert_eq!(
            (m.flavor, m.version.as_str()),
            (Flavor::Mariadb, "10.11.19")
        );
        let o = ServerInfo::parse("5.5.5-10.3.39-MariaDB");
        assert_eq!((o.flavor, o.version.as_str()), (Flavor::Mariadb, "10.3.39"));
        let y = ServerInfo::parse("8.0.36-0ubuntu0.22.04.1");
        assert_eq!((y.flavor, y.version.as_str()), (Flavor::Mysql, "8.0.36"));
        let n = ServerInfo::parse("8.4.3");
        assert_eq!((n.flavor, n.version.as_str()), (Flavor::Mysql, "8.4.3"));
    }
}

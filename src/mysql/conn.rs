//! One client connection to a MySQL or MariaDB server: connect, query,
//! execute, identify the server, close.
//!
//! Every wait is bounded and stops on Ctrl-C: connecting by
//! `connect_timeout`, each statement by `query_timeout`. A statement that
//! is given up on is stopped on the server too (`KILL QUERY` from a second
//! connection as the same user, which needs no privilege), so it does not
//! go on holding or waiting for locks; the connection is kept when the
//! server confirms the stop, else closed.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Row};

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
    /// How long one statement (`query`, `exec`) may take.
    pub query_timeout: Duration,
    /// Set by Ctrl-C: stop waiting (and stop the statement on the server).
    pub cancel: Option<Arc<AtomicBool>>,
}

/// How long a statement may run unless the playbook says otherwise: far
/// beyond what a lab's statements take (a bulk load on a small instance
/// included), and what a statement stuck behind another session's lock
/// (a metadata lock waits a year by default) costs before it is an error.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(600);
/// Connecting: TCP, handshake and login.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Opening the second connection and sending `KILL QUERY` on it.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed statement has to report its end on its connection.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// A polite goodbye (`COM_QUIT`) to a server that may not answer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl ConnectOptions {
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> Self {
        ConnectOptions {
            host: host.into(),
            port: 3306,
            user: user.into(),
            password: None,
            database: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            cancel: None,
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
    /// What the connection was made with: a second connection stops a
    /// statement with these.
    opts: Opts,
    query_timeout: Duration,
    cancel: Option<Arc<AtomicBool>>,
    handle: tokio::runtime::Handle,
    /// Whatever must live as long as the connection (e.g. an SSH tunnel).
    _keep: Option<Box<dyn Any + Send + Sync>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.get_mut().take() {
            self.handle.spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.disconnect()).await;
            });
        }
    }
}

/// Why labrun stopped waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Timeout,
    Interrupted,
}

/// Polls `work` until it is done, `limit` has passed, or `cancel` is set.
/// `work` is borrowed, not consumed: after a stop the caller can still
/// wait for it to end.
async fn watched<F: Future>(
    mut work: Pin<&mut F>,
    limit: Duration,
    cancel: Option<&AtomicBool>,
) -> Result<F::Output, Stop> {
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = work.as_mut() => return Ok(out),
            _ = &mut deadline => return Err(Stop::Timeout),
            _ = tick.tick() => {
                if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                    return Err(Stop::Interrupted);
                }
            }
        }
    }
}

/// A statement to run, and what it gives back.
enum Work {
    Query(String, SqlParams),
    Exec(String, SqlParams),
}

enum Done {
    Rows(Vec<SqlRow>),
    Affected(u64),
}

async fn perform(conn: &mut Conn, work: Work) -> Result<Done, mysql_async::Error> {
    match work {
        Work::Query(sql, params) => {
            let mut rows = Vec::new();
            if params.is_none() {
                let mut result = conn.query_iter(sql).await?;
                while !result.is_empty() {
                    let batch: Vec<Row> = result.collect().await?;
                    rows.extend(batch.into_iter().map(convert_row));
                }
            } else {
                let mut result = conn.exec_iter(sql, params.into_driver()).await?;
                while !result.is_empty() {
                    let batch: Vec<Row> = result.collect().await?;
                    rows.extend(batch.into_iter().map(convert_row));
                }
            }
            Ok(Done::Rows(rows))
        }
        Work::Exec(sql, params) => {
            if params.is_none() {
                conn.query_drop(sql).await?;
            } else {
                conn.exec_drop(sql, params.into_driver()).await?;
            }
            Ok(Done::Affected(conn.affected_rows()))
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
        let driver_opts: Opts = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port)
            .user(Some(opts.user.clone()))
            .pass(opts.password.clone())
            .db_name(opts.database.clone())
            .prefer_socket(false)
            .socket(None::<String>)
            .into();
        let connected = {
            let connecting = async {
                let mut conn = Conn::new(driver_opts.clone())
                    .await
                    .map_err(|e| MysqlError::from_driver(e, &addr, true))?;
                let full: Option<String> = conn
                    .query_first("SELECT VERSION()")
                    .await
                    .map_err(|e| MysqlError::from_driver(e, &addr, false))?;
                Ok::<_, MysqlError>((conn, full))
            };
            tokio::pin!(connecting);
            watched(
                connecting.as_mut(),
                opts.connect_timeout,
                opts.cancel.as_deref(),
            )
            .await
        };
        let (conn, full) = match connected {
            Ok(r) => r?,
            Err(Stop::Timeout) => {
                return Err(MysqlError::Timeout {
                    addr: addr.clone(),
                    secs: opts.connect_timeout.as_secs(),
                });
            }
            Err(Stop::Interrupted) => {
                return Err(MysqlError::Interrupted {
                    aftermath: String::new(),
                });
            }
        };
        let server = ServerInfo::parse(&full.unwrap_or_default());
        Ok(Db {
            inner: Arc::new(Inner {
                conn: tokio::sync::Mutex::new(Some(conn)),
                addr,
                opts: driver_opts,
                query_timeout: opts.query_timeout,
                cancel: opts.cancel.clone(),
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
        match self.run(Work::Query(sql.to_string(), params)).await? {
            Done::Rows(rows) => Ok(rows),
            Done::Affected(_) => unreachable!("a query gives rows"),
        }
    }

    /// Runs a statement and returns the rows it affected (for several
    /// statements in one string: the last one's).
    pub async fn exec(&self, sql: &str, params: SqlParams) -> Result<u64, MysqlError> {
        match self.run(Work::Exec(sql.to_string(), params)).await? {
            Done::Affected(n) => Ok(n),
            Done::Rows(_) => unreachable!("a statement gives a count"),
        }
    }

    /// Runs `work` within the query timeout; on a timeout or Ctrl-C, stops
    /// it on the server and keeps the connection only if it is known to be
    /// in step again.
    async fn run(&self, work: Work) -> Result<Done, MysqlError> {
        let mut guard = self.inner.conn.lock().await;
        let conn = guard.as_mut().ok_or_else(|| self.closed())?;
        let id = conn.id();
        let (result, broken) = {
            let running = perform(conn, work);
            tokio::pin!(running);
            let cancel = self.inner.cancel.as_deref();
            match watched(running.as_mut(), self.inner.query_timeout, cancel).await {
                Ok(r) => (r.map_err(|e| self.driver(e)), false),
                Err(stop) => {
                    let killed = self.kill_query(id).await;
                    let ended = match killed {
                        Ok(()) => tokio::time::timeout(KILL_GRACE, running.as_mut())
                            .await
                            .ok(),
                        Err(_) => None,
                    };
                    // A server error (1317, query interrupted) leaves the
                    // connection in step; no answer or a broken stream not.
                    let in_step = matches!(
                        ended,
                        Some(Ok(_)) | Some(Err(mysql_async::Error::Server(_)))
                    );
                    match (stop, ended) {
                        // It finished just as it was being stopped.
                        (Stop::Timeout, Some(Ok(done))) => (Ok(done), false),
                        _ => (Err(self.stopped(stop, killed, in_step)), !in_step),
                    }
                }
            }
        };
        if broken {
            // Dropped, not closed politely: it is mid-statement.
            *guard = None;
        }
        result
    }

    /// Stops statement `id` from a second connection.
    async fn kill_query(&self, id: u32) -> Result<(), String> {
        let kill = async {
            let mut side = Conn::new(self.inner.opts.clone()).await?;
            side.query_drop(format!("KILL QUERY {id}")).await?;
            side.disconnect().await
        };
        match tokio::time::timeout(KILL_TIMEOUT, kill).await {
            Err(_) => Err(format!("no answer within {}s", KILL_TIMEOUT.as_secs())),
            Ok(Err(e)) => Err(MysqlError::from_driver(e, &self.inner.addr, false).to_string()),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The error for a statement labrun stopped waiting for.
    fn stopped(&self, stop: Stop, killed: Result<(), String>, in_step: bool) -> MysqlError {
        let aftermath = match (&killed, in_step) {
            (Ok(()), true) => "; it was stopped on the server (KILL QUERY)".to_string(),
            (Ok(()), false) => "; it was stopped on the server (KILL QUERY), and this connection \
                 is closed (it did not answer after the stop)"
                .to_string(),
            (Err(why), _) => format!(
                "; labrun could not stop it on the server ({why}), and closed this connection"
            ),
        };
        match stop {
            Stop::Timeout => MysqlError::QueryTimeout {
                addr: self.inner.addr.clone(),
                after: self.inner.query_timeout,
                aftermath,
            },
            Stop::Interrupted => MysqlError::Interrupted { aftermath },
        }
    }

    /// Closes the connection (politely: the server logs no aborted
    /// connection). Closing twice is harmless.
    pub async fn close(&self) -> Result<(), MysqlError> {
        let conn = self.inner.conn.lock().await.take();
        if let Some(conn) = conn {
            match tokio::time::timeout(CLOSE_TIMEOUT, conn.disconnect()).await {
                // The server did not say goodbye: the connection is gone
                // from this side all the same.
                Err(_) => {}
                Ok(r) => r.map_err(|e| self.driver(e))?,
            }
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

    #[tokio::test]
    async fn waits_end_at_the_limit_or_on_ctrl_c() {
        let never = std::future::pending::<()>();
        tokio::pin!(never);
        let started = std::time::Instant::now();
        let r = watched(never.as_mut(), Duration::from_millis(50), None).await;
        assert_eq!(r, Err(Stop::Timeout));
        assert!(started.elapsed() < Duration::from_secs(5));
        let cancel = AtomicBool::new(true);
        let r = watched(never.as_mut(), Duration::from_secs(600), Some(&cancel)).await;
        assert_eq!(r, Err(Stop::Interrupted));
        let ready = async { 7 };
        tokio::pin!(ready);
        assert_eq!(watched(ready, Duration::from_secs(1), None).await, Ok(7));
        let o = ConnectOptions::new("h", "u");
        assert_eq!(
            (o.connect_timeout, o.query_timeout),
            (Duration::from_secs(30), Duration::from_secs(600))
        );
    }

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

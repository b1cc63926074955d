//! Connecting: wait for sshd, check the host key against the lab's pin, log in.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{Config, DisconnectReason, Handle, Handler};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::{Auth, SshError, SshResult, Target};

/// Where pinned host keys live (the lab's ledger, in a run).
pub trait HostKeys: Send + Sync {
    /// The pinned key of `id`, as an OpenSSH public key line.
    fn pinned(&self, id: &str) -> Option<String>;
    /// Pins `key_line` for `id`.
    fn pin(&self, id: &str, key_line: &str) -> Result<(), String>;
    /// Where the pins are kept, for messages.
    fn location(&self) -> String;
}

impl HostKeys for crate::ledger::Ledger {
    fn pinned(&self, id: &str) -> Option<String> {
        self.snapshot().host_keys.get(id).cloned()
    }

    fn pin(&self, id: &str, key_line: &str) -> Result<(), String> {
        self.update(|d| {
            d.host_keys.insert(id.to_string(), key_line.to_string());
        })
        .map_err(|e| e.to_string())
    }

    fn location(&self) -> String {
        self.dir().join("ledger.json").display().to_string()
    }
}

/// Pins kept in memory only (tools and tests that have no lab).
#[derive(Default)]
pub struct MemoryHostKeys(Mutex<BTreeMap<String, String>>);

impl HostKeys for MemoryHostKeys {
    fn pinned(&self, id: &str) -> Option<String> {
        self.0.lock().expect("pins lock").get(id).cloned()
    }

    fn pin(&self, id: &str, key_line: &str) -> Result<(), String> {
        self.0
            .lock()
            .expect("pins lock")
            .insert(id.into(), key_line.into());
        Ok(())
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

/// How long to wait for sshd, and whom to tell while waiting.
pub struct ConnectOptions<'a> {
    /// Total time to wait for sshd to answer.
    pub timeout: Duration,
    /// Checked between attempts (Ctrl-C).
    pub cancel: Option<&'a AtomicBool>,
    /// Called (about once a second) with a line saying what we wait for,
    /// and how long we have waited.
    pub on_wait: &'a (dyn Fn(&str, Duration) + Send + Sync),
}

/// Default wait for sshd: long enough for a cloud instance to boot.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(180);
/// One TCP connect attempt.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// Banner and key exchange of one attempt (a firewalled port proxy accepts
/// the TCP connection and then says nothing).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// A keepalive goes out after this long without a word from the server.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Keepalives unanswered before the connection counts as dead: a stopped or
/// frozen sshd, or a host gone from the network, ends every command on it
/// with an error after about `(KEEPALIVE_MAX + 1) * KEEPALIVE_INTERVAL`
/// (40 s) instead of waiting for its timeout. A live sshd answers
/// keepalives at once however busy its commands are.
const KEEPALIVE_MAX: usize = 3;

/// russh's client configuration, tuned for many short commands on one
/// connection: no Nagle (each request is one small packet that must leave at
/// once), large windows for file transfers, keepalives to notice a dead host.
pub fn client_config() -> Config {
    Config {
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 32768,
        channel_buffer_size: 256,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        ..Default::default()
    }
}

/// Why a connection ended, once it has (set by russh's `disconnected`).
pub(crate) type ClosedReason = Arc<Mutex<Option<String>>>;

/// russh's callbacks: records the server's key and checks it against the
/// pin (during key exchange, so a mismatch ends the connection before any
/// authentication is sent), and records why the connection ended.
pub(crate) struct Client {
    pinned: Option<PublicKey>,
    seen: Arc<Mutex<Option<PublicKey>>>,
    closed: ClosedReason,
}

impl Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKey) -> Result<bool, Self::Error> {
        *self.seen.lock().expect("seen key lock") = Some(key.clone());
        Ok(match &self.pinned {
            None => true,
            Some(p) => p.key_data() == key.key_data(),
        })
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        *self.closed.lock().expect("closed reason lock") = Some(closed_reason(&reason));
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(e) => Err(e),
        }
    }
}

const CLOSED: &str = "the connection was closed: sshd stopped, or the instance went away";

/// Why the connection ended, in words for an error message.
fn closed_reason(reason: &DisconnectReason<russh::Error>) -> String {
    match reason {
        DisconnectReason::ReceivedDisconnect(info) if info.message.trim().is_empty() => {
            "the server closed the connection".into()
        }
        DisconnectReason::ReceivedDisconnect(info) => {
            format!("the server closed the connection: {}", info.message.trim())
        }
        DisconnectReason::Error(russh::Error::KeepaliveTimeout) => format!(
            "sshd stopped answering: {KEEPALIVE_MAX} keepalives {}s apart got no reply",
            KEEPALIVE_INTERVAL.as_secs()
        ),
        // The connection was up: its end without a word is sshd (or the
        // whole instance) gone, not a failed handshake.
        DisconnectReason::Error(russh::Error::IO(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            CLOSED.into()
        }
        DisconnectReason::Error(russh::Error::IO(e)) => io_message(e),
        DisconnectReason::Error(russh::Error::Disconnect | russh::Error::HUP) => CLOSED.into(),
        DisconnectReason::Error(e) => e.to_string(),
    }
}

/// One SSH connection; cheap to clone and safe to share between threads.
/// Every command opens its own channel on it.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) handle: Arc<Handle<Client>>,
    pub(crate) target: Target,
    pub(crate) fingerprint: String,
    pub(crate) host_key: PublicKey,
    /// Why the connection ended, once it has.
    pub(crate) closed: ClosedReason,
    /// Local port tunnels by (host, port): local port and accept loop.
    pub(crate) forwards: Mutex<HashMap<(String, u16), (u16, tokio::task::AbortHandle)>>,
    /// Commands kept running (see `kept`), by command and sudo.
    pub(crate) kept: tokio::sync::Mutex<HashMap<(String, bool), super::kept::Kept>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, task) in self.forwards.lock().expect("forwards lock").values() {
            task.abort();
        }
    }
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.inner.target;
        write!(f, "Session({}", t.address())?;
        if t.label != format!("{}:{}", t.host, t.port) {
            write!(f, " {}", t.label)?;
        }
        write!(
            f,
            " {}{})",
            self.inner.fingerprint,
            if self.is_closed() { " closed" } else { "" }
        )
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Session {
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// `user@host:port`.
    pub fn address(&self) -> String {
        self.inner.target.address()
    }

    /// SHA256 fingerprint of the server's host key.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Connects to `target`, waiting for sshd up to `options.timeout`
    /// (connection refused, reset, closed or silent while a host boots), then
    /// checks the host key against the pin in `keys` (pinning it the first
    /// time) and logs in.
    pub async fn connect(
        target: &Target,
        keys: &dyn HostKeys,
        options: &ConnectOptions<'_>,
    ) -> SshResult<Session> {
        let key = match &target.auth {
            Auth::KeyFile(path) => Some(Arc::new(
                russh::keys::load_secret_key(path, None).map_err(|e| SshError::Key {
                    path: path.clone(),
                    message: e.to_string(),
                })?,
            )),
            Auth::Password(_) => None,
        };
        let pinned_line = keys.pinned(&target.pin_id);
        let pinned = match &pinned_line {
            Some(line) => Some(PublicKey::from_openssh(line).map_err(|e| {
                SshError::Invalid(format!(
                    "the pinned host key of {} in {} is unreadable ({e}); remove it to pin again",
                    target.pin_id,
                    keys.location()
                ))
            })?),
            None => None,
        };
        let config = Arc::new(client_config());
        let started = Instant::now();
        let deadline = started + options.timeout;
        let mut delay = Duration::from_millis(100);
        let mut last_report: Option<Instant> = None;
        let (mut handle, seen, closed) = loop {
            if options.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                return Err(SshError::Interrupted);
            }
            let seen = Arc::new(Mutex::new(None));
            let closed = ClosedReason::default();
            let handler = Client {
                pinned: pinned.clone(),
                seen: seen.clone(),
                closed: closed.clone(),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match attempt(&config, target, handler, remaining).await {
                Ok(handle) => break (handle, seen, closed),
                Err(Attempt::HostKeyChanged) => {
                    let seen = seen.lock().expect("seen key lock").clone();
                    return Err(key_changed(target, keys, pinned.as_ref(), seen.as_ref()));
                }
                Err(Attempt::Fatal(message)) => {
                    return Err(SshError::Connection {
                        target: target.address(),
                        message,
                    });
                }
                Err(Attempt::Retry(message)) => {
                    let now = Instant::now();
                    if now + delay >= deadline {
                        return Err(SshError::NotReady {
                            target: target.address(),
                            waited: options.timeout,
                            last: message,
                        });
                    }
                    if last_report.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                        let waited = now.duration_since(started);
                        (options.on_wait)(
                            &format!(
                                "waiting for sshd at {}: {message} ({}s of {}s)",
                                target.address(),
                                waited.as_secs(),
                                options.timeout.as_secs()
                            ),
                            waited,
                        );
                        last_report = Some(now);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        };
        let server_key =
            seen.lock()
                .expect("seen key lock")
                .clone()
                .ok_or_else(|| SshError::Connection {
                    target: target.address(),
                    message: "the server presented no host key".into(),
                })?;
        // The key was checked against a pin during the key exchange; a host
        // seen for the first time is pinned now, before any credential (a
        // password above all) goes to it.
        if pinned.is_none() {
            check_or_pin(target, keys, &server_key)?;
        }
        authenticate(&mut handle, target, key).await?;
        Ok(Session {
            inner: Arc::new(Inner {
                handle: Arc::new(handle),
                target: target.clone(),
                fingerprint: fingerprint(&server_key),
                host_key: server_key,
                closed,
                forwards: Mutex::new(HashMap::new()),
                kept: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Checks this session's host key against the pin `target` is known by
    /// (an open session reached under another name: an instance and its
    /// `host:port`), pinning it there if there is none yet.
    pub fn check_pin(&self, target: &Target, keys: &dyn HostKeys) -> SshResult<()> {
        check_or_pin(target, keys, &self.inner.host_key)
    }

    /// Why the connection ended, if it has (sshd stopped answering, the
    /// server closed it, ...).
    pub(crate) async fn closed_reason(&self) -> Option<String> {
        // russh reports the reason just after it closes the channels.
        for _ in 0..20 {
            if let Some(r) = self
                .inner
                .closed
                .lock()
                .expect("closed reason lock")
                .clone()
            {
                return Some(r);
            }
            if !self.is_closed() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

/// Checks `key` against the pin of `target`, or pins it if there is none.
fn check_or_pin(target: &Target, keys: &dyn HostKeys, key: &PublicKey) -> SshResult<()> {
    match keys.pinned(&target.pin_id) {
        Some(line) => match PublicKey::from_openssh(&line) {
            Ok(p) if p.key_data() == key.key_data() => Ok(()),
            Ok(p) => Err(key_changed(target, keys, Some(&p), Some(key))),
            Err(e) => Err(SshError::Invalid(format!(
                "the pinned host key of {} in {} is unreadable ({e}); remove it to pin again",
                target.pin_id,
                keys.location()
            ))),
        },
        None => pin_key(target, keys, key),
    }
}

/// Pins `key` as the host key of `target`.
fn pin_key(target: &Target, keys: &dyn HostKeys, key: &PublicKey) -> SshResult<()> {
    let line = PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .map_err(|e| SshError::Invalid(format!("host key: {e}")))?;
    keys.pin(&target.pin_id, &line)
        .map_err(|e| SshError::Invalid(format!("cannot pin the host key: {e}")))
}

fn key_changed(
    target: &Target,
    keys: &dyn HostKeys,
    pinned: Option<&PublicKey>,
    seen: Option<&PublicKey>,
) -> SshError {
    SshError::HostKeyChanged {
        host: target.describe(),
        pin_id: target.pin_id.clone(),
        pinned: pinned.map(fingerprint).unwrap_or_default(),
        seen: seen.map(fingerprint).unwrap_or_default(),
        ledger: keys.location(),
    }
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

enum Attempt {
    /// sshd is not (yet) answering: wait and try again.
    Retry(String),
    HostKeyChanged,
    Fatal(String),
}

async fn attempt(
    config: &Arc<Config>,
    target: &Target,
    handler: Client,
    remaining: Duration,
) -> Result<Handle<Client>, Attempt> {
    let addr = (target.host.as_str(), target.port);
    let tcp = match tokio::time::timeout(
        TCP_TIMEOUT.min(remaining),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        Err(_) => return Err(Attempt::Retry("TCP connect timed out".into())),
        Ok(Err(e)) => return Err(Attempt::Retry(io_message(&e))),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT.min(remaining.max(Duration::from_secs(1))),
        russh::client::connect_stream(config.clone(), tcp, handler),
    )
    .await
    {
        Err(_) => Err(Attempt::Retry(
            "connected, but no SSH handshake (sshd starting, or a firewall drops the traffic)"
                .into(),
        )),
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(russh::Error::UnknownKey)) => Err(Attempt::HostKeyChanged),
        Ok(Err(russh::Error::IO(e))) => Err(Attempt::Retry(io_message(&e))),
        Ok(Err(russh::Error::Disconnect | russh::Error::HUP | russh::Error::ConnectionTimeout)) => {
            Err(Attempt::Retry(
                "connection closed before the SSH handshake".into(),
            ))
        }
        Ok(Err(e)) => Err(Attempt::Fatal(format!("SSH handshake failed: {e}"))),
    }
}

fn io_message(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        UnexpectedEof => "connection closed before the SSH handshake".into(),
        TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

async fn authenticate(
    handle: &mut Handle<Client>,
    target: &Target,
    key: Option<Arc<PrivateKey>>,
) -> SshResult<()> {
    let failed = |e: russh::Error| SshError::Connection {
        target: target.address(),
        message: format!("authentication: {e}"),
    };
    let auth = async {
        match (&target.auth, key) {
            (Auth::KeyFile(_), Some(key)) => {
                let hash = if key.algorithm().is_rsa() {
                    handle.best_supported_rsa_hash().await?.flatten()
                } else {
                    None
                };
                handle
                    .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key, hash))
                    .await
                    .map(|r| (r.success(), "public key"))
            }
            (Auth::Password(password), _) => handle
                .authenticate_password(&target.user, password)
                .await
                .map(|r| (r.success(), "password")),
            (Auth::KeyFile(_), None) => unreachable!("key loaded before connecting"),
        }
    };
    match tokio::time::timeout(AUTH_TIMEOUT, auth).await {
        Err(_) => Err(SshError::Connection {
            target: target.address(),
            message: "authentication timed out".into(),
        }),
        Ok(Err(e)) => Err(failed(e)),
        Ok(Ok((true, _))) => Ok(()),
        Ok(Ok((false, method))) => Err(SshError::AuthFailed {
            target: target.address(),
            user: target.user.clone(),
            method,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_ends_after_its_handshake_is_not_called_a_failed_handshake() {
        let eof = DisconnectReason::Error(russh::Error::IO(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
        assert_eq!(closed_reason(&eof), CLOSED);
        assert_eq!(
            closed_reason(&DisconnectReason::Error(russh::Error::HUP)),
            CLOSED
        );
        let reset = DisconnectReason::Error(russh::Error::IO(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(closed_reason(&reset), "connection reset");
    }
}

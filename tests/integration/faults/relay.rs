//! A paused dockerd without pausing the real one (other tests and people
//! use it): a unix socket that relays every connection to the real engine
//! until it is frozen, and from then on carries nothing in either direction
//! and answers no new connection, as a paused or hung dockerd behaves
//! (its socket still accepts; nothing comes back). labrun is pointed at it
//! with DOCKER_HOST.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Relay {
    path: PathBuf,
    frozen: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

/// The real engine's socket, as the tests' own docker CLI reaches it.
fn engine_socket() -> PathBuf {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    match host.strip_prefix("unix://") {
        Some(path) => PathBuf::from(path),
        None if host.is_empty() => PathBuf::from("/var/run/docker.sock"),
        None => panic!("the fault suite relays a unix-socket engine; DOCKER_HOST is {host}"),
    }
}

impl Relay {
    pub fn start() -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).expect("bind the relay socket");
        let frozen = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let engine = engine_socket();
        {
            let (frozen, closed) = (frozen.clone(), closed.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if closed.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let (frozen, closed, engine) = (frozen.clone(), closed.clone(), engine.clone());
                    std::thread::spawn(move || serve(client, &engine, &frozen, &closed));
                }
            });
        }
        Relay {
            path,
            frozen,
            closed,
            _dir: dir,
        }
    }

    /// `DOCKER_HOST` for labrun.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// A handle the injecting thread can freeze the relay with.
    pub fn freezer(&self) -> Arc<AtomicBool> {
        self.frozen.clone()
    }
}

impl Drop for Relay {
    /// Lets every held connection go, and the accepting thread end.
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
    }
}

/// Waits while the relay is frozen; `false` once it is closed.
fn hold(frozen: &AtomicBool, closed: &AtomicBool) -> bool {
    while frozen.load(Ordering::SeqCst) {
        if closed.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !closed.load(Ordering::SeqCst)
}

fn serve(
    client: UnixStream,
    engine: &std::path::Path,
    frozen: &Arc<AtomicBool>,
    closed: &Arc<AtomicBool>,
) {
    // A frozen engine's socket takes the connection and says nothing.
    if !hold(frozen, closed) {
        return;
    }
    let Ok(upstream) = UnixStream::connect(engine) else {
        return;
    };
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (f, c) = (frozen.clone(), closed.clone());
    let back = std::thread::spawn(move || pipe(u2, c2, &f, &c));
    pipe(client, upstream, frozen, closed);
    let _ = back.join();
}

/// Copies `from` to `to`; what arrives once frozen is held, never
/// delivered.
fn pipe(mut from: UnixStream, mut to: UnixStream, frozen: &AtomicBool, closed: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !hold(frozen, closed) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

//! Local port forwarding (`ssh -L`): a port on 127.0.0.1 whose connections
//! are carried through the session (`direct-tcpip`) to a host and port the
//! remote host can reach. The mysql module reaches a server's private
//! address this way.
//!
//! Only labrun's own connections are carried. Any local user can connect
//! to a port on 127.0.0.1, and a tunnel speaks for the lab's host (the
//! server behind it admits it as that host), so each accepted connection is
//! checked: its other end must be a socket of this process. A connection
//! from anywhere else is closed before anything is opened for it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

use tokio::net::TcpListener;

use super::{Session, SshError, SshResult};

impl Session {
    /// A local port on 127.0.0.1 tunnelled through this session to
    /// `host:port` (as the remote host resolves and reaches it; the far end
    /// sees the connection coming from the remote host). The tunnel lives as
    /// long as the session; asking again for the same `host:port` returns
    /// the same port.
    pub async fn forward(&self, host: &str, port: u16) -> SshResult<u16> {
        if host.is_empty() || port == 0 {
            return Err(SshError::Invalid(format!(
                "forward: invalid destination {host}:{port}"
            )));
        }
        let key = (host.to_string(), port);
        if let Some((local, _)) = self.inner.forwards.lock().expect("forwards lock").get(&key) {
            return Ok(*local);
        }
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| SshError::Invalid(format!("forward: cannot listen on 127.0.0.1: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| SshError::Invalid(format!("forward: {e}")))?
            .port();
        let handle = self.inner.handle.clone();
        let to = host.to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, peer)) = listener.accept().await {
                let ours = tcp.local_addr().is_ok_and(|at| opened_here(peer, at));
                if !ours {
                    // Not labrun's: closed, and nothing opened for it.
                    drop(tcp);
                    continue;
                }
                let handle = handle.clone();
                let to = to.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    // A refused destination closes the local connection;
                    // the client reports it as a dropped connection.
                    if let Ok(channel) = handle
                        .channel_open_direct_tcpip(
                            to,
                            port as u32,
                            peer.ip().to_string(),
                            peer.port() as u32,
                        )
                        .await
                    {
                        let mut stream = channel.into_stream();
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
                    }
                });
            }
        });
        let mut forwards = self.inner.forwards.lock().expect("forwards lock");
        if let Some((existing, _)) = forwards.get(&key) {
            // Another thread won the race: keep its tunnel.
            task.abort();
            return Ok(*existing);
        }
        forwards.insert(key, (local, task.abort_handle()));
        Ok(local)
    }
}

/// Whether the connection that reached `local` from `peer` was opened by
/// this process: one of its file descriptors is a socket bound to `peer`
/// and connected to `local`. (The connecting socket is established by the
/// time the connection is accepted, so it is there to be found.)
pub(crate) fn opened_here(peer: SocketAddr, local: SocketAddr) -> bool {
    // Linux lists a process's descriptors in /proc/self/fd, macOS and the
    // BSDs in /dev/fd.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"))
    else {
        return false;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()))
        .any(|fd| {
            socket_address(fd, libc::getsockname) == Some(peer)
                && socket_address(fd, libc::getpeername) == Some(local)
        })
}

type AddressFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// `getsockname` or `getpeername` of `fd`, if it is an IP socket.
fn socket_address(fd: RawFd, which: AddressFn) -> Option<SocketAddr> {
    // SAFETY: the storage is large enough for any socket address and its
    // length is passed; the call only writes into it (and fails for a
    // descriptor that is not a socket, or that was closed meanwhile).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let r = unsafe { which(fd, (&raw mut storage).cast(), &mut len) };
    if r != 0 {
        return None;
    }
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let a: libc::sockaddr_in = unsafe { *(&raw const storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let a: libc::sockaddr_in6 = unsafe { *(&raw const storage).cast() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_connection_of_this_process_is_recognised() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let local = accepted.local_addr().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(opened_here(peer, local));
        // What was found is the connecting socket: once it is closed, the
        // accepted end alone does not count.
        drop(client);
        assert!(!opened_here(peer, local));
        drop(accepted);
    }

    #[test]
    fn a_connection_from_another_process_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // bash connects and holds the connection until we close ours.
        let mut child = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "exec 3<>/dev/tcp/127.0.0.1/{port}; read -r -t 10 <&3"
            ))
            .spawn()
            .expect("bash runs");
        let (accepted, peer) = listener.accept().unwrap();
        let local = accepted.local_addr().unwrap();
        assert!(!opened_here(peer, local), "another process's connection");
        drop(accepted);
        child.wait().unwrap();
    }
}

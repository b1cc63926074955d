//! Local port forwarding (`ssh -L`): a port on 127.0.0.1 whose connections
//! are carried through the session (`direct-tcpip`) to a host and port the
//! remote host can reach. The mysql module reaches a server's private
//! address this way.

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

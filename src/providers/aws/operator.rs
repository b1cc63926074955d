//! The operator's public IPv4 address, for SSH rules that admit only them.
//!
//! Asked of AWS's own "what is my IP" service over HTTPS (rustls, the
//! system's CA certificates). Never used when the EC2 endpoint is overridden
//! or when `--operator-cidr` is given, so tests never reach it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

use super::AwsProvider;
use crate::providers::{ProviderError, ProviderResult};

const HOST: &str = "checkip.amazonaws.com";
const TIMEOUT: Duration = Duration::from_secs(10);

/// How to get going when detection fails.
pub const HOW_TO_SET: &str = "pass --operator-cidr A.B.C.D/32 (or set LABRUN_OPERATOR_CIDR) \
     with the public address your SSH traffic leaves from; `curl https://checkip.amazonaws.com` \
     prints it";

pub async fn detect_public_ipv4() -> ProviderResult<Ipv4Addr> {
    match tokio::time::timeout(TIMEOUT, fetch()).await {
        Ok(Ok(raw)) => parse_response(&raw).ok_or_else(|| {
            ProviderError::Unavailable(format!(
                "operator_cidr: https://{HOST} gave no IPv4 address; {HOW_TO_SET}"
            ))
        }),
        Ok(Err(e)) => Err(ProviderError::Unavailable(format!(
            "operator_cidr: cannot ask https://{HOST} for your public address ({e}); {HOW_TO_SET}"
        ))),
        Err(_) => Err(ProviderError::Unavailable(format!(
            "operator_cidr: https://{HOST} did not answer within {}s; {HOW_TO_SET}",
            TIMEOUT.as_secs()
        ))),
    }
}

impl AwsProvider {
    /// `--operator-cidr`, else the detected public address (once per run).
    pub(super) async fn operator_address(&self) -> ProviderResult<String> {
        if let Some(c) = &self.operator_cidr {
            return Ok(c.clone());
        }
        if let Some(e) = &self.endpoint {
            return Err(ProviderError::Unavailable(format!(
                "the EC2 endpoint is overridden ({e}), so labrun does not look up your public \
                 address on the internet: {}",
                HOW_TO_SET
            )));
        }
        self.detected_cidr
            .get_or_try_init(|| async {
                let ip = detect_public_ipv4().await?;
                self.progress(&format!("your public address is {ip}"));
                Ok(format!("{ip}/32"))
            })
            .await
            .cloned()
    }
}

/// One HTTP/1.1 GET over TLS to an IPv4 address of [`HOST`]; the raw response.
async fn fetch() -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no CA certificates on this system (install ca-certificates)".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr: SocketAddr = tokio::net::lookup_host((HOST, 443))
        .await
        .map_err(|e| format!("resolving {HOST}: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("{HOST} has no IPv4 address"))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let name = ServerName::try_from(HOST).map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {HOST}: {e}"))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: labrun\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // Servers may close without TLS close_notify; what arrived is enough.
    if let Err(e) = tls.read_to_end(&mut raw).await
        && raw.is_empty()
    {
        return Err(e.to_string());
    }
    Ok(raw)
}

/// The address in a `200` response whose body is one IPv4 address (plain or
/// chunked).
fn parse_response(raw: &[u8]) -> Option<Ipv4Addr> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    if status.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    body.lines().find_map(|l| l.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n203.0.113.7\n";
        assert_eq!(parse_response(ok), Some(Ipv4Addr::new(203, 0, 113, 7)));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n198.51.100.2\n\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked),
            Some(Ipv4Addr::new(198, 51, 100, 2))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 503 Busy\r\n\r\n203.0.113.7\n"),
            None
        );
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n<html>"), None);
        assert_eq!(parse_response(b"garbage"), None);
    }
}

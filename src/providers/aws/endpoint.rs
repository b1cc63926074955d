//! Where the EC2 API is: AWS's endpoint for the region, or an override, which
//! may be an emulator such as moto.

use crate::providers::ProviderOptions;

/// The endpoint override: `--endpoint-url`, else `AWS_ENDPOINT_URL_EC2`,
/// else `AWS_ENDPOINT_URL`.
pub(super) fn endpoint_override(options: &ProviderOptions) -> Option<String> {
    options
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_EC2").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| !e.trim().is_empty())
}

/// Whether an endpoint is an emulator rather than AWS: AWS endpoints are
/// HTTPS on public names, emulators listen on plain HTTP or loopback.
pub(super) fn is_emulator(endpoint: &str) -> bool {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    scheme.eq_ignore_ascii_case("http")
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_endpoints_are_recognised() {
        for e in [
            "http://127.0.0.1:5000",
            "http://localhost:4566/",
            "https://localhost:4566",
            "https://[::1]:5000",
            "http://moto.internal:5000",
        ] {
            assert!(is_emulator(e), "{e}");
        }
        for e in [
            "https://ec2.us-east-1.amazonaws.com",
            "https://vpce-0123.ec2.us-east-1.vpce.amazonaws.com",
        ] {
            assert!(!is_emulator(e), "{e}");
        }
    }
}

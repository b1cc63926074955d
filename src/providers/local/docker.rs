//! Connecting to the Docker engine, and engine errors in the provider's
//! terms. A missing or silent engine is an error that says how to install
//! and start one; an engine that stops answering later (dockerd stopped or
//! paused, a hung daemon) fails each call after [`ENGINE_TIMEOUT`] (or
//! `LABRUN_ENGINE_TIMEOUT`) with an error that says so, instead of holding
//! the run forever.

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error;

use crate::providers::{ProviderError, ProviderResult};

/// What to do when there is no engine.
pub const INSTALL_HINT: &str = "Install and start Docker: on Debian/Ubuntu `sudo apt-get install docker.io` \
     and `sudo systemctl start docker` (without systemd: `sudo dockerd &`), or run \
     `bash scripts/setup.sh`; on macOS/Windows start Docker Desktop. \
     DOCKER_HOST selects another engine.";

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long the engine has to answer a request (bollard's client timeout,
/// for the response's headers). Engine calls take milliseconds; the slow
/// ones (stopping a container with its grace period, committing or removing
/// a large one) take seconds. Long transfers that need more set their own
/// (the base image import).
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the engine has to answer the first request: a live engine
/// answers its version at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Overrides [`ENGINE_TIMEOUT`], in seconds: a shorter bound for a test that
/// freezes the engine on purpose, a longer one for a very slow engine.
const TIMEOUT_ENV: &str = "LABRUN_ENGINE_TIMEOUT";

/// The limit on one engine call: [`ENGINE_TIMEOUT`], or `LABRUN_ENGINE_TIMEOUT`.
fn engine_timeout_from(env: Option<&str>) -> ProviderResult<Duration> {
    let Some(text) = env.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(ENGINE_TIMEOUT);
    };
    match text.parse::<u64>() {
        Ok(secs @ 1..=3600) => Ok(Duration::from_secs(secs)),
        _ => Err(ProviderError::Invalid(format!(
            "{TIMEOUT_ENV}: '{text}' is not a number of seconds from 1 to 3600 (the limit on one \
             Docker engine call; default {})",
            ENGINE_TIMEOUT.as_secs()
        ))),
    }
}

/// The limit on one engine call, as this process was started with it.
pub fn engine_timeout() -> ProviderResult<Duration> {
    engine_timeout_from(std::env::var(TIMEOUT_ENV).ok().as_deref())
}

/// Where labrun looks for the engine.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Whether the engine runs on this machine's kernel, so container PIDs are
/// this machine's PIDs (a local unix socket).
pub fn engine_is_local() -> bool {
    engine_address().starts_with("unix://")
}

/// Connects to the engine and agrees on an API version (engines older than
/// bollard's default reject its requests otherwise).
pub async fn connect() -> ProviderResult<Docker> {
    let address = engine_address();
    let timeout = engine_timeout()?;
    let first = CONNECT_TIMEOUT.min(timeout);
    let docker = Docker::connect_with_host(&address)
        .map_err(|e| unavailable(&address, &explain(&e.to_string())))?
        .with_timeout(timeout);
    let silent = || {
        unavailable(
            &address,
            &format!(
                "the engine did not answer within {} s (dockerd stopped, paused or hung?)",
                first.as_secs()
            ),
        )
    };
    match tokio::time::timeout(first, docker.negotiate_version()).await {
        // The client's own bound, when it is no longer than the first one.
        Err(_) | Ok(Err(Error::RequestTimeoutError)) => Err(silent()),
        Ok(Err(e)) => Err(unavailable(&address, &explain(&e.to_string()))),
        Ok(Ok(docker)) => Ok(docker),
    }
}

fn unavailable(address: &str, why: &str) -> ProviderError {
    ProviderError::Unavailable(format!(
        "cannot reach the Docker engine at {address}: {why}. {INSTALL_HINT}"
    ))
}

/// Turns a transport error into what it means for the user.
fn explain(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if lower.contains("permission denied") {
        format!(
            "{text} (permission denied: run as root, or add your user to the `docker` group and log in again)"
        )
    } else if lower.contains("no such file") || lower.contains("socket not found") {
        "no engine socket there (Docker is not installed or not started)".to_string()
    } else if lower.contains("connection refused") {
        "the socket exists but no engine answers (start dockerd)".to_string()
    } else {
        text.to_string()
    }
}

/// The HTTP status of an engine error, if it has one.
pub fn status(e: &Error) -> Option<u16> {
    match e {
        Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// What container `id` printed on stdout and stderr: its last `tail`
/// lines, or all of it; empty where the engine cannot say.
pub async fn output(docker: &Docker, id: &str, tail: Option<usize>) -> String {
    use futures_util::StreamExt;
    let mut logs = docker.logs(
        id,
        Some(bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        }),
    );
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&chunk.to_string());
    }
    text.trim().to_string()
}

/// Removes a throwaway helper container (image build, firewall) in
/// whatever state it is in. Failures are ignored: it may already be gone,
/// and a leftover is found again by its name.
pub async fn discard_container(docker: &Docker, name: &str) {
    let options = bollard::query_parameters::RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    let _ = docker.remove_container(name, Some(options)).await;
}

pub fn is_not_found(e: &Error) -> bool {
    status(e) == Some(404)
}

pub fn is_conflict(e: &Error) -> bool {
    status(e) == Some(409)
}

/// Whether a failed engine call was refused by the engine (it answered
/// with an error status), so whatever it was asked to create does not
/// exist; after a timeout or a broken connection it may exist all the same.
pub fn refused(e: &ProviderError) -> bool {
    match e {
        ProviderError::Api { code, .. } => code.parse::<u16>().is_ok(),
        ProviderError::Context { source, .. } => refused(source),
        _ => false,
    }
}

/// An engine error as a provider error: `action: code: message`.
pub fn api(action: impl Into<String>, e: Error) -> ProviderError {
    match e {
        Error::DockerResponseServerError {
            status_code,
            message,
        } => ProviderError::Api {
            action: action.into(),
            code: status_code.to_string(),
            message,
        },
        Error::RequestTimeoutError => ProviderError::Api {
            action: action.into(),
            code: "engine".into(),
            message: format!(
                "the Docker engine at {} did not answer within {} s (is dockerd stopped, paused or hung?)",
                engine_address(),
                engine_timeout().unwrap_or(ENGINE_TIMEOUT).as_secs()
            ),
        },
        other => ProviderError::Api {
            action: action.into(),
            code: "engine".into(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_say_what_to_do() {
        assert!(explain("Socket not found: /var/run/docker.sock").contains("not installed"));
        assert!(explain("Connection refused (os error 111)").contains("start dockerd"));
        assert!(explain("Permission denied (os error 13)").contains("docker` group"));
        let e = unavailable("unix:///x.sock", "no engine socket there");
        assert!(e.to_string().contains("apt-get install docker.io"));
    }

    #[test]
    fn the_call_limit_defaults_and_can_be_overridden() {
        assert_eq!(engine_timeout_from(None).unwrap(), ENGINE_TIMEOUT);
        assert_eq!(engine_timeout_from(Some(" ")).unwrap(), ENGINE_TIMEOUT);
        assert_eq!(
            engine_timeout_from(Some("8")).unwrap(),
            Duration::from_secs(8)
        );
        for bad in ["0", "-1", "ten", "1.5", "3601"] {
            let e = engine_timeout_from(Some(bad)).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("LABRUN_ENGINE_TIMEOUT: '{bad}' is not a number")),
                "{e}"
            );
        }
    }

    #[test]
    fn an_engine_that_stops_answering_is_named() {
        let e = api("inspecting container x", Error::RequestTimeoutError).to_string();
        assert!(
            e.starts_with("inspecting container x: engine: the Docker engine at ")
                && e.ends_with("did not answer within 120 s (is dockerd stopped, paused or hung?)"),
            "{e}"
        );
    }
}

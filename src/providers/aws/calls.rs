//! How long an EC2 call may take and how it is retried: nothing labrun asks
//! of EC2 may hang a run, and throttling (`RequestLimitExceeded`, which
//! several labs launching at once in one account meet) is waited out.
//!
//! Ctrl-C is the other bound: the provider's trait methods race every call
//! and wait against it (`LabScope::interruptible`).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::providers::{ProviderError, ProviderResult};

/// Overrides [`CALL_TIMEOUT`], in seconds.
pub(super) const TIMEOUT_ENV: &str = "LABRUN_AWS_TIMEOUT";

/// One call, every attempt and backoff included. EC2 answers in well under
/// a second; DescribeImages over public images can take several.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// One attempt: an endpoint that takes the request and never answers is
/// tried again after this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Establishing the TCP connection (the SDK's own default is 3.1 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per call. The standard retry mode already retries throttling
/// codes (`RequestLimitExceeded` among them), 5xx answers and transport
/// failures, but only 3 times; EC2 asks clients to back off longer.
const MAX_ATTEMPTS: u32 = 6;
/// Backoff between attempts: exponential from 1 s with jitter, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// The limit on one call: [`CALL_TIMEOUT`], or `LABRUN_AWS_TIMEOUT`.
pub(super) fn call_timeout(env: Option<&str>) -> ProviderResult<Duration> {
    let Some(text) = env.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(CALL_TIMEOUT);
    };
    match text.parse::<u64>() {
        Ok(secs @ 1..=3600) => Ok(Duration::from_secs(secs)),
        _ => Err(ProviderError::Invalid(format!(
            "{TIMEOUT_ENV}: '{text}' is not a number of seconds from 1 to 3600 (the limit on one \
             EC2 call, retries included; default {})",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// Timeouts for a call limited to `call`: each attempt gets at most
/// [`ATTEMPT_TIMEOUT`] of it.
pub(super) fn timeouts(call: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(call))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT.min(call))
        .operation_timeout(call)
        .build()
}

pub(super) fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_max_backoff(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_limit_defaults_and_can_be_overridden() {
        assert_eq!(call_timeout(None).unwrap(), CALL_TIMEOUT);
        assert_eq!(call_timeout(Some(" ")).unwrap(), CALL_TIMEOUT);
        assert_eq!(call_timeout(Some("5")).unwrap(), Duration::from_secs(5));
        for bad in ["0", "-1", "ten", "1.5", "3601"] {
            let e = call_timeout(Some(bad)).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("LABRUN_AWS_TIMEOUT: '{bad}' is not a number")),
                "{e}"
            );
        }
    }

    #[test]
    fn every_attempt_fits_in_the_call() {
        let t = timeouts(Duration::from_secs(5));
        assert_eq!(t.operation_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(t.connect_timeout(), Some(Duration::from_secs(5)));
        let t = timeouts(CALL_TIMEOUT);
        assert_eq!(t.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(retries().max_attempts(), MAX_ATTEMPTS);
    }
}

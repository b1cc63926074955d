//! SDK errors flattened at the provider edge into `Code: message`, with
//! what labrun was doing.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::providers::ProviderError;

/// An SDK failure as a [`ProviderError`]: a service error keeps its code and
/// message; a transport failure says the API could not be reached, a
/// timeout that it did not answer (after the SDK's retries, `calls`).
pub fn api<E, R>(action: impl Into<String>, err: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let action = action.into();
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            ProviderError::Api {
                action,
                code: e.code().unwrap_or("UnknownError").to_string(),
                message: e.message().unwrap_or("(no message)").to_string(),
            }
        }
        SdkError::TimeoutError(_) => ProviderError::Unavailable(format!(
            "{action}: the EC2 API did not answer in time: {}",
            causes(&err)
        )),
        SdkError::DispatchFailure(_) => ProviderError::Unavailable(format!(
            "{action}: cannot reach the EC2 API: {}",
            causes(&err)
        )),
        _ => ProviderError::Sdk {
            action,
            message: DisplayErrorContext(&err).to_string(),
            source: Box::new(err),
        },
    }
}

/// The causes of a transport failure, outermost first, without the SDK's
/// own wrapper ("dispatch failure") and without repeats.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// The service error code of an SDK failure (`InvalidGroup.NotFound`), if
/// the service answered.
pub fn code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code())
}

/// Whether an SDK failure is a "no such resource" answer.
pub fn is_not_found<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    code(err).is_some_and(|c| c.ends_with(".NotFound") || c.ends_with(".Malformed"))
}

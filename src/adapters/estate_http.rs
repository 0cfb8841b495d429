//! What the HTTP estate targets (the webhook, Chef Automate) share: how a
//! refused answer becomes an [`EstateError`] and how a POST is retried.

use std::future::Future;
use std::time::Duration;

use reqwest::{Response, StatusCode};

use crate::core::error::Retry;
use crate::ports::estate::EstateError;

/// An error of estate target `target`.
pub fn failed(
    target: &'static str,
    operation: &str,
    object: &str,
    detail: String,
    retry: Retry,
) -> EstateError {
    EstateError {
        target,
        operation: operation.into(),
        object: object.into(),
        detail,
        retry,
    }
}

/// A non-2xx answer to `method url`: 5xx, 408 and 429 are transient,
/// anything else permanent. `hint` follows the status; the first 200
/// characters of the body are kept.
pub async fn refused(
    target: &'static str,
    method: &str,
    url: &str,
    resp: Response,
    hint: &str,
) -> EstateError {
    let status = resp.status();
    let retry = if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Retry::Transient
    } else {
        Retry::Permanent
    };
    let text: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    failed(
        target,
        method,
        url,
        format!("answered {status}{hint}: {text}"),
        retry,
    )
}

/// Calls `attempt` until it succeeds, fails for good, or `attempts` calls
/// were made, waiting `backoff` (doubled each time) after each transient
/// failure; the last error when every attempt failed. `what` names the call
/// in the log.
pub async fn with_retries<F, Fut>(
    what: &str,
    attempts: u32,
    backoff: Duration,
    mut attempt: F,
) -> Result<(), EstateError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), EstateError>>,
{
    let mut wait = backoff;
    let mut made = 1;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) if e.retry == Retry::Transient && made < attempts => {
                tracing::warn!(attempt = made, error = %e, wait_ms = wait.as_millis() as u64, "{what} failed; retrying");
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
                made += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

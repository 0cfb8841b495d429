//! Failure classification shared by every port.
//!
//! Each adapter (Chef, SQS, EC2, journal) has its own `thiserror` type; they all
//! answer one question for the pipeline: is it worth trying again?

/// Whether a failure may go away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Outage, timeout, throttling, 5xx: keep the message and try later.
    Transient,
    /// Bad input, bad credentials, permissions, refused by policy: retrying
    /// cannot help; the message goes to the dead-letter queue with the reason.
    Permanent,
}

/// Implemented by every error that crosses a port boundary.
pub trait Classify {
    fn retry(&self) -> Retry;

    /// Whether the failure is about this message (poison: dead-letter it) or
    /// about nodereaper's own setup, such as a rejected signature or missing
    /// permission: then every message would fail alike, so messages are kept
    /// and the pipeline pauses instead of emptying the queue into the DLQ.
    fn blames_message(&self) -> bool {
        true
    }

    fn is_transient(&self) -> bool {
        self.retry() == Retry::Transient
    }
}

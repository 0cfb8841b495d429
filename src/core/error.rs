//! Failure classification shared by every port.
//!
//! Each adapter (Chef, SQS, EC2, journal) has its own `thiserror` type; they all
//! answer one question for the pipeline: is it worth trying again? And
//! [`error_policy`] turns that answer into what happens to the message.

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
    /// Whether trying again may help.
    fn retry(&self) -> Retry;

    /// Whether the failure is about this message (poison: dead-letter it) or
    /// about nodereaper's own setup, such as a rejected signature or missing
    /// permission: then every message would fail alike, so messages are kept
    /// and the pipeline pauses instead of emptying the queue into the DLQ.
    fn blames_message(&self) -> bool {
        true
    }

    /// Shorthand for `retry() == Retry::Transient`.
    fn is_transient(&self) -> bool {
        self.retry() == Retry::Transient
    }
}

/// What the error policy decides for a message whose handling failed.
///
/// The pipeline turns it into its message disposition and tells the circuit
/// breaker: a hold opens it at once, a retry counts toward it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorDisposition {
    /// nodereaper's own failure (credentials, permissions, journal, storm
    /// brake): keep the message and pause receiving.
    Hold {
        /// What failed.
        error: String,
    },
    /// May go away by itself: hide the message for a backoff, try again.
    Retry {
        /// What failed.
        error: String,
    },
    /// The message's own failure (poison, refused): dead-letter it.
    DeadLetter {
        /// Why, sent along with the message.
        reason: String,
    },
}

/// The one error policy: a failure that does not blame the message holds
/// it; otherwise a transient one retries and a permanent one dead-letters.
/// `text` is the description carried by the disposition.
pub fn error_policy<E: Classify + ?Sized>(error: &E, text: String) -> ErrorDisposition {
    if !error.blames_message() {
        return ErrorDisposition::Hold { error: text };
    }
    match error.retry() {
        Retry::Transient => ErrorDisposition::Retry { error: text },
        Retry::Permanent => ErrorDisposition::DeadLetter { reason: text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failure {
        retry: Retry,
        blames_message: bool,
    }

    impl Classify for Failure {
        fn retry(&self) -> Retry {
            self.retry
        }
        fn blames_message(&self) -> bool {
            self.blames_message
        }
    }

    fn decide(retry: Retry, blames_message: bool) -> ErrorDisposition {
        let error = Failure {
            retry,
            blames_message,
        };
        error_policy(&error, "boom".into())
    }

    #[test]
    fn own_failures_hold_whatever_their_retry_class() {
        for retry in [Retry::Transient, Retry::Permanent] {
            assert_eq!(
                decide(retry, false),
                ErrorDisposition::Hold {
                    error: "boom".into()
                }
            );
        }
    }

    #[test]
    fn transient_failures_of_the_message_retry() {
        assert_eq!(
            decide(Retry::Transient, true),
            ErrorDisposition::Retry {
                error: "boom".into()
            }
        );
    }

    #[test]
    fn permanent_failures_of_the_message_dead_letter() {
        assert_eq!(
            decide(Retry::Permanent, true),
            ErrorDisposition::DeadLetter {
                reason: "boom".into()
            }
        );
    }

    #[test]
    fn works_through_a_trait_object() {
        let error: &(dyn Classify + Send + Sync) = &Failure {
            retry: Retry::Permanent,
            blames_message: true,
        };
        assert!(matches!(
            error_policy(error, "x".into()),
            ErrorDisposition::DeadLetter { .. }
        ));
    }
}

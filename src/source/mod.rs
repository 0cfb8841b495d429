//! Event sources: what arrives on a queue, as typed events. The SQS adapter
//! itself lives in [`crate::aws::sqs`].

pub mod message;

pub use message::{parse, Event, Origin, ParseError, ParseOptions, Termination};

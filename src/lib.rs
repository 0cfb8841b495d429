//! nodereaper: removes Chef Infra Server registrations (node + API client) of
//! EC2 instances that Auto Scaling terminated.
//!
//! Architecture, outside in:
//! - [`source`]: event shapes arriving on queues, parsed into typed events;
//! - [`decide`]: pure decisions (is the instance really gone? is it protected?);
//! - [`act`]: the actions (journal, then delete), shared by every command;
//! - [`pipeline`]: the `run` daemon tying them together with retries,
//!   breaker, rate cap and shutdown;
//! - [`sweep`]: reconciliation of Chef against EC2;
//! - [`ports`]: the traits the outside world hides behind, implemented by
//!   [`chef`], [`aws`] and [`journal`].

pub mod act;
pub mod adapters;
pub mod app;
pub mod config;
pub mod core;
pub mod jobs;
pub mod ports;
pub mod run;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

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
pub mod app;
pub mod aws;
pub mod chef;
pub mod config;
pub mod core;
pub mod decide;
pub mod doctor;
pub mod error;
pub mod journal;
pub mod lambda;
pub mod pipeline;
pub mod ports;
pub mod restore;
pub mod secrets;
pub mod setup;
pub mod source;
pub mod sweep;
pub mod telemetry;
pub mod testing;

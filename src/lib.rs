#![warn(missing_docs)]
//! nodereaper: removes Chef Infra Server registrations (node + API client) of
//! EC2 instances that Auto Scaling terminated.
//!
//! Architecture: event sources -> decision -> actions, with the outside
//! world behind small traits (see README.md, "Architecture"):
//! - [`core`]: pure rules, no I/O: the event parser by message shape, typed
//!   ids and EC2 states, the one "is the instance gone" rule, protection,
//!   the error policy, what a journal entry holds;
//! - [`ports`]: the traits the outside world hides behind (Chef API, queue,
//!   EC2 and Auto Scaling per account and region, journal) and their errors;
//!   they depend on [`core`] only;
//! - [`act`]: the actions shared by every path: resolve, back up, then
//!   delete (the reaper), and the deletion rate cap;
//! - [`run`]: the daemon (receiver, workers, breaker, shutdown) and the
//!   Lambda runtime;
//! - [`jobs`]: sweep, restore, doctor and the AWS set-up;
//! - [`adapters`]: the Chef server over signed HTTP, AWS, the journal;
//! - [`telemetry`]: typed events, metrics, logs, the health endpoint;
//! - [`app`]: all the wiring from a [`config::Config`].

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

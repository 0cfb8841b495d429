//! Logs, metrics and the health/metrics HTTP endpoint.

pub mod events;
pub mod http;
pub mod logging;
pub mod metrics;

//! Logs, metrics and the health/metrics HTTP endpoint.

pub mod http;
pub mod logging;
pub mod metrics;

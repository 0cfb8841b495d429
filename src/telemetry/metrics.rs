//! Prometheus metrics, registered once in a process-wide registry.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric nodereaper exports.
pub struct Metrics {
    /// The registry holding all of them, names prefixed `nodereaper_`;
    /// [`render`] serves it on `/metrics`.
    pub registry: Registry,
    /// The name of every registered family, prefix included, in registration
    /// order (for checks that the dashboards cover them all).
    pub families: Vec<String>,
    /// Messages received, by queue and kind (termination, test, other, unparseable).
    pub messages: IntCounterVec,
    /// Messages finished, by queue and outcome (deleted, dead_lettered, retried, ...).
    pub outcomes: IntCounterVec,
    /// Chef objects deleted, by kind (node, client) and result (removed, already_gone).
    pub deletions: IntCounterVec,
    /// Terminations routed to a Chef target, by target and outcome.
    pub target_terminations: IntCounterVec,
    /// Terminations refused because EC2 says the instance is alive, or protection.
    pub refusals: IntCounterVec,
    /// Seconds from a message's `SentTimestamp` to its processing, by queue
    /// (`queue_lag_seconds`).
    pub queue_lag: HistogramVec,
    /// Chef API request duration in seconds, by method, endpoint (first path
    /// segment, e.g. `nodes`) and status (the HTTP code, or `error` without
    /// an answer) (`chef_request_duration_seconds`).
    pub chef_latency: HistogramVec,
    /// AWS API call duration in seconds, by service, operation and result
    /// (`ok`, `error`) (`aws_request_duration_seconds`).
    pub aws_latency: HistogramVec,
    /// 1 while the circuit breaker is open for a dependency, else 0
    /// (`circuit_breaker_open{dependency}`).
    pub breaker_open: IntGaugeVec,
    /// 1 while deletions wait because `pipeline.max_deletions_per_minute`
    /// was reached (`deletion_rate_limited`).
    pub rate_limited: IntGauge,
    /// 1 once the storm brake engaged (until restart).
    pub storm_brake: IntGauge,
    /// 1 once the Chef server refused nodereaper an ACL read (GRANT
    /// missing): deletions are journaled without ACLs
    /// (`acl_backup_forbidden`).
    pub acl_backup_forbidden: IntGauge,
    /// AWS calls refused for a missing IAM permission, by the IAM action
    /// (`aws_denied_total{action}`; the actions of
    /// [`crate::adapters::aws::permissions::CALLS`], else `other`).
    pub aws_denied: IntCounterVec,
    /// Messages being processed right now (`messages_in_flight`).
    pub in_flight: IntGauge,
    /// Lifecycle hook calls, by call (`heartbeat`, `complete`) and result
    /// (`completed`, `no_longer_active`, `error`) (`lifecycle_actions_total`).
    pub lifecycle: IntCounterVec,
    /// Candidates found by the last sweep (`sweep_candidates`).
    pub sweep_candidates: IntGauge,
    /// Nodes deleted by sweeps, by mode (`sweep_deleted_total`).
    pub sweep_deleted: IntCounterVec,
    /// Sweep rows not deleted, by reason (`sweep_skipped_total`).
    pub sweep_skipped: IntCounterVec,
    /// Unix time in seconds when the last sweep finished
    /// (`sweep_last_run_timestamp_seconds`).
    pub sweep_last_run: Gauge,
    /// How long the last sweep took, in seconds (`sweep_last_duration_seconds`).
    pub sweep_duration: Gauge,
    /// Estate target results after Chef deletions, by target and result
    /// (`cleaned`, `left_alone`, `failed`) (`estate_total`).
    pub estate: IntCounterVec,
}

/// Creates metrics and registers each in the registry.
struct Registrar {
    registry: Registry,
    families: std::cell::RefCell<Vec<String>>,
}

impl Registrar {
    fn register<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: M,
    ) -> Result<M, prometheus::Error> {
        self.registry.register(Box::new(metric.clone()))?;
        let names = metric
            .desc()
            .into_iter()
            .map(|d| format!("nodereaper_{}", d.fq_name));
        self.families.borrow_mut().extend(names);
        Ok(metric)
    }

    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, prometheus::Error> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, labels)?)
    }

    fn int_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn int_gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.register(IntGauge::new(name, help)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
        self.register(Gauge::new(name, help)?)
    }
}

/// Request latency buckets, seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Queue lag buckets, seconds: up to a day (a message can wait that long
/// while nodereaper holds the queue).
const LAG_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

const RATE_LIMITED_HELP: &str =
    "1 while deletions are paused because pipeline.max_deletions_per_minute was reached";
const STORM_BRAKE_HELP: &str = "1 once deletions ran at pipeline.max_deletions_per_minute for pipeline.storm_brake_after: no deletions until restart";
const ACL_BACKUP_FORBIDDEN_HELP: &str = "1 once the Chef server refused nodereaper an ACL read (grant missing): deletions are journaled without ACLs, or refused with journal.require_acl_backup";

const BREAKER_HELP: &str = "1 while the breaker for a dependency is open (receiving paused)";
const SWEEP_LAST_RUN_HELP: &str = "Unix time the last sweep finished";
const TARGETS_HELP: &str = "Terminations routed to a Chef target, by target and outcome";
const TARGETS: &[&str] = &["target", "outcome"];
const REFUSALS_HELP: &str = "Terminations not acted on, by reason";

fn build() -> Result<Metrics, prometheus::Error> {
    let r = Registrar {
        registry: Registry::new_custom(Some("nodereaper".into()), None)?,
        families: Default::default(),
    };
    Ok(Metrics {
        messages: r.counter(
            "messages_received_total",
            "Messages received, by queue and kind",
            &["queue", "kind"],
        )?,
        outcomes: r.counter(
            "messages_total",
            "Messages finished, by queue and outcome",
            &["queue", "outcome"],
        )?,
        deletions: r.counter(
            "chef_deletions_total",
            "Chef objects deleted, by object kind and result",
            &["object", "result"],
        )?,
        target_terminations: r.counter("target_terminations_total", TARGETS_HELP, TARGETS)?,
        refusals: r.counter("refusals_total", REFUSALS_HELP, &["reason"])?,
        lifecycle: r.counter(
            "lifecycle_actions_total",
            "Lifecycle hook calls, by call and result",
            &["call", "result"],
        )?,
        sweep_deleted: r.counter("sweep_deleted_total", "Nodes deleted by sweeps", &["mode"])?,
        sweep_skipped: r.counter(
            "sweep_skipped_total",
            "Sweep rows not deleted, by reason",
            &["reason"],
        )?,
        aws_denied: r.counter(
            "aws_denied_total",
            "AWS calls denied for a missing IAM permission, by IAM action",
            &["action"],
        )?,
        queue_lag: r.histogram(
            "queue_lag_seconds",
            "Time from SentTimestamp to processing",
            &["queue"],
            LAG_BUCKETS,
        )?,
        chef_latency: r.histogram(
            "chef_request_duration_seconds",
            "Chef API latency",
            &["method", "endpoint", "status"],
            LATENCY_BUCKETS,
        )?,
        aws_latency: r.histogram(
            "aws_request_duration_seconds",
            "AWS API latency",
            &["service", "operation", "result"],
            LATENCY_BUCKETS,
        )?,
        breaker_open: r.int_gauge_vec("circuit_breaker_open", BREAKER_HELP, &["dependency"])?,
        rate_limited: r.int_gauge("deletion_rate_limited", RATE_LIMITED_HELP)?,
        storm_brake: r.int_gauge("storm_brake_engaged", STORM_BRAKE_HELP)?,
        acl_backup_forbidden: r.int_gauge("acl_backup_forbidden", ACL_BACKUP_FORBIDDEN_HELP)?,
        in_flight: r.int_gauge("messages_in_flight", "Messages being processed now")?,
        sweep_candidates: r.int_gauge("sweep_candidates", "Candidates found by the last sweep")?,
        sweep_last_run: r.gauge("sweep_last_run_timestamp_seconds", SWEEP_LAST_RUN_HELP)?,
        sweep_duration: r.gauge("sweep_last_duration_seconds", "Duration of the last sweep")?,
        estate: r.counter(
            "estate_total",
            "Estate target results after Chef deletions, by target and result",
            &["target", "result"],
        )?,
        families: r.families.take(),
        registry: r.registry,
    })
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    // Registration can only fail on duplicate names, which is a programming
    // error caught by the unit test below.
    METRICS.get_or_init(|| build().expect("metric definitions are valid and unique"))
}

/// Records one Chef API request: `endpoint` is the first path segment,
/// `status` the HTTP code or `error` when no answer came.
pub fn chef_request(method: &str, endpoint: &str, status: &str, elapsed: Duration) {
    get()
        .chef_latency
        .with_label_values(&[method, endpoint, status])
        .observe(elapsed.as_secs_f64());
}

/// Records one AWS API call by service (e.g. `sqs`), operation (e.g.
/// `ReceiveMessage`) and whether it succeeded.
pub fn aws_request(service: &str, operation: &str, ok: bool, elapsed: Duration) {
    get()
        .aws_latency
        .with_label_values(&[service, operation, if ok { "ok" } else { "error" }])
        .observe(elapsed.as_secs_f64());
}

/// Text exposition format.
pub fn render() -> String {
    let mut buf = Vec::new();
    let families = get().registry.gather();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_register_and_render() {
        super::get()
            .messages
            .with_label_values(&["q", "termination"])
            .inc();
        let text = super::render();
        assert!(
            text.contains("nodereaper_messages_received_total"),
            "{text}"
        );
    }
}

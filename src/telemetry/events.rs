//! Typed telemetry events: one function per occurrence, so the metric name,
//! its label values and (where the occurrence is not already logged with
//! more context by its caller) the log line are written once, here, instead
//! of as label strings at every call site.
//!
//! The Prometheus registry itself is [`super::metrics`]; nothing outside
//! telemetry touches it except the `/metrics` endpoint that renders it.

use std::time::Duration;

use super::metrics;
use crate::ports::{Completion, Deleted};

/// Why a termination, or a sweep row, was not acted on
/// (`nodereaper_refusals_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// EC2 reports the instance alive and Auto Scaling is not terminating it.
    InstanceAlive,
    /// The instance carries the protection tag.
    InstanceTag,
    /// The node is protected (name pattern or Chef-side tag).
    Protected,
    /// The client is not the instance's own (validator, admin, protected name).
    ClientNotOwned,
    /// The node's Ohai zone is in another region than the one verified.
    OtherRegion,
    /// The node's Ohai account is not the one the instance was verified in.
    OtherAccount,
    /// The node or client changed between the backup read and the delete.
    Changed,
    /// A lifecycle message of a hook nodereaper does not own.
    ForeignHook,
    /// An event from an account that is neither ours nor configured.
    UnknownAccount,
    /// No routing rule names the event's Chef target, or the rules disagree.
    Unroutable,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::InstanceAlive => "instance_alive",
            Refusal::InstanceTag => "instance_tag",
            Refusal::Protected => "protected",
            Refusal::ClientNotOwned => "client_not_owned",
            Refusal::OtherRegion => "other_region",
            Refusal::OtherAccount => "other_account",
            Refusal::Changed => "changed",
            Refusal::ForeignHook => "foreign_hook",
            Refusal::UnknownAccount => "unknown_account",
            Refusal::Unroutable => "unroutable",
        }
    }
}

/// Counts a refusal. The caller logs it with the instance and the reason.
pub fn refused(why: Refusal) {
    metrics::get()
        .refusals
        .with_label_values(&[why.label()])
        .inc();
}

/// What a received message turned out to be
/// (`nodereaper_messages_received_total{queue,kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A termination of an instance (any shape).
    Termination,
    /// A test notification (acknowledged, nothing done).
    Test,
    /// A well-formed message that is not a termination.
    Other,
    /// Not a message nodereaper can read (dead-lettered).
    Unparseable,
}

impl MessageKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            MessageKind::Termination => "termination",
            MessageKind::Test => "test",
            MessageKind::Other => "other",
            MessageKind::Unparseable => "unparseable",
        }
    }
}

/// A message was received from `queue`, `lag` after it was sent.
pub fn message_received(queue: &str, kind: MessageKind, lag: Option<Duration>) {
    let m = metrics::get();
    if let Some(lag) = lag {
        m.queue_lag
            .with_label_values(&[queue])
            .observe(lag.as_secs_f64());
    }
    m.messages.with_label_values(&[queue, kind.label()]).inc();
}

/// How a message left the pipeline (`nodereaper_messages_total{queue,outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Done and deleted from the queue.
    Deleted,
    /// Moved to the dead-letter queue with a reason.
    DeadLettered,
    /// Left on the queue to be retried after a backoff.
    Retried,
    /// Left on the queue untouched while nodereaper's own setup is broken.
    Held,
}

impl MessageOutcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            MessageOutcome::Deleted => "deleted",
            MessageOutcome::DeadLettered => "dead_lettered",
            MessageOutcome::Retried => "retried",
            MessageOutcome::Held => "held",
        }
    }
}

/// A message of `queue` was finished with `outcome`.
pub fn message_finished(queue: &str, outcome: MessageOutcome) {
    metrics::get()
        .outcomes
        .with_label_values(&[queue, outcome.label()])
        .inc();
}

/// A Chef object nodereaper deletes (`nodereaper_chef_deletions_total{object,result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChefObject {
    /// A node object.
    Node,
    /// An API client.
    Client,
}

/// The node or client was deleted (or was already gone: 404).
pub fn chef_deleted(object: ChefObject, result: Deleted) {
    let object = match object {
        ChefObject::Node => "node",
        ChefObject::Client => "client",
    };
    metrics::get()
        .deletions
        .with_label_values(&[object, deleted_label(result)])
        .inc();
}

/// A termination routed to Chef target `target` was handled
/// (`nodereaper_target_terminations_total{target, outcome}`; the targets are
/// the configured names, so the label set is bounded).
pub fn target_termination(target: &str, outcome: &str) {
    metrics::get()
        .target_terminations
        .with_label_values(&[target, outcome])
        .inc();
}

/// Neither node nor client existed for a termination: nothing to delete.
pub fn registration_already_gone() {
    metrics::get()
        .deletions
        .with_label_values(&["registration", "already_gone"])
        .inc();
}

fn deleted_label(result: Deleted) -> &'static str {
    match result {
        Deleted::Removed => "removed",
        Deleted::AlreadyGone => "already_gone",
    }
}

/// An Auto Scaling lifecycle call (`nodereaper_lifecycle_actions_total{call,result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleCall {
    /// RecordLifecycleActionHeartbeat.
    Heartbeat,
    /// CompleteLifecycleAction with CONTINUE.
    Complete,
}

/// A lifecycle call ended: `Some(completion)`, or `None` when it failed.
pub fn lifecycle_call(call: LifecycleCall, result: Option<Completion>) {
    let (call, result) = match (call, result) {
        (LifecycleCall::Heartbeat, Some(Completion::Completed)) => ("heartbeat", "recorded"),
        (LifecycleCall::Complete, Some(Completion::Completed)) => ("complete", "completed"),
        (LifecycleCall::Heartbeat, Some(Completion::NoLongerActive)) => {
            ("heartbeat", "no_longer_active")
        }
        (LifecycleCall::Complete, Some(Completion::NoLongerActive)) => {
            ("complete", "no_longer_active")
        }
        (LifecycleCall::Heartbeat, None) => ("heartbeat", "error"),
        (LifecycleCall::Complete, None) => ("complete", "error"),
    };
    metrics::get()
        .lifecycle
        .with_label_values(&[call, result])
        .inc();
}

/// A worker started on a message (`nodereaper_messages_in_flight` up).
pub fn work_started() {
    metrics::get().in_flight.inc();
}

/// A worker finished a message (`nodereaper_messages_in_flight` down).
pub fn work_finished() {
    metrics::get().in_flight.dec();
}

/// Breaker `breaker` opened for `dependency` after `error`: receiving pauses
/// for `cooldown`, then the dependency is probed.
pub fn breaker_opened(breaker: &str, dependency: &str, cooldown: Duration, error: &str) {
    metrics::get()
        .breaker_open
        .with_label_values(&[dependency])
        .set(1);
    tracing::warn!(
        breaker,
        dependency,
        ?cooldown,
        error,
        "circuit breaker open: pausing receives"
    );
}

/// Breaker `breaker` closed: `dependency` answers again.
pub fn breaker_closed(breaker: &str, dependency: &str) {
    metrics::get()
        .breaker_open
        .with_label_values(&[dependency])
        .set(0);
    tracing::info!(
        breaker,
        dependency,
        "circuit breaker closed: dependency answers again"
    );
}

/// Deletions paused (`true`) or resumed (`false`) by the rate cap.
pub fn rate_limited(paused: bool) {
    metrics::get().rate_limited.set(i64::from(paused));
}

/// The storm brake engaged: no deletions until restart. The limiter logs
/// the error with the configured limits.
pub fn storm_brake_engaged() {
    metrics::get().storm_brake.set(1);
}

/// The Chef server refused nodereaper an ACL read (GRANT missing). The
/// journal entry's notes say which ACL; [`acl_backup_unavailable`] logs it
/// once at start-up.
pub fn acl_backup_forbidden() {
    metrics::get().acl_backup_forbidden.set(1);
}

/// Found at start-up: nodereaper may not read ACLs, so deletions go
/// without their ACL backup (`required` false) or are refused (`required`
/// true). Logged once.
pub fn acl_backup_unavailable(detail: &str, required: bool) {
    metrics::get().acl_backup_forbidden.set(1);
    if required {
        tracing::error!(
            detail,
            "ACL backup not permitted and journal.require_acl_backup = true: deletions are refused (messages held) until nodereaper's client has grant on nodes and clients (`nodereaper setup --print-iam-policy`)"
        );
    } else {
        tracing::warn!(
            detail,
            "ACL backup not permitted: deletions go ahead without the node's and client's ACLs (journal entries record acl_backup: forbidden; a restore cannot put them back). Grant it (`nodereaper setup --print-iam-policy`) or set journal.require_acl_backup = true to refuse such deletions"
        );
    }
}

/// Why a sweep did not delete a row (`nodereaper_sweep_skipped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepSkip {
    /// EC2, asked again just before deleting, no longer says gone.
    RecheckEc2,
    /// The node changed in Chef (checked in again) since the inventory.
    RecheckChef,
    /// Node and client were already gone.
    AlreadyGone,
    /// The deletion failed.
    Error,
}

/// A sweep row was not deleted.
pub fn sweep_skipped(why: SweepSkip) {
    let label = match why {
        SweepSkip::RecheckEc2 => "recheck_ec2",
        SweepSkip::RecheckChef => "recheck_chef",
        SweepSkip::AlreadyGone => "already_gone",
        SweepSkip::Error => "error",
    };
    metrics::get()
        .sweep_skipped
        .with_label_values(&[label])
        .inc();
}

/// A sweep deleted a node (`mode`: `apply`).
pub fn sweep_deleted(mode: &'static str) {
    metrics::get()
        .sweep_deleted
        .with_label_values(&[mode])
        .inc();
}

/// A sweep finished in `took` with `candidates` found; `skipped` counts the
/// rows not deleted, by verdict.
pub fn sweep_finished<'a>(
    candidates: usize,
    skipped: impl IntoIterator<Item = (&'a str, usize)>,
    took: Duration,
) {
    let m = metrics::get();
    m.sweep_candidates
        .set(i64::try_from(candidates).unwrap_or(i64::MAX));
    for (verdict, n) in skipped {
        m.sweep_skipped
            .with_label_values(&[verdict])
            .inc_by(n as u64);
    }
    m.sweep_last_run.set(chrono::Utc::now().timestamp() as f64);
    m.sweep_duration.set(took.as_secs_f64());
}

/// An AWS call was denied for a missing IAM permission: counts it under its
/// IAM action (`nodereaper_aws_denied_total{action}`). `action` comes from
/// the call table, so the label set is bounded; `None` (a call not in the
/// table) counts as `other`. The caller's error names the action.
pub fn aws_denied(action: Option<&'static str>) {
    metrics::get()
        .aws_denied
        .with_label_values(&[action.unwrap_or("other")])
        .inc();
}

/// An estate target finished its clean after a Chef deletion
/// (`nodereaper_estate_total{target, result="cleaned"|"left_alone"}`).
pub fn estate_cleaned(target: &str, node: &str, done: &crate::ports::estate::Cleaned) {
    let m = &metrics::get().estate;
    m.with_label_values(&[target, "cleaned"]).inc();
    tracing::info!(
        target_name = target,
        node,
        changed = done.changed,
        "estate target cleaned"
    );
    for why in &done.left_alone {
        m.with_label_values(&[target, "left_alone"]).inc();
        tracing::warn!(target_name = target, node, reason = %why, "estate target left an object alone");
    }
}

/// An estate target failed after the Chef deletion succeeded
/// (`nodereaper_estate_total{target, result="failed"}`).
pub fn estate_failed(target: &str, node: &str, error: &crate::ports::estate::EstateError) {
    metrics::get()
        .estate
        .with_label_values(&[target, "failed"])
        .inc();
    tracing::error!(target_name = target, node, error = %error, "estate target failed after the Chef deletion");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_under_their_labels() {
        let before = metrics::get()
            .refusals
            .with_label_values(&["other_region"])
            .get();
        refused(Refusal::OtherRegion);
        assert_eq!(
            metrics::get()
                .refusals
                .with_label_values(&["other_region"])
                .get(),
            before + 1
        );
        message_received("q-events-test", MessageKind::Unparseable, None);
        message_finished("q-events-test", MessageOutcome::DeadLettered);
        chef_deleted(ChefObject::Client, Deleted::AlreadyGone);
        let text = metrics::render();
        assert!(
            text.contains(
                r#"nodereaper_messages_received_total{kind="unparseable",queue="q-events-test"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"nodereaper_messages_total{outcome="dead_lettered",queue="q-events-test"} 1"#
            ),
            "{text}"
        );
    }
}

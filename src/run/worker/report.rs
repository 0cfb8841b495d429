//! The one log line per handled termination, and its count by Chef target.

use std::time::Instant;

use super::Work;
use crate::act::Plan;
use crate::run::{Disposition, Pipeline};
use crate::telemetry::events;

/// What one termination's handling found out, for its log line: the Chef
/// target it was routed to and what was (or would be) deleted.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) target: Option<String>,
    pub(super) plan: Option<Plan>,
}

impl Pipeline {
    /// The one log line per handled termination, and its count by target.
    pub(super) fn log_handled(
        &self,
        work: &Work<'_>,
        seen: &Seen,
        disposition: &Disposition,
        started: Instant,
    ) {
        let plan = seen.plan.as_ref();
        let target = seen.target.as_deref().unwrap_or("-");
        let (outcome, detail) = match disposition {
            Disposition::Delete { outcome } => (outcome.as_str(), ""),
            Disposition::DeadLetter { reason } => ("dead_lettered", reason.as_str()),
            Disposition::Retry { error } => ("retry", error.as_str()),
            Disposition::Hold { error } => ("held", error.as_str()),
        };
        if let Some(target) = &seen.target {
            events::target_termination(target, outcome);
        }
        let t = work.t;
        tracing::info!(
            instance_id = %t.instance_id,
            target,
            node = plan.map_or("-", |p| p.node_name.as_str()),
            client = plan.map_or("-", |p| p.client_name.as_str()),
            asg = t.auto_scaling_group.as_deref().unwrap_or("-"),
            origin = ?t.origin,
            message_id = %work.msg.message_id,
            outcome,
            detail = %detail,
            dry_run = self.settings.dry_run,
            duration_ms = started.elapsed().as_millis() as u64,
            "termination handled"
        );
    }
}

//! Which Chef target a verified termination belongs to (its reaper), or
//! how the message ends when no rule routes it.

use std::sync::Arc;

use super::Work;
use crate::act::targets::RouteError;
use crate::act::Reaper;
use crate::core::routing::{RouteInput, Rule};
use crate::run::{Checked, Disposition, Pipeline, Probe};
use crate::telemetry::events::{self, Refusal};

impl Pipeline {
    /// The Chef target of the termination (its reaper), or the DLQ with
    /// the reason: never guessed. A group tag or a target's lookup that
    /// failed ends as the error policy says.
    pub(super) async fn route(
        &self,
        work: &Work<'_>,
        checked: &Checked,
    ) -> Result<(String, Arc<Reaper>), Disposition> {
        let placement = &checked.regional.placement;
        let action = work.t.lifecycle.as_ref();
        let input = RouteInput {
            queue: work.source.queue.name(),
            queue_target: work.source.target.as_deref(),
            metadata: action.and_then(|a| a.metadata.as_deref()),
            account: placement.account.as_deref().or(work.t.account.as_deref()),
            region: &placement.region,
            group: (work.t.auto_scaling_group.as_deref())
                .or(action.map(|a| a.auto_scaling_group.as_str())),
            group_target: None,
        };
        // As `resume_estate` decides whether an earlier delivery counts.
        let msg = work.msg;
        let redelivered =
            (msg.sent_at).filter(|_| msg.receive_count >= 2 && !self.settings.dry_run);
        let routed = (self.targets)
            .route_event(&input, &work.t.instance_id, &checked.regional, redelivered)
            .await;
        match routed {
            Ok((route, reaper)) => {
                if route.rule != Rule::Only {
                    tracing::info!(instance_id = %work.t.instance_id, target = %route.target, rule = route.rule.as_str(), "routed to a Chef target");
                }
                Ok((route.target, reaper))
            }
            Err(e) => {
                let probe = match &e {
                    RouteError::Search { error, .. } | RouteError::Journal { error, .. } => {
                        Probe::after(error)
                    }
                    RouteError::Unroutable(_) => {
                        events::refused(Refusal::Unroutable);
                        Probe::Aws(work.placement.clone())
                    }
                    RouteError::GroupTag { .. } => Probe::Aws(work.placement.clone()),
                };
                let text = format!("instance {}: {e}", work.t.instance_id);
                Err(self.fail(&e, text, probe))
            }
        }
    }
}

//! EventBridge: the rule matching Auto Scaling terminations, and the queue
//! as its target.

use aws_sdk_eventbridge::types::{RuleState, Target};
use serde_json::{json, Value};

use super::compare::same_json_text;
use super::{
    ChangeAction, Known, Resource, ResourceKind, Setup, SetupError, DEFAULT_HOOK_NAME,
    EVENT_DETAIL_TYPES,
};

/// Id of the queue among the EventBridge rule's targets.
const EVENT_TARGET_ID: &str = "nodereaper-queue";

/// The EventBridge pattern: Auto Scaling terminations, restricted to
/// `groups` unless empty. Groups found by tag are a snapshot: re-run setup
/// when groups are added. Lifecycle actions only of `hook` (nodereaper's
/// own; another team's hook must not be completed by nodereaper):
/// `LifecycleHookName` equal to it, or absent (the "Terminate Successful"
/// events carry no hook).
pub fn event_pattern(groups: &[String], hook: &str) -> Value {
    let mut pattern = json!({
        "source": [crate::core::event::AUTOSCALING_SOURCE],
        "detail-type": EVENT_DETAIL_TYPES,
        "detail": {"LifecycleHookName": [hook, {"exists": false}]},
    });
    if !groups.is_empty() {
        pattern["detail"]["AutoScalingGroupName"] = json!(groups);
    }
    pattern
}

impl Setup<'_> {
    /// The rule `<name>-asg-terminate`: created, or its pattern and state
    /// repaired.
    pub(super) async fn rule(&mut self, groups: &[String]) -> Result<Known, SetupError> {
        let name = self.spec.rule_name();
        let resource = Resource::new(ResourceKind::EventbridgeRule, &name);
        let hook = self
            .spec
            .lifecycle_hook
            .as_ref()
            .map_or(DEFAULT_HOOK_NAME, |h| h.hook_name.as_str());
        let pattern = event_pattern(groups, hook).to_string();
        let current = match self.events.describe_rule().name(&name).send().await {
            Ok(out) => Some(out),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(SetupError::aws(&resource, "EventBridge", "DescribeRule", e)),
        };
        let mut diffs = Vec::new();
        if let Some(r) = &current {
            if !same_json_text(r.event_pattern(), &pattern) {
                diffs.push(format!(
                    "EventPattern: {} -> {pattern}",
                    r.event_pattern().unwrap_or("(unset)")
                ));
            }
            if r.state() != Some(&RuleState::Enabled) {
                diffs.push(format!(
                    "State: {:?} -> ENABLED",
                    r.state().map(RuleState::as_str)
                ));
            }
        }
        let existing_arn = current.as_ref().and_then(|r| r.arn()).map(str::to_string);
        if let (Some(arn), true) = (&existing_arn, diffs.is_empty()) {
            self.report.push(resource, ChangeAction::Unchanged, pattern);
            return Ok(Known {
                arn: arn.clone(),
                url: None,
                exists: true,
            });
        }
        let arn = if self.dry() {
            match existing_arn {
                Some(arn) => arn,
                None => self.predict_arn("events", &format!("rule/{name}")).await?,
            }
        } else {
            let out = self
                .events
                .put_rule()
                .name(&name)
                .event_pattern(&pattern)
                .state(RuleState::Enabled)
                .description("Auto Scaling terminations for nodereaper")
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "EventBridge", "PutRule", e))?;
            let arn = out.rule_arn().ok_or_else(|| {
                SetupError::answer(&resource, "EventBridge", "PutRule", "no RuleArn")
            })?;
            arn.to_string()
        };
        let detail = if diffs.is_empty() {
            pattern
        } else {
            diffs.join("; ")
        };
        self.report.push(
            resource,
            ChangeAction::planned(self.dry(), current.is_some()),
            detail,
        );
        Ok(Known {
            arn,
            url: None,
            exists: !self.dry() || current.is_some(),
        })
    }

    /// The queue among the rule's targets.
    pub(super) async fn rule_target(
        &mut self,
        rule: &Known,
        queue: &Known,
    ) -> Result<(), SetupError> {
        let rule_name = self.spec.rule_name();
        let resource = Resource::new(ResourceKind::EventbridgeTarget, &rule_name);
        let detail = format!("{EVENT_TARGET_ID} -> {}", queue.arn);
        let mut targets = Vec::new();
        if rule.exists {
            let out = self
                .events
                .list_targets_by_rule()
                .rule(&rule_name)
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "EventBridge", "ListTargetsByRule", e))?;
            targets = out.targets().to_vec();
        }
        if targets.iter().any(|t| t.arn() == queue.arn) {
            self.report.push(resource, ChangeAction::Unchanged, detail);
            return Ok(());
        }
        if !self.dry() {
            let target = Target::builder()
                .id(EVENT_TARGET_ID)
                .arn(&queue.arn)
                .build();
            let target = target.map_err(|e| SetupError::Invalid(format!("{resource}: {e}")))?;
            let out = self
                .events
                .put_targets()
                .rule(&rule_name)
                .targets(target)
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "EventBridge", "PutTargets", e))?;
            if let Some(failed) = out.failed_entries().first() {
                let msg = format!("{:?}: {:?}", failed.error_code(), failed.error_message());
                return Err(SetupError::answer(
                    &resource,
                    "EventBridge",
                    "PutTargets",
                    &msg,
                ));
            }
        }
        let exists = targets.iter().any(|t| t.id() == EVENT_TARGET_ID);
        self.report
            .push(resource, ChangeAction::planned(self.dry(), exists), detail);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_restricts_to_groups_only_when_given_and_always_to_our_hook() {
        let all = event_pattern(&[], "nodereaper-terminate");
        assert!(all["detail"].get("AutoScalingGroupName").is_none());
        assert_eq!(
            all["detail"]["LifecycleHookName"],
            json!(["nodereaper-terminate", {"exists": false}])
        );
        let p = event_pattern(&["web".into()], "h");
        assert_eq!(p["detail"]["AutoScalingGroupName"], json!(["web"]));
        assert_eq!(
            p["detail"]["LifecycleHookName"],
            json!(["h", {"exists": false}])
        );
        assert_eq!(p["detail-type"], json!(EVENT_DETAIL_TYPES));
    }
}

//! Auto Scaling: which groups to wire, and on each the notification
//! configuration and the termination lifecycle hook that publish to the topic.

use std::collections::BTreeSet;

use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::builders::DescribeAutoScalingGroupsFluentBuilder;
use aws_sdk_autoscaling::types::Filter;

use super::error::{step_err, StepOutcome};
use super::{
    ChangeAction, LifecycleHookSpec, Resource, ResourceKind, Setup, SetupError,
    TERMINATE_NOTIFICATION, TERMINATING_TRANSITION,
};

/// The lifecycle hook `hook` of `group`, named `<group>/<hook>`.
fn hook_resource(group: &str, hook: &LifecycleHookSpec) -> Resource {
    Resource::new(
        ResourceKind::AsgLifecycleHook,
        format!("{group}/{}", hook.hook_name),
    )
}

impl Setup<'_> {
    /// The groups to wire: the named ones (which must exist) and the tagged ones.
    pub(super) async fn groups(&self) -> Result<Vec<String>, SetupError> {
        let mut named = BTreeSet::new();
        for chunk in self.spec.asg_names.chunks(50) {
            let req = self
                .asg
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()));
            named.extend(self.group_names(req).await?);
        }
        let missing: Vec<_> = self
            .spec
            .asg_names
            .iter()
            .filter(|n| !named.contains(*n))
            .collect();
        if !missing.is_empty() {
            return Err(SetupError::Invalid(format!(
                "Auto Scaling group(s) not found: {missing:?}"
            )));
        }
        if let Some((key, value)) = &self.spec.asg_tag {
            // `tag:KEY = VALUE` matches the pair; tag-key + tag-value filters
            // would also match a group with KEY=other and another tag = VALUE.
            let filter = Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build();
            let tagged = self
                .group_names(self.asg.describe_auto_scaling_groups().filters(filter))
                .await?;
            if tagged.is_empty() {
                return Err(SetupError::Invalid(format!(
                    "no Auto Scaling group has the tag {key}={value}"
                )));
            }
            named.extend(tagged);
        }
        Ok(named.into_iter().collect())
    }

    /// The names of the groups `req` describes, all pages.
    async fn group_names(
        &self,
        req: DescribeAutoScalingGroupsFluentBuilder,
    ) -> Result<Vec<String>, SetupError> {
        let mut out = Vec::new();
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                SetupError::aws("asg-groups", "AutoScaling", "DescribeAutoScalingGroups", e)
            })?;
            out.extend(
                page.auto_scaling_groups()
                    .iter()
                    .filter_map(|g| g.auto_scaling_group_name())
                    .map(str::to_string),
            );
        }
        Ok(out)
    }

    /// The notification configuration (and the lifecycle hook) of each
    /// group; a call the endpoint does not implement is reported `Failed`.
    pub(super) async fn wire_groups(
        &mut self,
        groups: &[String],
        topic_arn: &str,
    ) -> Result<(), SetupError> {
        let spec = self.spec;
        for group in groups {
            let outcome = self.notification(group, topic_arn).await;
            let resource = Resource::new(ResourceKind::AsgNotification, group);
            self.record_step(resource, outcome)?;
            if let Some(hook) = &spec.lifecycle_hook {
                let outcome = self.hook(group, hook, topic_arn).await;
                self.record_step(hook_resource(group, hook), outcome)?;
            }
        }
        Ok(())
    }

    /// The group notifies the topic of EC2_INSTANCE_TERMINATE (keeping any
    /// other type it already sends to this topic: Put replaces the set).
    ///
    /// moto 5.2 implements neither DescribeNotificationConfigurations nor
    /// PutNotificationConfiguration (bare HTTP 500): against it this step is
    /// reported `Failed`.
    async fn notification(&self, group: &str, topic_arn: &str) -> StepOutcome {
        let resource = Resource::new(ResourceKind::AsgNotification, group);
        let mut types = BTreeSet::new();
        let mut pages = self
            .asg
            .describe_notification_configurations()
            .auto_scaling_group_names(group)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                step_err(
                    &resource,
                    "AutoScaling",
                    "DescribeNotificationConfigurations",
                    e,
                )
            })?;
            let ours = page
                .notification_configurations()
                .iter()
                .filter(|c| c.topic_arn() == Some(topic_arn));
            types.extend(
                ours.filter_map(|c| c.notification_type())
                    .map(str::to_string),
            );
        }
        let detail = format!("{TERMINATE_NOTIFICATION} -> {topic_arn}");
        if types.contains(TERMINATE_NOTIFICATION) {
            return Ok((ChangeAction::Unchanged, detail));
        }
        let exists = !types.is_empty();
        types.insert(TERMINATE_NOTIFICATION.to_string());
        if !self.dry() {
            self.asg
                .put_notification_configuration()
                .auto_scaling_group_name(group)
                .topic_arn(topic_arn)
                .set_notification_types(Some(types.into_iter().collect()))
                .send()
                .await
                .map_err(|e| {
                    step_err(&resource, "AutoScaling", "PutNotificationConfiguration", e)
                })?;
        }
        Ok((ChangeAction::planned(self.dry(), exists), detail))
    }

    /// The termination lifecycle hook notifying the topic.
    ///
    /// moto 5.2 stores neither NotificationTargetARN nor RoleARN (it returns
    /// fixed placeholder values), so against it a re-run reports `Updated`.
    async fn hook(&self, group: &str, hook: &LifecycleHookSpec, topic_arn: &str) -> StepOutcome {
        let resource = hook_resource(group, hook);
        let out = self
            .asg
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .lifecycle_hook_names(&hook.hook_name)
            .send()
            .await
            .map_err(|e| step_err(&resource, "AutoScaling", "DescribeLifecycleHooks", e))?;
        let current = out
            .lifecycle_hooks()
            .iter()
            .find(|h| h.lifecycle_hook_name() == Some(hook.hook_name.as_str()));
        let role = hook.role_arn.clone().unwrap_or_default();
        let mut want = vec![
            ("LifecycleTransition", TERMINATING_TRANSITION.to_string()),
            ("NotificationTargetARN", topic_arn.to_string()),
            ("RoleARN", role.clone()),
            ("HeartbeatTimeout", hook.heartbeat_timeout_secs.to_string()),
            ("DefaultResult", hook.default_result.clone()),
        ];
        let mut have = current.map(|h| {
            vec![
                h.lifecycle_transition().map(str::to_string),
                h.notification_target_arn().map(str::to_string),
                h.role_arn().map(str::to_string),
                h.heartbeat_timeout().map(|t| t.to_string()),
                h.default_result().map(str::to_string),
            ]
        });
        // Compared only when asked for: metadata someone else set is kept.
        if let Some(m) = &hook.notification_metadata {
            want.push(("NotificationMetadata", m.clone()));
            if let (Some(have), Some(h)) = (have.as_mut(), current) {
                have.push(h.notification_metadata().map(str::to_string));
            }
        }
        let diffs: Vec<String> = want
            .iter()
            .enumerate()
            .filter_map(|(i, (field, w))| {
                let h = have.as_ref().and_then(|h| h[i].as_deref());
                (h != Some(w.as_str()))
                    .then(|| format!("{field}: {} -> {w}", h.unwrap_or("(unset)")))
            })
            .collect();
        let summary = want
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        if diffs.is_empty() {
            return Ok((ChangeAction::Unchanged, summary));
        }
        if !self.dry() {
            self.asg
                .put_lifecycle_hook()
                .auto_scaling_group_name(group)
                .lifecycle_hook_name(&hook.hook_name)
                .lifecycle_transition(TERMINATING_TRANSITION)
                .notification_target_arn(topic_arn)
                .role_arn(role)
                .heartbeat_timeout(i32::try_from(hook.heartbeat_timeout_secs).unwrap_or(i32::MAX))
                .default_result(&hook.default_result)
                .set_notification_metadata(hook.notification_metadata.clone())
                .send()
                .await
                .map_err(|e| step_err(&resource, "AutoScaling", "PutLifecycleHook", e))?;
        }
        let detail = if current.is_some() {
            diffs.join("; ")
        } else {
            summary
        };
        Ok((ChangeAction::planned(self.dry(), current.is_some()), detail))
    }
}

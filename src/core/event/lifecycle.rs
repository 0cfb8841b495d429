//! Lifecycle hook messages (a hook with an SQS or SNS notification target):
//! `LifecycleTransition` = [`EC2_INSTANCE_TERMINATING`] is a termination that
//! carries the pending [`LifecycleAction`]; [`EC2_INSTANCE_LAUNCHING`] is
//! other. Also the pieces EventBridge lifecycle actions share with them: the
//! action's identity and the warm-pool exception.

use super::{
    other, Context, Event, LifecycleAction, Obj, Origin, ParseError, Termination, EXPECTED_NAME,
    EXPECTED_STRING,
};

/// Lifecycle transition of an instance Auto Scaling is terminating: the one
/// nodereaper acts on, and the one `setup`'s lifecycle hook is created for.
pub const EC2_INSTANCE_TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
/// Lifecycle transition of an instance Auto Scaling is launching (no action).
pub const EC2_INSTANCE_LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";

/// Parses a lifecycle hook message.
pub(super) fn parse(obj: &Obj<'_>, ctx: &Context) -> Result<Event, ParseError> {
    const EXPECTED: &str =
        "autoscaling:EC2_INSTANCE_TERMINATING or autoscaling:EC2_INSTANCE_LAUNCHING";
    match obj.str("LifecycleTransition", EXPECTED)? {
        EC2_INSTANCE_TERMINATING => {}
        EC2_INSTANCE_LAUNCHING => {
            return Ok(other(
                "autoscaling:EC2_INSTANCE_LAUNCHING lifecycle action",
                obj.display("EC2InstanceId"),
                obj.display("AutoScalingGroupName"),
            ))
        }
        _ => return Err(obj.invalid("LifecycleTransition", EXPECTED)),
    }
    if let Some(event) = returns_to_warm_pool(obj) {
        return Ok(event);
    }
    let action = lifecycle_action(obj)?;
    Ok(Event::Termination(Termination {
        instance_id: action.instance_id.clone(),
        auto_scaling_group: Some(action.auto_scaling_group.clone()),
        region: ctx.region.clone(),
        account: obj.account("AccountId")?.or_else(|| ctx.account.clone()),
        origin: Origin::LifecycleHook,
        lifecycle: Some(action),
        event_time: obj.time("Time").or(ctx.timestamp),
        wrapped_in_sns: ctx.wrapped_in_sns,
    }))
}

/// `Some(Other)` when a terminating lifecycle action only moves the instance
/// into the warm pool (it is stopped or hibernated, not terminated).
pub(super) fn returns_to_warm_pool(obj: &Obj<'_>) -> Option<Event> {
    (obj.display("Destination") == Some("WarmPool")).then(|| {
        other(
            "autoscaling:EC2_INSTANCE_TERMINATING lifecycle action returning the instance to the warm pool",
            obj.display("EC2InstanceId"),
            obj.display("AutoScalingGroupName"),
        )
    })
}

/// The lifecycle action named by a hook message or EventBridge detail.
pub(super) fn lifecycle_action(obj: &Obj<'_>) -> Result<LifecycleAction, ParseError> {
    Ok(LifecycleAction {
        auto_scaling_group: obj.str("AutoScalingGroupName", EXPECTED_NAME)?.to_owned(),
        hook_name: obj.str("LifecycleHookName", EXPECTED_NAME)?.to_owned(),
        token: obj
            .opt_str("LifecycleActionToken", EXPECTED_STRING)?
            .map(str::to_owned),
        instance_id: obj.instance_id("EC2InstanceId")?,
        metadata: obj
            .opt_str("NotificationMetadata", EXPECTED_STRING)?
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::*;
    use serde_json::json;

    #[test]
    fn lifecycle_hook_launching_doc_example_is_other() {
        assert_eq!(
            other_description(&hook_launching()),
            "autoscaling:EC2_INSTANCE_LAUNCHING lifecycle action for i-0598c7d356eba48d7 in asg my-asg"
        );
    }

    #[test]
    fn lifecycle_hook_terminating_carries_the_action() {
        let action = LifecycleAction {
            auto_scaling_group: "my-asg".into(),
            hook_name: "my-hook".into(),
            token: Some("71514b9d-6a40-4b26-8523-05e7ee35fa40".into()),
            instance_id: iid("i-0598c7d356eba48d7"),
            metadata: Some("hook message metadata".into()),
        };
        assert_eq!(
            termination(&hook_terminating()),
            Termination {
                instance_id: iid("i-0598c7d356eba48d7"),
                auto_scaling_group: Some("my-asg".into()),
                region: None,
                account: Some("123456789012".into()),
                origin: Origin::LifecycleHook,
                lifecycle: Some(action.clone()),
                event_time: time("2021-01-19T00:36:26.533Z"),
                wrapped_in_sns: false,
            }
        );
        // The lifecycle hook's region is that of the SNS topic.
        let Ok(Event::Termination(t)) = parse_default(&sns_wrap(&hook_terminating())) else {
            panic!()
        };
        assert_eq!(t.region.as_deref(), Some("us-west-2"));
        assert!(t.wrapped_in_sns);
        // The token is optional: CompleteLifecycleAction also takes the instance id.
        let body = with(&hook_terminating(), "LifecycleActionToken", None);
        let t = termination(&body);
        assert_eq!(
            t.lifecycle,
            Some(LifecycleAction {
                token: None,
                ..action.clone()
            })
        );
        // The hook's NotificationMetadata is carried (it may name the target).
        let body = with(
            &hook_terminating(),
            "NotificationMetadata",
            Some(json!("nodereaper:target=prod")),
        );
        assert_eq!(
            termination(&body)
                .lifecycle
                .and_then(|a| a.metadata)
                .as_deref(),
            Some("nodereaper:target=prod")
        );
    }

    #[test]
    fn lifecycle_hook_into_warm_pool_is_other() {
        let body = with(
            &hook_terminating(),
            "Origin",
            Some(json!("AutoScalingGroup")),
        );
        let into_pool = with(&body, "Destination", Some(json!("WarmPool")));
        assert_eq!(
            other_description(&into_pool),
            "autoscaling:EC2_INSTANCE_TERMINATING lifecycle action returning the instance to the warm pool for i-0598c7d356eba48d7 in asg my-asg"
        );
        let out_of_pool = with(&body, "Destination", Some(json!("EC2")));
        assert_eq!(termination(&out_of_pool).origin, Origin::LifecycleHook);
    }

    #[test]
    fn missing_or_invalid_required_fields() {
        assert_errors([
            (
                with(&hook_terminating(), "LifecycleHookName", None),
                r#"field "LifecycleHookName": expected a non-empty string, but it is missing"#,
            ),
            (
                with(&hook_terminating(), "AutoScalingGroupName", Some(json!(""))),
                r#"field "AutoScalingGroupName": expected a non-empty string, got an empty string"#,
            ),
            (
                with(&hook_terminating(), "LifecycleActionToken", Some(json!({}))),
                r#"field "LifecycleActionToken": expected a string, got an object"#,
            ),
            (
                with(
                    &hook_launching(),
                    "LifecycleTransition",
                    Some(json!("autoscaling:EC2_INSTANCE_STOPPING")),
                ),
                r#"field "LifecycleTransition": expected autoscaling:EC2_INSTANCE_TERMINATING or autoscaling:EC2_INSTANCE_LAUNCHING, got "autoscaling:EC2_INSTANCE_STOPPING""#,
            ),
        ]);
    }
}

//! EventBridge events, told apart by `source` and `detail-type`: the
//! `aws.autoscaling` terminate lifecycle action ([`TERMINATE_LIFECYCLE_ACTION`])
//! and [`TERMINATE_SUCCESSFUL`] are terminations; the `aws.ec2`
//! [`EC2_STATE_CHANGE`] is a termination for state `terminated` (and for
//! `shutting-down` when asked); every other event is other.

use chrono::{DateTime, Utc};

use super::lifecycle::{lifecycle_action, returns_to_warm_pool, EC2_INSTANCE_TERMINATING};
use super::{
    is_region, other, short, Context, Event, InstanceId, LifecycleAction, Obj, Origin, ParseError,
    ParseOptions, Termination, EXPECTED_REGION, EXPECTED_STRING,
};

/// `source` of Auto Scaling's events.
pub const AUTOSCALING_SOURCE: &str = "aws.autoscaling";
/// `source` of EC2's events.
pub const EC2_SOURCE: &str = "aws.ec2";
/// `detail-type` of a pending terminate lifecycle action: nodereaper acts on
/// it, and `setup`'s EventBridge rule matches it.
pub const TERMINATE_LIFECYCLE_ACTION: &str = "EC2 Instance-terminate Lifecycle Action";
/// `detail-type` of a completed termination: nodereaper acts on it, and
/// `setup`'s EventBridge rule matches it.
pub const TERMINATE_SUCCESSFUL: &str = "EC2 Instance Terminate Successful";
/// `detail-type` of an EC2 instance state change.
pub const EC2_STATE_CHANGE: &str = "EC2 Instance State-change Notification";

/// Parses an EventBridge event (anything with a `detail-type`).
pub(super) fn parse(
    obj: &Obj<'_>,
    opts: &ParseOptions,
    ctx: &Context,
) -> Result<Event, ParseError> {
    let source = obj.str("source", "an event source such as aws.autoscaling")?;
    let detail_type = obj.str("detail-type", "an event detail type")?;
    let header = Header::read(obj, ctx)?;
    match (source, detail_type) {
        (AUTOSCALING_SOURCE, TERMINATE_LIFECYCLE_ACTION) => {
            terminate_lifecycle_action(&obj.child("detail")?, &header)
        }
        (AUTOSCALING_SOURCE, TERMINATE_SUCCESSFUL) => {
            terminate_successful(&obj.child("detail")?, &header)
        }
        (EC2_SOURCE, EC2_STATE_CHANGE) => state_change(&obj.child("detail")?, opts, &header),
        _ => Ok(unhandled(obj, source, detail_type)),
    }
}

/// What every EventBridge event says about where and when it happened,
/// with the SNS envelope's values as fallbacks.
struct Header {
    region: Option<String>,
    account: Option<String>,
    event_time: Option<DateTime<Utc>>,
    wrapped_in_sns: bool,
}

impl Header {
    /// Reads `region`, `account` and `time`; a malformed region or account
    /// is an error, a malformed time is no time.
    fn read(obj: &Obj<'_>, ctx: &Context) -> Result<Self, ParseError> {
        let region = match obj.opt_str("region", EXPECTED_REGION)? {
            Some(r) if !is_region(r) => return Err(obj.invalid("region", EXPECTED_REGION)),
            r => r.map(str::to_owned).or_else(|| ctx.region.clone()),
        };
        Ok(Header {
            region,
            account: obj.account("account")?.or_else(|| ctx.account.clone()),
            event_time: obj.time("time").or(ctx.timestamp),
            wrapped_in_sns: ctx.wrapped_in_sns,
        })
    }

    /// The termination of `instance_id`, announced by this event.
    fn termination(
        &self,
        instance_id: InstanceId,
        auto_scaling_group: Option<String>,
        origin: Origin,
        lifecycle: Option<LifecycleAction>,
    ) -> Event {
        Event::Termination(Termination {
            instance_id,
            auto_scaling_group,
            region: self.region.clone(),
            account: self.account.clone(),
            origin,
            lifecycle,
            event_time: self.event_time,
            wrapped_in_sns: self.wrapped_in_sns,
        })
    }
}

/// "EC2 Instance-terminate Lifecycle Action": a termination carrying the
/// action, unless the instance only returns to the warm pool.
fn terminate_lifecycle_action(detail: &Obj<'_>, header: &Header) -> Result<Event, ParseError> {
    if let Some(transition) = detail.get("LifecycleTransition") {
        if transition.as_str() != Some(EC2_INSTANCE_TERMINATING) {
            return Err(detail.invalid("LifecycleTransition", EC2_INSTANCE_TERMINATING));
        }
    }
    if let Some(event) = returns_to_warm_pool(detail) {
        return Ok(event);
    }
    let action = lifecycle_action(detail)?;
    Ok(header.termination(
        action.instance_id.clone(),
        Some(action.auto_scaling_group.clone()),
        Origin::EventBridgeLifecycleAction,
        Some(action),
    ))
}

/// "EC2 Instance Terminate Successful": a termination, no action pending.
fn terminate_successful(detail: &Obj<'_>, header: &Header) -> Result<Event, ParseError> {
    Ok(header.termination(
        detail.instance_id("EC2InstanceId")?,
        detail
            .opt_str("AutoScalingGroupName", EXPECTED_STRING)?
            .map(str::to_owned),
        Origin::EventBridgeTerminateSuccessful,
        None,
    ))
}

/// "EC2 Instance State-change Notification": a termination for `terminated`,
/// and for `shutting-down` when [`ParseOptions::shutting_down_is_termination`].
fn state_change(
    detail: &Obj<'_>,
    opts: &ParseOptions,
    header: &Header,
) -> Result<Event, ParseError> {
    let instance_id = detail.instance_id("instance-id")?;
    let state = detail.str("state", "an EC2 instance state such as terminated")?;
    if state == "terminated" || (state == "shutting-down" && opts.shutting_down_is_termination) {
        return Ok(header.termination(instance_id, None, Origin::Ec2StateChange, None));
    }
    let note = if state == "shutting-down" {
        " (shutting_down_is_termination is off)"
    } else {
        ""
    };
    Ok(Event::Other {
        description: format!("EC2 instance {instance_id} is now {}{note}", short(state)),
    })
}

/// Any other event: described by source, detail type and (when the detail
/// names them) instance and group.
fn unhandled(obj: &Obj<'_>, source: &str, detail_type: &str) -> Event {
    let detail = obj.child("detail").ok();
    let field = |key| detail.as_ref().and_then(|d| d.display(key));
    let what = format!("{} \"{}\"", short(source), short(detail_type));
    other(&what, field("EC2InstanceId"), field("AutoScalingGroupName"))
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::*;
    use serde_json::json;

    #[test]
    fn eventbridge_terminate_lifecycle_action_doc_example() {
        assert_eq!(
            termination(EB_TERMINATE_ACTION),
            Termination {
                instance_id: iid("i-1234567890abcdef0"),
                auto_scaling_group: Some("my-asg".into()),
                region: Some("us-west-2".into()),
                account: Some("123456789012".into()),
                origin: Origin::EventBridgeLifecycleAction,
                lifecycle: Some(LifecycleAction {
                    auto_scaling_group: "my-asg".into(),
                    hook_name: "my-lifecycle-hook".into(),
                    token: Some("87654321-4321-4321-4321-210987654321".into()),
                    instance_id: iid("i-1234567890abcdef0"),
                    metadata: Some("additional-info".into()),
                }),
                // The example's time is the placeholder "yyyy-mm-ddThh:mm:ssZ".
                event_time: None,
                wrapped_in_sns: false,
            }
        );
    }

    #[test]
    fn eventbridge_terminate_successful_doc_example() {
        assert_eq!(
            termination(EB_TERMINATE_OK),
            Termination {
                instance_id: iid("i-1234567890abcdef0"),
                auto_scaling_group: Some("my-auto-scaling-group".into()),
                region: Some("us-west-2".into()),
                account: Some("123456789012".into()),
                origin: Origin::EventBridgeTerminateSuccessful,
                lifecycle: None,
                event_time: None,
                wrapped_in_sns: false,
            }
        );
    }

    #[test]
    fn eventbridge_other_doc_examples() {
        for (body, kind) in [
            (EB_LAUNCH_ACTION, "EC2 Instance-launch Lifecycle Action"),
            (EB_LAUNCH_OK, "EC2 Instance Launch Successful"),
            (EB_LAUNCH_FAILED, "EC2 Instance Launch Unsuccessful"),
            (EB_TERMINATE_FAILED, "EC2 Instance Terminate Unsuccessful"),
        ] {
            let asg = match body {
                EB_LAUNCH_ACTION => "my-asg",
                _ => "my-auto-scaling-group",
            };
            assert_eq!(
                other_description(body),
                format!("aws.autoscaling \"{kind}\" for i-1234567890abcdef0 in asg {asg}")
            );
        }
        assert_eq!(
            other_description(EB_REFRESH_CHECKPOINT),
            "aws.autoscaling \"EC2 Auto Scaling Instance Refresh Checkpoint Reached\" in asg my-auto-scaling-group"
        );
        let foreign = with(EB_TERMINATE_OK, "source", Some(json!("aws.s3")));
        let foreign = with(&foreign, "detail", Some(json!("not an object")));
        assert_eq!(
            other_description(&foreign),
            "aws.s3 \"EC2 Instance Terminate Successful\""
        );
    }

    #[test]
    fn eventbridge_warm_pool_doc_examples() {
        assert!(other_description(EB_WARM_POOL_NEW).starts_with("aws.autoscaling"));
        assert_eq!(
            other_description(EB_WARM_POOL_RETURN),
            "autoscaling:EC2_INSTANCE_TERMINATING lifecycle action returning the instance to the warm pool for i-1234567890abcdef0 in asg my-asg"
        );
        // An instance leaving the warm pool to be terminated.
        let body = with(
            EB_WARM_POOL_RETURN,
            "detail/Origin",
            Some(json!("WarmPool")),
        );
        let body = with(&body, "detail/Destination", Some(json!("EC2")));
        let t = termination(&body);
        assert_eq!(t.event_time, time("2022-03-28T00:12:37.214Z"));
        assert_eq!(
            t.lifecycle.map(|l| l.hook_name),
            Some("my-termination-lifecycle-hook".into())
        );
    }

    #[test]
    fn ec2_state_change_doc_examples() {
        assert_eq!(
            other_description(EC2_PENDING),
            "EC2 instance i-1234567890abcdef0 is now pending"
        );
        assert_eq!(
            other_description(EC2_PENDING_SHORT_ID),
            "EC2 instance i-abcd1111 is now pending"
        );
        assert_eq!(
            termination(&ec2_state("terminated")),
            Termination {
                instance_id: iid("i-1234567890abcdef0"),
                auto_scaling_group: None,
                region: Some("us-east-1".into()),
                account: Some("123456789012".into()),
                origin: Origin::Ec2StateChange,
                lifecycle: None,
                event_time: time("2021-11-11T21:29:54Z"),
                wrapped_in_sns: false,
            }
        );
        let short = with(
            EC2_PENDING_SHORT_ID,
            "detail/state",
            Some(json!("terminated")),
        );
        assert_eq!(termination(&short).instance_id, "i-abcd1111");
    }

    #[test]
    fn ec2_shutting_down_depends_on_the_option() {
        let body = ec2_state("shutting-down");
        assert_eq!(
            other_description(&body),
            "EC2 instance i-1234567890abcdef0 is now shutting-down (shutting_down_is_termination is off)"
        );
        let opts = ParseOptions {
            shutting_down_is_termination: true,
        };
        for body in [body.clone(), sns_wrap(&body)] {
            let Ok(Event::Termination(t)) = parse(&body, &opts) else {
                panic!("{body}")
            };
            assert_eq!(t.origin, Origin::Ec2StateChange);
        }
        for state in ["pending", "running", "stopping", "stopped"] {
            assert!(matches!(
                parse(&ec2_state(state), &opts),
                Ok(Event::Other { .. })
            ));
        }
    }

    #[test]
    fn missing_or_invalid_required_fields() {
        assert_errors([
            (
                with(EB_TERMINATE_ACTION, "detail/LifecycleHookName", None),
                r#"field "detail.LifecycleHookName": expected a non-empty string, but it is missing"#,
            ),
            (
                with(
                    EB_TERMINATE_ACTION,
                    "detail/LifecycleTransition",
                    Some(json!(EC2_INSTANCE_LAUNCHING)),
                ),
                r#"field "detail.LifecycleTransition": expected autoscaling:EC2_INSTANCE_TERMINATING, got "autoscaling:EC2_INSTANCE_LAUNCHING""#,
            ),
            (
                with(EB_TERMINATE_OK, "detail", None),
                r#"field "detail": expected a JSON object, but it is missing"#,
            ),
            (
                with(EB_TERMINATE_OK, "detail", Some(json!("x"))),
                r#"field "detail": expected a JSON object, got "x""#,
            ),
            (
                with(EB_TERMINATE_OK, "source", None),
                r#"field "source": expected an event source such as aws.autoscaling, but it is missing"#,
            ),
            (
                with(EB_TERMINATE_OK, "region", Some(json!("moon-base"))),
                r#"field "region": expected an AWS region like us-east-1, got "moon-base""#,
            ),
            (
                with(&ec2_state("terminated"), "detail/state", Some(json!(3))),
                r#"field "detail.state": expected an EC2 instance state such as terminated, got 3"#,
            ),
        ]);
    }
}

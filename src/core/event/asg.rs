//! Classic Auto Scaling notifications (`PutNotificationConfiguration`): an
//! object whose `Event` names the notification type. Only
//! [`EC2_INSTANCE_TERMINATE`] is a termination; [`TEST_NOTIFICATION`] (also
//! sent when a lifecycle hook is created) is a test; the other documented
//! types are other.

use serde_json::Value;

use super::{
    arn_account, arn_region, describe, other, Context, Event, Obj, Origin, ParseError, Termination,
    EXPECTED_STRING,
};

/// Notification type of an instance that Auto Scaling terminated: the one
/// nodereaper acts on, and the one `setup` subscribes a group's topic to.
pub const EC2_INSTANCE_TERMINATE: &str = "autoscaling:EC2_INSTANCE_TERMINATE";
/// Notification type of a termination that failed (no action).
pub const EC2_INSTANCE_TERMINATE_ERROR: &str = "autoscaling:EC2_INSTANCE_TERMINATE_ERROR";
/// Notification type of a launched instance (no action).
pub const EC2_INSTANCE_LAUNCH: &str = "autoscaling:EC2_INSTANCE_LAUNCH";
/// Notification type of a launch that failed (no action).
pub const EC2_INSTANCE_LAUNCH_ERROR: &str = "autoscaling:EC2_INSTANCE_LAUNCH_ERROR";
/// `Event` of the test message sent when a notification configuration or a
/// lifecycle hook is created.
pub const TEST_NOTIFICATION: &str = "autoscaling:TEST_NOTIFICATION";

/// The notification types that are well-formed but need no action.
const OTHER_EVENTS: [&str; 3] = [
    EC2_INSTANCE_TERMINATE_ERROR,
    EC2_INSTANCE_LAUNCH,
    EC2_INSTANCE_LAUNCH_ERROR,
];

/// Whether `obj` is a test notification (`Event` = [`TEST_NOTIFICATION`]).
pub(super) fn is_test_notification(obj: &Obj<'_>) -> bool {
    obj.map.get("Event").and_then(Value::as_str) == Some(TEST_NOTIFICATION)
}

/// The [`Event::Test`] for a test notification.
pub(super) fn test_notification(obj: &Obj<'_>) -> Event {
    Event::Test {
        description: describe(TEST_NOTIFICATION, None, obj.display("AutoScalingGroupName")),
    }
}

/// Parses an Auto Scaling notification (other than a test notification).
pub(super) fn parse(obj: &Obj<'_>, ctx: &Context) -> Result<Event, ParseError> {
    const EXPECTED: &str =
        "an Auto Scaling notification type such as autoscaling:EC2_INSTANCE_TERMINATE";
    let event = obj.str("Event", EXPECTED)?;
    if OTHER_EVENTS.contains(&event) {
        return Ok(other(
            event,
            obj.display("EC2InstanceId"),
            obj.display("AutoScalingGroupName"),
        ));
    }
    if event != EC2_INSTANCE_TERMINATE {
        return Err(obj.invalid("Event", EXPECTED));
    }
    let group_arn = obj.opt_str("AutoScalingGroupARN", EXPECTED_STRING)?;
    let zone_region = obj
        .get("Details")
        .and_then(|d| d.get("Availability Zone"))
        .and_then(Value::as_str)
        .and_then(crate::core::zone::region_of_zone);
    Ok(Event::Termination(Termination {
        instance_id: obj.instance_id("EC2InstanceId")?,
        auto_scaling_group: obj
            .opt_str("AutoScalingGroupName", EXPECTED_STRING)?
            .map(str::to_owned),
        region: group_arn
            .and_then(arn_region)
            .or(zone_region)
            .or_else(|| ctx.region.clone()),
        account: match group_arn.and_then(arn_account) {
            Some(a) => Some(a),
            None => obj.account("AccountId")?.or_else(|| ctx.account.clone()),
        },
        origin: Origin::AsgNotification,
        lifecycle: None,
        event_time: obj.time("Time").or(ctx.timestamp),
        wrapped_in_sns: ctx.wrapped_in_sns,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::*;
    use serde_json::json;

    #[test]
    fn asg_notification_launch_doc_example_is_other() {
        assert_eq!(
            other_description(&asg_launch()),
            "autoscaling:EC2_INSTANCE_LAUNCH for i-0598c7d356eba48d7 in asg my-asg"
        );
    }

    #[test]
    fn asg_notification_terminate_is_a_termination() {
        let t = termination(&asg_terminate());
        assert_eq!(
            t,
            Termination {
                instance_id: iid("i-0598c7d356eba48d7"),
                auto_scaling_group: Some("my-asg".into()),
                // The documented ARN has the placeholder "region".
                region: None,
                account: Some("123456789012".into()),
                origin: Origin::AsgNotification,
                lifecycle: None,
                event_time: time("2016-09-30T19:00:36.414Z"),
                wrapped_in_sns: false,
            }
        );
        let arn = "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:042cba90-ad2f-431c-9b4d-6d9055bcc9fb:autoScalingGroupName/my-asg";
        let body = with(&asg_terminate(), "AutoScalingGroupARN", Some(json!(arn)));
        assert_eq!(termination(&body).region.as_deref(), Some("eu-west-1"));
        // The group's ARN beats the topic's region.
        let Ok(Event::Termination(t)) = parse_default(&sns_wrap(&body)) else {
            panic!()
        };
        assert_eq!(t.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn asg_notification_other_types() {
        for (event, instance) in [
            (
                "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
                "i-0598c7d356eba48d7",
            ),
            ("autoscaling:EC2_INSTANCE_LAUNCH_ERROR", ""),
        ] {
            let body = with(&asg_launch(), "Event", Some(json!(event)));
            let body = with(&body, "EC2InstanceId", Some(json!(instance)));
            let expected = match instance {
                "" => format!("{event} in asg my-asg"),
                id => format!("{event} for {id} in asg my-asg"),
            };
            assert_eq!(other_description(&body), expected);
        }
    }

    #[test]
    fn test_notifications() {
        let expected = Event::Test {
            description: "autoscaling:TEST_NOTIFICATION in asg my-asg".into(),
        };
        assert_eq!(parse_both(&doc_text_to_json(HOOK_TEST_TEXT)), expected);
        let notification = with(&asg_launch(), "Event", Some(json!(TEST_NOTIFICATION)));
        assert_eq!(parse_both(&notification), expected);
        assert_eq!(
            parse_both(&format!("{{{HOOK_TEST_PAIR}}}")),
            Event::Test {
                description: TEST_NOTIFICATION.into()
            }
        );
    }

    #[test]
    fn missing_or_invalid_required_fields() {
        assert_errors([
            (
                with(&asg_terminate(), "EC2InstanceId", None),
                r#"field "EC2InstanceId": expected an EC2 instance id like i-0123456789abcdef0, but it is missing"#,
            ),
            (
                with(&asg_terminate(), "AutoScalingGroupName", Some(json!(7))),
                r#"field "AutoScalingGroupName": expected a string, got 7"#,
            ),
            (
                with(
                    &asg_launch(),
                    "Event",
                    Some(json!("autoscaling:EC2_INSTANCE_REBOOT")),
                ),
                r#"field "Event": expected an Auto Scaling notification type such as autoscaling:EC2_INSTANCE_TERMINATE, got "autoscaling:EC2_INSTANCE_REBOOT""#,
            ),
            (
                with(&asg_launch(), "Event", Some(json!(true))),
                r#"field "Event": expected an Auto Scaling notification type such as autoscaling:EC2_INSTANCE_TERMINATE, got true"#,
            ),
        ]);
    }
}

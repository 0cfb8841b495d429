//! Parsing SQS message bodies into typed events.
//!
//! nodereaper's queue can receive any of these shapes, each parsed in its own
//! file:
//!
//! * **Auto Scaling notifications** (`PutNotificationConfiguration`, `asg.rs`):
//!   an object with `Event` = `autoscaling:EC2_INSTANCE_TERMINATE` (a
//!   termination), `..._TERMINATE_ERROR`, `..._LAUNCH`, `..._LAUNCH_ERROR`
//!   (other) or `autoscaling:TEST_NOTIFICATION` (test).
//! * **Lifecycle hook messages** (hook with an SQS or SNS notification
//!   target, `lifecycle.rs`): `LifecycleTransition` =
//!   `autoscaling:EC2_INSTANCE_TERMINATING` is a termination carrying the
//!   lifecycle action; `..._LAUNCHING` is other. The test message a hook
//!   sends when created has `Event: autoscaling:TEST_NOTIFICATION`.
//! * **EventBridge events** (`eventbridge.rs`): `aws.autoscaling` "EC2
//!   Instance-terminate Lifecycle Action" and "EC2 Instance Terminate
//!   Successful" are terminations; `aws.ec2` "EC2 Instance State-change
//!   Notification" is a termination for state `terminated` (and for
//!   `shutting-down` when [`ParseOptions::shutting_down_is_termination`] is
//!   set). Every other EventBridge event is other.
//! * Any of the above inside an **SNS envelope** (`Type: Notification`, the
//!   payload as a JSON *string* in `Message`, `sns.rs`), or without one (raw
//!   message delivery, or SQS as the direct target).
//!
//! A lifecycle action that returns the instance to a warm pool
//! (`Destination: WarmPool`) is *not* a termination: the instance lives on,
//! stopped, and will come back with its Chef registration.
//!
//! Unknown extra fields are ignored; the fields an event needs are checked
//! (`fields.rs`), and errors name the field (as a path such as
//! `Message.detail.instance-id`) and what was expected. [`parse`] never
//! panics.
//!
//! The event names are public constants ([`EC2_INSTANCE_TERMINATE`],
//! [`EC2_INSTANCE_TERMINATING`], [`TERMINATE_LIFECYCLE_ACTION`], ...) so that
//! `setup`, which subscribes to them, names the same strings.

use chrono::{DateTime, Utc};
use serde_json::Value;

use self::fields::{field_list, quote, short, Obj};

mod asg;
mod eventbridge;
mod fields;
mod lifecycle;
mod sns;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testdata;

pub use self::asg::{
    EC2_INSTANCE_LAUNCH, EC2_INSTANCE_LAUNCH_ERROR, EC2_INSTANCE_TERMINATE,
    EC2_INSTANCE_TERMINATE_ERROR, TEST_NOTIFICATION,
};
pub use self::eventbridge::{
    AUTOSCALING_SOURCE, EC2_SOURCE, EC2_STATE_CHANGE, TERMINATE_LIFECYCLE_ACTION,
    TERMINATE_SUCCESSFUL,
};
pub use self::lifecycle::{EC2_INSTANCE_LAUNCHING, EC2_INSTANCE_TERMINATING};
pub use crate::core::ids::{is_instance_id, InstanceId};

/// The identity of one pending Auto Scaling lifecycle action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LifecycleAction {
    /// The group whose hook holds the instance.
    pub auto_scaling_group: String,
    /// The lifecycle hook's name.
    pub hook_name: String,
    /// The action's token; optional because `CompleteLifecycleAction` also
    /// accepts the instance id.
    pub token: Option<String>,
    /// The instance the action is pending for.
    pub instance_id: InstanceId,
    /// The hook's `NotificationMetadata` (up to 1023 characters), when the
    /// message carries it: it may name the Chef target
    /// ([`crate::core::routing`]).
    pub metadata: Option<String>,
}

/// Knobs for [`parse`].
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Treat an EC2 state change to `shutting-down` as a termination (it is
    /// otherwise [`Event::Other`]; `terminated` always counts).
    pub shutting_down_is_termination: bool,
}

/// Which kind of message announced a termination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Auto Scaling notification `autoscaling:EC2_INSTANCE_TERMINATE`.
    AsgNotification,
    /// Lifecycle hook message `autoscaling:EC2_INSTANCE_TERMINATING`.
    LifecycleHook,
    /// EventBridge "EC2 Instance-terminate Lifecycle Action".
    EventBridgeLifecycleAction,
    /// EventBridge "EC2 Instance Terminate Successful".
    EventBridgeTerminateSuccessful,
    /// EventBridge "EC2 Instance State-change Notification".
    Ec2StateChange,
}

/// An instance that is terminating or terminated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Termination {
    /// The instance that terminated.
    pub instance_id: InstanceId,
    /// The instance's Auto Scaling group, when the message names it.
    pub auto_scaling_group: Option<String>,
    /// From the event's `region`, else the region of `AutoScalingGroupARN`,
    /// else the Availability Zone in the notification's `Details`, else the
    /// region of the SNS `TopicArn`. `None` (a raw lifecycle hook message):
    /// the queue's region.
    pub region: Option<String>,
    /// The AWS account the instance lives in: EventBridge `account`, the
    /// account of `AutoScalingGroupARN`, `AccountId`, else the account of the
    /// SNS `TopicArn`. `None`: the account of nodereaper's own credentials.
    pub account: Option<String>,
    /// The kind of message that announced the termination.
    pub origin: Origin,
    /// The pending lifecycle action to complete, for lifecycle hook messages
    /// and EventBridge lifecycle actions.
    pub lifecycle: Option<LifecycleAction>,
    /// `Time` / `time` of the event, else the SNS `Timestamp`; `None` when
    /// neither is a valid RFC 3339 time.
    pub event_time: Option<DateTime<Utc>>,
    /// Whether the payload came inside an SNS envelope.
    pub wrapped_in_sns: bool,
}

/// What a message body means to nodereaper.
// A batch holds at most ten events: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Event {
    /// Deregister this instance.
    Termination(Termination),
    /// A test notification (new notification configuration or lifecycle hook).
    Test {
        /// What was tested, e.g. `autoscaling:TEST_NOTIFICATION in asg my-asg`.
        description: String,
    },
    /// A well-formed event that needs no action, e.g.
    /// `autoscaling:EC2_INSTANCE_LAUNCH for i-0598c7d356eba48d7 in asg my-asg`.
    Other {
        /// What the event was, for the log.
        description: String,
    },
}

/// Why a message body could not be understood.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// The body is not JSON at all.
    #[error("message body: expected JSON, got {got} ({reason})")]
    NotJson {
        /// The start of the body, quoted.
        got: String,
        /// serde_json's description of the syntax error.
        reason: String,
    },
    /// JSON, but not an object where one is needed.
    #[error("{location}: expected a JSON object, got {got}")]
    NotAnObject {
        /// The value's place, e.g. `message body` or `field "Message"`.
        location: String,
        /// What was there instead.
        got: String,
    },
    /// An object without any of the keys that identify a known message.
    #[error(
        "{location}: not a recognised message (expected \"Type\" of an SNS envelope, \
         \"Event\" of an Auto Scaling notification, \"LifecycleTransition\" of a lifecycle \
         hook message or \"detail-type\" of an EventBridge event); it has fields {fields}"
    )]
    Unrecognised {
        /// The object's place, e.g. `message body` or `field "Message"`.
        location: String,
        /// The object's keys (the first few), quoted.
        fields: String,
    },
    /// A required field is absent (or `null`).
    #[error("field \"{field}\": expected {expected}, but it is missing")]
    Missing {
        /// The field's path, e.g. `Message.detail.instance-id`.
        field: String,
        /// What the field should hold.
        expected: &'static str,
    },
    /// A field has the wrong type or value.
    #[error("field \"{field}\": expected {expected}, got {got}")]
    Invalid {
        /// The field's path, e.g. `Message.detail.instance-id`.
        field: String,
        /// What the field should hold.
        expected: &'static str,
        /// What it held, quoted and shortened.
        got: String,
    },
}

/// Parses one SQS message body.
pub fn parse(body: &str, opts: &ParseOptions) -> Result<Event, ParseError> {
    let value: Value = serde_json::from_str(body).map_err(|e| ParseError::NotJson {
        got: quote(body),
        reason: e.to_string(),
    })?;
    let obj = Obj::new(&value, "", "message body")?;
    if sns::is_envelope(&obj) {
        sns::parse(&obj, opts)
    } else {
        parse_payload(&obj, opts, &Context::default())
    }
}

const EXPECTED_NAME: &str = "a non-empty string";
const EXPECTED_STRING: &str = "a string";
const EXPECTED_REGION: &str = "an AWS region like us-east-1";
const EXPECTED_ACCOUNT: &str = "a 12-digit AWS account id";

/// What the SNS envelope (if any) adds to the payload.
#[derive(Default)]
struct Context {
    wrapped_in_sns: bool,
    /// Region of the topic, a fallback for payloads that carry none.
    region: Option<String>,
    /// Account of the topic, likewise.
    account: Option<String>,
    /// `Timestamp` of the notification, a fallback for the event time.
    timestamp: Option<DateTime<Utc>>,
}

/// Dispatches on the keys that identify each payload shape.
fn parse_payload(obj: &Obj<'_>, opts: &ParseOptions, ctx: &Context) -> Result<Event, ParseError> {
    let map = obj.map;
    if map.contains_key("detail-type") {
        eventbridge::parse(obj, opts, ctx)
    } else if asg::is_test_notification(obj) {
        // Sent both for notification configurations and for lifecycle hooks.
        Ok(asg::test_notification(obj))
    } else if map.contains_key("LifecycleTransition") {
        lifecycle::parse(obj, ctx)
    } else if map.contains_key("Event") {
        asg::parse(obj, ctx)
    } else {
        Err(ParseError::Unrecognised {
            location: obj.location.clone(),
            fields: field_list(map),
        })
    }
}

fn other(what: &str, instance: Option<&str>, group: Option<&str>) -> Event {
    Event::Other {
        description: describe(what, instance, group),
    }
}

/// `"<what> for <instance> in asg <group>"`, leaving out what is unknown.
fn describe(what: &str, instance: Option<&str>, group: Option<&str>) -> String {
    let mut text = what.to_owned();
    if let Some(instance) = instance {
        text.push_str(" for ");
        text.push_str(&short(instance));
    }
    if let Some(group) = group {
        text.push_str(" in asg ");
        text.push_str(&short(group));
    }
    text
}

/// The region part of an ARN (`arn:partition:service:region:...`), if it
/// looks like one.
fn arn_region(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    (parts.next() == Some("arn"))
        .then(|| parts.nth(2))
        .flatten()
        .filter(|r| is_region(r))
        .map(str::to_owned)
}

/// The account part of an ARN (`arn:partition:service:region:account:...`),
/// if it is a 12-digit account id.
fn arn_account(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    (parts.next() == Some("arn"))
        .then(|| parts.nth(3))
        .flatten()
        .filter(|a| is_account_id(a))
        .map(str::to_owned)
}

/// Whether `s` is an AWS account id: exactly 12 ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` looks like an AWS region (`us-east-1`, `us-gov-west-1`, ...).
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::testdata::*;
    use super::*;
    use serde_json::{json, Map};

    #[test]
    fn not_json_or_not_an_object() {
        assert_eq!(
            parse_default("foo"),
            Err(ParseError::NotJson {
                got: "\"foo\"".into(),
                reason: "expected ident at line 1 column 2".into(),
            })
        );
        assert_eq!(
            error(""),
            r#"message body: expected JSON, got "" (EOF while parsing a value at line 1 column 0)"#
        );
        assert_eq!(
            error("[]"),
            "message body: expected a JSON object, got an array"
        );
        assert_eq!(
            error("\"i-abcd1111\""),
            r#"message body: expected a JSON object, got "i-abcd1111""#
        );
        assert_eq!(
            error("null"),
            "message body: expected a JSON object, got null"
        );
        let long = format!("{{\"EC2InstanceId\": \"{}", "x".repeat(10_000));
        let message = error(&long);
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("EOF while parsing"), "{message}");
    }

    #[test]
    fn unrecognised_objects() {
        assert!(error("{}").ends_with("it has fields none"));
        let many: Map<String, Value> = (0..20).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let message = error(&Value::Object(many).to_string());
        assert!(
            message.starts_with("message body: not a recognised message"),
            "{message}"
        );
        assert!(
            message.ends_with(r#""k10", "k11", and 8 more"#),
            "{message}"
        );
    }

    #[test]
    fn invalid_instance_ids_are_named() {
        let cases = [
            (json!("foo"), r#"got "foo""#),
            (json!(""), "got an empty string"),
            (json!("I-1234567890ABCDEF0"), r#"got "I-1234567890ABCDEF0""#),
            (json!(12345678), "got 12345678"),
            (json!(["i-abcd1111"]), "got an array"),
            (json!(null), "but it is missing"),
        ];
        for (value, got) in cases {
            let body = with(&asg_terminate(), "EC2InstanceId", Some(value.clone()));
            let expected = format!(
                r#"field "EC2InstanceId": expected an EC2 instance id like i-0123456789abcdef0, {got}"#
            );
            assert_eq!(error(&body), expected);
            let body = with(&ec2_state("terminated"), "detail/instance-id", Some(value));
            assert_eq!(
                error(&body),
                expected.replace("EC2InstanceId", "detail.instance-id")
            );
        }
        let long = "i-".to_owned() + &"f".repeat(100);
        let body = with(&hook_terminating(), "EC2InstanceId", Some(json!(long)));
        assert_eq!(
            error(&body),
            format!(
                r#"field "EC2InstanceId": expected an EC2 instance id like i-0123456789abcdef0, got "i-{}...""#,
                "f".repeat(62)
            )
        );
    }

    #[test]
    fn tolerates_extra_fields_and_bad_optional_times() {
        let body = with(
            EB_TERMINATE_OK,
            "detail/NewField",
            Some(json!({"a": [1, 2]})),
        );
        let body = with(&body, "brand-new", Some(json!(null)));
        assert_eq!(termination(&body).instance_id, "i-1234567890abcdef0");
        let body = with(&asg_terminate(), "Time", Some(json!(17)));
        assert_eq!(termination(&body).event_time, None);
        let body = with(&asg_terminate(), "AutoScalingGroupName", Some(json!(null)));
        assert_eq!(termination(&body).auto_scaling_group, None);
    }

    #[test]
    fn serializes_for_logs_and_journal() {
        let Event::Termination(t) = parse_both(&hook_terminating()) else {
            panic!()
        };
        let value = serde_json::to_value(Event::Termination(t)).expect("serializable");
        assert_eq!(value["Termination"]["origin"], "lifecycle_hook");
        assert_eq!(
            value["Termination"]["event_time"],
            "2021-01-19T00:36:26.533Z"
        );
        assert_eq!(value["Termination"]["lifecycle"]["hook_name"], "my-hook");
    }

    #[test]
    fn regions() {
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-4",
            "il-central-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "",
            "region",
            "us-east",
            "us-east-x",
            "US-EAST-1",
            "us--1",
            "-us-east-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
        assert_eq!(
            arn_region("arn:aws:sns:us-west-2:123456789012:MyTopic").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            arn_region("arn:aws:autoscaling:region:1:autoScalingGroup..."),
            None
        );
        assert_eq!(arn_region("us-west-2"), None);
        assert_eq!(arn_region("arn:aws:sns"), None);
    }
}

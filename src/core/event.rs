//! Parsing SQS message bodies into typed events.
//!
//! nodereaper's queue can receive any of these shapes:
//!
//! * **Auto Scaling notifications** (`PutNotificationConfiguration`): an
//!   object with `Event` = `autoscaling:EC2_INSTANCE_TERMINATE` (a
//!   termination), `..._TERMINATE_ERROR`, `..._LAUNCH`, `..._LAUNCH_ERROR`
//!   (other) or `autoscaling:TEST_NOTIFICATION` (test).
//! * **Lifecycle hook messages** (hook with an SQS or SNS notification
//!   target): `LifecycleTransition` = `autoscaling:EC2_INSTANCE_TERMINATING`
//!   is a termination carrying the lifecycle action; `..._LAUNCHING` is other.
//!   The test message a hook sends when created has
//!   `Event: autoscaling:TEST_NOTIFICATION`.
//! * **EventBridge events**: `aws.autoscaling` "EC2 Instance-terminate
//!   Lifecycle Action" and "EC2 Instance Terminate Successful" are
//!   terminations; `aws.ec2` "EC2 Instance State-change Notification" is a
//!   termination for state `terminated` (and for `shutting-down` when
//!   [`ParseOptions::shutting_down_is_termination`] is set). Every other
//!   EventBridge event is other.
//! * Any of the above inside an **SNS envelope** (`Type: Notification`, the
//!   payload as a JSON *string* in `Message`), or without one (raw message
//!   delivery, or SQS as the direct target).
//!
//! A lifecycle action that returns the instance to a warm pool
//! (`Destination: WarmPool`) is *not* a termination: the instance lives on,
//! stopped, and will come back with its Chef registration.
//!
//! Unknown extra fields are ignored; the fields an event needs are checked,
//! and errors name the field (as a path such as `Message.detail.instance-id`)
//! and what was expected. [`parse`] never panics.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The identity of one pending Auto Scaling lifecycle action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LifecycleAction {
    pub auto_scaling_group: String,
    pub hook_name: String,
    pub token: Option<String>,
    pub instance_id: String,
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
    /// Always a valid instance id (see [`is_instance_id`]).
    pub instance_id: String,
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Event {
    /// Deregister this instance.
    Termination(Termination),
    /// A test notification (new notification configuration or lifecycle hook).
    Test { description: String },
    /// A well-formed event that needs no action, e.g.
    /// `autoscaling:EC2_INSTANCE_LAUNCH for i-0598c7d356eba48d7 in asg my-asg`.
    Other { description: String },
}

/// Why a message body could not be understood.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// The body is not JSON at all.
    #[error("message body: expected JSON, got {got} ({reason})")]
    NotJson { got: String, reason: String },
    /// JSON, but not an object where one is needed.
    #[error("{location}: expected a JSON object, got {got}")]
    NotAnObject { location: String, got: String },
    /// An object without any of the keys that identify a known message.
    #[error(
        "{location}: not a recognised message (expected \"Type\" of an SNS envelope, \
         \"Event\" of an Auto Scaling notification, \"LifecycleTransition\" of a lifecycle \
         hook message or \"detail-type\" of an EventBridge event); it has fields {fields}"
    )]
    Unrecognised { location: String, fields: String },
    /// A required field is absent (or `null`).
    #[error("field \"{field}\": expected {expected}, but it is missing")]
    Missing {
        field: String,
        expected: &'static str,
    },
    /// A field has the wrong type or value.
    #[error("field \"{field}\": expected {expected}, got {got}")]
    Invalid {
        field: String,
        expected: &'static str,
        got: String,
    },
}

/// Whether `s` is an EC2 instance id: `i-` and 8 or 17 lowercase hex digits.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Parses one SQS message body.
pub fn parse(body: &str, opts: &ParseOptions) -> Result<Event, ParseError> {
    let value: Value = serde_json::from_str(body).map_err(|e| ParseError::NotJson {
        got: quote(body),
        reason: e.to_string(),
    })?;
    let obj = Obj::new(&value, "", "message body")?;
    if obj.map.contains_key("Type") && !obj.map.contains_key("detail-type") {
        parse_sns(&obj, opts)
    } else {
        parse_payload(&obj, opts, &Context::default())
    }
}

const EXPECTED_INSTANCE_ID: &str = "an EC2 instance id like i-0123456789abcdef0";
const EXPECTED_NAME: &str = "a non-empty string";
const EXPECTED_STRING: &str = "a string";
const EXPECTED_REGION: &str = "an AWS region like us-east-1";
const EXPECTED_ACCOUNT: &str = "a 12-digit AWS account id";

const ASG_TERMINATE: &str = "autoscaling:EC2_INSTANCE_TERMINATE";
const ASG_TEST: &str = "autoscaling:TEST_NOTIFICATION";
const ASG_OTHER_EVENTS: [&str; 3] = [
    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
    "autoscaling:EC2_INSTANCE_LAUNCH",
    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
];
const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";

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

fn parse_sns(env: &Obj<'_>, opts: &ParseOptions) -> Result<Event, ParseError> {
    let kind = env.str("Type", "an SNS message type such as Notification")?;
    let topic = env.opt_str("TopicArn", EXPECTED_STRING)?;
    match kind {
        "Notification" => {}
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            let topic = topic.map_or_else(|| "unknown topic".to_owned(), |t| format!("topic {t}"));
            let hint = if kind == "SubscriptionConfirmation" {
                "; confirm it by visiting its SubscribeURL"
            } else {
                ""
            };
            return Ok(Event::Other {
                description: format!("SNS {kind} for {topic}{hint}"),
            });
        }
        _ => {
            return Err(env.invalid(
                "Type",
                "Notification, SubscriptionConfirmation or UnsubscribeConfirmation",
            ))
        }
    }
    const EXPECTED_MESSAGE: &str = "a JSON object serialized as a string";
    let text = env.str("Message", EXPECTED_MESSAGE)?;
    let inner: Value =
        serde_json::from_str(text).map_err(|_| env.invalid("Message", EXPECTED_MESSAGE))?;
    let payload = Obj::new(&inner, "Message.", "field \"Message\"")?;
    if payload.map.contains_key("Type") && payload.map.contains_key("TopicArn") {
        return Err(ParseError::Invalid {
            field: "Message".to_owned(),
            expected: "an Auto Scaling or EventBridge event",
            got: "another SNS envelope".to_owned(),
        });
    }
    let ctx = Context {
        wrapped_in_sns: true,
        region: topic.and_then(arn_region),
        account: topic.and_then(arn_account),
        timestamp: env.time("Timestamp"),
    };
    parse_payload(&payload, opts, &ctx)
}

/// Dispatches on the keys that identify each payload shape.
fn parse_payload(obj: &Obj<'_>, opts: &ParseOptions, ctx: &Context) -> Result<Event, ParseError> {
    let map = obj.map;
    if map.contains_key("detail-type") {
        parse_eventbridge(obj, opts, ctx)
    } else if map.get("Event").and_then(Value::as_str) == Some(ASG_TEST) {
        // Sent both for notification configurations and for lifecycle hooks.
        Ok(Event::Test {
            description: describe(ASG_TEST, None, obj.display("AutoScalingGroupName")),
        })
    } else if map.contains_key("LifecycleTransition") {
        parse_lifecycle_hook(obj, ctx)
    } else if map.contains_key("Event") {
        parse_asg_notification(obj, ctx)
    } else {
        Err(ParseError::Unrecognised {
            location: obj.location.clone(),
            fields: field_list(map),
        })
    }
}

fn parse_asg_notification(obj: &Obj<'_>, ctx: &Context) -> Result<Event, ParseError> {
    const EXPECTED: &str =
        "an Auto Scaling notification type such as autoscaling:EC2_INSTANCE_TERMINATE";
    let event = obj.str("Event", EXPECTED)?;
    if ASG_OTHER_EVENTS.contains(&event) {
        return Ok(other(
            event,
            obj.display("EC2InstanceId"),
            obj.display("AutoScalingGroupName"),
        ));
    }
    if event != ASG_TERMINATE {
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

fn parse_lifecycle_hook(obj: &Obj<'_>, ctx: &Context) -> Result<Event, ParseError> {
    const EXPECTED: &str =
        "autoscaling:EC2_INSTANCE_TERMINATING or autoscaling:EC2_INSTANCE_LAUNCHING";
    match obj.str("LifecycleTransition", EXPECTED)? {
        TERMINATING => {}
        LAUNCHING => {
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
    let action = obj.lifecycle_action()?;
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

fn parse_eventbridge(
    obj: &Obj<'_>,
    opts: &ParseOptions,
    ctx: &Context,
) -> Result<Event, ParseError> {
    let source = obj.str("source", "an event source such as aws.autoscaling")?;
    let detail_type = obj.str("detail-type", "an event detail type")?;
    let region = match obj.opt_str("region", EXPECTED_REGION)? {
        Some(r) if !is_region(r) => return Err(obj.invalid("region", EXPECTED_REGION)),
        r => r.map(str::to_owned).or_else(|| ctx.region.clone()),
    };
    let account = obj.account("account")?.or_else(|| ctx.account.clone());
    let event_time = obj.time("time").or(ctx.timestamp);
    let termination = |instance_id, auto_scaling_group, origin, lifecycle| {
        Event::Termination(Termination {
            instance_id,
            auto_scaling_group,
            region: region.clone(),
            account: account.clone(),
            origin,
            lifecycle,
            event_time,
            wrapped_in_sns: ctx.wrapped_in_sns,
        })
    };
    match (source, detail_type) {
        ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action") => {
            let detail = obj.child("detail")?;
            if let Some(transition) = detail.get("LifecycleTransition") {
                if transition.as_str() != Some(TERMINATING) {
                    return Err(detail.invalid("LifecycleTransition", TERMINATING));
                }
            }
            if let Some(event) = returns_to_warm_pool(&detail) {
                return Ok(event);
            }
            let action = detail.lifecycle_action()?;
            Ok(termination(
                action.instance_id.clone(),
                Some(action.auto_scaling_group.clone()),
                Origin::EventBridgeLifecycleAction,
                Some(action),
            ))
        }
        ("aws.autoscaling", "EC2 Instance Terminate Successful") => {
            let detail = obj.child("detail")?;
            Ok(termination(
                detail.instance_id("EC2InstanceId")?,
                detail
                    .opt_str("AutoScalingGroupName", EXPECTED_STRING)?
                    .map(str::to_owned),
                Origin::EventBridgeTerminateSuccessful,
                None,
            ))
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let detail = obj.child("detail")?;
            let instance_id = detail.instance_id("instance-id")?;
            let state = detail.str("state", "an EC2 instance state such as terminated")?;
            if state == "terminated"
                || (state == "shutting-down" && opts.shutting_down_is_termination)
            {
                Ok(termination(instance_id, None, Origin::Ec2StateChange, None))
            } else {
                let note = if state == "shutting-down" {
                    " (shutting_down_is_termination is off)"
                } else {
                    ""
                };
                Ok(Event::Other {
                    description: format!(
                        "EC2 instance {instance_id} is now {}{note}",
                        short(state)
                    ),
                })
            }
        }
        _ => {
            let detail = obj.child("detail").ok();
            let field = |key| detail.as_ref().and_then(|d| d.display(key));
            let what = format!("{} \"{}\"", short(source), short(detail_type));
            Ok(other(
                &what,
                field("EC2InstanceId"),
                field("AutoScalingGroupName"),
            ))
        }
    }
}

/// `Some(Other)` when a terminating lifecycle action only moves the instance
/// into the warm pool (it is stopped or hibernated, not terminated).
fn returns_to_warm_pool(obj: &Obj<'_>) -> Option<Event> {
    (obj.display("Destination") == Some("WarmPool")).then(|| {
        other(
            "autoscaling:EC2_INSTANCE_TERMINATING lifecycle action returning the instance to the warm pool",
            obj.display("EC2InstanceId"),
            obj.display("AutoScalingGroupName"),
        )
    })
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

/// A JSON object plus the path prefix of its fields, for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    /// Prepended to field names, e.g. `Message.detail.`.
    prefix: String,
    /// How to refer to the object itself, e.g. `field "Message"`.
    location: String,
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, prefix: &str, location: &str) -> Result<Self, ParseError> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                prefix: prefix.to_owned(),
                location: location.to_owned(),
            }),
            other => Err(ParseError::NotAnObject {
                location: location.to_owned(),
                got: render(other),
            }),
        }
    }

    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value of `key`; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn invalid(&self, key: &str, expected: &'static str) -> ParseError {
        match self.get(key) {
            Some(value) => ParseError::Invalid {
                field: self.path(key),
                expected,
                got: render(value),
            },
            None => self.missing(key, expected),
        }
    }

    fn missing(&self, key: &str, expected: &'static str) -> ParseError {
        ParseError::Missing {
            field: self.path(key),
            expected,
        }
    }

    /// A required, non-empty string.
    fn str(&self, key: &str, expected: &'static str) -> Result<&'a str, ParseError> {
        match self.get(key) {
            None => Err(self.missing(key, expected)),
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.invalid(key, expected)),
        }
    }

    /// An optional string; absent, `null` and `""` are `None`.
    fn opt_str(&self, key: &str, expected: &'static str) -> Result<Option<&'a str>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
            Some(_) => Err(self.invalid(key, expected)),
        }
    }

    /// An optional account id; present but malformed is an error (a forged
    /// or corrupted event must not fall back to nodereaper's own account).
    fn account(&self, key: &str) -> Result<Option<String>, ParseError> {
        match self.opt_str(key, EXPECTED_ACCOUNT)? {
            None => Ok(None),
            Some(a) if is_account_id(a) => Ok(Some(a.to_owned())),
            Some(_) => Err(self.invalid(key, EXPECTED_ACCOUNT)),
        }
    }

    /// A non-empty string for descriptions; anything else is `None`.
    fn display(&self, key: &str) -> Option<&'a str> {
        self.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    fn instance_id(&self, key: &str) -> Result<String, ParseError> {
        match self.get(key) {
            None => Err(self.missing(key, EXPECTED_INSTANCE_ID)),
            Some(Value::String(s)) if is_instance_id(s) => Ok(s.clone()),
            Some(_) => Err(self.invalid(key, EXPECTED_INSTANCE_ID)),
        }
    }

    /// A required nested object.
    fn child(&self, key: &str) -> Result<Obj<'a>, ParseError> {
        const EXPECTED: &str = "a JSON object";
        match self.get(key) {
            None => Err(self.missing(key, EXPECTED)),
            Some(Value::Object(map)) => Ok(Obj {
                map,
                prefix: format!("{}.", self.path(key)),
                location: format!("field \"{}\"", self.path(key)),
            }),
            Some(_) => Err(self.invalid(key, EXPECTED)),
        }
    }

    /// An RFC 3339 time; missing or malformed times (the AWS examples use
    /// placeholders like `yyyy-mm-ddThh:mm:ssZ`) are `None`.
    fn time(&self, key: &str) -> Option<DateTime<Utc>> {
        let text = self.get(key)?.as_str()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The lifecycle action named by a hook message or EventBridge detail.
    fn lifecycle_action(&self) -> Result<LifecycleAction, ParseError> {
        Ok(LifecycleAction {
            auto_scaling_group: self.str("AutoScalingGroupName", EXPECTED_NAME)?.to_owned(),
            hook_name: self.str("LifecycleHookName", EXPECTED_NAME)?.to_owned(),
            token: self
                .opt_str("LifecycleActionToken", EXPECTED_STRING)?
                .map(str::to_owned),
            instance_id: self.instance_id("EC2InstanceId")?,
        })
    }
}

/// At most this many characters of a value are quoted in messages.
const MAX_QUOTE: usize = 64;

/// `s`, cut to [`MAX_QUOTE`] characters.
fn short(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

/// `s` as a (possibly shortened) JSON string literal.
fn quote(s: &str) -> String {
    Value::String(short(s)).to_string()
}

/// A JSON value as shown after "got" in errors.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => "an empty string".to_owned(),
        Value::String(s) => quote(s),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The object's keys, for "unrecognised" errors.
fn field_list(map: &Map<String, Value>) -> String {
    const MAX_FIELDS: usize = 12;
    if map.is_empty() {
        return "none".to_owned();
    }
    let mut names: Vec<String> = map.keys().take(MAX_FIELDS).map(|k| quote(k)).collect();
    if map.len() > MAX_FIELDS {
        names.push(format!("and {} more", map.len() - MAX_FIELDS));
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/messages/", $name))
        };
    }

    // Verbatim AWS documentation examples; see tests/fixtures/messages/README.md.
    const ASG_LAUNCH_TEXT: &str = fixture!("asg-notification-launch.txt");
    const HOOK_LAUNCHING_TEXT: &str = fixture!("lifecycle-hook-launching.txt");
    const HOOK_TEST_TEXT: &str = fixture!("lifecycle-hook-test-notification.txt");
    /// From "Add lifecycle hooks": the topic receives a test notification
    /// with this key-value pair.
    const HOOK_TEST_PAIR: &str = r#""Event": "autoscaling:TEST_NOTIFICATION""#;
    const EB_LAUNCH_ACTION: &str = fixture!("eventbridge-launch-lifecycle-action.json");
    const EB_LAUNCH_OK: &str = fixture!("eventbridge-launch-successful.json");
    const EB_LAUNCH_FAILED: &str = fixture!("eventbridge-launch-unsuccessful.json");
    const EB_TERMINATE_ACTION: &str = fixture!("eventbridge-terminate-lifecycle-action.json");
    const EB_TERMINATE_OK: &str = fixture!("eventbridge-terminate-successful.json");
    const EB_TERMINATE_FAILED: &str = fixture!("eventbridge-terminate-unsuccessful.json");
    const EB_REFRESH_CHECKPOINT: &str =
        fixture!("eventbridge-instance-refresh-checkpoint-reached.json");
    const EB_WARM_POOL_NEW: &str = fixture!("eventbridge-warm-pool-new-instance-to-warm-pool.json");
    const EB_WARM_POOL_RETURN: &str = fixture!("eventbridge-warm-pool-return-to-warm-pool.json");
    const EC2_PENDING: &str = fixture!("ec2-state-change-pending.json");
    const EC2_PENDING_SHORT_ID: &str = fixture!("ec2-state-change-pending-short-id.json");
    const SNS_TO_SQS: &str = fixture!("sns-notification-to-sqs.json");
    const SNS_HTTP: &str = fixture!("sns-notification-http.json");
    const SNS_SUBSCRIBE: &str = fixture!("sns-subscription-confirmation.json");
    const SNS_UNSUBSCRIBE: &str = fixture!("sns-unsubscribe-confirmation.json");

    /// The JSON Auto Scaling sends for a message the docs show as
    /// `Key: value` lines (`Progress` is a number, `Details` an object).
    fn doc_text_to_json(text: &str) -> String {
        let mut map = Map::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line.split_once(':').expect("a `Key: value` line");
            let value = value.trim();
            let value = match key {
                "Progress" => Value::from(value.parse::<u64>().expect("a number")),
                "Details" => serde_json::from_str(value).expect("JSON details"),
                _ => Value::from(value),
            };
            map.insert(key.to_owned(), value);
        }
        Value::Object(map).to_string()
    }

    /// `payload` as the SNS-to-SQS documentation example would carry it.
    fn sns_wrap(payload: &str) -> String {
        let mut envelope: Value = serde_json::from_str(SNS_TO_SQS).expect("fixture is JSON");
        envelope["Message"] = Value::from(payload);
        envelope.to_string()
    }

    /// Sets (or with `None` removes) a member of the JSON object `body`, at a
    /// `/`-separated path.
    fn with(body: &str, path: &str, value: Option<Value>) -> String {
        let mut root: Value = serde_json::from_str(body).expect("JSON body");
        let (parent, key) = path.rsplit_once('/').unwrap_or(("", path));
        let mut node = &mut root;
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            node = &mut node[part];
        }
        let map = node.as_object_mut().expect("an object");
        match value {
            Some(v) => map.insert(key.to_owned(), v),
            None => map.remove(key),
        };
        root.to_string()
    }

    fn asg_launch() -> String {
        doc_text_to_json(ASG_LAUNCH_TEXT)
    }

    /// The documented launch notification, turned into a termination.
    fn asg_terminate() -> String {
        let body = with(&asg_launch(), "Event", Some(json!(ASG_TERMINATE)));
        with(
            &body,
            "Description",
            Some(json!("Terminating EC2 instance: i-0598c7d356eba48d7")),
        )
    }

    fn hook_launching() -> String {
        doc_text_to_json(HOOK_LAUNCHING_TEXT)
    }

    /// The documented lifecycle hook message, for a termination hook.
    fn hook_terminating() -> String {
        with(
            &hook_launching(),
            "LifecycleTransition",
            Some(json!(TERMINATING)),
        )
    }

    fn ec2_state(state: &str) -> String {
        with(EC2_PENDING, "detail/state", Some(json!(state)))
    }

    fn parse_default(body: &str) -> Result<Event, ParseError> {
        parse(body, &ParseOptions::default())
    }

    /// Parses `body` raw and SNS-wrapped; both must give the same event,
    /// except for what the envelope adds.
    fn parse_both(body: &str) -> Event {
        let raw = parse_default(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let wrapped = parse_default(&sns_wrap(body)).unwrap_or_else(|e| panic!("{e}: {body}"));
        match (&raw, wrapped) {
            (Event::Termination(r), Event::Termination(w)) => {
                assert!(!r.wrapped_in_sns && w.wrapped_in_sns);
                assert_eq!(w.region, r.region.clone().or(Some("us-west-2".into())));
                assert_eq!(w.account, r.account.clone().or(Some("123456789012".into())));
                let sns_time = "2012-03-29T05:12:16.901Z".parse().ok();
                assert_eq!(w.event_time, r.event_time.or(sns_time));
                let unwrapped = Termination {
                    region: r.region.clone(),
                    account: r.account.clone(),
                    event_time: r.event_time,
                    wrapped_in_sns: false,
                    ..w
                };
                assert_eq!(&unwrapped, r);
            }
            (raw, wrapped) => assert_eq!(raw, &wrapped),
        }
        raw
    }

    fn termination(body: &str) -> Termination {
        match parse_both(body) {
            Event::Termination(t) => t,
            other => panic!("expected a termination, got {other:?}"),
        }
    }

    fn other_description(body: &str) -> String {
        match parse_both(body) {
            Event::Other { description } => description,
            other => panic!("expected Other, got {other:?}"),
        }
    }

    fn time(text: &str) -> Option<DateTime<Utc>> {
        Some(text.parse().expect("a valid time"))
    }

    fn error(body: &str) -> String {
        parse_default(body)
            .expect_err("should not parse")
            .to_string()
    }

    #[test]
    fn instance_ids() {
        for ok in [
            "i-1234567890abcdef0",
            "i-abcd1111",
            "i-00000000",
            "i-0598c7d356eba48d7",
        ] {
            assert!(is_instance_id(ok), "{ok}");
        }
        for bad in [
            "",
            "i-",
            "foo",
            "i-1234567",
            "i-123456789",
            "i-1234567890abcdef",
            "i-1234567890abcdef01",
            "i-ABCD1111",
            "i-abcd111g",
            "I-abcd1111",
            "x-abcd1111",
            " i-abcd1111",
            "i-abcd1111\n",
            "i-abcd11é",
        ] {
            assert!(!is_instance_id(bad), "{bad:?}");
        }
    }

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
                instance_id: "i-0598c7d356eba48d7".into(),
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
        let notification = with(&asg_launch(), "Event", Some(json!(ASG_TEST)));
        assert_eq!(parse_both(&notification), expected);
        assert_eq!(
            parse_both(&format!("{{{HOOK_TEST_PAIR}}}")),
            Event::Test {
                description: ASG_TEST.into()
            }
        );
    }

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
            instance_id: "i-0598c7d356eba48d7".into(),
        };
        assert_eq!(
            termination(&hook_terminating()),
            Termination {
                instance_id: "i-0598c7d356eba48d7".into(),
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
                ..action
            })
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
    fn eventbridge_terminate_lifecycle_action_doc_example() {
        assert_eq!(
            termination(EB_TERMINATE_ACTION),
            Termination {
                instance_id: "i-1234567890abcdef0".into(),
                auto_scaling_group: Some("my-asg".into()),
                region: Some("us-west-2".into()),
                account: Some("123456789012".into()),
                origin: Origin::EventBridgeLifecycleAction,
                lifecycle: Some(LifecycleAction {
                    auto_scaling_group: "my-asg".into(),
                    hook_name: "my-lifecycle-hook".into(),
                    token: Some("87654321-4321-4321-4321-210987654321".into()),
                    instance_id: "i-1234567890abcdef0".into(),
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
                instance_id: "i-1234567890abcdef0".into(),
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
                instance_id: "i-1234567890abcdef0".into(),
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
    fn sns_doc_examples() {
        // The documented notifications carry "Hello world!", which is not an event.
        for body in [SNS_TO_SQS, SNS_HTTP] {
            assert_eq!(
                parse_default(body),
                Err(ParseError::Invalid {
                    field: "Message".into(),
                    expected: "a JSON object serialized as a string",
                    got: "\"Hello world!\"".into(),
                })
            );
        }
        assert_eq!(
            error(SNS_TO_SQS),
            r#"field "Message": expected a JSON object serialized as a string, got "Hello world!""#
        );
        assert_eq!(
            parse_default(SNS_SUBSCRIBE),
            Ok(Event::Other {
                description: "SNS SubscriptionConfirmation for topic arn:aws:sns:us-west-2:123456789012:MyTopic; confirm it by visiting its SubscribeURL".into()
            })
        );
        assert_eq!(
            parse_default(SNS_UNSUBSCRIBE),
            Ok(Event::Other {
                description: "SNS UnsubscribeConfirmation for topic arn:aws:sns:us-west-2:123456789012:MyTopic".into()
            })
        );
    }

    #[test]
    fn sns_envelope_errors() {
        let hook = hook_terminating();
        let envelope = sns_wrap(&hook);
        assert_eq!(
            error(&with(&envelope, "Message", None)),
            r#"field "Message": expected a JSON object serialized as a string, but it is missing"#
        );
        assert_eq!(
            error(&with(
                &envelope,
                "Message",
                Some(json!({"EC2InstanceId": "i-abcd1111"}))
            )),
            r#"field "Message": expected a JSON object serialized as a string, got an object"#
        );
        assert_eq!(
            error(&with(&envelope, "Message", Some(json!("[1, 2]")))),
            r#"field "Message": expected a JSON object, got an array"#
        );
        assert_eq!(
            error(&with(&envelope, "Type", Some(json!("Gossip")))),
            r#"field "Type": expected Notification, SubscriptionConfirmation or UnsubscribeConfirmation, got "Gossip""#
        );
        assert_eq!(
            error(&sns_wrap(&envelope)),
            r#"field "Message": expected an Auto Scaling or EventBridge event, got another SNS envelope"#
        );
        assert_eq!(
            error(&sns_wrap(r#"{"hello": "world"}"#)),
            r#"field "Message": not a recognised message (expected "Type" of an SNS envelope, "Event" of an Auto Scaling notification, "LifecycleTransition" of a lifecycle hook message or "detail-type" of an EventBridge event); it has fields "hello""#
        );
        // Fields inside the message are named with a "Message." prefix.
        let bad = with(&hook, "EC2InstanceId", Some(json!("foo")));
        assert_eq!(
            error(&sns_wrap(&bad)),
            r#"field "Message.EC2InstanceId": expected an EC2 instance id like i-0123456789abcdef0, got "foo""#
        );
        let bad = with(EB_TERMINATE_ACTION, "detail/EC2InstanceId", None);
        assert_eq!(
            error(&sns_wrap(&bad)),
            r#"field "Message.detail.EC2InstanceId": expected an EC2 instance id like i-0123456789abcdef0, but it is missing"#
        );
    }

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
    fn missing_or_invalid_required_fields() {
        let cases = [
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
            (
                with(EB_TERMINATE_ACTION, "detail/LifecycleHookName", None),
                r#"field "detail.LifecycleHookName": expected a non-empty string, but it is missing"#,
            ),
            (
                with(
                    EB_TERMINATE_ACTION,
                    "detail/LifecycleTransition",
                    Some(json!(LAUNCHING)),
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
        ];
        for (body, expected) in cases {
            assert_eq!(error(&body), expected, "{body}");
        }
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

    /// Every valid example body, raw and SNS-wrapped.
    fn valid_bodies() -> Vec<String> {
        let raw = [
            asg_launch(),
            asg_terminate(),
            doc_text_to_json(HOOK_TEST_TEXT),
            hook_launching(),
            hook_terminating(),
            EB_LAUNCH_ACTION.to_owned(),
            EB_LAUNCH_OK.to_owned(),
            EB_LAUNCH_FAILED.to_owned(),
            EB_TERMINATE_ACTION.to_owned(),
            EB_TERMINATE_OK.to_owned(),
            EB_TERMINATE_FAILED.to_owned(),
            EB_REFRESH_CHECKPOINT.to_owned(),
            EB_WARM_POOL_NEW.to_owned(),
            EB_WARM_POOL_RETURN.to_owned(),
            EC2_PENDING.to_owned(),
            ec2_state("terminated"),
            ec2_state("shutting-down"),
            with(
                EC2_PENDING_SHORT_ID,
                "detail/state",
                Some(json!("terminated")),
            ),
        ];
        let mut bodies: Vec<String> = raw.iter().flat_map(|b| [b.clone(), sns_wrap(b)]).collect();
        bodies.extend([SNS_SUBSCRIBE, SNS_UNSUBSCRIBE].map(str::to_owned));
        bodies
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip {
            at: usize,
            byte: u8,
        },
        Truncate {
            at: usize,
        },
        Insert {
            at: usize,
            text: String,
        },
        /// Removes the n-th object member (depth first, looking into `Message`).
        Delete {
            member: usize,
        },
        /// Replaces the value of the n-th object member.
        Replace {
            member: usize,
            value: Value,
        },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let value = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,24}".prop_map(Value::from),
            "i-[0-9a-f]{8}".prop_map(Value::from),
            "i-[0-9a-fA-F]{17}".prop_map(Value::from),
            prop::sample::select(vec![
                "terminated",
                "shutting-down",
                "Notification",
                "WarmPool",
                ASG_TERMINATE,
                ASG_TEST,
                TERMINATING,
                LAUNCHING,
                "aws.ec2",
                "EC2 Instance Terminate Successful",
            ])
            .prop_map(Value::from),
            Just(json!({})),
            Just(json!([1])),
        ];
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
            any::<usize>().prop_map(|at| Mutation::Truncate { at }),
            (any::<usize>(), "[{}\\[\\]\":,\\\\]{1,3}|.{1,4}")
                .prop_map(|(at, text)| Mutation::Insert { at, text }),
            (0usize..48).prop_map(|member| Mutation::Delete { member }),
            ((0usize..48), value).prop_map(|(member, value)| Mutation::Replace { member, value }),
        ]
    }

    /// Applies `edit` to the `n`-th object member below `v`, descending into
    /// strings that hold JSON (the SNS `Message`). Returns whether it did.
    fn edit_member(v: &mut Value, n: &mut usize, edit: &Mutation) -> bool {
        match v {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    if *n == 0 {
                        match edit {
                            Mutation::Replace { value, .. } => map.insert(key, value.clone()),
                            _ => map.remove(&key),
                        };
                        return true;
                    }
                    *n -= 1;
                    let Some(child) = map.get_mut(&key) else {
                        continue;
                    };
                    if let Value::String(text) = child {
                        if let Ok(mut inner) = serde_json::from_str::<Value>(text) {
                            if edit_member(&mut inner, n, edit) {
                                *text = inner.to_string();
                                return true;
                            }
                        }
                    } else if edit_member(child, n, edit) {
                        return true;
                    }
                }
                false
            }
            Value::Array(items) => items.iter_mut().any(|item| edit_member(item, n, edit)),
            _ => false,
        }
    }

    fn mutate(body: &str, mutations: &[Mutation]) -> String {
        let mut bytes = body.as_bytes().to_vec();
        for m in mutations {
            let len = bytes.len().max(1);
            match m {
                Mutation::Flip { at, byte } if !bytes.is_empty() => bytes[at % len] = *byte,
                Mutation::Flip { .. } => {}
                Mutation::Truncate { at } => bytes.truncate(at % len),
                Mutation::Insert { at, text } => {
                    let at = at % (bytes.len() + 1);
                    bytes.splice(at..at, text.bytes());
                }
                Mutation::Delete { member } | Mutation::Replace { member, .. } => {
                    if let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) {
                        edit_member(&mut value, &mut member.clone(), m);
                        bytes = value.to_string().into_bytes();
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// What must hold for any input: no panic, and a termination always
    /// names a valid instance (and a consistent lifecycle action).
    fn check(body: &str) -> Result<(), TestCaseError> {
        for shutting_down_is_termination in [false, true] {
            let opts = ParseOptions {
                shutting_down_is_termination,
            };
            match parse(body, &opts) {
                Ok(Event::Termination(t)) => {
                    prop_assert!(is_instance_id(&t.instance_id), "{t:?}");
                    prop_assert!(t.region.as_deref().is_none_or(is_region), "{t:?}");
                    if let Some(action) = &t.lifecycle {
                        prop_assert_eq!(&action.instance_id, &t.instance_id);
                        prop_assert!(!action.hook_name.is_empty());
                        prop_assert_eq!(
                            t.auto_scaling_group.as_ref(),
                            Some(&action.auto_scaling_group)
                        );
                    }
                }
                Ok(Event::Test { description } | Event::Other { description }) => {
                    prop_assert!(!description.is_empty());
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
        Ok(())
    }

    /// JSON objects built from the members the parser looks at: mostly
    /// plausible key/value pairs, some random values, nested objects and
    /// objects serialized into strings (like the SNS `Message`).
    fn structured_json() -> impl Strategy<Value = Value> {
        let plausible = prop::sample::select(vec![
            ("Type", "Notification"),
            ("Type", "SubscriptionConfirmation"),
            ("TopicArn", "arn:aws:sns:eu-west-1:123456789012:t"),
            ("Timestamp", "2012-03-29T05:12:16.901Z"),
            ("Event", ASG_TERMINATE),
            ("Event", ASG_TEST),
            ("Event", "autoscaling:EC2_INSTANCE_LAUNCH"),
            ("EC2InstanceId", "i-0123456789abcdef0"),
            ("EC2InstanceId", "i-abcd1111"),
            ("instance-id", "i-abcd1111"),
            ("AutoScalingGroupName", "my-asg"),
            (
                "AutoScalingGroupARN",
                "arn:aws:autoscaling:us-east-1:1:autoScalingGroup:x",
            ),
            ("LifecycleHookName", "my-hook"),
            ("LifecycleActionToken", "token"),
            ("LifecycleTransition", TERMINATING),
            ("LifecycleTransition", LAUNCHING),
            ("Destination", "WarmPool"),
            ("Time", "2021-01-19T00:36:26.533Z"),
            ("time", "yyyy-mm-ddThh:mm:ssZ"),
            ("region", "us-east-1"),
            ("source", "aws.autoscaling"),
            ("source", "aws.ec2"),
            ("detail-type", "EC2 Instance-terminate Lifecycle Action"),
            ("detail-type", "EC2 Instance Terminate Successful"),
            ("detail-type", "EC2 Instance State-change Notification"),
            ("state", "terminated"),
            ("state", "shutting-down"),
        ])
        .prop_map(|(k, v)| (k, Value::from(v)));
        let keys = prop::sample::select(vec![
            "Type",
            "Message",
            "Event",
            "EC2InstanceId",
            "AutoScalingGroupName",
            "LifecycleTransition",
            "LifecycleHookName",
            "LifecycleActionToken",
            "detail-type",
            "source",
            "detail",
            "region",
            "instance-id",
            "state",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::from),
            "i-[0-9a-f]{8}|i-[0-9a-f]{17}|i-[0-9A-F]{8}|i-[0-9a-f]{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 64, 12, move |inner| {
            let member = prop_oneof![
                3 => plausible.clone(),
                1 => (keys.clone(), inner.clone()),
            ];
            prop_oneof![
                3 => prop::collection::vec(member, 0..12).prop_map(|members| {
                    Value::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
                1 => inner.clone().prop_map(|v| Value::String(v.to_string())),
                1 => prop::collection::vec(inner, 0..3).prop_map(Value::Array),
            ]
        })
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_strings_never_panic(body in any::<String>()) {
            check(&body)?;
        }

        #[test]
        fn json_like_strings_never_panic(body in "[{}\\[\\]\":, a-zA-Z0-9.:-]{0,80}") {
            check(&body)?;
        }

        #[test]
        fn structured_json_never_panics(value in structured_json()) {
            check(&value.to_string())?;
        }

        #[test]
        fn mutated_examples_never_panic(
            body in prop::sample::select(valid_bodies()),
            mutations in prop::collection::vec(mutation(), 1..4),
        ) {
            check(&mutate(&body, &mutations))?;
        }

        #[test]
        fn instance_id_decides_termination(id in "i-[0-9a-f]{8}|i-[0-9a-f]{17}|.{0,20}") {
            let body = with(&hook_terminating(), "EC2InstanceId", Some(json!(id)));
            match parse_default(&body) {
                Ok(Event::Termination(t)) => prop_assert_eq!(t.instance_id, id),
                Err(ParseError::Invalid { field, .. } | ParseError::Missing { field, .. }) => {
                    prop_assert!(!is_instance_id(&id));
                    prop_assert_eq!(field, "EC2InstanceId");
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}

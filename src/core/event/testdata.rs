//! Test data shared by the parser's tests: the AWS documentation examples
//! (verbatim, from tests/fixtures/messages/) and helpers that derive bodies
//! from them and parse them raw and SNS-wrapped.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{
    parse, Event, InstanceId, ParseError, ParseOptions, Termination, EC2_INSTANCE_TERMINATE,
    EC2_INSTANCE_TERMINATING,
};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/messages/", $name))
    };
}

/// `s` as an instance id; the tests only name valid ones.
pub(super) fn iid(s: &str) -> InstanceId {
    InstanceId::parse(s).expect("test data names a valid instance id")
}

// Verbatim AWS documentation examples; see tests/fixtures/messages/README.md.
pub(super) const ASG_LAUNCH_TEXT: &str = fixture!("asg-notification-launch.txt");
pub(super) const HOOK_LAUNCHING_TEXT: &str = fixture!("lifecycle-hook-launching.txt");
pub(super) const HOOK_TEST_TEXT: &str = fixture!("lifecycle-hook-test-notification.txt");
/// From "Add lifecycle hooks": the topic receives a test notification
/// with this key-value pair.
pub(super) const HOOK_TEST_PAIR: &str = r#""Event": "autoscaling:TEST_NOTIFICATION""#;
pub(super) const EB_LAUNCH_ACTION: &str = fixture!("eventbridge-launch-lifecycle-action.json");
pub(super) const EB_LAUNCH_OK: &str = fixture!("eventbridge-launch-successful.json");
pub(super) const EB_LAUNCH_FAILED: &str = fixture!("eventbridge-launch-unsuccessful.json");
pub(super) const EB_TERMINATE_ACTION: &str =
    fixture!("eventbridge-terminate-lifecycle-action.json");
pub(super) const EB_TERMINATE_OK: &str = fixture!("eventbridge-terminate-successful.json");
pub(super) const EB_TERMINATE_FAILED: &str = fixture!("eventbridge-terminate-unsuccessful.json");
pub(super) const EB_REFRESH_CHECKPOINT: &str =
    fixture!("eventbridge-instance-refresh-checkpoint-reached.json");
pub(super) const EB_WARM_POOL_NEW: &str =
    fixture!("eventbridge-warm-pool-new-instance-to-warm-pool.json");
pub(super) const EB_WARM_POOL_RETURN: &str =
    fixture!("eventbridge-warm-pool-return-to-warm-pool.json");
pub(super) const EC2_PENDING: &str = fixture!("ec2-state-change-pending.json");
pub(super) const EC2_PENDING_SHORT_ID: &str = fixture!("ec2-state-change-pending-short-id.json");
pub(super) const SNS_TO_SQS: &str = fixture!("sns-notification-to-sqs.json");
pub(super) const SNS_HTTP: &str = fixture!("sns-notification-http.json");
pub(super) const SNS_SUBSCRIBE: &str = fixture!("sns-subscription-confirmation.json");
pub(super) const SNS_UNSUBSCRIBE: &str = fixture!("sns-unsubscribe-confirmation.json");

/// The JSON Auto Scaling sends for a message the docs show as
/// `Key: value` lines (`Progress` is a number, `Details` an object).
pub(super) fn doc_text_to_json(text: &str) -> String {
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
pub(super) fn sns_wrap(payload: &str) -> String {
    let mut envelope: Value = serde_json::from_str(SNS_TO_SQS).expect("fixture is JSON");
    envelope["Message"] = Value::from(payload);
    envelope.to_string()
}

/// Sets (or with `None` removes) a member of the JSON object `body`, at a
/// `/`-separated path.
pub(super) fn with(body: &str, path: &str, value: Option<Value>) -> String {
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

pub(super) fn asg_launch() -> String {
    doc_text_to_json(ASG_LAUNCH_TEXT)
}

/// The documented launch notification, turned into a termination.
pub(super) fn asg_terminate() -> String {
    let body = with(&asg_launch(), "Event", Some(json!(EC2_INSTANCE_TERMINATE)));
    with(
        &body,
        "Description",
        Some(json!("Terminating EC2 instance: i-0598c7d356eba48d7")),
    )
}

pub(super) fn hook_launching() -> String {
    doc_text_to_json(HOOK_LAUNCHING_TEXT)
}

/// The documented lifecycle hook message, for a termination hook.
pub(super) fn hook_terminating() -> String {
    with(
        &hook_launching(),
        "LifecycleTransition",
        Some(json!(EC2_INSTANCE_TERMINATING)),
    )
}

pub(super) fn ec2_state(state: &str) -> String {
    with(EC2_PENDING, "detail/state", Some(json!(state)))
}

pub(super) fn parse_default(body: &str) -> Result<Event, ParseError> {
    parse(body, &ParseOptions::default())
}

/// Parses `body` raw and SNS-wrapped; both must give the same event,
/// except for what the envelope adds.
pub(super) fn parse_both(body: &str) -> Event {
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

pub(super) fn termination(body: &str) -> Termination {
    match parse_both(body) {
        Event::Termination(t) => t,
        other => panic!("expected a termination, got {other:?}"),
    }
}

pub(super) fn other_description(body: &str) -> String {
    match parse_both(body) {
        Event::Other { description } => description,
        other => panic!("expected Other, got {other:?}"),
    }
}

pub(super) fn time(text: &str) -> Option<DateTime<Utc>> {
    Some(text.parse().expect("a valid time"))
}

pub(super) fn error(body: &str) -> String {
    parse_default(body)
        .expect_err("should not parse")
        .to_string()
}

/// Asserts that each body fails to parse with exactly the given message.
pub(super) fn assert_errors<const N: usize>(cases: [(String, &str); N]) {
    for (body, expected) in cases {
        assert_eq!(error(&body), expected, "{body}");
    }
}

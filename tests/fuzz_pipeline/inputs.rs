//! The fuzzed inputs: message shapes, routes (account and region named,
//! misrouted or left out), mutations and random bodies.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{CONFIGURED, FOREIGN, OWN, QUEUE_REGION, REGISTERED};

/// The message shapes nodereaper receives, with `{id}` for the instance id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    AsgTerminate,
    HookTerminating,
    EventBridgeLifecycleAction,
    EventBridgeTerminateSuccessful,
    Ec2StateTerminated,
    Ec2StateShuttingDown,
    Ec2StateRunning,
    AsgLaunch,
    AsgTest,
    HookWarmPool,
    SnsSubscriptionConfirmation,
}

pub(crate) const SHAPES: [Shape; 11] = [
    Shape::AsgTerminate,
    Shape::HookTerminating,
    Shape::EventBridgeLifecycleAction,
    Shape::EventBridgeTerminateSuccessful,
    Shape::Ec2StateTerminated,
    Shape::Ec2StateShuttingDown,
    Shape::Ec2StateRunning,
    Shape::AsgLaunch,
    Shape::AsgTest,
    Shape::HookWarmPool,
    Shape::SnsSubscriptionConfirmation,
];

/// The account and region a message names (`None`: the fields are left
/// out): right, misrouted or account-less.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) account: Option<&'static str>,
    pub(crate) region: Option<&'static str>,
}

impl Route {
    /// Leaves out the account and region fields the route does not name.
    pub(crate) fn apply(self, mut v: Value) -> Value {
        if let Some(map) = v.as_object_mut() {
            for (key, named) in [
                ("AccountId", self.account.is_some()),
                ("account", self.account.is_some()),
                ("region", self.region.is_some()),
                (
                    "AutoScalingGroupARN",
                    self.account.is_some() && self.region.is_some(),
                ),
            ] {
                if !named {
                    map.remove(key);
                }
            }
            if self.region.is_none() {
                map.remove("Details");
            }
        }
        v
    }
}

pub(crate) fn payload(shape: Shape, id: &str, route: Route) -> Value {
    let account = route.account.unwrap_or(OWN);
    let region = route.region.unwrap_or(QUEUE_REGION);
    let asg_arn = format!(
        "arn:aws:autoscaling:{region}:{account}:autoScalingGroup:0:autoScalingGroupName/web-asg"
    );
    let asg_arn = asg_arn.as_str();
    let asg_event = |event: &str| {
        route.apply(json!({
            "Progress": 50, "AccountId": account,
            "Description": format!("Terminating EC2 instance: {id}"),
            "AutoScalingGroupARN": asg_arn, "Service": "AWS Auto Scaling",
            "Time": "2026-11-25T10:00:36.414Z", "EC2InstanceId": id,
            "AutoScalingGroupName": "web-asg", "Event": event,
            "Details": {"Availability Zone": format!("{region}a")},
        }))
    };
    let hook = |extra: Option<(&str, &str)>| {
        let mut v = json!({
            "Origin": "AutoScalingGroup", "Destination": "EC2",
            "Service": "AWS Auto Scaling", "Time": "2026-11-25T10:00:36.414Z",
            "AccountId": account, "AutoScalingGroupName": "web-asg",
            "LifecycleHookName": "drain", "LifecycleActionToken": "71514b9d-6a40-4b26-8523-05e7ee35fa40",
            "EC2InstanceId": id, "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        });
        if let Some((k, val)) = extra {
            v[k] = json!(val);
        }
        route.apply(v)
    };
    let eventbridge = |source: &str, detail_type: &str, detail: Value| {
        route.apply(json!({
            "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": detail_type, "source": source, "account": account,
            "time": "2026-11-25T10:00:36Z", "region": region,
            "resources": [], "detail": detail,
        }))
    };
    match shape {
        Shape::AsgTerminate => asg_event("autoscaling:EC2_INSTANCE_TERMINATE"),
        Shape::AsgLaunch => asg_event("autoscaling:EC2_INSTANCE_LAUNCH"),
        Shape::AsgTest => json!({
            "AccountId": "123456789012", "RequestId": "x", "AutoScalingGroupARN": asg_arn,
            "AutoScalingGroupName": "web-asg", "Service": "AWS Auto Scaling",
            "Event": "autoscaling:TEST_NOTIFICATION", "Time": "2026-11-25T10:00:36.414Z",
        }),
        Shape::HookTerminating => hook(None),
        Shape::HookWarmPool => hook(Some(("Destination", "WarmPool"))),
        Shape::EventBridgeLifecycleAction => eventbridge(
            "aws.autoscaling",
            "EC2 Instance-terminate Lifecycle Action",
            json!({
                "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
                "AutoScalingGroupName": "web-asg", "LifecycleHookName": "drain",
                "EC2InstanceId": id, "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            }),
        ),
        Shape::EventBridgeTerminateSuccessful => eventbridge(
            "aws.autoscaling",
            "EC2 Instance Terminate Successful",
            json!({"EC2InstanceId": id, "AutoScalingGroupName": "web-asg", "StatusCode": "InProgress"}),
        ),
        Shape::Ec2StateTerminated | Shape::Ec2StateShuttingDown | Shape::Ec2StateRunning => {
            let state = match shape {
                Shape::Ec2StateTerminated => "terminated",
                Shape::Ec2StateShuttingDown => "shutting-down",
                _ => "running",
            };
            eventbridge(
                "aws.ec2",
                "EC2 Instance State-change Notification",
                json!({"instance-id": id, "state": state}),
            )
        }
        Shape::SnsSubscriptionConfirmation => json!({
            "Type": "SubscriptionConfirmation", "MessageId": "165545c9",
            "Token": "2336412f37", "TopicArn": "arn:aws:sns:us-east-1:123456789012:nodereaper",
            "Message": "You have chosen to subscribe to the topic",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2026-11-25T10:00:36.500Z",
        }),
    }
}

/// The SNS envelope of the topic in the route's account and region (the
/// topic ARN names them; an account-less route leaves its account empty).
pub(crate) fn sns_envelope(message: String, route: Route) -> Value {
    let topic = format!(
        "arn:aws:sns:{}:{}:nodereaper",
        route.region.unwrap_or(QUEUE_REGION),
        route.account.unwrap_or("")
    );
    json!({
        "Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": topic,
        "Subject": "Auto Scaling: termination", "Message": message,
        "Timestamp": "2026-11-25T10:00:36.500Z", "SignatureVersion": "1",
        "Signature": "EXAMPLE", "SigningCertURL": "https://sns.example/cert.pem",
    })
}

/// One edit of a message.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    /// Remove the n-th object member (pre-order, all depths).
    Remove(usize),
    /// Replace the n-th member's value.
    Replace(usize, Value),
    /// Byte-level damage to the serialized body.
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, String),
}

pub(crate) fn edit_member(value: &mut Value, n: &mut usize, m: &Mutation) -> bool {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if *n == 0 {
                    match m {
                        Mutation::Remove(_) => {
                            map.remove(&k);
                        }
                        Mutation::Replace(_, v) => {
                            map.insert(k, v.clone());
                        }
                        _ => {}
                    }
                    return true;
                }
                *n -= 1;
                if let Some(child) = map.get_mut(&k) {
                    if edit_member(child, n, m) {
                        return true;
                    }
                }
            }
            false
        }
        Value::Array(items) => items.iter_mut().any(|item| edit_member(item, n, m)),
        _ => false,
    }
}

pub(crate) fn apply_value(value: &mut Value, mutations: &[Mutation]) {
    for m in mutations {
        if let Mutation::Remove(n) | Mutation::Replace(n, _) = m {
            edit_member(value, &mut n.clone(), m);
        }
    }
}

pub(crate) fn apply_bytes(body: String, mutations: &[Mutation]) -> String {
    let mut bytes = body.into_bytes();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(at, b) if !bytes.is_empty() => bytes[at % len] = *b,
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Insert(at, text) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, text.bytes());
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// A message shape, perhaps wrapped in SNS, perhaps mutated.
    Shaped {
        shape: Shape,
        id: String,
        route: Route,
        sns: bool,
        inner: Vec<Mutation>,
        outer: Vec<Mutation>,
    },
    /// Any string at all.
    Raw(String),
    /// Random JSON.
    Json(Value),
}

impl Body {
    pub(crate) fn render(&self) -> String {
        match self {
            Body::Raw(s) => s.clone(),
            Body::Json(v) => v.to_string(),
            Body::Shaped {
                shape,
                id,
                route,
                sns,
                inner,
                outer,
            } => {
                let mut p = payload(*shape, id, *route);
                apply_value(&mut p, inner);
                let mut v = if *sns && !matches!(shape, Shape::SnsSubscriptionConfirmation) {
                    sns_envelope(apply_bytes(p.to_string(), inner), *route)
                } else {
                    p
                };
                apply_value(&mut v, outer);
                apply_bytes(v.to_string(), outer)
            }
        }
    }

    pub(crate) fn unmutated(&self) -> bool {
        matches!(self, Body::Shaped { inner, outer, .. } if inner.is_empty() && outer.is_empty())
    }
}

pub(crate) fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        instance_id().prop_map(Value::from),
        prop::sample::select(vec![
            "autoscaling:EC2_INSTANCE_TERMINATE",
            "autoscaling:EC2_INSTANCE_TERMINATING",
            "autoscaling:TEST_NOTIFICATION",
            "Notification",
            "terminated",
            "WarmPool",
            "aws.autoscaling",
            "EC2 Instance Terminate Successful",
            "{\"Event\":\"autoscaling:EC2_INSTANCE_TERMINATE\",\"EC2InstanceId\":\"i-0aaaaaaaaaaaaaaa1\"}",
        ])
        .prop_map(Value::from),
        Just(json!({})),
        Just(json!([])),
    ]
}

pub(crate) fn random_json() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "Type",
        "Message",
        "Event",
        "EC2InstanceId",
        "AutoScalingGroupName",
        "LifecycleTransition",
        "LifecycleHookName",
        "detail-type",
        "source",
        "detail",
        "instance-id",
        "state",
        "region",
        "TopicArn",
    ]);
    leaf().prop_recursive(3, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::btree_map(keys.clone(), inner.clone(), 0..8).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
            inner.clone().prop_map(|v| Value::String(v.to_string())),
            prop::collection::vec(inner, 0..3).prop_map(Value::Array),
        ]
    })
}

pub(crate) fn instance_id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(REGISTERED.to_vec()).prop_map(str::to_string),
        2 => "i-[0-9a-f]{17}",
        1 => "i-[0-9a-f]{8}",
        1 => prop_oneof![
            Just(String::new()),
            "i-[0-9A-F]{17}",
            "i-[0-9a-f]{0,20}",
            " ?i-0aaaaaaaaaaaaaaa1 ?",
            "[a-z*:() ]{0,12}",
            ".{0,24}",
        ],
    ]
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (0usize..24).prop_map(Mutation::Remove),
        3 => ((0usize..24), leaf()).prop_map(|(n, v)| Mutation::Replace(n, v)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::sample::select(vec!["\"", "{", "}", ",", "null", "\\u0000", "\u{1F980}", "]"]))
            .prop_map(|(at, t)| Mutation::Insert(at, t.to_string())),
    ]
}

/// Termination shapes twice as often as the others.
pub(crate) fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        2 => prop::sample::select(SHAPES[..5].to_vec()),
        1 => prop::sample::select(SHAPES[5..].to_vec()),
    ]
}

/// Mostly right (own account, the queue's region), often misrouted or
/// without an account.
pub(crate) fn route() -> impl Strategy<Value = Route> {
    let account = prop_oneof![
        6 => Just(Some(OWN)),
        2 => Just(Some(CONFIGURED)),
        1 => Just(Some(FOREIGN)),
        2 => Just(None),
    ];
    let region = prop_oneof![
        6 => Just(Some(QUEUE_REGION)),
        2 => Just(Some("eu-west-1")),
        1 => Just(None),
    ];
    (account, region).prop_map(|(account, region)| Route { account, region })
}

pub(crate) fn body() -> impl Strategy<Value = Body> {
    let mutations = || {
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(mutation(), 1..4),
        ]
    };
    prop_oneof![
        8 => (
            shape(),
            instance_id(),
            route(),
            any::<bool>(),
            mutations(),
            mutations(),
        )
            .prop_map(|(shape, id, route, sns, inner, outer)| Body::Shaped { shape, id, route, sns, inner, outer }),
        1 => any::<String>().prop_map(Body::Raw),
        1 => random_json().prop_map(Body::Json),
    ]
}

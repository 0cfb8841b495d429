//! Property tests over every shape: no input makes [`parse`] panic, and a
//! termination always names a valid instance (and a consistent lifecycle
//! action). Bodies are arbitrary strings, JSON built from the keys the parser
//! reads, and the documentation examples with random mutations.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::testdata::*;
use super::*;

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
            EC2_INSTANCE_TERMINATE,
            TEST_NOTIFICATION,
            EC2_INSTANCE_TERMINATING,
            EC2_INSTANCE_LAUNCHING,
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
                prop_assert!(is_instance_id(t.instance_id.as_str()), "{t:?}");
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
        ("Event", EC2_INSTANCE_TERMINATE),
        ("Event", TEST_NOTIFICATION),
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
        ("LifecycleTransition", EC2_INSTANCE_TERMINATING),
        ("LifecycleTransition", EC2_INSTANCE_LAUNCHING),
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
            Ok(Event::Termination(t)) => prop_assert_eq!(t.instance_id.as_str(), id.as_str()),
            Err(ParseError::Invalid { field, .. } | ParseError::Missing { field, .. }) => {
                prop_assert!(!is_instance_id(&id));
                prop_assert_eq!(field, "EC2InstanceId");
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

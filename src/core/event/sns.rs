//! The SNS envelope: `Type: Notification` with the payload as a JSON *string*
//! in `Message`. The topic's ARN and the `Timestamp` become fallbacks for the
//! region, account and time of the payload; subscription confirmations are
//! reported, not parsed further.

use serde_json::Value;

use super::{
    arn_account, arn_region, parse_payload, Context, Event, Obj, ParseError, ParseOptions,
    EXPECTED_STRING,
};

/// Whether the body is an SNS envelope: it has `Type`, and no `detail-type`
/// (an EventBridge event is never an envelope, whatever its other keys).
pub(super) fn is_envelope(obj: &Obj<'_>) -> bool {
    obj.map.contains_key("Type") && !obj.map.contains_key("detail-type")
}

/// Parses an SNS envelope and the payload in its `Message`.
pub(super) fn parse(env: &Obj<'_>, opts: &ParseOptions) -> Result<Event, ParseError> {
    let kind = env.str("Type", "an SNS message type such as Notification")?;
    let topic = env.opt_str("TopicArn", EXPECTED_STRING)?;
    match kind {
        "Notification" => {}
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            return Ok(subscription_message(kind, topic));
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

/// `Other` for a (un)subscription confirmation, with a hint for confirming.
fn subscription_message(kind: &str, topic: Option<&str>) -> Event {
    let topic = topic.map_or_else(|| "unknown topic".to_owned(), |t| format!("topic {t}"));
    let hint = if kind == "SubscriptionConfirmation" {
        "; confirm it by visiting its SubscribeURL"
    } else {
        ""
    };
    Event::Other {
        description: format!("SNS {kind} for {topic}{hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::*;
    use serde_json::json;

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
}

//! `nodereaper setup` against moto (started by `common::stack()`).
//!
//! moto 5.2 gaps, asserted rather than hidden:
//! - Auto Scaling DescribeNotificationConfigurations and
//!   PutNotificationConfiguration are not implemented (bare HTTP 500, the log
//!   says NotImplementedError): the `asg-notification` step must be reported
//!   `Failed`, with a warning, on every run; never as done.
//! - SetQueueAttributes drops the queue's Policy unless the call sets it.
//! - DescribeLifecycleHooks returns fixed NotificationTargetARN / RoleARN
//!   values instead of the stored ones, so a re-run may report the hook
//!   `Updated` on exactly those two fields.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
use aws_sdk_sqs::types::QueueAttributeName as Qa;
use common::*;
use nodereaper::jobs::setup::{
    self, iam_policy, ChangeAction, LifecycleHookSpec, ResourceKind, SetupError, SetupReport,
    SetupSpec,
};
use serde_json::Value;

/// moto's SDK config without retries: its unimplemented actions answer
/// HTTP 500, which the SDK would otherwise retry with backoff for nothing.
async fn sdk() -> aws_config::SdkConfig {
    aws()
        .await
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build()
}

/// A launch template and a one-instance group in us-east-1a, both `name`.
async fn create_asg(name: &str, tags: &[(&str, &str)]) {
    let sdk = aws().await;
    let data = RequestLaunchTemplateData::builder()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::T3Micro)
        .build();
    aws_sdk_ec2::Client::new(&sdk)
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data)
        .send()
        .await
        .expect("create launch template");
    let template = LaunchTemplateSpecification::builder()
        .launch_template_name(name)
        .version("$Latest")
        .build();
    let tags = tags.iter().map(|(k, v)| {
        Tag::builder()
            .key(*k)
            .value(*v)
            .resource_id(name)
            .resource_type("auto-scaling-group")
            .propagate_at_launch(false)
            .build()
    });
    aws_sdk_autoscaling::Client::new(&sdk)
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(template)
        .min_size(1)
        .max_size(1)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .set_tags(Some(tags.collect()))
        .send()
        .await
        .expect("create auto scaling group");
}

fn action(report: &SetupReport, kind: ResourceKind, name: &str) -> ChangeAction {
    report
        .get(kind, name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {report:#?}"))
        .action
}

/// The moto gap: the group's notification configuration is reported as not
/// done (Failed + warning), so the run is not complete.
fn assert_notification_not_done(report: &SetupReport, group: &str) {
    assert_eq!(
        action(report, ResourceKind::AsgNotification, group),
        ChangeAction::Failed
    );
    assert!(!report.is_complete());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains(group) && w.contains("NotificationConfiguration")),
        "{:?}",
        report.warnings
    );
}

async fn queue_attrs(url: &str, names: &[Qa]) -> std::collections::HashMap<Qa, String> {
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .expect("queue attributes");
    out.attributes().cloned().unwrap_or_default()
}

#[tokio::test]
async fn creates_everything_then_reports_unchanged_and_repairs_drift() {
    let name = unique("nr-setup");
    create_asg(&name, &[]).await;
    let spec = SetupSpec {
        name: name.clone(),
        asg_names: vec![name.clone()],
        eventbridge_rule: true,
        ..Default::default()
    };
    let (dlq, rule) = (spec.dlq_name(), spec.rule_name());
    let expected = [
        (ResourceKind::SnsTopic, &name),
        (ResourceKind::SqsDlq, &dlq),
        (ResourceKind::SqsQueue, &name),
        (ResourceKind::SqsQueuePolicy, &name),
        (ResourceKind::SnsSubscription, &name),
        (ResourceKind::EventbridgeRule, &rule),
        (ResourceKind::EventbridgeTarget, &rule),
    ];

    let first = setup::setup(&sdk().await, &spec)
        .await
        .expect("first setup");
    for (kind, n) in expected {
        assert_eq!(
            action(&first, kind, n),
            ChangeAction::Created,
            "{kind}: {first:#?}"
        );
    }
    assert_notification_not_done(&first, &name);
    assert_eq!(first.changes.len(), expected.len() + 1, "{first:#?}");

    let second = setup::setup(&sdk().await, &spec)
        .await
        .expect("second setup");
    for c in second
        .changes
        .iter()
        .filter(|c| c.resource.kind != ResourceKind::AsgNotification)
    {
        assert_eq!(c.action, ChangeAction::Unchanged, "{c:?}");
    }
    assert_notification_not_done(&second, &name);
    assert_eq!(
        (&second.queue_url, &second.topic_arn),
        (&first.queue_url, &first.topic_arn)
    );

    // Drift: the dry run reports it and leaves it, the real run repairs it.
    // The drift carries the current Policy along: moto's SetQueueAttributes
    // drops a queue's Policy unless the call sets it (real SQS keeps it).
    let url = first.queue_url.clone().expect("queue url");
    let policy = queue_attrs(&url, &[Qa::Policy]).await.remove(&Qa::Policy);
    aws_sdk_sqs::Client::new(&aws().await)
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(Qa::VisibilityTimeout, "30")
        .attributes(Qa::Policy, policy.expect("policy"))
        .send()
        .await
        .expect("drift");
    let dry_spec = SetupSpec {
        dry_run: true,
        ..spec.clone()
    };
    let dry = setup::setup(&sdk().await, &dry_spec)
        .await
        .expect("dry run");
    let change = dry
        .get(ResourceKind::SqsQueue, &name)
        .expect("queue change");
    assert_eq!(
        (change.action, change.detail.as_str()),
        (ChangeAction::WouldUpdate, "VisibilityTimeout: 30 -> 300")
    );
    assert_eq!(
        action(&dry, ResourceKind::SqsQueuePolicy, &name),
        ChangeAction::Unchanged
    );
    let visibility = || async {
        queue_attrs(&url, &[Qa::VisibilityTimeout])
            .await
            .remove(&Qa::VisibilityTimeout)
    };
    assert_eq!(visibility().await.as_deref(), Some("30"));

    let fixed = setup::setup(&sdk().await, &spec).await.expect("repair");
    assert_eq!(
        action(&fixed, ResourceKind::SqsQueue, &name),
        ChangeAction::Updated
    );
    assert_eq!(visibility().await.as_deref(), Some("300"));
    // Same moto gap: setup's own SetQueueAttributes dropped the Policy, and
    // the policy step, which runs after it, puts it back.
    assert!(matches!(
        action(&fixed, ResourceKind::SqsQueuePolicy, &name),
        ChangeAction::Unchanged | ChangeAction::Created
    ));
    let last = setup::setup(&sdk().await, &spec)
        .await
        .expect("after repair");
    assert!(last
        .changes
        .iter()
        .all(|c| c.action == ChangeAction::Unchanged
            || c.resource.kind == ResourceKind::AsgNotification));
}

#[tokio::test]
async fn topic_delivers_asg_notifications_to_the_queue_in_an_sns_envelope() {
    let name = unique("nr-wire");
    let spec = SetupSpec {
        name: name.clone(),
        max_receive_count: 7,
        ..Default::default()
    };
    let report = setup::setup(&sdk().await, &spec).await.expect("setup");
    assert!(report.is_complete(), "{report}");
    let topic = report.topic_arn.clone().expect("topic arn");
    let url = report.queue_url.clone().expect("queue url");
    let dlq_url = report.dlq_url.clone().expect("dlq url");

    // What the Auto Scaling service publishes for an EC2_INSTANCE_TERMINATE.
    let notification = asg_terminate_notification(&fake_instance_id(), "web");
    aws_sdk_sns::Client::new(&aws().await)
        .publish()
        .topic_arn(&topic)
        .subject("Auto Scaling: termination for group \"web\"")
        .message(&notification)
        .send()
        .await
        .expect("publish");
    eventually(
        Duration::from_secs(15),
        "the SNS envelope in the queue",
        || async {
            peek_all(&url).await.iter().any(|m| {
                let body: Value =
                    serde_json::from_str(m.body().unwrap_or_default()).unwrap_or_default();
                body["Type"] == "Notification"
                    && body["TopicArn"] == topic.as_str()
                    && body["Message"] == notification.as_str()
            })
        },
    )
    .await;

    let attrs = queue_attrs(&url, &[Qa::RedrivePolicy, Qa::Policy]).await;
    let dlq_arn = queue_attrs(&dlq_url, &[Qa::QueueArn])
        .await
        .remove(&Qa::QueueArn)
        .expect("dlq arn");
    assert_eq!(report.dlq_arn.as_deref(), Some(dlq_arn.as_str()));
    assert_eq!(
        report.queue_arn.as_deref(),
        queue_attrs(&url, &[Qa::QueueArn])
            .await
            .get(&Qa::QueueArn)
            .map(String::as_str)
    );
    let redrive: Value = serde_json::from_str(&attrs[&Qa::RedrivePolicy]).expect("redrive json");
    assert_eq!(redrive["deadLetterTargetArn"], dlq_arn.as_str());
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "7"
    );
    let policy: Value = serde_json::from_str(&attrs[&Qa::Policy]).expect("policy json");
    let statements = policy["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 1, "{policy}");
    assert_eq!(statements[0]["Principal"]["Service"], "sns.amazonaws.com");
    assert_eq!(statements[0]["Action"], "sqs:SendMessage");
    assert_eq!(
        statements[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        topic.as_str()
    );
}

#[tokio::test]
async fn dry_run_on_a_fresh_name_creates_nothing() {
    let name = unique("nr-dry");
    let group = unique("nr-dry-asg");
    create_asg(&group, &[]).await;
    let hook = LifecycleHookSpec {
        role_arn: Some("arn:aws:iam::123456789012:role/asg-sns".into()),
        ..Default::default()
    };
    let spec = SetupSpec {
        name: name.clone(),
        asg_names: vec![group.clone()],
        lifecycle_hook: Some(hook),
        eventbridge_rule: true,
        dry_run: true,
        ..Default::default()
    };
    let report = setup::setup(&sdk().await, &spec).await.expect("dry run");
    for c in report
        .changes
        .iter()
        .filter(|c| c.resource.kind != ResourceKind::AsgNotification)
    {
        assert_eq!(c.action, ChangeAction::WouldCreate, "{c:?}");
    }
    assert_notification_not_done(&report, &group); // moto: even the Describe fails
    assert_eq!(report.changes.len(), 9, "{report:#?}");
    assert_eq!(
        (&report.queue_url, &report.dlq_url, &report.topic_arn),
        (&None, &None, &None)
    );
    assert_eq!((&report.queue_arn, &report.dlq_arn), (&None, &None));
    let topic = report.get(ResourceKind::SnsTopic, &name).expect("topic");
    assert_eq!(
        topic.detail,
        format!("arn:aws:sns:us-east-1:123456789012:{name}")
    );

    let sdk = aws().await;
    let queues = aws_sdk_sqs::Client::new(&sdk)
        .list_queues()
        .queue_name_prefix(&name)
        .send()
        .await
        .expect("list queues");
    assert!(queues.queue_urls().is_empty(), "{:?}", queues.queue_urls());
    let topics = aws_sdk_sns::Client::new(&sdk)
        .list_topics()
        .send()
        .await
        .expect("list topics");
    assert!(!topics.topics().iter().any(|t| t
        .topic_arn()
        .is_some_and(|a| a.ends_with(&format!(":{name}")))));
    let rule = aws_sdk_eventbridge::Client::new(&sdk)
        .describe_rule()
        .name(spec.rule_name())
        .send()
        .await;
    assert!(rule.is_err(), "rule exists: {rule:?}");
    let hooks = aws_sdk_autoscaling::Client::new(&sdk)
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&group)
        .send()
        .await
        .expect("hooks");
    assert!(hooks.lifecycle_hooks().is_empty());
}

#[tokio::test]
async fn lifecycle_hook_on_groups_found_by_tag() {
    let group = unique("nr-hook");
    create_asg(&group, &[("nodereaper-test", &group)]).await;
    let hook = LifecycleHookSpec {
        role_arn: Some("arn:aws:iam::123456789012:role/asg-sns".into()),
        ..Default::default()
    };
    let spec = SetupSpec {
        name: unique("nr-hook-q"),
        asg_tag: Some(("nodereaper-test".into(), group.clone())),
        lifecycle_hook: Some(hook),
        ..Default::default()
    };
    let hook_resource = format!("{group}/nodereaper-terminate");

    let first = setup::setup(&sdk().await, &spec).await.expect("setup");
    assert_eq!(
        action(&first, ResourceKind::AsgLifecycleHook, &hook_resource),
        ChangeAction::Created
    );
    assert_notification_not_done(&first, &group);
    let hooks = aws_sdk_autoscaling::Client::new(&aws().await)
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&group)
        .send()
        .await
        .expect("hooks");
    let h = hooks.lifecycle_hooks().first().expect("hook");
    assert_eq!(h.lifecycle_hook_name(), Some("nodereaper-terminate"));
    assert_eq!(
        h.lifecycle_transition(),
        Some("autoscaling:EC2_INSTANCE_TERMINATING")
    );
    assert_eq!(
        (h.heartbeat_timeout(), h.default_result()),
        (Some(300), Some("CONTINUE"))
    );

    // moto gap: fixed NotificationTargetARN / RoleARN may make this Updated,
    // but only on those fields.
    let second = setup::setup(&sdk().await, &spec)
        .await
        .expect("second setup");
    let change = second
        .get(ResourceKind::AsgLifecycleHook, &hook_resource)
        .expect("hook change");
    match change.action {
        ChangeAction::Unchanged => {}
        ChangeAction::Updated => {
            for diff in change.detail.split("; ") {
                assert!(
                    diff.starts_with("NotificationTargetARN:") || diff.starts_with("RoleARN:"),
                    "{diff}"
                );
            }
        }
        other => panic!("unexpected {other:?}: {change:?}"),
    }
}

#[tokio::test]
async fn refuses_bad_input_before_changing_anything() {
    let sdk = sdk().await;
    let no_role = SetupSpec {
        asg_names: vec!["web".into()],
        lifecycle_hook: Some(LifecycleHookSpec::default()),
        ..Default::default()
    };
    let err = setup::setup(&sdk, &no_role)
        .await
        .expect_err("role required");
    assert!(
        matches!(err, SetupError::Invalid(ref m) if m.contains("requires a role ARN")),
        "{err}"
    );

    let name = unique("nr-bad");
    let missing = SetupSpec {
        name: name.clone(),
        asg_names: vec![unique("no-such-group")],
        ..Default::default()
    };
    let err = setup::setup(&sdk, &missing)
        .await
        .expect_err("unknown group");
    assert!(err.to_string().contains("not found"), "{err}");
    let untagged = SetupSpec {
        name: name.clone(),
        asg_tag: Some(("nodereaper-test".into(), name.clone())),
        ..Default::default()
    };
    let err = setup::setup(&sdk, &untagged)
        .await
        .expect_err("no tagged group");
    assert!(
        err.to_string()
            .contains("no Auto Scaling group has the tag"),
        "{err}"
    );
    let queues = aws_sdk_sqs::Client::new(&sdk)
        .list_queues()
        .queue_name_prefix(&name)
        .send()
        .await
        .expect("list");
    assert!(queues.queue_urls().is_empty());
}

#[test]
fn iam_policy_grants_exactly_the_daemon_actions() {
    fn actions(policy: &Value) -> BTreeSet<String> {
        let statements = policy["Statement"].as_array().expect("statements");
        statements
            .iter()
            .flat_map(|s| {
                s["Action"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![s["Action"].clone()])
            })
            .map(|a| a.as_str().expect("action").to_string())
            .collect()
    }
    let daemon = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
        "ec2:DescribeInstances",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
    ];
    let expected: BTreeSet<String> = daemon.iter().map(|a| a.to_string()).collect();
    let queues = ["arn:aws:sqs:eu-west-1:123456789012:reaper".to_string()];
    let dlqs = ["arn:aws:sqs:eu-west-1:123456789012:reaper-dlq".to_string()];
    let policy = iam_policy(&queues, &dlqs, None);
    assert_eq!(actions(&policy), expected);

    // SendMessage only on the DLQ.
    let send = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Action"] == serde_json::json!(["sqs:SendMessage"]))
        .expect("send statement");
    assert_eq!(send["Resource"], serde_json::json!(dlqs));

    let with_journal = iam_policy(&[], &[], Some(("journal-bucket", "nodereaper/journal/")));
    let mut expected_s3 = expected.clone();
    expected_s3.extend(["s3:PutObject", "s3:GetObject", "s3:ListBucket"].map(String::from));
    assert_eq!(actions(&with_journal), expected_s3);
    assert!(with_journal
        .to_string()
        .contains("arn:aws:sqs:*:*:nodereaper"));
}

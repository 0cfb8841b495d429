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

use aws_sdk_sqs::types::QueueAttributeName as Qa;
use common::form_recorder::FormRecorder;
use common::*;
use nodereaper::jobs::setup::{
    self, daemon_policy, ChangeAction, LifecycleHookSpec, PolicyScope, ResourceKind, SetupError,
    SetupReport, SetupSpec,
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
    create_asg(&name, &[], 1).await;
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
    create_asg(&group, &[], 1).await;
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
    create_asg(&group, &[("nodereaper-test", &group)], 1).await;
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

fn actions(statement: &Value) -> BTreeSet<String> {
    statement["Action"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![statement["Action"].clone()])
        .iter()
        .map(|a| a.as_str().expect("action").to_string())
        .collect()
}

fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {policy}"))
}

/// A configuration with every optional part: two arbitrarily named queues
/// (one DLQ configured, one read from the RedrivePolicy), the S3 journal
/// with a KMS key, a second account, the key in Secrets Manager.
fn full_config() -> nodereaper::config::Config {
    let mut cfg = nodereaper::config::Config::default();
    cfg.aws.region = Some("eu-west-1".into());
    cfg.queues = vec![
        nodereaper::config::QueueConfig {
            url: "https://sqs.eu-west-1.amazonaws.com/123456789012/reaper-full".into(),
            region: None,
            dlq_url: Some("https://sqs.eu-west-1.amazonaws.com/123456789012/graveyard".into()),
            target: None,
        },
        nodereaper::config::QueueConfig {
            url: "https://sqs.eu-west-1.amazonaws.com/123456789012/other".into(),
            region: None,
            dlq_url: None,
            target: None,
        },
    ];
    cfg.journal.s3_bucket = Some("journal-bucket".into());
    cfg.journal.s3_kms_key_id = Some("1234abcd-12ab-34cd-56ef-1234567890ab".into());
    cfg.aws.accounts = vec![nodereaper::config::AccountConfig {
        id: "210987654321".into(),
        role_arn: "arn:aws:iam::210987654321:role/nodereaper".into(),
        external_id: None,
    }];
    cfg.chef.client_key_secret = Some("nodereaper/chef-key".into());
    cfg
}

#[test]
fn printed_policy_is_the_configurations_own() {
    let cfg = full_config();
    let dlqs = [
        None,
        Some("https://sqs.eu-west-1.amazonaws.com/123456789012/other-dead".to_string()),
    ];
    let (scope, unresolved) =
        PolicyScope::from_config(&cfg, &dlqs, &["web".to_string()]).expect("scope");
    assert!(unresolved.is_empty());
    let policy = daemon_policy(&scope);
    let arn = |name: &str| format!("arn:aws:sqs:eu-west-1:123456789012:{name}");
    assert_eq!(
        statement(&policy, "ConsumeQueues")["Resource"],
        serde_json::json!([
            arn("reaper-full"),
            arn("other"),
            arn("graveyard"),
            arn("other-dead")
        ])
    );
    assert_eq!(
        statement(&policy, "DeadLetter")["Resource"],
        serde_json::json!([arn("graveyard"), arn("other-dead")])
    );
    // Every S3 call the journal makes: record and read, probe and prune
    // (DeleteObject), list.
    let objects = statement(&policy, "JournalObjects");
    assert_eq!(
        actions(objects),
        BTreeSet::from(["s3:PutObject", "s3:GetObject", "s3:DeleteObject"].map(String::from))
    );
    assert_eq!(
        objects["Resource"],
        "arn:aws:s3:::journal-bucket/nodereaper/journal/*"
    );
    assert_eq!(
        actions(statement(&policy, "JournalList")),
        BTreeSet::from(["s3:ListBucket".to_string()])
    );
    let key = statement(&policy, "JournalKey");
    assert_eq!(
        actions(key),
        BTreeSet::from(["kms:GenerateDataKey", "kms:Decrypt"].map(String::from))
    );
    assert_eq!(
        key["Resource"],
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    );
    let roles = statement(&policy, "AssumeAccountRoles");
    assert_eq!(
        roles["Resource"],
        serde_json::json!(["arn:aws:iam::210987654321:role/nodereaper"])
    );
    assert_eq!(
        actions(roles),
        BTreeSet::from(["sts:AssumeRole".to_string()])
    );
    assert_eq!(
        actions(statement(&policy, "ChefKeySecret")),
        BTreeSet::from(["secretsmanager:GetSecretValue".to_string()])
    );
    assert_eq!(
        statement(&policy, "LifecycleActions")["Resource"],
        serde_json::json!(["arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/web"])
    );
    // Every action of the policy is one of nodereaper's calls (or the
    // Lambda function's logs), and every call the configuration makes is granted.
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(actions)
        .collect();
    // Not asked by this configuration: a key in SSM, and the group tags
    // (read only with several Chef targets).
    let calls: BTreeSet<String> = nodereaper::adapters::aws::permissions::CALLS
        .iter()
        .filter(|c| c.statement != "ChefKeyParameter" && c.statement != "DescribeGroupTags")
        .map(|c| c.action.to_string())
        .collect();
    assert_eq!(granted, calls);
}

/// The Role's policy statements of the CloudFormation template, by Sid:
/// their actions (CloudFormation expressions are not resolved; the
/// `!If` conditions are listed as the template says).
fn template_role_statements() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let path = repo_root().join("packaging/cloudformation/nodereaper.yaml");
    let text = std::fs::read_to_string(&path).expect("read template");
    let start = text.find("\n  Role:\n").expect("Role resource");
    let end = text[start..]
        .find("\n  InstanceProfile:")
        .expect("end of Role")
        + start;
    let mut out = std::collections::BTreeMap::new();
    let mut lines = text[start..end].lines();
    while let Some(line) = lines.next() {
        let Some(sid) = line.trim().trim_start_matches("- ").strip_prefix("Sid: ") else {
            continue;
        };
        let mut action = String::new();
        for next in lines.by_ref() {
            let t = next.trim();
            if let Some(a) = t.strip_prefix("Action:") {
                action.push_str(a);
            } else if !action.is_empty() && !t.starts_with("Resource") {
                action.push_str(t);
            }
            if t.starts_with("Resource") {
                break;
            }
        }
        let set = action
            .split([',', '[', ']', ' '])
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        out.insert(sid.to_string(), set);
    }
    out
}

#[test]
fn cloudformation_role_grants_what_the_printed_policy_grants_in_both_modes() {
    let template = template_role_statements();
    for (mode, function) in [("daemon", None), ("function", Some("nodereaper"))] {
        // What the template can configure: the queue pair, the S3 journal,
        // a Chef key in Secrets Manager or SSM.
        for key_store in ["secret", "parameter"] {
            let mut cfg = nodereaper::config::Config {
                queues: vec![nodereaper::config::QueueConfig {
                    url: "https://sqs.eu-west-1.amazonaws.com/123456789012/q".into(),
                    region: None,
                    dlq_url: Some("https://sqs.eu-west-1.amazonaws.com/123456789012/q-dlq".into()),
                    target: None,
                }],
                ..Default::default()
            };
            cfg.journal.s3_bucket = Some("b".into());
            // The template's JournalKmsKeyArn and AccountRoleArns.
            cfg.journal.s3_kms_key_id = Some(
                "arn:aws:kms:eu-west-1:123456789012:key/0b7d2b53-4a42-4e4c-9a3e-3c3c0d2d1e11"
                    .into(),
            );
            cfg.aws.accounts = vec![nodereaper::config::AccountConfig {
                id: "111111111111".into(),
                role_arn: "arn:aws:iam::111111111111:role/nodereaper".into(),
                external_id: None,
            }];
            match key_store {
                "secret" => cfg.chef.client_key_secret = Some("s".into()),
                _ => cfg.chef.client_key_parameter = Some("/p".into()),
            }
            let (mut scope, _) = PolicyScope::from_config(&cfg, &[], &[]).expect("scope");
            scope.lambda_function = function.map(str::to_string);
            let policy = daemon_policy(&scope);
            for s in policy["Statement"].as_array().expect("statements") {
                let sid = s["Sid"].as_str().expect("sid");
                assert_eq!(
                    template.get(sid),
                    Some(&actions(s)),
                    "{mode} mode, statement {sid}: template role differs from --print-iam-policy"
                );
            }
        }
    }
    // Nothing in the template's role that the printed policy lacks.
    let known = [
        "ConsumeQueues",
        "DeadLetter",
        "DescribeInstances",
        "LifecycleActions",
        "JournalObjects",
        "JournalList",
        "JournalKey",
        "AssumeAccountRoles",
        "ChefKeySecret",
        "ChefKeyParameter",
        "DescribeGroupTags",
        "Logs",
    ];
    assert_eq!(
        template.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(known.map(String::from))
    );
}

/// `setup --hook-target b` writes the marker routing reads back as `b`
/// into the hook's NotificationMetadata; a target that is not configured
/// is refused before anything changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_writes_the_hook_target_into_notification_metadata() {
    let group = unique("nr-route");
    create_asg(&group, &[], 1).await;
    let proxy = FormRecorder::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nodereaper.toml");
    std::fs::write(
        &config,
        format!(
            "[chef]\nclient_name = \"admin\"\nclient_key = \"{key}\"\nallow_plain_http = true\n\
             [[chef.targets]]\nname = \"a\"\nserver_url = \"{chef}\"\n\
             [[chef.targets]]\nname = \"b\"\nserver_url = \"{chef}\"\n\
             [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\n",
            key = stack().admin_key().display(),
            chef = stack().chef_url(),
            url = proxy.url,
        ),
    )
    .expect("config");
    let setup_with = |target: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"));
        cmd.arg("--config").arg(&config).args([
            "setup",
            "--name",
            &unique("nr-route-q"),
            "--asg",
            &group,
            "--lifecycle-hook",
            "--hook-role-arn",
            "arn:aws:iam::123456789012:role/asg-sns",
            "--hook-target",
            target,
        ]);
        cmd
    };
    // Blocks this worker; the proxy answers on the other.
    let out = setup_with("c").output().expect("run setup");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "an unknown target was accepted: {text}"
    );
    assert!(
        text.contains("--hook-target \"c\"") && text.contains("a, b"),
        "{text}"
    );
    assert!(proxy.calls.lock().expect("lock").is_empty(), "changed AWS");

    // Blocks this worker; the proxy answers on the other.
    let out = setup_with("b").output().expect("run setup");
    let puts = proxy.hook_puts();
    assert_eq!(puts.len(), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let metadata = param(&puts[0], "NotificationMetadata").expect("metadata written");
    assert_eq!(metadata, "nodereaper:target=b");
    assert_eq!(
        nodereaper::core::routing::metadata_target(metadata).expect("a marker"),
        Some("b".to_string()),
        "routing reads back what setup writes"
    );
}

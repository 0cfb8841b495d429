//! `nodereaper run` end to end: moto (SNS, SQS, EC2, EventBridge) + goiardi.

mod common;

use std::time::Duration;

use common::*;
use nodereaper::adapters::aws::sqs::{SqsQueue, REASON_ATTRIBUTE};
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::ports::{ChefApi, Journal};
use nodereaper::run::Source;
use serde_json::json;
use tokio::sync::watch;

async fn sns_topic_into(queue_url: &str, name: &str) -> String {
    let sdk = aws().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("arn")
        .to_string();
    let queue_arn = queue_arn(queue_url).await;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .expect("subscribe");
    topic
}

#[tokio::test]
async fn classic_sns_asg_notification_deregisters_and_journals() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("classic"), 5).await;
    let topic = sns_topic_into(&queue, &unique("asg-topic")).await;
    let ids = run_instances(1).await;
    terminate_instances(&ids).await;
    let node = unique("web");
    register(&chef, &node, Some(&ids[0])).await;

    // What the Auto Scaling service publishes for a notification configuration.
    let sns = aws_sdk_sns::Client::new(&aws().await);
    sns.publish()
        .topic_arn(&topic)
        .subject("Auto Scaling: termination for group \"web-asg\"")
        .message(asg_terminate_notification(&ids[0], "web-asg"))
        .send()
        .await
        .expect("publish");

    let journal_dir = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&queue], journal_dir.path()), None).await;
    assert_eq!(summary.received, 1, "{summary:?}");
    assert!(
        node_gone(&chef, &node).await,
        "node or client still registered"
    );
    assert_eq!(depth(&queue).await, (0, 0), "message not deleted");
    assert_eq!(depth(&dlq).await, (0, 0), "nothing may reach the DLQ");
    let entries = LocalJournal::open(journal_dir.path())
        .expect("journal")
        .entries()
        .await
        .expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].node_name, node);
    assert_eq!(
        entries[0].node.as_ref().expect("node json")["automatic"]["ec2"]["instance_id"],
        ids[0].as_str()
    );
    assert_eq!(
        entries[0].client.as_ref().expect("client json")["name"],
        node.as_str()
    );
    assert!(entries[0].message_id.is_some());
}

#[tokio::test]
async fn every_message_shape_end_to_end() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("shapes"), 5).await;
    let recorder = LifecycleRecorder::start(false).await;
    // Instances EC2 no longer knows (terminated long ago) count as gone.
    let raw_asg = fake_instance_id();
    let hook = fake_instance_id();
    let hook_sns = fake_instance_id();
    let eb_hook = fake_instance_id();
    let eb_success = fake_instance_id();
    let state_change = fake_instance_id();
    let all = [
        &raw_asg,
        &hook,
        &hook_sns,
        &eb_hook,
        &eb_success,
        &state_change,
    ];
    for id in all {
        register(&chef, &format!("n-{id}"), Some(id)).await;
    }
    let lifecycle_msg = |id: &str| {
        json!({
            "Origin": "AutoScalingGroup",
            "Destination": "EC2",
            "Service": "AWS Auto Scaling",
            "Time": "2026-11-25T10:00:00.000Z",
            "AccountId": "123456789012",
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "RequestId": "63f0f8c4-3c4a-4c2f-8b87-9f4f5a0b7e0e",
            "LifecycleActionToken": format!("token-{id}"),
            "AutoScalingGroupName": "web-asg",
            "LifecycleHookName": "nodereaper-terminate",
            "EC2InstanceId": id,
            "NotificationMetadata": "",
        })
        .to_string()
    };
    let eventbridge = |detail_type: &str, source: &str, detail: serde_json::Value| {
        json!({
            "version": "0",
            "id": "12345678-1234-1234-1234-123456789012",
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": "2026-11-25T10:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        })
        .to_string()
    };
    send(&queue, &asg_terminate_notification(&raw_asg, "web-asg")).await; // raw delivery
    send(&queue, &lifecycle_msg(&hook)).await;
    send(&queue, &sns_wrap(&lifecycle_msg(&hook_sns))).await;
    send(
        &queue,
        &eventbridge(
            "EC2 Instance-terminate Lifecycle Action",
            "aws.autoscaling",
            json!({
                "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
                "AutoScalingGroupName": "web-asg",
                "LifecycleHookName": "nodereaper-terminate",
                "EC2InstanceId": eb_hook,
                "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                "Origin": "AutoScalingGroup",
                "Destination": "EC2",
            }),
        ),
    )
    .await;
    send(
        &queue,
        &eventbridge(
            "EC2 Instance Terminate Successful",
            "aws.autoscaling",
            json!({
                "StatusCode": "InProgress",
                "AutoScalingGroupName": "web-asg",
                "ActivityId": "87654321-4321-4321-4321-210987654321",
                "RequestId": "12345678-1234-1234-1234-123456789012",
                "StatusMessage": "",
                "EndTime": "2026-11-25T10:00:00Z",
                "EC2InstanceId": eb_success,
                "StartTime": "2026-11-25T09:59:00Z",
                "Cause": "description-text",
                "Details": {"Availability Zone": "us-east-1a", "Subnet ID": "subnet-12345678"},
            }),
        ),
    )
    .await;
    send(
        &queue,
        &eventbridge(
            "EC2 Instance State-change Notification",
            "aws.ec2",
            json!({"instance-id": state_change, "state": "terminated"}),
        ),
    )
    .await;
    // Test notification (from a notification configuration): deleted, no action.
    send(
        &queue,
        &sns_wrap(
            &json!({
                "AccountId": "123456789012",
                "RequestId": "4e6156f4-a9e2-11e3-b8a0-1e3e3b2c1a0d",
                "AutoScalingGroupARN": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:0:autoScalingGroupName/web-asg",
                "AutoScalingGroupName": "web-asg",
                "Service": "AWS Auto Scaling",
                "Event": "autoscaling:TEST_NOTIFICATION",
                "Time": "2026-11-25T10:00:00.000Z",
            })
            .to_string(),
        ),
    )
    .await;
    // A foreign message: poison, to the DLQ with the reason.
    send(&queue, "{\"hello\": \"world\"}").await;

    let journal = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&queue], journal.path()), Some(&recorder)).await;
    assert_eq!(summary.received, 8, "{summary:?}");
    for id in all {
        assert!(
            node_gone(&chef, &format!("n-{id}")).await,
            "registration of {id} survived"
        );
    }
    assert_eq!(depth(&queue).await, (0, 0));
    let dead = peek_all(&dlq).await;
    assert_eq!(dead.len(), 1, "only the foreign message is poison");
    assert_eq!(dead[0].body(), Some("{\"hello\": \"world\"}"));
    let reason = dead[0]
        .message_attributes()
        .and_then(|a| a.get(REASON_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .expect("reason attribute");
    assert!(reason.contains("unparseable"), "{reason}");

    // Lifecycle actions completed with CONTINUE, one per hook message.
    let calls = recorder.calls();
    let completions: Vec<_> = calls
        .iter()
        .filter(|c| param(c, "Action") == Some("CompleteLifecycleAction"))
        .collect();
    assert_eq!(completions.len(), 3, "{calls:?}");
    for c in &completions {
        assert_eq!(param(c, "LifecycleActionResult"), Some("CONTINUE"));
        assert_eq!(param(c, "AutoScalingGroupName"), Some("web-asg"));
        assert_eq!(param(c, "LifecycleHookName"), Some("nodereaper-terminate"));
    }
    let mut completed: Vec<&str> = completions
        .iter()
        .filter_map(|c| param(c, "InstanceId"))
        .collect();
    completed.sort_unstable();
    let mut expected = vec![hook.as_str(), hook_sns.as_str(), eb_hook.as_str()];
    expected.sort_unstable();
    assert_eq!(completed, expected);
    assert!(completions
        .iter()
        .any(|c| param(c, "LifecycleActionToken") == Some(format!("token-{hook}").as_str())));
}

#[tokio::test]
async fn expired_lifecycle_token_counts_as_done() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("expired"), 5).await;
    let recorder = LifecycleRecorder::start(true).await;
    let id = fake_instance_id();
    register(&chef, &format!("n-{id}"), Some(&id)).await;
    send(
        &queue,
        &json!({
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "LifecycleActionToken": "stale-token",
            "AutoScalingGroupName": "web-asg",
            "LifecycleHookName": "nodereaper-terminate",
            "EC2InstanceId": id,
            "Service": "AWS Auto Scaling",
            "Time": "2026-11-25T10:00:00.000Z",
            "AccountId": "123456789012",
        })
        .to_string(),
    )
    .await;
    let journal = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&queue], journal.path()), Some(&recorder)).await;
    assert_eq!(summary.deleted, 1, "{summary:?}");
    assert!(node_gone(&chef, &format!("n-{id}")).await);
    assert_eq!(
        recorder.calls().len(),
        1,
        "one completion attempt, no retry loop"
    );
    assert_eq!(depth(&queue).await, (0, 0));
    assert_eq!(depth(&dlq).await, (0, 0));
}

#[tokio::test]
async fn eventbridge_rule_to_sqs_in_moto() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("eb"), 5).await;
    let sdk = aws().await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let queue_arn = queue_arn(&queue).await;
    let rule = unique("asg-terminate");
    events
        .put_rule()
        .name(&rule)
        .event_pattern(json!({"source": ["aws.autoscaling"], "detail-type": ["EC2 Instance Terminate Successful"]}).to_string())
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule(&rule)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("targets");
    let id = fake_instance_id();
    register(&chef, &format!("n-{id}"), Some(&id)).await;
    events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source("aws.autoscaling")
                .detail_type("EC2 Instance Terminate Successful")
                .detail(json!({"AutoScalingGroupName": "web-asg", "EC2InstanceId": id, "StatusCode": "InProgress"}).to_string())
                .build(),
        )
        .send()
        .await
        .expect("put events");
    let journal = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&queue], journal.path()), None).await;
    assert_eq!(summary.received, 1, "{summary:?}");
    assert!(node_gone(&chef, &format!("n-{id}")).await);
    assert_eq!(depth(&dlq).await, (0, 0));
}

#[tokio::test]
async fn running_instance_is_not_deregistered_and_goes_to_dlq() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("forged"), 5).await;
    let ids = run_instances(1).await;
    let node = unique("alive");
    register(&chef, &node, Some(&ids[0])).await;
    send(
        &queue,
        &sns_wrap(&asg_terminate_notification(&ids[0], "web-asg")),
    )
    .await;
    let journal = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&queue], journal.path()), None).await;
    assert_eq!(summary.dead_lettered, 1, "{summary:?}");
    assert!(
        chef.get_node(&node).await.expect("get").is_some(),
        "a running instance's node was deleted"
    );
    assert!(chef.get_client(&node).await.expect("get").is_some());
    let dead = peek_all(&dlq).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0]
        .message_attributes()
        .and_then(|a| a.get(REASON_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("running"), "{reason}");
    assert_eq!(depth(&queue).await, (0, 0));
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("dry"), 5).await;
    let recorder = LifecycleRecorder::start(false).await;
    let id = fake_instance_id();
    let hook_id = fake_instance_id();
    let node = format!("n-{id}");
    register(&chef, &node, Some(&id)).await;
    register(&chef, &format!("n-{hook_id}"), Some(&hook_id)).await;
    let before_node = chef.get_node(&node).await.expect("get");
    send(
        &queue,
        &sns_wrap(&asg_terminate_notification(&id, "web-asg")),
    )
    .await;
    send(
        &queue,
        &json!({
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "LifecycleActionToken": "t",
            "AutoScalingGroupName": "web-asg",
            "LifecycleHookName": "h",
            "EC2InstanceId": hook_id,
        })
        .to_string(),
    )
    .await;
    send(&queue, "garbage").await;

    let journal = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[&queue], journal.path());
    cfg.pipeline.dry_run = true;
    let p = pipeline(&cfg, Some(&recorder)).await;
    let (tx, rx) = watch::channel(false);
    let run = tokio::spawn(p.run(rx, false));
    // Let it receive and "handle" all three messages once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    tx.send(true).expect("stop");
    let summary = run.await.expect("join");
    assert!(summary.received >= 3, "{summary:?}");

    assert_eq!(
        chef.get_node(&node).await.expect("get"),
        before_node,
        "node changed"
    );
    assert!(chef.get_client(&node).await.expect("get").is_some());
    assert!(chef
        .get_node(&format!("n-{hook_id}"))
        .await
        .expect("get")
        .is_some());
    assert!(
        recorder.calls().is_empty(),
        "dry run called the lifecycle API"
    );
    // All three messages are still in the queue (received ones reappear after
    // the visibility timeout; dry run never changes visibility).
    let (visible, hidden) = depth(&queue).await;
    assert_eq!(visible + hidden, 3, "messages deleted or moved in dry run");
    assert_eq!(depth(&dlq).await, (0, 0));
    assert!(LocalJournal::open(journal.path())
        .expect("journal")
        .entries()
        .await
        .expect("entries")
        .is_empty());
}

#[tokio::test]
async fn several_queues_in_one_process() {
    let chef = admin();
    let (q1, _) = queue_with_dlq(&unique("multi-a"), 5).await;
    let (q2, _) = queue_with_dlq(&unique("multi-b"), 5).await;
    let a = fake_instance_id();
    let b = fake_instance_id();
    register(&chef, &format!("n-{a}"), Some(&a)).await;
    register(&chef, &format!("n-{b}"), Some(&b)).await;
    send(&q1, &sns_wrap(&asg_terminate_notification(&a, "asg-a"))).await;
    send(&q2, &sns_wrap(&asg_terminate_notification(&b, "asg-b"))).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&q1, &q2], journal.path()), None).await;
    assert_eq!(summary.deleted, 2, "{summary:?}");
    assert!(node_gone(&chef, &format!("n-{a}")).await);
    assert!(node_gone(&chef, &format!("n-{b}")).await);
}

#[tokio::test]
async fn queue_without_dlq_is_refused_at_start() {
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let url = sqs
        .create_queue()
        .queue_name(unique("nodlq"))
        .send()
        .await
        .expect("q")
        .queue_url()
        .expect("url")
        .to_string();
    let err = SqsQueue::connect(sqs, &url, None)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("dead-letter"), "{err}");
    let _: Option<Source> = None;
}

#[tokio::test]
async fn two_replicas_on_one_queue_share_the_work_safely() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("replicas"), 5).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        let id = fake_instance_id();
        register(&chef, &format!("n-{id}"), Some(&id)).await;
        send(
            &queue,
            &sns_wrap(&asg_terminate_notification(&id, "web-asg")),
        )
        .await;
        ids.push(id);
    }
    let control = unique("control");
    register(&chef, &control, Some(&fake_instance_id())).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let cfg = daemon_config(&[&queue], journal.path());
    let (a, b) = tokio::join!(drain(&cfg, None), drain(&cfg, None));
    // SQS delivers at least once: a message may reach both replicas (seen
    // on a loaded machine); the second handling must find it already gone.
    assert!(a.deleted + b.deleted >= 40, "{a:?} {b:?}");
    assert_eq!(a.dead_lettered + b.dead_lettered, 0, "{a:?} {b:?}");
    for id in &ids {
        assert!(node_gone(&chef, &format!("n-{id}")).await);
    }
    assert!(chef.get_node(&control).await.expect("get").is_some());
    assert_eq!(depth(&queue).await, (0, 0));
    assert_eq!(depth(&dlq).await, (0, 0));
}

/// Every message in `queue` with its `ApproximateReceiveCount` (this receive
/// included), by body; they reappear a second later.
async fn receive_counts(queue: &str) -> std::collections::HashMap<String, u32> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let mut out = std::collections::HashMap::new();
    for _ in 0..20 {
        let r = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .message_system_attribute_names(A::ApproximateReceiveCount)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        if r.messages().is_empty() {
            break;
        }
        for m in r.messages() {
            let count = m
                .attributes()
                .and_then(|a| a.get(&A::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            out.insert(m.body().unwrap_or_default().to_string(), count);
        }
    }
    out
}

/// Invariant: once the storm brake engages, the messages it holds stay in
/// the queue unreceived (no receive count burnt, nothing in the DLQ), even
/// while messages that need no deletion (duplicates, registrations already
/// gone) succeed: only a restart releases the brake.
#[tokio::test]
async fn storm_brake_holds_messages_without_receiving_them_again() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("brake"), 3).await;
    let ids: Vec<String> = (0..3).map(|_| fake_instance_id()).collect();
    for id in &ids {
        register(&chef, &format!("n-{id}"), Some(id)).await;
        send(
            &queue,
            &sns_wrap(&asg_terminate_notification(id, "web-asg")),
        )
        .await;
    }
    let journal = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[&queue], journal.path());
    // One deletion a minute; at the cap for a minute: the second deletion
    // engages the brake.
    cfg.pipeline.max_deletions_per_minute = 1;
    cfg.pipeline.storm_brake_after = Duration::from_secs(60);
    cfg.pipeline.breaker_cooldown = Duration::from_secs(1);
    let p = pipeline(&cfg, None).await;
    let (tx, rx) = watch::channel(false);
    let run = tokio::spawn(p.clone().run(rx, false));
    // Meanwhile, terminations of instances with nothing registered: each
    // succeeds (already gone) if it is received.
    for _ in 0..30 {
        send(
            &queue,
            &sns_wrap(&asg_terminate_notification(&fake_instance_id(), "web-asg")),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tx.send(true).expect("stop");
    let summary = run.await.expect("join");
    assert!(summary.held >= 2, "{summary:?}");

    let left: Vec<&String> = {
        let mut left = Vec::new();
        for id in &ids {
            if !node_gone(&chef, &format!("n-{id}")).await {
                left.push(id);
            }
        }
        left
    };
    assert_eq!(left.len(), 2, "one deletion, then the brake: {left:?}");
    assert_eq!(depth(&dlq).await, (0, 0), "a held message reached the DLQ");
    // Held messages were received once (plus this look), never again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let counts = receive_counts(&queue).await;
    for id in left {
        let body = sns_wrap(&asg_terminate_notification(id, "web-asg"));
        assert_eq!(
            counts.get(&body),
            Some(&2),
            "held message of {id} received again ({} messages in the queue)",
            counts.len()
        );
    }
    assert!(p.breaker.is_held(), "the storm brake was released");
}

/// An EventBridge termination naming `region`.
fn eventbridge_terminate_in(instance_id: &str, region: &str) -> String {
    json!({
        "version": "0",
        "id": "12345678-1234-1234-1234-123456789012",
        "detail-type": "EC2 Instance Terminate Successful",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2026-11-25T10:00:00Z",
        "region": region,
        "resources": [],
        "detail": {"AutoScalingGroupName": "web-asg", "EC2InstanceId": instance_id, "StatusCode": "InProgress"},
    })
    .to_string()
}

/// Invariant: a message naming a region nodereaper cannot reach (moto
/// answers 500 for a region that does not exist) stalls nothing: the
/// terminations of a good region sent meanwhile are handled, and after
/// `pipeline.unreachable_region_attempts` failed attempts the message goes
/// to the DLQ with the reason (not by the redrive policy, which gives none),
/// its registration untouched.
#[tokio::test]
async fn unreachable_region_goes_to_the_dlq_while_others_flow() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("badregion"), 10).await;
    let stuck = fake_instance_id();
    register(&chef, &format!("n-{stuck}"), Some(&stuck)).await;
    let stuck_body = eventbridge_terminate_in(&stuck, "zz-fake-1");
    send(&queue, &stuck_body).await;
    let good: Vec<String> = (0..5).map(|_| fake_instance_id()).collect();
    for id in &good {
        register(&chef, &format!("n-{id}"), Some(id)).await;
    }
    let journal = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[&queue], journal.path());
    cfg.pipeline.unreachable_region_attempts = 3;
    cfg.pipeline.breaker_cooldown = Duration::from_secs(1);
    let sender = {
        let (queue, good) = (queue.clone(), good.clone());
        tokio::spawn(async move {
            for id in good {
                tokio::time::sleep(Duration::from_millis(700)).await;
                send(&queue, &eventbridge_terminate_in(&id, "us-east-1")).await;
            }
        })
    };
    let p = pipeline(&cfg, None).await;
    let (_tx, rx) = watch::channel(false);
    let run = tokio::spawn(p.run(rx, false));
    sender.await.expect("sender");
    for id in &good {
        let name = format!("n-{id}");
        eventually(Duration::from_secs(60), "good region handled", || {
            let (chef, name) = (&chef, &name);
            async move { node_gone(chef, name).await }
        })
        .await;
    }
    eventually(
        Duration::from_secs(90),
        "the stuck message dead-lettered",
        || {
            let dlq = &dlq;
            async move { !peek_all(dlq).await.is_empty() }
        },
    )
    .await;
    run.abort();
    // The look above hid it for a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dead = dead_letters(&dlq).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, stuck_body);
    assert!(
        dead[0].1.contains("zz-fake-1") && dead[0].1.contains("unreachable"),
        "{dead:?}"
    );
    assert!(
        chef.get_node(&format!("n-{stuck}"))
            .await
            .expect("get")
            .is_some(),
        "the unverified registration was deleted"
    );
}

/// A server answering 404 with a Chef-style error body to every request,
/// as Chef Infra Server does under an organization path it does not know
/// (goiardi, org-less, answers those with an empty body instead); its URL.
async fn answers_404_to_everything() -> String {
    use axum::{http::StatusCode, Router};
    let app = Router::new().fallback(|| async {
        (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            r#"{"error":["not found"]}"#,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/organizations/nowhere")
}

/// `/readyz` is ready only when nodereaper's own client reads back: a URL
/// where nothing exists (another organization, a proxy: 404 to everything)
/// is not ready, the right one is.
#[tokio::test]
async fn readyz_fails_when_our_own_client_is_not_found_there() {
    use nodereaper::telemetry::http::{ChefProbe, HttpServer, Readiness};
    let (queue, _) = queue_with_dlq(&unique("ready"), 5).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let cfg = daemon_config(&[&queue], journal.path());
    let (sqs, _) = nodereaper::app::connect_queue(&cfg, &cfg.queues[0])
        .await
        .expect("queue");
    let sqs: std::sync::Arc<dyn nodereaper::ports::Queue> = std::sync::Arc::new(sqs);
    let status = |server_url: String| {
        let mut cfg = cfg.clone();
        let sqs = sqs.clone();
        async move {
            cfg.chef.server_url = Some(server_url);
            let ready = Readiness {
                queues: vec![sqs],
                chefs: vec![ChefProbe {
                    target: None,
                    chef: std::sync::Arc::new(nodereaper::app::chef_client(&cfg).expect("chef")),
                    client_name: "admin".into(),
                }],
            };
            let server = HttpServer::bind("127.0.0.1:0".parse().expect("addr"), ready.into())
                .await
                .expect("bind");
            let addr = server.local_addr().expect("addr");
            let serving = tokio::spawn(server.serve(std::future::pending()));
            let answer = reqwest::get(format!("http://{addr}/readyz"))
                .await
                .expect("GET /readyz");
            let code = answer.status().as_u16();
            let text = answer.text().await.unwrap_or_default();
            serving.abort();
            (code, text)
        }
    };
    let (code, text) = status(answers_404_to_everything().await).await;
    assert_eq!(code, 503, "{text}");
    // The organization itself answers 404: said as such, not as a missing client.
    assert!(
        text.contains("the organization in chef.server_url is wrong or missing"),
        "{text}"
    );
    // The happy twin: the right URL.
    let (code, text) = status(stack().chef_url().to_string()).await;
    assert_eq!(code, 200, "{text}");
}

//! What nodereaper must never delete (issue 10), tried on the real stack:
//! goiardi with authentication, moto with several regions and accounts. Each
//! test sends what an attacker or a misconfigured enterprise would, then
//! asserts what is still registered in goiardi, what reached the DLQ with
//! which reason, and which lifecycle calls were made. Every hostile case has
//! its happy twin beside it, so a test cannot pass by refusing everything.
//!
//! moto 5.2 does not implement CompleteLifecycleAction: lifecycle calls go to
//! the recording endpoint of `common::LifecycleRecorder`, which answers in the
//! Auto Scaling Query protocol.

mod common;

use std::time::Duration;

use common::*;
use nodereaper::adapters::chef::ChefClient;
use nodereaper::ports::ChefApi;
use serde_json::{json, Value};

const OWN_ACCOUNT: &str = "123456789012";

/// An EventBridge "EC2 Instance State-change Notification" (terminated).
fn state_change(instance_id: &str, account: &str, region: &str) -> String {
    json!({
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": account,
        "time": "2026-11-25T10:00:00Z",
        "region": region,
        "resources": [format!("arn:aws:ec2:{region}:{account}:instance/{instance_id}")],
        "detail": {"instance-id": instance_id, "state": "terminated"}
    })
    .to_string()
}

/// The classic ASG notification as the group in `region` of `account` sends it.
fn asg_notification_in(instance_id: &str, account: &str, region: &str) -> String {
    let mut v: Value =
        serde_json::from_str(&asg_terminate_notification(instance_id, "web-asg")).expect("json");
    v["AccountId"] = json!(account);
    v["AutoScalingGroupARN"] = json!(format!(
        "arn:aws:autoscaling:{region}:{account}:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/web-asg"
    ));
    v["Details"]["Availability Zone"] = json!(format!("{region}a"));
    v.to_string()
}

/// A raw lifecycle hook message (what the hook publishes to SNS/SQS).
fn lifecycle_message(instance_id: &str, hook: &str) -> String {
    json!({
        "Origin": "AutoScalingGroup",
        "LifecycleHookName": hook,
        "Destination": "EC2",
        "AccountId": OWN_ACCOUNT,
        "RequestId": "4c2a1b42-0c9f-4c8d-8d2d-1a2b3c4d5e6f",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "AutoScalingGroupName": "web-asg",
        "Service": "AWS Auto Scaling",
        "Time": "2026-11-25T10:00:36.414Z",
        "EC2InstanceId": instance_id,
        "LifecycleActionToken": format!("token-{instance_id}")
    })
    .to_string()
}

/// Registers node + client, the node placed in `zone` as Ohai records it.
async fn register_in_zone(chef: &ChefClient, name: &str, instance_id: &str, zone: &str) {
    let mut node = node_json(name, Some(instance_id), Duration::from_secs(3 * 3600));
    node["automatic"]["ec2"]["placement_availability_zone"] = json!(zone);
    chef.create_node(&node).await.expect("create node");
    chef.create_client(name, None, false)
        .await
        .expect("create client");
}

async fn registered(chef: &ChefClient, name: &str) -> bool {
    chef.get_node(name).await.expect("get node").is_some()
        && chef.get_client(name).await.expect("get client").is_some()
}

fn reason_for<'a>(letters: &'a [(String, String)], instance_id: &str) -> &'a str {
    letters
        .iter()
        .find(|(body, _)| body.contains(instance_id))
        .map(|(_, r)| r.as_str())
        .unwrap_or_else(|| panic!("no dead letter for {instance_id}: {letters:?}"))
}

#[tokio::test]
async fn events_are_verified_in_the_region_they_name() {
    let chef = admin();
    // The queue lives in us-east-1; the instances in eu-central-1.
    let (queue, dlq) = queue_with_dlq(&unique("region"), 5).await;
    let eu = aws_in("eu-central-1").await;
    let ids = run_instances_with(&eu, 3).await;
    let (alive_a, alive_b, gone) = (&ids[0], &ids[1], &ids[2]);
    terminate_with(&eu, std::slice::from_ref(gone)).await;
    let names: Vec<String> = (0..3).map(|_| unique("eu")).collect();
    for (name, id) in names.iter().zip(&ids) {
        // The nodes say eu-central-1 too: only EC2 can tell alive from gone.
        register_in_zone(&chef, name, id, "eu-central-1b").await;
    }
    send(&queue, &state_change(alive_a, OWN_ACCOUNT, "eu-central-1")).await;
    send(
        &queue,
        &sns_wrap(&asg_notification_in(alive_b, OWN_ACCOUNT, "eu-central-1")),
    )
    .await;
    send(&queue, &state_change(gone, OWN_ACCOUNT, "eu-central-1")).await;

    let journal = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&queue], journal.path()), None).await;
    assert_eq!(summary.received, 3, "{summary:?}");
    assert!(
        registered(&chef, &names[0]).await,
        "running instance's node deleted"
    );
    assert!(
        registered(&chef, &names[1]).await,
        "running instance's node deleted"
    );
    assert!(
        node_gone(&chef, &names[2]).await,
        "terminated instance not cleaned up"
    );
    let letters = dead_letters(&dlq).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for id in [alive_a, alive_b] {
        let reason = reason_for(&letters, id);
        assert!(
            reason.contains("running") && reason.contains("eu-central-1"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn event_from_an_unknown_account_is_refused_naming_it() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("acct"), 5).await;
    // Unknown to EC2 in our account: it would look gone if asked there.
    let id = fake_instance_id();
    let name = unique("foreign");
    register(&chef, &name, Some(&id)).await;
    send(&queue, &state_change(&id, "999999999999", "us-east-1")).await;

    let journal = tempfile::tempdir().expect("tempdir");
    drain(&daemon_config(&[&queue], journal.path()), None).await;
    assert!(
        registered(&chef, &name).await,
        "deleted on an unverifiable event"
    );
    let letters = dead_letters(&dlq).await;
    let reason = reason_for(&letters, &id);
    assert!(
        reason.contains("999999999999") && reason.contains("[[aws.accounts]]"),
        "{reason}"
    );
}

#[tokio::test]
async fn configured_account_is_verified_through_its_role() {
    let chef = admin();
    let other = "111111111111";
    let role = format!("arn:aws:iam::{other}:role/nodereaper-verify");
    let theirs = aws_as(&role, "us-east-1").await;
    let ids = run_instances_with(&theirs, 2).await;
    let (alive, gone) = (&ids[0], &ids[1]);
    terminate_with(&theirs, std::slice::from_ref(gone)).await;
    // Our own account does not know these instances: asked there, both
    // would look gone.
    let ours = aws_sdk_ec2::Client::new(&aws().await)
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-id")
                .values(alive)
                .build(),
        )
        .send()
        .await
        .expect("describe");
    assert!(ours.reservations().is_empty(), "moto shares accounts?");

    let (queue, dlq) = queue_with_dlq(&unique("role"), 5).await;
    let names = [unique("acct-alive"), unique("acct-gone")];
    register(&chef, &names[0], Some(alive)).await;
    register(&chef, &names[1], Some(gone)).await;
    send(&queue, &state_change(alive, other, "us-east-1")).await;
    send(&queue, &state_change(gone, other, "us-east-1")).await;

    let journal = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[&queue], journal.path());
    cfg.aws.accounts = vec![nodereaper::config::AccountConfig {
        id: other.into(),
        role_arn: role.clone(),
        external_id: None,
    }];
    drain(&cfg, None).await;
    assert!(
        registered(&chef, &names[0]).await,
        "running instance's node deleted"
    );
    assert!(
        node_gone(&chef, &names[1]).await,
        "terminated instance not cleaned up"
    );
    let letters = dead_letters(&dlq).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let reason = reason_for(&letters, alive);
    assert!(
        reason.contains("running") && reason.contains(other),
        "{reason}"
    );
}

#[tokio::test]
async fn only_our_own_lifecycle_hooks_are_completed() {
    let chef = admin();
    let recorder = LifecycleRecorder::start(false).await;
    let (queue, dlq) = queue_with_dlq(&unique("hooks"), 5).await;
    let ids = run_instances(2).await;
    terminate_instances(&ids).await;
    let names = [unique("eks"), unique("ours")];
    register(&chef, &names[0], Some(&ids[0])).await;
    register(&chef, &names[1], Some(&ids[1])).await;
    // Another team's drain hook, then nodereaper's own.
    send(&queue, &lifecycle_message(&ids[0], "eks-node-drain")).await;
    send(&queue, &lifecycle_message(&ids[1], "nodereaper-terminate")).await;

    let journal = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&queue], journal.path()), Some(&recorder)).await;
    assert_eq!(summary.deleted, 2, "both acknowledged: {summary:?}");
    assert!(
        registered(&chef, &names[0]).await,
        "a foreign hook's event changed Chef"
    );
    assert!(
        node_gone(&chef, &names[1]).await,
        "our hook's instance not cleaned up"
    );
    let calls = recorder.calls();
    assert!(
        calls
            .iter()
            .all(|c| param(c, "InstanceId") != Some(ids[0].as_str())),
        "a foreign hook was touched: {calls:?}"
    );
    assert!(calls
        .iter()
        .any(|c| param(c, "Action") == Some("CompleteLifecycleAction")
            && param(c, "InstanceId") == Some(ids[1].as_str())
            && param(c, "LifecycleHookName") == Some("nodereaper-terminate")));
    assert!(dead_letters(&dlq).await.is_empty());
}

#[tokio::test]
async fn only_what_the_instance_owned_is_deleted() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("owned"), 5).await;
    let ids = run_instances(4).await;
    terminate_instances(&ids).await;
    // 1. An instance renamed its node after the validator client.
    let validator = format!("{}-validator", unique("acme"));
    register(&chef, &validator, Some(&ids[0])).await;
    // 2. A node whose client of the same name is an admin.
    let admin_named = unique("ops");
    chef.create_node(&node_json(
        &admin_named,
        Some(&ids[1]),
        Duration::from_secs(3 * 3600),
    ))
    .await
    .expect("node");
    chef.create_client(&admin_named, None, true)
        .await
        .expect("admin client");
    // 3. The instance id only in `normal` attributes (search matches it, any
    //    client can set it), nothing in Ohai's automatic attributes.
    let claimed = unique("claims");
    let mut node = node_json(&claimed, None, Duration::from_secs(3 * 3600));
    node["normal"]["ec2"] = json!({"instance_id": ids[2]});
    node["normal"]["ec2_instance_id"] = json!(ids[2]);
    chef.create_node(&node).await.expect("node");
    chef.create_client(&claimed, None, false)
        .await
        .expect("client");
    // 4. The happy twin: a plain registration.
    let plain = unique("plain");
    register(&chef, &plain, Some(&ids[3])).await;
    for id in &ids {
        send(
            &queue,
            &sns_wrap(&asg_terminate_notification(id, "web-asg")),
        )
        .await;
    }

    let journal = tempfile::tempdir().expect("tempdir");
    drain(&daemon_config(&[&queue], journal.path()), None).await;
    assert!(
        registered(&chef, &validator).await,
        "validator-named registration deleted"
    );
    assert!(
        registered(&chef, &admin_named).await,
        "admin client deleted"
    );
    assert!(
        registered(&chef, &claimed).await,
        "node claimed via normal attributes deleted"
    );
    assert!(
        node_gone(&chef, &plain).await,
        "plain registration not cleaned up"
    );
    let letters = dead_letters(&dlq).await;
    assert!(
        reason_for(&letters, &ids[0]).contains("*-validator"),
        "{letters:?}"
    );
    assert!(
        reason_for(&letters, &ids[1]).contains("admin"),
        "{letters:?}"
    );
    let r = reason_for(&letters, &ids[2]);
    // goiardi's search may or may not index `normal.ec2_instance_id`: either
    // nothing is found (acknowledged, nothing deleted) or the node is found
    // and refused because Ohai recorded no instance id.
    assert!(r.contains("records no automatic ec2.instance_id"), "{r}");
}

#[tokio::test]
async fn chef_tag_protects_after_ec2_forgot_the_instance() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("tag"), 5).await;
    // EC2 no longer knows either instance (an hour after termination).
    let (tagged_id, plain_id) = (fake_instance_id(), fake_instance_id());
    let tagged = unique("tagged");
    let mut node = node_json(&tagged, Some(&tagged_id), Duration::from_secs(3 * 3600));
    node["normal"]["tags"] = json!(["web", "nodereaper:protect"]);
    chef.create_node(&node).await.expect("node");
    chef.create_client(&tagged, None, false)
        .await
        .expect("client");
    let plain = unique("untagged");
    register(&chef, &plain, Some(&plain_id)).await;
    send(&queue, &state_change(&tagged_id, OWN_ACCOUNT, "us-east-1")).await;
    send(&queue, &state_change(&plain_id, OWN_ACCOUNT, "us-east-1")).await;

    let journal = tempfile::tempdir().expect("tempdir");
    let summary = drain(&daemon_config(&[&queue], journal.path()), None).await;
    assert_eq!(summary.deleted, 2, "both acknowledged: {summary:?}");
    assert!(registered(&chef, &tagged).await, "Chef-tagged node deleted");
    assert!(
        node_gone(&chef, &plain).await,
        "untagged node not cleaned up"
    );
    assert!(dead_letters(&dlq).await.is_empty());
}

#[tokio::test]
async fn queue_visibility_below_the_heartbeat_is_refused_at_start() {
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let (queue, _dlq) = queue_with_dlq(&unique("vis"), 5).await;
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "10",
        )
        .send()
        .await
        .expect("set visibility");
    let journal = tempfile::tempdir().expect("tempdir");
    let cfg = daemon_config(&[&queue], journal.path());
    let chef = std::sync::Arc::new(nodereaper::app::chef_client(&cfg).expect("chef"));
    let err = match nodereaper::app::pipeline(&cfg, chef).await {
        Ok(_) => panic!("a 10s visibility timeout with a 20s heartbeat was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("VisibilityTimeout") && err.contains("lifecycle_heartbeat_interval"),
        "{err}"
    );
}

/// The queues are checked side by side at start-up (`app::sources`): a
/// queue without a dead-letter queue, listed after a good one, still stops
/// the start, and when its VisibilityTimeout is too short as well, the
/// missing DLQ is what is reported (the first check's error, as when the
/// checks ran one after the other).
#[tokio::test]
async fn a_queue_without_a_dlq_beside_a_good_one_is_refused_at_start() {
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let (good, _dlq) = queue_with_dlq(&unique("good"), 5).await;
    let bare = sqs
        .create_queue()
        .queue_name(unique("bare"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "10",
        )
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("url")
        .to_string();
    let journal = tempfile::tempdir().expect("tempdir");
    let chef_of = |cfg: &nodereaper::config::Config| {
        std::sync::Arc::new(nodereaper::app::chef_client(cfg).expect("chef"))
    };
    // Its happy twin: the good queue alone starts.
    let cfg = daemon_config(&[&good], journal.path());
    let pipeline = nodereaper::app::pipeline(&cfg, chef_of(&cfg)).await;
    assert!(pipeline.is_ok(), "the good queue alone was refused");
    let cfg = daemon_config(&[&good, &bare], journal.path());
    let err = match nodereaper::app::pipeline(&cfg, chef_of(&cfg)).await {
        Ok(_) => panic!("a queue without a dead-letter queue was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("RedrivePolicy") && err.contains(&bare),
        "not the missing DLQ of {bare}: {err}"
    );
}

#[tokio::test]
async fn dot_and_dot_dot_are_never_addressed() {
    // The in-memory Chef server counts every request: a refused name must
    // not reach the server at all (URL joining would turn `.` into the
    // collection), while its happy twin, a plain name, is deleted.
    let world = nodereaper::testing::FakeWorld::default();
    world.lock().register("web-1", "i-0123456789abcdef0", true);
    let reaper = nodereaper::act::Reaper {
        chef: world.chef(),
        journal: world.journal(),
        resolver: nodereaper::act::resolve::Resolver::default(),
        protection: nodereaper::core::verify::Protection::new(
            &nodereaper::config::ProtectConfig::default(),
        ),
        limiter: std::sync::Arc::new(nodereaper::act::DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: Vec::new(),
    };
    let request = |name: &str| nodereaper::act::Request {
        target: nodereaper::act::Target::Node(name.into()),
        source: nodereaper::act::RequestSource::Deregister,
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: None,
        verified_region: None,
        group: None,
    };
    for name in [".", "..", "a/b", ""] {
        let err = reaper
            .reap(&request(name))
            .await
            .err()
            .unwrap_or_else(|| panic!("{name:?} accepted"));
        assert!(
            err.to_string().contains("cannot be addressed safely"),
            "{err}"
        );
        assert_eq!(world.lock().chef_calls, 0, "{name:?} reached the server");
    }
    let outcome = reaper.reap(&request("web-1")).await.expect("plain name");
    assert_eq!(outcome.label(), "deleted");
    let w = world.lock();
    assert!(w.chef_calls > 0);
    assert!(!w.nodes.contains_key("web-1") && !w.clients.contains_key("web-1"));
}

const OTHER_ACCOUNT: &str = "111111111111";
const OTHER_ROLE: &str = "arn:aws:iam::111111111111:role/nodereaper-verify";

/// Registers node + client as Ohai records an instance of `account` in `zone`.
async fn register_placed(chef: &ChefClient, name: &str, id: &str, account: &str, zone: &str) {
    let mut node = node_json(name, Some(id), Duration::from_secs(3 * 3600));
    node["automatic"]["ec2"]["placement_availability_zone"] = json!(zone);
    node["automatic"]["ec2"]["account_id"] = json!(account);
    chef.create_node(&node).await.expect("create node");
    chef.create_client(name, None, false)
        .await
        .expect("create client");
}

/// A state change naming no account at all (and no ARN that would carry one).
fn state_change_without_account(instance_id: &str, region: &str) -> String {
    let mut v: Value =
        serde_json::from_str(&state_change(instance_id, OWN_ACCOUNT, region)).expect("json");
    let event = v.as_object_mut().expect("object");
    event.remove("account");
    event.insert("resources".into(), json!([]));
    v.to_string()
}

/// H1: an event naming nodereaper's own account, or none, about an instance
/// living in another account is asked where the instance is unknown; the
/// node's Ohai account says it is not that instance: refused, naming both
/// accounts. The happy twin: the same account asked through its role.
#[tokio::test]
async fn forged_own_account_event_for_another_accounts_instance_is_refused() {
    let chef = admin();
    let theirs = aws_as(OTHER_ROLE, "us-east-1").await;
    let ids = run_instances_with(&theirs, 3).await;
    terminate_with(&theirs, &ids[2..]).await;
    let names: Vec<String> = (0..3).map(|i| unique(&format!("acct-{i}"))).collect();
    for (name, id) in names.iter().zip(&ids) {
        register_placed(&chef, name, id, OTHER_ACCOUNT, "us-east-1a").await;
    }
    // A node of an account nodereaper cannot ask at all (not configured).
    let (c_id, c_name) = (fake_instance_id(), unique("acct-c"));
    register_placed(&chef, &c_name, &c_id, "222222222222", "us-east-1a").await;

    let (queue, dlq) = queue_with_dlq(&unique("forged-acct"), 5).await;
    send(&queue, &state_change(&ids[0], OWN_ACCOUNT, "us-east-1")).await;
    send(&queue, &state_change_without_account(&ids[1], "us-east-1")).await;
    send(&queue, &state_change(&ids[2], OTHER_ACCOUNT, "us-east-1")).await;
    send(&queue, &state_change(&c_id, OWN_ACCOUNT, "us-east-1")).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[&queue], journal.path());
    cfg.aws.accounts = vec![nodereaper::config::AccountConfig {
        id: OTHER_ACCOUNT.into(),
        role_arn: OTHER_ROLE.into(),
        external_id: None,
    }];
    drain(&cfg, None).await;

    for name in [&names[0], &names[1], &c_name] {
        assert!(registered(&chef, name).await, "{name} deleted");
    }
    assert!(
        node_gone(&chef, &names[2]).await,
        "the happy twin, asked in its own account, was not cleaned up"
    );
    let letters = dead_letters(&dlq).await;
    assert_eq!(letters.len(), 3, "{letters:?}");
    for id in [&ids[0], &ids[1]] {
        let reason = reason_for(&letters, id);
        assert!(
            reason.contains(OTHER_ACCOUNT) && reason.contains(OWN_ACCOUNT),
            "{reason}"
        );
    }
    let reason = reason_for(&letters, &c_id);
    assert!(
        reason.contains("222222222222") && reason.contains(OWN_ACCOUNT),
        "{reason}"
    );
}

/// The node-in-another-region refusal: an event naming the queue's region
/// for an instance running in eu-central-1 is asked in us-east-1, where the
/// instance is unknown; the node's zone says eu-central-1: refused, naming
/// both regions. The happy twin records the region asked.
#[tokio::test]
async fn node_placed_in_another_region_than_the_one_asked_is_refused() {
    let chef = admin();
    let eu = aws_in("eu-central-1").await;
    let alive = run_instances_with(&eu, 1).await.remove(0);
    let (east_id, east, eu_name) = (fake_instance_id(), unique("east"), unique("eu-node"));
    register_in_zone(&chef, &eu_name, &alive, "eu-central-1b").await;
    register_in_zone(&chef, &east, &east_id, "us-east-1d").await;

    let (queue, dlq) = queue_with_dlq(&unique("misrouted"), 5).await;
    send(&queue, &state_change(&alive, OWN_ACCOUNT, "us-east-1")).await;
    send(&queue, &state_change(&east_id, OWN_ACCOUNT, "us-east-1")).await;
    let journal = tempfile::tempdir().expect("tempdir");
    drain(&daemon_config(&[&queue], journal.path()), None).await;

    assert!(
        registered(&chef, &eu_name).await,
        "a running eu-central-1 instance's node was deleted on a us-east-1 event"
    );
    assert!(
        node_gone(&chef, &east).await,
        "the happy twin was not cleaned up"
    );
    let letters = dead_letters(&dlq).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let reason = reason_for(&letters, &alive);
    assert!(
        reason.contains("eu-central-1b") && reason.contains("us-east-1"),
        "{reason}"
    );
}

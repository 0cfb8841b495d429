//! The two routing rules that ask the outside world, on the real stack: the
//! Auto Scaling group tag (rule 3, DescribeTags in moto) and the search of
//! every target (rule 5, `[routing] search_all_targets`), with targets "a"
//! (the shared stack's goiardi) and "b" (a second goiardi), each holding a
//! same-named twin of every registration.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::two_targets::*;
use common::*;

/// A moto Auto Scaling group named `name` (no instances) whose tag
/// `nodereaper:target` is `target`.
async fn tagged_group(name: &str, target: &str) {
    tagged_group_with(name, "nodereaper:target", target).await
}

/// The same with tag key `key`.
async fn tagged_group_with(name: &str, key: &str, target: &str) {
    create_asg(name, &[(key, target)], 0).await
}

/// Every DLQ reason of `dlqs`.
async fn reasons(dlqs: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for dlq in dlqs {
        out.extend(dead_letters(dlq).await.into_iter().map(|(_, r)| r));
    }
    out
}

#[tokio::test]
async fn group_tag_routes_the_termination_to_its_target_only() {
    let (queue, dlq) = queue_with_dlq(&unique("tag-route"), 5).await;
    let group = unique("tagged-b");
    tagged_group(&group, "b").await;
    let id = fake_instance_id();
    let node = unique("tag");
    twins(&node, &id).await;
    send(&queue, &asg_terminate_notification(&id, &group)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[(&queue, None)], dir.path());
    let summary = drain(&cfg, None).await;
    assert_eq!(
        summary.deleted,
        1,
        "{summary:?} {:?}",
        dead_letters(&dlq).await
    );
    assert!(node_gone(&admin_b(), &node).await, "b's node left");
    assert!(registered(&admin(), &node).await, "a's twin deleted");
}

#[tokio::test]
async fn a_tag_naming_an_unknown_target_or_contradicting_the_queue_goes_to_the_dlq() {
    let (untargeted, dlq_u) = queue_with_dlq(&unique("tag-unknown"), 5).await;
    let (queue_a, dlq_a) = queue_with_dlq(&unique("tag-conflict"), 5).await;
    let (prod_group, b_group) = (unique("tagged-prod"), unique("tagged-b"));
    tagged_group(&prod_group, "prod").await;
    tagged_group(&b_group, "b").await;
    let (unknown, contradicted) = (fake_instance_id(), fake_instance_id());
    let names = [unique("tag-unknown"), unique("tag-conflict")];
    twins(&names[0], &unknown).await;
    twins(&names[1], &contradicted).await;
    send(
        &untargeted,
        &asg_terminate_notification(&unknown, &prod_group),
    )
    .await;
    // Queue a, but the group's tag says b.
    send(
        &queue_a,
        &asg_terminate_notification(&contradicted, &b_group),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[(&untargeted, None), (&queue_a, Some("a"))], dir.path());
    let summary = drain(&cfg, None).await;
    assert_eq!(summary.dead_lettered, 2, "{summary:?}");
    for name in &names {
        assert!(registered(&admin(), name).await, "{name} deleted from a");
        assert!(registered(&admin_b(), name).await, "{name} deleted from b");
    }
    let reasons = reasons(&[&dlq_u, &dlq_a]).await;
    let has = |text: &str| reasons.iter().any(|r| r.contains(text));
    assert!(
        has("the group tag names target \"prod\", which is not configured"),
        "{reasons:?}"
    );
    assert!(
        has("the queue says \"a\" but the group tag says \"b\""),
        "{reasons:?}"
    );
}

/// An Auto Scaling endpoint that denies every call, as AWS does without
/// `autoscaling:DescribeTags`.
async fn denying_autoscaling() -> aws_sdk_autoscaling::Client {
    use axum::{http::StatusCode, routing::post, Router};
    async fn deny() -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
        (
            StatusCode::FORBIDDEN,
            [("content-type", "text/xml")],
            r#"<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: autoscaling:DescribeTags</Message></Error><RequestId>7c6e177f-f082-11e1-ac58-3714bEXAMPLE</RequestId></ErrorResponse>"#,
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().route("/", post(deny))).await;
    });
    let sdk = aws().await;
    aws_sdk_autoscaling::Client::from_conf(
        aws_sdk_autoscaling::config::Builder::from(&sdk)
            .endpoint_url(format!("http://{addr}"))
            .build(),
    )
}

/// The queue names target a, but the group tag cannot be read (denied):
/// nothing is routed without it. The message is held, not dead-lettered,
/// and neither twin is deleted.
#[tokio::test]
async fn a_denied_describe_tags_holds_the_message_and_routes_nothing() {
    let (queue, dlq) = queue_with_dlq(&unique("tag-denied"), 5).await;
    let id = fake_instance_id();
    let node = unique("tag-denied");
    twins(&node, &id).await;
    send(&queue, &asg_terminate_notification(&id, "web-asg")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[(&queue, Some("a"))], dir.path());
    let chef = Arc::new(nodereaper::app::chef_client(&cfg).expect("chef"));
    let mut p = nodereaper::app::pipeline(&cfg, chef)
        .await
        .expect("pipeline");
    let denied = Arc::new(nodereaper::adapters::aws::tags::AsgGroupTags::new(
        denying_autoscaling().await,
    ));
    for s in &mut p.sources {
        s.fleet = Arc::new(nodereaper::testing::GroupTagsOverride {
            inner: s.fleet.clone(),
            group_tags: denied.clone(),
        });
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(Arc::new(p).run(rx, false));
    tokio::time::sleep(Duration::from_secs(6)).await;
    tx.send(true).expect("stop");
    let summary = run.await.expect("join");
    assert!(summary.held >= 1, "{summary:?}");
    assert_eq!(summary.dead_lettered + summary.deleted, 0, "{summary:?}");
    assert!(registered(&admin(), &node).await, "a's node deleted");
    assert!(registered(&admin_b(), &node).await, "b's node deleted");
    assert_eq!(depth(&dlq).await, (0, 0));
}

/// `search_all_targets`: the same instance registered on both servers is
/// refused (nothing deleted on either, the DLQ reason names both), and the
/// lifecycle action is not completed.
#[tokio::test]
async fn search_refuses_an_instance_registered_on_both_targets() {
    let (queue, dlq) = queue_with_dlq(&unique("search-both"), 5).await;
    let recorder = LifecycleRecorder::start(false).await;
    let id = fake_instance_id();
    let node = unique("both");
    twins(&node, &id).await;
    send(&queue, &lifecycle_hook_message(&id, "no marker here")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&[(&queue, None)], dir.path());
    cfg.routing.search_all_targets = true;
    let summary = drain(&cfg, Some(&recorder)).await;
    assert_eq!(summary.dead_lettered, 1, "{summary:?}");
    assert!(registered(&admin(), &node).await, "deleted from a");
    assert!(registered(&admin_b(), &node).await, "deleted from b");
    let reasons = reasons(&[&dlq]).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&id) && r.contains("registered on several targets (a, b)")),
        "{reasons:?}"
    );
    assert!(recorder.calls().is_empty(), "{:?}", recorder.calls());
}

/// `search_all_targets`: registered on b only (a holds a same-named node of
/// another instance): deleted on b, a untouched. Registered nowhere: done
/// as a single target does (the message deleted, nothing dead-lettered).
#[tokio::test]
async fn search_deletes_on_the_one_target_that_has_it() {
    let (queue, dlq) = queue_with_dlq(&unique("search-one"), 5).await;
    let (id, nowhere) = (fake_instance_id(), fake_instance_id());
    let node = unique("only-b");
    register(&admin(), &node, Some(&fake_instance_id())).await;
    register(&admin_b(), &node, Some(&id)).await;
    send(&queue, &asg_terminate_notification(&id, "web-asg")).await;
    send(&queue, &asg_terminate_notification(&nowhere, "web-asg")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&[(&queue, None)], dir.path());
    cfg.routing.search_all_targets = true;
    let summary = drain(&cfg, None).await;
    assert_eq!(
        summary.deleted,
        2,
        "{summary:?} {:?}",
        dead_letters(&dlq).await
    );
    assert!(node_gone(&admin_b(), &node).await, "b's node left");
    assert!(registered(&admin(), &node).await, "a's node deleted");
}

fn nodereaper_cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run nodereaper")
}

/// `autoscaling:DescribeTags` is in the printed policy only when the group
/// tag rule can ask it (several targets, `group_tag` not ""); `doctor`
/// shows rules 3 and 5.
#[tokio::test]
async fn describe_tags_is_granted_only_when_needed_and_doctor_shows_the_rules() {
    let (queue, _) = queue_with_dlq(&unique("tag-iam"), 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nodereaper.toml");
    let policy_of = |cfg: &nodereaper::config::Config| {
        std::fs::write(&file, toml::to_string(cfg).expect("toml")).expect("write");
        let out = nodereaper_cli(&file, &["setup", "--print-iam-policy", "--output", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["iam_policy"]["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .filter(|s| s["Sid"] == "DescribeGroupTags")
            .map(|s| (s["Action"].clone(), s["Resource"].clone()))
            .collect::<Vec<_>>()
    };
    let mut cfg = config(&[(&queue, None)], dir.path());
    assert_eq!(
        policy_of(&cfg),
        [(
            serde_json::json!(["autoscaling:DescribeTags"]),
            serde_json::json!("*")
        )]
    );
    cfg.routing.group_tag = String::new();
    assert!(policy_of(&cfg).is_empty(), "granted with the rule off");
    let single = daemon_config(&[&queue], dir.path());
    assert!(policy_of(&single).is_empty(), "granted to a single target");

    let mut cfg = config(&[(&queue, None)], dir.path());
    cfg.routing.search_all_targets = true;
    std::fs::write(&file, toml::to_string(&cfg).expect("toml")).expect("write");
    let out = nodereaper_cli(&file, &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3. Auto Scaling group tag nodereaper:target=NAME -> NAME"),
        "{text}"
    );
    assert!(text.contains("5. otherwise, search every target"), "{text}");
}

/// `doctor` reads the group tag rule's tags (DescribeTags of the key) and
/// names a group whose tag names no configured target (its terminations
/// would go to the DLQ); with every tag naming a target the check passes
/// and lists them. Each half has its own tag key: moto is shared.
#[tokio::test]
async fn doctor_lists_the_tagged_groups_and_fails_on_an_unknown_target() {
    let (queue, _) = queue_with_dlq(&unique("tag-doctor"), 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nodereaper.toml");
    let doctor_line = |key: &str| {
        let mut cfg = config(&[(&queue, None)], dir.path());
        cfg.routing.group_tag = key.to_string();
        std::fs::write(&file, toml::to_string(&cfg).expect("toml")).expect("write");
        let out = nodereaper_cli(&file, &["doctor"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.contains(&format!("DescribeTags {key}")))
            .map(str::to_string);
        (
            out.status.success(),
            line.unwrap_or_else(|| panic!("no DescribeTags check:\n{text}")),
        )
    };
    let good_key = unique("nr-doctor-good");
    let good = unique("tag-doctor-b");
    tagged_group_with(&good, &good_key, "b").await;
    let (_, line) = doctor_line(&good_key);
    assert!(
        line.starts_with("PASS") && line.contains(&format!("{good} -> b")),
        "{line}"
    );

    let bad_key = unique("nr-doctor-bad");
    tagged_group_with(&unique("tag-doctor-a"), &bad_key, "a").await;
    let stray = unique("tag-doctor-x");
    tagged_group_with(&stray, &bad_key, "nope").await;
    let (ok, line) = doctor_line(&bad_key);
    assert!(!ok, "doctor passed with a tag naming no target: {line}");
    assert!(
        line.starts_with("FAIL") && line.contains(&stray) && line.contains("\"nope\""),
        "{line}"
    );
}

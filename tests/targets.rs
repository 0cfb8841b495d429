//! Several Chef servers in one deployment, on the real stack: two goiardi
//! processes (the shared stack's, "a", and a second stack's, "b"), each
//! holding a same-named twin of every registration, so a termination routed
//! to the wrong server would visibly delete the wrong twin.
//!
//! goiardi has no organizations (`/organizations/X` is not routed), so two
//! servers stand in for two orgs: routing only ever picks a server URL.

mod common;

use std::path::Path;
use std::process::Command;

use common::two_targets::*;
use common::*;
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::config::{Config, RouteConfig};
use nodereaper::ports::{ChefApi, Journal};

async fn entries(dir: &Path) -> Vec<nodereaper::adapters::journal::JournalEntry> {
    LocalJournal::open(dir)
        .expect("journal")
        .entries()
        .await
        .expect("entries")
}

#[tokio::test]
async fn queue_routes_each_termination_to_its_server_only() {
    let (qa, _) = queue_with_dlq(&unique("tgt-a"), 5).await;
    let (qb, _) = queue_with_dlq(&unique("tgt-b"), 5).await;
    let (ia, ib) = (fake_instance_id(), fake_instance_id());
    let (na, nb) = (unique("qa"), unique("qb"));
    twins(&na, &ia).await;
    twins(&nb, &ib).await;
    send(&qa, &asg_terminate_notification(&ia, "web-asg")).await;
    send(&qb, &asg_terminate_notification(&ib, "web-asg")).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[(&qa, Some("a")), (&qb, Some("b"))], dir.path());
    let summary = drain(&cfg, None).await;
    assert_eq!(summary.deleted, 2, "{summary:?}");

    assert!(node_gone(&admin(), &na).await, "queue a's node left on a");
    assert!(
        registered(&admin_b(), &na).await,
        "queue a's event deleted b's twin"
    );
    assert!(node_gone(&admin_b(), &nb).await, "queue b's node left on b");
    assert!(
        registered(&admin(), &nb).await,
        "queue b's event deleted a's twin"
    );

    let all = entries(dir.path()).await;
    let target_of = |node: &str| {
        let e = all.iter().find(|e| e.node_name == node).expect("entry");
        (e.target.clone(), e.chef_server.clone())
    };
    assert_eq!(
        target_of(&na),
        (Some("a".into()), stack().chef_url().to_string())
    );
    assert_eq!(target_of(&nb), (Some("b".into()), server_b().url.clone()));
    // Counted by target (a bounded label set: the configured names).
    let metrics = nodereaper::telemetry::metrics::render();
    for target in ["a", "b"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("nodereaper_target_terminations_total")
                    && l.contains(&format!("target=\"{target}\""))
                    && l.contains("outcome=\"deleted\"")),
            "{metrics}"
        );
    }

    // `journal --target b` lists b's entry only.
    let file = dir.path().join("nodereaper.toml");
    std::fs::write(&file, toml::to_string(&cfg).expect("toml")).expect("write");
    let out = nodereaper_cli(&file, &["journal", "--target", "b", "--output", "json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = listed
        .iter()
        .filter_map(|e| e["node_name"].as_str())
        .collect();
    assert_eq!(
        names,
        [nb.as_str()],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nodereaper_cli(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run nodereaper")
}

#[tokio::test]
async fn restore_goes_back_to_the_original_target_or_to_on_purpose() {
    let (qb, _) = queue_with_dlq(&unique("tgt-rb"), 5).await;
    let ib = fake_instance_id();
    let nb = unique("rb");
    twins(&nb, &ib).await;
    send(&qb, &asg_terminate_notification(&ib, "web-asg")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[(&qb, Some("b"))], &dir.path().join("journal"));
    drain(&cfg, None).await;
    assert!(node_gone(&admin_b(), &nb).await);
    // A restore sent to the wrong server would now succeed there: make room.
    admin().delete_node(&nb).await.expect("delete a's twin");
    admin()
        .delete_client(&nb)
        .await
        .expect("delete a's twin client");

    let file = dir.path().join("nodereaper.toml");
    std::fs::write(&file, toml::to_string(&cfg).expect("toml")).expect("write");
    let out = nodereaper_cli(&file, &["restore", &nb]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        admin_b().get_node(&nb).await.expect("node").is_some(),
        "not restored to b"
    );
    assert!(
        admin().get_node(&nb).await.expect("node").is_none(),
        "restored to a"
    );

    // On purpose: --to a.
    let out = nodereaper_cli(&file, &["restore", &nb, "--to", "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        admin().get_node(&nb).await.expect("node").is_some(),
        "--to a ignored"
    );
}

#[tokio::test]
async fn hook_metadata_routes_to_the_named_target() {
    let (queue, dlq) = queue_with_dlq(&unique("tgt-hook"), 5).await;
    let recorder = LifecycleRecorder::start(false).await;
    let id = fake_instance_id();
    let node = unique("hook");
    twins(&node, &id).await;
    send(
        &queue,
        &lifecycle_hook_message(&id, "team=web; nodereaper:target=b"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[(&queue, None)], dir.path());
    let p = pipeline(&cfg, Some(&recorder)).await;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let summary = p.run(rx, true).await;
    assert_eq!(
        summary.deleted,
        1,
        "{summary:?} {:?}",
        dead_letters(&dlq).await
    );
    assert!(node_gone(&admin_b(), &node).await, "b's node left");
    assert!(registered(&admin(), &node).await, "a's twin deleted");
    assert!(recorder
        .calls()
        .iter()
        .any(|c| param(c, "Action") == Some("CompleteLifecycleAction")));
}

#[tokio::test]
async fn account_route_sends_the_event_to_its_target() {
    let (queue, _) = queue_with_dlq(&unique("tgt-acct"), 5).await;
    let id = fake_instance_id();
    let node = unique("acct");
    twins(&node, &id).await;
    send(&queue, &asg_terminate_notification(&id, "web-asg")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&[(&queue, None)], dir.path());
    cfg.routes = vec![RouteConfig {
        account: "123456789012".into(),
        region: Some("us-east-1".into()),
        target: "b".into(),
    }];
    let summary = drain(&cfg, None).await;
    assert_eq!(summary.deleted, 1, "{summary:?}");
    assert!(node_gone(&admin_b(), &node).await, "b's node left");
    assert!(registered(&admin(), &node).await, "a's twin deleted");
}

#[tokio::test]
async fn unroutable_or_contradicted_events_go_to_the_dlq_and_nothing_is_deleted() {
    let (untargeted, dlq_u) = queue_with_dlq(&unique("tgt-none"), 5).await;
    let (queue_a, dlq_a) = queue_with_dlq(&unique("tgt-conflict"), 5).await;
    let (unrouted, contradicted, unknown) =
        (fake_instance_id(), fake_instance_id(), fake_instance_id());
    let names = [unique("none"), unique("conflict"), unique("unknown")];
    twins(&names[0], &unrouted).await;
    twins(&names[1], &contradicted).await;
    twins(&names[2], &unknown).await;
    // No rule names a target (no queue target, no marker, no route).
    send(
        &untargeted,
        &asg_terminate_notification(&unrouted, "web-asg"),
    )
    .await;
    // The queue says a, the hook says b.
    send(
        &queue_a,
        &lifecycle_hook_message(&contradicted, "nodereaper:target=b"),
    )
    .await;
    // The hook names a target that is not configured.
    send(
        &untargeted,
        &lifecycle_hook_message(&unknown, "nodereaper:target=prod"),
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[(&untargeted, None), (&queue_a, Some("a"))], dir.path());
    let recorder = LifecycleRecorder::start(false).await;
    let p = pipeline(&cfg, Some(&recorder)).await;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let summary = p.run(rx, true).await;
    assert_eq!(summary.dead_lettered, 3, "{summary:?}");

    for name in &names {
        assert!(registered(&admin(), name).await, "{name} deleted from a");
        assert!(registered(&admin_b(), name).await, "{name} deleted from b");
    }
    let reasons: Vec<String> = [dead_letters(&dlq_u).await, dead_letters(&dlq_a).await]
        .concat()
        .into_iter()
        .map(|(_, reason)| reason)
        .collect();
    let has = |text: &str| reasons.iter().any(|r| r.contains(text));
    assert!(has("no rule routes it"), "{reasons:?}");
    assert!(
        has("the queue says \"a\" but the hook metadata says \"b\""),
        "{reasons:?}"
    );
    assert!(has("\"prod\", which is not configured"), "{reasons:?}");
    // Never completed: the instance is not let go on a refusal.
    assert!(recorder.calls().is_empty(), "{:?}", recorder.calls());
    assert!(entries(dir.path()).await.is_empty());
}

#[tokio::test]
async fn doctor_prints_the_routing_table_and_checks_every_target() {
    let (queue, _) = queue_with_dlq(&unique("tgt-doc"), 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&[(&queue, Some("a"))], dir.path());
    cfg.routes = vec![RouteConfig {
        account: "123456789012".into(),
        region: None,
        target: "b".into(),
    }];
    // A tag key of this test's own: moto is shared, and other tests tag
    // groups with targets this configuration does not have (doctor would
    // rightly fail on those).
    cfg.routing.group_tag = unique("nr-doctor-tag");
    let file = dir.path().join("nodereaper.toml");
    std::fs::write(&file, toml::to_string(&cfg).expect("toml")).expect("write");
    let out = nodereaper_cli(&file, &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("1. queue {queue} -> a")), "{text}");
    assert!(
        text.contains("4. account 123456789012 region (any) -> b"),
        "{text}"
    );
    assert!(out.status.success(), "{text}");
    for name in ["a", "b"] {
        // Each target's identity is checked against its own server.
        let line = format!("PASS [{name}] chef authentication: signature of \"admin\" accepted");
        assert!(text.contains(&line), "no {line:?}:\n{text}");
    }
}

/// `deregister` with several targets refuses to guess the organization:
/// without `--target` nothing is deleted on either server; with `--target b`
/// only b's registration goes, a's twin stays, and the journal entry records
/// b.
#[tokio::test]
async fn deregister_names_its_target_or_refuses() {
    let id = fake_instance_id();
    let node = unique("dereg");
    twins(&node, &id).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[], &dir.path().join("journal"));
    let file = dir.path().join("nodereaper.toml");
    std::fs::write(&file, toml::to_string(&cfg).expect("toml")).expect("write");

    let out = nodereaper_cli(&file, &["deregister", "--node", &node]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--target"), "{err}");
    assert!(registered(&admin(), &node).await && registered(&admin_b(), &node).await);

    let out = nodereaper_cli(&file, &["deregister", "--node", &node, "--target", "b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(node_gone(&admin_b(), &node).await, "b's registration left");
    assert!(registered(&admin(), &node).await, "a's twin deleted");
    let entries = LocalJournal::open(&dir.path().join("journal"))
        .expect("journal")
        .entries()
        .await
        .expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target.as_deref(), Some("b"));
}

async fn readyz(cfg: &Config, dir: &Path) -> (u16, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = cfg.clone();
    cfg.http.listen = Some(format!("127.0.0.1:{port}").parse().expect("addr"));
    let file = dir.join("nodereaper.toml");
    std::fs::write(&file, toml::to_string(&cfg).expect("toml")).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&file)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let url = format!("http://127.0.0.1:{port}/readyz");
    let mut answer = (0, String::new());
    for _ in 0..150 {
        if let Ok(r) = reqwest::get(&url).await {
            answer = (r.status().as_u16(), r.text().await.unwrap_or_default());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    answer
}

/// `/readyz` asks every target's server as that target's own client: ready
/// when both answer, not ready (naming the target) when b's server is gone
/// while a's is fine.
#[tokio::test]
async fn readyz_checks_every_target() {
    let (q, _) = queue_with_dlq(&unique("tgt-ready"), 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&[(&q, None)], &dir.path().join("journal"));
    let (status, body) = readyz(&cfg, dir.path()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("ok   chef [a]") && body.contains("ok   chef [b]"),
        "{body}"
    );

    let mut dead_b = cfg.clone();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    dead_b.chef.targets[1].server_url = dead_url;
    let (status, body) = readyz(&dead_b, dir.path()).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("ok   chef [a]") && body.contains("FAIL chef [b]"),
        "{body}"
    );
}

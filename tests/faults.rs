//! Fault tests: the Chef server or AWS stops answering mid-run, the daemon is
//! killed with SIGKILL, the clock is skewed. Each states its invariant.
//!
//! They freeze servers with SIGSTOP (a hung server: connections open, no
//! answers, the worst case for timeouts), so this binary runs its own stack
//! (target/stack-faults) and its tests one at a time.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::stream::{self, StreamExt};
use nodereaper::app;
use nodereaper::ports::ChefApi;
use tokio::sync::{watch, Mutex};

static SERIAL: Mutex<()> = Mutex::const_new(());

fn signal(pid: &str, sig: &str) {
    let status = Command::new("kill")
        .args([sig, pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Registers `n` nodes (named after fake, long-gone instance ids) and queues
/// a classic termination message for each.
async fn doomed(n: usize, queue: &str) -> Vec<String> {
    let chef = Arc::new(admin());
    let ids: Vec<String> = (0..n).map(|_| fake_instance_id()).collect();
    stream::iter(ids.clone())
        .for_each_concurrent(16, |id| {
            let chef = chef.clone();
            async move {
                register(&chef, &format!("n-{id}"), Some(&id)).await;
                send(
                    queue,
                    &sns_wrap(&asg_terminate_notification(&id, "web-asg")),
                )
                .await;
            }
        })
        .await;
    ids
}

async fn all_gone(chef: &nodereaper::adapters::chef::ChefClient, ids: &[String]) -> bool {
    for id in ids {
        let name = format!("n-{id}");
        if chef.get_node(&name).await.expect("get").is_some()
            || chef.get_client(&name).await.expect("get").is_some()
        {
            return false;
        }
    }
    true
}

/// Invariant: while the Chef server hangs, no message reaches the DLQ (even
/// with a low maxReceiveCount), the breaker shows in the metrics, and every
/// message is processed once it is back.
#[tokio::test]
async fn chef_outage_loses_nothing_and_opens_the_breaker() {
    use_private_stack("faults");
    let _serial = SERIAL.lock().await;
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("outage"), 3).await;
    let ids = doomed(30, &queue).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[&queue], journal.path());
    cfg.chef.timeout = Duration::from_secs(1);
    cfg.pipeline.workers = 4;
    let pipeline = Arc::new(
        app::pipeline(&cfg, Arc::new(app::chef_client(&cfg).expect("chef")))
            .await
            .expect("pipeline"),
    );

    // This pipeline's own breaker (the metrics gauge is process-wide, and
    // another test of this binary can leave it at 1).
    let breaker = pipeline.breaker.clone();
    assert_eq!(breaker.times_opened(), 0);
    let goiardi = stack().var("NODEREAPER_GOIARDI_PID").to_string();
    signal(&goiardi, "-STOP");
    let (tx, rx) = watch::channel(false);
    let run = tokio::spawn(pipeline.run(rx, false));
    tokio::time::sleep(Duration::from_secs(15)).await;
    let opened = breaker.times_opened();
    signal(&goiardi, "-CONT");
    assert!(opened >= 1, "the breaker did not open during the outage");
    assert_eq!(
        depth(&dlq).await,
        (0, 0),
        "a message reached the DLQ during the outage"
    );

    eventually(
        Duration::from_secs(90),
        "every registration gone after recovery",
        || all_gone(&chef, &ids),
    )
    .await;
    eventually(Duration::from_secs(30), "queue empty", || async {
        depth(&queue).await == (0, 0)
    })
    .await;
    tx.send(true).expect("stop");
    run.await.expect("join");
    assert_eq!(depth(&dlq).await, (0, 0));
}

/// Invariant: while AWS (moto) hangs, the daemon keeps running and resumes
/// by itself; nothing is lost.
#[tokio::test]
async fn aws_outage_daemon_resumes() {
    use_private_stack("faults");
    let _serial = SERIAL.lock().await;
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("aws-outage"), 5).await;
    let first = doomed(10, &queue).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let cfg = daemon_config(&[&queue], journal.path());
    let pipeline = Arc::new(
        app::pipeline(&cfg, Arc::new(app::chef_client(&cfg).expect("chef")))
            .await
            .expect("pipeline"),
    );
    let (tx, rx) = watch::channel(false);
    let run = tokio::spawn(pipeline.run(rx, false));
    eventually(Duration::from_secs(60), "first batch processed", || {
        all_gone(&chef, &first)
    })
    .await;

    let moto = stack().var("NODEREAPER_MOTO_PID").to_string();
    signal(&moto, "-STOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!run.is_finished(), "the daemon must survive an AWS outage");
    signal(&moto, "-CONT");

    let second = doomed(10, &queue).await;
    eventually(
        Duration::from_secs(120),
        "second batch processed after AWS came back",
        || all_gone(&chef, &second),
    )
    .await;
    tx.send(true).expect("stop");
    run.await.expect("join");
    assert_eq!(depth(&dlq).await, (0, 0));
}

/// Invariant: a clock more than 15 minutes off gives a 401 diagnosis that
/// names the clock, and no message is lost (held, not dead-lettered).
#[tokio::test]
async fn skewed_clock_holds_messages_with_a_clear_diagnosis() {
    use_private_stack("faults");
    let _serial = SERIAL.lock().await;
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("skew"), 3).await;
    let ids = doomed(5, &queue).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let cfg = daemon_config(&[&queue], journal.path());

    let skewed = app::chef_client(&cfg)
        .expect("chef")
        .with_clock_offset(chrono::Duration::minutes(20));
    let err = skewed
        .get_node("anything")
        .await
        .expect_err("skewed signature must be refused");
    assert!(err.to_string().contains("15 minutes"), "{err}");
    let pipeline = Arc::new(
        app::pipeline(&cfg, Arc::new(skewed))
            .await
            .expect("pipeline"),
    );
    let (tx, rx) = watch::channel(false);
    let summary = tokio::spawn(pipeline.run(rx, false));
    tokio::time::sleep(Duration::from_secs(8)).await;
    tx.send(true).expect("stop");
    let summary = summary.await.expect("join");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    assert!(summary.held >= 1, "{summary:?}");
    assert_eq!(depth(&dlq).await, (0, 0));
    for id in &ids {
        assert!(chef
            .get_node(&format!("n-{id}"))
            .await
            .expect("get")
            .is_some());
    }
    // With the clock right, the same messages are processed.
    let pipeline = Arc::new(
        app::pipeline(&cfg, Arc::new(app::chef_client(&cfg).expect("chef")))
            .await
            .expect("pipeline"),
    );
    let (_tx, rx) = watch::channel(false);
    tokio::time::timeout(Duration::from_secs(120), pipeline.run(rx, true))
        .await
        .expect("drain");
    assert!(all_gone(&chef, &ids).await);
    assert_eq!(depth(&dlq).await, (0, 0));
}

fn daemon(config: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .args(["run", "--config"])
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nodereaper")
}

/// Invariant: SIGKILL mid-drain and a restart lose nothing and delete
/// nothing else: every target node and client is gone, every control node
/// untouched, queue and DLQ empty.
#[tokio::test]
async fn kill_9_mid_drain_then_restart() {
    use_private_stack("faults");
    let _serial = SERIAL.lock().await;
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("kill9"), 5).await;
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "5",
        )
        .send()
        .await
        .expect("visibility");
    let controls: Vec<String> = (0..20).map(|i| unique(&format!("control-{i}"))).collect();
    for c in &controls {
        register(&chef, c, Some(&fake_instance_id())).await;
    }
    let ids = doomed(150, &queue).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nodereaper.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[chef]
server_url = "{chef}"
allow_plain_http = true
client_name = "admin"
client_key = "{key}"
[aws]
region = "us-east-1"
endpoint_url = "{moto}"
[[queues]]
url = "{queue}"
[journal]
dir = "{journal}"
[pipeline]
wait_time = "1s"
retry_backoff_base = "1s"
retry_backoff_max = "3s"
max_deletions_per_minute = 0
# Below the queue's 5 s VisibilityTimeout (nodereaper refuses to start otherwise).
lifecycle_heartbeat_interval = "2s"
[http]
listen = "127.0.0.1:0"
"#,
            chef = stack().chef_url(),
            key = stack().admin_key().display(),
            moto = stack().moto_url(),
            queue = queue,
            journal = dir.path().join("journal").display(),
        ),
    )
    .expect("config");

    let mut child = daemon(&config, &[]);
    eventually(Duration::from_secs(120), "about a third deleted", || {
        let chef = &chef;
        let ids = &ids;
        async move {
            let mut gone = 0;
            for id in ids.iter().step_by(10) {
                if chef
                    .get_node(&format!("n-{id}"))
                    .await
                    .expect("get")
                    .is_none()
                {
                    gone += 1;
                }
            }
            gone >= 5
        }
    })
    .await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // The kill must land mid-drain: work is left for the restart.
    let mut left = 0;
    for id in &ids {
        if chef
            .get_node(&format!("n-{id}"))
            .await
            .expect("get")
            .is_some()
        {
            left += 1;
        }
    }
    let (visible, hidden) = depth(&queue).await;
    assert!(
        left > 0 && visible + hidden > 0,
        "the kill came after the drain ({left} registrations and {} messages left): the restart has nothing to prove",
        visible + hidden
    );

    let mut again = daemon(&config, &["--exit-when-idle"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = again.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "restarted daemon did not drain the queue"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        all_gone(&chef, &ids).await,
        "a target registration survived"
    );
    for c in &controls {
        assert!(
            chef.get_node(c).await.expect("get").is_some(),
            "control node {c} was deleted"
        );
        assert!(
            chef.get_client(c).await.expect("get").is_some(),
            "control client {c} was deleted"
        );
    }
    assert_eq!(depth(&queue).await, (0, 0));
    assert_eq!(depth(&dlq).await, (0, 0));
}

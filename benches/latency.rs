//! Latency benchmark: one termination at a time, end to end through the
//! production path: Auto Scaling notification published to an SNS topic, SNS
//! delivers it (in its envelope) to the subscribed SQS queue, the daemon
//! (release binary, long-polling 20 s as in production) receives it, checks
//! EC2, resolves the node by search, journals, deletes client and node.
//!
//! Per event: register node + client, publish, then poll goiardi
//! `GET /nodes/NAME` every 5 ms until 404; recorded: publish -> gone.
//! The daemon runs throughout; a few warm-up events are not counted.
//!
//!     cargo bench --bench latency
//!     NODEREAPER_BENCH_DELAY_MS=20,10 cargo bench --bench latency
//!
//! Environment: NODEREAPER_BENCH_EVENTS (200), NODEREAPER_BENCH_WORKERS (16),
//! NODEREAPER_BENCH_NAMES (`search`: nodes `n-<instance id>`, found by a
//! Chef search; `id`: nodes named after the instance id),
//! NODEREAPER_BENCH_DELAY_MS (unset; "C,A": the daemon reaches Chef and AWS
//! through delay proxies in this process adding C ms to every Chef request
//! and A ms to every AWS request, half each way; the benchmark's own
//! requests go direct).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{aws, depth, fake_instance_id, unique};
use nodereaper::adapters::chef::ChefClient;
use nodereaper::ports::ChefApi;
use serde_json::json;
use support::{percentile, r3, sorted, Daemon, DaemonConfig, DelayProxy};

const WARM_UP: usize = 3;

/// An SNS topic delivering to `queue_url` (no raw delivery: SNS envelope).
async fn topic_into(queue_url: &str, name: &str) -> String {
    let sdk = aws().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let topic = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .expect("topic arn")
        .to_string();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .expect("Subscribe");
    topic
}

/// NODEREAPER_BENCH_NAMES: `search` (default, nodes named `n-<instance id>`,
/// found by a Chef search) or `id` (nodes named after the instance id, found
/// by one GET).
fn names_are_ids() -> bool {
    match std::env::var("NODEREAPER_BENCH_NAMES").as_deref() {
        Ok("id") => true,
        Ok("search") | Err(_) => false,
        Ok(other) => panic!("NODEREAPER_BENCH_NAMES={other:?}: expected search or id"),
    }
}

/// One event: returns (publish -> node gone, publish call duration).
async fn one_event(
    chef: &Arc<ChefClient>,
    sns: &aws_sdk_sns::Client,
    topic: &str,
) -> (Duration, Duration) {
    let id = fake_instance_id();
    let name = if names_are_ids() {
        id.clone()
    } else {
        format!("n-{id}")
    };
    support::register_many(
        chef,
        &[(name.clone(), Some(id.clone()))],
        true,
        Duration::from_secs(3 * 3600),
        1,
    )
    .await;
    let started = Instant::now();
    sns.publish()
        .topic_arn(topic)
        .subject("Auto Scaling: termination for group \"web-asg\"")
        .message(common::asg_terminate_notification(&id, "web-asg"))
        .send()
        .await
        .expect("Publish");
    let published = started.elapsed();
    let deadline = started + Duration::from_secs(60);
    loop {
        if chef.get_node(&name).await.expect("GET node").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {name} still registered 60 s after publishing its termination"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gone = started.elapsed();
    assert!(
        chef.get_client(&name).await.expect("GET client").is_none(),
        "client {name} survived its node"
    );
    (gone, published)
}

#[tokio::main]
async fn main() {
    let events = support::env_usize("NODEREAPER_BENCH_EVENTS", 200);
    let workers = support::env_usize("NODEREAPER_BENCH_WORKERS", 16);
    support::fresh_stack();
    let chef = Arc::new(common::admin());
    let work = support::workdir("latency");
    let (queue, dlq) = support::queue(&unique("latency"), 30, 5).await;
    let topic = topic_into(&queue, &unique("asg-topic")).await;
    let sns = aws_sdk_sns::Client::new(&aws().await);
    let delay = std::env::var("NODEREAPER_BENCH_DELAY_MS").ok().map(|v| {
        let ms: Vec<u64> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        assert_eq!(
            ms.len(),
            2,
            "NODEREAPER_BENCH_DELAY_MS={v:?}: expected CHEF_MS,AWS_MS"
        );
        (ms[0], ms[1])
    });
    let stack = common::stack();
    let proxies = match delay {
        Some((c, a)) => Some((
            DelayProxy::start(stack.chef_url(), Duration::from_millis(c) / 2).await,
            DelayProxy::start(stack.moto_url(), Duration::from_millis(a) / 2).await,
        )),
        None => None,
    };
    let (chef_url, aws_url) = match &proxies {
        Some((c, a)) => (c.url_for(stack.chef_url()), a.url_for(stack.moto_url())),
        None => (stack.chef_url().to_string(), stack.moto_url().to_string()),
    };
    let config = support::write_config_via(
        &work,
        &DaemonConfig {
            queue_url: &queue,
            journal_dir: &work.join("journal"),
            workers,
            wait_time: "20s",
            extra: "",
        },
        &chef_url,
        &aws_url,
    );
    let daemon = Daemon::start(&["run"], &config, &work.join("daemon.log"));
    // Up and long-polling: its metrics address is logged after the queues connected.
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.metrics_addr().is_none() {
        assert!(Instant::now() < deadline, "daemon did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "latency: {events} events (+{WARM_UP} warm-up), daemon pid {}, work dir {}",
        daemon.pid,
        work.display()
    );

    let mut warm = Vec::new();
    for _ in 0..WARM_UP {
        warm.push(one_event(&chef, &sns, &topic).await.0.as_secs_f64() * 1e3);
    }
    let mut latencies = Vec::with_capacity(events);
    let mut publish = Vec::with_capacity(events);
    let started = Instant::now();
    for i in 0..events {
        let (gone, published) = one_event(&chef, &sns, &topic).await;
        latencies.push(gone.as_secs_f64() * 1e3);
        publish.push(published.as_secs_f64() * 1e3);
        if (i + 1) % 50 == 0 {
            eprintln!("  {} events", i + 1);
        }
    }
    let elapsed = started.elapsed();
    common::eventually(Duration::from_secs(30), "queue empty", || async {
        depth(&queue).await == (0, 0)
    })
    .await;
    assert_eq!(depth(&dlq).await, (0, 0), "messages dead-lettered");
    let live = daemon.sample().expect("daemon alive");
    let stop = Instant::now();
    daemon.signal(libc::SIGTERM);
    let run = daemon.wait(Duration::from_secs(60)).await;
    let shutdown = stop.elapsed();
    assert_eq!(run.exit_code, Some(0), "daemon exit after SIGTERM");

    let lat = sorted(latencies);
    let publish = sorted(publish);
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    println!();
    println!(
        "latency: {events} terminations one at a time, SNS -> SQS -> nodereaper (long poll 20 s), {}",
        match delay {
            Some((c, a)) => format!("daemon's Chef requests +{c} ms, AWS requests +{a} ms (delay proxies)"),
            None => "no added latency".into(),
        }
    );
    println!(
        "  nodes {}",
        if names_are_ids() {
            "named after the instance id (one GET resolves)"
        } else {
            "named n-<instance id> (resolved by search)"
        }
    );
    println!(
        "  publish -> node gone: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  mean {mean:.1} ms  (min {:.1} ms)",
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        percentile(&lat, 100.0),
        percentile(&lat, 0.0)
    );
    println!(
        "  SNS Publish call: p50 {:.1} ms  p99 {:.1} ms; warm-up events {warm:.0?} ms",
        percentile(&publish, 50.0),
        percentile(&publish, 99.0)
    );
    println!(
        "  daemon: CPU {:.2} s over {:.0} s, peak RSS {:.1} MiB; SIGTERM -> exit {:.0} ms",
        run.cpu_secs,
        run.wall.as_secs_f64(),
        support::mib(run.peak_rss_kib),
        shutdown.as_secs_f64() * 1e3
    );
    println!(
        "  (the 5 ms poll adds up to ~5 ms plus one GET to each number; RSS while running {:.1} MiB)",
        support::mib(live.rss_kib)
    );
    support::emit(
        if delay.is_some() {
            "latency-delayed"
        } else {
            "latency"
        },
        json!({
            "events": events,
            "delay_ms": delay.map(|(c, a)| json!({"chef": c, "aws": a})),
            "names": if names_are_ids() { "id" } else { "search" },
            "workers": workers,
            "wait_time_s": 20,
            "publish_to_gone_ms": {
                "p50": r3(percentile(&lat, 50.0)),
                "p90": r3(percentile(&lat, 90.0)),
                "p99": r3(percentile(&lat, 99.0)),
                "max": r3(percentile(&lat, 100.0)),
                "min": r3(percentile(&lat, 0.0)),
                "mean": r3(mean),
            },
            "sns_publish_ms": {"p50": r3(percentile(&publish, 50.0)), "p99": r3(percentile(&publish, 99.0))},
            "warm_up_ms": warm.iter().map(|w| r3(*w)).collect::<Vec<_>>(),
            "events_elapsed_s": r3(elapsed.as_secs_f64()),
            "daemon_cpu_s": r3(run.cpu_secs),
            "daemon_wall_s": r3(run.wall.as_secs_f64()),
            "daemon_peak_rss_mib": r3(support::mib(run.peak_rss_kib)),
            "sigterm_to_exit_ms": r3(shutdown.as_secs_f64() * 1e3),
        }),
    );
}

//! Drain benchmark: how fast does `nodereaper run` work off a backlog, and
//! how close is that to what the stack itself allows?
//!
//! 1. nodereaper: N registered nodes (node + client, named `n-<instance id>`,
//!    so every termination is resolved through the Chef search; or named
//!    after the instance id, see below), N classic
//!    SNS-wrapped Auto Scaling termination messages for instance ids EC2 does
//!    not know (long gone) preloaded in SQS; then the release binary runs
//!    `nodereaper run --exit-when-idle` as a subprocess. Measured: wall time to
//!    exit, terminations/s, CPU seconds and peak RSS of the daemon, queue lag
//!    (journal `recorded_at` minus the message's send time), Chef requests by
//!    endpoint (from the daemon's /metrics), CPU used by goiardi and moto.
//! 2. ceiling: the same workload (fresh nodes and messages) drained by the
//!    simplest client with the same concurrency, written here: N tasks of
//!    ReceiveMessage(10) -> DELETE /clients/X, DELETE /nodes/X (signed with
//!    the library's ChefClient) -> DeleteMessage. No EC2 check, no search, no
//!    journal. nodereaper / ceiling says what the safety steps cost.
//!
//! Both phases end with every target node and client checked gone.
//!
//!     cargo bench --bench drain
//!
//! Environment: NODEREAPER_BENCH_N (2000), NODEREAPER_BENCH_WORKERS (16,
//! also the ceiling's task count), NODEREAPER_BENCH_NAMES (`search`: nodes
//! named `n-<instance id>`, resolved by a Chef search; `id`: nodes named
//! after the instance id, resolved by one GET).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{depth, fake_instance_id, unique};
use nodereaper::chef::ChefClient;
use nodereaper::ports::ChefApi;
use serde_json::{json, Value};
use support::{percentile, r3, sorted, Daemon, DaemonConfig, StackCpu};

const THREE_HOURS: Duration = Duration::from_secs(3 * 3600);

/// Registers `n` doomed nodes and queues a termination for each. Returns
/// (node names, queue url, dlq url, message id -> send time).
async fn workload(
    chef: &Arc<ChefClient>,
    n: usize,
    label: &str,
) -> (
    Vec<String>,
    String,
    String,
    std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>>,
) {
    let ids: Vec<String> = (0..n).map(|_| fake_instance_id()).collect();
    let names: Vec<String> = ids.iter().map(|id| node_name(id)).collect();
    let pairs: Vec<(String, Option<String>)> = names
        .iter()
        .cloned()
        .zip(ids.iter().cloned().map(Some))
        .collect();
    support::register_many(chef, &pairs, true, THREE_HOURS, 32).await;
    let (queue, dlq) = support::queue(&unique(label), 30, 5).await;
    let started = Instant::now();
    let sent = support::send_terminations(&queue, &ids, 8).await;
    assert_eq!(sent.len(), n, "every message must be accepted by SQS");
    eprintln!(
        "queued {n} termination messages in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        depth(&queue).await,
        (n as u64, 0),
        "queue must hold the backlog"
    );
    (names, queue, dlq, sent)
}

/// The invariant of both phases: nothing registered is left, queues empty.
async fn assert_drained(chef: &ChefClient, names: &[String], queue: &str, dlq: &str, who: &str) {
    let (nodes, clients) = support::survivors(chef, names).await;
    assert_eq!(
        (nodes, clients),
        (0, 0),
        "{who}: {nodes} target nodes and {clients} clients survived"
    );
    assert_eq!(depth(queue).await, (0, 0), "{who}: queue not empty");
    assert_eq!(depth(dlq).await, (0, 0), "{who}: messages dead-lettered");
}

/// Node (and client) name of an instance: `n-<id>` (found by search, the
/// default), or the instance id itself with NODEREAPER_BENCH_NAMES=id
/// (found by the resolver's first step, a GET, no search).
fn node_name(instance_id: &str) -> String {
    if names_are_ids() {
        instance_id.to_string()
    } else {
        format!("n-{instance_id}")
    }
}

fn names_are_ids() -> bool {
    match std::env::var("NODEREAPER_BENCH_NAMES").as_deref() {
        Ok("id") => true,
        Ok("search") | Err(_) => false,
        Ok(other) => panic!("NODEREAPER_BENCH_NAMES={other:?}: expected search or id"),
    }
}

/// The instance id in a classic SNS-wrapped Auto Scaling notification.
fn instance_of(body: &str) -> String {
    let envelope: Value = serde_json::from_str(body).expect("envelope JSON");
    let inner: Value =
        serde_json::from_str(envelope["Message"].as_str().expect("Message")).expect("inner JSON");
    inner["EC2InstanceId"]
        .as_str()
        .expect("EC2InstanceId")
        .to_string()
}

/// The ceiling client: `tasks` loops of receive -> 2 deletes -> delete message.
/// Returns the time until the last of `total` messages was acknowledged.
async fn ceiling(chef: Arc<ChefClient>, queue: &str, tasks: usize, total: usize) -> Duration {
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    let done = Arc::new(AtomicUsize::new(0));
    let finished_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (sqs, chef, done, finished_at) =
            (sqs.clone(), chef.clone(), done.clone(), finished_at.clone());
        let queue = queue.to_string();
        set.spawn(async move {
            while done.load(Ordering::SeqCst) < total {
                let out = sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .expect("ReceiveMessage");
                for m in out.messages() {
                    let name = node_name(&instance_of(m.body().unwrap_or_default()));
                    chef.delete_client(&name).await.expect("DELETE client");
                    chef.delete_node(&name).await.expect("DELETE node");
                    sqs.delete_message()
                        .queue_url(&queue)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .expect("DeleteMessage");
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == total {
                        *finished_at.lock().expect("lock") = Some(Instant::now());
                    }
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("ceiling task");
    }
    let end = finished_at
        .lock()
        .expect("lock")
        .unwrap_or_else(Instant::now);
    end - started
}

/// CPU milliseconds to sign one Chef request (protocol 1.3, the admin key):
/// every Chef request pays this once.
fn signing_cost_ms() -> f64 {
    use nodereaper::chef::auth::{sign, RequestToSign, SignVersion, SigningKey};
    let key = SigningKey::from_pem(&common::admin_key_pem()).expect("admin key");
    let rounds = 500;
    let before = support::self_cpu_secs();
    for i in 0..rounds {
        let path = format!("/nodes/n-{i}");
        sign(
            &key,
            SignVersion::V1_3,
            &RequestToSign {
                method: "DELETE",
                path: &path,
                body: b"",
                user_id: "admin",
                timestamp: chrono::Utc::now(),
                server_api_version: "1",
            },
        )
        .expect("sign");
    }
    (support::self_cpu_secs() - before) * 1e3 / rounds as f64
}

#[tokio::main]
async fn main() {
    let n = support::env_usize("NODEREAPER_BENCH_N", 2000);
    let workers = support::env_usize("NODEREAPER_BENCH_WORKERS", 16);
    support::fresh_stack();
    let chef = Arc::new(common::admin());
    let work = support::workdir("drain");
    eprintln!(
        "drain: N={n}, workers={workers}, daemon {}, work dir {}",
        support::nodereaper_bin().display(),
        work.display()
    );

    let sign_ms = signing_cost_ms();

    // ---- Phase 1: nodereaper ------------------------------------------
    let (names, queue, dlq, sent) = workload(&chef, n, "drain").await;
    let journal_dir = work.join("journal");
    let config = support::write_config(
        &work,
        &DaemonConfig {
            queue_url: &queue,
            journal_dir: &journal_dir,
            workers,
            wait_time: "1s",
            extra: "",
        },
    );
    let stack_cpu = StackCpu::now();
    let moto_before = support::moto_requests();
    let daemon_start = chrono::Utc::now();
    let daemon = Daemon::start(
        &["run", "--exit-when-idle"],
        &config,
        &work.join("daemon.log"),
    );
    let run = daemon.wait(Duration::from_secs(1800)).await;
    let spent = stack_cpu.since();
    let moto_reqs = support::moto_requests() - moto_before;
    assert_eq!(
        run.exit_code,
        Some(0),
        "nodereaper failed; log: {}",
        work.join("daemon.log").display()
    );
    assert_drained(&chef, &names, &queue, &dlq, "nodereaper").await;

    let journal = support::read_journal_index(&journal_dir);
    let mut lags = Vec::new();
    let mut since_start = Vec::new();
    for line in &journal {
        if let Some(sent_at) = line.message_id.as_ref().and_then(|m| sent.get(m)) {
            lags.push(
                (line.recorded_at - *sent_at)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1e3,
            );
        }
        since_start.push(
            (line.recorded_at - daemon_start)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e3,
        );
    }
    assert_eq!(
        lags.len(),
        n,
        "every message must have exactly one journal entry"
    );
    let lags = sorted(lags);
    let since_start = sorted(since_start);
    let busy = since_start.last().copied().unwrap_or(0.0) / 1e3;
    let wall = run.wall.as_secs_f64();
    let rate = n as f64 / wall;
    let chef_requests = support::metric_by(
        &run.metrics,
        "nodereaper_chef_request_duration_seconds_count",
        &["method", "endpoint", "status"],
    );
    let aws_requests = support::metric_by(
        &run.metrics,
        "nodereaper_aws_request_duration_seconds_count",
        &["service", "operation", "result"],
    );
    let chef_total: f64 = chef_requests.values().sum();
    // Mean latency per Chef endpoint, as the daemon measured it.
    let chef_seconds = support::metric_by(
        &run.metrics,
        "nodereaper_chef_request_duration_seconds_sum",
        &["method", "endpoint", "status"],
    );
    let chef_mean_ms: std::collections::BTreeMap<String, f64> = chef_seconds
        .iter()
        .filter_map(|(k, secs)| {
            let count = chef_requests.get(k).copied().unwrap_or(0.0);
            (count > 0.0).then(|| (k.clone(), r3(secs * 1e3 / count)))
        })
        .collect();
    let aws_seconds = support::metric_by(
        &run.metrics,
        "nodereaper_aws_request_duration_seconds_sum",
        &["service", "operation", "result"],
    );
    let aws_mean_ms: std::collections::BTreeMap<String, f64> = aws_seconds
        .iter()
        .filter_map(|(k, secs)| {
            let count = aws_requests.get(k).copied().unwrap_or(0.0);
            (count > 0.0).then(|| (k.clone(), r3(secs * 1e3 / count)))
        })
        .collect();

    // ---- Phase 2: the ceiling -----------------------------------------
    let (names2, queue2, dlq2, _) = workload(&chef, n, "ceiling").await;
    let stack_cpu2 = StackCpu::now();
    let moto_before2 = support::moto_requests();
    let ceiling_wall = ceiling(chef.clone(), &queue2, workers, n).await;
    let spent2 = stack_cpu2.since();
    let moto_reqs2 = support::moto_requests() - moto_before2;
    assert_drained(&chef, &names2, &queue2, &dlq2, "ceiling").await;
    let ceiling_rate = n as f64 / ceiling_wall.as_secs_f64();

    println!();
    println!(
        "drain: {n} terminations, {workers} workers, nodes {} (2 CPUs shared with goiardi and moto)",
        if names_are_ids() {
            "named after the instance id"
        } else {
            "named n-<instance id> (found by search)"
        }
    );
    println!(
        "  nodereaper  wall {wall:7.2} s  {rate:7.1} terminations/s   (busy {busy:.2} s: {:.1}/s)",
        n as f64 / busy
    );
    println!(
        "              CPU {:.2} s ({:.2} ms/termination)  peak RSS {:.1} MiB   [rusage: CPU {:.2} s, maxrss {:.1} MiB]",
        run.cpu_secs,
        run.cpu_secs * 1e3 / n as f64,
        support::mib(run.peak_rss_kib),
        run.rusage_cpu_secs,
        support::mib(run.rusage_maxrss_kib)
    );
    println!(
        "              queue lag p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms;  journalled after daemon start p50 {:.0} ms  p99 {:.0} ms",
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        percentile(&lags, 100.0),
        percentile(&since_start, 50.0),
        percentile(&since_start, 99.0)
    );
    println!(
        "              Chef requests {chef_total} ({:.2}/termination): {chef_requests:?}",
        chef_total / n as f64
    );
    println!("              Chef mean latency (ms): {chef_mean_ms:?}");
    println!("              AWS (instrumented): {aws_requests:?}, mean ms {aws_mean_ms:?}; moto requests {moto_reqs}");
    println!(
        "              during the run: goiardi CPU {:.2} s, moto CPU {:.2} s, other load on the machine {:.2} s (of {:.0} s available)",
        spent.goiardi,
        spent.moto,
        spent.other(run.rusage_cpu_secs),
        2.0 * wall
    );
    println!(
        "  ceiling     wall {:7.2} s  {ceiling_rate:7.1} terminations/s   client CPU {:.2} s, goiardi CPU {:.2} s, moto CPU {:.2} s, moto requests {moto_reqs2}, other load {:.2} s",
        ceiling_wall.as_secs_f64(),
        spent2.bench,
        spent2.goiardi,
        spent2.moto,
        spent2.other(0.0)
    );
    println!(
        "  signing one Chef request costs {sign_ms:.2} ms CPU: {:.1} ms of nodereaper's {:.1} ms per termination are signatures",
        sign_ms * chef_total / n as f64,
        run.cpu_secs * 1e3 / n as f64
    );
    println!(
        "  nodereaper / ceiling: {:.2} (wall), {:.2} (busy span)",
        rate / ceiling_rate,
        (n as f64 / busy) / ceiling_rate
    );
    println!("  invariant: all {n} + {n} target nodes and clients gone, queues and DLQs empty: OK");

    support::emit(
        "drain",
        json!({
            "n": n,
            "workers": workers,
            "names": if names_are_ids() { "id" } else { "search" },
            "nodereaper": {
                "wall_s": r3(wall),
                "terminations_per_s": r3(rate),
                "busy_s": r3(busy),
                "busy_terminations_per_s": r3(n as f64 / busy),
                "cpu_s": r3(run.cpu_secs),
                "cpu_ms_per_termination": r3(run.cpu_secs * 1e3 / n as f64),
                "peak_rss_mib": r3(support::mib(run.peak_rss_kib)),
                "rusage_cpu_s": r3(run.rusage_cpu_secs),
                "rusage_maxrss_mib": r3(support::mib(run.rusage_maxrss_kib)),
                "queue_lag_ms": {"p50": r3(percentile(&lags, 50.0)), "p99": r3(percentile(&lags, 99.0)), "max": r3(percentile(&lags, 100.0))},
                "journalled_after_start_ms": {"p50": r3(percentile(&since_start, 50.0)), "p99": r3(percentile(&since_start, 99.0))},
                "journal_entries": journal.len(),
                "chef_requests": chef_requests,
                "chef_requests_per_termination": r3(chef_total / n as f64),
                "chef_mean_latency_ms": chef_mean_ms,
                "aws_mean_latency_ms": aws_mean_ms,
                "aws_requests_instrumented": aws_requests,
                "moto_requests": moto_reqs,
                "cpu_during_run": spent.to_json(run.rusage_cpu_secs),
            },
            "ceiling": {
                "tasks": workers,
                "wall_s": r3(ceiling_wall.as_secs_f64()),
                "terminations_per_s": r3(ceiling_rate),
                "cpu_during_run": spent2.to_json(0.0),
                "moto_requests": moto_reqs2,
            },
            "chef_signature_cpu_ms": r3(sign_ms),
            "ratio_wall": r3(rate / ceiling_rate),
            "ratio_busy": r3((n as f64 / busy) / ceiling_rate),
            "invariant_ok": true,
        }),
    );
}

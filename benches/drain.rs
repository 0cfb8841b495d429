//! Drain benchmark: nodereaper against the serial script a user would
//! otherwise run, side by side on the same fresh stack, alternating.
//!
//! Each run drains its own workload: N registered nodes with their clients,
//! named after the instance id, and N classic SNS-wrapped Auto Scaling
//! termination messages (for instance ids EC2 does not know) preloaded in a
//! fresh queue. The runs alternate: serial, nodereaper, serial, nodereaper...
//!
//! * **serial reference** (`benches/serial_reference.py`, run with the stack's
//!   moto virtualenv: boto3, requests, cryptography/OpenSSL): receive 10;
//!   for each message GET node, DELETE node, DELETE client, DeleteMessage.
//!   No verification, no backup.
//! * **nodereaper**: the release binary, `run --exit-when-idle`, with EC2
//!   verification, node and client read and journalled (fsynced) before the
//!   deletes, as in production.
//!
//! Measured per run: time from start (nodereaper: process spawn; the script:
//! its `READY` line, after its imports) until the benchmark sees the queue
//! empty (GetQueueAttributes every 50 ms, the same for both); CPU of the
//! consumer (nodereaper: whole process, from wait4; the script: from READY to
//! its last DeleteMessage, as it reports; its whole-process CPU is printed
//! too), CPU of goiardi and moto, other load on the machine. Every run ends
//! with every target node and client checked gone and both queues empty.
//!
//!     cargo bench --bench drain
//!     NODEREAPER_BENCH_DELAY_MS=20,10 cargo bench --bench drain   # latency variant
//!
//! Each round also runs nodereaper with `workers = 1` (unless
//! NODEREAPER_BENCH_SINGLE=0): what the implementation costs per termination
//! without concurrency, beside what concurrency buys.
//!
//! With the delay proxies the summary also gives the limits of the run: the
//! round trips per termination on the critical path (counted by the proxies
//! in the single-worker run, Chef and AWS apart: see `support/proxy.rs`),
//! the concurrency bound `workers / (round trips x latency)`, moto's capacity
//! (one Python process: 1 s / its CPU per termination, the benchmark's own
//! queue-depth polls taken out) and the machine's (2 cores / the CPU of
//! moto, goiardi, nodereaper and this process per termination); the honest
//! bound is the lowest, and the measured rate is given as a share of it.
//!
//! Environment: NODEREAPER_BENCH_N (300), NODEREAPER_BENCH_ROUNDS (2),
//! NODEREAPER_BENCH_WORKERS (16), NODEREAPER_BENCH_SINGLE (1),
//! NODEREAPER_BENCH_DELAY_MS (unset; "C,A": every Chef request gets C ms and
//! every AWS request A ms of round trip, through delay proxies in this
//! process, for both consumers), NODEREAPER_BENCH_LOG (the daemon's
//! `log.level`, "info"; its log is kept in the run's work directory).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "drain/report.rs"]
mod report;
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fake_instance_id, unique};
use nodereaper::adapters::chef::ChefClient;
use serde_json::{json, Value};
use support::{r3, Daemon, DaemonConfig, DelayProxy, ProxyCounts, StackCpu};
use tokio::io::{AsyncBufReadExt, BufReader};

const THREE_HOURS: Duration = Duration::from_secs(3 * 3600);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Serial,
    /// nodereaper with the configured workers.
    Nodereaper,
    /// nodereaper with `workers = 1`.
    Single,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Serial => "serial",
            Who::Nodereaper => "nodereaper",
            Who::Single => "1-worker",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    who: Who,
    /// Start -> queue seen empty.
    secs: f64,
    /// First -> last deletion (journal entries; nodereaper only).
    steady_secs: Option<f64>,
    /// CPU of the consumer for the work (see the module doc).
    cpu: f64,
    /// Whole-process CPU (nodereaper: the same; the script: with imports).
    cpu_total: f64,
    peak_rss_mib: f64,
    goiardi: f64,
    moto: f64,
    other: f64,
    bench: f64,
    /// The benchmark's own GetQueueAttributes polls during the run.
    polls: u64,
    /// Through the delay proxies (Chef, AWS), when they are used.
    proxied: Option<(ProxyCounts, ProxyCounts)>,
    extra: Value,
}

/// Registers `n` doomed nodes (named after their instance ids) with clients
/// and queues a termination for each. Returns (names, queue, dlq).
async fn workload(chef: &Arc<ChefClient>, n: usize, label: &str) -> (Vec<String>, String, String) {
    let ids: Vec<String> = (0..n).map(|_| fake_instance_id()).collect();
    let pairs: Vec<(String, Option<String>)> = ids
        .iter()
        .map(|id| (id.clone(), Some(id.clone())))
        .collect();
    support::register_many(chef, &pairs, true, THREE_HOURS, 32).await;
    let (queue, dlq) = support::queue(&unique(label), 30, 5).await;
    let sent = support::send_terminations(&queue, &ids, 8).await;
    assert_eq!(sent.len(), n, "every message must be accepted by SQS");
    assert_eq!(
        common::depth(&queue).await,
        (n as u64, 0),
        "queue must hold the backlog"
    );
    (ids, queue, dlq)
}

/// The invariant of every run: nothing registered is left, queues empty.
async fn assert_drained(chef: &ChefClient, names: &[String], queue: &str, dlq: &str, who: &str) {
    let (nodes, clients) = support::survivors(chef, names).await;
    assert_eq!(
        (nodes, clients),
        (0, 0),
        "{who}: {nodes} target nodes and {clients} clients survived"
    );
    assert_eq!(common::depth(queue).await, (0, 0), "{who}: queue not empty");
    assert_eq!(
        common::depth(dlq).await,
        (0, 0),
        "{who}: messages dead-lettered"
    );
}

/// Asks moto for the queue's depth (visible, in flight).
async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let r = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes");
    let count = |a: A| {
        r.attributes()
            .and_then(|m| m.get(&a))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    (
        count(A::ApproximateNumberOfMessages),
        count(A::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Polls the queue every 50 ms until it is empty (visible and in flight);
/// returns when that was first seen, and how many polls it took.
async fn wait_empty(sqs: &aws_sdk_sqs::Client, queue: &str, timeout: Duration) -> (Instant, u64) {
    let (deadline, mut polls) = (Instant::now() + timeout, 0);
    loop {
        let depth = queue_depth(sqs, queue).await;
        polls += 1;
        let now = Instant::now();
        if depth == (0, 0) {
            return (now, polls);
        }
        assert!(
            now < deadline,
            "queue {queue} not drained after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// moto CPU milliseconds per GetQueueAttributes (the benchmark's poll), so
/// that its polls can be taken out of moto's cost per termination.
async fn poll_cost_ms(sqs: &aws_sdk_sqs::Client) -> f64 {
    let (queue, _dlq) = support::queue(&unique("poll-cost"), 30, 5).await;
    let rounds = 200;
    let before = support::sample(support::moto_pid()).map_or(0.0, |s| s.cpu_secs);
    for _ in 0..rounds {
        queue_depth(sqs, &queue).await;
    }
    let after = support::sample(support::moto_pid()).map_or(0.0, |s| s.cpu_secs);
    (after - before) * 1e3 / rounds as f64
}

/// moto builds its EC2 backend (AMIs, instance types) on the first EC2
/// request after a restart: seconds of its CPU that no drain should pay (the
/// first nodereaper run would, the serial script makes no EC2 call). One
/// DescribeInstances before the runs.
async fn warm_up_ec2() {
    let started = Instant::now();
    // An unknown id is an error answer; any answer from EC2 will do.
    if let Err(e) = aws_sdk_ec2::Client::new(&common::aws().await)
        .describe_instances()
        .instance_ids("i-00000000000000000")
        .send()
        .await
    {
        assert!(
            e.as_service_error().is_some(),
            "DescribeInstances to warm up moto's EC2 backend: {e}"
        );
    }
    eprintln!(
        "moto's EC2 backend warmed up in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// The python of the moto virtualenv the stack runs (it has boto3, requests
/// and cryptography).
fn venv_python() -> PathBuf {
    let moto = std::fs::canonicalize(common::stack_dir().join("moto_server"))
        .expect("the stack's moto_server symlink");
    moto.with_file_name("python")
}

/// Where the consumers send their requests: direct, or through the delay
/// proxies (Chef, AWS).
struct Endpoints {
    chef: String,
    aws: String,
    proxies: Option<(DelayProxy, DelayProxy)>,
}

impl Endpoints {
    fn counts(&self) -> Option<(ProxyCounts, ProxyCounts)> {
        self.proxies.as_ref().map(|(c, a)| (c.counts(), a.counts()))
    }

    /// What went through the proxies since `before`.
    fn since(
        &self,
        before: &Option<(ProxyCounts, ProxyCounts)>,
    ) -> Option<(ProxyCounts, ProxyCounts)> {
        match (self.counts(), before) {
            (Some((c, a)), Some((c0, a0))) => Some((c.since(c0), a.since(a0))),
            _ => None,
        }
    }
}

async fn run_serial(sqs: &aws_sdk_sqs::Client, ep: &Endpoints, queue: &str, n: usize) -> Run {
    let stack = common::stack();
    let script = common::repo_root().join("benches/serial_reference.py");
    let mut child = tokio::process::Command::new(venv_python())
        .arg(&script)
        .arg(&ep.chef)
        .arg("admin")
        .arg(stack.admin_key())
        .arg(queue)
        .arg(n.to_string())
        .env("AWS_ENDPOINT_URL", &ep.aws)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start benches/serial_reference.py with the moto venv's python");
    let pid = child.id().expect("script pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines
        .next_line()
        .await
        .expect("read script")
        .unwrap_or_default();
    assert_eq!(ready, "READY", "serial reference did not start");
    let started = Instant::now();
    let cpu = StackCpu::now();
    let counted = ep.counts();
    let sampler = tokio::spawn(async move {
        let mut last = support::ProcSample::default();
        while let Some(s) = support::sample(pid) {
            if s.hwm_kib > 0 {
                last = s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    });
    let (empty, polls) = wait_empty(sqs, queue, Duration::from_secs(1800)).await;
    let spent = cpu.since();
    let result = lines
        .next_line()
        .await
        .expect("read script")
        .unwrap_or_default();
    let status = child.wait().await.expect("wait for script");
    assert!(status.success(), "serial reference failed: {status}");
    let last = sampler.await.expect("sampler");
    let report: Value = serde_json::from_str(&result).expect("script's JSON result");
    assert_eq!(report["handled"].as_u64(), Some(n as u64));
    let work_cpu = report["cpu_s"].as_f64().unwrap_or(f64::NAN);
    Run {
        who: Who::Serial,
        secs: (empty - started).as_secs_f64(),
        steady_secs: None,
        cpu: work_cpu,
        cpu_total: last.cpu_secs,
        peak_rss_mib: support::mib(last.hwm_kib),
        goiardi: spent.goiardi,
        moto: spent.moto,
        other: spent.other(work_cpu),
        bench: spent.bench,
        polls,
        proxied: ep.since(&counted),
        extra: json!({"script_wall_s": report["wall_s"]}),
    }
}

/// First -> last journal entry (each written right before its deletes).
fn steady_secs(journal_dir: &std::path::Path) -> Option<f64> {
    let index = support::read_journal_index(journal_dir);
    let first = index.iter().map(|l| l.recorded_at).min()?;
    let last = index.iter().map(|l| l.recorded_at).max()?;
    (last - first).to_std().ok().map(|d| d.as_secs_f64())
}

async fn run_nodereaper(
    sqs: &aws_sdk_sqs::Client,
    ep: &Endpoints,
    queue: &str,
    who: Who,
    workers: usize,
    round: usize,
) -> Run {
    let workers = if who == Who::Single { 1 } else { workers };
    let work = support::workdir(&format!("drain-{round}-w{workers}"));
    let journal_dir = work.join("journal");
    let config = support::write_config_via(
        &work,
        &DaemonConfig {
            queue_url: queue,
            journal_dir: &journal_dir,
            workers,
            wait_time: "1s",
            extra: "",
        },
        &ep.chef,
        &ep.aws,
    );
    let cpu = StackCpu::now();
    let counted = ep.counts();
    let log = work.join("daemon.log");
    let daemon = Daemon::start(&["run", "--exit-when-idle"], &config, &log);
    let started = daemon.started;
    let waiter = tokio::spawn(daemon.wait(Duration::from_secs(1800)));
    let (empty, polls) = wait_empty(sqs, queue, Duration::from_secs(1800)).await;
    let spent = cpu.since();
    let proxied = ep.since(&counted);
    let run = waiter.await.expect("daemon waiter");
    assert_eq!(
        run.exit_code,
        Some(0),
        "nodereaper failed; log: {}",
        log.display()
    );
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
    Run {
        who,
        secs: (empty - started).as_secs_f64(),
        steady_secs: steady_secs(&journal_dir),
        cpu: run.rusage_cpu_secs,
        cpu_total: run.rusage_cpu_secs,
        peak_rss_mib: support::mib(run.rusage_maxrss_kib),
        goiardi: spent.goiardi,
        moto: spent.moto,
        other: spent.other(run.rusage_cpu_secs),
        bench: spent.bench,
        polls,
        proxied,
        extra: json!({
            "workers": workers,
            "process_wall_s": r3(run.wall.as_secs_f64()),
            "chef_requests": chef_requests,
            "aws_requests": aws_requests,
            "work_dir": work.display().to_string(),
        }),
    }
}

/// CPU milliseconds to sign one Chef request (protocol 1.3, the admin key).
fn signing_cost_ms() -> f64 {
    use nodereaper::adapters::chef::auth::{sign, RequestToSign, SignVersion, SigningKey};
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

/// "C,A" milliseconds of round trip added to Chef and AWS requests.
fn delays() -> Option<(u64, u64)> {
    let v = std::env::var("NODEREAPER_BENCH_DELAY_MS").ok()?;
    let (c, a) = v
        .split_once(',')
        .unwrap_or_else(|| panic!("NODEREAPER_BENCH_DELAY_MS={v:?}: expected CHEF_MS,AWS_MS"));
    let ms = |s: &str| {
        s.trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("NODEREAPER_BENCH_DELAY_MS={v:?}: expected CHEF_MS,AWS_MS"))
    };
    Some((ms(c), ms(a)))
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The delay proxies in front of goiardi and moto (`None`: direct).
async fn endpoints(stack: &common::Stack, delay: Option<(u64, u64)>) -> Endpoints {
    match delay {
        None => Endpoints {
            chef: stack.chef_url().to_string(),
            aws: stack.moto_url().to_string(),
            proxies: None,
        },
        Some((chef_ms, aws_ms)) => {
            let c = DelayProxy::start(stack.chef_url(), Duration::from_millis(chef_ms) / 2).await;
            let a = DelayProxy::start(stack.moto_url(), Duration::from_millis(aws_ms) / 2).await;
            Endpoints {
                chef: c.url_for(stack.chef_url()),
                aws: a.url_for(stack.moto_url()),
                proxies: Some((c, a)),
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let n = support::env_usize("NODEREAPER_BENCH_N", 300);
    let rounds = support::env_usize("NODEREAPER_BENCH_ROUNDS", 2);
    let workers = support::env_usize("NODEREAPER_BENCH_WORKERS", 16);
    let single = support::env_usize("NODEREAPER_BENCH_SINGLE", 1) != 0;
    let delay = delays();
    let stack = support::fresh_stack();
    let chef = Arc::new(common::admin());
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    let ep = endpoints(stack, delay).await;
    eprintln!(
        "drain: N={n} per run, {rounds} rounds, workers={workers} (and 1: {single}), delays {delay:?} ms, daemon {}, load average {:.1}",
        support::nodereaper_bin().display(),
        support::loadavg()
    );
    let sign_ms = signing_cost_ms();
    warm_up_ec2().await;
    let poll_ms = poll_cost_ms(&sqs).await;

    let mut runs: Vec<Run> = Vec::new();
    let mut order = vec![Who::Serial, Who::Nodereaper];
    if single {
        order.push(Who::Single);
    }
    for round in 0..rounds {
        for &who in &order {
            let (names, queue, dlq) = workload(&chef, n, who.label()).await;
            let run = match who {
                Who::Serial => run_serial(&sqs, &ep, &queue, n).await,
                _ => run_nodereaper(&sqs, &ep, &queue, who, workers, round).await,
            };
            assert_drained(&chef, &names, &queue, &dlq, who.label()).await;
            eprintln!("  round {round} {}", report::run_line(&run, n));
            runs.push(run);
        }
    }
    report::summarize(
        &runs,
        &report::Setup {
            n,
            rounds,
            workers,
            delay,
            sign_ms,
            poll_ms,
        },
    );
}

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
//! Environment: NODEREAPER_BENCH_N (300), NODEREAPER_BENCH_ROUNDS (2),
//! NODEREAPER_BENCH_WORKERS (16), NODEREAPER_BENCH_DELAY_MS (unset; "C,A":
//! every Chef request gets C ms and every AWS request A ms of round trip,
//! through delay proxies in this process, for both consumers).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fake_instance_id, unique};
use nodereaper::adapters::chef::ChefClient;
use serde_json::{json, Value};
use support::{r3, Daemon, DaemonConfig, DelayProxy, StackCpu};
use tokio::io::{AsyncBufReadExt, BufReader};

const THREE_HOURS: Duration = Duration::from_secs(3 * 3600);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Serial,
    Nodereaper,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Serial => "serial",
            Who::Nodereaper => "nodereaper",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    who: Who,
    /// Start -> queue seen empty.
    secs: f64,
    /// CPU of the consumer for the work (see the module doc).
    cpu: f64,
    /// Whole-process CPU (nodereaper: the same; the script: with imports).
    cpu_total: f64,
    peak_rss_mib: f64,
    goiardi: f64,
    moto: f64,
    other: f64,
    bench: f64,
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

/// Polls the queue every 50 ms until it is empty (visible and in flight);
/// returns when that was first seen.
async fn wait_empty(sqs: &aws_sdk_sqs::Client, queue: &str, timeout: Duration) -> Instant {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let deadline = Instant::now() + timeout;
    loop {
        let r = sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let now = Instant::now();
        let count = |a: A| {
            r.attributes()
                .and_then(|m| m.get(&a))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        if count(A::ApproximateNumberOfMessages) == 0
            && count(A::ApproximateNumberOfMessagesNotVisible) == 0
        {
            return now;
        }
        assert!(
            now < deadline,
            "queue {queue} not drained after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The python of the moto virtualenv the stack runs (it has boto3, requests
/// and cryptography).
fn venv_python() -> PathBuf {
    let moto = std::fs::canonicalize(common::stack_dir().join("moto_server"))
        .expect("the stack's moto_server symlink");
    moto.with_file_name("python")
}

/// Where the consumers send their requests (direct, or through the proxies).
struct Endpoints {
    chef: String,
    aws: String,
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
    let empty = wait_empty(sqs, queue, Duration::from_secs(1800)).await;
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
        cpu: work_cpu,
        cpu_total: last.cpu_secs,
        peak_rss_mib: support::mib(last.hwm_kib),
        goiardi: spent.goiardi,
        moto: spent.moto,
        other: spent.other(work_cpu),
        bench: spent.bench,
        extra: json!({"script_wall_s": report["wall_s"]}),
    }
}

async fn run_nodereaper(
    sqs: &aws_sdk_sqs::Client,
    ep: &Endpoints,
    queue: &str,
    workers: usize,
    round: usize,
) -> Run {
    let work = support::workdir(&format!("drain-{round}"));
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
    let log = work.join("daemon.log");
    let daemon = Daemon::start(&["run", "--exit-when-idle"], &config, &log);
    let started = daemon.started;
    let waiter = tokio::spawn(daemon.wait(Duration::from_secs(1800)));
    let empty = wait_empty(sqs, queue, Duration::from_secs(1800)).await;
    let run = waiter.await.expect("daemon waiter");
    let spent = cpu.since();
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
        who: Who::Nodereaper,
        secs: (empty - started).as_secs_f64(),
        cpu: run.rusage_cpu_secs,
        cpu_total: run.rusage_cpu_secs,
        peak_rss_mib: support::mib(run.rusage_maxrss_kib),
        goiardi: spent.goiardi,
        moto: spent.moto,
        other: spent.other(run.rusage_cpu_secs),
        bench: spent.bench,
        extra: json!({
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

#[tokio::main]
async fn main() {
    let n = support::env_usize("NODEREAPER_BENCH_N", 300);
    let rounds = support::env_usize("NODEREAPER_BENCH_ROUNDS", 2);
    let workers = support::env_usize("NODEREAPER_BENCH_WORKERS", 16);
    let delay = delays();
    let stack = support::fresh_stack();
    let chef = Arc::new(common::admin());
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    // Proxies live as long as `_proxies`.
    let (ep, _proxies) = match delay {
        None => (
            Endpoints {
                chef: stack.chef_url().to_string(),
                aws: stack.moto_url().to_string(),
            },
            None,
        ),
        Some((chef_ms, aws_ms)) => {
            let c = DelayProxy::start(stack.chef_url(), Duration::from_millis(chef_ms) / 2).await;
            let a = DelayProxy::start(stack.moto_url(), Duration::from_millis(aws_ms) / 2).await;
            (
                Endpoints {
                    chef: c.url_for(stack.chef_url()),
                    aws: a.url_for(stack.moto_url()),
                },
                Some((c, a)),
            )
        }
    };
    eprintln!(
        "drain: N={n} per run, {rounds} rounds, workers={workers}, delays {delay:?} ms, daemon {}",
        support::nodereaper_bin().display()
    );
    let sign_ms = signing_cost_ms();

    let mut runs: Vec<Run> = Vec::new();
    for round in 0..rounds {
        for who in [Who::Serial, Who::Nodereaper] {
            let (names, queue, dlq) = workload(&chef, n, who.label()).await;
            let run = match who {
                Who::Serial => run_serial(&sqs, &ep, &queue, n).await,
                Who::Nodereaper => run_nodereaper(&sqs, &ep, &queue, workers, round).await,
            };
            assert_drained(&chef, &names, &queue, &dlq, who.label()).await;
            eprintln!(
                "  round {round} {:>10}: {:6.2} s  {:6.1}/s  CPU {:.2} s ({:.2} ms/termination)  goiardi {:.2} s  moto {:.2} s  other load {:.2} s",
                who.label(),
                run.secs,
                n as f64 / run.secs,
                run.cpu,
                run.cpu * 1e3 / n as f64,
                run.goiardi,
                run.moto,
                run.other
            );
            runs.push(run);
        }
    }

    let of = |who: Who| runs.iter().filter(move |r| r.who == who);
    let rate = |who: Who| mean(of(who).map(|r| n as f64 / r.secs));
    let per_t = |who: Who, f: fn(&Run) -> f64| mean(of(who).map(|r| f(r) * 1e3 / n as f64));
    let (s_rate, d_rate) = (rate(Who::Serial), rate(Who::Nodereaper));
    let s_cpu = per_t(Who::Serial, |r| r.cpu);
    let d_cpu = per_t(Who::Nodereaper, |r| r.cpu);
    let s_cpu_total = per_t(Who::Serial, |r| r.cpu_total);
    let (s_goiardi, d_goiardi) = (
        per_t(Who::Serial, |r| r.goiardi),
        per_t(Who::Nodereaper, |r| r.goiardi),
    );
    let (s_moto, d_moto) = (
        per_t(Who::Serial, |r| r.moto),
        per_t(Who::Nodereaper, |r| r.moto),
    );
    let d_rss = of(Who::Nodereaper)
        .map(|r| r.peak_rss_mib)
        .fold(0.0, f64::max);
    let other = mean(runs.iter().map(|r| r.other));
    // The stack's own limit with nodereaper's request mix: moto is one
    // Python process (one core at most); moto + goiardi + nodereaper share 2.
    let moto_limit = 1e3 / d_moto;
    let machine_limit = 2e3 / (d_moto + d_goiardi + d_cpu);
    let stack_limit = moto_limit.min(machine_limit);

    println!();
    println!(
        "drain: {n} terminations per run, {rounds} rounds alternating, nodereaper workers={workers}, {}",
        match delay {
            Some((c, a)) => format!("+{c} ms per Chef request, +{a} ms per AWS request (delay proxies)"),
            None => "no added latency".into(),
        }
    );
    for r in &runs {
        println!(
            "  {:>10}: {:6.2} s  {:6.1}/s  CPU {:.3} ms/termination (whole process {:.2} s)  peak RSS {:.1} MiB  goiardi {:.2} ms/t  moto {:.2} ms/t  other load {:.1} s",
            r.who.label(),
            r.secs,
            n as f64 / r.secs,
            r.cpu * 1e3 / n as f64,
            r.cpu_total,
            r.peak_rss_mib,
            r.goiardi * 1e3 / n as f64,
            r.moto * 1e3 / n as f64,
            r.other
        );
    }
    println!("  mean serial reference: {s_rate:6.1}/s, {s_cpu:.2} ms CPU per termination ({s_cpu_total:.2} with its imports); goiardi {s_goiardi:.2} ms, moto {s_moto:.2} ms per termination");
    println!("  mean nodereaper:       {d_rate:6.1}/s, {d_cpu:.2} ms CPU per termination; goiardi {d_goiardi:.2} ms, moto {d_moto:.2} ms per termination; peak RSS {d_rss:.1} MiB");
    println!(
        "  nodereaper / serial: throughput {:.2}x, CPU per termination {:.2}x (1/{:.1})",
        d_rate / s_rate,
        d_cpu / s_cpu,
        s_cpu / d_cpu
    );
    println!(
        "  stack limit with nodereaper's requests: moto alone {moto_limit:.0}/s (one core), moto + goiardi + nodereaper on 2 cores {machine_limit:.0}/s; nodereaper reaches {:.0} % of {stack_limit:.0}/s",
        100.0 * d_rate / stack_limit
    );
    println!("  signing one Chef request costs {sign_ms:.3} ms CPU (protocol 1.3)");
    println!("  mean other load on the machine per run: {other:.1} CPU-s");
    println!(
        "  invariant: every target node and client gone, queues and DLQs empty after each run: OK"
    );

    let runs_json: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "who": r.who.label(),
                "secs": r3(r.secs),
                "terminations_per_s": r3(n as f64 / r.secs),
                "cpu_s": r3(r.cpu),
                "cpu_total_s": r3(r.cpu_total),
                "cpu_ms_per_termination": r3(r.cpu * 1e3 / n as f64),
                "peak_rss_mib": r3(r.peak_rss_mib),
                "goiardi_cpu_s": r3(r.goiardi),
                "moto_cpu_s": r3(r.moto),
                "bench_cpu_s": r3(r.bench),
                "other_load_cpu_s": r3(r.other),
                "extra": r.extra,
            })
        })
        .collect();
    support::emit(
        if delay.is_some() {
            "drain-latency"
        } else {
            "drain"
        },
        json!({
            "n": n,
            "rounds": rounds,
            "workers": workers,
            "delay_ms": delay.map(|(c, a)| json!({"chef": c, "aws": a})),
            "runs": runs_json,
            "serial": {"terminations_per_s": r3(s_rate), "cpu_ms_per_termination": r3(s_cpu), "cpu_ms_per_termination_with_imports": r3(s_cpu_total), "goiardi_ms_per_termination": r3(s_goiardi), "moto_ms_per_termination": r3(s_moto)},
            "nodereaper": {"terminations_per_s": r3(d_rate), "cpu_ms_per_termination": r3(d_cpu), "goiardi_ms_per_termination": r3(d_goiardi), "moto_ms_per_termination": r3(d_moto), "peak_rss_mib": r3(d_rss)},
            "ratio_throughput": r3(d_rate / s_rate),
            "ratio_cpu": r3(d_cpu / s_cpu),
            "stack_limit_per_s": {"moto_one_core": r3(moto_limit), "two_cores": r3(machine_limit)},
            "chef_signature_cpu_ms": r3(sign_ms),
            "invariant_ok": true,
        }),
    );
}

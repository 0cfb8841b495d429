//! Shared by the benchmarks (not a benchmark itself): a clean private stack,
//! the release daemon as a measured subprocess, CPU and memory read from
//! /proc, percentiles, and the one-line JSON result.
//!
//! Every benchmark `mod`s this file next to the integration-test harness
//! (`tests/common/mod.rs`, included as `common`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use nodereaper::adapters::chef::ChefClient;
use nodereaper::ports::ChefApi;
use serde_json::{json, Value};

use crate::common;

mod proxy;
#[allow(unused_imports)]
pub use proxy::{DelayProxy, ProxyCounts};

/// The daemon under test: the release binary cargo built for this benchmark
/// (`cargo bench` uses the bench profile, which inherits `release`).
pub fn nodereaper_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nodereaper"))
}

/// Integer setting from the environment, e.g. `NODEREAPER_BENCH_WORKERS`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number")),
        Err(_) => default,
    }
}

/// Starts from a clean stack: the private "bench" goiardi + moto
/// (target/stack-bench), both restarted so that no object from an earlier
/// run (nodes, queues, instances) skews the measurement. goiardi keeps
/// everything in memory, so a restart empties it (and writes a new admin key,
/// which `common::admin()` re-reads).
pub fn fresh_stack() -> &'static common::Stack {
    common::use_private_stack("bench");
    common::stack_cmd(&["up"]);
    common::stack_cmd(&["restart-goiardi"]);
    common::stack_cmd(&["restart-moto"]);
    let stack = common::stack();
    eprintln!(
        "stack: goiardi {} (pid {}), moto {} (pid {})",
        stack.chef_url(),
        stack.var("NODEREAPER_GOIARDI_PID"),
        stack.moto_url(),
        stack.var("NODEREAPER_MOTO_PID"),
    );
    stack
}

pub fn goiardi_pid() -> u32 {
    common::stack()
        .var("NODEREAPER_GOIARDI_PID")
        .parse()
        .expect("goiardi pid in stack.env")
}

pub fn moto_pid() -> u32 {
    common::stack()
        .var("NODEREAPER_MOTO_PID")
        .parse()
        .expect("moto pid in stack.env")
}

/// Requests moto has answered so far (it logs one line per request).
pub fn moto_requests() -> usize {
    let log = common::stack().var("NODEREAPER_MOTO_LOG");
    std::fs::read_to_string(log)
        .map(|t| t.lines().filter(|l| l.contains("\" 200 ")).count())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// One look at a process in /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, seconds.
    pub cpu_secs: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS so far), KiB.
    pub hwm_kib: u64,
}

/// CPU seconds and memory of `pid`, or None once it is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok());
    let cpu_secs = (ticks(11)? + ticks(12)?) as f64 / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_secs,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// CPU seconds of this benchmark process itself (clients it runs in-process).
pub fn self_cpu_secs() -> f64 {
    sample(std::process::id()).map_or(0.0, |s| s.cpu_secs)
}

/// CPU seconds all processes of the machine spent busy so far (/proc/stat:
/// user + nice + system + irq + softirq + steal). The difference to what the
/// measured processes used is other load on the machine.
pub fn system_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) as f64 / clock_ticks()
}

/// The 1-minute load average (other work on the machine skews results).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// CPU used by goiardi, moto, this process and the whole machine between
/// two points in time.
#[derive(Debug, Clone, Copy)]
pub struct StackCpu {
    goiardi: f64,
    moto: f64,
    bench: f64,
    machine: f64,
}

/// CPU seconds spent in an interval, by whom.
#[derive(Debug, Clone, Copy)]
pub struct CpuSpent {
    pub goiardi: f64,
    pub moto: f64,
    /// This benchmark process (its clients).
    pub bench: f64,
    /// Every process of the machine.
    pub machine: f64,
}

impl CpuSpent {
    /// Machine CPU not used by goiardi, moto, the bench or `daemon_cpu`:
    /// other work that competed for the 2 cores.
    pub fn other(&self, daemon_cpu: f64) -> f64 {
        (self.machine - self.goiardi - self.moto - self.bench - daemon_cpu).max(0.0)
    }

    pub fn to_json(self, daemon_cpu: f64) -> Value {
        json!({
            "goiardi_cpu_s": r3(self.goiardi),
            "moto_cpu_s": r3(self.moto),
            "bench_client_cpu_s": r3(self.bench),
            "machine_cpu_s": r3(self.machine),
            "other_load_cpu_s": r3(self.other(daemon_cpu)),
        })
    }
}

impl StackCpu {
    pub fn now() -> Self {
        Self {
            goiardi: sample(goiardi_pid()).map_or(0.0, |s| s.cpu_secs),
            moto: sample(moto_pid()).map_or(0.0, |s| s.cpu_secs),
            bench: self_cpu_secs(),
            machine: system_busy_secs(),
        }
    }

    pub fn since(&self) -> CpuSpent {
        let now = Self::now();
        CpuSpent {
            goiardi: now.goiardi - self.goiardi,
            moto: now.moto - self.moto,
            bench: now.bench - self.bench,
            machine: now.machine - self.machine,
        }
    }
}

/// The TOML configuration of a measured daemon.
pub struct DaemonConfig<'a> {
    pub queue_url: &'a str,
    pub journal_dir: &'a Path,
    pub workers: usize,
    pub wait_time: &'a str,
    /// More TOML appended verbatim (e.g. a `[sweep]` table).
    pub extra: &'a str,
}

/// Writes `dir/nodereaper.toml` and returns its path. Logs are JSON at info
/// (as in production), so the metrics address can be read back from them.
pub fn write_config(dir: &Path, c: &DaemonConfig<'_>) -> PathBuf {
    let stack = common::stack();
    write_config_via(dir, c, stack.chef_url(), stack.moto_url())
}

/// The same, with the daemon talking to Chef at `chef_url` and to AWS at
/// `aws_url` (e.g. through a [`DelayProxy`]).
pub fn write_config_via(
    dir: &Path,
    c: &DaemonConfig<'_>,
    chef_url: &str,
    aws_url: &str,
) -> PathBuf {
    let stack = common::stack();
    let queues = if c.queue_url.is_empty() {
        String::new()
    } else {
        format!("[[queues]]\nurl = \"{}\"\n", c.queue_url)
    };
    let text = format!(
        r#"[chef]
server_url = "{chef}"
allow_plain_http = true
client_name = "admin"
client_key = "{key}"
timeout = "30s"

[aws]
region = "us-east-1"
endpoint_url = "{moto}"

{queues}
[journal]
dir = "{journal}"

[pipeline]
workers = {workers}
wait_time = "{wait}"
max_deletions_per_minute = 0
retry_backoff_base = "1s"
retry_backoff_max = "5s"

[http]
listen = "127.0.0.1:0"

[log]
format = "json"
level = "{level}"
{extra}
"#,
        chef = chef_url,
        key = stack.admin_key().display(),
        moto = aws_url,
        journal = c.journal_dir.display(),
        workers = c.workers,
        wait = c.wait_time,
        extra = c.extra,
        // A time line of the start-up, for instance: NODEREAPER_BENCH_LOG=
        // "info,nodereaper=debug,aws_smithy_runtime::client::orchestrator=debug".
        level = std::env::var("NODEREAPER_BENCH_LOG").unwrap_or_else(|_| "info".into()),
    );
    let path = dir.join("nodereaper.toml");
    std::fs::write(&path, text).expect("write daemon config");
    path
}

/// A nodereaper subprocess, sampled while it runs.
pub struct Daemon {
    child: Child,
    pub pid: u32,
    pub log: PathBuf,
    pub started: Instant,
    reaped: bool,
}

/// How a daemon run ended and what it cost.
#[derive(Debug, Clone)]
pub struct DaemonRun {
    pub wall: Duration,
    /// Exit code; None when killed by a signal.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// From the last /proc sample before exit.
    pub cpu_secs: f64,
    pub peak_rss_kib: u64,
    /// Cross-check from wait4(2)'s rusage (exact, includes the last moments).
    pub rusage_cpu_secs: f64,
    pub rusage_maxrss_kib: u64,
    /// The last /metrics text scraped before exit (empty if none).
    pub metrics: String,
}

impl Daemon {
    /// `nodereaper ARGS --config CONFIG`, stdout and stderr to `log`.
    pub fn start(args: &[&str], config: &Path, log: &Path) -> Daemon {
        let out = std::fs::File::create(log).expect("create daemon log");
        let err = out.try_clone().expect("clone log handle");
        Self::spawn(args, config, out, err, log)
    }

    /// The same with stdout (e.g. JSON output) in its own file.
    pub fn start_split(args: &[&str], config: &Path, stdout: &Path, log: &Path) -> Daemon {
        let out = std::fs::File::create(stdout).expect("create stdout file");
        let err = std::fs::File::create(log).expect("create log");
        Self::spawn(args, config, out, err, log)
    }

    fn spawn(
        args: &[&str],
        config: &Path,
        out: std::fs::File,
        err: std::fs::File,
        log: &Path,
    ) -> Daemon {
        let child = Command::new(nodereaper_bin())
            .args(args)
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start target/release/nodereaper");
        Daemon {
            pid: child.id(),
            child,
            log: log.to_path_buf(),
            started: Instant::now(),
            reaped: false,
        }
    }

    /// The /metrics address the daemon logged (`http.listen` port 0).
    pub fn metrics_addr(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v.get("bound").and_then(Value::as_str).map(str::to_string))
    }

    /// Reaps the process if it exited (wait4 with WNOHANG).
    fn try_reap(&mut self) -> Option<(i32, libc::rusage)> {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = self.pid as libc::pid_t;
        // SAFETY: waiting for our own child, with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            self.reaped = true;
            Some((status, usage))
        } else {
            None
        }
    }

    /// Waits for the process to exit (at most `timeout`, then SIGKILL and
    /// panic), sampling /proc every 50 ms and /metrics every 500 ms.
    pub async fn wait(mut self, timeout: Duration) -> DaemonRun {
        let http = reqwest::Client::new();
        let mut last = ProcSample::default();
        let mut metrics = String::new();
        let mut addr: Option<String> = None;
        let mut next_scrape = Instant::now();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = sample(self.pid) {
                // A zombie has no memory left: keep the last live sample.
                if s.hwm_kib > 0 {
                    last = s;
                }
            }
            if let Some((status, usage)) = self.try_reap() {
                return self.finish(status, usage, last, metrics);
            }
            if Instant::now() >= next_scrape {
                next_scrape = Instant::now() + Duration::from_millis(500);
                if addr.is_none() {
                    addr = self.metrics_addr();
                }
                if let Some(a) = &addr {
                    let req = http
                        .get(format!("http://{a}/metrics"))
                        .timeout(Duration::from_millis(400))
                        .send();
                    if let Ok(Ok(resp)) =
                        tokio::time::timeout(Duration::from_millis(450), req).await
                    {
                        if let Ok(text) = resp.text().await {
                            metrics = text;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "nodereaper (pid {}) still running after {timeout:?}; log: {}",
                    self.pid,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Samples now (CPU, RSS) without waiting.
    pub fn sample(&self) -> Option<ProcSample> {
        sample(self.pid)
    }

    /// Sends `signal` (e.g. libc::SIGKILL, libc::SIGTERM) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own, not yet reaped, child.
        let r = unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        assert_eq!(r, 0, "kill({}, {signal}) failed", self.pid);
    }

    /// SIGKILL, then reap.
    pub async fn kill9(self) -> DaemonRun {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(30)).await
    }

    fn finish(
        &self,
        status: i32,
        usage: libc::rusage,
        last: ProcSample,
        metrics: String,
    ) -> DaemonRun {
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let exited = libc::WIFEXITED(status);
        DaemonRun {
            wall: self.started.elapsed(),
            exit_code: exited.then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            cpu_secs: last.cpu_secs,
            peak_rss_kib: last.hwm_kib,
            rusage_cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime),
            rusage_maxrss_kib: usage.ru_maxrss as u64,
            metrics,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sums Prometheus samples of `metric` by the value of `label`, e.g. the
/// `_count` of `chef_request_duration_seconds` by endpoint.
pub fn metric_by(text: &str, metric: &str, labels: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((label_text, value)) = rest.split_once("} ") else {
            continue;
        };
        let pairs: BTreeMap<&str, &str> = label_text
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let key: Vec<&str> = labels
            .iter()
            .map(|l| pairs.get(l).copied().unwrap_or("?"))
            .collect();
        *out.entry(key.join(" ")).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// Nearest-rank percentile of `sorted` (ascending), `p` in 0..=100.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Rounds for the JSON line.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints the machine-readable result (one line, prefixed `RESULT `) and
/// keeps a copy in target/bench-results/NAME.json.
pub fn emit(name: &str, mut result: Value) {
    result["bench"] = json!(name);
    result["machine"] = machine();
    result["finished_at"] = json!(chrono::Utc::now().to_rfc3339());
    let line = result.to_string();
    println!("RESULT {line}");
    let dir = common::repo_root().join("target/bench-results");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{name}.json")), format!("{line}\n"));
    }
}

/// nproc and the stack versions, for the record.
pub fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    json!({"nproc": cpus, "cpu": model, "loadavg_1m_at_end": loadavg()})
}

/// A public key for clients created in bulk: passing one makes goiardi skip
/// generating an RSA key pair per client (seconds of CPU for thousands of
/// clients), which is setup cost, not what is measured.
pub fn bulk_client_public_key() -> String {
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let private =
            rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("generate RSA key");
        rsa::RsaPublicKey::from(&private)
            .to_public_key_pem(LineEnding::LF)
            .expect("encode public key")
    })
    .clone()
}

/// Registers (node, client) pairs as chef-client's first run would, with
/// `concurrency` requests in flight. The node JSON is the harness's
/// (`common::node_json`, Ohai EC2 data, ohai_time `age` ago).
pub async fn register_many(
    chef: &Arc<ChefClient>,
    nodes: &[(String, Option<String>)],
    with_client: bool,
    age: Duration,
    concurrency: usize,
) {
    let key = bulk_client_public_key();
    let started = Instant::now();
    stream::iter(nodes.iter().cloned())
        .for_each_concurrent(concurrency, |(name, id)| {
            let chef = chef.clone();
            let key = key.clone();
            async move {
                chef.create_node(&common::node_json(&name, id.as_deref(), age))
                    .await
                    .unwrap_or_else(|e| panic!("create node {name}: {e}"));
                if with_client {
                    chef.create_client(&name, Some(&key), false)
                        .await
                        .unwrap_or_else(|e| panic!("create client {name}: {e}"));
                }
            }
        })
        .await;
    if nodes.len() < 2 {
        return;
    }
    eprintln!(
        "registered {} nodes{} in {:.1}s",
        nodes.len(),
        if with_client { " + clients" } else { "" },
        started.elapsed().as_secs_f64()
    );
}

/// Names of every client on the server.
pub async fn list_clients(chef: &ChefClient) -> Vec<String> {
    let resp = chef
        .send(reqwest::Method::GET, &["clients"], &[], None)
        .await
        .expect("GET /clients");
    let map: BTreeMap<String, Value> = serde_json::from_slice(&resp.body).expect("clients JSON");
    map.into_keys().collect()
}

/// How many of `names` still exist as nodes and as clients (one listing each).
pub async fn survivors(chef: &ChefClient, names: &[String]) -> (usize, usize) {
    let nodes: std::collections::HashSet<String> = chef
        .list_nodes()
        .await
        .expect("GET /nodes")
        .into_iter()
        .collect();
    let clients: std::collections::HashSet<String> = list_clients(chef).await.into_iter().collect();
    (
        names.iter().filter(|n| nodes.contains(*n)).count(),
        names.iter().filter(|n| clients.contains(*n)).count(),
    )
}

/// Sends classic SNS-wrapped termination notifications for `ids` with
/// SendMessageBatch (10 per call, `concurrency` calls in flight). Returns
/// message id -> time the SendMessageBatch call that carried it returned.
pub async fn send_terminations(
    queue_url: &str,
    ids: &[String],
    concurrency: usize,
) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let sqs = aws_sdk_sqs::Client::new(&common::aws().await);
    let chunks: Vec<Vec<String>> = ids.chunks(10).map(<[String]>::to_vec).collect();
    let results: Vec<Vec<(String, chrono::DateTime<chrono::Utc>)>> = stream::iter(chunks)
        .map(|chunk| {
            let sqs = sqs.clone();
            async move {
                let entries: Vec<SendMessageBatchRequestEntry> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(common::sns_wrap(&common::asg_terminate_notification(
                                id, "web-asg",
                            )))
                            .build()
                            .expect("batch entry")
                    })
                    .collect();
                let out = sqs
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .expect("SendMessageBatch");
                let at = chrono::Utc::now();
                assert!(out.failed().is_empty(), "failed sends: {:?}", out.failed());
                out.successful()
                    .iter()
                    .map(|s| (s.message_id().to_string(), at))
                    .collect()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// A queue with a DLQ (redrive after `max_receive` receives) and the given
/// visibility timeout (seconds).
pub async fn queue(name: &str, visibility_secs: u32, max_receive: u32) -> (String, String) {
    let (url, dlq) = common::queue_with_dlq(name, max_receive).await;
    if visibility_secs != 30 {
        aws_sdk_sqs::Client::new(&common::aws().await)
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                visibility_secs.to_string(),
            )
            .send()
            .await
            .expect("set visibility timeout");
    }
    (url, dlq)
}

/// One line of the journal index (index.jsonl).
pub struct JournalLine {
    pub message_id: Option<String>,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub node_name: String,
    pub id: String,
}

pub fn read_journal_index(dir: &Path) -> Vec<JournalLine> {
    let text = std::fs::read_to_string(dir.join("index.jsonl")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("journal index line is JSON");
            JournalLine {
                message_id: v["message_id"].as_str().map(str::to_string),
                recorded_at: v["recorded_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .expect("recorded_at"),
                node_name: v["node_name"].as_str().unwrap_or_default().to_string(),
                id: v["id"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

/// A temporary directory under target/bench-tmp (kept on failure for a look).
pub fn workdir(name: &str) -> PathBuf {
    let dir = common::repo_root().join("target/bench-tmp").join(format!(
        "{name}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    std::fs::create_dir_all(&dir).expect("create bench work dir");
    dir
}

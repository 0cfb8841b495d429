//! Sweep benchmark: `nodereaper sweep` over a large fleet.
//!
//! 20,000 instances in moto EC2 (RunInstances, 500 per call), 10% of them
//! terminated; 20,000 Chef nodes (+ clients) recording those instance ids
//! (Ohai `ec2.instance_id`, zone us-east-1a, ohai_time 3 h old, so every
//! terminated one is past the 1 h grace period). Then the release binary runs
//!
//!     nodereaper sweep --output json --force            (report)
//!     nodereaper sweep --output json --apply --force    (delete)
//!
//! and each run's wall time, CPU, peak RSS and its own request counts by
//! endpoint (the JSON `requests` map) are reported. The point: requests grow
//! with N/1000 (search pages) and N/200 (DescribeInstances), plus a constant
//! per deletion, not with N per node.
//!
//!     cargo bench --bench sweep
//!
//! Environment: NODEREAPER_BENCH_NODES (20000), NODEREAPER_BENCH_TERMINATED_PCT (10).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use nodereaper::ports::ChefApi;
use serde_json::{json, Value};
use support::{r3, Daemon, DaemonConfig};

/// One sweep run: its JSON report (without rows) and its cost.
struct SweepRun {
    report: Value,
    spent: support::CpuSpent,
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mib: f64,
}

async fn run_sweep(
    work: &std::path::Path,
    config: &std::path::Path,
    label: &str,
    args: &[&str],
) -> SweepRun {
    let stdout = work.join(format!("{label}.json"));
    let log = work.join(format!("{label}.log"));
    let mut full = vec!["sweep"];
    full.extend_from_slice(args);
    let stack_cpu = support::StackCpu::now();
    let daemon = Daemon::start_split(&full, config, &stdout, &log);
    let run = daemon.wait(Duration::from_secs(3600)).await;
    let spent = stack_cpu.since();
    assert_eq!(
        run.exit_code,
        Some(0),
        "nodereaper {full:?} failed; see {}",
        log.display()
    );
    let text = std::fs::read_to_string(&stdout).expect("sweep output");
    let mut report: Value = serde_json::from_str(&text).expect("sweep --output json is JSON");
    if let Some(obj) = report.as_object_mut() {
        obj.remove("rows");
    }
    SweepRun {
        report,
        spent,
        wall_s: run.wall.as_secs_f64(),
        cpu_s: run.cpu_secs,
        peak_rss_mib: support::mib(run.peak_rss_kib),
    }
}

fn requests(run: &SweepRun) -> BTreeMap<String, u64> {
    run.report["requests"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        })
        .unwrap_or_default()
}

fn print_run(label: &str, run: &SweepRun) {
    let r = &run.report;
    println!(
        "  {label:<7} wall {:7.2} s (sweep itself {} ms)  CPU {:.2} s  peak RSS {:.1} MiB  nodes {} candidates {} deleted {}",
        run.wall_s, r["duration_ms"], run.cpu_s, run.peak_rss_mib, r["nodes"], r["candidates"], r["deleted"]
    );
    let reqs = requests(run);
    let total: u64 = reqs.values().sum();
    println!("          requests ({total}): {reqs:?}");
    println!(
        "          meanwhile: goiardi CPU {:.2} s, moto CPU {:.2} s, other load {:.2} s",
        run.spent.goiardi,
        run.spent.moto,
        run.spent.other(run.cpu_s)
    );
}

#[tokio::main]
async fn main() {
    let n = support::env_usize("NODEREAPER_BENCH_NODES", 20_000);
    let pct = support::env_usize("NODEREAPER_BENCH_TERMINATED_PCT", 10);
    support::fresh_stack();
    let chef = Arc::new(common::admin());
    let work = support::workdir("sweep");
    eprintln!(
        "sweep: {n} nodes, {pct}% terminated, work dir {}",
        work.display()
    );

    // The fleet in EC2.
    let started = Instant::now();
    let chunks: Vec<i32> = (0..n)
        .step_by(500)
        .map(|start| (n - start).min(500) as i32)
        .collect();
    let ids: Vec<String> = stream::iter(chunks)
        .map(common::run_instances)
        .buffered(2)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(ids.len(), n, "moto launched every instance");
    // Every k-th instance terminated, spread over the fleet.
    let step = (100 / pct.max(1)).max(1);
    let terminated: Vec<String> = ids.iter().step_by(step).cloned().collect();
    for chunk in terminated.chunks(500) {
        common::terminate_instances(chunk).await;
    }
    eprintln!(
        "EC2: {} instances, {} terminated, in {:.1}s",
        ids.len(),
        terminated.len(),
        started.elapsed().as_secs_f64()
    );

    // The fleet in Chef.
    let names: Vec<(String, Option<String>)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("web-{i:05}"), Some(id.clone())))
        .collect();
    support::register_many(&chef, &names, true, Duration::from_secs(3 * 3600), 32).await;
    let dead: HashSet<&str> = terminated.iter().map(String::as_str).collect();
    let doomed: Vec<String> = names
        .iter()
        .filter(|(_, id)| id.as_deref().is_some_and(|i| dead.contains(i)))
        .map(|(name, _)| name.clone())
        .collect();

    let config = support::write_config(
        &work,
        &DaemonConfig {
            queue_url: "",
            journal_dir: &work.join("journal"),
            workers: 16,
            wait_time: "20s",
            extra: "\n[sweep]\ngrace_period = \"1h\"\nmax_candidates = 1000000\nmax_candidate_share = 1.0\n",
        },
    );
    let report = run_sweep(&work, &config, "report", &["--output", "json", "--force"]).await;
    assert_eq!(report.report["nodes"], json!(n));
    assert_eq!(report.report["candidates"], json!(doomed.len()));
    let apply = run_sweep(
        &work,
        &config,
        "apply",
        &["--output", "json", "--apply", "--force"],
    )
    .await;
    assert_eq!(apply.report["deleted"], json!(doomed.len()));

    let (nodes_left, clients_left) = support::survivors(&chef, &doomed).await;
    assert_eq!(
        (nodes_left, clients_left),
        (0, 0),
        "terminated instances' registrations survived the sweep"
    );
    let remaining = chef.list_nodes().await.expect("GET /nodes").len();
    assert_eq!(
        remaining,
        n - doomed.len(),
        "a live instance's node was deleted"
    );

    let expected_report = format!(
        "Chef: ceil(N/1000)+1 = {} search pages (+1 discarded goiardi probe) and 1 GET /nodes; EC2: ceil(N/200) = {} DescribeInstances",
        n.div_ceil(1000) + 1,
        n.div_ceil(200)
    );
    println!();
    println!("sweep: {n} nodes / instances, {} terminated", doomed.len());
    print_run("report", &report);
    print_run("apply", &apply);
    println!("  expected for the report run: {expected_report}");
    let rep = requests(&report);
    let app = requests(&apply);
    let delta: BTreeMap<String, i64> = app
        .iter()
        .map(|(k, v)| (k.clone(), *v as i64 - *rep.get(k).unwrap_or(&0) as i64))
        .filter(|(_, v)| *v != 0)
        .collect();
    println!(
        "  apply minus report (the deletions' cost, {} deletions): {delta:?}",
        doomed.len()
    );
    println!("  invariant: every terminated node and client gone, {remaining} live nodes kept: OK");
    support::emit(
        "sweep",
        json!({
            "nodes": n,
            "terminated": doomed.len(),
            "report": {
                "wall_s": r3(report.wall_s),
                "sweep_duration_ms": report.report["duration_ms"],
                "cpu_s": r3(report.cpu_s),
                "peak_rss_mib": r3(report.peak_rss_mib),
                "cpu_during_run": report.spent.to_json(report.cpu_s),
                "candidates": report.report["candidates"],
                "by_verdict": report.report["by_verdict"],
                "requests": rep,
            },
            "apply": {
                "wall_s": r3(apply.wall_s),
                "sweep_duration_ms": apply.report["duration_ms"],
                "cpu_s": r3(apply.cpu_s),
                "peak_rss_mib": r3(apply.peak_rss_mib),
                "cpu_during_run": apply.spent.to_json(apply.cpu_s),
                "deleted": apply.report["deleted"],
                "requests": app,
                "requests_minus_report": delta,
            },
            "invariant_ok": true,
        }),
    );
}

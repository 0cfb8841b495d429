//! Idle benchmark: what the daemon costs while nothing happens, which is
//! most of its life. The release binary runs `nodereaper run` on an empty
//! queue with the production long poll (20 s) for 60 s; measured: CPU seconds
//! (startup, then the idle window), RSS, requests it made to AWS (moto's
//! request log), CPU it caused in goiardi and moto, and SIGTERM -> exit.
//!
//!     cargo bench --bench idle
//!
//! Environment: NODEREAPER_BENCH_IDLE_SECS (60), NODEREAPER_BENCH_WORKERS (16).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{r3, Daemon, DaemonConfig, StackCpu};

#[tokio::main]
async fn main() {
    let secs = support::env_usize("NODEREAPER_BENCH_IDLE_SECS", 60);
    let workers = support::env_usize("NODEREAPER_BENCH_WORKERS", 16);
    support::fresh_stack();
    let work = support::workdir("idle");
    let (queue, _dlq) = support::queue(&common::unique("idle"), 30, 5).await;
    let config = support::write_config(
        &work,
        &DaemonConfig {
            queue_url: &queue,
            journal_dir: &work.join("journal"),
            workers,
            wait_time: "20s",
            extra: "",
        },
    );
    let daemon = Daemon::start(&["run"], &config, &work.join("daemon.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.metrics_addr().is_none() {
        assert!(Instant::now() < deadline, "daemon did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the first long poll begin, then measure a clean window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let startup = daemon.sample().expect("daemon running");
    let stack_cpu = StackCpu::now();
    let moto_before = support::moto_requests();
    eprintln!("idle: watching pid {} for {secs} s", daemon.pid);
    let mut max_rss = startup.rss_kib;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(secs as u64) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(s) = daemon.sample() {
            max_rss = max_rss.max(s.rss_kib);
        }
    }
    let end = daemon.sample().expect("daemon still running");
    let spent = stack_cpu.since();
    let moto_reqs = support::moto_requests() - moto_before;
    let idle_cpu = end.cpu_secs - startup.cpu_secs;
    let stop = Instant::now();
    daemon.signal(libc::SIGTERM);
    let run = daemon.wait(Duration::from_secs(60)).await;
    let shutdown = stop.elapsed();
    assert_eq!(run.exit_code, Some(0), "daemon exit after SIGTERM");

    println!();
    println!("idle: empty queue, long poll 20 s, {secs} s window");
    println!(
        "  CPU: {:.2} s to start (incl. first poll), {idle_cpu:.2} s over the {secs} s window ({:.3}% of one core)",
        startup.cpu_secs,
        idle_cpu / secs as f64 * 100.0
    );
    println!(
        "  RSS: {:.1} MiB at start, {:.1} MiB at the end (max {:.1}), VmHWM {:.1} MiB",
        support::mib(startup.rss_kib),
        support::mib(end.rss_kib),
        support::mib(max_rss),
        support::mib(end.hwm_kib)
    );
    println!(
        "  requests to AWS (moto) in the window: {moto_reqs}; goiardi CPU {:.2} s, moto CPU {:.2} s, other load {:.2} s",
        spent.goiardi,
        spent.moto,
        spent.other(idle_cpu)
    );
    println!(
        "  whole life (start, {secs} s idle, SIGTERM) from wait4 rusage: CPU {:.3} s, maxrss {:.1} MiB  (/proc ticks are 10 ms)",
        run.rusage_cpu_secs,
        support::mib(run.rusage_maxrss_kib)
    );
    println!(
        "  SIGTERM -> exit {:.0} ms (a long poll in progress is abandoned)",
        shutdown.as_secs_f64() * 1e3
    );
    support::emit(
        "idle",
        json!({
            "window_s": secs,
            "workers": workers,
            "startup_cpu_s": r3(startup.cpu_secs),
            "idle_cpu_s": r3(idle_cpu),
            "idle_cpu_pct_of_core": r3(idle_cpu / secs as f64 * 100.0),
            "rss_start_mib": r3(support::mib(startup.rss_kib)),
            "rss_end_mib": r3(support::mib(end.rss_kib)),
            "vm_hwm_mib": r3(support::mib(end.hwm_kib)),
            "aws_requests_in_window": moto_reqs,
            "cpu_during_window": spent.to_json(idle_cpu),
            "sigterm_to_exit_ms": r3(shutdown.as_secs_f64() * 1e3),
            "lifetime_rusage_cpu_s": r3(run.rusage_cpu_secs),
            "lifetime_rusage_maxrss_mib": r3(support::mib(run.rusage_maxrss_kib)),
        }),
    );
}

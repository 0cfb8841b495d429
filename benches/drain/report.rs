//! The drain benchmark's summary: per-run lines, means, the limits of a
//! delayed drain (critical path, concurrency, moto and the machine) and the
//! RESULT line.

use serde_json::{json, Value};

use crate::support::{self, r3, ProxyCounts};
use crate::{mean, Run, Who};
/// The limits of a delayed drain, per termination, and the bound they set.
#[derive(Debug, Default)]
struct Limits {
    /// Round trips on the critical path (single-worker runs), Chef and AWS.
    chef_round_trips: f64,
    aws_round_trips: f64,
    /// Their latency: round trips x the added delay.
    critical_ms: f64,
    /// workers / critical_ms.
    concurrency: f64,
    /// moto's CPU per termination without the benchmark's polls.
    moto_ms: f64,
    /// One core / moto_ms.
    moto: f64,
    /// Two cores / (moto + goiardi + nodereaper + this process).
    machine: f64,
    /// The lowest of the three.
    bound: f64,
    /// Cores left by other work on the machine during the runs (2 minus
    /// its CPU-seconds per second), and the bound with only those:
    /// min(bound, cores left / the stack's CPU per termination).
    cores_left: f64,
    loaded_bound: f64,
}

impl Limits {
    fn of(runs: &[Run], n: usize, workers: usize, delay: (u64, u64), poll_ms: f64) -> Limits {
        let per_t = |x: f64| x / n as f64;
        let single: Vec<&Run> = runs.iter().filter(|r| r.who == Who::Single).collect();
        let rt = |pick: fn(&(ProxyCounts, ProxyCounts)) -> u64| {
            mean(
                single
                    .iter()
                    .filter_map(|r| r.proxied.as_ref())
                    .map(|p| per_t(pick(p) as f64)),
            )
        };
        let chef_round_trips = rt(|p| p.0.round_trips);
        let aws_round_trips = rt(|p| p.1.round_trips);
        let critical_ms = chef_round_trips * delay.0 as f64 + aws_round_trips * delay.1 as f64;
        let concurrency = if single.is_empty() {
            f64::NAN
        } else {
            workers as f64 * 1e3 / critical_ms
        };
        let multi: Vec<&Run> = runs.iter().filter(|r| r.who == Who::Nodereaper).collect();
        let ms = |f: &dyn Fn(&Run) -> f64| mean(multi.iter().map(|r| per_t(f(r)) * 1e3));
        let moto_ms = ms(&|r| r.moto - r.polls as f64 * poll_ms / 1e3);
        let machine_ms = moto_ms + ms(&|r| r.goiardi + r.cpu + r.bench);
        let (moto, machine) = (1e3 / moto_ms, 2e3 / machine_ms);
        let cores_left = mean(multi.iter().map(|r| (2.0 - r.other / r.secs).max(0.0)));
        let bound = concurrency.min(moto).min(machine);
        Limits {
            chef_round_trips,
            aws_round_trips,
            critical_ms,
            concurrency,
            moto_ms,
            moto,
            machine,
            bound,
            cores_left,
            loaded_bound: bound.min(cores_left * 1e3 / machine_ms),
        }
    }
}

/// Requests per termination by label, over the runs of `who`.
fn requests_per_termination(runs: &[Run], who: Who, n: usize) -> Value {
    let of: Vec<&(ProxyCounts, ProxyCounts)> = runs
        .iter()
        .filter(|r| r.who == who)
        .filter_map(|r| r.proxied.as_ref())
        .collect();
    let per = |pick: fn(&(ProxyCounts, ProxyCounts)) -> &ProxyCounts| {
        let mut labels = std::collections::BTreeMap::<String, f64>::new();
        for p in &of {
            for (label, count) in &pick(p).by_label {
                *labels.entry(label.clone()).or_default() +=
                    *count as f64 / n as f64 / of.len() as f64;
            }
        }
        let total = mean(of.iter().map(|p| pick(p).requests as f64 / n as f64));
        let round_trips = mean(of.iter().map(|p| pick(p).round_trips as f64 / n as f64));
        json!({
            "requests": r3(total),
            "round_trips": r3(round_trips),
            "by_label": labels.into_iter().map(|(k, v)| (k, json!(r3(v)))).collect::<serde_json::Map<_, _>>(),
        })
    };
    json!({"chef": per(|p| &p.0), "aws": per(|p| &p.1)})
}

/// One run's line of the summary.
pub fn run_line(r: &Run, n: usize) -> String {
    let steady = r.steady_secs.map_or(String::new(), |s| {
        format!(" ({:.1}/s first -> last deletion)", (n as f64 - 1.0) / s)
    });
    let proxied = r.proxied.as_ref().map_or(String::new(), |(c, a)| {
        format!(
            "  requests/t Chef {:.2} AWS {:.2}, round trips/t Chef {:.2} AWS {:.2}",
            c.requests as f64 / n as f64,
            a.requests as f64 / n as f64,
            c.round_trips as f64 / n as f64,
            a.round_trips as f64 / n as f64
        )
    });
    format!(
        "{:>10}: {:6.2} s  {:6.1}/s{steady}  CPU {:.3} ms/t (whole process {:.2} s)  peak RSS {:.1} MiB  goiardi {:.2} ms/t  moto {:.2} ms/t  other load {:.1} s{proxied}",
        r.who.label(),
        r.secs,
        n as f64 / r.secs,
        r.cpu * 1e3 / n as f64,
        r.cpu_total,
        r.peak_rss_mib,
        r.goiardi * 1e3 / n as f64,
        r.moto * 1e3 / n as f64,
        r.other
    )
}

fn run_json(r: &Run, n: usize) -> Value {
    let proxied = r.proxied.as_ref().map(|(c, a)| {
        json!({
            "chef": {"requests": c.requests, "round_trips": c.round_trips, "by_label": c.by_label},
            "aws": {"requests": a.requests, "round_trips": a.round_trips, "by_label": a.by_label},
        })
    });
    json!({
        "who": r.who.label(),
        "secs": r3(r.secs),
        "terminations_per_s": r3(n as f64 / r.secs),
        "steady_per_s": r.steady_secs.map(|s| r3((n as f64 - 1.0) / s)),
        "cpu_s": r3(r.cpu),
        "cpu_total_s": r3(r.cpu_total),
        "cpu_ms_per_termination": r3(r.cpu * 1e3 / n as f64),
        "peak_rss_mib": r3(r.peak_rss_mib),
        "goiardi_cpu_s": r3(r.goiardi),
        "moto_cpu_s": r3(r.moto),
        "bench_cpu_s": r3(r.bench),
        "bench_polls": r.polls,
        "other_load_cpu_s": r3(r.other),
        "proxied": proxied,
        "extra": r.extra,
    })
}

/// Prints the limits of a delayed drain and the share of the bound reached.
fn print_limits(
    l: &Limits,
    workers: usize,
    rate: f64,
    steady: f64,
    single: f64,
    delay: (u64, u64),
) {
    println!(
        "  critical path per termination (1-worker runs, counted by the proxies): {:.2} Chef round trips x {} ms + {:.2} AWS round trips x {} ms = {:.1} ms",
        l.chef_round_trips, delay.0, l.aws_round_trips, delay.1, l.critical_ms
    );
    println!(
        "  1 worker: {single:.1}/s = {:.1} ms per termination, {:.1} ms of it the round trips' latency ({:.0} % of its own bound {:.1}/s)",
        1e3 / single,
        l.critical_ms,
        100.0 * single * l.critical_ms / 1e3,
        1e3 / l.critical_ms
    );
    println!(
        "  bounds for {workers} workers: concurrency {workers} / {:.1} ms = {:.0}/s; moto {:.2} ms CPU per termination (polls taken out) -> {:.0}/s on one core; machine (moto + goiardi + nodereaper + benchmark on 2 cores) {:.0}/s",
        l.critical_ms, l.concurrency, l.moto_ms, l.moto, l.machine
    );
    println!(
        "  BOUND {:.0}/s; measured {rate:.1}/s = {:.0} % of it ({steady:.1}/s first -> last deletion = {:.0} %)",
        l.bound,
        100.0 * rate / l.bound,
        100.0 * steady / l.bound
    );
    println!(
        "  other work left {:.2} of the 2 cores during the runs: bound with only those {:.0}/s; measured = {:.0} % of it",
        l.cores_left,
        l.loaded_bound,
        100.0 * rate / l.loaded_bound
    );
}

/// Means over the runs of each consumer, per termination where it says so.
struct Means {
    s_rate: f64,
    d_rate: f64,
    one_rate: f64,
    /// nodereaper, first -> last deletion.
    d_steady: f64,
    s_cpu: f64,
    d_cpu: f64,
    one_cpu: f64,
    s_cpu_total: f64,
    s_goiardi: f64,
    d_goiardi: f64,
    s_moto: f64,
    d_moto: f64,
    d_rss: f64,
    other: f64,
}

impl Means {
    fn of(runs: &[Run], n: usize) -> Means {
        let of = |who: Who| runs.iter().filter(move |r| r.who == who);
        let rate = |who: Who| mean(of(who).map(|r| n as f64 / r.secs));
        let per_t = |who: Who, f: fn(&Run) -> f64| mean(of(who).map(|r| f(r) * 1e3 / n as f64));
        Means {
            s_rate: rate(Who::Serial),
            d_rate: rate(Who::Nodereaper),
            one_rate: rate(Who::Single),
            d_steady: mean(
                of(Who::Nodereaper)
                    .filter_map(|r| r.steady_secs)
                    .map(|s| (n as f64 - 1.0) / s),
            ),
            s_cpu: per_t(Who::Serial, |r| r.cpu),
            d_cpu: per_t(Who::Nodereaper, |r| r.cpu),
            one_cpu: per_t(Who::Single, |r| r.cpu),
            s_cpu_total: per_t(Who::Serial, |r| r.cpu_total),
            s_goiardi: per_t(Who::Serial, |r| r.goiardi),
            d_goiardi: per_t(Who::Nodereaper, |r| r.goiardi),
            s_moto: per_t(Who::Serial, |r| r.moto),
            d_moto: per_t(Who::Nodereaper, |r| r.moto),
            d_rss: of(Who::Nodereaper)
                .map(|r| r.peak_rss_mib)
                .fold(0.0, f64::max),
            other: mean(runs.iter().map(|r| r.other)),
        }
    }

    /// The stack's own limit with nodereaper's request mix (the benchmark's
    /// polls included): moto is one Python process (one core at most);
    /// moto + goiardi + nodereaper share 2.
    fn stack_limits(&self) -> (f64, f64) {
        (
            1e3 / self.d_moto,
            2e3 / (self.d_moto + self.d_goiardi + self.d_cpu),
        )
    }
}

/// What the benchmark measured and how it was set up.
pub struct Setup {
    pub n: usize,
    pub rounds: usize,
    pub workers: usize,
    pub delay: Option<(u64, u64)>,
    pub sign_ms: f64,
    pub poll_ms: f64,
}

pub fn summarize(runs: &[Run], setup: &Setup) {
    let Setup {
        n,
        rounds,
        workers,
        delay,
        sign_ms,
        poll_ms,
    } = *setup;
    let m = Means::of(runs, n);
    let (moto_limit, machine_limit) = m.stack_limits();
    let stack_limit = moto_limit.min(machine_limit);
    println!();
    println!(
        "drain: {n} terminations per run, {rounds} rounds alternating, nodereaper workers={workers}, {}",
        match delay {
            Some((c, a)) => format!("+{c} ms per Chef request, +{a} ms per AWS request (delay proxies)"),
            None => "no added latency".into(),
        }
    );
    for r in runs {
        println!("  {}", run_line(r, n));
    }
    println!("  mean serial reference: {:6.1}/s, {:.2} ms CPU per termination ({:.2} with its imports); goiardi {:.2} ms, moto {:.2} ms per termination", m.s_rate, m.s_cpu, m.s_cpu_total, m.s_goiardi, m.s_moto);
    println!("  mean nodereaper:       {:6.1}/s ({:.1}/s first -> last deletion), {:.2} ms CPU per termination; goiardi {:.2} ms, moto {:.2} ms per termination; peak RSS {:.1} MiB", m.d_rate, m.d_steady, m.d_cpu, m.d_goiardi, m.d_moto, m.d_rss);
    if m.one_rate.is_finite() && m.one_rate > 0.0 {
        println!("  mean 1 worker:         {:6.1}/s, {:.2} ms CPU per termination; {workers} workers give {:.1}x", m.one_rate, m.one_cpu, m.d_rate / m.one_rate);
    }
    println!(
        "  nodereaper / serial: throughput {:.2}x, CPU per termination {:.2}x (1/{:.1})",
        m.d_rate / m.s_rate,
        m.d_cpu / m.s_cpu,
        m.s_cpu / m.d_cpu
    );
    println!(
        "  stack limit with nodereaper's requests (benchmark polls included): moto alone {moto_limit:.0}/s (one core), moto + goiardi + nodereaper on 2 cores {machine_limit:.0}/s; nodereaper reaches {:.0} % of {stack_limit:.0}/s",
        100.0 * m.d_rate / stack_limit
    );
    let limits = delay.map(|d| Limits::of(runs, n, workers, d, poll_ms));
    if let (Some(l), Some(d)) = (&limits, delay) {
        print_limits(l, workers, m.d_rate, m.d_steady, m.one_rate, d);
    }
    println!("  signing one Chef request costs {sign_ms:.3} ms CPU (protocol 1.3); one benchmark poll costs moto {poll_ms:.2} ms CPU");
    println!(
        "  mean other load on the machine per run: {:.1} CPU-s",
        m.other
    );
    println!(
        "  invariant: every target node and client gone, queues and DLQs empty after each run: OK"
    );
    emit_result(runs, setup, &m, limits.as_ref());
}

fn emit_result(runs: &[Run], setup: &Setup, m: &Means, limits: Option<&Limits>) {
    let Setup {
        n,
        rounds,
        workers,
        delay,
        sign_ms,
        poll_ms,
    } = *setup;
    let (moto_limit, machine_limit) = m.stack_limits();
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
            "runs": runs.iter().map(|r| run_json(r, n)).collect::<Vec<_>>(),
            "serial": {"terminations_per_s": r3(m.s_rate), "cpu_ms_per_termination": r3(m.s_cpu), "cpu_ms_per_termination_with_imports": r3(m.s_cpu_total), "goiardi_ms_per_termination": r3(m.s_goiardi), "moto_ms_per_termination": r3(m.s_moto)},
            "nodereaper": {"terminations_per_s": r3(m.d_rate), "steady_per_s": r3(m.d_steady), "cpu_ms_per_termination": r3(m.d_cpu), "goiardi_ms_per_termination": r3(m.d_goiardi), "moto_ms_per_termination": r3(m.d_moto), "peak_rss_mib": r3(m.d_rss)},
            "single_worker": {"terminations_per_s": r3(m.one_rate), "cpu_ms_per_termination": r3(m.one_cpu)},
            "requests_per_termination": {
                "nodereaper": requests_per_termination(runs, Who::Nodereaper, n),
                "single_worker": requests_per_termination(runs, Who::Single, n),
                "serial": requests_per_termination(runs, Who::Serial, n),
            },
            "limits": limits.map(|l| json!({
                "critical_path": {"chef_round_trips": r3(l.chef_round_trips), "aws_round_trips": r3(l.aws_round_trips), "latency_ms": r3(l.critical_ms)},
                "concurrency_per_s": r3(l.concurrency),
                "moto_ms_per_termination": r3(l.moto_ms),
                "moto_per_s": r3(l.moto),
                "machine_per_s": r3(l.machine),
                "bound_per_s": r3(l.bound),
                "cores_left_by_other_load": r3(l.cores_left),
                "loaded_bound_per_s": r3(l.loaded_bound),
                "share_of_loaded_bound": r3(m.d_rate / l.loaded_bound),
                "share_of_bound": r3(m.d_rate / l.bound),
                "steady_share_of_bound": r3(m.d_steady / l.bound),
            })),
            "ratio_throughput": r3(m.d_rate / m.s_rate),
            "ratio_cpu": r3(m.d_cpu / m.s_cpu),
            "stack_limit_per_s": {"moto_one_core": r3(moto_limit), "two_cores": r3(machine_limit)},
            "chef_signature_cpu_ms": r3(sign_ms),
            "poll_moto_cpu_ms": r3(poll_ms),
            "invariant_ok": true,
        }),
    );
}

//! `nodereaper sweep`: reconciliation report or cleanup.

use std::collections::BTreeMap;
use std::sync::Arc;

use nodereaper::adapters::aws::fleet::AwsFleet;
use nodereaper::adapters::chef::ChefClient;
use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::jobs::sweep::{Progress, Report};

use anyhow::Result;
use clap::Args;

use super::{ExitCode, Output};

/// Arguments of `nodereaper sweep`.
#[derive(Args)]
pub struct SweepArgs {
    /// Delete the candidates (default: report only).
    #[arg(long)]
    pub apply: bool,
    /// Override the blast-radius caps (sweep.max_candidates, sweep.max_candidate_share).
    #[arg(long)]
    pub force: bool,
    /// Grace period override, e.g. "2h" (default: sweep.grace_period).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub grace_period: Option<std::time::Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// A progress bar on stderr, only when it is a terminal.
pub struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(enabled: bool) -> Self {
        use std::io::IsTerminal;
        if !enabled || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg:24} [{bar:40}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style);
        }
        Self(Some(bar))
    }
}

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        if let Some(b) = &self.0 {
            b.set_message(name.to_string());
            b.set_length(total);
            b.set_position(0);
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// How long ago `t` was, to the minute; `-` when unknown.
fn age(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match t {
        Some(t) => {
            let secs = (chrono::Utc::now() - t).num_seconds().max(0) as u64;
            humantime::format_duration(std::time::Duration::from_secs(secs - secs % 60)).to_string()
        }
        None => "-".into(),
    }
}

/// `nodereaper sweep`: exit 2 when a safety guard aborted the sweep, 1 when
/// a deletion failed with an error.
pub async fn sweep(config: Config, args: SweepArgs) -> Result<ExitCode> {
    let mut config = config;
    if let Some(g) = args.grace_period {
        config.sweep.grace_period = g;
    }
    let chef = Arc::new(app::chef_client(&config)?);
    let reaper = app::reaper(&config, chef.clone()).await?;
    let regions = app::sweep_regions(&config).await;
    let fleet = app::sweep_fleet(&config);
    let settings = app::sweep_settings(&config, regions, args.apply, args.force);
    let bar = Bar::new(args.output == Output::Text);
    let report = nodereaper::jobs::sweep::sweep(&reaper, &fleet, &settings, &bar).await;
    bar.finish();
    let report = report?;
    let requests = request_counts(&chef, &fleet).await;
    if args.output == Output::Json {
        let mut out = serde_json::to_value(&report)?;
        out["requests"] = serde_json::to_value(&requests)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&report, &requests)?;
    }
    Ok(if report.aborted.is_some() {
        ExitCode::from(2)
    } else if report.failed > 0 {
        eprintln!(
            "nodereaper sweep: {} deletion(s) failed (see the skipped rows)",
            report.failed
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What the sweep cost, by endpoint.
async fn request_counts(chef: &ChefClient, fleet: &AwsFleet) -> BTreeMap<String, u64> {
    let mut requests = chef.request_counts();
    let (pages, asg) = fleet.request_counts().await;
    *requests.entry("EC2 DescribeInstances".into()).or_default() += pages;
    *requests
        .entry("AutoScaling DescribeAutoScalingInstances".into())
        .or_default() += asg;
    requests
}

/// The report as a table, a summary, the request cost and any abort reason.
fn print_text(report: &Report, requests: &BTreeMap<String, u64>) -> Result<()> {
    println!(
        "{:<40} {:<21} {:<14} {:<14} {:<18} REASON",
        "NODE", "INSTANCE", "EC2 STATE", "LAST CHECK-IN", "VERDICT"
    );
    for row in &report.rows {
        let verdict = serde_json::to_value(row.verdict)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!(
            "{:<40} {:<21} {:<14} {:<14} {:<18} {}",
            row.node,
            row.instance_id.as_deref().unwrap_or("-"),
            row.ec2_state.as_deref().unwrap_or("-"),
            age(row.last_check_in),
            verdict,
            row.reason
        );
    }
    let counts: Vec<String> = report
        .by_verdict
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    println!(
        "{} nodes ({} with an EC2 instance id, {} asked about): {} candidates, {} deleted{} [{}] in {} ms",
        report.nodes,
        report.ec2_nodes,
        report.asked,
        report.candidates,
        report.deleted,
        if report.applied {
            ""
        } else {
            " (report only; --apply deletes)"
        },
        counts.join(", "),
        report.duration_ms
    );
    let cost: Vec<String> = requests
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    println!("requests: {}", cost.join(", "));
    if let Some(reason) = &report.aborted {
        println!("ABORTED: {reason}");
    }
    Ok(())
}

//! `nodereaper sweep`: reconciliation report or cleanup.

use std::collections::BTreeMap;

use nodereaper::adapters::aws::fleet::AwsFleet;
use nodereaper::adapters::chef::ChefClient;
use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::jobs::sweep::{Progress, Report};

use anyhow::{bail, Result};
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
    /// Sweep only this Chef target (`[[chef.targets]]` name; default: every
    /// target in turn, each within its own caps).
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Sweep Chef Automate's missing nodes (`[automate]`) instead of the
    /// Chef server: for Effortless and chef-solo fleets.
    #[arg(long, conflicts_with = "target")]
    pub automate: bool,
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

/// `nodereaper sweep`: every target in turn (or `--target`), each within its
/// own blast-radius caps. Exit 2 when a safety guard aborted a target's
/// sweep, 1 when a deletion failed with an error.
pub async fn sweep(config: Config, args: SweepArgs) -> Result<ExitCode> {
    let mut config = config;
    if let Some(g) = args.grace_period {
        config.sweep.grace_period = g;
    }
    if args.automate {
        return sweep_automate(&config, &args).await;
    }
    let names = match &args.target {
        Some(t) if config.for_target(t).is_some() => vec![t.clone()],
        Some(t) => bail!(
            "--target {t:?}: no such Chef target (configured: {})",
            config.target_names().join(", ")
        ),
        None => config.target_names(),
    };
    let regions = app::sweep_regions(&config).await;
    let fleet = app::sweep_fleet(&config);
    let mut swept = Vec::new();
    for name in names {
        // Each target within its own caps (`[chef.targets.sweep]`).
        let own = config.for_target(&name).unwrap_or_else(|| config.clone());
        let settings = app::sweep_settings(&own, regions.clone(), args.apply, args.force);
        let (report, requests) = sweep_target(&config, &name, &fleet, &settings, &args).await?;
        swept.push((name, report, requests));
    }
    if args.output == Output::Json {
        let mut sections = Vec::new();
        for (name, report, requests) in &swept {
            let mut out = serde_json::to_value(report)?;
            out["requests"] = serde_json::to_value(requests)?;
            out["target"] = serde_json::Value::String(name.clone());
            sections.push(out);
        }
        // One target without `[[chef.targets]]`: the report as before.
        let out = match (config.has_targets(), sections.len()) {
            (false, 1) => sections.remove(0),
            _ => serde_json::json!({ "targets": sections }),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (name, report, requests) in &swept {
            if config.has_targets() {
                println!("== target {name}");
            }
            print_text(report, requests)?;
        }
    }
    let failed: usize = swept.iter().map(|(_, r, _)| r.failed).sum();
    Ok(if swept.iter().any(|(_, r, _)| r.aborted.is_some()) {
        ExitCode::from(2)
    } else if failed > 0 {
        eprintln!("nodereaper sweep: {failed} deletion(s) failed (see the skipped rows)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `nodereaper sweep --automate`: Chef Automate's missing nodes whose
/// instances EC2 reports gone. Exit codes as for the Chef sweep.
async fn sweep_automate(config: &Config, args: &SweepArgs) -> Result<ExitCode> {
    use nodereaper::jobs::automate_sweep::{self, AutomateSweep, AutomateSweepSettings};
    let Some(automate) = app::automate(config).await? else {
        bail!("--automate: set [automate] url (and its token) in the config file");
    };
    let regions = app::sweep_regions(config).await;
    let fleet = app::sweep_fleet(config);
    let settings = AutomateSweepSettings {
        sweep: app::sweep_settings(config, regions, args.apply, args.force),
        max_deletions: config.sweep.max_deletions_per_day,
        automate_url: config.automate.url.clone().unwrap_or_default(),
        page_size: automate_sweep::PAGE_SIZE,
    };
    let journal = app::journal(config).await?;
    let protection = nodereaper::core::verify::Protection::new(&config.protect);
    let limiter = nodereaper::act::DeletionLimiter::new(config.pipeline.max_deletions_per_minute);
    let with = AutomateSweep {
        automate: &automate,
        fleet: &fleet,
        journal: journal.as_ref(),
        protection: &protection,
        limiter: &limiter,
    };
    let bar = Bar::new(args.output == Output::Text);
    let report = automate_sweep::sweep_automate(&with, &settings, &bar).await;
    bar.finish();
    let report = report?;
    let (pages, _) = fleet.request_counts().await;
    let requests = BTreeMap::from([("EC2 DescribeInstances".to_string(), pages)]);
    if args.output == Output::Json {
        let mut out = serde_json::to_value(&report)?;
        out["requests"] = serde_json::to_value(&requests)?;
        out["target"] = serde_json::Value::String("automate".into());
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&report, &requests)?;
    }
    Ok(if report.aborted.is_some() {
        ExitCode::from(2)
    } else if report.failed > 0 {
        eprintln!(
            "nodereaper sweep --automate: {} deletion(s) failed (see the skipped rows)",
            report.failed
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One target's sweep against its own server, journaled under its name.
async fn sweep_target(
    config: &Config,
    name: &str,
    fleet: &AwsFleet,
    settings: &nodereaper::jobs::sweep::SweepSettings,
    args: &SweepArgs,
) -> Result<(Report, BTreeMap<String, u64>)> {
    let (reaper, chef) = app::target_reaper(config, name).await?;
    let bar = Bar::new(args.output == Output::Text);
    let report = nodereaper::jobs::sweep::sweep(&reaper, fleet, settings, &bar).await;
    bar.finish();
    let report = report?;
    Ok((report, request_counts(&chef, fleet).await))
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

//! The `nodereaper` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

use std::collections::HashMap;

use nodereaper::act::{Outcome, Request, Target};
use nodereaper::aws::ec2::Ec2Inventory;
use nodereaper::config::Config;
use nodereaper::journal::EntryFilter;
use nodereaper::ports::ChefApi;
use nodereaper::ports::InstanceInventory;
use nodereaper::sweep::{Progress, SweepSettings};
use nodereaper::telemetry::{self, http::Readiness};
use nodereaper::{app, source};

/// Keeps Chef Infra Server clean while EC2 Auto Scaling adds and removes
/// instances: consumes termination events from SQS and deletes the node and
/// API client of each terminated instance, with a backup of everything it deletes.
#[derive(Parser)]
#[command(name = "nodereaper", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Without it, settings come from defaults and
    /// NODEREAPER_* environment variables.
    #[arg(long, short, global = true, env = "NODEREAPER_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Consume termination events from the configured queues and deregister
    /// the instances (the daemon).
    Run(RunArgs),
    /// Deregister one instance (by EC2 instance id) or one node by name.
    Deregister(DeregisterArgs),
    /// Find Chef nodes whose EC2 instances no longer exist; report, or delete
    /// them with --apply (under grace period, stale-index and blast-radius guards).
    Sweep(SweepArgs),
    /// List the deletion journal (the backups of everything deleted).
    Journal(JournalArgs),
    /// Recreate deleted nodes and clients from the journal.
    Restore(RestoreArgs),
    /// Check configuration, AWS access, queues, Chef access, clock and permissions.
    Doctor(DoctorArgs),
    /// Create or check the AWS wiring (SNS topic, SQS queue + DLQ, queue
    /// policy, subscription, ASG notifications, optional lifecycle hook and
    /// EventBridge rule). Idempotent; exits 2 when a step could not be done.
    Setup(SetupArgs),
    /// Show how nodereaper classifies a message body (from a file or stdin).
    Parse(ParseArgs),
}

#[derive(Args)]
struct SweepArgs {
    /// Delete the candidates (default: report only).
    #[arg(long)]
    apply: bool,
    /// Override the blast-radius caps (sweep.max_candidates, sweep.max_candidate_share).
    #[arg(long)]
    force: bool,
    /// Grace period override, e.g. "2h" (default: sweep.grace_period).
    #[arg(long, value_parser = humantime::parse_duration)]
    grace_period: Option<std::time::Duration>,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Args)]
struct JournalArgs {
    /// Only entries recorded at or after this time (RFC 3339, or a duration ago like "24h").
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    node: Option<String>,
    #[arg(long)]
    instance: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Args)]
struct RestoreArgs {
    /// Node to restore (its newest journal entry).
    #[arg(required_unless_present = "since")]
    node: Option<String>,
    /// Restore every node deleted at or after this time (RFC 3339 or "2h").
    #[arg(long, conflicts_with = "node")]
    since: Option<String>,
    /// Replace a node that exists on the server.
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Args)]
struct SetupArgs {
    /// Base name: topic and queue NAME, DLQ NAME-dlq, rule NAME-asg-terminate.
    #[arg(long, default_value = nodereaper::setup::DEFAULT_NAME)]
    name: String,
    /// Auto Scaling group to wire (repeatable; must exist).
    #[arg(long = "asg", value_name = "GROUP")]
    asg_names: Vec<String>,
    /// Also wire every Auto Scaling group having this tag.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_tag)]
    asg_tag: Option<(String, String)>,
    /// Receives before a message moves to the DLQ by redrive.
    #[arg(long, default_value_t = 10)]
    max_receive_count: u32,
    /// Queue visibility timeout, seconds.
    #[arg(long, default_value_t = 300)]
    visibility_timeout: u32,
    /// Retention of both queues, seconds (max 14 days).
    #[arg(long, default_value_t = 1_209_600)]
    message_retention: u32,
    /// Add a termination lifecycle hook notifying the topic on each group.
    #[arg(long, requires = "hook_role_arn")]
    lifecycle_hook: bool,
    #[arg(long, default_value = nodereaper::setup::DEFAULT_HOOK_NAME)]
    hook_name: String,
    #[arg(long, default_value_t = 300)]
    hook_heartbeat_timeout: u32,
    #[arg(long, default_value = "CONTINUE", value_parser = ["CONTINUE", "ABANDON"])]
    hook_default_result: String,
    /// IAM role Auto Scaling assumes to publish to the topic (not created by
    /// nodereaper; e.g. with the AWS managed AutoScalingNotificationAccessRole policy).
    #[arg(long)]
    hook_role_arn: Option<String>,
    /// Also create the EventBridge rule NAME-asg-terminate targeting the queue.
    #[arg(long)]
    eventbridge_rule: bool,
    /// Read only: report what would change.
    #[arg(long)]
    dry_run: bool,
    /// Region (else aws.region, else the SDK chain).
    #[arg(long)]
    region: Option<String>,
    /// Only print the daemon's least-privilege IAM policy and the Chef ACLs
    /// its client needs; change nothing.
    #[arg(long)]
    print_iam_policy: bool,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Args)]
struct DoctorArgs {
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Args)]
struct RunArgs {
    /// Log what would happen; touch nothing (no Chef deletes, no lifecycle
    /// completion, no message deletion or visibility change).
    #[arg(long)]
    dry_run: bool,
    /// Exit once every queue is empty and nothing is in flight.
    #[arg(long)]
    exit_when_idle: bool,
}

#[derive(Args)]
struct DeregisterArgs {
    /// EC2 instance id (i-0123456789abcdef0).
    #[arg(required_unless_present = "node", conflicts_with = "node")]
    instance_id: Option<String>,
    /// Deregister this node name instead of resolving an instance id.
    #[arg(long)]
    node: Option<String>,
    /// Show what would be deleted without deleting.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Args)]
struct ParseArgs {
    /// File holding the message body; stdin when absent.
    file: Option<PathBuf>,
    /// Treat EC2 state-change `shutting-down` as a termination.
    #[arg(long)]
    shutting_down_is_termination: bool,
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => {
            let default = Path::new("/etc/nodereaper/nodereaper.toml");
            if default.exists() {
                Ok(Config::load(default)?)
            } else {
                Ok(Config::from_env()?)
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn real_main(cli: Cli) -> Result<std::process::ExitCode> {
    if let Command::Parse(args) = &cli.command {
        return parse_command(args);
    }
    let config = load_config(cli.config.as_deref())?;
    telemetry::logging::init(config.log.format, &config.log.level);
    match cli.command {
        Command::Run(args) => run(config, args).await,
        Command::Deregister(args) => deregister(config, args).await,
        Command::Sweep(args) => sweep(config, args).await,
        Command::Journal(args) => journal(config, args).await,
        Command::Restore(args) => restore(config, args).await,
        Command::Doctor(args) => doctor(config, cli.config.as_deref(), args).await,
        Command::Setup(args) => setup_command(config, args).await,
        Command::Parse(_) => unreachable!("handled above"),
    }
}

fn parse_command(args: &ParseArgs) -> Result<std::process::ExitCode> {
    let body = match &args.file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        None => std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?,
    };
    let opts = source::ParseOptions {
        shutting_down_is_termination: args.shutting_down_is_termination,
    };
    match source::parse(&body, &opts) {
        Ok(event) => {
            println!("{}", serde_json::to_string_pretty(&event)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("poison: {e}");
            Ok(std::process::ExitCode::from(3))
        }
    }
}

async fn run(mut config: Config, args: RunArgs) -> Result<std::process::ExitCode> {
    if args.dry_run {
        config.pipeline.dry_run = true;
    }
    let chef: Arc<dyn ChefApi> = Arc::new(app::chef_client(&config)?);
    let client_name = app::chef_identity(&config)?.client_name;
    let pipeline = Arc::new(app::pipeline(&config, chef.clone()).await?);
    if let Some(addr) = config.http.listen {
        let ready = Arc::new(Readiness {
            queues: pipeline.sources.iter().map(|s| s.queue.clone()).collect(),
            chef,
            client_name,
        });
        let bound = telemetry::http::serve(addr, ready)
            .await
            .with_context(|| format!("cannot listen on {addr} (http.listen)"))?;
        tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    }
    tracing::info!(
        queues = pipeline.sources.len(),
        workers = config.pipeline.workers,
        dry_run = config.pipeline.dry_run,
        "nodereaper running"
    );
    if let Some(every) = config.sweep.interval {
        let reaper = pipeline.reaper.clone();
        let (default_region, ec2) = sweep_inventories(&config).await;
        let inventories = as_inventories(&ec2);
        let settings = sweep_settings(&config, default_region, config.sweep.apply_in_daemon, false);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match nodereaper::sweep::sweep(
                    &reaper,
                    &inventories,
                    &settings,
                    &nodereaper::sweep::Silent,
                )
                .await
                {
                    Ok(r) => tracing::info!(
                        nodes = r.nodes,
                        candidates = r.candidates,
                        deleted = r.deleted,
                        applied = r.applied,
                        aborted = r.aborted.as_deref().unwrap_or(""),
                        duration_ms = r.duration_ms,
                        "periodic sweep done"
                    ),
                    Err(e) => tracing::warn!(error = %e, "periodic sweep failed"),
                }
            }
        });
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: no new messages; finishing in-flight work");
        let _ = stop_tx.send(true);
    });
    let summary = pipeline.run(stop_rx, args.exit_when_idle).await;
    tracing::info!(
        received = summary.received,
        deleted = summary.deleted,
        dead_lettered = summary.dead_lettered,
        retried = summary.retried,
        held = summary.held,
        "nodereaper stopped"
    );
    Ok(std::process::ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn deregister(config: Config, args: DeregisterArgs) -> Result<std::process::ExitCode> {
    let chef: Arc<dyn ChefApi> = Arc::new(app::chef_client(&config)?);
    let reaper = app::reaper(&config, chef).await?;
    let target = match (args.instance_id, args.node) {
        (Some(id), None) => Target::Instance(id),
        (None, Some(node)) => Target::Node(node),
        _ => bail!("give an instance id or --node NAME"),
    };
    let request = Request {
        target,
        source: "deregister",
        reason: "nodereaper deregister (operator)".into(),
        message_id: None,
        dry_run: args.dry_run,
        recheck: None,
    };
    let outcome = reaper.reap(&request).await?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let exists = |b: bool| if b { "exists" } else { "absent" };
    match &outcome {
        Outcome::AlreadyGone { target } => {
            println!("{target}: already gone (no node or client registered)")
        }
        Outcome::Protected { plan, reason } => {
            println!("{}: protected, not deleted: {reason}", plan.node_name)
        }
        Outcome::Changed { plan, reason } => println!("{}: not deleted: {reason}", plan.node_name),
        Outcome::WouldDelete { plan } => {
            println!("dry run: would delete (found by {})", plan.found_by);
            println!(
                "  node   {:<40} {}",
                plan.node_name,
                exists(plan.node_exists)
            );
            println!(
                "  client {:<40} {}",
                plan.client_name,
                exists(plan.client_exists)
            );
        }
        Outcome::Deleted {
            plan,
            node,
            client,
            journal_id,
        } => {
            println!("deleted (found by {}; backup {journal_id})", plan.found_by);
            println!("  node   {:<40} {node:?}", plan.node_name);
            println!("  client {:<40} {client:?}", plan.client_name);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// "2026-11-25T10:00:00Z" or a duration ago ("24h").
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let ago = humantime::parse_duration(text)
        .with_context(|| format!("--since {text:?}: expected an RFC 3339 time (2026-11-25T10:00:00Z) or a duration like 24h"))?;
    Ok(chrono::Utc::now() - chrono::Duration::from_std(ago)?)
}

/// One EC2 inventory per region to sweep.
async fn sweep_inventories(config: &Config) -> (String, HashMap<String, Arc<Ec2Inventory>>) {
    let mut regions = config.sweep.regions.clone();
    let default_region = match config.aws.region.clone() {
        Some(r) => r,
        None => nodereaper::aws::sdk_config(&config.aws, None)
            .await
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into()),
    };
    if regions.is_empty() {
        regions.push(default_region.clone());
    }
    let mut map: HashMap<String, Arc<Ec2Inventory>> = HashMap::new();
    for r in regions {
        map.insert(r.clone(), Arc::new(app::inventory(config, Some(&r)).await));
    }
    (default_region, map)
}

fn as_inventories(
    ec2: &HashMap<String, Arc<Ec2Inventory>>,
) -> HashMap<String, Arc<dyn InstanceInventory>> {
    ec2.iter()
        .map(|(r, i)| (r.clone(), i.clone() as Arc<dyn InstanceInventory>))
        .collect()
}

fn sweep_settings(
    config: &Config,
    default_region: String,
    apply: bool,
    force: bool,
) -> SweepSettings {
    SweepSettings {
        grace_period: config.sweep.grace_period,
        max_candidates: config.sweep.max_candidates,
        max_candidate_share: config.sweep.max_candidate_share,
        force,
        apply,
        instance_id_attribute: config.sweep.instance_id_attribute.clone(),
        region_attribute: config.sweep.region_attribute.clone(),
        default_region,
    }
}

/// A progress bar on stderr, only when it is a terminal.
struct Bar(Option<indicatif::ProgressBar>);

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

fn age(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match t {
        Some(t) => {
            let secs = (chrono::Utc::now() - t).num_seconds().max(0) as u64;
            humantime::format_duration(std::time::Duration::from_secs(secs - secs % 60)).to_string()
        }
        None => "-".into(),
    }
}

async fn sweep(config: Config, args: SweepArgs) -> Result<std::process::ExitCode> {
    let mut config = config;
    if let Some(g) = args.grace_period {
        config.sweep.grace_period = g;
    }
    let chef = Arc::new(app::chef_client(&config)?);
    let reaper = app::reaper(&config, chef.clone()).await?;
    let (default_region, ec2) = sweep_inventories(&config).await;
    let inventories = as_inventories(&ec2);
    let settings = sweep_settings(&config, default_region, args.apply, args.force);
    let bar = Bar::new(args.output == Output::Text);
    let report = nodereaper::sweep::sweep(&reaper, &inventories, &settings, &bar).await;
    bar.finish();
    let report = report?;
    // What the sweep cost, by endpoint.
    let mut requests: std::collections::BTreeMap<String, u64> = chef.request_counts();
    for inv in ec2.values() {
        let (pages, asg) = inv.request_counts();
        *requests.entry("EC2 DescribeInstances".into()).or_default() += pages;
        *requests
            .entry("AutoScaling DescribeAutoScalingInstances".into())
            .or_default() += asg;
    }
    if args.output == Output::Json {
        let mut out = serde_json::to_value(&report)?;
        out["requests"] = serde_json::to_value(&requests)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
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
            "{} nodes ({} with an EC2 instance id): {} candidates, {} deleted{} [{}] in {} ms",
            report.nodes,
            report.ec2_nodes,
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
    }
    Ok(if report.aborted.is_some() {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

async fn journal(config: Config, args: JournalArgs) -> Result<std::process::ExitCode> {
    let journal = app::journal(&config).await?;
    let filter = EntryFilter {
        since: args.since.as_deref().map(parse_since).transpose()?,
        node: args.node,
        instance: args.instance,
    };
    let entries: Vec<_> = journal
        .entries()
        .await?
        .into_iter()
        .filter(|e| filter.matches(e))
        .collect();
    if args.output == Output::Json {
        let summaries: Vec<_> = entries.iter().map(|e| e.summary()).collect();
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!(
        "{:<25} {:<10} {:<36} {:<21} REASON",
        "RECORDED (UTC)", "SOURCE", "NODE", "INSTANCE"
    );
    for e in &entries {
        println!(
            "{:<25} {:<10} {:<36} {:<21} {}",
            e.recorded_at.format("%Y-%m-%d %H:%M:%S"),
            e.source,
            e.node_name,
            e.instance_id.as_deref().unwrap_or("-"),
            e.reason
        );
    }
    println!("{} entries", entries.len());
    Ok(std::process::ExitCode::SUCCESS)
}

async fn restore(config: Config, args: RestoreArgs) -> Result<std::process::ExitCode> {
    let chef = app::chef_client(&config)?;
    let journal = app::journal(&config).await?;
    let filter = EntryFilter {
        since: args.since.as_deref().map(parse_since).transpose()?,
        node: args.node.clone(),
        instance: None,
    };
    let entries = nodereaper::restore::select(journal.as_ref(), &filter).await?;
    if entries.is_empty() {
        bail!(
            "the journal has no matching entry{}",
            args.node
                .map(|n| format!(" for node {n:?}"))
                .unwrap_or_default()
        );
    }
    let mut results = Vec::new();
    let mut failed = 0;
    for entry in &entries {
        match nodereaper::restore::restore(&chef, entry, args.force).await {
            Ok(r) => results.push(serde_json::to_value(&r)?),
            Err(e) => {
                failed += 1;
                results.push(serde_json::json!({"entry_id": entry.id, "node": entry.node_name, "error": e.to_string()}));
            }
        }
    }
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            match r.get("error").and_then(|e| e.as_str()) {
                Some(err) => println!(
                    "{}: NOT restored: {err}",
                    r["node"].as_str().unwrap_or_default()
                ),
                None => {
                    println!(
                        "{}: node {}, client {} (from {})",
                        r["node"].as_str().unwrap_or_default(),
                        r["node_action"].as_str().unwrap_or_default(),
                        r["client_action"].as_str().unwrap_or_default(),
                        r["entry_id"].as_str().unwrap_or_default()
                    );
                    if let Some(note) = r.get("note").and_then(|n| n.as_str()) {
                        println!("  note: {note}");
                    }
                }
            }
        }
    }
    Ok(if failed > 0 {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

async fn doctor(
    config: Config,
    path: Option<&Path>,
    args: DoctorArgs,
) -> Result<std::process::ExitCode> {
    let source = match path {
        Some(p) => p.display().to_string(),
        None => "configuration (defaults and environment)".into(),
    };
    let checks = nodereaper::doctor::run(&config, &source).await;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", nodereaper::doctor::render(&checks));
    }
    Ok(if checks.iter().all(|c| c.ok) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

async fn setup_command(config: Config, args: SetupArgs) -> Result<std::process::ExitCode> {
    use nodereaper::setup::{self, LifecycleHookSpec, SetupSpec};
    let journal = config
        .journal
        .s3_bucket
        .as_deref()
        .map(|b| (b, config.journal.s3_prefix.as_str()));
    if args.print_iam_policy {
        let policy = setup::iam_policy(&[], &[], journal);
        if args.output == Output::Json {
            let out = serde_json::json!({
                "iam_policy": policy,
                "iam_policy_note": setup::IAM_POLICY_NOTE,
                "chef_acl_note": setup::CHEF_ACL_NOTE,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("{}", serde_json::to_string_pretty(&policy)?);
            println!(
                "\n{}\n\nChef ACLs:\n{}",
                setup::IAM_POLICY_NOTE,
                setup::CHEF_ACL_NOTE
            );
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let spec = SetupSpec {
        name: args.name,
        asg_names: args.asg_names,
        asg_tag: args.asg_tag,
        max_receive_count: args.max_receive_count,
        visibility_timeout_secs: args.visibility_timeout,
        message_retention_secs: args.message_retention,
        lifecycle_hook: args.lifecycle_hook.then_some(LifecycleHookSpec {
            hook_name: args.hook_name,
            heartbeat_timeout_secs: args.hook_heartbeat_timeout,
            default_result: args.hook_default_result,
            role_arn: args.hook_role_arn,
        }),
        eventbridge_rule: args.eventbridge_rule,
        dry_run: args.dry_run,
    };
    let sdk = nodereaper::aws::sdk_config(&config.aws, args.region.as_deref()).await;
    let report = setup::setup(&sdk, &spec).await?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.is_complete() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(2)
    })
}

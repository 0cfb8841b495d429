//! The `nodereaper` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

use nodereaper::act::{Outcome, Request, Target};
use nodereaper::config::Config;
use nodereaper::ports::ChefApi;
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
    /// Show how nodereaper classifies a message body (from a file or stdin).
    Parse(ParseArgs),
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

//! The `nodereaper` command line.

mod cli;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use nodereaper::config::Config;
use nodereaper::telemetry;

use cli::daemon::RunArgs;
use cli::deregister::DeregisterArgs;
use cli::docs::{CompletionsArgs, ManpagesArgs};
use cli::doctor::DoctorArgs;
use cli::journal::{JournalArgs, RestoreArgs};
use cli::parse::ParseArgs;
use cli::setup::SetupArgs;
use cli::sweep::SweepArgs;
use cli::ExitCode;

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

    /// Without a command, the binary serves Lambda invocations when started
    /// as a function's `bootstrap` (AWS_LAMBDA_RUNTIME_API is set).
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Serve AWS Lambda invocations (SQS, SNS, EventBridge) from the Lambda
    /// Runtime API in AWS_LAMBDA_RUNTIME_API; the default command of a
    /// function's `bootstrap`.
    Lambda,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Write the man pages (nodereaper.1 and one page per command) into a directory.
    Manpages(ManpagesArgs),
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
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn real_main(cli: Cli) -> Result<ExitCode> {
    let command = match cli.command {
        Some(c) => c,
        None if std::env::var_os(nodereaper::run::lambda::RUNTIME_API_VAR).is_some() => {
            Command::Lambda
        }
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            return Ok(ExitCode::from(2));
        }
    };
    // `parse` and the generated documentation need no configuration: they
    // must work on any machine (the packaging runs them at build time).
    match &command {
        Command::Parse(args) => return cli::parse::parse(args),
        Command::Completions(args) => {
            return cli::docs::completions(<Cli as clap::CommandFactory>::command(), args)
        }
        Command::Manpages(args) => {
            return cli::docs::manpages(<Cli as clap::CommandFactory>::command(), args)
        }
        _ => {}
    }
    let config = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            if matches!(command, Command::Lambda) {
                nodereaper::run::lambda::report_init_error("Config", &format!("{e:#}")).await;
            }
            return Err(e);
        }
    };
    telemetry::logging::init(config.log.format, &config.log.level);
    match command {
        Command::Lambda => {
            nodereaper::run::lambda::run(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => cli::daemon::run(config, args).await,
        Command::Deregister(args) => cli::deregister::deregister(config, args).await,
        Command::Sweep(args) => cli::sweep::sweep(config, args).await,
        Command::Journal(args) => cli::journal::journal(config, args).await,
        Command::Restore(args) => cli::journal::restore(config, args).await,
        Command::Doctor(args) => cli::doctor::doctor(config, cli.config.as_deref(), args).await,
        Command::Setup(args) => cli::setup::setup(config, args).await,
        Command::Parse(_) | Command::Completions(_) | Command::Manpages(_) => {
            unreachable!("handled above")
        }
    }
}

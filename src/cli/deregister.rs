//! `nodereaper deregister`: one instance or node, by hand.

use nodereaper::act::{Outcome, Request, Target};
use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::core::ids::InstanceId;

use anyhow::{bail, Result};
use clap::Args;

use super::{ExitCode, Output};

/// Arguments of `nodereaper deregister`.
#[derive(Args)]
pub struct DeregisterArgs {
    /// EC2 instance id (i-0123456789abcdef0).
    #[arg(required_unless_present = "node", conflicts_with = "node")]
    pub instance_id: Option<InstanceId>,
    /// Deregister this node name instead of resolving an instance id.
    #[arg(long)]
    pub node: Option<String>,
    /// The Chef target (`[[chef.targets]]` name) the registration is on;
    /// required when several are configured.
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Show what would be deleted without deleting.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// `nodereaper deregister`: resolve, back up and delete one registration
/// through the same path as events (or show it with `--dry-run`).
pub async fn deregister(config: Config, args: DeregisterArgs) -> Result<ExitCode> {
    let names = config.target_names();
    let name = match (&args.target, names.as_slice()) {
        (Some(t), _) if names.contains(t) => t.clone(),
        (Some(t), _) => bail!(
            "--target {t:?}: no such Chef target (configured: {})",
            names.join(", ")
        ),
        (None, [only]) => only.clone(),
        // Refuse rather than guess which organization to delete from.
        (None, _) => bail!(
            "several Chef targets are configured ({}): name the one to deregister from with --target",
            names.join(", ")
        ),
    };
    let (reaper, _) = app::target_reaper(&config, &name).await?;
    let target = match (args.instance_id, args.node) {
        (Some(id), None) => Target::Instance(id),
        (None, Some(node)) => Target::Node(node),
        _ => bail!("give an instance id or --node NAME"),
    };
    let request = Request {
        target,
        source: nodereaper::act::RequestSource::Deregister,
        reason: "nodereaper deregister (operator)".into(),
        message_id: None,
        dry_run: args.dry_run,
        recheck: None,
        verified_region: None,
        group: None,
    };
    let outcome = reaper.reap(&request).await?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(ExitCode::SUCCESS);
    }
    let exists = |b: bool| if b { "exists" } else { "absent" };
    match &outcome {
        Outcome::AlreadyGone { target } => {
            println!("{target}: already gone (no node or client registered)")
        }
        Outcome::Protected { plan, reason } => {
            println!("{}: protected, not deleted: {reason}", plan.node_name)
        }
        Outcome::Changed { plan, reason } | Outcome::Refused { plan, reason } => {
            println!("{}: not deleted: {reason}", plan.node_name)
        }
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
    Ok(ExitCode::SUCCESS)
}

//! `nodereaper run`: the daemon's arguments and what it prints; the wiring
//! and the tasks are [`app::run_daemon`]'s.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use nodereaper::act::backup::{self, AclBackupPolicy};
use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::ports::ChefApi;
use nodereaper::telemetry::http::{ChefProbe, HttpServer, Readiness};

use super::ExitCode;

#[derive(Args)]
pub struct RunArgs {
    /// Log what would happen; touch nothing (no Chef deletes, no lifecycle
    /// completion, no message deletion or visibility change).
    #[arg(long)]
    pub dry_run: bool,
    /// Exit once every queue is empty and nothing is in flight.
    #[arg(long)]
    pub exit_when_idle: bool,
}

pub async fn run(mut config: Config, args: RunArgs) -> Result<ExitCode> {
    if args.dry_run {
        config.pipeline.dry_run = true;
    }
    // With a key from Secrets Manager or SSM, a client that re-reads the key
    // on 401 (rotation).
    let chef: Arc<dyn ChefApi> = app::chef_api(&config).await?;
    let client_name = app::chef_identity(&config)?.client_name;
    let resolver = app::resolver(&config);
    let client_of = |node: &str| resolver.client_name_for(node);
    // The ACL probe (one Chef request) runs beside the queue checks (AWS).
    let (pipeline, ()) = tokio::join!(
        app::pipeline(&config, chef.clone()),
        backup::announce_acl_backup(
            chef.as_ref(),
            &client_name,
            &client_of,
            AclBackupPolicy::from_required(config.journal.require_acl_backup),
        )
    );
    let pipeline = Arc::new(pipeline?);
    let mut http = None;
    if let Some(addr) = config.http.listen {
        let ready = Arc::new(Readiness {
            queues: pipeline.sources.iter().map(|s| s.queue.clone()).collect(),
            chefs: chef_probes(&config, &pipeline)?,
        });
        let server = HttpServer::bind(addr, ready)
            .await
            .with_context(|| format!("cannot listen on {addr} (http.listen)"))?;
        let bound = server.local_addr().unwrap_or(addr);
        tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
        http = Some(server);
    }
    tracing::info!(
        queues = pipeline.sources.len(),
        workers = config.pipeline.workers,
        dry_run = config.pipeline.dry_run,
        "nodereaper running"
    );
    let sweep = app::PeriodicSweep::from_config(&config).await;
    let summary = app::run_daemon(&config, pipeline, sweep, http, args.exit_when_idle).await;
    tracing::info!(
        received = summary.received,
        deleted = summary.deleted,
        dead_lettered = summary.dead_lettered,
        retried = summary.retried,
        held = summary.held,
        unsettled = summary.unsettled,
        "nodereaper stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// What `/readyz` asks every Chef target: its server, as its own client.
fn chef_probes(config: &Config, pipeline: &nodereaper::run::Pipeline) -> Result<Vec<ChefProbe>> {
    let mut probes = Vec::new();
    for name in pipeline.targets.names() {
        let Some(reaper) = pipeline.targets.get(name) else {
            continue;
        };
        let own = config
            .for_target(name)
            .with_context(|| format!("no Chef target {name:?}"))?;
        probes.push(ChefProbe {
            target: config.has_targets().then(|| name.to_string()),
            chef: reaper.chef.clone(),
            client_name: app::chef_identity(&own)?.client_name,
        });
    }
    Ok(probes)
}

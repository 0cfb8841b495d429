//! `nodereaper run`: the daemon.

use std::sync::Arc;

use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::ports::ChefApi;
use nodereaper::telemetry::{self, http::Readiness};
use tokio::sync::watch;

use super::sweep::{as_inventories, sweep_inventories, sweep_settings};
use anyhow::{Context, Result};
use clap::Args;

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
    Ok(ExitCode::SUCCESS)
}

pub async fn wait_for_signal() {
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

//! `nodereaper run`: the daemon.

use std::sync::Arc;

use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::ports::ChefApi;
use nodereaper::telemetry::{self, http::Readiness};
use tokio::sync::watch;

use anyhow::{Context, Result};
use clap::Args;
use nodereaper::app::{as_inventories, sweep_inventories, sweep_settings};

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
    let stop_tx = Arc::new(stop_tx);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(every) = config.sweep.interval {
        let reaper = pipeline.reaper.clone();
        let (default_region, ec2) = sweep_inventories(&config).await;
        let inventories = as_inventories(&ec2);
        // One run mode for every path: a dry run never lets the sweep delete.
        let apply = config.sweep.apply_in_daemon && !config.pipeline.dry_run;
        let settings = sweep_settings(&config, default_region, apply, false);
        let per_day = config.sweep.max_deletions_per_day;
        tasks.spawn(periodic_sweep(
            reaper,
            inventories,
            settings,
            every,
            per_day,
            stop_rx.clone(),
        ));
    }
    tasks.spawn(daily_prune(
        pipeline.reaper.journal.clone(),
        config.journal.retention,
        stop_rx.clone(),
    ));
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("signal received: no new messages; finishing in-flight work");
            let _ = stop_tx.send(true);
        }
    });
    let summary = pipeline.run(stop_rx, args.exit_when_idle).await;
    // The periodic sweep hears the same shutdown: a run in progress may
    // finish within the shutdown deadline, then it is cut short (a deletion
    // cut short is finished by the next run; every step is idempotent).
    let _ = stop_tx.send(true);
    let finished = tokio::time::timeout(config.pipeline.shutdown_deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!("periodic sweep still running at the shutdown deadline; stopping it");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
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

/// Removes journal entries older than `journal.retention`, at start and then
/// once a day, until shutdown.
async fn daily_prune(
    journal: Arc<dyn nodereaper::ports::Journal>,
    retention: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match nodereaper::adapters::journal::prune(journal.as_ref(), retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, retention = ?retention, "journal pruned"),
            Err(e) => tracing::warn!(error = %e, "journal prune failed; will retry tomorrow"),
        }
    }
}

/// `run`'s periodic sweep: every `every`, until shutdown. Its deletions are
/// capped per rolling 24 hours on top of the per-run caps.
async fn periodic_sweep(
    reaper: Arc<nodereaper::act::Reaper>,
    inventories: std::collections::HashMap<String, Arc<dyn nodereaper::ports::InstanceInventory>>,
    settings: nodereaper::jobs::sweep::SweepSettings,
    every: std::time::Duration,
    per_day: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deleted: std::collections::VecDeque<(tokio::time::Instant, usize)> = Default::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let now = tokio::time::Instant::now();
        while deleted
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= DAY)
        {
            deleted.pop_front();
        }
        let today: usize = deleted.iter().map(|(_, n)| n).sum();
        let mut run = settings.clone();
        if run.apply && today >= per_day {
            tracing::warn!(
                deleted_today = today,
                cap = per_day,
                "periodic sweep: daily deletion cap (sweep.max_deletions_per_day) reached; reporting only"
            );
            run.apply = false;
        } else if run.apply {
            run.max_candidates = run.max_candidates.min(per_day - today);
        }
        let result = nodereaper::jobs::sweep::sweep(
            &reaper,
            &inventories,
            &run,
            &nodereaper::jobs::sweep::Silent,
        )
        .await;
        match result {
            Ok(r) => {
                deleted.push_back((now, r.deleted));
                tracing::info!(
                    nodes = r.nodes,
                    candidates = r.candidates,
                    deleted = r.deleted,
                    applied = r.applied,
                    aborted = r.aborted.as_deref().unwrap_or(""),
                    duration_ms = r.duration_ms,
                    "periodic sweep done"
                )
            }
            Err(e) => tracing::warn!(error = %e, "periodic sweep failed"),
        }
    }
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

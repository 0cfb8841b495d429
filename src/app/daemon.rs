//! The daemon's tasks besides the pipeline: the periodic sweep under its
//! daily cap, the daily journal prune and the signal listener, all owned by
//! [`run_daemon`].

use super::*;

/// The daemon's periodic sweep, as wired from the configuration.
pub struct PeriodicSweep {
    /// EC2 in every account and region (own credentials, account roles).
    pub fleet: Arc<dyn Fleet>,
    /// The settings of every target's runs, by target name, each with its
    /// own caps (`apply` off in a dry run).
    pub settings: std::collections::BTreeMap<String, SweepSettings>,
    /// Time between runs (`sweep.interval`).
    pub every: Duration,
    /// Deletions per rolling 24 hours (`sweep.max_deletions_per_day`).
    pub per_day: usize,
}

impl PeriodicSweep {
    /// The periodic sweep `sweep.interval` asks for, if any. One run mode for
    /// every path: in a dry run the sweep never deletes.
    pub async fn from_config(config: &Config) -> Option<Self> {
        let every = config.sweep.interval?;
        let regions = sweep_regions(config).await;
        let apply = config.sweep.apply_in_daemon && !config.pipeline.dry_run;
        Some(Self {
            fleet: Arc::new(sweep_fleet(config)),
            settings: config
                .target_names()
                .into_iter()
                .filter_map(|name| {
                    let own = config.for_target(&name)?;
                    let settings = sweep_settings(&own, regions.clone(), apply, false);
                    Some((name, settings))
                })
                .collect(),
            every,
            per_day: config.sweep.max_deletions_per_day,
        })
    }
}

/// Runs the daemon until a signal (SIGTERM, SIGINT) or, with
/// `exit_when_idle`, until the queues are drained: the pipeline, the
/// periodic sweep, the daily journal prune and the health/metrics server,
/// all owned here and all hearing one [`Shutdown`]. After the pipeline stops, the other tasks get
/// `pipeline.shutdown_deadline` to finish, then are stopped (a deletion cut
/// short is finished by the next run; every step is idempotent).
pub async fn run_daemon(
    cfg: &Config,
    pipeline: Arc<Pipeline>,
    sweep: Option<PeriodicSweep>,
    http: Option<HttpServer>,
    exit_when_idle: bool,
) -> Summary {
    let (stop, shutdown) = Shutdown::channel();
    let stop = Arc::new(stop);
    let mut tasks = JoinSet::new();
    if let Some(server) = http {
        let mut until = shutdown.clone();
        tasks.spawn(server.serve(async move { until.changed().await }));
    }
    if let Some(sweep) = sweep {
        tasks.spawn(periodic_sweep(
            pipeline.targets.clone(),
            pipeline.reaper.journal.clone(),
            sweep,
            shutdown.clone(),
        ));
    }
    tasks.spawn(daily_prune(
        pipeline.reaper.journal.clone(),
        cfg.journal.retention,
        cfg.pipeline.dry_run,
        shutdown.clone(),
    ));
    tasks.spawn(stop_on_signal(stop.clone(), shutdown.clone()));
    let summary = pipeline.run(shutdown.receiver(), exit_when_idle).await;
    // Everything else hears the same shutdown.
    let _ = stop.send(true);
    let finished = tokio::time::timeout(cfg.pipeline.shutdown_deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!("tasks still running at the shutdown deadline (periodic sweep, journal prune, health/metrics server); stopping them");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    summary
}

/// Turns the shutdown signal on at SIGTERM or SIGINT; ends at shutdown.
async fn stop_on_signal(stop: Arc<watch::Sender<bool>>, mut shutdown: Shutdown) {
    tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!("signal received: no new messages; finishing in-flight work");
            let _ = stop.send(true);
        }
        _ = async { while !shutdown.is_shutdown() { shutdown.changed().await } } => {}
    }
}

/// Resolves at SIGTERM or SIGINT (Ctrl-C where those cannot be installed).
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

/// Removes journal entries older than `journal.retention`, at start and then
/// once a day, until shutdown. Not in a dry run, which touches nothing.
async fn daily_prune(
    journal: Arc<dyn Journal>,
    retention: Duration,
    dry_run: bool,
    mut shutdown: Shutdown,
) {
    if dry_run {
        tracing::info!("dry run: the journal is not pruned");
        return;
    }
    let mut tick = tokio::time::interval(DAY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match crate::adapters::journal::prune(journal.as_ref(), retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, retention = ?retention, "journal pruned"),
            Err(e) => tracing::warn!(error = %e, "journal prune failed; will retry tomorrow"),
        }
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// `run`'s periodic sweep: every `sweep.every`, until shutdown, every Chef
/// target in turn, each within its own per-run caps; their deletions
/// together are capped per rolling 24 hours (read from `journal` at start).
async fn periodic_sweep(
    targets: Arc<TargetSet>,
    journal: Arc<dyn Journal>,
    sweep: PeriodicSweep,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(sweep.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deleted = DailyCount::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !deleted.seeded {
            if let Err(e) = deleted.seed(journal.as_ref()).await {
                tracing::warn!(error = %e, "periodic sweep: cannot read today's sweep deletions from the journal; this run reports only");
            }
        }
        for name in targets.names() {
            if shutdown.is_shutdown() {
                return;
            }
            if let (Some(reaper), Some(settings)) = (targets.get(name), sweep.settings.get(name)) {
                sweep_target(name, reaper, settings, &sweep, &mut deleted).await;
            }
        }
    }
}

/// One target's periodic sweep, within what is left of the daily cap.
async fn sweep_target(
    name: &str,
    reaper: &Reaper,
    settings: &SweepSettings,
    sweep: &PeriodicSweep,
    deleted: &mut DailyCount,
) {
    let now = tokio::time::Instant::now();
    let run = deleted.capped(settings, sweep.per_day, now);
    match jobs::sweep::sweep(reaper, sweep.fleet.as_ref(), &run, &jobs::sweep::Silent).await {
        Ok(r) => {
            deleted.add(now, r.deleted);
            tracing::info!(
                target_name = name,
                nodes = r.nodes,
                candidates = r.candidates,
                deleted = r.deleted,
                failed = r.failed,
                applied = r.applied,
                aborted = r.aborted.as_deref().unwrap_or(""),
                duration_ms = r.duration_ms,
                "periodic sweep done"
            )
        }
        Err(e) => tracing::warn!(target_name = name, error = %e, "periodic sweep failed"),
    }
}

/// Deletions of the periodic sweep in the last 24 hours: those the journal
/// holds from before this process started (so a restart or a crash loop
/// does not reset the cap), then this process's runs.
#[derive(Default)]
struct DailyCount {
    runs: VecDeque<(tokio::time::Instant, usize)>,
    /// Whether the journal's sweep entries of the last 24 hours are
    /// counted; until they are, no run deletes.
    seeded: bool,
}

impl DailyCount {
    /// Counts each sweep entry the journal recorded in the last 24 hours as
    /// one deletion at the time it was recorded. An entry is written before
    /// its deletion, so one whose deletion then failed counts too: the cap
    /// errs towards deleting less.
    async fn seed(&mut self, journal: &dyn Journal) -> Result<(), JournalError> {
        let now_utc = chrono::Utc::now();
        let day = chrono::Duration::from_std(DAY).unwrap_or(chrono::Duration::days(1));
        let entries = journal.entries_since(now_utc - day).await?;
        let now = tokio::time::Instant::now();
        let sweep = crate::act::RequestSource::Sweep.as_str();
        let mut earlier: Vec<_> = entries
            .iter()
            .filter(|e| e.source == sweep)
            .map(|e| {
                let age = (now_utc - e.recorded_at).to_std().unwrap_or_default();
                // Older than the monotonic clock: counted as of now (longer).
                (now.checked_sub(age).unwrap_or(now), 1)
            })
            .collect();
        earlier.sort_by_key(|(at, _)| *at);
        earlier.extend(self.runs.drain(..));
        self.runs = earlier.into();
        self.seeded = true;
        Ok(())
    }

    fn add(&mut self, at: tokio::time::Instant, deleted: usize) {
        self.runs.push_back((at, deleted));
    }

    /// The settings of the next run: reporting only once `per_day` is
    /// reached, else no more candidates than what is left of it.
    fn capped(
        &mut self,
        settings: &SweepSettings,
        per_day: usize,
        now: tokio::time::Instant,
    ) -> SweepSettings {
        while self
            .runs
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= DAY)
        {
            self.runs.pop_front();
        }
        let today: usize = self.runs.iter().map(|(_, n)| n).sum();
        let mut run = settings.clone();
        if run.apply && !self.seeded {
            run.apply = false;
        } else if run.apply && today >= per_day {
            tracing::warn!(
                deleted_today = today,
                cap = per_day,
                "periodic sweep: daily deletion cap (sweep.max_deletions_per_day) reached; reporting only"
            );
            run.apply = false;
        } else if run.apply {
            run.max_candidates = run.max_candidates.min(per_day - today);
        }
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::journal::JournalEntry;

    /// A local journal holding one entry recorded 100 days ago.
    async fn journal_with_an_old_entry(dir: &std::path::Path) -> Arc<dyn Journal> {
        let journal = LocalJournal::open(dir).expect("journal");
        let mut entry = JournalEntry::new(
            "event",
            "test",
            None,
            Some("i-0123456789abcdef0".into()),
            "web-1",
            Some("web-1".into()),
            "http://chef",
            None,
            None,
        );
        entry.recorded_at -= chrono::Duration::days(100);
        journal.record(&entry).await.expect("record");
        Arc::new(journal)
    }

    /// Runs the daily prune until its first pass is surely done; the
    /// entries left.
    async fn entries_after_prune(dry_run: bool) -> usize {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = journal_with_an_old_entry(dir.path()).await;
        let (stop, shutdown) = Shutdown::channel();
        let task = tokio::spawn(daily_prune(journal.clone(), DAY, dry_run, shutdown));
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A dry run's prune has returned already (no receiver left).
        let _ = stop.send(true);
        task.await.expect("prune task");
        journal.entries().await.expect("entries").len()
    }

    fn apply_settings() -> SweepSettings {
        SweepSettings {
            grace_period: Duration::from_secs(3600),
            max_candidates: 100,
            max_candidate_share: 1.0,
            force: false,
            apply: true,
            instance_id_attribute: Vec::new(),
            region_attribute: Vec::new(),
            regions: Vec::new(),
        }
    }

    /// A local journal holding `n` entries from `source`, `age` old.
    async fn record(journal: &dyn Journal, source: &str, n: usize, age: chrono::Duration) {
        for i in 0..n {
            let mut entry = JournalEntry::new(
                source,
                "test",
                None,
                None,
                &format!("n{i}"),
                None,
                "http://chef",
                None,
                None,
            );
            entry.recorded_at -= age;
            journal.record(&entry).await.expect("record");
        }
    }

    /// The cap survives a restart: the journal's sweep entries of the last
    /// 24 hours count (not the events', not older ones).
    #[tokio::test]
    async fn daily_cap_counts_the_sweeps_the_journal_recorded_today() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("journal");
        record(&journal, "sweep", 3, chrono::Duration::hours(2)).await;
        record(&journal, "event", 5, chrono::Duration::hours(1)).await;
        record(&journal, "sweep", 4, chrono::Duration::hours(30)).await;
        let now = tokio::time::Instant::now();

        let mut count = DailyCount::default();
        count.seed(&journal).await.expect("seed");
        assert!(
            !count.capped(&apply_settings(), 3, now).apply,
            "cap 3 reached"
        );
        let mut count = DailyCount::default();
        count.seed(&journal).await.expect("seed");
        let run = count.capped(&apply_settings(), 5, now);
        assert!(run.apply);
        assert_eq!(run.max_candidates, 2, "5 a day, 3 done today");
    }

    /// Until the journal was read, no run deletes; within one process the
    /// count rolls over after 24 hours.
    #[tokio::test]
    async fn daily_cap_reports_only_until_seeded_and_rolls_over() {
        let now = tokio::time::Instant::now();
        let mut count = DailyCount::default();
        assert!(!count.capped(&apply_settings(), 3, now).apply, "unseeded");
        count.seeded = true;
        assert!(count.capped(&apply_settings(), 3, now).apply);
        count.add(now, 3);
        assert!(!count.capped(&apply_settings(), 3, now).apply, "3 of 3");
        let later = now + DAY + Duration::from_secs(1);
        assert!(count.capped(&apply_settings(), 3, later).apply, "a day on");
    }

    #[tokio::test]
    async fn dry_run_daemon_never_prunes_the_journal() {
        assert_eq!(entries_after_prune(true).await, 1, "a dry run pruned");
        // The happy twin: a live daemon prunes at start.
        assert_eq!(entries_after_prune(false).await, 0);
    }

    #[tokio::test]
    async fn periodic_sweep_runs_each_target_within_its_own_caps() {
        let text = "[chef]\nclient_name = \"n\"\nallow_plain_http = true\n\
            [[chef.targets]]\nname = \"a\"\nserver_url = \"http://c/organizations/a\"\n\
            [chef.targets.sweep]\nmax_candidates = 2\n\
            [[chef.targets]]\nname = \"b\"\nserver_url = \"http://c/organizations/b\"\n\
            [sweep]\ninterval = \"1h\"\nmax_candidates = 7\nregions = [\"us-east-1\"]\n";
        let cfg = Config::parse(text, std::path::Path::new("t.toml")).expect("config");
        let sweep = PeriodicSweep::from_config(&cfg)
            .await
            .expect("a periodic sweep");
        let caps: Vec<(&str, usize)> = sweep
            .settings
            .iter()
            .map(|(name, s)| (name.as_str(), s.max_candidates))
            .collect();
        assert_eq!(caps, [("a", 2), ("b", 7)]);
    }
}

//! One receiver per queue: takes messages only for free workers.
//!
//! Up to [`RECEIVES_IN_FLIGHT`] receives run at once while there is a
//! backlog, so the next batch is being fetched and verified while the current
//! one is worked; with an empty queue only one long poll is outstanding.
//! Every receive first reserves worker permits and asks for at most that many
//! messages, so a received message always has a worker waiting for it (no
//! prefetch beyond free workers: nothing sits invisible in memory towards its
//! visibility timeout). A worker is free again once its message is handled:
//! the acknowledgement goes on without it, in one of a bounded number of
//! slots (`pool.rs`), so deletes batch up without holding workers, and
//! acknowledgements that hang still stop the receiving. While there is a
//! backlog a receive waits until half a batch of workers is free, so that
//! batches (and their EC2 calls) stay large. While the breaker is open the
//! receiver probes what failed instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{JoinError, JoinSet};

use super::pool::Workers;
use super::{backoff, Pipeline, Probe, Shutdown, Source};
use crate::adapters::aws::AwsError;
use crate::core::placement::Placement;

/// Receives from one queue at once, at most.
const RECEIVES_IN_FLIGHT: usize = 3;

/// What a receive task ends with: how many messages it handed to workers.
type Fetched = Result<Result<usize, AwsError>, JoinError>;

/// Whether the receive loop goes on.
enum Step {
    Again,
    Stop,
}

/// A finished receive, if one is due.
enum Finished {
    /// Nothing to learn now: go on to the next receive.
    Nothing,
    /// The shutdown signal changed while waiting for one.
    Interrupted,
    /// A receive came back.
    Joined(Fetched),
}

/// Worker permits reserved for the next receive, or why there are none.
enum Reserved {
    Permits(OwnedSemaphorePermit),
    Again,
    Stop,
}

/// The receive loop of one queue and its state.
pub(super) struct Receiver {
    pipeline: Arc<Pipeline>,
    source: Source,
    workers: Arc<Workers>,
    shutdown: Shutdown,
    exit_when_idle: bool,
    queue_name: String,
    /// Messages asked for per receive, at most.
    batch: usize,
    /// Free workers a receive waits for while there is a backlog.
    prefetch_min: usize,
    /// Consecutive failed receives (for the backoff).
    aws_failures: u32,
    /// Whether the last receive brought messages: only then is a second
    /// receive started while one is in flight.
    backlog: bool,
    fetches: JoinSet<Result<usize, AwsError>>,
    /// A receive that finished while permits were awaited.
    carried: Option<Fetched>,
    /// Turns true once an `exit_when_idle` drain found the queue empty:
    /// long polls still waiting are abandoned rather than waited out.
    drained: tokio::sync::watch::Sender<bool>,
}

impl Receiver {
    pub(super) fn new(
        pipeline: Arc<Pipeline>,
        source: Source,
        workers: Arc<Workers>,
        shutdown: Shutdown,
        exit_when_idle: bool,
    ) -> Self {
        let settings = &pipeline.settings;
        let batch = (settings.batch_size.max(1) as usize).min(settings.workers.max(1));
        Self {
            queue_name: source.queue.name().to_string(),
            batch,
            prefetch_min: batch.div_ceil(2),
            pipeline,
            source,
            workers,
            shutdown,
            exit_when_idle,
            aws_failures: 0,
            backlog: false,
            fetches: JoinSet::new(),
            carried: None,
            drained: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Receives until shutdown (or, with `exit_when_idle`, until the queue
    /// is drained).
    pub(super) async fn run(mut self) {
        while !self.shutdown.is_shutdown() {
            if let Step::Stop = self.turn().await {
                break;
            }
        }
        // Receives in progress are abandoned (their shutdown branch); a batch
        // already received is still handed to workers before returning.
        while self.fetches.join_next().await.is_some() {}
    }

    /// One turn: wait out an open breaker or probe what failed; else learn
    /// from a finished receive; else reserve workers and start a receive.
    async fn turn(&mut self) -> Step {
        if let Some(wait) = self.pipeline.breaker.wait_time() {
            self.shutdown.sleep(wait).await;
            return Step::Again;
        }
        // Probe what failed rather than a message, so an outage costs no
        // message a receive (and a trip to the DLQ). Only a refused Chef
        // request, which no harmless request can re-test, lets one message
        // through (no receive ahead meanwhile).
        let one_message = match self.pipeline.breaker.needs_probe() {
            None => false,
            Some(Probe::OneMessage) => true,
            Some(probe) => {
                self.probe(probe).await;
                return Step::Again;
            }
        };
        match self.finished_receive().await {
            Finished::Nothing => {}
            Finished::Interrupted => return Step::Again,
            Finished::Joined(joined) => return self.learn(joined).await,
        }
        if one_message && (!self.fetches.is_empty() || self.workers.in_flight() > 0) {
            // The one message let through is still being worked: its
            // outcome closes or re-opens the breaker.
            self.shutdown.sleep(Duration::from_millis(100)).await;
            return Step::Again;
        }
        match self.reserve_workers(one_message).await {
            Reserved::Permits(permits) => {
                self.start_receive(permits);
                Step::Again
            }
            Reserved::Again => Step::Again,
            Reserved::Stop => Step::Stop,
        }
    }

    /// A finished receive to learn from before starting another: one
    /// carried over, or one waited for when enough are running, or one that
    /// happens to be done.
    async fn finished_receive(&mut self) -> Finished {
        let joined = if self.carried.is_some() {
            self.carried.take()
        } else if self.fetches.len() >= RECEIVES_IN_FLIGHT
            || (!self.fetches.is_empty() && !self.backlog)
        {
            tokio::select! {
                r = self.fetches.join_next() => r,
                _ = self.shutdown.changed() => return Finished::Interrupted,
            }
        } else {
            self.fetches.try_join_next()
        };
        joined.map_or(Finished::Nothing, Finished::Joined)
    }

    /// Learns from a finished receive: backlog or not, a drained queue (the
    /// end with `exit_when_idle`), or a failure to back off from.
    async fn learn(&mut self, joined: Fetched) -> Step {
        match joined {
            Ok(Ok(0)) => {
                self.aws_failures = 0;
                self.backlog = false;
                // Other receives may still be long-polling an empty queue:
                // once nothing is visible or in flight, they are abandoned
                // (as at shutdown) instead of waited out.
                if self.exit_when_idle
                    && self.workers.in_flight() == 0
                    && self.queue_drained().await
                {
                    self.drained.send_replace(true);
                    tracing::info!(queue = %self.queue_name, "queue drained; receiver done");
                    return Step::Stop;
                }
            }
            Ok(Ok(_)) => {
                self.aws_failures = 0;
                self.backlog = true;
            }
            Ok(Err(e)) => {
                self.backlog = false;
                self.aws_failures = self.aws_failures.saturating_add(1);
                let wait = backoff(
                    self.aws_failures,
                    Duration::from_secs(1),
                    Duration::from_secs(60),
                );
                tracing::warn!(queue = %self.queue_name, error = %e, retry_in = ?wait, "cannot receive; will retry");
                self.shutdown.sleep(wait).await;
            }
            Err(e) => {
                tracing::error!(queue = %self.queue_name, error = %e, "receive task failed");
            }
        }
        Step::Again
    }

    /// Reserves workers: any free one for a poll of an idle queue (an event
    /// must not wait), else half a batch at least (waiting for workers to
    /// finish, or for a receive to come back); then as many more as are free,
    /// up to a batch.
    async fn reserve_workers(&mut self, one_message: bool) -> Reserved {
        let need = if one_message || (self.fetches.is_empty() && !self.backlog) {
            1
        } else {
            self.prefetch_min
        };
        let free = self.workers.free();
        let mut permits = tokio::select! {
            p = free.clone().acquire_many_owned(need as u32) => match p {
                Ok(p) => p,
                Err(_) => return Reserved::Stop,
            },
            Some(joined) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                self.carried = Some(joined);
                return Reserved::Again;
            }
            _ = self.shutdown.changed() => return Reserved::Again,
        };
        while !one_message && permits.num_permits() < self.batch {
            match free.clone().try_acquire_owned() {
                Ok(p) => permits.merge(p),
                Err(_) => break,
            }
        }
        Reserved::Permits(permits)
    }

    /// Starts a receive of at most as many messages as `permits` reserve
    /// workers for; each message goes to a worker as soon as its batch is
    /// verified.
    fn start_receive(&mut self, mut permits: OwnedSemaphorePermit) {
        let pipeline = self.pipeline.clone();
        let source = self.source.clone();
        let workers = self.workers.clone();
        let mut stop = self.shutdown.clone();
        let mut drained = self.drained.subscribe();
        self.fetches.spawn(async move {
            let max = i32::try_from(permits.num_permits()).unwrap_or(10);
            let received = tokio::select! {
                r = source.queue.receive(max, pipeline.settings.wait_time) => r,
                _ = stop.changed() => return Ok(0),
                _ = drained.wait_for(|d| *d) => return Ok(0),
            };
            let messages = received?;
            let count = messages.len();
            if count == 0 {
                return Ok(0);
            }
            workers.received(count);
            for prepared in pipeline.prepare_batch(&source, messages).await {
                // At most as many messages as reserved permits arrive.
                let Some(permit) = permits.split(1) else {
                    break;
                };
                workers.start(pipeline.clone(), source.clone(), prepared, permit);
            }
            Ok(count)
        });
    }

    /// Tests what failed without touching a message (see [`probe`]).
    async fn probe(&self, what: Probe) {
        probe(&self.pipeline, &self.source, what).await
    }

    /// Whether the queue holds no message, visible or in flight.
    async fn queue_drained(&self) -> bool {
        match self.source.queue.depth().await {
            Ok((visible, hidden)) => visible == 0 && hidden == 0,
            Err(e) => {
                tracing::warn!(queue = %self.queue_name, error = %e, "cannot read queue depth");
                false
            }
        }
    }
}

/// Tests what failed without touching a message; closes the breaker on
/// success (the only way a hold ends), re-opens it for another cooldown on
/// failure, and gives up on an account and region that failed
/// `pipeline.unreachable_region_attempts` times in a row.
pub(super) async fn probe(pipeline: &Pipeline, source: &Source, probe: Probe) {
    let result: Result<(), String> = match &probe {
        Probe::Chef | Probe::OneMessage => pipeline
            .reaper
            .chef
            .get_node("nodereaper-health-probe")
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Probe::Journal => pipeline
            .reaper
            .journal
            .probe()
            .await
            .map_err(|e| e.to_string()),
        Probe::Aws(placement) => probe_aws(source, placement).await,
        Probe::Never => Err(crate::act::limiter::Braked {
            per_minute: pipeline.settings.max_deletions_per_minute,
            sustained: pipeline.settings.storm_brake_after,
        }
        .to_string()),
    };
    let breaker = &pipeline.breaker;
    match (result, &probe) {
        (Ok(()), Probe::Aws(placement)) => {
            breaker.placement_ok(placement);
            breaker.probe_succeeded();
        }
        (Ok(()), _) => breaker.probe_succeeded(),
        // Given up on: the hold is released, its messages go to the DLQ.
        (Err(error), Probe::Aws(placement)) if breaker.placement_failed(placement, &error) => {}
        (Err(error), _) => {
            tracing::warn!(%error, ?probe, "still failing; receiving stays paused");
            breaker.record_failure_of(probe, &error);
        }
    }
}

/// EC2 and Auto Scaling where the failing instance lives.
async fn probe_aws(source: &Source, placement: &Placement) -> Result<(), String> {
    let regional = source
        .fleet
        .regional(placement)
        .await
        .map_err(|e| e.to_string())?;
    regional
        .inventory
        .describe(&["i-00000000000000000".to_string()])
        .await
        .map_err(|e| e.to_string())?;
    regional.lifecycle.probe().await.map_err(|e| e.to_string())
}

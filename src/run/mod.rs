//! `nodereaper run`: receive events, decide, act, acknowledge.
//!
//! Per queue, one receiver takes messages only for free workers: an idle
//! queue gets one long poll at a time; with a backlog up to three receives
//! overlap, each reserving its workers first (no unbounded prefetch). Each
//! batch's terminations are verified with one EC2 call per account and
//! region, then every message goes to a worker. A message is deleted only
//! after every step succeeded; see [`Disposition`] for the other endings.

pub mod breaker;
pub mod lambda;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub use breaker::{Breaker, Probe};

use crate::act::reaper::Dependency;
use crate::act::{Outcome, Reaper, Request, Target};
use crate::config::{OtherEvents, PipelineConfig};
use crate::core::error::{Classify, Retry};
use crate::core::event::{self, Event, ParseOptions, Termination};
use crate::core::placement::Placement;
use crate::core::verify::{self, Verification};
use crate::ports::{
    Completion, Fleet, InstanceInfo, PlacementError, Queue, ReceivedMessage, Regional,
};
use crate::telemetry::metrics;

/// One queue, and where to find EC2 and Auto Scaling for the instances its
/// events name.
#[derive(Clone)]
pub struct Source {
    pub queue: Arc<dyn Queue>,
    /// EC2 and Auto Scaling per account and region.
    pub fleet: Arc<dyn Fleet>,
    /// The queue's region: the region of events that name none (raw
    /// lifecycle hook messages).
    pub region: String,
}

/// What EC2 said about a termination's instance, asked where it lives.
#[derive(Clone)]
pub struct Checked {
    /// The services of the instance's account and region.
    pub regional: Regional,
    /// `None`: EC2 there does not know the id (or verification is off).
    pub info: Option<InstanceInfo>,
}

/// EC2's answers for one placement of a batch.
type PlacementStates = Result<(Regional, HashMap<String, InstanceInfo>), Arc<PlacementError>>;

/// The verification of one termination: [`Checked`], or why it could not be.
pub type Verdict = Result<Checked, Arc<PlacementError>>;

/// How a message ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "disposition", rename_all = "snake_case")]
pub enum Disposition {
    /// Done (acted on, nothing to do, or a test notification): delete it.
    Delete { outcome: String },
    /// Poison or refused: move to the DLQ with the reason.
    DeadLetter { reason: String },
    /// Transient failure: hide it for a backoff, try again later.
    Retry { error: String },
    /// nodereaper's own problem (credentials, permissions, journal): keep the
    /// message, pause receiving.
    Hold { error: String },
}

impl Disposition {
    fn label(&self) -> &'static str {
        match self {
            Disposition::Delete { .. } => "deleted",
            Disposition::DeadLetter { .. } => "dead_lettered",
            Disposition::Retry { .. } => "retried",
            Disposition::Hold { .. } => "held",
        }
    }
}

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub received: usize,
    pub deleted: usize,
    pub dead_lettered: usize,
    pub retried: usize,
    pub held: usize,
}

pub struct Pipeline {
    pub sources: Vec<Source>,
    pub reaper: Arc<Reaper>,
    pub settings: PipelineConfig,
    pub breaker: Arc<Breaker>,
}

/// Exponential backoff with full jitter over the receive count.
pub fn backoff(receive_count: u32, base: Duration, max: Duration) -> Duration {
    let exp = receive_count.saturating_sub(1).min(20);
    let ceiling = base.saturating_mul(1u32 << exp).min(max);
    // Never below the base: an immediate redelivery helps nobody.
    let jitter = rand::random::<f64>();
    base + (ceiling.saturating_sub(base)).mul_f64(jitter)
}

impl Pipeline {
    pub fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            shutting_down_is_termination: self.settings.shutting_down_is_termination,
        }
    }

    /// Runs until `shutdown` turns true (then finishes in-flight work within
    /// `shutdown_deadline`), or, with `exit_when_idle`, until every queue is
    /// empty and nothing is in flight.
    pub async fn run(
        self: Arc<Self>,
        shutdown: watch::Receiver<bool>,
        exit_when_idle: bool,
    ) -> Summary {
        let workers = Arc::new(Semaphore::new(self.settings.workers));
        let summary = Arc::new(std::sync::Mutex::new(Summary::default()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut receivers = JoinSet::new();
        for source in self.sources.clone() {
            let this = self.clone();
            let workers = workers.clone();
            let summary = summary.clone();
            let in_flight = in_flight.clone();
            let shutdown = shutdown.clone();
            receivers.spawn(async move {
                this.receive_loop(
                    source,
                    workers,
                    summary,
                    in_flight,
                    shutdown,
                    exit_when_idle,
                )
                .await
            });
        }
        while receivers.join_next().await.is_some() {}
        // Receivers are done; wait for the workers they started.
        let all = u32::try_from(self.settings.workers).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(self.settings.shutdown_deadline, workers.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = in_flight.load(Ordering::SeqCst),
                deadline = ?self.settings.shutdown_deadline,
                "shutdown deadline reached with work in flight; those messages stay in the queue and will be redelivered"
            );
        }
        let result = summary.lock().map(|s| s.clone()).unwrap_or_default();
        result
    }

    /// Receives from one queue. Up to `RECEIVES_IN_FLIGHT` receives run at
    /// once while there is a backlog, so the next batch is being fetched and
    /// verified while the current one is worked; with an empty queue only one
    /// long poll is outstanding. Every receive first reserves worker permits
    /// and asks for at most that many messages, so a received message always
    /// has a worker waiting for it (no prefetch beyond free workers: nothing
    /// sits invisible in memory towards its visibility timeout). While there
    /// is a backlog a receive waits until half a batch of workers is free, so
    /// that batches (and their EC2 calls) stay large.
    async fn receive_loop(
        self: Arc<Self>,
        source: Source,
        workers: Arc<Semaphore>,
        summary: Arc<std::sync::Mutex<Summary>>,
        in_flight: Arc<AtomicUsize>,
        mut shutdown: watch::Receiver<bool>,
        exit_when_idle: bool,
    ) {
        const RECEIVES_IN_FLIGHT: usize = 3;
        let queue_name = source.queue.name().to_string();
        let batch = (self.settings.batch_size.max(1) as usize).min(self.settings.workers.max(1));
        let prefetch_min = batch.div_ceil(2);
        let mut aws_failures: u32 = 0;
        // Whether the last receive brought messages: only then is a second
        // receive started while one is in flight.
        let mut backlog = false;
        let mut fetches: JoinSet<Result<usize, crate::adapters::aws::AwsError>> = JoinSet::new();
        // A receive that finished while permits were awaited.
        let mut carried = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Some(wait) = self.breaker.wait_time() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // Probe what failed rather than a message, so an outage costs no
            // message a receive (and a trip to the DLQ). Only a refused Chef
            // request, which no harmless request can re-test, lets one
            // message through (no receive ahead meanwhile).
            let one_message = match self.breaker.needs_probe() {
                None => false,
                Some(Probe::OneMessage) => true,
                Some(probe) => {
                    self.probe(&source, probe).await;
                    continue;
                }
            };
            // A finished receive: learn from it before starting another.
            let finished = if carried.is_some() {
                carried.take()
            } else if fetches.len() >= RECEIVES_IN_FLIGHT || (!fetches.is_empty() && !backlog) {
                tokio::select! {
                    r = fetches.join_next() => r,
                    _ = shutdown.changed() => continue,
                }
            } else {
                fetches.try_join_next()
            };
            if let Some(joined) = finished {
                match joined {
                    Ok(Ok(0)) => {
                        aws_failures = 0;
                        backlog = false;
                        if exit_when_idle
                            && fetches.is_empty()
                            && in_flight.load(Ordering::SeqCst) == 0
                            && self.queue_drained(&source).await
                        {
                            tracing::info!(queue = %queue_name, "queue drained; receiver done");
                            break;
                        }
                    }
                    Ok(Ok(_)) => {
                        aws_failures = 0;
                        backlog = true;
                    }
                    Ok(Err(e)) => {
                        backlog = false;
                        aws_failures = aws_failures.saturating_add(1);
                        let wait = backoff(
                            aws_failures,
                            Duration::from_secs(1),
                            Duration::from_secs(60),
                        );
                        tracing::warn!(queue = %queue_name, error = %e, retry_in = ?wait, "cannot receive; will retry");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    Err(e) => {
                        tracing::error!(queue = %queue_name, error = %e, "receive task failed");
                    }
                }
                continue;
            }
            // Reserve workers: any free one for a poll of an idle queue (an
            // event must not wait), else half a batch at least (waiting for
            // workers to finish, or for a receive to come back).
            if one_message && (!fetches.is_empty() || in_flight.load(Ordering::SeqCst) > 0) {
                // The one message let through is still being worked: its
                // outcome closes or re-opens the breaker.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let need = if one_message || (fetches.is_empty() && !backlog) {
                1
            } else {
                prefetch_min
            };
            let mut permits = tokio::select! {
                p = workers.clone().acquire_many_owned(need as u32) => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                Some(joined) = fetches.join_next(), if !fetches.is_empty() => {
                    carried = Some(joined);
                    continue;
                }
                _ = shutdown.changed() => continue,
            };
            while !one_message && permits.num_permits() < batch {
                match workers.clone().try_acquire_owned() {
                    Ok(p) => permits.merge(p),
                    Err(_) => break,
                }
            }
            let this = self.clone();
            let source = source.clone();
            let summary = summary.clone();
            let in_flight = in_flight.clone();
            let mut stop = shutdown.clone();
            fetches.spawn(async move {
                let max = i32::try_from(permits.num_permits()).unwrap_or(10);
                let received = tokio::select! {
                    r = source.queue.receive(max, this.settings.wait_time) => r,
                    _ = stop.changed() => return Ok(0),
                };
                let messages = received?;
                let count = messages.len();
                if count == 0 {
                    return Ok(0);
                }
                if let Ok(mut s) = summary.lock() {
                    s.received += count;
                }
                let batch = this.prepare_batch(&source, messages).await;
                for (msg, event, verdict) in batch {
                    // At most as many messages as reserved permits arrive.
                    let Some(permit) = permits.split(1) else {
                        break;
                    };
                    let this = this.clone();
                    let source = source.clone();
                    let summary = summary.clone();
                    let in_flight = in_flight.clone();
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    metrics::get().in_flight.inc();
                    tokio::spawn(async move {
                        let disposition = this.handle(&source, &msg, event, verdict).await;
                        this.settle(&source, &msg, &disposition).await;
                        if let Ok(mut s) = summary.lock() {
                            match disposition {
                                Disposition::Delete { .. } => s.deleted += 1,
                                Disposition::DeadLetter { .. } => s.dead_lettered += 1,
                                Disposition::Retry { .. } => s.retried += 1,
                                Disposition::Hold { .. } => s.held += 1,
                            }
                        }
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        metrics::get().in_flight.dec();
                        drop(permit);
                    });
                }
                Ok(count)
            });
        }
        // Receives in progress are abandoned (their shutdown branch); a batch
        // already received is still handed to workers before returning.
        while fetches.join_next().await.is_some() {}
    }

    /// Tests what failed without touching a message; closes the breaker on
    /// success, re-opens it for another cooldown on failure.
    async fn probe(&self, source: &Source, probe: Probe) {
        let result: Result<(), String> = match &probe {
            Probe::Chef | Probe::OneMessage => self
                .reaper
                .chef
                .get_node("nodereaper-health-probe")
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Probe::Journal => self.reaper.journal.probe().await.map_err(|e| e.to_string()),
            Probe::Aws(placement) => self.probe_aws(source, placement).await,
            Probe::Never => Err(crate::act::limiter::Braked {
                per_minute: self.settings.max_deletions_per_minute,
                sustained: self.settings.storm_brake_after,
            }
            .to_string()),
        };
        match result {
            Ok(()) => self.breaker.record_success(),
            Err(error) => {
                tracing::warn!(%error, ?probe, "still failing; receiving stays paused");
                self.breaker.record_failure_of(probe, &error);
            }
        }
    }

    async fn probe_aws(&self, source: &Source, placement: &Placement) -> Result<(), String> {
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

    /// Decides and acts on a batch of messages from `source` and returns each
    /// with its [`Disposition`], without settling anything on the queue: the
    /// caller deletes, dead-letters or retries. At most `workers` messages are
    /// worked at once. This is the whole per-message path (parse, verify,
    /// protect, resolve, back up, delete, complete) for callers that receive
    /// messages themselves, such as the Lambda handler.
    pub async fn process_batch(
        &self,
        source: &Source,
        messages: Vec<ReceivedMessage>,
    ) -> Vec<(ReceivedMessage, Disposition)> {
        use futures::StreamExt;
        let batch = self.prepare_batch(source, messages).await;
        futures::stream::iter(batch)
            .map(|(msg, event, verdict)| async move {
                let disposition = self.handle(source, &msg, event, verdict).await;
                (msg, disposition)
            })
            .buffered(self.settings.workers.max(1))
            .collect()
            .await
    }

    async fn queue_drained(&self, source: &Source) -> bool {
        match source.queue.depth().await {
            Ok((visible, hidden)) => visible == 0 && hidden == 0,
            Err(e) => {
                tracing::warn!(queue = %source.queue.name(), error = %e, "cannot read queue depth");
                false
            }
        }
    }

    /// Whether nodereaper owns this lifecycle hook (`pipeline.lifecycle_hooks`).
    fn owns_hook(&self, t: &Termination) -> bool {
        t.lifecycle.as_ref().is_none_or(|a| {
            self.settings
                .lifecycle_hooks
                .iter()
                .any(|h| h == &a.hook_name)
        })
    }

    /// Parses a batch and verifies its terminations where each instance
    /// lives: one EC2 call per account and region in the batch.
    async fn prepare_batch(
        &self,
        source: &Source,
        messages: Vec<ReceivedMessage>,
    ) -> Vec<(
        ReceivedMessage,
        Result<Event, event::ParseError>,
        Option<Verdict>,
    )> {
        let queue_name = source.queue.name();
        let opts = self.parse_options();
        let m = metrics::get();
        let parsed: Vec<_> = messages
            .into_iter()
            .map(|msg| {
                if let Some(sent) = msg.sent_at {
                    let lag = (Utc::now() - sent).to_std().unwrap_or_default();
                    m.queue_lag
                        .with_label_values(&[queue_name])
                        .observe(lag.as_secs_f64());
                }
                let event = event::parse(&msg.body, &opts);
                let kind = match &event {
                    Ok(Event::Termination(_)) => "termination",
                    Ok(Event::Test { .. }) => "test",
                    Ok(Event::Other { .. }) => "other",
                    Err(_) => "unparseable",
                };
                m.messages.with_label_values(&[queue_name, kind]).inc();
                (msg, event)
            })
            .collect();
        let placement_of = |t: &Termination| {
            Placement::of_event(t.account.as_deref(), t.region.as_deref(), &source.region)
        };
        let mut groups: std::collections::BTreeMap<Placement, Vec<String>> = Default::default();
        for (_, event) in &parsed {
            if let Ok(Event::Termination(t)) = event {
                if self.owns_hook(t) {
                    groups
                        .entry(placement_of(t))
                        .or_default()
                        .push(t.instance_id.clone());
                }
            }
        }
        let mut checked: HashMap<Placement, PlacementStates> = HashMap::new();
        for (placement, ids) in groups {
            let result = async {
                let regional = source.fleet.regional(&placement).await?;
                let states = if self.settings.verify_instance_state {
                    regional.inventory.describe(&ids).await?
                } else {
                    HashMap::new()
                };
                Ok::<_, PlacementError>((regional, states))
            }
            .await
            .map_err(Arc::new);
            checked.insert(placement, result);
        }
        parsed
            .into_iter()
            .map(|(msg, event)| {
                let verdict = match &event {
                    Ok(Event::Termination(t)) => checked.get(&placement_of(t)).map(|r| match r {
                        Ok((regional, states)) => Ok(Checked {
                            regional: regional.clone(),
                            info: states.get(&t.instance_id).cloned(),
                        }),
                        Err(e) => Err(e.clone()),
                    }),
                    _ => None,
                };
                (msg, event, verdict)
            })
            .collect()
    }

    /// The one error policy: nodereaper's own failures (credentials,
    /// permissions, journal, brake) hold the message and open the breaker on
    /// what failed; transient ones retry; the rest is the message's (DLQ).
    fn disposition_for(
        &self,
        error: &(dyn Classify + Send + Sync),
        text: String,
        probe: Probe,
    ) -> Disposition {
        if !error.blames_message() {
            tracing::error!(error = %text, ?probe, "nodereaper cannot work (credentials, permissions, journal or storm brake); holding messages");
            self.breaker.trip_on(probe, &text);
            return Disposition::Hold { error: text };
        }
        match error.retry() {
            Retry::Transient => {
                self.breaker.record_failure_of(probe, &text);
                Disposition::Retry { error: text }
            }
            Retry::Permanent => Disposition::DeadLetter { reason: text },
        }
    }

    /// Decides and acts on one message. Never touches the message itself.
    pub async fn handle(
        &self,
        source: &Source,
        msg: &ReceivedMessage,
        event: Result<Event, event::ParseError>,
        verdict: Option<Verdict>,
    ) -> Disposition {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(queue = %source.queue.name(), message_id = %msg.message_id, error = %e, "unparseable message");
                return Disposition::DeadLetter {
                    reason: format!("unparseable message: {e}"),
                };
            }
        };
        let termination = match event {
            Event::Test { description } => {
                tracing::info!(message_id = %msg.message_id, %description, "test notification acknowledged");
                return Disposition::Delete {
                    outcome: "test_notification".into(),
                };
            }
            Event::Other { description } => {
                tracing::info!(message_id = %msg.message_id, %description, "event needs no action");
                return match self.settings.other_events {
                    OtherEvents::Delete => Disposition::Delete {
                        outcome: "no_action".into(),
                    },
                    OtherEvents::DeadLetter => Disposition::DeadLetter {
                        reason: format!("not a termination: {description}"),
                    },
                };
            }
            Event::Termination(t) => t,
        };
        if !self.owns_hook(&termination) {
            let hook = termination
                .lifecycle
                .as_ref()
                .map_or("", |a| a.hook_name.as_str());
            tracing::info!(
                message_id = %msg.message_id,
                instance_id = %termination.instance_id,
                hook,
                "lifecycle action of a hook nodereaper does not own (pipeline.lifecycle_hooks): not completed, Chef left alone"
            );
            metrics::get()
                .refusals
                .with_label_values(&["foreign_hook"])
                .inc();
            return Disposition::Delete {
                outcome: "foreign_hook".into(),
            };
        }
        let started = Instant::now();
        let mut plan = None;
        let disposition = self
            .handle_termination(source, msg, &termination, verdict, &mut plan)
            .await;
        let (outcome, detail) = match &disposition {
            Disposition::Delete { outcome } => (outcome.as_str(), String::new()),
            Disposition::DeadLetter { reason } => ("dead_lettered", reason.clone()),
            Disposition::Retry { error } => ("retry", error.clone()),
            Disposition::Hold { error } => ("held", error.clone()),
        };
        tracing::info!(
            instance_id = %termination.instance_id,
            node = plan.as_ref().map_or("-", |p| p.node_name.as_str()),
            client = plan.as_ref().map_or("-", |p| p.client_name.as_str()),
            asg = termination.auto_scaling_group.as_deref().unwrap_or("-"),
            origin = ?termination.origin,
            message_id = %msg.message_id,
            outcome,
            detail = %detail,
            dry_run = self.settings.dry_run,
            duration_ms = started.elapsed().as_millis() as u64,
            "termination handled"
        );
        disposition
    }

    /// `plan` receives what was (or would be) deleted, for the log line.
    async fn handle_termination(
        &self,
        source: &Source,
        msg: &ReceivedMessage,
        t: &Termination,
        verdict: Option<Verdict>,
        plan: &mut Option<crate::act::Plan>,
    ) -> Disposition {
        let m = metrics::get();
        let placement =
            Placement::of_event(t.account.as_deref(), t.region.as_deref(), &source.region);
        let checked = match verdict {
            Some(Ok(checked)) => checked,
            Some(Err(error)) => {
                if matches!(*error, PlacementError::UnknownAccount { .. }) {
                    m.refusals.with_label_values(&["unknown_account"]).inc();
                }
                let text = format!(
                    "cannot verify instance {} ({placement}): {error}",
                    t.instance_id
                );
                return self.disposition_for(error.as_ref(), text, Probe::Aws(placement));
            }
            None => {
                return Disposition::Retry {
                    error: format!("instance {} was not verified", t.instance_id),
                }
            }
        };
        let verification = if self.settings.verify_instance_state {
            verify::verify(checked.info.as_ref(), &self.reaper.protection)
        } else {
            Verification::Confirmed {
                evidence: "verification disabled".into(),
            }
        };
        let outcome = match verification {
            Verification::Refused { reason } => {
                m.refusals.with_label_values(&["instance_alive"]).inc();
                return Disposition::DeadLetter {
                    reason: format!("{reason} ({placement})"),
                };
            }
            Verification::Protected { reason } => {
                tracing::info!(instance_id = %t.instance_id, %reason, "instance protected; Chef left alone");
                m.refusals.with_label_values(&["instance_tag"]).inc();
                "protected".to_string()
            }
            Verification::Confirmed { evidence } => {
                let request = Request {
                    target: Target::Instance(t.instance_id.clone()),
                    source: "event",
                    reason: format!(
                        "{:?} event for {} ({evidence}; {placement})",
                        t.origin, t.instance_id
                    ),
                    message_id: Some(msg.message_id.clone()),
                    dry_run: self.settings.dry_run,
                    recheck: None,
                    verified_region: Some(placement.region.clone()),
                };
                let reap = self
                    .reap_with_keepalive(source, &checked.regional, msg, t, &request)
                    .await;
                let outcome = match reap {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        let probe = match e.dependency() {
                            Dependency::Chef if e.any_request_shows_it() => Probe::Chef,
                            Dependency::Chef => Probe::OneMessage,
                            Dependency::Journal => Probe::Journal,
                            Dependency::Brake => Probe::Never,
                        };
                        return self.disposition_for(&e, e.to_string(), probe);
                    }
                };
                self.breaker.record_success();
                *plan = match &outcome {
                    Outcome::WouldDelete { plan }
                    | Outcome::Deleted { plan, .. }
                    | Outcome::Protected { plan, .. }
                    | Outcome::Refused { plan, .. }
                    | Outcome::Changed { plan, .. } => Some(plan.clone()),
                    Outcome::AlreadyGone { .. } => None,
                };
                match &outcome {
                    Outcome::WouldDelete { plan } => tracing::info!(
                        instance_id = %t.instance_id,
                        node = %plan.node_name,
                        client = %plan.client_name,
                        "dry run: would back up and delete node and client{}, then delete the message",
                        if t.lifecycle.is_some() { ", complete the lifecycle action with CONTINUE" } else { "" }
                    ),
                    // Not this instance's registration, or no longer the one
                    // read: refuse, keep the evidence, never complete the hook.
                    Outcome::Refused { reason, .. } | Outcome::Changed { reason, .. } => {
                        return Disposition::DeadLetter {
                            reason: reason.clone(),
                        }
                    }
                    _ => {}
                }
                outcome.label().to_string()
            }
        };
        if let Some(action) = &t.lifecycle {
            if self.settings.dry_run {
                return Disposition::Delete { outcome };
            }
            match checked.regional.lifecycle.complete_continue(action).await {
                Ok(c) => {
                    let label = match c {
                        Completion::Completed => "completed",
                        Completion::NoLongerActive => "no_longer_active",
                    };
                    m.lifecycle.with_label_values(&["complete", label]).inc();
                }
                Err(e) => {
                    m.lifecycle.with_label_values(&["complete", "error"]).inc();
                    // Chef is clean already; retrying only repeats the completion.
                    return self.disposition_for(&e, e.to_string(), Probe::Aws(placement));
                }
            }
        }
        Disposition::Delete { outcome }
    }

    /// Runs the reap while keeping the message hidden and the lifecycle
    /// action alive (heartbeat) if it takes long (rate cap, slow server).
    async fn reap_with_keepalive(
        &self,
        source: &Source,
        regional: &Regional,
        msg: &ReceivedMessage,
        t: &Termination,
        request: &Request,
    ) -> Result<Outcome, crate::act::ReapError> {
        let every = self.settings.lifecycle_heartbeat_interval;
        let work = self.reaper.reap(request);
        tokio::pin!(work);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = tick.tick() => {
                    if self.settings.dry_run {
                        continue;
                    }
                    if let Err(e) = source.queue.extend_visibility(msg, every * 2).await {
                        tracing::warn!(message_id = %msg.message_id, error = %e, "cannot extend visibility");
                    }
                    if let Some(action) = &t.lifecycle {
                        let result = regional.lifecycle.heartbeat(action).await;
                        let label = match &result {
                            Ok(Completion::Completed) => "recorded",
                            Ok(Completion::NoLongerActive) => "no_longer_active",
                            Err(_) => "error",
                        };
                        metrics::get().lifecycle.with_label_values(&["heartbeat", label]).inc();
                        if let Err(e) = result {
                            tracing::warn!(instance_id = %t.instance_id, error = %e, "lifecycle heartbeat failed");
                        }
                    }
                }
            }
        }
    }

    /// Applies a disposition to the message (nothing at all in dry-run).
    pub async fn settle(&self, source: &Source, msg: &ReceivedMessage, disposition: &Disposition) {
        let queue = source.queue.name();
        metrics::get()
            .outcomes
            .with_label_values(&[queue, disposition.label()])
            .inc();
        if self.settings.dry_run {
            tracing::info!(queue, message_id = %msg.message_id, ?disposition, "dry run: message left untouched");
            return;
        }
        let result = match disposition {
            Disposition::Delete { .. } => source.queue.delete(msg).await,
            Disposition::DeadLetter { reason } => {
                tracing::warn!(queue, message_id = %msg.message_id, %reason, "moving message to the dead-letter queue");
                source.queue.dead_letter(msg, reason).await
            }
            Disposition::Retry { error } | Disposition::Hold { error } => {
                let wait = backoff(
                    msg.receive_count,
                    self.settings.retry_backoff_base,
                    self.settings.retry_backoff_max,
                );
                tracing::warn!(queue, message_id = %msg.message_id, %error, retry_in = ?wait, receive_count = msg.receive_count, "will retry");
                source.queue.extend_visibility(msg, wait).await
            }
        };
        if let Err(e) = result {
            // The message comes back after its visibility timeout and is
            // handled again; every step is idempotent.
            tracing::warn!(queue, message_id = %msg.message_id, error = %e, "cannot settle message; it will be redelivered");
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn backoff_grows_within_bounds() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        for count in 1..40 {
            let d = backoff(count, base, max);
            assert!(d >= base && d <= max, "count {count}: {d:?}");
        }
        assert_eq!(backoff(1, base, max), base);
    }
}

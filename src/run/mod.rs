//! `nodereaper run`: receive events, decide, act, acknowledge.
//!
//! Per queue, one receiver (`receiver.rs`) takes messages only for free
//! workers: an idle queue gets one long poll at a time; with a backlog up to
//! three receives overlap, each reserving its workers first (no unbounded
//! prefetch). Each batch's terminations are verified with one EC2 call per
//! account and region, then every message goes to a worker (`worker.rs`),
//! which is free again once the message is handled (its acknowledgement, in
//! a bounded slot, does not hold it). A message is deleted only after every
//! step succeeded; see [`Disposition`]
//! for the other endings, and [`crate::core::error::error_policy`] for which
//! failure ends how. Every task the pipeline spawns is owned and awaited when
//! the [`Shutdown`] signal comes.

pub mod breaker;
pub mod lambda;
mod pool;
mod receiver;
pub mod shutdown;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use breaker::{Breaker, Probe};
pub use shutdown::Shutdown;

use crate::act::{Reaper, TargetSet};
use crate::config::PipelineConfig;
use crate::core::error::ErrorDisposition;
use crate::core::event::ParseOptions;
use crate::ports::{Fleet, InstanceInfo, PlacementError, Queue, Regional};
use crate::telemetry::events::MessageOutcome;
use pool::Workers;
use receiver::Receiver;

/// One queue, and where to find EC2 and Auto Scaling for the instances its
/// events name.
#[derive(Clone)]
pub struct Source {
    /// Where the events arrive.
    pub queue: Arc<dyn Queue>,
    /// EC2 and Auto Scaling per account and region.
    pub fleet: Arc<dyn Fleet>,
    /// The queue's region: the region of events that name none (raw
    /// lifecycle hook messages).
    pub region: String,
    /// The Chef target of every event of this queue (`queues[].target`).
    pub target: Option<String>,
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
    Delete {
        /// What was done.
        outcome: Handled,
    },
    /// Poison or refused: move to the DLQ with the reason.
    DeadLetter {
        /// Why, sent along with the message.
        reason: String,
    },
    /// Transient failure: hide it for a backoff, try again later.
    Retry {
        /// What failed.
        error: String,
    },
    /// nodereaper's own problem (credentials, permissions, journal): keep the
    /// message, pause receiving.
    Hold {
        /// What failed.
        error: String,
    },
}

impl Disposition {
    /// How the message leaves the pipeline, for telemetry.
    fn outcome(&self) -> MessageOutcome {
        match self {
            Disposition::Delete { .. } => MessageOutcome::Deleted,
            Disposition::DeadLetter { .. } => MessageOutcome::DeadLettered,
            Disposition::Retry { .. } => MessageOutcome::Retried,
            Disposition::Hold { .. } => MessageOutcome::Held,
        }
    }
}

impl From<ErrorDisposition> for Disposition {
    fn from(d: ErrorDisposition) -> Self {
        match d {
            ErrorDisposition::Hold { error } => Disposition::Hold { error },
            ErrorDisposition::Retry { error } => Disposition::Retry { error },
            ErrorDisposition::DeadLetter { reason } => Disposition::DeadLetter { reason },
        }
    }
}

/// What was done with a message that is deleted from its queue; logged and
/// serialised as its snake_case name (`deleted`, `foreign_hook`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Handled {
    /// An Auto Scaling test notification.
    TestNotification,
    /// An event that is not a termination (`pipeline.other_events = "delete"`).
    NoAction,
    /// A lifecycle action of a hook nodereaper does not own: left alone.
    ForeignHook,
    /// The instance or its registration is protected: Chef left alone.
    Protected,
    /// Nothing registered (any more).
    AlreadyGone,
    /// Dry run: what would have been deleted was logged.
    WouldDelete,
    /// The registration was backed up and deleted.
    Deleted,
}

impl Handled {
    /// The name in logs and serialised dispositions.
    pub fn as_str(self) -> &'static str {
        match self {
            Handled::TestNotification => "test_notification",
            Handled::NoAction => "no_action",
            Handled::ForeignHook => "foreign_hook",
            Handled::Protected => "protected",
            Handled::AlreadyGone => "already_gone",
            Handled::WouldDelete => "would_delete",
            Handled::Deleted => "deleted",
        }
    }
}

impl std::fmt::Display for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Messages received.
    pub received: usize,
    /// Messages deleted from their queue (done).
    pub deleted: usize,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: usize,
    /// Messages left for a retry after a transient failure.
    pub retried: usize,
    /// Messages kept because nodereaper itself could not work.
    pub held: usize,
    /// Messages whose delete, move to the DLQ or delay the queue refused or
    /// failed (counted here only): they come back after their visibility
    /// timeout.
    pub unsettled: usize,
}

impl Summary {
    /// Counts one finished message.
    fn record(&mut self, disposition: &Disposition, settled: bool) {
        if !settled {
            self.unsettled += 1;
            return;
        }
        match disposition {
            Disposition::Delete { .. } => self.deleted += 1,
            Disposition::DeadLetter { .. } => self.dead_lettered += 1,
            Disposition::Retry { .. } => self.retried += 1,
            Disposition::Hold { .. } => self.held += 1,
        }
    }
}

/// The daemon's pipeline: its queues, the deletion path, its settings and
/// its circuit breaker.
pub struct Pipeline {
    /// The queues to receive from.
    pub sources: Vec<Source>,
    /// The deletion path of the first (or only) Chef target: the periodic
    /// sweep's and the journal prune's.
    pub reaper: Arc<Reaper>,
    /// Every Chef target's deletion path; each termination is routed to one.
    pub targets: Arc<TargetSet>,
    /// `[pipeline]` settings.
    pub settings: PipelineConfig,
    /// Pauses receiving while a dependency (or nodereaper's setup) fails.
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
    /// How message bodies are parsed under these settings.
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
        let shutdown = Shutdown::new(shutdown);
        let workers = Arc::new(Workers::new(self.settings.workers));
        let mut receivers = JoinSet::new();
        for source in self.sources.clone() {
            let receiver = Receiver::new(
                self.clone(),
                source,
                workers.clone(),
                shutdown.clone(),
                exit_when_idle,
            );
            receivers.spawn(receiver.run());
        }
        while receivers.join_next().await.is_some() {}
        // Receivers are done; wait for the workers they started.
        workers.finish(self.settings.shutdown_deadline).await;
        workers.summary()
    }
}

#[cfg(test)]
mod ack_tests;
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

//! The acknowledgement hand-off: a worker is free once its message is
//! handled, its delete goes on in an acknowledgement slot; when
//! acknowledgements hang, the slots fill, the workers stay held and the
//! receiving stops (nothing more is taken from the queue).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::{watch, Semaphore};

use super::pool::ack_slots;
use super::*;
use crate::act::resolve::Resolver;
use crate::act::{DeletionLimiter, Reaper};
use crate::adapters::aws::AwsError;
use crate::core::verify::Protection;
use crate::ports::ReceivedMessage;
use crate::testing::{FakeEc2, FakeInventory, FakeWorld, FixedFleet, World};

/// A queue holding lifecycle messages whose deletes wait for `acks`
/// permits (none at first: every delete hangs until the test adds some).
struct SlowAcks {
    waiting: Mutex<VecDeque<ReceivedMessage>>,
    acks: Semaphore,
    /// Received and not yet deleted, now and at most.
    outstanding: AtomicUsize,
    max_outstanding: AtomicUsize,
    deleted: AtomicUsize,
}

impl SlowAcks {
    fn new(ids: &[String]) -> Self {
        let waiting = ids
            .iter()
            .enumerate()
            .map(|(i, id)| ReceivedMessage {
                message_id: format!("m-{i}"),
                receipt_handle: format!("r-{i}"),
                body: json!({
                    "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                    "LifecycleActionToken": "t",
                    "AutoScalingGroupName": "web",
                    "LifecycleHookName": crate::config::DEFAULT_LIFECYCLE_HOOK,
                    "EC2InstanceId": id,
                })
                .to_string(),
                sent_at: None,
                receive_count: 1,
            })
            .collect();
        Self {
            waiting: Mutex::new(waiting),
            acks: Semaphore::new(0),
            outstanding: AtomicUsize::new(0),
            max_outstanding: AtomicUsize::new(0),
            deleted: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Queue for SlowAcks {
    fn name(&self) -> &str {
        "slow-acks"
    }
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<ReceivedMessage>, AwsError> {
        let taken: Vec<ReceivedMessage> = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            let n = waiting.len().min(usize::try_from(max).unwrap_or(0));
            waiting.drain(..n).collect()
        };
        if taken.is_empty() {
            // An empty long poll waits it out.
            tokio::time::sleep(wait).await;
        }
        let now = self.outstanding.fetch_add(taken.len(), Ordering::SeqCst) + taken.len();
        self.max_outstanding.fetch_max(now, Ordering::SeqCst);
        Ok(taken)
    }
    async fn delete(&self, _msg: &ReceivedMessage) -> Result<(), AwsError> {
        self.acks.acquire().await.map(|p| p.forget()).ok();
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.deleted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn extend_visibility(&self, msg: &ReceivedMessage, _t: Duration) -> Result<(), AwsError> {
        panic!("{} was not expected to be retried", msg.message_id)
    }
    async fn depth(&self) -> Result<(u64, u64), AwsError> {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).len();
        let hidden = self.outstanding.load(Ordering::SeqCst);
        Ok((waiting as u64, hidden as u64))
    }
    async fn dead_letter(&self, msg: &ReceivedMessage, reason: &str) -> Result<(), AwsError> {
        panic!("{} was dead-lettered: {reason}", msg.message_id)
    }
}

/// A pipeline of `workers` over `queue` and the fake world.
fn pipeline(world: &FakeWorld, queue: Arc<SlowAcks>, workers: usize) -> Arc<Pipeline> {
    pipeline_waiting(world, queue, workers, Duration::from_millis(100))
}

/// The same with long polls of `wait_time`.
fn pipeline_waiting(
    world: &FakeWorld,
    queue: Arc<SlowAcks>,
    workers: usize,
    wait_time: Duration,
) -> Arc<Pipeline> {
    let reaper = Arc::new(Reaper {
        chef: world.chef(),
        journal: world.journal(),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: Vec::new(),
    });
    let source = Source {
        queue,
        fleet: Arc::new(FixedFleet::new(
            Arc::new(FakeInventory(FakeEc2::Unknown)),
            world.lifecycle(),
        )),
        region: "us-east-1".into(),
        target: None,
    };
    Arc::new(Pipeline {
        sources: vec![source],
        targets: Arc::new(crate::act::TargetSet::single(reaper.clone())),
        reaper,
        settings: PipelineConfig {
            workers,
            wait_time,
            ..PipelineConfig::default()
        },
        breaker: Arc::new(Breaker::new("chef", 5, Duration::from_secs(30))),
    })
}

/// A world with a registration for each of `n` instances, and their ids.
fn registered(n: usize) -> (FakeWorld, Vec<String>) {
    let ids: Vec<String> = (1..=n).map(|i| format!("i-{i:017x}")).collect();
    let mut w = World::default();
    for id in &ids {
        w.register(id, id, true);
    }
    (FakeWorld::new(w), ids)
}

/// `--exit-when-idle` stops one long poll after the queue is empty: the
/// receives still long-polling then (several overlap while there is a
/// backlog) are abandoned, not waited out one after the other.
#[tokio::test(start_paused = true)]
async fn exit_when_idle_does_not_wait_out_overlapping_long_polls() {
    const N: usize = 40;
    let wait = Duration::from_secs(20);
    let (world, ids) = registered(N);
    let queue = Arc::new(SlowAcks::new(&ids));
    queue.acks.add_permits(N);
    let p = pipeline_waiting(&world, queue.clone(), 4, wait);
    let (_tx, rx) = watch::channel(false);
    let started = tokio::time::Instant::now();
    let summary = p.run(rx, true).await;
    assert_eq!(summary.deleted, N, "{summary:?}");
    assert!(world.lock().nodes.is_empty());
    // The work itself takes no time here: what passes is long polls.
    let took = started.elapsed();
    assert!(
        took < wait + wait / 2,
        "the drain took {took:?}: more than one {wait:?} long poll after the queue was empty"
    );
}

/// Hanging acknowledgements stop the receiving once the workers and the
/// acknowledgement slots are all taken; once they flow, the drain ends with
/// every registration deleted and every message acknowledged.
#[tokio::test(start_paused = true)]
async fn hanging_acknowledgements_stop_the_receiving() {
    const N: usize = 40;
    const WORKERS: usize = 2;
    let (world, ids) = registered(N);
    let queue = Arc::new(SlowAcks::new(&ids));
    let p = pipeline(&world, queue.clone(), WORKERS);
    let (_tx, rx) = watch::channel(false);
    let run = tokio::spawn(p.run(rx, true));

    // Every delete hangs: a minute later nothing more has been taken than
    // the workers and the acknowledgement slots hold.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let bound = WORKERS + ack_slots(WORKERS);
    let taken = queue.outstanding.load(Ordering::SeqCst);
    assert_eq!(queue.deleted.load(Ordering::SeqCst), 0);
    assert!(
        taken <= bound,
        "{taken} messages taken while their acknowledgements hang (bound {bound})"
    );
    assert!(taken > WORKERS, "a worker waited for its acknowledgement");

    // Acknowledgements flow: the drain completes.
    queue.acks.add_permits(N);
    let summary = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("drained")
        .expect("run task");
    assert_eq!(summary.deleted, N, "{summary:?}");
    assert_eq!(queue.deleted.load(Ordering::SeqCst), N);
    assert!(queue.max_outstanding.load(Ordering::SeqCst) <= bound);
    let w = world.lock();
    assert!(w.nodes.is_empty(), "nodes left: {:?}", w.nodes.keys());
    assert_eq!(w.journal.len(), N, "one backup per deletion");
}

//! The receive loop against moto + goiardi: with a backlog several receives
//! overlap (the next batch is fetched while the current one is worked), yet
//! no more messages are ever taken from the queue than there are workers to
//! handle them and acknowledgement slots for those handled; an empty queue
//! gets one long poll at a time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use nodereaper::adapters::aws::AwsError;
use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::ports::{ChefApi, Queue, ReceivedMessage};
use nodereaper::run::{Pipeline, Summary};
use tokio::sync::watch;

/// Wraps the real SQS queue and watches it: receives in flight, and
/// messages taken but not yet settled (deleted, dead-lettered or hidden).
struct Watched {
    inner: Arc<dyn Queue>,
    receiving: AtomicUsize,
    max_receiving: AtomicUsize,
    receives: AtomicUsize,
    outstanding: AtomicUsize,
    max_outstanding: AtomicUsize,
    /// The message id of every delivery, in order.
    delivered: std::sync::Mutex<Vec<String>>,
}

impl Watched {
    fn new(inner: Arc<dyn Queue>) -> Self {
        Self {
            inner,
            receiving: AtomicUsize::new(0),
            max_receiving: AtomicUsize::new(0),
            receives: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            max_outstanding: AtomicUsize::new(0),
            delivered: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn settled(&self) {
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Queue for Watched {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<ReceivedMessage>, AwsError> {
        self.receives.fetch_add(1, Ordering::SeqCst);
        let now = self.receiving.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_receiving.fetch_max(now, Ordering::SeqCst);
        let got = self.inner.receive(max, wait).await;
        self.receiving.fetch_sub(1, Ordering::SeqCst);
        if let Ok(m) = &got {
            assert!(m.len() <= max as usize, "SQS returned more than asked for");
            let now = self.outstanding.fetch_add(m.len(), Ordering::SeqCst) + m.len();
            self.max_outstanding.fetch_max(now, Ordering::SeqCst);
            if let Ok(mut ids) = self.delivered.lock() {
                ids.extend(m.iter().map(|m| m.message_id.clone()));
            }
        }
        got
    }
    async fn delete(&self, msg: &ReceivedMessage) -> Result<(), AwsError> {
        let r = self.inner.delete(msg).await;
        self.settled();
        r
    }
    async fn extend_visibility(&self, msg: &ReceivedMessage, t: Duration) -> Result<(), AwsError> {
        self.inner.extend_visibility(msg, t).await
    }
    async fn depth(&self) -> Result<(u64, u64), AwsError> {
        self.inner.depth().await
    }
    async fn dead_letter(&self, msg: &ReceivedMessage, reason: &str) -> Result<(), AwsError> {
        let r = self.inner.dead_letter(msg, reason).await;
        self.settled();
        r
    }
}

async fn watched_pipeline(cfg: &Config) -> (Arc<Pipeline>, Arc<Watched>) {
    let chef: Arc<dyn ChefApi> = Arc::new(app::chef_client(cfg).expect("chef"));
    let mut p = app::pipeline(cfg, chef).await.expect("pipeline");
    let watched = Arc::new(Watched::new(p.sources[0].queue.clone()));
    p.sources[0].queue = watched.clone();
    (Arc::new(p), watched)
}

#[tokio::test]
async fn backlog_overlaps_receives_within_free_workers() {
    let chef = admin();
    let (queue, dlq) = queue_with_dlq(&unique("overlap"), 5).await;
    let mut names = Vec::new();
    for _ in 0..60 {
        let id = fake_instance_id();
        register(&chef, &id, Some(&id)).await;
        send(
            &queue,
            &sns_wrap(&asg_terminate_notification(&id, "web-asg")),
        )
        .await;
        names.push(id);
    }
    let journal = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[&queue], journal.path());
    cfg.pipeline.workers = 12;
    cfg.pipeline.batch_size = 4;
    let (p, watched) = watched_pipeline(&cfg).await;
    let (_tx, rx) = watch::channel(false);
    let summary: Summary = tokio::time::timeout(Duration::from_secs(120), p.run(rx, true))
        .await
        .expect("drain within 2 min");
    // Every message handled once, and every delivery settled. A standard
    // queue delivers at least once, and moto shows it: its ReceiveMessage
    // checks that a message is visible and then marks it received without
    // a lock, so two overlapping receives now and then return the same
    // message (a cold CI run saw 61 deliveries of 60). A second delivery is
    // deleted as already handled; what this test guards is below.
    let delivered = watched.delivered.lock().expect("ids").clone();
    let distinct: std::collections::HashSet<&String> = delivered.iter().collect();
    assert_eq!(distinct.len(), 60, "{summary:?}");
    assert_eq!(summary.received, delivered.len(), "{summary:?}");
    assert_eq!(summary.deleted, summary.received, "{summary:?}");
    for name in &names {
        assert!(
            chef.get_node(name).await.expect("GET node").is_none(),
            "{name} survived"
        );
    }
    assert_eq!(depth(&queue).await, (0, 0));
    assert_eq!(depth(&dlq).await, (0, 0));
    let max_outstanding = watched.max_outstanding.load(Ordering::SeqCst);
    let max_receiving = watched.max_receiving.load(Ordering::SeqCst);
    // A worker is free once its message is handled; the acknowledgement
    // goes on in one of max(workers, 10) slots (src/run/pool.rs).
    assert!(
        max_outstanding <= 12 + 12,
        "{max_outstanding} messages taken with only 12 workers and 12 acknowledgement slots"
    );
    assert!(
        max_receiving >= 2,
        "receives never overlapped with a 60-message backlog ({max_receiving})"
    );
    assert!(max_receiving <= 3, "{max_receiving} receives at once");
}

#[tokio::test]
async fn empty_queue_gets_one_long_poll_at_a_time() {
    let (queue, _dlq) = queue_with_dlq(&unique("idle"), 5).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let cfg = daemon_config(&[&queue], journal.path());
    let (p, watched) = watched_pipeline(&cfg).await;
    let (tx, rx) = watch::channel(false);
    let run = tokio::spawn(p.run(rx, false));
    // wait_time is 1 s: a few polls.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    tx.send(true).expect("signal shutdown");
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("stops on shutdown")
        .expect("run task");
    assert_eq!(watched.max_receiving.load(Ordering::SeqCst), 1);
    let receives = watched.receives.load(Ordering::SeqCst);
    assert!((2..=5).contains(&receives), "{receives} receives in 3.5 s");
}

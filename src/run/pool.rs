//! The pool of worker tasks of one [`Pipeline::run`]: free workers (the
//! receivers reserve them before receiving), acknowledgement slots, the
//! tasks themselves and the counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::worker::Prepared;
use super::{Pipeline, Source, Summary};
use crate::telemetry::events;

/// The worker tasks of one [`Pipeline::run`]: the free workers, the
/// acknowledgement slots, the tasks themselves (owned, awaited at shutdown),
/// the in-flight count and the summary.
pub(super) struct Workers {
    /// One permit per free worker; receivers reserve them before receiving.
    free: Arc<Semaphore>,
    /// Messages handled whose settling (delete, DLQ move, delay) is still
    /// under way, at most [`ack_slots`]: a worker is free once its message
    /// is handled, but while every slot is taken it keeps its permit, so
    /// acknowledgements that hang stop the receiving.
    acks: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
    /// Messages received and not yet settled: the one count (the
    /// `messages_in_flight` gauge moves with it, in [`Busy`]).
    in_flight: AtomicUsize,
    summary: Mutex<Summary>,
}

/// How many handled messages may wait for their acknowledgement at once:
/// as many as there are workers, and at least one full `DeleteMessageBatch`.
pub(super) fn ack_slots(workers: usize) -> usize {
    workers.max(crate::adapters::aws::sqs::DELETE_BATCH_MAX)
}

/// A message in the pipeline: holds its worker's permit until handled, and
/// counts as in flight until dropped (settled).
struct Busy {
    workers: Arc<Workers>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Busy {
    fn enter(workers: Arc<Workers>, permit: OwnedSemaphorePermit) -> Self {
        workers.in_flight.fetch_add(1, Ordering::SeqCst);
        events::work_started();
        Self {
            workers,
            permit: Some(permit),
        }
    }

    /// The message is handled: takes an acknowledgement slot (waiting, with
    /// the worker still held, while all are taken) and frees the worker.
    async fn handled(&mut self) -> Option<OwnedSemaphorePermit> {
        let slot = self.workers.acks.clone().acquire_owned().await.ok();
        self.permit = None;
        slot
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.workers.in_flight.fetch_sub(1, Ordering::SeqCst);
        events::work_finished();
    }
}

impl Workers {
    pub(super) fn new(workers: usize) -> Self {
        Self {
            free: Arc::new(Semaphore::new(workers)),
            acks: Arc::new(Semaphore::new(ack_slots(workers))),
            tasks: Mutex::new(JoinSet::new()),
            in_flight: AtomicUsize::new(0),
            summary: Mutex::new(Summary::default()),
        }
    }

    /// The free workers, to reserve before receiving.
    pub(super) fn free(&self) -> Arc<Semaphore> {
        self.free.clone()
    }

    /// Messages received and not yet settled.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts received messages.
    pub(super) fn received(&self, count: usize) {
        if let Ok(mut s) = self.summary.lock() {
            s.received += count;
        }
    }

    /// The counts so far.
    pub(super) fn summary(&self) -> Summary {
        self.summary.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Works one message on the worker `permit` reserves: handle, free the
    /// worker, settle (in an acknowledgement slot), count.
    pub(super) fn start(
        self: &Arc<Self>,
        pipeline: Arc<Pipeline>,
        source: Source,
        (msg, event, verdict): Prepared,
        permit: OwnedSemaphorePermit,
    ) {
        let mut busy = Busy::enter(self.clone(), permit);
        let work = async move {
            let disposition = pipeline.handle(&source, &msg, event, verdict).await;
            // Settling waits for nothing the worker does: the delete goes out
            // batched with others while the worker takes the next message.
            let _slot = busy.handled().await;
            let settled = pipeline.settle(&source, &msg, &disposition).await;
            if let Ok(mut s) = busy.workers.summary.lock() {
                s.record(&disposition, settled);
            }
            drop(busy);
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the finished ones, so the set holds only running workers.
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "worker task failed");
            }
        }
        tasks.spawn(work);
    }

    /// Waits for every worker, at most `deadline`; then stops the rest
    /// (their messages stay in the queue and come back).
    pub(super) async fn finish(&self, deadline: Duration) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let drained = tokio::time::timeout(deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = self.in_flight(),
                deadline = ?deadline,
                "shutdown deadline reached with work in flight; those messages stay in the queue and will be redelivered"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

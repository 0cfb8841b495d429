//! The shutdown signal every task of the daemon listens to.
//!
//! One `watch` channel: whoever owns the sender (the signal handler, a test)
//! turns it true; every receiver, receive, periodic job and worker wait holds
//! a [`Shutdown`] and stops taking new work once it fires. The tasks
//! themselves are owned by `JoinSet`s and awaited, so nothing outlives the
//! shutdown unnoticed.

use std::time::Duration;

use tokio::sync::watch;

/// A listener for the shutdown signal (cheap to clone, one per task).
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Listens on `rx`; shutdown is when the value turns true.
    pub fn new(rx: watch::Receiver<bool>) -> Self {
        Self { rx }
    }

    /// A sender and its listener: `send(true)` shuts down.
    pub fn channel() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self::new(rx))
    }

    /// The underlying channel end, for APIs that take one.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Whether shutdown has been signalled.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves at the next change of the signal (or at once when its sender
    /// is gone): the moment to look at [`Shutdown::is_shutdown`] again.
    pub async fn changed(&mut self) {
        let _ = self.rx.changed().await;
    }

    /// Sleeps for `wait`, or less if the signal changes meanwhile.
    pub async fn sleep(&mut self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sleep_ends_early_on_shutdown() {
        let (tx, mut shutdown) = Shutdown::channel();
        assert!(!shutdown.is_shutdown());
        let started = tokio::time::Instant::now();
        let sleeper = tokio::spawn(async move {
            shutdown.sleep(Duration::from_secs(3600)).await;
            shutdown
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(true).expect("send");
        let shutdown = sleeper.await.expect("join");
        assert!(shutdown.is_shutdown());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

//! Circuit breaker for the Chef server (and nodereaper's own setup): while it
//! is open, receivers stop taking messages, so an outage does not burn the
//! messages' receive counts into the dead-letter queue.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::telemetry::metrics;

pub struct Breaker {
    name: &'static str,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(name: &'static str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            name,
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::default()),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means another task panicked mid-update; the
        // counters are still usable.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn record_success(&self) {
        let was_open = self.with_state(|s| {
            let was_open = s.consecutive_failures >= self.threshold;
            s.consecutive_failures = 0;
            s.open_until = None;
            was_open
        });
        if was_open {
            tracing::info!(
                dependency = self.name,
                "circuit breaker closed: dependency answers again"
            );
        }
        metrics::get()
            .breaker_open
            .with_label_values(&[self.name])
            .set(0);
    }

    /// Counts a failure; opens the breaker at the threshold.
    pub fn record_failure(&self, error: &str) {
        let opened = self.with_state(|s| {
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            if s.consecutive_failures >= self.threshold {
                s.open_until = Some(Instant::now() + self.cooldown);
                true
            } else {
                false
            }
        });
        if opened {
            metrics::get()
                .breaker_open
                .with_label_values(&[self.name])
                .set(1);
            tracing::warn!(
                dependency = self.name,
                cooldown = ?self.cooldown,
                error,
                "circuit breaker open: pausing receives"
            );
        }
    }

    /// Opens at once (a failure every message would share, e.g. a 401).
    pub fn trip(&self, error: &str) {
        self.with_state(|s| {
            s.consecutive_failures = s.consecutive_failures.max(self.threshold - 1)
        });
        self.record_failure(error);
    }

    /// True after the cooldown of an open breaker: the dependency should be
    /// probed (without consuming a message) before receiving again.
    pub fn needs_probe(&self) -> bool {
        self.with_state(|s| {
            s.consecutive_failures >= self.threshold
                && s.open_until.is_some_and(|t| t <= Instant::now())
        })
    }

    /// How long receivers should still wait, if the breaker is open.
    pub fn wait_time(&self) -> Option<Duration> {
        self.with_state(|s| {
            s.open_until
                .map(|t| t.saturating_duration_since(Instant::now()))
                .filter(|d| !d.is_zero())
        })
    }

    pub fn is_open(&self) -> bool {
        self.wait_time().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_at_threshold_and_half_opens_after_cooldown() {
        let b = Breaker::new("chef", 3, Duration::from_secs(30));
        b.record_failure("x");
        b.record_failure("x");
        assert!(!b.is_open());
        b.record_failure("x");
        assert!(b.is_open());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!b.is_open(), "half-open after cooldown");
        b.record_failure("still down");
        assert!(b.is_open(), "one more failure reopens it");
        b.record_success();
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn trip_opens_immediately() {
        let b = Breaker::new("chef", 5, Duration::from_secs(30));
        b.trip("401");
        assert!(b.is_open());
    }
}

//! Circuit breaker for the Chef server (and nodereaper's own setup): while it
//! is open, receivers stop taking messages, so an outage does not burn the
//! messages' receive counts into the dead-letter queue.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::act::reaper::{Dependency, ReapError};
use crate::core::placement::Placement;
use crate::telemetry::events;

/// How to tell, without consuming messages, that what failed works again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A GET on the Chef server (outage, timeouts).
    Chef,
    /// A refused Chef request (401/403): no request can test a delete
    /// permission without deleting something, so one message is let through.
    OneMessage,
    /// Write and remove a probe object in the journal.
    Journal,
    /// EC2 DescribeInstances and an Auto Scaling permission probe where the
    /// failing instance lives.
    Aws(Placement),
    /// The storm brake: nothing but a restart releases it.
    Never,
}

impl Probe {
    /// What tells that a failed reap's dependency works again: a GET for a
    /// Chef failure any request shows, one message for a refused DELETE, the
    /// journal probe, and nothing for the storm brake.
    pub fn after(error: &ReapError) -> Probe {
        match error.dependency() {
            Dependency::Chef if error.any_request_shows_it() => Probe::Chef,
            Dependency::Chef => Probe::OneMessage,
            Dependency::Journal => Probe::Journal,
            Dependency::Brake => Probe::Never,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Probe::Chef | Probe::OneMessage => "chef",
            Probe::Journal => "journal",
            Probe::Aws(_) => "aws",
            Probe::Never => "storm_brake",
        }
    }
}

/// Counts consecutive failures; opens at a threshold for a cooldown, then
/// asks for a [`Probe`] of what failed before receiving again.
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
    /// What failed last, hence what to probe.
    probe: Option<Probe>,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `cooldown`.
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

    /// A dependency answered: closes the breaker.
    pub fn record_success(&self) {
        let was_open = self.with_state(|s| {
            let was_open = s.consecutive_failures >= self.threshold;
            s.consecutive_failures = 0;
            s.open_until = None;
            s.probe.take().filter(|_| was_open)
        });
        if let Some(probe) = was_open {
            events::breaker_closed(self.name, probe.label());
        }
    }

    /// Counts a failure of the Chef server.
    pub fn record_failure(&self, error: &str) {
        self.record_failure_of(Probe::Chef, error)
    }

    /// Counts a failure of what `probe` tests; opens the breaker at the threshold.
    pub fn record_failure_of(&self, probe: Probe, error: &str) {
        let label = probe.label();
        let opened = self.with_state(|s| {
            // A brake stays a brake whatever fails next.
            if s.probe != Some(Probe::Never) {
                s.probe = Some(probe);
            }
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            if s.consecutive_failures >= self.threshold {
                s.open_until = Some(Instant::now() + self.cooldown);
                true
            } else {
                false
            }
        });
        if opened {
            events::breaker_opened(self.name, label, self.cooldown, error);
        }
    }

    /// Opens at once (a failure every message would share, e.g. a 401).
    pub fn trip(&self, error: &str) {
        self.trip_on(Probe::OneMessage, error)
    }

    /// Opens at once, to be probed with `probe`.
    pub fn trip_on(&self, probe: Probe, error: &str) {
        self.with_state(|s| {
            s.consecutive_failures = s.consecutive_failures.max(self.threshold - 1)
        });
        self.record_failure_of(probe, error);
    }

    /// After the cooldown of an open breaker: what to probe (without
    /// consuming a message, but for [`Probe::OneMessage`]) before receiving
    /// again.
    pub fn needs_probe(&self) -> Option<Probe> {
        self.with_state(|s| {
            (s.consecutive_failures >= self.threshold
                && s.open_until.is_some_and(|t| t <= Instant::now()))
            .then(|| s.probe.clone().unwrap_or(Probe::Chef))
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

    /// Whether receivers should pause now.
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

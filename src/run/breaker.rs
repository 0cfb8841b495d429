//! Circuit breaker for the Chef server (and nodereaper's own setup): while it
//! is open, receivers stop taking messages, so an outage does not burn the
//! messages' receive counts into the dead-letter queue.
//!
//! Two kinds of opening:
//! - **Transient failures** counted to the threshold: any message that goes
//!   through closes the breaker again.
//! - **Holds** (nodereaper's own problem, the storm brake): only the hold's
//!   own probe ends them (a GET, the journal probe, EC2 where the instance
//!   lives), and nothing ends the storm brake but a restart. A message that
//!   happens to succeed meanwhile (its registration already gone, or
//!   protected) proves nothing about what failed, so it does not close a
//!   hold: held messages stay in the queue instead of cycling and burning
//!   receive counts. The one exception is a refused Chef DELETE
//!   ([`Probe::OneMessage`]), whose probe *is* one message.
//!
//! It also counts failed verifications and probes per account and region:
//! a placement that cannot be reached that many times in a row
//! (`pipeline.unreachable_region_attempts`) is given up on, so one message
//! naming a disabled, foreign-partition or bogus region goes to the DLQ
//! with the reason instead of stalling every queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The default of `pipeline.unreachable_region_attempts`.
pub const DEFAULT_UNREACHABLE_ATTEMPTS: u32 = 10;

/// Counts consecutive failures; opens at a threshold for a cooldown, then
/// asks for a [`Probe`] of what failed before receiving again.
pub struct Breaker {
    name: &'static str,
    threshold: u32,
    cooldown: Duration,
    /// Failed attempts at one placement after which it is given up on.
    unreachable_after: u32,
    /// How often this breaker opened (per breaker, unlike the gauge).
    opened: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// What failed last, hence what to probe.
    probe: Option<Probe>,
    /// A hold: only its probe (or a restart, for the brake) ends it.
    held: bool,
    /// Failed verifications and probes per placement since its last
    /// success, with the last error.
    placements: HashMap<Placement, (u32, String)>,
}

impl State {
    /// Forgets every failure: the breaker is closed. Returns the probe of
    /// an open breaker, for the "closed" event.
    fn close(&mut self, threshold: u32) -> Option<Probe> {
        let was_open = self.consecutive_failures >= threshold;
        self.consecutive_failures = 0;
        self.open_until = None;
        self.held = false;
        self.probe.take().filter(|_| was_open)
    }
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `cooldown`.
    pub fn new(name: &'static str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            name,
            threshold: threshold.max(1),
            cooldown,
            unreachable_after: DEFAULT_UNREACHABLE_ATTEMPTS,
            opened: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// Gives up on a placement after `attempts` failed verifications and
    /// probes in a row (at least 1).
    pub fn with_unreachable_after(mut self, attempts: u32) -> Self {
        self.unreachable_after = attempts.max(1);
        self
    }

    /// How many times this breaker has opened.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }

    /// Whether a hold (or the storm brake) is on: only its probe ends it.
    pub fn is_held(&self) -> bool {
        self.with_state(|s| s.held)
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means another task panicked mid-update; the
        // counters are still usable.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A message went through: closes the breaker opened by transient
    /// failures (or by a refused DELETE, whose probe is one message), but
    /// not a hold, which only its own probe ends.
    pub fn record_success(&self) {
        let was_open = self.with_state(|s| {
            if s.held {
                return None;
            }
            s.close(self.threshold)
        });
        if let Some(probe) = was_open {
            events::breaker_closed(self.name, probe.label());
        }
    }

    /// The probe of what failed succeeded: closes the breaker, hold or not.
    pub fn probe_succeeded(&self) {
        let was_open = self.with_state(|s| {
            if s.probe == Some(Probe::Never) {
                // Nothing but a restart releases the storm brake.
                return None;
            }
            s.close(self.threshold)
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
        self.fail(probe, error, false)
    }

    fn fail(&self, probe: Probe, error: &str, hold: bool) {
        let label = probe.label();
        let opened = self.with_state(|s| {
            // A brake stays a brake whatever fails next; a hold keeps its
            // probe until another hold (not one message) replaces it.
            let replace = match (&s.probe, s.held) {
                (Some(Probe::Never), _) => false,
                (_, true) => hold && probe != Probe::OneMessage,
                (_, false) => true,
            };
            if replace {
                s.probe = Some(probe);
            }
            if hold && s.probe != Some(Probe::OneMessage) {
                s.held = true;
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
            self.opened.fetch_add(1, Ordering::SeqCst);
            events::breaker_opened(self.name, label, self.cooldown, error);
        }
    }

    /// Opens at once (a failure every message would share, e.g. a 401).
    pub fn trip(&self, error: &str) {
        self.trip_on(Probe::OneMessage, error)
    }

    /// Opens at once, to be probed with `probe`: a hold, which a message
    /// going through does not end (but for [`Probe::OneMessage`]).
    pub fn trip_on(&self, probe: Probe, error: &str) {
        self.with_state(|s| {
            s.consecutive_failures = s.consecutive_failures.max(self.threshold - 1)
        });
        self.fail(probe, error, true);
    }

    /// EC2 (or Auto Scaling) where `placement` lives answered.
    pub fn placement_ok(&self, placement: &Placement) {
        self.with_state(|s| s.placements.remove(placement));
    }

    /// A verification or probe of `placement` failed with `error`. At the
    /// limit the placement is given up on: a hold on it is released (so
    /// the other queues and regions flow again) and its messages go to the
    /// DLQ ([`Self::unreachable`]). Returns whether it is given up on.
    pub fn placement_failed(&self, placement: &Placement, error: &str) -> bool {
        let limit = self.unreachable_after;
        let (gave_up, released) = self.with_state(|s| {
            let entry = s
                .placements
                .entry(placement.clone())
                .or_insert((0, String::new()));
            entry.0 = entry.0.saturating_add(1);
            entry.1 = error.to_string();
            if entry.0 < limit {
                return (None, None);
            }
            let now = entry.0 == limit;
            let on_it = s.probe.as_ref() == Some(&Probe::Aws(placement.clone()));
            (
                Some(now),
                if on_it { s.close(self.threshold) } else { None },
            )
        });
        if gave_up == Some(true) {
            tracing::error!(%placement, attempts = limit, %error, "giving up on this account and region (pipeline.unreachable_region_attempts): its messages go to the dead-letter queue with the reason; other regions go on");
        }
        if let Some(probe) = released {
            events::breaker_closed(self.name, probe.label());
        }
        gave_up.is_some()
    }

    /// Why `placement` is given up on, if it is: the attempts and the last
    /// error.
    pub fn unreachable(&self, placement: &Placement) -> Option<String> {
        let limit = self.unreachable_after;
        self.with_state(|s| {
            s.placements
                .get(placement)
                .filter(|(n, _)| *n >= limit)
                .map(|(n, e)| format!("{placement} unreachable after {n} failed attempts (pipeline.unreachable_region_attempts = {limit}); last error: {e}"))
        })
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

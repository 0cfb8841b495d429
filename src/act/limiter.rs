//! Deletion rate cap and storm brake: a flood of terminations may be a
//! mistake (a bad deploy scaling a group to zero, a forged event storm).
//!
//! - Above `per_minute`, deletions wait for the window and an alert is raised
//!   (log + `nodereaper_deletion_rate_limited`).
//! - When deletions have run at the cap for `brake_after` without a break,
//!   the brake engages: every further deletion is refused with [`Braked`]
//!   (messages are held, not lost) and `nodereaper_storm_brake_engaged` is 1,
//!   until an operator restarts nodereaper. A cap alone would only slow a
//!   storm down, forever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::telemetry::events;

/// Deletions are refused: the storm brake is engaged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storm brake engaged: deletions ran at the cap of {per_minute}/min for {sustained:?}; nodereaper refuses to delete until an operator checks the Auto Scaling activity and restarts it")]
pub struct Braked {
    /// The cap: deletions allowed per window (normally one minute).
    pub per_minute: u32,
    /// How long deletions ran at the cap before the brake engaged
    /// (the configured `brake_after`).
    pub sustained: Duration,
}

/// Caps deletions per minute and, when configured, engages the storm brake;
/// shared (in an `Arc`) by everything that deletes. See the module docs.
pub struct DeletionLimiter {
    per_minute: u32,
    window: Duration,
    /// Engage the brake after this long at the cap; zero disables the brake.
    brake_after: Duration,
    braked: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Deletions within the last window.
    recent: VecDeque<Instant>,
    /// Deletions within the last `brake_after`.
    history: VecDeque<Instant>,
}

impl DeletionLimiter {
    /// `per_minute == 0` disables the cap (and the brake).
    pub fn new(per_minute: u32) -> Self {
        Self::with_window(per_minute, Duration::from_secs(60))
    }

    /// A limiter allowing `per_minute` deletions in any span of `window`
    /// ([`Self::new`] uses one minute); no brake until [`Self::with_brake`].
    pub fn with_window(per_minute: u32, window: Duration) -> Self {
        Self {
            per_minute,
            window,
            brake_after: Duration::ZERO,
            braked: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// Engages the storm brake after `after` at the cap (zero: never).
    pub fn with_brake(mut self, after: Duration) -> Self {
        self.brake_after = after;
        self
    }

    /// Whether the storm brake is engaged: it stays so until the process
    /// restarts.
    pub fn is_braked(&self) -> bool {
        self.braked.load(Ordering::SeqCst)
    }

    fn braked(&self) -> Braked {
        Braked {
            per_minute: self.per_minute,
            sustained: self.brake_after,
        }
    }

    /// Waits until one more deletion fits in the window, then takes it; fails
    /// once the storm brake is engaged.
    pub async fn acquire(&self) -> Result<(), Braked> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let mut alerted = false;
        loop {
            if self.is_braked() {
                return Err(self.braked());
            }
            let wait = {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                let older = |span: Duration| move |t: &Instant| now.duration_since(*t) >= span;
                while state.recent.front().is_some_and(older(self.window)) {
                    state.recent.pop_front();
                }
                while state.history.front().is_some_and(older(self.brake_after)) {
                    state.history.pop_front();
                }
                if state.recent.len() < self.per_minute as usize {
                    state.recent.push_back(now);
                    if !self.brake_after.is_zero() {
                        state.history.push_back(now);
                    }
                    None
                } else {
                    if self.at_cap_throughout(state.history.len()) {
                        self.engage();
                        return Err(self.braked());
                    }
                    state
                        .recent
                        .front()
                        .map(|t| self.window.saturating_sub(now.duration_since(*t)))
                }
            };
            match wait {
                None => {
                    if alerted {
                        events::rate_limited(false);
                        tracing::warn!("deletion rate back under the cap; resuming");
                    }
                    return Ok(());
                }
                Some(wait) => {
                    if !alerted {
                        alerted = true;
                        events::rate_limited(true);
                        tracing::error!(
                            cap_per_minute = self.per_minute,
                            "deletion rate cap reached: pausing deletions. A flood of terminations may be \
                             a mistake; check the Auto Scaling activity history. Raise \
                             pipeline.max_deletions_per_minute if this is expected"
                        );
                    }
                    tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
                }
            }
        }
    }

    /// Whether `deletions` within `brake_after` means the cap was reached in
    /// every window of it (a storm, not a burst).
    fn at_cap_throughout(&self, deletions: usize) -> bool {
        if self.brake_after.is_zero() {
            return false;
        }
        let windows = (self.brake_after.as_secs_f64() / self.window.as_secs_f64())
            .floor()
            .max(1.0);
        deletions as f64 >= f64::from(self.per_minute) * windows
    }

    fn engage(&self) {
        if !self.braked.swap(true, Ordering::SeqCst) {
            events::storm_brake_engaged();
            tracing::error!(
                cap_per_minute = self.per_minute,
                sustained = ?self.brake_after,
                "STORM BRAKE ENGAGED: deletions ran at the cap without a break; no more deletions \
                 until an operator acts. Messages are held in the queue. Check the Auto Scaling \
                 activity history and the queue, then restart nodereaper to release the brake"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn caps_deletions_per_window() {
        let limiter = DeletionLimiter::with_window(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await.expect("no brake");
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        limiter.acquire().await.expect("no brake");
        assert!(
            start.elapsed() >= Duration::from_secs(60),
            "fourth deletion must wait for the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_disables() {
        let limiter = DeletionLimiter::new(0).with_brake(Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await.expect("no cap, no brake");
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_storm_engages_the_brake_until_restart() {
        let limiter = DeletionLimiter::with_window(2, Duration::from_secs(60))
            .with_brake(Duration::from_secs(300));
        let start = Instant::now();
        let mut done = 0;
        let err = loop {
            match limiter.acquire().await {
                Ok(()) => done += 1,
                Err(e) => break e,
            }
        };
        // Two per minute in each of the five windows, then no more.
        assert_eq!(done, 10, "deletions before the brake");
        assert!(start.elapsed() >= Duration::from_secs(240));
        assert!(err.to_string().contains("storm brake"), "{err}");
        assert!(limiter.is_braked());
        // Even after a quiet hour, the brake holds.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(limiter.acquire().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_with_breaks_never_brake() {
        let limiter = DeletionLimiter::with_window(2, Duration::from_secs(60))
            .with_brake(Duration::from_secs(120));
        for _ in 0..10 {
            // A burst at the cap, then a quiet window.
            for _ in 0..3 {
                limiter.acquire().await.expect("no brake in bursts");
            }
            tokio::time::advance(Duration::from_secs(180)).await;
        }
        assert!(!limiter.is_braked());
    }
}

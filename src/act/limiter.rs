//! Deletion rate cap: a flood of terminations may be a mistake (a bad deploy
//! scaling a group to zero, a forged event storm). Above the cap, deletions
//! pause and an alert is raised (log + `nodereaper_deletion_rate_limited`).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::telemetry::metrics;

pub struct DeletionLimiter {
    per_minute: u32,
    window: Duration,
    recent: Mutex<VecDeque<Instant>>,
}

impl DeletionLimiter {
    /// `per_minute == 0` disables the cap.
    pub fn new(per_minute: u32) -> Self {
        Self::with_window(per_minute, Duration::from_secs(60))
    }

    pub fn with_window(per_minute: u32, window: Duration) -> Self {
        Self {
            per_minute,
            window,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more deletion fits in the window, then takes it.
    pub async fn acquire(&self) {
        if self.per_minute == 0 {
            return;
        }
        let mut alerted = false;
        loop {
            let wait = {
                let mut recent = self.recent.lock().await;
                let now = Instant::now();
                while recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    recent.pop_front();
                }
                if recent.len() < self.per_minute as usize {
                    recent.push_back(now);
                    None
                } else {
                    recent
                        .front()
                        .map(|t| self.window.saturating_sub(now.duration_since(*t)))
                }
            };
            match wait {
                None => {
                    if alerted {
                        metrics::get().rate_limited.set(0);
                        tracing::warn!("deletion rate back under the cap; resuming");
                    }
                    return;
                }
                Some(wait) => {
                    if !alerted {
                        alerted = true;
                        metrics::get().rate_limited.set(1);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn caps_deletions_per_window() {
        let limiter = DeletionLimiter::with_window(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        limiter.acquire().await;
        assert!(
            start.elapsed() >= Duration::from_secs(60),
            "fourth deletion must wait for the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_disables() {
        let limiter = DeletionLimiter::new(0);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}

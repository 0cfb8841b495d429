//! Actions on the outside world: back up, then delete registrations.

pub mod backup;
pub mod estate;
pub mod groups;
pub mod limiter;
pub mod reaper;
pub mod resolve;
pub mod targets;

pub use limiter::DeletionLimiter;
pub use reaper::{Outcome, Plan, ReapError, Reaper, Recheck, Request, RequestSource, Target};
pub use targets::{TargetJournal, TargetSet};

//! The deletion journal: a restorable backup of every object before it is
//! deleted. No backup, no delete.
//!
//! Layout of the local journal directory (files mode 0600, directories 0700):
//! - `index.jsonl`: one [`JournalEntry`] summary per line (without the
//!   objects; `objects` names the objects written for it);
//! - `objects/<entry id>.<kind>.json`, kind `node`, `client`, `keys`,
//!   `node_acl`, `client_acl`;
//! - `index.lock`: advisory lock serialising appends, repairs and prunes
//!   between processes;
//! - `index.rejected`: lines a repair took out of the index (kept, not lost).
//!
//! Objects are written and fsynced before the index line, so an index line
//! normally has its objects; one that has not is reported, not fatal.

pub mod local;
pub mod s3;

use chrono::{DateTime, Utc};

use crate::ports::Journal;

pub use crate::core::journal::{Damage, JournalEntry, Presence, OBJECT_KINDS};
pub use crate::ports::JournalError;
pub use local::LocalJournal;
pub use s3::S3Journal;

/// Removes the entries older than `retention` (the daemon runs this daily;
/// `nodereaper journal prune` on demand). Returns how many were removed.
pub async fn prune(
    journal: &dyn Journal,
    retention: std::time::Duration,
) -> Result<usize, JournalError> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(retention)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    journal.remove_before(cutoff).await
}

/// Filters for `nodereaper journal` and `restore --since`.
#[derive(Debug, Clone, Default)]
/// Every set field must match; `None` fields match everything.
pub struct EntryFilter {
    /// Only entries recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries of this exact node name.
    pub node: Option<String>,
    /// Only entries of this EC2 instance id (entries without one never match).
    pub instance: Option<String>,
}

impl EntryFilter {
    /// Whether entry `e` passes every filter that is set.
    pub fn matches(&self, e: &JournalEntry) -> bool {
        self.since.is_none_or(|s| e.recorded_at >= s)
            && self.node.as_ref().is_none_or(|n| &e.node_name == n)
            && self
                .instance
                .as_ref()
                .is_none_or(|i| e.instance_id.as_ref() == Some(i))
    }
}

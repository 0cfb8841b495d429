//! The Chef targets of one deployment: one [`Reaper`] per target (its own
//! Chef API, identity and protection; the journal and the rate cap shared),
//! chosen per event by [`crate::core::routing::route`]. The reaper itself
//! knows nothing of targets.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::Reaper;
use crate::adapters::journal::{JournalEntry, JournalError};
use crate::core::routing::{route, Route, RouteInput, RoutingTable, Unroutable};
use crate::ports::Journal;

/// Every target's reaper, by name, and the rules that pick one.
pub struct TargetSet {
    reapers: BTreeMap<String, Arc<Reaper>>,
    /// The routing rules (target names, account routes).
    pub table: RoutingTable,
}

impl TargetSet {
    /// One target, `default`: a single `[chef]` section.
    pub fn single(reaper: Arc<Reaper>) -> Self {
        let name = crate::config::DEFAULT_TARGET.to_string();
        Self {
            table: RoutingTable {
                targets: vec![name.clone()],
                accounts: Vec::new(),
            },
            reapers: BTreeMap::from([(name, reaper)]),
        }
    }

    /// Several targets; `table` must name exactly these.
    pub fn new(reapers: Vec<(String, Arc<Reaper>)>, table: RoutingTable) -> Self {
        Self {
            reapers: reapers.into_iter().collect(),
            table,
        }
    }

    /// The reaper of target `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Reaper>> {
        self.reapers.get(name)
    }

    /// The target names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.reapers.keys().map(String::as_str)
    }

    /// The target of one event and its reaper, or why there is none.
    pub fn route(&self, input: &RouteInput<'_>) -> Result<(Route, Arc<Reaper>), Unroutable> {
        let routed = route(&self.table, input)?;
        let reaper = self
            .get(&routed.target)
            .cloned()
            .ok_or_else(|| Unroutable(format!("target {:?} has no Chef client", routed.target)))?;
        Ok((routed, reaper))
    }
}

/// A journal that records the target's name in every entry it writes (the
/// other calls pass through): restore finds the way back by it.
pub struct TargetJournal {
    /// The shared journal.
    pub inner: Arc<dyn Journal>,
    /// The target's name.
    pub target: String,
}

#[async_trait]
impl Journal for TargetJournal {
    async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let mut entry = entry.clone();
        entry.target = Some(self.target.clone());
        self.inner.record(&entry).await
    }
    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.entries().await
    }
    async fn entries_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.entries_since(since).await
    }
    async fn verify(&self) -> Result<Vec<crate::core::journal::Damage>, JournalError> {
        self.inner.verify().await
    }
    async fn remove_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, JournalError> {
        self.inner.remove_before(cutoff).await
    }
    async fn probe(&self) -> Result<(), JournalError> {
        self.inner.probe().await
    }
}

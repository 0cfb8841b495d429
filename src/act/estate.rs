//! The reaper's estate step: every configured target (chef-vault, webhook,
//! Automate) backs up into the journal entry before the Chef deletion and
//! cleans after it succeeded ([`crate::ports::estate`]).

use std::sync::Arc;

use crate::core::journal::{EstateBackup, JournalEntry};
use crate::ports::estate::{Departure, EstateError, EstateTarget};
use crate::telemetry::events;

/// The targets a deletion also cleans, in order; empty: none configured.
pub type EstateTargets = Vec<Arc<dyn EstateTarget>>;

/// What the targets see of a deletion about to happen.
pub fn departure(
    entry: &JournalEntry,
    region: Option<&crate::core::placement::Placement>,
) -> Departure {
    Departure {
        journal_id: entry.id.clone(),
        source: entry.source.clone(),
        instance_id: entry.instance_id.clone(),
        account: region.and_then(|p| p.account.clone()),
        region: region.map(|p| p.region.clone()),
        group: entry.group.clone(),
        node_name: entry.node_name.clone(),
        client_name: entry
            .client_name
            .clone()
            .unwrap_or_else(|| entry.node_name.clone()),
        node: entry.node.clone(),
    }
}

/// Asks every target for its backup and adds it to `entry` (before the
/// entry is recorded, so before anything changes). A failed read stops the
/// deletion, like a failed journal write.
pub async fn back_up(
    targets: &EstateTargets,
    gone: &Departure,
    entry: &mut JournalEntry,
) -> Result<(), EstateError> {
    for target in targets {
        if let Some(data) = target.backup(gone).await? {
            entry.estate.push(EstateBackup {
                target: target.name().to_string(),
                data,
            });
        }
    }
    Ok(())
}

/// Cleans every target after the Chef deletion succeeded. Every target is
/// tried; the first failure is returned (and logged and counted here: the
/// message's retry finds the registration gone and re-runs the targets from
/// the journal entry, [`crate::act::Reaper::resume_estate`]).
pub async fn clean(
    targets: &EstateTargets,
    gone: &Departure,
    estate: &[EstateBackup],
) -> Result<(), EstateError> {
    let mut first_error = None;
    for target in targets {
        let backup = estate
            .iter()
            .find(|b| b.target == target.name())
            .map(|b| &b.data);
        match target.clean(gone, backup).await {
            Ok(done) => events::estate_cleaned(target.name(), &gone.node_name, &done),
            Err(e) => {
                events::estate_failed(target.name(), &gone.node_name, &e);
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

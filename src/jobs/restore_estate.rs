//! `restore`'s estate step: after the node and client are back, each
//! estate target puts back what its clean removed (chef-vault entries) or
//! says why it cannot (a webhook cannot be unsent).

use crate::act::estate::EstateTargets;
use crate::core::journal::{EstateBackup, JournalEntry};
use crate::jobs::restore::Restored;

/// The estate backups of a registration's entries (newest first), one per
/// target: the newest.
pub fn newest_per_target(entries: &[JournalEntry]) -> Vec<EstateBackup> {
    let mut sorted: Vec<&JournalEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.recorded_at));
    let mut out: Vec<EstateBackup> = Vec::new();
    for b in sorted.iter().flat_map(|e| &e.estate) {
        if !out.iter().any(|o| o.target == b.target) {
            out.push(b.clone());
        }
    }
    out
}

/// Restores every backup whose target is configured; notes what happened
/// (a failure is noted `FAILED`, which makes the restore partial). A backup
/// whose target is not configured is noted, not lost.
pub async fn restore(targets: &EstateTargets, backups: &[EstateBackup], out: &mut Restored) {
    for backup in backups {
        let Some(target) = targets.iter().find(|t| t.name() == backup.target) else {
            out.notes.push(format!(
                "estate {}: backed up but not configured here; enable it to restore",
                backup.target
            ));
            continue;
        };
        match target.restore(&backup.data).await {
            Ok(done) => out.notes.push(format!("estate {}: {done}", backup.target)),
            Err(e) => out
                .notes
                .push(format!("FAILED estate {}: {e}", backup.target)),
        }
    }
}

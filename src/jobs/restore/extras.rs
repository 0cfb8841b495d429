//! Restore's steps beside the client and node themselves: the live node
//! `--force` replaces (checked and journaled first) and the client's group
//! memberships.

use serde_json::Value;

use super::{Registration, RestoreError, Restored};
use crate::core::chef::AclObject;
use crate::core::journal::JournalEntry;
use crate::ports::{ChefApi, ChefError, Journal};

/// `force`: the live node must be this registration (same instance, or
/// no instance recorded on either side), and is journaled before it is
/// replaced.
pub(super) async fn back_up_live_node(
    chef: &dyn ChefApi,
    reg: &Registration,
    live: &Value,
    journal: Option<&dyn Journal>,
    out: &mut Restored,
) -> Result<(), RestoreError> {
    let live_id = crate::act::resolve::recorded_instance_id(live);
    let backup_id = reg
        .node
        .as_ref()
        .and_then(crate::act::resolve::recorded_instance_id)
        .or(reg.instance_id.as_deref());
    if let Some(live_id) = live_id {
        if backup_id != Some(live_id) {
            return Err(RestoreError::LiveInstance {
                node: reg.node_name.clone(),
                live: live_id.to_string(),
                backup: backup_id.unwrap_or("(none recorded)").to_string(),
            });
        }
    }
    let Some(journal) = journal else {
        return Err(RestoreError::ForceNeedsJournal(reg.node_name.clone()));
    };
    let mut entry = JournalEntry::new(
        "restore",
        "replaced by restore --force",
        None,
        live_id.map(str::to_string),
        &reg.node_name,
        None,
        chef.server(),
        Some(live.clone()),
        None,
    );
    if chef.server_info().await?.has_acl_endpoint() {
        match chef.get_acl(AclObject::Node, &reg.node_name).await {
            Ok(acl) => entry.node_acl = acl,
            Err(e @ ChefError::Forbidden { .. }) => entry
                .notes
                .push(format!("ACL of node {} not backed up: {e}", reg.node_name)),
            Err(e) => return Err(e.into()),
        }
    }
    journal
        .record(&entry)
        .await
        .map_err(|source| RestoreError::LiveBackup {
            node: reg.node_name.clone(),
            source,
        })?;
    out.notes.push(format!(
        "the node it replaced was backed up first: journal entry {}",
        entry.id
    ));
    Ok(())
}

/// Puts the re-created client back into the groups that listed it; each
/// failure is a note (the group may be gone, or nodereaper may not update
/// it: `admins` needs update on that group).
pub(super) async fn restore_memberships(
    chef: &dyn ChefApi,
    reg: &Registration,
    out: &mut Restored,
) {
    let (Some(client), Some(groups)) = (&reg.client_name, &reg.client_groups) else {
        return;
    };
    for name in groups {
        let result = match chef.get_group(name).await {
            Ok(Some(g)) if g.lists_client(client) => continue,
            Ok(Some(g)) if !g.is_writable() => Err(
                "the server did not say which of its actors are clients and which users"
                    .to_string(),
            ),
            Ok(Some(g)) => chef
                .put_group(&g.with_client(client))
                .await
                .map_err(|e| e.to_string()),
            Ok(None) => Err("the group no longer exists".to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            out.notes.push(format!(
                "FAILED to put client {client} back into group {name}: {e}"
            ));
        }
    }
}

//! The backup before a delete: besides the node and client JSON the reaper
//! reads itself, what the server keeps beside them (keys, ACLs, group
//! memberships, server kind).

use crate::adapters::chef::ChefError;
use crate::core::chef::AclObject;
use crate::core::journal::JournalEntry;
use crate::ports::ChefApi;

/// Adds what the server keeps beside the node and client JSON: the
/// server kind and API version, the client's keys (Chef Infra Server API
/// v1) and the node's and client's ACLs, where the server has them. Call
/// before [`crate::ports::Journal::record`]. An ACL or key list nodereaper may not read
/// (403) becomes a note; other failures are errors (no backup, no delete).
pub async fn add_server_extras(
    entry: &mut JournalEntry,
    chef: &dyn ChefApi,
) -> Result<(), ChefError> {
    let info = chef.server_info().await?;
    entry.server_kind = Some(info.kind);
    entry.api_version = Some(info.api_version);
    if let (Some(name), Some(_)) = (entry.client_name.clone(), &entry.client) {
        if info.has_keys_endpoint() {
            match chef.client_keys(&name).await {
                Ok(keys) => entry.client_keys = keys,
                Err(e @ ChefError::Forbidden { .. }) => entry
                    .notes
                    .push(format!("keys of client {name} not backed up: {e}")),
                Err(e) => return Err(e),
            }
        }
        if info.has_acl_endpoint() {
            match chef.get_acl(AclObject::Client, &name).await {
                Ok(acl) => entry.client_acl = acl,
                Err(e @ ChefError::Forbidden { .. }) => entry
                    .notes
                    .push(format!("ACL of client {name} not backed up: {e}")),
                Err(e) => return Err(e),
            }
        }
    }
    if entry.client.is_some() && info.has_groups_endpoint() {
        super::groups::back_up_memberships(entry, chef).await?;
    }
    if entry.node.is_some() && info.has_acl_endpoint() {
        match chef.get_acl(AclObject::Node, &entry.node_name).await {
            Ok(acl) => entry.node_acl = acl,
            Err(e @ ChefError::Forbidden { .. }) => entry.notes.push(format!(
                "ACL of node {} not backed up: {e}",
                entry.node_name
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

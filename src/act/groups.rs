//! Group memberships: the protection check (members of `admins` and of
//! `protect.client_groups` are never deleted, on every path) and the
//! backup of the groups that list a client (deleting a client removes it
//! from every group on Chef Infra Server; restore puts it back).

use std::collections::HashSet;

use crate::adapters::chef::ChefError;
use crate::core::groups::MAX_GROUPS_FOLLOWED;
use crate::core::journal::JournalEntry;
use crate::core::verify::Protection;
use crate::ports::ChefApi;

/// Why `client` must not be deleted because of a group it belongs to, if
/// it must not. Groups come from [`ChefApi::get_group_cached`] (at most a
/// minute old). A group nodereaper may not read is an error (403: the
/// deletion is held, not done); a server without groups cannot say who is
/// an admin there (goiardi keeps the client body's `admin` flag, checked
/// by [`Protection::client_reason`]), so only configured groups refuse.
pub async fn membership_reason(
    chef: &dyn ChefApi,
    protection: &Protection,
    client: &str,
) -> Result<Option<String>, ChefError> {
    let info = chef.server_info().await?;
    if !info.has_groups_endpoint() {
        let configured = protection.configured_client_groups();
        return Ok((!configured.is_empty()).then(|| {
            format!(
                "protect.client_groups {configured:?} is set but the {} server has no groups to check \
                 client {client:?} against",
                info.kind
            )
        }));
    }
    for top in protection.protected_groups() {
        if let Some(path) = find_member(chef, &top, client).await? {
            return Ok(Some(format!(
                "client {client:?} is a member of protected group {path}"
            )));
        }
    }
    Ok(None)
}

/// The path (`admins > ops`) through which `top` lists `client`, following
/// nested groups; None when it does not.
async fn find_member(
    chef: &dyn ChefApi,
    top: &str,
    client: &str,
) -> Result<Option<String>, ChefError> {
    let mut queue = vec![(top.to_string(), top.to_string())];
    let mut seen = HashSet::new();
    while let Some((name, path)) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if seen.len() > MAX_GROUPS_FOLLOWED {
            return Ok(Some(format!(
                "{path} (more than {MAX_GROUPS_FOLLOWED} nested groups: not followed further)"
            )));
        }
        let Some(group) = chef.get_group_cached(&name).await? else {
            if name == top {
                tracing::warn!(group = %name, "protected group does not exist on the Chef server");
            }
            continue;
        };
        if group.lists_client(client) {
            return Ok(Some(path));
        }
        for sub in &group.groups {
            queue.push((sub.clone(), format!("{path} > {sub}")));
        }
    }
    Ok(None)
}

/// Records in `entry` the groups that list its client (Chef Infra Server),
/// so restore can put the client back into them. A group nodereaper may
/// not read becomes a note naming it (the membership is then unknown).
pub async fn back_up_memberships(
    entry: &mut JournalEntry,
    chef: &dyn ChefApi,
) -> Result<(), ChefError> {
    let Some(client) = entry.client_name.clone() else {
        return Ok(());
    };
    let names = match chef.list_groups().await {
        Ok(names) => names,
        Err(e @ ChefError::Forbidden { .. }) => {
            entry.notes.push(format!(
                "group memberships of client {client} not backed up: {e}"
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut member_of = Vec::new();
    for name in names {
        match chef.get_group_cached(&name).await {
            Ok(Some(group)) if group.lists_client(&client) => member_of.push(name),
            Ok(_) => {}
            Err(e @ ChefError::Forbidden { .. }) => entry.notes.push(format!(
                "group {name} not readable, so whether client {client} belongs to it is unknown: {e}"
            )),
            Err(e) => return Err(e),
        }
    }
    entry.client_groups = Some(member_of);
    Ok(())
}

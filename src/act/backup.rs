//! The backup before a delete: besides the node and client JSON the reaper
//! reads itself, what the server keeps beside them (keys, ACLs, group
//! memberships, server kind).

use crate::adapters::chef::ChefError;
use crate::core::chef::AclObject;
use crate::core::journal::{AclBackup, JournalEntry};
use crate::ports::ChefApi;
use crate::telemetry::events;

/// What a deletion does when the server refuses to show an ACL (403: the
/// client lacks GRANT), from `journal.require_acl_backup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AclBackupPolicy {
    /// Delete anyway: the entry records `acl_backup: "forbidden"` and a
    /// note per ACL (the default).
    #[default]
    Optional,
    /// No ACL backup, no delete: the 403 is the reap's error (messages are
    /// held, nothing is deleted).
    Required,
}

impl AclBackupPolicy {
    /// From `journal.require_acl_backup`.
    pub fn from_required(required: bool) -> Self {
        if required {
            AclBackupPolicy::Required
        } else {
            AclBackupPolicy::Optional
        }
    }
}

/// [`add_server_extras_with`] with [`AclBackupPolicy::Optional`].
pub async fn add_server_extras(
    entry: &mut JournalEntry,
    chef: &dyn ChefApi,
) -> Result<(), ChefError> {
    add_server_extras_with(entry, chef, AclBackupPolicy::Optional).await
}

/// Adds what the server keeps beside the node and client JSON: the
/// server kind and API version, the client's keys (Chef Infra Server API
/// v1) and the node's and client's ACLs, where the server has them. Call
/// before [`crate::ports::Journal::record`]. A key list nodereaper may not
/// read (403) becomes a note; a refused ACL a note and `acl_backup:
/// "forbidden"`, or the error under [`AclBackupPolicy::Required`]. Other
/// failures are errors (no backup, no delete).
pub async fn add_server_extras_with(
    entry: &mut JournalEntry,
    chef: &dyn ChefApi,
    policy: AclBackupPolicy,
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
    }
    if entry.client.is_some() && info.has_groups_endpoint() {
        super::groups::back_up_memberships(entry, chef).await?;
    }
    if !info.has_acl_endpoint() {
        return Ok(());
    }
    let mut objects = Vec::new();
    if let (Some(name), Some(_)) = (entry.client_name.clone(), &entry.client) {
        objects.push((AclObject::Client, name));
    }
    if entry.node.is_some() {
        objects.push((AclObject::Node, entry.node_name.clone()));
    }
    for (object, name) in objects {
        let acl = match chef.get_acl(object, &name).await {
            Ok(acl) => acl,
            Err(e @ ChefError::Forbidden { .. }) => {
                refused_acl(entry, object, &name, e, policy)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        match object {
            AclObject::Client => entry.client_acl = acl,
            AclObject::Node => entry.node_acl = acl,
        }
        entry.acl_backup.get_or_insert(AclBackup::BackedUp);
    }
    Ok(())
}

/// A 403 on an ACL read: the error under [`AclBackupPolicy::Required`],
/// else a note and `acl_backup: "forbidden"`.
fn refused_acl(
    entry: &mut JournalEntry,
    object: AclObject,
    name: &str,
    e: ChefError,
    policy: AclBackupPolicy,
) -> Result<(), ChefError> {
    events::acl_backup_forbidden();
    if policy == AclBackupPolicy::Required {
        return Err(require_acl_backup_error(e, &entry.node_name));
    }
    entry.acl_backup = Some(AclBackup::Forbidden);
    entry.notes.push(format!(
        "ACL of {} {name} not backed up: {e}",
        match object {
            AclObject::Node => "node",
            AclObject::Client => "client",
        }
    ));
    Ok(())
}

/// The refusal under `journal.require_acl_backup = true`: the same 403,
/// saying that nothing is deleted because of it.
fn require_acl_backup_error(e: ChefError, node: &str) -> ChefError {
    match e {
        ChefError::Forbidden {
            server,
            method,
            object,
            client,
            detail,
        } => ChefError::Forbidden {
            server,
            method,
            object,
            client,
            detail: format!(
                "{detail}; journal.require_acl_backup = true: node {node} is not deleted without its ACL backup"
            ),
        },
        other => other,
    }
}

/// What probing one ACL found.
#[derive(Debug)]
pub enum AclProbe {
    /// The ACL of this object was shown: grant is held there.
    Allowed(String),
    /// The server refused it (403): grant is missing.
    Forbidden(ChefError),
    /// Nothing to probe (no such object); why.
    NotMeasured(String),
}

/// Whether nodereaper may read ACLs, without changing anything: GETs the
/// ACL of an existing node (the first of `GET /nodes`, up to 5 tried) and
/// of the client named after it (`client_of`), never of `own_client`,
/// whose ACL a client can always read. Empty when the server has no ACLs
/// (goiardi).
pub async fn probe_acl_backup(
    chef: &dyn ChefApi,
    own_client: &str,
    client_of: &dyn Fn(&str) -> String,
) -> Result<Vec<(AclObject, AclProbe)>, ChefError> {
    if !chef.server_info().await?.has_acl_endpoint() {
        return Ok(Vec::new());
    }
    let nodes = chef.list_nodes().await?;
    let mut node = AclProbe::NotMeasured("no node exists".into());
    let mut client = AclProbe::NotMeasured("no client named after a node exists".into());
    for name in nodes.iter().take(5) {
        if matches!(node, AclProbe::NotMeasured(_)) {
            node = probe_one(chef, AclObject::Node, name).await?;
        }
        let c = client_of(name);
        if c != own_client && matches!(client, AclProbe::NotMeasured(_)) {
            client = probe_one(chef, AclObject::Client, &c).await?;
        }
    }
    Ok(vec![(AclObject::Node, node), (AclObject::Client, client)])
}

async fn probe_one(
    chef: &dyn ChefApi,
    object: AclObject,
    name: &str,
) -> Result<AclProbe, ChefError> {
    match chef.get_acl(object, name).await {
        Ok(Some(_)) => Ok(AclProbe::Allowed(format!(
            "/{}/{name}",
            object.collection()
        ))),
        Ok(None) => Ok(AclProbe::NotMeasured(format!(
            "/{}/{name} does not exist",
            object.collection()
        ))),
        Err(e @ ChefError::Forbidden { .. }) => Ok(AclProbe::Forbidden(e)),
        Err(e) => Err(e),
    }
}

/// At start-up: probes ACL access ([`probe_acl_backup`]) and, when the
/// server refuses it, says so once (log and the `acl_backup_forbidden`
/// gauge). A probe that fails otherwise (server down) is only logged at
/// debug: each backup records what it could not read anyway.
pub async fn announce_acl_backup(
    chef: &dyn ChefApi,
    own_client: &str,
    client_of: &dyn Fn(&str) -> String,
    policy: AclBackupPolicy,
) {
    match probe_acl_backup(chef, own_client, client_of).await {
        Ok(probes) => {
            let refused: Vec<String> = probes
                .iter()
                .filter_map(|(_, p)| match p {
                    AclProbe::Forbidden(e) => Some(e.to_string()),
                    _ => None,
                })
                .collect();
            if !refused.is_empty() {
                events::acl_backup_unavailable(
                    &refused.join(" | "),
                    policy == AclBackupPolicy::Required,
                );
            }
        }
        Err(e) => tracing::debug!(error = %e, "ACL backup probe failed at start-up"),
    }
}

//! `nodereaper restore`: recreate a registration from the journal.
//!
//! A registration is restored, not an entry: a retry after a partial failure
//! (client deleted, node DELETE timed out) or two events for one instance
//! write several entries, and a newer one may hold only what was left. The
//! newest node and the newest client backed up for that node name (same
//! instance) are merged. Order on the server: the client first (with its
//! original public key(s) where they were backed up), then the node, then
//! the ACLs of both (Chef Infra Server), so the instance's own client may
//! save its node again.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::core::chef::ACL_PERMISSIONS;
use crate::core::chef::{AclObject, ClientKey, ServerInfo};
use crate::core::journal::{EntryFilter, JournalEntry, Presence};
use crate::ports::{ChefApi, Journal};
use crate::ports::{ChefError, JournalError};

mod extras;
mod target;
use extras::{back_up_live_node, restore_memberships};
pub use target::{restore_target, NoRestoreTarget, RestoreTarget};

/// Top-level node keys the node endpoints accept on create/update. Anything
/// else in a backup is server-managed or foreign and is dropped.
pub const NODE_KEYS: &[&str] = &[
    "name",
    "chef_type",
    "json_class",
    "chef_environment",
    "run_list",
    "normal",
    "default",
    "override",
    "automatic",
    "policy_name",
    "policy_group",
];

/// Everything the journal holds about one registration, merged across its
/// entries (newest first).
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// Node name.
    pub node_name: String,
    /// The Chef target it was deleted from (`[[chef.targets]]` name), as the
    /// newest entry records it; `None` in single-target journals.
    pub target: Option<String>,
    /// The server URL the newest entry records.
    pub chef_server: String,
    /// The instance the registration belonged to, when recorded.
    pub instance_id: Option<String>,
    /// Entries merged, newest first.
    pub entry_ids: Vec<String>,
    /// Entry the node comes from.
    pub node_entry: Option<String>,
    /// The newest backed-up node.
    pub node: Option<Value>,
    /// The node's ACL, from the node's entry or else the newest holding one.
    pub node_acl: Option<Value>,
    /// The client's name, as the newest entry naming one records it.
    pub client_name: Option<String>,
    /// Entry the client comes from.
    pub client_entry: Option<String>,
    /// The newest backed-up client body.
    pub client: Option<Value>,
    /// The client's public keys (Chef Infra Server `/clients/NAME/keys`).
    pub client_keys: Option<Vec<ClientKey>>,
    /// The client's ACL.
    pub client_acl: Option<Value>,
    /// The groups that listed the client when it was deleted.
    pub client_groups: Option<Vec<String>>,
    /// Every entry recorded the client as already gone when it was read.
    pub client_already_gone: bool,
    /// Damage found in the merged entries.
    pub damage: Vec<String>,
    /// The estate targets' backups (chef-vault entries...), newest per target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub estate: Vec<crate::core::journal::EstateBackup>,
}

impl Registration {
    /// Merges the entries of one registration (any order).
    pub fn merge(mut entries: Vec<JournalEntry>) -> Option<Registration> {
        entries.sort_by(|a, b| b.recorded_at.cmp(&a.recorded_at).then(b.id.cmp(&a.id)));
        let newest = entries.first()?;
        let mut reg = Registration {
            node_name: newest.node_name.clone(),
            target: newest.target.clone(),
            chef_server: newest.chef_server.clone(),
            instance_id: entries.iter().find_map(|e| e.instance_id.clone()),
            entry_ids: entries.iter().map(|e| e.id.clone()).collect(),
            node_entry: None,
            node: None,
            node_acl: None,
            client_name: entries.iter().find_map(|e| e.client_name.clone()),
            client_entry: None,
            client: None,
            client_keys: None,
            client_acl: None,
            client_groups: None,
            client_already_gone: false,
            damage: entries.iter().flat_map(|e| e.damage.clone()).collect(),
            estate: super::restore_estate::newest_per_target(&entries),
        };
        if let Some(e) = entries.iter().find(|e| e.node.is_some()) {
            reg.node_entry = Some(e.id.clone());
            reg.node = e.node.clone();
            reg.node_acl = e.node_acl.clone();
        }
        if reg.node_acl.is_none() {
            reg.node_acl = entries.iter().find_map(|e| e.node_acl.clone());
        }
        if let Some(e) = entries
            .iter()
            .find(|e| e.client.is_some() || e.client_keys.is_some())
        {
            reg.client_entry = Some(e.id.clone());
            reg.client = e.client.clone();
            reg.client_keys = e.client_keys.clone();
            reg.client_acl = e.client_acl.clone();
            reg.client_groups = e.client_groups.clone();
            if e.client_name.is_some() {
                reg.client_name = e.client_name.clone();
            }
        } else {
            reg.client_already_gone = entries
                .iter()
                .any(|e| e.client_status == Some(Presence::AlreadyGone));
        }
        if reg.client_acl.is_none() && reg.client_entry.is_some() {
            reg.client_acl = entries.iter().find_map(|e| e.client_acl.clone());
        }
        Some(reg)
    }
}

/// What happened to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAction {
    /// The node did not exist and was created from the backup.
    Created,
    /// The node existed and was replaced by the backup (`force`).
    Replaced,
    /// No entry holds the node.
    AbsentInBackup,
}

/// What happened to the API client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAction {
    /// Created with its backed-up key list (`/clients/NAME/keys`).
    CreatedWithOriginalKeys,
    /// Created with the public key from the backed-up client body.
    CreatedWithOriginalKey,
    /// Created with a NEW key pair (private key in [`Restored::private_key`]).
    CreatedWithNewKey,
    /// A client of that name exists; left as it is.
    Exists,
    /// The client was already gone when nodereaper deleted the node.
    AlreadyGoneBeforeDeletion,
    /// No entry holds the client.
    AbsentInBackup,
}

/// What happened to the ACLs of the node and the re-created client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    /// Every permission was put back.
    Restored,
    /// At least one permission could not be put back (see the notes).
    Failed,
    /// An ACL to restore is not in the journal.
    NotBackedUp,
    /// The server has no ACL endpoints (goiardi).
    NotSupportedByServer,
    /// Nothing was created that has an ACL.
    NotNeeded,
}

macro_rules! snake_case_display {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // The serde names: one spelling for JSON and text.
                match serde_json::to_value(self) {
                    Ok(Value::String(name)) => f.write_str(&name),
                    _ => write!(f, "{self:?}"),
                }
            }
        }
    )*};
}
snake_case_display!(NodeAction, ClientAction, AclAction);

/// The result of restoring one registration.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// Entry the node came from (else the newest merged entry).
    pub entry_id: String,
    /// Node name.
    pub node: String,
    /// What happened to the node.
    pub node_action: NodeAction,
    /// Client name, when one was backed up or recorded.
    pub client: Option<String>,
    /// What happened to the client.
    pub client_action: ClientAction,
    /// What happened to the ACLs.
    pub acl_action: AclAction,
    /// Entries merged, newest first.
    pub entries: Vec<String>,
    /// What the operator must know (journal damage, failures, new keys).
    pub notes: Vec<String>,
    /// The new private key of a client created without its original key;
    /// shown once (stdout or `--key-out`), never stored by nodereaper.
    #[serde(skip)]
    pub private_key: Option<String>,
}

impl Restored {
    /// Nothing done yet for `reg`; journal damage noted.
    fn planned(reg: &Registration) -> Self {
        Restored {
            entry_id: reg
                .node_entry
                .clone()
                .or_else(|| reg.entry_ids.first().cloned())
                .unwrap_or_default(),
            node: reg.node_name.clone(),
            node_action: NodeAction::AbsentInBackup,
            client: reg.client_name.clone(),
            client_action: ClientAction::AbsentInBackup,
            acl_action: AclAction::NotNeeded,
            entries: reg.entry_ids.clone(),
            notes: reg
                .damage
                .iter()
                .map(|d| format!("journal damage: {d}"))
                .collect(),
            private_key: None,
        }
    }

    /// Kept for callers of the earlier single-note form.
    pub fn note(&self) -> Option<String> {
        (!self.notes.is_empty()).then(|| self.notes.join("; "))
    }

    /// Did part of the restore fail (keys or ACLs)?
    pub fn partial(&self) -> bool {
        self.acl_action == AclAction::Failed || self.notes.iter().any(|n| n.starts_with("FAILED"))
    }
}

/// Why a registration could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A Chef request failed.
    #[error(transparent)]
    Chef(#[from] ChefError),
    /// No entry has this id.
    #[error("the journal has no entry {0}")]
    NotFound(String),
    /// The node exists and `force` was not given.
    #[error("node {0:?} exists on the Chef server; not overwriting it (use --force to replace it with the backup)")]
    Exists(String),
    /// `force`, but the live node is another instance's registration.
    #[error("node {node:?} on the Chef server records instance {live}, the backup {backup}: it is another \
             instance's registration, which may be running; not overwriting it (if {live} is gone, \
             `nodereaper deregister {live}` first)")]
    LiveInstance {
        /// The node.
        node: String,
        /// The instance the live node records.
        live: String,
        /// The instance the backup belongs to.
        backup: String,
    },
    /// `force` without a journal to back the live node up to.
    #[error(
        "node {0:?} exists; --force backs it up to the journal first, and no journal was given"
    )]
    ForceNeedsJournal(String),
    /// Backing the live node up failed: it was not overwritten.
    #[error("node {node:?} was not overwritten: its backup could not be written: {source}")]
    LiveBackup {
        /// The node.
        node: String,
        /// The journal's failure.
        #[source]
        source: JournalError,
    },
    /// A step failed after a client was created with a NEW key pair: the
    /// private key travels with the error so it is never lost.
    #[error("{source} (client {client} was created with a new key pair before this failed; its private key is shown with this error)")]
    AfterNewKey {
        /// The client created.
        client: String,
        /// Its private key (PEM), shown once.
        private_key: String,
        /// What failed afterwards.
        #[source]
        source: Box<RestoreError>,
    },
}

impl RestoreError {
    /// The client and private key this error carries, when a client was
    /// created with a new key pair before the failure.
    pub fn new_key(&self) -> Option<(&str, &str)> {
        match self {
            RestoreError::AfterNewKey {
                client,
                private_key,
                ..
            } => Some((client, private_key)),
            _ => None,
        }
    }
}

/// The node as the server will take it back.
pub fn restorable_node(node: &Value) -> Value {
    match node.as_object() {
        Some(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| NODE_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<_, _>>(),
        ),
        None => node.clone(),
    }
}

/// Registrations to restore: one per node name with a matching entry, each
/// merged from every entry of that name and instance (the filter picks the
/// registrations, not the entries merged).
pub async fn select(
    journal: &dyn Journal,
    filter: &EntryFilter,
) -> Result<Vec<Registration>, RestoreError> {
    let all = journal.entries().await?;
    // One registration per target and node name: same-named nodes of two
    // Chef targets are two registrations, never merged.
    let mut newest: std::collections::BTreeMap<(Option<String>, String), JournalEntry> =
        std::collections::BTreeMap::new();
    for e in all.iter().filter(|e| filter.matches(e)) {
        let key = (e.target.clone(), e.node_name.clone());
        match newest.get(&key) {
            Some(existing) if existing.recorded_at > e.recorded_at => {}
            _ => {
                newest.insert(key, e.summary());
            }
        }
    }
    Ok(newest
        .into_values()
        .filter_map(|anchor| {
            // Same name and same instance (or one side unknown): a retry or a
            // second event for this registration, not an older namesake.
            let members: Vec<JournalEntry> = all
                .iter()
                .filter(|e| {
                    e.node_name == anchor.node_name
                        && e.target == anchor.target
                        && e.recorded_at <= anchor.recorded_at
                        && match (&e.instance_id, &anchor.instance_id) {
                            (Some(a), Some(b)) => a == b,
                            _ => true,
                        }
                })
                .cloned()
                .collect();
            Registration::merge(members)
        })
        .collect())
}

/// Recreates one registration: client, node, then ACLs. Refuses, before
/// changing anything, to overwrite an existing node unless `force`; with
/// `force` see [`restore_with`] (the live node is backed up first, which
/// needs a journal).
pub async fn restore(
    chef: &dyn ChefApi,
    reg: &Registration,
    force: bool,
) -> Result<Restored, RestoreError> {
    restore_with(chef, reg, force, None).await
}

/// [`restore`], with the journal the live node is backed up to before
/// `force` replaces it. `force` refuses when the live node records another
/// instance than the backup (another instance's registration, which may
/// be running). A client created with a NEW key pair is never lost: a
/// later failure returns [`RestoreError::AfterNewKey`] carrying its key.
pub async fn restore_with(
    chef: &dyn ChefApi,
    reg: &Registration,
    force: bool,
    journal: Option<&dyn Journal>,
) -> Result<Restored, RestoreError> {
    let info = chef.server_info().await?;
    let mut out = Restored::planned(reg);
    let live = match &reg.node {
        Some(_) => chef.get_node(&reg.node_name).await?,
        None => None,
    };
    if let Some(live) = &live {
        if !force {
            return Err(RestoreError::Exists(reg.node_name.clone()));
        }
        back_up_live_node(chef, reg, live, journal, &mut out).await?;
    }
    let client_created = recreate_client(chef, &info, reg, &mut out).await?;
    let finished = finish(chef, &info, reg, live.is_some(), client_created, &mut out).await;
    match (finished, out.private_key.take()) {
        (Ok(()), key) => {
            out.private_key = key;
            Ok(out)
        }
        (Err(e), None) => Err(e),
        (Err(e), Some(private_key)) => Err(RestoreError::AfterNewKey {
            client: reg.client_name.clone().unwrap_or_default(),
            private_key,
            source: Box::new(e),
        }),
    }
}

/// After the client: its group memberships, the node, the ACLs.
async fn finish(
    chef: &dyn ChefApi,
    info: &ServerInfo,
    reg: &Registration,
    node_exists: bool,
    client_created: bool,
    out: &mut Restored,
) -> Result<(), RestoreError> {
    if client_created {
        restore_memberships(chef, reg, out).await;
    }
    if let Some(node) = &reg.node {
        let body = restorable_node(node);
        out.node_action = if node_exists {
            chef.update_node(&reg.node_name, &body).await?;
            NodeAction::Replaced
        } else {
            chef.create_node(&body).await?;
            NodeAction::Created
        };
    }
    restore_acls(chef, info, reg, client_created, out).await;
    Ok(())
}

/// Might restoring `reg` create its client with a NEW key pair (no key in
/// the journal)? The CLI settles where such a key goes before restoring.
pub fn may_generate_key(reg: &Registration) -> bool {
    let has_client = reg.client.is_some() || reg.client_keys.is_some();
    let has_key = reg.client_keys.as_ref().is_some_and(|k| !k.is_empty())
        || reg
            .client
            .as_ref()
            .and_then(crate::core::chef::client_public_key)
            .is_some();
    reg.client_name.is_some() && has_client && !has_key
}

/// The client, unless it exists or was never backed up. True when created.
async fn recreate_client(
    chef: &dyn ChefApi,
    info: &ServerInfo,
    reg: &Registration,
    out: &mut Restored,
) -> Result<bool, RestoreError> {
    let Some(name) = &reg.client_name else {
        return Ok(false);
    };
    if reg.client.is_some() || reg.client_keys.is_some() {
        if chef.get_client(name).await?.is_some() {
            out.client_action = ClientAction::Exists;
            return Ok(false);
        }
        restore_client(chef, info, reg, name, out).await?;
        return Ok(true);
    }
    if reg.client_already_gone {
        out.client_action = ClientAction::AlreadyGoneBeforeDeletion;
        out.notes.push(format!(
            "client {name} was already gone when nodereaper read it, so no entry holds it; \
             the instance must re-register (or create the client with knife)"
        ));
    }
    Ok(false)
}

/// The ACLs of the restored node and of a re-created client (Chef Infra
/// Server), each permission separately; failures become notes.
async fn restore_acls(
    chef: &dyn ChefApi,
    info: &ServerInfo,
    reg: &Registration,
    client_created: bool,
    out: &mut Restored,
) {
    if !info.has_acl_endpoint() {
        if reg.node.is_some() {
            out.acl_action = AclAction::NotSupportedByServer;
        }
        return;
    }
    let mut wanted = Vec::new();
    if client_created {
        if let Some(name) = &reg.client_name {
            wanted.push((AclObject::Client, name.clone(), reg.client_acl.as_ref()));
        }
    }
    if reg.node.is_some() {
        wanted.push((
            AclObject::Node,
            reg.node_name.clone(),
            reg.node_acl.as_ref(),
        ));
    }
    if !wanted.is_empty() {
        out.acl_action = AclAction::Restored;
    }
    for (object, name, acl) in wanted {
        let kind = object.collection().trim_end_matches('s');
        let Some(acl) = acl else {
            out.acl_action = AclAction::NotBackedUp;
            out.notes.push(format!(
                "no ACL of {kind} {name} in the journal: it now grants nodereaper's client, not the instance's; \
                 on Chef Infra Server the instance's chef-client gets 403 saving its node until \
                 `knife acl add client {} nodes {} read,update` (or re-bootstrapping)",
                reg.client_name.as_deref().unwrap_or("CLIENT"),
                reg.node_name
            ));
            continue;
        };
        for permission in ACL_PERMISSIONS {
            if let Err(e) = chef.put_acl(object, &name, permission, acl).await {
                out.acl_action = AclAction::Failed;
                out.notes.push(format!(
                    "FAILED to restore the {permission} permission of {kind} {name}: {e}"
                ));
            }
        }
    }
}

/// Creates the client with the best key material the journal holds: its
/// key list, else the public key of its body, else a new key pair.
async fn restore_client(
    chef: &dyn ChefApi,
    info: &ServerInfo,
    reg: &Registration,
    name: &str,
    out: &mut Restored,
) -> Result<(), RestoreError> {
    let body = reg.client.as_ref();
    let flag = |k: &str| {
        body.and_then(|c| c.get(k))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let (admin, validator) = (flag("admin"), flag("validator"));
    let keys: Vec<&ClientKey> = reg.client_keys.iter().flatten().collect();
    if !keys.is_empty() && info.has_keys_endpoint() {
        // Keys exactly as they were: the client is created WITHOUT a key,
        // then every backed-up key (`default` included) is added with its
        // own expiration date. POST /clients with `public_key` would make
        // `default` never expire (chef_key.erl default_key_ejson), and a
        // client without a `default` key would gain one.
        chef.create_keyless_client(name, validator).await?;
        out.client_action = ClientAction::CreatedWithOriginalKeys;
        for key in keys {
            if let Err(e) = chef.add_client_key(name, key).await {
                out.notes.push(format!(
                    "FAILED to restore key {:?} of client {name}: {e}",
                    key.name
                ));
            }
        }
        return Ok(());
    }
    let public_key = body
        .and_then(crate::core::chef::client_public_key)
        .or_else(|| {
            // A key list backed up on a server with keys, restored elsewhere.
            keys.first().map(|k| k.public_key.as_str())
        });
    match public_key {
        Some(key) => {
            chef.create_client_returning_key(name, Some(key), admin, validator)
                .await?;
            out.client_action = ClientAction::CreatedWithOriginalKey;
        }
        None => {
            let private = chef
                .create_client_returning_key(name, None, admin, validator)
                .await?;
            out.client_action = ClientAction::CreatedWithNewKey;
            match private {
                Some(pem) => {
                    out.private_key = Some(pem);
                    out.notes.push(format!(
                        "the journal holds no public key of client {name} (Chef Infra Server keeps them under /clients/{name}/keys); \
                         it was created with a NEW key pair: install the private key printed here as the instance's client.pem, \
                         or re-bootstrap the instance"
                    ));
                }
                None => out.notes.push(format!(
                    "FAILED: client {name} was created with a new key but the server returned no private key; \
                     create a key with `knife client key create {name}` or re-bootstrap the instance"
                )),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_unknown_top_level_keys() {
        let node = json!({"name": "n", "run_list": [], "automatic": {"a": 1}, "url": "x", "chef_guid": "y"});
        let got = restorable_node(&node);
        assert_eq!(
            got,
            json!({"name": "n", "run_list": [], "automatic": {"a": 1}})
        );
    }

    fn entry(node: Option<Value>, client: Option<Value>) -> JournalEntry {
        JournalEntry::new(
            "event",
            "test",
            None,
            Some("i-0123456789abcdef0".into()),
            "web-1",
            Some("web-1".into()),
            "http://chef",
            node,
            client,
        )
    }

    #[test]
    fn merge_takes_the_newest_node_and_the_newest_client() {
        let first = entry(
            Some(json!({"name": "web-1", "v": 1})),
            Some(json!({"name": "web-1", "public_key": "K"})),
        );
        // The retry: the client was already deleted.
        let mut retry = entry(Some(json!({"name": "web-1", "v": 2})), None);
        retry.recorded_at = first.recorded_at + chrono::Duration::seconds(5);
        assert_eq!(retry.client_status, Some(Presence::AlreadyGone));
        let reg = Registration::merge(vec![first.clone(), retry.clone()]).expect("merged");
        assert_eq!(reg.node.as_ref().expect("node")["v"], 2);
        assert_eq!(reg.node_entry.as_deref(), Some(retry.id.as_str()));
        assert_eq!(reg.client.as_ref().expect("client")["public_key"], "K");
        assert_eq!(reg.client_entry.as_deref(), Some(first.id.as_str()));
        assert!(!reg.client_already_gone);
        // Only "already gone" entries: recorded as such, not as "none".
        let reg = Registration::merge(vec![retry]).expect("merged");
        assert!(reg.client.is_none() && reg.client_already_gone);
    }

    #[test]
    fn actions_read_the_same_in_json_and_text() {
        let cases = [
            (
                NodeAction::AbsentInBackup.to_string(),
                json!(NodeAction::AbsentInBackup),
            ),
            (
                ClientAction::AlreadyGoneBeforeDeletion.to_string(),
                json!(ClientAction::AlreadyGoneBeforeDeletion),
            ),
            (
                AclAction::NotSupportedByServer.to_string(),
                json!(AclAction::NotSupportedByServer),
            ),
        ];
        for (text, value) in cases {
            assert_eq!(json!(text), value);
        }
        assert_eq!(
            ClientAction::CreatedWithOriginalKeys.to_string(),
            "created_with_original_keys"
        );
    }
}

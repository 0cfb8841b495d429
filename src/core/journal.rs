//! What a journal entry is: one deletion, as backed up (the node and client
//! JSON, keys and ACLs), and what can be damaged in a journal. The journal
//! adapters ([`crate::adapters::journal`]) store these; restore reads them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::chef::{ClientKey, ServerKind};

/// One deletion, as backed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Unique, sortable: `20261125T101500.123Z-<node>-<random>`.
    pub id: String,
    /// When the entry was made (UTC), just before the delete was sent.
    pub recorded_at: DateTime<Utc>,
    /// `event`, `deregister` or `sweep`.
    pub source: String,
    /// Why it was deleted (human text).
    pub reason: String,
    /// The queue message that asked for the deletion (SQS `MessageId`);
    /// `None` when no message did (deregister, sweep).
    pub message_id: Option<String>,
    /// The terminated EC2 instance; `None` when the deletion named a node
    /// rather than an instance.
    pub instance_id: Option<String>,
    /// The Auto Scaling group the event named, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The Chef node deleted (or meant to be: see `node_status`).
    pub node_name: String,
    /// The Chef API client deleted with the node; `None` when none was named.
    pub client_name: Option<String>,
    /// Base URL of the Chef server the objects were deleted from; restore
    /// writes them back there.
    pub chef_server: String,
    /// The configured Chef target (`[[chef.targets]]` name) it was deleted
    /// from; absent in single-target deployments and older entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Full node JSON as read just before deletion (None: there was no node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Value>,
    /// Full client JSON as read just before deletion (None: there was no client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Value>,
    /// Whether the node was backed up or already gone (None: entries written
    /// before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_status: Option<Presence>,
    /// Whether the client was backed up or already gone when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_status: Option<Presence>,
    /// The client's keys (`/clients/NAME/keys`, Chef Infra Server API v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_keys: Option<Vec<ClientKey>>,
    /// The node's ACL (`_acl?detail=granular`), where the server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_acl: Option<Value>,
    /// The client's ACL, where the server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_acl: Option<Value>,
    /// The groups that listed the client (Chef Infra Server): deleting a
    /// client removes it from every group, restore adds it back. None: not
    /// read (no groups on the server, or entries written before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_groups: Option<Vec<String>>,
    /// Server kind that answered the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_kind: Option<ServerKind>,
    /// API version the backup was read with (what the bodies contain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<u8>,
    /// Whether the node's and client's ACLs are in this entry, where the
    /// server has ACLs (None: goiardi, or an entry written before this was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl_backup: Option<AclBackup>,
    /// What could not be backed up and why (e.g. an ACL nodereaper may not read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What each estate target (chef-vault, webhook, ...) read or is about
    /// to send, recorded before it changes anything; restore gives it back
    /// to the target. Empty in entries written before targets existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estate: Vec<EstateBackup>,
    /// In the index: the objects stored beside this line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// Found on reading: what of this entry is missing or unreadable.
    /// Never written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<String>,
}

/// One estate target's backup in a journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstateBackup {
    /// The target's name (`vault`, `webhook`, `automate`).
    pub target: String,
    /// What the target needs to undo its clean (its own format).
    #[serde(default)]
    pub data: Value,
}

/// Was an object there when it was backed up?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Read and stored in this entry.
    BackedUp,
    /// The server answered 404 when it was read: gone before this attempt
    /// (an earlier attempt or someone else deleted it).
    AlreadyGone,
}

/// Whether the ACLs of a deletion were backed up (Chef Infra Server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclBackup {
    /// Every ACL of the objects backed up is in the entry.
    BackedUp,
    /// The server refused to show at least one of them (403: nodereaper's
    /// client lacks GRANT on it); `notes` say which. A restore cannot put
    /// that ACL back.
    Forbidden,
}

/// Something damaged in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// File or S3 object.
    pub location: String,
    /// Line of the index, when the damage is an index line.
    pub line: Option<usize>,
    /// The entry concerned, when it is known (an unreadable index line names
    /// none).
    pub entry_id: Option<String>,
    /// What is wrong, for people.
    pub problem: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.location)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(id) = &self.entry_id {
            write!(f, " (entry {id})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl JournalEntry {
    /// A new entry with a fresh id.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: &str,
        reason: impl Into<String>,
        message_id: Option<String>,
        instance_id: Option<String>,
        node_name: &str,
        client_name: Option<String>,
        chef_server: &str,
        node: Option<Value>,
        client: Option<Value>,
    ) -> Self {
        let now = Utc::now();
        let suffix: u32 = rand::random();
        let safe_name: String = node_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        Self {
            id: format!(
                "{}-{safe_name}-{suffix:08x}",
                now.format("%Y%m%dT%H%M%S%.3fZ")
            ),
            recorded_at: now,
            source: source.into(),
            reason: reason.into(),
            message_id,
            instance_id,
            group: None,
            node_name: node_name.into(),
            chef_server: chef_server.into(),
            target: None,
            node_status: Some(presence(node.is_some())),
            // The caller read the client just before (a 404 gives None).
            client_status: client_name.as_ref().map(|_| presence(client.is_some())),
            client_name,
            node,
            client,
            client_keys: None,
            node_acl: None,
            client_acl: None,
            client_groups: None,
            server_kind: None,
            api_version: None,
            acl_backup: None,
            notes: Vec::new(),
            estate: Vec::new(),
            objects: Vec::new(),
            damage: Vec::new(),
        }
    }

    /// The objects this entry carries, by kind, as stored beside the index.
    pub fn stored_objects(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if let Some(v) = &self.node {
            out.push(("node", v.clone()));
        }
        if let Some(v) = &self.client {
            out.push(("client", v.clone()));
        }
        if let Some(keys) = &self.client_keys {
            out.push(("keys", serde_json::to_value(keys).unwrap_or(Value::Null)));
        }
        if let Some(v) = &self.node_acl {
            out.push(("node_acl", v.clone()));
        }
        if let Some(v) = &self.client_acl {
            out.push(("client_acl", v.clone()));
        }
        out
    }

    /// Puts a stored object back into the entry.
    pub fn set_object(&mut self, kind: &str, value: Value) -> Result<(), String> {
        match kind {
            "node" => self.node = Some(value),
            "client" => self.client = Some(value),
            "keys" => {
                self.client_keys = Some(
                    serde_json::from_value(value)
                        .map_err(|e| format!("expected a list of client keys: {e}"))?,
                )
            }
            "node_acl" => self.node_acl = Some(value),
            "client_acl" => self.client_acl = Some(value),
            other => return Err(format!("unknown object kind {other:?}")),
        }
        Ok(())
    }

    /// The entry without the object bodies (what the index holds).
    pub fn summary(&self) -> JournalEntry {
        JournalEntry {
            objects: self
                .stored_objects()
                .into_iter()
                .map(|(k, _)| k.to_string())
                .collect(),
            node: None,
            client: None,
            client_keys: None,
            node_acl: None,
            client_acl: None,
            damage: Vec::new(),
            ..self.clone()
        }
    }
}

fn presence(present: bool) -> Presence {
    if present {
        Presence::BackedUp
    } else {
        Presence::AlreadyGone
    }
}

/// Object kinds a journal entry can carry.
pub const OBJECT_KINDS: &[&str] = &["node", "client", "keys", "node_acl", "client_acl"];

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

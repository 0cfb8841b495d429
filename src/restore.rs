//! `nodereaper restore`: recreate what the journal says was deleted.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::chef::ChefError;
use crate::journal::{EntryFilter, JournalEntry, JournalError};
use crate::ports::{ChefApi, Journal};

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

#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub entry_id: String,
    pub node: String,
    /// created, replaced, absent_in_backup
    pub node_action: String,
    /// created_with_original_key, created_without_key, exists, absent_in_backup
    pub client_action: String,
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Chef(#[from] ChefError),
    #[error("the journal has no entry {0}")]
    NotFound(String),
    #[error("node {0:?} exists on the Chef server; not overwriting it (use --force to replace it with the backup)")]
    Exists(String),
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

/// Entries to restore: the newest entry per node among those matching.
pub async fn select(
    journal: &dyn Journal,
    filter: &EntryFilter,
) -> Result<Vec<JournalEntry>, RestoreError> {
    let mut newest: std::collections::BTreeMap<String, JournalEntry> =
        std::collections::BTreeMap::new();
    for e in journal
        .entries()
        .await?
        .into_iter()
        .filter(|e| filter.matches(e))
    {
        match newest.get(&e.node_name) {
            Some(existing) if existing.recorded_at > e.recorded_at => {}
            _ => {
                newest.insert(e.node_name.clone(), e);
            }
        }
    }
    Ok(newest.into_values().collect())
}

/// Recreates one entry's node and client.
pub async fn restore(
    chef: &dyn ChefApi,
    entry: &JournalEntry,
    force: bool,
) -> Result<Restored, RestoreError> {
    let mut out = Restored {
        entry_id: entry.id.clone(),
        node: entry.node_name.clone(),
        node_action: "absent_in_backup".into(),
        client_action: "absent_in_backup".into(),
        note: None,
    };
    if let Some(node) = &entry.node {
        let body = restorable_node(node);
        if chef.get_node(&entry.node_name).await?.is_some() {
            if !force {
                return Err(RestoreError::Exists(entry.node_name.clone()));
            }
            chef.update_node(&entry.node_name, &body).await?;
            out.node_action = "replaced".into();
        } else {
            chef.create_node(&body).await?;
            out.node_action = "created".into();
        }
    }
    if let (Some(client), Some(name)) = (&entry.client, &entry.client_name) {
        if chef.get_client(name).await?.is_some() {
            out.client_action = "exists".into();
        } else {
            let admin = client
                .get("admin")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match client.get("public_key").and_then(Value::as_str) {
                Some(key) => {
                    chef.create_client(name, Some(key), admin).await?;
                    out.client_action = "created_with_original_key".into();
                }
                None => {
                    chef.create_client(name, None, admin).await?;
                    out.client_action = "created_without_key".into();
                    out.note = Some(format!(
                        "the server did not return client {name}'s public key when it was backed up (Chef Infra Server keeps keys under /clients/{name}/keys); \
                         the restored client has a new key, so the instance must be re-bootstrapped or given the new key"
                    ));
                }
            }
        }
    }
    Ok(out)
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
}

//! chef-vault: removes a deleted client from the vault items it could read.
//!
//! chef-vault keeps, beside each encrypted item `ITEM` of a vault data bag,
//! an item `ITEM_keys` (chef/chef-vault `lib/chef-vault/item_keys.rb`):
//! `{"id": "ITEM_keys", "admins": [...], "clients": [...], "search_query":
//! ..., "mode": "default"|"sparse", NAME: base64(RSA-encrypted secret)}`.
//! In `sparse` mode the encrypted secret of `NAME` is not in `ITEM_keys` but
//! in an item of its own, `ITEM_key_NAME` = `{"id": ..., NAME: ...}`
//! (`sparse_id`). Removing a client is what `ItemKeys#delete` does: drop the
//! name from `clients` and its encrypted secret (the key of `ITEM_keys`, or
//! the sparse item). A vault whose `admins` list the client is left alone
//! and reported. The removed entries are the backup; restore writes them
//! back, and the restored client (same key) decrypts its secret again.

mod data_bags;

pub use crate::ports::estate::DataBags;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::error::Retry;
use crate::ports::estate::{Cleaned, Departure, EstateError, EstateTarget};
use crate::ports::ChefError;

/// The target's name in the journal, logs and metrics.
pub const NAME: &str = "vault";

/// One vault item the client was removed from, with what was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovedEntry {
    /// The data bag (the vault).
    pub bag: String,
    /// The keys item (`ITEM_keys`).
    pub keys_item: String,
    /// `default` or `sparse`.
    pub mode: String,
    /// The client's encrypted copy of the item's secret (base64), as stored.
    pub secret: Option<Value>,
}

/// What the vault target backs up for one deleted client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VaultBackup {
    /// The client.
    pub client: String,
    /// Entries removed (to be removed, until the clean ran).
    pub entries: Vec<RemovedEntry>,
    /// Keys items (`bag/ITEM_keys`) that list the client as an admin: left alone.
    pub admin_of: Vec<String>,
}

/// The chef-vault estate target.
pub struct VaultTarget {
    bags: Arc<dyn DataBags>,
    /// Configured vault data bags; empty: auto-detect.
    data_bags: Vec<String>,
    /// Held across each read-modify-write of keys items: the Chef server
    /// has no conditional PUT, so two deletions editing one `<item>_keys`
    /// at once (the daemon's workers) would each write back the other's
    /// removed client.
    edits: tokio::sync::Mutex<()>,
}

/// The guard: a client listed as an admin of a vault is never removed
/// from it (an admin is a person or a tool, not a departed instance).
fn is_admin(keys: &Value, client: &str) -> bool {
    names_in(keys, "admins").any(|n| n == client)
}

fn names_in<'a>(keys: &'a Value, list: &str) -> impl Iterator<Item = &'a str> {
    keys.get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Whether `item` has the shape chef-vault gives a keys item.
fn is_keys_item(item: &Value) -> bool {
    item.get("clients").is_some_and(Value::is_array)
        && item.get("admins").is_some_and(Value::is_array)
}

/// chef-vault's `sparse_id`: `ITEM_keys` -> `ITEM_key_NAME`.
pub fn sparse_id(keys_item: &str, name: &str) -> String {
    format!(
        "{}_key_{name}",
        keys_item.strip_suffix("_keys").unwrap_or(keys_item)
    )
}

fn mode(keys: &Value) -> String {
    keys.get("mode")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string()
}

fn chef_failed(operation: &str, object: String, e: ChefError) -> EstateError {
    use crate::core::error::Classify;
    // A denied or rejected request is nodereaper's setup: hold, not retry.
    let retry = if e.blames_message() {
        e.retry()
    } else {
        Retry::Permanent
    };
    EstateError {
        target: NAME,
        operation: operation.into(),
        object,
        detail: e.to_string(),
        retry,
    }
}

fn bad_backup(detail: String) -> EstateError {
    EstateError {
        target: NAME,
        operation: "read backup".into(),
        object: "journal entry".into(),
        detail,
        retry: Retry::Permanent,
    }
}

impl VaultTarget {
    /// A target over `bags`; `data_bags` empty: every bag with keys items.
    pub fn new(bags: Arc<dyn DataBags>, data_bags: Vec<String>) -> Self {
        VaultTarget {
            bags,
            data_bags,
            edits: tokio::sync::Mutex::new(()),
        }
    }

    async fn get(&self, bag: &str, id: &str) -> Result<Option<Value>, EstateError> {
        self.bags
            .get_item(bag, id)
            .await
            .map_err(|e| chef_failed("GET", format!("/data/{bag}/{id}"), e))
    }

    async fn put(&self, bag: &str, id: &str, item: &Value) -> Result<(), EstateError> {
        self.bags
            .put_item(bag, id, item)
            .await
            .map_err(|e| chef_failed("PUT", format!("/data/{bag}/{id}"), e))
    }

    /// Every (bag, keys item) to look at.
    async fn keys_items(&self) -> Result<Vec<(String, String)>, EstateError> {
        let bags = if self.data_bags.is_empty() {
            self.bags
                .list_bags()
                .await
                .map_err(|e| chef_failed("GET", "/data".into(), e))?
        } else {
            self.data_bags.clone()
        };
        let mut out = Vec::new();
        for bag in bags {
            let items = self
                .bags
                .list_items(&bag)
                .await
                .map_err(|e| chef_failed("GET", format!("/data/{bag}"), e))?
                .unwrap_or_default();
            out.extend(
                items
                    .into_iter()
                    .filter(|i| i.ends_with("_keys"))
                    .map(|i| (bag.clone(), i)),
            );
        }
        out.sort();
        Ok(out)
    }

    /// The client's encrypted secret in one keys item, as stored.
    async fn secret_of(
        &self,
        bag: &str,
        id: &str,
        keys: &Value,
        client: &str,
    ) -> Result<Option<Value>, EstateError> {
        if let Some(v) = keys.get(client) {
            return Ok(Some(v.clone()));
        }
        if mode(keys) != "sparse" {
            return Ok(None);
        }
        let sparse = self.get(bag, &sparse_id(id, client)).await?;
        Ok(sparse.and_then(|s| s.get(client).cloned()))
    }

    /// Removes `client` from one keys item, if still there and not an admin.
    async fn remove(
        &self,
        entry: &RemovedEntry,
        client: &str,
        done: &mut Cleaned,
    ) -> Result<(), EstateError> {
        let (bag, id) = (&entry.bag, &entry.keys_item);
        let Some(mut keys) = self.get(bag, id).await? else {
            return Ok(());
        };
        if is_admin(&keys, client) {
            done.left_alone.push(format!(
                "{bag}/{id}: client {client} became an admin; left alone"
            ));
            return Ok(());
        }
        let mut changed = false;
        if let Some(list) = keys.get_mut("clients").and_then(Value::as_array_mut) {
            let before = list.len();
            list.retain(|v| v.as_str() != Some(client));
            changed |= list.len() != before;
        }
        if let Some(obj) = keys.as_object_mut() {
            changed |= obj.remove(client).is_some();
        }
        if changed {
            self.put(bag, id, &keys).await?;
        }
        if entry.mode == "sparse" {
            let sid = sparse_id(id, client);
            self.bags
                .delete_item(bag, &sid)
                .await
                .map_err(|e| chef_failed("DELETE", format!("/data/{bag}/{sid}"), e))?;
            changed = true;
        }
        if changed {
            done.changed += 1;
        }
        Ok(())
    }

    /// Puts one removed entry back.
    async fn put_back(&self, entry: &RemovedEntry, client: &str) -> Result<(), EstateError> {
        let (bag, id) = (&entry.bag, &entry.keys_item);
        let Some(mut keys) = self.get(bag, id).await? else {
            return Err(EstateError {
                target: NAME,
                operation: "restore".into(),
                object: format!("/data/{bag}/{id}"),
                detail: "the vault's keys item is gone; recreate the vault with `knife vault`"
                    .into(),
                retry: Retry::Permanent,
            });
        };
        if let Some(list) = keys.get_mut("clients").and_then(Value::as_array_mut) {
            if !list.iter().any(|v| v.as_str() == Some(client)) {
                list.push(Value::String(client.into()));
            }
        }
        if let (Some(secret), Some(obj)) = (&entry.secret, keys.as_object_mut()) {
            if entry.mode != "sparse" {
                obj.insert(client.into(), secret.clone());
            }
        }
        self.put(bag, id, &keys).await?;
        if let (Some(secret), "sparse") = (&entry.secret, entry.mode.as_str()) {
            let sid = sparse_id(id, client);
            let item = serde_json::json!({"id": sid, client: secret});
            let exists = self.get(bag, &sid).await?.is_some();
            let result = if exists {
                self.bags.put_item(bag, &sid, &item).await
            } else {
                self.bags.create_item(bag, &item).await
            };
            result.map_err(|e| chef_failed("write", format!("/data/{bag}/{sid}"), e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl EstateTarget for VaultTarget {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn backup(&self, gone: &Departure) -> Result<Option<Value>, EstateError> {
        let client = &gone.client_name;
        let mut backup = VaultBackup {
            client: client.clone(),
            ..Default::default()
        };
        for (bag, id) in self.keys_items().await? {
            let Some(keys) = self.get(&bag, &id).await? else {
                continue;
            };
            if !is_keys_item(&keys) {
                continue;
            }
            let listed = names_in(&keys, "clients").any(|n| n == client);
            if is_admin(&keys, client) {
                backup.admin_of.push(format!("{bag}/{id}"));
                continue;
            }
            let secret = self.secret_of(&bag, &id, &keys, client).await?;
            if listed || secret.is_some() {
                backup.entries.push(RemovedEntry {
                    mode: mode(&keys),
                    bag,
                    keys_item: id,
                    secret,
                });
            }
        }
        if backup.entries.is_empty() && backup.admin_of.is_empty() {
            return Ok(None);
        }
        serde_json::to_value(&backup)
            .map(Some)
            .map_err(|e| bad_backup(format!("cannot encode the vault backup: {e}")))
    }

    async fn clean(
        &self,
        gone: &Departure,
        backup: Option<&Value>,
    ) -> Result<Cleaned, EstateError> {
        let mut done = Cleaned::default();
        let Some(backup) = backup else {
            return Ok(done);
        };
        let backup: VaultBackup = serde_json::from_value(backup.clone())
            .map_err(|e| bad_backup(format!("expected a vault backup: {e}")))?;
        let _edits = self.edits.lock().await;
        for entry in &backup.entries {
            self.remove(entry, &gone.client_name, &mut done).await?;
        }
        for keys in &backup.admin_of {
            done.left_alone.push(format!(
                "{keys}: client {} is an admin of this vault; left alone",
                gone.client_name
            ));
        }
        Ok(done)
    }

    async fn restore(&self, backup: &Value) -> Result<String, EstateError> {
        let backup: VaultBackup = serde_json::from_value(backup.clone())
            .map_err(|e| bad_backup(format!("expected a vault backup: {e}")))?;
        let _edits = self.edits.lock().await;
        for entry in &backup.entries {
            self.put_back(entry, &backup.client).await?;
        }
        Ok(format!(
            "client {} put back into {} vault item(s)",
            backup.client,
            backup.entries.len()
        ))
    }

    async fn probe(&self) -> Result<String, EstateError> {
        let items = self.keys_items().await?;
        Ok(format!("{} vault keys item(s) readable", items.len()))
    }
}

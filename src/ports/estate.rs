//! The rest of the estate: what a terminated instance left beyond its Chef
//! node and client (chef-vault key entries, a webhook receiver, Chef
//! Automate), each behind one trait.
//!
//! The reaper calls every configured target with the same guarantees as the
//! Chef deletion: only after the registration passed verification,
//! protection and the rate cap, never in a dry run. Each target's
//! [`EstateTarget::backup`] is read (no change) and written into the journal
//! entry before anything is deleted; [`EstateTarget::clean`] runs after the
//! Chef deletion succeeded; [`EstateTarget::restore`] undoes a clean from its
//! backup where the target can.

use async_trait::async_trait;
use serde_json::Value;

use crate::core::error::{Classify, Retry};

/// The deleted registration, as the reaper read and backed it up.
#[derive(Debug, Clone)]
pub struct Departure {
    /// The journal entry holding the backup (also the idempotency key of
    /// this termination: a retried attempt records a new entry, so targets
    /// that need one stable key use `instance_id` + `node_name`).
    pub journal_id: String,
    /// `event`, `deregister` or `sweep`.
    pub source: String,
    /// The terminated instance, when known.
    pub instance_id: Option<String>,
    /// The AWS account asked about the instance, when known.
    pub account: Option<String>,
    /// The region asked about the instance, when known.
    pub region: Option<String>,
    /// The Auto Scaling group the event named (journalled with the
    /// deletion); `None` for deregister, sweep, and events naming none.
    pub group: Option<String>,
    /// The Chef node.
    pub node_name: String,
    /// The Chef API client.
    pub client_name: String,
    /// The node JSON as backed up (None: there was no node).
    pub node: Option<Value>,
}

/// What a target did in its clean, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Objects changed or calls made (vault items edited, webhooks sent).
    pub changed: usize,
    /// What was found but deliberately left alone, with why (a vault where
    /// the client is an admin).
    pub left_alone: Vec<String>,
}

/// A failed call of an estate target.
#[derive(Debug, Clone, thiserror::Error)]
#[error("estate target {target}: {operation} on {object} failed: {detail}")]
pub struct EstateError {
    /// The target's name (`vault`, `webhook`, `automate`).
    pub target: &'static str,
    /// What was being done (`GET`, `PUT`, `POST`, `restore`...).
    pub operation: String,
    /// On what (a data bag item, a URL).
    pub object: String,
    /// What went wrong.
    pub detail: String,
    /// Whether trying again may help (outage, 5xx, timeout).
    pub retry: Retry,
}

impl Classify for EstateError {
    fn retry(&self) -> Retry {
        self.retry
    }

    /// A transient failure retries the message (its Chef registration is
    /// already gone, so the retry is cheap); anything else (denied, bad
    /// answer, bad configuration) is nodereaper's own setup: hold. A target
    /// never sends a message to the dead-letter queue.
    fn blames_message(&self) -> bool {
        self.retry == Retry::Transient
    }
}

/// One kind of leftover a termination is cleaned of.
#[async_trait]
pub trait EstateTarget: Send + Sync {
    /// The target's name in the journal, logs and metrics.
    fn name(&self) -> &'static str;

    /// Reads what [`EstateTarget::clean`] will change, changing nothing.
    /// `None`: nothing to back up (the clean may still act, e.g. a webhook).
    async fn backup(&self, gone: &Departure) -> Result<Option<Value>, EstateError>;

    /// Cleans what the departed registration left, after the Chef deletion
    /// succeeded; `backup` is what [`EstateTarget::backup`] returned.
    async fn clean(&self, gone: &Departure, backup: Option<&Value>)
        -> Result<Cleaned, EstateError>;

    /// Puts back what a clean removed, from its backup; what was done.
    async fn restore(&self, backup: &Value) -> Result<String, EstateError>;

    /// A harmless request showing the target is reachable and usable
    /// (`doctor`): what was checked.
    async fn probe(&self) -> Result<String, EstateError>;
}

/// Chef data bags, as far as the chef-vault target needs them (Chef Infra
/// Server `/data`; items are read and written flat, as
/// `src/oc_erchef/apps/chef_objects/src/chef_data_bag_item.erl` accepts
/// them: the id in the body must match the URL).
#[async_trait]
pub trait DataBags: Send + Sync {
    /// The data bags' names.
    async fn list_bags(&self) -> Result<Vec<String>, super::ChefError>;
    /// The item ids of `bag`; `None`: no such bag.
    async fn list_items(&self, bag: &str) -> Result<Option<Vec<String>>, super::ChefError>;
    /// One item; `None`: no such item.
    async fn get_item(&self, bag: &str, id: &str) -> Result<Option<Value>, super::ChefError>;
    /// Replaces an existing item.
    async fn put_item(&self, bag: &str, id: &str, item: &Value) -> Result<(), super::ChefError>;
    /// Creates an item (its `id` names it).
    async fn create_item(&self, bag: &str, item: &Value) -> Result<(), super::ChefError>;
    /// Deletes an item; `AlreadyGone` when there was none.
    async fn delete_item(&self, bag: &str, id: &str) -> Result<super::Deleted, super::ChefError>;
}

/// Chef Automate's own node inventory, for the sweep of its missing nodes
/// (Effortless and chef-solo fleets have no Chef server objects; Automate is
/// their only registry). chef/automate `api/external/cfgmgmt/cfgmgmt.proto`
/// (`GetNodes`, `GetAttributes`) and `api/external/ingest/chef.proto`
/// (`ProcessNodeDelete`).
#[async_trait]
pub trait AutomateNodes: Send + Sync {
    /// Page `page` (from 1) of at most `size` nodes Automate reports
    /// missing (`filter=status:missing`), each as Automate lists it
    /// (`cfgmgmt.response.Node`: `id`, `name`, `checkin`, ...).
    async fn missing_nodes(&self, page: u32, size: u32) -> Result<Vec<Value>, EstateError>;
    /// The node's recorded attributes (`automatic`, `normal`, `run_list`,
    /// `chef_environment`), the stringified ones parsed; `None` when Automate
    /// holds none (it answers an empty document for an unknown node).
    async fn attributes(&self, node_id: &str) -> Result<Option<Value>, EstateError>;
    /// Deletes one node by its id (`nodedelete` with `node_id`).
    async fn delete_node(&self, node_id: &str) -> Result<(), EstateError>;
}

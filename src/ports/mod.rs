//! The outside world, behind small traits.
//!
//! The decision logic and the pipeline only see these traits; adapters live in
//! [`crate::adapters`]. Ports speak in [`crate::core`] types and their own
//! error types ([`error`]) and depend on nothing else in the crate. Tests swap in
//! in-memory versions where a real server adds nothing (pure logic), and the
//! real adapters against goiardi and moto everywhere else.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

pub mod error;
pub mod estate;
pub mod tags;

use crate::core::chef::{AclObject, ClientKey, ServerInfo};
use crate::core::groups::Group;
use crate::core::journal::{Damage, JournalEntry};
use crate::core::placement::Placement;

pub use crate::core::ec2::InstanceInfo;
pub use crate::core::event::LifecycleAction;
pub use error::{AwsError, ChefError, JournalError, PlacementError};
pub use tags::GroupTags;

/// Result of a DELETE on the Chef server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deleted {
    /// The object existed and is gone now.
    Removed,
    /// The server answered 404: somebody (or an earlier attempt) already removed it.
    AlreadyGone,
}

/// One row of a partial search: the node name plus the requested attributes.
pub type SearchRow = HashMap<String, Value>;

/// The Chef Infra Server API, as far as nodereaper needs it.
#[async_trait]
pub trait ChefApi: Send + Sync {
    /// Base URL of the server, for messages.
    fn server(&self) -> &str;
    /// The node's JSON (`GET /nodes/NAME`); `None` when the server answers 404.
    async fn get_node(&self, name: &str) -> Result<Option<Value>, ChefError>;
    /// Deletes the node (`DELETE /nodes/NAME`); a 404 is
    /// [`Deleted::AlreadyGone`], not an error.
    async fn delete_node(&self, name: &str) -> Result<Deleted, ChefError>;
    /// The API client's JSON (`GET /clients/NAME`); `None` when the server
    /// answers 404.
    async fn get_client(&self, name: &str) -> Result<Option<Value>, ChefError>;
    /// Deletes the API client (`DELETE /clients/NAME`); a 404 is
    /// [`Deleted::AlreadyGone`], not an error.
    async fn delete_client(&self, name: &str) -> Result<Deleted, ChefError>;
    /// Names of all nodes (`GET /nodes`).
    async fn list_nodes(&self) -> Result<Vec<String>, ChefError>;
    /// Full-text search on the node index; returns every matching node name
    /// (all pages).
    async fn search_node_names(&self, query: &str) -> Result<Vec<String>, ChefError>;
    /// Partial search on the node index; every page, `keys` maps an output
    /// name to an attribute path.
    async fn partial_search_nodes(
        &self,
        query: &str,
        keys: &[(&str, &[&str])],
    ) -> Result<Vec<SearchRow>, ChefError>;
    /// Create a node from its JSON (restore).
    async fn create_node(&self, node: &Value) -> Result<(), ChefError>;
    /// Replace an existing node (restore --force).
    async fn update_node(&self, name: &str, node: &Value) -> Result<(), ChefError>;
    /// Create an API client with a given public key (restore).
    async fn create_client(
        &self,
        name: &str,
        public_key: Option<&str>,
        admin: bool,
    ) -> Result<(), ChefError>;

    /// nodereaper's own identity as the server knows it (its client, else
    /// its user): `None` when neither exists, which on a reachable server
    /// means a wrong URL or organization (`/readyz`). Adapters that cannot
    /// tell answer `None`.
    async fn own_identity(&self) -> Result<Option<(&'static str, Value)>, ChefError> {
        Ok(None)
    }

    // --- Server fidelity (keys, ACLs, API version). The defaults describe a
    // server without keys or ACL endpoints, so in-memory fakes need nothing.

    /// What the server is and which API version answers, learned once.
    async fn server_info(&self) -> Result<ServerInfo, ChefError> {
        Ok(ServerInfo::UNKNOWN)
    }
    /// Every key of a client (`/clients/NAME/keys` and each key). None: the
    /// server has no keys endpoint (goiardi, API v0, unknown servers) or the
    /// client does not exist.
    async fn client_keys(&self, _name: &str) -> Result<Option<Vec<ClientKey>>, ChefError> {
        Ok(None)
    }
    /// The object's ACL (`?detail=granular`). None: no ACL endpoint, or no
    /// such object.
    async fn get_acl(&self, _object: AclObject, _name: &str) -> Result<Option<Value>, ChefError> {
        Ok(None)
    }
    /// Replaces one permission of an object's ACL with the backed-up one.
    async fn put_acl(
        &self,
        object: AclObject,
        name: &str,
        _permission: &str,
        _acl: &Value,
    ) -> Result<(), ChefError> {
        Err(ChefError::BadResponse {
            server: self.server().to_string(),
            method: "PUT".into(),
            object: format!("/{}/{name}/_acl", object.collection()),
            detail: "this server has no ACL endpoint".into(),
        })
    }
    /// Creates a client with `public_key` (the `default` key), or with a new
    /// key pair when None; returns the generated private key (shown once by
    /// the server, never stored by nodereaper).
    async fn create_client_returning_key(
        &self,
        name: &str,
        public_key: Option<&str>,
        admin: bool,
        _validator: bool,
    ) -> Result<Option<String>, ChefError> {
        self.create_client(name, public_key, admin).await?;
        Ok(None)
    }
    /// Adds one more key to an existing client (POST /clients/NAME/keys).
    async fn add_client_key(&self, name: &str, _key: &ClientKey) -> Result<(), ChefError> {
        Err(ChefError::BadResponse {
            server: self.server().to_string(),
            method: "POST".into(),
            object: format!("/clients/{name}/keys"),
            detail: "this server has no keys endpoint".into(),
        })
    }
    /// Creates a client with no key at all (API v1 POST /clients without
    /// `public_key` and `create_key`); its keys are added with
    /// [`ChefApi::add_client_key`], each with its own expiration date.
    async fn create_keyless_client(&self, name: &str, _validator: bool) -> Result<(), ChefError> {
        Err(no_endpoint(
            self.server(),
            "POST",
            format!("/clients/{name}"),
            "keyless client",
        ))
    }
    /// One group (`GET /groups/NAME`), read now; None when the server
    /// answers 404. The default (no groups endpoint) is an error, so a
    /// wrapper that forgets to forward it fails closed.
    async fn get_group(&self, name: &str) -> Result<Option<Group>, ChefError> {
        Err(no_endpoint(
            self.server(),
            "GET",
            format!("/groups/{name}"),
            "groups",
        ))
    }
    /// One group, possibly as read a short while ago (adapters may cache
    /// for up to a minute); the protection check uses it.
    async fn get_group_cached(&self, name: &str) -> Result<Option<Group>, ChefError> {
        self.get_group(name).await
    }
    /// Every group name of the organization (`GET /groups`).
    async fn list_groups(&self) -> Result<Vec<String>, ChefError> {
        Err(no_endpoint(
            self.server(),
            "GET",
            "/groups".into(),
            "groups",
        ))
    }
    /// Gives a group exactly these members (`PUT /groups/NAME`).
    async fn put_group(&self, group: &Group) -> Result<(), ChefError> {
        Err(no_endpoint(
            self.server(),
            "PUT",
            format!("/groups/{}", group.name),
            "groups",
        ))
    }
}

/// The error of a call the server (or this adapter) has no endpoint for.
fn no_endpoint(server: &str, method: &str, object: String, what: &str) -> ChefError {
    ChefError::BadResponse {
        server: server.to_string(),
        method: method.into(),
        object,
        detail: format!("this server has no {what} endpoint"),
    }
}

/// EC2 DescribeInstances, batched.
#[async_trait]
pub trait InstanceInventory: Send + Sync {
    /// Looks up many instances at once. Ids EC2 does not know are absent from
    /// the map (they count as gone).
    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>, AwsError>;
}

/// The AWS services of one account and region.
#[derive(Clone)]
pub struct Regional {
    /// The account and region these clients talk to. A real fleet always
    /// names the account (nodereaper's own id when asked for `None`), so
    /// EC2's answers can be matched against the account a node records.
    pub placement: Placement,
    /// EC2 `DescribeInstances` in that account and region.
    pub inventory: Arc<dyn InstanceInventory>,
    /// Auto Scaling lifecycle-hook calls in that account and region.
    pub lifecycle: Arc<dyn Lifecycle>,
    /// Auto Scaling group tags in that account and region (routing).
    pub group_tags: Arc<dyn GroupTags>,
}

/// EC2 and Auto Scaling wherever an instance lives: clients per account and
/// region, created on first use and cached.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// The services for `placement`, reusing cached clients. Fails with
    /// [`PlacementError::UnknownAccount`] for an account that is neither
    /// nodereaper's own nor configured in `[[aws.accounts]]`.
    async fn regional(&self, placement: &Placement) -> Result<Regional, PlacementError>;
}

/// Outcome of completing a lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// AWS accepted the call.
    Completed,
    /// "No active Lifecycle Action found": the action expired or was completed
    /// by someone else. Counts as done.
    NoLongerActive,
}

/// Auto Scaling lifecycle hooks.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Extends the hook's timeout (`RecordLifecycleActionHeartbeat`) so the
    /// instance waits while nodereaper is still working on it.
    async fn heartbeat(&self, action: &LifecycleAction) -> Result<Completion, AwsError>;
    /// Completes the action with result `CONTINUE`
    /// (`CompleteLifecycleAction`), letting Auto Scaling go on terminating
    /// the instance.
    async fn complete_continue(&self, action: &LifecycleAction) -> Result<Completion, AwsError>;
    /// A call with no effect that fails the way real calls would when
    /// nodereaper lacks permission or credentials (the breaker's probe).
    async fn probe(&self) -> Result<(), AwsError>;
}

/// Where deleted objects are backed up before deletion.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Durably stores the entry (fsync or S3 PUT acknowledged) before returning.
    async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError>;
    /// All entries, oldest first. Damaged lines are skipped with a warning;
    /// an entry whose objects are missing or unreadable comes back with them
    /// absent and `damage` saying so.
    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError>;
    /// The entries recorded at or after `since`, oldest first (a journal
    /// that can tell an entry's time without reading it reads no older one).
    async fn entries_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let mut entries = self.entries().await?;
        entries.retain(|e| e.recorded_at >= since);
        Ok(entries)
    }
    /// Checks every entry and its objects; lists what is damaged.
    async fn verify(&self) -> Result<Vec<Damage>, JournalError> {
        Ok(self
            .entries()
            .await?
            .into_iter()
            .flat_map(|e| {
                let id = e.id.clone();
                e.damage.into_iter().map(move |problem| Damage {
                    location: id.clone(),
                    line: None,
                    entry_id: Some(id.clone()),
                    problem,
                })
            })
            .collect())
    }
    /// Removes the entries (and their objects) recorded before `cutoff`;
    /// returns how many were removed.
    async fn remove_before(
        &self,
        _cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, JournalError> {
        Ok(0)
    }
    /// Writes and removes a probe object the way [`Journal::record`] writes
    /// (the breaker's probe after a journal failure).
    async fn probe(&self) -> Result<(), JournalError>;
}

/// One message taken from a queue.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The queue's id of the message (SQS `MessageId`), for logs and the journal.
    pub message_id: String,
    /// The handle of this delivery (SQS `ReceiptHandle`), needed to delete the
    /// message or change its visibility; it changes on every delivery.
    pub receipt_handle: String,
    /// The message text as received; normally JSON (an EventBridge event, an
    /// SNS envelope or an Auto Scaling lifecycle hook notification).
    pub body: String,
    /// `SentTimestamp` attribute, when the queue reported it.
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `ApproximateReceiveCount` attribute (1 on first delivery).
    pub receive_count: u32,
}

/// An SQS-like queue with a dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Human name (queue name or URL) for logs and metrics.
    fn name(&self) -> &str;
    /// Long-polls for up to `max` messages.
    async fn receive(
        &self,
        max: i32,
        wait: std::time::Duration,
    ) -> Result<Vec<ReceivedMessage>, AwsError>;
    /// Acknowledges (removes) a processed message.
    async fn delete(&self, msg: &ReceivedMessage) -> Result<(), AwsError>;
    /// Hides the message for `timeout` more (backoff before the next attempt).
    async fn extend_visibility(
        &self,
        msg: &ReceivedMessage,
        timeout: std::time::Duration,
    ) -> Result<(), AwsError>;
    /// Approximate (visible, in flight) message counts: readiness probe and
    /// "is the queue drained" check.
    async fn depth(&self) -> Result<(u64, u64), AwsError>;
    /// Moves the message to the dead-letter queue with `reason` attached as a
    /// message attribute, then deletes it from this queue.
    async fn dead_letter(&self, msg: &ReceivedMessage, reason: &str) -> Result<(), AwsError>;
}

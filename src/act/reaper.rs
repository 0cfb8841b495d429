//! The one place registrations are deleted: used by `deregister`, the event
//! pipeline and the sweep alike.
//!
//! Order of operations, each step only after the previous one succeeded:
//! resolve -> read node and client -> protection -> rate cap -> journal
//! (durable) -> delete client -> delete node. The node goes last because it is
//! what finds the registration again: an attempt cut short after the client
//! delete is finished by the next one. For an instance id, the client is read
//! while the node is resolved (when the node is named after the instance,
//! the client's name is known before): a read, never a delete, out of order.

use std::sync::Arc;

use serde::Serialize;

use super::DeletionLimiter;
use crate::act::resolve::{Registration, ResolveError, Resolver};
use crate::adapters::chef::ChefError;
use crate::adapters::journal::{JournalEntry, JournalError};
use crate::core::error::{Classify, Retry};
use crate::core::ids::InstanceId;
use crate::core::placement::{misplaced, Misplaced, Placement};
use crate::core::verify::{ohai_time, Protection};
use crate::ports::{ChefApi, Deleted, Journal};
use crate::telemetry::events::{self, ChefObject};

/// What to deregister.
#[derive(Debug, Clone)]
pub enum Target {
    /// Resolve the registration from an EC2 instance id.
    Instance(InstanceId),
    /// A node name given by the operator (client name from the template).
    Node(String),
}

/// Which path asked for a deletion; recorded in the journal entry's
/// `source` field as `event`, `deregister` or `sweep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestSource {
    /// A termination event from a queue (daemon or Lambda).
    Event,
    /// The `deregister` command.
    Deregister,
    /// The sweep (command or the daemon's periodic run).
    Sweep,
}

impl RequestSource {
    /// The journal's (and logs') name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestSource::Event => "event",
            RequestSource::Deregister => "deregister",
            RequestSource::Sweep => "sweep",
        }
    }
}

impl std::fmt::Display for RequestSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why, and on whose behalf (for the journal).
#[derive(Debug, Clone)]
pub struct Request {
    /// What to deregister.
    pub target: Target,
    /// Which path asks.
    pub source: RequestSource,
    /// Why, in words (the journal's `reason`).
    pub reason: String,
    /// The queue message that asked, if any.
    pub message_id: Option<String>,
    /// Report what would be deleted; touch nothing.
    pub dry_run: bool,
    /// Second look before deleting (sweep): the node must still record this
    /// instance id and must not have checked in after `not_seen_since`.
    pub recheck: Option<Recheck>,
    /// The account and region EC2 was asked in (events and sweep; the
    /// account as the fleet identified it): a node whose Ohai data records
    /// another account, or a zone of another region, is not this instance's
    /// ([`misplaced`]). `None` (deregister): nothing was asked.
    pub verified_region: Option<Placement>,
    /// The Auto Scaling group the event named (journalled; the estate
    /// targets' `group`); `None` when no event named one.
    pub group: Option<String>,
}

/// How long after reading node and client a second read is due before the
/// DELETE (rate-cap wait, slow server): a registration re-created under the
/// same name in the meantime must not be deleted on the strength of the
/// first read.
pub const REREAD_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Conditions re-checked on the freshly read node right before deletion.
#[derive(Debug, Clone)]
pub struct Recheck {
    /// The instance id the node must still record.
    pub instance_id: String,
    /// The node must not have checked in after this.
    pub not_seen_since: chrono::DateTime<chrono::Utc>,
}

impl Recheck {
    /// Why the node no longer qualifies, if it does not.
    fn violation(&self, node: Option<&serde_json::Value>) -> Option<String> {
        // A vanished node ties the same-named client to nothing any more
        // (a new instance may be registering under that name): stop.
        let Some(node) = node else {
            return Some(format!(
                "the node vanished after the sweep listed it (instance {}); not deleting a same-named client",
                self.instance_id
            ));
        };
        let recorded = crate::act::resolve::recorded_instance_id(node);
        if recorded != Some(self.instance_id.as_str()) {
            return Some(format!(
                "node now records instance {} instead of {}",
                recorded.unwrap_or("(none)"),
                self.instance_id
            ));
        }
        if let Some(seen) = ohai_time(node) {
            if seen > self.not_seen_since {
                return Some(format!(
                    "node checked in at {seen}, after the sweep's cut-off"
                ));
            }
        }
        None
    }
}

/// What will be (or was) deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The Chef node.
    pub node_name: String,
    /// The Chef API client.
    pub client_name: String,
    /// Whether the node was there when read.
    pub node_exists: bool,
    /// Whether the client was there when read.
    pub client_exists: bool,
    /// How the registration was found (node name, search, ...).
    pub found_by: String,
    /// The instance the registration belongs to, if known.
    pub instance_id: Option<String>,
}

/// How a reap ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing registered (any more): done.
    AlreadyGone {
        /// What was looked for (`instance i-...` or `node name`).
        target: String,
    },
    /// Matched a protection rule: left alone.
    Protected {
        /// What was found.
        plan: Plan,
        /// Which rule.
        reason: String,
    },
    /// The second look before deletion found the node changed.
    Changed {
        /// What was found first.
        plan: Plan,
        /// What changed.
        reason: String,
    },
    /// Dry run: this is what would be deleted.
    WouldDelete {
        /// What would be deleted.
        plan: Plan,
    },
    /// Not this instance's to delete (a validator/admin/own client, a node
    /// placed in another region): refused, nothing deleted.
    Refused {
        /// What was found.
        plan: Plan,
        /// Why it is not this instance's.
        reason: String,
    },
    /// Backed up, then deleted.
    Deleted {
        /// What was deleted.
        plan: Plan,
        /// The node's DELETE.
        node: Deleted,
        /// The client's DELETE.
        client: Deleted,
        /// The journal entry holding the backup.
        journal_id: String,
    },
}

impl Outcome {
    /// The outcome's name in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::AlreadyGone { .. } => "already_gone",
            Outcome::Protected { .. } => "protected",
            Outcome::Changed { .. } => "changed",
            Outcome::WouldDelete { .. } => "would_delete",
            Outcome::Refused { .. } => "refused",
            Outcome::Deleted { .. } => "deleted",
        }
    }
}

/// Why a reap stopped before it finished.
#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    /// Finding the registration failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A Chef request failed.
    #[error(transparent)]
    Chef(#[from] ChefError),
    /// The backup could not be written: nothing deleted.
    #[error("not deleting {node}: the backup could not be written: {source}")]
    Journal {
        /// The node that was to be deleted.
        node: String,
        /// The journal's failure.
        #[source]
        source: JournalError,
    },
    /// The storm brake is engaged.
    #[error(transparent)]
    Brake(#[from] super::limiter::Braked),
    /// An estate target (chef-vault, webhook) failed: before the deletion
    /// (its backup: nothing deleted) or after it.
    #[error(transparent)]
    Estate(#[from] crate::ports::estate::EstateError),
    /// The journal could not be read (to run estate targets again).
    #[error("cannot read the journal: {0}")]
    JournalRead(#[source] JournalError),
}

/// What a failed reap was waiting on: the breaker probes that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The Chef server.
    Chef,
    /// The journal (backups).
    Journal,
    /// The storm brake: only an operator releases it.
    Brake,
}

impl ReapError {
    /// Whether a harmless GET on the Chef server fails the same way (an
    /// outage, a rejected signature or clock, a denied read), so the breaker
    /// can probe without a message. A denied DELETE or an empty DELETE
    /// answer shows only on a real deletion.
    pub fn any_request_shows_it(&self) -> bool {
        use crate::adapters::chef::ChefError as E;
        let chef = match self {
            ReapError::Chef(e) | ReapError::Resolve(ResolveError::Chef(e)) => e,
            _ => return false,
        };
        match chef {
            E::Forbidden { method, .. } => method != "DELETE",
            E::EmptyDelete { .. } => false,
            _ => true,
        }
    }

    /// What the failure was waiting on.
    pub fn dependency(&self) -> Dependency {
        match self {
            // An estate target: the breaker lets one message through to see.
            ReapError::Resolve(_) | ReapError::Chef(_) | ReapError::Estate(_) => Dependency::Chef,
            ReapError::Journal { .. } | ReapError::JournalRead(_) => Dependency::Journal,
            ReapError::Brake(_) => Dependency::Brake,
        }
    }
}

impl Classify for ReapError {
    fn retry(&self) -> Retry {
        match self {
            ReapError::Resolve(e) => e.retry(),
            ReapError::Chef(e) => e.retry(),
            ReapError::Journal { source, .. } | ReapError::JournalRead(source) => source.retry(),
            ReapError::Brake(_) => Retry::Transient,
            ReapError::Estate(e) => e.retry(),
        }
    }

    fn blames_message(&self) -> bool {
        match self {
            ReapError::Resolve(e) => e.blames_message(),
            ReapError::Chef(e) => e.blames_message(),
            // A broken journal is ours, not the message's; so is the brake.
            ReapError::Journal { .. } | ReapError::JournalRead(_) | ReapError::Brake(_) => false,
            ReapError::Estate(e) => e.blames_message(),
        }
    }
}

/// Deletes registrations, each after its backup: the shared action of
/// every command.
pub struct Reaper {
    /// The Chef server.
    pub chef: Arc<dyn ChefApi>,
    /// Where backups go before any delete.
    pub journal: Arc<dyn Journal>,
    /// Finds the registration of an instance.
    pub resolver: Resolver,
    /// What must never be deleted.
    pub protection: Protection,
    /// The deletion rate cap and storm brake.
    pub limiter: Arc<DeletionLimiter>,
    /// Whether a deletion needs its ACL backup (`journal.require_acl_backup`).
    pub acl_backup: super::backup::AclBackupPolicy,
    /// What else each deletion cleans (chef-vault, webhook); empty: nothing.
    pub estate: super::estate::EstateTargets,
}

impl Reaper {
    /// Resolves an instance id and, at the same time, reads the client the
    /// registration has when its node is named after the instance (the
    /// common case: one Chef round trip less per termination). The read is
    /// returned with the name it was made for and used only when the
    /// resolved registration names that client; it is only a GET, made only
    /// when the configured template gives a safe client name.
    async fn resolve_with_client(
        &self,
        id: &InstanceId,
    ) -> (
        Result<Option<Registration>, ResolveError>,
        Option<(String, Result<Option<serde_json::Value>, ChefError>)>,
    ) {
        let id = id.as_str();
        let guess = self.resolver.client_name_for(id);
        if !crate::act::resolve::is_safe_name(&guess) {
            return (self.resolver.resolve(self.chef.as_ref(), id).await, None);
        }
        let (registration, client) = tokio::join!(
            self.resolver.resolve(self.chef.as_ref(), id),
            self.chef.get_client(&guess)
        );
        (registration, Some((guess, client)))
    }

    /// Finds what `target` would delete, without deleting.
    pub async fn plan(
        &self,
        target: &Target,
    ) -> Result<Option<(Plan, Option<serde_json::Value>, Option<serde_json::Value>)>, ReapError>
    {
        let mut early_client = None;
        let (registration, instance_id) = match target {
            Target::Instance(id) => {
                let (registration, client) = self.resolve_with_client(id).await;
                early_client = client;
                (registration?, Some(id.to_string()))
            }
            Target::Node(name) => {
                if !crate::act::resolve::is_safe_name(name) {
                    return Err(ResolveError::UnsafeName {
                        kind: "node",
                        name: name.clone(),
                    }
                    .into());
                }
                let node = self.chef.get_node(name).await?;
                let instance_id = node
                    .as_ref()
                    .and_then(crate::act::resolve::recorded_instance_id)
                    .map(str::to_string);
                (
                    Some(Registration {
                        node_name: name.clone(),
                        client_name: self.resolver.client_name_for(name),
                        found_by: "node name".into(),
                        node,
                    }),
                    instance_id,
                )
            }
        };
        let Some(registration) = registration else {
            return Ok(None);
        };
        if !crate::act::resolve::is_safe_name(&registration.client_name) {
            return Err(ResolveError::UnsafeName {
                kind: "client",
                name: registration.client_name,
            }
            .into());
        }
        let client = match early_client {
            Some((name, read)) if name == registration.client_name => read?,
            _ => self.chef.get_client(&registration.client_name).await?,
        };
        if registration.node.is_none() && client.is_none() {
            return Ok(None);
        }
        let plan = Plan {
            node_exists: registration.node.is_some(),
            client_exists: client.is_some(),
            node_name: registration.node_name,
            client_name: registration.client_name,
            found_by: registration.found_by,
            instance_id,
        };
        Ok(Some((plan, registration.node, client)))
    }

    /// Deregisters `req.target`: see the module docs for the order of steps.
    pub async fn reap(&self, req: &Request) -> Result<Outcome, ReapError> {
        let read_at = tokio::time::Instant::now();
        let Some((plan, node, client)) = self.plan(&req.target).await? else {
            return Ok(already_gone(&req.target));
        };
        if let Some(refusal) = self.screen(req, &plan, node.as_ref(), client.as_ref()) {
            return Ok(refusal.outcome(plan));
        }
        if let Some(refusal) = self.screen_groups(&plan).await? {
            return Ok(refusal.outcome(plan));
        }
        if req.dry_run {
            return Ok(Outcome::WouldDelete { plan });
        }
        self.limiter.acquire().await?;
        if let Some(reason) = self
            .changed_while_waiting(&plan, &node, &client, read_at)
            .await?
        {
            return Ok(Outcome::Changed { reason, plan });
        }
        let entry = self.back_up(req, &plan, node, client).await?;
        let outcome = self.delete(plan, entry.id.clone()).await?;
        if !self.estate.is_empty() {
            let gone = super::estate::departure(&entry, req.verified_region.as_ref());
            super::estate::clean(&self.estate, &gone, &entry.estate).await?;
        }
        Ok(outcome)
    }

    /// Runs the estate targets again for a registration already gone: the
    /// newest journal entry of instance `id` recorded at or after `since`
    /// (the redelivered message's send time) is a deletion made by an
    /// earlier delivery of that message, whose estate targets may then have
    /// failed. Cleaning is idempotent (the webhook sends the same
    /// idempotency key), so the targets run at least once. True when an
    /// entry was found and its targets ran; nothing configured or no such
    /// entry: false.
    pub async fn resume_estate(
        &self,
        id: &InstanceId,
        since: chrono::DateTime<chrono::Utc>,
        region: Option<&Placement>,
    ) -> Result<bool, ReapError> {
        if self.estate.is_empty() {
            return Ok(false);
        }
        let entries = self
            .journal
            .entries_since(since)
            .await
            .map_err(ReapError::JournalRead)?;
        let Some(entry) = entries
            .iter()
            .rev()
            .find(|e| e.instance_id.as_deref() == Some(id.as_str()))
        else {
            return Ok(false);
        };
        let gone = super::estate::departure(entry, region);
        super::estate::clean(&self.estate, &gone, &entry.estate).await?;
        Ok(true)
    }

    /// The checks on what was read, before anything is written: protection,
    /// ownership of the client, the node's region, the request's recheck.
    /// `Some` ends the reap without deleting.
    fn screen(
        &self,
        req: &Request,
        plan: &Plan,
        node: Option<&serde_json::Value>,
        client: Option<&serde_json::Value>,
    ) -> Option<Refusal> {
        if let Some(reason) = self.protection.node_reason(&plan.node_name, node) {
            events::refused(events::Refusal::Protected);
            return Some(Refusal::Protected(reason));
        }
        if let Some(reason) = self.protection.client_reason(&plan.client_name, client) {
            events::refused(events::Refusal::ClientNotOwned);
            return Some(Refusal::NotOwned(format!(
                "{reason}; refusing to delete node {:?} and client {:?}",
                plan.node_name, plan.client_name
            )));
        }
        if let (Some(node), Some(asked)) = (node, req.verified_region.as_ref()) {
            if let Some(wrong) = misplaced(node, asked) {
                events::refused(match wrong {
                    Misplaced::OtherAccount(_) => events::Refusal::OtherAccount,
                    Misplaced::OtherRegion(_) => events::Refusal::OtherRegion,
                });
                return Some(Refusal::NotOwned(wrong.reason().to_string()));
            }
        }
        req.recheck
            .as_ref()
            .and_then(|r| r.violation(node))
            .map(Refusal::Changed)
    }

    /// Admins by membership: a client listed (directly or through nested
    /// groups) by `admins` or a `protect.client_groups` group is never
    /// deleted, nor its node with it.
    async fn screen_groups(&self, plan: &Plan) -> Result<Option<Refusal>, ReapError> {
        if !plan.client_exists {
            return Ok(None);
        }
        let reason = super::groups::membership_reason(
            self.chef.as_ref(),
            &self.protection,
            &plan.client_name,
        )
        .await?;
        Ok(reason.map(|reason| {
            events::refused(events::Refusal::ClientNotOwned);
            Refusal::NotOwned(format!(
                "{reason}; refusing to delete node {:?} and client {:?}",
                plan.node_name, plan.client_name
            ))
        }))
    }

    /// If time passed since the read the backup holds ([`REREAD_AFTER`]),
    /// reads again: why the registration no longer is what was read, if it
    /// changed (only what was backed up may be deleted).
    async fn changed_while_waiting(
        &self,
        plan: &Plan,
        node: &Option<serde_json::Value>,
        client: &Option<serde_json::Value>,
        read_at: tokio::time::Instant,
    ) -> Result<Option<String>, ReapError> {
        if read_at.elapsed() < REREAD_AFTER {
            return Ok(None);
        }
        let node_now = self.chef.get_node(&plan.node_name).await?;
        let client_now = self.chef.get_client(&plan.client_name).await?;
        let Some(reason) = changed_since(node, &node_now, client, &client_now) else {
            return Ok(None);
        };
        events::refused(events::Refusal::Changed);
        Ok(Some(format!(
            "{reason} since it was read {:?} ago; refusing to delete what was not backed up",
            read_at.elapsed()
        )))
    }

    /// Writes the journal entry (durably) for what is about to be deleted,
    /// with the estate targets' backups; returns it.
    async fn back_up(
        &self,
        req: &Request,
        plan: &Plan,
        node: Option<serde_json::Value>,
        client: Option<serde_json::Value>,
    ) -> Result<JournalEntry, ReapError> {
        let mut entry = JournalEntry::new(
            req.source.as_str(),
            req.reason.clone(),
            req.message_id.clone(),
            plan.instance_id.clone(),
            &plan.node_name,
            Some(plan.client_name.clone()),
            self.chef.server(),
            node,
            client,
        );
        entry.group = req.group.clone();
        // Keys and ACLs where the server has them (Chef Infra Server API v1),
        // with the server kind and API version: what restore needs.
        super::backup::add_server_extras_with(&mut entry, self.chef.as_ref(), self.acl_backup)
            .await?;
        if !self.estate.is_empty() {
            let gone = super::estate::departure(&entry, req.verified_region.as_ref());
            super::estate::back_up(&self.estate, &gone, &mut entry).await?;
        }
        self.journal
            .record(&entry)
            .await
            .map_err(|source| ReapError::Journal {
                node: plan.node_name.clone(),
                source,
            })?;
        Ok(entry)
    }

    /// Deletes the client, then the node (what finds the registration again
    /// goes last), and counts both.
    async fn delete(&self, plan: Plan, journal_id: String) -> Result<Outcome, ReapError> {
        let client_result = self.chef.delete_client(&plan.client_name).await?;
        let node_result = self.chef.delete_node(&plan.node_name).await?;
        events::chef_deleted(ChefObject::Client, client_result);
        events::chef_deleted(ChefObject::Node, node_result);
        Ok(Outcome::Deleted {
            plan,
            node: node_result,
            client: client_result,
            journal_id,
        })
    }
}

/// Why [`Reaper::screen`] stops a reap before anything is written.
enum Refusal {
    /// A protection rule matches.
    Protected(String),
    /// Not this instance's registration.
    NotOwned(String),
    /// The request's recheck failed.
    Changed(String),
}

impl Refusal {
    fn outcome(self, plan: Plan) -> Outcome {
        match self {
            Refusal::Protected(reason) => Outcome::Protected { plan, reason },
            Refusal::NotOwned(reason) => Outcome::Refused { plan, reason },
            Refusal::Changed(reason) => Outcome::Changed { plan, reason },
        }
    }
}

/// Nothing registered (any more) for `target`: counted, done.
fn already_gone(target: &Target) -> Outcome {
    let target = match target {
        Target::Instance(id) => format!("instance {id}"),
        Target::Node(name) => format!("node {name}"),
    };
    events::registration_already_gone();
    Outcome::AlreadyGone { target }
}

/// What differs between the backed-up read and the one right before the
/// DELETE, if anything: another instance id, a newer check-in, another key.
fn changed_since(
    node: &Option<serde_json::Value>,
    node_now: &Option<serde_json::Value>,
    client: &Option<serde_json::Value>,
    client_now: &Option<serde_json::Value>,
) -> Option<String> {
    use crate::act::resolve::recorded_instance_id;
    if let (Some(before), Some(now)) = (node, node_now) {
        if recorded_instance_id(before) != recorded_instance_id(now) {
            return Some(format!(
                "the node now records instance {}",
                recorded_instance_id(now).unwrap_or("(none)")
            ));
        }
        if ohai_time(now) != ohai_time(before) {
            return Some("the node checked in again".into());
        }
        if before != now {
            return Some("the node was modified".into());
        }
    } else if node.is_none() && node_now.is_some() {
        return Some("a node of that name was created".into());
    }
    match (client, client_now) {
        (Some(before), Some(now)) if before != now => {
            Some("the client was modified (another key?)".into())
        }
        (None, Some(_)) => Some("a client of that name was created".into()),
        _ => None,
    }
}

//! In-memory ports for tests, compiled only for the crate's own tests and
//! with the `testing` feature (which the integration tests turn on through
//! the crate's dev-dependency on itself); the release binary has none of it.
//!
//! - [`FakeFleet`]: a [`Fleet`] per account AND region, as AWS is: an
//!   instance lives in one account and region, and asked anywhere else EC2
//!   does not know it; an account that is neither the fleet's own nor
//!   configured is refused ([`PlacementError::UnknownAccount`]);
//! - [`FixedFleet`]: serves every placement from the same services (for
//!   tests where placement does not matter); [`LifecycleOverride`] sends
//!   lifecycle calls elsewhere (moto 5.2 does not implement
//!   CompleteLifecycleAction, so the integration tests record them on a
//!   local endpoint);
//! - [`FakeWorld`]: one shared in-memory world (Chef registrations, the
//!   journal, the queue and lifecycle calls in order) behind [`FakeChef`],
//!   [`FakeJournal`], [`FakeQueue`] and [`FakeLifecycle`], plus
//!   [`FakeInventory`] answering EC2 questions as told. Failures can be
//!   injected (a Chef status, the n-th Chef call, a broken journal), and a
//!   delete of anything not backed up first is recorded as a violation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::adapters::aws::AwsError;
use crate::adapters::chef::ChefError;
use crate::adapters::journal::{JournalEntry, JournalError};
use crate::core::placement::Placement;
use crate::ports::{
    ChefApi, Completion, Deleted, Fleet, GroupTags, InstanceInfo, InstanceInventory, Journal,
    Lifecycle, LifecycleAction, PlacementError, Queue, ReceivedMessage, Regional, SearchRow,
};

/// Every placement gets the same inventory and lifecycle; the placements
/// asked for are recorded.
pub struct FixedFleet {
    inventory: Arc<dyn InstanceInventory>,
    lifecycle: Arc<dyn Lifecycle>,
    asked: Mutex<Vec<Placement>>,
}

impl FixedFleet {
    /// Serves `inventory` and `lifecycle` for every placement.
    pub fn new(inventory: Arc<dyn InstanceInventory>, lifecycle: Arc<dyn Lifecycle>) -> Self {
        Self {
            inventory,
            lifecycle,
            asked: Mutex::new(Vec::new()),
        }
    }

    /// The placements asked for so far, in order.
    pub fn asked(&self) -> Vec<Placement> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Fleet for FixedFleet {
    async fn regional(&self, placement: &Placement) -> Result<Regional, PlacementError> {
        if let Ok(mut a) = self.asked.lock() {
            a.push(placement.clone());
        }
        Ok(Regional {
            placement: placement.clone(),
            inventory: self.inventory.clone(),
            lifecycle: self.lifecycle.clone(),
            group_tags: Arc::new(FakeGroupTags::default()),
        })
    }
}

/// EC2 per account and region, as AWS answers: each placement has its own
/// inventory; asked where nothing was placed, EC2 knows no instance. The
/// returned [`Regional`] names the account it answers for (the own account
/// when asked for `None`), as the real fleet does.
pub struct FakeFleet {
    own: String,
    others: Vec<String>,
    places: BTreeMap<(String, String), Arc<dyn InstanceInventory>>,
    lifecycle: Arc<dyn Lifecycle>,
    asked: Mutex<Vec<Placement>>,
}

impl FakeFleet {
    /// A fleet whose own account is `own`, also able to ask `others` (as
    /// `[[aws.accounts]]` would), with no instances anywhere yet.
    pub fn new(own: &str, others: &[&str], lifecycle: Arc<dyn Lifecycle>) -> Self {
        Self {
            own: own.to_string(),
            others: others.iter().map(|a| a.to_string()).collect(),
            places: BTreeMap::new(),
            lifecycle,
            asked: Mutex::new(Vec::new()),
        }
    }

    /// EC2 in `account`, `region` answers with `inventory`.
    pub fn place(
        mut self,
        account: &str,
        region: &str,
        inventory: Arc<dyn InstanceInventory>,
    ) -> Self {
        self.places
            .insert((account.to_string(), region.to_string()), inventory);
        self
    }

    /// The placements asked for so far, in order.
    pub fn asked(&self) -> Vec<Placement> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Fleet for FakeFleet {
    async fn regional(&self, placement: &Placement) -> Result<Regional, PlacementError> {
        if let Ok(mut a) = self.asked.lock() {
            a.push(placement.clone());
        }
        let account = placement
            .account
            .clone()
            .unwrap_or_else(|| self.own.clone());
        if account != self.own && !self.others.contains(&account) {
            return Err(PlacementError::UnknownAccount {
                account,
                own: self.own.clone(),
            });
        }
        let inventory = self
            .places
            .get(&(account.clone(), placement.region.clone()))
            .cloned()
            .unwrap_or_else(|| Arc::new(FakeInventory(FakeEc2::Unknown)));
        Ok(Regional {
            placement: Placement {
                account: Some(account),
                region: placement.region.clone(),
            },
            inventory,
            lifecycle: self.lifecycle.clone(),
            group_tags: Arc::new(FakeGroupTags::default()),
        })
    }
}

/// Which instance ids live in one account and region.
#[derive(Debug, Clone)]
pub enum Residents {
    /// These ids.
    Only(Vec<String>),
    /// Every id but these (which live elsewhere).
    AllBut(Vec<String>),
}

impl Residents {
    fn contains(&self, id: &String) -> bool {
        match self {
            Residents::Only(ids) => ids.contains(id),
            Residents::AllBut(ids) => !ids.contains(id),
        }
    }
}

/// The instances that live in one account and region: EC2 there answers
/// `answer` for them and does not know any other id.
pub struct LivesHere {
    /// The instance ids placed here.
    pub ids: Residents,
    /// What EC2 answers about them (a failure fails every call).
    pub answer: FakeEc2,
}

#[async_trait]
impl InstanceInventory for LivesHere {
    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>, AwsError> {
        let here: Vec<String> = ids
            .iter()
            .filter(|id| self.ids.contains(id))
            .cloned()
            .collect();
        if let FakeEc2::Fails(e) = &self.answer {
            return Err(e.clone());
        }
        FakeInventory(self.answer.clone()).describe(&here).await
    }
}

/// `inner`'s services, with lifecycle calls sent to `lifecycle`.
pub struct LifecycleOverride {
    /// The services but lifecycle.
    pub inner: Arc<dyn Fleet>,
    /// Where lifecycle calls go instead.
    pub lifecycle: Arc<dyn Lifecycle>,
}

#[async_trait]
impl Fleet for LifecycleOverride {
    async fn regional(&self, placement: &Placement) -> Result<Regional, PlacementError> {
        let mut regional = self.inner.regional(placement).await?;
        regional.lifecycle = self.lifecycle.clone();
        Ok(regional)
    }
}

/// `inner`'s services, with group tags read from `group_tags`.
pub struct GroupTagsOverride {
    /// The services but group tags.
    pub inner: Arc<dyn Fleet>,
    /// Where group tags are read instead.
    pub group_tags: Arc<dyn GroupTags>,
}

#[async_trait]
impl Fleet for GroupTagsOverride {
    async fn regional(&self, placement: &Placement) -> Result<Regional, PlacementError> {
        let mut regional = self.inner.regional(placement).await?;
        regional.group_tags = self.group_tags.clone();
        Ok(regional)
    }
}

/// Group tags as told: `tags[(group, key)]`, or `fails` for every call;
/// counts the calls.
#[derive(Default)]
pub struct FakeGroupTags {
    /// (group, key) -> value.
    pub tags: HashMap<(String, String), String>,
    /// Every call answers this error.
    pub fails: Option<AwsError>,
    /// Calls so far.
    pub calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl GroupTags for FakeGroupTags {
    async fn group_tag(&self, group: &str, key: &str) -> Result<Option<String>, AwsError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(e) = &self.fails {
            return Err(e.clone());
        }
        Ok(self
            .tags
            .get(&(group.to_string(), key.to_string()))
            .cloned())
    }
}

/// The state the fakes share. Tests set it up and read it back through
/// [`FakeWorld::lock`].
#[derive(Default)]
pub struct World {
    /// Chef nodes by name.
    pub nodes: BTreeMap<String, Value>,
    /// Chef API clients by name.
    pub clients: BTreeMap<String, Value>,
    /// (node name, instance id) the search index still returns although the
    /// node is gone.
    pub ghosts: Vec<(String, String)>,
    /// Chef objects deleted, as (`"node"` or `"client"`, name), in order.
    pub deleted: Vec<(&'static str, String)>,
    /// Journal entries written.
    pub journal: Vec<JournalEntry>,
    /// The journal cannot write.
    pub journal_broken: bool,
    /// Every Chef call answers this HTTP status.
    pub chef_status: Option<u16>,
    /// The n-th Chef call (0-based) answers 503 Service Unavailable.
    pub chef_fails_at: Option<usize>,
    /// Chef calls so far.
    pub chef_calls: usize,
    /// How long a node DELETE takes.
    pub chef_delay: Duration,
    /// Lifecycle actions completed with CONTINUE.
    pub completed: Vec<LifecycleAction>,
    /// Journal, queue and lifecycle calls in order: `journal <node>`,
    /// `delete <message>`, `visibility <message> <seconds>`, `dead_letter
    /// <message> <reason>`, `heartbeat <instance>`, `complete <instance>`.
    pub calls: Vec<String>,
    /// Broken rules seen by the fakes (a delete without a backup).
    pub violations: Vec<String>,
}

impl World {
    /// A node (named `name`, recording `instance_id`) and, if `client`, its
    /// API client of the same name.
    pub fn register(&mut self, name: &str, instance_id: &str, client: bool) {
        self.nodes.insert(
            name.to_string(),
            json!({
                "name": name,
                "chef_environment": "_default",
                "run_list": ["recipe[base]"],
                "automatic": {"ec2": {"instance_id": instance_id}, "ohai_time": 1.0e9},
            }),
        );
        if client {
            self.clients
                .insert(name.to_string(), json!({ "name": name }));
        }
    }

    /// How many recorded calls start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.calls.iter().filter(|c| c.starts_with(prefix)).count()
    }

    /// The queue actions taken, in order: `delete`, `dead_letter` or
    /// `extend_visibility`.
    pub fn queue_actions(&self) -> Vec<&'static str> {
        self.calls
            .iter()
            .filter_map(|c| match c.split(' ').next() {
                Some("delete") => Some("delete"),
                Some("dead_letter") => Some("dead_letter"),
                Some("visibility") => Some("extend_visibility"),
                _ => None,
            })
            .collect()
    }

    /// Counts a Chef call; the injected failure, if this call fails.
    fn chef_call(&mut self, what: &str) -> Result<(), ChefError> {
        let n = self.chef_calls;
        self.chef_calls += 1;
        let status = match self.chef_status {
            Some(status) => status,
            None if self.chef_fails_at == Some(n) => 503,
            None => return Ok(()),
        };
        Err(ChefError::Status {
            server: FAKE_CHEF.into(),
            method: "fake".into(),
            object: what.into(),
            status,
            detail: "injected failure".into(),
        })
    }

    /// "No backup, no delete": the journal must already hold this object as
    /// it is now.
    fn check_backup(&mut self, kind: &'static str, name: &str) {
        let current = match kind {
            "node" => self.nodes.get(name),
            _ => self.clients.get(name),
        };
        let Some(current) = current else { return };
        let backed_up = self.journal.iter().any(|e| match kind {
            "node" => e.node_name == name && e.node.as_ref() == Some(current),
            _ => e.client_name.as_deref() == Some(name) && e.client.as_ref() == Some(current),
        });
        if !backed_up {
            self.violations
                .push(format!("{kind} {name} deleted without a journal backup"));
        }
    }
}

const FAKE_CHEF: &str = "https://chef.fake";

/// A [`World`] shared by the fakes (cheap to clone).
#[derive(Clone, Default)]
pub struct FakeWorld(Arc<Mutex<World>>);

impl FakeWorld {
    /// Fakes over `world`.
    pub fn new(world: World) -> Self {
        Self(Arc::new(Mutex::new(world)))
    }

    /// The shared state (a panicked holder does not lock others out).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Chef server of this world.
    pub fn chef(&self) -> Arc<FakeChef> {
        Arc::new(FakeChef(self.clone()))
    }

    /// The journal of this world.
    pub fn journal(&self) -> Arc<FakeJournal> {
        Arc::new(FakeJournal(self.clone()))
    }

    /// The queue of this world.
    pub fn queue(&self) -> Arc<FakeQueue> {
        Arc::new(FakeQueue(self.clone()))
    }

    /// The Auto Scaling lifecycle API of this world.
    pub fn lifecycle(&self) -> Arc<FakeLifecycle> {
        Arc::new(FakeLifecycle(self.clone()))
    }
}

/// A Chef server holding [`World::nodes`] and [`World::clients`].
pub struct FakeChef(FakeWorld);

#[async_trait]
impl ChefApi for FakeChef {
    fn server(&self) -> &str {
        FAKE_CHEF
    }
    async fn get_node(&self, name: &str) -> Result<Option<Value>, ChefError> {
        let mut w = self.0.lock();
        w.chef_call("GET node")?;
        Ok(w.nodes.get(name).cloned())
    }
    async fn delete_node(&self, name: &str) -> Result<Deleted, ChefError> {
        self.0.lock().chef_call("DELETE node")?;
        let delay = self.0.lock().chef_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut w = self.0.lock();
        w.check_backup("node", name);
        w.deleted.push(("node", name.to_string()));
        Ok(match w.nodes.remove(name) {
            Some(_) => Deleted::Removed,
            None => Deleted::AlreadyGone,
        })
    }
    async fn get_client(&self, name: &str) -> Result<Option<Value>, ChefError> {
        let mut w = self.0.lock();
        w.chef_call("GET client")?;
        Ok(w.clients.get(name).cloned())
    }
    async fn delete_client(&self, name: &str) -> Result<Deleted, ChefError> {
        let mut w = self.0.lock();
        w.chef_call("DELETE client")?;
        w.check_backup("client", name);
        w.deleted.push(("client", name.to_string()));
        Ok(match w.clients.remove(name) {
            Some(_) => Deleted::Removed,
            None => Deleted::AlreadyGone,
        })
    }
    async fn list_nodes(&self) -> Result<Vec<String>, ChefError> {
        Ok(self.0.lock().nodes.keys().cloned().collect())
    }
    /// Answers `ec2_instance_id:<id>` queries (with the ghosts); nothing
    /// else.
    async fn search_node_names(&self, query: &str) -> Result<Vec<String>, ChefError> {
        let mut w = self.0.lock();
        w.chef_call("search")?;
        let Some(id) = query.strip_prefix("ec2_instance_id:") else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = w
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.pointer("/automatic/ec2/instance_id")
                    .and_then(Value::as_str)
                    == Some(id)
            })
            .map(|(name, _)| name.clone())
            .collect();
        names.extend(
            w.ghosts
                .iter()
                .filter(|(_, ghost_id)| ghost_id == id)
                .map(|(name, _)| name.clone()),
        );
        Ok(names)
    }
    async fn partial_search_nodes(
        &self,
        _query: &str,
        _keys: &[(&str, &[&str])],
    ) -> Result<Vec<SearchRow>, ChefError> {
        Ok(Vec::new())
    }
    async fn create_node(&self, _node: &Value) -> Result<(), ChefError> {
        Ok(())
    }
    async fn update_node(&self, _name: &str, _node: &Value) -> Result<(), ChefError> {
        Ok(())
    }
    async fn create_client(
        &self,
        _name: &str,
        _public_key: Option<&str>,
        _admin: bool,
    ) -> Result<(), ChefError> {
        Ok(())
    }
}

/// A journal keeping [`World::journal`]; fails while
/// [`World::journal_broken`].
pub struct FakeJournal(FakeWorld);

#[async_trait]
impl Journal for FakeJournal {
    async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let mut w = self.0.lock();
        if w.journal_broken {
            return Err(JournalError::Io {
                location: "/fake/journal".into(),
                detail: "cannot fsync".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        w.calls.push(format!("journal {}", entry.node_name));
        w.journal.push(entry.clone());
        Ok(())
    }
    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        Ok(self.0.lock().journal.clone())
    }
    async fn probe(&self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// A queue that receives nothing and records what is done with messages.
pub struct FakeQueue(FakeWorld);

#[async_trait]
impl Queue for FakeQueue {
    fn name(&self) -> &str {
        "fake-queue"
    }
    async fn receive(&self, _max: i32, _wait: Duration) -> Result<Vec<ReceivedMessage>, AwsError> {
        Ok(Vec::new())
    }
    async fn delete(&self, msg: &ReceivedMessage) -> Result<(), AwsError> {
        self.0
            .lock()
            .calls
            .push(format!("delete {}", msg.message_id));
        Ok(())
    }
    async fn extend_visibility(
        &self,
        msg: &ReceivedMessage,
        timeout: Duration,
    ) -> Result<(), AwsError> {
        self.0.lock().calls.push(format!(
            "visibility {} {}",
            msg.message_id,
            timeout.as_secs()
        ));
        Ok(())
    }
    async fn depth(&self) -> Result<(u64, u64), AwsError> {
        Ok((0, 0))
    }
    async fn dead_letter(&self, msg: &ReceivedMessage, reason: &str) -> Result<(), AwsError> {
        self.0
            .lock()
            .calls
            .push(format!("dead_letter {} {reason}", msg.message_id));
        Ok(())
    }
}

/// An Auto Scaling lifecycle API that records heartbeats and completions.
pub struct FakeLifecycle(FakeWorld);

#[async_trait]
impl Lifecycle for FakeLifecycle {
    async fn heartbeat(&self, action: &LifecycleAction) -> Result<Completion, AwsError> {
        self.0
            .lock()
            .calls
            .push(format!("heartbeat {}", action.instance_id));
        Ok(Completion::Completed)
    }
    async fn complete_continue(&self, action: &LifecycleAction) -> Result<Completion, AwsError> {
        let mut w = self.0.lock();
        w.calls.push(format!("complete {}", action.instance_id));
        w.completed.push(action.clone());
        Ok(Completion::Completed)
    }
    async fn probe(&self) -> Result<(), AwsError> {
        Ok(())
    }
}

/// What [`FakeInventory`] answers for every instance asked about.
#[derive(Debug, Clone)]
pub enum FakeEc2 {
    /// DescribeInstances does not know the ids (terminated long ago).
    Unknown,
    /// Every instance asked about is in this state.
    Reports {
        /// The EC2 state name (`running`, `terminated`, ...).
        state: String,
        /// The Auto Scaling lifecycle state, if any.
        asg_lifecycle_state: Option<String>,
        /// The instance's tags.
        tags: HashMap<String, String>,
    },
    /// The call fails so.
    Fails(AwsError),
}

/// An EC2 inventory answering [`FakeEc2`].
pub struct FakeInventory(pub FakeEc2);

#[async_trait]
impl InstanceInventory for FakeInventory {
    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>, AwsError> {
        let (state, asg_lifecycle_state, tags) = match &self.0 {
            FakeEc2::Unknown => return Ok(HashMap::new()),
            FakeEc2::Fails(e) => return Err(e.clone()),
            FakeEc2::Reports {
                state,
                asg_lifecycle_state,
                tags,
            } => (state, asg_lifecycle_state, tags),
        };
        Ok(ids
            .iter()
            .map(|id| {
                let info = InstanceInfo {
                    instance_id: id.clone(),
                    state: crate::core::ec2::Ec2State::from_name(state),
                    tags: tags.clone(),
                    asg_lifecycle_state: asg_lifecycle_state.clone(),
                };
                (id.clone(), info)
            })
            .collect())
    }
}

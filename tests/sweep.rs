//! `nodereaper sweep`, journal and restore against goiardi + moto EC2.
//!
//! A sweep looks at the whole Chef server, so this binary runs its own stack
//! (target/stack-sweep) and its tests one at a time, each starting from an
//! empty server.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use nodereaper::act::resolve::Resolver;
use nodereaper::act::{DeletionLimiter, Reaper};
use nodereaper::adapters::chef::{ChefClient, ChefError};
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::config::ProtectConfig;
use nodereaper::core::verify::Protection;
use nodereaper::jobs::restore::{ClientAction, NodeAction};
use nodereaper::jobs::sweep::{sweep, Report, Silent, SweepSettings, Verdict};
use nodereaper::ports::{ChefApi, Deleted, InstanceInventory, Journal, SearchRow};
use serde_json::Value;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn settings(apply: bool) -> SweepSettings {
    SweepSettings {
        grace_period: Duration::from_secs(3600),
        max_candidates: 100,
        max_candidate_share: 1.0,
        force: false,
        apply,
        instance_id_attribute: vec!["ec2".into(), "instance_id".into()],
        region_attribute: vec!["ec2".into(), "placement_availability_zone".into()],
        default_region: "us-east-1".into(),
    }
}

async fn inventories() -> HashMap<String, Arc<dyn InstanceInventory>> {
    let sdk = aws().await;
    let inv: Arc<dyn InstanceInventory> =
        Arc::new(nodereaper::adapters::aws::ec2::Ec2Inventory::new(
            aws_sdk_ec2::Client::new(&sdk),
            aws_sdk_autoscaling::Client::new(&sdk),
            "us-east-1",
        ));
    HashMap::from([("us-east-1".to_string(), inv)])
}

fn reaper(chef: Arc<dyn ChefApi>, journal: &std::path::Path) -> Reaper {
    Reaper {
        chef,
        journal: Arc::new(LocalJournal::open(journal).expect("journal")),
        resolver: Resolver::default(),
        protection: Protection::new(&ProtectConfig {
            node_names: vec!["keep-*".into()],
            ..ProtectConfig::default()
        }),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
    }
}

/// Removes every node and every non-built-in client.
async fn wipe(chef: &ChefClient) {
    for n in chef.list_nodes().await.expect("list") {
        chef.delete_node(&n).await.expect("delete node");
    }
    let resp = chef
        .send(reqwest::Method::GET, &["clients"], &[], None)
        .await
        .expect("clients");
    let clients: HashMap<String, Value> = serde_json::from_slice(&resp.body).expect("json");
    for c in clients
        .keys()
        .filter(|c| !["admin", "chef-validator", "chef-webui"].contains(&c.as_str()))
    {
        chef.delete_client(c).await.expect("delete client");
    }
}

fn names_with(report: &Report, verdict: Verdict) -> BTreeSet<String> {
    report
        .rows
        .iter()
        .filter(|r| r.verdict == verdict)
        .map(|r| r.node.clone())
        .collect()
}

/// A fleet: 7 running, 3 terminated instances, their nodes, plus nodes that
/// must survive for other reasons. Returns (terminated node names, all node names).
struct Fleet {
    gone: BTreeSet<String>,
    survivors: BTreeSet<String>,
}

async fn fleet(chef: &ChefClient) -> Fleet {
    let ids = run_instances(10).await;
    terminate_instances(&ids[7..]).await;
    let mut gone = BTreeSet::new();
    let mut survivors = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let name = format!("web-{i}-{id}");
        register(chef, &name, Some(id)).await;
        if i >= 7 {
            gone.insert(name)
        } else {
            survivors.insert(name)
        };
    }
    // EC2 has never heard of this one (terminated long ago): a candidate too.
    let ancient = fake_instance_id();
    let name = format!("old-{ancient}");
    register(chef, &name, Some(&ancient)).await;
    gone.insert(name);
    // No EC2 data: unknown provenance, never deleted.
    for i in 0..2 {
        let name = unique(&format!("onprem-{i}"));
        register(chef, &name, None).await;
        survivors.insert(name);
    }
    // Terminated, but checked in 5 minutes ago: within the grace period.
    let recent = run_instances(1).await;
    terminate_instances(&recent).await;
    let name = format!("fresh-{}", recent[0]);
    register_aged(chef, &name, Some(&recent[0]), Duration::from_secs(300)).await;
    survivors.insert(name);
    // Terminated but protected by name.
    let kept = run_instances(1).await;
    terminate_instances(&kept).await;
    let name = format!("keep-{}", kept[0]);
    register(chef, &name, Some(&kept[0])).await;
    survivors.insert(name);
    Fleet { gone, survivors }
}

#[tokio::test]
async fn sweep_reports_then_applies_exactly_the_terminated() {
    use_private_stack("sweep");
    let _serial = SERIAL.lock().await;
    let chef = Arc::new(admin());
    wipe(&chef).await;
    let fleet = fleet(&chef).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(chef.clone(), journal.path());
    let inv = inventories().await;

    let report = sweep(&reaper, &inv, &settings(false), &Silent)
        .await
        .expect("report");
    assert!(report.aborted.is_none(), "{:?}", report.aborted);
    assert_eq!(
        names_with(&report, Verdict::Delete),
        fleet.gone,
        "report must name exactly the gone instances"
    );
    assert_eq!(names_with(&report, Verdict::UnknownProvenance).len(), 2);
    assert_eq!(names_with(&report, Verdict::TooRecent).len(), 1);
    assert_eq!(names_with(&report, Verdict::Protected).len(), 1);
    assert_eq!(report.deleted, 0);
    for n in fleet.gone.iter().chain(&fleet.survivors) {
        assert!(
            chef.get_node(n).await.expect("get").is_some(),
            "report-only sweep deleted {n}"
        );
    }

    let applied = sweep(&reaper, &inv, &settings(true), &Silent)
        .await
        .expect("apply");
    assert_eq!(names_with(&applied, Verdict::Deleted), fleet.gone);
    assert_eq!(applied.deleted, fleet.gone.len());
    for n in &fleet.gone {
        assert!(
            chef.get_node(n).await.expect("get").is_none(),
            "{n} survived --apply"
        );
        assert!(
            chef.get_client(n).await.expect("get").is_none(),
            "{n}'s client survived --apply"
        );
    }
    for n in &fleet.survivors {
        assert!(
            chef.get_node(n).await.expect("get").is_some(),
            "{n} was deleted"
        );
        assert!(
            chef.get_client(n).await.expect("get").is_some(),
            "{n}'s client was deleted"
        );
    }
    let entries = LocalJournal::open(journal.path())
        .expect("journal")
        .entries()
        .await
        .expect("entries");
    let journaled: BTreeSet<String> = entries.iter().map(|e| e.node_name.clone()).collect();
    assert_eq!(journaled, fleet.gone);
    assert!(entries
        .iter()
        .all(|e| e.source == "sweep" && e.node.is_some() && e.client.is_some()));
}

#[tokio::test]
async fn blast_radius_caps_abort_unless_forced() {
    use_private_stack("sweep");
    let _serial = SERIAL.lock().await;
    let chef = Arc::new(admin());
    wipe(&chef).await;
    let fleet = fleet(&chef).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(chef.clone(), journal.path());
    let inv = inventories().await;

    let mut capped = settings(true);
    capped.max_candidates = 2;
    let report = sweep(&reaper, &inv, &capped, &Silent).await.expect("sweep");
    let reason = report.aborted.clone().expect("absolute cap must abort");
    assert!(reason.contains("max_candidates"), "{reason}");
    assert_eq!(report.deleted, 0);

    let mut share = settings(true);
    share.max_candidate_share = 0.2; // 4 of 14 EC2-backed nodes is ~29%
    let report = sweep(&reaper, &inv, &share, &Silent).await.expect("sweep");
    let reason = report.aborted.clone().expect("share cap must abort");
    assert!(reason.contains("max_candidate_share"), "{reason}");
    for n in &fleet.gone {
        assert!(
            chef.get_node(n).await.expect("get").is_some(),
            "an aborted sweep deleted {n}"
        );
    }

    share.force = true;
    let forced = sweep(&reaper, &inv, &share, &Silent).await.expect("forced");
    assert!(forced.aborted.is_none());
    assert_eq!(forced.deleted, fleet.gone.len());
}

/// The real goiardi client, with a search index that lags one node behind.
struct StaleIndex(Arc<ChefClient>);

#[async_trait]
impl ChefApi for StaleIndex {
    fn server(&self) -> &str {
        self.0.server()
    }
    async fn get_node(&self, n: &str) -> Result<Option<Value>, ChefError> {
        self.0.get_node(n).await
    }
    async fn delete_node(&self, n: &str) -> Result<Deleted, ChefError> {
        self.0.delete_node(n).await
    }
    async fn get_client(&self, n: &str) -> Result<Option<Value>, ChefError> {
        self.0.get_client(n).await
    }
    async fn delete_client(&self, n: &str) -> Result<Deleted, ChefError> {
        self.0.delete_client(n).await
    }
    async fn list_nodes(&self) -> Result<Vec<String>, ChefError> {
        self.0.list_nodes().await
    }
    async fn search_node_names(&self, q: &str) -> Result<Vec<String>, ChefError> {
        self.0.search_node_names(q).await
    }
    async fn partial_search_nodes(
        &self,
        q: &str,
        keys: &[(&str, &[&str])],
    ) -> Result<Vec<SearchRow>, ChefError> {
        let mut rows = self.0.partial_search_nodes(q, keys).await?;
        rows.pop();
        Ok(rows)
    }
    async fn create_node(&self, node: &Value) -> Result<(), ChefError> {
        self.0.create_node(node).await
    }
    async fn update_node(&self, n: &str, node: &Value) -> Result<(), ChefError> {
        self.0.update_node(n, node).await
    }
    async fn create_client(&self, n: &str, k: Option<&str>, a: bool) -> Result<(), ChefError> {
        self.0.create_client(n, k, a).await
    }
}

#[tokio::test]
async fn stale_index_aborts_the_sweep() {
    use_private_stack("sweep");
    let _serial = SERIAL.lock().await;
    let chef = Arc::new(admin());
    wipe(&chef).await;
    let fleet = fleet(&chef).await;
    let journal = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(Arc::new(StaleIndex(chef.clone())), journal.path());
    let report = sweep(&reaper, &inventories().await, &settings(true), &Silent)
        .await
        .expect("sweep");
    let reason = report.aborted.expect("stale index must abort");
    assert!(reason.contains("stale search index"), "{reason}");
    for n in &fleet.gone {
        assert!(chef.get_node(n).await.expect("get").is_some());
    }
}

/// Fields the server manages itself and may not echo back identically.
/// goiardi returns a restored node exactly as stored; Chef Infra Server may
/// add defaults (e.g. empty `policy_name`/`policy_group`) — compared modulo those.
fn comparable(mut node: Value) -> Value {
    if let Some(map) = node.as_object_mut() {
        for k in ["policy_name", "policy_group"] {
            if map.get(k).is_some_and(Value::is_null) {
                map.remove(k);
            }
        }
    }
    node
}

#[tokio::test]
async fn deleted_node_restores_equal_to_the_original() {
    use_private_stack("sweep");
    let _serial = SERIAL.lock().await;
    let chef = Arc::new(admin());
    let id = fake_instance_id();
    let name = unique("restore-me");
    register(&chef, &name, Some(&id)).await;
    let original_node = chef.get_node(&name).await.expect("get").expect("node");
    let original_client = chef.get_client(&name).await.expect("get").expect("client");

    let journal_dir = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(chef.clone(), journal_dir.path());
    let outcome = reaper
        .reap(&nodereaper::act::Request {
            target: nodereaper::act::Target::Instance(id.parse().expect("valid id")),
            source: nodereaper::act::RequestSource::Deregister,
            reason: "test".into(),
            message_id: None,
            dry_run: false,
            recheck: None,
            verified_region: None,
        })
        .await
        .expect("deregister");
    assert_eq!(outcome.label(), "deleted");
    assert!(chef.get_node(&name).await.expect("get").is_none());

    let journal = LocalJournal::open(journal_dir.path()).expect("journal");
    let filter = nodereaper::adapters::journal::EntryFilter {
        node: Some(name.clone()),
        ..Default::default()
    };
    let entries = nodereaper::jobs::restore::select(&journal, &filter)
        .await
        .expect("select");
    assert_eq!(entries.len(), 1);
    let restored = nodereaper::jobs::restore::restore(chef.as_ref(), &entries[0], false)
        .await
        .expect("restore");
    assert_eq!(restored.node_action, NodeAction::Created);
    assert_eq!(restored.client_action, ClientAction::CreatedWithOriginalKey);
    let node = chef
        .get_node(&name)
        .await
        .expect("get")
        .expect("restored node");
    assert_eq!(comparable(node), comparable(original_node.clone()));
    let client = chef
        .get_client(&name)
        .await
        .expect("get")
        .expect("restored client");
    assert_eq!(
        client["public_key"], original_client["public_key"],
        "client must keep its key"
    );

    // Restoring over an existing node is refused without --force.
    let err = nodereaper::jobs::restore::restore(chef.as_ref(), &entries[0], false)
        .await
        .expect_err("must refuse");
    assert!(err.to_string().contains("--force"), "{err}");
    let forced =
        nodereaper::jobs::restore::restore_with(chef.as_ref(), &entries[0], true, Some(&journal))
            .await
            .expect("force");
    assert_eq!(forced.node_action, NodeAction::Replaced);
    assert_eq!(
        comparable(chef.get_node(&name).await.expect("get").expect("node")),
        comparable(original_node)
    );
}

//! `nodereaper sweep`, journal and restore against goiardi + moto EC2.
//!
//! A sweep looks at the whole Chef server, so this binary runs its own stack
//! (target/stack-sweep) and its tests one at a time, each starting from an
//! empty server.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use nodereaper::act::resolve::Resolver;
use nodereaper::act::{DeletionLimiter, Reaper};
use nodereaper::adapters::aws::fleet::AwsFleet;
use nodereaper::adapters::chef::{ChefClient, ChefError};
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::config::ProtectConfig;
use nodereaper::core::verify::Protection;
use nodereaper::jobs::restore::{ClientAction, NodeAction};
use nodereaper::jobs::sweep::{sweep, Report, Silent, SweepSettings, Verdict};
use nodereaper::ports::{ChefApi, Deleted, Journal, SearchRow};
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
        regions: vec!["us-east-1".into()],
    }
}

/// The sweep's fleet on moto: nodereaper's own account (123456789012) plus
/// `accounts` (id, role) as `[[aws.accounts]]` would configure them.
fn fleet_with(accounts: &[(&str, &str)]) -> AwsFleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[], dir.path());
    cfg.aws.accounts = accounts
        .iter()
        .map(|(id, role)| nodereaper::config::AccountConfig {
            id: id.to_string(),
            role_arn: role.to_string(),
            external_id: None,
        })
        .collect();
    AwsFleet::new(&cfg.aws).states_only()
}

fn own_fleet() -> AwsFleet {
    fleet_with(&[])
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
        estate: Vec::new(),
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
    let inv = own_fleet();

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
    let inv = own_fleet();

    let mut capped = settings(true);
    capped.max_candidates = 2;
    let report = sweep(&reaper, &inv, &capped, &Silent).await.expect("sweep");
    let reason = report.aborted.clone().expect("absolute cap must abort");
    assert!(reason.contains("max_candidates"), "{reason}");
    assert_eq!(report.deleted, 0);

    let mut share = settings(true);
    share.max_candidate_share = 0.2; // 4 of the 14 nodes asked about is ~29%
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
    let report = sweep(&reaper, &own_fleet(), &settings(true), &Silent)
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
            group: None,
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

const OWN_ACCOUNT: &str = "123456789012";
const OTHER_ACCOUNT: &str = "111111111111";
const OTHER_ROLE: &str = "arn:aws:iam::111111111111:role/nodereaper-verify";

/// Registers a node (3 h old) recording `account` and `zone` as Ohai does
/// (`automatic.ec2.account_id` from the identity document, `None`: not
/// recorded), with its client.
async fn register_placed(
    chef: &ChefClient,
    name: &str,
    id: &str,
    account: Option<&str>,
    zone: Option<&str>,
) {
    let mut node = node_json(name, Some(id), Duration::from_secs(3 * 3600));
    let ec2 = node["automatic"]["ec2"]
        .as_object_mut()
        .expect("node_json records ec2");
    ec2.remove("placement_availability_zone");
    if let Some(zone) = zone {
        ec2.insert("placement_availability_zone".into(), zone.into());
    }
    if let Some(account) = account {
        ec2.insert("account_id".into(), account.into());
    }
    chef.create_node(&node).await.expect("create node");
    chef.create_client(name, None, false)
        .await
        .expect("create client");
}

fn verdict_of(report: &Report, node: &str) -> Verdict {
    report
        .rows
        .iter()
        .find(|r| r.node == node)
        .unwrap_or_else(|| panic!("{node} not in the report"))
        .verdict
}

async fn exists(chef: &ChefClient, name: &str) -> bool {
    chef.get_node(name).await.expect("get node").is_some()
        && chef.get_client(name).await.expect("get client").is_some()
}

/// H2: the nodes of another account sharing the Chef server are asked in
/// their account (through its `[[aws.accounts]]` role), or, when nodereaper
/// cannot ask that account, never become candidates.
#[tokio::test]
async fn nodes_of_another_account_are_asked_there_or_never_candidates() {
    use_private_stack("sweep");
    let _serial = SERIAL.lock().await;
    let chef = Arc::new(admin());
    wipe(&chef).await;
    let theirs = aws_as(OTHER_ROLE, "us-east-1").await;
    let ids = run_instances_with(&theirs, 2).await;
    terminate_with(&theirs, &ids[1..]).await;
    let (their_alive, their_gone) = (unique("b-alive"), unique("b-gone"));
    let b = Some(OTHER_ACCOUNT);
    register_placed(&chef, &their_alive, &ids[0], b, Some("us-east-1a")).await;
    register_placed(&chef, &their_gone, &ids[1], b, Some("us-east-1b")).await;
    // An account nobody configured: never asked, never deleted.
    let unknown = unique("c-node");
    let c = Some("222222222222");
    register_placed(&chef, &unknown, &fake_instance_id(), c, Some("us-east-1a")).await;
    // The happy twin in our own account (recording it, as Ohai does).
    let own = run_instances(1).await;
    terminate_instances(&own).await;
    let own_gone = unique("a-gone");
    register_placed(
        &chef,
        &own_gone,
        &own[0],
        Some(OWN_ACCOUNT),
        Some("us-east-1a"),
    )
    .await;
    let journal = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(chef.clone(), journal.path());

    // Without [[aws.accounts]]: account B cannot be asked.
    let report = sweep(&reaper, &own_fleet(), &settings(true), &Silent)
        .await
        .expect("sweep");
    assert!(report.aborted.is_none(), "{:?}", report.aborted);
    for name in [&their_alive, &their_gone, &unknown] {
        assert_eq!(verdict_of(&report, name), Verdict::NotChecked, "{name}");
        assert!(exists(&chef, name).await, "{name} deleted: {report:?}");
    }
    assert_eq!(verdict_of(&report, &own_gone), Verdict::Deleted);
    assert!(!exists(&chef, &own_gone).await);
    assert_eq!(
        report.asked, 1,
        "only the own account's node was asked about"
    );

    // With B's role: asked there, alive is kept, gone is deleted.
    let with_b = fleet_with(&[(OTHER_ACCOUNT, OTHER_ROLE)]);
    let report = sweep(&reaper, &with_b, &settings(true), &Silent)
        .await
        .expect("sweep");
    assert!(report.aborted.is_none(), "{:?}", report.aborted);
    assert_eq!(verdict_of(&report, &their_alive), Verdict::Keep);
    assert!(
        exists(&chef, &their_alive).await,
        "B's running instance deleted"
    );
    assert_eq!(verdict_of(&report, &their_gone), Verdict::Deleted);
    assert!(
        !exists(&chef, &their_gone).await,
        "B's terminated instance kept"
    );
    assert_eq!(verdict_of(&report, &unknown), Verdict::NotChecked);
    assert!(exists(&chef, &unknown).await);
    let row = report
        .rows
        .iter()
        .find(|r| r.node == their_gone)
        .expect("row");
    assert_eq!(row.account.as_deref(), Some(OTHER_ACCOUNT), "{row:?}");
}

/// M12: the share cap's base is the nodes EC2 was asked about, and a node
/// recording no zone is never asked in a default region.
#[tokio::test]
async fn share_cap_counts_only_nodes_asked_about_and_zoneless_nodes_are_not_asked() {
    use_private_stack("sweep");
    let _serial = SERIAL.lock().await;
    let chef = Arc::new(admin());
    wipe(&chef).await;
    // Swept region: 3 running, 1 terminated -> 1 candidate of 4 asked (25 %).
    let ids = run_instances(4).await;
    terminate_instances(&ids[3..]).await;
    let names: Vec<String> = (0..4).map(|i| unique(&format!("east-{i}"))).collect();
    for (name, id) in names.iter().zip(&ids) {
        register_placed(&chef, name, id, None, Some("us-east-1c")).await;
    }
    let gone = &names[3];
    // 16 nodes in a region not swept: not asked, so not in the base.
    let mut elsewhere = Vec::new();
    for i in 0..16 {
        let name = unique(&format!("west-{i}"));
        register_placed(&chef, &name, &fake_instance_id(), None, Some("eu-west-1a")).await;
        elsewhere.push(name);
    }
    // No zone recorded: EC2 in a default region would not know them.
    let mut zoneless = Vec::new();
    for i in 0..2 {
        let name = unique(&format!("nozone-{i}"));
        register_placed(&chef, &name, &fake_instance_id(), None, None).await;
        zoneless.push(name);
    }
    let journal = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(chef.clone(), journal.path());

    let mut capped = settings(true);
    capped.max_candidate_share = 0.2;
    let report = sweep(&reaper, &own_fleet(), &capped, &Silent)
        .await
        .expect("sweep");
    assert_eq!(report.asked, 4, "{report:?}");
    let reason = report.aborted.clone().expect("1 of 4 asked is above 20 %");
    assert!(reason.contains("max_candidate_share"), "{reason}");
    assert!(exists(&chef, gone).await, "a capped sweep deleted {gone}");

    // The happy twin: the cap allows it, only the gone node asked about goes.
    let report = sweep(&reaper, &own_fleet(), &settings(true), &Silent)
        .await
        .expect("sweep");
    assert!(report.aborted.is_none(), "{:?}", report.aborted);
    assert_eq!(
        names_with(&report, Verdict::Deleted),
        BTreeSet::from([gone.clone()])
    );
    assert!(!exists(&chef, gone).await);
    for name in elsewhere.iter().chain(&zoneless) {
        assert_eq!(verdict_of(&report, name), Verdict::NotChecked, "{name}");
        assert!(exists(&chef, name).await, "{name} deleted");
    }
}

/// M5: when the node vanished between the sweep's listing and its deletion,
/// the same-named client (a re-registration in progress) is left alone.
#[tokio::test]
async fn sweep_recheck_stops_when_the_node_vanished() {
    use_private_stack("sweep");
    let _serial = SERIAL.lock().await;
    let chef = Arc::new(admin());
    let journal = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(chef.clone(), journal.path());
    let request = |name: &str, id: &str| nodereaper::act::Request {
        target: nodereaper::act::Target::Node(name.into()),
        source: nodereaper::act::RequestSource::Sweep,
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: Some(nodereaper::act::Recheck {
            instance_id: id.into(),
            not_seen_since: chrono::Utc::now() - chrono::Duration::hours(1),
        }),
        verified_region: None,
        group: None,
    };
    // Only the client is there: the old node is gone, the new instance's
    // first run has not saved its node yet.
    let (id, name) = (fake_instance_id(), unique("reregistering"));
    chef.create_client(&name, None, false)
        .await
        .expect("client");
    let outcome = reaper.reap(&request(&name, &id)).await.expect("reap");
    assert_eq!(outcome.label(), "changed", "{outcome:?}");
    assert!(
        chef.get_client(&name).await.expect("get").is_some(),
        "the new registration's client was deleted"
    );
    // The happy twin: node and client as listed are deleted.
    let (id, name) = (fake_instance_id(), unique("listed"));
    register(&chef, &name, Some(&id)).await;
    let outcome = reaper.reap(&request(&name, &id)).await.expect("reap");
    assert_eq!(outcome.label(), "deleted", "{outcome:?}");
    assert!(!exists(&chef, &name).await);
}

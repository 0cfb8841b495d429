//! Pipeline logic with in-memory ports (no servers): keepalive while slow,
//! dry run, and the disposition of each failure class.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::*;
use crate::act::resolve::Resolver;
use crate::act::DeletionLimiter;
use crate::act::{Request, Target};
use crate::adapters::aws::AwsError;
use crate::adapters::chef::ChefError;
use crate::adapters::journal::{JournalEntry, JournalError};
use crate::core::verify::Protection;
use crate::ports::{
    ChefApi, Deleted, InstanceInventory, Journal, Lifecycle, LifecycleAction, SearchRow,
};
use crate::testing::FixedFleet;

#[derive(Default)]
struct FakeChef {
    nodes: Mutex<HashMap<String, Value>>,
    deletes: Mutex<Vec<String>>,
    delay: Duration,
    fail_with_status: Option<u16>,
}

#[async_trait]
impl ChefApi for FakeChef {
    fn server(&self) -> &str {
        "fake"
    }
    async fn get_node(&self, name: &str) -> Result<Option<Value>, ChefError> {
        if let Some(status) = self.fail_with_status {
            return Err(ChefError::Status {
                server: "fake".into(),
                method: "GET".into(),
                object: name.into(),
                status,
                detail: String::new(),
            });
        }
        Ok(self
            .nodes
            .lock()
            .map_err(|_| poisoned_lock())?
            .get(name)
            .cloned())
    }
    async fn delete_node(&self, name: &str) -> Result<Deleted, ChefError> {
        tokio::time::sleep(self.delay).await;
        self.deletes
            .lock()
            .map_err(|_| poisoned_lock())?
            .push(format!("node {name}"));
        Ok(Deleted::Removed)
    }
    async fn get_client(&self, name: &str) -> Result<Option<Value>, ChefError> {
        Ok(Some(json!({ "name": name })))
    }
    async fn delete_client(&self, name: &str) -> Result<Deleted, ChefError> {
        self.deletes
            .lock()
            .map_err(|_| poisoned_lock())?
            .push(format!("client {name}"));
        Ok(Deleted::Removed)
    }
    async fn list_nodes(&self) -> Result<Vec<String>, ChefError> {
        Ok(Vec::new())
    }
    async fn search_node_names(&self, _q: &str) -> Result<Vec<String>, ChefError> {
        Ok(Vec::new())
    }
    async fn partial_search_nodes(
        &self,
        _q: &str,
        _k: &[(&str, &[&str])],
    ) -> Result<Vec<SearchRow>, ChefError> {
        Ok(Vec::new())
    }
    async fn create_node(&self, _n: &Value) -> Result<(), ChefError> {
        Ok(())
    }
    async fn update_node(&self, _name: &str, _n: &Value) -> Result<(), ChefError> {
        Ok(())
    }
    async fn create_client(&self, _n: &str, _k: Option<&str>, _a: bool) -> Result<(), ChefError> {
        Ok(())
    }
}

fn poisoned_lock() -> ChefError {
    ChefError::BadResponse {
        server: "fake".into(),
        method: "-".into(),
        object: "-".into(),
        detail: "poisoned lock".into(),
    }
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, call: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
    }
    fn count(&self, prefix: &str) -> usize {
        self.calls
            .lock()
            .map(|c| c.iter().filter(|x| x.starts_with(prefix)).count())
            .unwrap_or(0)
    }
}

#[async_trait]
impl Queue for Recorder {
    fn name(&self) -> &str {
        "fake-queue"
    }
    async fn receive(&self, _max: i32, _wait: Duration) -> Result<Vec<ReceivedMessage>, AwsError> {
        Ok(Vec::new())
    }
    async fn delete(&self, msg: &ReceivedMessage) -> Result<(), AwsError> {
        self.push(format!("delete {}", msg.message_id));
        Ok(())
    }
    async fn extend_visibility(&self, msg: &ReceivedMessage, t: Duration) -> Result<(), AwsError> {
        self.push(format!("visibility {} {}", msg.message_id, t.as_secs()));
        Ok(())
    }
    async fn depth(&self) -> Result<(u64, u64), AwsError> {
        Ok((0, 0))
    }
    async fn dead_letter(&self, msg: &ReceivedMessage, reason: &str) -> Result<(), AwsError> {
        self.push(format!("dead_letter {} {reason}", msg.message_id));
        Ok(())
    }
}

#[async_trait]
impl Lifecycle for Recorder {
    async fn heartbeat(&self, a: &LifecycleAction) -> Result<Completion, AwsError> {
        self.push(format!("heartbeat {}", a.instance_id));
        Ok(Completion::Completed)
    }
    async fn complete_continue(&self, a: &LifecycleAction) -> Result<Completion, AwsError> {
        self.push(format!("complete {}", a.instance_id));
        Ok(Completion::Completed)
    }
    async fn probe(&self) -> Result<(), AwsError> {
        Ok(())
    }
}

#[async_trait]
impl InstanceInventory for Recorder {
    async fn describe(&self, _ids: &[String]) -> Result<HashMap<String, InstanceInfo>, AwsError> {
        Ok(HashMap::new())
    }
}

#[async_trait]
impl Journal for Recorder {
    async fn record(&self, e: &JournalEntry) -> Result<(), JournalError> {
        self.push(format!("journal {}", e.node_name));
        Ok(())
    }
    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        Ok(Vec::new())
    }
    async fn probe(&self) -> Result<(), JournalError> {
        Ok(())
    }
}

const ID: &str = "i-0123456789abcdef0";

fn setup(chef: FakeChef, dry_run: bool) -> (Pipeline, Source, Arc<Recorder>, Arc<FakeChef>) {
    let rec = Arc::new(Recorder::default());
    let chef = Arc::new(chef);
    chef.nodes.lock().expect("lock").insert(
        ID.to_string(),
        json!({"name": ID, "automatic": {"ec2": {"instance_id": ID}}}),
    );
    let settings = PipelineConfig {
        lifecycle_heartbeat_interval: Duration::from_millis(50),
        dry_run,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline {
        sources: Vec::new(),
        reaper: Arc::new(Reaper {
            chef: chef.clone(),
            journal: rec.clone(),
            resolver: Resolver::default(),
            protection: Protection::default(),
            limiter: Arc::new(DeletionLimiter::new(0)),
        }),
        settings,
        breaker: Arc::new(Breaker::new("chef", 5, Duration::from_secs(30))),
    };
    let source = Source {
        queue: rec.clone(),
        fleet: Arc::new(FixedFleet::new(rec.clone(), rec.clone())),
        region: "us-east-1".into(),
    };
    (pipeline, source, rec, chef)
}

fn lifecycle_message() -> ReceivedMessage {
    ReceivedMessage {
        message_id: "m-1".into(),
        receipt_handle: "r-1".into(),
        body: json!({
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "LifecycleActionToken": "t",
            "AutoScalingGroupName": "web",
            "LifecycleHookName": crate::config::DEFAULT_LIFECYCLE_HOOK,
            "EC2InstanceId": ID,
        })
        .to_string(),
        sent_at: None,
        receive_count: 1,
    }
}

async fn process(p: &Pipeline, s: &Source, msg: &ReceivedMessage) -> Disposition {
    let mut done = p.process_batch(s, vec![msg.clone()]).await;
    let (_, d) = done.pop().expect("one disposition per message");
    p.settle(s, msg, &d).await;
    d
}

#[tokio::test(start_paused = true)]
async fn slow_work_sends_heartbeats_and_keeps_the_message_hidden() {
    let (p, s, rec, chef) = setup(
        FakeChef {
            delay: Duration::from_millis(260),
            ..FakeChef::default()
        },
        false,
    );
    let d = process(&p, &s, &lifecycle_message()).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: "deleted".into()
        }
    );
    assert!(
        rec.count("heartbeat") >= 3,
        "{:?}",
        rec.calls.lock().expect("lock")
    );
    assert!(rec.count("visibility") >= 3);
    assert_eq!(rec.count("complete"), 1);
    assert_eq!(rec.count("delete m-1"), 1);
    assert_eq!(chef.deletes.lock().expect("lock").len(), 2);
    // Order: backup before any delete, message deleted last.
    let calls = rec.calls.lock().expect("lock").clone();
    assert!(
        calls.first().is_some_and(|c| c.starts_with("journal")),
        "{calls:?}"
    );
    assert!(calls.last().is_some_and(|c| c == "delete m-1"), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn dry_run_has_no_side_effects() {
    let (p, s, rec, chef) = setup(
        FakeChef {
            delay: Duration::from_millis(260),
            ..FakeChef::default()
        },
        true,
    );
    let d = process(&p, &s, &lifecycle_message()).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: "would_delete".into()
        }
    );
    assert!(
        rec.calls.lock().expect("lock").is_empty(),
        "{:?}",
        rec.calls.lock().expect("lock")
    );
    assert!(chef.deletes.lock().expect("lock").is_empty());
}

#[tokio::test(start_paused = true)]
async fn chef_5xx_is_retried_with_backoff_and_counts_toward_the_breaker() {
    let (p, s, rec, chef) = setup(
        FakeChef {
            fail_with_status: Some(503),
            ..FakeChef::default()
        },
        false,
    );
    for _ in 0..5 {
        let d = process(&p, &s, &lifecycle_message()).await;
        assert!(matches!(d, Disposition::Retry { .. }), "{d:?}");
    }
    assert!(
        p.breaker.is_open(),
        "five transient failures open the breaker"
    );
    assert_eq!(
        rec.count("visibility m-1 15"),
        5,
        "{:?}",
        rec.calls.lock().expect("lock")
    );
    assert_eq!(rec.count("dead_letter"), 0);
    assert_eq!(
        rec.count("complete"),
        0,
        "no completion before Chef is clean"
    );
    assert!(chef.deletes.lock().expect("lock").is_empty());
}

#[tokio::test(start_paused = true)]
async fn chef_4xx_is_poison() {
    let (p, s, rec, _chef) = setup(
        FakeChef {
            fail_with_status: Some(400),
            ..FakeChef::default()
        },
        false,
    );
    let d = process(&p, &s, &lifecycle_message()).await;
    assert!(matches!(d, Disposition::DeadLetter { .. }), "{d:?}");
    assert_eq!(rec.count("dead_letter m-1"), 1);
}

/// EC2 refusing nodereaper itself (an IAM mistake).
struct DeniedInventory;

#[async_trait]
impl InstanceInventory for DeniedInventory {
    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>, AwsError> {
        Err(AwsError {
            service: "EC2",
            operation: "DescribeInstances",
            target: format!("{} instances", ids.len()),
            code: Some("UnauthorizedOperation".into()),
            message: "You are not authorized to perform this operation.".into(),
            retry: crate::core::error::Retry::Permanent,
            status: Some(403),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn ec2_permission_error_holds_and_probes_ec2_not_a_message() {
    let (p, mut s, rec, chef) = setup(FakeChef::default(), false);
    s.fleet = Arc::new(FixedFleet::new(Arc::new(DeniedInventory), rec.clone()));
    let d = process(&p, &s, &lifecycle_message()).await;
    assert!(matches!(d, Disposition::Hold { .. }), "{d:?}");
    assert_eq!(
        rec.count("dead_letter"),
        0,
        "an IAM mistake must not poison"
    );
    assert!(chef.deletes.lock().expect("lock").is_empty());
    assert!(p.breaker.is_open(), "held at once");
    tokio::time::advance(Duration::from_secs(31)).await;
    // After the cooldown the probe is EC2 where the instance lives (this
    // raw hook message names neither account nor region: our own account,
    // the queue's region), not a message.
    assert_eq!(
        p.breaker.needs_probe(),
        Some(Probe::Aws(Placement {
            account: None,
            region: "us-east-1".into(),
        }))
    );
}

#[tokio::test(start_paused = true)]
async fn foreign_hook_is_acknowledged_untouched() {
    let (p, s, rec, chef) = setup(FakeChef::default(), false);
    let mut msg = lifecycle_message();
    msg.body = msg
        .body
        .replace(crate::config::DEFAULT_LIFECYCLE_HOOK, "eks-node-drain");
    let d = process(&p, &s, &msg).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: "foreign_hook".into()
        }
    );
    assert_eq!(rec.count("complete"), 0);
    assert_eq!(rec.count("heartbeat"), 0);
    assert_eq!(rec.count("journal"), 0);
    assert!(chef.deletes.lock().expect("lock").is_empty());
}

/// The registration re-created under the same name while the deletion
/// waited for the rate cap: the second read differs, nothing is deleted.
#[tokio::test(start_paused = true)]
async fn registration_changed_during_the_rate_cap_wait_is_not_deleted() {
    let chef = Arc::new(FakeChef::default());
    let node = |ohai: f64| json!({"name": ID, "automatic": {"ec2": {"instance_id": ID}, "ohai_time": ohai}});
    chef.nodes
        .lock()
        .expect("lock")
        .insert(ID.to_string(), node(1.0e9));
    let rec = Arc::new(Recorder::default());
    let limiter = Arc::new(DeletionLimiter::with_window(1, Duration::from_secs(60)));
    limiter.acquire().await.expect("first slot");
    let reaper = Arc::new(Reaper {
        chef: chef.clone(),
        journal: rec.clone(),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter,
    });
    let request = Request {
        target: Target::Instance(ID.into()),
        source: "event",
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: None,
        verified_region: None,
    };
    let task = tokio::spawn({
        let reaper = reaper.clone();
        let request = request.clone();
        async move { reaper.reap(&request).await }
    });
    // The reap has read the node and waits for the cap; a new instance
    // registers under the same name meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    chef.nodes
        .lock()
        .expect("lock")
        .insert(ID.to_string(), node(2.0e9));
    let outcome = task.await.expect("task").expect("reap");
    assert!(
        matches!(&outcome, Outcome::Changed { reason, .. } if reason.contains("checked in again")),
        "{outcome:?}"
    );
    assert!(chef.deletes.lock().expect("lock").is_empty());
    assert_eq!(
        rec.count("journal"),
        0,
        "nothing backed up, nothing deleted"
    );

    // The happy twin: unchanged during the wait, deleted.
    let outcome = reaper.reap(&request).await.expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
}

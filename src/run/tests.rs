//! Pipeline logic with the in-memory ports of [`crate::testing`] (no
//! servers): keepalive while slow, dry run, and the disposition of each
//! failure class.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::act::resolve::Resolver;
use crate::act::DeletionLimiter;
use crate::act::{Outcome, Reaper, Request, RequestSource, Target};
use crate::adapters::aws::AwsError;
use crate::core::ids::InstanceId;
use crate::core::placement::Placement;
use crate::core::verify::Protection;
use crate::ports::ReceivedMessage;
use crate::testing::{FakeEc2, FakeInventory, FakeWorld, FixedFleet, World};

const ID: &str = "i-0123456789abcdef0";

/// The node named after [`ID`] and its client; `tune` sets failures.
fn world(tune: impl FnOnce(&mut World)) -> FakeWorld {
    let mut w = World::default();
    w.register(ID, ID, true);
    tune(&mut w);
    FakeWorld::new(w)
}

/// A reaper over the fake world with default rules and `limiter`.
fn reaper(world: &FakeWorld, limiter: Arc<DeletionLimiter>) -> Reaper {
    Reaper {
        chef: world.chef(),
        journal: world.journal(),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter,
        acl_backup: Default::default(),
        estate: Vec::new(),
    }
}

/// An event's request to deregister instance [`ID`].
fn instance_request() -> Request {
    Request {
        target: Target::Instance(InstanceId::parse(ID).expect("valid id")),
        source: RequestSource::Event,
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: None,
        verified_region: None,
        group: None,
    }
}

fn setup(world: &FakeWorld, dry_run: bool) -> (Pipeline, Source) {
    let settings = PipelineConfig {
        lifecycle_heartbeat_interval: Duration::from_millis(50),
        dry_run,
        ..PipelineConfig::default()
    };
    let reaper = Arc::new(reaper(world, Arc::new(DeletionLimiter::new(0))));
    let pipeline = Pipeline {
        sources: Vec::new(),
        targets: Arc::new(crate::act::TargetSet::single(reaper.clone())),
        reaper,
        settings,
        breaker: Arc::new(Breaker::new("chef", 5, Duration::from_secs(30))),
    };
    let source = Source {
        queue: world.queue(),
        fleet: Arc::new(FixedFleet::new(
            Arc::new(FakeInventory(FakeEc2::Unknown)),
            world.lifecycle(),
        )),
        region: "us-east-1".into(),
        target: None,
    };
    (pipeline, source)
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
    let w = world(|w| w.chef_delay = Duration::from_millis(260));
    let (p, s) = setup(&w, false);
    let d = process(&p, &s, &lifecycle_message()).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: Handled::Deleted
        }
    );
    let w = w.lock();
    assert!(w.count("heartbeat") >= 3, "{:?}", w.calls);
    assert!(w.count("visibility") >= 3);
    assert_eq!(w.count("complete"), 1);
    assert_eq!(w.count("delete m-1"), 1);
    assert_eq!(w.deleted.len(), 2);
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    // Order: backup before any delete, message deleted last.
    assert!(
        w.calls.first().is_some_and(|c| c.starts_with("journal")),
        "{:?}",
        w.calls
    );
    assert!(
        w.calls.last().is_some_and(|c| c == "delete m-1"),
        "{:?}",
        w.calls
    );
}

#[tokio::test(start_paused = true)]
async fn dry_run_has_no_side_effects() {
    let w = world(|w| w.chef_delay = Duration::from_millis(260));
    let (p, s) = setup(&w, true);
    let d = process(&p, &s, &lifecycle_message()).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: Handled::WouldDelete
        }
    );
    let w = w.lock();
    assert!(w.calls.is_empty(), "{:?}", w.calls);
    assert!(w.deleted.is_empty());
}

#[tokio::test(start_paused = true)]
async fn chef_5xx_is_retried_with_backoff_and_counts_toward_the_breaker() {
    let w = world(|w| w.chef_status = Some(503));
    let (p, s) = setup(&w, false);
    for _ in 0..5 {
        let d = process(&p, &s, &lifecycle_message()).await;
        assert!(matches!(d, Disposition::Retry { .. }), "{d:?}");
    }
    assert!(
        p.breaker.is_open(),
        "five transient failures open the breaker"
    );
    let w = w.lock();
    assert_eq!(w.count("visibility m-1 15"), 5, "{:?}", w.calls);
    assert_eq!(w.count("dead_letter"), 0);
    assert_eq!(w.count("complete"), 0, "no completion before Chef is clean");
    assert!(w.deleted.is_empty());
}

#[tokio::test(start_paused = true)]
async fn chef_4xx_is_poison() {
    let w = world(|w| w.chef_status = Some(400));
    let (p, s) = setup(&w, false);
    let d = process(&p, &s, &lifecycle_message()).await;
    assert!(matches!(d, Disposition::DeadLetter { .. }), "{d:?}");
    assert_eq!(w.lock().count("dead_letter m-1"), 1);
}

/// EC2 refusing nodereaper itself (an IAM mistake).
fn ec2_denied() -> FakeEc2 {
    FakeEc2::Fails(AwsError {
        service: "EC2",
        operation: "DescribeInstances",
        target: "1 instances".into(),
        code: Some("UnauthorizedOperation".into()),
        message: "You are not authorized to perform this operation.".into(),
        retry: crate::core::error::Retry::Permanent,
        status: Some(403),
    })
}

#[tokio::test(start_paused = true)]
async fn ec2_permission_error_holds_and_probes_ec2_not_a_message() {
    let w = world(|_| {});
    let (p, mut s) = setup(&w, false);
    s.fleet = Arc::new(FixedFleet::new(
        Arc::new(FakeInventory(ec2_denied())),
        w.lifecycle(),
    ));
    let d = process(&p, &s, &lifecycle_message()).await;
    assert!(matches!(d, Disposition::Hold { .. }), "{d:?}");
    assert_eq!(
        w.lock().count("dead_letter"),
        0,
        "an IAM mistake must not poison"
    );
    assert!(w.lock().deleted.is_empty());
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
    let w = world(|_| {});
    let (p, s) = setup(&w, false);
    let mut msg = lifecycle_message();
    msg.body = msg
        .body
        .replace(crate::config::DEFAULT_LIFECYCLE_HOOK, "eks-node-drain");
    let d = process(&p, &s, &msg).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: Handled::ForeignHook
        }
    );
    let w = w.lock();
    assert_eq!(w.count("complete"), 0);
    assert_eq!(w.count("heartbeat"), 0);
    assert_eq!(w.count("journal"), 0);
    assert!(w.deleted.is_empty());
}

/// The registration re-created under the same name while the deletion
/// waited for the rate cap: the second read differs, nothing is deleted.
#[tokio::test(start_paused = true)]
async fn registration_changed_during_the_rate_cap_wait_is_not_deleted() {
    let node = |ohai: f64| json!({"name": ID, "automatic": {"ec2": {"instance_id": ID}, "ohai_time": ohai}});
    let w = world(|w| {
        w.nodes.insert(ID.to_string(), node(1.0e9));
    });
    let limiter = Arc::new(DeletionLimiter::with_window(1, Duration::from_secs(60)));
    limiter.acquire().await.expect("first slot");
    let reaper = Arc::new(reaper(&w, limiter));
    let request = instance_request();
    let task = tokio::spawn({
        let reaper = reaper.clone();
        let request = request.clone();
        async move { reaper.reap(&request).await }
    });
    // The reap has read the node and waits for the cap; a new instance
    // registers under the same name meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.lock().nodes.insert(ID.to_string(), node(2.0e9));
    let outcome = task.await.expect("task").expect("reap");
    assert!(
        matches!(&outcome, Outcome::Changed { reason, .. } if reason.contains("checked in again")),
        "{outcome:?}"
    );
    assert!(w.lock().deleted.is_empty());
    assert_eq!(
        w.lock().count("journal"),
        0,
        "nothing backed up, nothing deleted"
    );

    // The happy twin: unchanged during the wait, deleted.
    let outcome = reaper.reap(&request).await.expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
}

/// The reaper reads the client named after the instance while it resolves
/// the node. When the node is found by search under another name, that
/// early read must not stand in for the registration's own client: the
/// client of the instance-named guess (here: somebody else's) is left
/// alone, and the resolved node's client is read, backed up and deleted.
#[tokio::test]
async fn early_client_read_is_used_only_for_the_client_it_was_read_for() {
    let w = world(|w| {
        w.nodes.remove(ID);
        w.register("web-1", ID, true);
        // The client named after the instance stays: somebody else's.
    });
    let reaper = reaper(&w, Arc::new(DeletionLimiter::new(0)));
    let outcome = reaper.reap(&instance_request()).await.expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
    let world = w.lock();
    assert_eq!(
        world.deleted,
        vec![
            ("client", "web-1".to_string()),
            ("node", "web-1".to_string())
        ]
    );
    assert!(
        world.clients.contains_key(ID),
        "the guessed client is untouched"
    );
    let entry = world.journal.last().expect("journal entry");
    assert_eq!(entry.client_name.as_deref(), Some("web-1"));
    assert_eq!(
        entry.client.as_ref().and_then(|c| c["name"].as_str()),
        Some("web-1")
    );
}

/// A lifecycle message for `instance` with message id `id`.
fn lifecycle_message_for(instance: &str, id: &str) -> ReceivedMessage {
    let mut msg = lifecycle_message();
    msg.body = msg.body.replace(ID, instance);
    msg.message_id = id.into();
    msg
}

/// Instance ids with no registration at all (the deletion found nothing).
const GONE: &str = "i-0fedcba9876543210";

/// The storm brake engages on the next deletion of a limiter built like
/// this whose one slot is taken.
async fn braking_limiter() -> Arc<DeletionLimiter> {
    let limiter = Arc::new(
        DeletionLimiter::with_window(1, Duration::from_secs(60))
            .with_brake(Duration::from_millis(1)),
    );
    limiter.acquire().await.expect("first slot");
    limiter
}

/// A message that succeeds while the storm brake holds (its registration
/// is already gone) must not release the hold: nothing but a restart does.
#[tokio::test(start_paused = true)]
async fn brake_survives_a_successful_reap() {
    let w = world(|_| {});
    let (mut p, s) = setup(&w, false);
    p.reaper = Arc::new(reaper(&w, braking_limiter().await));
    p.targets = Arc::new(crate::act::TargetSet::single(p.reaper.clone()));
    let d = process(&p, &s, &lifecycle_message()).await;
    assert!(matches!(d, Disposition::Hold { .. }), "{d:?}");
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(p.breaker.needs_probe(), Some(Probe::Never));

    let d = process(&p, &s, &lifecycle_message_for(GONE, "m-2")).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: Handled::AlreadyGone
        }
    );
    assert!(p.breaker.is_held(), "a successful reap released the brake");
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(p.breaker.needs_probe(), Some(Probe::Never));
    // Its probe never succeeds either.
    super::receiver::probe(&p, &s, Probe::Never).await;
    assert!(p.breaker.is_open());
    assert!(w.lock().nodes.contains_key(ID), "held, not deleted");
    assert_eq!(w.lock().count("dead_letter"), 0);
}

/// A journal hold ends by the journal probe, not by a message that happens
/// to need no backup.
#[tokio::test(start_paused = true)]
async fn journal_hold_ends_only_by_its_probe() {
    let w = world(|w| w.journal_broken = true);
    let (p, s) = setup(&w, false);
    let d = process(&p, &s, &lifecycle_message()).await;
    assert!(matches!(d, Disposition::Hold { .. }), "{d:?}");
    let d = process(&p, &s, &lifecycle_message_for(GONE, "m-2")).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: Handled::AlreadyGone
        }
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        p.breaker.needs_probe(),
        Some(Probe::Journal),
        "a successful reap released the journal hold"
    );
    // The happy twin: the journal works again, its probe ends the hold.
    w.lock().journal_broken = false;
    super::receiver::probe(&p, &s, Probe::Journal).await;
    assert!(!p.breaker.is_open() && p.breaker.needs_probe().is_none());
    let d = process(&p, &s, &lifecycle_message()).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: Handled::Deleted
        }
    );
}

/// EC2 everywhere but in one region, where it refuses nodereaper (an
/// opt-in region not enabled answers AuthFailure/OptInRequired).
struct DownIn {
    region: &'static str,
    inner: FixedFleet,
}

#[async_trait::async_trait]
impl crate::ports::Fleet for DownIn {
    async fn regional(
        &self,
        placement: &Placement,
    ) -> Result<crate::ports::Regional, crate::ports::PlacementError> {
        if placement.region == self.region {
            let FakeEc2::Fails(mut e) = ec2_denied() else {
                unreachable!("ec2_denied fails")
            };
            e.code = Some("OptInRequired".into());
            return Err(e.into());
        }
        self.inner.regional(placement).await
    }
}

/// A message naming a region nodereaper cannot reach holds the pipeline
/// for a bounded number of probes only; then that message goes to the DLQ
/// with the reason and the others flow.
#[tokio::test(start_paused = true)]
async fn unreachable_region_is_given_up_on_and_others_flow() {
    const OTHER: &str = "i-0123456789abcdef1";
    let w = world(|w| w.register(OTHER, OTHER, true));
    let (mut p, good) = setup(&w, false);
    p.breaker =
        Arc::new(Breaker::new("chef", 5, Duration::from_secs(30)).with_unreachable_after(3));
    let fleet: Arc<dyn crate::ports::Fleet> = Arc::new(DownIn {
        region: "ap-east-1",
        inner: FixedFleet::new(Arc::new(FakeInventory(FakeEc2::Unknown)), w.lifecycle()),
    });
    let good = Source {
        fleet: fleet.clone(),
        ..good
    };
    // A raw lifecycle message names no region: its queue's.
    let far = Source {
        region: "ap-east-1".into(),
        ..good.clone()
    };
    let stuck = Placement {
        account: None,
        region: "ap-east-1".into(),
    };
    let d = process(&p, &far, &lifecycle_message()).await;
    assert!(matches!(d, Disposition::Hold { .. }), "{d:?}");
    // Two failed probes: the third failed attempt gives up on the region.
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(p.breaker.needs_probe(), Some(Probe::Aws(stuck.clone())));
        super::receiver::probe(&p, &far, Probe::Aws(stuck.clone())).await;
    }
    assert!(
        !p.breaker.is_open() && p.breaker.needs_probe().is_none(),
        "the pipeline still waits for {stuck}"
    );
    // Other regions flow...
    let d = process(&p, &good, &lifecycle_message_for(OTHER, "m-2")).await;
    assert_eq!(
        d,
        Disposition::Delete {
            outcome: Handled::Deleted
        }
    );
    // ...and the stuck message goes to the DLQ with the reason.
    let d = process(&p, &far, &lifecycle_message()).await;
    match &d {
        Disposition::DeadLetter { reason } => {
            assert!(
                reason.contains("ap-east-1")
                    && reason.contains("unreachable")
                    && reason.contains("not authorized"),
                "{reason}"
            )
        }
        other => panic!("expected the DLQ, got {other:?}"),
    }
    assert!(!p.breaker.is_open());
    let w = w.lock();
    assert_eq!(w.count("dead_letter m-1"), 1, "{:?}", w.calls);
    assert!(w.nodes.contains_key(ID), "never verified, never deleted");
}

//! The Chef targets of one deployment: one [`Reaper`] per target (its own
//! Chef API, identity and protection; the journal and the rate cap shared),
//! chosen per event by [`crate::core::routing::decide`]. The reaper itself
//! knows nothing of targets.
//!
//! Two rules need the outside world and live here: the Auto Scaling group
//! tag (rule 3, read through [`GroupTags`] in the group's account and
//! region, cached) and, opt-in, the search of every target (rule 5): the
//! instance registered on exactly one target goes there; registered on
//! several, it is refused; a failed lookup anywhere routes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ReapError, Reaper, Target};
use crate::adapters::journal::{JournalEntry, JournalError};
use crate::core::error::{Classify, Retry};
use crate::core::ids::InstanceId;
use crate::core::placement::Placement;
use crate::core::routing::{decide, unrouted, Route, RouteInput, RoutingTable, Rule, Unroutable};
use crate::ports::{AwsError, Journal, Regional};

/// How long a group tag read is trusted.
pub const GROUP_TAG_TTL: Duration = Duration::from_secs(300);
/// Most group tags remembered at once.
pub const GROUP_TAG_CACHE_SIZE: usize = 1024;

/// Why an event has no target (the message ends as the error policy says).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The rules refuse it: the DLQ, with the reason.
    #[error(transparent)]
    Unroutable(#[from] Unroutable),
    /// The group tag could not be read: never routed without it.
    #[error("cannot read tag {key:?} of Auto Scaling group {group} ({placement}) to choose the Chef target; not routed without it: {error}")]
    GroupTag {
        /// The group.
        group: String,
        /// The tag key (`routing.group_tag`).
        key: String,
        /// Where it was asked.
        placement: Placement,
        /// What AWS answered.
        #[source]
        error: AwsError,
    },
    /// One target's lookup failed: never routed on partial knowledge.
    #[error("cannot look up instance {instance_id} on target {target:?} (routing.search_all_targets); not routed on partial knowledge: {error}")]
    Search {
        /// The target whose lookup failed.
        target: String,
        /// The instance.
        instance_id: String,
        /// The failure.
        #[source]
        error: ReapError,
    },
    /// Registered on no target, redelivered: the journal (which target an
    /// earlier delivery deleted it on) could not be read.
    #[error("instance {instance_id} is registered on no target; cannot read the journal for the target an earlier delivery deleted it on: {error}")]
    Journal {
        /// The instance.
        instance_id: String,
        /// The failure.
        #[source]
        error: ReapError,
    },
}

impl Classify for RouteError {
    fn retry(&self) -> Retry {
        match self {
            RouteError::Unroutable(e) => e.retry(),
            RouteError::GroupTag { error, .. } => error.retry(),
            RouteError::Search { error, .. } | RouteError::Journal { error, .. } => error.retry(),
        }
    }

    fn blames_message(&self) -> bool {
        match self {
            RouteError::Unroutable(e) => e.blames_message(),
            RouteError::GroupTag { error, .. } => error.blames_message(),
            RouteError::Search { error, .. } | RouteError::Journal { error, .. } => {
                error.blames_message()
            }
        }
    }
}

/// (account, region, group) -> (read at, tag value).
type TagKey = (String, String, String);

/// Group tag reads, kept [`GROUP_TAG_TTL`], at most [`GROUP_TAG_CACHE_SIZE`].
/// Only answers are kept, never failures.
#[derive(Default)]
struct TagCache {
    entries: Mutex<HashMap<TagKey, (Instant, Option<String>)>>,
}

impl TagCache {
    fn get(&self, key: &TagKey) -> Option<Option<String>> {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < GROUP_TAG_TTL).then(|| value.clone())
    }

    fn put(&self, key: TagKey, value: Option<String>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= GROUP_TAG_CACHE_SIZE {
            entries.retain(|_, (at, _)| at.elapsed() < GROUP_TAG_TTL);
        }
        if entries.len() >= GROUP_TAG_CACHE_SIZE {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                entries.remove(&k);
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

/// Every target's reaper, by name, and the rules that pick one.
pub struct TargetSet {
    reapers: BTreeMap<String, Arc<Reaper>>,
    /// The routing rules (target names, account routes, group tag, search).
    pub table: RoutingTable,
    tags: TagCache,
}

impl TargetSet {
    /// One target, `default`: a single `[chef]` section.
    pub fn single(reaper: Arc<Reaper>) -> Self {
        let name = crate::config::DEFAULT_TARGET.to_string();
        Self {
            table: RoutingTable {
                targets: vec![name.clone()],
                ..Default::default()
            },
            reapers: BTreeMap::from([(name, reaper)]),
            tags: TagCache::default(),
        }
    }

    /// Several targets; `table` must name exactly these.
    pub fn new(reapers: Vec<(String, Arc<Reaper>)>, table: RoutingTable) -> Self {
        Self {
            reapers: reapers.into_iter().collect(),
            table,
            tags: TagCache::default(),
        }
    }

    /// The reaper of target `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Reaper>> {
        self.reapers.get(name)
    }

    /// The target names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.reapers.keys().map(String::as_str)
    }

    /// The target of the termination of `instance` and its reaper: the
    /// rules of `input`, plus the group tag read in `regional` (several
    /// targets, the rule on, the event naming its group) and, when no rule
    /// routes and `search_all_targets` is on, the search of every target.
    /// `redelivered`: the send time of a message delivered before (whose
    /// earlier delivery may have deleted the registration), for the search.
    pub async fn route_event(
        &self,
        input: &RouteInput<'_>,
        instance: &InstanceId,
        regional: &Regional,
        redelivered: Option<DateTime<Utc>>,
    ) -> Result<(Route, Arc<Reaper>), RouteError> {
        let mut tag = None;
        if let (Some(key), Some(group), true) = (
            self.table.group_tag.as_deref(),
            input.group,
            self.reapers.len() > 1,
        ) {
            tag = self.group_target(regional, group, key).await?;
        }
        let input = RouteInput {
            group_target: tag.as_deref(),
            ..*input
        };
        let routed = match decide(&self.table, &input)? {
            Some(routed) => routed,
            None if self.table.search_all_targets => self.search(instance, redelivered).await?,
            None => return Err(unrouted(&self.table, &input).into()),
        };
        let reaper = self.reaper_of(&routed)?;
        Ok((routed, reaper))
    }

    fn reaper_of(&self, routed: &Route) -> Result<Arc<Reaper>, Unroutable> {
        self.get(&routed.target)
            .cloned()
            .ok_or_else(|| Unroutable(format!("target {:?} has no Chef client", routed.target)))
    }

    /// The value of tag `key` of `group` where `regional` asks, cached.
    async fn group_target(
        &self,
        regional: &Regional,
        group: &str,
        key: &str,
    ) -> Result<Option<String>, RouteError> {
        let place = &regional.placement;
        let cache_key = (
            place.account.clone().unwrap_or_default(),
            place.region.clone(),
            group.to_string(),
        );
        if let Some(value) = self.tags.get(&cache_key) {
            return Ok(value);
        }
        let value = regional
            .group_tags
            .group_tag(group, key)
            .await
            .map_err(|error| RouteError::GroupTag {
                group: group.to_string(),
                key: key.to_string(),
                placement: place.clone(),
                error,
            })?;
        self.tags.put(cache_key, value.clone());
        Ok(value)
    }

    /// Rule 5: the instance's registration looked up on every target (as
    /// each reaper finds it, node and client). Exactly one: that target.
    /// Several: refused, naming them. None: handled as a single target
    /// handles it ([`TargetSet::unregistered_target`]'s reaper finds nothing
    /// either). Any failed lookup: that error.
    async fn search(
        &self,
        instance: &InstanceId,
        redelivered: Option<DateTime<Utc>>,
    ) -> Result<Route, RouteError> {
        let target = Target::Instance(instance.clone());
        let lookups = self.reapers.iter().map(|(name, reaper)| {
            let target = &target;
            async move { (name, reaper.plan(target).await) }
        });
        let mut found = Vec::new();
        for (name, result) in futures::future::join_all(lookups).await {
            match result {
                Ok(Some(_)) => found.push(name.clone()),
                Ok(None) => {}
                Err(error) => {
                    return Err(RouteError::Search {
                        target: name.clone(),
                        instance_id: instance.to_string(),
                        error,
                    })
                }
            }
        }
        let target = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                tracing::info!(instance_id = %instance, "registered on no Chef target (search of every target)");
                self.unregistered_target(instance, redelivered).await?
            }
            several => {
                return Err(Unroutable(format!(
                    "instance {instance} is registered on several targets ({}); refusing to choose, nothing deleted",
                    several.join(", ")
                ))
                .into())
            }
        };
        Ok(Route {
            target,
            rule: Rule::Search,
        })
    }

    /// Whose reaper handles an instance registered on no target: the target
    /// an earlier delivery of a redelivered message deleted it on (the
    /// newest journal entry of the instance since `redelivered`), so that
    /// reaper runs its estate targets again as a single target would; else
    /// the first target. The journal is read only when a redelivery could
    /// resume estate targets.
    async fn unregistered_target(
        &self,
        instance: &InstanceId,
        redelivered: Option<DateTime<Utc>>,
    ) -> Result<String, RouteError> {
        let first = self.table.targets.first().cloned().unwrap_or_default();
        let (Some(since), Some(reaper)) = (redelivered, self.get(&first)) else {
            return Ok(first);
        };
        if self.reapers.values().all(|r| r.estate.is_empty()) {
            return Ok(first);
        }
        let entries =
            reaper
                .journal
                .entries_since(since)
                .await
                .map_err(|e| RouteError::Journal {
                    instance_id: instance.to_string(),
                    error: ReapError::JournalRead(e),
                })?;
        let recorded = entries
            .iter()
            .rev()
            .find(|e| e.instance_id.as_deref() == Some(instance.as_str()))
            .and_then(|e| e.target.clone())
            .filter(|t| self.reapers.contains_key(t));
        Ok(recorded.unwrap_or(first))
    }
}

/// A journal that records the target's name in every entry it writes (the
/// other calls pass through): restore finds the way back by it.
pub struct TargetJournal {
    /// The shared journal.
    pub inner: Arc<dyn Journal>,
    /// The target's name.
    pub target: String,
}

#[async_trait]
impl Journal for TargetJournal {
    async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let mut entry = entry.clone();
        entry.target = Some(self.target.clone());
        self.inner.record(&entry).await
    }
    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.entries().await
    }
    async fn entries_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.entries_since(since).await
    }
    async fn verify(&self) -> Result<Vec<crate::core::journal::Damage>, JournalError> {
        self.inner.verify().await
    }
    async fn remove_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, JournalError> {
        self.inner.remove_before(cutoff).await
    }
    async fn probe(&self) -> Result<(), JournalError> {
        self.inner.probe().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::act::resolve::Resolver;
    use crate::act::DeletionLimiter;
    use crate::core::verify::Protection;
    use crate::testing::{FakeEc2, FakeGroupTags, FakeInventory, FakeWorld, World};

    const ID: &str = "i-0123456789abcdef0";

    fn reaper(world: &FakeWorld) -> Arc<Reaper> {
        Arc::new(Reaper {
            chef: world.chef(),
            journal: world.journal(),
            resolver: Resolver::default(),
            protection: Protection::default(),
            limiter: Arc::new(DeletionLimiter::new(0)),
            acl_backup: Default::default(),
            estate: Vec::new(),
        })
    }

    /// Targets a and b over `worlds`, the group tag rule on, search as told.
    fn set(a: &FakeWorld, b: &FakeWorld, search: bool) -> TargetSet {
        TargetSet::new(
            vec![("a".into(), reaper(a)), ("b".into(), reaper(b))],
            RoutingTable {
                targets: vec!["a".into(), "b".into()],
                group_tag: Some("nodereaper:target".into()),
                search_all_targets: search,
                ..Default::default()
            },
        )
    }

    fn world(registered: bool) -> FakeWorld {
        let mut w = World::default();
        if registered {
            w.register(ID, ID, true);
        }
        FakeWorld::new(w)
    }

    fn regional(tags: Arc<FakeGroupTags>) -> Regional {
        let lifecycle = world(false).lifecycle();
        Regional {
            placement: Placement {
                account: Some("123456789012".into()),
                region: "us-east-1".into(),
            },
            inventory: Arc::new(FakeInventory(FakeEc2::Unknown)),
            lifecycle,
            group_tags: tags,
        }
    }

    fn tags(value: Option<&str>) -> Arc<FakeGroupTags> {
        let mut t = FakeGroupTags::default();
        if let Some(v) = value {
            t.tags
                .insert(("web".into(), "nodereaper:target".into()), v.into());
        }
        Arc::new(t)
    }

    fn input(queue_target: Option<&str>) -> RouteInput<'_> {
        RouteInput {
            queue: "q",
            queue_target,
            metadata: None,
            account: Some("123456789012"),
            region: "us-east-1",
            group: Some("web"),
            group_target: None,
        }
    }

    fn id() -> InstanceId {
        InstanceId::parse(ID).expect("id")
    }

    #[tokio::test]
    async fn group_tag_routes_is_cached_and_must_agree() {
        let set = set(&world(true), &world(true), false);
        let t = tags(Some("b"));
        let r = regional(t.clone());
        let (route, _) = set
            .route_event(&input(None), &id(), &r, None)
            .await
            .expect("routed");
        assert_eq!((route.target.as_str(), route.rule), ("b", Rule::GroupTag));
        set.route_event(&input(None), &id(), &r, None)
            .await
            .expect("routed");
        assert_eq!(
            t.calls.load(Ordering::SeqCst),
            1,
            "asked again within the TTL"
        );
        let e = set
            .route_event(&input(Some("a")), &id(), &r, None)
            .await
            .err()
            .expect("refused");
        assert!(
            e.to_string()
                .contains("queue says \"a\" but the group tag says \"b\""),
            "{e}"
        );
        // A fresh set: the cache still holds b for this group.
        let set = self::set(&world(true), &world(true), false);
        let unknown = regional(tags(Some("prod")));
        let e = set
            .route_event(&input(None), &id(), &unknown, None)
            .await
            .err()
            .expect("refused");
        assert!(
            e.to_string().contains("group tag names target \"prod\""),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_failed_describe_tags_routes_nothing_and_is_not_cached() {
        let set = set(&world(true), &world(true), true);
        let failing = FakeGroupTags {
            fails: Some(AwsError {
                service: "AutoScaling",
                operation: "DescribeTags",
                target: "group web".into(),
                code: Some("AccessDenied".into()),
                message: "not authorized".into(),
                retry: Retry::Permanent,
                status: Some(403),
            }),
            ..Default::default()
        };
        let failing = Arc::new(failing);
        // Even with the queue naming a target: the tag could disagree.
        let e = set
            .route_event(&input(Some("a")), &id(), &regional(failing.clone()), None)
            .await
            .err()
            .expect("refused");
        assert!(matches!(e, RouteError::GroupTag { .. }), "{e}");
        assert!(!e.blames_message(), "a denial holds, never dead-letters");
        set.route_event(&input(Some("a")), &id(), &regional(failing.clone()), None)
            .await
            .err()
            .expect("refused");
        assert_eq!(failing.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn search_finds_the_one_target_and_refuses_several() {
        let untagged = regional(tags(None));
        let (a, b) = (world(false), world(true));
        let (route, _) = set(&a, &b, true)
            .route_event(&input(None), &id(), &untagged, None)
            .await
            .expect("routed");
        assert_eq!((route.target.as_str(), route.rule), ("b", Rule::Search));

        let (a, b) = (world(true), world(true));
        let e = set(&a, &b, true)
            .route_event(&input(None), &id(), &untagged, None)
            .await
            .err()
            .expect("refused");
        assert!(matches!(e, RouteError::Unroutable(_)), "{e}");
        assert!(e.to_string().contains("several targets (a, b)"), "{e}");
        assert!(a.lock().deleted.is_empty() && b.lock().deleted.is_empty());

        // Off: no rule routes, nothing searched.
        let e = set(&a, &b, false)
            .route_event(&input(None), &id(), &untagged, None)
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("no rule routes it"), "{e}");
    }

    #[tokio::test]
    async fn search_on_none_goes_on_as_not_registered_and_a_failed_lookup_routes_nothing() {
        let untagged = regional(tags(None));
        let (a, b) = (world(false), world(false));
        let (route, _) = set(&a, &b, true)
            .route_event(&input(None), &id(), &untagged, None)
            .await
            .expect("routed");
        assert_eq!((route.target.as_str(), route.rule), ("a", Rule::Search));

        let (a, b) = (world(true), world(false));
        b.lock().chef_status = Some(503);
        let e = set(&a, &b, true)
            .route_event(&input(None), &id(), &untagged, None)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(&e, RouteError::Search { target, .. } if target == "b"),
            "{e}"
        );
        assert!(e.is_transient(), "{e}");
    }

    /// An estate target that only counts its cleans.
    #[derive(Default)]
    struct CountingEstate(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl crate::ports::estate::EstateTarget for CountingEstate {
        fn name(&self) -> &'static str {
            "counting"
        }
        async fn backup(
            &self,
            _: &crate::ports::estate::Departure,
        ) -> Result<Option<serde_json::Value>, crate::ports::estate::EstateError> {
            Ok(None)
        }
        async fn clean(
            &self,
            _: &crate::ports::estate::Departure,
            _: Option<&serde_json::Value>,
        ) -> Result<crate::ports::estate::Cleaned, crate::ports::estate::EstateError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(crate::ports::estate::Cleaned::default())
        }
        async fn restore(
            &self,
            _: &serde_json::Value,
        ) -> Result<String, crate::ports::estate::EstateError> {
            Ok(String::new())
        }
        async fn probe(&self) -> Result<String, crate::ports::estate::EstateError> {
            Ok(String::new())
        }
    }

    /// Deleted on b by an earlier delivery (routed by the search), the
    /// redelivered message finds the instance nowhere: b's reaper handles it
    /// (its estate targets run again from b's entry), not the first target's.
    #[tokio::test]
    async fn a_redelivery_registered_nowhere_goes_back_to_the_target_that_deleted_it() {
        let (a, b) = (world(false), world(true));
        let shared = a.journal();
        let estate = Arc::new(CountingEstate::default());
        let with = |w: &FakeWorld, name: &str| {
            let estate: Arc<dyn crate::ports::estate::EstateTarget> = estate.clone();
            Arc::new(Reaper {
                chef: w.chef(),
                journal: Arc::new(TargetJournal {
                    inner: shared.clone(),
                    target: name.into(),
                }),
                resolver: Resolver::default(),
                protection: Protection::default(),
                limiter: Arc::new(DeletionLimiter::new(0)),
                acl_backup: Default::default(),
                estate: vec![estate],
            })
        };
        let set = TargetSet::new(
            vec![("a".into(), with(&a, "a")), ("b".into(), with(&b, "b"))],
            RoutingTable {
                targets: vec!["a".into(), "b".into()],
                search_all_targets: true,
                ..Default::default()
            },
        );
        let untagged = regional(tags(None));
        let sent = chrono::Utc::now() - chrono::Duration::seconds(5);
        let (route, reaper) = set
            .route_event(&input(None), &id(), &untagged, Some(sent))
            .await
            .expect("routed");
        assert_eq!(route.target, "b");
        let request = super::super::Request {
            target: Target::Instance(id()),
            source: super::super::RequestSource::Event,
            reason: "test".into(),
            message_id: None,
            dry_run: false,
            recheck: None,
            verified_region: None,
            group: None,
        };
        reaper.reap(&request).await.expect("reaped");
        assert!(b.lock().nodes.is_empty(), "not deleted on b");
        let (route, _) = set
            .route_event(&input(None), &id(), &untagged, Some(sent))
            .await
            .expect("routed");
        assert_eq!((route.target.as_str(), route.rule), ("b", Rule::Search));
        // A first delivery: the first target, as before.
        let (route, _) = set
            .route_event(&input(None), &id(), &untagged, None)
            .await
            .expect("routed");
        assert_eq!(route.target, "a");
    }
}

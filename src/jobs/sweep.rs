//! Reconciliation: find Chef registrations whose EC2 instances no longer
//! exist, and (with `apply`) remove them under a strict safety model.
//!
//! The algorithm ([`sweep`]): read the Chef inventory; refuse a stale search
//! index; ask EC2 about every recorded instance where the node says it lives
//! (Ohai's account and zone, through the [`Fleet`]: nodereaper's own
//! credentials or an `[[aws.accounts]]` role); classify each node with the
//! core "gone" rule ([`Departure::is_gone`]), protections and the grace
//! period; stop at the blast-radius caps (the share counts only nodes EC2
//! was asked about); then re-check and delete each candidate through the
//! [`Reaper`]. A node is never a candidate when it records no zone, or an
//! account nodereaper cannot ask: "unknown to EC2" means gone only where the
//! instance lives.
//!
//! Cost: one partial-search page per 1000 nodes, one `GET /nodes`, one
//! DescribeInstances per 200 ids, plus a handful of requests per deletion.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::act::{Outcome, Reaper, Recheck, Request, Target};
use crate::core::ec2::IDS_PER_DESCRIBE;
use crate::core::event::is_instance_id;
use crate::core::placement::Placement;
use crate::core::verify::{check_in_time, Departure, Protection};
use crate::ports::{AwsError, ChefError, PlacementError};
use crate::ports::{ChefApi, Fleet, InstanceInfo};
use crate::telemetry::events::{self, SweepSkip};

/// Ids re-checked against EC2 in one call right before their deletion.
const RECHECK_CHUNK: usize = 50;

/// Where Ohai records the instance's AWS account (from the instance
/// identity document), beside `ec2.instance_id` and the zone.
pub const ACCOUNT_ATTRIBUTE: [&str; 2] = ["ec2", "account_id"];

/// How a sweep runs (from the `[sweep]` configuration and the command line).
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// A node that checked in more recently than this is never deleted.
    pub grace_period: Duration,
    /// At most this many candidates (else nothing is deleted).
    pub max_candidates: usize,
    /// At most this share (0..=1) of the nodes EC2 was asked about may be
    /// candidates.
    pub max_candidate_share: f64,
    /// Override the blast-radius caps.
    pub force: bool,
    /// Delete (else report only).
    pub apply: bool,
    /// Node attribute path of the EC2 instance id.
    pub instance_id_attribute: Vec<String>,
    /// Node attribute path of the Availability Zone.
    pub region_attribute: Vec<String>,
    /// The regions swept (`sweep.regions`, else the default region); nodes
    /// placed elsewhere are not checked.
    pub regions: Vec<String>,
}

/// Per node: what the sweep concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Instance gone: to delete (report only), or about to be (`apply`).
    Delete,
    /// Instance gone and the registration deleted.
    Deleted,
    /// Instance alive.
    Keep,
    /// No EC2 instance id on the node: never touched.
    UnknownProvenance,
    /// Gone, but the node checked in too recently (grace period).
    TooRecent,
    /// Gone, but a protection rule (node or instance) applies.
    Protected,
    /// Not asked: region not swept, no (or an unknown) zone recorded, or an
    /// account nodereaper cannot ask. Never deleted.
    NotChecked,
    /// Changed between report and deletion, or the deletion failed.
    Skipped,
}

/// One node in a sweep report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Node name.
    pub node: String,
    /// The instance id the node records, if any.
    pub instance_id: Option<String>,
    /// The AWS account EC2 was asked in (as the fleet identified it), else
    /// the one the node records.
    pub account: Option<String>,
    /// The region EC2 was (or would be) asked in.
    pub region: Option<String>,
    /// EC2 state, `not-found` when EC2 does not know the id.
    pub ec2_state: Option<String>,
    /// The node's last Chef run (`ohai_time`).
    pub last_check_in: Option<DateTime<Utc>>,
    /// What the sweep concluded.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// What a sweep found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every node, sorted by verdict then name.
    pub rows: Vec<Row>,
    /// Nodes on the Chef server.
    pub nodes: usize,
    /// Nodes recording an EC2 instance id.
    pub ec2_nodes: usize,
    /// Nodes whose instance EC2 was asked about: the base of
    /// `sweep.max_candidate_share` (a node never asked can never show that
    /// EC2 answers wrongly).
    pub asked: usize,
    /// Nodes whose instance is gone and that may be deleted.
    pub candidates: usize,
    /// Registrations deleted.
    pub deleted: usize,
    /// Deletions that failed with an error (a permission denied, a journal
    /// that cannot be written, a server error); a registration that changed
    /// or vanished meanwhile is not a failure. `nodereaper sweep` exits 1.
    pub failed: usize,
    /// Set when a safety guard stopped the sweep before any deletion.
    pub aborted: Option<String>,
    /// Whether the sweep was allowed to delete.
    pub applied: bool,
    /// Wall time of the sweep.
    pub duration_ms: u64,
    /// Counts by verdict.
    pub by_verdict: BTreeMap<String, usize>,
}

/// Why a sweep could not run to its end (a failed deletion is a row, not an
/// error).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Reading the Chef inventory failed.
    #[error(transparent)]
    Chef(#[from] ChefError),
    /// Asking EC2 failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Reaching an account (its role, or nodereaper's own identity) failed.
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// Where a sweep reports progress (a terminal progress bar, or nothing).
pub trait Progress: Send + Sync {
    /// A new stage of `total` steps (0: unknown) begins.
    fn stage(&self, _name: &str, _total: u64) {}
    /// `n` more steps of the stage are done.
    fn advance(&self, _n: u64) {}
    /// The sweep is over.
    fn finish(&self) {}
}

/// No progress display.
pub struct Silent;
impl Progress for Silent {}

/// One node as read from the partial search.
#[derive(Debug, Clone)]
struct InventoryNode {
    name: String,
    instance_id: Option<String>,
    /// The AWS account Ohai recorded, if any.
    account: Option<String>,
    located: Located,
    ohai_time: Option<DateTime<Utc>>,
    /// Enough of the node for the protection rules.
    protection_view: Value,
}

impl InventoryNode {
    /// Where to ask EC2: the recorded account (nodereaper's own when none
    /// is recorded) and the region of the recorded zone; `None` without a
    /// zone that names a region.
    fn placement(&self) -> Option<Placement> {
        match &self.located {
            Located::Region(r) => Some(Placement::new(self.account.as_deref(), r)),
            Located::Unrecorded | Located::Unparseable(_) => None,
        }
    }

    /// The recorded instance id, when it is an EC2 instance id.
    fn ec2_instance_id(&self) -> Option<&String> {
        self.instance_id.as_ref().filter(|id| is_instance_id(id))
    }
}

fn str_at<'a>(row: &'a HashMap<String, Value>, key: &str) -> Option<&'a str> {
    row.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub use crate::core::zone::region_of_zone;

/// Where a node says its instance lives.
#[derive(Debug, Clone)]
enum Located {
    Region(String),
    /// A zone nodereaper cannot map to a region: never asked, never gone.
    Unparseable(String),
    /// No zone recorded: no region to ask (a default region could not know
    /// the instance and would call it gone), never asked, never gone.
    Unrecorded,
}

/// What EC2 said, per placement asked (the node's account, else own; the
/// region of its zone).
#[derive(Default)]
struct States {
    /// EC2's answers, by (placement, instance id).
    info: HashMap<(Placement, String), InstanceInfo>,
    /// Each placement asked: the placement EC2 answered for (the account as
    /// the fleet identified it), or why it could not be asked.
    asked: HashMap<Placement, Result<Placement, String>>,
}

/// Runs a sweep, asking EC2 through `fleet` where each node says its
/// instance lives; nodes outside `settings.regions` are reported as not
/// checked.
pub async fn sweep(
    reaper: &Reaper,
    fleet: &dyn Fleet,
    settings: &SweepSettings,
    progress: &dyn Progress,
) -> Result<Report, SweepError> {
    let started = Instant::now();
    let chef = reaper.chef.as_ref();
    progress.stage("reading Chef inventory", 0);
    let nodes = inventory(chef, settings).await?;
    let listed = chef.list_nodes().await?;
    let mut report = Report::empty(nodes.len(), settings.apply);
    report.aborted = stale_index(&nodes, &listed);
    if report.aborted.is_some() {
        return Ok(finish(report, started));
    }
    let states = ask_ec2(&nodes, fleet, settings, progress).await?;
    let judge = Judge {
        states: &states,
        protection: &reaper.protection,
        settings,
        cutoff: cutoff(settings.grace_period),
    };
    judge.classify_all(&nodes, &mut report);
    report.aborted = blast_radius(&report, settings);
    if report.aborted.is_none() && settings.apply {
        delete_candidates(reaper, fleet, &mut report, judge.cutoff, progress).await?;
    }
    Ok(finish(report, started))
}

impl Report {
    /// A report of `nodes` nodes, nothing classified yet.
    pub(crate) fn empty(nodes: usize, applied: bool) -> Self {
        Report {
            rows: Vec::new(),
            nodes,
            ec2_nodes: 0,
            asked: 0,
            candidates: 0,
            deleted: 0,
            failed: 0,
            aborted: None,
            applied,
            duration_ms: 0,
            by_verdict: BTreeMap::new(),
        }
    }
}

/// Reads every node's name, instance id, zone, last check-in and what the
/// protection rules look at, in one partial search.
async fn inventory(
    chef: &dyn ChefApi,
    settings: &SweepSettings,
) -> Result<Vec<InventoryNode>, ChefError> {
    let id_path: Vec<&str> = settings
        .instance_id_attribute
        .iter()
        .map(String::as_str)
        .collect();
    let region_path: Vec<&str> = settings
        .region_attribute
        .iter()
        .map(String::as_str)
        .collect();
    let keys: [(&str, &[&str]); 10] = [
        ("name", &["name"]),
        ("instance_id", &id_path),
        ("account", &ACCOUNT_ATTRIBUTE),
        ("zone", &region_path),
        ("ohai_time", &["ohai_time"]),
        ("chef_environment", &["chef_environment"]),
        ("policy_group", &["policy_group"]),
        ("run_list", &["run_list"]),
        ("roles", &["roles"]),
        ("tags", &["tags"]),
    ];
    let rows = chef.partial_search_nodes("*:*", &keys).await?;
    Ok(rows.iter().filter_map(inventory_node).collect())
}

/// One partial-search row as a node; `None` without a name.
fn inventory_node(row: &HashMap<String, Value>) -> Option<InventoryNode> {
    let field = |key: &str| row.get(key).cloned().unwrap_or(Value::Null);
    let protection_view = json!({
        "chef_environment": field("chef_environment"),
        "policy_group": field("policy_group"),
        "run_list": field("run_list"),
        "automatic": {"roles": field("roles")},
        "normal": {"tags": field("tags")},
    });
    Some(InventoryNode {
        name: str_at(row, "name")?.to_string(),
        instance_id: str_at(row, "instance_id").map(str::to_string),
        account: str_at(row, "account").map(str::to_string),
        located: match str_at(row, "zone") {
            None => Located::Unrecorded,
            Some(zone) => region_of_zone(zone)
                .map_or_else(|| Located::Unparseable(zone.to_string()), Located::Region),
        },
        ohai_time: row.get("ohai_time").and_then(check_in_time),
        protection_view,
    })
}

/// Stale-index guard: search must see exactly the nodes the store has.
/// Returns why the sweep must stop, if it must.
fn stale_index(nodes: &[InventoryNode], listed: &[String]) -> Option<String> {
    let mut searched: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    searched.sort_unstable();
    searched.dedup();
    (searched.len() != listed.len() || searched.len() != nodes.len()).then(|| {
        format!(
            "stale search index: search returned {} rows ({} distinct nodes) but GET /nodes lists {}; \
             not sweeping until they agree (reindex the Chef server)",
            nodes.len(),
            searched.len(),
            listed.len()
        )
    })
}

/// Asks EC2 about every recorded instance id where its node says it lives:
/// one group per (account, region) in the swept regions, each through the
/// fleet (own credentials or the account's role), in batches of one
/// DescribeInstances call each (progress advances per batch). An account
/// nodereaper cannot ask is recorded as such, never asked elsewhere.
async fn ask_ec2(
    nodes: &[InventoryNode],
    fleet: &dyn Fleet,
    settings: &SweepSettings,
    progress: &dyn Progress,
) -> Result<States, PlacementError> {
    let mut groups: BTreeMap<Placement, Vec<String>> = BTreeMap::new();
    for n in nodes {
        if let (Some(id), Some(placement)) = (n.ec2_instance_id(), n.placement()) {
            if settings.regions.contains(&placement.region) {
                groups.entry(placement).or_default().push(id.clone());
            }
        }
    }
    let total_ids: usize = groups.values().map(Vec::len).sum();
    progress.stage("asking EC2", total_ids as u64);
    let mut states = States::default();
    for (placement, ids) in groups {
        let regional = match fleet.regional(&placement).await {
            Ok(regional) => regional,
            Err(e @ PlacementError::UnknownAccount { .. }) => {
                progress.advance(ids.len() as u64);
                states.asked.insert(placement, Err(e.to_string()));
                continue;
            }
            Err(e) => return Err(e),
        };
        for chunk in ids.chunks(IDS_PER_DESCRIBE) {
            for (id, info) in regional.inventory.describe(chunk).await? {
                states.info.insert((placement.clone(), id), info);
            }
            progress.advance(chunk.len() as u64);
        }
        states.asked.insert(placement, Ok(regional.placement));
    }
    Ok(states)
}

/// Nodes that checked in after this are too recent to delete.
pub(crate) fn cutoff(grace_period: Duration) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(grace_period).unwrap_or(chrono::Duration::MAX)
}

/// What classification weighs a node against.
struct Judge<'a> {
    states: &'a States,
    protection: &'a Protection,
    settings: &'a SweepSettings,
    cutoff: DateTime<Utc>,
}

impl Judge<'_> {
    /// Classifies every node into `report` and counts EC2-backed nodes,
    /// nodes asked about and candidates.
    fn classify_all(&self, nodes: &[InventoryNode], report: &mut Report) {
        for n in nodes {
            if n.ec2_instance_id().is_some() {
                report.ec2_nodes += 1;
            }
            let row = self.classify(n);
            if row.ec2_state.is_some() {
                report.asked += 1;
            }
            if row.verdict == Verdict::Delete {
                report.candidates += 1;
            }
            report.rows.push(row);
        }
    }

    /// One node: where its instance is, whether it was asked, then what EC2
    /// said ([`Judge::gone_verdict`]).
    fn classify(&self, n: &InventoryNode) -> Row {
        let row = Row {
            node: n.name.clone(),
            instance_id: n.instance_id.clone(),
            account: n.account.clone(),
            region: None,
            ec2_state: None,
            last_check_in: n.ohai_time,
            verdict: Verdict::Keep,
            reason: String::new(),
        };
        let Some(id) = n.instance_id.as_ref() else {
            return row.judged(
                Verdict::UnknownProvenance,
                "no EC2 instance id recorded; never deleted",
            );
        };
        if !is_instance_id(id) {
            return row.judged(
                Verdict::UnknownProvenance,
                format!("recorded instance id {id:?} is not an EC2 instance id"),
            );
        }
        let placement = match (&n.located, n.placement()) {
            (_, Some(p)) => p,
            (Located::Unparseable(zone), None) => return row.judged(
                Verdict::NotChecked,
                format!("Availability Zone {zone:?} names no region nodereaper recognises; not asked, never deleted"),
            ),
            _ => return row.judged(
                Verdict::NotChecked,
                "no Availability Zone recorded: no region to ask EC2 in (elsewhere it would look gone); never deleted",
            ),
        };
        let row = Row {
            region: Some(placement.region.clone()),
            ..row
        };
        if !self.settings.regions.contains(&placement.region) {
            let reason = format!("region {} is not swept (sweep.regions)", placement.region);
            return row.judged(Verdict::NotChecked, reason);
        }
        let asked = match self.states.asked.get(&placement) {
            Some(Ok(asked)) => asked,
            Some(Err(why)) => {
                return row.judged(
                    Verdict::NotChecked,
                    format!("not asked, never deleted: {why}"),
                )
            }
            None => return row.judged(Verdict::NotChecked, "not asked"),
        };
        let info = self.states.info.get(&(placement, id.clone()));
        let (verdict, reason) = self.gone_verdict(n, info);
        Row {
            account: asked.account.clone(),
            ec2_state: Some(info.map_or("not-found", |i| i.state.as_str()).to_string()),
            ..row.judged(verdict, reason)
        }
    }

    /// A node whose instance EC2 was asked about: kept unless gone for good,
    /// then protections, then the grace period.
    fn gone_verdict(&self, n: &InventoryNode, info: Option<&InstanceInfo>) -> (Verdict, String) {
        let departure = Departure::of(info);
        if !departure.is_gone() {
            return (Verdict::Keep, "instance exists".into());
        }
        if let Some(reason) = self
            .protection
            .node_reason(&n.name, Some(&n.protection_view))
        {
            return (Verdict::Protected, reason);
        }
        if let Some(reason) = info.and_then(|i| self.protection.instance_reason(i)) {
            return (Verdict::Protected, reason);
        }
        match n.ohai_time {
            None => (
                Verdict::TooRecent,
                "no ohai_time recorded: age unknown".into(),
            ),
            Some(t) if t > self.cutoff => (
                Verdict::TooRecent,
                format!(
                    "checked in within the grace period ({})",
                    humantime::format_duration(self.settings.grace_period)
                ),
            ),
            Some(_) if departure == Departure::Unknown => {
                (Verdict::Delete, "EC2 does not know the instance".into())
            }
            Some(_) => (Verdict::Delete, "instance terminated".into()),
        }
    }
}

impl Row {
    fn judged(self, verdict: Verdict, reason: impl Into<String>) -> Row {
        Row {
            verdict,
            reason: reason.into(),
            ..self
        }
    }
}

/// Blast-radius caps: why nothing may be deleted, if too many candidates
/// (by count, or by share of the nodes EC2 was asked about) and not forced.
pub(crate) fn blast_radius(report: &Report, settings: &SweepSettings) -> Option<String> {
    if settings.force || report.candidates == 0 {
        return None;
    }
    let share = if report.asked == 0 {
        0.0
    } else {
        report.candidates as f64 / report.asked as f64
    };
    if report.candidates > settings.max_candidates {
        Some(format!(
            "{} candidates exceed sweep.max_candidates = {}; nothing deleted (rerun with --force if this is expected)",
            report.candidates, settings.max_candidates
        ))
    } else if share > settings.max_candidate_share {
        Some(format!(
            "{} candidates are {:.1}% of the {} nodes EC2 was asked about, above sweep.max_candidate_share = {:.1}%; nothing deleted (rerun with --force if this is expected)",
            report.candidates,
            share * 100.0,
            report.asked,
            settings.max_candidate_share * 100.0
        ))
    } else {
        None
    }
}

/// Phase two: re-checks each candidate against EC2 (in chunks, where it
/// was asked first) and Chef (in the reaper), then deletes it.
async fn delete_candidates(
    reaper: &Reaper,
    fleet: &dyn Fleet,
    report: &mut Report,
    cutoff: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<(), SweepError> {
    let candidates: Vec<usize> = (0..report.rows.len())
        .filter(|&i| report.rows[i].verdict == Verdict::Delete)
        .collect();
    progress.stage("deleting", candidates.len() as u64);
    for chunk in candidates.chunks(RECHECK_CHUNK) {
        let fresh = recheck_ec2(fleet, &report.rows, chunk).await?;
        for &i in chunk {
            let row = &mut report.rows[i];
            let id = row.instance_id.clone().unwrap_or_default();
            let Some((asked, info)) = fresh.get(&i) else {
                row.verdict = Verdict::Skipped;
                row.reason = "not asked again: no account and region to ask".into();
                events::sweep_skipped(SweepSkip::RecheckEc2);
                progress.advance(1);
                continue;
            };
            if !Departure::of(info.as_ref()).is_gone() {
                row.verdict = Verdict::Skipped;
                row.reason = format!(
                    "EC2 now reports the instance {}",
                    info.as_ref().map_or("", |i| i.state.as_str())
                );
                events::sweep_skipped(SweepSkip::RecheckEc2);
            } else {
                match delete_one(reaper, row, asked.clone(), id, cutoff).await {
                    Deletion::Deleted => report.deleted += 1,
                    Deletion::Failed => report.failed += 1,
                    Deletion::NotDone => {}
                }
            }
            progress.advance(1);
        }
    }
    Ok(())
}

/// EC2's view, now, of the instances of `chunk` (indexes into `rows`), asked
/// in the account and region each was asked in first: per row, the
/// placement EC2 answered for and its answer.
async fn recheck_ec2(
    fleet: &dyn Fleet,
    rows: &[Row],
    chunk: &[usize],
) -> Result<HashMap<usize, (Placement, Option<InstanceInfo>)>, SweepError> {
    let mut groups: BTreeMap<Placement, Vec<(usize, String)>> = BTreeMap::new();
    for &i in chunk {
        if let (Some(region), Some(id)) = (&rows[i].region, &rows[i].instance_id) {
            let placement = Placement::new(rows[i].account.as_deref(), region);
            groups.entry(placement).or_default().push((i, id.clone()));
        }
    }
    let mut fresh = HashMap::new();
    for (placement, rows) in groups {
        let regional = fleet.regional(&placement).await?;
        let ids: Vec<String> = rows.iter().map(|(_, id)| id.clone()).collect();
        let mut answers = regional.inventory.describe(&ids).await?;
        for (i, id) in rows {
            fresh.insert(i, (regional.placement.clone(), answers.remove(&id)));
        }
    }
    Ok(fresh)
}

/// What became of one candidate's deletion.
enum Deletion {
    Deleted,
    /// Changed, protected, refused or already gone: nothing to report.
    NotDone,
    /// An error: the sweep did not do what was asked.
    Failed,
}

/// Deletes one candidate's registration through the reaper (which re-checks
/// the node) and records the outcome in its row.
async fn delete_one(
    reaper: &Reaper,
    row: &mut Row,
    asked: Placement,
    id: String,
    cutoff: DateTime<Utc>,
) -> Deletion {
    let request = Request {
        verified_region: Some(asked),
        group: None,
        target: Target::Node(row.node.clone()),
        source: crate::act::RequestSource::Sweep,
        reason: format!(
            "sweep: {} ({})",
            row.reason,
            row.ec2_state.as_deref().unwrap_or("?")
        ),
        message_id: None,
        dry_run: false,
        recheck: Some(Recheck {
            instance_id: id,
            not_seen_since: cutoff,
        }),
    };
    let (reason, label) = match reaper.reap(&request).await {
        Ok(Outcome::Deleted { journal_id, .. }) => {
            row.verdict = Verdict::Deleted;
            row.reason = format!("{} (backup {journal_id})", row.reason);
            events::sweep_deleted("apply");
            return Deletion::Deleted;
        }
        Ok(Outcome::WouldDelete { .. }) => return Deletion::NotDone,
        Ok(Outcome::AlreadyGone { .. }) => ("already gone".to_string(), SweepSkip::AlreadyGone),
        Ok(Outcome::Changed { reason, .. })
        | Ok(Outcome::Protected { reason, .. })
        | Ok(Outcome::Refused { reason, .. }) => (reason, SweepSkip::RecheckChef),
        Err(e) => (format!("deletion failed: {e}"), SweepSkip::Error),
    };
    row.verdict = Verdict::Skipped;
    row.reason = reason;
    events::sweep_skipped(label);
    if label == SweepSkip::Error {
        Deletion::Failed
    } else {
        Deletion::NotDone
    }
}

fn finish(mut report: Report, started: Instant) -> Report {
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
        .rows
        .sort_by(|a, b| a.verdict.cmp(&b.verdict).then_with(|| a.node.cmp(&b.node)));
    report.by_verdict.clear();
    for row in &report.rows {
        let key = serde_json::to_value(row.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *report.by_verdict.entry(key).or_default() += 1;
    }
    let not_deleted = report
        .by_verdict
        .iter()
        .filter(|(verdict, _)| {
            !matches!(verdict.as_str(), "delete" | "deleted" | "keep" | "skipped")
        })
        .map(|(verdict, n)| (verdict.as_str(), *n));
    events::sweep_finished(report.candidates, not_deleted, started.elapsed());
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_to_regions() {
        assert_eq!(region_of_zone("us-east-1a").as_deref(), Some("us-east-1"));
        assert_eq!(
            region_of_zone("eu-central-2b").as_deref(),
            Some("eu-central-2")
        );
        assert_eq!(
            region_of_zone("us-east-1-bos-1a").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(region_of_zone("nowhere"), None);
    }
}

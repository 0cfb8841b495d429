//! The sweep of Chef Automate's missing nodes (`nodereaper sweep
//! --automate`): for Effortless and chef-solo fleets, which have no Chef
//! server objects, Automate is the only registry an instance leaves behind.
//!
//! The algorithm ([`sweep_automate`]), the Chef sweep's ([`super::sweep`])
//! on Automate's inventory: list every node Automate reports missing
//! (`status:missing`, page by page to the end); read each one's recorded
//! attributes, where Ohai wrote the instance id, account and zone (the same
//! attribute paths as the Chef sweep, `sweep.instance_id_attribute` and
//! `sweep.region_attribute`, below `automatic`); ask EC2 in that account
//! and region (the [`Fleet`]); classify with the core "gone" rule, the
//! protections and the grace period (Automate's last check-in); stop at the
//! blast-radius caps; then (`apply`) re-check EC2, journal the node and
//! delete it from Automate by id, within the deletion rate cap and at most
//! `max_deletions` per run. A node without a recorded instance, zone or
//! askable account is never a candidate. Automate cannot restore a node:
//! the journal keeps what was deleted, and `restore` says so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::sweep::{blast_radius, cutoff, Progress, Report, Row, SweepSettings, Verdict};
use crate::act::DeletionLimiter;
use crate::core::ec2::IDS_PER_DESCRIBE;
use crate::core::event::is_instance_id;
use crate::core::journal::{EstateBackup, JournalEntry};
use crate::core::placement::Placement;
use crate::core::verify::{check_in_time, Departure, Protection};
use crate::core::zone::region_of_zone;
use crate::ports::estate::{AutomateNodes, EstateError};
use crate::ports::{AwsError, Fleet, InstanceInfo, Journal, PlacementError};

/// The journal entries' `source`.
pub const SOURCE: &str = "automate-sweep";

/// Nodes asked for per page of the listing.
pub const PAGE_SIZE: u32 = 100;

/// What restore says about an Automate node (also in each entry's notes).
pub const NO_RESTORE: &str = "Chef Automate cannot restore a node: it reappears at its next \
     chef-client run; the journal keeps what was deleted";

/// How an Automate sweep runs.
#[derive(Debug, Clone)]
pub struct AutomateSweepSettings {
    /// The Chef sweep's settings: grace, caps, regions, attribute paths,
    /// `apply` and `force`.
    pub sweep: SweepSettings,
    /// At most this many deletions in one run (the rest are skipped).
    pub max_deletions: usize,
    /// Automate's URL, recorded in each journal entry.
    pub automate_url: String,
    /// Nodes per page of the listing.
    pub page_size: u32,
}

/// Why an Automate sweep could not run to its end (a failed deletion is a
/// row, not an error).
#[derive(Debug, thiserror::Error)]
pub enum AutomateSweepError {
    /// Listing Automate's nodes or reading their attributes failed.
    #[error(transparent)]
    Automate(#[from] EstateError),
    /// Asking EC2 failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Reaching an account (its role, or nodereaper's own identity) failed.
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// What an Automate sweep works with.
pub struct AutomateSweep<'a> {
    /// Automate's inventory and deletion.
    pub automate: &'a dyn AutomateNodes,
    /// EC2 wherever an instance lives.
    pub fleet: &'a dyn Fleet,
    /// Where each deletion is recorded first.
    pub journal: &'a dyn Journal,
    /// `[protect]`.
    pub protection: &'a Protection,
    /// The deletion rate cap (`pipeline.max_deletions_per_minute`).
    pub limiter: &'a DeletionLimiter,
}

/// One missing Automate node, as read.
#[derive(Debug, Clone)]
struct MissingNode {
    id: String,
    name: String,
    instance_id: Option<String>,
    account: Option<String>,
    /// The recorded zone, when any.
    zone: Option<String>,
    checkin: Option<DateTime<Utc>>,
    protection_view: Value,
    /// The listing and attributes, for the journal.
    backup: Value,
}

impl MissingNode {
    /// Where to ask EC2: the recorded account (own when none) and the
    /// region of the recorded zone.
    fn placement(&self) -> Option<Placement> {
        let region = region_of_zone(self.zone.as_deref()?)?;
        Some(Placement::new(self.account.as_deref(), &region))
    }

    fn ec2_instance_id(&self) -> Option<&String> {
        self.instance_id.as_ref().filter(|id| is_instance_id(id))
    }
}

/// The string at `path` below `value`, when non-empty.
fn str_at<'v>(value: &'v Value, path: &[String]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Runs the sweep of Automate's missing nodes.
pub async fn sweep_automate(
    with: &AutomateSweep<'_>,
    settings: &AutomateSweepSettings,
    progress: &dyn Progress,
) -> Result<Report, AutomateSweepError> {
    let started = Instant::now();
    progress.stage("listing Automate's missing nodes", 0);
    let listed = list_missing(with.automate, settings.page_size).await?;
    progress.stage("reading recorded attributes", listed.len() as u64);
    let mut nodes = Vec::with_capacity(listed.len());
    for listing in listed {
        nodes.push(read_node(with.automate, listing, &settings.sweep).await?);
        progress.advance(1);
    }
    let mut report = Report::empty(nodes.len(), settings.sweep.apply);
    let states = ask_ec2(&nodes, with.fleet, &settings.sweep, progress).await?;
    let cutoff = cutoff(settings.sweep.grace_period);
    let mut ids = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let row = classify(n, &states, with.protection, &settings.sweep, cutoff);
        count(&mut report, n, &row);
        report.rows.push(row);
        ids.push(n);
    }
    report.aborted = blast_radius(&report, &settings.sweep);
    if report.aborted.is_none() && settings.sweep.apply {
        delete_candidates(with, settings, &mut report, &ids, progress).await?;
    }
    Ok(finish(report, started))
}

fn count(report: &mut Report, n: &MissingNode, row: &Row) {
    if n.ec2_instance_id().is_some() {
        report.ec2_nodes += 1;
    }
    if row.ec2_state.is_some() {
        report.asked += 1;
    }
    if row.verdict == Verdict::Delete {
        report.candidates += 1;
    }
}

/// Every missing node, page by page until a short page; a page holding
/// only nodes already seen (an Automate ignoring the page) ends the listing.
async fn list_missing(automate: &dyn AutomateNodes, size: u32) -> Result<Vec<Value>, EstateError> {
    let size = size.max(1);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for page in 1.. {
        let nodes = automate.missing_nodes(page, size).await?;
        let got = nodes.len();
        let mut new = 0;
        for n in nodes {
            let id = n
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !id.is_empty() && seen.insert(id) {
                out.push(n);
                new += 1;
            }
        }
        if got < size as usize || new == 0 {
            break;
        }
    }
    Ok(out)
}

/// A listed node with its recorded attributes.
async fn read_node(
    automate: &dyn AutomateNodes,
    listing: Value,
    settings: &SweepSettings,
) -> Result<MissingNode, EstateError> {
    let id = listing
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let attributes = automate.attributes(&id).await?;
    let empty = json!({});
    let attrs = attributes.as_ref().unwrap_or(&empty);
    let automatic = attrs.get("automatic").unwrap_or(&empty);
    let name = listing
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| attrs.get("name").and_then(Value::as_str))
        .unwrap_or(&id)
        .to_string();
    let checkin = listing
        .get("checkin")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| automatic.get("ohai_time").and_then(check_in_time));
    let account_path = super::sweep::ACCOUNT_ATTRIBUTE.map(String::from);
    Ok(MissingNode {
        instance_id: str_at(automatic, &settings.instance_id_attribute).map(String::from),
        account: str_at(automatic, &account_path).map(String::from),
        zone: str_at(automatic, &settings.region_attribute).map(String::from),
        protection_view: json!({
            "chef_environment": attrs.get("chef_environment").cloned().unwrap_or(Value::Null),
            "policy_group": listing.get("policy_group").cloned().unwrap_or(Value::Null),
            "run_list": attrs.get("run_list").cloned().unwrap_or(Value::Null),
            "automatic": {"roles": automatic.get("roles").cloned().unwrap_or(Value::Null)},
            "normal": {"tags": attrs.pointer("/normal/tags").cloned().unwrap_or(Value::Null)},
        }),
        backup: json!({"node_id": id, "listing": listing, "attributes": attributes}),
        id,
        name,
        checkin,
    })
}

/// EC2's answers by (placement, id), and each placement asked: the
/// placement EC2 answered for, or why it could not be asked.
type States = (
    HashMap<(Placement, String), InstanceInfo>,
    HashMap<Placement, Result<Placement, String>>,
);

/// Asks EC2 about every recorded instance where its node says it lives,
/// in the swept regions; an account nodereaper cannot ask is recorded.
async fn ask_ec2(
    nodes: &[MissingNode],
    fleet: &dyn Fleet,
    settings: &SweepSettings,
    progress: &dyn Progress,
) -> Result<States, AutomateSweepError> {
    let mut groups: BTreeMap<Placement, Vec<String>> = BTreeMap::new();
    for n in nodes {
        if let (Some(id), Some(p)) = (n.ec2_instance_id(), n.placement()) {
            if settings.regions.contains(&p.region) {
                groups.entry(p).or_default().push(id.clone());
            }
        }
    }
    progress.stage(
        "asking EC2",
        groups.values().map(Vec::len).sum::<usize>() as u64,
    );
    let (mut info, mut asked) = (HashMap::new(), HashMap::new());
    for (placement, ids) in groups {
        let regional = match fleet.regional(&placement).await {
            Ok(r) => r,
            Err(e @ PlacementError::UnknownAccount { .. }) => {
                asked.insert(placement, Err(e.to_string()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for chunk in ids.chunks(IDS_PER_DESCRIBE) {
            for (id, i) in regional.inventory.describe(chunk).await? {
                info.insert((placement.clone(), id), i);
            }
            progress.advance(chunk.len() as u64);
        }
        asked.insert(placement, Ok(regional.placement));
    }
    Ok((info, asked))
}

/// One node's verdict: recorded instance, placement, asked, then gone,
/// protected, grace.
fn classify(
    n: &MissingNode,
    states: &States,
    protection: &Protection,
    settings: &SweepSettings,
    cutoff: DateTime<Utc>,
) -> Row {
    let row = Row {
        node: n.name.clone(),
        instance_id: n.instance_id.clone(),
        account: n.account.clone(),
        region: None,
        ec2_state: None,
        last_check_in: n.checkin,
        verdict: Verdict::Keep,
        reason: String::new(),
    };
    let judged = |row: Row, verdict, reason: String| Row {
        verdict,
        reason: format!("{reason} (automate node {})", n.id),
        ..row
    };
    let Some(id) = n.ec2_instance_id() else {
        let why = match &n.instance_id {
            Some(id) => format!("recorded instance id {id:?} is not an EC2 instance id"),
            None => "no EC2 instance id recorded in Automate's attributes; never deleted".into(),
        };
        return judged(row, Verdict::UnknownProvenance, why);
    };
    let Some(placement) = n.placement() else {
        let why = format!(
            "no Availability Zone nodereaper recognises recorded ({:?}): no region to ask EC2 in; never deleted",
            n.zone.as_deref().unwrap_or("")
        );
        return judged(row, Verdict::NotChecked, why);
    };
    let row = Row {
        region: Some(placement.region.clone()),
        ..row
    };
    if !settings.regions.contains(&placement.region) {
        let why = format!("region {} is not swept (sweep.regions)", placement.region);
        return judged(row, Verdict::NotChecked, why);
    }
    let asked = match states.1.get(&placement) {
        Some(Ok(asked)) => asked.clone(),
        Some(Err(why)) => {
            return judged(
                row,
                Verdict::NotChecked,
                format!("not asked, never deleted: {why}"),
            )
        }
        None => return judged(row, Verdict::NotChecked, "not asked".into()),
    };
    let info = states.0.get(&(placement, id.clone()));
    let (verdict, reason) = gone_verdict(n, info, protection, settings, cutoff);
    Row {
        account: asked.account,
        ec2_state: Some(info.map_or("not-found", |i| i.state.as_str()).to_string()),
        ..judged(row, verdict, reason)
    }
}

/// A node whose instance EC2 was asked about: kept unless gone for good,
/// then protections, then the grace period (Automate's last check-in).
fn gone_verdict(
    n: &MissingNode,
    info: Option<&InstanceInfo>,
    protection: &Protection,
    settings: &SweepSettings,
    cutoff: DateTime<Utc>,
) -> (Verdict, String) {
    let departure = Departure::of(info);
    if !departure.is_gone() {
        return (Verdict::Keep, "instance exists".into());
    }
    let protected = protection
        .node_reason(&n.name, Some(&n.protection_view))
        .or_else(|| info.and_then(|i| protection.instance_reason(i)));
    if let Some(reason) = protected {
        return (Verdict::Protected, reason);
    }
    match n.checkin {
        None => (
            Verdict::TooRecent,
            "no check-in recorded: age unknown".into(),
        ),
        Some(t) if t > cutoff => (
            Verdict::TooRecent,
            format!(
                "checked in within the grace period ({})",
                humantime::format_duration(settings.grace_period)
            ),
        ),
        Some(_) if departure == Departure::Unknown => {
            (Verdict::Delete, "EC2 does not know the instance".into())
        }
        Some(_) => (Verdict::Delete, "instance terminated".into()),
    }
}

/// Re-checks every candidate against EC2, then journals and deletes each
/// still gone, within the rate cap and `max_deletions`.
async fn delete_candidates(
    with: &AutomateSweep<'_>,
    settings: &AutomateSweepSettings,
    report: &mut Report,
    nodes: &[&MissingNode],
    progress: &dyn Progress,
) -> Result<(), AutomateSweepError> {
    let candidates: Vec<usize> = (0..report.rows.len())
        .filter(|&i| report.rows[i].verdict == Verdict::Delete)
        .collect();
    progress.stage("deleting", candidates.len() as u64);
    let fresh = recheck(with.fleet, &report.rows, &candidates).await?;
    for i in candidates {
        progress.advance(1);
        let (row, node) = (&mut report.rows[i], nodes[i]);
        let still_gone = fresh
            .get(&i)
            .is_some_and(|info| Departure::of(info.as_ref()).is_gone());
        if !still_gone {
            row.verdict = Verdict::Skipped;
            row.reason = format!("EC2 now reports the instance (automate node {})", node.id);
            continue;
        }
        if report.deleted >= settings.max_deletions {
            row.verdict = Verdict::Skipped;
            row.reason = format!(
                "{} deletions made, the most one run may (sweep.max_deletions_per_day); not deleted",
                report.deleted
            );
            continue;
        }
        match delete_one(with, settings, row, node).await {
            Ok(journal_id) => {
                row.verdict = Verdict::Deleted;
                row.reason = format!("{} (backup {journal_id})", row.reason);
                report.deleted += 1;
            }
            Err(why) => {
                row.verdict = Verdict::Skipped;
                row.reason = why;
                report.failed += 1;
            }
        }
    }
    Ok(())
}

/// EC2's view, now, of the candidates' instances, asked where they were
/// asked first; by row index.
async fn recheck(
    fleet: &dyn Fleet,
    rows: &[Row],
    candidates: &[usize],
) -> Result<HashMap<usize, Option<InstanceInfo>>, AutomateSweepError> {
    let mut groups: BTreeMap<Placement, Vec<(usize, String)>> = BTreeMap::new();
    for &i in candidates {
        if let (Some(region), Some(id)) = (&rows[i].region, &rows[i].instance_id) {
            let p = Placement::new(rows[i].account.as_deref(), region);
            groups.entry(p).or_default().push((i, id.clone()));
        }
    }
    let mut fresh = HashMap::new();
    for (placement, members) in groups {
        let regional = fleet.regional(&placement).await?;
        for chunk in members.chunks(IDS_PER_DESCRIBE) {
            let ids: Vec<String> = chunk.iter().map(|(_, id)| id.clone()).collect();
            let mut answers = regional.inventory.describe(&ids).await?;
            for (i, id) in chunk {
                fresh.insert(*i, answers.remove(id));
            }
        }
    }
    Ok(fresh)
}

/// Journals one node, then deletes it from Automate; the journal id, or
/// why nothing (or not everything) was done.
async fn delete_one(
    with: &AutomateSweep<'_>,
    settings: &AutomateSweepSettings,
    row: &Row,
    node: &MissingNode,
) -> Result<String, String> {
    with.limiter
        .acquire()
        .await
        .map_err(|e| format!("not deleted: {e}"))?;
    let mut entry = JournalEntry::new(
        SOURCE,
        format!("automate sweep: {}", row.reason),
        None,
        node.instance_id.clone(),
        &node.name,
        None,
        &settings.automate_url,
        None,
        None,
    );
    entry.node_status = None;
    entry.notes.push(NO_RESTORE.to_string());
    entry.estate.push(EstateBackup {
        target: crate::adapters::automate::NAME.to_string(),
        data: node.backup.clone(),
    });
    with.journal
        .record(&entry)
        .await
        .map_err(|e| format!("not deleted: the journal entry could not be written: {e}"))?;
    with.automate
        .delete_node(&node.id)
        .await
        .map_err(|e| format!("deletion failed (journal {}): {e}", entry.id))?;
    tracing::info!(node = %node.name, automate_node = %node.id, instance_id = ?node.instance_id, journal_id = %entry.id, "deleted a missing node from Chef Automate");
    Ok(entry.id)
}

/// Why `restore` cannot bring `reg` back: it holds only what an Automate
/// sweep deleted (no Chef node or client; Automate has no restore).
pub fn unrestorable(reg: &super::restore::Registration) -> Option<&'static str> {
    let automate_only = reg.node.is_none()
        && reg.client.is_none()
        && reg.client_name.is_none()
        && !reg.estate.is_empty()
        && reg
            .estate
            .iter()
            .all(|b| b.target == crate::adapters::automate::NAME);
    automate_only.then_some(NO_RESTORE)
}

/// Sorts the rows and counts them by verdict.
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
    report
}

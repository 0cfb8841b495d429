//! Reconciliation: find Chef registrations whose EC2 instances no longer
//! exist, and (with `apply`) remove them under a strict safety model.
//!
//! Cost: one partial-search page per 1000 nodes, one `GET /nodes`, one
//! DescribeInstances per 200 ids, plus a handful of requests per deletion.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::act::{Outcome, Reaper, Recheck, Request, Target};
use crate::adapters::aws::AwsError;
use crate::adapters::chef::ChefError;
use crate::core::event::is_instance_id;
use crate::ports::{ChefApi, InstanceInfo, InstanceInventory};
use crate::telemetry::metrics;

/// Ids re-checked against EC2 in one call right before their deletion.
const RECHECK_CHUNK: usize = 50;

#[derive(Debug, Clone)]
pub struct SweepSettings {
    pub grace_period: Duration,
    pub max_candidates: usize,
    pub max_candidate_share: f64,
    /// Override the blast-radius caps.
    pub force: bool,
    /// Delete (else report only).
    pub apply: bool,
    pub instance_id_attribute: Vec<String>,
    pub region_attribute: Vec<String>,
    /// Region for nodes that do not record one.
    pub default_region: String,
}

/// Per node: what the sweep concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Instance gone: deleted (with `apply`) or to delete.
    Delete,
    Deleted,
    /// Instance alive.
    Keep,
    /// No EC2 instance id on the node: never touched.
    UnknownProvenance,
    /// Gone, but the node checked in too recently (grace period).
    TooRecent,
    Protected,
    /// Region not swept.
    NotChecked,
    /// Changed between report and deletion, or the deletion failed.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub node: String,
    pub instance_id: Option<String>,
    pub region: Option<String>,
    /// EC2 state, `not-found` when EC2 does not know the id.
    pub ec2_state: Option<String>,
    pub last_check_in: Option<DateTime<Utc>>,
    pub verdict: Verdict,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    pub nodes: usize,
    pub ec2_nodes: usize,
    pub candidates: usize,
    pub deleted: usize,
    /// Set when a safety guard stopped the sweep before any deletion.
    pub aborted: Option<String>,
    pub applied: bool,
    pub duration_ms: u64,
    /// Counts by verdict.
    pub by_verdict: BTreeMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Chef(#[from] ChefError),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Where a sweep reports progress (a terminal progress bar, or nothing).
pub trait Progress: Send + Sync {
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
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
    located: Located,
    ohai_time: Option<DateTime<Utc>>,
    /// Enough of the node for the protection rules.
    protection_view: Value,
}

impl InventoryNode {
    /// The region to ask EC2 in; `None` for an unparseable zone.
    fn region(&self, default_region: &str) -> Option<String> {
        match &self.located {
            Located::Region(r) => Some(r.clone()),
            Located::Unrecorded => Some(default_region.to_string()),
            Located::Unparseable(_) => None,
        }
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
    /// No zone recorded: the sweep's default region is asked.
    Unrecorded,
}

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
    let keys: [(&str, &[&str]); 9] = [
        ("name", &["name"]),
        ("instance_id", &id_path),
        ("zone", &region_path),
        ("ohai_time", &["ohai_time"]),
        ("chef_environment", &["chef_environment"]),
        ("policy_group", &["policy_group"]),
        ("run_list", &["run_list"]),
        ("roles", &["roles"]),
        ("tags", &["tags"]),
    ];
    let rows = chef.partial_search_nodes("*:*", &keys).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let name = str_at(&row, "name")?.to_string();
            let ohai_time = row
                .get("ohai_time")
                .and_then(Value::as_f64)
                .and_then(|s| DateTime::from_timestamp_millis((s * 1000.0) as i64));
            let protection_view = json!({
                "chef_environment": row.get("chef_environment").cloned().unwrap_or(Value::Null),
                "policy_group": row.get("policy_group").cloned().unwrap_or(Value::Null),
                "run_list": row.get("run_list").cloned().unwrap_or(Value::Null),
                "automatic": {"roles": row.get("roles").cloned().unwrap_or(Value::Null)},
                "normal": {"tags": row.get("tags").cloned().unwrap_or(Value::Null)},
            });
            Some(InventoryNode {
                instance_id: str_at(&row, "instance_id").map(str::to_string),
                located: match str_at(&row, "zone") {
                    None => Located::Unrecorded,
                    Some(zone) => region_of_zone(zone)
                        .map_or_else(|| Located::Unparseable(zone.to_string()), Located::Region),
                },
                ohai_time,
                protection_view,
                name,
            })
        })
        .collect())
}

/// Runs a sweep. `inventories` maps region -> EC2 inventory; nodes in other
/// regions are reported as not checked.
pub async fn sweep(
    reaper: &Reaper,
    inventories: &HashMap<String, Arc<dyn InstanceInventory>>,
    settings: &SweepSettings,
    progress: &dyn Progress,
) -> Result<Report, SweepError> {
    let started = Instant::now();
    let chef = reaper.chef.as_ref();
    progress.stage("reading Chef inventory", 0);
    let nodes = inventory(chef, settings).await?;
    let listed = chef.list_nodes().await?;
    let mut report = Report {
        rows: Vec::new(),
        nodes: nodes.len(),
        ec2_nodes: 0,
        candidates: 0,
        deleted: 0,
        aborted: None,
        applied: settings.apply,
        duration_ms: 0,
        by_verdict: BTreeMap::new(),
    };
    // Stale-index guard: search must see exactly the nodes the store has.
    let mut searched: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    searched.sort_unstable();
    searched.dedup();
    if searched.len() != listed.len() || searched.len() != nodes.len() {
        report.aborted = Some(format!(
            "stale search index: search returned {} rows ({} distinct nodes) but GET /nodes lists {}; \
             not sweeping until they agree (reindex the Chef server)",
            nodes.len(),
            searched.len(),
            listed.len()
        ));
        return Ok(finish(report, started));
    }

    // Ask EC2, per region, about every recorded instance id.
    let mut by_region: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &nodes {
        if let Some(id) = n.instance_id.as_ref().filter(|id| is_instance_id(id)) {
            if let Some(region) = n.region(&settings.default_region) {
                by_region.entry(region).or_default().push(id.clone());
            }
        }
    }
    let total_ids: usize = by_region.values().map(Vec::len).sum();
    progress.stage("asking EC2", total_ids as u64);
    let mut states: HashMap<(String, String), InstanceInfo> = HashMap::new();
    for (region, ids) in &by_region {
        let Some(inv) = inventories.get(region) else {
            continue;
        };
        for chunk in ids.chunks(crate::adapters::aws::ec2::IDS_PER_CALL) {
            for (id, info) in inv.describe(chunk).await? {
                states.insert((region.clone(), id), info);
            }
            progress.advance(chunk.len() as u64);
        }
    }

    let cutoff = Utc::now()
        - chrono::Duration::from_std(settings.grace_period).unwrap_or(chrono::Duration::MAX);
    for n in &nodes {
        let region = n.region(&settings.default_region).unwrap_or_default();
        let mut row = Row {
            node: n.name.clone(),
            instance_id: n.instance_id.clone(),
            region: Some(region.clone()),
            ec2_state: None,
            last_check_in: n.ohai_time,
            verdict: Verdict::Keep,
            reason: String::new(),
        };
        let Some(id) = n.instance_id.as_ref() else {
            row.region = None;
            row.verdict = Verdict::UnknownProvenance;
            row.reason = "no EC2 instance id recorded; never deleted".into();
            report.rows.push(row);
            continue;
        };
        if !is_instance_id(id) {
            row.verdict = Verdict::UnknownProvenance;
            row.reason = format!("recorded instance id {id:?} is not an EC2 instance id");
            report.rows.push(row);
            continue;
        }
        report.ec2_nodes += 1;
        if let Located::Unparseable(zone) = &n.located {
            row.region = None;
            row.verdict = Verdict::NotChecked;
            row.reason = format!(
                "Availability Zone {zone:?} names no region nodereaper recognises; not asked, never deleted"
            );
            report.rows.push(row);
            continue;
        }
        if !inventories.contains_key(&region) {
            row.verdict = Verdict::NotChecked;
            row.reason = format!("region {region} is not swept (sweep.regions)");
            report.rows.push(row);
            continue;
        }
        let info = states.get(&(region.clone(), id.clone()));
        row.ec2_state = Some(
            info.map(|i| i.state.clone())
                .unwrap_or_else(|| "not-found".into()),
        );
        let gone = info.is_none_or(|i| i.state == "terminated");
        if !gone {
            row.verdict = Verdict::Keep;
            row.reason = "instance exists".into();
        } else if let Some(reason) = reaper
            .protection
            .node_reason(&n.name, Some(&n.protection_view))
        {
            row.verdict = Verdict::Protected;
            row.reason = reason;
        } else if let Some(reason) = info.and_then(|i| reaper.protection.instance_reason(i)) {
            row.verdict = Verdict::Protected;
            row.reason = reason;
        } else if n.ohai_time.is_none_or(|t| t > cutoff) {
            row.verdict = Verdict::TooRecent;
            row.reason = match n.ohai_time {
                Some(_) => format!(
                    "checked in within the grace period ({})",
                    humantime::format_duration(settings.grace_period)
                ),
                None => "no ohai_time recorded: age unknown".into(),
            };
        } else {
            row.verdict = Verdict::Delete;
            row.reason = match info {
                Some(_) => "instance terminated".into(),
                None => "EC2 does not know the instance".into(),
            };
            report.candidates += 1;
        }
        report.rows.push(row);
    }
    metrics::get()
        .sweep_candidates
        .set(report.candidates as i64);

    // Blast-radius caps.
    let share = if report.ec2_nodes == 0 {
        0.0
    } else {
        report.candidates as f64 / report.ec2_nodes as f64
    };
    if !settings.force && report.candidates > 0 {
        if report.candidates > settings.max_candidates {
            report.aborted = Some(format!(
                "{} candidates exceed sweep.max_candidates = {}; nothing deleted (rerun with --force if this is expected)",
                report.candidates, settings.max_candidates
            ));
        } else if share > settings.max_candidate_share {
            report.aborted = Some(format!(
                "{} candidates are {:.1}% of {} EC2-backed nodes, above sweep.max_candidate_share = {:.1}%; nothing deleted (rerun with --force if this is expected)",
                report.candidates,
                share * 100.0,
                report.ec2_nodes,
                settings.max_candidate_share * 100.0
            ));
        }
    }
    if report.aborted.is_some() || !settings.apply {
        return Ok(finish(report, started));
    }

    // Phase two: re-check each candidate against EC2 and Chef, then delete.
    let candidates: Vec<usize> = (0..report.rows.len())
        .filter(|&i| report.rows[i].verdict == Verdict::Delete)
        .collect();
    progress.stage("deleting", candidates.len() as u64);
    for chunk in candidates.chunks(RECHECK_CHUNK) {
        let mut per_region: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for &i in chunk {
            let row = &report.rows[i];
            if let (Some(region), Some(id)) = (&row.region, &row.instance_id) {
                per_region
                    .entry(region.clone())
                    .or_default()
                    .push(id.clone());
            }
        }
        let mut fresh: HashMap<String, InstanceInfo> = HashMap::new();
        for (region, ids) in per_region {
            if let Some(inv) = inventories.get(&region) {
                fresh.extend(inv.describe(&ids).await?);
            }
        }
        for &i in chunk {
            let row = &mut report.rows[i];
            let id = row.instance_id.clone().unwrap_or_default();
            if let Some(info) = fresh.get(&id).filter(|i| i.state != "terminated") {
                row.verdict = Verdict::Skipped;
                row.reason = format!("EC2 now reports the instance {}", info.state);
                metrics::get()
                    .sweep_skipped
                    .with_label_values(&["recheck_ec2"])
                    .inc();
                progress.advance(1);
                continue;
            }
            let request = Request {
                verified_region: row.region.clone(),
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
            match reaper.reap(&request).await {
                Ok(Outcome::Deleted { journal_id, .. }) => {
                    row.verdict = Verdict::Deleted;
                    row.reason = format!("{} (backup {journal_id})", row.reason);
                    report.deleted += 1;
                    metrics::get()
                        .sweep_deleted
                        .with_label_values(&["apply"])
                        .inc();
                }
                Ok(Outcome::AlreadyGone { .. }) => {
                    row.verdict = Verdict::Skipped;
                    row.reason = "already gone".into();
                    metrics::get()
                        .sweep_skipped
                        .with_label_values(&["already_gone"])
                        .inc();
                }
                Ok(Outcome::Changed { reason, .. })
                | Ok(Outcome::Protected { reason, .. })
                | Ok(Outcome::Refused { reason, .. }) => {
                    row.verdict = Verdict::Skipped;
                    row.reason = reason;
                    metrics::get()
                        .sweep_skipped
                        .with_label_values(&["recheck_chef"])
                        .inc();
                }
                Ok(Outcome::WouldDelete { .. }) => {}
                Err(e) => {
                    row.verdict = Verdict::Skipped;
                    row.reason = format!("deletion failed: {e}");
                    metrics::get()
                        .sweep_skipped
                        .with_label_values(&["error"])
                        .inc();
                }
            }
            progress.advance(1);
        }
    }
    Ok(finish(report, started))
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
    let m = metrics::get();
    for (verdict, n) in &report.by_verdict {
        if !matches!(verdict.as_str(), "delete" | "deleted" | "keep" | "skipped") {
            m.sweep_skipped
                .with_label_values(&[verdict])
                .inc_by(*n as u64);
        }
    }
    m.sweep_last_run.set(Utc::now().timestamp() as f64);
    m.sweep_duration.set(started.elapsed().as_secs_f64());
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

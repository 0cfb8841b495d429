//! Chef Automate after real deletions on goiardi, against an in-test double
//! of Automate's ingest API built from chef/automate
//! `api/external/ingest/chef.proto` (`ProcessNodeDelete`: POST
//! `/api/v0/ingest/events/chef/nodedelete`, body `*`; `GetVersion`: GET
//! `/api/v0/ingest/version`) and `api/external/ingest/request/action.proto`
//! (`message Delete`: `node_name`, `organization_name`,
//! `service_hostname`, `node_id`). The double answers 401 without the
//! `api-token` header Automate's gateway requires.
//!
//! For the sweep of missing nodes the double also serves chef/automate's
//! cfgmgmt API (`api/external/cfgmgmt/cfgmgmt.proto`): `GetNodes` (GET
//! `/api/v0/cfgmgmt/nodes`, repeated `filter=status:missing`,
//! `pagination.page` from 1 and `pagination.size`, 1 and 10 when unset as
//! `api/interservice/cfgmgmt/request/parameters.go` defaults them; a JSON
//! array of `cfgmgmt.response.Node` with proto field names, `checkin` an
//! RFC 3339 timestamp) and `GetAttributes` (GET
//! `/api/v0/cfgmgmt/nodes/{node_id}/attribute`: `response.NodeAttribute`,
//! `automatic`/`normal` as stringified JSON, and an empty document for a
//! node it does not hold, as `config-mgmt-service/grpcserver/nodes.go`
//! answers). A `nodedelete` by `node_id` removes the node from the listing.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use nodereaper::act::resolve::Resolver;
use nodereaper::act::{DeletionLimiter, Outcome, Reaper, Request, RequestSource, Target};
use nodereaper::adapters::automate::{AutomateSettings, AutomateTarget};
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::core::error::{error_policy, ErrorDisposition};
use nodereaper::core::verify::Protection;
use nodereaper::ports::ChefApi;
use serde_json::Value;

const TOKEN: &str = "automate-token-for-tests";

#[derive(Clone, Default)]
struct Automate {
    deletes: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    /// cfgmgmt's nodes: the listing (`Node`) and the attributes
    /// (`NodeAttribute`), by id.
    nodes: Arc<Mutex<Vec<(Value, Value)>>>,
    /// Listing pages served.
    pages: Arc<Mutex<u32>>,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("api-token").and_then(|v| v.to_str().ok()) == Some(TOKEN)
}

async fn list_nodes(
    State(a): State<Automate>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> (StatusCode, String) {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    let (mut page, mut size, mut filters) = (1usize, 10usize, Vec::new());
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "pagination.page" => page = v.parse().unwrap_or(1).max(1),
            "pagination.size" => size = v.parse().unwrap_or(10).max(1),
            "filter" => filters.push(v.to_string()),
            _ => {}
        }
    }
    *a.pages.lock().expect("lock") += 1;
    let nodes = a.nodes.lock().expect("lock");
    let matching: Vec<&Value> = nodes
        .iter()
        .map(|(n, _)| n)
        .filter(|n| {
            filters.iter().all(|f| match f.split_once(':') {
                Some(("status", s)) => n["status"] == s,
                _ => false,
            })
        })
        .collect();
    let page: Vec<&Value> = matching
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    (StatusCode::OK, serde_json::to_string(&page).expect("json"))
}

async fn node_attribute(
    State(a): State<Automate>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (StatusCode, String) {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    let nodes = a.nodes.lock().expect("lock");
    let found = nodes.iter().find(|(n, _)| n["id"] == id.as_str());
    let body = match found {
        Some((_, attrs)) => attrs.clone(),
        // EmitDefaults: every field, empty.
        None => {
            serde_json::json!({"node_id": "", "name": "", "run_list": [], "chef_environment": "",
            "normal": "", "default": "", "override": "", "automatic": ""})
        }
    };
    (StatusCode::OK, body.to_string())
}

async fn nodedelete(State(a): State<Automate>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if headers.get("api-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return StatusCode::UNAUTHORIZED;
    }
    let code = a.answers.lock().expect("lock").pop_front().unwrap_or(200);
    if code == 200 {
        if let Some(id) = body.get("node_id").and_then(Value::as_str) {
            a.nodes.lock().expect("lock").retain(|(n, _)| n["id"] != id);
        }
        a.deletes.lock().expect("lock").push(body);
    }
    StatusCode::from_u16(code).expect("status")
}

async fn version(headers: HeaderMap) -> (StatusCode, String) {
    if headers.get("api-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    (
        StatusCode::OK,
        r#"{"name":"ingest-service","version":"test"}"#.into(),
    )
}

async fn automate(answers: &[u16]) -> (Automate, String) {
    let a = Automate::default();
    a.answers.lock().expect("lock").extend(answers);
    let app = axum::Router::new()
        .route(
            "/api/v0/ingest/events/chef/nodedelete",
            axum::routing::post(nodedelete),
        )
        .route("/api/v0/ingest/version", axum::routing::get(version))
        .route("/api/v0/cfgmgmt/nodes", axum::routing::get(list_nodes))
        .route(
            "/api/v0/cfgmgmt/nodes/:id/attribute",
            axum::routing::get(node_attribute),
        )
        .with_state(a.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (a, format!("http://{addr}"))
}

fn target(url: &str, token: &str) -> AutomateTarget {
    AutomateTarget::new(AutomateSettings {
        url: url.into(),
        token: token.into(),
        organization: "acme".into(),
        service_hostname: "chef.example.com".into(),
        timeout: Duration::from_secs(5),
        attempts: 2,
        backoff: Duration::from_millis(20),
        allow_plain_http: true,
    })
    .expect("automate")
}

fn reaper(chef: Arc<dyn ChefApi>, dir: &std::path::Path, automate: AutomateTarget) -> Reaper {
    Reaper {
        chef,
        journal: Arc::new(LocalJournal::open(dir).expect("journal")),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: vec![Arc::new(automate)],
    }
}

fn request(node: &str) -> Request {
    Request {
        target: Target::Node(node.to_string()),
        source: RequestSource::Deregister,
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: None,
        verified_region: None,
        group: None,
    }
}

async fn registered(guid: Option<&str>) -> (Arc<dyn ChefApi>, String) {
    let chef: Arc<dyn ChefApi> = Arc::new(admin());
    let name = unique("automate");
    let mut node = node_json(&name, Some(&fake_instance_id()), Duration::from_secs(7200));
    if let Some(g) = guid {
        node["automatic"]["chef_guid"] = Value::from(g);
    }
    chef.create_node(&node).await.expect("node");
    chef.create_client(&name, None, false)
        .await
        .expect("client");
    (chef, name)
}

#[tokio::test]
async fn deletes_by_triple_and_by_chef_guid() {
    let (a, url) = automate(&[]).await;
    for guid in [None, Some("0f7c3a0e-1b7d-4c55-9c7e-2a4a8f0e9b11")] {
        let (chef, name) = registered(guid).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = reaper(chef, dir.path(), target(&url, TOKEN))
            .reap(&request(&name))
            .await
            .expect("reap");
        assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
        let got = a
            .deletes
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a delete");
        assert_eq!(got["node_name"], name.as_str());
        assert_eq!(got["organization_name"], "acme");
        assert_eq!(got["service_hostname"], "chef.example.com");
        assert_eq!(got.get("node_id").and_then(Value::as_str), guid);
    }
}

#[tokio::test]
async fn rejected_token_holds_and_5xx_retries_then_retries_the_message() {
    // A wrong token: 401 from the gateway, held (nodereaper's setup).
    let (a, url) = automate(&[]).await;
    let (chef, name) = registered(None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let err = reaper(chef, dir.path(), target(&url, "wrong"))
        .reap(&request(&name))
        .await
        .expect_err("401");
    assert!(
        matches!(
            error_policy(&err, String::new()),
            ErrorDisposition::Hold { .. }
        ),
        "{err}"
    );
    assert!(a.deletes.lock().expect("lock").is_empty());
    // 403: held too.
    let (_, url) = automate(&[403]).await;
    let (chef, name) = registered(None).await;
    let err = reaper(chef, dir.path(), target(&url, TOKEN))
        .reap(&request(&name))
        .await
        .expect_err("403");
    assert!(
        matches!(
            error_policy(&err, String::new()),
            ErrorDisposition::Hold { .. }
        ),
        "{err}"
    );
    // One 503 is retried within the deletion.
    let (a, url) = automate(&[503]).await;
    let (chef, name) = registered(None).await;
    reaper(chef, dir.path(), target(&url, TOKEN))
        .reap(&request(&name))
        .await
        .expect("retried");
    assert_eq!(a.deletes.lock().expect("lock").len(), 1);
    // 503 on every attempt: the message is retried.
    let (_, url) = automate(&[503, 503]).await;
    let (chef, name) = registered(None).await;
    let err = reaper(chef, dir.path(), target(&url, TOKEN))
        .reap(&request(&name))
        .await
        .expect_err("503");
    assert!(
        matches!(
            error_policy(&err, String::new()),
            ErrorDisposition::Retry { .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn probe_passes_with_the_token_and_fails_without() {
    use nodereaper::ports::estate::EstateTarget;
    let (_, url) = automate(&[]).await;
    assert!(target(&url, TOKEN).probe().await.is_ok());
    assert!(target(&url, "wrong").probe().await.is_err());
}

// ---- the sweep of Automate's missing nodes (EC2 on moto) ----

use nodereaper::adapters::aws::fleet::AwsFleet;
use nodereaper::jobs::automate_sweep::{
    sweep_automate, AutomateSweep, AutomateSweepSettings, SOURCE,
};
use nodereaper::jobs::sweep::{Report, Silent, SweepSettings, Verdict};
use nodereaper::ports::Journal;

/// moto's own account.
const OWN_ACCOUNT: &str = "123456789012";

/// A missing node in the double: its listing (`checkin` `age` ago) and its
/// attributes recording `instance` in `account`, zone us-east-1a (none
/// recorded when `instance` is `None`).
fn missing_node(
    a: &Automate,
    name: &str,
    instance: Option<&str>,
    account: &str,
    age: Duration,
) -> String {
    let id = format!(
        "{:08x}-1b7d-4c55-9c7e-{:012x}",
        rand::random::<u32>(),
        rand::random::<u64>() & 0xffff_ffff_ffff
    );
    let checkin = chrono::Utc::now() - chrono::Duration::from_std(age).expect("age");
    let listing = serde_json::json!({
        "id": id, "name": name, "fqdn": format!("{name}.example.com"), "organization": "",
        "status": "missing", "source_fqdn": "localhost",
        "checkin": checkin.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "policy_group": "", "environment": "_default",
    });
    let automatic = match instance {
        Some(i) => serde_json::json!({"ec2": {"instance_id": i, "account_id": account,
            "placement_availability_zone": "us-east-1a"}, "ipaddress": "10.0.0.7"}),
        None => serde_json::json!({"ipaddress": "10.0.0.8"}),
    };
    let attrs = serde_json::json!({
        "node_id": id, "name": name, "run_list": ["recipe[base]"], "chef_environment": "_default",
        "normal": "{}", "default": "{}", "override": "{}", "automatic": automatic.to_string(),
    });
    a.nodes.lock().expect("lock").push((listing, attrs));
    id
}

fn sweep_settings(
    apply: bool,
    max_candidates: usize,
    max_deletions: usize,
) -> AutomateSweepSettings {
    AutomateSweepSettings {
        sweep: SweepSettings {
            grace_period: Duration::from_secs(3600),
            max_candidates,
            max_candidate_share: 1.0,
            force: false,
            apply,
            instance_id_attribute: vec!["ec2".into(), "instance_id".into()],
            region_attribute: vec!["ec2".into(), "placement_availability_zone".into()],
            regions: vec!["us-east-1".into()],
        },
        max_deletions,
        automate_url: "http://automate.test".into(),
        // Small pages: the listing is paged to its end.
        page_size: 2,
    }
}

fn fleet() -> AwsFleet {
    let dir = tempfile::tempdir().expect("tempdir");
    AwsFleet::new(&daemon_config(&[], dir.path()).aws).states_only()
}

async fn run_sweep(url: &str, journal: &dyn Journal, settings: &AutomateSweepSettings) -> Report {
    let automate = target(url, TOKEN);
    let fleet = fleet();
    let protection = Protection::default();
    let limiter = DeletionLimiter::new(0);
    let with = AutomateSweep {
        automate: &automate,
        fleet: &fleet,
        journal,
        protection: &protection,
        limiter: &limiter,
    };
    sweep_automate(&with, settings, &Silent)
        .await
        .expect("sweep")
}

fn verdict_of(report: &Report, name: &str) -> Verdict {
    report
        .rows
        .iter()
        .find(|r| r.node == name)
        .unwrap_or_else(|| panic!("no row for {name}: {report:#?}"))
        .verdict
}

fn listed_ids(a: &Automate) -> Vec<String> {
    a.nodes
        .lock()
        .expect("lock")
        .iter()
        .map(|(n, _)| n["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn sweep_deletes_only_missing_nodes_whose_instances_are_gone() {
    let sdk = aws().await;
    let ids = run_instances_with(&sdk, 3).await;
    terminate_with(&sdk, &ids[..1]).await;
    let (a, url) = automate(&[]).await;
    let old = Duration::from_secs(3 * 3600);
    let terminated = missing_node(&a, "terminated", Some(&ids[0]), OWN_ACCOUNT, old);
    let unknown = missing_node(
        &a,
        "unknown-to-ec2",
        Some(&fake_instance_id()),
        OWN_ACCOUNT,
        old,
    );
    let running = missing_node(&a, "still-running", Some(&ids[1]), OWN_ACCOUNT, old);
    let no_instance = missing_node(&a, "no-instance", None, OWN_ACCOUNT, old);
    let foreign = missing_node(
        &a,
        "other-account",
        Some(&fake_instance_id()),
        "999999999999",
        old,
    );
    let recent = missing_node(
        &a,
        "recent",
        Some(&fake_instance_id()),
        OWN_ACCOUNT,
        Duration::from_secs(300),
    );
    // An active node is not listed by status:missing, whatever its instance.
    let active = missing_node(&a, "active", Some(&fake_instance_id()), OWN_ACCOUNT, old);
    a.nodes.lock().expect("lock").last_mut().expect("node").0["status"] = "success".into();
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = LocalJournal::open(dir.path()).expect("journal");

    // Dry run by default: nothing deleted, nothing journalled.
    let report = run_sweep(&url, &journal, &sweep_settings(false, 100, 100)).await;
    assert_eq!(report.nodes, 6, "{report:#?}");
    assert_eq!(verdict_of(&report, "terminated"), Verdict::Delete);
    assert_eq!(verdict_of(&report, "unknown-to-ec2"), Verdict::Delete);
    assert_eq!(report.deleted, 0);
    assert_eq!(listed_ids(&a).len(), 7);
    assert!(journal.entries().await.expect("entries").is_empty());
    assert!(
        *a.pages.lock().expect("lock") >= 4,
        "paged to the end in pages of 2"
    );

    let report = run_sweep(&url, &journal, &sweep_settings(true, 100, 100)).await;
    assert_eq!(report.deleted, 2, "{report:#?}");
    assert_eq!(verdict_of(&report, "terminated"), Verdict::Deleted);
    assert_eq!(verdict_of(&report, "unknown-to-ec2"), Verdict::Deleted);
    // The hostile twins: kept, and still in Automate.
    assert_eq!(verdict_of(&report, "still-running"), Verdict::Keep);
    assert_eq!(
        verdict_of(&report, "no-instance"),
        Verdict::UnknownProvenance
    );
    assert_eq!(verdict_of(&report, "other-account"), Verdict::NotChecked);
    assert_eq!(verdict_of(&report, "recent"), Verdict::TooRecent);
    let left = listed_ids(&a);
    for kept in [&running, &no_instance, &foreign, &recent, &active] {
        assert!(left.contains(kept), "{kept} must stay in Automate");
    }
    for gone in [&terminated, &unknown] {
        assert!(!left.contains(gone), "{gone} must be deleted");
    }
    let deleted: Vec<Value> = a.deletes.lock().expect("lock").clone();
    assert_eq!(deleted.len(), 2);
    assert!(deleted
        .iter()
        .all(|d| d.get("node_name").is_none() && d["node_id"].is_string()));
    // Journalled: what was deleted, with the instance.
    let entries = journal.entries().await.expect("entries");
    assert_eq!(entries.len(), 2);
    let e = entries
        .iter()
        .find(|e| e.node_name == "terminated")
        .expect("entry");
    assert_eq!(e.source, SOURCE);
    assert_eq!(e.instance_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(e.estate[0].target, "automate");
    assert_eq!(e.estate[0].data["node_id"], terminated.as_str());
    assert!(
        e.notes.iter().any(|n| n.contains("cannot restore")),
        "{:?}",
        e.notes
    );
}

#[tokio::test]
async fn sweep_over_the_caps_deletes_nothing_and_max_deletions_stops_early() {
    let (a, url) = automate(&[]).await;
    let old = Duration::from_secs(3 * 3600);
    for i in 0..3 {
        missing_node(
            &a,
            &format!("gone-{i}"),
            Some(&fake_instance_id()),
            OWN_ACCOUNT,
            old,
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = LocalJournal::open(dir.path()).expect("journal");
    // 3 candidates, at most 2: the whole run is refused.
    let report = run_sweep(&url, &journal, &sweep_settings(true, 2, 100)).await;
    assert!(report.aborted.is_some(), "{report:#?}");
    assert_eq!(report.deleted, 0);
    assert_eq!(listed_ids(&a).len(), 3);
    assert!(a.deletes.lock().expect("lock").is_empty());
    assert!(journal.entries().await.expect("entries").is_empty());
    // Within the caps, at most one deletion per run.
    let report = run_sweep(&url, &journal, &sweep_settings(true, 3, 1)).await;
    assert!(report.aborted.is_none(), "{report:#?}");
    assert_eq!(report.deleted, 1);
    assert_eq!(listed_ids(&a).len(), 2);
    assert_eq!(journal.entries().await.expect("entries").len(), 1);
}

#[tokio::test]
async fn restore_of_an_automate_sweep_entry_says_automate_cannot_restore() {
    let (a, url) = automate(&[]).await;
    missing_node(
        &a,
        "gone-restore",
        Some(&fake_instance_id()),
        OWN_ACCOUNT,
        Duration::from_secs(3 * 3600),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = LocalJournal::open(dir.path()).expect("journal");
    let report = run_sweep(&url, &journal, &sweep_settings(true, 100, 100)).await;
    assert_eq!(report.deleted, 1, "{report:#?}");
    let regs = nodereaper::jobs::restore::select(
        &journal,
        &nodereaper::core::journal::EntryFilter::default(),
    )
    .await
    .expect("select");
    assert_eq!(regs.len(), 1);
    // `nodereaper restore` refuses it with the reason, touching no Chef server.
    assert_eq!(
        nodereaper::jobs::automate_sweep::unrestorable(&regs[0]),
        Some(nodereaper::jobs::automate_sweep::NO_RESTORE)
    );
    // A Chef registration is not refused.
    let mut chef_reg = regs[0].clone();
    chef_reg.node = Some(serde_json::json!({"name": "gone-restore"}));
    assert_eq!(
        nodereaper::jobs::automate_sweep::unrestorable(&chef_reg),
        None
    );
}

#[tokio::test]
async fn doctor_lists_one_missing_node_and_reports_a_refused_token() {
    let (a, url) = automate(&[]).await;
    missing_node(
        &a,
        "doctor-node",
        None,
        OWN_ACCOUNT,
        Duration::from_secs(7200),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = daemon_config(&[], dir.path());
    let token = dir.path().join("token");
    cfg.automate.url = Some(url);
    cfg.automate.token_file = Some(token.clone());
    cfg.automate.allow_plain_http = true;
    for (written, passes) in [(TOKEN, true), ("wrong", false)] {
        std::fs::write(&token, written).expect("token");
        let checks = nodereaper::jobs::doctor_estate::checks(&cfg).await;
        let check = checks
            .iter()
            .find(|c| c.name.starts_with("automate sweep"))
            .expect("the sweep check");
        assert!(check.ok, "never fails doctor: {check:?}");
        assert_eq!(check.unknown, !passes, "{check:?}");
        if !passes {
            assert!(check.detail.contains("401"), "{check:?}");
        }
    }
}

/// `nodereaper sweep --automate` and `restore` as an operator runs them,
/// against the double and moto: a report first, `--apply` deletes the gone
/// node only, and `restore` says Automate cannot restore it.
#[tokio::test]
async fn sweep_automate_command_reports_applies_and_restore_refuses() {
    let sdk = aws().await;
    let running = run_instances_with(&sdk, 1).await;
    let (a, url) = automate(&[]).await;
    let old = Duration::from_secs(3 * 3600);
    let gone = missing_node(&a, "cli-gone", Some(&fake_instance_id()), OWN_ACCOUNT, old);
    let alive = missing_node(&a, "cli-alive", Some(&running[0]), OWN_ACCOUNT, old);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token");
    let config = dir.path().join("nodereaper.toml");
    std::fs::write(
        &config,
        format!(
            "[chef]\nserver_url = \"{chef}\"\nallow_plain_http = true\nclient_name = \"admin\"\n\
             client_key = \"{key}\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{moto}\"\n\
             [journal]\ndir = \"{journal}\"\n[automate]\nurl = \"{url}\"\nallow_plain_http = true\n\
             token_file = \"{token}\"\n[sweep]\nmax_candidate_share = 1.0\n",
            chef = stack().chef_url(),
            key = stack().admin_key().display(),
            moto = stack().moto_url(),
            journal = dir.path().join("journal").display(),
            token = dir.path().join("token").display(),
        ),
    )
    .expect("config");
    let cli = |args: &'static [&'static str]| {
        let config = config.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .expect("run nodereaper")
        }
    };
    let report = cli(&["sweep", "--automate", "--output", "json"]).await;
    assert_eq!(report.status.code(), Some(0), "{report:?}");
    let json: Value = serde_json::from_slice(&report.stdout).expect("json report");
    assert_eq!(
        (json["candidates"].as_u64(), json["deleted"].as_u64()),
        (Some(1), Some(0)),
        "{json}"
    );
    assert_eq!(listed_ids(&a).len(), 2, "a report deletes nothing");

    let applied = cli(&["sweep", "--automate", "--apply"]).await;
    let text = String::from_utf8_lossy(&applied.stdout).into_owned();
    assert_eq!(applied.status.code(), Some(0), "{applied:?}");
    assert!(text.contains("1 deleted"), "{text}");
    assert_eq!(listed_ids(&a), vec![alive.clone()], "only {gone} deleted");

    let restore = cli(&["restore", "cli-gone"]).await;
    let text = String::from_utf8_lossy(&restore.stdout).into_owned();
    assert_eq!(restore.status.code(), Some(1), "{restore:?}");
    assert!(text.contains("cannot restore"), "{text}");
}

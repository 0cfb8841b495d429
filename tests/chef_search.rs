//! Search on Chef Infra Server, against the in-test double (tests/chef_double/,
//! whose search module cites the chef/chef-server files it follows): paging
//! with stale rows, the 10,000-row window of OpenSearch and Elasticsearch,
//! slicing by object id, a wrong organization, and `Retry-After`.

mod chef_double;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chef_double::search::{object_id, Backend};
use chef_double::{fill_index, node, Double, TEST_KEY};
use nodereaper::adapters::chef::auth::{SignVersion, SigningKey};
use nodereaper::adapters::chef::client::SearchWindow;
use nodereaper::adapters::chef::{ChefClient, ChefError, ChefSettings, ServerKind};
use nodereaper::config::ProtectConfig;
use nodereaper::core::error::{error_policy, ErrorDisposition};
use nodereaper::jobs::sweep::{sweep, Silent, SweepSettings, Verdict};
use nodereaper::ports::{ChefApi, InstanceInventory};
use nodereaper::testing::{FakeEc2, FakeFleet, FakeInventory, FakeWorld};

/// The fleet's own account: nodes recording no account are asked there.
const OWN_ACCOUNT: &str = "123456789012";
use serde_json::json;

/// The sweep's own keys (src/jobs/sweep.rs `inventory`).
const KEYS: &[(&str, &[&str])] = &[("name", &["name"]), ("id", &["ec2", "instance_id"])];

/// Search requests the double received, with their `start` and `rows`.
fn search_pages(double: &Double) -> Vec<(String, usize, usize)> {
    double
        .requests()
        .into_iter()
        .filter(|(l, _)| l.contains("/search/node"))
        .map(|(l, _)| {
            let param = |k: &str| {
                l.split(['?', '&'])
                    .find_map(|p| p.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let (start, rows) = (param("start"), param("rows"));
            (l, start, rows)
        })
        .collect()
}

fn assert_within_window(double: &Double) {
    let pages = search_pages(double);
    let past: Vec<_> = pages
        .iter()
        .filter(|(_, start, rows)| start + rows > 10_000)
        .collect();
    assert!(past.is_empty(), "requests past the window: {past:?}");
}

#[tokio::test]
async fn search_with_short_pages_mid_way_and_total_of_all_finds_every_node_once() {
    let double = Double::start().await;
    let expected = double.with(|s| fill_index(s, 950));
    let chef = double.client(100);
    // The sweep's call (src/jobs/sweep.rs): a partial search over all nodes.
    let rows = chef
        .partial_search_nodes("*:*", KEYS)
        .await
        .expect("partial search");
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names.len(), expected.len(), "every node exactly once");
    names.sort();
    names.dedup();
    assert_eq!(names, expected);
    let first = rows
        .iter()
        .find(|r| r["name"] == json!("node-00000"))
        .expect("node-00000");
    assert_eq!(first["id"], json!(format!("i-{:017x}", 0)));
    // Short pages were served (not one page was full past the first stale row).
    let pages = search_pages(&double);
    let index_len = double.with(|s| s.index.len());
    assert_eq!(pages.len(), index_len.div_ceil(100), "pages: {pages:?}");
    assert!(
        pages.iter().all(|(l, _, _)| !l.contains("sort=")),
        "no goiardi sort on Chef Infra"
    );
    // The full-object search pages the same way.
    let mut full = chef.search_node_names("*:*").await.expect("search");
    full.sort();
    assert_eq!(full, expected);
    assert_eq!(
        chef.server_info().await.expect("info").kind,
        ServerKind::ChefInfra
    );
}

/// chef/chef-server#3786: the operator raised `max_result_window` and left
/// `track_total_hits` off, so `total` says 10,000 while rows keep coming.
#[tokio::test]
async fn search_total_capped_at_10000_with_a_raised_window_finds_every_node_within_10000() {
    let double = Double::start().await;
    let expected = double.with(|s| {
        s.search = Backend::OpenSearch {
            window: 1_000_000,
            track_total_hits: false,
        };
        fill_index(s, 10_300)
    });
    let chef = double.client(1000);
    let mut names = chef.search_node_names("*:*").await.expect("search");
    assert_eq!(names.len(), expected.len(), "every node exactly once");
    names.sort();
    assert_eq!(names, expected);
    assert_within_window(&double);
}

/// A report-only sweep over `n` nodes on `backend`, every instance running.
async fn sweep_on(backend: Backend, n: usize) -> (Double, nodereaper::jobs::sweep::Report) {
    let double = Double::start().await;
    double.with(|s| {
        s.search = backend;
        fill_index(s, n)
    });
    let chef: Arc<dyn ChefApi> = Arc::new(double.client(1000));
    let dir = tempfile::tempdir().expect("tempdir");
    let inv: Arc<dyn InstanceInventory> = Arc::new(FakeInventory(FakeEc2::Reports {
        state: "running".into(),
        asg_lifecycle_state: None,
        tags: Default::default(),
    }));
    let fleet = FakeFleet::new(OWN_ACCOUNT, &[], FakeWorld::default().lifecycle()).place(
        OWN_ACCOUNT,
        "us-east-1",
        inv,
    );
    let settings = SweepSettings {
        grace_period: Duration::from_secs(3600),
        max_candidates: 100,
        max_candidate_share: 1.0,
        force: false,
        apply: false,
        instance_id_attribute: vec!["ec2".into(), "instance_id".into()],
        region_attribute: vec!["ec2".into(), "placement_availability_zone".into()],
        regions: vec!["us-east-1".into()],
    };
    let report = sweep(
        &chef_double::reaper(chef, dir.path(), &ProtectConfig::default()),
        &fleet,
        &settings,
        &Silent,
    )
    .await
    .expect("sweep");
    (double, report)
}

fn assert_every_node_once(report: &nodereaper::jobs::sweep::Report, n: usize) {
    assert_eq!(
        report.aborted, None,
        "the stale-index guard agreed with GET /nodes"
    );
    assert_eq!(report.nodes, n);
    let mut names: Vec<&str> = report.rows.iter().map(|r| r.node.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "every node exactly once");
    assert!(report.rows.iter().all(|r| r.verdict == Verdict::Keep));
}

#[tokio::test]
async fn sweep_over_12500_nodes_on_opensearch_finds_all_without_leaving_the_window() {
    let (double, report) = sweep_on(Backend::opensearch(), 12_500).await;
    assert_every_node_once(&report, 12_500);
    assert_within_window(&double);
}

#[tokio::test]
async fn sweep_over_12500_nodes_on_elasticsearch_finds_all_without_leaving_the_window() {
    let (double, report) = sweep_on(Backend::elasticsearch(), 12_500).await;
    assert_every_node_once(&report, 12_500);
    assert_within_window(&double);
}

/// 25,000 nodes, stale index rows (every 7th entry) in every slice: each
/// slice pages past its short pages to its own `total`.
#[tokio::test]
async fn sweep_over_25000_nodes_with_stale_rows_in_every_slice_finds_each_once() {
    let (double, report) = sweep_on(Backend::opensearch(), 25_000).await;
    assert_every_node_once(&report, 25_000);
    assert_within_window(&double);
    let sliced: Vec<_> = search_pages(&double)
        .into_iter()
        .filter(|(l, _, _)| l.contains("X_CHEF_id_CHEF_X"))
        .collect();
    assert!(sliced.len() >= 16, "split by object id: {sliced:?}");
    // Stale rows really were in several slices.
    let stale_suffixes: std::collections::BTreeSet<char> = double.with(|s| {
        s.index
            .iter()
            .filter(|n| !s.nodes.contains_key(n.as_str()))
            .filter_map(|n| object_id(n).chars().last())
            .collect()
    });
    assert!(stale_suffixes.len() > 1, "{stale_suffixes:?}");
}

/// A node copying another node's id into an attribute named like the id
/// field shows in two slices; it is reported once.
#[tokio::test]
async fn a_node_matching_two_slices_is_reported_once() {
    let double = Double::start().await;
    double.with(|s| {
        s.search = Backend::opensearch();
        fill_index(s, 10_050);
        let mut hostile = node("hostile", "i-0123456789abcdef0");
        let other = object_id("node-00001");
        let mine = object_id("hostile");
        assert_ne!(
            other.chars().last(),
            mine.chars().last(),
            "pick another node"
        );
        hostile["normal"]["X_CHEF_id_CHEF_X"] = json!(other);
        s.nodes.insert("hostile".into(), hostile);
        s.index.push("hostile".into());
    });
    let chef = double.client(1000);
    let names = chef.search_node_names("*:*").await.expect("search");
    assert_eq!(names.iter().filter(|n| *n == "hostile").count(), 1);
    assert_eq!(names.len(), 10_051);
}

#[tokio::test]
async fn a_query_is_narrowed_not_replaced_when_sliced() {
    let double = Double::start().await;
    double.with(|s| {
        s.search = Backend::elasticsearch();
        fill_index(s, 10_200);
        for i in 0..10_200 {
            if i % 2 == 0 {
                let n = s.nodes.get_mut(&format!("node-{i:05}")).expect("node");
                n["chef_environment"] = json!("prod");
            }
        }
    });
    let chef = double.client(1000);
    // 5,100 prod nodes: under the window, one slice.
    let prod = chef
        .search_node_names("chef_environment:prod")
        .await
        .expect("search");
    assert_eq!(prod.len(), 5_100);
    // 10,200 nodes through an explicit AND: sliced, and still narrowed by it.
    let all = chef
        .search_node_names("chef_type:node AND name:node*")
        .await
        .expect("search");
    assert_eq!(all.len(), 10_200);
    assert_within_window(&double);
}

#[tokio::test]
async fn doctor_probe_reports_the_window_of_each_backend() {
    for (backend, expected) in [
        (Backend::opensearch(), Some(400)),
        (Backend::elasticsearch(), Some(500)),
        (Backend::Solr, None),
        (
            Backend::OpenSearch {
                window: 50_000,
                track_total_hits: false,
            },
            None,
        ),
    ] {
        let double = Double::start().await;
        double.with(|s| {
            s.search = backend;
            fill_index(s, 10);
        });
        let window = double.client(1000).search_window().await.expect("probe");
        match (window, expected) {
            (SearchWindow::Refused { status, total }, Some(want)) => {
                assert_eq!(status, want);
                assert_eq!(total, Some(11));
            }
            (SearchWindow::Served { total }, None) => assert_eq!(total, Some(11)),
            (other, _) => panic!("{backend:?}: {other:?}"),
        }
    }
}

fn client_for(url: &str, timeout: Duration) -> ChefClient {
    ChefClient::new(ChefSettings {
        server_url: url::Url::parse(url).expect("url"),
        client_name: "nodereaper".into(),
        key: SigningKey::from_pem(TEST_KEY).expect("key"),
        sign_version: SignVersion::V1_3,
        timeout,
        ca_bundle: None,
        insecure_skip_tls_verify: false,
        page_size: 1000,
    })
    .expect("client")
}

#[tokio::test]
async fn a_wrong_organization_is_an_error_that_holds_not_already_gone() {
    let double = Double::start().await;
    double.with(|s| fill_index(s, 3));
    let wrong = double
        .url
        .replace("/organizations/acme", "/organizations/acne");
    let chef = client_for(&wrong, Duration::from_secs(10));
    // The lookups a deregistration makes: none may say "absent".
    let node = chef.get_node("node-00001").await;
    assert!(
        matches!(node, Err(ChefError::NoOrganization { .. })),
        "{node:?}"
    );
    let deleted = chef.delete_client("node-00001").await;
    assert!(
        matches!(deleted, Err(ChefError::NoOrganization { .. })),
        "{deleted:?}"
    );
    let listed = chef.list_nodes().await;
    assert!(
        matches!(listed, Err(ChefError::NoOrganization { .. })),
        "{listed:?}"
    );
    let searched = chef.search_node_names("*:*").await;
    let err = searched.expect_err("search");
    assert!(err.to_string().contains("organization"), "{err}");
    assert!(matches!(
        error_policy(&err, err.to_string()),
        ErrorDisposition::Hold { .. }
    ));
    // Nothing was deleted on the real organization.
    assert_eq!(double.with(|s| s.nodes.len()), 3);
    // The right organization: a missing node is absent, as before.
    let right = client_for(&double.url, Duration::from_secs(10));
    assert_eq!(right.get_node("missing").await.expect("get"), None);
}

#[tokio::test]
async fn retry_after_on_503_and_429_is_honoured_and_bounded() {
    let double = Double::start().await;
    double.with(|s| {
        fill_index(s, 2);
        s.fail_next = vec![(503, Some("1".into())), (429, Some("1".into()))];
    });
    let chef = client_for(&double.url, Duration::from_secs(10));
    let started = Instant::now();
    let node = chef
        .get_node("node-00001")
        .await
        .expect("get after waiting");
    assert!(node.is_some());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(double.requests().len(), 3, "two refusals, then the answer");

    // A Retry-After of an hour is waited for at most the request timeout.
    double.with(|s| s.fail_next = vec![(503, Some("3600".into()))]);
    let short = client_for(&double.url, Duration::from_secs(1));
    let started = Instant::now();
    assert!(short.get_node("node-00001").await.expect("get").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Without Retry-After a 503 is an error (the pipeline's backoff retries).
    double.with(|s| s.fail_next = vec![(503, None)]);
    let err = chef.get_node("node-00001").await.expect_err("503");
    assert!(err.to_string().contains("503"), "{err}");
}

/// `nodereaper doctor` as an operator runs it (AWS checks go to the local moto).
async fn doctor(url: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("nodereaper.pem");
    std::fs::write(&key, TEST_KEY).expect("key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let config = dir.path().join("nodereaper.toml");
    std::fs::write(
        &config,
        format!(
            "[chef]\nserver_url = \"{url}\"\nallow_plain_http = true\nclient_name = \"nodereaper\"\nclient_key = \"{}\"\n[journal]\ndir = \"{}\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
            key.display(),
            dir.path().join("journal").display(),
            common::stack().moto_url()
        ),
    )
    .expect("config");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .arg("doctor")
        .output()
        .await
        .expect("run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn doctor_fails_a_wrong_organization_and_reports_the_window() {
    let double = Double::start().await;
    double.with(|s| {
        s.search = Backend::opensearch();
        fill_index(s, 5);
    });
    let wrong = doctor(
        &double
            .url
            .replace("/organizations/acme", "/organizations/acne"),
    )
    .await;
    assert!(
        wrong.contains("FAIL chef organization")
            && wrong.contains("organization 'acne' does not exist"),
        "{wrong}"
    );
    let right = doctor(&double.url).await;
    assert!(
        right.contains("PASS chef organization: GET /nodes lists 5 nodes"),
        "{right}"
    );
    assert!(
        right.contains(
            "PASS chef search window: window of 10,000 rows (a page at row 10,000 answered 400"
        ),
        "{right}"
    );
}

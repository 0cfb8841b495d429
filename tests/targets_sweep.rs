//! `nodereaper sweep` and the daemon's periodic sweep over several Chef
//! targets: two goiardi servers, "a" (this binary's private stack,
//! target/stack-targets_sweep) and "b" (target/stack-targets-sweep-b). A
//! sweep looks at a whole server, so both are this binary's own and its
//! tests run one at a time, each starting from empty servers.

mod chef_double;
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chef_double::Double;
use common::second_server::SecondServer;
use common::*;
use nodereaper::adapters::chef::ChefClient;
use nodereaper::ports::ChefApi;
use serde_json::Value;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn server_b() -> &'static SecondServer {
    static B: OnceLock<SecondServer> = OnceLock::new();
    B.get_or_init(|| SecondServer::start("targets-sweep-b"))
}

/// Both servers, emptied (every node and every client but the admin).
async fn empty_servers() -> (ChefClient, ChefClient) {
    use_private_stack("targets_sweep");
    let (a, b) = (admin(), server_b().admin());
    wipe(&a).await;
    wipe(&b).await;
    (a, b)
}

/// `n` registrations of terminated instances (3 h old: past the grace).
async fn gone(chef: &ChefClient, prefix: &str, n: i32) -> BTreeSet<String> {
    let ids = run_instances(n).await;
    terminate_instances(&ids).await;
    let mut names = BTreeSet::new();
    for id in &ids {
        let name = format!("{prefix}-{id}");
        register(chef, &name, Some(id)).await;
        names.insert(name);
    }
    names
}

/// One registration of a running instance.
async fn alive(chef: &ChefClient, name: &str) -> String {
    let ids = run_instances(1).await;
    register(chef, name, Some(&ids[0])).await;
    name.to_string()
}

async fn existing(chef: &ChefClient, names: &BTreeSet<String>) -> usize {
    let mut n = 0;
    for name in names {
        if chef.get_node(name).await.expect("get").is_some() {
            n += 1;
        }
    }
    n
}

/// Targets a and b, `queue` routed to a; `sweep` lines appended to
/// `[sweep]`.
fn write_config(dir: &Path, queue: &str, sweep: &str) -> PathBuf {
    let path = dir.join("nodereaper.toml");
    let (b_url, b_key) = (&server_b().url, server_b().admin_key.display());
    let text = format!(
        "[chef]\nallow_plain_http = true\nclient_name = \"admin\"\n\
         [[chef.targets]]\nname = \"a\"\nserver_url = \"{a_url}\"\nclient_key = \"{a_key}\"\n\
         [[chef.targets]]\nname = \"b\"\nserver_url = \"{b_url}\"\nclient_key = \"{b_key}\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{moto}\"\n\
         [[queues]]\nurl = \"{queue}\"\ntarget = \"a\"\n[journal]\ndir = \"{journal}\"\n\
         [pipeline]\nwait_time = \"1s\"\n[http]\nlisten = \"off\"\n\
         [sweep]\ngrace_period = \"1h\"\nmax_candidate_share = 1.0\n{sweep}\n",
        a_url = stack().chef_url(),
        a_key = stack().admin_key().display(),
        moto = stack().moto_url(),
        journal = dir.join("journal").display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn nodereaper(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run nodereaper")
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The JSON report's section of `target`.
fn section<'a>(report: &'a Value, target: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .and_then(|s| s.iter().find(|t| t["target"] == target))
        .unwrap_or_else(|| panic!("no section for target {target}: {report:#}"))
}

/// Every target is swept against its own server within its own caps: a's 3
/// candidates exceed `max_candidates = 2`, so a's sweep aborts and deletes
/// nothing, while b's one candidate is deleted (exit 2: a guard stopped a
/// target). Live registrations stay on both. Then `--target a` sweeps a
/// alone, and b's newer candidate is left.
#[tokio::test]
async fn sweep_covers_every_target_each_within_its_own_caps() {
    let _serial = SERIAL.lock().await;
    let (a, b) = empty_servers().await;
    let gone_a = gone(&a, "ga", 3).await;
    let gone_b = gone(&b, "gb", 1).await;
    let live = BTreeSet::from([alive(&a, "live-a").await, alive(&b, "live-b").await]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _dlq) = queue_with_dlq(&unique("targets-sweep"), 3).await;
    let config = write_config(dir.path(), &queue, "max_candidates = 2");

    let out = nodereaper(&config, &["sweep", "--apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text_of(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert!(section(&report, "a")["aborted"].is_string(), "{report:#}");
    assert_eq!(section(&report, "b")["deleted"], 1, "{report:#}");
    assert_eq!(
        existing(&a, &gone_a).await,
        3,
        "a's caps stop a: {report:#}"
    );
    assert_eq!(existing(&b, &gone_b).await, 0, "b's own caps let b go on");
    assert_eq!(existing(&a, &live).await + existing(&b, &live).await, 2);

    let later_b = gone(&b, "gb2", 1).await;
    let config = write_config(dir.path(), &queue, "max_candidates = 10");
    let out = nodereaper(&config, &["sweep", "--apply", "--target", "a"]);
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out));
    assert_eq!(existing(&a, &gone_a).await, 0, "{}", text_of(&out));
    assert_eq!(existing(&b, &later_b).await, 1, "--target a swept b");
    let out = nodereaper(&config, &["sweep", "--target", "c"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text_of(&out).contains("no such Chef target"),
        "{}",
        text_of(&out)
    );
}

/// The daemon's periodic sweep goes over every target (its first run starts
/// with the daemon): the candidates of a and of b are deleted, each from its
/// own server, and the log has one line per target.
#[tokio::test]
async fn periodic_sweep_covers_every_target() {
    let _serial = SERIAL.lock().await;
    let (a, b) = empty_servers().await;
    let gone_a = gone(&a, "pa", 1).await;
    let gone_b = gone(&b, "pb", 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _dlq) = queue_with_dlq(&unique("targets-periodic"), 3).await;
    let config = write_config(
        dir.path(),
        &queue,
        "interval = \"1h\"\napply_in_daemon = true\nmax_candidates = 10",
    );
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
        .spawn()
        .expect("spawn nodereaper run");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while read().matches("periodic sweep done").count() < 2 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nodereaper run exited ({status}):\n{}", read());
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no periodic sweep of both targets:\n{}",
            read()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(existing(&a, &gone_a).await, 0, "{}", read());
    assert_eq!(existing(&b, &gone_b).await, 0, "{}", read());
    for target in ["a", "b"] {
        assert!(
            read().contains(&format!("target_name=\"{target}\""))
                || read().contains(&format!("target_name={target}")),
            "{}",
            read()
        );
    }
}

/// Registers `name` (node, client, ACLs) in one organization of the double,
/// as instance `instance` saves it, and indexes it for search.
fn register_in(org: &Double, name: &str, instance: &str) {
    org.with(|s| {
        chef_double::register(s, name, &[("default", "infinity")]);
        s.nodes
            .insert(name.into(), chef_double::node(name, instance));
        s.index.push(name.into());
    });
}

fn in_org(org: &Double, name: &str) -> bool {
    org.with(|s| s.nodes.contains_key(name) || s.clients.contains_key(name))
}

/// Three targets: goiardi (a) and two organizations of one Chef Infra
/// Server (the double: `east` = org acme, `west` = org beta, same host).
/// east's own cap (`[chef.targets.sweep] max_candidates = 2`) stops east
/// alone: its 3 candidates stay, while a and west, under `[sweep]`'s cap of
/// 10, delete theirs. A node named like one of east's lives in west too
/// (another org's object): west's copy goes, east's stays. Multi-threaded:
/// the double serves while the test waits for the `nodereaper` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_over_three_targets_where_one_targets_caps_stop_only_it() {
    let _serial = SERIAL.lock().await;
    let (a, _b) = empty_servers().await;
    let gone_a = gone(&a, "ta", 1).await;
    let double = Double::start_orgs(&["acme", "beta"]).await;
    let (east, west) = (double.org("acme"), double.org("beta"));
    let ids = run_instances(4).await;
    terminate_instances(&ids).await;
    let east_names: Vec<String> = (0..3).map(|i| format!("web-{}", ids[i])).collect();
    for (name, id) in east_names.iter().zip(&ids) {
        register_in(&east, name, id);
    }
    register_in(&west, &east_names[0], &ids[0]);
    register_in(&west, "worker-west", &ids[3]);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = chef_double::write_config(dir.path(), &east.url).with_file_name("nodereaper.pem");
    let (queue, _dlq) = queue_with_dlq(&unique("targets-three"), 3).await;
    let config = write_config(dir.path(), &queue, "max_candidates = 10");
    let doubles = format!(
        "\n[[chef.targets]]\nname = \"east\"\nserver_url = \"{}\"\nclient_name = \"nodereaper\"\n\
         client_key = \"{k}\"\n[chef.targets.sweep]\nmax_candidates = 2\n\
         [[chef.targets]]\nname = \"west\"\nserver_url = \"{}\"\nclient_name = \"nodereaper\"\n\
         client_key = \"{k}\"\n",
        east.url,
        west.url,
        k = key.display()
    );
    let text = std::fs::read_to_string(&config).expect("config");
    // The targets go in [chef]'s array of tables, before [aws].
    let text = text.replacen("[aws]", &format!("{}\n[aws]", doubles.trim_start()), 1);
    std::fs::write(&config, text).expect("config");

    let out = nodereaper(&config, &["sweep", "--apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text_of(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert!(
        section(&report, "east")["aborted"].is_string(),
        "{report:#}"
    );
    assert_eq!(section(&report, "a")["deleted"], 1, "{report:#}");
    assert_eq!(section(&report, "west")["deleted"], 2, "{report:#}");
    assert_eq!(section(&report, "b")["deleted"], 0, "{report:#}");
    assert_eq!(existing(&a, &gone_a).await, 0, "a's candidate deleted");
    for name in &east_names {
        assert!(in_org(&east, name), "east's caps keep {name} in east");
    }
    assert!(!in_org(&west, &east_names[0]), "west's own copy deleted");
    assert!(!in_org(&west, "worker-west"));
    // Each deletion went to its own org's URL, none across.
    let deletes = |org: &Double| -> Vec<String> {
        org.requests()
            .into_iter()
            .map(|(line, _)| line)
            .filter(|l| l.starts_with("DELETE"))
            .collect()
    };
    assert!(deletes(&east).is_empty(), "{:?}", deletes(&east));
    assert!(
        deletes(&west)
            .iter()
            .all(|l| l.starts_with("DELETE /organizations/beta/")),
        "{:?}",
        deletes(&west)
    );
}

//! `nodereaper sweep` and the daemon's periodic sweep over several Chef
//! targets: two goiardi servers, "a" (this binary's private stack,
//! target/stack-targets_sweep) and "b" (target/stack-targets-sweep-b). A
//! sweep looks at a whole server, so both are this binary's own and its
//! tests run one at a time, each starting from empty servers.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

fn text(out: &Output) -> String {
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
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
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
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(existing(&a, &gone_a).await, 0, "{}", text(&out));
    assert_eq!(existing(&b, &later_b).await, 1, "--target a swept b");
    let out = nodereaper(&config, &["sweep", "--target", "c"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("no such Chef target"), "{}", text(&out));
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

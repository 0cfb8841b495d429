//! Fault soak: SIGKILL the daemon at random moments while it drains a
//! backlog, restart it, repeat; then let a final `--exit-when-idle` run
//! finish. The invariants are checked at the end and the program exits 1 if
//! any is violated:
//!
//! 1. every target node AND client is gone;
//! 2. the control nodes (registered, never named by a message) and their
//!    clients are untouched (node JSON identical to before the soak);
//! 3. queue and dead-letter queue are empty;
//! 4. no delete without a backup: every target has a journal entry holding
//!    its node JSON, no journal entry names a control node, and every line of
//!    the journal index parses (no torn write from a kill);
//! 5. each restarted daemon and the final run exit as expected, and
//!    `nodereaper journal` still reads the journal.
//!
//!     cargo bench --bench kill9_soak
//!
//! Environment: NODEREAPER_BENCH_N (1000 targets), NODEREAPER_BENCH_CONTROLS (50),
//! NODEREAPER_BENCH_KILLS (10), NODEREAPER_BENCH_SEED (random; printed),
//! NODEREAPER_BENCH_MAX_RECEIVE (the queue's maxReceiveCount, default
//! kills + 10: every kill costs each message the daemon holds one receive).
//! The queue's visibility timeout is 5 s so that messages a killed daemon
//! held come back quickly.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{depth, fake_instance_id, unique};
use nodereaper::ports::ChefApi;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::{r3, Daemon, DaemonConfig};

#[tokio::main]
async fn main() {
    let n = support::env_usize("NODEREAPER_BENCH_N", 1000);
    let controls_n = support::env_usize("NODEREAPER_BENCH_CONTROLS", 50);
    let kills = support::env_usize("NODEREAPER_BENCH_KILLS", 10);
    let seed = support::env_usize("NODEREAPER_BENCH_SEED", rand::random::<u32>() as usize) as u64;
    // Every kill costs each message the daemon holds one receive; SQS moves
    // a message to the DLQ once it reaches maxReceiveCount, whoever is to
    // blame. The DLQ can only stay empty if no message can see that many.
    let max_receive = support::env_usize("NODEREAPER_BENCH_MAX_RECEIVE", kills + 10);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    support::fresh_stack();
    let chef = Arc::new(common::admin());
    let work = support::workdir("kill9");
    eprintln!(
        "kill9 soak: {n} targets, {controls_n} controls, {kills} kills, seed {seed}, work dir {}",
        work.display()
    );

    let controls: Vec<(String, Option<String>)> = (0..controls_n)
        .map(|i| (format!("control-{i:02}"), Some(fake_instance_id())))
        .collect();
    support::register_many(&chef, &controls, true, Duration::from_secs(3 * 3600), 16).await;
    let mut control_before = BTreeMap::new();
    for (name, _) in &controls {
        let node = chef
            .get_node(name)
            .await
            .expect("GET node")
            .expect("control node");
        let client = chef
            .get_client(name)
            .await
            .expect("GET client")
            .expect("control client");
        control_before.insert(name.clone(), (node, client));
    }
    let ids: Vec<String> = (0..n).map(|_| fake_instance_id()).collect();
    let targets: Vec<String> = ids.iter().map(|id| format!("n-{id}")).collect();
    let pairs: Vec<(String, Option<String>)> = targets
        .iter()
        .cloned()
        .zip(ids.iter().cloned().map(Some))
        .collect();
    support::register_many(&chef, &pairs, true, Duration::from_secs(3 * 3600), 32).await;
    let (queue, dlq) = support::queue(&unique("kill9"), 5, max_receive as u32).await;
    support::send_terminations(&queue, &ids, 8).await;

    let journal_dir = work.join("journal");
    let config = support::write_config(
        &work,
        &DaemonConfig {
            queue_url: &queue,
            journal_dir: &journal_dir,
            workers: 16,
            wait_time: "1s",
            extra: "",
        },
    );

    let mut violations: Vec<String> = Vec::new();
    let mut rounds = Vec::new();
    for round in 0..kills {
        let delay = Duration::from_secs_f64(rng.gen_range(0.5..4.0));
        let daemon = Daemon::start(
            &["run"],
            &config,
            &work.join(format!("daemon-{round:02}.log")),
        );
        tokio::time::sleep(delay).await;
        let (visible, in_flight) = depth(&queue).await;
        let run = daemon.kill9().await;
        if run.signal != Some(libc::SIGKILL) {
            violations.push(format!(
                "round {round}: daemon was not running when killed (exit {:?})",
                run.exit_code
            ));
        }
        let journalled = support::read_journal_index(&journal_dir).len();
        eprintln!(
            "  kill {:>2}: after {:.2} s (queue {visible} visible + {in_flight} in flight at the kill), {journalled} journal entries so far",
            round + 1,
            delay.as_secs_f64()
        );
        rounds.push(json!({
            "delay_s": r3(delay.as_secs_f64()),
            "visible_at_kill": visible,
            "in_flight_at_kill": in_flight,
            "journal_entries": journalled,
        }));
    }
    let (nodes_before_final, _) = support::survivors(&chef, &targets).await;
    let final_run = Daemon::start(
        &["run", "--exit-when-idle"],
        &config,
        &work.join("daemon-final.log"),
    )
    .wait(Duration::from_secs(900))
    .await;
    if final_run.exit_code != Some(0) {
        violations.push(format!(
            "final run exited {:?} (signal {:?})",
            final_run.exit_code, final_run.signal
        ));
    }

    // 1. targets gone.
    let (nodes_left, clients_left) = support::survivors(&chef, &targets).await;
    if (nodes_left, clients_left) != (0, 0) {
        violations.push(format!(
            "{nodes_left} target nodes and {clients_left} target clients survived"
        ));
    }
    // 2. controls untouched.
    for (name, (node, client)) in &control_before {
        let now_node = chef.get_node(name).await.expect("GET node");
        let now_client = chef.get_client(name).await.expect("GET client");
        if now_node.as_ref() != Some(node) {
            violations.push(format!("control node {name} changed or deleted"));
        }
        if now_client.as_ref() != Some(client) {
            violations.push(format!("control client {name} changed or deleted"));
        }
    }
    // 3. queues empty.
    let (q, d) = (depth(&queue).await, depth(&dlq).await);
    if q != (0, 0) || d != (0, 0) {
        violations.push(format!("queue {q:?} / DLQ {d:?} not empty"));
    }
    // 4. backups.
    let index = std::fs::read_to_string(journal_dir.join("index.jsonl")).unwrap_or_default();
    let mut torn = 0;
    let mut backed_up: HashSet<String> = HashSet::new();
    let mut entries = 0;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            torn += 1;
            continue;
        };
        entries += 1;
        let node = v["node_name"].as_str().unwrap_or_default().to_string();
        let id = v["id"].as_str().unwrap_or_default();
        if journal_dir
            .join("objects")
            .join(format!("{id}.node.json"))
            .exists()
        {
            backed_up.insert(node.clone());
        }
        *per_node.entry(node).or_default() += 1;
    }
    if torn > 0 {
        violations.push(format!("{torn} journal index lines do not parse"));
    }
    // Whatever of a target is gone (node or client) must have its backup.
    let nodes_now: HashSet<String> = chef
        .list_nodes()
        .await
        .expect("GET /nodes")
        .into_iter()
        .collect();
    let clients_now: HashSet<String> = support::list_clients(&chef).await.into_iter().collect();
    let mut half_done = 0;
    let mut untouched = 0;
    for t in &targets {
        match (nodes_now.contains(t), clients_now.contains(t)) {
            (true, true) => untouched += 1,
            (true, false) => half_done += 1,
            _ => {}
        }
    }
    let unbacked = targets
        .iter()
        .filter(|t| !(nodes_now.contains(*t) && clients_now.contains(*t)))
        .filter(|t| !backed_up.contains(*t))
        .count();
    if unbacked > 0 {
        violations.push(format!(
            "{unbacked} targets were (partly) deleted without a node backup in the journal"
        ));
    }
    if untouched + half_done > 0 {
        violations.push(format!(
            "left behind: {untouched} targets with node and client, {half_done} with the node only (client deleted)"
        ));
    }
    let control_names: HashSet<&str> = control_before.keys().map(String::as_str).collect();
    if per_node.keys().any(|k| control_names.contains(k.as_str())) {
        violations.push("a control node appears in the journal".into());
    }
    let duplicates: usize = per_node.values().map(|c| c - 1).sum();
    // 5. the journal command reads what the kills left.
    let journal_cmd = std::process::Command::new(support::nodereaper_bin())
        .args(["journal", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .expect("run nodereaper journal");
    let listed = serde_json::from_slice::<Value>(&journal_cmd.stdout)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len));
    if !journal_cmd.status.success() || listed != Some(entries) {
        violations.push(format!(
            "`nodereaper journal` failed or listed {listed:?} entries instead of {entries}: {}",
            String::from_utf8_lossy(&journal_cmd.stderr)
        ));
    }

    println!();
    println!(
        "kill -9 soak: {n} targets, {controls_n} controls, {kills} SIGKILLs at random 0.5-4 s (seed {seed}), maxReceiveCount {max_receive}"
    );
    println!(
        "  {} targets still registered before the final run; final --exit-when-idle run {:.1} s",
        nodes_before_final,
        final_run.wall.as_secs_f64()
    );
    println!(
        "  journal: {entries} entries for {} targets ({duplicates} re-journalled after a kill)",
        n
    );
    let ok = violations.is_empty();
    if ok {
        println!("  invariant: every target node and client gone, {controls_n} controls untouched, queue and DLQ empty, every deletion backed up: OK");
    } else {
        println!("  INVARIANT VIOLATED:");
        for v in &violations {
            println!("    - {v}");
        }
    }
    support::emit(
        "kill9_soak",
        json!({
            "targets": n,
            "controls": controls_n,
            "kills": kills,
            "seed": seed,
            "max_receive_count": max_receive,
            "left_behind_untouched": untouched,
            "left_behind_node_only": half_done,
            "rounds": rounds,
            "targets_left_before_final_run": nodes_before_final,
            "final_run_wall_s": r3(final_run.wall.as_secs_f64()),
            "journal_entries": entries,
            "rejournalled": duplicates,
            "invariant_ok": ok,
            "violations": violations,
        }),
    );
    if !ok {
        std::process::exit(1);
    }
}

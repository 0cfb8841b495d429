//! The `nodereaper` binary as an operator uses it, against the local stack.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use nodereaper::adapters::journal::{JournalEntry, S3Journal};
use nodereaper::ports::{ChefApi, Journal};

use serde_json::Value;

fn write_config(dir: &Path, queue: Option<&str>, extra: &str) -> PathBuf {
    let path = dir.join("nodereaper.toml");
    let queues = queue
        .map(|q| format!("[[queues]]\nurl = \"{q}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            r#"[chef]
server_url = "{chef}"
allow_plain_http = true
client_name = "admin"
client_key = "{key}"
[aws]
region = "us-east-1"
endpoint_url = "{moto}"
{queues}
[journal]
dir = "{journal}"
[pipeline]
wait_time = "1s"
{extra}
"#,
            chef = stack().chef_url(),
            key = stack().admin_key().display(),
            moto = stack().moto_url(),
            journal = dir.join("journal").display(),
        ),
    )
    .expect("write config");
    path
}

fn nodereaper(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run nodereaper")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn deregister_command_plans_deletes_and_reports_already_gone() {
    let chef = admin();
    let id = fake_instance_id();
    let node = unique("cli");
    register(&chef, &node, Some(&id)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), None, "");

    let plan = nodereaper(
        &config,
        &["deregister", &id, "--dry-run", "--output", "json"],
    );
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(plan["outcome"], "would_delete");
    assert_eq!(plan["plan"]["node_name"], node.as_str());
    assert!(
        chef.get_node(&node).await.expect("get").is_some(),
        "--dry-run deleted"
    );

    let done = nodereaper(&config, &["deregister", &id]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(stdout(&done).contains("deleted"), "{}", stdout(&done));
    assert!(chef.get_node(&node).await.expect("get").is_none());
    assert!(chef.get_client(&node).await.expect("get").is_none());

    let again = nodereaper(&config, &["deregister", &id]);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("already gone"),
        "{}",
        stdout(&again)
    );

    let journal = nodereaper(&config, &["journal", "--instance", &id, "--output", "json"]);
    let entries: Vec<Value> = serde_json::from_slice(&journal.stdout).expect("journal json");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["node_name"], node.as_str());

    let restored = nodereaper(&config, &["restore", &node]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        chef.get_node(&node).await.expect("get").is_some(),
        "restore did not recreate the node"
    );
}

#[test]
fn deregister_refuses_a_malformed_instance_id_before_reading_config() {
    // Hostile input: not an instance id (upper case, wrong length, a search
    // query). Refused by the argument parser, so nothing is resolved, let
    // alone deleted; the config file does not even exist.
    for bad in ["I-0123456789ABCDEF0", "i-0123", "i-*", "name:web-1"] {
        let out = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
            .args([
                "--config",
                "/nonexistent/nodereaper.toml",
                "deregister",
                bad,
            ])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("expected an EC2 instance id") && err.contains("INSTANCE_ID"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn config_errors_name_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[pipeline]\nworkers = 0\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .args(["--config"])
        .arg(&path)
        .args(["deregister", "i-0123456789abcdef0", "--dry-run"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("pipeline.workers") && err.contains("1 to 512"),
        "{err}"
    );

    std::fs::write(&path, "[chef]\nserver_url = 42\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&path)
        .arg("doctor")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("server_url"),
        "{err}"
    );
}

#[test]
fn parse_command_classifies_and_flags_poison() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("parse")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(
                sns_wrap(&asg_terminate_notification("i-0123456789abcdef0", "web")).as_bytes(),
            )
            .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("i-0123456789abcdef0"),
        "{}",
        stdout(&out)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("m.json");
    std::fs::write(
        &file,
        r#"{"Event": "autoscaling:EC2_INSTANCE_TERMINATE", "EC2InstanceId": "nope"}"#,
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("parse")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("EC2InstanceId"), "{}", stdout(&out));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn http_get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test]
async fn daemon_serves_health_and_metrics_and_stops_cleanly_on_sigterm() {
    let (queue, _dlq) = queue_with_dlq(&unique("http"), 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(
        dir.path(),
        Some(&queue),
        &format!("[http]\nlisten = \"127.0.0.1:{port}\""),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "/healthz answers", || async {
        http_get(&format!("{base}/healthz")).await.0 == 200
    })
    .await;
    let (status, body) = http_get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("ok   sqs") && body.contains("ok   chef"),
        "{body}"
    );
    let (status, metrics) = http_get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("nodereaper_messages_in_flight"),
        "{metrics}"
    );

    let started = std::time::Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exit within the shutdown deadline"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
}

#[tokio::test]
async fn readyz_fails_when_chef_is_unreachable() {
    let (queue, _dlq) = queue_with_dlq(&unique("unready"), 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let dead = free_port();
    let config = write_config(
        dir.path(),
        Some(&queue),
        &format!("[http]\nlisten = \"127.0.0.1:{port}\""),
    );
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace(stack().chef_url(), &format!("http://127.0.0.1:{dead}")),
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "/healthz answers", || async {
        http_get(&format!("{base}/healthz")).await.0 == 200
    })
    .await;
    let (status, body) = http_get(&format!("{base}/readyz")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("FAIL chef"), "{body}");
}

#[tokio::test]
async fn doctor_passes_on_a_good_setup_and_names_the_fix_otherwise() {
    let (queue, _dlq) = queue_with_dlq(&unique("doctor"), 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), Some(&queue), "");
    let out = nodereaper(&config, &["doctor"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "aws credentials",
        "DLQ",
        "chef reachable",
        "clock skew",
        "chef search",
        "chef delete permission on nodes",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("PASS") && l.contains(check)),
            "missing {check}:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");

    // A world-readable copy of the key: refused, with the fix.
    let loose = dir.path().join("loose.pem");
    std::fs::copy(stack().admin_key(), &loose).expect("copy");
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace(
            &stack().admin_key().display().to_string(),
            &loose.display().to_string(),
        ),
    )
    .expect("write");
    let out = nodereaper(&config, &["doctor"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL chef key file") && text.contains("chmod 600"),
        "{text}"
    );

    // A queue without a DLQ.
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let bare = sqs
        .create_queue()
        .queue_name(unique("bare"))
        .send()
        .await
        .expect("q")
        .queue_url()
        .expect("url")
        .to_string();
    let config = write_config(dir.path(), Some(&bare), "");
    let out = nodereaper(&config, &["doctor"]);
    let text = stdout(&out);
    assert!(
        text.contains("FAIL queue") && text.contains("dead-letter"),
        "{text}"
    );
}

#[tokio::test]
async fn s3_journal_round_trip_in_moto() {
    let (s3, bucket) = s3_bucket("journal").await;
    let journal = S3Journal::new(s3, bucket, "nodereaper/journal/");
    let entry = JournalEntry::new(
        "event",
        "terminated",
        Some("m-1".into()),
        Some("i-0123456789abcdef0".into()),
        "web-1",
        Some("web-1".into()),
        stack().chef_url(),
        Some(
            serde_json::json!({"name": "web-1", "automatic": {"ec2": {"instance_id": "i-0123456789abcdef0"}}}),
        ),
        Some(serde_json::json!({"name": "web-1", "public_key": "PEM"})),
    );
    journal.record(&entry).await.expect("record");
    let back = journal.entries().await.expect("entries");
    assert_eq!(back, vec![entry]);
}

/// `run --dry-run` with a periodic sweep allowed to delete: the dry run
/// wins on every path, the daemon's sweep included.
#[tokio::test]
async fn dry_run_daemon_sweep_deletes_nothing() {
    let chef = admin();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _dlq) = queue_with_dlq(&unique("drysweep"), 5).await;
    // A sweep candidate: terminated instance, last check-in hours ago.
    let ids = run_instances(1).await;
    terminate_instances(&ids).await;
    let node = unique("sweepable");
    register(&chef, &node, Some(&ids[0])).await;
    let config = write_config(
        dir.path(),
        Some(&queue),
        "[sweep]\ninterval = \"1m\"\napply_in_daemon = true\ngrace_period = \"1m\"\n\
         max_candidates = 100000\nmax_candidate_share = 1.0\n[http]\nlisten = \"off\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--dry-run", "--exit-when-idle"])
        .output()
        .expect("run");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    let sweep_line = log
        .lines()
        .find(|l| l.contains("periodic sweep done"))
        .unwrap_or_else(|| panic!("the periodic sweep did not run:\n{log}"));
    assert!(
        sweep_line.contains("applied=false") && sweep_line.contains("deleted=0"),
        "{sweep_line}"
    );
    assert!(
        chef.get_node(&node).await.expect("get").is_some(),
        "a dry run deleted a node"
    );
}

/// A config naming only a `~/.chef/credentials` profile whose
/// `chef_server_url` is plain http (the local goiardi).
fn write_profile_config(dir: &Path, allow_plain_http: bool) -> PathBuf {
    let credentials = dir.join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "['prod']\nclient_name = \"admin\"\nclient_key = \"{}\"\nchef_server_url = \"{}\"\n",
            stack().admin_key().display(),
            stack().chef_url()
        ),
    )
    .expect("credentials");
    let path = dir.join("nodereaper.toml");
    std::fs::write(
        &path,
        format!(
            "[chef]\nprofile = \"prod\"\ncredentials_file = \"{}\"\nallow_plain_http = {allow_plain_http}\n\
             [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[journal]\ndir = \"{}\"\n",
            credentials.display(),
            stack().moto_url(),
            dir.join("journal").display(),
        ),
    )
    .expect("config");
    path
}

#[tokio::test]
async fn profile_http_url_needs_the_opt_in_and_is_logged_when_used() {
    let chef = admin();
    let node = unique("plainhttp");
    register(&chef, &node, Some(&fake_instance_id())).await;
    let dir = tempfile::tempdir().expect("tempdir");

    // The profile's http:// URL goes through the same guard as chef.server_url.
    let config = write_profile_config(dir.path(), false);
    let out = nodereaper(&config, &["deregister", "--node", &node]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("allow_plain_http") && stderr.contains("profile 'prod'"),
        "{stderr}"
    );
    assert!(
        chef.get_node(&node).await.expect("get").is_some(),
        "deleted over plain http without the opt-in"
    );

    // Happy twin: with the opt-in it works, and says so in a warning.
    let config = write_profile_config(dir.path(), true);
    let out = nodereaper(&config, &["deregister", "--node", &node]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("plain http"),
        "no warning: {stderr}"
    );
    assert!(node_gone(&chef, &node).await, "{stderr}");
}

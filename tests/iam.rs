//! Least privilege, proven on a moto that enforces IAM (issue 21): the
//! policy `nodereaper setup --print-iam-policy` prints for a configuration
//! is attached to a fresh IAM user, and the commands run as that user.
//!
//! This binary has its own stack (target/stack-iam), whose moto
//! `scripts/stack.sh` starts with `NODEREAPER_MOTO_IAM` (moto's
//! `INITIAL_NO_AUTH_ACTION_COUNT`, moto docs/iam.rst). The test first
//! bootstraps through the unauthenticated requests moto allows (moto's
//! `/moto-api/reset-auth` sets how many, so a reused stack starts over):
//! queues, bucket, instances and the IAM users are made with enforcement
//! off; the commands under test run with it on (reset-auth 0); the checks
//! afterwards run with it off again. Tests of this binary take one lock,
//! since enforcement is global to the moto.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

static ENFORCEMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn iam_stack() -> &'static Stack {
    use_private_stack("iam");
    std::env::set_var("NODEREAPER_MOTO_IAM", "1000000");
    stack()
}

/// Enforces IAM on every request from now on (`on`), or on none.
async fn enforce(on: bool) {
    let body = if on { "0" } else { "inf" };
    let resp = reqwest::Client::new()
        .post(format!("{}/moto-api/reset-auth", iam_stack().moto_url()))
        .body(body)
        .send()
        .await
        .expect("moto reset-auth");
    assert!(resp.status().is_success(), "reset-auth: {}", resp.status());
}

/// One IAM query-protocol call, while enforcement is off (moto then does
/// not check the signature, only routes by the credential scope).
async fn iam_call(params: &[(&str, &str)]) -> String {
    iam_call_as("testing", params).await
}

/// [`iam_call`] with access key `key`: moto acts in that key's account (an
/// assumed role's key: the role's account).
async fn iam_call_as(key: &str, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
    form.extend_from_slice(params);
    let resp = reqwest::Client::new()
        .post(format!("{}/", iam_stack().moto_url()))
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .form(&form)
        .send()
        .await
        .expect("iam call");
    let status = resp.status();
    let text = resp.text().await.expect("iam body");
    assert!(status.is_success(), "IAM {params:?}: {status} {text}");
    text
}

fn xml_field(xml: &str, name: &str) -> String {
    let start = xml
        .find(&format!("<{name}>"))
        .unwrap_or_else(|| panic!("{name} in {xml}"))
        + name.len()
        + 2;
    let len = xml[start..].find('<').expect("closing tag");
    xml[start..start + len].to_string()
}

/// A fresh IAM user holding exactly `policy`; its (access key, secret).
async fn user_with(policy: &Value) -> (String, String) {
    let name = unique("nodereaper");
    iam_call(&[("Action", "CreateUser"), ("UserName", &name)]).await;
    iam_call(&[
        ("Action", "PutUserPolicy"),
        ("UserName", &name),
        ("PolicyName", "nodereaper"),
        ("PolicyDocument", &policy.to_string()),
    ])
    .await;
    let key = iam_call(&[("Action", "CreateAccessKey"), ("UserName", &name)]).await;
    (
        xml_field(&key, "AccessKeyId"),
        xml_field(&key, "SecretAccessKey"),
    )
}

/// moto authorises `DeleteMessageBatch` as `sqs:DeleteMessageBatch`, AWS
/// as `sqs:DeleteMessage` (SQS API reference, "batch actions"); and moto
/// matches `GetQueueUrl` (which has no QueueUrl) against resource `*`, AWS
/// against the queue's ARN. moto also authorises Secrets Manager calls
/// against resource `*` (it scopes only SQS, S3 and STS AssumeRole), so the
/// key-store statement's resource becomes `*`. What the test changes in the
/// printed policy, for moto only.
fn with_moto_batch_quirk(policy: &Value) -> Value {
    let mut p = policy.clone();
    let queues = p["Statement"][0]["Resource"].clone();
    if let Some(statements) = p["Statement"].as_array_mut() {
        for s in statements
            .iter_mut()
            .filter(|s| s["Sid"] == "ChefKeySecret")
        {
            s["Resource"] = serde_json::json!("*");
        }
        statements.push(serde_json::json!({
            "Sid": "MotoOnlyBatchDelete", "Effect": "Allow",
            "Action": ["sqs:DeleteMessageBatch"], "Resource": queues,
        }));
        statements.push(serde_json::json!({
            "Sid": "MotoOnlyGetQueueUrl", "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl"], "Resource": "*",
        }));
    }
    p
}

/// `policy` without `action` (the statement stays when other actions remain).
fn without(policy: &Value, action: &str) -> Value {
    let mut p = policy.clone();
    if let Some(statements) = p["Statement"].as_array_mut() {
        for s in statements.iter_mut() {
            if let Some(actions) = s["Action"].as_array_mut() {
                actions.retain(|a| a != action);
            }
        }
        statements.retain(|s| s["Action"].as_array().is_none_or(|a| !a.is_empty()));
    }
    p
}

struct Setup {
    dir: tempfile::TempDir,
    queue: String,
    dlq: String,
    bucket: String,
    prefix: String,
    names: Vec<String>,
}

async fn s3() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws().await)
            .force_path_style(true)
            .build(),
    )
}

/// Arbitrarily named queue + DLQ, a journal bucket, `n` terminated
/// instances registered in goiardi, one termination notification each.
async fn setup(label: &str, n: i32) -> Setup {
    let (queue, dlq) = queue_with_dlq(&unique(label), 3).await;
    let bucket = unique("journal");
    s3().await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let ids = run_instances(n).await;
    terminate_instances(&ids).await;
    let chef = admin();
    let mut names = Vec::new();
    for id in &ids {
        let name = unique(label);
        register(&chef, &name, Some(id)).await;
        send(&queue, &sns_wrap(&asg_terminate_notification(id, "web"))).await;
        names.push(name);
    }
    Setup {
        dir: tempfile::tempdir().expect("tempdir"),
        queue,
        dlq,
        bucket,
        prefix: format!("{label}/journal/"),
        names,
    }
}

impl Setup {
    fn config(&self) -> PathBuf {
        let path = self.dir.path().join("nodereaper.toml");
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
[[queues]]
url = "{queue}"
[journal]
s3_bucket = "{bucket}"
s3_prefix = "{prefix}"
s3_kms_key_id = "arn:aws:kms:us-east-1:123456789012:key/0b7d2b53-4a42-4e4c-9a3e-3c3c0d2d1e11"
[pipeline]
wait_time = "1s"
breaker_cooldown = "2s"
retry_backoff_base = "1s"
retry_backoff_max = "3s"
max_deletions_per_minute = 0
[http]
listen = "off"
"#,
                chef = stack().chef_url(),
                key = stack().admin_key().display(),
                moto = stack().moto_url(),
                queue = self.queue,
                bucket = self.bucket,
                prefix = self.prefix,
            ),
        )
        .expect("write config");
        path
    }

    async fn journal_objects(&self) -> usize {
        let out = s3()
            .await
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .send()
            .await
            .expect("list journal");
        out.contents()
            .iter()
            .filter(|o| o.key().is_some_and(|k| k.ends_with(".json")))
            .count()
    }

    async fn deregistered(&self) -> usize {
        let chef = admin();
        let mut n = 0;
        for name in &self.names {
            if node_gone(&chef, name).await {
                n += 1;
            }
        }
        n
    }
}

fn nodereaper(config: &Path, user: &(String, String)) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodereaper"));
    cmd.arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", &user.0)
        .env("AWS_SECRET_ACCESS_KEY", &user.1)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info");
    cmd
}

/// `nodereaper setup --print-iam-policy` for `config` (enforcement off: it
/// reads the queue's RedrivePolicy with the test's credentials).
fn printed_policy(config: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(config)
        .args(["setup", "--print-iam-policy", "--output", "json"])
        .output()
        .expect("print policy");
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("policy json");
    v["iam_policy"].clone()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` for at most `limit`, then SIGTERM (it is our child).
fn run_for(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nodereaper");
    let pid = child.id().to_string();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(limit);
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    });
    let out = child.wait_with_output().expect("wait nodereaper");
    drop(killer);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_policy_drains_and_a_missing_describe_holds_everything() {
    iam_stack();
    let _lock = ENFORCEMENT.lock().await;
    enforce(false).await;
    let full = setup("reaper-full", 20).await;
    let held = setup("held-queue", 3).await;
    let (full_cfg, held_cfg) = (full.config(), held.config());
    let policy = printed_policy(&full_cfg);
    let printed = policy.to_string();
    for q in [&full.queue, &full.dlq] {
        let name = q.rsplit('/').next().expect("queue name");
        assert!(
            printed.contains(&format!(":123456789012:{name}\"")),
            "{name}: {printed}"
        );
    }
    let user = user_with(&with_moto_batch_quirk(&policy)).await;
    let held_policy = without(
        &with_moto_batch_quirk(&printed_policy(&held_cfg)),
        "ec2:DescribeInstances",
    );
    let held_user = user_with(&held_policy).await;

    enforce(true).await;
    let (full_run, held_run) = std::thread::scope(|s| {
        let full_run = s.spawn(|| {
            let mut cmd = nodereaper(&full_cfg, &user);
            cmd.args(["run", "--exit-when-idle"]);
            run_for(cmd, Duration::from_secs(150))
        });
        let held_run = s.spawn(|| {
            let mut cmd = nodereaper(&held_cfg, &held_user);
            cmd.arg("run");
            run_for(cmd, Duration::from_secs(15))
        });
        (
            full_run.join().expect("full run"),
            held_run.join().expect("held run"),
        )
    });
    let doctor = nodereaper(&full_cfg, &user)
        .arg("doctor")
        .output()
        .expect("doctor");
    let held_doctor = nodereaper(&held_cfg, &held_user)
        .arg("doctor")
        .output()
        .expect("doctor");
    enforce(false).await;

    // Under exactly the printed policy: everything drained.
    assert_eq!(full_run.status.code(), Some(0), "{}", text(&full_run));
    assert_eq!(full.deregistered().await, 20, "{}", text(&full_run));
    assert_eq!(full.journal_objects().await, 20);
    assert_eq!(depth(&full.queue).await, (0, 0));
    assert_eq!(depth(&full.dlq).await, (0, 0));
    assert_eq!(doctor.status.code(), Some(0), "{}", text(&doctor));
    assert!(!text(&doctor).contains("FAIL"), "{}", text(&doctor));

    // Without ec2:DescribeInstances: nothing deleted, nothing dead-lettered,
    // the log and doctor name the action and its statement.
    let log = text(&held_run);
    assert_eq!(held.deregistered().await, 0, "{log}");
    assert_eq!(held.journal_objects().await, 0, "{log}");
    assert_eq!(depth(&held.dlq).await, (0, 0), "{log}");
    let (visible, hidden) = depth(&held.queue).await;
    assert_eq!(visible + hidden, 3, "{log}");
    assert!(log.contains("ec2:DescribeInstances"), "{log}");
    let report = text(&held_doctor);
    assert_ne!(held_doctor.status.code(), Some(0), "{report}");
    assert!(
        report.contains("ec2:DescribeInstances") && report.contains("\"DescribeInstances\""),
        "{report}"
    );
}

// ---------------------------------------------------------------------------
// The one-off commands (sweep --apply, restore, journal prune, doctor) under
// exactly the printed policy, the Chef key read from Secrets Manager and an
// S3 journal with a key prefix; then each action of that policy removed in
// turn.

/// What a one-off command needs: a queue (doctor checks it), a journal
/// bucket + prefix, the Chef key in Secrets Manager, `n` terminated
/// instances registered in goiardi (3 h old, past the sweep's grace).
struct OneOff {
    dir: tempfile::TempDir,
    queue: String,
    bucket: String,
    prefix: String,
    secret: String,
    names: Vec<String>,
}

/// A journal object older than any retention (its id's time is 2020).
const OLD_ENTRY: &str = "20200101T000000.000Z-iam-old.json";

async fn one_off_setup(label: &str, n: i32) -> OneOff {
    let (queue, _dlq) = queue_with_dlq(&unique(label), 3).await;
    let bucket = unique("journal");
    s3().await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    // By ARN: the printed resource for a secret's name ends `-??????`
    // (Secrets Manager's suffix), which moto cannot match (its matcher
    // turns only `*` into a pattern; `?` makes it answer 500).
    let secret = aws_sdk_secretsmanager::Client::new(&aws().await)
        .create_secret()
        .name(unique("nodereaper/chef-key"))
        .secret_string(admin_key_pem())
        .send()
        .await
        .expect("create secret")
        .arn()
        .expect("secret arn")
        .to_string();
    let ids = run_instances(n).await;
    terminate_instances(&ids).await;
    let chef = admin();
    let mut names = Vec::new();
    for id in &ids {
        let name = unique(label);
        register(&chef, &name, Some(id)).await;
        names.push(name);
    }
    OneOff {
        dir: tempfile::tempdir().expect("tempdir"),
        queue,
        bucket,
        prefix: format!("{label}/journal/"),
        secret,
        names,
    }
}

impl OneOff {
    /// The configuration, with the journal under `prefix`.
    fn config(&self, prefix: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("{}.toml", prefix.replace('/', "_")));
        std::fs::write(
            &path,
            format!(
                r#"[chef]
server_url = "{chef}"
allow_plain_http = true
client_name = "admin"
client_key_secret = "{secret}"
[aws]
region = "us-east-1"
endpoint_url = "{moto}"
[[queues]]
url = "{queue}"
[journal]
s3_bucket = "{bucket}"
s3_prefix = "{prefix}"
[http]
listen = "off"
"#,
                chef = stack().chef_url(),
                secret = self.secret,
                moto = stack().moto_url(),
                queue = self.queue,
                bucket = self.bucket,
            ),
        )
        .expect("write config");
        path
    }

    async fn keys(&self) -> Vec<String> {
        let out = s3()
            .await
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .send()
            .await
            .expect("list journal");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    async fn put_old_entry(&self) {
        s3().await
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{OLD_ENTRY}", self.prefix))
            .body(b"{}".to_vec().into())
            .send()
            .await
            .expect("put old entry");
    }

    /// How many of the registered nodes are on the Chef server.
    async fn present(&self) -> usize {
        let chef = admin();
        let mut n = 0;
        for name in &self.names {
            if !node_gone(&chef, name).await {
                n += 1;
            }
        }
        n
    }
}

/// The command that needs an action, for the removal loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `sweep --apply`: without the action, nothing is deleted.
    Sweep,
    /// `doctor` names the action.
    Doctor,
    /// `restore NODE`: without it, the node is not re-created.
    Restore,
    /// `journal prune`: without it, the old entry stays.
    Prune,
}

/// Which command shows each action of the one-off configuration's printed
/// policy missing, or why moto cannot show it (moto scopes resources only
/// for SQS, S3 and STS AssumeRole; these are the calls the one-off
/// commands do not make, or that moto does not implement).
fn stage_of(action: &str) -> Result<Stage, &'static str> {
    Ok(match action {
        "ec2:DescribeInstances" | "s3:PutObject" | "secretsmanager:GetSecretValue" => Stage::Sweep,
        "autoscaling:DescribeAutoScalingInstances" | "sqs:GetQueueAttributes" => Stage::Doctor,
        "s3:GetObject" | "s3:ListBucket" => Stage::Restore,
        "s3:DeleteObject" => Stage::Prune,
        "sqs:ReceiveMessage"
        | "sqs:DeleteMessage"
        | "sqs:ChangeMessageVisibility"
        | "sqs:GetQueueUrl"
        | "sqs:SendMessage" => {
            return Err("the daemon's queue calls: no one-off command makes them")
        }
        "autoscaling:CompleteLifecycleAction" | "autoscaling:RecordLifecycleActionHeartbeat" => {
            return Err("moto does not implement lifecycle hook actions")
        }
        _ => return Err("unknown to this test: decide which command needs it"),
    })
}

/// Every action of `policy`, statement by statement.
fn actions(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// Runs each `(label, command)` at once; their outputs, by label.
fn run_all(cmds: Vec<(String, Command)>) -> Vec<(String, Output)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = cmds
            .into_iter()
            .map(|(label, mut cmd)| s.spawn(move || (label, cmd.output().expect("spawn"))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("command thread"))
            .collect()
    })
}

/// The one-off command of `stage` for `cfg` as `user`.
fn one_off(stage: Stage, cfg: &Path, user: &(String, String), node: &str) -> Command {
    let mut cmd = nodereaper(cfg, user);
    match stage {
        Stage::Sweep => cmd.args(["sweep", "--apply", "--force", "--grace-period", "1h"]),
        Stage::Doctor => cmd.arg("doctor"),
        Stage::Restore => cmd.args(["restore", node]),
        Stage::Prune => cmd.args(["journal", "prune"]),
    };
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_commands_under_the_printed_policy_and_each_action_removed() {
    iam_stack();
    let _lock = ENFORCEMENT.lock().await;
    enforce(false).await;
    let s = one_off_setup("oneoff", 2).await;
    let cfg = s.config(&s.prefix);
    let elsewhere = s.config("elsewhere/");
    let policy = with_moto_batch_quirk(&printed_policy(&cfg));
    let printed = printed_policy(&cfg);
    let printed_text = printed.to_string();
    assert!(
        printed_text.contains(&format!("\"arn:aws:s3:::{}/{}*\"", s.bucket, s.prefix))
            && printed_text.contains(&s.secret),
        "{printed_text}"
    );
    let user = user_with(&policy).await;
    // One user per action of the printed policy, without that action.
    let mut cases: Vec<(String, Stage, (String, String))> = Vec::new();
    let mut not_shown = Vec::new();
    for action in actions(&printed) {
        match stage_of(&action) {
            Ok(stage) => {
                let u = user_with(&without(&policy, &action)).await;
                cases.push((action, stage, u));
            }
            Err(why) => {
                assert!(!why.starts_with("unknown"), "{action}: {why}");
                not_shown.push(action);
            }
        }
    }
    let of = |stage: Stage| -> Vec<(String, Command)> {
        cases
            .iter()
            .filter(|c| c.1 == stage)
            .map(|(a, st, u)| (a.clone(), one_off(*st, &cfg, u, &s.names[0])))
            .collect()
    };

    // 1. Nodes present: each sweep/doctor action removed; then the prefix
    //    outside the policy; then the happy sweep and doctor.
    enforce(true).await;
    let mut denied = run_all(of(Stage::Sweep));
    denied.extend(run_all(of(Stage::Doctor)));
    let mut wrong_prefix = nodereaper(&elsewhere, &user);
    wrong_prefix.arg("doctor");
    let wrong_prefix = wrong_prefix.output().expect("doctor elsewhere");
    enforce(false).await;
    assert_eq!(s.present().await, 2, "a sweep without an action deleted");
    assert!(s.keys().await.is_empty(), "{:?}", s.keys().await);
    enforce(true).await;
    let doctor = one_off(Stage::Doctor, &cfg, &user, "")
        .output()
        .expect("doctor");
    let sweep = one_off(Stage::Sweep, &cfg, &user, "")
        .output()
        .expect("sweep");
    enforce(false).await;
    assert_eq!(doctor.status.code(), Some(0), "{}", text(&doctor));
    assert!(!text(&doctor).contains("FAIL"), "{}", text(&doctor));
    assert_eq!(sweep.status.code(), Some(0), "{}", text(&sweep));
    assert_eq!(s.present().await, 0, "{}", text(&sweep));
    // The sweep covers the whole server (nodes of other runs too).
    let journaled = s.keys().await;
    for name in &s.names {
        assert!(
            journaled.iter().any(|k| k.contains(name.as_str())),
            "{name}: {journaled:?}"
        );
    }
    let report = text(&wrong_prefix);
    assert_ne!(wrong_prefix.status.code(), Some(0), "{report}");
    assert!(report.contains("s3:PutObject"), "{report}");

    // 2. Entries journaled: restore without each action, then with all.
    enforce(true).await;
    denied.extend(run_all(of(Stage::Restore)));
    enforce(false).await;
    assert_eq!(s.present().await, 0, "a restore without an action restored");
    enforce(true).await;
    let restore = one_off(Stage::Restore, &cfg, &user, &s.names[0])
        .output()
        .expect("restore");
    enforce(false).await;
    assert_eq!(restore.status.code(), Some(0), "{}", text(&restore));
    assert_eq!(s.present().await, 1, "{}", text(&restore));

    // 3. An entry past retention: prune without each action, then with all.
    s.put_old_entry().await;
    let old = format!("{}{OLD_ENTRY}", s.prefix);
    enforce(true).await;
    denied.extend(run_all(of(Stage::Prune)));
    enforce(false).await;
    assert!(
        s.keys().await.contains(&old),
        "a prune without an action pruned"
    );
    enforce(true).await;
    let prune = one_off(Stage::Prune, &cfg, &user, "")
        .output()
        .expect("prune");
    enforce(false).await;
    assert_eq!(prune.status.code(), Some(0), "{}", text(&prune));
    let left = s.keys().await;
    assert_eq!(left, journaled, "{}", text(&prune));

    // Each removal failed its command, naming the missing action. Finding:
    // a sweep whose every deletion failed (the backup could not be written)
    // still exits 0, its rows say "skipped ... s3:PutObject".
    for (action, out) in &denied {
        let log = text(out);
        if action != "s3:PutObject" {
            assert_ne!(out.status.code(), Some(0), "{action} removed:\n{log}");
        }
        assert!(log.contains(action.as_str()), "{action} removed:\n{log}");
    }
    assert_eq!(denied.len(), cases.len());
    eprintln!("not shown by the one-off commands: {not_shown:?}");
}

// ---------------------------------------------------------------------------
// The daemon's queue actions removed in turn: each case its own queue with a
// termination and an unreadable message, every daemon at once.

/// The daemon's queue actions this test removes; the ones it cannot show.
const DAEMON_ACTIONS: &[&str] = &[
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:SendMessage",
];

/// `without(policy, action)` for moto: `sqs:DeleteMessage` also authorises
/// `DeleteMessageBatch` on AWS, so its moto-only twin goes with it.
fn without_on_moto(policy: &Value, action: &str) -> Value {
    let p = without(policy, action);
    if action == "sqs:DeleteMessage" {
        without(&p, "sqs:DeleteMessageBatch")
    } else {
        p
    }
}

const UNREADABLE: &str = "not a notification nodereaper can read";

fn has_body(messages: &[aws_sdk_sqs::types::Message], needle: &str) -> bool {
    messages
        .iter()
        .any(|m| m.body().is_some_and(|b| b.contains(needle)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_queue_action_removed_holds_the_messages() {
    iam_stack();
    let _lock = ENFORCEMENT.lock().await;
    enforce(false).await;
    // None: the whole printed policy (the happy twin).
    let mut cases = Vec::new();
    for action in std::iter::once(None).chain(DAEMON_ACTIONS.iter().map(Some)) {
        let s = setup("queue-action", 1).await;
        send(&s.queue, UNREADABLE).await;
        let cfg = s.config();
        let policy = with_moto_batch_quirk(&printed_policy(&cfg));
        let policy = match action {
            Some(a) => without_on_moto(&policy, a),
            None => policy,
        };
        let user = user_with(&policy).await;
        cases.push((action.copied(), s, cfg, user));
    }
    // The daemon without sqs:ReceiveMessage serves /metrics: scraped while
    // it holds.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let scrape = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let url = format!("http://127.0.0.1:{port}/metrics");
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("{url}: {e}"),
        }
    });
    enforce(true).await;
    let runs = run_all_for(
        cases
            .iter()
            .map(|(action, _, cfg, user)| {
                let mut cmd = nodereaper(cfg, user);
                cmd.arg("run");
                if *action == Some("sqs:ReceiveMessage") {
                    cmd.env("NODEREAPER_LISTEN", format!("127.0.0.1:{port}"));
                }
                cmd
            })
            .collect(),
        Duration::from_secs(15),
    );
    enforce(false).await;
    let metrics = scrape.await.expect("scrape");
    assert!(
        metrics.contains(r#"nodereaper_aws_denied_total{action="sqs:ReceiveMessage"}"#),
        "{metrics}"
    );
    for ((action, s, _, _), out) in cases.iter().zip(&runs) {
        let log = text(out);
        let what = action.unwrap_or("nothing");
        let (deleted, journaled) = (s.deregistered().await, s.journal_objects().await);
        // Nothing lost: the termination is done (and journaled) or still on
        // the queue (visible or in flight); the unreadable message is
        // dead-lettered or still on the queue.
        let (visible, hidden) = depth(&s.queue).await;
        let dlq = peek_all(&s.dlq).await;
        let pending = usize::from(!(deleted == 1 && journaled == 1))
            + usize::from(!has_body(&dlq, UNREADABLE));
        assert!(
            (visible + hidden) as usize >= pending,
            "{what} removed: {pending} unsettled, {visible}+{hidden} queued\n{log}"
        );
        match action {
            None => {
                assert_eq!((deleted, journaled), (1, 1), "{log}");
                assert_eq!((visible, hidden), (0, 0), "{log}");
                assert!(has_body(&dlq, UNREADABLE), "{log}");
            }
            Some(a) => {
                assert!(
                    log.contains(a),
                    "{a} removed: the log does not name it\n{log}"
                );
                if matches!(
                    *a,
                    "sqs:GetQueueAttributes" | "sqs:GetQueueUrl" | "sqs:ReceiveMessage"
                ) {
                    assert_eq!(deleted, 0, "{a} removed\n{log}");
                    assert!(dlq.is_empty(), "{a} removed: {dlq:?}\n{log}");
                }
            }
        }
    }
}

/// Runs every command at once for at most `limit` each (then SIGTERM).
fn run_all_for(cmds: Vec<Command>, limit: Duration) -> Vec<Output> {
    std::thread::scope(|s| {
        let handles: Vec<_> = cmds
            .into_iter()
            .map(|cmd| s.spawn(move || run_for(cmd, limit)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("daemon thread"))
            .collect()
    })
}

// ---------------------------------------------------------------------------
// AssumeRole into a second account (moto's 111111111111): the sweep asks
// that account about its nodes through the `[[aws.accounts]]` role.

const OTHER_ACCOUNT: &str = "111111111111";

/// The role `name` in [`OTHER_ACCOUNT`], trusting our account, holding
/// `statement` (what the printed policy's note says each role needs); an
/// SDK configuration acting as it.
async fn other_account_role(name: &str, statement: &Value) -> aws_config::SdkConfig {
    use aws_credential_types::provider::ProvideCredentials;
    let arn = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/{name}");
    let theirs = aws_as(&arn, "us-east-1").await;
    let creds = theirs
        .credentials_provider()
        .expect("credentials")
        .provide_credentials()
        .await
        .expect("assumed credentials");
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]});
    let key = creds.access_key_id();
    iam_call_as(
        key,
        &[
            ("Action", "CreateRole"),
            ("RoleName", name),
            ("AssumeRolePolicyDocument", &trust.to_string()),
        ],
    )
    .await;
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [statement]});
    iam_call_as(
        key,
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", name),
            ("PolicyName", "nodereaper"),
            ("PolicyDocument", &policy.to_string()),
        ],
    )
    .await;
    theirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_asks_a_second_account_through_its_role_and_not_without_assume_role() {
    iam_stack();
    let _lock = ENFORCEMENT.lock().await;
    enforce(false).await;
    let s = one_off_setup("accounts", 1).await;
    let role = unique("nodereaper-verify");
    let role_arn = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/{role}");
    let cfg = s.config(&s.prefix);
    let mut text_cfg = std::fs::read_to_string(&cfg).expect("read config");
    text_cfg.push_str(&format!(
        "[[aws.accounts]]\nid = \"{OTHER_ACCOUNT}\"\nrole_arn = \"{role_arn}\"\n"
    ));
    std::fs::write(&cfg, text_cfg).expect("write config");
    let printed = printed_policy(&cfg);
    let describe = printed["Statement"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["Sid"] == "DescribeInstances"))
        .cloned()
        .expect("DescribeInstances statement");
    let assume = printed["Statement"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["Sid"] == "AssumeAccountRoles"))
        .cloned()
        .expect("AssumeAccountRoles statement");
    assert_eq!(
        assume["Resource"],
        serde_json::json!([role_arn]),
        "{printed}"
    );
    let theirs = other_account_role(&role, &describe).await;
    let ids = run_instances_with(&theirs, 1).await;
    terminate_with(&theirs, &ids).await;
    let node = unique("theirs");
    let mut json = node_json(&node, Some(&ids[0]), Duration::from_secs(3 * 3600));
    json["automatic"]["ec2"]["account_id"] = OTHER_ACCOUNT.into();
    use nodereaper::ports::ChefApi;
    let chef = admin();
    chef.create_node(&json).await.expect("create node");
    chef.create_client(&node, None, false)
        .await
        .expect("create client");
    let policy = with_moto_batch_quirk(&printed);
    let user = user_with(&policy).await;
    let no_assume = user_with(&without(&policy, "sts:AssumeRole")).await;
    // A role of that account without the DescribeInstances statement, in a
    // second configuration: moto authorises the role's calls by the role's
    // own policy.
    let bare = unique("nodereaper-bare");
    other_account_role(
        &bare,
        &serde_json::json!({"Effect": "Allow", "Action": ["sqs:ListQueues"], "Resource": "*"}),
    )
    .await;
    let bare_cfg = s.dir.path().join("bare.toml");
    let bare_text = std::fs::read_to_string(&cfg).expect("read config").replace(
        &role_arn,
        &format!("arn:aws:iam::{OTHER_ACCOUNT}:role/{bare}"),
    );
    std::fs::write(&bare_cfg, bare_text).expect("write config");
    let bare_user = user_with(&with_moto_batch_quirk(&printed_policy(&bare_cfg))).await;

    // Without sts:AssumeRole: the other account's node is not deleted, the
    // output names the action.
    enforce(true).await;
    let denied = one_off(Stage::Sweep, &cfg, &no_assume, "")
        .output()
        .expect("sweep");
    enforce(false).await;
    let log = text(&denied);
    assert!(!node_gone(&chef, &node).await, "{log}");
    assert!(log.contains("sts:AssumeRole"), "{log}");

    // Through the role that lacks ec2:DescribeInstances: nothing deleted,
    // the output names the action.
    enforce(true).await;
    let bare_run = one_off(Stage::Sweep, &bare_cfg, &bare_user, "")
        .output()
        .expect("sweep");
    enforce(false).await;
    let log = text(&bare_run);
    assert!(!node_gone(&chef, &node).await, "{log}");
    assert!(log.contains("ec2:DescribeInstances"), "{log}");

    // The happy twin: exactly the printed policy, asked through the role.
    enforce(true).await;
    let sweep = one_off(Stage::Sweep, &cfg, &user, "")
        .output()
        .expect("sweep");
    enforce(false).await;
    let log = text(&sweep);
    assert_eq!(sweep.status.code(), Some(0), "{log}");
    assert!(node_gone(&chef, &node).await, "{log}");
}

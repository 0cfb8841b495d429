//! Helpers of tests/iam.rs: the IAM-enforcing moto (enforcement switch,
//! users and roles made through moto's IAM API), the printed policy with
//! moto's quirks, the configurations, and running nodereaper as a user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

pub static ENFORCEMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn iam_stack() -> &'static Stack {
    use_private_stack("iam");
    std::env::set_var("NODEREAPER_MOTO_IAM", "1000000");
    stack()
}

/// Enforces IAM on every request from now on (`on`), or on none.
pub async fn enforce(on: bool) {
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
pub async fn iam_call(params: &[(&str, &str)]) -> String {
    iam_call_as("testing", params).await
}

/// [`iam_call`] with access key `key`: moto acts in that key's account (an
/// assumed role's key: the role's account).
pub async fn iam_call_as(key: &str, params: &[(&str, &str)]) -> String {
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

pub fn xml_field(xml: &str, name: &str) -> String {
    let start = xml
        .find(&format!("<{name}>"))
        .unwrap_or_else(|| panic!("{name} in {xml}"))
        + name.len()
        + 2;
    let len = xml[start..].find('<').expect("closing tag");
    xml[start..start + len].to_string()
}

/// A fresh IAM user holding exactly `policy`; its (access key, secret).
pub async fn user_with(policy: &Value) -> (String, String) {
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
/// against the queue's ARN. moto also authorises Secrets Manager and SSM
/// calls against resource `*` (it scopes only SQS, S3 and STS AssumeRole),
/// so the key-store statement's resource becomes `*`. What the test changes in the
/// printed policy, for moto only.
pub fn with_moto_batch_quirk(policy: &Value) -> Value {
    let mut p = policy.clone();
    let queues = p["Statement"][0]["Resource"].clone();
    if let Some(statements) = p["Statement"].as_array_mut() {
        for s in statements
            .iter_mut()
            .filter(|s| s["Sid"] == "ChefKeySecret" || s["Sid"] == "ChefKeyParameter")
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
pub fn without(policy: &Value, action: &str) -> Value {
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

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub queue: String,
    pub dlq: String,
    pub bucket: String,
    pub prefix: String,
    pub names: Vec<String>,
}

pub async fn s3() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws().await)
            .force_path_style(true)
            .build(),
    )
}

/// Arbitrarily named queue + DLQ, a journal bucket, `n` terminated
/// instances registered in goiardi, one termination notification each.
pub async fn setup(label: &str, n: i32) -> Setup {
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
    pub fn config(&self) -> PathBuf {
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

    pub async fn journal_objects(&self) -> usize {
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

    pub async fn deregistered(&self) -> usize {
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

pub fn nodereaper(config: &Path, user: &(String, String)) -> Command {
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
pub fn printed_policy(config: &Path) -> Value {
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

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` for at most `limit`, then SIGTERM (it is our child).
pub fn run_for(mut cmd: Command, limit: Duration) -> Output {
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

// ---------------------------------------------------------------------------
// The one-off commands (sweep --apply, restore, journal prune, doctor) under
// exactly the printed policy, the Chef key read from Secrets Manager and an
// S3 journal with a key prefix; then each action of that policy removed in
// turn.

/// What a one-off command needs: a queue (doctor checks it), a journal
/// bucket + prefix, the Chef key in Secrets Manager, `n` terminated
/// instances registered in goiardi (3 h old, past the sweep's grace).
pub struct OneOff {
    pub dir: tempfile::TempDir,
    pub queue: String,
    pub bucket: String,
    pub prefix: String,
    pub secret: String,
    pub names: Vec<String>,
}

/// A journal object older than any retention (its id's time is 2020).
pub const OLD_ENTRY: &str = "20200101T000000.000Z-iam-old.json";

pub async fn one_off_setup(label: &str, n: i32) -> OneOff {
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
    pub fn config(&self, prefix: &str) -> PathBuf {
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

    pub async fn keys(&self) -> Vec<String> {
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

    pub async fn put_old_entry(&self) {
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
    pub async fn present(&self) -> usize {
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
pub enum Stage {
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
pub fn stage_of(action: &str) -> Result<Stage, &'static str> {
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
pub fn actions(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// Runs each `(label, command)` at once; their outputs, by label.
pub fn run_all(cmds: Vec<(String, Command)>) -> Vec<(String, Output)> {
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
pub fn one_off(stage: Stage, cfg: &Path, user: &(String, String), node: &str) -> Command {
    let mut cmd = nodereaper(cfg, user);
    match stage {
        Stage::Sweep => cmd.args(["sweep", "--apply", "--force", "--grace-period", "1h"]),
        Stage::Doctor => cmd.arg("doctor"),
        Stage::Restore => cmd.args(["restore", node]),
        Stage::Prune => cmd.args(["journal", "prune"]),
    };
    cmd
}

// ---------------------------------------------------------------------------
// The daemon's queue actions removed in turn: each case its own queue with a
// termination and an unreadable message, every daemon at once.

/// The daemon's queue actions this test removes; the ones it cannot show.
pub const DAEMON_ACTIONS: &[&str] = &[
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:SendMessage",
];

/// `without(policy, action)` for moto: `sqs:DeleteMessage` also authorises
/// `DeleteMessageBatch` on AWS, so its moto-only twin goes with it.
pub fn without_on_moto(policy: &Value, action: &str) -> Value {
    let p = without(policy, action);
    if action == "sqs:DeleteMessage" {
        without(&p, "sqs:DeleteMessageBatch")
    } else {
        p
    }
}

pub const UNREADABLE: &str = "not a notification nodereaper can read";

pub fn has_body(messages: &[aws_sdk_sqs::types::Message], needle: &str) -> bool {
    messages
        .iter()
        .any(|m| m.body().is_some_and(|b| b.contains(needle)))
}

/// Runs every command at once for at most `limit` each (then SIGTERM).
pub fn run_all_for(cmds: Vec<Command>, limit: Duration) -> Vec<Output> {
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

pub const OTHER_ACCOUNT: &str = "111111111111";

/// The role `name` in [`OTHER_ACCOUNT`], trusting our account, holding
/// `statement` (what the printed policy's note says each role needs); an
/// SDK configuration acting as it.
pub async fn other_account_role(name: &str, statement: &Value) -> aws_config::SdkConfig {
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

/// One user per action of a printed policy, without that action, and the
/// command that shows it missing; the actions no one-off command shows.
pub struct RemovalCases {
    pub cases: Vec<(String, Stage, (String, String))>,
    pub not_shown: Vec<String>,
}

impl RemovalCases {
    /// `policy` is `printed` with moto's quirks (enforcement off).
    pub async fn new(printed: &Value, policy: &Value) -> Self {
        let (mut cases, mut not_shown) = (Vec::new(), Vec::new());
        for action in actions(printed) {
            match stage_of(&action) {
                Ok(stage) => {
                    let u = user_with(&without(policy, &action)).await;
                    cases.push((action, stage, u));
                }
                Err(why) => {
                    assert!(!why.starts_with("unknown"), "{action}: {why}");
                    not_shown.push(action);
                }
            }
        }
        RemovalCases { cases, not_shown }
    }

    /// The commands of `stage`'s cases for `cfg` (restore: `node`).
    pub fn commands(&self, stage: Stage, cfg: &Path, node: &str) -> Vec<(String, Command)> {
        self.cases
            .iter()
            .filter(|c| c.1 == stage)
            .map(|(a, st, u)| (a.clone(), one_off(*st, cfg, u, node)))
            .collect()
    }
}

/// A Lambda Runtime API for one invocation (the protocol of the Lambda
/// developer guide, "Using the Lambda runtime API"; tests/lambda.rs has the
/// full one): `next` hands out `event` once, the function's answer
/// ("response" | "error" | "init_error", payload) arrives on the receiver.
pub async fn one_shot_runtime(
    event: Value,
) -> (String, tokio::sync::oneshot::Receiver<(String, Value)>) {
    use axum::{
        body::Bytes,
        extract::{Path, State},
        http::{HeaderMap, HeaderValue},
        routing::{get, post},
        Router,
    };
    use std::sync::{Arc, Mutex};
    type Answer = tokio::sync::oneshot::Sender<(String, Value)>;
    type S = (Arc<Mutex<Option<Value>>>, Arc<Mutex<Option<Answer>>>);
    async fn next(State((event, _)): State<S>) -> (HeaderMap, String) {
        let Some(event) = event.lock().ok().and_then(|mut e| e.take()) else {
            std::future::pending::<()>().await;
            unreachable!("pending never ends");
        };
        let mut h = HeaderMap::new();
        let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
        h.insert(
            "Lambda-Runtime-Aws-Request-Id",
            HeaderValue::from_static("req-iam"),
        );
        h.insert("Lambda-Runtime-Deadline-Ms", HeaderValue::from(deadline));
        h.insert(
            "Lambda-Runtime-Invoked-Function-Arn",
            HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:nodereaper"),
        );
        (h, event.to_string())
    }
    fn answer(state: &S, kind: String, body: &[u8]) {
        let value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if let Some(tx) = state.1.lock().ok().and_then(|mut a| a.take()) {
            let _ = tx.send((kind, value));
        }
    }
    async fn result(State(s): State<S>, Path((_, kind)): Path<(String, String)>, body: Bytes) {
        answer(&s, kind, &body);
    }
    async fn init_error(State(s): State<S>, body: Bytes) {
        answer(&s, "init_error".into(), &body);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let state: S = (
        Arc::new(Mutex::new(Some(event))),
        Arc::new(Mutex::new(Some(tx))),
    );
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/:id/:kind", post(result))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("runtime api port");
    let addr = listener.local_addr().expect("runtime api addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// `nodereaper` configured as the Lambda function is (environment only,
/// CloudFormation's variables) for `s`, with the credentials `user`.
pub fn function_env(s: &OneOff, user: &(String, String)) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodereaper"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_FUNCTION_NAME", "nodereaper")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/nodereaper")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", &user.0)
        .env("AWS_SECRET_ACCESS_KEY", &user.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", stack().moto_url())
        .env("NODEREAPER_CHEF_SERVER_URL", stack().chef_url())
        .env("NODEREAPER_CHEF_ALLOW_PLAIN_HTTP", "true")
        .env("NODEREAPER_CHEF_CLIENT_NAME", "admin")
        .env("NODEREAPER_CHEF_CLIENT_KEY_SECRET", &s.secret)
        .env("NODEREAPER_QUEUE_URL", &s.queue)
        .env("NODEREAPER_JOURNAL_S3_BUCKET", &s.bucket)
        .env("NODEREAPER_JOURNAL_S3_PREFIX", &s.prefix)
        .env("RUST_LOG", "info");
    cmd
}

/// Runs the function for one `event` as `user`; its answer and its output.
pub async fn invoke_as(
    s: &OneOff,
    user: &(String, String),
    event: Value,
) -> ((String, Value), Output) {
    let (addr, answer) = one_shot_runtime(event).await;
    let child = function_env(s, user)
        .env("AWS_LAMBDA_RUNTIME_API", &addr)
        .arg("lambda")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the function");
    let answer = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .map(|a| a.unwrap_or_else(|_| ("dropped".into(), Value::Null)))
        .unwrap_or_else(|_| ("timeout".into(), Value::Null));
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    (answer, child.wait_with_output().expect("function output"))
}

//! Shared harness for integration tests: the project's real local stack
//! (goiardi with authentication on, moto in server mode), started once by
//! `scripts/stack.sh up` (idempotent) and described by its env file.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use nodereaper::adapters::chef::auth::{SignVersion, SigningKey};
use nodereaper::adapters::chef::{ChefClient, ChefSettings};
use nodereaper::ports::ChefApi;
use serde_json::{json, Value};

pub mod form_recorder;
pub mod second_server;
pub mod two_targets;

pub struct Stack {
    pub env_file: PathBuf,
    pub vars: HashMap<String, String>,
}

impl Stack {
    pub fn var(&self, k: &str) -> &str {
        self.vars
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{k} missing from {}", self.env_file.display()))
    }
    pub fn chef_url(&self) -> &str {
        self.var("NODEREAPER_CHEF_URL")
    }
    pub fn admin_key(&self) -> PathBuf {
        PathBuf::from(self.var("NODEREAPER_CHEF_ADMIN_KEY"))
    }
    pub fn moto_url(&self) -> &str {
        self.var("NODEREAPER_MOTO_URL")
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_env_file(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

static STACK_NAME: OnceLock<String> = OnceLock::new();

/// Makes this test binary use its own goiardi + moto (under
/// target/stack-NAME) instead of the shared one: for tests that look at the
/// whole Chef server (sweeps) or stop a server. Call before `stack()`.
pub fn use_private_stack(name: &str) {
    let _ = STACK_NAME.set(name.to_string());
    capture_logs();
}

/// Sends nodereaper's logs (debug and up) to the test's captured output,
/// so that a failing test shows what the daemon did. Idempotent.
pub fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("nodereaper=debug"))
        .with_test_writer()
        .try_init();
}

/// The state directory of this binary's stack.
pub fn stack_dir() -> PathBuf {
    match STACK_NAME.get_or_init(|| "shared".into()).as_str() {
        "shared" => repo_root().join("target/stack"),
        name => repo_root().join(format!("target/stack-{name}")),
    }
}

/// Runs `scripts/stack.sh ARGS` and returns the env file path it prints.
pub fn stack_cmd(args: &[&str]) -> PathBuf {
    let out = Command::new(repo_root().join("scripts/stack.sh"))
        .args(args)
        .env("NODEREAPER_STACK_DIR", stack_dir())
        .output()
        .expect("run scripts/stack.sh");
    assert!(
        out.status.success(),
        "scripts/stack.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

/// The running stack (started on first use; the AWS env vars are exported
/// into this process so the SDK talks to moto with dummy credentials).
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let env_file = stack_cmd(&["up"]);
        let vars = read_env_file(&env_file);
        for k in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ] {
            if let Some(v) = vars.get(k) {
                // Tests in one binary share these values; set once, before any SDK use.
                std::env::set_var(k, v);
            }
        }
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        Stack { env_file, vars }
    })
}

/// A unique suffix so tests sharing one goiardi and one moto never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A random, well-formed EC2 instance id.
pub fn fake_instance_id() -> String {
    format!(
        "i-{:017x}",
        rand::random::<u64>() & 0x0fff_ffff_ffff_ffff_u64
    )
}

pub fn chef_as(client_name: &str, key_pem: &str, version: SignVersion) -> ChefClient {
    ChefClient::new(ChefSettings {
        server_url: url::Url::parse(stack().chef_url()).expect("chef url"),
        client_name: client_name.to_string(),
        key: SigningKey::from_pem(key_pem).expect("key"),
        sign_version: version,
        timeout: Duration::from_secs(30),
        ca_bundle: None,
        insecure_skip_tls_verify: false,
        page_size: 1000,
    })
    .expect("chef client")
}

pub fn admin_key_pem() -> String {
    std::fs::read_to_string(stack().admin_key()).expect("admin key")
}

/// The goiardi admin client.
pub fn admin() -> ChefClient {
    chef_as("admin", &admin_key_pem(), SignVersion::V1_3)
}

/// A node JSON as chef-client would save it, with Ohai's EC2 data.
pub fn node_json(name: &str, instance_id: Option<&str>, ohai_age: Duration) -> Value {
    let ohai_time = (chrono::Utc::now() - chrono::Duration::from_std(ohai_age).expect("age"))
        .timestamp() as f64;
    let mut automatic = json!({
        "hostname": name,
        "fqdn": format!("{name}.example.internal"),
        "ohai_time": ohai_time,
        "roles": [],
    });
    if let Some(id) = instance_id {
        automatic["ec2"] = json!({
            "instance_id": id,
            "placement_availability_zone": "us-east-1a",
            "instance_type": "t3.micro",
        });
    }
    json!({
        "name": name,
        "chef_type": "node",
        "json_class": "Chef::Node",
        "chef_environment": "_default",
        "run_list": ["recipe[base]"],
        "normal": {"tags": []},
        "default": {},
        "override": {},
        "automatic": automatic,
    })
}

/// Registers a node and its API client (as chef-client's first run would).
pub async fn register(chef: &ChefClient, name: &str, instance_id: Option<&str>) {
    register_aged(chef, name, instance_id, Duration::from_secs(3 * 3600)).await
}

pub async fn register_aged(
    chef: &ChefClient,
    name: &str,
    instance_id: Option<&str>,
    age: Duration,
) {
    chef.create_node(&node_json(name, instance_id, age))
        .await
        .expect("create node");
    chef.create_client(name, None, false)
        .await
        .expect("create client");
}

/// AWS SDK config pointing at moto.
pub async fn aws() -> aws_config::SdkConfig {
    aws_in("us-east-1").await
}

/// An S3 client for moto (path-style addressing: moto serves no bucket
/// subdomains on 127.0.0.1).
pub async fn s3() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws().await)
            .force_path_style(true)
            .build(),
    )
}

/// A new bucket in moto, named after `prefix`, and the client that made it.
pub async fn s3_bucket(prefix: &str) -> (aws_sdk_s3::Client, String) {
    let s3 = s3().await;
    let bucket = unique(prefix);
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    (s3, bucket)
}

/// AWS SDK config pointing at moto, for `region` (moto keeps every region's
/// resources apart, by the region the request is signed for).
pub async fn aws_in(region: &str) -> aws_config::SdkConfig {
    stack();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(nodereaper::adapters::aws::https_client())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(stack().moto_url())
        .load()
        .await
}

/// AWS SDK config for another account: moto's STS AssumeRole hands out
/// credentials whose resources live in the role's account.
pub async fn aws_as(role_arn: &str, region: &str) -> aws_config::SdkConfig {
    let sts = aws_sdk_sts::Client::new(&aws_in(region).await);
    let creds = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("test")
        .send()
        .await
        .expect("assume role")
        .credentials
        .expect("credentials");
    aws_in(region)
        .await
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    creds.access_key_id(),
                    creds.secret_access_key(),
                    Some(creds.session_token().to_string()),
                    None,
                    "moto-assume-role",
                ),
            ),
        )
        .build()
}

/// Launches `n` instances with `sdk` (its account and region); their ids.
pub async fn run_instances_with(sdk: &aws_config::SdkConfig, n: i32) -> Vec<String> {
    let out = aws_sdk_ec2::Client::new(sdk)
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(n)
        .max_count(n)
        .send()
        .await
        .expect("run instances");
    out.instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

/// Terminates instances with `sdk` (its account and region).
pub async fn terminate_with(sdk: &aws_config::SdkConfig, ids: &[String]) {
    aws_sdk_ec2::Client::new(sdk)
        .terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .expect("terminate");
}

/// The ARN of a queue.
pub async fn queue_arn(url: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    aws_sdk_sqs::Client::new(&aws().await)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&QueueArn).cloned())
        .expect("queue arn")
}

/// A queue with a DLQ (redrive after `max_receive` receives). Returns (url, dlq url).
pub async fn queue_with_dlq(name: &str, max_receive: u32) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create dlq");
    let dlq_url = dlq.queue_url().expect("dlq url").to_string();
    let dlq_arn = queue_arn(&dlq_url).await;
    let q = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "30",
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive.to_string()})
                .to_string(),
        )
        .send()
        .await
        .expect("create queue");
    (q.queue_url().expect("queue url").to_string(), dlq_url)
}

/// Every message body currently visible in a queue (receives and leaves them
/// to reappear after a short visibility timeout).
pub async fn peek_all(url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let mut out = Vec::new();
    for _ in 0..50 {
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(1)
            .message_attribute_names("All")
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        if r.messages().is_empty() {
            break;
        }
        out.extend(r.messages().iter().cloned());
    }
    out
}

/// (visible, in flight) counts.
pub async fn depth(url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let r = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attrs");
    let get = |a: A| {
        r.attributes()
            .and_then(|m| m.get(&a))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        get(A::ApproximateNumberOfMessages),
        get(A::ApproximateNumberOfMessagesNotVisible),
    )
}

pub async fn send(url: &str, body: &str) {
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

/// The classic message: an Auto Scaling EC2_INSTANCE_TERMINATE notification
/// as the ASG service publishes it to SNS (the `Message` of the envelope).
pub fn asg_terminate_notification(instance_id: &str, asg: &str) -> String {
    json!({
        "Progress": 50,
        "AccountId": "123456789012",
        "Description": format!("Terminating EC2 instance: {instance_id}"),
        "RequestId": "b8ba3f3a-7d9d-4bd5-b38a-7e1bd1f6c8a5",
        "EndTime": "2026-11-25T10:00:36.414Z",
        "AutoScalingGroupARN": format!("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/{asg}"),
        "ActivityId": "b8ba3f3a-7d9d-4bd5-b38a-7e1bd1f6c8a5",
        "StartTime": "2026-11-25T09:59:38.264Z",
        "Service": "AWS Auto Scaling",
        "Time": "2026-11-25T10:00:36.414Z",
        "EC2InstanceId": instance_id,
        "StatusCode": "InProgress",
        "StatusMessage": "",
        "Details": {"Subnet ID": "subnet-12345678", "Availability Zone": "us-east-1a"},
        "AutoScalingGroupName": asg,
        "Cause": "At 2026-11-25T09:59:38Z an instance was taken out of service in response to a user health-check.",
        "Event": "autoscaling:EC2_INSTANCE_TERMINATE"
    })
    .to_string()
}

/// A termination lifecycle hook message (group `web-asg`) carrying the
/// hook's `NotificationMetadata`.
pub fn lifecycle_hook_message(instance: &str, metadata: &str) -> String {
    json!({
        "Origin": "AutoScalingGroup",
        "Destination": "EC2",
        "Service": "AWS Auto Scaling",
        "Time": "2026-11-25T10:00:00.000Z",
        "AccountId": "123456789012",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "RequestId": "63f0f8c4-3c4a-4c2f-8b87-9f4f5a0b7e0e",
        "LifecycleActionToken": format!("token-{instance}"),
        "AutoScalingGroupName": "web-asg",
        "LifecycleHookName": "nodereaper-terminate",
        "EC2InstanceId": instance,
        "NotificationMetadata": metadata,
    })
    .to_string()
}

/// The same, inside an SNS envelope as delivered to SQS without raw delivery.
pub fn sns_wrap(message: &str) -> String {
    json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:nodereaper",
        "Subject": "Auto Scaling: termination",
        "Message": message,
        "Timestamp": "2026-11-25T10:00:36.500Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
    .to_string()
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A daemon configuration for the local stack: admin client, the given
/// queues, a private journal, fast retries, no HTTP listener.
pub fn daemon_config(queues: &[&str], journal_dir: &Path) -> nodereaper::config::Config {
    let mut cfg = nodereaper::config::Config::default();
    cfg.chef.server_url = Some(stack().chef_url().to_string());
    // goiardi on 127.0.0.1 speaks plain http.
    cfg.chef.allow_plain_http = true;
    cfg.chef.client_name = Some("admin".into());
    cfg.chef.client_key = Some(stack().admin_key());
    cfg.chef.timeout = Duration::from_secs(5);
    cfg.aws.region = Some("us-east-1".into());
    cfg.aws.endpoint_url = Some(stack().moto_url().to_string());
    cfg.queues = queues
        .iter()
        .map(|u| nodereaper::config::QueueConfig {
            url: u.to_string(),
            region: None,
            dlq_url: None,
            target: None,
        })
        .collect();
    cfg.journal.dir = journal_dir.to_path_buf();
    cfg.pipeline.wait_time = Duration::from_secs(1);
    cfg.pipeline.retry_backoff_base = Duration::from_secs(1);
    cfg.pipeline.retry_backoff_max = Duration::from_secs(3);
    cfg.pipeline.breaker_cooldown = Duration::from_secs(2);
    cfg.pipeline.max_deletions_per_minute = 0;
    cfg.pipeline.shutdown_deadline = Duration::from_secs(10);
    cfg.http.listen = None;
    cfg
}

/// A launch template and a group of `capacity` instances in us-east-1a,
/// both `name`, with group tags `tags` (not propagated).
pub async fn create_asg(name: &str, tags: &[(&str, &str)], capacity: i32) {
    use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
    use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
    let sdk = aws().await;
    let data = RequestLaunchTemplateData::builder()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::T3Micro)
        .build();
    aws_sdk_ec2::Client::new(&sdk)
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data)
        .send()
        .await
        .expect("create launch template");
    let template = LaunchTemplateSpecification::builder()
        .launch_template_name(name)
        .version("$Latest")
        .build();
    let tags = tags.iter().map(|(k, v)| {
        Tag::builder()
            .key(*k)
            .value(*v)
            .resource_id(name)
            .resource_type("auto-scaling-group")
            .propagate_at_launch(false)
            .build()
    });
    aws_sdk_autoscaling::Client::new(&sdk)
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(template)
        .min_size(capacity)
        .max_size(capacity.max(1))
        .desired_capacity(capacity)
        .availability_zones("us-east-1a")
        .set_tags(Some(tags.collect()))
        .send()
        .await
        .expect("create auto scaling group");
}

/// Launches instances in moto EC2 (us-east-1a) and returns their ids.
pub async fn run_instances(n: i32) -> Vec<String> {
    run_instances_with(&aws().await, n).await
}

pub async fn terminate_instances(ids: &[String]) {
    terminate_with(&aws().await, ids).await
}

/// Bytes of a Query-protocol form body, decoded into pairs.
/// Serves `app` on a free port of 127.0.0.1 for the rest of the test; its
/// base URL.
pub async fn serve_local(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A stand-in for the Auto Scaling API that records every call.
///
/// moto 5.2 does not implement CompleteLifecycleAction or
/// RecordLifecycleActionHeartbeat (HTTP 500 NotImplemented), so tests point
/// the lifecycle client here instead: it answers in the Auto Scaling Query
/// protocol exactly as AWS does (XML, the 2011-01-01 namespace) and keeps the
/// decoded form of each request for assertions. With `expired` set it answers
/// like AWS for an unknown/expired token.
pub struct LifecycleRecorder {
    pub url: String,
    pub calls: Calls,
}

/// Every recorded request, as decoded form pairs.
pub type Calls = std::sync::Arc<std::sync::Mutex<Vec<Vec<(String, String)>>>>;

impl LifecycleRecorder {
    pub async fn start(expired: bool) -> Self {
        use axum::{
            body::Bytes, extract::State, http::StatusCode, response::IntoResponse, routing::post,
            Router,
        };
        async fn handle(
            State((calls, expired)): State<(Calls, bool)>,
            body: Bytes,
        ) -> impl IntoResponse {
            let pairs = form_pairs(&body);
            let action = pairs
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let instance = pairs
                .iter()
                .find(|(k, _)| k == "InstanceId")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            calls.lock().expect("lock").push(pairs);
            let xml_header = [("content-type", "text/xml")];
            if expired {
                let body = format!(
                    r#"<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>No active Lifecycle Action found with instance ID {instance}</Message></Error><RequestId>7c6e177f-f082-11e1-ac58-3714bEXAMPLE</RequestId></ErrorResponse>"#
                );
                return (StatusCode::BAD_REQUEST, xml_header, body);
            }
            let body = format!(
                r#"<{action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><{action}Result/><ResponseMetadata><RequestId>7c6e177f-f082-11e1-ac58-3714bEXAMPLE</RequestId></ResponseMetadata></{action}Response>"#
            );
            (StatusCode::OK, xml_header, body)
        }
        let calls: Calls = Default::default();
        let app = Router::new()
            .route("/", post(handle))
            .with_state((calls.clone(), expired));
        Self {
            url: serve_local(app).await,
            calls,
        }
    }

    pub fn calls(&self) -> Vec<Vec<(String, String)>> {
        self.calls.lock().expect("lock").clone()
    }

    pub async fn client(&self) -> aws_sdk_autoscaling::Client {
        let sdk = aws().await;
        aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::config::Builder::from(&sdk)
                .endpoint_url(&self.url)
                .build(),
        )
    }
}

pub fn param<'a>(call: &'a [(String, String)], key: &str) -> Option<&'a str> {
    call.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Builds the pipeline from `cfg`; the lifecycle calls go to `recorder` when given.
pub async fn pipeline(
    cfg: &nodereaper::config::Config,
    recorder: Option<&LifecycleRecorder>,
) -> std::sync::Arc<nodereaper::run::Pipeline> {
    let chef: std::sync::Arc<dyn ChefApi> =
        std::sync::Arc::new(nodereaper::app::chef_client(cfg).expect("chef"));
    let mut p = nodereaper::app::pipeline(cfg, chef)
        .await
        .expect("pipeline");
    if let Some(rec) = recorder {
        // moto 5.2 does not implement CompleteLifecycleAction: lifecycle
        // calls go to the recording endpoint, EC2 stays moto's.
        let lifecycle = std::sync::Arc::new(
            nodereaper::adapters::aws::lifecycle::AsgLifecycle::new(rec.client().await),
        );
        for s in &mut p.sources {
            s.fleet = std::sync::Arc::new(nodereaper::testing::LifecycleOverride {
                inner: s.fleet.clone(),
                lifecycle: lifecycle.clone(),
            });
        }
    }
    std::sync::Arc::new(p)
}

/// Runs until every queue is drained.
pub async fn drain(
    cfg: &nodereaper::config::Config,
    recorder: Option<&LifecycleRecorder>,
) -> nodereaper::run::Summary {
    let p = pipeline(cfg, recorder).await;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::time::timeout(Duration::from_secs(120), p.run(rx, true))
        .await
        .expect("drain within 2 min")
}

/// Neither the node nor the client of `name` is registered any more.
pub async fn node_gone(chef: &nodereaper::adapters::chef::ChefClient, name: &str) -> bool {
    chef.get_node(name).await.expect("get node").is_none()
        && chef.get_client(name).await.expect("get client").is_none()
}

/// Creates an API client whose key pair goiardi generates (as chef-client's
/// registration does); returns the private key PEM.
pub async fn new_client(
    chef: &nodereaper::adapters::chef::ChefClient,
    name: &str,
    admin: bool,
) -> String {
    let resp = chef
        .send(
            reqwest::Method::POST,
            &["clients"],
            &[],
            Some(&json!({"name": name, "admin": admin})),
        )
        .await
        .expect("create client");
    assert!(resp.status.is_success(), "create client: {}", resp.status);
    let body: Value = serde_json::from_slice(&resp.body).expect("json");
    body["private_key"]
        .as_str()
        .expect("goiardi returns the generated private key")
        .to_string()
}

/// The DLQ's messages as (body, `nodereaper-reason` attribute).
pub async fn dead_letters(dlq: &str) -> Vec<(String, String)> {
    peek_all(dlq)
        .await
        .into_iter()
        .map(|m| {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get(nodereaper::adapters::aws::sqs::REASON_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string();
            (m.body().unwrap_or_default().to_string(), reason)
        })
        .collect()
}

/// Removes every node and every non-built-in client.
pub async fn wipe(chef: &ChefClient) {
    for n in chef.list_nodes().await.expect("list") {
        chef.delete_node(&n).await.expect("delete node");
    }
    let resp = chef
        .send(reqwest::Method::GET, &["clients"], &[], None)
        .await
        .expect("clients");
    let clients: HashMap<String, Value> = serde_json::from_slice(&resp.body).expect("json");
    for c in clients
        .keys()
        .filter(|c| !["admin", "chef-validator", "chef-webui"].contains(&c.as_str()))
    {
        chef.delete_client(c).await.expect("delete client");
    }
}

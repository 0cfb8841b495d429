//! The deployment artefacts under packaging/: the CloudFormation template
//! (cfn-lint, and a stack created in moto's CloudFormation), the Prometheus
//! alerting rules (promtool) and the Grafana dashboard. The linters are
//! installed by scripts/ops-tools.sh (cfn-lint from PyPI in the moto venv,
//! promtool from Debian's `prometheus` package).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

const TEMPLATE: &str = "packaging/cloudformation/nodereaper.yaml";

/// Paths of the tools, from `scripts/ops-tools.sh install` (once per binary).
fn tools() -> &'static HashMap<String, String> {
    static TOOLS: OnceLock<HashMap<String, String>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/ops-tools.sh"))
            .arg("install")
            .output()
            .expect("run scripts/ops-tools.sh");
        assert!(
            out.status.success(),
            "scripts/ops-tools.sh install failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn tool(name: &str) -> PathBuf {
    PathBuf::from(
        tools()
            .get(name)
            .unwrap_or_else(|| panic!("ops-tools.sh printed no {name}")),
    )
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let (ok, text) = run(Command::new(tool("CFN_LINT"))
        .arg(repo_root().join(TEMPLATE))
        .current_dir(repo_root()));
    assert!(ok, "cfn-lint found problems:\n{text}");
    assert!(text.trim().is_empty(), "cfn-lint printed:\n{text}");
}

#[test]
fn cfn_lint_catches_a_broken_template() {
    // The lint step can fail: a dangling reference is reported.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = std::fs::read_to_string(repo_root().join(TEMPLATE))
        .expect("template")
        .replace("!GetAtt DeadLetterQueue.Arn", "!GetAtt DeadLetterQ.Arn");
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, broken).expect("write");
    let (ok, text) = run(Command::new(tool("CFN_LINT")).arg(&path));
    assert!(!ok && text.contains("DeadLetterQ"), "{text}");
}

/// Creates the template as a stack in moto (scripts/cfn-moto.py, boto3 from
/// the moto venv) and returns its description.
fn create_stack(name: &str, params: &[(&str, &str)]) -> Value {
    let s = stack();
    let python = tool("CFN_LINT").parent().expect("venv bin").join("python");
    let out = Command::new(python)
        .arg(repo_root().join("scripts/cfn-moto.py"))
        .arg(repo_root().join(TEMPLATE))
        .arg(name)
        .args(params.iter().map(|(k, v)| format!("{k}={v}")))
        .env("AWS_ENDPOINT_URL", s.moto_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run cfn-moto.py");
    assert!(
        out.status.success(),
        "cfn-moto.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cfn-moto.py prints JSON")
}

fn resource<'a>(stack: &'a Value, logical: &str) -> &'a Value {
    let r = &stack["resources"][logical];
    assert_eq!(
        r["status"], "CREATE_COMPLETE",
        "{logical} not created: {stack:#}"
    );
    r
}

fn logical_ids(stack: &Value) -> BTreeSet<String> {
    stack["resources"]
        .as_object()
        .expect("resources")
        .keys()
        .cloned()
        .collect()
}

async fn put_code_zip(bucket: &str) {
    let s3 = s3().await;
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    s3.put_object()
        .bucket(bucket)
        .key("nodereaper.zip")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        ))
        .send()
        .await
        .expect("put zip");
}

/// Function mode with the EventBridge rule and an SSM key: everything moto's
/// CloudFormation implements is created and wired as the template says.
///
/// moto 5.2 does NOT implement AWS::SQS::QueuePolicy and AWS::SNS::Subscription
/// in CloudFormation (it skips them: they are absent from the listing), and
/// cannot run the Lambda-backed custom resource that wires the Auto Scaling
/// groups (Custom::NodereaperGroupWiring, needs Docker to invoke a function):
/// with AutoScalingGroupNames set, the stack stays CREATE_IN_PROGRESS in moto.
/// moto also ignores the function's Architectures (always x86_64).
#[tokio::test]
async fn cloudformation_function_stack_creates_in_moto() {
    let name = unique("cfnfn");
    let code = unique("code");
    put_code_zip(&code).await;
    let st = create_stack(
        &name,
        &[
            ("Name", &name),
            ("Mode", "function"),
            ("CodeS3Bucket", &code),
            ("CodeS3Key", "nodereaper.zip"),
            ("JournalS3Bucket", "journal-bucket"),
            ("EventBridgeRule", "true"),
            ("ChefServerUrl", "https://chef.example/organizations/acme"),
            ("ChefClientName", "nodereaper"),
            ("ChefClientKeyParameterName", "/nodereaper/chef-key"),
        ],
    );
    assert_eq!(st["status"], "CREATE_COMPLETE", "{st:#}");
    assert_eq!(
        logical_ids(&st),
        [
            "DeadLetterQueue",
            "EventSourceMapping",
            "Function",
            "Queue",
            "Role",
            "Rule",
            "Topic"
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        "{st:#}"
    );

    // Queue + DLQ with redrive.
    let dlq = resource(&st, "DeadLetterQueue");
    let dlq_arn = dlq["details"]["QueueArn"].as_str().expect("dlq arn");
    let queue = resource(&st, "Queue");
    let redrive: Value = serde_json::from_str(
        queue["details"]["RedrivePolicy"]
            .as_str()
            .expect("redrive policy"),
    )
    .expect("redrive json");
    assert_eq!(redrive["deadLetterTargetArn"], dlq_arn);
    assert_eq!(redrive["maxReceiveCount"].to_string(), "10");
    assert_eq!(queue["details"]["VisibilityTimeout"], "360");
    let queue_arn = queue["details"]["QueueArn"].as_str().expect("queue arn");

    // Outputs are usable: the queue URL answers SQS.
    let outputs = &st["outputs"];
    for key in [
        "QueueUrl",
        "DeadLetterQueueUrl",
        "TopicArn",
        "RoleArn",
        "FunctionArn",
    ] {
        assert!(outputs[key].is_string(), "output {key} missing: {st:#}");
    }
    assert_eq!(outputs["QueueUrl"], queue["id"]);
    assert_eq!(
        depth(outputs["QueueUrl"].as_str().expect("url")).await,
        (0, 0)
    );

    // The function: provided.al2023, bootstrap, configured from the environment.
    let f = &resource(&st, "Function")["details"];
    assert_eq!(f["Runtime"], "provided.al2023");
    assert_eq!(f["Handler"], "bootstrap");
    let env = &f["Environment"]["Variables"];
    assert_eq!(env["NODEREAPER_QUEUE_URL"], outputs["QueueUrl"]);
    assert_eq!(
        env["NODEREAPER_CHEF_CLIENT_KEY_PARAMETER"],
        "/nodereaper/chef-key"
    );
    assert_eq!(env["NODEREAPER_JOURNAL_S3_BUCKET"], "journal-bucket");
    assert!(env.get("NODEREAPER_CHEF_CLIENT_KEY_SECRET").is_none());
    // Every variable the template sets is one nodereaper reads.
    for var in env.as_object().expect("env").keys() {
        assert!(
            nodereaper::config::ENV_OVERRIDES
                .iter()
                .any(|(name, _)| name == var),
            "{var} is not a NODEREAPER_* variable nodereaper knows"
        );
    }

    // Partial batch responses on the SQS event source.
    let esm = &resource(&st, "EventSourceMapping")["details"];
    assert_eq!(esm["EventSourceArn"], queue_arn);
    assert_eq!(
        esm["FunctionResponseTypes"],
        serde_json::json!(["ReportBatchItemFailures"])
    );

    // The rule targets the queue with the termination detail types.
    let rule = &resource(&st, "Rule")["details"];
    assert_eq!(rule["Targets"], serde_json::json!([queue_arn]));
    assert_eq!(
        rule["EventPattern"]["detail-type"],
        serde_json::json!(nodereaper::jobs::setup::EVENT_DETAIL_TYPES)
    );

    // The role: assumed by Lambda, the daemon's statements plus the key read.
    let role = &resource(&st, "Role")["details"];
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "lambda.amazonaws.com"
    );
    let policy = role["Policies"]["nodereaper"].to_string();
    for needle in [
        "sqs:ReceiveMessage",
        "ec2:DescribeInstances",
        "autoscaling:CompleteLifecycleAction",
        "arn:aws:s3:::journal-bucket/nodereaper/journal/*",
        "ssm:GetParameter",
        "parameter/nodereaper/chef-key",
    ] {
        assert!(policy.contains(needle), "{needle} not in {policy}");
    }
    assert!(!policy.contains("secretsmanager:"), "{policy}");
    assert!(
        !policy.contains("autoscaling:DescribeTags"),
        "one target: {policy}"
    );
}

/// Function mode with several Chef targets: the targets and routes reach
/// the function as NODEREAPER_CHEF_TARGETS and NODEREAPER_ROUTES (no
/// NODEREAPER_CHEF_SERVER_URL), nodereaper reads them back as its targets,
/// and the role may read every target's key secret beside the shared one.
#[tokio::test]
async fn cloudformation_function_stack_with_several_chef_targets() {
    let name = unique("cfnt");
    let code = unique("code");
    put_code_zip(&code).await;
    let secret =
        |n: &str| format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{n}-AbCdEf");
    let targets = format!(
        r#"[{{"name":"prod","server_url":"https://chef.example/organizations/prod"}},{{"name":"staging","server_url":"https://chef2.example/organizations/staging","client_key_secret":"{}"}}]"#,
        secret("staging")
    );
    let routes = r#"[{"account":"210987654321","target":"staging"}]"#;
    let st = create_stack(
        &name,
        &[
            ("Name", &name),
            ("Mode", "function"),
            ("CodeS3Bucket", &code),
            ("CodeS3Key", "nodereaper.zip"),
            ("JournalS3Bucket", "journal-bucket"),
            ("ChefClientName", "nodereaper"),
            ("ChefClientKeySecretArn", &secret("shared")),
            ("ChefTargets", &targets),
            ("ChefTargetKeySecretArns", &secret("staging")),
            ("Routes", routes),
        ],
    );
    assert_eq!(st["status"], "CREATE_COMPLETE", "{st:#}");
    let env = &resource(&st, "Function")["details"]["Environment"]["Variables"];
    assert!(env.get("NODEREAPER_CHEF_SERVER_URL").is_none(), "{env:#}");
    let var = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_string);
    let mut cfg = nodereaper::config::Config::default();
    cfg.apply_env(var).expect("the function's environment");
    cfg.validate(std::path::Path::new("(environment)"))
        .expect("a valid configuration");
    assert_eq!(cfg.target_names(), ["prod", "staging"]);
    assert_eq!(cfg.routing_table().accounts[0].target, "staging");
    let staging = cfg.for_target("staging").expect("staging");
    assert_eq!(staging.chef.client_key_secret, Some(secret("staging")));

    let policy = resource(&st, "Role")["details"]["Policies"]["nodereaper"].to_string();
    for arn in [secret("shared"), secret("staging")] {
        assert!(policy.contains(&arn), "{arn} not in {policy}");
    }
    // Several targets: the group tag rule reads DescribeTags.
    assert!(policy.contains("autoscaling:DescribeTags"), "{policy}");
}

/// Daemon mode: no function, an instance profile for the host instead.
#[tokio::test]
async fn cloudformation_daemon_stack_creates_in_moto() {
    let name = unique("cfnd");
    let key = "arn:aws:kms:us-east-1:123456789012:key/0b7d2b53-4a42-4e4c-9a3e-3c3c0d2d1e11";
    let roles =
        "arn:aws:iam::111111111111:role/nodereaper,arn:aws:iam::222222222222:role/nodereaper";
    let st = create_stack(
        &name,
        &[
            ("Name", &name),
            ("JournalS3Bucket", "journal"),
            ("JournalKmsKeyArn", key),
            ("AccountRoleArns", roles),
        ],
    );
    assert_eq!(st["status"], "CREATE_COMPLETE", "{st:#}");
    let ids = logical_ids(&st);
    assert!(ids.contains("InstanceProfile"), "{ids:?}");
    for absent in ["Function", "EventSourceMapping", "Rule", "GroupWiring"] {
        assert!(!ids.contains(absent), "{absent} in {ids:?}");
    }
    let role = &resource(&st, "Role")["details"];
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "ec2.amazonaws.com"
    );
    // The KMS key and [[aws.accounts]] parameters add their statements.
    let policy = role.to_string();
    assert!(
        policy.contains("JournalKey") && policy.contains(key),
        "{role:#}"
    );
    assert!(
        policy.contains("AssumeAccountRoles") && policy.contains("222222222222:role/nodereaper"),
        "{role:#}"
    );
    assert!(st["outputs"]["InstanceProfileArn"].is_string(), "{st:#}");
    assert!(st["outputs"].get("FunctionArn").is_none(), "{st:#}");
}

#[test]
fn prometheus_rules_pass_promtool() {
    let rules = repo_root().join("packaging/prometheus/nodereaper-rules.yml");
    let (ok, text) = run(Command::new(tool("PROMTOOL"))
        .args(["check", "rules"])
        .arg(&rules));
    assert!(ok, "promtool check rules:\n{text}");
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");
    // The alerts fire (and stay quiet) as their unit tests expect.
    let (ok, text) = run(Command::new(tool("PROMTOOL"))
        .args(["test", "rules", "nodereaper-rules.test.yml"])
        .current_dir(repo_root().join("packaging/prometheus")));
    assert!(ok, "promtool test rules:\n{text}");
}

/// Every `nodereaper_*` series the rules and the dashboard use is one
/// src/telemetry/metrics.rs exports (histograms with their suffixes).
#[test]
fn rules_and_dashboard_use_exported_metrics() {
    let source =
        std::fs::read_to_string(repo_root().join("src/telemetry/metrics.rs")).expect("metrics.rs");
    let exported: BTreeSet<String> = regex::Regex::new(r#""([a-z_]+)""#)
        .expect("regex")
        .captures_iter(&source)
        .map(|c| format!("nodereaper_{}", &c[1]))
        .collect();
    let used_re = regex::Regex::new(r"nodereaper_[a-z_]+").expect("regex");
    let dashboard_text =
        std::fs::read_to_string(repo_root().join("packaging/grafana/nodereaper-dashboard.json"))
            .expect("dashboard");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("dashboard is JSON");
    let rules =
        std::fs::read_to_string(repo_root().join("packaging/prometheus/nodereaper-rules.yml"))
            .expect("rules");
    let mut used = BTreeSet::new();
    for text in [&dashboard_text, &rules] {
        for m in used_re.find_iter(text) {
            used.insert(m.as_str().to_string());
        }
    }
    for name in &used {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            exported.contains(name) || exported.contains(base),
            "{name} is not exported by src/telemetry/metrics.rs"
        );
    }
    // The dashboard covers every family the metrics registry exports.
    let families = &nodereaper::telemetry::metrics::get().families;
    assert!(families.len() >= 17, "registry lists {families:?}");
    for f in families {
        assert!(
            dashboard_text.contains(f.as_str()),
            "dashboard has no panel for {f}"
        );
    }
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels
        .iter()
        .all(|p| p["gridPos"]["w"].as_u64() <= Some(24)));
}

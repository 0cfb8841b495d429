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
//! since enforcement is global to the moto. The helpers are in
//! tests/iam_support.

mod common;
mod iam_support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;
use iam_support::*;
use serde_json::Value;

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
// turn (`stage_of` says which command shows it).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_commands_under_the_printed_policy_and_each_action_removed() {
    iam_stack();
    let _lock = ENFORCEMENT.lock().await;
    enforce(false).await;
    let s = one_off_setup("oneoff", 2).await;
    let cfg = s.config(&s.prefix);
    let printed = printed_policy(&cfg);
    let printed_text = printed.to_string();
    assert!(
        printed_text.contains(&format!("\"arn:aws:s3:::{}/{}*\"", s.bucket, s.prefix))
            && printed_text.contains(&s.secret),
        "{printed_text}"
    );
    let policy = with_moto_batch_quirk(&printed);
    let user = user_with(&policy).await;
    let cases = RemovalCases::new(&printed, &policy).await;

    let mut denied = sweep_phase(&s, &cfg, &user, &cases).await;
    denied.extend(journal_phase(&s, &cfg, &user, &cases).await);

    // Each removal failed its command, naming the missing action (a sweep
    // whose deletions failed because the backup could not be written exits
    // 1, its rows say "skipped ... s3:PutObject").
    for (action, out) in &denied {
        let log = text(out);
        assert_ne!(out.status.code(), Some(0), "{action} removed:\n{log}");
        assert!(log.contains(action.as_str()), "{action} removed:\n{log}");
    }
    assert_eq!(denied.len(), cases.cases.len());
    eprintln!("not shown by the one-off commands: {:?}", cases.not_shown);
}

/// Nodes present: each sweep/doctor action removed (nothing deleted); the
/// same policy with another prefix (denied); then the happy doctor and sweep.
async fn sweep_phase(
    s: &OneOff,
    cfg: &Path,
    user: &(String, String),
    cases: &RemovalCases,
) -> Vec<(String, Output)> {
    let elsewhere = s.config("elsewhere/");
    enforce(true).await;
    let mut denied = run_all(cases.commands(Stage::Sweep, cfg, ""));
    denied.extend(run_all(cases.commands(Stage::Doctor, cfg, "")));
    let wrong_prefix = one_off(Stage::Doctor, &elsewhere, user, "")
        .output()
        .expect("doctor elsewhere");
    enforce(false).await;
    assert_eq!(s.present().await, 2, "a sweep without an action deleted");
    assert!(s.keys().await.is_empty(), "{:?}", s.keys().await);
    let report = text(&wrong_prefix);
    assert_ne!(wrong_prefix.status.code(), Some(0), "{report}");
    assert!(report.contains("s3:PutObject"), "{report}");

    enforce(true).await;
    let doctor = one_off(Stage::Doctor, cfg, user, "")
        .output()
        .expect("doctor");
    let sweep = one_off(Stage::Sweep, cfg, user, "")
        .output()
        .expect("sweep");
    enforce(false).await;
    assert_eq!(doctor.status.code(), Some(0), "{}", text(&doctor));
    assert!(!text(&doctor).contains("FAIL"), "{}", text(&doctor));
    assert_eq!(sweep.status.code(), Some(0), "{}", text(&sweep));
    assert_eq!(s.present().await, 0, "{}", text(&sweep));
    denied
}

/// Entries journaled: restore without each action (nothing restored), then
/// with all; an entry past retention: prune without each action (it stays),
/// then with all.
async fn journal_phase(
    s: &OneOff,
    cfg: &Path,
    user: &(String, String),
    cases: &RemovalCases,
) -> Vec<(String, Output)> {
    // The sweep covers the whole server (nodes of other runs too).
    let journaled = s.keys().await;
    for name in &s.names {
        assert!(
            journaled.iter().any(|k| k.contains(name.as_str())),
            "{name}: {journaled:?}"
        );
    }
    enforce(true).await;
    let mut denied = run_all(cases.commands(Stage::Restore, cfg, &s.names[0]));
    enforce(false).await;
    assert_eq!(s.present().await, 0, "a restore without an action restored");
    enforce(true).await;
    let restore = one_off(Stage::Restore, cfg, user, &s.names[0])
        .output()
        .expect("restore");
    enforce(false).await;
    assert_eq!(restore.status.code(), Some(0), "{}", text(&restore));
    assert_eq!(s.present().await, 1, "{}", text(&restore));

    s.put_old_entry().await;
    let old = format!("{}{OLD_ENTRY}", s.prefix);
    enforce(true).await;
    denied.extend(run_all(cases.commands(Stage::Prune, cfg, "")));
    enforce(false).await;
    assert!(
        s.keys().await.contains(&old),
        "a prune without an action pruned"
    );
    enforce(true).await;
    let prune = one_off(Stage::Prune, cfg, user, "")
        .output()
        .expect("prune");
    enforce(false).await;
    assert_eq!(prune.status.code(), Some(0), "{}", text(&prune));
    assert_eq!(s.keys().await, journaled, "{}", text(&prune));
    denied
}

// ---------------------------------------------------------------------------
// The daemon's queue actions removed in turn: each case its own queue with a
// termination and an unreadable message, every daemon at once.

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
    let (port, scrape) = scrape_later(Duration::from_secs(10));
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
        check_queue_case(*action, s, out).await;
    }
}

/// One daemon's case: nothing lost; the happy twin settled both messages;
/// without `action` the log names it (and, for the calls before any
/// deletion, nothing was deleted or dead-lettered).
async fn check_queue_case(action: Option<&str>, s: &Setup, out: &Output) {
    let log = text(out);
    let what = action.unwrap_or("nothing");
    let (deleted, journaled) = (s.deregistered().await, s.journal_objects().await);
    // Nothing lost: the termination is done (and journaled) or still on
    // the queue (visible or in flight); the unreadable message is
    // dead-lettered or still on the queue.
    let (visible, hidden) = depth(&s.queue).await;
    let dlq = peek_all(&s.dlq).await;
    let pending =
        usize::from(!(deleted == 1 && journaled == 1)) + usize::from(!has_body(&dlq, UNREADABLE));
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
                a,
                "sqs:GetQueueAttributes" | "sqs:GetQueueUrl" | "sqs:ReceiveMessage"
            ) {
                assert_eq!(deleted, 0, "{a} removed\n{log}");
                assert!(dlq.is_empty(), "{a} removed: {dlq:?}\n{log}");
            }
            if a == "sqs:SendMessage" {
                // The refused move is not counted as done.
                assert!(
                    log.contains("dead_lettered=0") && !log.contains("unsettled=0"),
                    "{a} removed: the stop summary\n{log}"
                );
            }
        }
    }
}

/// A free port, and the text of its `/metrics` fetched after `after`.
fn scrape_later(after: Duration) -> (u16, tokio::task::JoinHandle<String>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let scrape = tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let url = format!("http://127.0.0.1:{port}/metrics");
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("{url}: {e}"),
        }
    });
    (port, scrape)
}

// ---------------------------------------------------------------------------
// AssumeRole into a second account (moto's 111111111111): the sweep asks
// that account about its nodes through the `[[aws.accounts]]` role.

/// The statement `sid` of `policy`.
fn statement(policy: &Value, sid: &str) -> Value {
    policy["Statement"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["Sid"] == sid))
        .cloned()
        .unwrap_or_else(|| panic!("statement {sid} in {policy}"))
}

/// `cfg` with one `[[aws.accounts]]` entry for `role` in [`OTHER_ACCOUNT`],
/// written to `path`; the role's ARN.
fn with_account(cfg: &Path, path: &Path, role: &str) -> String {
    let role_arn = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/{role}");
    let mut text_cfg = std::fs::read_to_string(cfg).expect("read config");
    text_cfg.push_str(&format!(
        "[[aws.accounts]]\nid = \"{OTHER_ACCOUNT}\"\nrole_arn = \"{role_arn}\"\n"
    ));
    std::fs::write(path, text_cfg).expect("write config");
    role_arn
}

/// A node whose terminated instance lives in [`OTHER_ACCOUNT`] (launched
/// as `theirs`); its name.
async fn their_node(theirs: &aws_config::SdkConfig) -> String {
    use nodereaper::ports::ChefApi;
    let ids = run_instances_with(theirs, 1).await;
    terminate_with(theirs, &ids).await;
    let node = unique("theirs");
    let mut json = node_json(&node, Some(&ids[0]), Duration::from_secs(3 * 3600));
    json["automatic"]["ec2"]["account_id"] = OTHER_ACCOUNT.into();
    let chef = admin();
    chef.create_node(&json).await.expect("create node");
    chef.create_client(&node, None, false)
        .await
        .expect("create client");
    node
}

/// `sweep --apply` for `cfg` as `user` with enforcement on; its output.
async fn sweep_as(cfg: &Path, user: &(String, String)) -> Output {
    enforce(true).await;
    let out = one_off(Stage::Sweep, cfg, user, "")
        .output()
        .expect("sweep");
    enforce(false).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_asks_a_second_account_through_its_role_and_not_without_assume_role() {
    iam_stack();
    let _lock = ENFORCEMENT.lock().await;
    enforce(false).await;
    let s = one_off_setup("accounts", 1).await;
    let base = s.config(&s.prefix);
    let (cfg, bare_cfg) = (
        s.dir.path().join("role.toml"),
        s.dir.path().join("bare.toml"),
    );
    let role = unique("nodereaper-verify");
    let role_arn = with_account(&base, &cfg, &role);
    let printed = printed_policy(&cfg);
    let assume = statement(&printed, "AssumeAccountRoles");
    assert_eq!(
        assume["Resource"],
        serde_json::json!([role_arn]),
        "{printed}"
    );
    // The role holds the printed DescribeInstances statement (the policy's
    // note: each role needs it in its own account).
    let theirs = other_account_role(&role, &statement(&printed, "DescribeInstances")).await;
    let node = their_node(&theirs).await;
    let policy = with_moto_batch_quirk(&printed);
    let user = user_with(&policy).await;
    let no_assume = user_with(&without(&policy, "sts:AssumeRole")).await;
    // A role of that account without the DescribeInstances statement: moto
    // authorises the role's calls by the role's own policy.
    let bare = unique("nodereaper-bare");
    let any = serde_json::json!({"Effect": "Allow", "Action": ["sqs:ListQueues"], "Resource": "*"});
    other_account_role(&bare, &any).await;
    with_account(&base, &bare_cfg, &bare);
    let bare_user = user_with(&with_moto_batch_quirk(&printed_policy(&bare_cfg))).await;
    let chef = admin();

    // Without sts:AssumeRole: the other account's node is not deleted, the
    // output names the action.
    let log = text(&sweep_as(&cfg, &no_assume).await);
    assert!(!node_gone(&chef, &node).await, "{log}");
    assert!(log.contains("sts:AssumeRole"), "{log}");

    // Through the role that lacks ec2:DescribeInstances: the same.
    let log = text(&sweep_as(&bare_cfg, &bare_user).await);
    assert!(!node_gone(&chef, &node).await, "{log}");
    assert!(log.contains("ec2:DescribeInstances"), "{log}");

    // The happy twin: exactly the printed policy, asked through the role.
    let sweep = sweep_as(&cfg, &user).await;
    let log = text(&sweep);
    assert_eq!(sweep.status.code(), Some(0), "{log}");
    assert!(node_gone(&chef, &node).await, "{log}");
}

/// The Chef key from SSM Parameter Store: `doctor` passes under exactly the
/// printed policy, and without `ssm:GetParameter` fails naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chef_key_from_ssm_under_the_printed_policy_and_without_get_parameter() {
    iam_stack();
    let _lock = ENFORCEMENT.lock().await;
    enforce(false).await;
    let s = one_off_setup("ssm", 1).await;
    let parameter = format!("/{}", unique("nodereaper/chef-key"));
    aws_sdk_ssm::Client::new(&aws().await)
        .put_parameter()
        .name(&parameter)
        .value(admin_key_pem())
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");
    let cfg = s.dir.path().join("ssm.toml");
    let text_cfg = std::fs::read_to_string(s.config(&s.prefix))
        .expect("read config")
        .replace(
            &format!("client_key_secret = \"{}\"", s.secret),
            &format!("client_key_parameter = \"{parameter}\""),
        );
    std::fs::write(&cfg, text_cfg).expect("write config");
    let printed = printed_policy(&cfg);
    assert_eq!(
        statement(&printed, "ChefKeyParameter")["Action"],
        serde_json::json!(["ssm:GetParameter"])
    );
    let policy = with_moto_batch_quirk(&printed);
    let user = user_with(&policy).await;
    let without_get = user_with(&without(&policy, "ssm:GetParameter")).await;
    enforce(true).await;
    let ok = one_off(Stage::Doctor, &cfg, &user, "")
        .output()
        .expect("doctor");
    let denied = one_off(Stage::Doctor, &cfg, &without_get, "")
        .output()
        .expect("doctor");
    enforce(false).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let log = text(&denied);
    assert_ne!(denied.status.code(), Some(0), "{log}");
    assert!(log.contains("ssm:GetParameter"), "{log}");
}

/// An SNS event as Lambda delivers a topic's message to a subscribed
/// function (shape from the Lambda developer guide; tests/lambda.rs).
fn sns_event(message: &str) -> Value {
    serde_json::json!({"Records": [{
        "EventVersion": "1.0",
        "EventSource": "aws:sns",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:nodereaper:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": {
            "Type": "Notification", "MessageId": unique("sns"),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:nodereaper",
            "Subject": "Auto Scaling: termination", "Message": message,
            "Timestamp": chrono::Utc::now().to_rfc3339(), "SignatureVersion": "1",
            "Signature": "EXAMPLE", "MessageAttributes": {},
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        }
    }]})
}

/// The Lambda handler, configured from the environment as CloudFormation
/// sets it, under exactly the policy printed for the function
/// (`--function-name`): deletes and journals; without
/// `ec2:DescribeInstances` deletes nothing and names the action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_under_the_printed_policy_and_without_describe() {
    iam_stack();
    let _lock = ENFORCEMENT.lock().await;
    enforce(false).await;
    let s = one_off_setup("lambda", 2).await;
    let testing = ("testing".to_string(), "testing".to_string());
    let out = function_env(&s, &testing)
        .args([
            "setup",
            "--print-iam-policy",
            "--function-name",
            "nodereaper",
        ])
        .args(["--output", "json"])
        .output()
        .expect("print policy");
    assert!(out.status.success(), "{}", text(&out));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("policy json");
    let printed = printed["iam_policy"].clone();
    assert!(printed.to_string().contains("\"Logs\""), "{printed}");
    let policy = with_moto_batch_quirk(&printed);
    let user = user_with(&policy).await;
    let no_describe = user_with(&without(&policy, "ec2:DescribeInstances")).await;
    let ids: Vec<String> = {
        use nodereaper::ports::ChefApi;
        let chef = admin();
        let mut ids = Vec::new();
        for name in &s.names {
            let node = chef.get_node(name).await.expect("get").expect("node");
            ids.push(
                node["automatic"]["ec2"]["instance_id"]
                    .as_str()
                    .expect("id")
                    .to_string(),
            );
        }
        ids
    };
    let event = |id: &str| sns_event(&asg_terminate_notification(id, "web"));

    enforce(true).await;
    let (denied_answer, denied) = invoke_as(&s, &no_describe, event(&ids[1])).await;
    let (answer, out) = invoke_as(&s, &user, event(&ids[0])).await;
    enforce(false).await;
    let chef = admin();
    let log = text(&denied);
    assert!(
        !node_gone(&chef, &s.names[1]).await,
        "{denied_answer:?}\n{log}"
    );
    assert!(
        log.contains("ec2:DescribeInstances"),
        "{denied_answer:?}\n{log}"
    );
    assert_ne!(denied_answer.0, "response", "{log}");
    let log = text(&out);
    assert_eq!(answer.0, "response", "{answer:?}\n{log}");
    assert!(node_gone(&chef, &s.names[0]).await, "{log}");
    assert!(
        s.keys()
            .await
            .iter()
            .any(|k| k.contains(s.names[0].as_str())),
        "{log}"
    );
}

//! `nodereaper setup`: the AWS wiring.

use nodereaper::config::Config;

use anyhow::Result;
use clap::Args;

use super::{ExitCode, Output};

/// Arguments of `nodereaper setup`.
#[derive(Args)]
pub struct SetupArgs {
    /// Base name: topic and queue NAME, DLQ NAME-dlq, rule NAME-asg-terminate.
    #[arg(long, default_value = nodereaper::jobs::setup::DEFAULT_NAME)]
    pub name: String,
    /// Auto Scaling group to wire (repeatable; must exist).
    #[arg(long = "asg", value_name = "GROUP")]
    pub asg_names: Vec<String>,
    /// Also wire every Auto Scaling group having this tag.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub asg_tag: Option<(String, String)>,
    /// Receives before a message moves to the DLQ by redrive.
    #[arg(long, default_value_t = 10)]
    pub max_receive_count: u32,
    /// Queue visibility timeout, seconds.
    #[arg(long, default_value_t = 300)]
    pub visibility_timeout: u32,
    /// Retention of both queues, seconds (max 14 days).
    #[arg(long, default_value_t = 1_209_600)]
    pub message_retention: u32,
    /// Add a termination lifecycle hook notifying the topic on each group.
    #[arg(long, requires = "hook_role_arn")]
    pub lifecycle_hook: bool,
    /// Name of the lifecycle hook.
    #[arg(long, default_value = nodereaper::jobs::setup::DEFAULT_HOOK_NAME)]
    pub hook_name: String,
    /// Route the hook's terminations to this Chef target (`[[chef.targets]]`
    /// name): writes `nodereaper:target=NAME` into the hook's
    /// NotificationMetadata, which every lifecycle message carries.
    #[arg(long, value_name = "TARGET", requires = "lifecycle_hook")]
    pub hook_target: Option<String>,
    /// Lifecycle hook heartbeat timeout, seconds.
    #[arg(long, default_value_t = 300)]
    pub hook_heartbeat_timeout: u32,
    /// What Auto Scaling does when the hook times out.
    #[arg(long, default_value = "CONTINUE", value_parser = ["CONTINUE", "ABANDON"])]
    pub hook_default_result: String,
    /// IAM role Auto Scaling assumes to publish to the topic (not created by
    /// nodereaper; e.g. with the AWS managed AutoScalingNotificationAccessRole policy).
    #[arg(long)]
    pub hook_role_arn: Option<String>,
    /// Also create the EventBridge rule NAME-asg-terminate targeting the queue.
    #[arg(long)]
    pub eventbridge_rule: bool,
    /// Read only: report what would change.
    #[arg(long)]
    pub dry_run: bool,
    /// Region (else aws.region, else the SDK chain).
    #[arg(long)]
    pub region: Option<String>,
    /// Only print the daemon's least-privilege IAM policy and the Chef ACLs
    /// its client needs; change nothing.
    /// The policy is for THIS configuration: its queues (DLQs from dlq_url
    /// or read from the RedrivePolicy), S3 journal and KMS key, account roles
    /// and Chef key store; --asg narrows the lifecycle actions to those groups.
    #[arg(long, conflicts_with = "print_setup_policy")]
    pub print_iam_policy: bool,
    /// With --print-iam-policy: the policy is for the Lambda function NAME
    /// (adds its log group).
    #[arg(long, value_name = "NAME", requires = "print_iam_policy")]
    pub function_name: Option<String>,
    /// Only print the IAM policy the person running `nodereaper setup` needs.
    #[arg(long)]
    pub print_setup_policy: bool,
    /// Print the report as text or JSON.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Prints the IAM policy, or runs setup and prints its report (typed
/// changes, see [`nodereaper::jobs::setup::SetupReport`]); exit code 2 when a
/// step was not done.
pub async fn setup(config: Config, args: SetupArgs) -> Result<ExitCode> {
    use nodereaper::jobs::setup::{self, LifecycleHookSpec, SetupSpec};
    if args.print_setup_policy {
        let policy = setup::setup_policy();
        if args.output == Output::Json {
            println!("{}", serde_json::json!({ "setup_policy": policy }));
        } else {
            println!("{}", serde_json::to_string_pretty(&policy)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.print_iam_policy {
        print_iam_policy(&config, &args).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let notification_metadata = match &args.hook_target {
        Some(t) if config.target_names().contains(t) => {
            Some(nodereaper::core::routing::metadata_marker(t))
        }
        Some(t) => anyhow::bail!(
            "--hook-target {t:?}: no such Chef target (configured: {})",
            config.target_names().join(", ")
        ),
        None => None,
    };
    let spec = SetupSpec {
        name: args.name,
        asg_names: args.asg_names,
        asg_tag: args.asg_tag,
        max_receive_count: args.max_receive_count,
        visibility_timeout_secs: args.visibility_timeout,
        message_retention_secs: args.message_retention,
        lifecycle_hook: args.lifecycle_hook.then_some(LifecycleHookSpec {
            hook_name: args.hook_name,
            heartbeat_timeout_secs: args.hook_heartbeat_timeout,
            default_result: args.hook_default_result,
            role_arn: args.hook_role_arn,
            notification_metadata,
        }),
        eventbridge_rule: args.eventbridge_rule,
        dry_run: args.dry_run,
    };
    let sdk = nodereaper::adapters::aws::sdk_config(&config.aws, args.region.as_deref()).await;
    let report = setup::setup(&sdk, &spec).await?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Prints the daemon's policy for `config` (see [`SetupArgs::print_iam_policy`]).
async fn print_iam_policy(config: &Config, args: &SetupArgs) -> Result<()> {
    use nodereaper::jobs::setup;
    let dlqs = resolve_dlqs(config).await;
    let (mut scope, unresolved) =
        setup::PolicyScope::from_config(config, &dlqs, &args.asg_names)
            .map_err(|e| anyhow::anyhow!("cannot build the IAM policy: {e}"))?;
    scope.lambda_function = args.function_name.clone();
    let policy = setup::daemon_policy(&scope);
    let client = config.chef.client_name.as_deref().unwrap_or("nodereaper");
    let unresolved_note = (!unresolved.is_empty()).then(|| {
        format!(
            "The dead-letter queue of {} could not be read (set queues[].dlq_url): \
             SendMessage is granted on every queue of its account and region.",
            unresolved.join(", ")
        )
    });
    if args.output == Output::Json {
        let out = serde_json::json!({
            "iam_policy": policy,
            "iam_policy_note": setup::IAM_POLICY_NOTE,
            "unresolved_dlq_note": unresolved_note,
            "chef_acl_note": setup::chef_acl_note(client),
            "chef_permissions": setup::chef_permissions_json(client),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&policy)?);
        if let Some(note) = unresolved_note {
            println!("\n{note}");
        }
        println!(
            "\n{}\n\nChef permissions:\n{}",
            setup::IAM_POLICY_NOTE,
            setup::chef_acl_note(client)
        );
    }
    Ok(())
}

/// Each queue's DLQ URL: `dlq_url`, else its RedrivePolicy when it can be
/// read (10 s per queue); `None` when unknown.
async fn resolve_dlqs(config: &Config) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for q in &config.queues {
        if q.dlq_url.is_some() {
            out.push(q.dlq_url.clone());
            continue;
        }
        let region = q
            .region
            .clone()
            .or_else(|| nodereaper::adapters::aws::region_from_queue_url(&q.url));
        let sdk = nodereaper::adapters::aws::sdk_config(&config.aws, region.as_deref()).await;
        let client = aws_sdk_sqs::Client::new(&sdk);
        let read = nodereaper::adapters::aws::sqs::dead_letter_queue_url(&client, &q.url);
        match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
            Ok(Ok(dlq)) => out.push(dlq),
            Ok(Err(e)) => {
                eprintln!("warning: {e}");
                out.push(None);
            }
            Err(_) => {
                eprintln!("warning: reading the RedrivePolicy of {} timed out", q.url);
                out.push(None);
            }
        }
    }
    out
}

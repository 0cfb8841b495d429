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
    #[arg(long)]
    pub print_iam_policy: bool,
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
    let journal = config
        .journal
        .s3_bucket
        .as_deref()
        .map(|b| (b, config.journal.s3_prefix.as_str()));
    if args.print_iam_policy {
        let policy = setup::iam_policy_for(&[], &[], journal, &config.chef);
        let client = config.chef.client_name.as_deref().unwrap_or("nodereaper");
        if args.output == Output::Json {
            let out = serde_json::json!({
                "iam_policy": policy,
                "iam_policy_note": setup::IAM_POLICY_NOTE,
                "chef_acl_note": setup::chef_acl_note(client),
                "chef_permissions": setup::chef_permissions_json(client),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("{}", serde_json::to_string_pretty(&policy)?);
            println!(
                "\n{}\n\nChef permissions:\n{}",
                setup::IAM_POLICY_NOTE,
                setup::chef_acl_note(client)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
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

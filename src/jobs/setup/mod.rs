//! `nodereaper setup`: creates, or checks and repairs, the AWS wiring that
//! brings Auto Scaling terminations to nodereaper.
//!
//! ```text
//! Auto Scaling group --notification EC2_INSTANCE_TERMINATE--+
//!                    --lifecycle hook (optional)-------------+--> SNS topic <name>
//!        SNS topic --subscription, RawMessageDelivery=false--> SQS queue <name> --redrive--> <name>-dlq
//! EventBridge rule <name>-asg-terminate (optional) ----------> SQS queue <name>
//! ```
//!
//! Every step reads first (List/Describe/Get) and changes only what differs,
//! so a second run reports everything [`ChangeAction::Unchanged`]; a dry run
//! stops after reading and reports `WouldCreate` / `WouldUpdate`.
//!
//! Raw message delivery stays off on purpose: nodereaper parses the SNS
//! envelope (it tells an SNS notification from an EventBridge event on the
//! same queue by its shape, and logs the topic ARN it came from).
//!
//! The queue policy is owned by setup: it allows `sqs:SendMessage` from the
//! topic (and the EventBridge rule) and nothing else; any other statement is
//! replaced, and the report shows the policy it replaced.
//!
//! One file per AWS service: `queue` (SQS queues, DLQ, queue policy),
//! `topic` (SNS topic and subscription), `asg` (the groups, their
//! notification configuration and lifecycle hook), `events` (EventBridge rule
//! and target), `iam` (the policies printed for the daemon and for setup; `arns` their
//! resources), `chef_acl` (the Chef permissions printed with them), `report` (what
//! setup did, typed) and `error`. This file holds the spec and the order of
//! the steps.

pub mod access;
mod arns;
mod asg;
mod chef_acl;
mod compare;
mod error;
mod events;
mod iam;
mod queue;
mod report;
mod topic;

use crate::core::event;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName as Qa;
use serde_json::json;
use tokio::sync::OnceCell;

pub use arns::{partition_of, queue_arn_from_url};
pub use chef_acl::{chef_acl_note, chef_permissions_json};
pub use error::SetupError;
pub use events::event_pattern;
pub use iam::{
    daemon_policy, iam_policy, iam_policy_for, key_store_statement, setup_policy, PolicyScope,
    IAM_POLICY_NOTE,
};
pub use queue::queue_policy;
pub use report::{Change, ChangeAction, Resource, ResourceKind, SetupReport};

/// Default base name of the topic, the queue and (with `-dlq`) the DLQ.
pub const DEFAULT_NAME: &str = "nodereaper";
/// Default name of the termination lifecycle hook.
pub const DEFAULT_HOOK_NAME: &str = crate::config::DEFAULT_LIFECYCLE_HOOK;
/// The Auto Scaling notification type nodereaper consumes.
pub const TERMINATE_NOTIFICATION: &str = event::EC2_INSTANCE_TERMINATE;
/// The lifecycle transition of the hook.
pub const TERMINATING_TRANSITION: &str = event::EC2_INSTANCE_TERMINATING;
/// EventBridge `detail-type`s the rule matches.
pub const EVENT_DETAIL_TYPES: [&str; 2] = [
    event::TERMINATE_LIFECYCLE_ACTION,
    event::TERMINATE_SUCCESSFUL,
];

/// What to wire: see the field docs for the defaults (`SetupSpec::default()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupSpec {
    /// Base name: topic `<name>`, queue `<name>`, DLQ `<name>-dlq`, rule
    /// `<name>-asg-terminate`. Default `nodereaper`.
    pub name: String,
    /// Auto Scaling groups to wire explicitly (they must exist).
    pub asg_names: Vec<String>,
    /// Also wire every group having this tag key = value.
    pub asg_tag: Option<(String, String)>,
    /// Receives before SQS moves a message to the DLQ. Default 10.
    pub max_receive_count: u32,
    /// Queue visibility timeout. Default 300.
    pub visibility_timeout_secs: u32,
    /// Retention of both queues. Default 1209600 (14 days, the maximum).
    pub message_retention_secs: u32,
    /// Termination lifecycle hook on each group, notifying the topic.
    pub lifecycle_hook: Option<LifecycleHookSpec>,
    /// EventBridge rule `<name>-asg-terminate` targeting the queue.
    pub eventbridge_rule: bool,
    /// Read only: report what would change.
    pub dry_run: bool,
}

impl Default for SetupSpec {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.into(),
            asg_names: Vec::new(),
            asg_tag: None,
            max_receive_count: 10,
            visibility_timeout_secs: 300,
            message_retention_secs: 1_209_600,
            lifecycle_hook: None,
            eventbridge_rule: false,
            dry_run: false,
        }
    }
}

/// A termination lifecycle hook whose notification target is the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleHookSpec {
    /// Default `nodereaper-terminate`.
    pub hook_name: String,
    /// Default 300.
    pub heartbeat_timeout_secs: u32,
    /// `CONTINUE` (default) or `ABANDON`.
    pub default_result: String,
    /// Role Auto Scaling assumes to publish to the topic. Required: setup
    /// does not create IAM roles.
    pub role_arn: Option<String>,
    /// The hook's `NotificationMetadata` (at most 1023 characters), carried
    /// in every lifecycle message: `nodereaper:target=NAME` routes the
    /// group's terminations to a Chef target.
    pub notification_metadata: Option<String>,
}

impl Default for LifecycleHookSpec {
    fn default() -> Self {
        Self {
            hook_name: DEFAULT_HOOK_NAME.into(),
            heartbeat_timeout_secs: 300,
            default_result: "CONTINUE".into(),
            role_arn: None,
            notification_metadata: None,
        }
    }
}

impl SetupSpec {
    /// Name of the dead-letter queue.
    pub fn dlq_name(&self) -> String {
        format!("{}-dlq", self.name)
    }

    /// Name of the EventBridge rule.
    pub fn rule_name(&self) -> String {
        format!("{}-asg-terminate", self.name)
    }

    /// Checks what AWS would refuse, before any call.
    pub fn validate(&self) -> Result<(), SetupError> {
        let invalid = |m: String| Err(SetupError::Invalid(m));
        let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.name.is_empty() || self.name.len() > 50 || !self.name.chars().all(name_ok) {
            return invalid(format!(
                "name {:?} must be 1-50 letters, digits, '-' or '_' (it names the topic, the queues \
                 and the EventBridge rule)",
                self.name
            ));
        }
        if !(1..=1000).contains(&self.max_receive_count) {
            return invalid(format!(
                "max receive count {} is not in 1..=1000",
                self.max_receive_count
            ));
        }
        if self.visibility_timeout_secs > 43_200 {
            return invalid(format!(
                "visibility timeout {}s exceeds 43200s",
                self.visibility_timeout_secs
            ));
        }
        if !(60..=1_209_600).contains(&self.message_retention_secs) {
            return invalid(format!(
                "message retention {}s is not in 60..=1209600",
                self.message_retention_secs
            ));
        }
        match &self.lifecycle_hook {
            Some(hook) => self.validate_hook(hook),
            None => Ok(()),
        }
    }

    /// The lifecycle hook part of [`SetupSpec::validate`].
    fn validate_hook(&self, hook: &LifecycleHookSpec) -> Result<(), SetupError> {
        let invalid = |m: String| Err(SetupError::Invalid(m));
        if self.asg_names.is_empty() && self.asg_tag.is_none() {
            return invalid("a lifecycle hook needs Auto Scaling groups (names or a tag)".into());
        }
        if hook.role_arn.as_deref().filter(|r| !r.is_empty()).is_none() {
            return invalid(
                "a lifecycle hook that notifies an SNS topic requires a role ARN: an IAM role \
                 trusted by autoscaling.amazonaws.com that may sns:Publish to the topic (e.g. \
                 with the AWS managed policy AutoScalingNotificationAccessRole); nodereaper does \
                 not create IAM roles"
                    .into(),
            );
        }
        if !(30..=7200).contains(&hook.heartbeat_timeout_secs) {
            return invalid(format!(
                "heartbeat timeout {}s is not in 30..=7200",
                hook.heartbeat_timeout_secs
            ));
        }
        if !matches!(hook.default_result.as_str(), "CONTINUE" | "ABANDON") {
            return invalid(format!(
                "default result {:?} is not CONTINUE or ABANDON",
                hook.default_result
            ));
        }
        if let Some(m) = &hook.notification_metadata {
            // PutLifecycleHook's limit (Auto Scaling API reference).
            if m.is_empty() || m.chars().count() > 1023 {
                return invalid(format!(
                    "hook notification metadata: 1 to 1023 characters, got {}",
                    m.chars().count()
                ));
            }
        }
        Ok(())
    }
}

/// Creates or repairs the wiring described by `spec` (see the module docs).
/// Core resources (topic, queues, policy, subscription, EventBridge) fail
/// fast with a [`SetupError`]; a per-group step the endpoint does not
/// implement is reported as [`ChangeAction::Failed`] with a warning.
pub async fn setup(sdk: &SdkConfig, spec: &SetupSpec) -> Result<SetupReport, SetupError> {
    spec.validate()?;
    let region = sdk.region().map(ToString::to_string).ok_or_else(|| {
        SetupError::Invalid("no AWS region configured (--region or AWS_REGION)".into())
    })?;
    let mut s = Setup {
        spec,
        region,
        sns: aws_sdk_sns::Client::new(sdk),
        sqs: aws_sdk_sqs::Client::new(sdk),
        asg: aws_sdk_autoscaling::Client::new(sdk),
        events: aws_sdk_eventbridge::Client::new(sdk),
        sts: aws_sdk_sts::Client::new(sdk),
        identity: OnceCell::new(),
        report: SetupReport::default(),
    };
    let groups = s.groups().await?;
    let topic = s.topic().await?;
    let dlq = s.dead_letter_queue().await?;
    let queue = s.main_queue(&dlq).await?;
    let rule = if spec.eventbridge_rule {
        Some(s.rule(&groups).await?)
    } else {
        None
    };
    s.queue_policy(&queue, &topic, rule.as_ref()).await?;
    s.subscription(&topic, &queue).await?;
    if let Some(rule) = &rule {
        s.rule_target(rule, &queue).await?;
    }
    s.wire_groups(&groups, &topic.arn).await?;
    if groups.is_empty() && !spec.eventbridge_rule {
        s.report.warnings.push(format!(
            "no Auto Scaling group wired and no EventBridge rule: nothing publishes to {} yet",
            topic.arn
        ));
    }
    let mut report = s.report;
    report.topic_arn = topic.exists.then_some(topic.arn);
    report.queue_arn = queue.exists.then_some(queue.arn);
    report.dlq_arn = dlq.exists.then_some(dlq.arn);
    (report.queue_url, report.dlq_url) = (queue.url, dlq.url);
    Ok(report)
}

/// A resource setup knows the ARN of: real, or predicted in a dry run.
struct Known {
    arn: String,
    url: Option<String>,
    exists: bool,
}

/// One setup run: the clients, the spec and the report being written.
struct Setup<'a> {
    spec: &'a SetupSpec,
    region: String,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    asg: aws_sdk_autoscaling::Client,
    events: aws_sdk_eventbridge::Client,
    sts: aws_sdk_sts::Client,
    /// (partition, account), fetched only to predict ARNs in a dry run.
    identity: OnceCell<(String, String)>,
    report: SetupReport,
}

impl Setup<'_> {
    fn dry(&self) -> bool {
        self.spec.dry_run
    }

    /// The ARN `service` would give `resource` in this account and region.
    async fn predict_arn(&self, service: &str, resource: &str) -> Result<String, SetupError> {
        let (partition, account) = self
            .identity
            .get_or_try_init(|| async {
                let me = self.sts.get_caller_identity().send().await.map_err(|e| {
                    SetupError::aws("caller identity", "STS", "GetCallerIdentity", e)
                })?;
                let partition = me
                    .arn()
                    .and_then(|a| a.split(':').nth(1))
                    .unwrap_or("aws")
                    .to_string();
                Ok::<_, SetupError>((partition, me.account().unwrap_or_default().to_string()))
            })
            .await?;
        Ok(format!(
            "arn:{partition}:{service}:{}:{account}:{resource}",
            self.region
        ))
    }

    /// The DLQ `<name>-dlq`: only its retention is set.
    async fn dead_letter_queue(&mut self) -> Result<Known, SetupError> {
        let retention = self.spec.message_retention_secs.to_string();
        let name = self.spec.dlq_name();
        let desired = [(Qa::MessageRetentionPeriod, retention)];
        self.queue(ResourceKind::SqsDlq, &name, &desired).await
    }

    /// The queue `<name>`: visibility, retention and the redrive to `dlq`.
    async fn main_queue(&mut self, dlq: &Known) -> Result<Known, SetupError> {
        let spec = self.spec;
        let redrive =
            json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": spec.max_receive_count});
        let desired = [
            (
                Qa::VisibilityTimeout,
                spec.visibility_timeout_secs.to_string(),
            ),
            (
                Qa::MessageRetentionPeriod,
                spec.message_retention_secs.to_string(),
            ),
            (Qa::RedrivePolicy, redrive.to_string()),
        ];
        self.queue(ResourceKind::SqsQueue, &spec.name, &desired)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let hook = |role: Option<&str>| SetupSpec {
            asg_names: vec!["web".into()],
            lifecycle_hook: Some(LifecycleHookSpec {
                role_arn: role.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(SetupSpec::default().validate().is_ok());
        assert!(hook(Some("arn:aws:iam::1:role/r")).validate().is_ok());
        let err = hook(None)
            .validate()
            .expect_err("role required")
            .to_string();
        assert!(err.contains("requires a role ARN"), "{err}");
        assert!(SetupSpec {
            name: "a b".into(),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(SetupSpec {
            max_receive_count: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}

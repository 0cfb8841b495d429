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

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use aws_config::SdkConfig;
use aws_sdk_autoscaling::types::Filter;
use aws_sdk_eventbridge::types::{RuleState, Target};
use aws_sdk_sqs::types::QueueAttributeName as Qa;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use crate::adapters::aws::AwsError;
use crate::core::error::{Classify, Retry};
use crate::core::event;

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
/// Id of the queue among the EventBridge rule's targets.
const EVENT_TARGET_ID: &str = "nodereaper-queue";
/// AWS error codes meaning "this endpoint does not implement the call".
const UNSUPPORTED_CODES: [&str; 4] = [
    "NotImplemented",
    "NotImplementedException",
    "InvalidAction",
    "UnknownOperationException",
];
/// moto (and older SQS query APIs) name a missing queue this way.
const NON_EXISTENT_QUEUE: &str = "AWS.SimpleQueueService.NonExistentQueue";

/// The Chef Infra Server permissions nodereaper's API client needs.
pub const CHEF_ACL_NOTE: &str = "\
nodereaper's Chef API client needs read and delete on nodes and on clients
(nothing else; do not make it an admin). Container ACLs only seed objects
created afterwards, so grant on the containers AND on every existing object
(knife acl ships with Chef Infra Client / Workstation >= 16, formerly the
knife-acl plugin):

  knife acl add client nodereaper containers nodes read,delete
  knife acl add client nodereaper containers clients read,delete
  knife acl bulk add client nodereaper nodes '.*' read,delete --yes
  knife acl bulk add client nodereaper clients '.*' read,delete --yes

Preferably grant a group holding the client instead (knife group create
reapers; knife group add client nodereaper reapers; then the commands above
with `group reapers` in place of `client nodereaper`). Search (/search/node)
needs no ACL of its own; when the server sets strict_search_result_acls, results
are filtered by each node's read ACL, which the grants above cover.";

/// Caveats printed with [`iam_policy`] (JSON policies cannot hold comments).
pub const IAM_POLICY_NOTE: &str = "\
ec2:DescribeInstances and autoscaling:DescribeAutoScalingInstances support no
resource-level permissions (Resource \"*\"). autoscaling:CompleteLifecycleAction
and autoscaling:RecordLifecycleActionHeartbeat may be narrowed to the groups'
ARNs (arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:*:autoScalingGroupName/NAME).";

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
}

impl Default for LifecycleHookSpec {
    fn default() -> Self {
        Self {
            hook_name: DEFAULT_HOOK_NAME.into(),
            heartbeat_timeout_secs: 300,
            default_result: "CONTINUE".into(),
            role_arn: None,
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
        if let Some(hook) = &self.lifecycle_hook {
            if self.asg_names.is_empty() && self.asg_tag.is_none() {
                return invalid(
                    "a lifecycle hook needs Auto Scaling groups (names or a tag)".into(),
                );
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
        }
        Ok(())
    }
}

/// A setup failure: which resource, and the AWS error (or the bad input).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `error` names the resource as its target.
    #[error("{error}")]
    Aws {
        resource: String,
        error: Box<AwsError>,
    },
    #[error("invalid setup: {0}")]
    Invalid(String),
}

impl SetupError {
    fn aws<E>(
        resource: &str,
        service: &'static str,
        operation: &'static str,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let error = AwsError::from_sdk(service, operation, resource, err);
        SetupError::Aws {
            resource: resource.into(),
            error: Box::new(error),
        }
    }

    fn answer(
        resource: &str,
        service: &'static str,
        operation: &'static str,
        message: &str,
    ) -> Self {
        let error = AwsError::invalid(service, operation, resource, message);
        SetupError::Aws {
            resource: resource.into(),
            error: Box::new(error),
        }
    }
}

impl Classify for SetupError {
    fn retry(&self) -> Retry {
        match self {
            SetupError::Aws { error, .. } => error.retry(),
            SetupError::Invalid(_) => Retry::Permanent,
        }
    }

    /// Setup handles no message.
    fn blames_message(&self) -> bool {
        false
    }
}

/// What setup did (or would do) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Created,
    Updated,
    Unchanged,
    WouldCreate,
    WouldUpdate,
    /// Not done; setup went on (see [`SetupReport::warnings`]).
    Failed,
}

impl ChangeAction {
    fn planned(dry_run: bool, exists: bool) -> Self {
        match (dry_run, exists) {
            (false, false) => Self::Created,
            (false, true) => Self::Updated,
            (true, false) => Self::WouldCreate,
            (true, true) => Self::WouldUpdate,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::WouldCreate => "would create",
            Self::WouldUpdate => "would update",
            Self::Failed => "FAILED",
        }
    }
}

/// One line of the report. `resource` is `<kind> <name>`, kind one of
/// `sns-topic`, `sqs-dlq`, `sqs-queue`, `sqs-queue-policy`,
/// `sns-subscription`, `eventbridge-rule`, `eventbridge-target`,
/// `asg-notification`, `asg-lifecycle-hook`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub resource: String,
    pub action: ChangeAction,
    /// What is (or would be) there, or the differences `have -> want`.
    pub detail: String,
}

/// The outcome of [`setup`]. URLs and ARNs are `None` for what does not
/// exist (yet: dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetupReport {
    pub changes: Vec<Change>,
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub queue_arn: Option<String>,
    pub dlq_arn: Option<String>,
    pub topic_arn: Option<String>,
    /// Non-fatal problems, one per [`ChangeAction::Failed`] change, plus advice.
    pub warnings: Vec<String>,
}

impl SetupReport {
    /// No step failed (a CLI should exit non-zero otherwise).
    pub fn is_complete(&self) -> bool {
        self.changes
            .iter()
            .all(|c| c.action != ChangeAction::Failed)
    }

    /// The change whose resource is `<kind> <name>`.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Change> {
        self.changes
            .iter()
            .find(|c| c.resource.split_once(' ') == Some((kind, name)))
    }

    fn push(&mut self, resource: String, action: ChangeAction, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(%resource, action = action.as_str(), %detail, "setup");
        self.changes.push(Change {
            resource,
            action,
            detail,
        });
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "{:<13} {}: {}", c.action.as_str(), c.resource, c.detail)?;
        }
        for (label, value) in [
            ("queue url", &self.queue_url),
            ("dlq url", &self.dlq_url),
            ("topic arn", &self.topic_arn),
        ] {
            if let Some(v) = value {
                writeln!(f, "{label}: {v}")?;
            }
        }
        self.warnings
            .iter()
            .try_for_each(|w| writeln!(f, "warning: {w}"))
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
    let retention = spec.message_retention_secs.to_string();
    let dlq_name = spec.dlq_name();
    let dlq = s
        .queue(
            "sqs-dlq",
            &dlq_name,
            &[(Qa::MessageRetentionPeriod, retention.clone())],
        )
        .await?;
    let redrive =
        json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": spec.max_receive_count});
    let desired = [
        (
            Qa::VisibilityTimeout,
            spec.visibility_timeout_secs.to_string(),
        ),
        (Qa::MessageRetentionPeriod, retention),
        (Qa::RedrivePolicy, redrive.to_string()),
    ];
    let queue = s.queue("sqs-queue", &spec.name, &desired).await?;
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
    for group in &groups {
        let outcome = s.notification(group, &topic.arn).await;
        s.record_step(format!("asg-notification {group}"), outcome)?;
        if let Some(hook) = &spec.lifecycle_hook {
            let outcome = s.hook(group, hook, &topic.arn).await;
            s.record_step(
                format!("asg-lifecycle-hook {group}/{}", hook.hook_name),
                outcome,
            )?;
        }
    }
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

/// The queue policy setup writes: `sqs:SendMessage` for the topic and, with
/// a rule, for the EventBridge rule; nothing else.
pub fn queue_policy(queue_arn: &str, topic_arn: &str, rule_arn: Option<&str>) -> Value {
    let allow = |sid: &str, service: &str, source: &str| {
        json!({
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": source}},
        })
    };
    let mut statements = vec![allow("NodereaperSnsTopic", "sns.amazonaws.com", topic_arn)];
    statements
        .extend(rule_arn.map(|r| allow("NodereaperEventBridgeRule", "events.amazonaws.com", r)));
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The EventBridge pattern: Auto Scaling terminations, restricted to
/// `groups` unless empty. Groups found by tag are a snapshot: re-run setup
/// when groups are added. Lifecycle actions only of `hook` (nodereaper's
/// own; another team's hook must not be completed by nodereaper):
/// `LifecycleHookName` equal to it, or absent (the "Terminate Successful"
/// events carry no hook).
pub fn event_pattern(groups: &[String], hook: &str) -> Value {
    let mut pattern = json!({
        "source": ["aws.autoscaling"],
        "detail-type": EVENT_DETAIL_TYPES,
        "detail": {"LifecycleHookName": [hook, {"exists": false}]},
    });
    if !groups.is_empty() {
        pattern["detail"]["AutoScalingGroupName"] = json!(groups);
    }
    pattern
}

/// The least-privilege IAM policy for the daemon: exactly the calls it
/// makes. Empty ARN lists give `arn:aws:sqs:*:*:nodereaper[-dlq]`
/// placeholders; `journal` is the S3 journal's (bucket, key prefix). See
/// [`IAM_POLICY_NOTE`].
pub fn iam_policy(
    queue_arns: &[String],
    dlq_arns: &[String],
    journal: Option<(&str, &str)>,
) -> Value {
    let or = |arns: &[String], placeholder: &str| {
        if arns.is_empty() {
            vec![placeholder.to_string()]
        } else {
            arns.to_vec()
        }
    };
    let queues = or(queue_arns, "arn:aws:sqs:*:*:nodereaper");
    let dlqs = or(dlq_arns, "arn:aws:sqs:*:*:nodereaper-dlq");
    let partition = queues[0]
        .split(':')
        .nth(1)
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
        .to_string();
    let mut statements = vec![
        json!({
            "Sid": "ConsumeQueues",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                       "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
            "Resource": queues.iter().chain(&dlqs).collect::<Vec<_>>(),
        }),
        json!({"Sid": "DeadLetter", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": dlqs}),
        json!({
            "Sid": "DescribeInstances",
            "Effect": "Allow",
            "Action": ["ec2:DescribeInstances", "autoscaling:DescribeAutoScalingInstances"],
            "Resource": "*",
        }),
        json!({
            "Sid": "LifecycleActions",
            "Effect": "Allow",
            "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
            "Resource": "*",
        }),
    ];
    if let Some((bucket, prefix)) = journal {
        statements.push(json!({
            "Sid": "JournalObjects",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": format!("arn:{partition}:s3:::{bucket}/{prefix}*"),
        }));
        statements.push(json!({
            "Sid": "JournalList",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": format!("arn:{partition}:s3:::{bucket}"),
            "Condition": {"StringLike": {"s3:prefix": [format!("{prefix}*")]}},
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The statement that lets nodereaper read its Chef key from a secret store
/// (`chef.client_key_secret` / `chef.client_key_parameter`), to add to
/// [`iam_policy`]'s statements when such a key is configured.
pub fn key_store_statement(store: &crate::adapters::secrets::KeyStore) -> Value {
    let partition = store
        .name()
        .strip_prefix("arn:")
        .and_then(|r| r.split(':').next())
        .unwrap_or("aws");
    json!({
        "Sid": "ChefKey",
        "Effect": "Allow",
        "Action": [store.permission()],
        "Resource": store.resource_arn(partition),
    })
}

/// [`iam_policy`] plus the key-store read of `chef` when one is configured.
pub fn iam_policy_for(
    queue_arns: &[String],
    dlq_arns: &[String],
    journal: Option<(&str, &str)>,
    chef: &crate::config::ChefConfig,
) -> Value {
    let mut policy = iam_policy(queue_arns, dlq_arns, journal);
    if let (Some(store), Some(statements)) = (
        crate::adapters::secrets::KeyStore::from_config(chef),
        policy["Statement"].as_array_mut(),
    ) {
        statements.push(key_store_statement(&store));
    }
    policy
}

/// A resource setup knows the ARN of: real, or predicted in a dry run.
struct Known {
    arn: String,
    url: Option<String>,
    exists: bool,
}

/// A per-group step's failure: fatal, or "the endpoint does not implement
/// this call" (reported with the reason, setup goes on).
enum StepError {
    Fatal(SetupError),
    Unsupported(String),
}

impl From<SetupError> for StepError {
    fn from(e: SetupError) -> Self {
        StepError::Fatal(e)
    }
}

fn step_err<E>(
    resource: &str,
    service: &'static str,
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // An AWS error code saying so, or an HTTP 500/501 without any AWS error
    // code (moto answers unimplemented actions with a bare HTML 500).
    let status = err.raw_response().map(|r| r.status().as_u16());
    let answer = match (err.code(), status) {
        (Some(code), _) if UNSUPPORTED_CODES.contains(&code) => code.to_string(),
        (None, Some(s @ (500 | 501))) => format!("HTTP {s} without an AWS error code"),
        _ => return StepError::Fatal(SetupError::aws(resource, service, operation, err)),
    };
    let error = AwsError::from_sdk(service, operation, resource, err);
    tracing::debug!(%resource, %error, "call not implemented by the endpoint");
    StepError::Unsupported(format!(
        "{service} {operation} is not implemented by this endpoint ({answer})"
    ))
}

type StepOutcome = Result<(ChangeAction, String), StepError>;

/// JSON equality up to key order and one-element arrays vs. scalars (IAM
/// policies may come back in either form).
fn same_json(a: &Value, b: &Value) -> bool {
    fn norm(v: &Value) -> Value {
        match v {
            Value::Array(items) if items.len() == 1 => norm(&items[0]),
            Value::Array(items) => Value::Array(items.iter().map(norm).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), norm(v))).collect())
            }
            Value::Number(n) => Value::String(n.to_string()),
            other => other.clone(),
        }
    }
    norm(a) == norm(b)
}

fn same_json_text(have: Option<&str>, want: &str) -> bool {
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    matches!((have.and_then(parse), parse(want)), (Some(h), Some(w)) if same_json(&h, &w))
}

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

    /// The groups to wire: the named ones (which must exist) and the tagged ones.
    async fn groups(&self) -> Result<Vec<String>, SetupError> {
        let mut named = BTreeSet::new();
        for chunk in self.spec.asg_names.chunks(50) {
            let req = self
                .asg
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()));
            named.extend(self.group_names(req).await?);
        }
        let missing: Vec<_> = self
            .spec
            .asg_names
            .iter()
            .filter(|n| !named.contains(*n))
            .collect();
        if !missing.is_empty() {
            return Err(SetupError::Invalid(format!(
                "Auto Scaling group(s) not found: {missing:?}"
            )));
        }
        if let Some((key, value)) = &self.spec.asg_tag {
            // `tag:KEY = VALUE` matches the pair; tag-key + tag-value filters
            // would also match a group with KEY=other and another tag = VALUE.
            let filter = Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build();
            let tagged = self
                .group_names(self.asg.describe_auto_scaling_groups().filters(filter))
                .await?;
            if tagged.is_empty() {
                return Err(SetupError::Invalid(format!(
                    "no Auto Scaling group has the tag {key}={value}"
                )));
            }
            named.extend(tagged);
        }
        Ok(named.into_iter().collect())
    }

    async fn group_names(
        &self,
        req: aws_sdk_autoscaling::operation::describe_auto_scaling_groups::builders::DescribeAutoScalingGroupsFluentBuilder,
    ) -> Result<Vec<String>, SetupError> {
        let mut out = Vec::new();
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                SetupError::aws("asg-groups", "AutoScaling", "DescribeAutoScalingGroups", e)
            })?;
            out.extend(
                page.auto_scaling_groups()
                    .iter()
                    .filter_map(|g| g.auto_scaling_group_name())
                    .map(str::to_string),
            );
        }
        Ok(out)
    }

    async fn topic(&mut self) -> Result<Known, SetupError> {
        let name = &self.spec.name;
        let resource = format!("sns-topic {name}");
        let mut pages = self.sns.list_topics().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| SetupError::aws(&resource, "SNS", "ListTopics", e))?;
            let found = page
                .topics()
                .iter()
                .filter_map(|t| t.topic_arn())
                .find(|a| a.rsplit(':').next() == Some(name));
            if let Some(arn) = found {
                self.report.push(resource, ChangeAction::Unchanged, arn);
                return Ok(Known {
                    arn: arn.to_string(),
                    url: None,
                    exists: true,
                });
            }
        }
        let arn = if self.dry() {
            self.predict_arn("sns", name).await?
        } else {
            let out = self
                .sns
                .create_topic()
                .name(name)
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "SNS", "CreateTopic", e))?;
            let arn = out.topic_arn().ok_or_else(|| {
                SetupError::answer(&resource, "SNS", "CreateTopic", "no TopicArn")
            })?;
            arn.to_string()
        };
        self.report
            .push(resource, ChangeAction::planned(self.dry(), false), &arn);
        Ok(Known {
            arn,
            url: None,
            exists: !self.dry(),
        })
    }

    /// Creates queue `name` with `desired` attributes, or sets those that differ.
    async fn queue(
        &mut self,
        kind: &str,
        name: &str,
        desired: &[(Qa, String)],
    ) -> Result<Known, SetupError> {
        let resource = format!("{kind} {name}");
        let summary = desired
            .iter()
            .map(|(k, v)| format!("{}={v}", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let url = match self.sqs.get_queue_url().queue_name(name).send().await {
            Ok(out) => out.queue_url().map(str::to_string),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist())
                    || e.code() == Some(NON_EXISTENT_QUEUE) =>
            {
                None
            }
            Err(e) => return Err(SetupError::aws(&resource, "SQS", "GetQueueUrl", e)),
        };
        let Some(url) = url else {
            if self.dry() {
                let arn = self.predict_arn("sqs", name).await?;
                self.report
                    .push(resource, ChangeAction::WouldCreate, summary);
                return Ok(Known {
                    arn,
                    url: None,
                    exists: false,
                });
            }
            let attrs: HashMap<_, _> = desired.iter().cloned().collect();
            let out = self
                .sqs
                .create_queue()
                .queue_name(name)
                .set_attributes(Some(attrs))
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "SQS", "CreateQueue", e))?;
            let url = out.queue_url().ok_or_else(|| {
                SetupError::answer(&resource, "SQS", "CreateQueue", "no QueueUrl")
            })?;
            let current = self.queue_attributes(&resource, url, &[]).await?;
            let arn = current.get(&Qa::QueueArn).cloned();
            let arn = arn.ok_or_else(|| {
                SetupError::answer(&resource, "SQS", "GetQueueAttributes", "no QueueArn")
            })?;
            self.report.push(resource, ChangeAction::Created, summary);
            return Ok(Known {
                arn,
                url: Some(url.to_string()),
                exists: true,
            });
        };
        let keys: Vec<Qa> = desired.iter().map(|(k, _)| k.clone()).collect();
        let current = self.queue_attributes(&resource, &url, &keys).await?;
        let arn = current.get(&Qa::QueueArn).cloned();
        let arn = arn.ok_or_else(|| {
            SetupError::answer(&resource, "SQS", "GetQueueAttributes", "no QueueArn")
        })?;
        let diffs: Vec<_> = desired
            .iter()
            .filter(|(k, want)| match k {
                Qa::RedrivePolicy | Qa::Policy => {
                    !same_json_text(current.get(k).map(String::as_str), want)
                }
                _ => current.get(k) != Some(want),
            })
            .collect();
        if diffs.is_empty() {
            self.report.push(resource, ChangeAction::Unchanged, summary);
        } else {
            let detail = diffs
                .iter()
                .map(|(k, want)| {
                    format!(
                        "{}: {} -> {want}",
                        k.as_str(),
                        current.get(k).map_or("(unset)", String::as_str)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            if !self.dry() {
                let attrs = diffs.into_iter().cloned().collect();
                let out = self
                    .sqs
                    .set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(attrs))
                    .send()
                    .await;
                out.map_err(|e| SetupError::aws(&resource, "SQS", "SetQueueAttributes", e))?;
            }
            self.report
                .push(resource, ChangeAction::planned(self.dry(), true), detail);
        }
        Ok(Known {
            arn,
            url: Some(url),
            exists: true,
        })
    }

    /// `QueueArn` plus `names`.
    async fn queue_attributes(
        &self,
        resource: &str,
        url: &str,
        names: &[Qa],
    ) -> Result<HashMap<Qa, String>, SetupError> {
        let mut req = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(Qa::QueueArn);
        for n in names {
            req = req.attribute_names(n.clone());
        }
        let out = req
            .send()
            .await
            .map_err(|e| SetupError::aws(resource, "SQS", "GetQueueAttributes", e))?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }

    async fn queue_policy(
        &mut self,
        queue: &Known,
        topic: &Known,
        rule: Option<&Known>,
    ) -> Result<(), SetupError> {
        let resource = format!("sqs-queue-policy {}", self.spec.name);
        let desired = queue_policy(&queue.arn, &topic.arn, rule.map(|r| r.arn.as_str()));
        let mut detail = format!("sqs:SendMessage from {}", topic.arn);
        if let Some(r) = rule {
            detail += &format!(" and {}", r.arn);
        }
        let Some(url) = &queue.url else {
            self.report
                .push(resource, ChangeAction::WouldCreate, detail);
            return Ok(());
        };
        let current = self
            .queue_attributes(&resource, url, &[Qa::Policy])
            .await?
            .remove(&Qa::Policy);
        if same_json_text(current.as_deref(), &desired.to_string()) {
            self.report.push(resource, ChangeAction::Unchanged, detail);
            return Ok(());
        }
        if let Some(old) = &current {
            detail += &format!("; replaces {old}");
        }
        if !self.dry() {
            self.sqs
                .set_queue_attributes()
                .queue_url(url)
                .attributes(Qa::Policy, desired.to_string())
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "SQS", "SetQueueAttributes", e))?;
        }
        self.report.push(
            resource,
            ChangeAction::planned(self.dry(), current.is_some()),
            detail,
        );
        Ok(())
    }

    /// Topic -> queue, raw delivery off (nodereaper parses the envelope).
    async fn subscription(&mut self, topic: &Known, queue: &Known) -> Result<(), SetupError> {
        let resource = format!("sns-subscription {}", self.spec.name);
        let detail = format!(
            "{} -> {} (sqs, RawMessageDelivery=false)",
            topic.arn, queue.arn
        );
        let mut existing = None;
        if topic.exists {
            let mut pages = self
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(&topic.arn)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    SetupError::aws(&resource, "SNS", "ListSubscriptionsByTopic", e)
                })?;
                let mut subs = page.subscriptions().iter();
                let ours = subs.find(|s| {
                    s.protocol() == Some("sqs") && s.endpoint() == Some(queue.arn.as_str())
                });
                if let Some(sub) = ours {
                    existing = sub.subscription_arn().map(str::to_string);
                    break;
                }
            }
        }
        let Some(arn) = existing else {
            if !self.dry() {
                self.sns
                    .subscribe()
                    .topic_arn(&topic.arn)
                    .protocol("sqs")
                    .endpoint(&queue.arn)
                    .attributes("RawMessageDelivery", "false")
                    .return_subscription_arn(true)
                    .send()
                    .await
                    .map_err(|e| SetupError::aws(&resource, "SNS", "Subscribe", e))?;
            }
            self.report
                .push(resource, ChangeAction::planned(self.dry(), false), detail);
            return Ok(());
        };
        if arn == "PendingConfirmation" {
            self.report.warnings.push(format!(
                "{resource}: pending confirmation (queue in another account?)"
            ));
            self.report.push(
                resource,
                ChangeAction::Unchanged,
                format!("{detail}, pending confirmation"),
            );
            return Ok(());
        }
        let attrs = self
            .sns
            .get_subscription_attributes()
            .subscription_arn(&arn)
            .send()
            .await
            .map_err(|e| SetupError::aws(&resource, "SNS", "GetSubscriptionAttributes", e))?;
        let raw = attrs
            .attributes()
            .and_then(|a| a.get("RawMessageDelivery"))
            .is_some_and(|v| v == "true");
        if !raw {
            self.report.push(resource, ChangeAction::Unchanged, detail);
            return Ok(());
        }
        if !self.dry() {
            self.sns
                .set_subscription_attributes()
                .subscription_arn(&arn)
                .attribute_name("RawMessageDelivery")
                .attribute_value("false")
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "SNS", "SetSubscriptionAttributes", e))?;
        }
        let detail = "RawMessageDelivery: true -> false (nodereaper parses the SNS envelope)";
        self.report
            .push(resource, ChangeAction::planned(self.dry(), true), detail);
        Ok(())
    }

    async fn rule(&mut self, groups: &[String]) -> Result<Known, SetupError> {
        let name = self.spec.rule_name();
        let resource = format!("eventbridge-rule {name}");
        let hook = self
            .spec
            .lifecycle_hook
            .as_ref()
            .map_or(DEFAULT_HOOK_NAME, |h| h.hook_name.as_str());
        let pattern = event_pattern(groups, hook).to_string();
        let current = match self.events.describe_rule().name(&name).send().await {
            Ok(out) => Some(out),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(SetupError::aws(&resource, "EventBridge", "DescribeRule", e)),
        };
        let mut diffs = Vec::new();
        if let Some(r) = &current {
            if !same_json_text(r.event_pattern(), &pattern) {
                diffs.push(format!(
                    "EventPattern: {} -> {pattern}",
                    r.event_pattern().unwrap_or("(unset)")
                ));
            }
            if r.state() != Some(&RuleState::Enabled) {
                diffs.push(format!(
                    "State: {:?} -> ENABLED",
                    r.state().map(RuleState::as_str)
                ));
            }
        }
        let existing_arn = current.as_ref().and_then(|r| r.arn()).map(str::to_string);
        if let (Some(arn), true) = (&existing_arn, diffs.is_empty()) {
            self.report.push(resource, ChangeAction::Unchanged, pattern);
            return Ok(Known {
                arn: arn.clone(),
                url: None,
                exists: true,
            });
        }
        let arn = if self.dry() {
            match existing_arn {
                Some(arn) => arn,
                None => self.predict_arn("events", &format!("rule/{name}")).await?,
            }
        } else {
            let out = self
                .events
                .put_rule()
                .name(&name)
                .event_pattern(&pattern)
                .state(RuleState::Enabled)
                .description("Auto Scaling terminations for nodereaper")
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "EventBridge", "PutRule", e))?;
            let arn = out.rule_arn().ok_or_else(|| {
                SetupError::answer(&resource, "EventBridge", "PutRule", "no RuleArn")
            })?;
            arn.to_string()
        };
        let detail = if diffs.is_empty() {
            pattern
        } else {
            diffs.join("; ")
        };
        self.report.push(
            resource,
            ChangeAction::planned(self.dry(), current.is_some()),
            detail,
        );
        Ok(Known {
            arn,
            url: None,
            exists: !self.dry() || current.is_some(),
        })
    }

    async fn rule_target(&mut self, rule: &Known, queue: &Known) -> Result<(), SetupError> {
        let rule_name = self.spec.rule_name();
        let resource = format!("eventbridge-target {rule_name}");
        let detail = format!("{EVENT_TARGET_ID} -> {}", queue.arn);
        let mut targets = Vec::new();
        if rule.exists {
            let out = self
                .events
                .list_targets_by_rule()
                .rule(&rule_name)
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "EventBridge", "ListTargetsByRule", e))?;
            targets = out.targets().to_vec();
        }
        if targets.iter().any(|t| t.arn() == queue.arn) {
            self.report.push(resource, ChangeAction::Unchanged, detail);
            return Ok(());
        }
        if !self.dry() {
            let target = Target::builder()
                .id(EVENT_TARGET_ID)
                .arn(&queue.arn)
                .build();
            let target = target.map_err(|e| SetupError::Invalid(format!("{resource}: {e}")))?;
            let out = self
                .events
                .put_targets()
                .rule(&rule_name)
                .targets(target)
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "EventBridge", "PutTargets", e))?;
            if let Some(failed) = out.failed_entries().first() {
                let msg = format!("{:?}: {:?}", failed.error_code(), failed.error_message());
                return Err(SetupError::answer(
                    &resource,
                    "EventBridge",
                    "PutTargets",
                    &msg,
                ));
            }
        }
        let exists = targets.iter().any(|t| t.id() == EVENT_TARGET_ID);
        self.report
            .push(resource, ChangeAction::planned(self.dry(), exists), detail);
        Ok(())
    }

    /// Reports a per-group step; "not implemented" becomes `Failed` + warning.
    fn record_step(&mut self, resource: String, outcome: StepOutcome) -> Result<(), SetupError> {
        match outcome {
            Ok((action, detail)) => self.report.push(resource, action, detail),
            Err(StepError::Fatal(e)) => return Err(e),
            Err(StepError::Unsupported(reason)) => {
                let detail = format!("not done: {reason}");
                tracing::warn!(%resource, %detail, "setup step failed");
                self.report.warnings.push(format!("{resource}: {detail}"));
                self.report.push(resource, ChangeAction::Failed, detail);
            }
        }
        Ok(())
    }

    /// The group notifies the topic of EC2_INSTANCE_TERMINATE (keeping any
    /// other type it already sends to this topic: Put replaces the set).
    ///
    /// moto 5.2 implements neither DescribeNotificationConfigurations nor
    /// PutNotificationConfiguration (bare HTTP 500): against it this step is
    /// reported `Failed`.
    async fn notification(&self, group: &str, topic_arn: &str) -> StepOutcome {
        let resource = format!("asg-notification {group}");
        let mut types = BTreeSet::new();
        let mut pages = self
            .asg
            .describe_notification_configurations()
            .auto_scaling_group_names(group)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                step_err(
                    &resource,
                    "AutoScaling",
                    "DescribeNotificationConfigurations",
                    e,
                )
            })?;
            let ours = page
                .notification_configurations()
                .iter()
                .filter(|c| c.topic_arn() == Some(topic_arn));
            types.extend(
                ours.filter_map(|c| c.notification_type())
                    .map(str::to_string),
            );
        }
        let detail = format!("{TERMINATE_NOTIFICATION} -> {topic_arn}");
        if types.contains(TERMINATE_NOTIFICATION) {
            return Ok((ChangeAction::Unchanged, detail));
        }
        let exists = !types.is_empty();
        types.insert(TERMINATE_NOTIFICATION.to_string());
        if !self.dry() {
            self.asg
                .put_notification_configuration()
                .auto_scaling_group_name(group)
                .topic_arn(topic_arn)
                .set_notification_types(Some(types.into_iter().collect()))
                .send()
                .await
                .map_err(|e| {
                    step_err(&resource, "AutoScaling", "PutNotificationConfiguration", e)
                })?;
        }
        Ok((ChangeAction::planned(self.dry(), exists), detail))
    }

    /// The termination lifecycle hook notifying the topic.
    ///
    /// moto 5.2 stores neither NotificationTargetARN nor RoleARN (it returns
    /// fixed placeholder values), so against it a re-run reports `Updated`.
    async fn hook(&self, group: &str, hook: &LifecycleHookSpec, topic_arn: &str) -> StepOutcome {
        let resource = format!("asg-lifecycle-hook {group}/{}", hook.hook_name);
        let out = self
            .asg
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .lifecycle_hook_names(&hook.hook_name)
            .send()
            .await
            .map_err(|e| step_err(&resource, "AutoScaling", "DescribeLifecycleHooks", e))?;
        let current = out
            .lifecycle_hooks()
            .iter()
            .find(|h| h.lifecycle_hook_name() == Some(hook.hook_name.as_str()));
        let role = hook.role_arn.clone().unwrap_or_default();
        let want = [
            ("LifecycleTransition", TERMINATING_TRANSITION.to_string()),
            ("NotificationTargetARN", topic_arn.to_string()),
            ("RoleARN", role.clone()),
            ("HeartbeatTimeout", hook.heartbeat_timeout_secs.to_string()),
            ("DefaultResult", hook.default_result.clone()),
        ];
        let have = current.map(|h| {
            [
                h.lifecycle_transition().map(str::to_string),
                h.notification_target_arn().map(str::to_string),
                h.role_arn().map(str::to_string),
                h.heartbeat_timeout().map(|t| t.to_string()),
                h.default_result().map(str::to_string),
            ]
        });
        let diffs: Vec<String> = want
            .iter()
            .enumerate()
            .filter_map(|(i, (field, w))| {
                let h = have.as_ref().and_then(|h| h[i].as_deref());
                (h != Some(w.as_str()))
                    .then(|| format!("{field}: {} -> {w}", h.unwrap_or("(unset)")))
            })
            .collect();
        let summary = want
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        if diffs.is_empty() {
            return Ok((ChangeAction::Unchanged, summary));
        }
        if !self.dry() {
            self.asg
                .put_lifecycle_hook()
                .auto_scaling_group_name(group)
                .lifecycle_hook_name(&hook.hook_name)
                .lifecycle_transition(TERMINATING_TRANSITION)
                .notification_target_arn(topic_arn)
                .role_arn(role)
                .heartbeat_timeout(i32::try_from(hook.heartbeat_timeout_secs).unwrap_or(i32::MAX))
                .default_result(&hook.default_result)
                .send()
                .await
                .map_err(|e| step_err(&resource, "AutoScaling", "PutLifecycleHook", e))?;
        }
        let detail = if current.is_some() {
            diffs.join("; ")
        } else {
            summary
        };
        Ok((ChangeAction::planned(self.dry(), current.is_some()), detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_comparison_ignores_order_singletons_and_number_strings() {
        let a = json!({"Statement": [{"Action": "sqs:SendMessage", "Effect": "Allow"}], "Version": "2012-10-17"});
        let b = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": ["sqs:SendMessage"]}});
        assert!(same_json(&a, &b));
        assert!(same_json_text(
            Some(r#"{"maxReceiveCount":"10","deadLetterTargetArn":"x"}"#),
            r#"{"deadLetterTargetArn":"x","maxReceiveCount":10}"#
        ));
        assert!(!same_json_text(
            Some(r#"{"maxReceiveCount":5}"#),
            r#"{"maxReceiveCount":10}"#
        ));
        assert!(!same_json_text(None, "{}"));
    }

    #[test]
    fn pattern_restricts_to_groups_only_when_given_and_always_to_our_hook() {
        let all = event_pattern(&[], "nodereaper-terminate");
        assert!(all["detail"].get("AutoScalingGroupName").is_none());
        assert_eq!(
            all["detail"]["LifecycleHookName"],
            json!(["nodereaper-terminate", {"exists": false}])
        );
        let p = event_pattern(&["web".into()], "h");
        assert_eq!(p["detail"]["AutoScalingGroupName"], json!(["web"]));
        assert_eq!(
            p["detail"]["LifecycleHookName"],
            json!(["h", {"exists": false}])
        );
        assert_eq!(p["detail-type"], json!(EVENT_DETAIL_TYPES));
    }

    #[test]
    fn policy_allows_only_topic_and_rule() {
        let p = queue_policy("arn:q", "arn:t", Some("arn:r"));
        let statements = p["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:t"
        );
        assert_eq!(
            statements[1]["Principal"]["Service"],
            "events.amazonaws.com"
        );
    }

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

    #[test]
    fn iam_policy_scopes_and_placeholders() {
        let p = iam_policy(&[], &[], Some(("bucket", "nodereaper/journal/")));
        let s = p["Statement"].as_array().expect("statements");
        assert_eq!(
            s[0]["Resource"],
            json!([
                "arn:aws:sqs:*:*:nodereaper",
                "arn:aws:sqs:*:*:nodereaper-dlq"
            ])
        );
        assert_eq!(s[1]["Resource"], json!(["arn:aws:sqs:*:*:nodereaper-dlq"]));
        assert_eq!(s[4]["Resource"], "arn:aws:s3:::bucket/nodereaper/journal/*");
        let cn = iam_policy(
            &["arn:aws-cn:sqs:cn-north-1:1:q".into()],
            &[],
            Some(("b", "")),
        );
        assert_eq!(cn["Statement"][5]["Resource"], "arn:aws-cn:s3:::b");
    }
}

//! Which IAM action each AWS call of nodereaper needs, and in which statement
//! of the printed policy (`nodereaper setup --print-iam-policy`) it lives.
//! The policy is built from this table (`jobs::setup::iam`), and a denied
//! call names its action and statement from it, so the two cannot drift.

/// One AWS call nodereaper makes, as its errors name it ([`super::AwsError`]'s
/// `service` and `operation`), and the IAM action that authorises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The service as [`super::AwsError::service`] names it.
    pub service: &'static str,
    /// The API operation as AWS names it.
    pub operation: &'static str,
    /// The IAM action (`service:Action`) that authorises the call.
    pub action: &'static str,
    /// The `Sid` of the statement of the printed policy that grants it.
    pub statement: &'static str,
}

const fn call(
    service: &'static str,
    operation: &'static str,
    action: &'static str,
    statement: &'static str,
) -> Call {
    Call {
        service,
        operation,
        action,
        statement,
    }
}

/// Statement ids of the daemon's policy.
pub mod sid {
    /// Receive, delete, hide and inspect messages of the queues and DLQs.
    pub const CONSUME: &str = "ConsumeQueues";
    /// Send a message the pipeline gave up on to the DLQ.
    pub const DEAD_LETTER: &str = "DeadLetter";
    /// Is the instance really gone (EC2, Auto Scaling): no resource scoping.
    pub const DESCRIBE: &str = "DescribeInstances";
    /// Complete and extend lifecycle actions of the groups.
    pub const LIFECYCLE: &str = "LifecycleActions";
    /// The S3 journal's objects (write, read, probe and prune).
    pub const JOURNAL_OBJECTS: &str = "JournalObjects";
    /// Listing the S3 journal's prefix.
    pub const JOURNAL_LIST: &str = "JournalList";
    /// The SSE-KMS key of the S3 journal.
    pub const JOURNAL_KEY: &str = "JournalKey";
    /// Assume the role of each `[[aws.accounts]]` entry.
    pub const ACCOUNTS: &str = "AssumeAccountRoles";
    /// Read the Chef key from Secrets Manager.
    pub const KEY_SECRET: &str = "ChefKeySecret";
    /// Read the Chef key from SSM Parameter Store.
    pub const KEY_PARAMETER: &str = "ChefKeyParameter";
    /// Read the Auto Scaling group tag that names a Chef target (several
    /// targets, `[routing] group_tag`): no resource scoping.
    pub const GROUP_TAGS: &str = "DescribeGroupTags";
    /// The Lambda function's own log group.
    pub const LOGS: &str = "Logs";
}

/// Every AWS call the daemon, the Lambda handler and the one-off commands
/// make with nodereaper's own role (not `setup`'s).
pub const CALLS: &[Call] = &[
    call("SQS", "ReceiveMessage", "sqs:ReceiveMessage", sid::CONSUME),
    call("SQS", "DeleteMessage", "sqs:DeleteMessage", sid::CONSUME),
    // Batch calls are authorised by the single action.
    call(
        "SQS",
        "DeleteMessageBatch",
        "sqs:DeleteMessage",
        sid::CONSUME,
    ),
    call(
        "SQS",
        "ChangeMessageVisibility",
        "sqs:ChangeMessageVisibility",
        sid::CONSUME,
    ),
    call(
        "SQS",
        "GetQueueAttributes",
        "sqs:GetQueueAttributes",
        sid::CONSUME,
    ),
    call("SQS", "GetQueueUrl", "sqs:GetQueueUrl", sid::CONSUME),
    call("SQS", "SendMessage", "sqs:SendMessage", sid::DEAD_LETTER),
    call(
        "EC2",
        "DescribeInstances",
        "ec2:DescribeInstances",
        sid::DESCRIBE,
    ),
    call(
        "AutoScaling",
        "DescribeAutoScalingInstances",
        "autoscaling:DescribeAutoScalingInstances",
        sid::DESCRIBE,
    ),
    call(
        "AutoScaling",
        "CompleteLifecycleAction",
        "autoscaling:CompleteLifecycleAction",
        sid::LIFECYCLE,
    ),
    call(
        "AutoScaling",
        "RecordLifecycleActionHeartbeat",
        "autoscaling:RecordLifecycleActionHeartbeat",
        sid::LIFECYCLE,
    ),
    call(
        "AutoScaling",
        "DescribeTags",
        "autoscaling:DescribeTags",
        sid::GROUP_TAGS,
    ),
    call("S3", "PutObject", "s3:PutObject", sid::JOURNAL_OBJECTS),
    call("S3", "GetObject", "s3:GetObject", sid::JOURNAL_OBJECTS),
    call(
        "S3",
        "DeleteObject",
        "s3:DeleteObject",
        sid::JOURNAL_OBJECTS,
    ),
    call("S3", "ListObjectsV2", "s3:ListBucket", sid::JOURNAL_LIST),
    // S3 calls KMS on nodereaper's behalf for SSE-KMS objects.
    call(
        "KMS",
        "GenerateDataKey",
        "kms:GenerateDataKey",
        sid::JOURNAL_KEY,
    ),
    call("KMS", "Decrypt", "kms:Decrypt", sid::JOURNAL_KEY),
    call("STS", "AssumeRole", "sts:AssumeRole", sid::ACCOUNTS),
    call(
        "Secrets Manager",
        "GetSecretValue",
        "secretsmanager:GetSecretValue",
        sid::KEY_SECRET,
    ),
    call(
        "SSM",
        "GetParameter",
        "ssm:GetParameter",
        sid::KEY_PARAMETER,
    ),
];

/// The IAM actions of one statement, in table order, without repeats.
pub fn actions_of(statement: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for c in CALLS.iter().filter(|c| c.statement == statement) {
        if !out.contains(&c.action) {
            out.push(c.action);
        }
    }
    out
}

/// The call `service` `operation`, when it is one of nodereaper's.
pub fn lookup(service: &str, operation: &str) -> Option<&'static Call> {
    CALLS
        .iter()
        .find(|c| c.service == service && c.operation == operation)
}

/// What to tell an operator when `service` `operation` was denied: the IAM
/// action and the statement to add it to, when the call is nodereaper's.
pub fn denial_hint(service: &str, operation: &str) -> Option<String> {
    lookup(service, operation).map(|c| {
        format!(
            "nodereaper's role lacks IAM action {}: add it (statement {:?} of \
             `nodereaper setup --print-iam-policy`)",
            c.action, c.statement
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_maps_to_one_statement_and_a_service_action() {
        for c in CALLS {
            let (svc, name) = c.action.split_once(':').expect("service:Action");
            assert!(!svc.is_empty() && !name.is_empty(), "{c:?}");
            assert_eq!(lookup(c.service, c.operation), Some(c));
        }
        assert_eq!(
            actions_of(sid::JOURNAL_OBJECTS),
            ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
        );
        assert_eq!(actions_of(sid::CONSUME).len(), 5);
        let hint = denial_hint("EC2", "DescribeInstances").expect("known call");
        assert!(
            hint.contains("ec2:DescribeInstances") && hint.contains("\"DescribeInstances\""),
            "{hint}"
        );
        assert!(denial_hint("SNS", "CreateTopic").is_none());
    }
}

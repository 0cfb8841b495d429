//! The IAM policies nodereaper needs (`setup --print-iam-policy`,
//! `--print-setup-policy`; the Chef part is `chef_acl`): printed for an
//! operator, nothing is changed.
//! The daemon's statements take their actions from
//! [`crate::adapters::aws::permissions::CALLS`], the table denied calls are
//! explained from, and their resources from the configuration
//! ([`PolicyScope`]).

use serde_json::{json, Value};

use crate::adapters::aws::permissions::{actions_of, sid};
use crate::adapters::secrets::KeyStore;

pub use super::arns::PolicyScope;

/// Caveats printed with [`iam_policy`] (JSON policies cannot hold comments).
pub const IAM_POLICY_NOTE: &str = "\
ec2:DescribeInstances and autoscaling:DescribeAutoScalingInstances support no
resource-level permissions (Resource \"*\"). The lifecycle actions are narrowed
to the groups given with --asg, else to every group of the queues' account and
region. In each [[aws.accounts]] account, the role named there needs the
DescribeInstances and LifecycleActions statements itself.";

/// The least-privilege IAM policy of nodereaper's role for `scope`: every
/// call of [`crate::adapters::aws::permissions::CALLS`] the configuration
/// makes, on the configured resources only. See [`IAM_POLICY_NOTE`].
pub fn daemon_policy(scope: &PolicyScope) -> Value {
    let p = &scope.partition;
    let statement = |id: &str, resource: Value| json!({"Sid": id, "Effect": "Allow", "Action": actions_of(id), "Resource": resource});
    let mut statements = vec![
        statement(
            sid::CONSUME,
            json!(scope.queues.iter().chain(&scope.dlqs).collect::<Vec<_>>()),
        ),
        statement(sid::DEAD_LETTER, json!(scope.dlqs)),
        statement(sid::DESCRIBE, json!("*")),
        statement(sid::LIFECYCLE, json!(scope.group_arns())),
    ];
    if scope.group_tags {
        // DescribeTags has no resource-level permissions.
        statements.push(statement(sid::GROUP_TAGS, json!("*")));
    }
    if let Some((bucket, prefix)) = &scope.journal {
        statements.push(statement(
            sid::JOURNAL_OBJECTS,
            json!(format!("arn:{p}:s3:::{bucket}/{prefix}*")),
        ));
        let mut list = statement(sid::JOURNAL_LIST, json!(format!("arn:{p}:s3:::{bucket}")));
        list["Condition"] = json!({"StringLike": {"s3:prefix": [format!("{prefix}*")]}});
        statements.push(list);
        if let Some(key) = scope.kms_key_arn() {
            statements.push(statement(sid::JOURNAL_KEY, json!(key)));
        }
    }
    if !scope.roles.is_empty() {
        statements.push(statement(sid::ACCOUNTS, json!(scope.roles)));
    }
    if let Some(store) = &scope.key_store {
        statements.push(key_store_statement(store));
    }
    if let Some(function) = &scope.lambda_function {
        statements.push(json!({
            "Sid": sid::LOGS,
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": format!(
                "arn:{p}:logs:{}:{}:log-group:/aws/lambda/{function}:*",
                scope.region, scope.account
            ),
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The daemon's policy for explicit queue and DLQ ARNs (empty: placeholders
/// `arn:aws:sqs:*:*:nodereaper[-dlq]`) and an S3 journal (bucket, prefix).
pub fn iam_policy(
    queue_arns: &[String],
    dlq_arns: &[String],
    journal: Option<(&str, &str)>,
) -> Value {
    daemon_policy(&PolicyScope::from_arns(queue_arns, dlq_arns, journal))
}

/// The statement that lets nodereaper read its Chef key from a secret store
/// (`chef.client_key_secret` / `chef.client_key_parameter`).
pub fn key_store_statement(store: &KeyStore) -> Value {
    let partition = store
        .name()
        .strip_prefix("arn:")
        .and_then(|r| r.split(':').next())
        .unwrap_or("aws");
    let id = match store {
        KeyStore::SecretsManager(_) => sid::KEY_SECRET,
        KeyStore::SsmParameter(_) => sid::KEY_PARAMETER,
    };
    json!({
        "Sid": id,
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
    let mut scope = PolicyScope::from_arns(queue_arns, dlq_arns, journal);
    scope.key_store = KeyStore::from_config(chef);
    daemon_policy(&scope)
}

/// What the person running `nodereaper setup` needs: every call setup
/// makes (it reads first, then creates or repairs).
pub fn setup_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "SetupQueues", "Effect": "Allow", "Resource": "*", "Action": [
                "sqs:CreateQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes"]},
            {"Sid": "SetupTopic", "Effect": "Allow", "Resource": "*", "Action": [
                "sns:CreateTopic", "sns:ListTopics", "sns:Subscribe",
                "sns:ListSubscriptionsByTopic", "sns:GetSubscriptionAttributes",
                "sns:SetSubscriptionAttributes"]},
            {"Sid": "SetupGroups", "Effect": "Allow", "Resource": "*", "Action": [
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeNotificationConfigurations",
                "autoscaling:PutNotificationConfiguration",
                "autoscaling:DescribeLifecycleHooks", "autoscaling:PutLifecycleHook"]},
            {"Sid": "SetupRule", "Effect": "Allow", "Resource": "*", "Action": [
                "events:DescribeRule", "events:PutRule", "events:ListTargetsByRule",
                "events:PutTargets"]},
            {"Sid": "SetupHookRole", "Effect": "Allow", "Resource": "*",
             "Action": ["iam:PassRole"],
             "Condition": {"StringEquals": {"iam:PassedToService": "autoscaling.amazonaws.com"}}},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            s[4]["Action"],
            json!(["s3:PutObject", "s3:GetObject", "s3:DeleteObject"])
        );
        let cn = iam_policy(
            &["arn:aws-cn:sqs:cn-north-1:1:q".into()],
            &[],
            Some(("b", "")),
        );
        assert_eq!(cn["Statement"][5]["Resource"], "arn:aws-cn:s3:::b");
    }

    #[test]
    fn describe_tags_only_when_group_tags_route() {
        let has = |scope: &PolicyScope| {
            daemon_policy(scope)["Statement"]
                .as_array()
                .expect("statements")
                .iter()
                .any(|s| {
                    s["Sid"] == sid::GROUP_TAGS
                        && s["Action"] == json!(["autoscaling:DescribeTags"])
                })
        };
        let mut scope = PolicyScope::from_arns(&[], &[], None);
        assert!(!has(&scope));
        scope.group_tags = true;
        assert!(has(&scope));
    }
}

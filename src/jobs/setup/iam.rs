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
    statements.extend(key_store_statements(&scope.key_stores));
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

/// The statements that let nodereaper read its Chef keys from secret
/// stores: one per kind of store, naming every key of that kind (several
/// Chef targets may each have their own).
pub fn key_store_statements(stores: &[KeyStore]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for store in stores {
        let statement = key_store_statement(store);
        match out.iter_mut().find(|s| s["Sid"] == statement["Sid"]) {
            Some(same) => {
                let mut resources = match same["Resource"].take() {
                    Value::Array(list) => list,
                    one => vec![one],
                };
                if !resources.contains(&statement["Resource"]) {
                    resources.push(statement["Resource"].clone());
                }
                same["Resource"] = Value::Array(resources);
            }
            None => out.push(statement),
        }
    }
    out
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
    scope.key_stores = KeyStore::from_config(chef).into_iter().collect();
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
    fn every_chef_targets_key_store_is_granted() {
        let text = "[chef]\nclient_name = \"n\"\nclient_key_secret = \"shared\"\n\
            [[chef.targets]]\nname = \"a\"\nserver_url = \"https://c/organizations/a\"\n\
            [[chef.targets]]\nname = \"b\"\nserver_url = \"https://c/organizations/b\"\n\
            client_key_parameter = \"/nodereaper/b\"\n\
            [[chef.targets]]\nname = \"c\"\nserver_url = \"https://c/organizations/c\"\n\
            client_key_secret = \"arn:aws:secretsmanager:us-east-1:1:secret:c-AbCdEf\"\n";
        let cfg =
            crate::config::Config::parse(text, std::path::Path::new("t.toml")).expect("parse");
        let (scope, _) = PolicyScope::from_config(&cfg, &[], &[]).expect("scope");
        let policy = daemon_policy(&scope);
        let by_sid = |sid: &str| {
            policy["Statement"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["Sid"] == sid))
                .map(|s| s["Resource"].clone())
        };
        assert_eq!(
            by_sid(sid::KEY_SECRET),
            Some(json!([
                "arn:aws:secretsmanager:*:*:secret:shared-??????",
                "arn:aws:secretsmanager:us-east-1:1:secret:c-AbCdEf"
            ])),
            "a's (shared) and c's secrets"
        );
        assert_eq!(
            by_sid(sid::KEY_PARAMETER),
            Some(json!("arn:aws:ssm:*:*:parameter/nodereaper/b"))
        );
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

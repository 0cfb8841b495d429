//! The IAM policy the daemon needs (`setup --print-iam-policy`; its Chef
//! part is `chef_acl`): printed for an operator, nothing is changed.

use serde_json::{json, Value};

/// Caveats printed with [`iam_policy`] (JSON policies cannot hold comments).
pub const IAM_POLICY_NOTE: &str = "\
ec2:DescribeInstances and autoscaling:DescribeAutoScalingInstances support no
resource-level permissions (Resource \"*\"). autoscaling:CompleteLifecycleAction
and autoscaling:RecordLifecycleActionHeartbeat may be narrowed to the groups'
ARNs (arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:*:autoScalingGroupName/NAME).";

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
        let cn = iam_policy(
            &["arn:aws-cn:sqs:cn-north-1:1:q".into()],
            &[],
            Some(("b", "")),
        );
        assert_eq!(cn["Statement"][5]["Resource"], "arn:aws-cn:s3:::b");
    }
}

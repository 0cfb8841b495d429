//! The resources of nodereaper's IAM policy, from its configuration: queue
//! and DLQ ARNs built from their URLs, the S3 journal, its KMS key, the
//! accounts' roles, the Chef key store and the Auto Scaling groups.

use crate::adapters::aws::region_from_queue_url;
use crate::adapters::secrets::KeyStore;
use crate::config::Config;

/// What the daemon's policy grants access to. `region` / `account` are `*`
/// when the configuration does not tell.
#[derive(Debug, Clone, Default)]
pub struct PolicyScope {
    /// `aws`, `aws-cn` or `aws-us-gov`, from the region.
    pub partition: String,
    /// The queues' region, or `*`.
    pub region: String,
    /// The queues' account, or `*`.
    pub account: String,
    /// ARNs of the consumed queues.
    pub queues: Vec<String>,
    /// ARNs of their dead-letter queues.
    pub dlqs: Vec<String>,
    /// The S3 journal: (bucket, key prefix).
    pub journal: Option<(String, String)>,
    /// `journal.s3_kms_key_id`: id, ARN or alias.
    pub kms_key: Option<String>,
    /// `[[aws.accounts]]` role ARNs.
    pub roles: Vec<String>,
    /// Auto Scaling group names the lifecycle actions are narrowed to.
    pub groups: Vec<String>,
    /// Where the Chef keys are read from, when from a secret store: every
    /// Chef target's (`[chef]`, or each of `[[chef.targets]]`).
    pub key_stores: Vec<KeyStore>,
    /// The Lambda function's name (adds its log group), in function mode.
    pub lambda_function: Option<String>,
    /// Routing reads Auto Scaling group tags (several Chef targets and
    /// `[routing] group_tag`): adds `autoscaling:DescribeTags`.
    pub group_tags: bool,
}

/// The partition of a region name.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// (account, queue name) of an SQS queue URL (`https://HOST/ACCOUNT/NAME`).
fn url_parts(url: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    let mut segments = parsed.path_segments()?.filter(|s| !s.is_empty());
    let (account, name) = (segments.next()?, segments.next()?);
    let valid = segments.next().is_none()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| (account.to_string(), name.to_string()))
}

/// The ARN of the queue at `url`, in `region` unless the URL names one.
pub fn queue_arn_from_url(url: &str, region: &str) -> Option<String> {
    let (account, name) = url_parts(url)?;
    let region = region_from_queue_url(url).unwrap_or_else(|| region.to_string());
    Some(format!(
        "arn:{}:sqs:{region}:{account}:{name}",
        partition_of(&region)
    ))
}

impl PolicyScope {
    /// The scope of `cfg`. `dlq_urls[i]` is queue i's DLQ when known (its
    /// `dlq_url`, or read from its RedrivePolicy); an unknown DLQ is granted
    /// as every queue of that account and region (`…:*`), which `unresolved`
    /// lists. `groups` narrows the lifecycle actions. Errors name the
    /// `queues[i].url` that is not an SQS queue URL.
    pub fn from_config(
        cfg: &Config,
        dlq_urls: &[Option<String>],
        groups: &[String],
    ) -> Result<(Self, Vec<String>), String> {
        let default_region = cfg.aws.region.clone().unwrap_or_else(|| "*".into());
        let mut scope = PolicyScope {
            groups: groups.to_vec(),
            key_stores: cfg
                .target_names()
                .iter()
                .filter_map(|name| cfg.for_target(name))
                .filter_map(|target| KeyStore::from_config(&target.chef))
                .collect(),
            roles: cfg
                .aws
                .accounts
                .iter()
                .map(|a| a.role_arn.clone())
                .collect(),
            kms_key: cfg.journal.s3_kms_key_id.clone().filter(|k| !k.is_empty()),
            group_tags: cfg.group_tag_key().is_some(),
            journal: cfg
                .journal
                .s3_bucket
                .clone()
                .map(|b| (b, cfg.journal.s3_prefix.clone())),
            ..Default::default()
        };
        let mut unresolved = Vec::new();
        for (i, q) in cfg.queues.iter().enumerate() {
            let region = q.region.clone().unwrap_or_else(|| default_region.clone());
            let arn = queue_arn_from_url(&q.url, &region).ok_or_else(|| {
                format!(
                    "queues[{i}].url {:?}: expected an SQS queue URL \
                     (https://HOST/ACCOUNT-ID/QUEUE-NAME)",
                    q.url
                )
            })?;
            let mut parts = arn.split(':');
            let (arn_partition, arn_region, arn_account) =
                (parts.nth(1), parts.nth(1), parts.next());
            if scope.queues.is_empty() {
                scope.partition = arn_partition.unwrap_or("aws").to_string();
                scope.region = arn_region.unwrap_or("*").to_string();
                scope.account = arn_account.unwrap_or("*").to_string();
            }
            let dlq = dlq_urls.get(i).cloned().flatten().or(q.dlq_url.clone());
            match dlq {
                Some(url) => scope
                    .dlqs
                    .push(queue_arn_from_url(&url, &region).ok_or_else(|| {
                        format!("queues[{i}] dead-letter queue {url:?}: expected an SQS queue URL")
                    })?),
                None => {
                    unresolved.push(q.url.clone());
                    let head = arn.rsplit_once(':').map_or("", |(head, _)| head);
                    scope.dlqs.push(format!("{head}:*"));
                }
            }
            scope.queues.push(arn);
        }
        if scope.queues.is_empty() {
            scope = Self::from_arns(&[], &[], None).with_from(scope);
        }
        Ok((scope, unresolved))
    }

    /// Keeps `self`'s queues and location, takes everything else of `other`.
    fn with_from(self, other: PolicyScope) -> Self {
        PolicyScope {
            partition: self.partition,
            region: self.region,
            account: self.account,
            queues: self.queues,
            dlqs: self.dlqs,
            ..other
        }
    }

    /// A scope of explicit queue and DLQ ARNs (empty: the placeholders
    /// `arn:aws:sqs:*:*:nodereaper[-dlq]`) and a journal.
    pub fn from_arns(queues: &[String], dlqs: &[String], journal: Option<(&str, &str)>) -> Self {
        let or = |arns: &[String], placeholder: &str| {
            if arns.is_empty() {
                vec![placeholder.to_string()]
            } else {
                arns.to_vec()
            }
        };
        let queues = or(queues, "arn:aws:sqs:*:*:nodereaper");
        let dlqs = or(dlqs, "arn:aws:sqs:*:*:nodereaper-dlq");
        let field = |n: usize, default: &str| {
            queues[0]
                .split(':')
                .nth(n)
                .filter(|p| !p.is_empty())
                .unwrap_or(default)
                .to_string()
        };
        PolicyScope {
            partition: field(1, "aws"),
            region: field(3, "*"),
            account: field(4, "*"),
            journal: journal.map(|(b, p)| (b.to_string(), p.to_string())),
            queues,
            dlqs,
            ..Default::default()
        }
    }

    /// The groups' ARNs for the lifecycle actions (every group of the
    /// account and region when none was named).
    pub fn group_arns(&self) -> Vec<String> {
        let arn = |name: &str| {
            format!(
                "arn:{}:autoscaling:{}:{}:autoScalingGroup:*:autoScalingGroupName/{name}",
                self.partition, self.region, self.account
            )
        };
        if self.groups.is_empty() {
            vec![arn("*")]
        } else {
            self.groups.iter().map(|g| arn(g)).collect()
        }
    }

    /// The KMS key's ARN (an alias grants every key of the account and
    /// region: IAM matches the key, not the alias).
    pub fn kms_key_arn(&self) -> Option<String> {
        let key = self.kms_key.as_deref()?;
        let (p, r, a) = (&self.partition, &self.region, &self.account);
        Some(if key.starts_with("arn:") && key.contains(":key/") {
            key.to_string()
        } else if key.starts_with("alias/") || key.contains(":alias/") {
            format!("arn:{p}:kms:{r}:{a}:key/*")
        } else {
            format!("arn:{p}:kms:{r}:{a}:key/{key}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueConfig;

    #[test]
    fn arns_come_from_the_configured_urls() {
        let mut cfg = Config::default();
        cfg.aws.region = Some("eu-west-1".into());
        cfg.queues = vec![
            QueueConfig {
                url: "https://sqs.us-east-2.amazonaws.com/123456789012/reaper-full".into(),
                region: None,
                dlq_url: Some("https://sqs.us-east-2.amazonaws.com/123456789012/dead".into()),
                target: None,
            },
            QueueConfig {
                url: "http://127.0.0.1:5000/210987654321/other".into(),
                region: None,
                dlq_url: None,
                target: None,
            },
        ];
        let (scope, unresolved) = PolicyScope::from_config(&cfg, &[], &[]).expect("scope");
        assert_eq!(
            scope.queues,
            [
                "arn:aws:sqs:us-east-2:123456789012:reaper-full",
                "arn:aws:sqs:eu-west-1:210987654321:other"
            ]
        );
        assert_eq!(
            scope.dlqs,
            [
                "arn:aws:sqs:us-east-2:123456789012:dead",
                "arn:aws:sqs:eu-west-1:210987654321:*"
            ]
        );
        assert_eq!(unresolved, ["http://127.0.0.1:5000/210987654321/other"]);
        cfg.queues[0].url = "https://example.com/not-a-queue".into();
        let err = PolicyScope::from_config(&cfg, &[], &[]).expect_err("bad url");
        assert!(err.contains("queues[0].url"), "{err}");
    }

    #[test]
    fn kms_keys_and_groups() {
        let mut scope = PolicyScope::from_arns(
            &["arn:aws-cn:sqs:cn-north-1:123456789012:q".into()],
            &[],
            None,
        );
        scope.kms_key = Some("1234abcd".into());
        assert_eq!(
            scope.kms_key_arn().as_deref(),
            Some("arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd")
        );
        scope.groups = vec!["web".into()];
        assert_eq!(
            scope.group_arns(),
            ["arn:aws-cn:autoscaling:cn-north-1:123456789012:autoScalingGroup:*:autoScalingGroupName/web"]
        );
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
    }
}

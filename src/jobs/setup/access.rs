//! `doctor`'s IAM checks: one harmless call per statement of the printed
//! policy that has one (EC2 and Auto Scaling describes, the S3 journal's
//! write, delete and list). A denied call fails its check naming the IAM
//! action and the statement to add it to.

use crate::adapters::aws::{self, permissions, AwsError};
use crate::app;
use crate::config::Config;
use crate::core::error::Classify;
use crate::ports::JournalError;

/// One permission check: its name, and what was found (`Ok`) or the error
/// and the fix (`Err`).
pub type AccessCheck = (String, Result<String, (String, String)>);

/// An instance id no instance has, for the describe probes.
const PROBE_ID: &str = "i-00000000000000000";

/// The fix for a failed call `service` `operation`.
fn fix(service: &str, operation: &str) -> String {
    match permissions::lookup(service, operation) {
        Some(c) => format!(
            "allow {} in statement {:?} of nodereaper's IAM policy \
             (`nodereaper setup --print-iam-policy` prints it)",
            c.action, c.statement
        ),
        None => format!("allow {service} {operation} to nodereaper's role"),
    }
}

fn outcome(e: &AwsError, detail: &str) -> Result<String, (String, String)> {
    if e.is_denied() || e.is_transient() {
        Err((e.to_string(), fix(e.service, e.operation)))
    } else {
        // Allowed: AWS only refused the probe's arguments.
        Ok(detail.to_string())
    }
}

/// The permission checks for `cfg` (queues are checked by doctor itself).
pub async fn checks(cfg: &Config) -> Vec<AccessCheck> {
    let sdk = aws::sdk_config(&cfg.aws, None).await;
    let region = sdk
        .region()
        .map_or_else(|| app::FALLBACK_REGION.to_string(), |r| r.to_string());
    let mut out = Vec::new();
    let ec2 = aws_sdk_ec2::Client::new(&sdk)
        .describe_instances()
        .instance_ids(PROBE_ID)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("EC2", "DescribeInstances", &region, e));
    out.push((
        "aws ec2:DescribeInstances".to_string(),
        match ec2 {
            Ok(_) => Ok(format!("allowed in {region}")),
            Err(e) => outcome(&e, &format!("allowed in {region}")),
        },
    ));
    let asg = aws_sdk_autoscaling::Client::new(&sdk)
        .describe_auto_scaling_instances()
        .instance_ids(PROBE_ID)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("AutoScaling", "DescribeAutoScalingInstances", &region, e));
    out.push((
        "aws autoscaling:DescribeAutoScalingInstances".to_string(),
        match asg {
            Ok(_) => Ok(format!("allowed in {region}")),
            Err(e) => outcome(&e, &format!("allowed in {region}")),
        },
    ));
    if let Some(key) = cfg.group_tag_key() {
        let check = group_tags_check(cfg, &sdk, key).await;
        out.push((format!("aws autoscaling:DescribeTags {key}"), check));
    }
    if cfg.journal.s3_bucket.is_some() {
        out.push(("s3 journal".to_string(), journal_check(cfg).await));
    }
    out
}

/// The group tag rule's read (DescribeTags of the tag key, in the default
/// region), and what it finds: each tagged group's target, failing when a
/// tag names a target that is not configured (that group's terminations
/// would go to the DLQ).
async fn group_tags_check(
    cfg: &Config,
    sdk: &aws_config::SdkConfig,
    key: &str,
) -> Result<String, (String, String)> {
    use aws_sdk_autoscaling::types::Filter;
    let region = sdk.region().map_or("(default)", |r| r.as_ref());
    let answer = aws_sdk_autoscaling::Client::new(sdk)
        .describe_tags()
        .filters(Filter::builder().name("key").values(key).build())
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    let mut tagged = Vec::new();
    for tag in answer {
        let tag = tag.map_err(|e| {
            let e = AwsError::from_sdk("AutoScaling", "DescribeTags", format!("tag {key:?}"), e);
            (e.to_string(), fix(e.service, e.operation))
        })?;
        if tag.key() == Some(key) {
            let group = tag.resource_id().unwrap_or("?").to_string();
            tagged.push((group, tag.value().unwrap_or_default().to_string()));
        }
    }
    let names = cfg.target_names();
    let unknown: Vec<String> = tagged
        .iter()
        .filter(|(_, t)| !names.contains(t))
        .map(|(g, t)| format!("group {g} names {t:?}"))
        .collect();
    if !unknown.is_empty() {
        return Err((
            format!(
                "{} in {region}: not a configured target, so these groups' terminations go to the DLQ",
                unknown.join(", ")
            ),
            format!("tag them with one of {names:?}, or add the target"),
        ));
    }
    let list: Vec<String> = tagged.iter().map(|(g, t)| format!("{g} -> {t}")).collect();
    Ok(format!(
        "allowed in {region}; {} group(s) tagged: {}",
        tagged.len(),
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    ))
}

/// Writes and deletes the probe object the way entries are written, and
/// lists the prefix.
async fn journal_check(cfg: &Config) -> Result<String, (String, String)> {
    let journal = app::journal(cfg)
        .await
        .map_err(|e| (e.to_string(), "fix [journal]".to_string()))?;
    let explain = |e: JournalError| match &e {
        JournalError::S3 { source, .. } => (e.to_string(), fix(source.service, source.operation)),
        _ => (
            e.to_string(),
            "check [journal] s3_bucket and s3_prefix".into(),
        ),
    };
    journal.probe().await.map_err(explain)?;
    let bucket = cfg.journal.s3_bucket.as_deref().unwrap_or_default();
    let prefix = &cfg.journal.s3_prefix;
    let sdk = aws::sdk_config(&cfg.aws, None).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| {
            AwsError::from_sdk("S3", "ListObjectsV2", format!("s3://{bucket}/{prefix}"), e)
        });
    if let Err(e) = listed {
        return Err((e.to_string(), fix(e.service, e.operation)));
    }
    Ok(format!(
        "s3://{bucket}/{prefix}: write, delete and list allowed"
    ))
}

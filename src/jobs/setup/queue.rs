//! SQS: the queue, its dead-letter queue (by redrive) and the queue policy
//! that lets the topic (and the EventBridge rule) send to it.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName as Qa;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{json, Value};

use super::compare::same_json_text;
use super::{ChangeAction, Known, Resource, ResourceKind, Setup, SetupError};

/// moto (and older SQS query APIs) name a missing queue this way.
const NON_EXISTENT_QUEUE: &str = "AWS.SimpleQueueService.NonExistentQueue";

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

/// `Name=value, ...` of the attributes setup wants.
fn attribute_summary(desired: &[(Qa, String)]) -> String {
    desired
        .iter()
        .map(|(k, v)| format!("{}={v}", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The desired attributes whose current value differs (JSON ones compared
/// as JSON).
fn attribute_diffs<'d>(
    current: &HashMap<Qa, String>,
    desired: &'d [(Qa, String)],
) -> Vec<&'d (Qa, String)> {
    desired
        .iter()
        .filter(|(k, want)| match k {
            Qa::RedrivePolicy | Qa::Policy => {
                !same_json_text(current.get(k).map(String::as_str), want)
            }
            _ => current.get(k) != Some(want),
        })
        .collect()
}

/// `Name: have -> want; ...` of `diffs`.
fn describe_diffs(current: &HashMap<Qa, String>, diffs: &[&(Qa, String)]) -> String {
    diffs
        .iter()
        .map(|(k, want)| {
            format!(
                "{}: {} -> {want}",
                k.as_str(),
                current.get(k).map_or("(unset)", String::as_str)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `QueueArn` among `attrs`, or an error naming the missing answer.
fn queue_arn(resource: &Resource, attrs: &HashMap<Qa, String>) -> Result<String, SetupError> {
    attrs
        .get(&Qa::QueueArn)
        .cloned()
        .ok_or_else(|| SetupError::answer(resource, "SQS", "GetQueueAttributes", "no QueueArn"))
}

impl Setup<'_> {
    /// Creates queue `name` with `desired` attributes, or sets those that differ.
    pub(super) async fn queue(
        &mut self,
        kind: ResourceKind,
        name: &str,
        desired: &[(Qa, String)],
    ) -> Result<Known, SetupError> {
        let resource = Resource::new(kind, name);
        let summary = attribute_summary(desired);
        match self.queue_url(&resource, name).await? {
            Some(url) => self.reconcile_queue(resource, url, desired, summary).await,
            None if self.dry() => {
                let arn = self.predict_arn("sqs", name).await?;
                self.report
                    .push(resource, ChangeAction::WouldCreate, summary);
                Ok(Known {
                    arn,
                    url: None,
                    exists: false,
                })
            }
            None => self.create_queue(resource, desired, summary).await,
        }
    }

    /// The URL of queue `name`, `None` when it does not exist.
    async fn queue_url(
        &self,
        resource: &Resource,
        name: &str,
    ) -> Result<Option<String>, SetupError> {
        match self.sqs.get_queue_url().queue_name(name).send().await {
            Ok(out) => Ok(out.queue_url().map(str::to_string)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist())
                    || e.code() == Some(NON_EXISTENT_QUEUE) =>
            {
                Ok(None)
            }
            Err(e) => Err(SetupError::aws(resource, "SQS", "GetQueueUrl", e)),
        }
    }

    /// Creates the queue with all of `desired`.
    async fn create_queue(
        &mut self,
        resource: Resource,
        desired: &[(Qa, String)],
        summary: String,
    ) -> Result<Known, SetupError> {
        let attrs: HashMap<_, _> = desired.iter().cloned().collect();
        let out = self
            .sqs
            .create_queue()
            .queue_name(&resource.name)
            .set_attributes(Some(attrs))
            .send()
            .await
            .map_err(|e| SetupError::aws(&resource, "SQS", "CreateQueue", e))?;
        let url = out
            .queue_url()
            .ok_or_else(|| SetupError::answer(&resource, "SQS", "CreateQueue", "no QueueUrl"))?;
        let current = self.queue_attributes(&resource, url, &[]).await?;
        let arn = queue_arn(&resource, &current)?;
        self.report.push(resource, ChangeAction::Created, summary);
        Ok(Known {
            arn,
            url: Some(url.to_string()),
            exists: true,
        })
    }

    /// Sets the attributes of the existing queue at `url` that differ from
    /// `desired`.
    async fn reconcile_queue(
        &mut self,
        resource: Resource,
        url: String,
        desired: &[(Qa, String)],
        summary: String,
    ) -> Result<Known, SetupError> {
        let keys: Vec<Qa> = desired.iter().map(|(k, _)| k.clone()).collect();
        let current = self.queue_attributes(&resource, &url, &keys).await?;
        let arn = queue_arn(&resource, &current)?;
        let diffs = attribute_diffs(&current, desired);
        if diffs.is_empty() {
            self.report.push(resource, ChangeAction::Unchanged, summary);
        } else {
            let detail = describe_diffs(&current, &diffs);
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
        resource: &Resource,
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

    /// The queue's policy: exactly [`queue_policy`], replacing any other.
    pub(super) async fn queue_policy(
        &mut self,
        queue: &Known,
        topic: &Known,
        rule: Option<&Known>,
    ) -> Result<(), SetupError> {
        let resource = Resource::new(ResourceKind::SqsQueuePolicy, &self.spec.name);
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! SQS adapter for [`Queue`]: long polling, visibility backoff, and an explicit
//! dead-letter move that carries the reason.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use chrono::{TimeZone, Utc};

use super::AwsError;
use crate::ports::{Queue, ReceivedMessage};

/// Message attribute carrying why nodereaper dead-lettered a message.
pub const REASON_ATTRIBUTE: &str = "nodereaper-reason";
/// Message attribute naming the queue the message came from.
pub const SOURCE_QUEUE_ATTRIBUTE: &str = "nodereaper-source-queue";

/// One SQS queue and its dead-letter queue.
pub struct SqsQueue {
    client: Client,
    url: String,
    name: String,
    dlq_url: String,
}

impl SqsQueue {
    /// Connects to `url`; the DLQ is `dlq_url` or the queue's RedrivePolicy
    /// target. A queue without a DLQ is refused: poison messages would have
    /// nowhere to go.
    pub async fn connect(
        client: Client,
        url: &str,
        dlq_url: Option<&str>,
    ) -> Result<Self, AwsError> {
        let dlq_url = match dlq_url {
            Some(d) => d.to_string(),
            None => dead_letter_queue_url(&client, url).await?.ok_or_else(|| {
                AwsError::invalid(
                    "SQS",
                    "GetQueueAttributes",
                    url,
                    "the queue has no RedrivePolicy (dead-letter queue) and no dlq_url is \
                     configured; poison messages would have nowhere to go. Run `nodereaper setup` \
                     or set queues[].dlq_url",
                )
            })?,
        };
        Ok(Self {
            client,
            name: queue_name(url).to_string(),
            url: url.to_string(),
            dlq_url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Last path segment of a queue URL.
pub fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

/// The DLQ URL named by the queue's RedrivePolicy, if any.
pub async fn dead_letter_queue_url(client: &Client, url: &str) -> Result<Option<String>, AwsError> {
    let attrs = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("SQS", "GetQueueAttributes", url, e))?;
    let Some(policy) = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
    else {
        return Ok(None);
    };
    let parsed: serde_json::Value = serde_json::from_str(policy).map_err(|e| {
        AwsError::invalid(
            "SQS",
            "GetQueueAttributes",
            url,
            format!("RedrivePolicy is not JSON: {e}"),
        )
    })?;
    let Some(arn) = parsed.get("deadLetterTargetArn").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    // arn:aws:sqs:REGION:ACCOUNT:NAME
    let mut parts = arn.splitn(6, ':').skip(4);
    let (Some(account), Some(name)) = (parts.next(), parts.next()) else {
        return Err(AwsError::invalid(
            "SQS",
            "GetQueueAttributes",
            url,
            format!("RedrivePolicy deadLetterTargetArn {arn:?} is not an SQS ARN"),
        ));
    };
    let resolved = client
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("SQS", "GetQueueUrl", name, e))?;
    Ok(resolved.queue_url().map(str::to_string))
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<ReceivedMessage>, AwsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20))
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SQS", "ReceiveMessage", &self.url, e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let attrs = m.attributes();
                let attr = |name: MessageSystemAttributeName| attrs.and_then(|a| a.get(&name));
                Some(ReceivedMessage {
                    message_id: m.message_id()?.to_string(),
                    receipt_handle: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    sent_at: attr(MessageSystemAttributeName::SentTimestamp)
                        .and_then(|v| v.parse::<i64>().ok())
                        .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    async fn delete(&self, msg: &ReceivedMessage) -> Result<(), AwsError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&msg.receipt_handle)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SQS", "DeleteMessage", &self.url, e))?;
        Ok(())
    }

    async fn extend_visibility(
        &self,
        msg: &ReceivedMessage,
        timeout: Duration,
    ) -> Result<(), AwsError> {
        let secs = i32::try_from(timeout.as_secs().min(12 * 3600)).unwrap_or(12 * 3600);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&msg.receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SQS", "ChangeMessageVisibility", &self.url, e))?;
        Ok(())
    }

    async fn depth(&self) -> Result<(u64, u64), AwsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SQS", "GetQueueAttributes", &self.url, e))?;
        let count = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    async fn dead_letter(&self, msg: &ReceivedMessage, reason: &str) -> Result<(), AwsError> {
        let string_attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| AwsError::invalid("SQS", "SendMessage", &self.dlq_url, e.to_string()))
        };
        // SQS attribute values are limited to 256 KiB with the body; reasons are short,
        // but keep them bounded anyway.
        let reason: String = reason.chars().take(1000).collect();
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(&msg.body)
            .message_attributes(REASON_ATTRIBUTE, string_attr(&reason)?)
            .message_attributes(SOURCE_QUEUE_ATTRIBUTE, string_attr(&self.url)?)
            .message_attributes(
                "nodereaper-original-message-id",
                string_attr(&msg.message_id)?,
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SQS", "SendMessage", &self.dlq_url, e))?;
        // Only once the copy is safely in the DLQ is the original removed.
        self.delete(msg).await
    }
}

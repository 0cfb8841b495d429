//! SQS adapter for [`Queue`]: long polling, visibility backoff, an explicit
//! dead-letter move that carries the reason, and acknowledgements batched
//! with `DeleteMessageBatch`.
//!
//! Deletes are batched transparently: [`Queue::delete`] hands the receipt
//! handle to a per-queue flusher task and waits for its own entry's result.
//! The flusher sends a `DeleteMessageBatch` as soon as 10 entries are waiting
//! or [`DELETE_FLUSH_WINDOW`] after the first one arrived, whichever comes
//! first, with several batches in flight when needed. Each caller gets its
//! entry's outcome (a failed entry fails only that delete), so the pipeline
//! sees exactly what it saw with one `DeleteMessage` per message. IAM
//! authorises `DeleteMessageBatch` with the `sqs:DeleteMessage` action, so
//! the policy `nodereaper setup` prints needs nothing new.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use aws_sdk_sqs::Client;
use chrono::{TimeZone, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::core::error::Retry;

use super::AwsError;
use crate::ports::{Queue, ReceivedMessage};

/// Message attribute carrying why nodereaper dead-lettered a message.
pub const REASON_ATTRIBUTE: &str = "nodereaper-reason";
/// Message attribute naming the queue the message came from.
pub const SOURCE_QUEUE_ATTRIBUTE: &str = "nodereaper-source-queue";

/// SQS accepts at most 10 entries per `DeleteMessageBatch`.
pub const DELETE_BATCH_MAX: usize = 10;
/// How long the first waiting delete waits for others to share its
/// `DeleteMessageBatch`. The daemon's workers do not wait for it (a worker
/// is free once its message is handled, `run::worker`), so it is long
/// enough to gather several deletes at a few dozen messages a second.
pub const DELETE_FLUSH_WINDOW: Duration = Duration::from_millis(50);

/// One waiting delete: the receipt handle and where its result goes.
type PendingDelete = (String, oneshot::Sender<Result<(), AwsError>>);

/// One SQS queue and its dead-letter queue.
pub struct SqsQueue {
    client: Client,
    url: String,
    name: String,
    dlq_url: String,
    /// To the delete flusher; `None` without a tokio runtime at connect time
    /// (then every delete is a plain `DeleteMessage`).
    deletes: Option<mpsc::UnboundedSender<PendingDelete>>,
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
        Ok(Self::new(client, url, dlq_url, DELETE_FLUSH_WINDOW))
    }

    /// A queue with a known DLQ and the given delete flush window (no AWS call).
    fn new(client: Client, url: &str, dlq_url: String, window: Duration) -> Self {
        let deletes = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (tx, rx) = mpsc::unbounded_channel();
            rt.spawn(flush_deletes(client.clone(), url.to_string(), rx, window));
            tx
        });
        Self {
            client,
            name: queue_name(url).to_string(),
            url: url.to_string(),
            dlq_url,
            deletes,
        }
    }

    /// Like [`SqsQueue::connect`] with a given delete flush window (tests and
    /// benchmarks; `connect` uses [`DELETE_FLUSH_WINDOW`]).
    pub async fn connect_with_flush_window(
        client: Client,
        url: &str,
        dlq_url: &str,
        window: Duration,
    ) -> Self {
        Self::new(client, url, dlq_url.to_string(), window)
    }

    /// The queue's URL, as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The dead-letter queue's URL: `dlq_url` from the configuration, else
    /// the target of the queue's RedrivePolicy.
    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// The SQS client this queue uses (its region and credentials).
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
        let started = std::time::Instant::now();
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20))
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await;
        record("ReceiveMessage", out.is_ok(), started);
        let out = out.map_err(|e| AwsError::from_sdk("SQS", "ReceiveMessage", &self.url, e))?;
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
        if let Some(deletes) = &self.deletes {
            let (tx, rx) = oneshot::channel();
            if deletes.send((msg.receipt_handle.clone(), tx)).is_ok() {
                if let Ok(result) = rx.await {
                    return result;
                }
            }
            // The flusher is gone (its runtime shut down): delete directly.
        }
        delete_one(&self.client, &self.url, &msg.receipt_handle).await
    }

    async fn extend_visibility(
        &self,
        msg: &ReceivedMessage,
        timeout: Duration,
    ) -> Result<(), AwsError> {
        let secs = i32::try_from(timeout.as_secs().min(12 * 3600)).unwrap_or(12 * 3600);
        let started = std::time::Instant::now();
        let out = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&msg.receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await;
        record("ChangeMessageVisibility", out.is_ok(), started);
        out.map_err(|e| AwsError::from_sdk("SQS", "ChangeMessageVisibility", &self.url, e))?;
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
        send_dead_letter(&self.client, &self.dlq_url, &self.url, msg, reason).await?;
        // Only once the copy is safely in the DLQ is the original removed.
        self.delete(msg).await
    }
}

/// Sends a copy of `msg` to `dlq_url` with the reason, the source queue and
/// (when known) the original message id as attributes. Does not delete the
/// original: the caller does that once this succeeded.
pub async fn send_dead_letter(
    client: &Client,
    dlq_url: &str,
    source: &str,
    msg: &ReceivedMessage,
    reason: &str,
) -> Result<(), AwsError> {
    let string_attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .map_err(|e| AwsError::invalid("SQS", "SendMessage", dlq_url, e.to_string()))
    };
    // SQS attribute values are limited to 256 KiB with the body; reasons are short,
    // but keep them bounded anyway.
    let reason: String = reason.chars().take(1000).collect();
    let mut send = client
        .send_message()
        .queue_url(dlq_url)
        .message_body(&msg.body)
        .message_attributes(REASON_ATTRIBUTE, string_attr(&reason)?)
        .message_attributes(SOURCE_QUEUE_ATTRIBUTE, string_attr(source)?);
    if !msg.message_id.is_empty() {
        send = send.message_attributes(
            "nodereaper-original-message-id",
            string_attr(&msg.message_id)?,
        );
    }
    send.send()
        .await
        .map_err(|e| AwsError::from_sdk("SQS", "SendMessage", dlq_url, e))?;
    Ok(())
}

/// Plain `DeleteMessage` of one receipt handle.
async fn delete_one(client: &Client, url: &str, receipt_handle: &str) -> Result<(), AwsError> {
    let started = std::time::Instant::now();
    let out = client
        .delete_message()
        .queue_url(url)
        .receipt_handle(receipt_handle)
        .send()
        .await;
    record("DeleteMessage", out.is_ok(), started);
    out.map_err(|e| AwsError::from_sdk("SQS", "DeleteMessage", url, e))?;
    Ok(())
}

/// Counts an SQS call in `nodereaper_aws_request_duration_seconds`.
fn record(operation: &str, ok: bool, started: std::time::Instant) {
    crate::telemetry::metrics::aws_request("sqs", operation, ok, started.elapsed());
}

/// The delete flusher of one queue: collects waiting deletes into batches of
/// up to [`DELETE_BATCH_MAX`], at most `window` after the first of a batch
/// arrived, and sends each batch in its own task (batches overlap when
/// deletes arrive faster than one round trip). The flusher owns those tasks:
/// it ends when the queue is dropped, after every batch was sent and its
/// waiters answered.
async fn flush_deletes(
    client: Client,
    url: String,
    mut rx: mpsc::UnboundedReceiver<PendingDelete>,
    window: Duration,
) {
    let mut sends = tokio::task::JoinSet::new();
    while let Some(first) = rx.recv().await {
        while sends.try_join_next().is_some() {}
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + window;
        while batch.len() < DELETE_BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let (client, url) = (client.clone(), url.clone());
        sends.spawn(async move { send_batch(&client, &url, batch).await });
    }
    while sends.join_next().await.is_some() {}
}

/// One `DeleteMessageBatch`; every waiting delete gets its own entry's
/// outcome. The same receipt handle waiting twice is sent once (SQS refuses
/// a batch with repeated entries) and both get its result. A single handle
/// goes out as a plain `DeleteMessage` (same cost, simpler).
async fn send_batch(client: &Client, url: &str, batch: Vec<PendingDelete>) {
    let mut handles: Vec<&str> = Vec::with_capacity(batch.len());
    for (handle, _) in &batch {
        if !handles.contains(&handle.as_str()) {
            handles.push(handle);
        }
    }
    let results: Vec<Result<(), AwsError>> = if let [handle] = handles.as_slice() {
        vec![delete_one(client, url, handle).await]
    } else {
        delete_batch(client, url, &handles).await
    };
    let slots: Vec<Option<usize>> = batch
        .iter()
        .map(|(handle, _)| handles.iter().position(|h| *h == handle.as_str()))
        .collect();
    for ((_, tx), slot) in batch.into_iter().zip(slots) {
        let result = slot
            .and_then(|i| results.get(i).cloned())
            .unwrap_or_else(|| {
                Err(AwsError::invalid(
                    "SQS",
                    "DeleteMessageBatch",
                    url,
                    "no result for this entry",
                ))
            });
        let _ = tx.send(result);
    }
}

/// `DeleteMessageBatch` of distinct receipt handles; one result per handle,
/// in order.
async fn delete_batch(client: &Client, url: &str, handles: &[&str]) -> Vec<Result<(), AwsError>> {
    let entries: Result<Vec<DeleteMessageBatchRequestEntry>, _> = handles
        .iter()
        .enumerate()
        .map(|(i, handle)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(*handle)
                .build()
        })
        .collect();
    let entries = match entries {
        Ok(e) => e,
        Err(e) => {
            let err = AwsError::invalid("SQS", "DeleteMessageBatch", url, e.to_string());
            return vec![Err(err); handles.len()];
        }
    };
    let started = std::time::Instant::now();
    let answer = client
        .delete_message_batch()
        .queue_url(url)
        .set_entries(Some(entries))
        .send()
        .await;
    record("DeleteMessageBatch", answer.is_ok(), started);
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let err = AwsError::from_sdk("SQS", "DeleteMessageBatch", url, e);
            return vec![Err(err); handles.len()];
        }
    };
    (0..handles.len())
        .map(|i| {
            let id = i.to_string();
            if let Some(f) = out.failed().iter().find(|f| f.id() == id) {
                let message = f.message().unwrap_or("no message");
                Err(AwsError {
                    service: "SQS",
                    operation: "DeleteMessageBatch",
                    target: url.to_string(),
                    code: Some(f.code().to_string()),
                    message: format!("{}: {message}", f.code()),
                    // The caller's fault (e.g. an expired receipt handle)
                    // does not get better by retrying; SQS's own might.
                    retry: if f.sender_fault() {
                        Retry::Permanent
                    } else {
                        Retry::Transient
                    },
                    status: None,
                })
            } else if out.successful().iter().any(|s| s.id() == id) {
                Ok(())
            } else {
                Err(AwsError::invalid(
                    "SQS",
                    "DeleteMessageBatch",
                    url,
                    format!("entry {id} is neither in Successful nor in Failed"),
                ))
            }
        })
        .collect()
}

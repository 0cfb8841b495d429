//! nodereaper as an AWS Lambda function (`provided.al2023`, the binary as
//! `bootstrap`): the same parse -> verify -> protect -> resolve -> back up ->
//! delete -> complete path as the daemon ([`Pipeline::process_batch`]), fed
//! by the Lambda Runtime API instead of by polling SQS.
//!
//! Deliveries:
//! - **SQS** (an event source mapping with `ReportBatchItemFailures`): the
//!   answer is `{"batchItemFailures": [...]}` naming exactly the records to
//!   retry, so only those become visible again.
//! - **SNS** (the topic subscribed to the function) and **EventBridge** (an
//!   event delivered directly to the function): asynchronous invocations; a
//!   record that must be retried fails the invocation, and Lambda retries it
//!   (twice, then the function's on-failure destination).
//!
//! Outcomes (the documented choice): done -> success; refused or poison
//! (forged, stale, unparseable) -> sent to the DLQ with the reason in the
//! `nodereaper-reason` attribute, then success (for SQS: not in
//! `batchItemFailures`, so the event source mapping deletes it); if that send
//! fails -> failure, and for SQS the queue's redrive policy is the backstop.
//! Transient and nodereaper's own failures (Chef down, 401/403, journal) ->
//! failure of that record only.
//!
//! A "hold" is weaker here than in the daemon, which stops receiving: a
//! failed SQS record comes back after the visibility timeout and each
//! retry costs a receive count (the redrive policy's `maxReceiveCount` ends
//! it in the DLQ), and a failed SNS/EventBridge invocation is retried by
//! Lambda (the template: twice) and then goes to the on-failure
//! destination. The rate cap and storm brake belong to one execution
//! environment; the template bounds them with reserved concurrency and the
//! event source mapping's maximum concurrency.
//!
//! `pipeline.dry_run`: nothing is deleted, completed or sent to the DLQ;
//! every SQS record is reported as failed, so it stays in the queue (as in
//! the daemon, each receive counts toward `maxReceiveCount`); an SNS or
//! EventBridge invocation succeeds with the outcomes marked `dry_run`.
//!
//! Configuration comes from the environment (`NODEREAPER_*`) or a config
//! file (`NODEREAPER_CONFIG`, e.g. a file in the package). The queue the
//! function consumes (`NODEREAPER_QUEUE_URL`) gives the DLQ (its
//! RedrivePolicy, or `queues[].dlq_url`) and the region; SNS and EventBridge
//! deliveries use the same DLQ. The journal must be the S3 journal
//! (`NODEREAPER_JOURNAL_S3_BUCKET`): a function's disk does not outlive it.
//! Nothing is done at init: the Chef key, the queue and the clients are set
//! up by the first event (cold start = process start to the first request
//! for an event).

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use crate::adapters::aws::AwsError;
use crate::app::{self, AppError};
use crate::config::{Config, JournalConfig};
use crate::ports::{Queue, ReceivedMessage};
use crate::run::{Disposition, Pipeline, Source};

/// The environment variable the Lambda service sets for custom runtimes.
pub const RUNTIME_API_VAR: &str = "AWS_LAMBDA_RUNTIME_API";

/// How the event reached the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// An SQS event source mapping (`Records[].eventSource` = `aws:sqs`);
    /// failures are reported per record in `batchItemFailures`.
    Sqs,
    /// An SNS subscription (`Records[].EventSource` = `aws:sns`); an
    /// asynchronous invocation.
    Sns,
    /// An EventBridge rule targeting the function (one event with
    /// `detail-type` and `source`); an asynchronous invocation.
    EventBridge,
}

/// One record of an event, with where it came from (for the DLQ's
/// `nodereaper-source-queue` attribute).
#[derive(Debug, Clone)]
pub struct Record {
    /// The record as a queue message. SNS and EventBridge records have no
    /// receipt handle (empty) and a receive count of 1.
    pub message: ReceivedMessage,
    /// Where it came from: the SQS queue or SNS topic ARN (`sqs`/`sns` when
    /// the record names none), or `eventbridge:<source>`.
    pub origin: String,
}

/// Why an invocation (or the function's start) failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The payload is not an SQS, SNS or EventBridge event nodereaper can
    /// read; says which field was wrong.
    #[error("Lambda event: {0}")]
    Event(String),
    /// The configuration cannot work in Lambda (no queue, or a journal in
    /// the default local directory), or the Lambda runtime failed.
    #[error("Lambda configuration: {0}")]
    Config(String),
    /// Setting up the pipeline on the first event failed (Chef key, clients,
    /// journal).
    #[error(transparent)]
    App(#[from] AppError),
    /// Connecting to the queue on the first event failed.
    #[error(transparent)]
    Aws(#[from] Box<AwsError>),
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Splits an invocation payload into records.
pub fn records(event: &Value) -> Result<(Delivery, Vec<Record>), LambdaError> {
    let bad = |m: String| LambdaError::Event(m);
    if let Some(list) = event.get("Records").and_then(Value::as_array) {
        let first = list
            .first()
            .ok_or_else(|| bad("\"Records\" is empty".into()))?;
        let source = str_field(first, "eventSource").or_else(|| str_field(first, "EventSource"));
        return match source {
            Some("aws:sqs") => list
                .iter()
                .enumerate()
                .map(|(i, r)| sqs_record(i, r))
                .collect::<Result<Vec<_>, _>>()
                .map(|r| (Delivery::Sqs, r)),
            Some("aws:sns") => list
                .iter()
                .enumerate()
                .map(|(i, r)| sns_record(i, r))
                .collect::<Result<Vec<_>, _>>()
                .map(|r| (Delivery::Sns, r)),
            other => Err(bad(format!(
                "Records[0].eventSource: expected \"aws:sqs\" or \"aws:sns\", got {other:?}"
            ))),
        };
    }
    if event.get("detail-type").is_some() && event.get("source").is_some() {
        let id = str_field(event, "id").unwrap_or_default().to_string();
        let sent_at = str_field(event, "time")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        return Ok((
            Delivery::EventBridge,
            vec![Record {
                message: ReceivedMessage {
                    message_id: id,
                    receipt_handle: String::new(),
                    body: event.to_string(),
                    sent_at,
                    receive_count: 1,
                },
                origin: format!(
                    "eventbridge:{}",
                    str_field(event, "source").unwrap_or_default()
                ),
            }],
        ));
    }
    Err(bad(
        "expected an SQS or SNS event (\"Records\") or an EventBridge event (\"detail-type\", \
         \"source\")"
            .into(),
    ))
}

fn sqs_record(i: usize, r: &Value) -> Result<Record, LambdaError> {
    let field = |k: &str| {
        str_field(r, k).ok_or_else(|| {
            LambdaError::Event(format!("Records[{i}].{k}: expected a string (SQS record)"))
        })
    };
    let attrs = r.get("attributes");
    let attr = |k: &str| attrs.and_then(|a| str_field(a, k));
    let sent_at = attr("SentTimestamp")
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    Ok(Record {
        message: ReceivedMessage {
            message_id: field("messageId")?.to_string(),
            receipt_handle: field("receiptHandle")?.to_string(),
            body: field("body")?.to_string(),
            sent_at,
            receive_count: attr("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
        },
        origin: str_field(r, "eventSourceARN").unwrap_or("sqs").to_string(),
    })
}

fn sns_record(i: usize, r: &Value) -> Result<Record, LambdaError> {
    let sns = r
        .get("Sns")
        .ok_or_else(|| LambdaError::Event(format!("Records[{i}].Sns: expected an object")))?;
    let field = |k: &str| {
        str_field(sns, k).ok_or_else(|| {
            LambdaError::Event(format!(
                "Records[{i}].Sns.{k}: expected a string (SNS record)"
            ))
        })
    };
    let sent_at = str_field(sns, "Timestamp")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Ok(Record {
        message: ReceivedMessage {
            message_id: field("MessageId")?.to_string(),
            receipt_handle: String::new(),
            body: field("Message")?.to_string(),
            sent_at,
            receive_count: 1,
        },
        origin: str_field(sns, "TopicArn").unwrap_or("sns").to_string(),
    })
}

/// The function's view of the configured queue: records arrive with the
/// invocation and the event source mapping deletes them, so only the
/// visibility keepalive (SQS records) and the DLQ are real.
struct LambdaQueue {
    inner: Arc<dyn Queue>,
    sqs: aws_sdk_sqs::Client,
    dlq_url: String,
    origin: String,
}

#[async_trait::async_trait]
impl Queue for LambdaQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn receive(
        &self,
        _max: i32,
        _wait: std::time::Duration,
    ) -> Result<Vec<ReceivedMessage>, AwsError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _msg: &ReceivedMessage) -> Result<(), AwsError> {
        // Success in the response deletes it (SQS); SNS/EventBridge have nothing to delete.
        Ok(())
    }
    async fn extend_visibility(
        &self,
        msg: &ReceivedMessage,
        timeout: std::time::Duration,
    ) -> Result<(), AwsError> {
        if msg.receipt_handle.is_empty() {
            return Ok(());
        }
        self.inner.extend_visibility(msg, timeout).await
    }
    async fn depth(&self) -> Result<(u64, u64), AwsError> {
        self.inner.depth().await
    }
    /// Sends a copy with the reason to the DLQ; does not delete (the
    /// response does, for SQS).
    async fn dead_letter(&self, msg: &ReceivedMessage, reason: &str) -> Result<(), AwsError> {
        crate::adapters::aws::sqs::send_dead_letter(
            &self.sqs,
            &self.dlq_url,
            &self.origin,
            msg,
            reason,
        )
        .await
    }
}

/// The one place the function depends on [`Source`]'s fields: the
/// configured queue's source (region services, verification) with the
/// function's queue in place of the polling one.
fn lambda_source(from: &Source, queue: Arc<dyn Queue>) -> Source {
    Source {
        queue,
        ..from.clone()
    }
}

/// The configured queue's `target` applies only to records from that very
/// queue (`origin` = `arn:aws:sqs:REGION:ACCOUNT:NAME` matching the URL's
/// account and name); records from another queue, a topic or a bus are
/// routed by their hook metadata or account alone.
fn lambda_queue_target(target: Option<&str>, url: &str, origin: &str) -> Option<String> {
    let target = target?.to_string();
    let arn: Vec<&str> = origin.split(':').collect();
    let path: Vec<&str> = url.trim_end_matches('/').rsplit('/').take(2).collect();
    match (arn.as_slice(), path.as_slice()) {
        (["arn", _, "sqs", _, account, name], [url_name, url_account])
            if name == url_name && account == url_account =>
        {
            Some(target)
        }
        _ => None,
    }
}

/// Set up by the first event.
struct Ready {
    pipeline: Pipeline,
    source: Source,
    sqs: aws_sdk_sqs::Client,
    dlq_url: String,
}

/// The invocation handler.
pub struct Handler {
    cfg: Config,
    ready: OnceCell<Ready>,
}

/// What happened to each record, and which must be retried.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// One JSON object per record: `message_id`, `failed`, the pipeline's
    /// disposition and, when the DLQ send failed, `dead_letter_error`.
    pub outcomes: Vec<Value>,
    /// Message ids of the records to retry (for SQS, the
    /// `batchItemFailures`).
    pub failures: Vec<String>,
}

impl Handler {
    /// Checks the configuration; contacts nothing.
    pub fn new(cfg: Config) -> Result<Self, LambdaError> {
        if cfg.queues.is_empty() {
            return Err(LambdaError::Config(
                "set NODEREAPER_QUEUE_URL (or [[queues]] url) to the queue the function consumes: \
                 its dead-letter queue receives refused and poison records"
                    .into(),
            ));
        }
        if cfg.journal.s3_bucket.is_none() && cfg.journal.dir == JournalConfig::default().dir {
            return Err(LambdaError::Config(
                "set NODEREAPER_JOURNAL_S3_BUCKET: the backups must outlive the function \
                 (a local journal needs NODEREAPER_JOURNAL_DIR on durable storage)"
                    .into(),
            ));
        }
        Ok(Self {
            cfg,
            ready: OnceCell::new(),
        })
    }

    async fn ready(&self) -> Result<&Ready, LambdaError> {
        self.ready
            .get_or_try_init(|| async {
                let chef = app::chef_api(&self.cfg).await?;
                let pipeline = app::pipeline(&self.cfg, chef).await?;
                let source = pipeline.sources.first().cloned().ok_or(AppError::NoQueue)?;
                let (queue, _) = app::connect_queue(&self.cfg, &self.cfg.queues[0])
                    .await
                    .map_err(Box::new)?;
                Ok::<_, LambdaError>(Ready {
                    sqs: queue.client().clone(),
                    dlq_url: queue.dlq_url().to_string(),
                    pipeline,
                    source,
                })
            })
            .await
    }

    /// Works one invocation's records.
    pub async fn process(&self, records: Vec<Record>) -> Result<Report, LambdaError> {
        let ready = self.ready().await?;
        let mut report = Report::default();
        // Records of one invocation share an origin (one queue, topic or bus).
        let origin = records
            .first()
            .map(|r| r.origin.clone())
            .unwrap_or_default();
        let target = lambda_queue_target(
            ready.source.target.as_deref(),
            &self.cfg.queues[0].url,
            &origin,
        );
        let queue = Arc::new(LambdaQueue {
            inner: ready.source.queue.clone(),
            sqs: ready.sqs.clone(),
            dlq_url: ready.dlq_url.clone(),
            origin,
        });
        let source = Source {
            target,
            ..lambda_source(&ready.source, queue.clone())
        };
        let messages = records.into_iter().map(|r| r.message).collect();
        let dry_run = ready.pipeline.settings.dry_run;
        for (msg, disposition) in ready.pipeline.process_batch(&source, messages).await {
            let (failed, detail) = match &disposition {
                // Dry run touches nothing: no DLQ send, and every SQS record
                // is left in its queue (reported as failed, see `handle`).
                _ if dry_run => {
                    tracing::info!(message_id = %msg.message_id, ?disposition, "dry run: record left untouched");
                    (true, None)
                }
                Disposition::Delete { .. } => (false, None),
                Disposition::DeadLetter { reason } => match queue.dead_letter(&msg, reason).await {
                    Ok(()) => (false, None),
                    Err(e) => {
                        tracing::error!(message_id = %msg.message_id, error = %e, "cannot send to the DLQ; the record fails");
                        (true, Some(e.to_string()))
                    }
                },
                Disposition::Retry { .. } | Disposition::Hold { .. } => (true, None),
            };
            if failed {
                report.failures.push(msg.message_id.clone());
            }
            let mut outcome = json!({"message_id": msg.message_id, "failed": failed});
            if let (Value::Object(o), Ok(Value::Object(d))) =
                (&mut outcome, serde_json::to_value(&disposition))
            {
                o.extend(d);
            }
            if let Some(d) = detail {
                outcome["dead_letter_error"] = Value::String(d);
            }
            if dry_run {
                outcome["dry_run"] = Value::Bool(true);
            }
            report.outcomes.push(outcome);
        }
        Ok(report)
    }

    /// One invocation: the response payload, or an error that makes Lambda
    /// retry the whole (asynchronous) invocation.
    pub async fn handle(&self, event: Value) -> Result<Value, Diagnostic> {
        let (delivery, records) = records(&event).map_err(|e| diagnostic("InvalidEvent", &e))?;
        let ids: Vec<String> = records
            .iter()
            .map(|r| r.message.message_id.clone())
            .collect();
        let report = match self.process(records).await {
            Ok(r) => r,
            // Setup failed (Chef key, queue): for SQS every record fails
            // (they come back after the visibility timeout).
            Err(e) if delivery == Delivery::Sqs => {
                tracing::error!(error = %e, "cannot process the batch");
                Report {
                    outcomes: Vec::new(),
                    failures: ids,
                }
            }
            Err(e) => return Err(diagnostic("Setup", &e)),
        };
        tracing::info!(
            delivery = ?delivery,
            records = report.outcomes.len(),
            failures = report.failures.len(),
            "invocation done"
        );
        match delivery {
            Delivery::Sqs => Ok(json!({
                "batchItemFailures": report
                    .failures
                    .iter()
                    .map(|id| json!({"itemIdentifier": id}))
                    .collect::<Vec<_>>(),
            })),
            // A dry run of an asynchronous invocation has nothing to leave
            // anywhere: a retry would only repeat it.
            _ if !report.failures.is_empty() && !self.cfg.pipeline.dry_run => Err(Diagnostic {
                error_type: "nodereaper.RetryableFailure".into(),
                error_message: serde_json::to_string(&report.outcomes).unwrap_or_default(),
            }),
            _ => Ok(json!({"outcomes": report.outcomes})),
        }
    }
}

fn diagnostic(kind: &str, e: &dyn std::fmt::Display) -> Diagnostic {
    Diagnostic {
        error_type: format!("nodereaper.{kind}"),
        error_message: e.to_string(),
    }
}

/// Reports a failed start to the Runtime API (`POST /runtime/init/error`,
/// AWS Lambda developer guide, "Using the Lambda runtime API for custom
/// runtimes"), so the function's error names the cause instead of only
/// "Runtime exited". Best effort: the process exits with an error anyway.
pub async fn report_init_error(kind: &str, message: &str) {
    let Some(api) = std::env::var_os(RUNTIME_API_VAR) else {
        return;
    };
    let url = format!(
        "http://{}/2018-06-01/runtime/init/error",
        api.to_string_lossy()
    );
    let body = json!({"errorType": format!("nodereaper.{kind}"), "errorMessage": message});
    let sent = reqwest::Client::new()
        .post(&url)
        .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
        .json(&body)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    if let Err(e) = sent {
        tracing::error!(error = %e, "cannot report the init error to the Lambda Runtime API");
    }
}

/// Serves invocations from the Runtime API until the process is stopped.
pub async fn run(cfg: Config) -> Result<(), LambdaError> {
    let handler = match Handler::new(cfg) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            report_init_error("Config", &e.to_string()).await;
            return Err(e);
        }
    };
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<Value>| {
            let handler = handler.clone();
            async move { handler.handle(event.payload).await }
        },
    ))
    .await
    .map_err(|e| LambdaError::Config(format!("Lambda runtime: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_target_only_for_records_of_that_queue() {
        let url = "https://sqs.us-east-2.amazonaws.com/123456789012/prod";
        let t = |origin: &str| lambda_queue_target(Some("prod"), url, origin);
        assert_eq!(
            t("arn:aws:sqs:us-east-2:123456789012:prod").as_deref(),
            Some("prod")
        );
        assert_eq!(t("arn:aws:sqs:us-east-2:123456789012:staging"), None);
        assert_eq!(t("arn:aws:sqs:us-east-2:210987654321:prod"), None);
        assert_eq!(t("arn:aws:sns:us-east-2:123456789012:prod"), None);
        assert_eq!(t("eventbridge:aws.autoscaling"), None);
        assert_eq!(
            lambda_queue_target(None, url, "arn:aws:sqs:us-east-2:123456789012:prod"),
            None
        );
    }

    #[test]
    fn sqs_sns_and_eventbridge_shapes() {
        // Shapes from the AWS Lambda developer guide ("Using Lambda with Amazon SQS / SNS").
        let sqs = json!({"Records": [{
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": "{\"x\":1}",
            "attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1545082649183"},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
            "awsRegion": "us-east-2"
        }]});
        let (d, r) = records(&sqs).unwrap();
        assert_eq!(d, Delivery::Sqs);
        assert_eq!(r[0].message.receive_count, 3);
        assert_eq!(r[0].message.body, "{\"x\":1}");
        assert_eq!(
            r[0].message.sent_at.unwrap().timestamp_millis(),
            1545082649183
        );
        assert_eq!(r[0].origin, "arn:aws:sqs:us-east-2:123456789012:my-queue");

        let sns = json!({"Records": [{
            "EventVersion": "1.0",
            "EventSource": "aws:sns",
            "Sns": {"Type": "Notification", "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:sns-lambda",
                    "Message": "{\"Event\":\"autoscaling:TEST_NOTIFICATION\"}",
                    "Timestamp": "2019-01-02T12:45:07.000Z"}
        }]});
        let (d, r) = records(&sns).unwrap();
        assert_eq!(d, Delivery::Sns);
        assert_eq!(
            r[0].message.message_id,
            "95df01b4-ee98-5cb9-9903-4c221d41eb5e"
        );
        assert!(r[0].message.receipt_handle.is_empty());

        let eb = json!({"version": "0", "id": "7bf73129", "detail-type": "EC2 Instance Terminate Successful",
                        "source": "aws.autoscaling", "time": "2026-11-25T10:00:00Z", "detail": {}});
        let (d, r) = records(&eb).unwrap();
        assert_eq!(d, Delivery::EventBridge);
        assert_eq!(r[0].message.body, eb.to_string());

        let err = records(&json!({"hello": 1})).unwrap_err().to_string();
        assert!(err.contains("expected an SQS or SNS event"), "{err}");
        let err = records(&json!({"Records": [{"eventSource": "aws:s3"}]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"aws:s3\""), "{err}");
        let err = records(&json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m"}]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Records[0].receiptHandle"), "{err}");
    }
}

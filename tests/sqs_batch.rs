//! The SQS adapter's batched acknowledgements against moto: concurrent
//! `Queue::delete` calls share `DeleteMessageBatch` calls, every caller gets
//! its own entry's outcome, and a failed entry fails only its own delete.

mod common;

use std::time::Duration;

use common::*;
use nodereaper::adapters::aws::sqs::SqsQueue;
use nodereaper::ports::{Queue, ReceivedMessage};

/// `nodereaper_aws_request_duration_seconds_count` for one SQS operation.
fn sqs_calls(operation: &str, result: &str) -> f64 {
    let text = nodereaper::telemetry::metrics::render();
    let labels = [
        format!("operation=\"{operation}\""),
        format!("result=\"{result}\""),
        "service=\"sqs\"".to_string(),
    ];
    text.lines()
        .filter(|l| l.starts_with("nodereaper_aws_request_duration_seconds_count{"))
        .filter(|l| labels.iter().all(|x| l.contains(x.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn receive_all(queue: &SqsQueue, n: usize) -> Vec<ReceivedMessage> {
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() >= n {
            break;
        }
        got.extend(
            queue
                .receive(10, Duration::from_secs(1))
                .await
                .expect("receive"),
        );
    }
    assert_eq!(got.len(), n, "all messages received");
    got
}

#[tokio::test]
async fn concurrent_deletes_share_batches_and_get_their_own_results() {
    let (url, dlq) = queue_with_dlq(&unique("batch"), 5).await;
    for i in 0..23 {
        send(&url, &format!("message {i}")).await;
    }
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    // A long window makes the grouping deterministic: 23 deletes issued at
    // once go out as batches of 10, 10 and 3.
    let queue =
        SqsQueue::connect_with_flush_window(sqs, &url, &dlq, Duration::from_millis(300)).await;
    let messages = receive_all(&queue, 23).await;
    assert_eq!(depth(&url).await, (0, 23));

    let (batches, singles) = (
        sqs_calls("DeleteMessageBatch", "ok"),
        sqs_calls("DeleteMessage", "ok"),
    );
    let results = futures::future::join_all(messages.iter().map(|m| queue.delete(m))).await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(depth(&url).await, (0, 0), "every message acknowledged");
    assert_eq!(sqs_calls("DeleteMessageBatch", "ok") - batches, 3.0);
    assert_eq!(sqs_calls("DeleteMessage", "ok") - singles, 0.0);

    // One good and one bad receipt handle in the same batch: only the bad
    // one fails, with SQS's per-entry error code.
    send(&url, "good").await;
    let good = receive_all(&queue, 1).await.remove(0);
    let bad = ReceivedMessage {
        receipt_handle: "not-a-receipt-handle".into(),
        ..good.clone()
    };
    let (ok, err) = tokio::join!(queue.delete(&good), queue.delete(&bad));
    assert!(ok.is_ok(), "{ok:?}");
    let err = err.expect_err("a bogus receipt handle must fail");
    assert_eq!(err.operation, "DeleteMessageBatch", "{err}");
    assert_eq!(err.code.as_deref(), Some("ReceiptHandleIsInvalid"), "{err}");
    assert_eq!(depth(&url).await, (0, 0));

    // The same message acknowledged twice at once (SQS refuses a batch
    // with repeated entries): sent once, both callers see success.
    send(&url, "twice").await;
    let twice = receive_all(&queue, 1).await.remove(0);
    let (a, b) = tokio::join!(queue.delete(&twice), queue.delete(&twice));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(depth(&url).await, (0, 0));

    // A lone delete goes out as a plain DeleteMessage after the window.
    send(&url, "lone").await;
    let lone = receive_all(&queue, 1).await.remove(0);
    let before = sqs_calls("DeleteMessage", "ok");
    queue.delete(&lone).await.expect("lone delete");
    assert_eq!(sqs_calls("DeleteMessage", "ok") - before, 1.0);
    assert_eq!(depth(&url).await, (0, 0));
}

//! The signed webhook against a local receiver on 127.0.0.1, after real
//! deletions on goiardi: the signature verifies (and a wrong secret does
//! not), a 500 is retried with the same idempotency key, a dry run sends
//! nothing, and failures that outlast the retries follow the one error
//! policy (5xx: retry the message; 403: hold it).

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use nodereaper::act::resolve::Resolver;
use nodereaper::act::{DeletionLimiter, Outcome, Reaper, Request, RequestSource, Target};
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::adapters::webhook::{WebhookSettings, WebhookTarget, SIGNATURE_HEADER};
use nodereaper::core::error::{error_policy, ErrorDisposition};
use nodereaper::core::verify::Protection;
use nodereaper::ports::ChefApi;
use serde_json::Value;

const SECRET: &[u8] = b"receiver-and-nodereaper-share-this";

/// What the receiver got, and the statuses it answers with (then 200).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.lock().expect("lock").push((headers, body));
    let code = r.answers.lock().expect("lock").pop_front().unwrap_or(200);
    StatusCode::from_u16(code).expect("status")
}

/// A receiver on a free loopback port answering `answers` first.
async fn receiver(answers: &[u16]) -> (Receiver, String) {
    let r = Receiver::default();
    r.answers.lock().expect("lock").extend(answers);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, format!("http://{addr}/hook"))
}

/// The receiver's check: constant-time HMAC-SHA256 verification of the
/// exact body against `sha256=<hex>`.
fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    let Some(tag) = (0..sig.len())
        .step_by(2)
        .map(|i| {
            sig.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &tag).is_ok()
}

fn reaper(chef: Arc<dyn ChefApi>, dir: &std::path::Path, url: &str) -> Reaper {
    templated_reaper(chef, dir, url, None)
}

fn templated_reaper(
    chef: Arc<dyn ChefApi>,
    dir: &std::path::Path,
    url: &str,
    template: Option<nodereaper::core::template::Template>,
) -> Reaper {
    let target = WebhookTarget::new(WebhookSettings {
        url: url.to_string(),
        secret: SECRET.to_vec(),
        timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(50),
        allow_plain_http: true,
        template,
    })
    .expect("webhook");
    Reaper {
        chef,
        journal: Arc::new(LocalJournal::open(dir).expect("journal")),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: vec![Arc::new(target)],
    }
}

fn request(node: &str, dry_run: bool) -> Request {
    Request {
        target: Target::Node(node.to_string()),
        source: RequestSource::Deregister,
        reason: "test".into(),
        message_id: None,
        dry_run,
        recheck: None,
        verified_region: None,
        group: None,
    }
}

/// A registered node (with Ohai's fqdn and ipaddress) and its instance id.
async fn registered() -> (Arc<dyn ChefApi>, String, String) {
    let chef: Arc<dyn ChefApi> = Arc::new(admin());
    let name = unique("hook");
    let id = fake_instance_id();
    let mut node = node_json(&name, Some(&id), Duration::from_secs(7200));
    node["automatic"]["fqdn"] = Value::from(format!("{name}.example.internal"));
    node["automatic"]["ipaddress"] = Value::from("10.1.2.3");
    chef.create_node(&node).await.expect("node");
    chef.create_client(&name, None, false)
        .await
        .expect("client");
    (chef, name, id)
}

#[tokio::test]
async fn deletion_posts_a_signed_document_and_a_wrong_secret_fails_verification() {
    let (r, url) = receiver(&[]).await;
    let (chef, name, id) = registered().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = reaper(chef.clone(), dir.path(), &url)
        .reap(&request(&name, false))
        .await
        .expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
    let got = r.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "one POST");
    let (headers, body) = &got[0];
    assert!(verify(SECRET, headers, body), "the signature verifies");
    // Hostile twins: another secret, or one changed byte, fails.
    assert!(!verify(b"someone-else", headers, body));
    let mut tampered = body.to_vec();
    tampered[0] ^= 1;
    assert!(!verify(SECRET, headers, &tampered));
    let doc: Value = serde_json::from_slice(body).expect("json");
    assert_eq!(doc["node_name"], name.as_str());
    assert_eq!(doc["instance_id"], id.as_str());
    assert_eq!(doc["fqdn"], format!("{name}.example.internal").as_str());
    assert_eq!(doc["ipaddress"], "10.1.2.3");
    assert_eq!(doc["outcome"], "deleted");
    assert_eq!(
        headers["idempotency-key"].to_str().expect("key"),
        doc["idempotency_key"].as_str().expect("key in body")
    );
    assert!(chef.get_node(&name).await.expect("get").is_none());
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_key_and_body() {
    let (r, url) = receiver(&[500]).await;
    let (chef, name, _) = registered().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = reaper(chef, dir.path(), &url)
        .reap(&request(&name, false))
        .await
        .expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
    let got = r.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 2, "the 500, then the retry");
    assert_eq!(got[0].1, got[1].1);
    assert_eq!(got[0].0["idempotency-key"], got[1].0["idempotency-key"]);
    assert!(verify(SECRET, &got[1].0, &got[1].1));
}

#[tokio::test]
async fn a_dry_run_sends_nothing() {
    let (r, url) = receiver(&[]).await;
    let (chef, name, _) = registered().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = reaper(chef.clone(), dir.path(), &url)
        .reap(&request(&name, true))
        .await
        .expect("reap");
    assert!(
        matches!(outcome, Outcome::WouldDelete { .. }),
        "{outcome:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        r.got.lock().expect("lock").is_empty(),
        "nothing sent in a dry run"
    );
    assert!(chef.get_node(&name).await.expect("get").is_some());
}

#[tokio::test]
async fn failures_outlasting_the_retries_retry_on_5xx_and_hold_on_403() {
    for (answers, retried) in [(vec![503, 503, 503], true), (vec![403], false)] {
        let (r, url) = receiver(&answers).await;
        let (chef, name, _) = registered().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let err = reaper(chef.clone(), dir.path(), &url)
            .reap(&request(&name, false))
            .await
            .expect_err("the webhook failed");
        assert_eq!(r.got.lock().expect("lock").len(), answers.len());
        // The Chef deletion itself went through before the webhook.
        assert!(chef.get_node(&name).await.expect("get").is_none());
        let decided = error_policy(&err, err.to_string());
        if retried {
            assert!(
                matches!(decided, ErrorDisposition::Retry { .. }),
                "{decided:?}"
            );
        } else {
            assert!(
                matches!(decided, ErrorDisposition::Hold { .. }),
                "{decided:?}"
            );
        }
    }
}

#[tokio::test]
async fn doctor_probes_the_receiver_and_fails_on_a_closed_port() {
    let (_r, url) = receiver(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").expect("secret");
    let mut cfg = nodereaper::config::Config::default();
    cfg.webhook.url = Some(url);
    cfg.webhook.secret_file = Some(secret);
    cfg.webhook.allow_plain_http = true;
    let checks = nodereaper::jobs::doctor_estate::checks(&cfg).await;
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert!(
        checks[0].ok && checks[0].name == "estate webhook",
        "{checks:?}"
    );
    // Nothing listens on a just-closed port.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    cfg.webhook.url = Some(format!("http://127.0.0.1:{port}/hook"));
    let checks = nodereaper::jobs::doctor_estate::checks(&cfg).await;
    assert!(!checks[0].ok, "{checks:?}");
}

/// At least once: a webhook that failed after the Chef deletion is sent
/// again when the redelivered message finds the registration gone, from
/// that deletion's journal entry and with the same idempotency key. An entry
/// recorded before the message was sent (a duplicate notification arriving
/// after a finished deletion) is not run again.
#[tokio::test]
async fn a_failed_webhook_is_sent_again_when_the_message_comes_back() {
    let (r, url) = receiver(&[503, 503, 503]).await;
    let (chef, name, id) = registered().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(chef.clone(), dir.path(), &url);
    let sent = chrono::Utc::now() - chrono::Duration::seconds(1);
    reaper
        .reap(&request(&name, false))
        .await
        .expect_err("the webhook failed");
    assert!(chef.get_node(&name).await.expect("get").is_none());
    let id = nodereaper::core::ids::InstanceId::parse(&id).expect("instance id");

    let duplicate_sent = chrono::Utc::now() + chrono::Duration::seconds(1);
    let ran = reaper
        .resume_estate(&id, duplicate_sent, None)
        .await
        .expect("resume");
    assert!(!ran, "an entry older than the message was run again");
    assert_eq!(r.got.lock().expect("lock").len(), 3);

    let ran = reaper.resume_estate(&id, sent, None).await.expect("resume");
    assert!(ran);
    let got = r.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 4, "sent again");
    let key = |i: usize| got[i].0.get("idempotency-key").cloned();
    assert!(key(3).is_some() && key(3) == key(0), "the same key");
    assert!(verify(SECRET, &got[3].0, &got[3].1), "signed");
}

/// The same through the daemon's pipeline on the real queue: the first
/// delivery deletes the registration and the webhook fails (a 503, one
/// attempt), so the message is retried; its redelivery finds the
/// registration gone and sends the webhook again. Queue and DLQ end empty.
#[tokio::test]
async fn the_daemon_sends_a_failed_webhook_again_on_redelivery() {
    let (r, url) = receiver(&[503]).await;
    let (chef, name, id) = registered().await;
    let (queue, dlq) = queue_with_dlq(&unique("hook-again"), 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).expect("secret");
    let mut cfg = daemon_config(&[&queue], &dir.path().join("journal"));
    cfg.webhook.url = Some(url);
    cfg.webhook.secret_file = Some(secret);
    cfg.webhook.allow_plain_http = true;
    cfg.webhook.attempts = 1;
    send(
        &queue,
        &sns_wrap(&asg_terminate_notification(&id, "web-asg")),
    )
    .await;
    let summary = drain(&cfg, None).await;
    assert!(chef.get_node(&name).await.expect("get").is_none());
    let got = r.got.lock().expect("lock").clone();
    assert_eq!(
        got.len(),
        2,
        "the failed POST, then the one sent again: {summary:?}"
    );
    assert_eq!(
        got[0].0.get("idempotency-key"),
        got[1].0.get("idempotency-key")
    );
    assert_eq!(summary.retried, 1, "{summary:?}");
    // The event's Auto Scaling group, in both (the second from the journal).
    for (_, body) in &got {
        let doc: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(doc["group"], "web-asg", "{doc}");
    }
    assert_eq!(depth(&queue).await, (0, 0));
    assert_eq!(depth(&dlq).await, (0, 0));
}

#[tokio::test]
async fn a_template_shapes_the_signed_body_and_hostile_values_stay_strings() {
    let (r, url) = receiver(&[]).await;
    let (chef, name, id) = registered().await;
    // Ohai's fqdn is whatever the host said: quotes, a newline, a brace.
    let hostile = "evil\", \"outcome\": \"kept\", \"x\": \"\n}{";
    let mut node = chef.get_node(&name).await.expect("get").expect("node");
    node["automatic"]["fqdn"] = Value::from(hostile);
    chef.update_node(&name, &node).await.expect("update");
    let template = nodereaper::core::template::Template::parse(
        r#"{"text": "{{node_name}} ({{fqdn}}) {{outcome}}", "instance": "{{instance_id}}",
            "outcome": "{{outcome}}", "group": "{{group}}", "ip": "{{ipaddress}}"}"#,
    )
    .expect("template");
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = templated_reaper(chef, dir.path(), &url, Some(template))
        .reap(&request(&name, false))
        .await
        .expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
    let got = r.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "one POST");
    let (headers, body) = &got[0];
    assert!(
        verify(SECRET, headers, body),
        "the signature covers the rendered body"
    );
    let doc: Value = serde_json::from_slice(body).expect("valid JSON");
    assert_eq!(doc.as_object().map(|m| m.len()), Some(5), "{doc}");
    assert_eq!(doc["outcome"], "deleted");
    assert_eq!(doc["instance"], id.as_str());
    assert_eq!(doc["ip"], "10.1.2.3");
    assert_eq!(doc["group"], Value::Null);
    assert_eq!(doc["text"], format!("{name} ({hostile}) deleted"));
}

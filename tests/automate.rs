//! Chef Automate after real deletions on goiardi, against an in-test double
//! of Automate's ingest API built from chef/automate
//! `api/external/ingest/chef.proto` (`ProcessNodeDelete`: POST
//! `/api/v0/ingest/events/chef/nodedelete`, body `*`; `GetVersion`: GET
//! `/api/v0/ingest/version`) and `api/external/ingest/request/action.proto`
//! (`message Delete`: `node_name`, `organization_name`,
//! `service_hostname`, `node_id`). The double answers 401 without the
//! `api-token` header Automate's gateway requires.

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
use nodereaper::adapters::automate::{AutomateSettings, AutomateTarget};
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::core::error::{error_policy, ErrorDisposition};
use nodereaper::core::verify::Protection;
use nodereaper::ports::ChefApi;
use serde_json::Value;

const TOKEN: &str = "automate-token-for-tests";

#[derive(Clone, Default)]
struct Automate {
    deletes: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

async fn nodedelete(State(a): State<Automate>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if headers.get("api-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return StatusCode::UNAUTHORIZED;
    }
    let code = a.answers.lock().expect("lock").pop_front().unwrap_or(200);
    if code == 200 {
        a.deletes.lock().expect("lock").push(body);
    }
    StatusCode::from_u16(code).expect("status")
}

async fn version(headers: HeaderMap) -> (StatusCode, String) {
    if headers.get("api-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    (
        StatusCode::OK,
        r#"{"name":"ingest-service","version":"test"}"#.into(),
    )
}

async fn automate(answers: &[u16]) -> (Automate, String) {
    let a = Automate::default();
    a.answers.lock().expect("lock").extend(answers);
    let app = axum::Router::new()
        .route(
            "/api/v0/ingest/events/chef/nodedelete",
            axum::routing::post(nodedelete),
        )
        .route("/api/v0/ingest/version", axum::routing::get(version))
        .with_state(a.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (a, format!("http://{addr}"))
}

fn target(url: &str, token: &str) -> AutomateTarget {
    AutomateTarget::new(AutomateSettings {
        url: url.into(),
        token: token.into(),
        organization: "acme".into(),
        service_hostname: "chef.example.com".into(),
        timeout: Duration::from_secs(5),
        attempts: 2,
        backoff: Duration::from_millis(20),
        allow_plain_http: true,
    })
    .expect("automate")
}

fn reaper(chef: Arc<dyn ChefApi>, dir: &std::path::Path, automate: AutomateTarget) -> Reaper {
    Reaper {
        chef,
        journal: Arc::new(LocalJournal::open(dir).expect("journal")),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: vec![Arc::new(automate)],
    }
}

fn request(node: &str) -> Request {
    Request {
        target: Target::Node(node.to_string()),
        source: RequestSource::Deregister,
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: None,
        verified_region: None,
    }
}

async fn registered(guid: Option<&str>) -> (Arc<dyn ChefApi>, String) {
    let chef: Arc<dyn ChefApi> = Arc::new(admin());
    let name = unique("automate");
    let mut node = node_json(&name, Some(&fake_instance_id()), Duration::from_secs(7200));
    if let Some(g) = guid {
        node["automatic"]["chef_guid"] = Value::from(g);
    }
    chef.create_node(&node).await.expect("node");
    chef.create_client(&name, None, false)
        .await
        .expect("client");
    (chef, name)
}

#[tokio::test]
async fn deletes_by_triple_and_by_chef_guid() {
    let (a, url) = automate(&[]).await;
    for guid in [None, Some("0f7c3a0e-1b7d-4c55-9c7e-2a4a8f0e9b11")] {
        let (chef, name) = registered(guid).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = reaper(chef, dir.path(), target(&url, TOKEN))
            .reap(&request(&name))
            .await
            .expect("reap");
        assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
        let got = a
            .deletes
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a delete");
        assert_eq!(got["node_name"], name.as_str());
        assert_eq!(got["organization_name"], "acme");
        assert_eq!(got["service_hostname"], "chef.example.com");
        assert_eq!(got.get("node_id").and_then(Value::as_str), guid);
    }
}

#[tokio::test]
async fn rejected_token_holds_and_5xx_retries_then_retries_the_message() {
    // A wrong token: 401 from the gateway, held (nodereaper's setup).
    let (a, url) = automate(&[]).await;
    let (chef, name) = registered(None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let err = reaper(chef, dir.path(), target(&url, "wrong"))
        .reap(&request(&name))
        .await
        .expect_err("401");
    assert!(
        matches!(
            error_policy(&err, String::new()),
            ErrorDisposition::Hold { .. }
        ),
        "{err}"
    );
    assert!(a.deletes.lock().expect("lock").is_empty());
    // 403: held too.
    let (_, url) = automate(&[403]).await;
    let (chef, name) = registered(None).await;
    let err = reaper(chef, dir.path(), target(&url, TOKEN))
        .reap(&request(&name))
        .await
        .expect_err("403");
    assert!(
        matches!(
            error_policy(&err, String::new()),
            ErrorDisposition::Hold { .. }
        ),
        "{err}"
    );
    // One 503 is retried within the deletion.
    let (a, url) = automate(&[503]).await;
    let (chef, name) = registered(None).await;
    reaper(chef, dir.path(), target(&url, TOKEN))
        .reap(&request(&name))
        .await
        .expect("retried");
    assert_eq!(a.deletes.lock().expect("lock").len(), 1);
    // 503 on every attempt: the message is retried.
    let (_, url) = automate(&[503, 503]).await;
    let (chef, name) = registered(None).await;
    let err = reaper(chef, dir.path(), target(&url, TOKEN))
        .reap(&request(&name))
        .await
        .expect_err("503");
    assert!(
        matches!(
            error_policy(&err, String::new()),
            ErrorDisposition::Retry { .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn probe_passes_with_the_token_and_fails_without() {
    use nodereaper::ports::estate::EstateTarget;
    let (_, url) = automate(&[]).await;
    assert!(target(&url, TOKEN).probe().await.is_ok());
    assert!(target(&url, "wrong").probe().await.is_err());
}

//! Journal and restore on the real stack (goiardi with authentication on):
//! a crash-torn index, a partial failure and its retry, the original key
//! working again, and goiardi never receiving a /keys or /_acl call.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use nodereaper::act::resolve::Resolver;
use nodereaper::act::{DeletionLimiter, Outcome, Reaper, Request, Target};
use nodereaper::adapters::chef::auth::SignVersion;
use nodereaper::adapters::chef::{
    AclObject, ChefClient, ChefError, ClientKey, ServerInfo, ServerKind,
};
use nodereaper::adapters::journal::{EntryFilter, JournalEntry, LocalJournal, Presence};
use nodereaper::core::verify::Protection;
use nodereaper::jobs::restore::{AclAction, ClientAction, NodeAction};
use nodereaper::ports::{ChefApi, Deleted, Journal, SearchRow};
use serde_json::{json, Value};

fn reaper(chef: Arc<dyn ChefApi>, journal_dir: &Path) -> Reaper {
    Reaper {
        chef,
        journal: Arc::new(LocalJournal::open(journal_dir).expect("journal")),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: Vec::new(),
    }
}

fn request(node: &str) -> Request {
    Request {
        target: Target::Node(node.to_string()),
        source: nodereaper::act::RequestSource::Deregister,
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: None,
        verified_region: None,
        group: None,
    }
}

/// A node plus a client with its own key pair, as chef-client registers;
/// returns the client's private key (the instance's client.pem).
async fn register_with_key(admin: &ChefClient, name: &str) -> String {
    admin
        .create_node(&node_json(
            name,
            Some(&fake_instance_id()),
            std::time::Duration::from_secs(7200),
        ))
        .await
        .expect("create node");
    new_client(admin, name, false).await
}

/// A request signed with `key_pem` as client `name` is accepted (not 401).
async fn original_key_accepted(name: &str, key_pem: &str) {
    let chef = chef_as(name, key_pem, SignVersion::V1_3);
    let resp = chef
        .send(reqwest::Method::GET, &["clients", name], &[], None)
        .await
        .expect("request");
    assert!(
        resp.status.is_success(),
        "a request signed with the instance's original key must be accepted again, got {}: {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("nodereaper.toml");
    std::fs::write(
        &path,
        format!(
            "[chef]\nserver_url = \"{}\"\nallow_plain_http = true\nclient_name = \"admin\"\nclient_key = \"{}\"\n[journal]\ndir = \"{}\"\n",
            stack().chef_url(),
            stack().admin_key().display(),
            dir.join("journal").display()
        ),
    )
    .expect("config");
    path
}

fn nodereaper(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run nodereaper")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[tokio::test]
async fn torn_index_line_then_journal_lists_and_restore_restores() {
    let admin = admin();
    let name = unique("torn");
    let original_key = register_with_key(&admin, &name).await;
    let original_client = admin.get_client(&name).await.expect("get").expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());

    let out = nodereaper(&config, &["deregister", "--node", &name]);
    assert!(out.status.success(), "deregister: {}", text(&out.stderr));
    assert!(admin.get_node(&name).await.expect("get").is_none());

    // A crash cut the next append short: half a line, no newline.
    let index = dir.path().join("journal/index.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&index)
        .expect("index");
    std::io::Write::write_all(&mut f, br#"{"id":"20261125T101500.123Z-web-9-0000"#).expect("tear");
    drop(f);

    let listed = nodereaper(&config, &["journal", "--node", &name, "--output", "json"]);
    assert!(listed.status.success(), "journal: {}", text(&listed.stderr));
    let stderr = text(&listed.stderr);
    assert!(
        stderr.contains("index.jsonl") && stderr.contains("line=2"),
        "the warning must name the file and the line: {stderr}"
    );
    let entries: Vec<Value> = serde_json::from_slice(&listed.stdout).expect("json list");
    assert_eq!(entries.len(), 1, "{}", text(&listed.stdout));
    let id = entries[0]["id"].as_str().expect("id").to_string();

    // Repaired: verify is clean, the torn text is kept aside.
    let verify = nodereaper(&config, &["journal", "verify"]);
    assert!(verify.status.success(), "verify: {}", text(&verify.stdout));
    let rejected = std::fs::read_to_string(dir.path().join("journal/index.rejected"))
        .expect("rejected lines kept");
    assert!(rejected.contains("web-9"), "{rejected}");

    // show prints the entry in full, objects included.
    let show = nodereaper(&config, &["journal", "show", &id]);
    assert!(show.status.success(), "show: {}", text(&show.stderr));
    let full: Value = serde_json::from_slice(&show.stdout).expect("show json");
    assert_eq!(full["node"]["name"], name.as_str());
    assert_eq!(full["client"]["public_key"], original_client["public_key"]);
    // The reaper records what kind of server it backed up from: goiardi, API v0.
    assert_eq!(full["server_kind"], "goiardi", "{full}");
    assert_eq!(full["api_version"], 0, "{full}");

    let restored = nodereaper(&config, &["restore", &name]);
    assert!(
        restored.status.success(),
        "restore: {}{}",
        text(&restored.stdout),
        text(&restored.stderr)
    );
    assert!(
        text(&restored.stdout).contains("client created_with_original_key"),
        "{}",
        text(&restored.stdout)
    );
    assert!(admin.get_node(&name).await.expect("get").is_some());
    let client = admin.get_client(&name).await.expect("get").expect("client");
    assert_eq!(client["public_key"], original_client["public_key"]);
    original_key_accepted(&name, &original_key).await;

    // A damaged object is reported by verify, with a failing exit status.
    std::fs::remove_file(dir.path().join(format!("journal/objects/{id}.client.json")))
        .expect("remove object");
    let verify = nodereaper(&config, &["journal", "verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify.stdout));
    assert!(
        text(&verify.stdout).contains(&format!("{id}.client.json")),
        "{}",
        text(&verify.stdout)
    );
}

/// The real client, with the first node DELETE failing like a timeout.
struct FlakyNodeDelete {
    inner: Arc<ChefClient>,
    fail_next: AtomicBool,
}

#[async_trait]
impl ChefApi for FlakyNodeDelete {
    fn server(&self) -> &str {
        self.inner.server()
    }
    async fn get_node(&self, name: &str) -> Result<Option<Value>, ChefError> {
        self.inner.get_node(name).await
    }
    async fn delete_node(&self, name: &str) -> Result<Deleted, ChefError> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(ChefError::Status {
                server: self.server().into(),
                method: "DELETE".into(),
                object: format!("/nodes/{name}"),
                status: 504,
                detail: "gateway timeout (injected)".into(),
            });
        }
        self.inner.delete_node(name).await
    }
    async fn get_client(&self, name: &str) -> Result<Option<Value>, ChefError> {
        self.inner.get_client(name).await
    }
    async fn delete_client(&self, name: &str) -> Result<Deleted, ChefError> {
        self.inner.delete_client(name).await
    }
    async fn list_nodes(&self) -> Result<Vec<String>, ChefError> {
        self.inner.list_nodes().await
    }
    async fn search_node_names(&self, query: &str) -> Result<Vec<String>, ChefError> {
        self.inner.search_node_names(query).await
    }
    async fn partial_search_nodes(
        &self,
        query: &str,
        keys: &[(&str, &[&str])],
    ) -> Result<Vec<SearchRow>, ChefError> {
        self.inner.partial_search_nodes(query, keys).await
    }
    async fn create_node(&self, node: &Value) -> Result<(), ChefError> {
        self.inner.create_node(node).await
    }
    async fn update_node(&self, name: &str, node: &Value) -> Result<(), ChefError> {
        self.inner.update_node(name, node).await
    }
    async fn create_client(
        &self,
        name: &str,
        public_key: Option<&str>,
        admin: bool,
    ) -> Result<(), ChefError> {
        self.inner.create_client(name, public_key, admin).await
    }
    async fn server_info(&self) -> Result<ServerInfo, ChefError> {
        self.inner.server_info().await
    }
    async fn client_keys(&self, name: &str) -> Result<Option<Vec<ClientKey>>, ChefError> {
        self.inner.client_keys(name).await
    }
    async fn get_acl(&self, object: AclObject, name: &str) -> Result<Option<Value>, ChefError> {
        self.inner.get_acl(object, name).await
    }
}

#[tokio::test]
async fn partial_failure_then_retry_still_restores_node_and_client() {
    let admin = Arc::new(admin());
    let name = unique("retry");
    let original_key = register_with_key(&admin, &name).await;
    let original_client = admin.get_client(&name).await.expect("get").expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let flaky = Arc::new(FlakyNodeDelete {
        inner: admin.clone(),
        fail_next: AtomicBool::new(true),
    });
    let reaper = reaper(flaky, dir.path());

    // First attempt: client deleted, node DELETE "times out".
    let err = reaper
        .reap(&request(&name))
        .await
        .expect_err("node delete fails");
    assert!(err.to_string().contains("504"), "{err}");
    assert!(admin.get_client(&name).await.expect("get").is_none());
    assert!(admin.get_node(&name).await.expect("get").is_some());
    // The retry finishes: its entry has the node and records the client as
    // already gone (not as "none").
    let outcome = reaper.reap(&request(&name)).await.expect("retry");
    assert!(
        matches!(
            outcome,
            Outcome::Deleted {
                client: Deleted::AlreadyGone,
                node: Deleted::Removed,
                ..
            }
        ),
        "{outcome:?}"
    );
    let journal = LocalJournal::open(dir.path()).expect("journal");
    let entries = journal.entries().await.expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].client_status, Some(Presence::AlreadyGone));
    assert!(entries[1].client.is_none() && entries[0].client.is_some());

    let filter = EntryFilter {
        node: Some(name.clone()),
        ..Default::default()
    };
    let regs = nodereaper::jobs::restore::select(&journal, &filter)
        .await
        .expect("select");
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].entry_ids.len(), 2, "both entries are merged");
    let restored = nodereaper::jobs::restore::restore(admin.as_ref(), &regs[0], false)
        .await
        .expect("restore");
    assert_eq!(restored.node_action, NodeAction::Created);
    assert_eq!(restored.client_action, ClientAction::CreatedWithOriginalKey);
    assert!(admin.get_node(&name).await.expect("get").is_some());
    let client = admin.get_client(&name).await.expect("get").expect("client");
    assert_eq!(client["public_key"], original_client["public_key"]);
    original_key_accepted(&name, &original_key).await;
}

/// A reverse proxy in front of goiardi that records every request line.
struct CountingProxy {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

/// Sends `req` on to `target` (same method, path, headers and body) and
/// answers with the target's answer: the forwarding half of the test proxies.
async fn relay(
    http: &reqwest::Client,
    target: &str,
    path: &str,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::body::{to_bytes, Body};
    use axum::response::Response;
    let method = req.method().clone();
    let mut out = http.request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method"),
        format!("{target}{path}"),
    );
    for (k, v) in req.headers() {
        if k.as_str() != "host" && k.as_str() != "content-length" {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let body = to_bytes(req.into_body(), 16 << 20).await.expect("body");
    let resp = out.body(body.to_vec()).send().await.expect("forward");
    let mut builder = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if k.as_str() != "content-length" && k.as_str() != "transfer-encoding" {
            builder = builder.header(k.as_str(), v.as_bytes());
        }
    }
    let bytes = resp.bytes().await.expect("body");
    builder.body(Body::from(bytes)).expect("response")
}

impl CountingProxy {
    async fn start(target: &str) -> Self {
        use axum::extract::{Request as AxRequest, State};
        use axum::response::Response;
        type Shared = (Arc<Mutex<Vec<String>>>, String, reqwest::Client);
        async fn forward(State((seen, target, http)): State<Shared>, req: AxRequest) -> Response {
            let method = req.method().clone();
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            seen.lock().expect("lock").push(format!("{method} {path}"));
            relay(&http, &target, &path, req).await
        }
        let seen: Arc<Mutex<Vec<String>>> = Default::default();
        let app = axum::Router::new().fallback(forward).with_state((
            seen.clone(),
            target.trim_end_matches('/').to_string(),
            reqwest::Client::new(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            seen,
        }
    }
}

#[tokio::test]
async fn goiardi_never_receives_keys_or_acl_calls() {
    let admin = admin();
    let name = unique("noacl");
    let original_key = register_with_key(&admin, &name).await;
    let proxy = CountingProxy::start(stack().chef_url()).await;
    let chef = Arc::new(
        ChefClient::new(nodereaper::adapters::chef::ChefSettings {
            server_url: url::Url::parse(&proxy.url).expect("url"),
            client_name: "admin".into(),
            key: nodereaper::adapters::chef::auth::SigningKey::from_pem(&admin_key_pem())
                .expect("key"),
            sign_version: SignVersion::V1_3,
            timeout: std::time::Duration::from_secs(30),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            page_size: 1000,
        })
        .expect("client"),
    );
    let info = chef.server_info().await.expect("detect");
    assert_eq!(info.kind, ServerKind::Goiardi);
    assert_eq!(info.api_version, 0);

    // The backup as the reaper makes it, with the server extras.
    let node = chef.get_node(&name).await.expect("get");
    let client = chef.get_client(&name).await.expect("get");
    let mut entry = JournalEntry::new(
        "deregister",
        "test",
        None,
        None,
        &name,
        Some(name.clone()),
        chef.server(),
        node,
        client,
    );
    nodereaper::act::backup::add_server_extras(&mut entry, chef.as_ref())
        .await
        .expect("extras");
    assert_eq!(entry.server_kind, Some(ServerKind::Goiardi));
    assert_eq!(entry.api_version, Some(0));
    assert!(entry.client_keys.is_none() && entry.node_acl.is_none() && entry.client_acl.is_none());
    // Asking directly is refused locally, not sent.
    assert!(chef.client_keys(&name).await.expect("keys").is_none());
    assert!(chef
        .get_acl(AclObject::Node, &name)
        .await
        .expect("acl")
        .is_none());
    assert!(chef
        .put_acl(AclObject::Node, &name, "read", &json!({}))
        .await
        .is_err());
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = LocalJournal::open(dir.path()).expect("journal");
    journal.record(&entry).await.expect("record");
    assert_eq!(
        chef.delete_client(&name).await.expect("delete"),
        Deleted::Removed
    );
    assert_eq!(
        chef.delete_node(&name).await.expect("delete"),
        Deleted::Removed
    );
    // And through the reaper and a restore.
    let regs = nodereaper::jobs::restore::select(&journal, &EntryFilter::default())
        .await
        .expect("select");
    let restored = nodereaper::jobs::restore::restore(chef.as_ref(), &regs[0], false)
        .await
        .expect("restore");
    assert_eq!(restored.client_action, ClientAction::CreatedWithOriginalKey);
    assert_eq!(restored.acl_action, AclAction::NotSupportedByServer);
    original_key_accepted(&name, &original_key).await;
    let outcome = reaper(chef.clone(), dir.path())
        .reap(&request(&name))
        .await
        .expect("reap");
    assert_eq!(outcome.label(), "deleted");

    let seen = proxy.seen.lock().expect("lock").clone();
    assert!(
        seen.iter().any(|r| r.starts_with("DELETE /clients/"))
            && seen.iter().any(|r| r.starts_with("POST /clients")),
        "the proxy must have seen the traffic: {seen:?}"
    );
    let forbidden: Vec<_> = seen
        .iter()
        .filter(|r| r.contains("/keys") || r.contains("/_acl"))
        .collect();
    assert!(forbidden.is_empty(), "goiardi received {forbidden:?}");
}

#[tokio::test]
async fn s3_journal_encrypts_verifies_and_prunes_in_moto() {
    use nodereaper::adapters::journal::S3Journal;
    let (s3, bucket) = s3_bucket("journal").await;
    let prefix = "nodereaper/journal/";
    let journal = S3Journal::new(s3.clone(), bucket.clone(), prefix);
    let entry = |name: &str, age_days: i64| {
        let mut e = JournalEntry::new(
            "event",
            "test",
            None,
            None,
            name,
            Some(name.into()),
            "http://chef",
            Some(json!({"name": name})),
            None,
        );
        e.recorded_at -= chrono::Duration::days(age_days);
        e.id = format!(
            "{}-{name}-00000000",
            e.recorded_at.format("%Y%m%dT%H%M%S%.3fZ")
        );
        e
    };
    let old = entry("old", 100);
    let new = entry("new", 1);
    journal.record(&old).await.expect("record");
    journal.record(&new).await.expect("record");
    // What the daemon's daily sweep cap reads at start: only the recent one.
    let since = chrono::Utc::now() - chrono::Duration::days(2);
    let recent: Vec<String> = journal
        .entries_since(since)
        .await
        .expect("entries since")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(recent, vec![new.id.clone()]);
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(format!("{prefix}{}.json", new.id))
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );
    // With a KMS key: SSE-KMS with that key.
    let kms_journal = S3Journal::new(s3.clone(), bucket.clone(), "kms/")
        .with_kms_key(Some("alias/nodereaper-journal".into()));
    kms_journal.record(&new).await.expect("record with SSE-KMS");
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(format!("kms/{}.json", new.id))
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id(), Some("alias/nodereaper-journal"));
    // The probe (doctor, start-up) writes the way entries are written, with
    // the KMS key, and leaves nothing behind. (moto does not enforce KMS
    // permissions, so the case where only the KMS part is denied shows on
    // AWS alone.)
    kms_journal.probe().await.expect("probe with SSE-KMS");
    let probe_left = s3
        .head_object()
        .bucket(&bucket)
        .key("kms/.probe")
        .send()
        .await;
    assert!(probe_left.is_err(), "the probe object was left behind");
    // A damaged object is listed by verify and skipped by entries.
    s3.put_object()
        .bucket(&bucket)
        .key(format!("{prefix}20261125T000000.000Z-bad-00000000.json"))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"{\"id\": ",
        ))
        .send()
        .await
        .expect("put");
    assert_eq!(journal.entries().await.expect("entries").len(), 2);
    let damage = journal.verify().await.expect("verify");
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(damage[0].location.contains("-bad-"), "{damage:?}");

    let removed =
        nodereaper::adapters::journal::prune(&journal, std::time::Duration::from_secs(90 * 86400))
            .await
            .expect("prune");
    assert_eq!(removed, 1);
    let left: Vec<_> = journal
        .entries()
        .await
        .expect("entries")
        .into_iter()
        .map(|e| e.node_name)
        .collect();
    assert_eq!(left, ["new"]);
}

#[tokio::test]
async fn doctor_reports_the_server_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let mut text_cfg = std::fs::read_to_string(&config).expect("config");
    text_cfg.push_str(&format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        stack().moto_url()
    ));
    std::fs::write(&config, text_cfg).expect("config");
    let out = nodereaper(&config, &["doctor"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("PASS chef server kind: goiardi (API v0)"),
        "{stdout}"
    );
}

/// A proxy in front of moto that, before forwarding a GET of an object whose
/// key contains `-pruned-`, deletes it in moto: the object was listed, then
/// pruned (the daemon's daily prune) before it could be read.
async fn pruning_s3_proxy(target: &str) -> String {
    use axum::extract::{Request as AxRequest, State};
    use axum::response::Response;
    type Shared = (String, reqwest::Client);
    async fn forward(State((target, http)): State<Shared>, req: AxRequest) -> Response {
        let method = req.method().clone();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        if method == axum::http::Method::GET && path.contains("-pruned-") {
            let gone = http
                .delete(format!("{target}{path}"))
                .send()
                .await
                .expect("delete in moto");
            assert!(gone.status().is_success(), "{}", gone.status());
        }
        relay(&http, &target, &path, req).await
    }
    let app = axum::Router::new().fallback(forward).with_state((
        target.trim_end_matches('/').to_string(),
        reqwest::Client::new(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// Three unreadable objects beside the good entry: a valid entry archived
/// to Glacier (moto answers InvalidObjectState, as S3 does, and as it
/// answers a KMS key this identity may not use: a refused GET), one the
/// proxy prunes between the listing and the GET, and one that is not JSON.
/// Their keys.
async fn put_unreadable_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> [String; 3] {
    let valid = |node: &str| {
        let mut e = JournalEntry::new(
            "event",
            "test",
            None,
            None,
            node,
            Some(node.into()),
            "http://chef",
            Some(json!({"name": node})),
            None,
        );
        e.id = format!("20261125T000000.000Z-{node}-00000000");
        serde_json::to_vec(&e).expect("json")
    };
    let glacier = format!("{prefix}20261125T000000.000Z-archived-00000000.json");
    let pruned = format!("{prefix}20261125T000000.000Z-pruned-00000000.json");
    let corrupt = format!("{prefix}20261125T000000.000Z-corrupt-00000000.json");
    for (key, body, class) in [
        (
            &glacier,
            valid("archived"),
            aws_sdk_s3::types::StorageClass::Glacier,
        ),
        (
            &pruned,
            valid("pruned"),
            aws_sdk_s3::types::StorageClass::Standard,
        ),
        (
            &corrupt,
            b"{\"id\": ".to_vec(),
            aws_sdk_s3::types::StorageClass::Standard,
        ),
    ] {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .storage_class(class)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send()
            .await
            .expect("put");
    }
    [glacier, pruned, corrupt]
}

// Multi-threaded: the proxy keeps serving while the test waits on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreadable_objects_are_skipped_named_not_fatal() {
    let (s3, bucket) = s3_bucket("journal").await;
    let prefix = "nodereaper/journal/";
    let admin = admin();
    let name = unique("s3skip");
    register_with_key(&admin, &name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let mut text_cfg = std::fs::read_to_string(&config).expect("config");
    // [journal] is the last table of write_config: s3_bucket joins it.
    text_cfg.push_str(&format!(
        "s3_bucket = \"{bucket}\"\ns3_prefix = \"{prefix}\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        pruning_s3_proxy(stack().moto_url()).await
    ));
    std::fs::write(&config, text_cfg).expect("config");
    let out = nodereaper(&config, &["deregister", "--node", &name]);
    assert!(out.status.success(), "deregister: {}", text(&out.stderr));
    assert!(admin.get_node(&name).await.expect("get").is_none());

    let [glacier, pruned, corrupt] = put_unreadable_objects(&s3, &bucket, prefix).await;

    // journal lists the good entry and names each skipped key.
    let listed = nodereaper(&config, &["journal", "--output", "json"]);
    let stderr = text(&listed.stderr);
    assert!(listed.status.success(), "journal: {stderr}");
    let entries: Vec<Value> = serde_json::from_slice(&listed.stdout).expect("json list");
    let names: Vec<_> = entries.iter().map(|e| e["node_name"].clone()).collect();
    assert_eq!(names, [json!(name)], "{}", text(&listed.stdout));
    for key in [&glacier, &pruned, &corrupt] {
        assert!(
            stderr.contains(key.as_str()),
            "no warning naming {key}: {stderr}"
        );
    }
    assert!(stderr.contains("InvalidObjectState"), "{stderr}");

    // verify reports the damaged objects (the pruned one is simply gone).
    let verify = nodereaper(&config, &["journal", "verify"]);
    let report = text(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&glacier) && report.contains(&corrupt),
        "{report}"
    );

    // restore still restores.
    let restored = nodereaper(&config, &["restore", &name]);
    assert!(
        restored.status.success(),
        "restore: {}{}",
        text(&restored.stdout),
        text(&restored.stderr)
    );
    assert!(admin.get_node(&name).await.expect("get").is_some());
    assert!(admin.get_client(&name).await.expect("get").is_some());
}

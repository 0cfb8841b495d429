//! Chef Infra Server behaviour that goiardi cannot show, against a small
//! in-test double of Chef Infra Server (oc_erchef). Everything goiardi can
//! show stays on goiardi (tests/journal.rs, tests/chef_api.rs, tests/sweep.rs).
//!
//! The double implements only what these tests need, each behaviour from
//! chef/chef-server (commit 9df4f56e, paths under src/oc_erchef/apps/):
//! - `X-Ops-Server-API-Version` on every answer:
//!   oc_chef_wm/src/oc_chef_wm_base.erl `add_api_info_header`;
//! - search: `total` is the index's match count (Solr numFound), rows whose
//!   objects are gone from the database are dropped from the page, so a page
//!   can be short without being the last: oc_chef_wm/src/chef_wm_search.erl
//!   `to_json`, `make_search_results`; OpenSearch reports at most 10,000
//!   (`track_total_hits` default), reproduced with `cap_total`;
//!   partial search: POST body `{"alias": ["path", ..]}`, rows `{url, data}`;
//! - API v1 client bodies without `public_key` and `admin`, POST /clients
//!   with `public_key` (key `default`) or `create_key` (private key returned
//!   once under `chef_key`): chef_objects/src/chef_client.erl,
//!   oc_chef_wm/src/chef_wm_clients.erl, oc_chef_wm/src/oc_chef_wm_key_base.erl;
//! - keys: GET /clients/N/keys `[{name, uri, expired}]`, GET
//!   /clients/N/keys/K `{name, public_key, expiration_date}`, POST
//!   /clients/N/keys: oc_chef_wm/src/oc_chef_wm_keys.erl,
//!   oc_chef_wm/src/oc_chef_wm_named_key.erl, chef_objects/src/chef_key.erl;
//! - ACLs: GET `/_acl?detail=granular`, PUT `/_acl/PERM` replacing one
//!   permission: oc_chef_wm/src/oc_chef_wm_acl.erl,
//!   oc_chef_wm/src/oc_chef_wm_acl_permission.erl; a new object's ACL is the
//!   container's plus its creator (oc_chef_authz/src/oc_chef_authz.erl
//!   `create_entity_with_container_acl`); deleting a client removes it from
//!   every ACL (the authz actor is deleted);
//! - DELETE of a node or client answers the deleted object.
//!
//! Signatures are not checked by the double (goiardi checks them for real).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use nodereaper::adapters::chef::auth::{SignVersion, SigningKey};
use nodereaper::adapters::chef::{AclObject, ChefClient, ChefSettings, ClientKey, ServerKind};
use nodereaper::adapters::journal::{EntryFilter, JournalEntry, LocalJournal};
use nodereaper::jobs::restore::{AclAction, ClientAction, NodeAction};
use nodereaper::ports::{ChefApi, Journal};
use serde_json::{json, Value};

const FAKE_PRIVATE_KEY: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nZG91YmxlLWdlbmVyYXRlZA==\n-----END RSA PRIVATE KEY-----\n";

fn public_key(tag: &str) -> String {
    format!("-----BEGIN PUBLIC KEY-----\n{tag}\n-----END PUBLIC KEY-----\n")
}

/// Key name -> (public key, expiration date).
type Keys = BTreeMap<String, (String, String)>;

#[derive(Default)]
struct Server {
    nodes: BTreeMap<String, Value>,
    /// name -> (v1 client body, keys name -> (public key, expiration))
    clients: BTreeMap<String, (Value, Keys)>,
    /// ("nodes"|"clients", name) -> granular ACL
    acls: BTreeMap<(String, String), Value>,
    /// The search index: node names, some of them stale (no object).
    index: Vec<String>,
    cap_total: bool,
    /// Every request: "METHOD path?query" and its JSON body.
    requests: Vec<(String, Value)>,
}

type Shared = Arc<Mutex<Server>>;

fn acl_for(creator: &str) -> Value {
    // The nodes/clients container ACL of a fresh org plus the creator.
    let ace = |groups: &[&str]| json!({"actors": [], "users": [], "clients": [creator], "groups": groups});
    json!({
        "create": ace(&["admins"]),
        "read": ace(&["admins", "clients", "users"]),
        "update": ace(&["admins"]),
        "delete": ace(&["admins", "users"]),
        "grant": ace(&["admins"]),
    })
}

fn answer(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(
            "x-ops-server-api-version",
            r#"{"min_version":"0","max_version":"2","request_version":"1","response_version":"1"}"#,
        )
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn not_found() -> Response {
    answer(StatusCode::NOT_FOUND, json!({"error": ["not found"]}))
}

fn lookup<'a>(v: &'a Value, path: &[Value]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p.as_str()?)?;
    }
    Some(cur)
}

async fn handle(State(server): State<Shared>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let requestor = req
        .headers()
        .get("x-ops-userid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let bytes = to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut s = server.lock().expect("lock");
    let line = match query.is_empty() {
        true => format!("{method} {path}"),
        false => format!(
            "{method} {path}?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        ),
    };
    s.requests.push((line, body.clone()));
    let parts: Vec<&str> = path
        .trim_start_matches("/organizations/acme")
        .trim_matches('/')
        .split('/')
        .collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET" | "POST", ["search", "node"]) => {
            let start: usize = query.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
            let rows: usize = query.get("rows").and_then(|v| v.parse().ok()).unwrap_or(1000);
            let found = s.index.len();
            let total = if s.cap_total { found.min(10_000) } else { found };
            let page: Vec<Value> = s
                .index
                .iter()
                .skip(start)
                .take(rows)
                // Stale index entries: no object in the database, dropped.
                .filter_map(|name| s.nodes.get(name))
                .map(|node| {
                    if method == "POST" {
                        let data: serde_json::Map<String, Value> = body
                            .as_object()
                            .map(|aliases| {
                                aliases
                                    .iter()
                                    .map(|(alias, path)| {
                                        let p = path.as_array().cloned().unwrap_or_default();
                                        let merged = node.get("automatic").cloned().unwrap_or(Value::Null);
                                        let v = if p.first().and_then(Value::as_str) == Some("name") {
                                            node["name"].clone()
                                        } else {
                                            lookup(&merged, &p).cloned().unwrap_or(Value::Null)
                                        };
                                        (alias.clone(), v)
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        json!({"url": format!("/nodes/{}", node["name"].as_str().unwrap_or("")), "data": data})
                    } else {
                        node.clone()
                    }
                })
                .collect();
            answer(StatusCode::OK, json!({"total": total, "start": start, "rows": page}))
        }
        ("GET", ["nodes", name]) => match s.nodes.get(*name) {
            Some(n) => answer(StatusCode::OK, n.clone()),
            None => not_found(),
        },
        ("POST", ["nodes"]) => {
            let name = body["name"].as_str().unwrap_or_default().to_string();
            if s.nodes.contains_key(&name) {
                return answer(StatusCode::CONFLICT, json!({"error": ["Node already exists"]}));
            }
            s.nodes.insert(name.clone(), body.clone());
            s.acls.insert(("nodes".into(), name.clone()), acl_for(&requestor));
            answer(StatusCode::CREATED, json!({"uri": format!("/nodes/{name}")}))
        }
        ("PUT", ["nodes", name]) => match s.nodes.get_mut(*name) {
            Some(n) => {
                *n = body.clone();
                answer(StatusCode::OK, body)
            }
            None => not_found(),
        },
        ("DELETE", ["nodes", name]) => match s.nodes.remove(*name) {
            Some(n) => {
                s.acls.remove(&("nodes".to_string(), name.to_string()));
                answer(StatusCode::OK, n)
            }
            None => not_found(),
        },
        ("GET", ["clients", name]) => match s.clients.get(*name) {
            Some((c, _)) => answer(StatusCode::OK, c.clone()),
            None => not_found(),
        },
        ("POST", ["clients"]) => {
            let name = body["name"].as_str().unwrap_or_default().to_string();
            if s.clients.contains_key(&name) {
                return answer(StatusCode::CONFLICT, json!({"error": ["Client already exists"]}));
            }
            if body.get("admin").is_some() {
                // v1 client_spec has no `admin`; the double refuses it to prove it is not sent.
                return answer(StatusCode::BAD_REQUEST, json!({"error": ["admin is not a v1 client field"]}));
            }
            let mut keys = BTreeMap::new();
            let mut out = json!({"uri": format!("/clients/{name}")});
            if let Some(pk) = body["public_key"].as_str() {
                keys.insert("default".to_string(), (pk.to_string(), "infinity".to_string()));
                out["chef_key"] = json!({"name": "default", "public_key": pk, "expiration_date": "infinity"});
            } else if body["create_key"] == json!(true) {
                keys.insert("default".to_string(), (public_key("generated"), "infinity".to_string()));
                out["chef_key"] = json!({"name": "default", "public_key": public_key("generated"),
                    "expiration_date": "infinity", "private_key": FAKE_PRIVATE_KEY});
            }
            let v1 = json!({"name": name, "clientname": name, "orgname": "acme", "validator": body["validator"] == json!(true),
                "json_class": "Chef::ApiClient", "chef_type": "client"});
            s.clients.insert(name.clone(), (v1, keys));
            s.acls.insert(("clients".into(), name.clone()), acl_for(&requestor));
            answer(StatusCode::CREATED, out)
        }
        ("DELETE", ["clients", name]) => match s.clients.remove(*name) {
            Some((c, _)) => {
                s.acls.remove(&("clients".to_string(), name.to_string()));
                // The actor is gone: it disappears from every ACL.
                for acl in s.acls.values_mut() {
                    for ace in acl.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
                        if let Some(list) = ace.get_mut("clients").and_then(Value::as_array_mut) {
                            list.retain(|c| c.as_str() != Some(name));
                        }
                    }
                }
                answer(StatusCode::OK, c)
            }
            None => not_found(),
        },
        ("GET", ["clients", name, "keys"]) => match s.clients.get(*name) {
            Some((_, keys)) => answer(
                StatusCode::OK,
                Value::Array(
                    keys.keys()
                        .map(|k| json!({"name": k, "uri": format!("/clients/{name}/keys/{k}"), "expired": false}))
                        .collect(),
                ),
            ),
            None => not_found(),
        },
        ("GET", ["clients", name, "keys", key]) => {
            match s.clients.get(*name).and_then(|(_, keys)| keys.get(*key)) {
                Some((pk, exp)) => answer(
                    StatusCode::OK,
                    json!({"name": key, "public_key": pk, "expiration_date": exp}),
                ),
                None => not_found(),
            }
        }
        ("POST", ["clients", name, "keys"]) => match s.clients.get_mut(*name) {
            Some((_, keys)) => {
                let k = body["name"].as_str().unwrap_or_default().to_string();
                keys.insert(
                    k.clone(),
                    (
                        body["public_key"].as_str().unwrap_or_default().to_string(),
                        body["expiration_date"].as_str().unwrap_or("infinity").to_string(),
                    ),
                );
                answer(StatusCode::CREATED, json!({"uri": format!("/clients/{name}/keys/{k}")}))
            }
            None => not_found(),
        },
        ("GET", [kind, name, "_acl"]) => {
            match s.acls.get(&(kind.to_string(), name.to_string())) {
                Some(acl) if query.get("detail").map(String::as_str) == Some("granular") => {
                    answer(StatusCode::OK, acl.clone())
                }
                Some(_) => answer(StatusCode::BAD_REQUEST, json!({"error": ["the double serves granular ACLs only"]})),
                None => not_found(),
            }
        }
        ("PUT", [kind, name, "_acl", perm]) => {
            let Some(ace) = body.get(*perm).cloned() else {
                return answer(StatusCode::BAD_REQUEST, json!({"error": ["missing permission"]}));
            };
            // Actors must exist (oc_chef_wm_acl_permission.erl bad_actor).
            let missing: Vec<String> = ace["clients"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|c| !s.clients.contains_key(*c) && *c != "nodereaper")
                .map(str::to_string)
                .collect();
            if !missing.is_empty() {
                return answer(StatusCode::BAD_REQUEST, json!({"error": [format!("The actor(s) {} do not exist in this organization as clients or users.", missing.join(", "))]}));
            }
            match s.acls.get_mut(&(kind.to_string(), name.to_string())) {
                Some(acl) => {
                    acl[*perm] = ace;
                    answer(StatusCode::OK, json!({}))
                }
                None => not_found(),
            }
        }
        _ => answer(StatusCode::NOT_FOUND, json!({"error": [format!("the double has no route {method} {path}")]})),
    }
}

struct Double {
    url: String,
    state: Shared,
}

impl Double {
    async fn start() -> Self {
        let state: Shared = Default::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/organizations/acme"),
            state,
        }
    }

    fn client(&self, page_size: usize) -> ChefClient {
        // Any RSA key: the double does not check signatures.
        ChefClient::new(ChefSettings {
            server_url: url::Url::parse(&self.url).expect("url"),
            client_name: "nodereaper".into(),
            key: SigningKey::from_pem(TEST_KEY).expect("key"),
            sign_version: SignVersion::V1_3,
            timeout: Duration::from_secs(10),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            page_size,
        })
        .expect("client")
    }

    fn with<T>(&self, f: impl FnOnce(&mut Server) -> T) -> T {
        f(&mut self.state.lock().expect("lock"))
    }

    fn requests(&self) -> Vec<(String, Value)> {
        self.with(|s| s.requests.clone())
    }
}

fn node(name: &str, instance: &str) -> Value {
    json!({"name": name, "chef_type": "node", "json_class": "Chef::Node", "chef_environment": "_default",
        "run_list": [], "normal": {}, "default": {}, "override": {},
        "automatic": {"ec2": {"instance_id": instance}, "ohai_time": 1.0}})
}

/// `n` nodes in the index, every 7th index entry stale (no object).
fn fill_index(s: &mut Server, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        if i % 7 == 3 {
            s.index.push(format!("stale-{i:05}"));
        }
        let name = format!("node-{i:05}");
        s.nodes
            .insert(name.clone(), node(&name, &format!("i-{i:017x}")));
        s.index.push(name.clone());
        names.push(name);
    }
    names
}

#[tokio::test]
async fn search_with_short_pages_mid_way_and_total_of_all_finds_every_node_once() {
    let double = Double::start().await;
    let expected = double.with(|s| fill_index(s, 950));
    let chef = double.client(100);
    // The sweep's call (src/jobs/sweep.rs): a partial search over all nodes.
    let keys: &[(&str, &[&str])] = &[("name", &["name"]), ("id", &["ec2", "instance_id"])];
    let rows = chef
        .partial_search_nodes("*:*", keys)
        .await
        .expect("partial search");
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names.len(), expected.len(), "every node exactly once");
    names.sort();
    names.dedup();
    assert_eq!(names, expected);
    assert_eq!(rows[0]["id"], json!(format!("i-{:017x}", 0)));
    // Short pages were served (not one page was full past the first stale row).
    let pages: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|(l, _)| l.starts_with("POST /organizations/acme/search/node"))
        .collect();
    let index_len = double.with(|s| s.index.len());
    assert_eq!(pages.len(), index_len.div_ceil(100), "pages: {pages:?}");
    assert!(
        pages.iter().all(|(l, _)| !l.contains("sort=")),
        "no goiardi sort on Chef Infra"
    );
    // The full-object search pages the same way.
    let mut full = chef.search_node_names("*:*").await.expect("search");
    full.sort();
    assert_eq!(full, expected);
    assert_eq!(
        chef.server_info().await.expect("info").kind,
        ServerKind::ChefInfra
    );
}

#[tokio::test]
async fn search_total_capped_at_10000_pages_until_an_empty_page() {
    let double = Double::start().await;
    let expected = double.with(|s| {
        s.cap_total = true;
        fill_index(s, 10_300)
    });
    let chef = double.client(1000);
    let mut names = chef.search_node_names("*:*").await.expect("search");
    assert_eq!(names.len(), expected.len(), "every node exactly once");
    names.sort();
    assert_eq!(names, expected);
    let last = double
        .requests()
        .into_iter()
        .rfind(|(l, _)| l.starts_with("GET /organizations/acme/search/node"))
        .expect("requests");
    let index_len = double.with(|s| s.index.len());
    assert!(
        last.0
            .contains(&format!("start={}", index_len.div_ceil(1000) * 1000)),
        "the last request is the empty page after the end: {last:?}"
    );
}

/// What the reaper records, with the server extras (keys, ACLs, version).
async fn back_up(chef: &ChefClient, name: &str) -> JournalEntry {
    let node = chef.get_node(name).await.expect("node");
    let client = chef.get_client(name).await.expect("client");
    let mut entry = JournalEntry::new(
        "deregister",
        "test",
        None,
        None,
        name,
        Some(name.to_string()),
        chef.server(),
        node,
        client,
    );
    nodereaper::act::backup::add_server_extras(&mut entry, chef)
        .await
        .expect("extras");
    entry
}

/// A registration as an instance makes it: its client creates its node.
fn register(s: &mut Server, name: &str, keys: &[(&str, &str)]) {
    s.nodes
        .insert(name.into(), node(name, "i-0123456789abcdef0"));
    s.acls.insert(("nodes".into(), name.into()), acl_for(name));
    s.clients.insert(
        name.into(),
        (
            json!({"name": name, "clientname": name, "orgname": "acme", "validator": false,
                "json_class": "Chef::ApiClient", "chef_type": "client"}),
            keys.iter()
                .map(|(k, exp)| (k.to_string(), (public_key(k), exp.to_string())))
                .collect(),
        ),
    );
    s.acls
        .insert(("clients".into(), name.into()), acl_for(name));
}

#[tokio::test]
async fn v1_backup_and_restore_bring_back_keys_and_acls() {
    let double = Double::start().await;
    let name = "web-1";
    double.with(|s| {
        register(
            s,
            name,
            &[("default", "infinity"), ("rotated", "2030-01-01T00:00:00Z")],
        )
    });
    let original_node_acl =
        double.with(|s| s.acls[&("nodes".to_string(), name.to_string())].clone());
    let chef = double.client(1000);

    let entry = back_up(&chef, name).await;
    assert_eq!(entry.server_kind, Some(ServerKind::ChefInfra));
    assert_eq!(entry.api_version, Some(1));
    let client_body = entry.client.as_ref().expect("client");
    assert!(
        client_body.get("public_key").is_none(),
        "a v1 client body has no key"
    );
    assert_eq!(
        entry.client_keys.as_deref(),
        Some(
            &[
                ClientKey {
                    name: "default".into(),
                    public_key: public_key("default"),
                    expiration_date: "infinity".into()
                },
                ClientKey {
                    name: "rotated".into(),
                    public_key: public_key("rotated"),
                    expiration_date: "2030-01-01T00:00:00Z".into()
                },
            ][..]
        )
    );
    assert_eq!(entry.node_acl.as_ref(), Some(&original_node_acl));
    assert!(entry.client_acl.is_some());

    let dir = tempfile::tempdir().expect("tempdir");
    let journal = LocalJournal::open(dir.path()).expect("journal");
    journal.record(&entry).await.expect("record");
    chef.delete_client(name).await.expect("delete client");
    chef.delete_node(name).await.expect("delete node");
    // Deleting the client removed it from every ACL.
    assert!(double.with(|s| s.acls.is_empty()));

    let regs = nodereaper::jobs::restore::select(&journal, &EntryFilter::default())
        .await
        .expect("select");
    let restored = nodereaper::jobs::restore::restore(&chef, &regs[0], false)
        .await
        .expect("restore");
    assert_eq!(
        restored.client_action,
        ClientAction::CreatedWithOriginalKeys
    );
    assert_eq!(restored.node_action, NodeAction::Created);
    assert_eq!(
        restored.acl_action,
        AclAction::Restored,
        "{:?}",
        restored.notes
    );
    assert!(restored.private_key.is_none());

    // The client came back with its original keys, created as API v1 wants.
    let posted = double
        .requests()
        .into_iter()
        .find(|(l, _)| l == "POST /organizations/acme/clients")
        .expect("POST /clients");
    assert_eq!(posted.1["public_key"], json!(public_key("default")));
    assert!(posted.1.get("admin").is_none() && posted.1.get("create_key").is_none());
    let keys = double.with(|s| s.clients[name].1.clone());
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys["rotated"],
        (public_key("rotated"), "2030-01-01T00:00:00Z".to_string())
    );
    // The node's ACL names the instance's client again, not only nodereaper.
    let node_acl = double.with(|s| s.acls[&("nodes".to_string(), name.to_string())].clone());
    assert_eq!(node_acl, original_node_acl);
    assert_eq!(node_acl["update"]["clients"], json!([name]));
}

#[tokio::test]
async fn v1_client_without_backed_up_keys_gets_a_new_key_shown_once() {
    let double = Double::start().await;
    let name = "web-2";
    double.with(|s| register(s, name, &[("default", "infinity")]));
    let chef = double.client(1000);
    let mut entry = back_up(&chef, name).await;
    // As if the keys could not be read (403) at backup time.
    entry.client_keys = None;
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = LocalJournal::open(dir.path().join("journal").as_path()).expect("journal");
    journal.record(&entry).await.expect("record");
    chef.delete_client(name).await.expect("delete");
    chef.delete_node(name).await.expect("delete");

    // Through the command, as an operator runs it: the key goes to --key-out.
    let config = write_config(dir.path(), &double.url);
    let key_file = dir.path().join("web-2.pem");
    // Async: the double answers on this test's runtime meanwhile.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .args(["restore", name, "--key-out"])
        .arg(&key_file)
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("client created_with_new_key"), "{stdout}");
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "the key goes to the file only: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key file"),
        FAKE_PRIVATE_KEY
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let posted = double
        .requests()
        .into_iter()
        .find(|(l, _)| l == "POST /organizations/acme/clients")
        .expect("POST /clients");
    assert_eq!(posted.1["create_key"], json!(true));
}

fn write_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let key = dir.join("nodereaper.pem");
    std::fs::write(&key, TEST_KEY).expect("key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let path = dir.join("nodereaper.toml");
    std::fs::write(
        &path,
        format!(
            "[chef]\nserver_url = \"{url}\"\nallow_plain_http = true\nclient_name = \"nodereaper\"\nclient_key = \"{}\"\n[journal]\ndir = \"{}\"\n",
            key.display(),
            dir.join("journal").display()
        ),
    )
    .expect("config");
    path
}

#[tokio::test]
async fn doctor_reports_chef_infra_server_and_its_api_version() {
    let double = Double::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &double.url);
    // AWS checks go to the local moto (never to AWS).
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        common::stack().moto_url()
    ));
    std::fs::write(&config, text).expect("config");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .arg("doctor")
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PASS chef server kind: Chef Infra Server, API v1: client keys"),
        "{stdout}"
    );
}

#[tokio::test]
async fn acl_calls_check_the_answer_shape() {
    let double = Double::start().await;
    double.with(|s| register(s, "web-3", &[("default", "infinity")]));
    let chef = double.client(1000);
    let acl = chef
        .get_acl(AclObject::Node, "web-3")
        .await
        .expect("acl")
        .expect("present");
    assert!(acl["read"]["groups"].is_array());
    let requests = double.requests();
    assert!(
        requests
            .iter()
            .any(|(l, _)| l == "GET /organizations/acme/nodes/web-3/_acl?detail=granular"),
        "{requests:?}"
    );
    assert!(chef
        .get_acl(AclObject::Node, "missing")
        .await
        .expect("acl")
        .is_none());
}

/// An RSA key for signing requests to the double (it checks no signature).
const TEST_KEY: &str = include_str!("fixtures/test-client.pem");

//! An in-test double of Chef Infra Server (oc_erchef, API v1) for the
//! behaviour goiardi cannot show. Each module follows chef/chef-server
//! (commit 9df4f56e, paths under src/oc_erchef/apps/) and cites the file it
//! follows; everything goiardi can show stays on goiardi.
//!
//! - `X-Ops-Server-API-Version` on every answer:
//!   oc_chef_wm/src/oc_chef_wm_base.erl `add_api_info_header`;
//! - [`search`]: full and partial node search, stale index rows, capped totals;
//! - [`objects`]: nodes and API v1 clients;
//! - [`keys`]: client keys;
//! - [`acl`]: granular ACLs;
//! - [`authz`]: who may do what (checked before every handler).
//! - [`groups`]: groups and the memberships a client's deletion removes.
//!
//! Signatures are not checked by the double (goiardi checks them for real).
//! Test binaries use it with `mod chef_double;`.
#![allow(dead_code)]

pub mod acl;
pub mod authz;
pub mod groups;
pub mod keys;
pub mod objects;
pub mod search;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use nodereaper::act::resolve::Resolver;
use nodereaper::act::{DeletionLimiter, Reaper};
use nodereaper::adapters::chef::auth::{SignVersion, SigningKey};
use nodereaper::adapters::chef::{ChefClient, ChefSettings};
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::core::protect::ProtectConfig;
use nodereaper::core::verify::Protection;
use nodereaper::ports::ChefApi;
use serde_json::{json, Value};

/// The private key the double hands out for `create_key`.
pub const FAKE_PRIVATE_KEY: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nZG91YmxlLWdlbmVyYXRlZA==\n-----END RSA PRIVATE KEY-----\n";

/// An RSA key for signing requests to the double (it checks no signature).
pub const TEST_KEY: &str = include_str!("../fixtures/test-client.pem");

/// The organization the double serves.
pub const ORG: &str = "acme";

/// A recognisable public key per tag.
pub fn public_key(tag: &str) -> String {
    format!("-----BEGIN PUBLIC KEY-----\n{tag}\n-----END PUBLIC KEY-----\n")
}

/// Key name -> (public key, expiration date).
pub type Keys = BTreeMap<String, (String, String)>;

/// The server's state; tests read and change it through [`Double::with`].
#[derive(Default)]
pub struct Server {
    pub nodes: BTreeMap<String, Value>,
    /// name -> (v1 client body, keys name -> (public key, expiration))
    pub clients: BTreeMap<String, (Value, Keys)>,
    /// ("nodes"|"clients", name) -> granular ACL
    pub acls: BTreeMap<(String, String), Value>,
    /// name -> members (empty unless a test calls [`groups::default_groups`]).
    pub groups: BTreeMap<String, groups::Members>,
    /// The search index: node names, some of them stale (no object).
    pub index: Vec<String>,
    /// The search engine behind erchef ([`search::Backend`]).
    pub search: search::Backend,
    /// Answers given before routing, first first: (status, `Retry-After`).
    pub fail_next: Vec<(u16, Option<String>)>,
    /// Every request: "METHOD path?query" and its JSON body.
    pub requests: Vec<(String, Value)>,
    /// "nodes"|"clients" -> the container's granular ACL ([`authz`]).
    pub containers: BTreeMap<String, Value>,
    /// name -> `{groupname, users, clients, groups}`.
    pub denied: Vec<String>,
    /// Every answer's status, in the order of `requests`.
    pub statuses: Vec<u16>,
    /// Requests whose line starts with one of these get a 500 (an outage
    /// in the middle of a restore).
    pub fail: Vec<String>,
    /// The organization this state is (`/organizations/ORG`).
    pub org: String,
}

pub type Shared = Arc<Mutex<Server>>;

/// Every organization of one server, by name: erchef serves each org's
/// objects under `/organizations/ORG/` from one host
/// (oc_chef_wm/src/oc_chef_wm_routes.erl), and an org's objects are its own
/// (each org's authz and database rows are apart:
/// oc_chef_wm/src/oc_chef_wm_base.erl `malformed_request` loads the org
/// first).
pub type Orgs = Arc<BTreeMap<String, Shared>>;

/// One request, parsed once for the handlers.
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// `X-Ops-UserId`.
    pub requestor: String,
    pub body: Value,
}

impl Req {
    /// A query parameter as a number, `default` when absent or malformed.
    pub fn query_usize(&self, key: &str, default: usize) -> usize {
        self.query
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// The nodes/clients container ACL of a fresh org plus the creator.
pub fn acl_for(creator: &str) -> Value {
    let ace = |groups: &[&str]| json!({"actors": [], "users": [], "clients": [creator], "groups": groups});
    json!({
        "create": ace(&["admins"]),
        "read": ace(&["admins", "clients", "users"]),
        "update": ace(&["admins"]),
        "delete": ace(&["admins", "users"]),
        "grant": ace(&["admins"]),
    })
}

pub fn answer(status: StatusCode, body: Value) -> Response {
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

pub fn not_found() -> Response {
    answer(StatusCode::NOT_FOUND, json!({"error": ["not found"]}))
}

async fn handle(State(orgs): State<Orgs>, req: Request) -> Response {
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
    let req = Req {
        method,
        path,
        query,
        requestor,
        body,
    };
    let org = req
        .path
        .strip_prefix("/organizations/")
        .and_then(|rest| rest.split('/').next());
    let server = match org {
        Some(org) => match orgs.get(org) {
            Some(server) => server,
            // oc_chef_wm/src/oc_chef_wm_base.erl `malformed_request`: org_not_found.
            None => {
                let msg = format!("organization '{org}' does not exist.");
                return answer(StatusCode::NOT_FOUND, json!({"error": [msg]}));
            }
        },
        None => match orgs.values().next() {
            Some(server) => server,
            None => return no_route(&req),
        },
    };
    let mut s = server.lock().expect("lock");
    let line = request_line(&req);
    s.requests.push((line.clone(), req.body.clone()));
    let response = if !s.fail_next.is_empty() {
        let (status, retry_after) = s.fail_next.remove(0);
        let mut resp = answer(
            StatusCode::from_u16(status).expect("status"),
            json!({"error": ["busy"]}),
        );
        if let Some(v) = retry_after {
            resp.headers_mut()
                .insert("retry-after", v.parse().expect("header"));
        }
        resp
    } else if s.fail.iter().any(|f| line.starts_with(f.as_str())) {
        answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": ["injected"]}),
        )
    } else {
        route(&mut s, &req)
    };
    s.statuses.push(response.status().as_u16());
    response
}

fn request_line(req: &Req) -> String {
    if req.query.is_empty() {
        return format!("{} {}", req.method, req.path);
    }
    let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{} {}?{}", req.method, req.path, query.join("&"))
}

fn route(s: &mut Server, req: &Req) -> Response {
    let prefix = format!("/organizations/{}", s.org);
    let parts: Vec<&str> = req
        .path
        .trim_start_matches(prefix.as_str())
        .trim_matches('/')
        .split('/')
        .collect();
    if let Some(denied) = authz::check(s, req, &parts) {
        s.denied.push(request_line(req));
        return denied;
    }
    match (req.method.as_str(), parts.as_slice()) {
        ("GET" | "POST", ["search", "node"]) => search::search_nodes(s, req),
        (_, [kind, name, "_acl", rest @ ..]) => acl::acl(s, req, kind, name, rest),
        (_, ["clients", _, "keys", ..]) => keys::keys(s, req, parts[1], &parts[3..]),
        ("GET", ["nodes"]) => list(&s.org, "nodes", s.nodes.keys()),
        ("GET", ["clients"]) => list(&s.org, "clients", s.clients.keys()),
        (_, ["nodes", ..]) => objects::nodes(s, req, &parts[1..]),
        (_, ["clients", ..]) => objects::clients(s, req, &parts[1..]),
        (_, ["groups", ..]) => groups::groups(s, req, &parts[1..]),
        _ => no_route(req),
    }
}

/// GET /nodes, GET /clients: `{name: uri}` (chef_wm_nodes.erl,
/// chef_wm_clients.erl `to_json` of the container).
fn list<'a>(org: &str, kind: &str, names: impl Iterator<Item = &'a String>) -> Response {
    let map: serde_json::Map<String, Value> = names
        .map(|n| (n.clone(), json!(format!("/organizations/{org}/{kind}/{n}"))))
        .collect();
    answer(StatusCode::OK, Value::Object(map))
}

pub fn no_route(req: &Req) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({"error": [format!("the double has no route {} {}", req.method, req.path)]}),
    )
}

/// A running double and a handle on one organization's state.
pub struct Double {
    pub url: String,
    pub state: Shared,
    /// Every organization of the server.
    pub orgs: Orgs,
}

impl Double {
    /// A server with the one organization [`ORG`].
    pub async fn start() -> Self {
        Self::start_orgs(&[ORG]).await
    }

    /// A server with these organizations; the handle is on the first
    /// ([`Double::org`] gives the others).
    pub async fn start_orgs(names: &[&str]) -> Self {
        let orgs: BTreeMap<String, Shared> = names
            .iter()
            .map(|name| {
                let mut server = Server {
                    org: name.to_string(),
                    ..Server::default()
                };
                authz::seed(&mut server);
                (name.to_string(), Arc::new(Mutex::new(server)))
            })
            .collect();
        let orgs: Orgs = Arc::new(orgs);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(orgs.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let base = format!("http://{addr}");
        let first = names.first().copied().unwrap_or(ORG);
        let double = Self {
            url: base,
            state: orgs.get(first).cloned().expect("an organization"),
            orgs,
        };
        double.org(first)
    }

    /// The handle on organization `name` of the same server.
    pub fn org(&self, name: &str) -> Self {
        let base = self
            .url
            .split("/organizations/")
            .next()
            .unwrap_or(&self.url);
        Self {
            url: format!("{base}/organizations/{name}"),
            state: self
                .orgs
                .get(name)
                .cloned()
                .expect("a configured organization"),
            orgs: self.orgs.clone(),
        }
    }

    /// A nodereaper client of the double, signing as `nodereaper`.
    pub fn client(&self, page_size: usize) -> ChefClient {
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

    pub fn with<T>(&self, f: impl FnOnce(&mut Server) -> T) -> T {
        f(&mut self.state.lock().expect("lock"))
    }

    pub fn requests(&self) -> Vec<(String, Value)> {
        self.with(|s| s.requests.clone())
    }
}

/// A node as an EC2 instance's chef-client saves it.
pub fn node(name: &str, instance: &str) -> Value {
    json!({"name": name, "chef_type": "node", "json_class": "Chef::Node", "chef_environment": "_default",
        "run_list": [], "normal": {}, "default": {}, "override": {},
        "automatic": {"ec2": {"instance_id": instance, "placement_availability_zone": "us-east-1a"}, "ohai_time": 1.0}})
}

/// `n` nodes in the index, every 7th index entry stale (no object).
pub fn fill_index(s: &mut Server, n: usize) -> Vec<String> {
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

/// A registration as an instance makes it: its client creates its node.
pub fn register(s: &mut Server, name: &str, keys: &[(&str, &str)]) {
    s.nodes
        .insert(name.into(), node(name, "i-0123456789abcdef0"));
    s.acls.insert(("nodes".into(), name.into()), acl_for(name));
    s.clients.insert(
        name.into(),
        (
            json!({"name": name, "clientname": name, "orgname": s.org, "validator": false,
                "json_class": "Chef::ApiClient", "chef_type": "client"}),
            keys.iter()
                .map(|(k, exp)| (k.to_string(), (public_key(k), exp.to_string())))
                .collect(),
        ),
    );
    s.acls
        .insert(("clients".into(), name.into()), acl_for(name));
    groups::client_created(s, name);
}

/// A reaper on `chef` as the daemon builds it (nodereaper's own client
/// protected), journaling to `journal`, without a rate cap.
pub fn reaper(chef: Arc<dyn ChefApi>, journal: &Path, protect: &ProtectConfig) -> Reaper {
    Reaper {
        chef,
        journal: Arc::new(LocalJournal::open(journal).expect("journal")),
        resolver: Resolver::default(),
        protection: Protection::new(protect).with_own_client("nodereaper"),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: Vec::new(),
    }
}

/// A config file for the `nodereaper` binary against the double at `url`,
/// signing with [`TEST_KEY`], journaling under `dir/journal`.
pub fn write_config(dir: &Path, url: &str) -> PathBuf {
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

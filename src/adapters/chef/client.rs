//! HTTP client for the Chef Infra Server API (and goiardi), with signed requests.
//! Search lives in [`search`].

mod search;
pub use search::SearchWindow;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use url::Url;

use super::auth::{self, RequestToSign, SignVersion, SigningKey};
use super::response::{error_detail, object_name, snippet};
use super::ChefError;
use crate::core::chef::{self as server, AclObject, ClientKey, ServerInfo, ServerKind};
use crate::core::groups::Group;
use crate::ports::{ChefApi, Deleted, SearchRow};
use crate::telemetry::metrics;

/// `X-Ops-Server-API-Version` we ask for (Chef Infra Server 12.4+ API v1);
/// what the answers then contain is in [`crate::core::chef`].
pub const SERVER_API_VERSION: &str = "1";
/// `X-Chef-Version` we announce; servers reject very old client versions.
pub const CHEF_VERSION: &str = "18.0.0";
/// Rows per search page (erchef's default, chef_index_query.erl; erchef has
/// no maximum, only the search engine's window limits `start + rows`).
pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// The longest `Retry-After` of a 503 or 429 that is waited for (and never
/// longer than `chef.timeout`); a longer one is waited for this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How often one request is sent again after a 503 or 429 with `Retry-After`.
pub const RETRY_AFTER_ATTEMPTS: u32 = 2;

/// How to reach and authenticate against one Chef server.
pub struct ChefSettings {
    /// `https://chef.example/organizations/ORG` or an org-less URL (goiardi, Chef 11).
    pub server_url: Url,
    /// The Chef API client nodereaper signs as (`X-Ops-Userid`).
    pub client_name: String,
    /// That client's private key.
    pub key: SigningKey,
    /// The signing protocol version.
    pub sign_version: SignVersion,
    /// Timeout of one request (the connect timeout is at most 10 s of it).
    pub timeout: Duration,
    /// Extra PEM bundle of trusted CAs (private CAs are common for Chef servers).
    pub ca_bundle: Option<PathBuf>,
    /// Disables certificate verification. Logged loudly at start.
    pub insecure_skip_tls_verify: bool,
    /// Rows per search page.
    pub page_size: usize,
}

/// A signed-request client for one Chef server.
pub struct ChefClient {
    http: reqwest::Client,
    base: Url,
    server: String,
    client_name: String,
    key: SigningKey,
    sign_version: SignVersion,
    page_size: usize,
    /// Learned once, from the first answer with decisive headers.
    info: OnceLock<ServerInfo>,
    /// Set when a keys or ACL answer had the wrong shape: never asked again.
    keys_unavailable: AtomicBool,
    acl_unavailable: AtomicBool,
    requests: Mutex<BTreeMap<String, u64>>,
    clock_offset: chrono::Duration,
    /// Set by the first 2xx answer: the organization exists, so a 404 for a
    /// named object means that object is absent.
    org_seen: AtomicBool,
    /// Longest wait for a `Retry-After`.
    retry_after_cap: Duration,
    /// Groups read recently (protection check, membership backup).
    pub(super) groups: super::groups::GroupCache,
}

/// A response read to the end.
pub struct ChefResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

impl ChefClient {
    /// A client for the server in `settings`: TLS with the extra CAs, no
    /// redirects followed. Errors name an unreadable or empty CA bundle.
    pub fn new(settings: ChefSettings) -> Result<Self, ChefError> {
        let server = settings
            .server_url
            .as_str()
            .trim_end_matches('/')
            .to_string();
        let setup_err = |detail: String| ChefError::BadResponse {
            server: server.clone(),
            method: "setup".into(),
            object: "client".into(),
            detail,
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("nodereaper/", env!("CARGO_PKG_VERSION")))
            // Never follow a redirect: it would carry the signed headers to
            // another URL. A 3xx is reported as an error naming the Location.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64);
        if let Some(path) = &settings.ca_bundle {
            let pem = std::fs::read(path)
                .map_err(|e| setup_err(format!("cannot read CA bundle {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                setup_err(format!(
                    "CA bundle {} is not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(setup_err(format!(
                    "CA bundle {} holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if settings.insecure_skip_tls_verify {
            tracing::warn!(
                server = %server,
                "TLS CERTIFICATE VERIFICATION IS DISABLED for the Chef server: anyone on the \
                 network path can impersonate it. Use chef.ca_bundle instead."
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| setup_err(format!("cannot build HTTP client: {e}")))?;
        let mut base = settings.server_url.clone();
        // Normalise: no trailing slash, so that joining "/nodes" is uniform.
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&trimmed);
        base.set_query(None);
        Ok(Self {
            http,
            base,
            server,
            client_name: settings.client_name,
            key: settings.key,
            sign_version: settings.sign_version,
            page_size: settings.page_size.max(1),
            info: OnceLock::new(),
            keys_unavailable: AtomicBool::new(false),
            acl_unavailable: AtomicBool::new(false),
            requests: Mutex::new(BTreeMap::new()),
            clock_offset: chrono::Duration::zero(),
            org_seen: AtomicBool::new(false),
            retry_after_cap: settings.timeout.min(MAX_RETRY_AFTER),
            groups: Default::default(),
        })
    }

    /// Signs requests as if the local clock were off by `offset`: reproduces
    /// clock skew (tests, `doctor` demonstrations). Zero by default.
    pub fn with_clock_offset(mut self, offset: chrono::Duration) -> Self {
        self.clock_offset = offset;
        self
    }

    /// The client name requests are signed as.
    pub fn client_name(&self) -> &str {
        &self.client_name
    }

    /// Requests sent so far, by `METHOD endpoint` (endpoint without object names).
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.requests.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// True once a response announced goiardi.
    pub fn is_goiardi(&self) -> bool {
        self.info
            .get()
            .is_some_and(|i| i.kind == ServerKind::Goiardi)
    }

    /// The server, learned once: from the headers of the first answer that
    /// names it, else from a GET of our own client. A server that names
    /// itself in no header stays `unknown` (and gets no key or ACL call).
    pub async fn detect_server(&self) -> Result<ServerInfo, ChefError> {
        if let Some(info) = self.info.get() {
            return Ok(*info);
        }
        let me = self.client_name.clone();
        self.send(Method::GET, &["clients", &me], &[], None).await?;
        Ok(*self.info.get_or_init(|| {
            tracing::info!(server = %self.server, "the Chef server names itself in no header: kind unknown; keys and ACLs will not be backed up");
            ServerInfo::UNKNOWN
        }))
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends one signed request and reads the whole response. Only transport
    /// failures are errors here; status handling is the caller's.
    pub async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<ChefResponse, ChefError> {
        let url = self.url(segments, query);
        let object = object_name(segments);
        let endpoint = segments.first().copied().unwrap_or("/");
        let payload = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| ChefError::BadResponse {
                server: self.server.clone(),
                method: method.to_string(),
                object: object.clone(),
                detail: format!("cannot encode request body: {e}"),
            })?,
            None => Vec::new(),
        };
        let mut attempt = 0;
        loop {
            let req = self.signed_request(&method, url.clone(), payload.clone(), body.is_some())?;
            if let Ok(mut counts) = self.requests.lock() {
                *counts.entry(format!("{method} /{endpoint}")).or_default() += 1;
            }
            let started = Instant::now();
            let result = self.execute(req, &method, &object).await;
            let outcome = match &result {
                Ok(r) => r.status.as_str().to_string(),
                Err(_) => "error".to_string(),
            };
            metrics::chef_request(method.as_str(), endpoint, &outcome, started.elapsed());
            if let Ok(r) = &result {
                self.learn_server(&r.headers);
                if r.status.is_success() {
                    self.org_seen.store(true, Ordering::Relaxed);
                }
                if let Some(wait) = self.retry_delay(r, attempt) {
                    tracing::info!(server = %self.server, %method, object = %object, status = r.status.as_u16(), wait_ms = wait.as_millis() as u64, "Chef server asked to retry later (Retry-After)");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
            }
            return result;
        }
    }

    /// How long to wait before sending again: the `Retry-After` of a 503 or
    /// 429 (seconds or an HTTP date), at most `retry_after_cap`, for at most
    /// [`RETRY_AFTER_ATTEMPTS`] retries. None: no retry.
    fn retry_delay(&self, resp: &ChefResponse, attempt: u32) -> Option<Duration> {
        let retryable = matches!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        );
        if !retryable || attempt >= RETRY_AFTER_ATTEMPTS {
            return None;
        }
        let value = resp
            .headers
            .get(reqwest::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim();
        let wait = match value.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
                (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            }
        };
        Some(wait.min(self.retry_after_cap))
    }

    /// After a 404 for `segments`: Ok when that means "absent", the
    /// [`ChefError::NoOrganization`] error when the collection itself is
    /// missing. A 404 for `/nodes/NAME` or `/clients/NAME` before any 2xx
    /// answer is checked once against the collection (GET `/nodes`).
    async fn confirm_absent(
        &self,
        method: &Method,
        segments: &[&str],
        body: &[u8],
    ) -> Result<(), ChefError> {
        let collection = match segments {
            [c] => return Err(self.no_organization(method, &[c], body)),
            [c, ..] if matches!(*c, "nodes" | "clients") => *c,
            _ => return Ok(()),
        };
        if self.org_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let resp = self.send(Method::GET, &[collection], &[], None).await?;
        match resp.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => {
                Err(self.no_organization(&Method::GET, &[collection], &resp.body))
            }
            _ => Err(self.status_error(&Method::GET, &[collection], &resp)),
        }
    }

    /// The request to `url` with the Chef headers and the signature over
    /// `payload` (sent as the JSON body when `has_body`).
    fn signed_request(
        &self,
        method: &Method,
        url: Url,
        payload: Vec<u8>,
        has_body: bool,
    ) -> Result<reqwest::RequestBuilder, ChefError> {
        let signed = auth::sign(
            &self.key,
            self.sign_version,
            &RequestToSign {
                method: method.as_str(),
                path: url.path(),
                body: &payload,
                user_id: &self.client_name,
                timestamp: chrono::Utc::now() + self.clock_offset,
                server_api_version: SERVER_API_VERSION,
            },
        )
        .map_err(|source| ChefError::Signing {
            server: self.server.clone(),
            source: source.into(),
        })?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .header("Accept", "application/json")
            .header("X-Chef-Version", CHEF_VERSION)
            .header("X-Ops-Server-API-Version", SERVER_API_VERSION);
        for (name, value) in signed {
            req = req.header(name, value);
        }
        if has_body {
            req = req.header("Content-Type", "application/json").body(payload);
        }
        Ok(req)
    }

    /// Sends `req` and reads the whole answer; only transport failures are
    /// errors.
    async fn execute(
        &self,
        req: reqwest::RequestBuilder,
        method: &Method,
        object: &str,
    ) -> Result<ChefResponse, ChefError> {
        let transport = |source: reqwest::Error| ChefError::Transport {
            server: self.server.clone(),
            method: method.to_string(),
            object: object.to_string(),
            source,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(transport)?.to_vec();
        Ok(ChefResponse {
            status,
            headers,
            body,
        })
    }

    /// Learns the server's kind from the first answer whose headers name it.
    fn learn_server(&self, headers: &reqwest::header::HeaderMap) {
        if self.info.get().is_some() {
            return;
        }
        if let Some(info) = ServerInfo::from_headers(headers) {
            if self.info.set(info).is_ok() {
                tracing::debug!(server = %self.server, kind = %info.kind, api_version = info.api_version, "Chef server detected");
            }
        }
    }

    /// Turns a non-success status into the right error.
    pub(super) fn status_error(
        &self,
        method: &Method,
        segments: &[&str],
        resp: &ChefResponse,
    ) -> ChefError {
        let server = self.server.clone();
        let method = method.to_string();
        let object = object_name(segments);
        let detail = error_detail(&resp.body);
        let client = self.client_name.clone();
        match resp.status {
            StatusCode::UNAUTHORIZED => ChefError::Unauthorized {
                server,
                method,
                object,
                client,
                detail,
            },
            StatusCode::FORBIDDEN => ChefError::Forbidden {
                server,
                method,
                object,
                client,
                detail,
            },
            status if status.is_redirection() => ChefError::Redirect {
                server,
                method,
                object,
                status: status.as_u16(),
                location: resp
                    .headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(no Location header)")
                    .to_string(),
            },
            status => ChefError::Status {
                server,
                method,
                object,
                status: status.as_u16(),
                detail,
            },
        }
    }

    pub(super) fn parse_json(
        &self,
        method: &Method,
        segments: &[&str],
        resp: &ChefResponse,
    ) -> Result<Value, ChefError> {
        serde_json::from_slice(&resp.body).map_err(|e| ChefError::BadResponse {
            server: self.server.clone(),
            method: method.to_string(),
            object: object_name(segments),
            detail: format!("body is not JSON ({e}): {}", snippet(&resp.body)),
        })
    }

    pub(super) async fn get_object(&self, segments: &[&str]) -> Result<Option<Value>, ChefError> {
        let resp = self.send(Method::GET, segments, &[], None).await?;
        match resp.status {
            s if s.is_success() => Ok(Some(self.parse_json(&Method::GET, segments, &resp)?)),
            StatusCode::NOT_FOUND => {
                self.confirm_absent(&Method::GET, segments, &resp.body)
                    .await?;
                Ok(None)
            }
            _ => Err(self.status_error(&Method::GET, segments, &resp)),
        }
    }

    async fn delete_object(&self, segments: &[&str]) -> Result<Deleted, ChefError> {
        let resp = self.send(Method::DELETE, segments, &[], None).await?;
        match resp.status {
            StatusCode::NOT_FOUND => {
                self.confirm_absent(&Method::DELETE, segments, &resp.body)
                    .await?;
                Ok(Deleted::AlreadyGone)
            }
            s if s.is_success() => {
                // Chef answers a DELETE with the deleted object. An empty 200 is
                // what a mis-routed request gets (goiardi answers any
                // /organizations/ORG path that way): nothing was deleted.
                let deleted_object = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
                match deleted_object {
                    Some(_) => Ok(Deleted::Removed),
                    None => Err(ChefError::EmptyDelete {
                        server: self.server.clone(),
                        object: object_name(segments),
                    }),
                }
            }
            _ => Err(self.status_error(&Method::DELETE, segments, &resp)),
        }
    }

    pub(super) async fn write_object(
        &self,
        method: Method,
        segments: &[&str],
        body: &Value,
    ) -> Result<Value, ChefError> {
        let resp = self.send(method.clone(), segments, &[], Some(body)).await?;
        if resp.status.is_success() {
            if resp.body.is_empty() {
                return Ok(Value::Null);
            }
            return self.parse_json(&method, segments, &resp);
        }
        Err(self.status_error(&method, segments, &resp))
    }

    fn no_endpoint(&self, method: &str, object: String, what: &str) -> ChefError {
        ChefError::BadResponse {
            server: self.server.clone(),
            method: method.into(),
            object,
            detail: format!("this server has no {what} endpoint"),
        }
    }

    /// Key and ACL calls: only where the server has them.
    async fn keys_supported(&self) -> Result<bool, ChefError> {
        Ok(self.detect_server().await?.has_keys_endpoint()
            && !self.keys_unavailable.load(Ordering::Relaxed))
    }

    async fn acl_supported(&self) -> Result<bool, ChefError> {
        Ok(self.detect_server().await?.has_acl_endpoint()
            && !self.acl_unavailable.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl ChefApi for ChefClient {
    /// Its API client, or (knife users sign the same way) its user.
    async fn own_identity(&self) -> Result<Option<(&'static str, Value)>, ChefError> {
        if let Some(client) = self.get_object(&["clients", &self.client_name]).await? {
            return Ok(Some(("client", client)));
        }
        Ok(self
            .get_object(&["users", &self.client_name])
            .await?
            .map(|user| ("user", user)))
    }

    fn server(&self) -> &str {
        &self.server
    }

    async fn get_node(&self, name: &str) -> Result<Option<Value>, ChefError> {
        self.get_object(&["nodes", name]).await
    }

    async fn delete_node(&self, name: &str) -> Result<Deleted, ChefError> {
        self.delete_object(&["nodes", name]).await
    }

    async fn get_client(&self, name: &str) -> Result<Option<Value>, ChefError> {
        self.get_object(&["clients", name]).await
    }

    async fn delete_client(&self, name: &str) -> Result<Deleted, ChefError> {
        self.delete_object(&["clients", name]).await
    }

    async fn list_nodes(&self) -> Result<Vec<String>, ChefError> {
        let segments = ["nodes"];
        // A 404 here is the wrong organization (confirm_absent), not "no nodes".
        let listing = self
            .get_object(&segments)
            .await?
            .unwrap_or_else(|| json!({}));
        match listing.as_object() {
            Some(map) => Ok(map.keys().cloned().collect()),
            None => Err(ChefError::BadResponse {
                server: self.server.clone(),
                method: "GET".into(),
                object: "/nodes".into(),
                detail: "expected a JSON object mapping node names to URLs".into(),
            }),
        }
    }

    async fn search_node_names(&self, query: &str) -> Result<Vec<String>, ChefError> {
        let rows = self.search_rows("node", query, None).await?;
        rows.iter()
            .map(|row| {
                row.get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| ChefError::BadResponse {
                        server: self.server.clone(),
                        method: "GET".into(),
                        object: "/search/node".into(),
                        detail: "a search row has no \"name\"".into(),
                    })
            })
            .collect()
    }

    async fn partial_search_nodes(
        &self,
        query: &str,
        keys: &[(&str, &[&str])],
    ) -> Result<Vec<SearchRow>, ChefError> {
        let body: serde_json::Map<String, Value> = keys
            .iter()
            .map(|(name, path)| ((*name).to_string(), json!(path)))
            .collect();
        let rows = self
            .search_rows("node", query, Some(&Value::Object(body)))
            .await?;
        rows.into_iter()
            .map(|row| match row.get("data").and_then(Value::as_object) {
                Some(data) => Ok(data.clone().into_iter().collect()),
                None => Err(ChefError::BadResponse {
                    server: self.server.clone(),
                    method: "POST".into(),
                    object: "/search/node".into(),
                    detail: "a partial search row has no \"data\" object".into(),
                }),
            })
            .collect()
    }

    async fn create_node(&self, node: &Value) -> Result<(), ChefError> {
        self.write_object(Method::POST, &["nodes"], node)
            .await
            .map(drop)
    }

    async fn update_node(&self, name: &str, node: &Value) -> Result<(), ChefError> {
        self.write_object(Method::PUT, &["nodes", name], node)
            .await
            .map(drop)
    }

    async fn create_client(
        &self,
        name: &str,
        public_key: Option<&str>,
        admin: bool,
    ) -> Result<(), ChefError> {
        self.create_client_returning_key(name, public_key, admin, false)
            .await
            .map(drop)
    }

    async fn server_info(&self) -> Result<ServerInfo, ChefError> {
        self.detect_server().await
    }

    async fn client_keys(&self, name: &str) -> Result<Option<Vec<ClientKey>>, ChefError> {
        if !self.keys_supported().await? {
            return Ok(None);
        }
        let listing_path = ["clients", name, "keys"];
        let Some(listing) = self.get_object(&listing_path).await? else {
            return Ok(None);
        };
        let Some(names) = server::key_names(&listing) else {
            // Not the documented `[{name, uri, expired}]`: this server does
            // not have the endpoint, whatever its headers said.
            self.keys_unavailable.store(true, Ordering::Relaxed);
            tracing::warn!(server = %self.server, "GET {} did not answer a key list; keys will not be backed up", object_name(&listing_path));
            return Ok(None);
        };
        let mut keys = Vec::with_capacity(names.len());
        for key_name in names {
            let path = ["clients", name, "keys", key_name.as_str()];
            let Some(answer) = self.get_object(&path).await? else {
                continue; // removed meanwhile
            };
            match ClientKey::from_answer(&answer) {
                Some(key) => keys.push(key),
                None => {
                    return Err(ChefError::BadResponse {
                        server: self.server.clone(),
                        method: "GET".into(),
                        object: object_name(&path),
                        detail: format!(
                            "expected {{name, public_key, expiration_date}}: {}",
                            snippet(answer.to_string().as_bytes())
                        ),
                    })
                }
            }
        }
        Ok(Some(keys))
    }

    async fn get_acl(&self, object: AclObject, name: &str) -> Result<Option<Value>, ChefError> {
        if !self.acl_supported().await? {
            return Ok(None);
        }
        let segments = [object.collection(), name, "_acl"];
        let resp = self
            .send(Method::GET, &segments, &[("detail", "granular")], None)
            .await?;
        match resp.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let acl = self.parse_json(&Method::GET, &segments, &resp)?;
                if server::is_acl(&acl) {
                    Ok(Some(acl))
                } else {
                    self.acl_unavailable.store(true, Ordering::Relaxed);
                    tracing::warn!(server = %self.server, "GET {} did not answer an ACL; ACLs will not be backed up", object_name(&segments));
                    Ok(None)
                }
            }
            _ => Err(self.status_error(&Method::GET, &segments, &resp)),
        }
    }

    async fn put_acl(
        &self,
        object: AclObject,
        name: &str,
        permission: &str,
        acl: &Value,
    ) -> Result<(), ChefError> {
        let segments = [object.collection(), name, "_acl", permission];
        if !self.acl_supported().await? {
            return Err(self.no_endpoint("PUT", object_name(&segments), "ACL"));
        }
        let body = server::acl_put_body(acl, permission).ok_or_else(|| ChefError::BadResponse {
            server: self.server.clone(),
            method: "PUT".into(),
            object: object_name(&segments),
            detail: format!("the backed-up ACL has no {permission:?} permission"),
        })?;
        self.write_object(Method::PUT, &segments, &body)
            .await
            .map(drop)
    }

    async fn create_client_returning_key(
        &self,
        name: &str,
        public_key: Option<&str>,
        admin: bool,
        validator: bool,
    ) -> Result<Option<String>, ChefError> {
        let info = self.detect_server().await?;
        let body = info.create_client_body(name, public_key, admin, validator);
        let answer = self.write_object(Method::POST, &["clients"], &body).await?;
        Ok(match public_key {
            Some(_) => None,
            None => server::created_private_key(&answer),
        })
    }

    async fn create_keyless_client(&self, name: &str, validator: bool) -> Result<(), ChefError> {
        self.create_keyless(name, validator).await
    }
    async fn get_group(&self, name: &str) -> Result<Option<Group>, ChefError> {
        self.read_group(name, None).await
    }
    async fn get_group_cached(&self, name: &str) -> Result<Option<Group>, ChefError> {
        self.read_group(name, Some(super::groups::GROUP_CACHE_TTL))
            .await
    }
    async fn list_groups(&self) -> Result<Vec<String>, ChefError> {
        self.group_names().await
    }
    async fn put_group(&self, group: &Group) -> Result<(), ChefError> {
        self.write_group(group).await
    }

    async fn add_client_key(&self, name: &str, key: &ClientKey) -> Result<(), ChefError> {
        let segments = ["clients", name, "keys"];
        if !self.keys_supported().await? {
            return Err(self.no_endpoint("POST", object_name(&segments), "keys"));
        }
        self.write_object(Method::POST, &segments, &key.to_body())
            .await
            .map(drop)
    }
}

//! Chef Automate: after the node is gone from the Chef server, delete it
//! from Automate too (nodes that report to Automate directly stay "missing"
//! there for 30 days otherwise).
//!
//! `POST /api/v0/ingest/events/chef/nodedelete` with header `api-token`
//! (chef/automate `api/external/ingest/chef.proto`, `ProcessNodeDelete`,
//! IAM action `ingest:nodes:delete`); the body is an
//! `ingest.request.Delete` (`api/external/ingest/request/action.proto`):
//! `node_name`, `organization_name`, `service_hostname`, and `node_id` when
//! the node records its `chef_guid`. 401/403 hold (nodereaper's token),
//! 5xx/408/429 and transport failures are retried, then retry the message.
//! Automate cannot restore a node: the journal keeps what was sent.
//!
//! The sweep of Automate's missing nodes ([`AutomateNodes`]) lists
//! `GET /api/v0/cfgmgmt/nodes?filter=status:missing&pagination.page=P&pagination.size=S`
//! (`cfgmgmt.proto` `GetNodes`, IAM `infra:nodes:list`; a JSON array of
//! `cfgmgmt.response.Node`, field names as in the proto: the gateway
//! marshals with `OrigName`, `components/automate-gateway/gateway/services.go`;
//! page size 10 when unset, `api/interservice/cfgmgmt/request/parameters.go`),
//! reads `GET /api/v0/cfgmgmt/nodes/{id}/attribute` (`GetAttributes`, IAM
//! `infra:nodes:get`; `response.NodeAttribute`, whose `automatic`, `normal`,
//! `default` and `override` are stringified JSON; an empty document for a
//! node it does not hold, `config-mgmt-service/grpcserver/nodes.go`), and
//! deletes with `nodedelete` `{"node_id": ID}`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::estate_http;
use crate::core::error::Retry;
use crate::ports::estate::{AutomateNodes, Cleaned, Departure, EstateError, EstateTarget};

/// The cfgmgmt node listing, below the Automate URL.
pub const NODES_PATH: &str = "/api/v0/cfgmgmt/nodes";

/// The target's name in the journal, logs and metrics.
pub const NAME: &str = "automate";

/// The ingest endpoint, below the Automate URL.
pub const NODEDELETE_PATH: &str = "/api/v0/ingest/events/chef/nodedelete";

/// How Automate is called.
#[derive(Debug, Clone)]
pub struct AutomateSettings {
    /// `https://automate.example.com`.
    pub url: String,
    /// An API token allowed `ingest:nodes:delete`.
    pub token: String,
    /// The Chef organization the nodes report under.
    pub organization: String,
    /// The Chef server's host name as Automate records it.
    pub service_hostname: String,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Requests per deletion before giving up (transient failures).
    pub attempts: u32,
    /// Wait before the second attempt, doubled for each further one.
    pub backoff: Duration,
    /// Allow `http://` (local test doubles).
    pub allow_plain_http: bool,
}

/// The Chef Automate estate target.
pub struct AutomateTarget {
    http: reqwest::Client,
    settings: AutomateSettings,
}

fn failed(operation: &str, object: &str, detail: String, retry: Retry) -> EstateError {
    estate_http::failed(NAME, operation, object, detail, retry)
}

/// The node's `chef_guid` (Automate's node id), where the node records it.
fn chef_guid(node: Option<&Value>) -> Option<String> {
    let node = node?;
    node.get("automatic")
        .and_then(|a| a.get("chef_guid"))
        .or_else(|| node.get("chef_guid"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl AutomateTarget {
    /// A target for `settings`: TLS (rustls), no redirects, the timeout.
    pub fn new(settings: AutomateSettings) -> Result<Self, EstateError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!settings.allow_plain_http)
            .build()
            .map_err(|e| failed("setup", &settings.url, e.to_string(), Retry::Permanent))?;
        Ok(AutomateTarget { http, settings })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.settings.url.trim_end_matches('/'))
    }

    /// The `ingest.request.Delete` body for a departed node.
    pub fn delete_request(&self, gone: &Departure) -> Value {
        let mut body = json!({
            "node_name": gone.node_name,
            "organization_name": self.settings.organization,
            "service_hostname": self.settings.service_hostname,
        });
        if let Some(id) = chef_guid(gone.node.as_ref()) {
            body["node_id"] = Value::String(id);
        }
        body
    }

    /// GET `url` with the token; the JSON answer. 401/403 name the IAM
    /// action `needs`.
    async fn get_json(&self, url: &str, needs: &str) -> Result<Value, EstateError> {
        let resp = self
            .http
            .get(url)
            .header("api-token", &self.settings.token)
            .send()
            .await
            .map_err(|e| failed("GET", url, e.to_string(), Retry::Transient))?;
        let status = resp.status();
        if !status.is_success() {
            let hint = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    format!(" (the api-token needs {needs})")
                }
                _ => String::new(),
            };
            return Err(estate_http::refused(NAME, "GET", url, resp, &hint).await);
        }
        resp.json::<Value>().await.map_err(|e| {
            failed(
                "GET",
                url,
                format!("expected a JSON answer: {e}"),
                Retry::Transient,
            )
        })
    }

    async fn post_once(&self, body: &Value) -> Result<(), EstateError> {
        let url = self.endpoint(NODEDELETE_PATH);
        let resp = self
            .http
            .post(&url)
            .header("api-token", &self.settings.token)
            .json(body)
            .send()
            .await
            .map_err(|e| failed("POST", &url, e.to_string(), Retry::Transient))?;
        let hint = match resp.status() {
            s if s.is_success() => return Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                " (the api-token needs ingest:nodes:delete)"
            }
            _ => "",
        };
        Err(estate_http::refused(NAME, "POST", &url, resp, hint).await)
    }
}

/// A stringified-JSON attribute of a `NodeAttribute` answer, parsed; `{}`
/// when empty or absent.
fn parsed_attribute(answer: &Value, key: &str) -> Result<Value, String> {
    match answer.get(key) {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|e| format!("{key}: expected stringified JSON attributes: {e}")),
        Some(v) if v.is_object() => Ok(v.clone()),
        Some(_) => Err(format!("{key}: expected stringified JSON attributes")),
    }
}

#[async_trait]
impl AutomateNodes for AutomateTarget {
    async fn missing_nodes(&self, page: u32, size: u32) -> Result<Vec<Value>, EstateError> {
        let url = format!(
            "{}?filter=status:missing&pagination.page={page}&pagination.size={size}&sorting.field=name&sorting.order=ASC",
            self.endpoint(NODES_PATH)
        );
        match self.get_json(&url, "infra:nodes:list").await? {
            Value::Array(nodes) => Ok(nodes),
            other => Err(failed(
                "GET",
                &url,
                format!(
                    "expected a JSON array of nodes, got {}",
                    other.to_string().chars().take(80).collect::<String>()
                ),
                Retry::Permanent,
            )),
        }
    }

    async fn attributes(&self, node_id: &str) -> Result<Option<Value>, EstateError> {
        let id: String = node_id
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let url = format!("{}/{id}/attribute", self.endpoint(NODES_PATH));
        let answer = self.get_json(&url, "infra:nodes:get").await?;
        if answer
            .get("node_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            return Ok(None);
        }
        let parse = |key| {
            parsed_attribute(&answer, key).map_err(|e| failed("GET", &url, e, Retry::Permanent))
        };
        Ok(Some(json!({
            "name": answer.get("name").cloned().unwrap_or(Value::Null),
            "chef_environment": answer.get("chef_environment").cloned().unwrap_or(Value::Null),
            "run_list": answer.get("run_list").cloned().unwrap_or_else(|| json!([])),
            "automatic": parse("automatic")?,
            "normal": parse("normal")?,
        })))
    }

    async fn delete_node(&self, node_id: &str) -> Result<(), EstateError> {
        let body = json!({ "node_id": node_id });
        let (attempts, backoff) = (self.settings.attempts, self.settings.backoff);
        estate_http::with_retries("Automate nodedelete", attempts, backoff, || {
            self.post_once(&body)
        })
        .await
    }
}

#[async_trait]
impl EstateTarget for AutomateTarget {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The request to send, recorded before the deletion.
    async fn backup(&self, gone: &Departure) -> Result<Option<Value>, EstateError> {
        Ok(Some(self.delete_request(gone)))
    }

    async fn clean(
        &self,
        gone: &Departure,
        backup: Option<&Value>,
    ) -> Result<Cleaned, EstateError> {
        let body = backup.cloned().unwrap_or_else(|| self.delete_request(gone));
        let (attempts, backoff) = (self.settings.attempts, self.settings.backoff);
        estate_http::with_retries("Automate nodedelete", attempts, backoff, || {
            self.post_once(&body)
        })
        .await?;
        Ok(Cleaned {
            changed: 1,
            left_alone: Vec::new(),
        })
    }

    async fn restore(&self, _backup: &Value) -> Result<String, EstateError> {
        Ok("Chef Automate cannot restore a node: it reappears at its next chef-client run; the journal keeps the delete request".into())
    }

    /// `GET /api/v0/ingest/version` with the token.
    async fn probe(&self) -> Result<String, EstateError> {
        let url = self.endpoint("/api/v0/ingest/version");
        let resp = self
            .http
            .get(&url)
            .header("api-token", &self.settings.token)
            .send()
            .await
            .map_err(|e| failed("GET", &url, e.to_string(), Retry::Transient))?;
        if resp.status().is_success() {
            return Ok(format!("{url} answered {}", resp.status()));
        }
        Err(failed(
            "GET",
            &url,
            format!(
                "answered {} (check automate.url and the api-token)",
                resp.status()
            ),
            Retry::Permanent,
        ))
    }
}

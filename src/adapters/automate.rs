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

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::estate_http;
use crate::core::error::Retry;
use crate::ports::estate::{Cleaned, Departure, EstateError, EstateTarget};

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

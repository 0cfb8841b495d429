//! The signed webhook: after each deletion, one HTTPS POST of a JSON
//! document describing it, for whatever else the instance joined (CMDB,
//! FreeIPA, monitoring, chat).
//!
//! The body is signed: header `X-Nodereaper-Signature: sha256=<hex
//! HMAC-SHA256 of the exact body bytes>` with the configured secret.
//! `Idempotency-Key` is the same for every attempt of one termination
//! (delivery is at least once: a receiver may see a retried POST twice).
//! Answers 5xx, 408, 429 and transport failures are retried with backoff;
//! redirects are not followed (the signed body goes only where configured).
//! With a body template ([`crate::core::template`]) the body is the
//! template rendered from the default document; the signature covers the
//! rendered bytes, and the journal keeps the default document.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use sha2::Digest;

use super::estate_http;
use crate::core::error::Retry;
use crate::ports::estate::{Cleaned, Departure, EstateError, EstateTarget};

/// The target's name in the journal, logs and metrics.
pub const NAME: &str = "webhook";

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Nodereaper-Signature";

/// How the webhook is sent.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The receiver.
    pub url: String,
    /// The HMAC-SHA256 secret.
    pub secret: Vec<u8>,
    /// Timeout of one POST.
    pub timeout: Duration,
    /// POSTs before giving up.
    pub attempts: u32,
    /// Wait before the second attempt, doubled for each further one.
    pub backoff: Duration,
    /// Allow `http://` (local test receivers).
    pub allow_plain_http: bool,
    /// The body template; `None`: the default document.
    pub template: Option<crate::core::template::Template>,
}

/// The webhook estate target.
pub struct WebhookTarget {
    http: reqwest::Client,
    key: ring::hmac::Key,
    settings: WebhookSettings,
}

/// `sha256=<hex HMAC-SHA256 of body>` with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn failed(operation: &str, object: &str, detail: String, retry: Retry) -> EstateError {
    estate_http::failed(NAME, operation, object, detail, retry)
}

/// The same for every attempt of one termination: the instance (one
/// termination each) and the registration, else the journal entry.
pub fn idempotency_key(gone: &Departure) -> String {
    let basis = match &gone.instance_id {
        Some(id) => format!("{id}/{}/{}", gone.node_name, gone.client_name),
        None => gone.journal_id.clone(),
    };
    hex(&sha2::Sha256::digest(basis.as_bytes()))
}

/// The document sent: who, where and what happened, from the backed-up node.
pub fn document(gone: &Departure) -> Value {
    let automatic = gone.node.as_ref().and_then(|n| n.get("automatic"));
    let attr = |k: &str| {
        automatic
            .and_then(|a| a.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "idempotency_key": idempotency_key(gone),
        "outcome": "deleted",
        "source": gone.source,
        "journal_id": gone.journal_id,
        "instance_id": gone.instance_id,
        "account": gone.account,
        "region": gone.region,
        "group": gone.group,
        "node_name": gone.node_name,
        "client_name": gone.client_name,
        "fqdn": attr("fqdn"),
        "ipaddress": attr("ipaddress"),
    })
}

impl WebhookTarget {
    /// A target for `settings`: TLS (rustls), no redirects, the timeout.
    pub fn new(settings: WebhookSettings) -> Result<Self, EstateError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!settings.allow_plain_http)
            .build()
            .map_err(|e| failed("setup", &settings.url, e.to_string(), Retry::Permanent))?;
        if settings.secret.is_empty() {
            return Err(failed(
                "setup",
                &settings.url,
                "the webhook secret is empty".into(),
                Retry::Permanent,
            ));
        }
        Ok(WebhookTarget {
            http,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &settings.secret),
            settings,
        })
    }

    /// One POST; Ok(()) on 2xx, the error (transient or not) otherwise.
    async fn post_once(&self, body: &[u8], key: &str) -> Result<(), EstateError> {
        let url = &self.settings.url;
        let sig = format!("sha256={}", hex(ring::hmac::sign(&self.key, body).as_ref()));
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header("Idempotency-Key", key)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| failed("POST", url, e.to_string(), Retry::Transient))?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(estate_http::refused(NAME, "POST", url, resp, "").await)
    }

    /// The body sent for `doc` (the default document): the template
    /// rendered from it, else `doc` itself.
    pub fn body(&self, doc: &Value) -> Value {
        match &self.settings.template {
            Some(t) => t.render(doc),
            None => doc.clone(),
        }
    }

    /// POSTs with retries and backoff; the last error when every attempt failed.
    async fn deliver(&self, doc: &Value) -> Result<(), EstateError> {
        let body = serde_json::to_vec(&self.body(doc)).map_err(|e| {
            failed(
                "encode",
                &self.settings.url,
                e.to_string(),
                Retry::Permanent,
            )
        })?;
        let key = doc["idempotency_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (attempts, backoff) = (self.settings.attempts, self.settings.backoff);
        estate_http::with_retries("webhook POST", attempts, backoff, || {
            self.post_once(&body, &key)
        })
        .await
    }
}

#[async_trait]
impl EstateTarget for WebhookTarget {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The document to send, recorded before the deletion.
    async fn backup(&self, gone: &Departure) -> Result<Option<Value>, EstateError> {
        Ok(Some(document(gone)))
    }

    async fn clean(
        &self,
        gone: &Departure,
        backup: Option<&Value>,
    ) -> Result<Cleaned, EstateError> {
        let doc = backup.cloned().unwrap_or_else(|| document(gone));
        self.deliver(&doc).await?;
        Ok(Cleaned {
            changed: 1,
            left_alone: Vec::new(),
        })
    }

    async fn restore(&self, _backup: &Value) -> Result<String, EstateError> {
        Ok("a webhook cannot be unsent; the journal keeps the document that was sent".into())
    }

    /// Any HTTP answer to a HEAD shows the receiver reachable (TLS included).
    async fn probe(&self) -> Result<String, EstateError> {
        let url = &self.settings.url;
        let resp = self
            .http
            .head(url)
            .send()
            .await
            .map_err(|e| failed("HEAD", url, e.to_string(), Retry::Transient))?;
        Ok(format!("{url} reachable (HEAD answered {})", resp.status()))
    }
}

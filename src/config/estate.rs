//! `[vault]` and `[webhook]`: what else a deletion cleans (the estate
//! targets, [`crate::ports::estate`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[vault]`: remove the deleted client from chef-vault items.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// Whether deletions also remove the client from the vaults it could read.
    pub enabled: bool,
    /// The data bags that are vaults; empty: every data bag holding a
    /// `<item>_keys` item in chef-vault's format.
    pub data_bags: Vec<String>,
}

/// `[webhook]`: a signed HTTPS POST after each deletion.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The receiver (`https://...`); unset: no webhook.
    pub url: Option<String>,
    /// File holding the HMAC-SHA256 secret (surrounding whitespace ignored).
    pub secret_file: Option<PathBuf>,
    /// The secret from AWS Secrets Manager (id or ARN) instead of a file.
    pub secret_id: Option<String>,
    /// Timeout of one POST.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// POSTs per deletion before giving up (answers 5xx, 429, timeouts).
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Allow an `http://` URL (local test receivers only).
    pub allow_plain_http: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: None,
            secret_file: None,
            secret_id: None,
            timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_secs(1),
            allow_plain_http: false,
        }
    }
}

/// `[automate]`: delete the node from Chef Automate after each deletion.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutomateConfig {
    /// `https://automate.example.com`; unset: Automate is not called.
    pub url: Option<String>,
    /// File holding an API token allowed `ingest:nodes:delete`.
    pub token_file: Option<PathBuf>,
    /// The token from AWS Secrets Manager (id or ARN) instead of a file.
    pub token_id: Option<String>,
    /// The organization the nodes report under; unset: the one in
    /// `chef.server_url` (`/organizations/ORG`), else `default`.
    pub organization: Option<String>,
    /// The Chef server host as Automate records it; unset: the host of
    /// `chef.server_url`.
    pub service_hostname: Option<String>,
    /// Timeout of one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests per deletion before giving up (5xx, 429, timeouts).
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Allow an `http://` URL (local test doubles only).
    pub allow_plain_http: bool,
}

impl Default for AutomateConfig {
    fn default() -> Self {
        AutomateConfig {
            url: None,
            token_file: None,
            token_id: None,
            organization: None,
            service_hostname: None,
            timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_secs(1),
            allow_plain_http: false,
        }
    }
}

impl AutomateConfig {
    /// `automate.url` https (or http with `allow_plain_http`), exactly one
    /// token source, at least one attempt.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && self.allow_plain_http => {}
            _ => {
                return Err(invalid(
                    file,
                    "automate.url",
                    format!("an https:// URL, got {url:?} (http only with automate.allow_plain_http = true, for a local test double)"),
                ))
            }
        }
        if self.token_file.is_some() == self.token_id.is_some() {
            return Err(invalid(
                file,
                "automate.token_file",
                "exactly one of automate.token_file and automate.token_id (the api-token)".into(),
            ));
        }
        if self.attempts == 0 || self.timeout.is_zero() {
            return Err(invalid(
                file,
                "automate.attempts",
                "at least 1 attempt and a non-zero automate.timeout".into(),
            ));
        }
        Ok(())
    }
}

fn invalid(file: &Path, key: &str, expected: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        key: key.to_string(),
        expected,
    }
}

impl WebhookConfig {
    /// `webhook.url` https (or http with `allow_plain_http`), exactly one
    /// secret source, at least one attempt.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && self.allow_plain_http => {}
            _ => {
                return Err(invalid(
                    file,
                    "webhook.url",
                    format!("an https:// URL, got {url:?} (http only with webhook.allow_plain_http = true, for a local test receiver)"),
                ))
            }
        }
        if self.secret_file.is_some() == self.secret_id.is_some() {
            return Err(invalid(
                file,
                "webhook.secret_file",
                "exactly one of webhook.secret_file and webhook.secret_id (the HMAC secret)".into(),
            ));
        }
        if self.attempts == 0 || self.timeout.is_zero() {
            return Err(invalid(
                file,
                "webhook.attempts",
                "at least 1 attempt and a non-zero webhook.timeout".into(),
            ));
        }
        Ok(())
    }
}

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
    /// The body as a JSON template with `{{field}}` placeholders
    /// ([`crate::core::template`]); unset: the default document.
    pub template: Option<String>,
    /// The template from a file instead.
    pub template_file: Option<PathBuf>,
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
            template: None,
            template_file: None,
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
        Endpoint {
            section: "automate",
            url: self.url.as_deref(),
            allow_plain_http: self.allow_plain_http,
            plain_http_for: "a local test double",
            sources: [
                ("token_file", self.token_file.is_some()),
                ("token_id", self.token_id.is_some()),
            ],
            secret: "the api-token",
            attempts: self.attempts,
            timeout: self.timeout,
        }
        .validate(file)
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
    /// The body template's text and the key it came from, when one is set;
    /// both set, or a file that cannot be read: the error.
    pub fn template_text(&self) -> Result<Option<(&'static str, String)>, (&'static str, String)> {
        match (&self.template, &self.template_file) {
            (Some(_), Some(_)) => Err((
                "webhook.template",
                "at most one of webhook.template and webhook.template_file".into(),
            )),
            (Some(t), None) => Ok(Some(("webhook.template", t.clone()))),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|t| Some(("webhook.template_file", t)))
                .map_err(|e| {
                    (
                        "webhook.template_file",
                        format!("a readable template file, {}: {e}", path.display()),
                    )
                }),
            (None, None) => Ok(None),
        }
    }

    /// The parsed body template, when one is set.
    pub fn parsed_template(
        &self,
    ) -> Result<Option<crate::core::template::Template>, (&'static str, String)> {
        let Some((key, text)) = self.template_text()? else {
            return Ok(None);
        };
        crate::core::template::Template::parse(&text)
            .map(Some)
            .map_err(|e| (key, format!("a JSON body template: {e}")))
    }

    /// `webhook.url` https (or http with `allow_plain_http`), exactly one
    /// secret source, at least one attempt; a template that parses and
    /// names only known fields.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        self.parsed_template()
            .map_err(|(key, expected)| invalid(file, key, expected))?;
        Endpoint {
            section: "webhook",
            url: self.url.as_deref(),
            allow_plain_http: self.allow_plain_http,
            plain_http_for: "a local test receiver",
            sources: [
                ("secret_file", self.secret_file.is_some()),
                ("secret_id", self.secret_id.is_some()),
            ],
            secret: "the HMAC secret",
            attempts: self.attempts,
            timeout: self.timeout,
        }
        .validate(file)
    }
}

/// What the HTTP estate targets' sections have in common.
struct Endpoint<'a> {
    section: &'a str,
    url: Option<&'a str>,
    allow_plain_http: bool,
    /// What plain http is allowed for (in the error).
    plain_http_for: &'a str,
    /// The two keys of the secret, and whether each is set.
    sources: [(&'a str, bool); 2],
    /// What the secret is (in the error).
    secret: &'a str,
    attempts: u32,
    timeout: Duration,
}

impl Endpoint<'_> {
    /// Unset URL: nothing to check. Else https (or http with
    /// `allow_plain_http`), exactly one secret source, at least one attempt
    /// and a non-zero timeout.
    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let Some(url) = self.url else {
            return Ok(());
        };
        let s = self.section;
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && self.allow_plain_http => {}
            _ => {
                return Err(invalid(
                    file,
                    &format!("{s}.url"),
                    format!("an https:// URL, got {url:?} (http only with {s}.allow_plain_http = true, for {})", self.plain_http_for),
                ))
            }
        }
        let [(a, a_set), (b, b_set)] = self.sources;
        if a_set == b_set {
            return Err(invalid(
                file,
                &format!("{s}.{a}"),
                format!("exactly one of {s}.{a} and {s}.{b} ({})", self.secret),
            ));
        }
        if self.attempts == 0 || self.timeout.is_zero() {
            return Err(invalid(
                file,
                &format!("{s}.attempts"),
                format!("at least 1 attempt and a non-zero {s}.timeout"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key and message of a refused section.
    fn refusal(r: Result<(), ConfigError>) -> (String, String) {
        match r {
            Err(ConfigError::Invalid { key, expected, .. }) => (key, expected),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn webhook_and_automate_sections_are_refused_by_field() {
        let file = Path::new("t.toml");
        let mut w = WebhookConfig {
            url: Some("http://127.0.0.1:9/hook".into()),
            secret_file: Some("s".into()),
            ..WebhookConfig::default()
        };
        let (key, msg) = refusal(w.validate(file));
        assert_eq!(key, "webhook.url");
        assert!(
            msg.contains("webhook.allow_plain_http = true, for a local test receiver"),
            "{msg}"
        );
        w.allow_plain_http = true;
        assert!(w.validate(file).is_ok(), "the happy twin");
        w.secret_id = Some("id".into());
        let (key, msg) = refusal(w.validate(file));
        assert_eq!(key, "webhook.secret_file");
        assert!(
            msg.contains(
                "exactly one of webhook.secret_file and webhook.secret_id (the HMAC secret)"
            ),
            "{msg}"
        );
        w.secret_id = None;
        w.attempts = 0;
        assert_eq!(refusal(w.validate(file)).0, "webhook.attempts");

        let mut a = AutomateConfig {
            url: Some("https://automate.example".into()),
            ..AutomateConfig::default()
        };
        let (key, msg) = refusal(a.validate(file));
        assert_eq!(key, "automate.token_file");
        assert!(
            msg.contains(
                "exactly one of automate.token_file and automate.token_id (the api-token)"
            ),
            "{msg}"
        );
        a.token_id = Some("t".into());
        assert!(a.validate(file).is_ok(), "the happy twin");
        a.timeout = Duration::ZERO;
        let (key, msg) = refusal(a.validate(file));
        assert_eq!(key, "automate.attempts");
        assert!(msg.contains("non-zero automate.timeout"), "{msg}");
        let mut t = WebhookConfig {
            template: Some(r#"{"text": "{{node_name}} {{instance_idd}}"}"#.into()),
            ..WebhookConfig::default()
        };
        let (key, msg) = refusal(t.validate(file));
        assert_eq!(key, "webhook.template");
        assert!(msg.contains("{{instance_idd}}"), "{msg}");
        t.template = Some(r#"{"text": "{{node_name}} {{instance_id}}"}"#.into());
        assert!(t.validate(file).is_ok(), "the happy twin");
        t.template_file = Some("/nonexistent/template.json".into());
        assert_eq!(refusal(t.validate(file)).0, "webhook.template");
        t.template = None;
        let (key, msg) = refusal(t.validate(file));
        assert_eq!(key, "webhook.template_file");
        assert!(msg.contains("/nonexistent/template.json"), "{msg}");
        a.url = Some("ftp://automate.example".into());
        assert!(refusal(a.validate(file))
            .1
            .contains("for a local test double"));
    }
}

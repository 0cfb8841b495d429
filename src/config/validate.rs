//! [`Config::validate`]: the rules serde cannot express, one function per
//! section, checked in the order the sections were always checked (the first
//! broken rule is the one reported).

use std::path::Path;
use std::time::Duration;

use super::{Config, ConfigError};

/// The error for `key` in `file`: `expected` says what, and what was found.
fn invalid(file: &Path, key: &str, expected: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        key: key.to_string(),
        expected,
    }
}

/// The account field of an IAM role ARN (`arn:PARTITION:iam::ACCOUNT:role/NAME`),
/// or None when `arn` is not one.
pub(crate) fn role_arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let named = resource
        .strip_prefix("role/")
        .is_some_and(|n| !n.is_empty());
    (!partition.is_empty() && crate::core::event::is_account_id(account) && named)
        .then_some(account)
}

impl Config {
    /// Checks every rule serde cannot express.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        self.validate_chef(file)?;
        self.validate_targets(file)?;
        self.validate_duration_bounds(file)?;
        self.validate_lifecycle_hooks(file)?;
        self.validate_accounts(file)?;
        self.validate_queues(file)?;
        self.validate_pipeline(file)?;
        self.validate_protect(file)?;
        self.validate_sweep(file)?;
        self.validate_journal(file)?;
        self.webhook.validate(file)?;
        self.automate.validate(file)
    }

    /// The `[chef]` section (also each target's view of it).
    pub(super) fn validate_chef(&self, file: &Path) -> Result<(), ConfigError> {
        self.validate_chef_server_url(file)?;
        self.validate_chef_key_source(file)?;
        self.validate_chef_requests(file)
    }

    /// `chef.server_url`: https, or http with `chef.allow_plain_http`.
    fn validate_chef_server_url(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        if let Some(url) = &self.chef.server_url {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "https" => {}
                Ok(u) if u.scheme() == "http" && self.chef.allow_plain_http => {}
                Ok(u) if u.scheme() == "http" => {
                    return Err(invalid(
                        "chef.server_url",
                        format!(
                            "an https:// URL, got {url:?}: plain http sends signed requests and node data in clear text; set chef.allow_plain_http = true for a local test server"
                        ),
                    ))
                }
                _ => {
                    return Err(invalid(
                        "chef.server_url",
                        format!(
                        "an http(s) URL like https://chef.example/organizations/ORG, got {url:?}"
                    ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// The Chef key: at most one source, secret names not blank.
    fn validate_chef_key_source(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        if self.chef.client_key.is_some() && self.chef.client_key_pem.is_some() {
            return Err(invalid(
                "chef.client_key",
                "either client_key (a path) or client_key_pem, not both".into(),
            ));
        }
        let key_forms = [
            ("client_key", self.chef.client_key.is_some()),
            ("client_key_pem", self.chef.client_key_pem.is_some()),
            ("client_key_secret", self.chef.client_key_secret.is_some()),
            (
                "client_key_parameter",
                self.chef.client_key_parameter.is_some(),
            ),
        ];
        let set: Vec<&str> = key_forms
            .iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| *k)
            .collect();
        if set.len() > 1 {
            return Err(invalid(
                &format!("chef.{}", set[1]),
                format!(
                    "one source of the Chef key: client_key, client_key_pem, client_key_secret \
                     or client_key_parameter, not {}",
                    set.join(" and ")
                ),
            ));
        }
        for (key, value) in [
            ("chef.client_key_secret", &self.chef.client_key_secret),
            ("chef.client_key_parameter", &self.chef.client_key_parameter),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(invalid(key, "a non-empty name or ARN".into()));
            }
        }
        Ok(())
    }

    /// `chef.search_query`, `client_name_template`, `page_size`, `timeout`.
    fn validate_chef_requests(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        if !self.chef.search_query.contains("{instance_id}") {
            return Err(invalid(
                "chef.search_query",
                format!(
                    "a query containing {{instance_id}}, e.g. \"ec2_instance_id:{{instance_id}}\", got {:?}",
                    self.chef.search_query
                ),
            ));
        }
        if !self.chef.client_name_template.contains("{node}") {
            return Err(invalid(
                "chef.client_name_template",
                format!(
                    "a template containing {{node}}, got {:?}",
                    self.chef.client_name_template
                ),
            ));
        }
        if !(1..=1000).contains(&self.chef.page_size) {
            return Err(invalid(
                "chef.page_size",
                format!("a number from 1 to 1000, got {}", self.chef.page_size),
            ));
        }
        if self.chef.timeout.is_zero() {
            return Err(invalid(
                "chef.timeout",
                "a duration above zero, e.g. \"30s\"".into(),
            ));
        }
        Ok(())
    }

    /// Upper bounds of durations across sections.
    fn validate_duration_bounds(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        // Upper bounds: beyond them a duration is a typo, and time arithmetic
        // on it would overflow.
        const DAY: u64 = 24 * 3600;
        for (key, value, max_secs) in [
            ("chef.timeout", self.chef.timeout, 3600),
            (
                "pipeline.shutdown_deadline",
                self.pipeline.shutdown_deadline,
                3600,
            ),
            (
                "pipeline.breaker_cooldown",
                self.pipeline.breaker_cooldown,
                DAY,
            ),
            (
                "pipeline.storm_brake_after",
                self.pipeline.storm_brake_after,
                7 * DAY,
            ),
            ("sweep.grace_period", self.sweep.grace_period, 365 * DAY),
            (
                "sweep.interval",
                self.sweep.interval.unwrap_or_default(),
                30 * DAY,
            ),
        ] {
            if value > Duration::from_secs(max_secs) {
                return Err(invalid(
                    key,
                    format!(
                        "at most {}, got {}",
                        humantime::format_duration(Duration::from_secs(max_secs)),
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `pipeline.lifecycle_hooks`: valid hook names.
    fn validate_lifecycle_hooks(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        for (i, hook) in self.pipeline.lifecycle_hooks.iter().enumerate() {
            if hook.is_empty() || hook.len() > 255 {
                return Err(invalid(
                    &format!("pipeline.lifecycle_hooks[{i}]"),
                    format!("a lifecycle hook name (1 to 255 characters), got {hook:?}"),
                ));
            }
        }
        Ok(())
    }

    /// `aws.accounts`: account ids listed once, role ARNs.
    fn validate_accounts(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.aws.accounts.iter().enumerate() {
            if !crate::core::event::is_account_id(&a.id) || !seen.insert(a.id.as_str()) {
                return Err(invalid(
                    &format!("aws.accounts[{i}].id"),
                    format!("a 12-digit AWS account id, listed once, got {:?}", a.id),
                ));
            }
            let key = format!("aws.accounts[{i}].role_arn");
            let Some(role_account) = role_arn_account(&a.role_arn) else {
                return Err(invalid(
                    &key,
                    format!(
                        "an IAM role ARN like arn:aws:iam::{}:role/nodereaper, got {:?}",
                        a.id, a.role_arn
                    ),
                ));
            };
            // A role of another account would verify this account's
            // instances elsewhere, where every one of them looks gone.
            if role_account != a.id {
                return Err(invalid(
                    &key,
                    format!(
                        "a role in account {} (the id of this entry), got {:?}, a role in account {role_account}: \
                         its instances would be looked up in the wrong account, where every one looks gone",
                        a.id, a.role_arn
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `queues`: URLs.
    fn validate_queues(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        for (i, q) in self.queues.iter().enumerate() {
            if !(q.url.starts_with("https://") || q.url.starts_with("http://")) {
                return Err(invalid(
                    &format!("queues[{i}].url"),
                    format!("an SQS queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/nodereaper, got {:?}", q.url),
                ));
            }
        }
        Ok(())
    }

    /// `[pipeline]`: workers, batches, backoff, heartbeat, shutdown, breaker.
    fn validate_pipeline(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        let p = &self.pipeline;
        if !(1..=512).contains(&p.workers) {
            return Err(invalid(
                "pipeline.workers",
                format!("a number from 1 to 512, got {}", p.workers),
            ));
        }
        if !(1..=10).contains(&p.batch_size) {
            return Err(invalid(
                "pipeline.batch_size",
                format!(
                    "a number from 1 to 10 (the SQS maximum), got {}",
                    p.batch_size
                ),
            ));
        }
        if p.wait_time > Duration::from_secs(20) {
            return Err(invalid(
                "pipeline.wait_time",
                format!(
                    "at most 20s (the SQS long-poll maximum), got {:?}",
                    p.wait_time
                ),
            ));
        }
        if p.retry_backoff_base.is_zero() {
            return Err(invalid(
                "pipeline.retry_backoff_base",
                "a duration above zero".into(),
            ));
        }
        if p.retry_backoff_max < p.retry_backoff_base {
            return Err(invalid(
                "pipeline.retry_backoff_max",
                format!(
                    "at least pipeline.retry_backoff_base ({:?}), got {:?}",
                    p.retry_backoff_base, p.retry_backoff_max
                ),
            ));
        }
        if p.retry_backoff_max > Duration::from_secs(12 * 3600) {
            return Err(invalid(
                "pipeline.retry_backoff_max",
                "at most 12h (the SQS visibility timeout maximum)".into(),
            ));
        }
        if p.lifecycle_heartbeat_interval.is_zero()
            || p.lifecycle_heartbeat_interval > Duration::from_secs(6 * 3600)
        {
            return Err(invalid(
                "pipeline.lifecycle_heartbeat_interval",
                "a duration above zero and at most 6h (visibility is extended to twice it, SQS allows 12h)".into(),
            ));
        }
        if p.shutdown_deadline.is_zero() {
            return Err(invalid(
                "pipeline.shutdown_deadline",
                "a duration above zero".into(),
            ));
        }
        if p.breaker_threshold == 0 {
            return Err(invalid(
                "pipeline.breaker_threshold",
                "a number above 0".into(),
            ));
        }
        if !(1..=10_000).contains(&p.unreachable_region_attempts) {
            return Err(invalid(
                "pipeline.unreachable_region_attempts",
                "a number from 1 to 10000".into(),
            ));
        }
        Ok(())
    }

    /// `[protect]`: the name patterns are globs.
    fn validate_protect(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        for (key, patterns) in [
            ("protect.node_names", &self.protect.node_names),
            ("protect.client_names", &self.protect.client_names),
        ] {
            for (i, pattern) in patterns.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(pattern) {
                    return Err(invalid(
                        &format!("{key}[{i}]"),
                        format!("a glob pattern, got {pattern:?} ({e})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[sweep]`: interval, share and attribute path.
    fn validate_sweep(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        let s = &self.sweep;
        if s.interval.is_some_and(|i| i < Duration::from_secs(60)) {
            return Err(invalid(
                "sweep.interval",
                "at least 1m (each sweep reads the whole Chef server)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&s.max_candidate_share) {
            return Err(invalid(
                "sweep.max_candidate_share",
                format!("a share from 0.0 to 1.0, got {}", s.max_candidate_share),
            ));
        }
        if s.instance_id_attribute.is_empty() {
            return Err(invalid(
                "sweep.instance_id_attribute",
                "a non-empty attribute path, e.g. [\"ec2\", \"instance_id\"]".into(),
            ));
        }
        Ok(())
    }

    /// `[journal]`: retention, KMS key, bucket name.
    fn validate_journal(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| invalid(file, key, expected);
        if self.journal.retention < Duration::from_secs(24 * 3600) {
            return Err(invalid(
                "journal.retention",
                format!(
                    "at least 1d (backups are what makes a wrong deletion undoable), got {}",
                    humantime::format_duration(self.journal.retention)
                ),
            ));
        }
        if self.journal.s3_kms_key_id.as_deref() == Some("") {
            return Err(invalid(
                "journal.s3_kms_key_id",
                "a KMS key id, ARN or alias; leave it unset for SSE-S3".into(),
            ));
        }
        if let Some(b) = &self.journal.s3_bucket {
            if b.is_empty() || b.contains('/') {
                return Err(invalid(
                    "journal.s3_bucket",
                    format!("a bucket name without slashes, got {b:?}"),
                ));
            }
        }
        Ok(())
    }
}

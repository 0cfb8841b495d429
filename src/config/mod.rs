//! The TOML configuration: typed, defaulted, validated at start.
//!
//! Every error names the file, the key and what was expected. Secrets and
//! paths can be overridden from the environment (see [`ENV_OVERRIDES`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::adapters::chef::auth::SignVersion;

/// The termination lifecycle hook `nodereaper setup` creates.
pub const DEFAULT_LIFECYCLE_HOOK: &str = "nodereaper-terminate";

/// Environment variables that override configuration keys.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("NODEREAPER_CHEF_SERVER_URL", "chef.server_url"),
    ("NODEREAPER_CHEF_CLIENT_NAME", "chef.client_name"),
    ("NODEREAPER_CHEF_CLIENT_KEY", "chef.client_key"),
    ("NODEREAPER_CHEF_CLIENT_KEY_PEM", "chef.client_key_pem"),
    (
        "NODEREAPER_CHEF_CLIENT_KEY_SECRET",
        "chef.client_key_secret",
    ),
    (
        "NODEREAPER_CHEF_CLIENT_KEY_PARAMETER",
        "chef.client_key_parameter",
    ),
    ("NODEREAPER_CHEF_PROFILE", "chef.profile"),
    ("NODEREAPER_CHEF_CREDENTIALS", "chef.credentials_file"),
    ("NODEREAPER_JOURNAL_DIR", "journal.dir"),
    ("NODEREAPER_JOURNAL_S3_BUCKET", "journal.s3_bucket"),
    ("NODEREAPER_JOURNAL_S3_PREFIX", "journal.s3_prefix"),
    (
        "NODEREAPER_QUEUE_URL",
        "queues (replaces the list with one queue)",
    ),
    ("NODEREAPER_LISTEN", "http.listen"),
    ("NODEREAPER_CHEF_ALLOW_PLAIN_HTTP", "chef.allow_plain_http"),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {file}: {detail}")]
    Parse { file: PathBuf, detail: String },
    #[error("config file {file}: key `{key}`: expected {expected}")]
    Invalid {
        file: PathBuf,
        key: String,
        expected: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub chef: ChefConfig,
    pub aws: AwsConfig,
    pub queues: Vec<QueueConfig>,
    pub pipeline: PipelineConfig,
    pub protect: ProtectConfig,
    pub journal: JournalConfig,
    pub sweep: SweepConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChefConfig {
    /// `https://chef.example/organizations/ORG`, or an org-less URL (goiardi).
    pub server_url: Option<String>,
    pub client_name: Option<String>,
    /// Path of the client's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// The key inline (prefer `NODEREAPER_CHEF_CLIENT_KEY_PEM` to a file).
    pub client_key_pem: Option<String>,
    /// The key from AWS Secrets Manager: a secret id or ARN whose
    /// SecretString is the PEM. Fetched once, kept in memory, fetched again
    /// when the server answers 401 (rotation).
    pub client_key_secret: Option<String>,
    /// The key from an SSM Parameter Store SecureString parameter (name or
    /// ARN); same lifecycle as `client_key_secret`.
    pub client_key_parameter: Option<String>,
    /// Read identity from Chef's `~/.chef/credentials` profile when the
    /// explicit keys above are not set.
    pub profile: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub sign_version: SignVersion,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub ca_bundle: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
    pub allow_insecure_key_permissions: bool,
    /// Accept an `http://` server URL (signed requests and node JSON in
    /// clear text): for local test servers only.
    pub allow_plain_http: bool,
    /// Search used when no node is named after the instance id.
    /// `{instance_id}` is replaced by the (validated) id.
    pub search_query: String,
    /// Client name for a node; `{node}` is replaced by the node name.
    pub client_name_template: String,
    pub page_size: usize,
}

impl Default for ChefConfig {
    fn default() -> Self {
        Self {
            server_url: None,
            client_name: None,
            client_key: None,
            client_key_pem: None,
            client_key_secret: None,
            client_key_parameter: None,
            profile: None,
            credentials_file: None,
            sign_version: SignVersion::V1_3,
            timeout: Duration::from_secs(30),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            allow_insecure_key_permissions: false,
            allow_plain_http: false,
            search_query: "ec2_instance_id:{instance_id}".into(),
            client_name_template: "{node}".into(),
            page_size: 1000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Default region (else the SDK's chain: AWS_REGION, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override for every AWS service (else `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Other AWS accounts whose instances nodereaper may verify (through an
    /// IAM role). Events from an account that is neither nodereaper's own nor
    /// listed here are refused.
    pub accounts: Vec<AccountConfig>,
}

/// One `[[aws.accounts]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The 12-digit account id.
    pub id: String,
    /// Role in that account allowed to describe instances (and complete
    /// lifecycle actions), assumed with STS AssumeRole.
    pub role_arn: String,
    /// External id the role's trust policy requires, if any.
    #[serde(default)]
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub url: String,
    /// Region of the queue; default: taken from the queue URL, else `aws.region`.
    #[serde(default)]
    pub region: Option<String>,
    /// Dead-letter queue; default: read from the queue's RedrivePolicy.
    #[serde(default)]
    pub dlq_url: Option<String>,
}

/// What to do with recognised events that need no action (launches, errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherEvents {
    /// Acknowledge and delete.
    Delete,
    /// Send to the dead-letter queue, for queues that should only carry terminations.
    DeadLetter,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub wait_time: Duration,
    pub batch_size: i32,
    pub verify_instance_state: bool,
    pub shutting_down_is_termination: bool,
    pub other_events: OtherEvents,
    /// At most this many node deletions per minute across the process;
    /// above it the pipeline pauses and alerts. 0 disables the cap.
    pub max_deletions_per_minute: u32,
    #[serde(with = "humantime_serde")]
    pub retry_backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub lifecycle_heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Consecutive transient Chef failures that open the circuit breaker.
    pub breaker_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    pub dry_run: bool,
    /// Lifecycle hooks nodereaper owns: only their actions are completed;
    /// an event of any other hook is acknowledged without touching Chef.
    pub lifecycle_hooks: Vec<String>,
    /// When deletions have run at `max_deletions_per_minute` this long, stop
    /// deleting until restarted (the storm brake); `"0s"` disables it.
    #[serde(with = "humantime_serde")]
    pub storm_brake_after: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            wait_time: Duration::from_secs(20),
            batch_size: 10,
            verify_instance_state: true,
            shutting_down_is_termination: false,
            other_events: OtherEvents::Delete,
            max_deletions_per_minute: 120,
            retry_backoff_base: Duration::from_secs(15),
            retry_backoff_max: Duration::from_secs(15 * 60),
            // Below SQS's default visibility timeout (30 s): the first
            // extension must come before the message reappears.
            lifecycle_heartbeat_interval: Duration::from_secs(20),
            shutdown_deadline: Duration::from_secs(30),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            dry_run: false,
            lifecycle_hooks: vec![DEFAULT_LIFECYCLE_HOOK.into()],
            storm_brake_after: Duration::from_secs(10 * 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectConfig {
    /// Glob patterns (`*`, `?`, `[...]`) on node names that are never deleted.
    pub node_names: Vec<String>,
    pub roles: Vec<String>,
    pub environments: Vec<String>,
    pub policy_groups: Vec<String>,
    /// Instances carrying this tag (any value but "false") are left alone;
    /// `""` switches the opt-out tag off. Seen only while EC2 still knows the
    /// instance (about an hour after termination).
    pub instance_tag: Option<String>,
    /// Nodes with this Chef tag (`normal.tags`, as `knife tag create` sets
    /// it) are never deleted; checked on every path, EC2 or not. `""` off.
    pub node_tag: Option<String>,
    /// Glob patterns on client names that are never deleted (besides
    /// validator and admin clients and nodereaper's own identity).
    pub client_names: Vec<String>,
}

impl Default for ProtectConfig {
    fn default() -> Self {
        Self {
            node_names: Vec::new(),
            roles: Vec::new(),
            environments: Vec::new(),
            policy_groups: Vec::new(),
            instance_tag: Some("nodereaper:protect".into()),
            node_tag: Some("nodereaper:protect".into()),
            client_names: vec!["*-validator".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub s3_bucket: Option<String>,
    pub s3_prefix: String,
    /// SSE-KMS key (id, ARN or alias) for S3 journal objects; unset: SSE-S3.
    pub s3_kms_key_id: Option<String>,
    /// Entries older than this are removed by `journal prune` (and daily by
    /// the daemon).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/nodereaper/journal"),
            s3_bucket: None,
            s3_prefix: "nodereaper/journal/".into(),
            s3_kms_key_id: None,
            retention: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// Run a sweep inside `nodereaper run` this often (off when unset).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Let `nodereaper run`'s periodic sweep delete (else it only reports).
    pub apply_in_daemon: bool,
    /// A node must not have checked in for this long to be a candidate.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    pub max_candidates: usize,
    /// Largest share (0..=1) of EC2-backed nodes a sweep may delete.
    pub max_candidate_share: f64,
    /// At most this many deletions by `run`'s periodic sweeps per rolling
    /// 24 hours (the per-run caps alone allow that many every interval).
    pub max_deletions_per_day: usize,
    /// Regions to ask EC2 in; default: `aws.region`.
    pub regions: Vec<String>,
    /// Node attribute paths for the inventory.
    pub instance_id_attribute: Vec<String>,
    pub region_attribute: Vec<String>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            interval: None,
            apply_in_daemon: false,
            grace_period: Duration::from_secs(60 * 60),
            max_candidates: 100,
            max_candidate_share: 0.2,
            max_deletions_per_day: 200,
            regions: Vec::new(),
            instance_id_attribute: vec!["ec2".into(), "instance_id".into()],
            region_attribute: vec!["ec2".into(), "placement_availability_zone".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for /metrics, /healthz, /readyz; `"off"` disables the server.
    #[serde(with = "listen_serde")]
    pub listen: Option<SocketAddr>,
}

/// `listen = "127.0.0.1:9797"` or `listen = "off"` (TOML has no null).
mod listen_serde {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(text: &str) -> Result<Option<SocketAddr>, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| format!("an address like \"127.0.0.1:9797\" or \"off\", got {text:?}"))
    }

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9797))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "nodereaper=debug,info"; RUST_LOG wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads, applies environment overrides, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.apply_env(|k| std::env::var(k).ok())?;
        config.validate(path)?;
        Ok(config)
    }

    /// Configuration from the environment alone (no file): for one-shot
    /// commands and tests.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::default();
        config.apply_env(|k| std::env::var(k).ok())?;
        config.validate(Path::new("(environment)"))?;
        Ok(config)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            detail: e.to_string().trim_end().to_string(),
        })
    }

    /// Applies [`ENV_OVERRIDES`]. A key given by the environment replaces
    /// every form of the file's setting (`client_key`, `client_key_pem`,
    /// `client_key_secret`, `client_key_parameter`).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let non_empty = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = non_empty("NODEREAPER_CHEF_SERVER_URL") {
            self.chef.server_url = Some(v);
        }
        if let Some(v) = non_empty("NODEREAPER_CHEF_CLIENT_NAME") {
            self.chef.client_name = Some(v);
        }
        let env_keys = [
            "NODEREAPER_CHEF_CLIENT_KEY",
            "NODEREAPER_CHEF_CLIENT_KEY_PEM",
            "NODEREAPER_CHEF_CLIENT_KEY_SECRET",
            "NODEREAPER_CHEF_CLIENT_KEY_PARAMETER",
        ];
        let given: Vec<&str> = env_keys
            .iter()
            .copied()
            .filter(|k| non_empty(k).is_some())
            .collect();
        if given.len() > 1 {
            return Err(ConfigError::Invalid {
                file: PathBuf::from("(environment)"),
                key: given.join(", "),
                expected: "only one of the Chef key variables".into(),
            });
        }
        if !given.is_empty() {
            self.chef.client_key = non_empty("NODEREAPER_CHEF_CLIENT_KEY").map(PathBuf::from);
            self.chef.client_key_pem = non_empty("NODEREAPER_CHEF_CLIENT_KEY_PEM");
            self.chef.client_key_secret = non_empty("NODEREAPER_CHEF_CLIENT_KEY_SECRET");
            self.chef.client_key_parameter = non_empty("NODEREAPER_CHEF_CLIENT_KEY_PARAMETER");
        }
        if let Some(v) = non_empty("NODEREAPER_CHEF_PROFILE") {
            self.chef.profile = Some(v);
        }
        if let Some(v) = non_empty("NODEREAPER_CHEF_CREDENTIALS") {
            self.chef.credentials_file = Some(PathBuf::from(v));
        }
        if let Some(v) = non_empty("NODEREAPER_JOURNAL_DIR") {
            self.journal.dir = PathBuf::from(v);
        }
        if let Some(v) = non_empty("NODEREAPER_JOURNAL_S3_BUCKET") {
            self.journal.s3_bucket = Some(v);
        }
        if let Some(v) = non_empty("NODEREAPER_JOURNAL_S3_PREFIX") {
            self.journal.s3_prefix = v;
        }
        if let Some(v) = non_empty("NODEREAPER_QUEUE_URL") {
            self.queues = vec![QueueConfig {
                url: v,
                region: None,
                dlq_url: None,
            }];
        }
        if let Some(v) = non_empty("NODEREAPER_CHEF_ALLOW_PLAIN_HTTP") {
            self.chef.allow_plain_http = match v.trim() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(ConfigError::Invalid {
                        file: PathBuf::from("(environment)"),
                        key: "NODEREAPER_CHEF_ALLOW_PLAIN_HTTP".into(),
                        expected: format!("true or false, got {other:?}"),
                    })
                }
            };
        }
        if let Some(v) = non_empty("NODEREAPER_LISTEN") {
            self.http.listen =
                listen_serde::parse(v.trim()).map_err(|expected| ConfigError::Invalid {
                    file: PathBuf::from("(environment)"),
                    key: "NODEREAPER_LISTEN".into(),
                    expected,
                })?;
        }
        Ok(())
    }

    /// Checks every rule serde cannot express.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            expected,
        };
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
        for (i, hook) in self.pipeline.lifecycle_hooks.iter().enumerate() {
            if hook.is_empty() || hook.len() > 255 {
                return Err(invalid(
                    &format!("pipeline.lifecycle_hooks[{i}]"),
                    format!("a lifecycle hook name (1 to 255 characters), got {hook:?}"),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.aws.accounts.iter().enumerate() {
            if !crate::core::event::is_account_id(&a.id) || !seen.insert(a.id.as_str()) {
                return Err(invalid(
                    &format!("aws.accounts[{i}].id"),
                    format!("a 12-digit AWS account id, listed once, got {:?}", a.id),
                ));
            }
            if !(a.role_arn.starts_with("arn:")
                && a.role_arn.contains(":iam::")
                && a.role_arn.contains(":role/"))
            {
                return Err(invalid(
                    &format!("aws.accounts[{i}].role_arn"),
                    format!(
                        "an IAM role ARN like arn:aws:iam::{}:role/nodereaper, got {:?}",
                        a.id, a.role_arn
                    ),
                ));
            }
        }
        for (i, q) in self.queues.iter().enumerate() {
            if !(q.url.starts_with("https://") || q.url.starts_with("http://")) {
                return Err(invalid(
                    &format!("queues[{i}].url"),
                    format!("an SQS queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/nodereaper, got {:?}", q.url),
                ));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg = Config::parse(text, Path::new("/etc/nodereaper.toml"))?;
        cfg.validate(Path::new("/etc/nodereaper.toml"))?;
        Ok(cfg)
    }

    #[test]
    fn empty_file_gives_safe_defaults() {
        let cfg = parse("").expect("defaults");
        assert!(cfg.pipeline.verify_instance_state);
        assert!(!cfg.pipeline.dry_run);
        assert_eq!(cfg.chef.sign_version, SignVersion::V1_3);
        assert_eq!(cfg.pipeline.wait_time, Duration::from_secs(20));
        assert_eq!(cfg.sweep.max_candidate_share, 0.2);
    }

    #[test]
    fn plain_http_needs_an_explicit_opt_in() {
        let err = parse("[chef]\nserver_url = \"http://chef.example\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chef.server_url") && err.contains("allow_plain_http"),
            "{err}"
        );
        parse("[chef]\nserver_url = \"http://127.0.0.1:4545\"\nallow_plain_http = true\n")
            .expect("opted in");
        parse("[chef]\nserver_url = \"https://chef.example\"\n").expect("https");
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        for (key, text) in [
            ("sweep.grace_period", "[sweep]\ngrace_period = \"200y\"\n"),
            ("sweep.interval", "[sweep]\ninterval = \"400d\"\n"),
            ("chef.timeout", "[chef]\ntimeout = \"2h\"\n"),
            (
                "pipeline.storm_brake_after",
                "[pipeline]\nstorm_brake_after = \"30d\"\n",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("at most"), "{err}");
        }
    }

    #[test]
    fn accounts_are_validated() {
        let ok = "[[aws.accounts]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:role/r\"\n";
        assert_eq!(parse(ok).expect("valid").aws.accounts.len(), 1);
        let bad_id = ok.replace("\"111111111111\"\nrole", "\"1111\"\nrole");
        let err = parse(&bad_id).unwrap_err().to_string();
        assert!(err.contains("aws.accounts[0].id"), "{err}");
        let bad_role = ok.replace(":role/r", ":user/r");
        let err = parse(&bad_role).unwrap_err().to_string();
        assert!(err.contains("aws.accounts[0].role_arn"), "{err}");
        let twice = format!("{ok}{ok}");
        let err = parse(&twice).unwrap_err().to_string();
        assert!(err.contains("aws.accounts[1].id"), "{err}");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse("[pipeline]\nworkerz = 3\n").unwrap_err().to_string();
        assert!(err.contains("/etc/nodereaper.toml"), "{err}");
        assert!(err.contains("workerz"), "{err}");
    }

    #[test]
    fn wrong_type_names_key() {
        let err = parse("[pipeline]\nworkers = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers"), "{err}");
    }

    #[test]
    fn validation_names_key_and_expectation() {
        let err = parse("[pipeline]\nbatch_size = 11\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pipeline.batch_size"), "{err}");
        assert!(err.contains("1 to 10"), "{err}");
        let err = parse("[chef]\nsearch_query = \"name:foo\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("chef.search_query"), "{err}");
        let err = parse("[protect]\nnode_names = [\"[oops\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("protect.node_names[0]"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_an_error_not_a_default() {
        let mut cfg = Config::default();
        let err = cfg
            .apply_env(|k| (k == "NODEREAPER_LISTEN").then(|| ":9797".to_string()))
            .expect_err("must refuse")
            .to_string();
        assert!(
            err.contains("NODEREAPER_LISTEN") && err.contains("off"),
            "{err}"
        );
        let cfg = parse("[http]\nlisten = \"off\"\n").expect("off");
        assert_eq!(cfg.http.listen, None);
        let err = parse("[http]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn zero_periods_are_refused() {
        let err = parse("[pipeline]\nlifecycle_heartbeat_interval = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pipeline.lifecycle_heartbeat_interval"),
            "{err}"
        );
        let err = parse("[sweep]\ninterval = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sweep.interval"), "{err}");
    }

    #[test]
    fn durations_are_human() {
        let cfg = parse("[sweep]\ninterval = \"6h\"\ngrace_period = \"90m\"\n").expect("parse");
        assert_eq!(cfg.sweep.interval, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(cfg.sweep.grace_period, Duration::from_secs(90 * 60));
    }

    #[test]
    fn env_overrides_paths_and_secrets() {
        let mut cfg = Config::default();
        cfg.chef.client_key_pem = Some("inline from the file".into());
        cfg.apply_env(|k| match k {
            "NODEREAPER_CHEF_CLIENT_KEY" => Some("/run/secrets/key.pem".into()),
            "NODEREAPER_QUEUE_URL" => Some("http://127.0.0.1:5000/123/q".into()),
            "NODEREAPER_LISTEN" => Some("off".into()),
            _ => None,
        })
        .expect("valid environment");
        assert_eq!(
            cfg.chef.client_key,
            Some(PathBuf::from("/run/secrets/key.pem"))
        );
        assert_eq!(
            cfg.chef.client_key_pem, None,
            "the environment's key replaces the file's"
        );
        assert_eq!(cfg.queues.len(), 1);
        assert_eq!(cfg.http.listen, None);
    }

    #[test]
    fn key_from_a_secret_store() {
        let mut cfg = parse("[chef]\nclient_key = \"/etc/k.pem\"\n").expect("parse");
        cfg.apply_env(|k| {
            (k == "NODEREAPER_CHEF_CLIENT_KEY_SECRET").then(|| "arn:aws:secretsmanager:x".into())
        })
        .expect("valid environment");
        assert_eq!(cfg.chef.client_key, None, "the environment's key wins");
        assert_eq!(
            cfg.chef.client_key_secret.as_deref(),
            Some("arn:aws:secretsmanager:x")
        );
        let err = Config::default()
            .apply_env(|k| {
                matches!(
                    k,
                    "NODEREAPER_CHEF_CLIENT_KEY_SECRET" | "NODEREAPER_CHEF_CLIENT_KEY_PARAMETER"
                )
                .then(|| "x".into())
            })
            .expect_err("two key sources")
            .to_string();
        assert!(
            err.contains("NODEREAPER_CHEF_CLIENT_KEY_SECRET, NODEREAPER_CHEF_CLIENT_KEY_PARAMETER"),
            "{err}"
        );
        let err = parse("[chef]\nclient_key = \"/k\"\nclient_key_parameter = \"/p\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chef.client_key_parameter")
                && err.contains("not client_key and client_key_parameter"),
            "{err}"
        );
        let err = parse("[chef]\nclient_key_secret = \" \"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("chef.client_key_secret"), "{err}");
    }
}

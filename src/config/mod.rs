//! The TOML configuration: typed, defaulted, validated at start.
//!
//! Every error names the file, the key and what was expected. Secrets and
//! paths can be overridden from the environment (see [`ENV_OVERRIDES`]).
//!
//! This file holds the types, their defaults, loading and the environment
//! overrides; `validate` the rules serde cannot express, one function per
//! section. The configuration imports no adapter: settings that adapters
//! read (such as [`SignVersion`]) are defined here.

mod targets;
#[cfg(test)]
mod tests;
mod validate;

pub use targets::{
    valid_target_name, RouteConfig, RoutingConfig, TargetConfig, TargetProtect, TargetSweep,
    DEFAULT_GROUP_TAG, DEFAULT_TARGET, MAX_TARGET_NAME_LEN,
};
mod estate;
pub use estate::{AutomateConfig, VaultConfig, WebhookConfig};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[protect]` is defined beside the rules it configures.
pub use crate::core::protect::ProtectConfig;

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
    (
        "NODEREAPER_CHEF_TARGETS",
        "chef.targets (a JSON array of its tables)",
    ),
    ("NODEREAPER_ROUTES", "routes (a JSON array of its tables)"),
];

/// A configuration that cannot be used: every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {file}: {source}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a wrong type.
    #[error("config file {file}: {detail}")]
    Parse {
        /// The config file.
        file: PathBuf,
        /// The parser's message (it names the key and line).
        detail: String,
    },
    /// A key's value breaks a rule.
    #[error("config file {file}: key `{key}`: expected {expected}")]
    Invalid {
        /// The config file, or `(environment)`.
        file: PathBuf,
        /// The key (or environment variable), e.g. `pipeline.workers`.
        key: String,
        /// What was expected, and what was found.
        expected: String,
    },
}

/// The whole configuration file; every section is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The Chef server and nodereaper's identity on it (`[chef]`).
    pub chef: ChefConfig,
    /// AWS region, endpoint and other accounts (`[aws]`).
    pub aws: AwsConfig,
    /// The SQS queues to consume (`[[queues]]`).
    pub queues: Vec<QueueConfig>,
    /// Account (and region) routing rules to Chef targets (`[[routes]]`).
    pub routes: Vec<RouteConfig>,
    /// The group-tag and search routing rules (`[routing]`).
    pub routing: RoutingConfig,
    /// How events are received and handled (`[pipeline]`).
    pub pipeline: PipelineConfig,
    /// What is never deleted (`[protect]`).
    pub protect: ProtectConfig,
    /// Where deletions are backed up (`[journal]`).
    pub journal: JournalConfig,
    /// The reconciliation sweep (`[sweep]`).
    pub sweep: SweepConfig,
    /// The metrics and health server (`[http]`).
    pub http: HttpConfig,
    /// Logging (`[log]`).
    pub log: LogConfig,
    /// chef-vault clean-up (`[vault]`).
    pub vault: VaultConfig,
    /// The signed webhook after each deletion (`[webhook]`).
    pub webhook: WebhookConfig,
    /// Chef Automate node deletion (`[automate]`).
    pub automate: AutomateConfig,
}

/// `[chef]`: the server, and nodereaper's identity and key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChefConfig {
    /// `https://chef.example/organizations/ORG`, or an org-less URL (goiardi).
    pub server_url: Option<String>,
    /// The Chef API client nodereaper signs as.
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
    /// The credentials file holding `profile` (default `~/.chef/credentials`).
    pub credentials_file: Option<PathBuf>,
    /// Request signing protocol (`X-Ops-Sign` version).
    pub sign_version: SignVersion,
    /// Timeout of one Chef request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra PEM bundle of CAs trusted for the Chef server.
    pub ca_bundle: Option<PathBuf>,
    /// Disables TLS certificate verification (logged loudly; use `ca_bundle`).
    pub insecure_skip_tls_verify: bool,
    /// Accept a key file readable by group/others.
    pub allow_insecure_key_permissions: bool,
    /// Accept an `http://` server URL (signed requests and node JSON in
    /// clear text): for local test servers only.
    pub allow_plain_http: bool,
    /// Search used when no node is named after the instance id.
    /// `{instance_id}` is replaced by the (validated) id.
    pub search_query: String,
    /// Client name for a node; `{node}` is replaced by the node name.
    pub client_name_template: String,
    /// Rows per page of Chef search requests (1 to 1000).
    pub page_size: usize,
    /// Several Chef servers or organizations (`[[chef.targets]]`); empty:
    /// this section is the one target, `default`.
    pub targets: Vec<TargetConfig>,
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
            targets: Vec::new(),
        }
    }
}

/// Chef signing protocol version (the `version=` part of `X-Ops-Sign`).
///
/// Defined here rather than in the Chef adapter because it is a setting
/// (`chef.sign_version`) and the configuration imports no adapter; the
/// signing code (`adapters::chef::auth`, which re-exports it) implements
/// each version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum SignVersion {
    /// Protocol 1.0: SHA-1, plain user id in the canonical request.
    #[serde(rename = "1.0")]
    V1_0,
    /// Protocol 1.1: SHA-1, hashed user id in the canonical request.
    #[serde(rename = "1.1")]
    V1_1,
    /// Protocol 1.3: SHA-256 with a standard PKCS#1 v1.5 signature (default).
    #[default]
    #[serde(rename = "1.3")]
    V1_3,
}

impl SignVersion {
    /// The version string, e.g. `"1.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignVersion::V1_0 => "1.0",
            SignVersion::V1_1 => "1.1",
            SignVersion::V1_3 => "1.3",
        }
    }

    /// Digest algorithm name used by this version (`"sha1"` or `"sha256"`).
    pub fn algorithm(self) -> &'static str {
        match self {
            SignVersion::V1_0 | SignVersion::V1_1 => "sha1",
            SignVersion::V1_3 => "sha256",
        }
    }
}

impl fmt::Display for SignVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signing protocol version string that is not one of [`SignVersion`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported Chef signing protocol version {0:?}; expected one of \"1.0\", \"1.1\", \"1.3\""
)]
pub struct UnsupportedSignVersion(pub String);

impl FromStr for SignVersion {
    type Err = UnsupportedSignVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "1.0" => Ok(SignVersion::V1_0),
            "1.1" => Ok(SignVersion::V1_1),
            "1.3" => Ok(SignVersion::V1_3),
            other => Err(UnsupportedSignVersion(other.to_string())),
        }
    }
}

/// `[aws]`: region, endpoint and other accounts.
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

/// One `[[queues]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue URL.
    pub url: String,
    /// Region of the queue; default: taken from the queue URL, else `aws.region`.
    #[serde(default)]
    pub region: Option<String>,
    /// Dead-letter queue; default: read from the queue's RedrivePolicy.
    #[serde(default)]
    pub dlq_url: Option<String>,
    /// The Chef target every event of this queue belongs to (`[[chef.targets]]` name).
    #[serde(default)]
    pub target: Option<String>,
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

/// `[pipeline]`: receiving and handling events.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Messages handled concurrently, across all queues (1 to 512).
    pub workers: usize,
    /// SQS long-poll wait per receive (at most 20s).
    #[serde(with = "humantime_serde")]
    pub wait_time: Duration,
    /// Messages per receive (1 to 10).
    pub batch_size: i32,
    /// Ask EC2 whether the instance is really gone before deleting.
    pub verify_instance_state: bool,
    /// Treat an EC2 state-change event `shutting-down` as a termination.
    pub shutting_down_is_termination: bool,
    /// What to do with recognised events that need no action.
    pub other_events: OtherEvents,
    /// At most this many node deletions per minute across the process;
    /// above it the pipeline pauses and alerts. 0 disables the cap.
    pub max_deletions_per_minute: u32,
    /// Smallest retry delay (the exponential backoff's base).
    #[serde(with = "humantime_serde")]
    pub retry_backoff_base: Duration,
    /// Largest retry delay (at most 12h).
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    /// How often a pending lifecycle action is heartbeated (and the message's visibility extended).
    #[serde(with = "humantime_serde")]
    pub lifecycle_heartbeat_interval: Duration,
    /// How long shutdown waits for in-flight messages.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Consecutive transient Chef failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How often the Chef server is probed while the breaker is open.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Decide and log, but delete nothing and acknowledge no message.
    pub dry_run: bool,
    /// Lifecycle hooks nodereaper owns: only their actions are completed;
    /// an event of any other hook is acknowledged without touching Chef.
    pub lifecycle_hooks: Vec<String>,
    /// When deletions have run at `max_deletions_per_minute` this long, stop
    /// deleting until restarted (the storm brake); `"0s"` disables it.
    #[serde(with = "humantime_serde")]
    pub storm_brake_after: Duration,
    /// Failed verifications and probes of one account and region in a row
    /// after which its messages go to the DLQ with the reason (a region not
    /// enabled, of another partition, or bogus), so they cannot stall the
    /// others (1 to 10000).
    pub unreachable_region_attempts: u32,
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
            unreachable_region_attempts: 10,
        }
    }
}

/// `[journal]`: where each deletion's backup is written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Directory of the local journal (used when `s3_bucket` is unset).
    pub dir: PathBuf,
    /// S3 bucket of the journal, instead of `dir`.
    pub s3_bucket: Option<String>,
    /// Key prefix of the journal's S3 objects.
    pub s3_prefix: String,
    /// SSE-KMS key (id, ARN or alias) for S3 journal objects; unset: SSE-S3.
    pub s3_kms_key_id: Option<String>,
    /// Entries older than this are removed by `journal prune` (and daily by
    /// the daemon).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Refuse a deletion whose node or client ACL the Chef server will not
    /// show (403: nodereaper lacks grant) instead of deleting without it.
    pub require_acl_backup: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/nodereaper/journal"),
            s3_bucket: None,
            s3_prefix: "nodereaper/journal/".into(),
            s3_kms_key_id: None,
            retention: Duration::from_secs(90 * 24 * 3600),
            require_acl_backup: false,
        }
    }
}

/// `[sweep]`: the reconciliation sweep.
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
    /// A sweep finding more candidates than this deletes nothing (unless forced).
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
    /// Node attribute path of the availability zone (the region is derived from it).
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

/// `[http]`: the /metrics, /healthz and /readyz server.
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

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For humans.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[log]`: logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log line format.
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

    /// Parses `text` (the contents of `path`), without validating it.
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
                target: None,
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
        self.apply_env_targets(var)
    }
}

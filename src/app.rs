//! Wiring: builds the adapters and the core from a [`Config`], and runs the
//! daemon's tasks ([`run_daemon`]) under one shutdown signal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::act::backup::AclBackupPolicy;
use crate::act::resolve::Resolver;
use crate::act::{DeletionLimiter, Reaper, TargetJournal, TargetSet};
use crate::adapters::aws::{self, fleet::AwsFleet, sqs::SqsQueue, AwsError};
use crate::adapters::chef::credentials::{self, CredentialsError, KeySource};
use crate::adapters::chef::{ChefClient, ChefError, ChefSettings};
use aws_config::SdkConfig;

use crate::adapters::journal::{JournalError, LocalJournal, S3Journal};
use crate::adapters::secrets::{self, KeyStore, RotatingChef};
use crate::config::{Config, QueueConfig};
use crate::core::verify::Protection;
use crate::jobs::{self, sweep::SweepSettings};
use crate::ports::{ChefApi, Fleet, Journal};
use crate::run::{Breaker, Pipeline, Shutdown, Source, Summary};
use crate::telemetry::http::HttpServer;

/// Why nodereaper cannot be wired as configured.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Who nodereaper is on the Chef server is not set or not usable.
    #[error("Chef identity: {0}")]
    Identity(String),
    /// A queue nodereaper cannot work with as configured.
    #[error("{0}")]
    Queue(String),
    /// The Chef credentials cannot be read.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The Chef client cannot be built.
    #[error(transparent)]
    Chef(#[from] Box<ChefError>),
    /// An AWS call during set-up failed.
    #[error(transparent)]
    Aws(#[from] Box<AwsError>),
    /// The journal cannot be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The key cannot be read from its secret store.
    #[error(transparent)]
    Secret(#[from] crate::adapters::secrets::SecretError),
    /// An estate target (`[vault]`, `[webhook]`) cannot be set up.
    #[error(transparent)]
    Estate(#[from] crate::ports::estate::EstateError),
    /// No queue is configured.
    #[error("no queue configured: set [[queues]] url = \"...\" in the config file or NODEREAPER_QUEUE_URL")]
    NoQueue,
    /// A queue's VisibilityTimeout is too short for the keepalive.
    #[error("queue {queue}: VisibilityTimeout {timeout:?} is not longer than pipeline.lifecycle_heartbeat_interval ({interval:?}); a message would reappear and be worked twice before its first extension. Raise the queue's VisibilityTimeout (`nodereaper setup` sets 5 minutes) or lower the interval")]
    Visibility {
        /// The queue URL.
        queue: String,
        /// Its VisibilityTimeout.
        timeout: std::time::Duration,
        /// `pipeline.lifecycle_heartbeat_interval`.
        interval: std::time::Duration,
    },
}

mod daemon;
mod estate;
pub use daemon::{run_daemon, wait_for_signal, PeriodicSweep};
pub use estate::{automate, estate_targets};

/// The configuration of the one target a single-target caller serves: the
/// whole configuration without `[[chef.targets]]`, else the first target's.
fn one_target(cfg: &Config) -> std::borrow::Cow<'_, Config> {
    if cfg.has_targets() {
        std::borrow::Cow::Owned(cfg.primary_target())
    } else {
        std::borrow::Cow::Borrowed(cfg)
    }
}

/// Who we are on the Chef server, from explicit settings or a
/// `~/.chef/credentials` profile (knife's own file).
pub fn chef_identity(cfg: &Config) -> Result<credentials::Credentials, AppError> {
    let cfg = &*one_target(cfg);
    let c = &cfg.chef;
    let explicit_key = match (&c.client_key, &c.client_key_pem) {
        (Some(path), _) => Some(KeySource::Path(path.clone())),
        (None, Some(pem)) => Some(KeySource::InlinePem(pem.clone())),
        (None, None) => KeyStore::from_config(c).map(|s| s.key_source()),
    };
    if let (Some(server_url), Some(client_name), Some(key)) =
        (&c.server_url, &c.client_name, &explicit_key)
    {
        credentials::require_https(server_url, "chef.server_url", c.allow_plain_http)?;
        return Ok(credentials::Credentials {
            client_name: client_name.clone(),
            server_url: server_url.clone(),
            key: key.clone(),
        });
    }
    let file = c
        .credentials_file
        .clone()
        .or_else(credentials::default_credentials_path)
        .ok_or_else(|| AppError::Identity("chef.server_url, chef.client_name and chef.client_key are not all set, and there is no home directory for ~/.chef/credentials".into()))?;
    if !file.exists() {
        return Err(AppError::Identity(format!(
            "chef.server_url, chef.client_name and chef.client_key (or client_key_pem) are not all set, and {} does not exist",
            file.display()
        )));
    }
    let profile = c
        .profile
        .clone()
        .or_else(|| std::env::var("CHEF_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let mut creds = credentials::load_profile(&file, &profile)?;
    // Explicit settings win over the profile, key by key.
    if let Some(url) = &c.server_url {
        creds.server_url = url.clone();
    }
    if let Some(name) = &c.client_name {
        creds.client_name = name.clone();
    }
    if let Some(key) = explicit_key {
        creds.key = key;
    }
    // The plain-http guard, for a URL from the profile as for chef.server_url.
    let origin = match &c.server_url {
        Some(_) => "chef.server_url".to_string(),
        None => format!(
            "chef_server_url of profile '{profile}' in {}",
            file.display()
        ),
    };
    credentials::require_https(&creds.server_url, &origin, c.allow_plain_http)?;
    Ok(creds)
}

/// The Chef client, its key read once (from a file, inline, or a secret
/// store). For a key that may rotate, use [`chef_api`].
pub fn chef_client(cfg: &Config) -> Result<ChefClient, AppError> {
    let cfg = &*one_target(cfg);
    let creds = chef_identity(cfg)?;
    let key = match KeyStore::from_key_source(&creds.key) {
        Some(store) => secrets::fetch_key_blocking(&cfg.aws, &store)?,
        None => credentials::load_key(&creds.key, cfg.chef.allow_insecure_key_permissions)?,
    };
    chef_client_with_key(cfg, &creds, key)
}

/// The Chef API for long-running use (daemon, Lambda): with a key from a
/// secret store, a [`RotatingChef`] that re-reads the key on 401.
pub async fn chef_api(cfg: &Config) -> Result<Arc<dyn ChefApi>, AppError> {
    let cfg = &*one_target(cfg);
    let creds = chef_identity(cfg)?;
    match KeyStore::from_key_source(&creds.key) {
        Some(store) => {
            let cfg_owned = cfg.clone();
            let factory: secrets::ClientFactory = Box::new(move |key| {
                chef_client_with_key(&cfg_owned, &creds, key).map_err(|e| match e {
                    AppError::Chef(c) => c,
                    other => Box::new(ChefError::BadResponse {
                        server: cfg_owned.chef.server_url.clone().unwrap_or_default(),
                        method: "setup".into(),
                        object: "client".into(),
                        detail: other.to_string(),
                    }),
                })
            });
            Ok(Arc::new(
                RotatingChef::connect(&cfg.aws, store, factory).await?,
            ))
        }
        None => Ok(Arc::new(chef_client(cfg)?)),
    }
}

fn chef_client_with_key(
    cfg: &Config,
    creds: &credentials::Credentials,
    key: crate::adapters::chef::auth::SigningKey,
) -> Result<ChefClient, AppError> {
    let server_url = url::Url::parse(&creds.server_url).map_err(|e| {
        AppError::Identity(format!(
            "chef server URL {:?} is not a URL: {e}",
            creds.server_url
        ))
    })?;
    Ok(ChefClient::new(ChefSettings {
        server_url,
        client_name: creds.client_name.clone(),
        key,
        sign_version: cfg.chef.sign_version,
        timeout: cfg.chef.timeout,
        ca_bundle: cfg.chef.ca_bundle.clone(),
        insecure_skip_tls_verify: cfg.chef.insecure_skip_tls_verify,
        page_size: cfg.chef.page_size,
    })
    .map_err(Box::new)?)
}

/// The journal: S3 with `journal.s3_bucket`, else the local directory.
pub async fn journal(cfg: &Config) -> Result<Arc<dyn Journal>, AppError> {
    match &cfg.journal.s3_bucket {
        Some(bucket) => {
            let sdk = aws::sdk_config(&cfg.aws, None).await;
            // Path-style addressing works with S3 and with S3-compatible endpoints.
            let s3 = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(true)
                    .build(),
            );
            Ok(Arc::new(
                S3Journal::new(s3, bucket.clone(), cfg.journal.s3_prefix.clone())
                    .with_kms_key(cfg.journal.s3_kms_key_id.clone()),
            ))
        }
        None => Ok(Arc::new(LocalJournal::open(&cfg.journal.dir)?)),
    }
}

/// How registrations are found (`chef.search_query`,
/// `chef.client_name_template`).
pub fn resolver(cfg: &Config) -> Resolver {
    Resolver {
        query_template: cfg.chef.search_query.clone(),
        client_name_template: cfg.chef.client_name_template.clone(),
    }
}

/// The one deletion path, with its journal, protection and rate cap.
pub async fn reaper(cfg: &Config, chef: Arc<dyn ChefApi>) -> Result<Reaper, AppError> {
    let cfg = &*one_target(cfg);
    Ok(Reaper {
        chef,
        journal: journal(cfg).await?,
        resolver: resolver(cfg),
        protection: protection(cfg),
        limiter: Arc::new(
            DeletionLimiter::new(cfg.pipeline.max_deletions_per_minute)
                .with_brake(cfg.pipeline.storm_brake_after),
        ),
        acl_backup: AclBackupPolicy::from_required(cfg.journal.require_acl_backup),
        estate: estate_targets(cfg).await?,
    })
}

/// Protection from `[protect]`, with nodereaper's own client.
fn protection(cfg: &Config) -> Protection {
    match chef_identity(cfg) {
        Ok(me) => Protection::new(&cfg.protect).with_own_client(me.client_name),
        Err(_) => Protection::new(&cfg.protect),
    }
}

/// The reaper of target `name` alone (one-off commands: sweep, deregister)
/// and its Chef client: the target's server and identity; with
/// `[[chef.targets]]` its journal entries record the target's name.
pub async fn target_reaper(
    cfg: &Config,
    name: &str,
) -> Result<(Reaper, Arc<ChefClient>), AppError> {
    let tcfg = cfg
        .for_target(name)
        .ok_or_else(|| AppError::Identity(format!("no Chef target {name:?}")))?;
    let chef = Arc::new(chef_client(&tcfg)?);
    let mut reaper = reaper(&tcfg, chef.clone()).await?;
    if cfg.has_targets() {
        reaper.journal = Arc::new(TargetJournal {
            inner: reaper.journal.clone(),
            target: name.to_string(),
        });
    }
    Ok((reaper, chef))
}

/// One reaper per configured target (its own Chef API, identity and
/// protection), sharing `primary`'s journal (each entry records its target)
/// and rate cap. A single `[chef]` section: `primary` alone, as `default`.
pub async fn target_set(cfg: &Config, primary: Arc<Reaper>) -> Result<TargetSet, AppError> {
    if !cfg.has_targets() {
        return Ok(TargetSet::single(primary));
    }
    let mut reapers = Vec::new();
    for (i, name) in cfg.target_names().into_iter().enumerate() {
        let tcfg = cfg
            .for_target(&name)
            .ok_or_else(|| AppError::Identity(format!("no target {name:?}")))?;
        // The first target's API is the one `primary` was built with.
        let chef = match i {
            0 => primary.chef.clone(),
            _ => chef_api(&tcfg).await?,
        };
        let reaper = Reaper {
            chef,
            journal: Arc::new(TargetJournal {
                inner: primary.journal.clone(),
                target: name.clone(),
            }),
            resolver: resolver(&tcfg),
            protection: protection(&tcfg),
            limiter: primary.limiter.clone(),
            acl_backup: primary.acl_backup,
            // The vault of this target's server (webhook and Automate are
            // the same for every target).
            estate: estate_targets(&tcfg).await?,
        };
        reapers.push((name, Arc::new(reaper)));
    }
    Ok(TargetSet::new(reapers, cfg.routing_table()))
}

/// The region nodereaper asks when neither `aws.region` nor the SDK's chain
/// (`AWS_REGION`, the profile) names one: the region swept without
/// `sweep.regions`, and
/// where `doctor` assumes account roles. us-east-1 is where AWS's global
/// endpoints (STS, IAM) live.
pub const FALLBACK_REGION: &str = "us-east-1";

/// The regions a sweep asks EC2 in: `sweep.regions`, else the default
/// region (`aws.region`, else the SDK's chain, else [`FALLBACK_REGION`]).
pub async fn sweep_regions(config: &Config) -> Vec<String> {
    if !config.sweep.regions.is_empty() {
        return config.sweep.regions.clone();
    }
    vec![match config.aws.region.clone() {
        Some(r) => r,
        None => aws::sdk_config(&config.aws, None)
            .await
            .region()
            .map_or_else(|| FALLBACK_REGION.to_string(), |r| r.to_string()),
    }]
}

/// The fleet a sweep asks EC2 through: nodereaper's own credentials and the
/// `[[aws.accounts]]` roles, EC2 states only.
pub fn sweep_fleet(config: &Config) -> AwsFleet {
    AwsFleet::new(&config.aws).states_only()
}

/// Sweep settings from `[sweep]`, with the run's `apply` and `force`.
pub fn sweep_settings(
    config: &Config,
    regions: Vec<String>,
    apply: bool,
    force: bool,
) -> SweepSettings {
    SweepSettings {
        grace_period: config.sweep.grace_period,
        max_candidates: config.sweep.max_candidates,
        max_candidate_share: config.sweep.max_candidate_share,
        force,
        apply,
        instance_id_attribute: config.sweep.instance_id_attribute.clone(),
        region_attribute: config.sweep.region_attribute.clone(),
        regions,
    }
}

/// Connects to one configured queue (and finds its DLQ), with the SDK
/// configuration of the queue's region.
pub async fn connect_queue(
    cfg: &Config,
    q: &QueueConfig,
) -> Result<(SqsQueue, SdkConfig), AwsError> {
    let sdk = queue_sdk_config(cfg, q).await;
    let queue =
        SqsQueue::connect(aws_sdk_sqs::Client::new(&sdk), &q.url, q.dlq_url.as_deref()).await?;
    Ok((queue, sdk))
}

/// The SDK configuration of a queue's region: `queues[].region`, else the
/// region in its URL, else the default.
async fn queue_sdk_config(cfg: &Config, q: &QueueConfig) -> SdkConfig {
    let region = q
        .region
        .clone()
        .or_else(|| aws::region_from_queue_url(&q.url));
    aws::sdk_config(&cfg.aws, region.as_deref()).await
}

/// The queue's VisibilityTimeout must exceed the keepalive interval
/// (`pipeline.lifecycle_heartbeat_interval`): the first extension comes one
/// interval after receipt, and a message that reappears before it is worked
/// twice at once. Returns the timeout.
pub async fn check_visibility(
    cfg: &Config,
    sdk: &SdkConfig,
    url: &str,
) -> Result<std::time::Duration, AppError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let answer = aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(|e| Box::new(AwsError::from_sdk("SQS", "GetQueueAttributes", url, e)))?;
    let secs: u64 = answer
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            AppError::Queue(format!(
                "queue {url}: GetQueueAttributes gave no VisibilityTimeout"
            ))
        })?;
    let timeout = std::time::Duration::from_secs(secs);
    let interval = cfg.pipeline.lifecycle_heartbeat_interval;
    if timeout <= interval {
        return Err(AppError::Visibility {
            queue: url.to_string(),
            timeout,
            interval,
        });
    }
    Ok(timeout)
}

/// One [`Source`] per configured queue; all share one [`AwsFleet`] (EC2 and
/// Auto Scaling clients per account and region, created on first use). The
/// queues are checked at the same time, each queue's two checks side by
/// side: start-up waits for one round trip, not two per queue.
pub async fn sources(cfg: &Config) -> Result<Vec<Source>, AppError> {
    if cfg.queues.is_empty() {
        return Err(AppError::NoQueue);
    }
    let fleet: Arc<dyn Fleet> = Arc::new(AwsFleet::new(&cfg.aws));
    futures::future::try_join_all(cfg.queues.iter().map(|q| source(cfg, q, fleet.clone()))).await
}

/// One queue, connected (its DLQ found) and its VisibilityTimeout checked.
/// With both failing, the connection's error is the one reported, as when
/// they ran one after the other.
async fn source(cfg: &Config, q: &QueueConfig, fleet: Arc<dyn Fleet>) -> Result<Source, AppError> {
    let sdk = queue_sdk_config(cfg, q).await;
    let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
        AppError::Queue(format!(
            "no region for queue {}: set queues[].region, aws.region or AWS_REGION",
            q.url
        ))
    })?;
    warm_up(fleet.clone(), region.clone());
    let client = aws_sdk_sqs::Client::new(&sdk);
    let (queue, visibility) = tokio::join!(
        SqsQueue::connect(client, &q.url, q.dlq_url.as_deref()),
        check_visibility(cfg, &sdk, &q.url)
    );
    let queue = queue.map_err(Box::new)?;
    visibility?;
    Ok(Source {
        queue: Arc::new(queue),
        fleet,
        region,
        target: q.target.clone(),
    })
}

/// Makes the EC2 and Auto Scaling clients of the queue's region, and learns
/// the account (GetCallerIdentity), in a detached task while the queue is
/// checked, so that the first batch's EC2 check finds them made instead of
/// making them after its receive. A failure is the first batch's to meet and
/// report (it asks again).
fn warm_up(fleet: Arc<dyn Fleet>, region: String) {
    tokio::spawn(async move {
        let placement = crate::core::placement::Placement {
            account: None,
            region,
        };
        let _ = fleet.regional(&placement).await;
    });
}

/// The daemon's pipeline over every configured queue.
/// With `[[chef.targets]]`, `chef` is the first target's API (see
/// [`chef_api`]) and every other target gets its own.
pub async fn pipeline(cfg: &Config, chef: Arc<dyn ChefApi>) -> Result<Pipeline, AppError> {
    let targets = target_set(cfg, Arc::new(reaper(cfg, chef).await?)).await?;
    // The first target's reaper (its entries name it) serves the sweep.
    let first = cfg.target_names().into_iter().next().unwrap_or_default();
    let reaper = targets
        .get(&first)
        .cloned()
        .ok_or_else(|| AppError::Identity(format!("no target {first:?}")))?;
    Ok(Pipeline {
        sources: sources(cfg).await?,
        reaper,
        targets: Arc::new(targets),
        settings: cfg.pipeline.clone(),
        breaker: Arc::new(
            Breaker::new(
                "chef",
                cfg.pipeline.breaker_threshold,
                cfg.pipeline.breaker_cooldown,
            )
            .with_unreachable_after(cfg.pipeline.unreachable_region_attempts),
        ),
    })
}

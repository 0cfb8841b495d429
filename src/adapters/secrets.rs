//! The Chef client key from an AWS secret store: Secrets Manager
//! (`chef.client_key_secret`) or SSM Parameter Store
//! (`chef.client_key_parameter`, a SecureString read with decryption).
//!
//! The key is fetched once and kept in memory only (never written to disk,
//! never logged). [`RotatingChef`] fetches it again when the Chef server
//! answers 401 and retries the request once with the new key, so a rotated
//! key is picked up without a restart. Errors name the secret and the IAM
//! permission that is missing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use crate::adapters::aws::{self, AwsError};
use crate::adapters::chef::auth::{AuthError, SigningKey};
use crate::adapters::chef::credentials::KeySource;
use crate::adapters::chef::{AclObject, ClientKey, ServerInfo};
use crate::adapters::chef::{ChefClient, ChefError};
use crate::config::{AwsConfig, ChefConfig};
use crate::core::groups::Group;
use crate::ports::{ChefApi, Deleted, SearchRow};

/// Where the key is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStore {
    /// Secret id or ARN.
    SecretsManager(String),
    /// Parameter name or ARN.
    SsmParameter(String),
}

impl KeyStore {
    /// The store configured in `[chef]`, if any.
    pub fn from_config(chef: &ChefConfig) -> Option<Self> {
        match (&chef.client_key_secret, &chef.client_key_parameter) {
            (Some(id), _) => Some(KeyStore::SecretsManager(id.clone())),
            (None, Some(name)) => Some(KeyStore::SsmParameter(name.clone())),
            (None, None) => None,
        }
    }

    /// The store behind a key source, if it is one.
    pub fn from_key_source(source: &KeySource) -> Option<Self> {
        match source {
            KeySource::SecretsManager(id) => Some(KeyStore::SecretsManager(id.clone())),
            KeySource::SsmParameter(name) => Some(KeyStore::SsmParameter(name.clone())),
            KeySource::Path(_) | KeySource::InlinePem(_) => None,
        }
    }

    /// The same store as a [`KeySource`] (the Chef adapter's view of where a
    /// key comes from).
    pub fn key_source(&self) -> KeySource {
        match self {
            KeyStore::SecretsManager(id) => KeySource::SecretsManager(id.clone()),
            KeyStore::SsmParameter(name) => KeySource::SsmParameter(name.clone()),
        }
    }

    /// The IAM action that reads it.
    pub fn permission(&self) -> &'static str {
        match self {
            KeyStore::SecretsManager(_) => "secretsmanager:GetSecretValue",
            KeyStore::SsmParameter(_) => "ssm:GetParameter",
        }
    }

    /// The id, name or ARN as configured.
    pub fn name(&self) -> &str {
        match self {
            KeyStore::SecretsManager(s) | KeyStore::SsmParameter(s) => s,
        }
    }

    /// The region named by an ARN (else the default region applies).
    fn region(&self) -> Option<&str> {
        let name = self.name();
        if !name.starts_with("arn:") {
            return None;
        }
        name.split(':').nth(3).filter(|r| !r.is_empty())
    }

    /// The IAM resource the permission must cover: the ARN, or a pattern for
    /// a bare name (`*` for account and region).
    pub fn resource_arn(&self, partition: &str) -> String {
        match self {
            _ if self.name().starts_with("arn:") => self.name().to_string(),
            // Secrets Manager appends 6 random characters to the name.
            KeyStore::SecretsManager(id) => {
                format!("arn:{partition}:secretsmanager:*:*:secret:{id}-??????")
            }
            KeyStore::SsmParameter(name) => format!(
                "arn:{partition}:ssm:*:*:parameter/{}",
                name.trim_start_matches('/')
            ),
        }
    }
}

impl std::fmt::Display for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.key_source().fmt(f)
    }
}

/// Reading the key failed. Every message names the store and, for access
/// problems, the permission.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "cannot read the Chef key from {store}: access denied. The AWS identity nodereaper runs \
         as needs {permission} on it (and kms:Decrypt on its KMS key when that is a \
         customer-managed key); `nodereaper setup --print-iam-policy` prints the statement. \
         AWS said: {detail}"
    )]
    /// AWS refused the read (IAM or KMS): nodereaper's setup is to blame.
    AccessDenied {
        /// The secret or parameter that was read.
        store: KeyStore,
        /// The IAM action needed ([`KeyStore::permission`]).
        permission: &'static str,
        /// AWS's error message.
        detail: String,
    },
    #[error("cannot read the Chef key from {store}: it does not exist in this account and region ({detail})")]
    /// No such secret or parameter in the region asked (`ResourceNotFoundException`
    /// or `ParameterNotFound`).
    NotFound {
        /// The secret or parameter that was read.
        store: KeyStore,
        /// AWS's error message.
        detail: String,
    },
    #[error("cannot read the Chef key from {store}: {source}")]
    /// Any other failed AWS call (throttling, network, ...).
    Aws {
        /// The secret or parameter that was read.
        store: KeyStore,
        /// The failed call.
        #[source]
        source: Box<AwsError>,
    },
    #[error("{store} holds no text value; expected the client's PEM private key as its value")]
    /// The secret has no string value (e.g. a binary-only secret).
    Empty {
        /// The secret or parameter that was read.
        store: KeyStore,
    },
    #[error("{store}: the value is not a usable RSA private key: {source}")]
    /// The value was read but does not parse as an RSA private key in PEM.
    InvalidKey {
        /// The secret or parameter that was read.
        store: KeyStore,
        /// Why the key was rejected.
        #[source]
        source: AuthError,
    },
    #[error("cannot read the Chef key from {store}: {detail}")]
    /// [`fetch_key_blocking`] could not run the fetch (no runtime could be
    /// started, or its thread panicked).
    Runtime {
        /// The secret or parameter that was read.
        store: KeyStore,
        /// What went wrong.
        detail: String,
    },
    /// The key was read but no Chef client could be built with it.
    #[error(transparent)]
    Client(#[from] Box<ChefError>),
}

const DENIED_CODES: [&str; 4] = [
    "AccessDeniedException",
    "AccessDenied",
    "UnauthorizedOperation",
    "KMSAccessDeniedException",
];

fn classify(store: &KeyStore, err: AwsError) -> SecretError {
    let code = err.code.as_deref().unwrap_or_default();
    let kms_denied =
        code == "DecryptionFailure" || (code.starts_with("KMS") && err.message.contains("ccess"));
    if DENIED_CODES.contains(&code) || kms_denied {
        return SecretError::AccessDenied {
            store: store.clone(),
            permission: store.permission(),
            detail: err.message,
        };
    }
    if matches!(code, "ResourceNotFoundException" | "ParameterNotFound") {
        return SecretError::NotFound {
            store: store.clone(),
            detail: err.message,
        };
    }
    SecretError::Aws {
        store: store.clone(),
        source: Box::new(err),
    }
}

/// Fetches the PEM text (kept in memory only).
pub async fn fetch_pem(aws_cfg: &AwsConfig, store: &KeyStore) -> Result<String, SecretError> {
    let sdk = aws::sdk_config(aws_cfg, store.region()).await;
    let started = Instant::now();
    let value = match store {
        KeyStore::SecretsManager(id) => {
            let client = aws_sdk_secretsmanager::Client::new(&sdk);
            let out = client.get_secret_value().secret_id(id).send().await;
            crate::telemetry::metrics::aws_request(
                "secretsmanager",
                "GetSecretValue",
                out.is_ok(),
                started.elapsed(),
            );
            let out = out.map_err(|e| {
                classify(
                    store,
                    AwsError::from_sdk("Secrets Manager", "GetSecretValue", id, e),
                )
            })?;
            match (out.secret_string(), out.secret_binary()) {
                (Some(s), _) => Some(s.to_string()),
                (None, Some(b)) => String::from_utf8(b.as_ref().to_vec()).ok(),
                (None, None) => None,
            }
        }
        KeyStore::SsmParameter(name) => {
            let client = aws_sdk_ssm::Client::new(&sdk);
            let out = client
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await;
            crate::telemetry::metrics::aws_request(
                "ssm",
                "GetParameter",
                out.is_ok(),
                started.elapsed(),
            );
            let out = out
                .map_err(|e| classify(store, AwsError::from_sdk("SSM", "GetParameter", name, e)))?;
            out.parameter().and_then(|p| p.value()).map(str::to_string)
        }
    };
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| SecretError::Empty {
            store: store.clone(),
        })
}

/// Fetches and parses the key.
pub async fn fetch_key(aws_cfg: &AwsConfig, store: &KeyStore) -> Result<SigningKey, SecretError> {
    let pem = fetch_pem(aws_cfg, store).await?;
    parse(store, &pem)
}

fn parse(store: &KeyStore, pem: &str) -> Result<SigningKey, SecretError> {
    SigningKey::from_pem(pem).map_err(|source| SecretError::InvalidKey {
        store: store.clone(),
        source,
    })
}

/// [`fetch_key`] for synchronous callers (inside or outside a Tokio
/// runtime): runs on a thread of its own with a private runtime.
pub fn fetch_key_blocking(
    aws_cfg: &AwsConfig,
    store: &KeyStore,
) -> Result<SigningKey, SecretError> {
    let runtime_err = |detail: String| SecretError::Runtime {
        store: store.clone(),
        detail,
    };
    let (aws_cfg, owned) = (aws_cfg.clone(), store.clone());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SecretError::Runtime {
                store: owned.clone(),
                detail: format!("cannot start a runtime: {e}"),
            })?
            .block_on(fetch_key(&aws_cfg, &owned))
    })
    .join()
    .map_err(|_| runtime_err("the fetching thread panicked".into()))?
}

/// Builds a Chef client for a given key (the other settings fixed).
pub type ClientFactory =
    Box<dyn Fn(SigningKey) -> Result<ChefClient, Box<ChefError>> + Send + Sync>;

/// A [`ChefApi`] whose key comes from a secret store: on a 401 it fetches the
/// key again and, when the key changed (rotation), retries the request once
/// with a client signing with the new key.
pub struct RotatingChef {
    store: KeyStore,
    aws: AwsConfig,
    factory: ClientFactory,
    server: String,
    current: RwLock<(u64, Arc<ChefClient>, String)>,
    generation: AtomicU64,
    refresh_lock: tokio::sync::Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
}

impl RotatingChef {
    /// Fetches the key once and builds the first client.
    pub async fn connect(
        aws_cfg: &AwsConfig,
        store: KeyStore,
        factory: ClientFactory,
    ) -> Result<Self, SecretError> {
        let pem = fetch_pem(aws_cfg, &store).await?;
        let key = parse(&store, &pem)?;
        let client = factory(key)?;
        Ok(Self {
            server: client.server().to_string(),
            store,
            aws: aws_cfg.clone(),
            factory,
            current: RwLock::new((0, Arc::new(client), pem)),
            generation: AtomicU64::new(0),
            refresh_lock: tokio::sync::Mutex::new(Some(Instant::now())),
            min_refetch_interval: Duration::from_secs(10),
        })
    }

    /// At most one re-fetch per this interval (default 10 s): a wrong key
    /// must not turn every request into a secret-store call.
    pub fn with_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How often the key was replaced since start.
    pub fn rotations(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn current(&self) -> (u64, Arc<ChefClient>) {
        match self.current.read() {
            Ok(g) => (g.0, g.1.clone()),
            Err(poisoned) => {
                let g = poisoned.into_inner();
                (g.0, g.1.clone())
            }
        }
    }

    /// Re-fetches after a 401 seen with client generation `seen`. True when
    /// a newer client is there to retry with.
    async fn refresh(&self, seen: u64) -> bool {
        let mut last = self.refresh_lock.lock().await;
        if self.generation.load(Ordering::SeqCst) != seen {
            return true; // another request already rotated
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch_interval) {
            return false;
        }
        *last = Some(Instant::now());
        let pem = match fetch_pem(&self.aws, &self.store).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "Chef answered 401; re-reading the key failed");
                return false;
            }
        };
        let unchanged = match self.current.read() {
            Ok(g) => g.2 == pem,
            Err(p) => p.into_inner().2 == pem,
        };
        if unchanged {
            tracing::warn!(store = %self.store, "Chef answered 401 and the key in the store is unchanged");
            return false;
        }
        let client = match parse(&self.store, &pem).and_then(|k| {
            (self.factory)(k).map_err(|e| SecretError::Runtime {
                store: self.store.clone(),
                detail: e.to_string(),
            })
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the rotated Chef key is unusable");
                return false;
            }
        };
        let next = seen + 1;
        match self.current.write() {
            Ok(mut g) => *g = (next, Arc::new(client), pem),
            Err(p) => *p.into_inner() = (next, Arc::new(client), pem),
        }
        self.generation.store(next, Ordering::SeqCst);
        tracing::info!(store = %self.store, "Chef key re-read after a 401 (rotated)");
        true
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, ChefError>
    where
        F: Fn(Arc<ChefClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ChefError>>,
    {
        let (generation, client) = self.current();
        match f(client).await {
            Err(e @ ChefError::Unauthorized { .. }) => {
                if self.refresh(generation).await {
                    f(self.current().1).await
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

#[async_trait]
impl ChefApi for RotatingChef {
    fn server(&self) -> &str {
        &self.server
    }
    async fn get_node(&self, name: &str) -> Result<Option<Value>, ChefError> {
        self.call(|c| async move { c.get_node(name).await }).await
    }
    async fn delete_node(&self, name: &str) -> Result<Deleted, ChefError> {
        self.call(|c| async move { c.delete_node(name).await })
            .await
    }
    async fn get_client(&self, name: &str) -> Result<Option<Value>, ChefError> {
        self.call(|c| async move { c.get_client(name).await }).await
    }
    async fn delete_client(&self, name: &str) -> Result<Deleted, ChefError> {
        self.call(|c| async move { c.delete_client(name).await })
            .await
    }
    async fn list_nodes(&self) -> Result<Vec<String>, ChefError> {
        self.call(|c| async move { c.list_nodes().await }).await
    }
    async fn search_node_names(&self, query: &str) -> Result<Vec<String>, ChefError> {
        self.call(|c| async move { c.search_node_names(query).await })
            .await
    }
    async fn partial_search_nodes(
        &self,
        query: &str,
        keys: &[(&str, &[&str])],
    ) -> Result<Vec<SearchRow>, ChefError> {
        self.call(|c| async move { c.partial_search_nodes(query, keys).await })
            .await
    }
    async fn create_node(&self, node: &Value) -> Result<(), ChefError> {
        self.call(|c| async move { c.create_node(node).await })
            .await
    }
    async fn update_node(&self, name: &str, node: &Value) -> Result<(), ChefError> {
        self.call(|c| async move { c.update_node(name, node).await })
            .await
    }
    async fn create_client(
        &self,
        name: &str,
        public_key: Option<&str>,
        admin: bool,
    ) -> Result<(), ChefError> {
        self.call(|c| async move { c.create_client(name, public_key, admin).await })
            .await
    }
    async fn own_identity(&self) -> Result<Option<(&'static str, Value)>, ChefError> {
        self.call(|c| async move { c.own_identity().await }).await
    }
    async fn server_info(&self) -> Result<ServerInfo, ChefError> {
        self.call(|c| async move { c.server_info().await }).await
    }
    async fn client_keys(&self, name: &str) -> Result<Option<Vec<ClientKey>>, ChefError> {
        self.call(|c| async move { c.client_keys(name).await })
            .await
    }
    async fn get_acl(&self, object: AclObject, name: &str) -> Result<Option<Value>, ChefError> {
        self.call(|c| async move { c.get_acl(object, name).await })
            .await
    }
    async fn put_acl(
        &self,
        object: AclObject,
        name: &str,
        permission: &str,
        acl: &Value,
    ) -> Result<(), ChefError> {
        self.call(|c| async move { c.put_acl(object, name, permission, acl).await })
            .await
    }
    async fn create_client_returning_key(
        &self,
        name: &str,
        public_key: Option<&str>,
        admin: bool,
        validator: bool,
    ) -> Result<Option<String>, ChefError> {
        self.call(|c| async move {
            c.create_client_returning_key(name, public_key, admin, validator)
                .await
        })
        .await
    }
    async fn add_client_key(&self, name: &str, key: &ClientKey) -> Result<(), ChefError> {
        self.call(|c| async move { c.add_client_key(name, key).await })
            .await
    }
    async fn create_keyless_client(&self, name: &str, validator: bool) -> Result<(), ChefError> {
        self.call(|c| async move { c.create_keyless_client(name, validator).await })
            .await
    }
    async fn get_group(&self, name: &str) -> Result<Option<Group>, ChefError> {
        self.call(|c| async move { c.get_group(name).await }).await
    }
    async fn get_group_cached(&self, name: &str) -> Result<Option<Group>, ChefError> {
        self.call(|c| async move { c.get_group_cached(name).await })
            .await
    }
    async fn list_groups(&self) -> Result<Vec<String>, ChefError> {
        self.call(|c| async move { c.list_groups().await }).await
    }
    async fn put_group(&self, group: &Group) -> Result<(), ChefError> {
        self.call(|c| async move { c.put_group(group).await }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_permissions_and_resources() {
        let s = KeyStore::SecretsManager("nodereaper/chef".into());
        assert_eq!(s.permission(), "secretsmanager:GetSecretValue");
        assert_eq!(
            s.resource_arn("aws"),
            "arn:aws:secretsmanager:*:*:secret:nodereaper/chef-??????"
        );
        assert_eq!(s.to_string(), "Secrets Manager secret nodereaper/chef");
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:k-AbCdEf";
        let s = KeyStore::SecretsManager(arn.into());
        assert_eq!(s.resource_arn("aws"), arn);
        assert_eq!(s.region(), Some("eu-west-1"));
        let p = KeyStore::SsmParameter("/nodereaper/chef-key".into());
        assert_eq!(p.permission(), "ssm:GetParameter");
        assert_eq!(
            p.resource_arn("aws-cn"),
            "arn:aws-cn:ssm:*:*:parameter/nodereaper/chef-key"
        );
        assert_eq!(p.region(), None);
    }

    #[test]
    fn denied_errors_name_store_and_permission() {
        let store = KeyStore::SsmParameter("/k".into());
        let err = classify(
            &store,
            AwsError {
                service: "SSM",
                operation: "GetParameter",
                target: "/k".into(),
                code: Some("AccessDeniedException".into()),
                message: "User is not authorized".into(),
                retry: crate::core::error::Retry::Permanent,
                status: Some(400),
            },
        )
        .to_string();
        assert!(
            err.contains("SSM parameter /k") && err.contains("needs ssm:GetParameter"),
            "{err}"
        );
    }
}

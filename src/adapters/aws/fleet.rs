//! [`Fleet`] on AWS: EC2 and Auto Scaling clients per account and region.
//!
//! nodereaper's own account needs no configuration (its credentials come
//! from the SDK's chain); other accounts are reached through
//! `[[aws.accounts]]` roles (STS AssumeRole; the SDK caches the temporary
//! credentials and refreshes them before they expire). An event from any
//! other account is refused: nobody here can say whether its instance is gone.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use tokio::sync::{Mutex, OnceCell};

use super::ec2::Ec2Inventory;
use super::lifecycle::AsgLifecycle;
use super::tags::AsgGroupTags;
use super::AwsError;
use crate::config::{AccountConfig, AwsConfig};
use crate::core::placement::Placement;
use crate::ports::{Fleet, PlacementError, Regional};

/// One (account, region)'s services, with its EC2 inventory kept concrete
/// for its request counts.
type Cached = (Regional, Arc<Ec2Inventory>);

/// [`Fleet`] backed by real AWS SDK clients: one set of EC2 and Auto Scaling
/// clients per (account, region), built on first use and kept.
pub struct AwsFleet {
    aws: AwsConfig,
    accounts: HashMap<String, AccountConfig>,
    own_account: OnceCell<String>,
    cache: Mutex<HashMap<(String, String), Cached>>,
    states_only: bool,
}

impl AwsFleet {
    /// A fleet for the `[aws]` settings; makes no AWS calls until first used.
    pub fn new(aws: &AwsConfig) -> Self {
        Self {
            aws: aws.clone(),
            accounts: aws
                .accounts
                .iter()
                .map(|a| (a.id.clone(), a.clone()))
                .collect(),
            own_account: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
            states_only: false,
        }
    }

    /// For sweeps: EC2 states only, no Auto Scaling lifecycle states (a
    /// sweep acts on terminated or unknown instances, so lifecycle states of
    /// alive ones would be requests for nothing).
    pub fn states_only(mut self) -> Self {
        self.states_only = true;
        self
    }

    /// DescribeInstances pages and DescribeAutoScalingInstances calls made
    /// so far, over every account and region.
    pub async fn request_counts(&self) -> (u64, u64) {
        let cache = self.cache.lock().await;
        cache.values().fold((0, 0), |(pages, asg), (_, inv)| {
            let (p, a) = inv.request_counts();
            (pages + p, asg + a)
        })
    }

    /// The account nodereaper's own credentials belong to (STS
    /// GetCallerIdentity, asked once).
    pub async fn own_account(&self) -> Result<&str, AwsError> {
        self.own_account
            .get_or_try_init(|| async {
                let sdk = super::sdk_config(&self.aws, None).await;
                let sts = aws_sdk_sts::Client::new(&sdk);
                let started = std::time::Instant::now();
                let result = sts.get_caller_identity().send().await;
                crate::telemetry::metrics::aws_request(
                    "sts",
                    "GetCallerIdentity",
                    result.is_ok(),
                    started.elapsed(),
                );
                let answer = result.map_err(|e| {
                    AwsError::from_sdk("STS", "GetCallerIdentity", "own credentials", e)
                })?;
                answer.account().map(str::to_owned).ok_or_else(|| {
                    AwsError::invalid(
                        "STS",
                        "GetCallerIdentity",
                        "own credentials",
                        "the answer names no account",
                    )
                })
            })
            .await
            .map(String::as_str)
    }

    /// Assumes the role of a configured account and asks STS who that is:
    /// the account must be the one configured (`doctor`). Returns the
    /// assumed identity's ARN.
    pub async fn check_account(
        &self,
        account: &AccountConfig,
        region: &str,
    ) -> Result<String, AwsError> {
        let sdk = self.sdk_for(Some(account), region).await;
        let (actual, arn) = assumed_identity(&sdk, account).await?;
        if actual == account.id {
            Ok(arn)
        } else {
            Err(AwsError::invalid(
                "STS",
                "GetCallerIdentity",
                &account.role_arn,
                format!(
                    "the role's credentials belong to account {actual}, not {}",
                    account.id
                ),
            ))
        }
    }

    async fn sdk_for(&self, account: Option<&AccountConfig>, region: &str) -> SdkConfig {
        let base = super::sdk_config(&self.aws, Some(region)).await;
        let Some(account) = account else {
            return base;
        };
        let mut role = aws_config::sts::AssumeRoleProvider::builder(&account.role_arn)
            .session_name("nodereaper")
            .region(aws_config::Region::new(region.to_string()))
            .configure(&base);
        if let Some(id) = &account.external_id {
            role = role.external_id(id);
        }
        let provider = role.build().await;
        base.into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build()
    }
}

/// The account and ARN STS GetCallerIdentity names for `sdk`'s credentials
/// (those of `account`'s role).
async fn assumed_identity(
    sdk: &SdkConfig,
    account: &AccountConfig,
) -> Result<(String, String), AwsError> {
    let started = std::time::Instant::now();
    let result = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await;
    crate::telemetry::metrics::aws_request(
        "sts",
        "GetCallerIdentity",
        result.is_ok(),
        started.elapsed(),
    );
    let answer =
        result.map_err(|e| AwsError::from_sdk("STS", "GetCallerIdentity", &account.role_arn, e))?;
    let actual = answer.account().ok_or_else(|| {
        AwsError::invalid(
            "STS",
            "GetCallerIdentity",
            &account.role_arn,
            "the answer names no account",
        )
    })?;
    Ok((
        actual.to_string(),
        answer.arn().unwrap_or_default().to_string(),
    ))
}

#[async_trait::async_trait]
impl Fleet for AwsFleet {
    async fn regional(&self, placement: &Placement) -> Result<Regional, PlacementError> {
        // Which credentials: our own, or a configured account's role. The
        // account is always identified (GetCallerIdentity, asked once), so
        // the answer says which account it came from.
        let own = self.own_account().await?.to_string();
        let account = match placement.account.as_deref() {
            None => None,
            Some(a) => {
                if a == own {
                    None
                } else {
                    match self.accounts.get(a) {
                        Some(cfg) => Some(cfg),
                        None => {
                            return Err(PlacementError::UnknownAccount {
                                account: a.to_string(),
                                own,
                            })
                        }
                    }
                }
            }
        };
        let key = (
            account.map_or_else(|| "own".to_string(), |a| a.id.clone()),
            placement.region.clone(),
        );
        let mut cache = self.cache.lock().await;
        if let Some((r, _)) = cache.get(&key) {
            return Ok(r.clone());
        }
        let sdk = self.sdk_for(account, &placement.region).await;
        if let Some(account) = account {
            // The role must give this account's credentials: anywhere else
            // none of its instances exists, so each would look gone.
            let (actual, _) = assumed_identity(&sdk, account).await?;
            if actual != account.id {
                return Err(PlacementError::WrongRoleAccount {
                    account: account.id.clone(),
                    role_arn: account.role_arn.clone(),
                    actual,
                });
            }
        }
        let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);
        let mut inventory = Ec2Inventory::new(
            aws_sdk_ec2::Client::new(&sdk),
            autoscaling.clone(),
            placement.region.clone(),
        );
        if self.states_only {
            inventory = inventory.states_only();
        }
        let inventory = Arc::new(inventory);
        let regional = Regional {
            placement: Placement {
                account: Some(account.map_or(own, |a| a.id.clone())),
                region: placement.region.clone(),
            },
            inventory: inventory.clone(),
            lifecycle: Arc::new(AsgLifecycle::new(autoscaling.clone())),
            group_tags: Arc::new(AsgGroupTags::new(autoscaling)),
        };
        cache.insert(key, (regional.clone(), inventory));
        Ok(regional)
    }
}

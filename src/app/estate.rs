//! Wiring of the estate targets (`[vault]`, `[webhook]`, `[automate]`).

use std::sync::Arc;

use super::{chef_client, AppError};
use crate::adapters::secrets::{self, KeyStore};
use crate::config::Config;

/// The estate targets configured, in the order `vault`, `webhook`, `automate`.
pub async fn estate_targets(cfg: &Config) -> Result<crate::act::estate::EstateTargets, AppError> {
    use crate::adapters::webhook::{WebhookSettings, WebhookTarget};
    let mut targets: crate::act::estate::EstateTargets = Vec::new();
    if cfg.vault.enabled {
        let chef = Arc::new(chef_client(cfg)?);
        targets.push(Arc::new(crate::adapters::vault::VaultTarget::new(
            chef,
            cfg.vault.data_bags.clone(),
        )));
    }
    let w = &cfg.webhook;
    if let Some(url) = &w.url {
        let secret = match (&w.secret_file, &w.secret_id) {
            (Some(path), _) => {
                std::fs::read_to_string(path).map_err(|e| crate::ports::estate::EstateError {
                    target: crate::adapters::webhook::NAME,
                    operation: "read webhook.secret_file".into(),
                    object: path.display().to_string(),
                    detail: e.to_string(),
                    retry: crate::core::error::Retry::Permanent,
                })?
            }
            (None, Some(id)) => {
                secrets::fetch_pem(&cfg.aws, &KeyStore::SecretsManager(id.clone())).await?
            }
            (None, None) => String::new(),
        };
        targets.push(Arc::new(WebhookTarget::new(WebhookSettings {
            url: url.clone(),
            secret: secret.trim().as_bytes().to_vec(),
            timeout: w.timeout,
            attempts: w.attempts,
            backoff: w.backoff,
            allow_plain_http: w.allow_plain_http,
            template: w.parsed_template().map_err(|(key, expected)| {
                crate::ports::estate::EstateError {
                    target: crate::adapters::webhook::NAME,
                    operation: format!("read {key}"),
                    object: key.to_string(),
                    detail: format!("expected {expected}"),
                    retry: crate::core::error::Retry::Permanent,
                }
            })?,
        })?));
    }
    if let Some(target) = automate_target(cfg).await? {
        targets.push(target);
    }
    Ok(targets)
}

/// The Chef Automate target, when `automate.url` is set.
async fn automate_target(
    cfg: &Config,
) -> Result<Option<Arc<dyn crate::ports::estate::EstateTarget>>, AppError> {
    Ok(automate(cfg)
        .await?
        .map(|a| Arc::new(a) as Arc<dyn crate::ports::estate::EstateTarget>))
}

/// Chef Automate's client (the target, and the inventory `sweep
/// --automate` lists), when `automate.url` is set.
pub async fn automate(
    cfg: &Config,
) -> Result<Option<crate::adapters::automate::AutomateTarget>, AppError> {
    use crate::adapters::automate::{AutomateSettings, AutomateTarget, NAME};
    let a = &cfg.automate;
    let Some(url) = &a.url else {
        return Ok(None);
    };
    let token = match (&a.token_file, &a.token_id) {
        (Some(path), _) => {
            std::fs::read_to_string(path).map_err(|e| crate::ports::estate::EstateError {
                target: NAME,
                operation: "read automate.token_file".into(),
                object: path.display().to_string(),
                detail: e.to_string(),
                retry: crate::core::error::Retry::Permanent,
            })?
        }
        (None, Some(id)) => {
            secrets::fetch_pem(&cfg.aws, &KeyStore::SecretsManager(id.clone())).await?
        }
        (None, None) => String::new(),
    };
    let chef_url = cfg
        .chef
        .server_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok());
    let org_in_url = chef_url.as_ref().and_then(|u| {
        let mut segments = u.path_segments()?;
        segments.find(|s| *s == "organizations")?;
        segments.next().map(str::to_string)
    });
    Ok(Some(AutomateTarget::new(AutomateSettings {
        url: url.clone(),
        token: token.trim().to_string(),
        organization: a
            .organization
            .clone()
            .or(org_in_url)
            .unwrap_or_else(|| "default".into()),
        service_hostname: a.service_hostname.clone().unwrap_or_else(|| {
            chef_url
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default()
        }),
        timeout: a.timeout,
        attempts: a.attempts,
        backoff: a.backoff,
        allow_plain_http: a.allow_plain_http,
    })?))
}

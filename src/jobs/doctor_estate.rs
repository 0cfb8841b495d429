//! `doctor`'s estate checks: each configured target (`[vault]`,
//! `[webhook]`) set up and probed with a harmless request.

use super::doctor::Check;
use crate::config::Config;

/// One check per configured estate target; none when none is configured.
pub async fn checks(cfg: &Config) -> Vec<Check> {
    if !cfg.vault.enabled && cfg.webhook.url.is_none() && cfg.automate.url.is_none() {
        return Vec::new();
    }
    let targets = match crate::app::estate_targets(cfg).await {
        Ok(t) => t,
        Err(e) => {
            return vec![Check::fail(
                "estate targets",
                e.to_string(),
                "check [vault] / [webhook] (webhook.secret_file or webhook.secret_id readable, chef key usable)",
            )]
        }
    };
    let mut out = Vec::new();
    for target in targets {
        let name = format!("estate {}", target.name());
        out.push(match target.probe().await {
            Ok(detail) => Check::pass(name, detail),
            Err(e) => Check::fail(name, e.to_string(), fix(target.name())),
        });
    }
    out
}

fn fix(target: &str) -> &'static str {
    match target {
        "vault" => "nodereaper's Chef client needs read and update on the vault data bags (and delete on sparse-mode key items); check vault.data_bags",
        "automate" => "check automate.url and that the api-token allows ingest:nodes:delete and system:serviceVersion:get",
        "webhook" => "check webhook.url, DNS, firewalls and that the receiver runs (https unless webhook.allow_plain_http)",
        _ => "see the error above",
    }
}

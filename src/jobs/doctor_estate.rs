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
    if let Ok(Some(automate)) = crate::app::automate(cfg).await {
        out.push(automate_sweep_check(&automate).await);
    }
    out
}

/// `sweep --automate` lists Automate's missing nodes: one page of one node
/// shows the token may (`infra:nodes:list`). Only that command needs it, so
/// a refusal is reported, never a failure of `doctor`.
async fn automate_sweep_check(automate: &dyn crate::ports::estate::AutomateNodes) -> Check {
    let name = "automate sweep (sweep --automate)";
    match automate.missing_nodes(1, 1).await {
        Ok(nodes) => Check::pass(
            name,
            format!(
                "GET /api/v0/cfgmgmt/nodes?filter=status:missing answered ({} on the first page of 1)",
                nodes.len()
            ),
        ),
        Err(e) => Check {
            name: name.into(),
            ok: true,
            unknown: true,
            detail: format!("{e}"),
            fix: Some("only `sweep --automate` needs this: give the api-token infra:nodes:list and infra:nodes:get (and ingest:nodes:delete)".into()),
        },
    }
}

fn fix(target: &str) -> &'static str {
    match target {
        "vault" => "nodereaper's Chef client needs read and update on the vault data bags (and delete on sparse-mode key items); check vault.data_bags",
        "automate" => "check automate.url and that the api-token allows ingest:nodes:delete and system:serviceVersion:get",
        "webhook" => "check webhook.url, DNS, firewalls and that the receiver runs (https unless webhook.allow_plain_http)",
        _ => "see the error above",
    }
}

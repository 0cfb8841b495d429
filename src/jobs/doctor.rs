//! `nodereaper doctor`: checks a deployment end to end, one line per check,
//! with the fix for each failure. Never deletes anything.

use std::time::Duration;

use serde::Serialize;

use crate::adapters::aws::{self, sqs};
use crate::adapters::chef::credentials::{self, KeySource};
use crate::adapters::chef::{ChefClient, ChefError, ServerKind};
use crate::app;
use crate::config::Config;
use crate::ports::{ChefApi, Queue};

/// Clock difference at which Chef servers refuse signatures.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it did not fail (true also for an `unknown` check).
    pub ok: bool,
    /// The check ran but proves nothing either way (reported `UNKNOWN`, not
    /// `PASS`; does not fail `doctor`): confirm by the means `fix` names.
    pub unknown: bool,
    /// What was found.
    pub detail: String,
    /// What to do about a failure.
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            unknown: false,
            detail: detail.into(),
            fix: None,
        }
    }

    fn unknown(name: impl Into<String>, detail: impl Into<String>, how: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            unknown: true,
            detail: detail.into(),
            fix: Some(how.into()),
        }
    }

    pub(crate) fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            ok: false,
            unknown: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

fn chef_fix(e: &ChefError) -> String {
    match e {
        ChefError::Unauthorized { .. } => {
            "sync the clock (NTP) and check that chef.client_name matches the key".into()
        }
        ChefError::Forbidden {
            method,
            object,
            client,
            ..
        } => format!(
            "{} (all of them: `nodereaper setup --print-iam-policy`)",
            crate::core::chef_permissions::explain_forbidden(method, object, client)
        ),
        ChefError::Transport { source, .. }
            if format!("{source:?}").to_lowercase().contains("certificate") =>
        {
            "the server's certificate is not trusted: set chef.ca_bundle to your CA's PEM bundle"
                .into()
        }
        ChefError::Transport { .. } => {
            "check chef.server_url, DNS, firewalls and that the server runs".into()
        }
        ChefError::EmptyDelete { .. } => "check chef.server_url (organization path)".into(),
        ChefError::NoOrganization { .. } => {
            "set chef.server_url to https://HOST/organizations/ORG with an existing organization (`knife org list` on the server)".into()
        }
        _ => "see the error above".into(),
    }
}

/// Runs every check; `config_source` names where the configuration came from.
pub async fn run(cfg: &Config, config_source: &str) -> Vec<Check> {
    let mut checks = vec![Check::pass(
        "config",
        format!("{config_source} parsed and validated"),
    )];
    aws_checks(cfg, &mut checks).await;
    for (name, result) in crate::jobs::setup::access::checks(cfg).await {
        checks.push(match result {
            Ok(detail) => Check::pass(name, detail),
            Err((detail, fix)) => Check::fail(name, detail, fix),
        });
    }
    if !cfg.has_targets() {
        chef_checks(cfg, &mut checks).await;
    } else {
        // Several targets: the routing table, then each target's own checks.
        checks.push(super::routing::routing_check(cfg));
        for name in cfg.target_names() {
            let from = checks.len();
            if let Some(target) = cfg.for_target(&name) {
                chef_checks(&target, &mut checks).await;
            }
            super::routing::label_target_checks(&mut checks, from, &name);
        }
    }
    checks.extend(super::doctor_estate::checks(cfg).await);
    checks
}

async fn aws_checks(cfg: &Config, checks: &mut Vec<Check>) {
    let sdk = aws::sdk_config(&cfg.aws, None).await;
    let sts = aws_sdk_sts::Client::new(&sdk);
    match sts.get_caller_identity().send().await {
        Ok(id) => checks.push(Check::pass(
            "aws credentials",
            format!("caller {}", id.arn().unwrap_or("(unknown)")),
        )),
        Err(e) => checks.push(Check::fail(
            "aws credentials",
            aws::AwsError::from_sdk("STS", "GetCallerIdentity", "caller", e).to_string(),
            "provide credentials (instance profile, AWS_PROFILE, or environment) and a region (aws.region or AWS_REGION)",
        )),
    }
    let fleet = aws::fleet::AwsFleet::new(&cfg.aws);
    let region = sdk
        .region()
        .map_or_else(|| app::FALLBACK_REGION.to_string(), |r| r.to_string());
    for account in &cfg.aws.accounts {
        let name = format!("aws account {}", account.id);
        match fleet.check_account(account, &region).await {
            Ok(arn) => checks.push(Check::pass(name, format!("role assumed: {arn}"))),
            Err(e) => checks.push(Check::fail(
                name,
                e.to_string(),
                "let nodereaper's identity assume the role (sts:AssumeRole, the role's trust policy and external id)",
            )),
        }
    }
    if cfg.queues.is_empty() {
        checks.push(Check::fail(
            "queues",
            "no queue configured",
            "add [[queues]] url = \"...\" or run `nodereaper setup`",
        ));
    }
    for q in &cfg.queues {
        let name = format!("queue {}", sqs::queue_name(&q.url));
        match app::connect_queue(cfg, q).await {
            Ok((queue, sdk)) => {
                match app::check_visibility(cfg, &sdk, &q.url).await {
                    Ok(t) => checks.push(Check::pass(
                        format!("{name} visibility"),
                        format!(
                            "VisibilityTimeout {t:?} > heartbeat interval {:?}",
                            cfg.pipeline.lifecycle_heartbeat_interval
                        ),
                    )),
                    Err(e) => checks.push(Check::fail(
                        format!("{name} visibility"),
                        e.to_string(),
                        "raise the queue's VisibilityTimeout above pipeline.lifecycle_heartbeat_interval",
                    )),
                }
                match queue.depth().await {
                    Ok((visible, hidden)) => checks.push(Check::pass(
                        name.clone(),
                        format!("readable: {visible} visible, {hidden} in flight"),
                    )),
                    Err(e) => checks.push(Check::fail(
                        name.clone(),
                        e.to_string(),
                        "allow sqs:GetQueueAttributes",
                    )),
                }
                checks.push(Check::pass(
                    format!("{name} DLQ"),
                    format!("attached: {}", queue.dlq_url()),
                ));
            }
            Err(e) => checks.push(Check::fail(
                name,
                e.to_string(),
                "create the queue with `nodereaper setup` or fix queues[].url; attach a dead-letter queue",
            )),
        }
    }
}

/// The Chef side: key, identity, one signed request (reachability, TLS,
/// clock, signature), server kind, search and delete permissions. Stops at
/// the first failure the later checks depend on.
async fn chef_checks(cfg: &Config, checks: &mut Vec<Check>) {
    if !key_checks(cfg, checks).await {
        return;
    }
    let chef = match app::chef_client(cfg) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail(
                "chef identity",
                e.to_string(),
                "set chef.server_url, chef.client_name and chef.client_key, or a ~/.chef/credentials profile",
            ));
            return;
        }
    };
    if !signed_request_checks(&chef, checks).await {
        return;
    }
    let org = organization_check(&chef).await;
    let org_missing = !org.ok;
    checks.push(org);
    if org_missing {
        return;
    }
    checks.push(server_kind_check(&chef).await);
    checks.push(search_window_check(&chef).await);
    checks.push(
        match chef.search_node_names("name:nodereaper-doctor-probe").await {
            Ok(_) => Check::pass("chef search", "node search allowed"),
            Err(e) => Check::fail("chef search", e.to_string(), chef_fix(&e)),
        },
    );
    delete_permission_checks(&chef, checks).await;
    let resolver = app::resolver(cfg);
    let client_of = |node: &str| resolver.client_name_for(node);
    checks.extend(super::permissions::chef_permission_checks(&chef, &client_of).await);
}

/// The client key: readable from its secret store, or a file private to its
/// owner. False when the key cannot be read at all.
async fn key_checks(cfg: &Config, checks: &mut Vec<Check>) -> bool {
    if let Some(store) = crate::adapters::secrets::KeyStore::from_config(&cfg.chef) {
        match crate::adapters::secrets::fetch_key(&cfg.aws, &store).await {
            Ok(key) => checks.push(Check::pass(
                "chef key",
                format!("read {store}: an RSA private key ({key:?}), kept in memory"),
            )),
            Err(e) => {
                let fix = format!(
                    "allow {} on {store} to this AWS identity (`nodereaper setup --print-iam-policy`), \
                     and store the client's PEM private key as its value",
                    store.permission()
                );
                checks.push(Check::fail("chef key", e.to_string(), fix));
                return false;
            }
        }
    }
    if let Ok(identity) = app::chef_identity(cfg) {
        if let KeySource::Path(path) = &identity.key {
            checks.push(match credentials::load_key(&identity.key, false) {
                Ok(_) => Check::pass(
                    "chef key file",
                    format!("{} is private to its owner", path.display()),
                ),
                Err(e) => Check::fail(
                    "chef key file",
                    e.to_string(),
                    format!("chmod 600 {}", path.display()),
                ),
            });
        }
    }
    true
}

/// Reachability, TLS trust, signature and clock skew in one signed request
/// (GET of nodereaper's own client). False when the server cannot be
/// reached or refuses the signature.
async fn signed_request_checks(chef: &ChefClient, checks: &mut Vec<Check>) -> bool {
    let me = chef.client_name().to_string();
    let started = std::time::Instant::now();
    let resp = match chef
        .send(reqwest::Method::GET, &["clients", &me], &[], None)
        .await
    {
        Ok(resp) => resp,
        Err(e) => {
            let fix = chef_fix(&e);
            checks.push(Check::fail("chef reachable", e.to_string(), fix));
            return false;
        }
    };
    let tls = if chef.server().starts_with("https://") {
        ", TLS certificate trusted"
    } else {
        " (plain HTTP, no TLS)"
    };
    checks.push(Check::pass(
        "chef reachable",
        format!(
            "{} answered {} in {} ms{tls}",
            chef.server(),
            resp.status.as_u16(),
            started.elapsed().as_millis()
        ),
    ));
    checks.push(clock_skew_check(&resp.headers));
    match resp.status.as_u16() {
        200 | 403 | 404 => checks.push(Check::pass(
            "chef authentication",
            format!("signature of {me:?} accepted"),
        )),
        401 => {
            checks.push(Check::fail(
                "chef authentication",
                format!("401: the server refused the signature of {me:?}"),
                "check that chef.client_name matches the key, and the clock",
            ));
            return false;
        }
        s => checks.push(Check::fail(
            "chef authentication",
            format!("unexpected status {s}"),
            "check chef.server_url",
        )),
    }
    true
}

/// This host's clock against the `Date` of a Chef response.
fn clock_skew_check(headers: &reqwest::header::HeaderMap) -> Check {
    let server_time = headers
        .get("date")
        .and_then(|d| d.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
    let Some(t) = server_time else {
        return Check::pass("clock skew", "the server sent no Date header; not measured");
    };
    let skew = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .unsigned_abs();
    if Duration::from_secs(skew) > MAX_SKEW {
        Check::fail(
            "clock skew",
            format!("this host differs from the Chef server by {skew} s; signatures are refused above 900 s (401)"),
            "run NTP (chrony or systemd-timesyncd) on this host",
        )
    } else {
        Check::pass("clock skew", format!("{skew} s (limit 900 s)"))
    }
}

/// The organization in the server URL exists: GET /nodes answers (a 404
/// for the collection is a wrong or missing organization).
async fn organization_check(chef: &ChefClient) -> Check {
    match chef.list_nodes().await {
        Ok(nodes) => Check::pass(
            "chef organization",
            format!("GET /nodes lists {} nodes", nodes.len()),
        ),
        Err(e) => Check::fail("chef organization", e.to_string(), chef_fix(&e)),
    }
}

/// The search window: one row asked at 10,000 (refused by OpenSearch and
/// Elasticsearch unless the operator raised `index.max_result_window`).
async fn search_window_check(chef: &ChefClient) -> Check {
    use crate::adapters::chef::client::SearchWindow;
    let indexed = |total: Option<u64>| match total {
        Some(t) if t >= crate::core::chef::SEARCH_WINDOW => format!("{t} or more nodes indexed"),
        Some(t) => format!("{t} nodes indexed"),
        None => "no total".into(),
    };
    let what = match chef.search_window().await {
        Ok(SearchWindow::None) => "goiardi: no search window; pages until a short page".into(),
        Ok(SearchWindow::Served { total }) => format!(
            "a page at row 10,000 is served (Solr, or index.max_result_window raised); nodereaper still asks at most 10,000 rows per query and splits larger ones by object id; {}",
            indexed(total)
        ),
        Ok(SearchWindow::Refused { status, total }) => format!(
            "window of 10,000 rows (a page at row 10,000 answered {status}: {} default index.max_result_window); larger searches are split by object id (X_CHEF_id_CHEF_X) so no request leaves it; {}",
            if status == 400 { "OpenSearch's" } else { "Elasticsearch's" },
            indexed(total)
        ),
        Err(e) => return Check::fail("chef search window", e.to_string(), chef_fix(&e)),
    };
    Check::pass("chef search window", what)
}

/// What kind of Chef server answers, and so what a backup holds.
async fn server_kind_check(chef: &ChefClient) -> Check {
    let info = match chef.server_info().await {
        Ok(info) => info,
        Err(e) => return Check::fail("chef server kind", e.to_string(), chef_fix(&e)),
    };
    let what = match info.kind {
        ServerKind::ChefInfra if info.has_keys_endpoint() => format!(
            "Chef Infra Server, API v{}: client keys (/clients/NAME/keys) and node and client ACLs are backed up where permitted (the grant checks below); search pages by total",
            info.api_version
        ),
        ServerKind::ChefInfra => format!(
            "Chef Infra Server, API v{}: public keys in client bodies, ACLs backed up; search pages by total",
            info.api_version
        ),
        ServerKind::Goiardi => "goiardi (API v0): public keys in client bodies; no keys or ACL endpoints (none are called); search pages end on a short page".into(),
        ServerKind::Unknown => {
            return Check::fail(
                "chef server kind",
                "the server named itself in no header (X-Ops-Server-API-Version, X-Goiardi): keys and ACLs will not be backed up",
                "let the X-Ops-Server-API-Version response header through the proxy in front of the Chef server",
            )
        }
    };
    Check::pass("chef server kind", what)
}

/// Delete permission without deleting: DELETE a node and a client that
/// cannot exist. A 403 proves the permission is missing. goiardi checks
/// permission first, so its 404 proves it is granted; Chef Infra Server
/// answers 404 for a missing object before looking at ACLs (`auth_info` in
/// oc_chef_wm/src/chef_wm_named_node.erl halts with 404 when the node is
/// not found, before the authz check), so there a 404 proves nothing: the
/// check is reported `UNKNOWN`.
async fn delete_permission_checks(chef: &ChefClient, checks: &mut Vec<Check>) {
    let probe = format!("nodereaper-doctor-probe-{:08x}", rand::random::<u32>());
    for (kind, result) in [
        ("nodes", chef.delete_node(&probe).await),
        ("clients", chef.delete_client(&probe).await),
    ] {
        let name = format!("chef delete permission on {kind}");
        checks.push(match result {
            Ok(_) if chef.is_goiardi() => Check::pass(
                name,
                "granted (goiardi checks permission before existence)",
            ),
            Ok(_) => Check::unknown(
                name,
                "not proven: Chef Infra Server answers 404 for a missing object before checking ACLs",
                format!("confirm the client's delete permission with `knife acl show containers {kind}`"),
            ),
            Err(e) => {
                let fix = chef_fix(&e);
                Check::fail(name, e.to_string(), fix)
            }
        });
    }
}

/// Text report: `PASS name: detail` or `FAIL name: detail` plus `fix: ...`.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let (status, then) = match (c.ok, c.unknown) {
            (true, true) => ("UNKNOWN", "check"),
            (true, false) => ("PASS", "fix"),
            (false, _) => ("FAIL", "fix"),
        };
        out.push_str(&format!("{status} {}: {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("     {then}: {fix}\n"));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    let unknown = checks.iter().filter(|c| c.unknown).count();
    out.push_str(&format!(
        "{} checks, {failed} failed, {unknown} unknown\n",
        checks.len()
    ));
    out
}

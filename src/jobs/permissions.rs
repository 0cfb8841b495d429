//! `doctor`'s Chef permission probes: each permission of the table in
//! [`crate::core::chef_permissions`] that can be tested without changing
//! anything, with the feature lost and the `knife acl` command that fixes
//! it. Chef Infra Server only (goiardi has no ACLs).

use reqwest::Method;
use serde_json::json;

use super::doctor::Check;
use crate::act::backup::{probe_acl_backup, AclProbe};
use crate::adapters::chef::{AclObject, ChefClient, ChefError};
use crate::core::chef_permissions::{requirement, Feature, Kind};
use crate::ports::ChefApi;

/// The probes, one check each; `client_of` names a node's client
/// (`chef.client_name_template`).
pub async fn chef_permission_checks(
    chef: &ChefClient,
    client_of: &dyn Fn(&str) -> String,
) -> Vec<Check> {
    let me = chef.client_name().to_string();
    let mut checks = Vec::new();
    match probe_acl_backup(chef, &me, client_of).await {
        Ok(probes) if probes.is_empty() => return checks,
        Ok(probes) => {
            for (object, probe) in probes {
                checks.push(grant_check(&me, object, probe));
            }
        }
        Err(e) => checks.push(Check::fail(
            "chef grant (ACL backup)",
            e.to_string(),
            "see the error above",
        )),
    }
    checks.push(create_clients_check(chef, &me).await);
    checks.push(Check::pass(
        "chef create on nodes, update on nodes",
        format!(
            "not probed (a probe would change a node): restore needs create on the nodes container \
             (the clients group, which every client is in, has it by default) and `restore --force` \
             update on the node ({})",
            requirement(Feature::RestoreForce)
                .knife_commands(&me)
                .join("; ")
        ),
    ));
    checks
}

fn grant_check(me: &str, object: AclObject, probe: AclProbe) -> Check {
    let kind = match object {
        AclObject::Node => Kind::Nodes,
        AclObject::Client => Kind::Clients,
    };
    let name = format!("chef grant on {} (ACL backup)", kind.as_str());
    match probe {
        AclProbe::Allowed(path) => Check::pass(
            name,
            format!(
                "GET {path}/_acl allowed: the {} ACLs are backed up",
                kind.as_str()
            ),
        ),
        AclProbe::NotMeasured(why) => Check::pass(
            name,
            format!(
                "not measured ({why}); confirm with `knife acl show containers {}`",
                kind.as_str()
            ),
        ),
        AclProbe::Forbidden(e) => Check::fail(
            name,
            format!(
                "{}: grant on {} is missing, so {}",
                forbidden_line(&e),
                kind.as_str(),
                Feature::AclBackup.lost()
            ),
            requirement(Feature::AclBackup)
                .knife_commands_for(me, &[kind])
                .join("; "),
        ),
    }
}

/// "GET /nodes/web-1/_acl answered 403".
fn forbidden_line(e: &ChefError) -> String {
    match e {
        ChefError::Forbidden { method, object, .. } => format!("{method} {object} answered 403"),
        other => other.to_string(),
    }
}

/// CREATE on the clients container, without creating anything: POST
/// /clients naming nodereaper's own, existing client. erchef checks CREATE
/// on the container before the name (`chef_wm_clients.erl` `auth_info`,
/// `oc_chef_wm_base.erl` `create_in_container`), so 403 means missing and
/// 409 Conflict means granted; the conflict leaves nothing behind
/// (`object_creation_error_hook`). Only sent when the client exists.
async fn create_clients_check(chef: &ChefClient, me: &str) -> Check {
    let name = "chef create on clients (restore)";
    match chef.get_client(me).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Check::pass(
                name,
                format!("not measured ({me:?} is not a client of this organization); confirm with `knife acl show containers clients`"),
            )
        }
        Err(e) => return Check::fail(name, e.to_string(), "see the error above"),
    }
    let body = json!({"name": me, "clientname": me, "validator": false});
    let fix = requirement(Feature::Restore)
        .knife_commands_for(me, &[Kind::Clients])
        .join("; ");
    match chef
        .send(Method::POST, &["clients"], &[], Some(&body))
        .await
        .map(|r| r.status.as_u16())
    {
        Ok(409) => Check::pass(
            name,
            "granted (POST /clients naming nodereaper's own client answered 409 Conflict; nothing was created)",
        ),
        Ok(403) => Check::fail(
            name,
            format!(
                "POST /clients answered 403: create on the clients container is missing (by default only admins have it), so {}; or run restore with an admin identity",
                Feature::Restore.lost()
            ),
            fix,
        ),
        Ok(status) => Check::fail(
            name,
            format!("POST /clients naming an existing client answered {status}, expected 409 or 403"),
            "check chef.server_url",
        ),
        Err(e) => Check::fail(name, e.to_string(), fix),
    }
}

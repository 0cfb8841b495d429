//! Groups: GET /groups `{NAME: URI}`, GET /groups/NAME
//! `{actors: clients ++ users, users, clients, groups, orgname, name,
//! groupname}` (oc_chef_authz/src/oc_chef_group.erl `assemble_group_ejson`),
//! PUT /groups/NAME reading the members under `actors`
//! (`update_from_ejson`: `{"actors": {"clients", "users", "groups"}}`, a
//! list left out keeps its members) and answering the group
//! (oc_chef_wm/src/oc_chef_wm_named_group.erl). A PUT naming a client that
//! does not exist drops it (oc_chef_authz_scoped_name `find_client_authz_ids`
//! finds no authz id for it). Deleting a client removes it from every group
//! (oc_bifrost/schema/deploy/base.sql `group_actor_relations ... ON DELETE
//! CASCADE`); creating one adds it to `clients` (oc_chef_wm_base.erl
//! `client_cleanup` / org policy).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{answer, no_route, Req, Server};

/// The members of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub clients: Vec<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

/// The groups of a fresh organization (oc_chef_authz_org_creator.erl
/// `?GROUPS`), with pivotal in `admins` and `users`.
pub fn default_groups(s: &mut Server) {
    for g in [
        "admins",
        "billing-admins",
        "clients",
        "users",
        "public_key_read_access",
    ] {
        s.groups.entry(g.into()).or_default();
    }
    for g in ["admins", "users"] {
        if let Some(m) = s.groups.get_mut(g) {
            m.users.push("pivotal".into());
        }
    }
}

fn group_json(org: &str, name: &str, m: &Members) -> Value {
    let actors: Vec<&String> = m.clients.iter().chain(m.users.iter()).collect();
    json!({"actors": actors, "users": m.users, "clients": m.clients, "groups": m.groups,
        "orgname": org, "name": name, "groupname": name})
}

fn group_not_found(name: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({"error": [format!("Cannot load group {name}")]}),
    )
}

/// `/groups` and `/groups/NAME`.
pub fn groups(s: &mut Server, req: &Req, rest: &[&str]) -> Response {
    match (req.method.as_str(), rest) {
        ("GET", []) => answer(
            StatusCode::OK,
            Value::Object(
                s.groups
                    .keys()
                    .map(|g| {
                        (
                            g.clone(),
                            json!(format!("/organizations/{}/groups/{g}", s.org)),
                        )
                    })
                    .collect(),
            ),
        ),
        ("GET", [name]) => match s.groups.get(*name) {
            Some(m) => answer(StatusCode::OK, group_json(&s.org, name, m)),
            None => group_not_found(name),
        },
        ("PUT", [name]) => put_group(s, req, name),
        _ => no_route(req),
    }
}

fn put_group(s: &mut Server, req: &Req, name: &str) -> Response {
    let org = s.org.clone();
    let clients_known: Vec<String> = s.clients.keys().cloned().collect();
    let Some(m) = s.groups.get_mut(name) else {
        return group_not_found(name);
    };
    let list = |k: &str| -> Option<Vec<String>> {
        req.body
            .pointer(&format!("/actors/{k}"))?
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
    };
    if let Some(clients) = list("clients") {
        m.clients = clients
            .into_iter()
            .filter(|c| clients_known.contains(c))
            .collect();
    }
    if let Some(users) = list("users") {
        m.users = users;
    }
    if let Some(groups) = list("groups") {
        m.groups = groups;
    }
    let body = group_json(&org, name, m);
    answer(StatusCode::OK, body)
}

/// The actor is gone: it disappears from every group.
pub fn forget_client(s: &mut Server, client: &str) {
    for m in s.groups.values_mut() {
        m.clients.retain(|c| c != client);
    }
}

/// A new client joins `clients` (when the org has that group).
pub fn client_created(s: &mut Server, client: &str) {
    if let Some(m) = s.groups.get_mut("clients") {
        m.clients.push(client.to_string());
    }
}

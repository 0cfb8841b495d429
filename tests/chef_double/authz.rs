//! Authorization, checked by the router before any handler runs, the way
//! erchef does (chef/chef-server, paths under src/oc_erchef/apps/):
//!
//! - a named node or client: the HTTP method's permission on the object
//!   (GET read, PUT update, DELETE delete), after the object was found, so a
//!   missing object is a 404 whatever the ACL
//!   (oc_chef_wm/src/oc_chef_wm_base.erl `forbidden`,
//!   `http_method_to_authz_perm`; chef_wm_named_node.erl,
//!   chef_wm_named_client.erl `auth_info`);
//! - POST /nodes, POST /clients: CREATE on the container; GET of the
//!   collection: READ on it (chef_wm_nodes.erl, chef_wm_clients.erl
//!   `auth_info`, oc_chef_wm_base.erl `create_in_container`);
//! - GET or PUT of `_acl`: GRANT on the object (oc_chef_wm_acl.erl
//!   `check_acl_auth` -> oc_chef_authz_acl.erl `has_grant_on`);
//! - POST (and PUT, DELETE) of a client's keys: UPDATE on the client; GET of
//!   keys: membership in `public_key_read_access` (oc_chef_wm_keys.erl
//!   `auth_info`);
//! - search is authorized for every org member (chef_wm_search.erl
//!   `auth_info`); the double does not filter its rows by read ACL.
//!   Groups are not checked here.
//!
//! An actor holds a permission when the ACE lists it under `clients`,
//! `users` or `actors`, or lists a group it belongs to (directly or through
//! nested groups). A 403 says `missing PERM permission` with PERM derived
//! from the HTTP method, not from what was checked
//! (oc_chef_wm_base.erl `set_forbidden_msg/2`): a GET `_acl` denied for
//! want of GRANT says "missing read permission".
//!
//! The org starts as oc_chef_authz/src/oc_chef_authz_org_creator.erl makes
//! it (container ACLs and the `admins`, `users`, `clients` and
//! `public_key_read_access` groups), with `nodereaper` in `admins` so
//! that it may do everything unless a test narrows its rights
//! ([`demote`], [`grant`]).

use std::collections::BTreeSet;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::groups::Members;
use super::{answer, Req, Server};

/// The identity the double's client signs as.
pub const NODEREAPER: &str = "nodereaper";

/// The five Chef permissions.
pub const ALL: &[&str] = &["create", "read", "update", "delete", "grant"];

fn ace(users: &[&str], clients: &[&str], groups: &[&str]) -> Value {
    json!({"actors": [], "users": users, "clients": clients, "groups": groups})
}

/// A container ACL from (permission -> groups holding it); the creator
/// (`pivotal`) holds all five.
fn container_acl(rows: &[(&str, &[&str])]) -> Value {
    let mut acl = json!({});
    for perm in ALL {
        let groups: Vec<&str> = rows
            .iter()
            .filter(|(p, _)| p == perm)
            .flat_map(|(_, g)| g.iter().copied())
            .collect();
        acl[*perm] = ace(&["pivotal"], &[], &groups);
    }
    acl
}

/// The org as `oc_chef_authz_org_creator.erl` creates it (`nodes`:
/// admins all, users CRUD, clients read+create; `clients`: admins all,
/// users read+delete), plus `nodereaper` in `admins` and `clients`.
pub fn seed(s: &mut Server) {
    let admins: &[&str] = &["admins"];
    s.containers.insert(
        "nodes".into(),
        container_acl(&[
            ("create", &["admins", "users", "clients"]),
            ("read", &["admins", "users", "clients"]),
            ("update", &["admins", "users"]),
            ("delete", &["admins", "users"]),
            ("grant", admins),
        ]),
    );
    s.containers.insert(
        "clients".into(),
        container_acl(&[
            ("create", admins),
            ("read", &["admins", "users"]),
            ("update", admins),
            ("delete", &["admins", "users"]),
            ("grant", admins),
        ]),
    );
    set_group(s, "admins", &["pivotal"], &[NODEREAPER], &[]);
    set_group(s, "users", &["pivotal"], &[], &[]);
    set_group(s, "clients", &[], &[NODEREAPER], &[]);
    set_group(s, "public_key_read_access", &[], &[], &["users", "clients"]);
}

// set_group, all_groups and demote are the only functions that know how
// `Server::groups` stores a group.

fn set_group(s: &mut Server, name: &str, users: &[&str], clients: &[&str], groups: &[&str]) {
    let owned = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
    s.groups.insert(
        name.into(),
        Members {
            clients: owned(clients),
            users: owned(users),
            groups: owned(groups),
        },
    );
}

/// Every group: (name, its actors (clients and users), its nested groups).
fn all_groups(s: &Server) -> Vec<(String, Vec<String>, Vec<String>)> {
    s.groups
        .iter()
        .map(|(name, m)| {
            let actors = m.clients.iter().chain(&m.users).cloned().collect();
            (name.clone(), actors, m.groups.clone())
        })
        .collect()
}

/// Takes `client` out of `admins` (`knife group remove client C admins`).
pub fn demote(s: &mut Server, client: &str) {
    if let Some(m) = s.groups.get_mut("admins") {
        m.clients.retain(|c| c != client);
    }
}

/// `knife acl add client C containers KIND PERMS` and `knife acl bulk add
/// client C KIND '.*' PERMS`: the container and every existing object.
pub fn grant(s: &mut Server, client: &str, kind: &str, perms: &[&str]) {
    let add = |acl: &mut Value| {
        for perm in perms {
            if let Some(list) = acl[*perm]["clients"].as_array_mut() {
                if !list.iter().any(|c| c.as_str() == Some(client)) {
                    list.push(json!(client));
                }
            }
        }
    };
    if let Some(acl) = s.containers.get_mut(kind) {
        add(acl);
    }
    for ((k, _), acl) in s.acls.iter_mut() {
        if k == kind {
            add(acl);
        }
    }
}

/// The groups `actor` belongs to, directly or through nested groups.
fn groups_of(s: &Server, actor: &str) -> BTreeSet<String> {
    let groups = all_groups(s);
    let mut member: BTreeSet<String> = groups
        .iter()
        .filter(|(_, actors, _)| actors.iter().any(|a| a == actor))
        .map(|(name, _, _)| name.clone())
        .collect();
    loop {
        let more: Vec<String> = groups
            .iter()
            .filter(|(name, _, nested)| {
                !member.contains(name) && nested.iter().any(|n| member.contains(n))
            })
            .map(|(name, _, _)| name.clone())
            .collect();
        if more.is_empty() {
            return member;
        }
        member.extend(more);
    }
}

/// Whether the ACL's `perm` ACE names `actor` or one of its groups.
fn allows(s: &Server, acl: &Value, perm: &str, actor: &str) -> bool {
    let ace = &acl[perm];
    let names = |key: &str| {
        ace[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    if ["clients", "users", "actors"]
        .iter()
        .any(|k| names(k).iter().any(|a| a == actor))
    {
        return true;
    }
    let groups = groups_of(s, actor);
    names("groups").iter().any(|g| groups.contains(g))
}

/// What a request needs: (ACL to check, permission); `None`: nothing to
/// check here (a missing object is the handler's 404, search is open).
enum Check<'a> {
    Acl(&'a Value, &'static str),
    Member(&'static str),
}

fn object_acl<'a>(s: &'a Server, kind: &str, name: &str) -> Option<&'a Value> {
    let exists = match kind {
        "nodes" => s.nodes.contains_key(name),
        "clients" => s.clients.contains_key(name),
        _ => false,
    };
    if !exists {
        return None;
    }
    // An object the test made without an ACL has its container's.
    s.acls
        .get(&(kind.to_string(), name.to_string()))
        .or_else(|| s.containers.get(kind))
}

fn required<'a>(s: &'a Server, method: &str, parts: &[&str]) -> Option<Check<'a>> {
    let method_perm = match method {
        "GET" | "HEAD" => "read",
        "PUT" => "update",
        "DELETE" => "delete",
        _ => "create",
    };
    match parts {
        [kind @ ("nodes" | "clients"), name, "_acl", ..] => {
            object_acl(s, kind, name).map(|acl| Check::Acl(acl, "grant"))
        }
        ["clients", name, "keys", ..] if method == "GET" => s
            .clients
            .contains_key(*name)
            .then_some(Check::Member("public_key_read_access")),
        ["clients", name, "keys", ..] => {
            object_acl(s, "clients", name).map(|acl| Check::Acl(acl, "update"))
        }
        [kind @ ("nodes" | "clients")] => s
            .containers
            .get(*kind)
            .map(|acl| Check::Acl(acl, method_perm)),
        [kind @ ("nodes" | "clients"), name] => {
            object_acl(s, kind, name).map(|acl| Check::Acl(acl, method_perm))
        }
        _ => None,
    }
}

/// `Some(403)` when the requestor lacks what the request needs.
pub fn check(s: &Server, req: &Req, parts: &[&str]) -> Option<Response> {
    let allowed = match required(s, &req.method, parts)? {
        Check::Acl(acl, perm) => allows(s, acl, perm, &req.requestor),
        Check::Member(group) => groups_of(s, &req.requestor).contains(group),
    };
    if allowed {
        return None;
    }
    let said = match req.method.as_str() {
        "GET" | "HEAD" => "read",
        "PUT" => "update",
        "DELETE" => "delete",
        _ => "create",
    };
    Some(answer(
        StatusCode::FORBIDDEN,
        json!({"error": [format!("missing {said} permission")]}),
    ))
}

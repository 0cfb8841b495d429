//! Granular ACLs: GET `/_acl?detail=granular`, PUT `/_acl/PERM` replacing
//! one permission: oc_chef_wm/src/oc_chef_wm_acl.erl,
//! oc_chef_wm/src/oc_chef_wm_acl_permission.erl, oc_chef_authz/src/oc_chef_authz_acl.erl.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{answer, no_route, not_found, Req, Server};

/// `/KIND/NAME/_acl` and `/KIND/NAME/_acl/PERM`.
pub fn acl(s: &mut Server, req: &Req, kind: &str, name: &str, rest: &[&str]) -> Response {
    let key = (kind.to_string(), name.to_string());
    match (req.method.as_str(), rest) {
        ("GET", []) => match s.acls.get(&key) {
            Some(acl) if req.query.get("detail").map(String::as_str) == Some("granular") => {
                answer(StatusCode::OK, acl.clone())
            }
            Some(_) => answer(
                StatusCode::BAD_REQUEST,
                json!({"error": ["the double serves granular ACLs only"]}),
            ),
            None => not_found(),
        },
        ("PUT", [perm]) => put_permission(s, req, key, perm),
        _ => no_route(req),
    }
}

/// oc_chef_wm_acl_permission.erl `check_json_validity`: the body holds only
/// PERM (`strictly_valid`), `actors` and `groups` are required lists and
/// `users`/`clients` optional (oc_chef_authz_acl.erl `acl_spec`); `users` and
/// `clients` come together and then `actors` must be `[]`
/// (`validate_actors_clients_users`); every client named exists
/// (`construct_return({invalid, client, ..})`). nodereaper's own client is
/// not in the double's client table but exists on a real server.
fn put_permission(s: &mut Server, req: &Req, key: (String, String), perm: &str) -> Response {
    let bad = |m: String| answer(StatusCode::BAD_REQUEST, json!({"error": [m]}));
    let only_perm = req
        .body
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key(perm));
    if !only_perm {
        return bad(format!(
            "Invalid key(s) in request body: expected only {perm:?}"
        ));
    }
    let ace = req.body[perm].clone();
    let list = |k: &str| -> Option<Option<Vec<String>>> {
        match ace.get(k) {
            None => Some(None),
            Some(v) => v
                .as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some),
        }
    };
    let (Some(actors), Some(groups), Some(clients), Some(users)) = (
        list("actors"),
        list("groups"),
        list("clients"),
        list("users"),
    ) else {
        return bad(
            "Field 'actors', 'groups', 'clients' or 'users' is not a list of strings".into(),
        );
    };
    let (Some(actors), Some(_groups)) = (actors, groups) else {
        return bad(format!("Field '{perm}' must hold 'actors' and 'groups'"));
    };
    let clients = match (clients, users) {
        (None, None) => Vec::new(),
        (Some(_), None) => return bad("'clients' requires 'users'".into()),
        (None, Some(_)) => return bad("'users' requires 'clients'".into()),
        (Some(c), Some(_)) if actors.is_empty() => c,
        (Some(_), Some(_)) => {
            return bad("'actors' must be empty when 'clients' and 'users' are given".into())
        }
    };
    let missing: Vec<String> = clients
        .into_iter()
        .filter(|c| !s.clients.contains_key(c) && c != "nodereaper")
        .collect();
    if !missing.is_empty() {
        return bad(format!(
            "The client(s) {} do not exist in this organization.",
            missing.join(", ")
        ));
    }
    match s.acls.get_mut(&key) {
        Some(acl) => {
            acl[perm] = ace;
            answer(StatusCode::OK, json!({}))
        }
        None => not_found(),
    }
}

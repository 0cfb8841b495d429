//! Granular ACLs: GET `/_acl?detail=granular`, PUT `/_acl/PERM` replacing
//! one permission: oc_chef_wm/src/oc_chef_wm_acl.erl,
//! oc_chef_wm/src/oc_chef_wm_acl_permission.erl.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

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

fn put_permission(s: &mut Server, req: &Req, key: (String, String), perm: &str) -> Response {
    let Some(ace) = req.body.get(perm).cloned() else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": ["missing permission"]}),
        );
    };
    // Actors must exist (oc_chef_wm_acl_permission.erl bad_actor).
    let missing: Vec<String> = ace["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|c| !s.clients.contains_key(*c) && *c != "nodereaper")
        .map(str::to_string)
        .collect();
    if !missing.is_empty() {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": [format!("The actor(s) {} do not exist in this organization as clients or users.", missing.join(", "))]}),
        );
    }
    match s.acls.get_mut(&key) {
        Some(acl) => {
            acl[perm] = ace;
            answer(StatusCode::OK, json!({}))
        }
        None => not_found(),
    }
}

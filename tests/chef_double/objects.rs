//! Nodes and API v1 clients.
//!
//! - API v1 client bodies without `public_key` and `admin`, POST /clients
//!   with `public_key` (key `default`) or `create_key` (private key returned
//!   once under `chef_key`): chef_objects/src/chef_client.erl,
//!   oc_chef_wm/src/chef_wm_clients.erl, oc_chef_wm/src/oc_chef_wm_key_base.erl;
//! - a new object's ACL is the container's plus its creator
//!   (oc_chef_authz/src/oc_chef_authz.erl `create_entity_with_container_acl`);
//!   deleting a client removes it from every ACL (the authz actor is deleted);
//! - DELETE of a node or client answers the deleted object.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{acl_for, answer, no_route, not_found, public_key, Req, Server, FAKE_PRIVATE_KEY};

/// `/nodes` and `/nodes/NAME`.
pub fn nodes(s: &mut Server, req: &Req, rest: &[&str]) -> Response {
    match (req.method.as_str(), rest) {
        ("GET", [name]) => match s.nodes.get(*name) {
            Some(n) => answer(StatusCode::OK, n.clone()),
            None => not_found(),
        },
        ("POST", []) => {
            let name = req.body["name"].as_str().unwrap_or_default().to_string();
            if s.nodes.contains_key(&name) {
                return answer(
                    StatusCode::CONFLICT,
                    json!({"error": ["Node already exists"]}),
                );
            }
            s.nodes.insert(name.clone(), req.body.clone());
            s.acls
                .insert(("nodes".into(), name.clone()), acl_for(&req.requestor));
            answer(
                StatusCode::CREATED,
                json!({"uri": format!("/nodes/{name}")}),
            )
        }
        ("PUT", [name]) => match s.nodes.get_mut(*name) {
            Some(n) => {
                *n = req.body.clone();
                answer(StatusCode::OK, req.body.clone())
            }
            None => not_found(),
        },
        ("DELETE", [name]) => match s.nodes.remove(*name) {
            Some(n) => {
                s.acls.remove(&("nodes".to_string(), name.to_string()));
                answer(StatusCode::OK, n)
            }
            None => not_found(),
        },
        _ => no_route(req),
    }
}

/// `/clients` and `/clients/NAME`.
pub fn clients(s: &mut Server, req: &Req, rest: &[&str]) -> Response {
    match (req.method.as_str(), rest) {
        ("GET", [name]) => match s.clients.get(*name) {
            Some((c, _)) => answer(StatusCode::OK, c.clone()),
            None => not_found(),
        },
        ("POST", []) => create_client(s, req),
        ("DELETE", [name]) => delete_client(s, name),
        _ => no_route(req),
    }
}

/// oc_chef_wm/src/chef_wm_clients.erl + chef_objects/src/chef_key_base.erl
/// `validate_public_key_fields(opt, ..)`: `private_key` -> 400, both
/// `public_key` and `create_key: true` -> 400, neither -> a client with no
/// key; `public_key` must be a `BEGIN PUBLIC KEY`/`BEGIN RSA PUBLIC KEY` PEM
/// (`public_key_spec`); a duplicate name -> 409 "Client already exists".
/// `admin` is not in v1 `client_spec` and is ignored (chef_client.erl).
fn create_client(s: &mut Server, req: &Req) -> Response {
    let body = &req.body;
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let bad = |m: &str| answer(StatusCode::BAD_REQUEST, json!({"error": [m]}));
    if body.get("private_key").is_some() {
        return bad("Please use create_key: true instead of private_key: true");
    }
    let public = body["public_key"].as_str();
    let create = body["create_key"] == json!(true);
    if public.is_some() && create {
        return bad("You must specify either create_key or public_key, but not both");
    }
    if public.is_some_and(|pk| !is_public_key_pem(pk)) {
        return bad("Invalid public key");
    }
    if s.clients.contains_key(&name) {
        return answer(
            StatusCode::CONFLICT,
            json!({"error": ["Client already exists"]}),
        );
    }
    let mut keys = BTreeMap::new();
    let uri = format!("/organizations/{}/clients/{name}", s.org);
    let mut out = json!({"uri": uri});
    let key_uri = format!("{uri}/keys/default");
    if let Some(pk) = public {
        keys.insert(
            "default".to_string(),
            (pk.to_string(), "infinity".to_string()),
        );
        out["chef_key"] = json!({"name": "default", "public_key": pk, "expiration_date": "infinity", "uri": key_uri});
    } else if create {
        keys.insert(
            "default".to_string(),
            (public_key("generated"), "infinity".to_string()),
        );
        out["chef_key"] = json!({"name": "default", "public_key": public_key("generated"),
            "expiration_date": "infinity", "private_key": FAKE_PRIVATE_KEY, "uri": key_uri});
    }
    let v1 = json!({"name": name, "clientname": name, "orgname": s.org, "validator": body["validator"] == json!(true),
        "json_class": "Chef::ApiClient", "chef_type": "client"});
    s.clients.insert(name.clone(), (v1, keys));
    s.acls
        .insert(("clients".into(), name.clone()), acl_for(&req.requestor));
    super::groups::client_created(s, &name);
    answer(StatusCode::CREATED, out)
}

/// chef_key_base.erl `public_key_spec`: only these PEM kinds are accepted.
pub fn is_public_key_pem(pk: &str) -> bool {
    pk.starts_with("-----BEGIN PUBLIC KEY") || pk.starts_with("-----BEGIN RSA PUBLIC KEY")
}

fn delete_client(s: &mut Server, name: &str) -> Response {
    let Some((c, _)) = s.clients.remove(name) else {
        return not_found();
    };
    s.acls.remove(&("clients".to_string(), name.to_string()));
    super::groups::forget_client(s, name);
    // The actor is gone: it disappears from every ACL.
    for acl in s.acls.values_mut() {
        for ace in acl.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            if let Some(list) = ace.get_mut("clients").and_then(Value::as_array_mut) {
                list.retain(|c| c.as_str() != Some(name));
            }
        }
    }
    answer(StatusCode::OK, c)
}

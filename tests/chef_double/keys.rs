//! Client keys: GET /clients/N/keys `[{name, uri, expired}]`, GET
//! /clients/N/keys/K `{name, public_key, expiration_date}`, POST
//! /clients/N/keys: oc_chef_wm/src/oc_chef_wm_keys.erl,
//! oc_chef_wm/src/oc_chef_wm_named_key.erl, chef_objects/src/chef_key.erl.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{answer, no_route, not_found, Req, Server};

/// `/clients/NAME/keys` and `/clients/NAME/keys/KEY`.
pub fn keys(s: &mut Server, req: &Req, client: &str, rest: &[&str]) -> Response {
    match (req.method.as_str(), rest) {
        ("GET", []) => match s.clients.get(client) {
            Some((_, keys)) => answer(
                StatusCode::OK,
                Value::Array(
                    keys.keys()
                        .map(|k| json!({"name": k, "uri": format!("/clients/{client}/keys/{k}"), "expired": false}))
                        .collect(),
                ),
            ),
            None => not_found(),
        },
        ("GET", [key]) => match s.clients.get(client).and_then(|(_, keys)| keys.get(*key)) {
            Some((pk, exp)) => answer(
                StatusCode::OK,
                json!({"name": key, "public_key": pk, "expiration_date": exp}),
            ),
            None => not_found(),
        },
        ("POST", []) => match s.clients.get_mut(client) {
            Some((_, keys)) => {
                let k = req.body["name"].as_str().unwrap_or_default().to_string();
                let public_key = req.body["public_key"].as_str().unwrap_or_default();
                let expiration = req.body["expiration_date"].as_str().unwrap_or("infinity");
                keys.insert(k.clone(), (public_key.to_string(), expiration.to_string()));
                answer(
                    StatusCode::CREATED,
                    json!({"uri": format!("/clients/{client}/keys/{k}")}),
                )
            }
            None => not_found(),
        },
        _ => no_route(req),
    }
}

//! Client keys: GET /clients/N/keys `[{name, uri, expired}]`, GET
//! /clients/N/keys/K `{name, public_key, expiration_date}`, POST
//! /clients/N/keys: oc_chef_wm/src/oc_chef_wm_keys.erl,
//! oc_chef_wm/src/oc_chef_wm_named_key.erl, chef_objects/src/chef_key.erl.
//! `expired` is `expires_at <= now` (chef_db/priv/pgsql_statements.config
//! `list_keys_for_actor`).

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
                    keys.iter()
                        .map(|(k, (_, exp))| json!({"name": k, "uri": format!("/clients/{client}/keys/{k}"), "expired": is_expired(exp)}))
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
        ("POST", []) => post_key(s, req, client),
        _ => no_route(req),
    }
}

/// `expires_at <= now`; `infinity` never expires.
fn is_expired(date: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(date).is_ok_and(|d| d <= chrono::Utc::now())
}

/// POST /clients/N/keys, validated as chef_key.erl `parse_binary_json(_,
/// create)` does: `name` and `expiration_date` required (`infinity` or
/// `YYYY-MM-DDTHH:MM:SSZ`, chef_regex.erl), exactly one of `public_key` and
/// `create_key` (chef_key_base.erl `validate_public_key_fields(req, ..)`),
/// a name the client already has -> 409 (oc_chef_wm_keys.erl
/// `conflict_message`).
fn post_key(s: &mut Server, req: &Req, client: &str) -> Response {
    let bad = |m: &str| answer(StatusCode::BAD_REQUEST, json!({"error": [m]}));
    let Some((_, keys)) = s.clients.get_mut(client) else {
        return not_found();
    };
    let Some(k) = req.body["name"].as_str().map(str::to_string) else {
        return bad("Field 'name' missing");
    };
    let Some(expiration) = req.body["expiration_date"].as_str() else {
        return bad("Field 'expiration_date' missing");
    };
    let date_ok = expiration == "infinity"
        || (expiration.len() == 20
            && chrono::NaiveDateTime::parse_from_str(expiration, "%Y-%m-%dT%H:%M:%SZ").is_ok());
    if !date_ok {
        return bad("Field 'expiration_date' invalid");
    }
    let public = req.body["public_key"].as_str();
    let create = req.body["create_key"] == json!(true);
    match (public, create) {
        (None, false) => return bad(
            "You must either provide a valid value for 'public_key', or specify 'create_key': true",
        ),
        (Some(_), true) => {
            return bad("You must specify either create_key or public_key, but not both")
        }
        (Some(pk), false) if !super::objects::is_public_key_pem(pk) => {
            return bad("Invalid public key")
        }
        _ => {}
    }
    if keys.contains_key(&k) {
        return answer(
            StatusCode::CONFLICT,
            json!({"error": format!("a key with the name '{k}' already exists for this actor.")}),
        );
    }
    let public_key = public
        .map(str::to_string)
        .unwrap_or_else(|| super::public_key("generated"));
    keys.insert(k.clone(), (public_key, expiration.to_string()));
    answer(
        StatusCode::CREATED,
        json!({"uri": format!("/organizations/{}/clients/{client}/keys/{k}", s.org)}),
    )
}

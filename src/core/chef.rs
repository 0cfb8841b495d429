//! The one place that knows which Chef server answers, which API version is
//! in use and what the answers then contain.
//!
//! Sources (chef/chef-server, oc_erchef):
//! - `oc_chef_wm_base.erl` (`add_api_info_header`): every answer carries
//!   `X-Ops-Server-API-Version: {"min_version":..,"max_version":..,
//!   "request_version":..,"response_version":..}`; `X-Ops-API-Info` only when
//!   `include_x_ops_api_info` is on (off by default);
//! - `chef_objects/src/chef_client.erl`: with API v1 or later a client body
//!   has no `public_key` and no `admin`; POST /clients takes `public_key`
//!   (creates the `default` key) or `create_key: true`;
//! - `oc_chef_wm_keys.erl`, `chef_objects/src/chef_key.erl`: GET
//!   /clients/NAME/keys lists `[{name, uri, expired}]`, GET
//!   /clients/NAME/keys/KEY is `{name, public_key, expiration_date}`;
//! - `oc_chef_wm_acl.erl`, `oc_chef_wm_acl_permission.erl`: GET
//!   `/nodes/NAME/_acl?detail=granular`, PUT `/nodes/NAME/_acl/PERM` with
//!   `{"PERM": {"actors": [], "users": [..], "clients": [..], "groups": [..]}}`.
//!
//! goiardi 0.11 announces itself with `X-Goiardi: yes`, speaks API v0 only
//! (the client body holds `public_key`), has no `/keys` and no `/_acl`
//! routes, and its client handler reads only the client name from the path:
//! GET /clients/N/keys answers the client itself and DELETE /clients/N/keys/K
//! deletes the client. So key and ACL calls go only to a server that
//! announced itself as Chef Infra Server with API v1 or later, and their
//! answers are checked for the documented shape before being trusted.

use std::fmt;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `X-Ops-Server-API-Version` nodereaper asks for.
pub const REQUESTED_API_VERSION: u8 = 1;

/// The search window of Chef Infra Server 14+ (Elasticsearch, OpenSearch):
/// the engine's `index.max_result_window`, which chef-server never raises.
/// A request with `start + rows` above it is refused (OpenSearch: 400
/// `invalid index name or query`, chef_index/src/chef_opensearch.erl `search`;
/// Elasticsearch 6: 500, chef/chef-server#2163), and OpenSearch's `total`
/// stops at this value (`track_total_hits` off by default,
/// chef_index/src/chef_index_query.erl). nodereaper never asks past it.
pub const SEARCH_WINDOW: u64 = 10_000;

/// Which server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// Chef Infra Server (oc_erchef): sends `X-Ops-Server-API-Version`.
    ChefInfra,
    /// goiardi: sends `X-Goiardi`.
    Goiardi,
    /// Neither header seen (a proxy stripped them, or another server).
    Unknown,
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerKind::ChefInfra => "Chef Infra Server",
            ServerKind::Goiardi => "goiardi",
            ServerKind::Unknown => "unknown",
        })
    }
}

/// What the server is and what its answers contain, learned once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Which server software answered (from its response headers).
    pub kind: ServerKind,
    /// API version the server used for our requests (`response_version`;
    /// 0 for goiardi, which has only v0 semantics).
    pub api_version: u8,
}

impl ServerInfo {
    /// What is assumed before (or without) an answer that tells: an unknown
    /// server speaking API v0, so no keys or ACL endpoints are used.
    pub const UNKNOWN: ServerInfo = ServerInfo {
        kind: ServerKind::Unknown,
        api_version: 0,
    };

    /// Learns the server from the headers of one answer (any status: both
    /// servers set these headers on errors too). None: nothing decisive.
    pub fn from_headers(headers: &HeaderMap) -> Option<ServerInfo> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let goiardi = headers.contains_key("x-goiardi")
            || text("x-ops-api-info").is_some_and(|v| v.contains("goiardi"));
        if goiardi {
            return Some(ServerInfo {
                kind: ServerKind::Goiardi,
                api_version: 0,
            });
        }
        let version = text("x-ops-server-api-version")
            .and_then(|v| serde_json::from_str::<Value>(v).ok())
            .and_then(|v| {
                let field = v.get("response_version")?;
                field
                    .as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .or_else(|| field.as_i64())
            });
        match version {
            Some(v) if (0..=255).contains(&v) => Some(ServerInfo {
                kind: ServerKind::ChefInfra,
                api_version: v as u8,
            }),
            _ => None,
        }
    }

    /// Does GET /clients/NAME carry `public_key` (and `admin`)?
    pub fn client_body_has_key(&self) -> bool {
        !(self.kind == ServerKind::ChefInfra && self.api_version >= 1)
    }

    /// Is there a /clients/NAME/keys endpoint? Only Chef Infra Server with API
    /// v1+ (API v0 there still has one, but the client body holds the key).
    pub fn has_keys_endpoint(&self) -> bool {
        self.kind == ServerKind::ChefInfra && self.api_version >= 1
    }

    /// Is there an `_acl` endpoint on nodes and clients?
    pub fn has_acl_endpoint(&self) -> bool {
        self.kind == ServerKind::ChefInfra
    }

    /// Does `total` of a search answer count every match (Chef Infra Server)
    /// rather than the rows of this page (goiardi)? Unknown servers: unsure.
    pub fn search_total_is_all(&self) -> Option<bool> {
        match self.kind {
            ServerKind::ChefInfra => Some(true),
            ServerKind::Goiardi => Some(false),
            ServerKind::Unknown => None,
        }
    }

    /// The body of POST /clients for this API version.
    pub fn create_client_body(
        &self,
        name: &str,
        public_key: Option<&str>,
        admin: bool,
        validator: bool,
    ) -> Value {
        let mut body = json!({ "name": name, "clientname": name, "validator": validator });
        if self.client_body_has_key() {
            // API v0 (and goiardi) know `admin`; v1 dropped it (chef_client.erl client_spec).
            body["admin"] = json!(admin);
        }
        match public_key {
            Some(key) => body["public_key"] = json!(key),
            None => body["create_key"] = json!(true),
        }
        body
    }

    /// The body of POST /clients that creates a client WITHOUT any key (API
    /// v1: neither `public_key` nor `create_key`; chef_key_base.erl
    /// `validate_public_key_fields` allows both absent when optional, and
    /// oc_chef_wm_key_base.erl then creates no key). Its keys are added
    /// afterwards, each with its own name and expiration date.
    pub fn create_keyless_client_body(&self, name: &str, validator: bool) -> Value {
        json!({ "name": name, "clientname": name, "validator": validator })
    }

    /// Are there `/groups` endpoints (Chef Infra Server organizations)?
    /// goiardi in its default (non-organization) mode has none, and its
    /// clients carry an `admin` flag instead.
    pub fn has_groups_endpoint(&self) -> bool {
        self.kind == ServerKind::ChefInfra
    }
}

/// Paging decision after one search page.
///
/// `start`: offset asked; `rows`: rows asked; `got`: rows returned; `total`:
/// the answer's `total`. Returns the next `start`, or None when done. The
/// next page always starts at `start + rows` (rows asked, not rows got): a
/// Chef Infra Server page may hold fewer rows than asked without being the
/// last (stale index entries dropped, `strict_search_result_acls` filtering;
/// chef_wm_search.erl `make_search_results`). A slice whose `total` reaches
/// [`SEARCH_WINDOW`] is never paged: it is split ([`id_slices`]).
pub fn next_page(
    total_is_all: Option<bool>,
    start: u64,
    rows: u64,
    got: u64,
    total: Option<u64>,
) -> Option<u64> {
    let next = start + rows;
    let done = match (total_is_all, total) {
        // goiardi: `total` is the page size, only a short page ends.
        (Some(false), _) => got < rows,
        // Chef Infra Server: `total` counts all matches.
        (Some(true), Some(t)) => next >= t,
        (Some(true), None) => got < rows,
        // Unknown server: stop only when both readings agree.
        (None, Some(t)) => got < rows && next >= t,
        (None, None) => got < rows,
    };
    if done {
        None
    } else {
        Some(next)
    }
}

/// Rows to ask for at `start` so that `start + rows` stays within `window`
/// (None: no window, goiardi). 0 means the window is used up.
pub fn rows_within(start: u64, page_size: u64, window: Option<u64>) -> u64 {
    match window {
        Some(w) => page_size.min(w.saturating_sub(start)),
        None => page_size,
    }
}

/// The search field holding an object's database id. erchef indexes it in
/// `content` with every object (chef_index/src/chef_index_expand.erl
/// `make_content`: "adds the database name, id, and type as fields"), so
/// `X_CHEF_id_CHEF_X:*3f` is a valid user query (chef_index/src/chef_lucene.peg:
/// `field` becomes `content:X_CHEF_id_CHEF_X__=__*3f`; a term may start with `*`).
pub const ID_FIELD: &str = "X_CHEF_id_CHEF_X";

/// The characters of an object id: 32 lowercase hex digits, the org's
/// 12-digit suffix then 20 digits of an MD5 (chef_objects/src/chef_object_base.erl
/// `make_org_prefix_id`, `io_lib:format("~s~20.16.0b")`).
pub const ID_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Length of an object id.
pub const ID_LEN: usize = 32;

/// The slices that partition the matches of `suffix` (an id suffix, `""`
/// for all): one per hex digit in front of it. Every id is 32 hex digits, so
/// for a suffix shorter than 32 each id ending in `suffix` ends in exactly
/// one child: the children are disjoint and together complete. The suffix
/// (the MD5 part) is used rather than the prefix (the org's constant part),
/// so each level divides a slice by about 16. None at full length.
///
/// Not `name:` prefixes: the index also holds every nested attribute under its
/// leaf key (chef_index_expand.erl `add_kv_pair`), so `name:L*` matches every
/// node whose `kernel.name` is `Linux`: such slices overlap and may never
/// shrink below the window.
pub fn id_slices(suffix: &str) -> Option<Vec<String>> {
    (suffix.len() < ID_LEN).then(|| {
        ID_DIGITS
            .iter()
            .map(|d| format!("{}{suffix}", *d as char))
            .collect()
    })
}

/// The query of one slice: `query` restricted to ids ending in `suffix`.
pub fn slice_query(query: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        return query.to_string();
    }
    let clause = format!("{ID_FIELD}:*{suffix}");
    if query.trim() == "*:*" {
        clause
    } else {
        format!("({query}) AND {clause}")
    }
}

/// One key of an API client (Chef Infra Server API v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientKey {
    /// The key's name; the key a client is created with is `default`.
    pub name: String,
    /// The public key in PEM (`-----BEGIN PUBLIC KEY-----...`).
    pub public_key: String,
    /// `"infinity"` or `YYYY-MM-DDTHH:MM:SSZ`.
    pub expiration_date: String,
}

impl ClientKey {
    /// A key as GET /clients/NAME/keys/KEY returns it; None unless it has the
    /// documented shape. A key stored as an X.509 certificate (clients of
    /// the Chef 11 era, `key_version` 1: chef_key.erl returns it as stored)
    /// is backed up as the certificate's public key, which is what
    /// POST /clients/NAME/keys accepts back (chef_key_base.erl
    /// `public_key_spec` takes only `BEGIN PUBLIC KEY`/`BEGIN RSA PUBLIC KEY`).
    pub fn from_answer(v: &Value) -> Option<ClientKey> {
        let name = v.get("name")?.as_str()?;
        let stored = v.get("public_key")?.as_str()?;
        let public_key = if stored.contains("BEGIN CERTIFICATE") {
            super::x509::public_key_of_certificate(stored).ok()?
        } else if stored.contains("PUBLIC KEY") {
            stored.to_string()
        } else {
            return None;
        };
        Some(ClientKey {
            name: name.to_string(),
            public_key,
            expiration_date: v
                .get("expiration_date")
                .and_then(Value::as_str)
                .unwrap_or("infinity")
                .to_string(),
        })
    }

    /// The JSON body that creates this key (POST /clients/NAME/keys), as
    /// restore sends it.
    pub fn to_body(&self) -> Value {
        json!({
            "name": self.name,
            "public_key": self.public_key,
            "expiration_date": self.expiration_date,
        })
    }
}

/// Key names of a GET /clients/NAME/keys answer: a JSON array of
/// `{name, uri, expired}`. None when the answer has another shape (goiardi
/// answers that path with the client object).
pub fn key_names(listing: &Value) -> Option<Vec<String>> {
    listing
        .as_array()?
        .iter()
        .map(|k| {
            k.as_object()
                .filter(|o| o.contains_key("uri") || o.contains_key("expired"))
                .and_then(|o| o.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// Objects that carry an ACL nodereaper backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclObject {
    /// A node (`/nodes/NAME/_acl`).
    Node,
    /// An API client (`/clients/NAME/_acl`).
    Client,
}

impl AclObject {
    /// The collection in the API path (`nodes`, `clients`).
    pub fn collection(self) -> &'static str {
        match self {
            AclObject::Node => "nodes",
            AclObject::Client => "clients",
        }
    }
}

/// The permissions of a Chef ACL, in the order they are restored.
pub const ACL_PERMISSIONS: &[&str] = &["create", "read", "update", "delete", "grant"];

/// Is this an `_acl` answer (`{"create": {"actors": [..], "groups": [..]}, ..}`)?
pub fn is_acl(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        ACL_PERMISSIONS.iter().all(|p| {
            o.get(*p)
                .and_then(Value::as_object)
                .is_some_and(|ace| ace.get("groups").is_some_and(Value::is_array))
        })
    })
}

/// The PUT body that restores one permission of a backed-up ACL. A granular
/// backup (`users` and `clients` present) is sent with `actors: []`, as
/// oc_chef_wm_acl_permission.erl requires when names could be ambiguous.
pub fn acl_put_body(acl: &Value, permission: &str) -> Option<Value> {
    let ace = acl.get(permission)?.as_object()?;
    let list = |k: &str| ace.get(k).cloned().unwrap_or_else(|| json!([]));
    let body = if ace.contains_key("users") || ace.contains_key("clients") {
        json!({"actors": [], "users": list("users"), "clients": list("clients"), "groups": list("groups")})
    } else {
        json!({"actors": list("actors"), "groups": list("groups")})
    };
    Some(json!({ permission: body }))
}

/// The public key in a client body (API v0 and goiardi), if any.
pub fn client_public_key(client: &Value) -> Option<&str> {
    client
        .get("public_key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
}

/// The private key in a POST /clients answer: top level (API v0, goiardi) or
/// under `chef_key` (API v1, oc_chef_wm_key_base.erl).
pub fn created_private_key(answer: &Value) -> Option<String> {
    answer
        .get("private_key")
        .or_else(|| answer.pointer("/chef_key/private_key"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn learns_the_server_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(ServerInfo::from_headers(&h), None);
        h.insert(
            "x-ops-server-api-version",
            HeaderValue::from_static(
                r#"{"min_version":"0","max_version":"2","request_version":"1","response_version":"1"}"#,
            ),
        );
        let chef = ServerInfo::from_headers(&h).expect("chef infra");
        assert_eq!(chef.kind, ServerKind::ChefInfra);
        assert_eq!(chef.api_version, 1);
        assert!(chef.has_keys_endpoint() && chef.has_acl_endpoint());
        assert!(!chef.client_body_has_key());
        let mut g = HeaderMap::new();
        g.insert("x-goiardi", HeaderValue::from_static("yes"));
        let goiardi = ServerInfo::from_headers(&g).expect("goiardi");
        assert_eq!(goiardi.kind, ServerKind::Goiardi);
        assert!(!goiardi.has_keys_endpoint() && !goiardi.has_acl_endpoint());
    }

    #[test]
    fn paging_follows_total_on_chef_infra_and_short_pages_on_goiardi() {
        // Chef Infra: short page mid-way is not the end.
        assert_eq!(next_page(Some(true), 0, 10, 7, Some(25)), Some(10));
        assert_eq!(next_page(Some(true), 20, 10, 5, Some(25)), None);
        // goiardi: total is the page size.
        assert_eq!(next_page(Some(false), 0, 10, 10, Some(10)), Some(10));
        assert_eq!(next_page(Some(false), 10, 10, 4, Some(4)), None);
        // Unknown: continue while either reading says there is more.
        assert_eq!(next_page(None, 0, 10, 10, Some(10)), Some(10));
        assert_eq!(next_page(None, 0, 10, 7, Some(25)), Some(10));
        assert_eq!(next_page(None, 20, 10, 5, Some(25)), None);
    }

    #[test]
    fn rows_never_reach_past_the_window() {
        assert_eq!(rows_within(0, 1000, Some(10_000)), 1000);
        assert_eq!(rows_within(9_900, 300, Some(10_000)), 100);
        assert_eq!(rows_within(10_000, 300, Some(10_000)), 0);
        assert_eq!(rows_within(10_000, 300, None), 300);
    }

    #[test]
    fn id_slices_partition_every_id_exactly_once() {
        let children = id_slices("").expect("root splits");
        assert_eq!(children.len(), 16);
        // Any 32-digit lowercase hex id ends in exactly one child at each depth.
        for id in [
            "0123456789abcdef0123456789abcdef",
            "ffffffffffff00000000000000000000",
        ] {
            let mut suffix = String::new();
            for _ in 0..ID_LEN {
                let kids = id_slices(&suffix).expect("split");
                let hits: Vec<_> = kids.iter().filter(|k| id.ends_with(k.as_str())).collect();
                assert_eq!(hits.len(), 1, "{id} under {suffix:?}: {hits:?}");
                suffix = hits[0].clone();
            }
            assert_eq!(suffix, id);
            assert_eq!(id_slices(&suffix), None);
        }
        assert_eq!(slice_query("*:*", "3f"), "X_CHEF_id_CHEF_X:*3f");
        assert_eq!(
            slice_query("role:web", "3f"),
            "(role:web) AND X_CHEF_id_CHEF_X:*3f"
        );
        assert_eq!(slice_query("role:web", ""), "role:web");
    }

    #[test]
    fn key_listing_shape_is_checked() {
        let v1 = json!([{"name": "default", "uri": "https://x/keys/default", "expired": false}]);
        assert_eq!(key_names(&v1), Some(vec!["default".to_string()]));
        // goiardi answers /clients/N/keys with the client itself.
        let goiardi = json!({"name": "n", "public_key": "-----BEGIN PUBLIC KEY-----"});
        assert_eq!(key_names(&goiardi), None);
    }

    #[test]
    fn acl_bodies() {
        let acl = json!({
            "create": {"actors": [], "users": ["pivotal"], "clients": ["web-1"], "groups": ["admins"]},
            "read": {"actors": [], "users": [], "clients": ["web-1"], "groups": ["clients"]},
            "update": {"actors": [], "users": [], "clients": [], "groups": []},
            "delete": {"actors": [], "users": [], "clients": [], "groups": []},
            "grant": {"actors": [], "users": [], "clients": [], "groups": ["admins"]}
        });
        assert!(is_acl(&acl));
        assert_eq!(
            acl_put_body(&acl, "read"),
            Some(
                json!({"read": {"actors": [], "users": [], "clients": ["web-1"], "groups": ["clients"]}})
            )
        );
        assert!(!is_acl(&json!({"name": "web-1"})));
    }
}

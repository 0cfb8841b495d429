//! Node search, full and partial.
//!
//! - `total` is the index's match count, rows whose objects are gone from
//!   the database are dropped from the page, so a page can be short without
//!   being the last: oc_chef_wm/src/chef_wm_search.erl `to_json`,
//!   `make_search_results`; OpenSearch reports at most 10,000
//!   (`track_total_hits` default), reproduced with `Server::cap_total`;
//! - partial search: POST body `{"alias": ["path", ..]}`, rows `{url, data}`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{answer, Req, Server};

pub fn search_nodes(s: &mut Server, req: &Req) -> Response {
    let start = req.query_usize("start", 0);
    let rows = req.query_usize("rows", 1000);
    let found = s.index.len();
    let total = if s.cap_total {
        found.min(10_000)
    } else {
        found
    };
    let page: Vec<Value> = s
        .index
        .iter()
        .skip(start)
        .take(rows)
        // Stale index entries: no object in the database, dropped.
        .filter_map(|name| s.nodes.get(name))
        .map(|node| match req.method.as_str() {
            "POST" => partial_row(node, &req.body),
            _ => node.clone(),
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({"total": total, "start": start, "rows": page}),
    )
}

fn partial_row(node: &Value, aliases: &Value) -> Value {
    let data: Map<String, Value> = aliases
        .as_object()
        .map(|aliases| {
            aliases
                .iter()
                .map(|(alias, path)| {
                    let p = path.as_array().cloned().unwrap_or_default();
                    (alias.clone(), partial_value(node, &p))
                })
                .collect()
        })
        .unwrap_or_default();
    let name = node["name"].as_str().unwrap_or("");
    json!({"url": format!("/nodes/{name}"), "data": data})
}

fn partial_value(node: &Value, path: &[Value]) -> Value {
    if path.first().and_then(Value::as_str) == Some("name") {
        return node["name"].clone();
    }
    let merged = node.get("automatic").cloned().unwrap_or(Value::Null);
    lookup(&merged, path).cloned().unwrap_or(Value::Null)
}

fn lookup<'a>(v: &'a Value, path: &[Value]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p.as_str()?)?;
    }
    Some(cur)
}

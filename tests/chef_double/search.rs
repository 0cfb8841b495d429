//! Node search, full and partial, on the three search backends of Chef
//! Infra Server (chef/chef-server 9df4f56e, paths under src/oc_erchef/apps/).
//!
//! - `total` is the index's match count; rows whose objects are gone from
//!   the database are dropped from the page, so a page can be short without
//!   being the last (oc_chef_wm/src/chef_wm_search.erl `to_json`,
//!   `make_search_results`); pages are ordered by `X_CHEF_id_CHEF_X`
//!   (chef_index/src/chef_solr.erl, chef_opensearch.erl `query_body`);
//! - [`Backend::OpenSearch`] (Chef Infra Server 15): `from`/`size` past
//!   `index.max_result_window` (10,000 unless the operator raised it) is the
//!   engine's 400, which erchef answers as 400 `invalid index name or query`
//!   (chef_index/src/chef_opensearch.erl `search`, chef_wm_search.erl
//!   `malformed_request_message`); `total` stops at 10,000 unless
//!   `track_total_hits` (chef_index/src/chef_index_query.erl);
//!   [`Backend::Elasticsearch`] (14, chef-backend): exact `total`, 500
//!   `internal search error` past the window (chef/chef-server#2163);
//!   [`Backend::Solr`] (12, 13): no window;
//! - what is indexed: chef_index/src/chef_index_expand.erl `flatten` (every
//!   nested key under its joined path AND its leaf key, keys also as values
//!   of their parent, the `content` field whitespace-tokenized:
//!   habitat/config/opensearch-index-init.json) over the node as
//!   chef_objects/src/chef_node.erl `ejson_for_indexing` builds it (attributes
//!   deep-merged, plus name, chef_type, chef_environment, run_list), plus the
//!   meta fields `X_CHEF_id_CHEF_X`, `X_CHEF_database_CHEF_X`,
//!   `X_CHEF_type_CHEF_X` (`make_content`); object ids are the org's 12 hex
//!   digits then 20 of an MD5 (chef_objects/src/chef_object_base.erl
//!   `make_org_prefix_id`);
//! - queries (chef_index/src/chef_lucene.peg): `*:*`, `field:term` with `*`
//!   and `?` wildcards and `\` escapes, becoming a match on the token
//!   `field__=__term`; `AND`/`&&`, `OR`/`||` and parentheses. Anything else is
//!   400 `invalid search query: 'Q'` (the double's subset);
//! - partial search: POST body `{"alias": ["path", ..]}`, rows `{url, data}`,
//!   paths looked up in the same merged view (chef_wm_search.erl, chef_node.erl).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{answer, Req, Server, ORG};

/// `index.max_result_window` of Elasticsearch and OpenSearch, never raised by chef-server.
pub const DEFAULT_WINDOW: usize = 10_000;

/// The search engine behind erchef.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// Solr (Chef Infra Server 12, 13): exact `total`, any `start`.
    #[default]
    Solr,
    /// OpenSearch (15): 400 past `window`; `total` capped at 10,000 unless `track_total_hits`.
    OpenSearch {
        window: usize,
        track_total_hits: bool,
    },
    /// Elasticsearch 6 (14, chef-backend): exact `total`, 500 past `window`.
    Elasticsearch { window: usize },
}

impl Backend {
    /// OpenSearch as Chef Infra Server 15 installs it.
    pub fn opensearch() -> Self {
        Backend::OpenSearch {
            window: DEFAULT_WINDOW,
            track_total_hits: false,
        }
    }

    /// Elasticsearch 6 as Chef Infra Server 14 installs it.
    pub fn elasticsearch() -> Self {
        Backend::Elasticsearch {
            window: DEFAULT_WINDOW,
        }
    }

    fn window(self) -> Option<usize> {
        match self {
            Backend::Solr => None,
            Backend::OpenSearch { window, .. } | Backend::Elasticsearch { window } => Some(window),
        }
    }
}

/// The object id erchef gives the node `name`: the org's suffix, then 20
/// hex digits (here from a hash of the name, so tests can predict them).
pub fn object_id(name: &str) -> String {
    let hash = |salt: u64| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, name).hash(&mut h);
        h.finish()
    };
    let digits = format!("{:016x}{:016x}", hash(1), hash(2));
    format!("a1b2c3d4e5f6{}", &digits[..20])
}

pub fn search_nodes(s: &mut Server, req: &Req) -> Response {
    let start = req.query_usize("start", 0);
    let rows = req.query_usize("rows", 1000);
    let q = req.query.get("q").cloned().unwrap_or_else(|| "*:*".into());
    let Some(query) = parse(&q) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": [format!("invalid search query: '{q}'")]}),
        );
    };
    if let Some(window) = s.search.window() {
        if start + rows > window {
            return past_window(s.search);
        }
    }
    let mut matched: Vec<(String, &String)> = s
        .index
        .iter()
        .filter(|name| {
            matches!(query, Query::All)
                || query.matches(&cached_tokens(name, s.nodes.get(name.as_str())))
        })
        .map(|name| (object_id(name), name))
        .collect();
    matched.sort();
    let found = matched.len();
    let total = match s.search {
        Backend::OpenSearch {
            track_total_hits: false,
            ..
        } => found.min(DEFAULT_WINDOW),
        _ => found,
    };
    let page: Vec<Value> = matched
        .iter()
        .skip(start)
        .take(rows)
        // Stale index entries: no object in the database, dropped.
        .filter_map(|(_, name)| s.nodes.get(name.as_str()))
        .map(|node| match req.method.as_str() {
            "POST" => partial_row(&s.org, node, &req.body),
            _ => node.clone(),
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({"total": total, "start": start, "rows": page}),
    )
}

fn past_window(backend: Backend) -> Response {
    match backend {
        Backend::Elasticsearch { .. } => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": ["internal search error"]}),
        ),
        _ => answer(
            StatusCode::BAD_REQUEST,
            json!({"error": ["invalid index name or query"]}),
        ),
    }
}

/// The node as indexed: deep-merged attributes plus the top-level fields.
fn for_indexing(node: &Value) -> Value {
    let mut merged = Value::Object(Map::new());
    for level in ["default", "normal", "override", "automatic"] {
        if let Some(attrs) = node.get(level) {
            deep_merge(&mut merged, attrs);
        }
    }
    for key in ["name", "chef_type", "chef_environment", "run_list"] {
        if let Some(v) = node.get(key) {
            merged[key] = v.clone();
        }
    }
    merged
}

fn deep_merge(into: &mut Value, from: &Value) {
    match (into.as_object_mut(), from.as_object()) {
        (Some(into), Some(from)) => {
            for (k, v) in from {
                deep_merge(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        _ => *into = from.clone(),
    }
}

type TokenCache = HashMap<String, (Option<Value>, Rc<BTreeSet<String>>)>;

thread_local! {
    /// Tokens per index entry, kept while the node is unchanged (each test
    /// runs the double on its own thread).
    static TOKENS: RefCell<TokenCache> = RefCell::new(HashMap::new());
}

fn cached_tokens(name: &str, node: Option<&Value>) -> Rc<BTreeSet<String>> {
    TOKENS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((seen, tokens)) = cache.get(name) {
            if seen.as_ref() == node {
                return tokens.clone();
            }
        }
        let fresh = Rc::new(tokens(name, node));
        cache.insert(name.to_string(), (node.cloned(), fresh.clone()));
        fresh
    })
}

/// The `content` tokens of one index entry (a stale entry keeps its name and id).
fn tokens(name: &str, node: Option<&Value>) -> BTreeSet<String> {
    let doc = node
        .map(for_indexing)
        .unwrap_or_else(|| json!({"name": name}));
    // `{MetaFieldsPL ++ Item0}`: the meta fields beside the item's own keys,
    // so an attribute named like one is indexed too.
    let meta = json!({"X_CHEF_id_CHEF_X": object_id(name),
        "X_CHEF_database_CHEF_X": format!("chef_{ORG}"), "X_CHEF_type_CHEF_X": "node"});
    let mut out = BTreeSet::new();
    expand(&mut Vec::new(), &meta, &mut out);
    expand(&mut Vec::new(), &doc, &mut out);
    out
}

/// chef_index_expand.erl `expand`: keys deepest first.
fn expand(keys: &mut Vec<String>, v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                add_pair(keys, k, out);
                keys.insert(0, k.clone());
                expand(keys, child, out);
                keys.remove(0);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| expand(keys, i, out)),
        Value::String(s) => add_pair(keys, s, out),
        Value::Null => add_pair(keys, "", out),
        other => add_pair(keys, &other.to_string(), out),
    }
}

/// `add_kv_pair`: the joined path and the leaf key; the content is then
/// split on whitespace (the index's analyzer), so a value's later words
/// are bare tokens.
fn add_pair(keys: &[String], value: &str, out: &mut BTreeSet<String>) {
    let Some(leaf) = keys.first() else { return };
    let joined: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
    for key in [joined.join("_"), leaf.clone()] {
        let text = format!("{key}__=__{value}");
        out.extend(text.split_whitespace().map(str::to_string));
    }
}

/// A parsed query (the double's subset of chef_lucene.peg).
#[derive(Debug)]
enum Query {
    All,
    /// `field:term`: a wildcard pattern over `field__=__term`.
    Term(String),
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
}

impl Query {
    fn matches(&self, tokens: &BTreeSet<String>) -> bool {
        match self {
            Query::All => true,
            Query::Term(pattern) => tokens
                .iter()
                .any(|t| glob(pattern.as_bytes(), t.as_bytes())),
            Query::And(a, b) => a.matches(tokens) && b.matches(tokens),
            Query::Or(a, b) => a.matches(tokens) || b.matches(tokens),
        }
    }
}

fn parse(q: &str) -> Option<Query> {
    if q.trim() == "*:*" {
        return Some(Query::All);
    }
    let mut p = Parser {
        s: q.as_bytes(),
        i: 0,
    };
    let query = p.expr()?;
    p.skip_space();
    (p.i == p.s.len()).then_some(query)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|c| *c == b' ' || *c == b'\t')
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        self.skip_space();
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            return true;
        }
        false
    }

    fn expr(&mut self) -> Option<Query> {
        let lhs = self.primary()?;
        if self.eat("AND") || self.eat("&&") {
            return Some(Query::And(Box::new(lhs), Box::new(self.expr()?)));
        }
        if self.eat("OR") || self.eat("||") {
            return Some(Query::Or(Box::new(lhs), Box::new(self.expr()?)));
        }
        Some(lhs)
    }

    fn primary(&mut self) -> Option<Query> {
        if self.eat("(") {
            let inner = if self.eat("*:*") {
                Query::All
            } else {
                self.expr()?
            };
            return self.eat(")").then_some(inner);
        }
        self.skip_space();
        let field = self.word(false)?;
        if !self.eat(":") {
            return None;
        }
        let term = self.word(true)?;
        Some(Query::Term(format!("{field}__=__{term}")))
    }

    /// A field name or term: `valid_letter+`; `\` escapes the next char
    /// (kept escaped for the glob), wildcards only in terms.
    fn word(&mut self, term: bool) -> Option<String> {
        let begin = self.i;
        let mut out = String::new();
        while let Some(&c) = self.s.get(self.i) {
            if c == b'\\' {
                let next = *self.s.get(self.i + 1)?;
                out.push('\\');
                out.push(next as char);
                self.i += 2;
            } else if c.is_ascii_alphanumeric()
                || b"_.@+/-".contains(&c)
                || (term && b"*?".contains(&c))
            {
                out.push(c as char);
                self.i += 1;
            } else {
                break;
            }
        }
        (self.i > begin).then_some(out)
    }
}

/// Lucene wildcard matching: `*` any run, `?` one char, `\x` a literal x.
fn glob(p: &[u8], t: &[u8]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some(b'*') => (0..=t.len()).any(|k| glob(&p[1..], &t[k..])),
        Some(b'?') => !t.is_empty() && glob(&p[1..], &t[1..]),
        Some(b'\\') if p.len() > 1 => t.first() == Some(&p[1]) && glob(&p[2..], &t[1..]),
        Some(c) => t.first() == Some(c) && glob(&p[1..], &t[1..]),
    }
}

fn partial_row(org: &str, node: &Value, aliases: &Value) -> Value {
    let merged = for_indexing(node);
    let data: Map<String, Value> = aliases
        .as_object()
        .map(|aliases| {
            aliases
                .iter()
                .map(|(alias, path)| {
                    let p = path.as_array().cloned().unwrap_or_default();
                    (
                        alias.clone(),
                        lookup(&merged, &p).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let name = node["name"].as_str().unwrap_or("");
    json!({"url": format!("/organizations/{org}/nodes/{name}"), "data": data})
}

fn lookup<'a>(v: &'a Value, path: &[Value]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p.as_str()?)?;
    }
    Some(cur)
}

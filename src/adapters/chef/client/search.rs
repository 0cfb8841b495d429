//! Node search: every row of a (partial) search, never past the search window.
//!
//! Chef Infra Server 14+ refuses a page with `start + rows` above the search
//! engine's window ([`SEARCH_WINDOW`], 10,000 unless the operator raised
//! `index.max_result_window`), and OpenSearch's `total` stops at 10,000. So a
//! query whose `total` reaches the window is not paged at all: it is split
//! into disjoint slices by the last hex digits of the object id
//! (`X_CHEF_id_CHEF_X:*3f`, [`server::id_slices`]), recursively, until each
//! slice pages to its end within the window. Rows seen in two slices (a node
//! that copies another's id into an attribute of that name) are kept once.
//! goiardi has no window and keeps plain paging.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::ChefClient;
use crate::adapters::chef::response::{error_detail, object_name, snippet};
use crate::core::chef::{self as server, ServerInfo, ServerKind, SEARCH_WINDOW};
use crate::ports::ChefError;

/// One slice of a search: its rows, or too many matches to page within the window.
enum Slice {
    Rows(Vec<Value>),
    TooLarge { total: u64 },
}

/// One search page as read.
struct Page {
    rows: Vec<Value>,
    total: Option<u64>,
}

/// What a probe of the search window found (`nodereaper doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchWindow {
    /// goiardi: no search engine window.
    None,
    /// A page starting at 10,000 was served: Solr (Chef Infra Server 12/13)
    /// or a raised `index.max_result_window`.
    Served {
        /// `total` of `*:*`.
        total: Option<u64>,
    },
    /// A page starting at 10,000 was refused with this status (OpenSearch
    /// 400, Elasticsearch 500): the default window.
    Refused {
        /// The status of the refusal.
        status: u16,
        /// `total` of `*:*`.
        total: Option<u64>,
    },
}

impl ChefClient {
    /// Every row of a (partial) search over `index`, each once.
    ///
    /// Chef Infra Server's `total` is the number of all matches and a page
    /// may be short without being the last; goiardi's `total` is the size of
    /// the page. [`server::next_page`] decides, from the server kind.
    pub(super) async fn search_rows(
        &self,
        index: &str,
        query: &str,
        partial: Option<&Value>,
    ) -> Result<Vec<Value>, ChefError> {
        let info = self.detect_server().await?;
        let window = (info.kind != ServerKind::Goiardi).then_some(SEARCH_WINDOW);
        let mut pending = vec![String::new()];
        let mut all = Vec::new();
        let mut seen = HashSet::new();
        while let Some(suffix) = pending.pop() {
            let slice_query = server::slice_query(query, &suffix);
            match self
                .search_slice(info, index, &slice_query, partial, window)
                .await?
            {
                Slice::Rows(rows) => {
                    for row in rows {
                        // A row already seen in another slice is kept once.
                        if row_key(&row).is_none_or(|key| seen.insert(key)) {
                            all.push(row);
                        }
                    }
                }
                Slice::TooLarge { total } => match server::id_slices(&suffix) {
                    Some(children) => {
                        tracing::debug!(query = %slice_query, total, "search slice reaches the window; splitting it");
                        pending.extend(children.into_iter().rev());
                    }
                    None => {
                        return Err(self.search_error(
                            &partial_method(partial),
                            index,
                            format!(
                                "the slice {slice_query:?} (one object id) still matches {total} rows; \
                                 cannot page it within the search window of {SEARCH_WINDOW}"
                            ),
                        ))
                    }
                },
            }
        }
        Ok(all)
    }

    /// One slice, paged to its end; `TooLarge` when its `total` reaches the
    /// window or the window is used up before the end.
    async fn search_slice(
        &self,
        info: ServerInfo,
        index: &str,
        query: &str,
        partial: Option<&Value>,
        window: Option<u64>,
    ) -> Result<Slice, ChefError> {
        let page_size = self.page_size as u64;
        let mut all = Vec::new();
        let mut start = 0u64;
        loop {
            let rows = server::rows_within(start, page_size, window);
            if rows == 0 {
                return Ok(Slice::TooLarge { total: start });
            }
            let page = self
                .search_page(info, index, query, partial, start, rows)
                .await?;
            if let (Some(w), Some(t)) = (window, page.total) {
                if t >= w && info.search_total_is_all() != Some(false) {
                    return Ok(Slice::TooLarge { total: t });
                }
            }
            let got = page.rows.len() as u64;
            all.extend(page.rows);
            match server::next_page(info.search_total_is_all(), start, rows, got, page.total) {
                Some(next) => start = next,
                None => return Ok(Slice::Rows(all)),
            }
        }
    }

    /// One page: `start`, `rows`. A 404 means the organization is wrong.
    async fn search_page(
        &self,
        info: ServerInfo,
        index: &str,
        query: &str,
        partial: Option<&Value>,
        start: u64,
        rows: u64,
    ) -> Result<Page, ChefError> {
        let segments = ["search", index];
        let method = partial_method(partial);
        let (start_param, rows_param) = (start.to_string(), rows.to_string());
        let mut params = vec![
            ("q", query),
            ("start", start_param.as_str()),
            ("rows", rows_param.as_str()),
        ];
        // goiardi sorts partial-search results on a key they do not have,
        // which makes page boundaries arbitrary; sorting on "url" makes them
        // stable there. Chef Infra Server orders pages itself
        // (X_CHEF_id_CHEF_X, chef_index_query.erl).
        if partial.is_some() && info.kind == ServerKind::Goiardi {
            params.push(("sort", "url asc"));
        }
        let resp = self
            .send(method.clone(), &segments, &params, partial)
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Err(self.no_organization(&method, &segments, &resp.body));
        }
        if !resp.status.is_success() {
            return Err(self.status_error(&method, &segments, &resp));
        }
        let page = self.parse_json(&method, &segments, &resp)?;
        let Some(rows) = page.get("rows").and_then(Value::as_array) else {
            return Err(self.search_error(
                &method,
                index,
                format!(
                    "search answer has no \"rows\" array: {}",
                    snippet(&resp.body)
                ),
            ));
        };
        Ok(Page {
            rows: rows.clone(),
            total: page.get("total").and_then(Value::as_u64),
        })
    }

    /// Probes the search window with one row at 10,000 (a harmless read; a
    /// refusal is what is being looked for).
    pub async fn search_window(&self) -> Result<SearchWindow, ChefError> {
        let info = self.detect_server().await?;
        if info.kind == ServerKind::Goiardi {
            return Ok(SearchWindow::None);
        }
        let total = self
            .search_page(info, "node", "*:*", None, 0, 1)
            .await?
            .total;
        let segments = ["search", "node"];
        let start = SEARCH_WINDOW.to_string();
        let params = [("q", "*:*"), ("start", start.as_str()), ("rows", "1")];
        let resp = self.send(Method::GET, &segments, &params, None).await?;
        Ok(match resp.status {
            s if s.is_success() => SearchWindow::Served { total },
            StatusCode::BAD_REQUEST | StatusCode::INTERNAL_SERVER_ERROR => SearchWindow::Refused {
                status: resp.status.as_u16(),
                total,
            },
            _ => return Err(self.status_error(&Method::GET, &segments, &resp)),
        })
    }

    fn search_error(&self, method: &Method, index: &str, detail: String) -> ChefError {
        ChefError::BadResponse {
            server: self.server.clone(),
            method: method.to_string(),
            object: object_name(&["search", index]),
            detail,
        }
    }

    /// A 404 for a collection (`/nodes`, `/clients`, `/search/node`): the
    /// organization in the server URL is wrong or missing.
    pub(super) fn no_organization(
        &self,
        method: &Method,
        segments: &[&str],
        body: &[u8],
    ) -> ChefError {
        ChefError::NoOrganization {
            server: self.server.clone(),
            method: method.to_string(),
            object: object_name(segments),
            detail: error_detail(body),
        }
    }
}

fn partial_method(partial: Option<&Value>) -> Method {
    if partial.is_some() {
        Method::POST
    } else {
        Method::GET
    }
}

/// What identifies a row across slices: its `url` (partial search) or the
/// node's `name` (full search).
fn row_key(row: &Value) -> Option<String> {
    row.get("url")
        .or_else(|| row.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

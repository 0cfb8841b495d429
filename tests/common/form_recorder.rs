//! A recording proxy in front of moto.

use super::{form_pairs, param, serve_local, stack, Calls};

/// A proxy in front of moto that keeps the decoded form of every Query
/// protocol request (Auto Scaling's), for what moto accepts but does not store
/// (5.2: a lifecycle hook's NotificationMetadata, which
/// DescribeLifecycleHooks never returns): what was written is read from the
/// request that was sent.
pub struct FormRecorder {
    pub url: String,
    pub calls: Calls,
}

impl FormRecorder {
    pub async fn start() -> Self {
        use axum::{body::Bytes, extract::State, http::HeaderMap, response::Response};
        async fn forward(
            State(calls): State<Calls>,
            method: axum::http::Method,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            if headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
            {
                calls.lock().expect("lock").push(form_pairs(&body));
            }
            let target = format!("{}{uri}", stack().moto_url());
            let mut req = reqwest::Client::new().request(method, target).body(body);
            for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
                req = req.header(k, v);
            }
            let answer = req.send().await.expect("moto");
            let mut out = Response::builder().status(answer.status());
            for (k, v) in answer.headers() {
                out = out.header(k, v);
            }
            let bytes = answer.bytes().await.expect("moto body");
            out.body(axum::body::Body::from(bytes)).expect("response")
        }
        let calls: Calls = Default::default();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(calls.clone());
        Self {
            url: serve_local(app).await,
            calls,
        }
    }

    /// Every PutLifecycleHook call.
    pub fn hook_puts(&self) -> Vec<Vec<(String, String)>> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| param(c, "Action") == Some("PutLifecycleHook"))
            .cloned()
            .collect()
    }
}

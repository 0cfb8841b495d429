//! `/metrics` (Prometheus), `/healthz` (liveness) and `/readyz` (SQS and Chef
//! really answer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::ports::{ChefApi, Queue};

/// What `/readyz` checks.
pub struct Readiness {
    /// Every queue consumed: each must answer a depth query
    /// (`GetQueueAttributes`) within 5 seconds.
    pub queues: Vec<Arc<dyn Queue>>,
    /// Every Chef target's server: each must return nodereaper's own client
    /// or user ([`ChefApi::own_identity`]) within 5 seconds.
    pub chefs: Vec<ChefProbe>,
}

/// One Chef target as `/readyz` checks it.
pub struct ChefProbe {
    /// The target's name, shown with several targets (`None`: the one
    /// `[chef]` target, shown as before).
    pub target: Option<String>,
    /// Its Chef API.
    pub chef: Arc<dyn ChefApi>,
    /// nodereaper's own client there: reading it proves reachability and a
    /// valid signature.
    pub client_name: String,
}

impl Readiness {
    /// One line per check; Err when any failed.
    pub async fn check(&self) -> Result<String, String> {
        let mut lines = Vec::new();
        let mut ok = true;
        for q in &self.queues {
            match tokio::time::timeout(Duration::from_secs(5), q.depth()).await {
                Ok(Ok((visible, hidden))) => lines.push(format!(
                    "ok   sqs {}: {visible} visible, {hidden} in flight",
                    q.name()
                )),
                Ok(Err(e)) => {
                    ok = false;
                    lines.push(format!("FAIL sqs {}: {e}", q.name()));
                }
                Err(_) => {
                    ok = false;
                    lines.push(format!("FAIL sqs {}: no answer within 5s", q.name()));
                }
            }
        }
        // Every target at once: a slow one costs 5 s, not 5 s each.
        let checks = futures::future::join_all(self.chefs.iter().map(ChefProbe::check)).await;
        for check in checks {
            ok &= check.is_ok();
            lines.push(check.unwrap_or_else(|line| line));
        }
        let text = lines.join("\n") + "\n";
        if ok {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

impl ChefProbe {
    /// The line of this target: `Ok` when our own identity read back.
    async fn check(&self) -> Result<String, String> {
        let server = match &self.target {
            Some(t) => format!("[{t}] {}", self.chef.server()),
            None => self.chef.server().to_string(),
        };
        match tokio::time::timeout(Duration::from_secs(5), self.chef.own_identity()).await {
            Ok(Ok(Some((kind, _)))) => Ok(format!(
                "ok   chef {server} (our {kind} {:?} read back)",
                self.client_name
            )),
            // A wrong server URL (another org, a proxy) answers 404 to
            // everything: only our own identity, read back, proves the URL.
            Ok(Ok(None)) => Err(format!(
                "FAIL chef {server}: neither client nor user {:?} exists there (404): wrong server URL or organization?",
                self.client_name
            )),
            Ok(Err(e)) => Err(format!("FAIL chef {server}: {e}")),
            Err(_) => Err(format!("FAIL chef {server}: no answer within 5s")),
        }
    }
}

async fn metrics() -> String {
    super::metrics::render()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ready): State<Arc<Readiness>>) -> (StatusCode, String) {
    match ready.check().await {
        Ok(text) => (StatusCode::OK, text),
        Err(text) => (StatusCode::SERVICE_UNAVAILABLE, text),
    }
}

/// The health and metrics endpoint, bound (so a taken port fails at start)
/// and ready to serve.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
    ready: Arc<Readiness>,
}

impl HttpServer {
    /// Binds `addr` (`http.listen`).
    pub async fn bind(addr: SocketAddr, ready: Arc<Readiness>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self { listener, ready })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` until `until` completes
    /// (the daemon's shutdown), then lets requests in progress finish.
    pub async fn serve(self, until: impl std::future::Future<Output = ()> + Send + 'static) {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.ready);
        if let Err(e) = axum::serve(self.listener, app)
            .with_graceful_shutdown(until)
            .await
        {
            tracing::error!(error = %e, "metrics/health server stopped");
        }
    }
}

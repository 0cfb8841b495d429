//! The delay proxy of the latency benchmarks: a TCP proxy on 127.0.0.1 that
//! adds a fixed delay each way and counts the HTTP requests going through
//! it (by operation), and how many of them were on the critical path.
//!
//! Counting: the client -> server bytes of each connection are parsed as
//! HTTP/1.1 requests (request line, headers, `Content-Length` body; both
//! consumers send no chunked request bodies). A request's label is its AWS
//! operation (`X-Amz-Target` of the JSON protocol, `Action=` of a query
//! protocol body) or, for Chef, its method and path with the object name
//! replaced by `*` (`DELETE /clients/*`). A request is in flight from its
//! arrival at the proxy until the first bytes of its answer arrive from the
//! server. A **round trip** is a period in which at least one request to
//! this upstream was in flight: requests sent together (a node and a client
//! read at once) are one round trip, requests sent one after the other are
//! one each. With a single worker the round trips per termination are the
//! round trips on its critical path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What went through one proxy so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyCounts {
    /// HTTP requests.
    pub requests: u64,
    /// Periods with at least one request in flight (see the module doc).
    pub round_trips: u64,
    /// Requests by label (AWS operation, or Chef method and path).
    pub by_label: BTreeMap<String, u64>,
}

impl ProxyCounts {
    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &ProxyCounts) -> ProxyCounts {
        let mut by_label = self.by_label.clone();
        for (label, n) in &earlier.by_label {
            if let Some(v) = by_label.get_mut(label) {
                *v -= n;
            }
        }
        by_label.retain(|_, n| *n > 0);
        ProxyCounts {
            requests: self.requests - earlier.requests,
            round_trips: self.round_trips - earlier.round_trips,
            by_label,
        }
    }
}

#[derive(Default)]
struct Tally {
    counts: ProxyCounts,
    in_flight: usize,
}

/// The proxy's counters, shared by its connections.
#[derive(Default)]
struct Counter(Mutex<Tally>);

impl Counter {
    fn started(&self, label: String) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.counts.requests += 1;
        *t.counts.by_label.entry(label).or_default() += 1;
        if t.in_flight == 0 {
            t.counts.round_trips += 1;
        }
        t.in_flight += 1;
    }

    fn answered(&self, n: usize) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.in_flight = t.in_flight.saturating_sub(n);
    }

    fn snapshot(&self) -> ProxyCounts {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counts
            .clone()
    }
}

/// A TCP proxy on 127.0.0.1 that forwards to `upstream` and holds every
/// chunk of bytes for `one_way` in each direction (order kept), so an HTTP
/// request/response pair gets about 2 x `one_way` of added latency, as a
/// network round trip would. A long poll's answer gets `one_way`, the time
/// for the answer to travel back. Runs on the benchmark's runtime until
/// dropped.
pub struct DelayProxy {
    pub addr: std::net::SocketAddr,
    counter: Arc<Counter>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    pub async fn start(upstream: &str, one_way: Duration) -> DelayProxy {
        let url = url::Url::parse(upstream).expect("upstream URL");
        let upstream = format!(
            "{}:{}",
            url.host_str().expect("upstream host"),
            url.port_or_known_default().expect("upstream port")
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind delay proxy");
        let addr = listener.local_addr().expect("proxy address");
        let counter = Arc::new(Counter::default());
        let counting = counter.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let counter = counting.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let waiting = Arc::new(AtomicUsize::new(0));
                    let up = Watch::Requests {
                        counter: counter.clone(),
                        waiting: waiting.clone(),
                        parser: RequestParser::default(),
                    };
                    let down = Watch::Answers {
                        counter: counter.clone(),
                        waiting: waiting.clone(),
                    };
                    tokio::join!(pump(cr, sw, one_way, up), pump(sr, cw, one_way, down));
                    // A connection closed with requests unanswered.
                    counter.answered(waiting.swap(0, Ordering::SeqCst));
                });
            }
        });
        DelayProxy {
            addr,
            counter,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` plus the path of `upstream` (e.g. a Chef
    /// organization prefix).
    pub fn url_for(&self, upstream: &str) -> String {
        let url = url::Url::parse(upstream).expect("upstream URL");
        format!("http://{}{}", self.addr, url.path().trim_end_matches('/'))
    }

    /// What went through this proxy so far.
    pub fn counts(&self) -> ProxyCounts {
        self.counter.snapshot()
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a pump watches in the bytes it copies.
enum Watch {
    /// Client -> server: requests start.
    Requests {
        counter: Arc<Counter>,
        waiting: Arc<AtomicUsize>,
        parser: RequestParser,
    },
    /// Server -> client: the first bytes after a request answer it.
    Answers {
        counter: Arc<Counter>,
        waiting: Arc<AtomicUsize>,
    },
}

impl Watch {
    fn saw(&mut self, chunk: &[u8]) {
        match self {
            Watch::Requests {
                counter,
                waiting,
                parser,
            } => {
                for label in parser.feed(chunk) {
                    waiting.fetch_add(1, Ordering::SeqCst);
                    counter.started(label);
                }
            }
            Watch::Answers { counter, waiting } => {
                let answered = waiting
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| w.checked_sub(1))
                    .is_ok();
                if answered {
                    counter.answered(1);
                }
            }
        }
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    mut watch: Watch,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    watch.saw(&buf[..n]);
                    let due = tokio::time::Instant::now() + delay;
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

/// Splits a client's byte stream into HTTP/1.1 requests and labels each.
#[derive(Default)]
struct RequestParser {
    /// Bytes of a request head not complete yet.
    head: Vec<u8>,
    /// Body bytes of the current request still to come.
    body_left: usize,
    /// The current request's label, once known; else its body's start.
    label: Option<String>,
    body_start: Vec<u8>,
}

/// Bytes of a query-protocol body kept to find its `Action=`.
const BODY_PEEK: usize = 512;

impl RequestParser {
    /// Labels of the requests whose head (or, for a query-protocol body, the
    /// body) completed in `chunk`.
    fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut data = chunk;
        while !data.is_empty() {
            if self.body_left > 0 {
                let k = self.body_left.min(data.len());
                if self.label.is_none() && self.body_start.len() < BODY_PEEK {
                    self.body_start.extend_from_slice(&data[..k]);
                }
                self.body_left -= k;
                data = &data[k..];
                if self.body_left == 0 {
                    out.push(self.finish());
                }
                continue;
            }
            self.head.extend_from_slice(data);
            let Some(end) = find(&self.head, b"\r\n\r\n") else {
                break;
            };
            let rest = self.head.split_off(end + 4);
            let head = std::mem::take(&mut self.head);
            let (label, length) = parse_head(&head);
            self.label = label;
            self.body_start.clear();
            if length == 0 {
                out.push(self.finish());
            } else {
                self.body_left = length;
            }
            out.extend(self.feed(&rest));
            break;
        }
        out
    }

    fn finish(&mut self) -> String {
        self.label.take().unwrap_or_else(|| {
            let body = String::from_utf8_lossy(&self.body_start);
            body.split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .map_or_else(|| "?".to_string(), str::to_string)
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// (label, Content-Length) of a request head; no label yet for a
/// query-protocol (form) body, whose `Action=` names the operation.
fn parse_head(head: &[u8]) -> (Option<String>, usize) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or("?").to_string();
    let path = first.next().unwrap_or("?").to_string();
    let (mut length, mut target, mut form) = (0, None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "x-amz-target" => target = value.rsplit('.').next().map(str::to_string),
            "content-type" => form = value.starts_with("application/x-www-form-urlencoded"),
            _ => {}
        }
    }
    if let Some(op) = target {
        return (Some(op), length);
    }
    if form && length > 0 {
        return (None, length);
    }
    (Some(format!("{method} {}", chef_path(&path))), length)
}

/// `/organizations/ORG/nodes/NAME?x` -> `/nodes/*`; `/nodes` stays.
fn chef_path(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.first() == Some(&"organizations") && segments.len() >= 2 {
        segments.drain(..2);
    }
    if segments.len() >= 2 {
        segments.truncate(1);
        segments.push("*");
    }
    format!("/{}", segments.join("/"))
}

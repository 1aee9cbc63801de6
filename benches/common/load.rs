//! The load client the benchmarks share: keep-alive HTTP/1.1 connections over a unix socket,
//! each sending `GET /v1/credentials` back to back, and a bare hyper server that answers a
//! fixed body, the reference every figure is compared with.
#![allow(dead_code)] // each bench uses a different part

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};

/// One timed run of the load.
pub struct Run {
    pub requests: usize,
    pub seconds: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// The table cells `req/s | p50 µs | p99 µs | vs bare req/s | vs bare p99` of this run
    /// against `bare`'s.
    pub fn against(&self, bare: &Run) -> String {
        format!(
            "{:.0} | {} | {} | {:.2} | {:.2}",
            self.rate(),
            self.p50.as_micros(),
            self.p99.as_micros(),
            self.rate() / bare.rate(),
            self.p99.as_secs_f64() / bare.p99.as_secs_f64(),
        )
    }
}

/// A figure the bench's caller may set in the environment `name` (a longer run, more
/// clients), else `default`.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The run with the median rate, its latencies with it.
pub fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}

/// Answers every request on `path` with `body`, as cheaply as hyper allows.
pub async fn bare_server(path: PathBuf, body: Bytes) {
    let listener = UnixListener::bind(&path).expect("bare socket binds");
    loop {
        let (stream, _) = listener.accept().await.expect("bare accept");
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(body.clone()))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

pub async fn connect(path: &Path) -> Sender {
    let stream = UnixStream::connect(path).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// `GET /v1/credentials` on `sender`; panics unless the answer is a success.
pub async fn send(sender: &mut Sender) -> Bytes {
    let request = Request::get("/v1/credentials")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert!(response.status().is_success(), "{}", response.status());
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}

pub async fn get_once(path: &Path) -> Vec<u8> {
    send(&mut connect(path).await).await.to_vec()
}

/// `connections` clients, each sending requests back to back on one keep-alive connection.
pub async fn load(path: &Path, connections: usize, length: Duration) -> Run {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(connect(path).await);
    }
    let start = Instant::now();
    let deadline = start + length;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut sender| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    send(&mut sender).await;
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Run {
        requests: latencies.len(),
        seconds,
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// A `kB` line of `/proc/PID/status`.
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}

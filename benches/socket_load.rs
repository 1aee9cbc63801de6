//! Load on the socket API: requests/s and p50/p99 latency of `GET /v1/credentials` at 1, 16,
//! 64 and 256 keep-alive connections, beside a bare hyper server on a unix socket that answers
//! a fixed body of the same size, in the same run. The load client shares the machine's cores
//! with the servers, so only the ratio between the two is meaningful.
//!
//! The two servers take turns in short runs (several rounds per concurrency) and the medians
//! are reported, so drift in the machine's load hits both alike.
//!
//! `cargo bench --bench socket_load` (`SOCKET_BENCH_SECONDS`: length of one run, default 1;
//! `SOCKET_BENCH_ROUNDS`: runs per server and concurrency, default 5).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use imds_credd::clock::{SharedClock, SystemClock};
use imds_credd::config::{FileMode, SocketConfig};
use imds_credd::credentials::Credentials;
use imds_credd::health::SinkHealth;
use imds_credd::metrics::Metrics;
use imds_credd::secret::Secret;
use imds_credd::socket::{Api, ServerLimits, SocketServer};
use imds_credd::state::CredentialState;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];

struct Run {
    requests: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
}

fn main() {
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let length = Duration::from_secs(setting("SOCKET_BENCH_SECONDS", 1));
    let rounds = setting("SOCKET_BENCH_ROUNDS", 5) as usize;
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(bench(length, rounds));
}

async fn bench(length: Duration, rounds: usize) {
    let dir = tempfile::tempdir().expect("temp folder");
    let ours_path = dir.path().join("imds-credd.sock");
    let bare_path = dir.path().join("bare.sock");
    let shutdown = CancellationToken::new();

    let api = Arc::new(api_with_credentials());
    let config = SocketConfig {
        path: ours_path.clone(),
        mode: FileMode(0o600),
        group: None,
        allow_uids: Vec::new(),
        allow_gids: Vec::new(),
    };
    let server = SocketServer::open(&config).expect("socket opens");
    tokio::spawn(server.serve(Arc::clone(&api), ServerLimits::default(), shutdown.clone()));

    // The bare server answers the very bytes ours does, so both move the same amount.
    let body = Bytes::from(get_once(&ours_path).await);
    tokio::spawn(bare_server(bare_path.clone(), body.clone()));

    println!(
        "GET /v1/credentials, {} byte body, median of {rounds} alternating runs of {} s, {} cores",
        body.len(),
        length.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| connections | server | req/s | p50 µs | p99 µs | vs bare req/s | vs bare p99 |");
    println!("|---|---|---|---|---|---|---|");
    for connections in CONCURRENCY {
        let mut bare_runs = Vec::new();
        let mut our_runs = Vec::new();
        for _ in 0..rounds {
            bare_runs.push(load(&bare_path, connections, length).await);
            our_runs.push(load(&ours_path, connections, length).await);
        }
        let (bare, ours) = (median(bare_runs), median(our_runs));
        for (name, run) in [("bare hyper", &bare), ("imds-credd", &ours)] {
            println!(
                "| {connections} | {name} | {:.0} | {} | {} | {:.2} | {:.2} |",
                run.rate(),
                run.p50.as_micros(),
                run.p99.as_micros(),
                run.rate() / bare.rate(),
                run.p99.as_secs_f64() / bare.p99.as_secs_f64(),
            );
        }
    }
    shutdown.cancel();
}

/// The run with the median rate, its latencies with it.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}

impl Run {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

fn api_with_credentials() -> Api {
    let now = SystemTime::now();
    let creds = Credentials {
        access_key_id: "ASIABENCHMARKKEY0001".into(),
        secret_access_key: Secret::new("benchmarkSecretKey/0123456789+abcdefghijk".into()),
        session_token: Secret::new("IQoJb3JpZ2luX2VjE".repeat(60)),
        expiration: now + Duration::from_secs(6 * 3600),
    };
    let (sender, receiver) = tokio::sync::watch::channel(CredentialState::default());
    sender.send_replace(CredentialState {
        role: Some("bench-role".into()),
        credentials: Some(Arc::new(creds)),
        last_refresh: Some(now),
        next_refresh: Some(now + Duration::from_secs(5 * 3600)),
        last_error: None,
    });
    // The receiver keeps the last value after the sender is gone.
    drop(sender);
    let clock: SharedClock = Arc::new(SystemClock);
    Api::new(
        receiver,
        BTreeMap::new(),
        clock,
        Arc::new(Metrics::default()),
        SinkHealth::default(),
    )
}

async fn bare_server(path: PathBuf, body: Bytes) {
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

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(path: &Path) -> Sender {
    let stream = UnixStream::connect(path).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

async fn send(sender: &mut Sender) -> Bytes {
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

async fn get_once(path: &Path) -> Vec<u8> {
    send(&mut connect(path).await).await.to_vec()
}

/// `connections` clients, each sending requests back to back on one keep-alive connection.
async fn load(path: &Path, connections: usize, length: Duration) -> Run {
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

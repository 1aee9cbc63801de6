//! The Linux body of the bench; `../socket_load.rs` says what it measures.

#[path = "../common/load.rs"]
mod load;

use bytes::Bytes;
use imds_credd::clock::{SharedClock, SystemClock};
use imds_credd::config::{FileMode, SocketConfig};
use imds_credd::credentials::secret::Secret;
use imds_credd::credentials::Credentials;
use imds_credd::health::metrics::Metrics;
use imds_credd::health::SinkHealth;
use imds_credd::refresh::state::CredentialState;
use imds_credd::serve::{Api, ServerLimits, SocketServer};
use load::{bare_server, get_once, load, median, setting};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];

pub fn main() {
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
        allow_sids: Vec::new(),
        // The Api below has no rate limit; the server does not read this key.
        ..SocketConfig::default()
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
            println!("| {connections} | {name} | {} |", run.against(&bare));
        }
    }
    shutdown.cancel();
}

fn api_with_credentials() -> Api {
    let now = SystemTime::now();
    let creds = Credentials {
        access_key_id: "ASIABENCHMARKKEY0001".into(),
        secret_access_key: Secret::new("benchmarkSecretKey/0123456789+abcdefghijk".into()),
        session_token: Secret::new("IQoJb3JpZ2luX2VjE".repeat(60)),
        expiration: now + Duration::from_secs(6 * 3600),
        account_id: None,
    };
    let (sender, receiver) = tokio::sync::watch::channel(CredentialState::default());
    sender.send_replace(CredentialState {
        role: Some("bench-role".into()),
        credentials: Some(Arc::new(creds)),
        last_refresh: Some(now),
        next_refresh: Some(now + Duration::from_secs(5 * 3600)),
        last_error: None,
        clock_skew: None,
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

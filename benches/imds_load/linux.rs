//! The Linux body of the bench; `../imds_load.rs` says what it measures.

#[path = "../common/load.rs"]
mod load;

use imds_credd::clock::{Clock, ManualClock, SharedClock};
use imds_credd::config::{Config, FileMode};
use imds_credd::daemon;
use imds_credd::demo::simulator::{ImdsSimulator, RequestCounts, SimulatorOptions};
use imds_credd::health::metrics::Metrics;
use imds_credd::imds::{ImdsClient, ImdsSettings, RetryPolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const MINUTE: Duration = Duration::from_secs(60);

pub fn main() {
    let clients = load::setting("IMDS_BENCH_CLIENTS", 1000) as usize;
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (daemon, daemon_reads) = runtime.block_on(through_the_daemon(clients));
    let direct = runtime.block_on(each_client_to_imds(clients));
    println!("IMDS requests in one simulated hour, {clients} clients (`cargo bench --bench imds_load`):\n");
    println!("| clients get credentials from | IMDS requests | token PUTs | role lists | credential GETs |");
    println!("|---|---|---|---|---|");
    for (name, c) in [
        (format!("imds-credd socket ({daemon_reads} reads)"), daemon),
        ("IMDS directly, SDK-style".to_string(), direct),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            total(&c),
            c.token_puts,
            c.role_lists,
            c.credential_gets
        );
    }
    println!(
        "\nratio: {:.0}× fewer IMDS requests through the daemon",
        total(&direct) as f64 / total(&daemon) as f64
    );
}

fn total(c: &RequestCounts) -> usize {
    c.token_puts + c.role_lists + c.credential_gets + c.other_gets
}

/// The daemon in-process on a manual clock; every client keeps a connection to its socket
/// and reads once a simulated minute for an hour.
async fn through_the_daemon(clients: usize) -> (RequestCounts, usize) {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = ImdsSimulator::start(SimulatorOptions {
        clock: shared.clone(),
        ..SimulatorOptions::default()
    })
    .await
    .expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp folder");
    let mut config = Config::default();
    config.imds.endpoint = sim.endpoint();
    config.socket.path = dir.path().join("credentials.sock");
    config.socket.mode = FileMode(0o600);
    let daemon = daemon::start(&config, shared).await.expect("daemon starts");
    let mut state = daemon.instance_role.clone();
    state
        .wait_for(|s| s.credentials.is_some())
        .await
        .expect("first credentials");

    let mut senders = Vec::with_capacity(clients);
    for _ in 0..clients {
        senders.push(load::connect(&config.socket.path).await);
    }
    let started = Instant::now();
    let mut reads = 0;
    for _ in 0..60 {
        let due = state.borrow().next_refresh;
        clock.advance(MINUTE);
        if due.is_some_and(|at| at <= Clock::now(&clock)) {
            tokio::time::timeout(
                Duration::from_secs(10),
                state.wait_for(|s| s.next_refresh != due),
            )
            .await
            .expect("refresh within 10 s")
            .expect("daemon running");
        }
        let mut round = JoinSet::new();
        for mut sender in senders.drain(..) {
            round.spawn(async move {
                load::send(&mut sender).await;
                sender
            });
        }
        while let Some(sender) = round.join_next().await {
            senders.push(sender.expect("client"));
            reads += 1;
        }
    }
    eprintln!(
        "through the daemon: {reads} socket reads in {:.1} s real time",
        started.elapsed().as_secs_f64()
    );
    drop(senders);
    daemon.stop().await;
    (sim.counts(), reads)
}

/// Each client its own IMDS client, as each process with an SDK has: a token, the role
/// name, the credentials. At most 64 at a time, so the count is not muddied by refused
/// connections.
async fn each_client_to_imds(clients: usize) -> RequestCounts {
    let clock: SharedClock = Arc::new(ManualClock::starting_now());
    let sim = ImdsSimulator::start(SimulatorOptions {
        clock: clock.clone(),
        ..SimulatorOptions::default()
    })
    .await
    .expect("simulator starts");
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    let mut all = JoinSet::new();
    for _ in 0..clients {
        let settings = ImdsSettings {
            endpoint: sim.endpoint(),
            token_ttl: Duration::from_secs(21_600),
            timeout: Duration::from_secs(2),
            allow_imdsv1: false,
            retry: RetryPolicy::default(),
        };
        let client = ImdsClient::new(settings, clock.clone(), Arc::new(Metrics::default()))
            .expect("IMDS client");
        let permits = Arc::clone(&permits);
        all.spawn(async move {
            let _permit = permits.acquire().await.expect("semaphore");
            let role = client.role_name().await.expect("role").expect("a role");
            client
                .role_credentials(&role)
                .await
                .expect("credentials")
                .expect("role found")
        });
    }
    while let Some(done) = all.join_next().await {
        done.expect("client");
    }
    eprintln!(
        "directly: {clients} SDK-style fetches in {:.1} s real time",
        started.elapsed().as_secs_f64()
    );
    sim.counts()
}

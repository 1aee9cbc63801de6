//! The container endpoint against a local attacker, with the daemon run as its unit runs
//! it (an unprivileged uid holding exactly the unit's capabilities) and the attacker as
//! another uid: a flood of unauthenticated keep-alive connections does not starve a token
//! holder, and does not fill the log. Needs root and setpriv: skipped with one line
//! elsewhere, a failure in CI.
#![cfg(target_os = "linux")]

mod common;

use common::daemon_process::{clear_aws_variables, BIN};
use common::unit_user::{
    as_user, skip_unless_privileged, unit_capabilities, ATTACKER_UID, DAEMON_UID,
};
use imds_credd::simulator::{ImdsSimulator, SimulatorOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The attack of the issue: 256 keep-alive connections, an unauthenticated GET every 2 s.
const FLOOD_CONNECTIONS: u32 = 256;
const FLOOD_INTERVAL_SECS: f64 = 2.0;
const FLOOD_SECONDS: f64 = 12.0;
/// A token holder must be answered within this, every time, while the flood runs.
const MAX_LATENCY: Duration = Duration::from_secs(1);

/// The daemon as the unit runs it with `[container]` on a free loopback port, once it has
/// credentials; returns the child, the port and the token file.
fn start_daemon(dir: &Path, endpoint: &str) -> (Child, SocketAddr, std::path::PathBuf) {
    let run_dir = dir.join("run");
    std::fs::create_dir(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(DAEMON_UID), Some(DAEMON_UID)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let token_file = run_dir.join("container-token");
    let log_path = dir.join("daemon.log");
    let mut command = as_user(DAEMON_UID, &unit_capabilities(), BIN);
    command
        .args(["run", "--config", "/dev/null", "--imds-endpoint", endpoint])
        .arg("--socket")
        .arg(run_dir.join("credentials.sock"))
        .args([
            "--container-listen",
            "127.0.0.1:0",
            "--container-token-file",
        ])
        .arg(&token_file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    clear_aws_variables(&mut command);
    let mut daemon = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        let ready = log
            .lines()
            .find(|l| l.contains("container-credentials endpoint ready"))
            .and_then(|l| l.split("listen=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok());
        if let (Some(addr), true) = (ready, log.contains("published new credentials")) {
            break addr;
        }
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!("the daemon exited ({status}):\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "the endpoint never got ready:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (daemon, addr, token_file)
}

/// One `GET /v1/credentials` with the token on a new connection: status line and time.
fn fetch(addr: SocketAddr, token: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "GET /v1/credentials HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let outcome = stream.read_to_string(&mut answer);
    let took = started.elapsed();
    let status = match outcome {
        Ok(_) => answer.lines().next().unwrap_or("").to_string(),
        Err(error) => format!("no answer: {error}"),
    };
    (status, took)
}

#[test]
fn a_flood_of_unauthenticated_keep_alive_connections_neither_starves_a_token_holder_nor_fills_the_log(
) {
    if skip_unless_privileged("container_abuse flood") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(ImdsSimulator::start(SimulatorOptions::default()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, addr, token_file) = start_daemon(dir.path(), &sim.endpoint());
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(fetch(addr, &token).0, "HTTP/1.1 200 OK");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/container_flood.py");
    // The system interpreter: a per-user one (pyenv) is not the attacker's to run.
    let flood = as_user(ATTACKER_UID, &[], "/usr/bin/python3")
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(FLOOD_CONNECTIONS.to_string())
        .arg(FLOOD_INTERVAL_SECS.to_string())
        .arg(FLOOD_SECONDS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 runs as the attacker");
    // Let every flooding connection open before measuring.
    std::thread::sleep(Duration::from_secs(3));
    let mut latencies = Vec::new();
    let measuring_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < measuring_until {
        let (status, took) = fetch(addr, &token);
        assert_eq!(status, "HTTP/1.1 200 OK", "after {took:?} during the flood");
        latencies.push(took);
        std::thread::sleep(Duration::from_millis(100));
    }
    let flood = flood.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&flood.stdout).to_string();
    assert!(
        flood.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&flood.stderr)
    );
    let counts: Vec<u64> = report
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [answered, connects] = counts[..] else {
        panic!("the flood printed {report:?}")
    };
    latencies.sort();
    let worst = *latencies.last().unwrap();
    let median = latencies[latencies.len() / 2];
    println!(
        "token holder during the flood: {} requests, median {median:?}, worst {worst:?}; flood: {answered} refused answers, {connects} connections",
        latencies.len()
    );
    assert!(
        answered >= u64::from(FLOOD_CONNECTIONS),
        "the flood did run: {answered} answers on {connects} connections"
    );
    assert!(worst < MAX_LATENCY, "worst latency {worst:?}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    daemon.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    let refusal_lines = log
        .lines()
        .filter(|l| l.contains("refusing a container endpoint request"))
        .count();
    // One line per peer and reason per 10 s interval: the whole flood is a handful.
    let intervals = (FLOOD_SECONDS / 10.0).ceil() as usize + 1;
    println!("refusal log lines: {refusal_lines} for {answered} refusals");
    assert!(
        (1..=intervals).contains(&refusal_lines),
        "{refusal_lines} refusal lines"
    );
    assert!(
        log.contains("refused_since_last_line="),
        "the count is logged"
    );
    assert!(!log.contains(&token), "the token is logged");
    common::assert_no_secrets(&log, &sim, "the daemon's log");
}

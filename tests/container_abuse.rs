//! The container endpoint against a local attacker, with the daemon run as its unit runs
//! it (an unprivileged uid holding exactly the unit's capabilities) and the attacker as
//! another uid: a flood of unauthenticated keep-alive connections neither starves a token
//! holder nor fills the log, and a port taken first never stops the daemon. These need
//! root and setpriv: skipped with one line elsewhere, a failure in CI. Also the defence
//! against a taken port, systemd holding it: passed sockets are taken by name.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use common::daemon_process::{clear_aws_variables, run_args, BIN};
use common::reachable::reachable_binary;
use common::unit_user::{
    as_daemon_user, as_user, can_switch_users, local_flood_as_attacker, local_flood_report,
    unit_capabilities, ATTACKER_UID, DAEMON_UID,
};
use imds_credd::demo::simulator::{Fault, ImdsSimulator, SimulatorOptions, Target};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The attack of the issue: 256 keep-alive connections, an unauthenticated GET every 2 s.
const FLOOD_CONNECTIONS: u32 = 256;
const FLOOD_INTERVAL_SECS: f64 = 2.0;
const FLOOD_SECONDS: f64 = 12.0;
/// A token holder must be answered within this, every time, while the flood runs.
const MAX_LATENCY: Duration = Duration::from_secs(1);

/// The daemon as the unit runs it with `[container] listen = listen`, once it has
/// credentials; returns the child and its run folder (socket, token file) and log.
fn start_daemon(dir: &Path, endpoint: &str, listen: &str) -> (Daemon, PathBuf, PathBuf) {
    let (mut daemon, run_dir, log_path) = spawn_daemon(dir, endpoint, listen);
    wait_for("credentials", || {
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!("the daemon exited ({status}):\n{}", read(&log_path));
        }
        read(&log_path).contains("published new credentials")
    });
    (daemon, run_dir, log_path)
}

/// A daemon child that is killed if the test panics before [`stop`].
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Daemon {
    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.0.try_wait()
    }
}

/// [`start_daemon`] without waiting for anything.
fn spawn_daemon(dir: &Path, endpoint: &str, listen: &str) -> (Daemon, PathBuf, PathBuf) {
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(DAEMON_UID), Some(DAEMON_UID)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log_path = dir.join("daemon.log");
    let mut command = as_daemon_user(&unit_capabilities());
    command
        .arg(reachable_binary())
        .args(run_args(endpoint))
        .arg("--socket")
        .arg(run_dir.join("credentials.sock"))
        .args(["--container-listen", listen, "--container-token-file"])
        .arg(run_dir.join("container-token"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    clear_aws_variables(&mut command);
    (Daemon(command.spawn().unwrap()), run_dir, log_path)
}

/// The IMDS simulator, on a runtime of its own (the test thread blocks on children).
fn simulator() -> (tokio::runtime::Runtime, ImdsSimulator) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(ImdsSimulator::start(SimulatorOptions::default()))
        .unwrap();
    (runtime, sim)
}

/// Where the log says the container endpoint is ready.
fn ready_address(log_path: &Path) -> Option<SocketAddr> {
    read(log_path)
        .lines()
        .find(|l| l.contains("container-credentials endpoint ready"))
        .and_then(|l| l.split("listen=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Polls `check` for up to 20 s.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, and waits for the daemon to exit.
fn stop(mut daemon: Daemon) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    daemon.0.wait().unwrap();
}

/// `GET path` on the daemon's unix socket: the whole answer.
fn socket_get(socket: &Path, path: &str) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
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
    if !can_switch_users() {
        return;
    }
    let (_runtime, sim) = simulator();
    let dir = tempfile::tempdir().unwrap();
    let (daemon, run_dir, log_path) = start_daemon(dir.path(), &sim.endpoint(), "127.0.0.1:0");
    let addr = ready_address(&log_path).expect("the endpoint is ready");
    let token = read(&run_dir.join("container-token"));
    assert_eq!(fetch(addr, &token).0, "HTTP/1.1 200 OK");

    // A copy the attacker can read: the checkout may sit in a folder only its owner enters.
    let script = dir.path().join("container_flood.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/container_flood.py"),
        &script,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The system interpreter: a per-user one (pyenv) is not the attacker's to run.
    let flood = as_user(ATTACKER_UID)
        .arg("/usr/bin/python3")
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

    stop(daemon);
    let log = read(&log_path);
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

/// Another user binds the container port before the daemon starts: the daemon runs anyway
/// (socket and refreshes), `status` and `/metrics` say the endpoint cannot listen, the token
/// file of an earlier run is gone (SDKs would send it to the squatter), and the port is
/// taken at a retry once the squatter lets go.
#[test]
fn a_port_taken_by_another_user_never_stops_the_daemon_and_is_taken_once_free() {
    if !can_switch_users() {
        return;
    }
    let (_runtime, sim) = simulator();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let squat = "import socket, sys, time\n\
                 s = socket.socket()\n\
                 s.bind(('127.0.0.1', int(sys.argv[1])))\n\
                 s.listen()\n\
                 print('bound', flush=True)\n\
                 time.sleep(60)\n";
    let mut squatter = as_user(ATTACKER_UID)
        .arg("/usr/bin/python3")
        .args(["-c", squat, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 runs as the attacker");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(squatter.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "bound");

    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let token_file = run_dir.join("container-token");
    std::fs::write(&token_file, "a-token-from-an-earlier-run").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&token_file, Some(DAEMON_UID), Some(DAEMON_UID)).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let (daemon, _, log_path) = start_daemon(dir.path(), &sim.endpoint(), &listen);
    let socket = run_dir.join("credentials.sock");

    let status = std::process::Command::new(BIN)
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status_text.contains(&format!("cannot listen on {listen}")),
        "{status_text}"
    );
    let metrics = socket_get(&socket, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("imds_credd_sink_error{")
                && l.contains("container")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(socket_get(&socket, "/v1/credentials").starts_with("HTTP/1.1 200"));
    assert!(
        !token_file.exists(),
        "the old token file points at the squatter"
    );

    squatter.kill().unwrap();
    squatter.wait().unwrap();
    wait_for("the endpoint to take the freed port", || {
        ready_address(&log_path).is_some()
    });
    let token = read(&token_file);
    assert_eq!(token.len(), 64);
    let (answer, _) = fetch(ready_address(&log_path).unwrap(), &token);
    assert_eq!(answer, "HTTP/1.1 200 OK");
    stop(daemon);
    common::assert_no_secrets(&read(&log_path), &sim, "the daemon's log");
}

/// What `imds-credd.socket` and `imds-credd-container.socket` do together: systemd binds
/// both and passes them in any order, named (`LISTEN_FDNAMES`); the daemon takes each by
/// its name instead of binding (it would refuse to start on a unix path that answers, and
/// it is told another port for the endpoint) and serves on both.
#[test]
fn sockets_passed_by_systemd_are_taken_by_name() {
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::os::unix::process::CommandExt;
    let (_runtime, sim) = simulator();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("credentials.sock");
    let api = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let container = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = container.local_addr().unwrap();
    let token_file = dir.path().join("container-token");
    let log_path = dir.path().join("daemon.log");
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#)
        .arg(BIN)
        .args(run_args(&sim.endpoint()))
        .arg("--socket")
        .arg(&socket)
        .args([
            "--container-listen",
            "127.0.0.1:1",
            "--container-token-file",
        ])
        .arg(&token_file)
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "container:credentials")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    clear_aws_variables(&mut command);
    let (container_fd, api_fd) = (container.as_raw_fd(), api.as_raw_fd());
    // SAFETY: only async-signal-safe calls (fcntl, dup2) run between fork and exec, on fds
    // that are open: both listeners live until the child is spawned. Each is first copied
    // above 100, so placing one at 3 or 4 cannot close the other.
    unsafe {
        command.pre_exec(move || {
            let high = |fd, at| {
                nix::fcntl::fcntl(
                    BorrowedFd::borrow_raw(fd),
                    nix::fcntl::FcntlArg::F_DUPFD(at),
                )
            };
            let (container_copy, api_copy) = (high(container_fd, 100)?, high(api_fd, 110)?);
            std::mem::forget(nix::unistd::dup2_raw(
                BorrowedFd::borrow_raw(container_copy),
                3,
            )?);
            std::mem::forget(nix::unistd::dup2_raw(BorrowedFd::borrow_raw(api_copy), 4)?);
            Ok(())
        });
    }
    let mut daemon = Daemon(command.spawn().unwrap());
    wait_for("the endpoint on the passed socket", || {
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!("the daemon exited ({status}):\n{}", read(&log_path));
        }
        ready_address(&log_path).is_some() && read(&log_path).contains("published new credentials")
    });
    assert_eq!(ready_address(&log_path), Some(addr), "{}", read(&log_path));
    assert!(read(&log_path).contains("using the socket passed by systemd"));
    assert!(socket_get(&socket, "/healthz").starts_with("HTTP/1.1 200"));
    let (answer, _) = fetch(addr, &read(&token_file));
    assert_eq!(answer, "HTTP/1.1 200 OK");
    stop(daemon);
    common::assert_no_secrets(&read(&log_path), &sim, "the daemon's log");
}

/// What a flood printed (its first number: connections made), once it ended.
fn connections_made(flood: Child) -> u64 {
    local_flood_report(flood)[0]
}

/// The daemon as the unit with the container endpoint on a free loopback port, ready, and
/// the token its token holder presents.
struct Endpoint {
    daemon: Daemon,
    token: String,
    addr: SocketAddr,
    log_path: PathBuf,
    run_dir: PathBuf,
    dir: tempfile::TempDir,
    sim: ImdsSimulator,
    _runtime: tokio::runtime::Runtime,
}

impl Endpoint {
    /// `None` (the test skipped) when this machine cannot switch uids.
    fn start() -> Option<Endpoint> {
        if !can_switch_users() {
            return None;
        }
        let (runtime, sim) = simulator();
        let dir = tempfile::tempdir().unwrap();
        let (daemon, run_dir, log_path) = start_daemon(dir.path(), &sim.endpoint(), "127.0.0.1:0");
        let addr = ready_address(&log_path).expect("the endpoint is ready");
        let token = read(&run_dir.join("container-token"));
        Some(Endpoint {
            daemon,
            token,
            addr,
            log_path,
            run_dir,
            dir,
            sim,
            _runtime: runtime,
        })
    }
}

/// `count` runs of `local_flood.py MODE HOST PORT SECONDS` as the attacker against `addr`.
fn floods(dir: &Path, addr: SocketAddr, mode: &str, count: usize, seconds: &str) -> Vec<Child> {
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    (0..count)
        .map(|_| local_flood_as_attacker(dir, &[mode, &host, &port, seconds]))
        .collect()
}

/// Fetches `count` times on fresh connections (as SDKs do), asserting every one is a 200
/// within [`MAX_LATENCY`]; returns the median and the worst.
fn fetch_all(addr: SocketAddr, token: &str, count: usize) -> (Duration, Duration) {
    let mut latencies: Vec<Duration> = (0..count)
        .map(|attempt| {
            let (status, took) = fetch(addr, token);
            assert_eq!(status, "HTTP/1.1 200 OK", "fetch {attempt} after {took:?}");
            std::thread::sleep(Duration::from_millis(20));
            took
        })
        .collect();
    latencies.sort();
    let worst = *latencies.last().unwrap();
    assert!(worst < MAX_LATENCY, "worst latency {worst:?}");
    (latencies[count / 2], worst)
}

/// Three connection churners as another uid (issue #18: the token holder lost 3 of 100
/// fetches to resets, p95 over a second, and all 4 during the readiness window): they only
/// close their own silent connections now, and each holds at most its uid's share. The
/// token holder gets every answer, quickly.
#[test]
fn connection_churners_as_another_uid_never_cut_off_the_token_holder() {
    let Some(e) = Endpoint::start() else {
        return;
    };
    let (unattacked_median, unattacked_worst) = fetch_all(e.addr, &e.token, 100);
    println!("token holder unattacked: 100 of 100, median {unattacked_median:?}, worst {unattacked_worst:?}");
    let churners = floods(e.dir.path(), e.addr, "churn-tcp", 3, "8");
    std::thread::sleep(Duration::from_secs(1));
    let (median, worst) = fetch_all(e.addr, &e.token, 100);
    let connects: u64 = churners.into_iter().map(connections_made).sum();
    println!("token holder beside 3 churners: 100 of 100, median {median:?}, worst {worst:?}; churners: {connects} connections");
    assert!(connects > 1000, "the churners ran: {connects} connections");
    stop(e.daemon);
    common::assert_no_secrets(&read(&e.log_path), &e.sim, "the daemon's log");
}

/// Connect-and-reset in a loop (issue #18: 184,176 log lines in 8 s, past journald's rate
/// limit): the peers are closed at once, counted, and the log gets a handful of lines;
/// the token holder is served meanwhile.
#[test]
fn connect_and_reset_in_a_loop_neither_floods_the_log_nor_blocks_the_token_holder() {
    let Some(e) = Endpoint::start() else {
        return;
    };
    let lines_before = read(&e.log_path).lines().count();
    let resetters = floods(e.dir.path(), e.addr, "reset-tcp", 2, "5");
    std::thread::sleep(Duration::from_millis(500));
    let (median, worst) = fetch_all(e.addr, &e.token, 40);
    let resets: u64 = resetters.into_iter().map(connections_made).sum();
    let metrics = socket_get(&e.run_dir.join("credentials.sock"), "/metrics");
    let lines = read(&e.log_path).lines().count() - lines_before;
    println!("token holder beside 2 resetters: 40 of 40, median {median:?}, worst {worst:?}; {resets} resets, {lines} log lines");
    assert!(resets > 1000, "the resetters ran: {resets} connections");
    assert!(lines < 20, "{lines} log lines:\n{}", read(&e.log_path));
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "imds_credd_connections_closed_total{server=\"container\",reason=\"vanished\"}"
        ) && !l.ends_with(" 0")),
        "the resets are counted:\n{metrics}"
    );
    stop(e.daemon);
}

/// The readiness window (issue #18: 0 of 4 fetches answered while three churners ran):
/// IMDS answers the daemon's first token request only after 2 s, so the token holder's
/// requests wait for the first refresh while the churners run. Each is answered 200 once
/// the credentials arrive; none is closed for a churner's connection.
#[test]
fn the_token_holder_is_answered_during_the_readiness_window_beside_churners() {
    if !can_switch_users() {
        return;
    }
    let (_runtime, sim) = simulator();
    sim.inject(Target::Token, Fault::Delay(Duration::from_secs(2)), 1);
    let dir = tempfile::tempdir().unwrap();
    let (daemon, run_dir, log_path) = spawn_daemon(dir.path(), &sim.endpoint(), "127.0.0.1:0");
    wait_for("the endpoint", || ready_address(&log_path).is_some());
    let addr = ready_address(&log_path).unwrap();
    let token = read(&run_dir.join("container-token"));
    let churners = floods(dir.path(), addr, "churn-tcp", 3, "4");
    assert!(
        !read(&log_path).contains("published new credentials"),
        "the window is open"
    );
    let fetches: Vec<_> = (0..4)
        .map(|_| {
            let token = token.clone();
            std::thread::spawn(move || fetch(addr, &token))
        })
        .collect();
    for fetch in fetches {
        let (status, took) = fetch.join().unwrap();
        println!("token holder in the readiness window: {status} after {took:?}");
        assert_eq!(status, "HTTP/1.1 200 OK", "after {took:?}");
        // The wait for the first refresh (at most 3 s), not a retry.
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
    for churner in churners {
        assert!(connections_made(churner) > 0);
    }
    stop(daemon);
}

/// TIME_WAIT rows another user made (issue #18: 131,072 of them took container fetches from
/// 7 ms to 225 ms median and the socket's from 0.3 ms to 147 ms, since each container
/// request read all of `/proc/net/tcp` on an async worker): the peer's uid is one netlink
/// lookup now, whatever the table holds.
#[test]
fn a_full_tcp_table_costs_the_token_holder_and_the_socket_nothing() {
    const ROWS: u64 = 60_000;
    let Some(e) = Endpoint::start() else {
        return;
    };
    let socket = e.run_dir.join("credentials.sock");
    let socket_times = |count: usize| -> (Duration, Duration) {
        let mut times: Vec<Duration> = (0..count)
            .map(|_| {
                let started = Instant::now();
                let answer = socket_get(&socket, "/v1/credentials");
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                started.elapsed()
            })
            .collect();
        times.sort();
        (times[count / 2], times[count - 1])
    };
    let before = (fetch_all(e.addr, &e.token, 40), socket_times(40));
    let made = connections_made(local_flood_as_attacker(
        e.dir.path(),
        &["timewait", &ROWS.to_string()],
    ));
    let rows = read(Path::new("/proc/net/tcp")).lines().count() as u64;
    let after = (fetch_all(e.addr, &e.token, 40), socket_times(40));
    println!(
        "unattacked: container median {:?} worst {:?}, socket median {:?} worst {:?}",
        before.0 .0, before.0 .1, before.1 .0, before.1 .1
    );
    println!("{rows} rows in /proc/net/tcp ({made} TIME_WAIT made): container median {:?} worst {:?}, socket median {:?} worst {:?}", after.0 .0, after.0 .1, after.1 .0, after.1 .1);
    assert!(rows > ROWS / 2, "the table was filled: {rows} rows");
    assert!(after.1 .1 < MAX_LATENCY, "socket worst {:?}", after.1 .1);
    stop(e.daemon);
}

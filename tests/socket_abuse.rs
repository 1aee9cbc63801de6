//! Socket abuse against the real daemon binary: 1,000 hostile connections at once (idle,
//! half a request line, garbage, oversized heads) and, when run as root, a refused peer
//! (uid 65534) hammering the API, while a good client reads its credentials. The daemon
//! must keep answering the good client, stay small, drop the stuck connections on its own
//! within the header timeout, and log no secret. The daemon is a child process so its
//! memory (`VmRSS`) and descriptors (`/proc/PID/fd`) are its own.
//!
//! Latencies are printed, not asserted (the machine is shared); the only time bound is
//! that every good request is answered within [`ANSWER_BOUND`].
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;
use common::unix_http;

use common::assert_no_secrets;
use common::daemon_process::Sandbox;
use common::reachable::reachable;
use imds_credd::credentials::Credentials;
use imds_credd::demo::simulator::SimulatorOptions;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::geteuid;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Hostile connections held open at once, split evenly over the [`Abuse`] kinds.
const ABUSERS: usize = 1000;
/// Sequential good requests, each on a fresh connection, made while the abuse is on.
const GOOD_REQUESTS: usize = 200;
/// Every good request must be answered within this, however loaded the machine is.
const ANSWER_BOUND: Duration = Duration::from_secs(5);
/// The daemon's header timeout (`ServerLimits::default()`, not configurable): stuck
/// connections must be gone this long after they connected, plus [`DROP_MARGIN`].
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DROP_MARGIN: Duration = Duration::from_secs(3);
/// How far RSS may rise above its pre-abuse figure while under abuse. At most 1,024
/// connections are held at once; if each filled hyper's read buffer to the 16 KiB head
/// limit that is 16 MiB, plus 8 MiB for tasks, connection state and allocator slack.
/// Measured (debug build): about 13 MiB over a 17 MiB idle daemon, allocator retention
/// included. Growth per connection beyond ~24 KiB fails it.
const PEAK_RSS_GROWTH_KIB: u64 = 24 * 1024;
/// Rounds of abuse. glibc keeps freed connection buffers in its per-thread arenas, so RSS
/// does not fall back to the pre-abuse figure; it climbs for the first round or two, then
/// stays (measured after each of five rounds: 24.8, 28.3, 28.3, 28.4, 28.4 MiB). The last
/// round must not add to the one before: that is the leak check.
const ROUNDS: usize = 3;
/// RSS after the last round may exceed RSS after the one before by this much (measured:
/// 0.1 to 1.8 MiB as the arenas settle). Keeping one 8 KiB read buffer per stuck
/// connection would add 4 MiB per round and fail it; smaller leaks need more rounds than
/// this test's time allows.
const RSS_REPEAT_SLACK_KIB: u64 = 3 * 1024;
/// Descriptors the daemon may hold after the abuse beyond its pre-abuse count: its pooled
/// IMDS connection may be open or not at either moment.
const FD_SLACK: usize = 2;
/// The uid of the refused peer (`nobody`).
const NOBODY: u32 = 65534;
/// A uid the daemon allows, so that [`NOBODY`] is not allowed (root always is).
const ALLOWED_UID: &str = "4242";
/// Descriptors this test process needs: the abusers, the good client, the hammer's pipes.
const FDS_NEEDED: u64 = ABUSERS as u64 + 128;

/// What a hostile connection sends before it stops and waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abuse {
    /// Connects and sends nothing.
    Idle,
    /// Half a request line, never finished.
    PartialRequestLine,
    /// Bytes that are not HTTP.
    Garbage,
    /// A head over the 16 KiB limit.
    OversizedHead,
}

const KINDS: [Abuse; 4] = [
    Abuse::Idle,
    Abuse::PartialRequestLine,
    Abuse::Garbage,
    Abuse::OversizedHead,
];

impl Abuse {
    fn payload(self, index: usize) -> Vec<u8> {
        match self {
            Abuse::Idle => Vec::new(),
            Abuse::PartialRequestLine => b"GET /v1/credent".to_vec(),
            Abuse::Garbage => garbage(index),
            Abuse::OversizedHead => {
                let mut head =
                    b"GET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nX-Pad: ".to_vec();
                head.resize(head.len() + 20 * 1024, b'a');
                head.extend_from_slice(b"\r\n\r\n");
                head
            }
        }
    }

    /// The status line the daemon answers with, for the kinds it answers at once.
    fn expected_status(self) -> Option<&'static str> {
        match self {
            Abuse::Idle | Abuse::PartialRequestLine => None,
            Abuse::Garbage => Some("HTTP/1.1 400"),
            Abuse::OversizedHead => Some("HTTP/1.1 431"),
        }
    }

    /// Connections the daemon holds until the header timeout.
    fn is_stuck(self) -> bool {
        self.expected_status().is_none()
    }
}

/// 256 pseudo-random bytes (xorshift seeded by `index`), starting with a control byte so
/// they can never begin a valid method, then a blank line so the parser sees a whole head.
fn garbage(index: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ index as u64;
    let mut bytes = vec![0x01];
    for _ in 0..256 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push(state as u8);
    }
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes
}

/// One field of `/proc/PID/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Samples the daemon's RSS every few milliseconds until dropped, keeping the highest.
struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak_kib, stop) = (Arc::clone(&peak_kib), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak_kib.fetch_max(proc_status_kib(pid, "VmRSS"), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssSampler {
            peak_kib,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the highest RSS seen.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak_kib.load(Ordering::Relaxed)
    }
}

/// Raises this process's soft open-files limit to fit the abusers, or says why it cannot.
fn make_room_for_abusers() -> Result<(), String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= FDS_NEEDED {
        return Ok(());
    }
    if hard < FDS_NEEDED {
        return Err(format!(
            "the hard open-files limit is {hard}, this test needs {FDS_NEEDED}"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, FDS_NEEDED, hard)
        .map_err(|e| format!("cannot raise the open-files limit to {FDS_NEEDED}: {e}"))
}

/// A child process (this test binary again, running `child_hammer`) under uid
/// [`NOBODY`], sending `GET /v1/credentials` in a loop until its stdin closes.
struct Hammer {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Hammer {
    /// Starts the hammer and returns once it has been refused at least once.
    fn start(socket: &Path) -> Hammer {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(reachable(&std::env::current_exe().unwrap()))
            .args([
                "child_hammer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SOCKET_ABUSE_CHILD_PATH", socket)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!(
                    "the hammer ended before its first answer ({})",
                    child.wait().unwrap()
                );
            }
            // libtest prints the test's name on the same line.
            if let Some((_, status)) = line.split_once("HAMMER FIRST ") {
                assert_eq!(status.trim(), "403", "the hammer's first answer");
                break;
            }
        }
        Hammer { child, stdout }
    }

    /// Stops the hammer; returns (refused with 403, any other outcome).
    fn finish(mut self) -> (u64, u64) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        assert!(
            self.child.wait().unwrap().success(),
            "the hammer failed: {rest}"
        );
        let totals = rest
            .lines()
            .find_map(|l| l.strip_prefix("HAMMER TOTAL "))
            .unwrap_or_else(|| panic!("the hammer printed no totals: {rest}"));
        let mut numbers = totals.split(' ').map(|n| n.parse::<u64>().unwrap());
        (numbers.next().unwrap(), numbers.next().unwrap())
    }
}

/// Not a test of its own: the child half of [`Hammer`]. Prints its first status, then its
/// totals once its stdin closes (or after 25 s, so it can never outlive the test long).
#[tokio::test]
#[ignore = "run by the abuse test in a child process under another uid"]
async fn child_hammer() {
    let path = std::env::var("SOCKET_ABUSE_CHILD_PATH").expect("run by Hammer::start");
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::Relaxed);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(25);
    let (mut refused, mut other) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let status =
            match unix_http::request(Path::new(&path), hyper::Method::GET, "/v1/credentials").await
            {
                Ok(answer) => answer.status,
                Err(_) => 0,
            };
        if refused + other == 0 {
            println!("HAMMER FIRST {status}");
        }
        if status == 403 {
            refused += 1;
        } else {
            other += 1;
        }
    }
    println!("HAMMER TOTAL {refused} {other}");
}

/// The good client: `GET /v1/credentials` on a fresh connection; the latency and the
/// credentials it got.
async fn good_request(socket: &Path) -> (Duration, Credentials) {
    let started = Instant::now();
    let answer = tokio::time::timeout(ANSWER_BOUND, unix_http::get(socket, "/v1/credentials"))
        .await
        .unwrap_or_else(|_| panic!("a good request was not answered within {ANSWER_BOUND:?}"));
    let latency = started.elapsed();
    assert_eq!(answer.status, 200, "a good request: {}", answer.body);
    let creds = Credentials::from_process_json(answer.body.as_bytes())
        .unwrap_or_else(|e| panic!("a good request got no credentials ({e})"));
    (latency, creds)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// What one round of abuse measured.
struct Round {
    latencies: Vec<Duration>,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    fds_during: usize,
    fds_after: usize,
    stuck_dropped_after: Duration,
    /// (403 answers, anything else) seen by the refused peer, when run as root.
    hammered: Option<(u64, u64)>,
}

/// The daemon under test and what every round compares against.
struct Target<'a> {
    sandbox: &'a Sandbox,
    pid: u32,
    client: tokio::runtime::Runtime,
    expected: Credentials,
    fds_before: usize,
    as_root: bool,
}

impl Target<'_> {
    fn good_request(&self) -> Duration {
        let (latency, creds) = self.client.block_on(good_request(&self.sandbox.socket));
        assert_eq!(creds, self.expected, "a good request got other credentials");
        latency
    }

    /// Opens the abusers (and the refused peer), serves the good client meanwhile, waits for
    /// the daemon to drop the stuck connections by itself, then closes the abusers.
    fn abuse_round(&self) -> Round {
        let (socket, pid) = (&self.sandbox.socket, self.pid);
        let sampler = RssSampler::start(pid);
        let mut abusers: Vec<(Abuse, UnixStream)> = (0..ABUSERS)
            .map(|index| {
                let kind = KINDS[index % KINDS.len()];
                let mut stream = UnixStream::connect(socket).unwrap();
                stream.write_all(&kind.payload(index)).unwrap();
                (kind, stream)
            })
            .collect();
        let abuse_started = Instant::now();
        let stuck = abusers.iter().filter(|(kind, _)| kind.is_stuck()).count();
        // The abuse is real only if the daemon is holding the stuck connections.
        self.sandbox.wait_until(
            "the daemon to hold every stuck connection",
            Duration::from_secs(5),
            || open_fds(pid) >= self.fds_before + stuck,
        );
        let fds_during = open_fds(pid);
        let hammer = self.as_root.then(|| Hammer::start(socket));

        let mut latencies: Vec<Duration> =
            (0..GOOD_REQUESTS).map(|_| self.good_request()).collect();
        latencies.sort();
        let hammered = hammer.map(Hammer::finish);

        // Garbage and oversized heads were answered and closed at once.
        for (kind, stream) in &mut abusers {
            let Some(status) = kind.expected_status() else {
                continue;
            };
            stream.set_read_timeout(Some(ANSWER_BOUND)).unwrap();
            let mut answer = Vec::new();
            // The daemon closes with part of an oversized head unread, so the read after its
            // answer fails with a reset; the answer is in `answer` all the same.
            let _ = stream.read_to_end(&mut answer);
            assert!(
                answer.starts_with(status.as_bytes()),
                "{kind:?} answered with {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(40)])
            );
        }
        // With every abuser still connected on our side, the daemon drops the stuck ones.
        let drop_within = (HEADER_TIMEOUT + DROP_MARGIN).saturating_sub(abuse_started.elapsed());
        self.sandbox.wait_until(
            "the daemon to drop the stuck connections",
            drop_within,
            || open_fds(pid) <= self.fds_before + FD_SLACK,
        );
        let stuck_dropped_after = abuse_started.elapsed();
        let fds_after = open_fds(pid);
        drop(abusers);
        let rss_peak_kib = sampler.finish();

        self.good_request();
        // The daemon gives freed memory back once a second (`daemon::memory`): sample after
        // that has happened, not at a moment that may fall before it.
        std::thread::sleep(Duration::from_millis(1500));
        Round {
            latencies,
            rss_peak_kib,
            rss_after_kib: proc_status_kib(pid, "VmRSS"),
            fds_during,
            fds_after,
            stuck_dropped_after,
            hammered,
        }
    }
}

impl Round {
    fn print(&self, name: &str, rss_before_kib: u64, fds_before: usize) {
        let (p50, p99) = (
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.99),
        );
        println!(
            "{name}: good client ({GOOD_REQUESTS} requests beside {ABUSERS} abusers): p50 {p50:?}, p99 {p99:?}, max {:?}",
            self.latencies.last().unwrap()
        );
        println!(
            "{name}: daemon RSS before {}, peak during {}, after {}",
            mib(rss_before_kib),
            mib(self.rss_peak_kib),
            mib(self.rss_after_kib)
        );
        println!(
            "{name}: daemon fds before {fds_before}, during {}, after {} (stuck connections dropped {:?} after they connected)",
            self.fds_during, self.fds_after, self.stuck_dropped_after
        );
        match self.hammered {
            Some((refused, other)) => {
                println!("{name}: refused peer uid {NOBODY}: {refused} answers 403, {other} other");
                assert!(
                    refused > 0 && other == 0,
                    "the refused peer got {other} non-403 answers"
                );
            }
            None => println!("{name}: refused-peer hammer skipped (not running as root)"),
        }
        assert!(
            self.rss_peak_kib <= rss_before_kib + PEAK_RSS_GROWTH_KIB,
            "{name}: RSS under abuse reached {} from {}",
            mib(self.rss_peak_kib),
            mib(rss_before_kib)
        );
    }
}

#[test]
fn a_thousand_abusive_connections_leave_good_clients_served_and_nothing_leaked() {
    if let Err(reason) = make_room_for_abusers() {
        let _ = common::require::unavailable(&reason);
        return;
    }
    let as_root = geteuid().is_root();
    // As root the refused peer is a child under `nobody`: the daemon must let it reach the
    // socket (mode 0666 in an open folder) and allow someone else, since root always is.
    let daemon_args: &[&str] = if as_root {
        &[
            "--socket-mode",
            "0666",
            "--allow-uid",
            ALLOWED_UID,
            "--log-level",
            "debug",
        ]
    } else {
        &["--log-level", "debug"]
    };
    let mut sandbox = Sandbox::simulator(SimulatorOptions::default());
    std::fs::set_permissions(sandbox.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    sandbox.start_daemon(daemon_args);
    let mut target = Target {
        sandbox: &sandbox,
        pid: sandbox.daemon_pid(),
        client: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        expected: sandbox.current(),
        fds_before: 0,
        as_root,
    };
    // Warm up (the first answers fill caches), then take the baseline.
    for _ in 0..GOOD_REQUESTS {
        target.good_request();
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = proc_status_kib(target.pid, "VmRSS");
    target.fds_before = open_fds(target.pid);

    let mut rounds: Vec<Round> = Vec::new();
    for number in 1..=ROUNDS {
        let before = rounds.last().map_or(rss_before, |r| r.rss_after_kib);
        let round = target.abuse_round();
        round.print(&format!("round {number}"), before, target.fds_before);
        rounds.push(round);
    }
    println!(
        "daemon VmHWM (peak RSS of its whole life): {}",
        mib(proc_status_kib(target.pid, "VmHWM"))
    );
    let [.., previous, last] = rounds.as_slice() else {
        unreachable!("ROUNDS is at least 2")
    };
    assert!(
        last.rss_after_kib <= previous.rss_after_kib + RSS_REPEAT_SLACK_KIB,
        "RSS grew from {} to {} in the last round of abuse",
        mib(previous.rss_after_kib),
        mib(last.rss_after_kib)
    );
    let log = sandbox.daemon_log();
    if as_root {
        assert!(
            log.lines()
                .any(|l| l.contains("refusing a socket peer")
                    && l.contains(&format!("uid={NOBODY}"))),
            "the refused peer is not in the daemon's log"
        );
    }
    assert_no_secrets(&log, &sandbox.sim, "the daemon's log");
}

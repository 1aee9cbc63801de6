//! The Linux body of the bench; `../daemon_process.rs` says what it measures.

#[path = "../common/load.rs"]
mod load;

use bytes::Bytes;
use imds_credd::demo::simulator::{ImdsSimulator, SimulatorOptions};
use load::{get_once, load, median, rss_kib, setting};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imds-credd");
const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];
/// 256-connection runs after the table, to tell a leak from memory kept for reuse.
const MORE_RUNS: usize = 8;
/// Set in the child that serves as the bare reference: its socket path, then its body file.
const BARE_SOCKET_ENV: &str = "DAEMON_BENCH_BARE_SOCKET";
const BARE_BODY_ENV: &str = "DAEMON_BENCH_BARE_BODY";

pub fn main() {
    if let Ok(socket) = std::env::var(BARE_SOCKET_ENV) {
        return bare_child(PathBuf::from(socket));
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(bench());
}

/// The bare reference server, on the daemon's runtime shape (two workers).
fn bare_child(socket: PathBuf) {
    let body = std::fs::read(std::env::var(BARE_BODY_ENV).expect("body file")).expect("body");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(load::bare_server(socket, Bytes::from(body)));
}

async fn bench() {
    let sim = ImdsSimulator::start(SimulatorOptions::default())
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp folder");
    let size = std::fs::metadata(BIN).expect("binary").len();
    let command = "`cargo bench --bench daemon_process`";
    // The figures, as markdown rows of one table, printed before the load table.
    let mut rows = vec![format!(
        "| Size of the binary the benches run (`test-util` on, as for every bench) | {:.2} MiB ({size} bytes, {}) | | {command} |",
        size as f64 / 1048576.0,
        stripped(BIN)
    )];

    // Start to first publish: spawn, read stderr until the refresher says it published.
    let starts = setting("DAEMON_BENCH_STARTS", 11) as usize;
    let mut times = Vec::with_capacity(starts);
    for n in 0..starts {
        let folder = dir.path().join(format!("start-{n}"));
        let (daemon, elapsed) = Daemon::spawn(&folder, &sim.endpoint());
        times.push(elapsed);
        daemon.stop();
    }
    times.sort_unstable();
    rows.push(format!(
        "| Start to first publish (spawn → `published new credentials`), {starts} starts | median {:.1} ms (min {:.1}, max {:.1}) | | {command} |",
        ms(times[starts / 2]),
        ms(times[0]),
        ms(times[starts - 1])
    ));

    let (daemon, _) = Daemon::spawn(&dir.path().join("load"), &sim.endpoint());
    let body = get_once(&daemon.socket).await;
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, &body).expect("body file");
    let bare_socket = dir.path().join("bare.sock");
    let bare = Command::new(std::env::current_exe().expect("this bench"))
        .env(BARE_SOCKET_ENV, &bare_socket)
        .env(BARE_BODY_ENV, &body_file)
        .spawn()
        .expect("bare server starts");
    wait_for_socket(&bare_socket);
    let bare_pid = bare.id();
    let reference = get_once(&bare_socket).await;
    assert_eq!(reference.len(), body.len());

    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.push(rss_row(
        "RSS idle, after the first publish",
        &[rss_kib(daemon.pid(), "VmRSS")],
        rss_kib(bare_pid, "VmRSS"),
        command,
    ));

    let length = Duration::from_secs(setting("DAEMON_BENCH_SECONDS", 1));
    let rounds = setting("DAEMON_BENCH_ROUNDS", 3) as usize;
    let mut table = vec![
        format!(
            "`GET /v1/credentials`, {} byte body, median of {rounds} alternating runs of {} s per server ({command}):",
            body.len(),
            length.as_secs()
        ),
        String::new(),
        "| connections | server | req/s | p50 µs | p99 µs | vs bare req/s | vs bare p99 | peak RSS MiB |".into(),
        "|---|---|---|---|---|---|---|---|".into(),
    ];
    for connections in CONCURRENCY {
        let (mut bare_runs, mut our_runs) = (Vec::new(), Vec::new());
        let (mut bare_peak, mut our_peak) = (0, 0);
        for _ in 0..rounds {
            let (run, peak) = sampled(bare_pid, load(&bare_socket, connections, length)).await;
            bare_runs.push(run);
            bare_peak = bare_peak.max(peak);
            let (run, peak) =
                sampled(daemon.pid(), load(&daemon.socket, connections, length)).await;
            our_runs.push(run);
            our_peak = our_peak.max(peak);
        }
        let (bare_run, ours) = (median(bare_runs), median(our_runs));
        for (name, run, peak) in [
            ("bare hyper", &bare_run, bare_peak),
            ("imds-credd", &ours, our_peak),
        ] {
            table.push(format!(
                "| {connections} | {name} | {} | {:.2} |",
                run.against(&bare_run),
                mib(peak),
            ));
        }
        if connections == 256 {
            rows.push(rss_row(
                "RSS peak under 256 connections",
                &[our_peak],
                bare_peak,
                command,
            ));
        }
    }
    // The allocator gives freed memory back within a few seconds of a load's end.
    tokio::time::sleep(SETTLE).await;
    rows.push(rss_row(
        &format!("RSS {} s after the load table", SETTLE.as_secs()),
        &[rss_kib(daemon.pid(), "VmRSS")],
        rss_kib(bare_pid, "VmRSS"),
        command,
    ));
    // Memory the allocator kept after the peak is not a leak if more of the same load does
    // not add to it.
    let mut after = Vec::new();
    for _ in 0..MORE_RUNS {
        load(&daemon.socket, 256, length).await;
        tokio::time::sleep(SETTLE).await;
        after.push(rss_kib(daemon.pid(), "VmRSS"));
    }
    rows.push(rss_row(
        &format!(
            "RSS {} s after each of {MORE_RUNS} more 256-connection runs (a leak would climb)",
            SETTLE.as_secs()
        ),
        &after,
        rss_kib(bare_pid, "VmRSS"),
        command,
    ));
    println!("| What | imds-credd | bare hyper, same run | Command |");
    println!("|---|---|---|---|");
    for row in rows.iter().chain([&String::new()]).chain(&table) {
        println!("{row}");
    }
    let _ = kill(Pid::from_raw(bare_pid as i32), Signal::SIGKILL);
    let mut bare = bare;
    let _ = bare.wait();
    daemon.stop();
}

/// The real daemon, started with a config that points at the simulator.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    /// Spawns it and returns once it logged its first publish, with the time that took.
    fn spawn(folder: &Path, endpoint: &str) -> (Daemon, Duration) {
        std::fs::create_dir_all(folder).expect("folder");
        let socket = folder.join("credentials.sock");
        let config = folder.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[imds]\nendpoint = {endpoint:?}\n\n[socket]\npath = {:?}\nmode = \"0600\"\n\n\
                 [[file]]\npath = {:?}\nprofile = \"instance\"\n\n[log]\nlevel = \"info\"\n",
                socket,
                folder.join("credentials"),
            ),
        )
        .expect("config");
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = Vec::new();
        let elapsed = loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("published new credentials") => {
                    break started.elapsed()
                }
                Some(Ok(line)) => seen.push(line),
                _ => panic!("the daemon stopped before publishing:\n{}", seen.join("\n")),
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        (Daemon { child, socket }, elapsed)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never answered",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `work` while a thread samples `pid`'s VmRSS every 20 ms; returns the highest.
async fn sampled<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (T, u64) {
    let running = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&running);
    let sampler = std::thread::spawn(move || {
        let mut peak = rss_kib(pid, "VmRSS");
        while flag.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid, "VmRSS"));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let out = work.await;
    running.store(false, Ordering::Relaxed);
    (out, sampler.join().expect("sampler"))
}

fn stripped(path: &str) -> &'static str {
    let out = Command::new("file").arg(path).output();
    match out {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("not stripped") => "not stripped",
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("stripped") => "stripped",
        _ => "stripped or not: `file` unavailable",
    }
}

/// How long after a load RSS is read: the daemon trims its heap every second.
const SETTLE: Duration = Duration::from_secs(2);

/// A markdown row: `what`, our RSS figures (MiB), the bare server's beside them.
fn rss_row(what: &str, ours: &[u64], bare: u64, command: &str) -> String {
    let ours: Vec<String> = ours.iter().map(|&kib| format!("{:.2}", mib(kib))).collect();
    format!(
        "| {what} | {} MiB | {:.2} MiB | {command} |",
        ours.join(", "),
        mib(bare)
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

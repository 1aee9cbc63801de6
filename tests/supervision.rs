//! Never silently dead: a daemon task that ends or panics takes the process down with a
//! non-zero exit at once (so `Restart=on-failure` acts), naming the task and never quoting
//! the panic message; and the answer that used to panic the refresher no longer does.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use common::daemon_process::{activated, activated_daemon, text, Sandbox};
use imds_credd::demo::simulator::{Fault, SimulatorOptions, Target};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// Within this, a daemon that lost a task must have exited.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// IMDS answers an `AccessKeyId` with non-ASCII characters (it used to panic the refresher
/// in the log line that masks the key, leaving a daemon that answered 503 forever): the
/// daemon stays up, records an outcome, and keeps answering and refreshing.
#[test]
fn a_non_ascii_access_key_id_does_not_stop_the_refresher() {
    let mut sandbox = Sandbox::simulator(SimulatorOptions::default());
    let field = Fault::Field {
        name: "AccessKeyId",
        value: "ASIAÉXAMPLEÉXAMPLEÄ1".into(),
    };
    sandbox.sim.inject(Target::Credentials, field, 1);
    // Waits for the first outcome and fails if the daemon exits meanwhile.
    sandbox.start_daemon(&[]);
    sandbox.wait_until(
        "credentials served after the malformed answer",
        Duration::from_secs(10),
        || sandbox.served().is_some(),
    );
    let log = sandbox.daemon_log();
    assert!(!log.contains("panic"), "{log}");
    let status = sandbox.client("status", &["--json"]).output().unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    common::assert_no_secrets(&log, &sandbox.sim, "daemon log");
}

/// Set in the child process of the panic test: it runs the daemon's panic hook and a
/// supervised task that panics.
const PANIC_CHILD: &str = "IMDS_CREDD_TEST_PANIC_CHILD";
/// In the panic message, standing for the secret a panic message may quote.
const PANIC_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";

/// A panic in a supervised task, through the daemon's own panic hook: the process exits 1
/// at once, the log names the task and where it panicked, and the panic message (which may
/// quote a secret) is not logged. Runs in a child process: the hook ends the process.
#[test]
fn a_panicking_task_exits_at_once_naming_the_task_not_the_message() {
    if std::env::var_os(PANIC_CHILD).is_some() {
        imds_credd::daemon::logging::init(Default::default(), Default::default());
        imds_credd::daemon::supervisor::exit_on_panic(imds_credd::cli::Exit::TaskFailed.code());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let mut tasks = imds_credd::daemon::supervisor::Supervisor::default();
            let stop = tokio_util::sync::CancellationToken::new();
            tasks.spawn("refresher", &stop, async {
                let key = String::from(PANIC_SECRET);
                panic!("cannot handle {key}");
            });
            let failure = tasks.failure().await;
            eprintln!("NOT EXPECTED: the supervisor saw {failure} before the hook exited");
        });
        std::process::exit(0);
    }
    let started = Instant::now();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_panicking_task_exits_at_once_naming_the_task_not_the_message",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PANIC_CHILD, "1")
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < EXIT_WITHIN);
    assert!(stderr.contains("task=\"refresher\""), "{stderr}");
    assert!(stderr.contains("tests/supervision.rs:"), "{stderr}");
    assert!(!stderr.contains(PANIC_SECRET), "{stderr}");
    assert!(!stderr.contains("NOT EXPECTED"), "{stderr}");
}

/// A socket-activated listener that stops accepting (here shut down through the copy the
/// service manager holds, so every `accept()` fails with `EINVAL`): the daemon does not
/// loop on the error looking alive, it exits non-zero at once with a line that says why,
/// so that `Restart=` brings it back with a working socket.
#[test]
fn a_listener_that_stops_accepting_takes_the_daemon_down() {
    let sandbox = Sandbox::simulator(SimulatorOptions::default());
    let listener = UnixListener::bind(&sandbox.socket).unwrap();
    let mut daemon = activated_daemon(&sandbox, &listener, "daemon.log");
    sandbox.wait_until("the daemon to serve", EXIT_WITHIN, || {
        sandbox.served().is_some()
    });
    nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Both).unwrap();
    let status = exit_status_within(&mut daemon, EXIT_WITHIN, || sandbox.daemon_log());
    let log = sandbox.daemon_log();
    assert_eq!(
        status.code(),
        Some(i32::from(imds_credd::cli::Exit::TaskFailed.code())),
        "{log}"
    );
    assert!(
        log.contains("the listener no longer accepts connections"),
        "{log}"
    );
    assert!(log.contains("the listening socket was shut down"), "{log}");
    let attempts = log.matches("cannot accept a connection").count();
    assert_eq!(attempts, 0, "given up at once on an unusable socket: {log}");
    common::assert_no_secrets(&log, &sandbox.sim, "daemon log");
}

/// Waits until `child` exits, for at most `within`; past that kills it and fails, showing
/// `log()`.
fn exit_status_within(
    child: &mut std::process::Child,
    within: Duration,
    log: impl Fn() -> String,
) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {within:?}; its log:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `imds-credd demo` runs under the same supervisor as `run`: when a task of its daemon
/// ends (its socket server, on a listener shut down under it), the demo exits non-zero at
/// once with the supervisor's line instead of running on to its end.
#[test]
fn the_demo_ends_with_a_failure_when_a_task_of_its_daemon_ends() {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join("s.sock")).unwrap();
    let log_path = dir.path().join("demo.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut demo = activated(&listener, &log_path, &["demo", "--run-for", "60s"]);
    let started = Instant::now();
    while !log().contains("published new credentials") {
        assert!(
            started.elapsed() < EXIT_WITHIN,
            "the demo never published: {}",
            log()
        );
        assert!(
            demo.try_wait().unwrap().is_none(),
            "the demo ended: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Both).unwrap();
    let status = exit_status_within(&mut demo, EXIT_WITHIN, log);
    let log = log();
    assert_eq!(
        status.code(),
        Some(i32::from(imds_credd::cli::Exit::TaskFailed.code())),
        "{log}"
    );
    assert!(log.contains("the demo's daemon lost a task"), "{log}");
    assert!(log.contains("socket server"), "{log}");
}

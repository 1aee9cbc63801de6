//! `Type=notify` seen from systemd's side of `NOTIFY_SOCKET`, with the real daemon: READY=1
//! with a STATUS= line after the first refresh, WATCHDOG=1 at half of `WATCHDOG_USEC` while
//! the refresher checks in and the daemon's own socket answers, STOPPING=1 on SIGTERM.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use common::daemon_process::{clear_aws_variables, Sandbox, BIN};
use imds_credd::demo::simulator::SimulatorOptions;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every datagram that arrives on `socket` within `within`.
fn messages(socket: &UnixDatagram, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

/// The daemon as systemd starts a `Type=notify` unit with `WatchdogSec=` of 400 ms, its
/// notifications arriving on the returned socket.
fn notifying_daemon(sandbox: &Sandbox) -> (std::process::Child, UnixDatagram) {
    let notify_path = sandbox.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let log = std::fs::File::create(sandbox.path("daemon.log")).unwrap();
    // WATCHDOG_PID must be the daemon's own pid: a shell sets it and execs the daemon.
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" "$@""#)
        .arg(BIN)
        .args(["run", "--config", "/dev/null", "--imds-endpoint"])
        .arg(sandbox.sim.endpoint())
        .arg("--socket")
        .arg(&sandbox.socket)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    clear_aws_variables(&mut command);
    (command.spawn().unwrap(), notify)
}

#[test]
fn ready_status_watchdog_pings_and_stopping_reach_the_notify_socket() {
    let sandbox = Sandbox::simulator(SimulatorOptions::default());
    let (mut daemon, notify) = notifying_daemon(&sandbox);
    let seen = messages(&notify, Duration::from_secs(2));
    let ready = seen.iter().find(|m| m.contains("READY=1"));
    let ready = ready.unwrap_or_else(|| panic!("{seen:?}\n{}", sandbox.daemon_log()));
    assert!(
        ready.contains("STATUS=role demo-role; credentials expire in 5h 59m"),
        "{ready}"
    );
    let pings = seen.iter().filter(|m| m.trim_end() == "WATCHDOG=1").count();
    // Every 200 ms for about 2 s.
    assert!(pings >= 5, "{pings} pings: {seen:?}");
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    assert!(daemon.wait().unwrap().success());
    let after = messages(&notify, Duration::from_millis(300));
    assert!(after.iter().any(|m| m.contains("STOPPING=1")), "{after:?}");
    common::assert_no_secrets(&sandbox.daemon_log(), &sandbox.sim, "daemon log");
    for message in seen.iter().chain(&after) {
        common::assert_no_secrets(message, &sandbox.sim, "a notify message");
    }
}

/// The pings follow the serving path, not only the refresher: once the daemon's socket no
/// longer answers (its file removed from under it: the refresher still runs, yet no client
/// can reach the daemon), `WATCHDOG=1` stops, with one line saying why, so systemd restarts
/// the daemon.
#[test]
fn watchdog_pings_stop_when_the_socket_no_longer_answers() {
    let sandbox = Sandbox::simulator(SimulatorOptions::default());
    let (mut daemon, notify) = notifying_daemon(&sandbox);
    let seen = messages(&notify, Duration::from_secs(1));
    let pings = seen.iter().filter(|m| m.trim_end() == "WATCHDOG=1").count();
    assert!(
        pings >= 2,
        "{pings} pings: {seen:?}\n{}",
        sandbox.daemon_log()
    );
    std::fs::remove_file(&sandbox.socket).unwrap();
    // A ping already on its way may still arrive; after that, none.
    let _ = messages(&notify, Duration::from_millis(300));
    let after = messages(&notify, Duration::from_millis(1500));
    assert!(
        !after.iter().any(|m| m.contains("WATCHDOG=1")),
        "{after:?}\n{}",
        sandbox.daemon_log()
    );
    let log = sandbox.daemon_log();
    assert_eq!(
        log.matches("withholding watchdog pings").count(),
        1,
        "{log}"
    );
    assert!(log.contains("GET /healthz on the socket failed"), "{log}");
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    common::assert_no_secrets(&log, &sandbox.sim, "daemon log");
}

//! Readiness with a socket held across starts (as `imds-credd.socket` holds it): the request
//! that starts the daemon waits for the first refresh instead of getting `503`, and a
//! restart while a client loops on the socket loses no request.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;
use common::unix_http;

use common::daemon_process::{activated_daemon, text, Sandbox};
use hyper::Method;
use imds_credd::demo::simulator::{Fault, SimulatorOptions, Target};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::net::UnixListener;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn stop(mut daemon: Child) {
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// IMDS takes 700 ms to give the first credentials; a client that connects as the daemon
/// starts gets them (exit 0), not `503 NoCredentials` (exit 1).
#[test]
fn the_request_that_starts_the_daemon_waits_for_the_first_refresh() {
    let sandbox = Sandbox::simulator(SimulatorOptions::default());
    let delay = Fault::Delay(Duration::from_millis(700));
    sandbox.sim.inject(Target::Credentials, delay, 1);
    let listener = UnixListener::bind(&sandbox.socket).unwrap();
    let daemon = activated_daemon(&sandbox, &listener, "daemon.log");
    let started = Instant::now();
    let output = sandbox.client("credential-process", &[]).output().unwrap();
    let waited = started.elapsed();
    assert!(
        output.status.success(),
        "{}; daemon log:\n{}",
        text(&output.stderr),
        sandbox.daemon_log()
    );
    let served: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        served["AccessKeyId"],
        sandbox.current().access_key_id.as_str()
    );
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    // After the first outcome nothing waits: a status request answers at once.
    let status = sandbox.client("status", &["--json"]).output().unwrap();
    assert!(status.status.success());
    stop(daemon);
    common::assert_no_secrets(&sandbox.daemon_log(), &sandbox.sim, "daemon log");
}

/// A client loops on the socket while the daemon is stopped and a new one started on the
/// same listening socket (what `systemctl restart` does with `imds-credd.socket`): every
/// request is answered 200.
#[test]
fn a_restart_on_a_held_socket_loses_no_request() {
    let sandbox = Sandbox::simulator(SimulatorOptions::default());
    let listener = UnixListener::bind(&sandbox.socket).unwrap();
    let first = activated_daemon(&sandbox, &listener, "daemon.log");
    let done = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (done, served, failed) = (done.clone(), served.clone(), failed.clone());
            let failures = failures.clone();
            let socket = sandbox.socket.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                while !done.load(Ordering::SeqCst) {
                    let answer = runtime.block_on(unix_http::request(
                        &socket,
                        Method::GET,
                        "/v1/credentials",
                    ));
                    match answer {
                        Ok(answer) if answer.status == 200 => {
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                        other => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            let what = other.map(|a| a.status.to_string());
                            failures.lock().unwrap().push(format!("{what:?}"));
                        }
                    }
                }
            })
        })
        .collect();
    let mut daemon = first;
    let wait_for_more = |what: &str| {
        let before = served.load(Ordering::SeqCst);
        sandbox.wait_until(what, Duration::from_secs(15), || {
            served.load(Ordering::SeqCst) >= before + 50
        });
    };
    wait_for_more("requests served by the first daemon");
    for round in 1..=3 {
        stop(daemon);
        daemon = activated_daemon(&sandbox, &listener, &format!("daemon-{round}.log"));
        wait_for_more("requests served by the restarted daemon");
    }
    done.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    stop(daemon);
    let (served, failed) = (served.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("{served} requests answered 200 across 3 restarts, {failed} failed");
    assert_eq!(failed, 0, "{:?}", failures.lock().unwrap());
    for round in 1..=3 {
        let log = std::fs::read_to_string(sandbox.path(&format!("daemon-{round}.log"))).unwrap();
        common::assert_no_secrets(&log, &sandbox.sim, "daemon log");
    }
}

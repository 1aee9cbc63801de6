//! The real release binary as a child process, against the IMDS simulator on loopback:
//! time from spawn to the first published credentials, RSS idle and under socket load, and
//! the socket load table (1, 16, 64, 256 keep-alive connections), each beside a bare hyper
//! server (this bench re-run as a child process, on the same two-worker runtime the daemon
//! uses) answering the same bytes, in the same run, in alternating short runs.
//!
//! Then more 256-connection runs show whether the daemon's RSS keeps growing (a leak)
//! or stays where the first peak left it (memory the allocator keeps for reuse).
//!
//! Both servers are separate processes here, so RSS is the daemon's alone and neither server
//! shares a runtime with the load client (which `socket_load` does, in-process).
//!
//! `cargo bench --bench daemon_process` (`DAEMON_BENCH_STARTS`: spawns timed, default 11;
//! `DAEMON_BENCH_SECONDS`: length of one load run, default 1; `DAEMON_BENCH_ROUNDS`: runs per
//! server and concurrency, default 3).
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.

#[cfg(target_os = "linux")]
#[path = "daemon_process/linux.rs"]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("this bench drives the Linux build (unix socket, signals); it runs on Linux only");
}

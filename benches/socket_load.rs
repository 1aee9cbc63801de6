//! Load on the socket API: requests/s and p50/p99 latency of `GET /v1/credentials` at 1, 16,
//! 64 and 256 keep-alive connections, beside a bare hyper server on a unix socket that answers
//! a fixed body of the same size, in the same run. The load client shares the machine's cores
//! with the servers, so only the ratio between the two is meaningful.
//!
//! The two servers take turns in short runs (several rounds per concurrency) and the medians
//! are reported, so drift in the machine's load hits both alike.
//!
//! `cargo bench --bench socket_load` (`SOCKET_BENCH_SECONDS`: length of one run, default 1;
//! `SOCKET_BENCH_ROUNDS`: runs per server and concurrency, default 5).
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.

#[cfg(target_os = "linux")]
#[path = "socket_load/linux.rs"]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("this bench drives the Linux build (unix socket, signals); it runs on Linux only");
}

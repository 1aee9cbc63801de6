//! How many IMDS requests the daemon makes in a simulated hour while 1,000 socket clients
//! read credentials every simulated minute, beside 1,000 clients that each fetch from IMDS
//! the way an SDK does (token `PUT`, role list, credentials: three requests), done for real
//! against a second simulator with our own IMDS client. Both counts are taken at the
//! simulator, which sees every request.
//!
//! `cargo bench --bench imds_load` (`IMDS_BENCH_CLIENTS`, default 1000).
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.

#[cfg(target_os = "linux")]
#[path = "imds_load/linux.rs"]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("this bench drives the Linux build (unix socket, signals); it runs on Linux only");
}

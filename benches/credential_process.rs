//! Wall time of one `imds-credd credential-process` call against a running daemon, beside
//! what a Python cron job pays today for the same credentials: a fresh `python3` whose
//! botocore fetches the instance-role credentials from IMDS. Both talk to the same IMDS
//! simulator in the same run. `cargo bench --bench credential_process` (release build).
//!
//! Environment: `BENCH_CALLS` (default 200) and `BENCH_PYTHON_CALLS` (default 20).
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.

#[cfg(target_os = "linux")]
#[path = "credential_process/linux.rs"]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("this bench drives the Linux build (unix socket, signals); it runs on Linux only");
}

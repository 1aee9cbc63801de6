//! Memory over many rotations: the release binary as a child process against the IMDS
//! simulator issuing short-lived credentials (40 s, replaced every 15 s), with a `[[file]]`
//! and an `[[env]]` sink and a client reading the socket 20 times a second. Prints the
//! daemon's RSS after warm-up and at the end, the rotations it went through, and the
//! reads answered: RSS at the end should equal RSS after warm-up (nothing grows per
//! rotation or per request).
//!
//! `cargo bench --bench rotation_soak` (`ROTATION_SOAK_SECONDS`, default 120).
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.

#[cfg(target_os = "linux")]
#[path = "rotation_soak/linux.rs"]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("this bench drives the Linux build (unix socket); it runs on Linux only");
}

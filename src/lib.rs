//! `imds-credd`: keeps the EC2 instance-profile credentials fresh from IMDSv2 and
//! republishes them where programs without an AWS SDK can use them.
//!
//! Data flows one way: IMDS ([`imds`]) → the refresher ([`refresh`]) → a watch channel of
//! [`refresh::state`] → the sinks ([`sink`]) and the servers ([`serve`]). `docs/ARCHITECTURE.md`
//! maps every folder, what it may use and the invariants that hold.
//!
//! # Layout
//! - [`cli`]: the command line, and the one place where errors become exit codes.
//! - [`config`]: the TOML file and CLI flags, resolved into one validated `Config`.
//! - [`credentials`]: the credentials model, the secret type, the account id, the text
//!   formats (env syntaxes).
//! - [`imds`]: the IMDSv2 client (session token, retries, body cap, clock skew).
//! - [`http_client`]: the one outbound HTTP stack (hyper-util) IMDS and STS share; no proxy.
//! - [`refresh`]: when to ask again, and the loop that publishes on a watch channel.
//! - [`assume`]: `[[assume]]` profiles: STS `AssumeRole` chained on the instance role.
//! - [`sink`]: the credentials-file and env-file sinks, atomic writes, rotation hooks.
//! - [`serve`]: the HTTP API on the unix socket (named pipe on Windows) and the container
//!   endpoint.
//! - [`health`]: each sink's outcome, the counters, the refresher's heartbeat.
//! - [`daemon`]: `imds-credd run`: wiring, supervision, systemd notify, logging.
//! - [`client`]: the client commands that ask the daemon over its socket.
//! - [`demo`]: `imds-credd demo` and the simulated IMDS it runs against.
//! - [`clock`], [`backoff`]: time, injected; retry delays.
//! - [`error_chain`]: the one renderer of an error and its causes, for people.
//! - `privileges` (Linux): not dumpable from the start; hooks' children without capabilities.
//!
//! Platforms: Linux and Windows; Linux-only code is gated `target_os = "linux"`.
// The library is the binary's body and the tests' handle on it, not an API: its docs are read
// by maintainers, and link to the private modules they describe.
#![allow(rustdoc::private_intra_doc_links)]
// Items only the crate reaches say so (`pub(crate)`); what is `pub` is the crate's surface.
#![warn(unreachable_pub)]
#![warn(missing_docs)]
// Unit tests time real I/O; the shipped code reads time through `clock` (`clippy.toml`).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

#[cfg(not(any(target_os = "linux", windows)))]
compile_error!("imds-credd runs on Linux and Windows");

pub mod assume;
pub(crate) mod backoff;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod demo;
pub mod error_chain;
pub mod failure;
pub mod health;
pub mod http_client;
pub mod imds;
#[cfg(target_os = "linux")]
pub(crate) mod privileges;
pub mod refresh;
pub mod serve;
pub mod sink;

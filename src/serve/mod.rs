//! Everything that answers clients: the HTTP routes ([`api`]) and the servers that carry
//! them — the unix socket on Linux ([`socket`]), the named pipe on Windows (`pipe`), and
//! the optional loopback container endpoint ([`container`]).
//!
//! - [`api`]: the routes and their answers, read from the refresher's state channels.
//! - [`server`]: the accept loop, its limits and graceful shutdown, for every listener.
//! - [`consumers`]: who fetched credentials, for `/v1/consumers` and `/metrics`.
//! - [`rate_limit`]: the per-uid request budget (`[socket] rate_limit`).
//! - [`refusals`]: refusal log lines, rate-limited.
//! - [`subuid`]: subordinate uids (`/etc/subuid`), counted as their owner (Linux).
//! - [`activation`]: the sockets systemd passed, picked by name.

pub mod api;
pub mod consumers;
pub mod rate_limit;
pub mod refusals;
pub mod server;

#[cfg(target_os = "linux")]
pub mod activation;
#[cfg(target_os = "linux")]
pub mod container;
#[cfg(windows)]
pub mod pipe;
#[cfg(target_os = "linux")]
pub mod socket;
#[cfg(target_os = "linux")]
pub mod subuid;

pub use api::{Api, Endpoint};
pub use server::ServerLimits;
#[cfg(all(target_os = "linux", feature = "test-util"))]
pub use socket::run;
#[cfg(target_os = "linux")]
pub use socket::{PeerPolicy, SocketError, SocketServer};

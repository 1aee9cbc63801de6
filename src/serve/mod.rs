//! Everything that answers clients: the HTTP routes ([`api`]) and the servers that carry
//! them — the unix socket on Linux ([`socket`]), the named pipe on Windows (`pipe`), the
//! optional loopback container endpoint ([`container`]) and, for systemd units, the
//! unit-credentials socket ([`unit_credentials`]).
//!
//! - [`api`]: the routes and their answers, read from the refresher's state channels.
//! - [`server`]: the accept loop, its limits and graceful shutdown, for every listener.
//! - [`consumers`]: who fetched credentials, for `/v1/consumers` and `/metrics`.
//! - [`rate_limit`]: the per-uid request budget (`[socket] rate_limit`).
//! - [`refusals`]: refusal log lines, rate-limited.
//! - [`subuid`]: subordinate uids (`/etc/subuid`), counted as their owner (Linux).
//! - [`activation`]: the sockets systemd passed, picked by name.
//! - [`unit_credentials`]: the socket systemd's `LoadCredential=` reads a unit's set from.

pub mod api;
pub mod consumers;
pub mod rate_limit;
pub mod refusals;
pub mod server;

#[cfg(target_os = "linux")]
pub mod activation;
#[cfg(target_os = "linux")]
pub mod container;
#[cfg(target_os = "linux")]
pub(crate) mod container_address;
#[cfg(windows)]
pub mod pipe;
#[cfg(target_os = "linux")]
pub mod socket;
#[cfg(target_os = "linux")]
pub mod subuid;
#[cfg(target_os = "linux")]
pub mod unit_credentials;

pub use api::{Api, Endpoint};
pub use server::ServerLimits;
#[cfg(all(target_os = "linux", feature = "test-util"))]
pub use socket::run;
#[cfg(target_os = "linux")]
pub use socket::{PeerPolicy, SocketError, SocketServer};

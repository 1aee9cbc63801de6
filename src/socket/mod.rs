//! The unix socket API of `../shared/DESIGN.md`: HTTP/1.1 over a unix socket, for the client
//! commands and for any local program that can speak HTTP.
//!
//! - [`listener`]: bind the socket safely (mode, group, stale socket, folder) or take the
//!   one systemd passes; remove it on clean stop.
//! - [`peer`]: who is connecting (`SO_PEERCRED`) and whether they are allowed.
//! - [`api`]: the routes and their answers.
//! - [`consumers`]: who fetched credentials, for `/v1/consumers` and `/metrics`.
//! - [`rate_limit`]: the per-uid request budget (`[socket] rate_limit`).
//! - [`proc_peer`]: a peer's program from `/proc`, and a loopback TCP peer's uid and pid.
//! - [`server`]: the accept loop, its limits and graceful shutdown (shared with the
//!   container endpoint).
//!
//! [`run`] puts them together; [`SocketServer`] splits it in two so the daemon can tell
//! systemd it is ready only once the socket exists.

pub mod api;
pub mod consumers;
#[cfg(target_os = "linux")]
pub mod listener;
#[cfg(target_os = "linux")]
pub mod peer;
#[cfg(windows)]
pub mod pipe;
#[cfg(target_os = "linux")]
pub mod proc_peer;
pub mod rate_limit;
pub mod refusals;
pub mod server;

pub use api::{Api, Endpoint};
#[cfg(target_os = "linux")]
pub use peer::PeerPolicy;
pub use server::ServerLimits;

#[cfg(target_os = "linux")]
use crate::config::SocketConfig;
#[cfg(target_os = "linux")]
use api::{ApiError, Body};
#[cfg(target_os = "linux")]
use hyper::body::Incoming;
#[cfg(target_os = "linux")]
use hyper::{Request, Response};
#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::path::PathBuf;
#[cfg(target_os = "linux")]
use std::sync::Arc;
#[cfg(target_os = "linux")]
use thiserror::Error;
#[cfg(target_os = "linux")]
use tokio_util::sync::CancellationToken;

#[cfg(target_os = "linux")]
/// Why the socket could not be opened. Nothing is served, and the daemon should stop.
#[derive(Debug, Error)]
pub enum SocketError {
    #[error("cannot create or use the socket folder {path}")]
    Folder { path: PathBuf, source: io::Error },
    #[error("cannot inspect {path}")]
    Inspect { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("another process is already answering on {path}")]
    AlreadyServing { path: PathBuf },
    #[error("cannot tell whether the existing socket {path} is in use")]
    Probe { path: PathBuf, source: io::Error },
    #[error("socket path {path} has no file name")]
    NoFileName { path: PathBuf },
    /// The limit (108 bytes) applies to the temporary name used while binding, which is the
    /// path plus about ten bytes.
    #[error("socket path {path} is too long for a unix socket address (108 bytes, with a temporary name while binding)")]
    PathTooLong { path: PathBuf },
    #[error("socket group {group:?} does not exist")]
    UnknownGroup { group: String },
    #[error("cannot look up the socket group {group:?}")]
    GroupLookup { group: String, source: nix::Error },
    #[error("cannot create the socket {path} ({step})")]
    Create {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("the socket systemd passed for the API is unusable: {detail}")]
    ActivationFd { detail: String },
}

#[cfg(target_os = "linux")]
/// An open socket, not yet served.
#[derive(Debug)]
pub struct SocketServer {
    listener: tokio::net::UnixListener,
    guard: Option<listener::SocketGuard>,
    policy: PeerPolicy,
}

#[cfg(target_os = "linux")]
impl SocketServer {
    /// Takes the systemd socket or binds `config.path` (see [`listener`]). Call it inside the
    /// tokio runtime.
    pub fn open(config: &SocketConfig) -> Result<Self, SocketError> {
        let opened = listener::open(config)?;
        let listener = tokio::net::UnixListener::from_std(opened.listener).map_err(|source| {
            SocketError::Create {
                path: config.path.clone(),
                step: "register with the runtime",
                source,
            }
        })?;
        Ok(SocketServer {
            listener,
            guard: opened.guard,
            policy: PeerPolicy::from_config(config),
        })
    }

    /// Serves until `shutdown` is cancelled, drains, then removes the socket file if we
    /// created it (a socket systemd owns is left for systemd).
    pub async fn serve(self, api: Arc<Api>, limits: ServerLimits, shutdown: CancellationToken) {
        let frontend = Arc::new(SocketFrontend {
            api,
            policy: self.policy,
            refusals: refusals::RefusalLog::default(),
        });
        server::serve(self.listener, frontend, limits, shutdown).await;
        drop(self.guard);
    }
}

#[cfg(target_os = "linux")]
/// The socket's side of the server: peers checked by `SO_PEERCRED` (and their program read
/// from `/proc` at accept time, for the consumer table), every route served.
struct SocketFrontend {
    api: Arc<Api>,
    policy: PeerPolicy,
    refusals: refusals::RefusalLog,
}

#[cfg(target_os = "linux")]
impl server::Frontend for SocketFrontend {
    type Stream = tokio::net::UnixStream;
    type Peer = consumers::Consumer;
    const NAME: &'static str = "socket";

    fn admit(&self, stream: &Self::Stream) -> Option<consumers::Consumer> {
        self.api.note_connection();
        match peer::peer_of(stream) {
            Ok(peer) => {
                let consumer = consumers::Consumer {
                    uid: Some(peer.uid),
                    gid: Some(peer.gid),
                    pid: Some(peer.pid),
                    program: proc_peer::program_of(peer.pid),
                };
                if self.policy.allows(&peer) {
                    return Some(consumer);
                }
                if let Some(unlogged) = self.refusals.admit_line(format!("uid {}", peer.uid)) {
                    tracing::warn!(
                        uid = peer.uid,
                        gid = peer.gid,
                        pid = peer.pid,
                        exe = consumer.program.exe,
                        refused_since_last_line = unlogged,
                        "refusing a socket peer not in socket.allow_uids / socket.allow_gids"
                    );
                }
                // Once per connection: its requests all get `refuse`, which counts them.
                self.api.note_refused(Endpoint::Socket, &consumer);
                None
            }
            Err(error) => {
                if let Some(unlogged) = self.refusals.admit_line("unknown".into()) {
                    tracing::warn!(%error, refused_since_last_line = unlogged, "cannot read the socket peer's credentials; refusing it");
                }
                None
            }
        }
    }

    fn first_outcome(
        &self,
        request: &Request<Incoming>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.api.first_outcome(request.uri())
    }

    fn respond(
        &self,
        consumer: &consumers::Consumer,
        request: &Request<Incoming>,
    ) -> Response<Body> {
        self.api
            .respond_to(Endpoint::Socket, consumer, request.method(), request.uri())
    }

    fn refuse(&self) -> Response<Body> {
        self.api.refuse(Endpoint::Socket, ApiError::Forbidden)
    }
}

#[cfg(target_os = "linux")]
/// The daemon's entry point: open the socket, serve with the default limits until
/// `shutdown`, remove the socket on the way out.
pub async fn run(
    config: &SocketConfig,
    api: Arc<Api>,
    shutdown: CancellationToken,
) -> Result<(), SocketError> {
    SocketServer::open(config)?
        .serve(api, ServerLimits::default(), shutdown)
        .await;
    Ok(())
}

//! The API on a unix socket (Linux): HTTP/1.1 for the client commands and for any local
//! program that can speak HTTP.
//!
//! - [`listener`]: bind the socket safely (mode, group, stale socket, folder) or take the
//!   one systemd passes; remove it on clean stop.
//! - [`peer`]: who is connecting (`SO_PEERCRED`) and whether they are allowed.
//! - [`proc_peer`]: a peer's program from `/proc`, and a loopback TCP peer's uid and pid.
//!
//! [`SocketServer`] puts them together with the routes ([`super::api`]) and the accept
//! loop ([`super::server`]), in two steps so the daemon can tell systemd it
//! is ready only once the socket exists.

pub mod listener;
pub mod peer;
pub mod proc_peer;

pub use peer::PeerPolicy;

use super::api::{Api, ApiError, Body, Endpoint};
use super::server::{self, ServerLimits};
use super::{consumers, refusals};
use crate::config::SocketConfig;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;

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

/// An open socket, not yet served.
#[derive(Debug)]
pub struct SocketServer {
    listener: ApiListener,
    guard: Option<listener::SocketGuard>,
    policy: PeerPolicy,
}

impl SocketServer {
    /// Takes the systemd socket or binds `config.path` (see [`listener`]). Call it inside the
    /// tokio runtime.
    pub fn open(config: &SocketConfig) -> Result<Self, SocketError> {
        let opened = listener::open(config)?;
        // SAFETY: the std listener owns its fd, which stays open and the same until the
        // AsyncFd (which owns the listener) is dropped.
        let registered =
            unsafe { AsyncFd::register_with_interest(opened.listener, Interest::READABLE) };
        let listener = registered
            .map(ApiListener)
            .map_err(|error| SocketError::Create {
                path: config.path.clone(),
                step: "register with the runtime",
                source: error.into(),
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

/// The API's listening socket as the accept loop reads it. Not tokio's `UnixListener`: a
/// listener that was shut down (through the copy systemd holds, or by `shutdown(2)` from
/// anyone holding the fd) reads as ready and closed while `accept()` says `EAGAIN`, and
/// tokio's accept retries that inside one call for ever, spinning a worker and never
/// returning an error. Here the closed state is seen and becomes an error, which ends the
/// server and so the daemon (see [`server::serve`]).
#[derive(Debug)]
struct ApiListener(AsyncFd<std::os::unix::net::UnixListener>);

impl server::Listener for ApiListener {
    type Stream = tokio::net::UnixStream;
    async fn next_connection(&self) -> io::Result<tokio::net::UnixStream> {
        loop {
            let mut ready = self.0.readable().await?;
            let closed = ready.ready().is_read_closed();
            match ready.try_io(|listener| listener.get_ref().accept()) {
                Ok(accepted) => {
                    let stream = accepted?.0;
                    stream.set_nonblocking(true)?;
                    return tokio::net::UnixStream::from_std(stream);
                }
                Err(_would_block) if closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the listening socket was shut down",
                    ))
                }
                Err(_would_block) => {}
            }
        }
    }
}

/// The socket's side of the server: peers checked by `SO_PEERCRED` (and their program read
/// from `/proc` at accept time, for the consumer table), every route served.
struct SocketFrontend {
    api: Arc<Api>,
    policy: PeerPolicy,
    refusals: refusals::RefusalLog,
}

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
                    tracing::warn!(error = %crate::error_chain::render(&error), refused_since_last_line = unlogged, "cannot read the socket peer's credentials; refusing it");
                }
                None
            }
        }
    }

    fn api(&self) -> &Api {
        &self.api
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

/// Opens the socket, serves with the default limits until `shutdown`, removes the socket on
/// the way out: the socket server on its own, for tests.
#[cfg(feature = "test-util")]
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

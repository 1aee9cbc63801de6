//! The API on a unix socket (Linux): HTTP/1.1 for the client commands and for any local
//! program that can speak HTTP.
//!
//! - [`listener`]: bind the socket safely (mode, group, stale socket, folder) or take the
//!   one systemd passes; remove it on clean stop.
//! - [`peer`]: who is connecting (`SO_PEERCRED`) and whether they are allowed.
//! - [`proc_peer`]: a peer's program from `/proc`, and the pid holding a socket inode.
//! - [`sock_diag`]: a loopback TCP peer's uid and socket inode, by one netlink lookup.
//!
//! [`SocketServer`] puts them together with the routes ([`super::api`]) and the accept
//! loop ([`super::server`]), in two steps so the daemon can tell systemd it
//! is ready only once the socket exists.

pub mod listener;
pub mod peer;
pub mod proc_peer;
pub mod sock_diag;

pub use peer::PeerPolicy;

use super::api::{Api, ApiError, Body, Endpoint};
use super::server::{self, Admission, ServerLimits, Share};
use super::subuid::SubordinateIds;
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
    /// The socket's folder could not be made or opened.
    #[error("cannot create or use the socket folder {path}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The socket path could not be inspected.
    #[error("cannot inspect {path}")]
    Inspect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Something other than a socket is at the path.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// A live daemon already listens at the path.
    #[error("another process is already answering on {path}")]
    AlreadyServing {
        /// The socket path.
        path: PathBuf,
    },
    /// Connecting to the existing socket failed in a way that says neither.
    #[error("cannot tell whether the existing socket {path} is in use")]
    Probe {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The path ends in `..` or `/`.
    #[error("socket path {path} has no file name")]
    NoFileName {
        /// The socket path.
        path: PathBuf,
    },
    /// The limit (108 bytes) applies to the temporary name used while binding, which is the
    /// path plus about ten bytes.
    #[error("socket path {path} is too long for a unix socket address (108 bytes, with a temporary name while binding)")]
    PathTooLong {
        /// The socket path.
        path: PathBuf,
    },
    /// The configured group does not exist.
    #[error("socket group {group:?} does not exist")]
    UnknownGroup {
        /// The group as configured.
        group: String,
    },
    /// The group database could not be read.
    #[error("cannot look up the socket group {group:?}")]
    GroupLookup {
        /// The group as configured.
        group: String,
        /// Why.
        source: nix::Error,
    },
    /// A step of binding the socket failed.
    #[error("cannot create the socket {path} ({step})")]
    Create {
        /// The socket path.
        path: PathBuf,
        /// The step (`bind`, `chmod`, `chown`, `rename`…).
        step: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The API's socket from systemd cannot be served.
    #[error("the socket systemd passed for the API is unusable: {detail}")]
    ActivationFd {
        /// What is wrong with it.
        detail: String,
    },
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
            subuids: SubordinateIds::system(),
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

/// The socket's side of the server: peers checked by `SO_PEERCRED` at accept, every route
/// served. A peer's program is read from `/proc` (on the blocking pool, for the consumer
/// table) only at its first request: a connection refused, over its share or silent costs
/// no `/proc` read, so the accept loop drains a flood as fast as it comes.
struct SocketFrontend {
    api: Arc<Api>,
    policy: PeerPolicy,
    refusals: refusals::RefusalLog,
    subuids: SubordinateIds,
}

/// An admitted socket peer: who the kernel says it is, and its program once looked up.
struct SocketPeer {
    consumer: consumers::Consumer,
    with_program: tokio::sync::OnceCell<consumers::Consumer>,
}

impl server::Frontend for SocketFrontend {
    type Stream = tokio::net::UnixStream;
    type Peer = SocketPeer;
    const NAME: &'static str = "socket";
    const ENDPOINT: Endpoint = Endpoint::Socket;

    async fn admit(&self, stream: &Self::Stream) -> Admission<SocketPeer> {
        self.api.note_connection();
        let closed = self.api.closed_counters(Endpoint::Socket);
        let peer = match peer::peer_of(stream) {
            Ok(peer) => peer,
            Err(error) => {
                if let Some(unlogged) =
                    server::note_closed(&closed.vanished, &self.refusals, "unknown".into())
                {
                    tracing::warn!(error = %crate::error_chain::render(&error), refused_since_last_line = unlogged, "cannot read the socket peer's credentials; closing it");
                }
                return Admission::Drop;
            }
        };
        let owner = self.subuids.owner_of(peer.uid).await;
        let consumer = consumers::Consumer {
            uid: Some(owner.unwrap_or(peer.uid)),
            subordinate: owner.map(|_| peer.uid),
            gid: Some(peer.gid),
            pid: Some(peer.pid),
            program: consumers::Program::unknown(),
            ..consumers::Consumer::unknown()
        };
        if self.policy.allows(&peer, owner) {
            let share = match consumer.is_root() {
                true => Share::Exempt,
                false => Share::Uid(owner.unwrap_or(peer.uid)),
            };
            let peer = SocketPeer {
                consumer,
                with_program: tokio::sync::OnceCell::new(),
            };
            return Admission::Admit { peer, share };
        }
        let key = format!("uid {}", owner.unwrap_or(peer.uid));
        if let Some(unlogged) = server::note_closed(&closed.refused, &self.refusals, key) {
            let program = program_of(peer.pid).await;
            tracing::warn!(
                uid = peer.uid,
                owner_uid = owner,
                gid = peer.gid,
                pid = peer.pid,
                exe = program.exe,
                refused_since_last_line = unlogged,
                "refusing a socket peer not in socket.allow_uids / socket.allow_gids"
            );
        }
        // Its row names no program: looking each one up would make a flood of refused
        // connections cost a `/proc` read each.
        self.api.note_refused(Endpoint::Socket, &consumer);
        Admission::Refuse(self.api.refuse(Endpoint::Socket, ApiError::Forbidden))
    }

    fn api(&self) -> &Api {
        &self.api
    }

    async fn respond(&self, peer: &SocketPeer, request: &Request<Incoming>) -> Response<Body> {
        let consumer = peer
            .with_program
            .get_or_init(|| async {
                let pid = peer.consumer.pid.unwrap_or(-1);
                consumers::Consumer {
                    program: program_of(pid).await,
                    ..peer.consumer.clone()
                }
            })
            .await;
        self.api
            .respond_to(Endpoint::Socket, consumer, request.method(), request.uri())
    }

    fn refusals(&self) -> &refusals::RefusalLog {
        &self.refusals
    }
}

/// [`proc_peer::program_of`] on the blocking pool.
async fn program_of(pid: i32) -> consumers::Program {
    tokio::task::spawn_blocking(move || proc_peer::program_of(pid))
        .await
        .unwrap_or_else(|_| consumers::Program::unknown())
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

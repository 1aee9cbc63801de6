//! The accept loop: HTTP/1.1 connections, each in its own task, within limits that keep a
//! stuck or hostile client from starving the others. It serves any [`Listener`] (the unix
//! socket, the container endpoint's loopback TCP socket, the Windows named pipe) through a
//! [`Frontend`] that decides who is let in and what they get.
//!
//! # Limits
//! - At most [`ServerLimits::max_connections`] connections at once. Beyond that the loop
//!   stops accepting until a slot frees: new clients wait in the kernel's listen backlog
//!   rather than being closed, and are served as soon as a connection ends. Every held slot
//!   is bounded in time by the header timeout, so slots always come back.
//! - Each connection is a file descriptor (on Linux, `fd_limit`): if the soft `RLIMIT_NOFILE` is too low for the
//!   cap (systemd's default soft limit is 1024), it is raised toward the hard limit, and if
//!   that is not enough the cap is lowered to fit, with a warning. Otherwise `accept()` would
//!   fail with `EMFILE` before the cap is reached.
//! - The request head (request line + headers) must arrive within
//!   [`ServerLimits::header_read_timeout`]; hyper starts the same timer again when a
//!   keep-alive connection goes idle, so it is also the idle timeout.
//! - The read buffer is capped at [`ServerLimits::max_header_bytes`]: a larger head gets
//!   `431` and the connection is closed. Bodies are never read.
//! - Answers are a few hundred bytes and fit in the socket buffer, so a client that does not
//!   read its answer cannot hold a task past its timeout.
//! - A `401` or `403` closes the connection (`Connection: close`): a refused client must
//!   connect again for each try instead of holding a slot with a stream of bad requests.
//! - Where the frontend authenticates per request (the container endpoint's token), a
//!   connection is *waiting* from its accept until its first answer other than 401/403.
//!   [`ServerLimits::unauthenticated`] caps the waiting connections per peer and in all;
//!   a newcomer over a cap closes the oldest waiting connection (of that peer, or of all).
//!   A client that sends its request at once is answered before it can be the oldest, so
//!   a crowd of silent or refused connections cannot keep a token holder out.
//!
//! # Shutdown
//! Stop accepting (the listener is closed, so new clients get `ECONNREFUSED`; a socket
//! systemd holds keeps queueing them for the next daemon), let requests in flight finish,
//! serve the first request of connections accepted but not read yet, close idle
//! keep-alive connections, and after
//! [`ServerLimits::shutdown_grace`] drop whatever is still open.

#[cfg(target_os = "linux")]
mod fd_limit;

use super::api::{Api, Body};
#[cfg(target_os = "linux")]
use fd_limit::fit_fd_limit;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Pause after a failed `accept()` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long `accept()` may fail without a connection accepted in between before the
/// listener is taken for dead (see [`listener_is_dead`]).
const ACCEPT_GIVE_UP: Duration = Duration::from_secs(10);

/// Whether a listener whose `accept()` has failed for `failing_for` (this `error` the last)
/// will never accept again, so the server must end (and with it the daemon, which its
/// supervisor restarts) rather than answer nobody while looking alive: at once for an error
/// that says the socket itself is unusable (a socket-activated listener shut down: `EINVAL`
/// from TCP, `NotConnected` from the unix socket's listener; or replaced), after
/// [`ACCEPT_GIVE_UP`] for any other error that persists (`EAGAIN` from a listener that
/// never yields a connection, a lasting `EMFILE`).
fn listener_is_dead(error: &io::Error, failing_for: Duration) -> bool {
    #[cfg(target_os = "linux")]
    const UNUSABLE: [i32; 4] = [
        nix::libc::EBADF,
        nix::libc::EINVAL,
        nix::libc::ENOTSOCK,
        nix::libc::EOPNOTSUPP,
    ];
    #[cfg(not(target_os = "linux"))]
    const UNUSABLE: [i32; 0] = [];
    failing_for >= ACCEPT_GIVE_UP
        || error.kind() == io::ErrorKind::NotConnected
        || error
            .raw_os_error()
            .is_some_and(|code| UNUSABLE.contains(&code))
}

/// Per-server limits; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once (default 1024).
    pub max_connections: usize,
    /// Largest request head, in bytes (default 16 KiB; hyper's floor is 8 KiB).
    pub max_header_bytes: usize,
    /// Most header lines in one request (default 64).
    pub max_headers: usize,
    /// Time to send a whole request head, and to send the next one on an idle keep-alive
    /// connection (default 10 s: local clients send their request at once).
    pub header_read_timeout: Duration,
    /// Time given to requests in flight at shutdown (default 3 s: within the daemon's own
    /// 5 s stop grace, so the socket is drained and removed before the daemon gives up).
    pub shutdown_grace: Duration,
    /// Caps on connections not yet authenticated; `None` (the default) where admission is
    /// decided at accept (the unix socket's peer credentials).
    pub unauthenticated: Option<UnauthenticatedLimits>,
}

/// How many connections may wait for their first accepted request; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnauthenticatedLimits {
    pub per_peer: usize,
    pub total: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(3),
            unauthenticated: None,
        }
    }
}

/// A listening socket the loop accepts connections from.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection; an error is logged and the loop goes on after a pause.
    fn next_connection(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn next_connection(&self) -> io::Result<TcpStream> {
        Ok(self.accept().await?.0)
    }
}

/// What a server does with its connections: who is let in, and the answer to each request.
pub trait Frontend: Send + Sync + 'static {
    type Stream;
    /// What [`Frontend::respond`] needs to know about an admitted connection.
    type Peer: Send + Sync + 'static;
    /// Names the server in log lines.
    const NAME: &'static str;
    /// Decides on a new connection, logging why when it refuses (`None`): every request on
    /// a refused connection gets [`Frontend::refuse`], and it is not kept alive.
    fn admit(&self, stream: &Self::Stream) -> Option<Self::Peer>;
    /// The API behind the server. Before a request is answered the loop waits on its
    /// [`Api::first_outcome`]: at start, a credentials request waits (boundedly) for the
    /// first refresh outcome instead of getting `503` at once.
    fn api(&self) -> &Api;
    fn respond(&self, peer: &Self::Peer, request: &Request<Incoming>) -> Response<Body>;
    fn refuse(&self) -> Response<Body>;
    /// Who a peer counts as for [`ServerLimits::unauthenticated`]'s per-peer cap.
    fn peer_key(&self, _peer: &Self::Peer) -> String {
        String::new()
    }
}

/// The connections waiting for their first accepted request, oldest first, each with the
/// token that closes it.
#[derive(Default)]
struct Waiting {
    next_id: u64,
    entries: VecDeque<(u64, String, CancellationToken)>,
}

impl Waiting {
    /// Adds a connection of `peer`, first closing the oldest waiting ones over `limits`.
    fn enter(&mut self, peer: String, limits: UnauthenticatedLimits) -> (u64, CancellationToken) {
        while self.entries.iter().filter(|(_, p, _)| *p == peer).count() >= limits.per_peer.max(1) {
            self.evict(|p| p == peer);
        }
        while self.entries.len() >= limits.total.max(1) {
            self.evict(|_| true);
        }
        let id = self.next_id;
        self.next_id += 1;
        let close = CancellationToken::new();
        self.entries.push_back((id, peer, close.clone()));
        (id, close)
    }

    /// Closes the oldest waiting connection whose peer matches.
    fn evict(&mut self, matches: impl Fn(&str) -> bool) {
        if let Some(index) = self.entries.iter().position(|(_, p, _)| matches(p)) {
            if let Some((_, _, close)) = self.entries.remove(index) {
                close.cancel();
            }
        }
    }

    /// The connection authenticated or ended.
    fn leave(&mut self, id: u64) {
        self.entries.retain(|(entry, _, _)| *entry != id);
    }
}

/// A 401 or 403 closes the connection (see the module doc).
fn is_refusal(response: &Response<Body>) -> bool {
    matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    )
}

/// Serves `listener` through `frontend` until `shutdown` is cancelled, then drains (see
/// the module doc).
pub async fn serve<L, F>(
    listener: L,
    frontend: Arc<F>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) where
    L: Listener,
    F: Frontend<Stream = L::Stream>,
{
    let slots = Arc::new(Semaphore::new(fit_fd_limit(limits.max_connections)));
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    // Since when `accept()` has failed without a connection in between.
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        let next = async {
            let permit = Arc::clone(&slots)
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed");
            (permit, listener.next_connection().await)
        };
        let (permit, accepted) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            next = next => next,
        };
        let stream = match accepted {
            Ok(stream) => {
                failing_since = None;
                stream
            }
            Err(error) => {
                let failing_for = failing_since
                    .get_or_insert_with(tokio::time::Instant::now)
                    .elapsed();
                if listener_is_dead(&error, failing_for) {
                    tracing::error!(server = F::NAME, error = %crate::error_chain::render(&error), ?failing_for, "the listener no longer accepts connections; stopping the daemon so that the service manager restarts it");
                    break;
                }
                tracing::warn!(server = F::NAME, error = %crate::error_chain::render(&error), "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let peer = frontend.admit(&stream);
        let mut conn_builder = builder.clone();
        conn_builder.keep_alive(peer.is_some());
        let waiting_entry = match (&peer, limits.unauthenticated) {
            (Some(admitted), Some(caps)) => {
                let key = frontend.peer_key(admitted);
                Some(lock(&waiting).enter(key, caps))
            }
            _ => None,
        };
        let id = waiting_entry.as_ref().map(|(id, _)| *id);
        let closed_for_newcomer = waiting_entry.map(|(_, close)| close);
        let frontend = Arc::clone(&frontend);
        let service_waiting = Arc::clone(&waiting);
        let peer = Arc::new(peer);
        let first_request = Arc::new(Notify::new());
        let request_arrived = Arc::clone(&first_request);
        let service = service_fn(move |request: Request<Incoming>| {
            let frontend = Arc::clone(&frontend);
            let peer = Arc::clone(&peer);
            let waiting = Arc::clone(&service_waiting);
            request_arrived.notify_one();
            async move {
                let mut response = match peer.as_ref() {
                    Some(peer) => {
                        frontend.api().first_outcome(request.uri()).await;
                        frontend.respond(peer, &request)
                    }
                    None => frontend.refuse(),
                };
                if is_refusal(&response) {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                } else if let Some(id) = id {
                    lock(&waiting).leave(id);
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = conn_builder.serve_connection(TokioIo::new(stream), service);
        let stop = shutdown.clone();
        let task_waiting = Arc::clone(&waiting);
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let closed = async {
                match &closed_for_newcomer {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            // Until the stop; then the request in flight is finished and the connection
            // closed. One accepted just before the stop whose request has not been read
            // yet is served that request first: its client connected in time (on a socket
            // held across a restart, closing it would lose a request).
            let ended = tokio::select! {
                ended = connection.as_mut() => Some(ended),
                () = closed => {
                    tracing::debug!(server = F::NAME, "closed an unauthenticated connection for a newer one");
                    Some(Ok(()))
                }
                _ = stop.cancelled() => tokio::select! {
                    ended = connection.as_mut() => Some(ended),
                    // Stored once any request arrived, so immediate then.
                    _ = first_request.notified() => None,
                },
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(server = F::NAME, error = %crate::error_chain::render(&error), "connection ended with an error");
            }
            if let Some(id) = id {
                lock(&task_waiting).leave(id);
            }
            drop(permit);
        });
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            server = F::NAME,
            grace = ?limits.shutdown_grace,
            "connections still open after the shutdown grace; closing them"
        );
    }
    connections.shutdown().await;
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Windows has no open-files limit to fit; the named pipe caps its instances itself.
#[cfg(windows)]
fn fit_fd_limit(wanted: usize) -> usize {
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_dead_when_its_socket_is_unusable_or_accept_keeps_failing() {
        let again = io::Error::from(io::ErrorKind::WouldBlock);
        assert!(!listener_is_dead(&again, Duration::ZERO));
        assert!(!listener_is_dead(
            &again,
            ACCEPT_GIVE_UP - Duration::from_millis(1)
        ));
        assert!(listener_is_dead(&again, ACCEPT_GIVE_UP));
        #[cfg(target_os = "linux")]
        {
            let out_of_fds = io::Error::from_raw_os_error(nix::libc::EMFILE);
            assert!(!listener_is_dead(&out_of_fds, Duration::from_secs(1)));
            let shut_down = io::Error::from_raw_os_error(nix::libc::EINVAL);
            assert!(listener_is_dead(&shut_down, Duration::ZERO));
            let shut_down = io::Error::from(io::ErrorKind::NotConnected);
            assert!(listener_is_dead(&shut_down, Duration::ZERO));
        }
    }

    #[test]
    fn a_newcomer_over_a_cap_closes_the_oldest_waiting_connection() {
        let caps = UnauthenticatedLimits {
            per_peer: 2,
            total: 3,
        };
        let mut waiting = Waiting::default();
        let (_, a1) = waiting.enter("a".into(), caps);
        let (a2_id, a2) = waiting.enter("a".into(), caps);
        let (_, a3) = waiting.enter("a".into(), caps);
        assert!(a1.is_cancelled() && !a2.is_cancelled() && !a3.is_cancelled());
        let (_, b1) = waiting.enter("b".into(), caps);
        assert!(
            !a2.is_cancelled() && !b1.is_cancelled(),
            "3 waiting: within the total"
        );
        waiting.leave(a2_id);
        let (_, b2) = waiting.enter("b".into(), caps);
        assert!(!a3.is_cancelled() && !b2.is_cancelled());
        let (_, c1) = waiting.enter("c".into(), caps);
        assert!(a3.is_cancelled(), "the oldest of all goes for the total");
        assert!(!b1.is_cancelled() && !b2.is_cancelled() && !c1.is_cancelled());
    }
}

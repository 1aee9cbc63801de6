//! The accept loop: HTTP/1.1 connections, each in its own task, within limits that keep a
//! stuck or hostile client from starving the others. It serves any [`Listener`] (the unix
//! socket, the container endpoint's loopback TCP socket, the Windows named pipe) through a
//! [`Frontend`] that decides who is let in and what they get.
//!
//! # Admission ([`admission`])
//! - The frontend identifies each new connection ([`Frontend::admit`]): the unix socket's
//!   peer by `SO_PEERCRED`, the container endpoint's loopback peer by the uid of its socket.
//!   A peer it refuses gets its canned answer (`403`) at once, before its request is read,
//!   and holds no slot.
//! - Each uid (with its subordinate uids) may hold [`ServerLimits::max_connections_per_uid`]
//!   connections at once; one more is answered `503` with `Retry-After: 1` at once and holds
//!   no slot (an answer rather than a bare close, so a program with too many connections
//!   learns why). Root is not capped.
//! - A connection that sends no byte within [`FIRST_BYTE_DEADLINE`] is closed.
//! - Each of these is counted (`imds_credd_connections_closed_total`) and logged at most
//!   once per uid every [`crate::serve::refusals::INTERVAL`].
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
//!   connection is *waiting* from its accept until its first byte arrives.
//!   [`ServerLimits::unauthenticated`] caps the waiting connections per uid and in all;
//!   a newcomer over a cap closes the oldest waiting connection (of that uid, or of all).
//!   A connection with a request queued or being answered is never closed for a newcomer,
//!   so a crowd of silent connections cannot cut off a token holder, even while its
//!   request waits for the first refresh at start.
//!
//! # Shutdown
//! Stop accepting (the listener is closed, so new clients get `ECONNREFUSED`; a socket
//! systemd holds keeps queueing them for the next daemon), let requests in flight finish,
//! serve the first request of connections accepted but not read yet, close idle
//! keep-alive connections, and after
//! [`ServerLimits::shutdown_grace`] drop whatever is still open.

mod admission;
#[cfg(target_os = "linux")]
mod fd_limit;

use super::api::{Api, Body, Endpoint};
use super::refusals::RefusalLog;
use admission::{Heard, Lingering, Shares};
pub use admission::{Share, FIRST_BYTE_DEADLINE, PER_UID_CONNECTIONS};
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
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Pause after a failed `accept()` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Time a frontend has to identify a new connection; past it the connection is closed.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// Connections one uid may hold at once (default [`PER_UID_CONNECTIONS`]).
    pub max_connections_per_uid: usize,
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
    /// Caps on connections not yet heard from; `None` (the default) where admission is
    /// decided at accept (the unix socket's peer credentials).
    pub unauthenticated: Option<UnauthenticatedLimits>,
}

/// How many connections may wait for their first byte; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnauthenticatedLimits {
    /// Waiting connections one uid (or address) may hold.
    pub per_peer: usize,
    /// Waiting connections in all.
    pub total: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            max_connections_per_uid: PER_UID_CONNECTIONS,
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
    /// A connection, as accepted.
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

/// What a frontend decides about a new connection.
pub enum Admission<P> {
    /// Served, within `share`'s cap.
    Admit {
        /// What the frontend found out about the peer.
        peer: P,
        /// The share of the slots it counts in.
        share: Share,
    },
    /// Answered with this at once and closed (the frontend logged and counted why).
    Refuse(Response<Body>),
    /// Closed at once: the peer is gone (the frontend logged and counted it).
    Drop,
}

/// What a server does with its connections: who is let in, and the answer to each request.
pub trait Frontend: Send + Sync + 'static {
    /// The listener's connections.
    type Stream;
    /// What [`Frontend::respond`] needs to know about an admitted connection.
    type Peer: Send + Sync + 'static;
    /// Names the server in log lines.
    const NAME: &'static str;
    /// Whose counters the server's requests and closed connections go to.
    const ENDPOINT: Endpoint;
    /// Identifies a new connection and decides on it. Runs in the connection's own task;
    /// a blocking lookup belongs on the blocking pool.
    fn admit(&self, stream: &Self::Stream) -> impl Future<Output = Admission<Self::Peer>> + Send;
    /// The API behind the server. Before a request is answered the loop waits on its
    /// [`Api::first_outcome`]: at start, a credentials request waits (boundedly) for the
    /// first refresh outcome instead of getting `503` at once.
    fn api(&self) -> &Api;
    /// The answer to one request of an admitted `peer`.
    fn respond(
        &self,
        peer: &Self::Peer,
        request: &Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send;
    /// Where the server's refusal lines are rate-limited.
    fn refusals(&self) -> &RefusalLog;
}

/// The connections waiting for their first byte, oldest first, each with the token that
/// closes it.
#[derive(Default)]
struct Waiting {
    next_id: u64,
    entries: VecDeque<(u64, Share, CancellationToken)>,
}

impl Waiting {
    /// Adds a connection of `share`, first closing the oldest waiting ones over `limits`.
    fn enter(&mut self, share: Share, limits: UnauthenticatedLimits) -> (u64, CancellationToken) {
        while self.entries.iter().filter(|(_, s, _)| *s == share).count() >= limits.per_peer.max(1)
        {
            self.evict(|s| s == share);
        }
        while self.entries.len() >= limits.total.max(1) {
            self.evict(|_| true);
        }
        let id = self.next_id;
        self.next_id += 1;
        let close = CancellationToken::new();
        self.entries.push_back((id, share, close.clone()));
        (id, close)
    }

    /// Closes the oldest waiting connection whose share matches.
    fn evict(&mut self, matches: impl Fn(Share) -> bool) {
        if let Some(index) = self.entries.iter().position(|(_, s, _)| matches(*s)) {
            if let Some((_, _, close)) = self.entries.remove(index) {
                close.cancel();
            }
        }
    }

    /// The connection was heard from or ended.
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

/// What every connection task of one server shares.
struct Shared<F> {
    frontend: Arc<F>,
    limits: ServerLimits,
    builder: http1::Builder,
    shares: Shares,
    waiting: Mutex<Waiting>,
    lingering: Lingering,
    shutdown: CancellationToken,
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
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    let shared = Arc::new(Shared {
        frontend,
        limits,
        builder,
        shares: Shares::default(),
        waiting: Mutex::new(Waiting::default()),
        lingering: Lingering::default(),
        shutdown: shutdown.clone(),
    });
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
        match accepted {
            Ok(stream) => {
                failing_since = None;
                connections.spawn(connection(Arc::clone(&shared), stream, permit));
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
                // Monotonic: a pause after a failed accept.
                #[allow(clippy::disallowed_methods)]
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
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

/// One connection from accept to close: admission, then HTTP within the limits.
async fn connection<F>(
    shared: Arc<Shared<F>>,
    stream: F::Stream,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    F: Frontend,
    F::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admitted = tokio::time::timeout(ADMISSION_TIMEOUT, shared.frontend.admit(&stream))
        .await
        .unwrap_or(Admission::Drop);
    let (peer, share) = match admitted {
        Admission::Admit { peer, share } => (peer, share),
        Admission::Refuse(response) => {
            drop(permit);
            shared.lingering.answer_and_close(stream, response).await;
            return;
        }
        Admission::Drop => return,
    };
    let Some(share_slot) = shared
        .shares
        .take(share, shared.limits.max_connections_per_uid)
    else {
        drop(permit);
        refuse_over_share(&shared, stream, share).await;
        return;
    };
    let waiting_entry = shared
        .limits
        .unauthenticated
        .map(|caps| lock(&shared.waiting).enter(share, caps));
    let id = waiting_entry.as_ref().map(|(id, _)| *id);
    let closed_for_newcomer = waiting_entry.map(|(_, close)| close);
    let ended = serve_http(&shared, stream, peer, share, id, closed_for_newcomer).await;
    if let Err(error) = ended {
        let frontend = &shared.frontend;
        if let Some(unlogged) = frontend.refusals().admit_line(format!("{share} error")) {
            tracing::debug!(server = F::NAME, peer = %share, error = %crate::error_chain::render(&error), refused_since_last_line = unlogged, "connection ended with an error");
        }
    }
    if let Some(id) = id {
        lock(&shared.waiting).leave(id);
    }
    drop(share_slot);
    drop(permit);
}

/// Answers a connection whose uid holds all the connections it may (`503`, counted and
/// logged at most once an interval), without a slot.
async fn refuse_over_share<F>(shared: &Shared<F>, stream: F::Stream, share: Share)
where
    F: Frontend,
    F::Stream: AsyncRead + AsyncWrite + Unpin,
{
    let frontend = &shared.frontend;
    let closed = frontend.api().closed_counters(F::ENDPOINT);
    crate::health::metrics::Metrics::incr(&closed.over_share);
    if let Some(unlogged) = frontend
        .refusals()
        .admit_line(format!("{share} over share"))
    {
        tracing::warn!(server = F::NAME, peer = %share, cap = shared.limits.max_connections_per_uid, refused_since_last_line = unlogged, "refusing a connection: its uid holds all the connections it may");
    }
    let response = frontend
        .api()
        .over_share(F::ENDPOINT, shared.limits.max_connections_per_uid);
    shared.lingering.answer_and_close(stream, response).await;
}

/// The answer to one request of an admitted connection: at start it waits (boundedly) for
/// the first refresh outcome, and a refusal closes the connection.
async fn answer<F: Frontend>(
    frontend: &F,
    peer: &F::Peer,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    frontend.api().first_outcome(request.uri()).await;
    let mut response = frontend.respond(peer, &request).await;
    if is_refusal(&response) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Serves an admitted connection's requests until it ends: closed if it sends nothing
/// before [`FIRST_BYTE_DEADLINE`] or, while still silent, for a newcomer (its waiting entry
/// `id` leaves once it is heard from), and wound down at the stop.
async fn serve_http<F>(
    shared: &Arc<Shared<F>>,
    stream: F::Stream,
    peer: F::Peer,
    share: Share,
    id: Option<u64>,
    closed_for_newcomer: Option<CancellationToken>,
) -> Result<(), hyper::Error>
where
    F: Frontend,
    F::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let frontend = &shared.frontend;
    let closed = frontend.api().closed_counters(F::ENDPOINT);
    let peer = Arc::new(peer);
    let first_request = Arc::new(Notify::new());
    let request_arrived = Arc::clone(&first_request);
    let service_frontend = Arc::clone(&shared.frontend);
    let service = service_fn(move |request: Request<Incoming>| {
        let frontend = Arc::clone(&service_frontend);
        let peer = Arc::clone(&peer);
        request_arrived.notify_one();
        async move { answer(&*frontend, &peer, request).await }
    });
    let (stream, heard) = Heard::new(stream);
    let connection = shared
        .builder
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    // Monotonic: a connection's first-byte deadline is a timeout, not a wall-clock time.
    #[allow(clippy::disallowed_methods)]
    let first_byte_deadline = tokio::time::sleep(FIRST_BYTE_DEADLINE);
    let mut first_byte_deadline = std::pin::pin!(first_byte_deadline);
    let newcomer = async {
        match &closed_for_newcomer {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let mut newcomer = std::pin::pin!(newcomer);
    let mut was_heard = false;
    // Until the stop; then the request in flight is finished and the connection closed.
    // One accepted just before the stop whose request has not been read yet is served that
    // request first: its client connected in time (on a socket held across a restart,
    // closing it would lose a request).
    let ended = loop {
        tokio::select! {
            ended = connection.as_mut() => break Some(ended),
            () = heard.cancelled(), if !was_heard => {
                was_heard = true;
                if let Some(id) = id {
                    lock(&shared.waiting).leave(id);
                }
            }
            () = first_byte_deadline.as_mut(), if !was_heard => {
                if let Some(unlogged) = note_closed(&closed.silent, frontend.refusals(), format!("{share} silent")) {
                    tracing::debug!(server = F::NAME, peer = %share, refused_since_last_line = unlogged, "closed a connection that sent nothing");
                }
                break Some(Ok(()));
            }
            () = newcomer.as_mut(), if !was_heard => {
                if let Some(unlogged) = frontend.refusals().admit_line(format!("{share} evicted")) {
                    tracing::debug!(server = F::NAME, peer = %share, refused_since_last_line = unlogged, "closed a silent connection for a newer one");
                }
                break Some(Ok(()));
            }
            _ = shared.shutdown.cancelled() => break tokio::select! {
                ended = connection.as_mut() => Some(ended),
                // Stored once any request arrived, so immediate then.
                _ = first_request.notified() => None,
            },
        }
    };
    match ended {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Counts a connection closed at accept for `reason` on `counter`, and says whether to log
/// it now (the count since the last line), through the frontend's rate-limited log.
pub fn note_closed(counter: &AtomicU64, refusals: &RefusalLog, key: String) -> Option<u64> {
    crate::health::metrics::Metrics::incr(counter);
    refusals.admit_line(key)
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
        let (a, b, c) = (Share::Uid(1), Share::Uid(2), Share::Uid(3));
        let mut waiting = Waiting::default();
        let (_, a1) = waiting.enter(a, caps);
        let (a2_id, a2) = waiting.enter(a, caps);
        let (_, a3) = waiting.enter(a, caps);
        assert!(a1.is_cancelled() && !a2.is_cancelled() && !a3.is_cancelled());
        let (_, b1) = waiting.enter(b, caps);
        assert!(
            !a2.is_cancelled() && !b1.is_cancelled(),
            "3 waiting: within the total"
        );
        waiting.leave(a2_id);
        let (_, b2) = waiting.enter(b, caps);
        assert!(!a3.is_cancelled() && !b2.is_cancelled());
        let (_, c1) = waiting.enter(c, caps);
        assert!(a3.is_cancelled(), "the oldest of all goes for the total");
        assert!(!b1.is_cancelled() && !b2.is_cancelled() && !c1.is_cancelled());
    }
}

//! The container-credentials endpoint (`[container]`, optional): the daemon's credentials on
//! loopback TCP in the shape the SDKs' container provider reads, so unmodified programs in
//! containers or network namespaces (where the IMDS hop limit stops their token request)
//! get credentials without IMDS. Give such a program exactly these two variables (SDKs
//! disagree on precedence when more are set):
//!
//! ```text
//! AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:28679/v1/credentials
//! AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/run/imds-credd/container-token
//! ```
//!
//! # Answers
//! `GET /v1/credentials` (the instance role) and `GET /v1/credentials?profile=NAME` (an
//! `[[assume]]` profile) answer `{"AccessKeyId","SecretAccessKey","Token","Expiration"}`,
//! plus `RoleArn` for a profile. The rendering, the expiry check at answer time (503, never
//! an expired set) and the `{"code","message"}` errors are the socket API's
//! ([`crate::serve::api`], [`Endpoint::Container`]); the connection limits and the graceful
//! stop are its server's ([`crate::serve::server`]).
//!
//! # Who is answered
//! Checked in this order; each refusal is logged with the peer address and the reason, never
//! with a header's value, at most once per peer and reason every
//! [`crate::serve::refusals::INTERVAL`] (with the count since the previous line):
//! - A peer that is not on loopback: 403 on every request. The listen address is loopback
//!   already (the config refuses any other), so this is a second lock.
//! - A request carrying `X-Forwarded-For` or `Forwarded`: 403. A proxy or a web application
//!   on the host relayed it, perhaps on an attacker's behalf (IMDS refuses them too).
//! - No `Authorization` header: 401. One that is not the token byte for byte (compared in
//!   constant time): 403.
//! - A uid over `[socket] rate_limit`: 429 with `Retry-After`.
//!
//! The peer's uid (and, where the daemon may see it, its pid and program) comes from
//! `/proc/net/tcp{,6}` by its port at accept time ([`crate::serve::socket::proc_peer`]), for the
//! rate limit and the consumer table.
//!
//! # The token
//! 32 bytes from the operating system's random source, hex-encoded (64 characters, so no
//! CR/LF, which botocore and aws-sdk-rust refuse), made at each start. It is written to
//! `token_file` with mode 0600 and no trailing newline through [`crate::sink::atomic`]
//! (missing folders made 0700, links and other users' files refused), after the port is
//! bound and before any request is answered. Every
//! [`crate::sink::RESYNC_INTERVAL`] the file is checked and rewritten if it was deleted or
//! changed; a failure shows in the endpoint's health row.
//!
//! ## A new token at each start, and no token file after a clean stop
//! - SDKs read the token file again at every credentials fetch, not once per process, so a
//!   long-running SDK client takes a restarted daemon's new token at its next fetch. It
//!   keeps using its cached credentials until minutes before they expire, so a restart
//!   costs it nothing unless it lands in that window, and then one failed fetch that it
//!   retries. Keeping the token across restarts would help only clients that copied its
//!   value into `AWS_CONTAINER_AUTHORIZATION_TOKEN`, which must use the file variable instead.
//! - At a clean stop the file is removed, if it still holds our token (a newer daemon's is
//!   left alone). While the daemon is down its token opens nothing; without the file the
//!   SDKs fail before sending anything, so they hand no token to, and take no credentials
//!   from, whatever else might bind the port meanwhile. After a crash the file stays until
//!   the next start replaces it.
//! - Each write is a rename (a new inode): mount the token's folder into a container, not
//!   the file itself, or the container keeps seeing the first token.
//!
//! # A port someone else holds
//! Any local user can bind a free loopback port first. That never stops the daemon: the
//! socket API and every file sink go on, the endpoint's health row (in `status`,
//! `/v1/status`, `/metrics` and systemd's `STATUS=`) says why, and the bind is retried
//! with backoff (`BIND_RETRY_FIRST` doubling to `BIND_RETRY_MAX`). Meanwhile no token
//! file exists: one left from an earlier run is removed, because SDKs reading it would
//! send the token to, and take credentials from, whoever holds the port. To hold the port
//! from boot, enable `imds-credd-container.socket`: systemd binds it before any user
//! runs and passes it to the daemon ([`crate::serve::activation`]).

use crate::clock::SharedClock;
use crate::config::{is_loopback, ContainerConfig};
use crate::credentials::secret::Secret;
use crate::health::{SinkHealth, SinkReporter};
use crate::serve::api::{ApiError, Body};
use crate::serve::consumers::{Consumer, Program};
use crate::serve::refusals::RefusalLog;
use crate::serve::server::{self, Frontend, ServerLimits, UnauthenticatedLimits};
use crate::serve::socket::proc_peer::{loopback_socket, program_of, SocketOwners};
use crate::serve::{Api, Endpoint};
use crate::sink::atomic::{FileError, ManagedFile};
use crate::sink::RESYNC_INTERVAL;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, FORWARDED};
use hyper::{Request, Response, StatusCode};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// Random bytes in a token (64 hex characters).
const TOKEN_BYTES: usize = 32;
/// Only the daemon's user may read the token.
const TOKEN_FILE_MODE: u32 = 0o600;
/// Connections served at once. Each SDK client fetches about once an hour, so a few hundred
/// cover a crowded host; the rest is headroom over [`UNAUTHENTICATED`]'s total, so that
/// token holders always find a slot. Should this and the socket's cap together pass the
/// open-files limit, `accept` fails with `EMFILE`, which the server logs and retries after
/// a pause.
const MAX_CONNECTIONS: usize = 512;
/// An SDK sends its request as soon as it connects and fetches once an hour, so a short
/// head and idle timeout costs it nothing and frees a slot a silent client holds.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections that have not yet shown the token: each peer address may hold 64, all
/// together 128; past that the oldest waiting one is closed for the newcomer.
const UNAUTHENTICATED: UnauthenticatedLimits = UnauthenticatedLimits {
    per_peer: 64,
    total: 128,
};
/// `X-Forwarded-For` (hyper names only the standard `Forwarded`).
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// First wait before binding again after a failed bind...
const BIND_RETRY_FIRST: Duration = Duration::from_secs(1);
/// ...doubling up to this: a freed port is taken within a minute.
const BIND_RETRY_MAX: Duration = Duration::from_secs(60);

/// Why the endpoint could not start. Nothing is served, and the daemon should stop. (A
/// port that cannot be bound is not one of these: see the module doc.)
#[derive(Debug, Error)]
pub enum ContainerError {
    #[error("[container] {key}: {message}")]
    Config { key: &'static str, message: String },
    #[error("cannot read the operating system's random source for the container token")]
    Random(#[source] getrandom::Error),
    #[error("cannot write the container token file")]
    TokenFile(#[source] FileError),
}

/// An endpoint with its token made, bound (and its token file written) if the port was
/// free, not yet served.
pub struct ContainerEndpoint {
    listener: Option<TcpListener>,
    listen: SocketAddr,
    service: Arc<ContainerService>,
}

/// What every connection shares: the API, the token and its file, the health row, the
/// refusal log's memory.
struct ContainerService {
    api: Arc<Api>,
    token: Secret,
    token_file: ManagedFile,
    reporter: SinkReporter,
    clock: SharedClock,
    refusals: RefusalLog,
    /// Our listening address once bound, to find a peer's line in `/proc/net/tcp`.
    addr: OnceLock<SocketAddr>,
    owners: SocketOwners,
}

impl ContainerEndpoint {
    /// Takes the port from systemd ([`crate::serve::activation`]) or binds `config.listen` (port 0
    /// picks a free port: see [`Self::local_addr`]), makes a token and writes it to
    /// `config.token_file`, and adds the endpoint to `health`. A port that cannot be bound
    /// is reported and retried by [`Self::serve`].
    pub async fn open(
        config: &ContainerConfig,
        api: Arc<Api>,
        health: &SinkHealth,
        clock: SharedClock,
    ) -> Result<Self, ContainerError> {
        config
            .check()
            .map_err(|(key, message)| ContainerError::Config { key, message })?;
        let token = new_token()?;
        let token_file = ManagedFile::new(&config.token_file, TOKEN_FILE_MODE, None, None)
            .map_err(ContainerError::TokenFile)?;
        let bound = listen(config.listen);
        let target = match &bound {
            Ok(listener) => listener.local_addr().unwrap_or(config.listen),
            Err(_) => config.listen,
        };
        let reporter = health.register("container", target.to_string());
        let service = Arc::new(ContainerService {
            api,
            token,
            token_file,
            reporter,
            clock,
            refusals: RefusalLog::default(),
            addr: OnceLock::new(),
            owners: SocketOwners::default(),
        });
        let listener = match bound {
            Ok(listener) => {
                service.ready(&listener).await?;
                Some(listener)
            }
            Err(error) => {
                service.cannot_listen(config.listen, &error, BIND_RETRY_FIRST);
                None
            }
        };
        Ok(ContainerEndpoint {
            listener,
            listen: config.listen,
            service,
        })
    }

    /// The address bound, with the port resolved when the config said 0; `None` while the
    /// port could not be bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Binds with backoff if [`Self::open`] could not, then serves until `shutdown` is
    /// cancelled, keeping the token file in place meanwhile; then drains and removes the
    /// token file (see the module doc).
    pub async fn serve(self, shutdown: CancellationToken) {
        let service = self.service;
        let listener = match self.listener {
            Some(listener) => listener,
            None => match bind_with_backoff(&service, self.listen, &shutdown).await {
                Some(listener) => listener,
                None => return,
            },
        };
        let limits = ServerLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_TIMEOUT,
            unauthenticated: Some(UNAUTHENTICATED),
            ..ServerLimits::default()
        };
        let served = server::serve(listener, Arc::clone(&service), limits, shutdown.clone());
        tokio::join!(served, keep_token_file(&service, &shutdown));
        if tokio::task::spawn_blocking(move || service.remove_token_file())
            .await
            .is_err()
        {
            tracing::warn!("removing the container token file panicked");
        }
    }
}

/// The listener systemd passed for the endpoint, else a new one bound to `addr`.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let std_listener =
        match crate::serve::activation::take(crate::serve::activation::CONTAINER_SOCKET_NAMES) {
            Some(fd) => activated_listener(fd)?,
            None => std::net::TcpListener::bind(addr)?,
        };
    std_listener.set_nonblocking(true)?;
    TcpListener::from_std(std_listener)
}

/// Wraps the fd systemd passed, refusing it unless it is a listening TCP socket on a
/// loopback address (the endpoint answers over plain HTTP).
fn activated_listener(fd: std::os::fd::RawFd) -> io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: systemd passed this fd to us (LISTEN_PID is our pid) and
    // `activation::take` hands each fd out once, so this is its only owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listening = nix::sys::socket::getsockopt(&owned, nix::sys::socket::sockopt::AcceptConn)
        .map_err(io::Error::from)?;
    let listener = std::net::TcpListener::from(owned);
    let addr = listener.local_addr()?;
    if !listening || !is_loopback(addr.ip()) {
        return Err(io::Error::other(format!(
            "the socket systemd passed ({addr}) is not a listening loopback TCP socket"
        )));
    }
    tracing::info!(listen = %addr, "using the container endpoint socket passed by systemd");
    Ok(listener)
}

/// Binds `addr` again and again with backoff until it works (then writes the token file)
/// or `shutdown`; `None` when stopped first or the token file cannot be written.
async fn bind_with_backoff(
    service: &Arc<ContainerService>,
    addr: SocketAddr,
    shutdown: &CancellationToken,
) -> Option<TcpListener> {
    for attempt in 1.. {
        let wait = crate::backoff::ceiling(BIND_RETRY_FIRST, BIND_RETRY_MAX, attempt);
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = service.clock.sleep_until(service.clock.now() + wait) => {}
        }
        match listen(addr) {
            Ok(listener) => {
                return match service.ready(&listener).await {
                    Ok(()) => Some(listener),
                    Err(error) => {
                        let message = crate::error_chain::render(&error);
                        tracing::error!(error = %message, "the container endpoint cannot start");
                        service.reporter.failed(message);
                        None
                    }
                };
            }
            Err(error) => {
                let next = crate::backoff::ceiling(BIND_RETRY_FIRST, BIND_RETRY_MAX, attempt + 1);
                service.cannot_listen(addr, &error, next);
            }
        }
    }
    None
}

/// Rewrites the token file every [`RESYNC_INTERVAL`] if it no longer holds the token with
/// its mode, until `shutdown`.
async fn keep_token_file(service: &Arc<ContainerService>, shutdown: &CancellationToken) {
    loop {
        let next = service.clock.now() + RESYNC_INTERVAL;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = service.clock.sleep_until(next) => {}
        }
        let task_service = Arc::clone(service);
        let restored = tokio::task::spawn_blocking(move || task_service.restore_token_file())
            .await
            .unwrap_or_else(|_| Err("the token file check panicked".to_string()));
        let path = service.token_file.path().display();
        match restored {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(token_file = %path, "the container token file was deleted or changed; rewrote it");
                service.reporter.succeeded(service.clock.now());
            }
            Err(error) => {
                tracing::warn!(token_file = %path, %error, "cannot restore the container token file");
                service.reporter.failed(error);
            }
        }
    }
}

impl ContainerService {
    /// Writes the token file for a bound `listener` (on the blocking pool: file I/O never
    /// runs on the async workers) and reports the endpoint ready.
    async fn ready(self: &Arc<Self>, listener: &TcpListener) -> Result<(), ContainerError> {
        let service = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            service
                .token_file
                .replace(service.token.expose().as_bytes())
        })
        .await
        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
        .map_err(ContainerError::TokenFile)?;
        self.reporter.succeeded(self.clock.now());
        if let Ok(bound) = listener.local_addr() {
            let _ = self.addr.set(bound);
        }
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(
            listen = %addr,
            token_file = %self.token_file.path().display(),
            "container-credentials endpoint ready"
        );
        Ok(())
    }

    /// Reports a failed bind (health row and log) and removes a token file left from an
    /// earlier run, which would point SDKs at whoever holds the port.
    fn cannot_listen(&self, addr: SocketAddr, error: &io::Error, retry_in: Duration) {
        let message = format!(
            "cannot listen on {addr} ({error}); retrying in {}",
            humantime::format_duration(retry_in)
        );
        tracing::warn!(error = %message, "the container endpoint is not serving; everything else is");
        self.reporter.failed(message);
        match self.token_file.remove() {
            Ok(true) => tracing::warn!(
                token_file = %self.token_file.path().display(),
                "removed a container token file left from an earlier run: the port is not ours"
            ),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(error = %crate::error_chain::render(&error), "cannot remove the stale container token file")
            }
        }
    }

    /// Who is on the other end of a loopback connection from `peer`.
    fn consumer(&self, peer: SocketAddr) -> Consumer {
        let Some((uid, inode)) = self
            .addr
            .get()
            .and_then(|addr| loopback_socket(peer, *addr))
        else {
            return Consumer::unknown();
        };
        let pid = self.owners.pid_of(uid, inode);
        Consumer {
            uid: Some(uid),
            gid: None,
            pid,
            program: pid.map_or_else(Program::unknown, program_of),
        }
    }

    /// Whether the request may be answered; else the refusal, already logged.
    fn check(&self, peer: SocketAddr, request: &Request<Incoming>) -> Result<(), ApiError> {
        let headers = request.headers();
        let mut authorization = headers.get_all(AUTHORIZATION).iter();
        let verdict = if headers.contains_key(X_FORWARDED_FOR) || headers.contains_key(FORWARDED) {
            Err(ApiError::Forwarded)
        } else {
            match (authorization.next(), authorization.next()) {
                (None, _) => Err(ApiError::MissingToken),
                (Some(value), None) if self.is_token(value.as_bytes()) => Ok(()),
                _ => Err(ApiError::WrongToken),
            }
        };
        if let Err(reason) = &verdict {
            let peer = peer.ip();
            if let Some(unlogged) = self.refusals.admit_line(format!("{peer} {reason}")) {
                tracing::warn!(%peer, %reason, refused_since_last_line = unlogged, "refusing a container endpoint request");
            }
        }
        verdict
    }

    fn is_token(&self, presented: &[u8]) -> bool {
        presented.ct_eq(self.token.expose().as_bytes()).into()
    }

    /// Rewrites the token file unless it already holds the token with its mode. Returns
    /// whether it wrote.
    fn restore_token_file(&self) -> Result<bool, String> {
        let token = self.token.expose().as_bytes();
        self.token_file
            .read()
            .and_then(|existing| self.token_file.replace_if_changed(existing.as_ref(), token))
            .map_err(|e| crate::error_chain::render(&e))
    }

    /// Removes the token file if it still holds our token (see the module doc).
    fn remove_token_file(&self) {
        let path = self.token_file.path().display();
        let outcome = self.token_file.read().and_then(|existing| match existing {
            Some(file) if file.contents == self.token.expose().as_bytes() => {
                self.token_file.remove()
            }
            Some(_) => {
                tracing::info!(token_file = %path, "the container token file holds another token now; left in place");
                Ok(false)
            }
            None => Ok(false),
        });
        match outcome {
            Ok(true) => tracing::info!(token_file = %path, "removed the container token file"),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(token_file = %path, error = %crate::error_chain::render(&error), "cannot remove the container token file")
            }
        }
    }
}

impl Frontend for ContainerService {
    type Stream = TcpStream;
    /// The peer's address, and who it is: looked up in `/proc` only once the connection
    /// has shown the token, so an unauthenticated flood costs no `/proc` scans.
    type Peer = (SocketAddr, OnceLock<Consumer>);
    const NAME: &'static str = "container endpoint";

    fn admit(&self, stream: &TcpStream) -> Option<Self::Peer> {
        match stream.peer_addr() {
            Ok(peer) if is_loopback(peer.ip()) => Some((peer, OnceLock::new())),
            Ok(peer) => {
                let reason = ApiError::NotLoopback;
                if let Some(unlogged) = self.refusals.admit_line(format!("{} {reason}", peer.ip()))
                {
                    tracing::warn!(peer = %peer.ip(), %reason, refused_since_last_line = unlogged, "refusing a container endpoint peer");
                }
                None
            }
            Err(error) => {
                tracing::warn!(error = %crate::error_chain::render(&error), "cannot read a container endpoint peer's address; refusing it");
                None
            }
        }
    }

    fn api(&self) -> &Api {
        &self.api
    }

    fn respond(
        &self,
        (addr, consumer): &Self::Peer,
        request: &Request<Incoming>,
    ) -> Response<Body> {
        if let Err(refusal) = self.check(*addr, request) {
            // Not looked up: whoever did not show the token is counted as unknown.
            return self.api.refuse_consumer(
                Endpoint::Container,
                &Consumer::unknown(),
                request.uri(),
                refusal,
            );
        }
        let consumer = consumer.get_or_init(|| self.consumer(*addr));
        let response = self.api.respond_to(
            Endpoint::Container,
            consumer,
            request.method(),
            request.uri(),
        );
        if response.status() == StatusCode::OK {
            self.reporter.succeeded(self.clock.now());
        }
        response
    }

    fn refuse(&self) -> Response<Body> {
        self.api.refuse(Endpoint::Container, ApiError::NotLoopback)
    }

    /// Peers are told apart by address: on loopback, which 127.x address they use.
    fn peer_key(&self, (addr, _): &Self::Peer) -> String {
        addr.ip().to_string()
    }
}

/// A fresh token: [`TOKEN_BYTES`] random bytes, hex-encoded.
fn new_token() -> Result<Secret, ContainerError> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    getrandom::getrandom(bytes.as_mut()).map_err(ContainerError::Random)?;
    Ok(Secret::new(hex::encode(bytes.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_characters_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.expose().len(), 2 * TOKEN_BYTES);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }
}

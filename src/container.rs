//! The container-credentials endpoint (`[container]`, optional): the daemon's credentials on
//! loopback TCP in the shape the SDKs' container provider reads, so unmodified programs in
//! containers or network namespaces (where the IMDS hop limit stops their token request)
//! get credentials without IMDS. Give such a program exactly these two variables (SDKs
//! disagree on precedence when more are set):
//!
//! ```text
//! AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:51679/v1/credentials
//! AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/run/imds-credd/container-token
//! ```
//!
//! # Answers
//! `GET /v1/credentials` (the instance role) and `GET /v1/credentials?profile=NAME` (an
//! `[[assume]]` profile) answer `{"AccessKeyId","SecretAccessKey","Token","Expiration"}`,
//! plus `RoleArn` for a profile. The rendering, the expiry check at answer time (503, never
//! an expired set) and the `{"code","message"}` errors are the socket API's
//! ([`crate::socket::api`], [`Endpoint::Container`]); the connection limits and the graceful
//! stop are its server's ([`crate::socket::server`]).
//!
//! # Who is answered
//! Checked in this order; each refusal is logged with the peer address and the reason, never
//! with a header's value:
//! - A peer that is not on loopback: 403 on every request. The listen address is loopback
//!   already (the config refuses any other), so this is a second lock.
//! - A request carrying `X-Forwarded-For` or `Forwarded`: 403. A proxy or a web application
//!   on the host relayed it, perhaps on an attacker's behalf (IMDS refuses them too).
//! - No `Authorization` header: 401. One that is not the token byte for byte (compared in
//!   constant time): 403.
//!
//! # The token
//! 32 bytes from the operating system's random source, hex-encoded (64 characters, so no
//! CR/LF, which botocore and aws-sdk-rust refuse), made at each start. It is written to
//! `token_file` with mode 0600 and no trailing newline through [`crate::sink::atomic`]
//! (missing folders made 0700, links and other users' files refused), after the port is
//! bound (a start that cannot bind, say because another daemon listens there, leaves that
//! daemon's token alone) and before any request is answered. Every
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

use crate::clock::SharedClock;
use crate::config::{is_loopback, ContainerConfig};
use crate::health::{SinkHealth, SinkReporter};
use crate::secret::Secret;
use crate::sink::atomic::{FileError, ManagedFile};
use crate::sink::RESYNC_INTERVAL;
use crate::socket::api::{ApiError, Body};
use crate::socket::server::{self, Frontend, ServerLimits};
use crate::socket::{Api, Endpoint};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, FORWARDED};
use hyper::{Request, Response, StatusCode};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
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
/// cover a crowded host. Should this and the socket's cap together pass the open-files
/// limit, `accept` fails with `EMFILE`, which the server logs and retries after a pause.
const MAX_CONNECTIONS: usize = 256;
/// `X-Forwarded-For` (hyper names only the standard `Forwarded`).
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Why the endpoint could not start. Nothing is served, and the daemon should stop.
#[derive(Debug, Error)]
pub enum ContainerError {
    #[error("[container] {key}: {message}")]
    Config { key: &'static str, message: String },
    #[error("cannot listen on {addr} for the container endpoint")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot read the operating system's random source for the container token")]
    Random(#[source] getrandom::Error),
    #[error("cannot write the container token file")]
    TokenFile(#[source] FileError),
}

/// A bound endpoint with its token written, not yet served.
pub struct ContainerEndpoint {
    listener: TcpListener,
    addr: SocketAddr,
    service: Arc<ContainerService>,
}

/// What every connection shares: the API, the token and its file, the health row.
struct ContainerService {
    api: Arc<Api>,
    token: Secret,
    token_file: ManagedFile,
    reporter: SinkReporter,
    clock: SharedClock,
}

impl ContainerEndpoint {
    /// Binds `config.listen` (port 0 picks a free port: see [`Self::local_addr`]), makes a
    /// token and writes it to `config.token_file`, and adds the endpoint to `health`.
    pub async fn open(
        config: &ContainerConfig,
        api: Arc<Api>,
        health: &SinkHealth,
        clock: SharedClock,
    ) -> Result<Self, ContainerError> {
        config
            .check()
            .map_err(|(key, message)| ContainerError::Config { key, message })?;
        let bind_error = |source| ContainerError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let token = new_token()?;
        let token_file = ManagedFile::new(&config.token_file, TOKEN_FILE_MODE, None, None)
            .map_err(ContainerError::TokenFile)?;
        token_file
            .replace(token.expose().as_bytes())
            .map_err(ContainerError::TokenFile)?;
        let reporter = health.register("container", addr.to_string());
        reporter.succeeded(clock.now());
        tracing::info!(
            listen = %addr,
            token_file = %config.token_file.display(),
            "container-credentials endpoint ready"
        );
        let service = ContainerService {
            api,
            token,
            token_file,
            reporter,
            clock,
        };
        Ok(ContainerEndpoint {
            listener,
            addr,
            service: Arc::new(service),
        })
    }

    /// The address bound, with the port resolved when the config said 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled, keeping the token file in place meanwhile;
    /// then drains and removes the token file (see the module doc).
    pub async fn serve(self, shutdown: CancellationToken) {
        let limits = ServerLimits {
            max_connections: MAX_CONNECTIONS,
            ..ServerLimits::default()
        };
        let served = server::serve(
            self.listener,
            Arc::clone(&self.service),
            limits,
            shutdown.clone(),
        );
        tokio::join!(served, keep_token_file(&self.service, &shutdown));
        let service = Arc::clone(&self.service);
        if tokio::task::spawn_blocking(move || service.remove_token_file())
            .await
            .is_err()
        {
            tracing::warn!("removing the container token file panicked");
        }
    }
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
            tracing::warn!(%peer, %reason, "refusing a container endpoint request");
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
            .map_err(|e| e.to_string())
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
                tracing::warn!(token_file = %path, %error, "cannot remove the container token file")
            }
        }
    }
}

impl Frontend for ContainerService {
    type Stream = TcpStream;
    type Peer = SocketAddr;
    const NAME: &'static str = "container endpoint";

    fn admit(&self, stream: &TcpStream) -> Option<SocketAddr> {
        match stream.peer_addr() {
            Ok(peer) if is_loopback(peer.ip()) => Some(peer),
            Ok(peer) => {
                tracing::warn!(%peer, reason = %ApiError::NotLoopback, "refusing a container endpoint peer");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a container endpoint peer's address; refusing it");
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

    fn respond(&self, peer: &SocketAddr, request: &Request<Incoming>) -> Response<Body> {
        if let Err(refusal) = self.check(*peer, request) {
            return self.api.refuse(Endpoint::Container, refusal);
        }
        let response = self
            .api
            .respond(Endpoint::Container, request.method(), request.uri());
        if response.status() == StatusCode::OK {
            self.reporter.succeeded(self.clock.now());
        }
        response
    }

    fn refuse(&self) -> Response<Body> {
        self.api.refuse(Endpoint::Container, ApiError::NotLoopback)
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

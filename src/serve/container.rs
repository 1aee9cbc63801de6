//! The container-credentials endpoint (`[container]`, optional): the daemon's credentials
//! over TCP in the shape the SDKs' container provider reads, so unmodified programs in
//! containers or network namespaces (where the IMDS hop limit stops their token request)
//! get credentials without IMDS. Give such a program exactly these two variables (SDKs
//! disagree on precedence when more are set):
//!
//! ```text
//! AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:28679/v1/credentials
//! AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/run/imds-credd/container-token
//! ```
//!
//! It listens on every `listen` address: loopback for programs on the host, and
//! `169.254.170.23` / `fd00:ec2::23` (put on the host by `imds-credd container-address up`,
//! [`crate::serve::container_address`]) for bridged containers, which reach it through their
//! default route. One server per address, all sharing the clients, tokens and refusal log.
//!
//! # Clients
//! Each client has a token of its own: the default client (`token_file`, named `default`)
//! and each `[[container.client]]`. A token grants its client's credentials only: a named
//! client's profile (or the instance role), whatever `?profile=` asks (naming another is
//! `403`); the default client, as before clients existed, the instance role or any
//! `?profile=`. A client with `allow_from` is answered only from those source ranges.
//!
//! # Answers
//! `GET /v1/credentials` (the client's set) and `GET /v1/credentials?profile=NAME` answer
//! `{"AccessKeyId","SecretAccessKey","Token","Expiration"}`, plus `RoleArn` for a profile.
//! The rendering, the expiry check at answer time (503, never an expired set) and the
//! `{"code","message"}` errors are the socket API's ([`crate::serve::api`],
//! [`Endpoint::Container`]); the connection limits and the graceful stop are its server's
//! ([`crate::serve::server`]).
//!
//! # Who is answered
//! Checked in this order; each refusal is logged with the peer address and the reason, never
//! with a header's value, at most once per peer and reason every
//! [`crate::serve::refusals::INTERVAL`] (with the count since the previous line):
//! - On a loopback address, a peer that is not on loopback: 403 on every request (a second
//!   lock: nothing off the host routes to loopback). On a container address any peer may
//!   connect; its token says who it is.
//! - A request carrying `X-Forwarded-For` or `Forwarded`: 403. A proxy or a web application
//!   on the host relayed it, perhaps on an attacker's behalf (IMDS refuses them too).
//! - No `Authorization` header: 401. One that is no client's token byte for byte (compared
//!   in constant time with every client's): 403.
//! - A source outside the client's `allow_from`: 403. A `?profile=` the token does not
//!   grant: 403.
//! - A uid over `[socket] rate_limit`: 429 with `Retry-After`.
//!
//! A local peer's uid comes from one netlink lookup of its socket at accept time
//! ([`crate::serve::socket::sock_diag`], non-blocking), on loopback and on a container
//! address alike (a host process reaches that from any host address): the server's per-uid
//! connection cap, the waiting connections and the rate limit key on it (a subordinate uid
//! on its owner, [`crate::serve::subuid`]), not on the loopback address every local user
//! shares. A peer in another network namespace (a bridged container) has no uid here: it
//! counts by its address, and the consumer table shows its client and address. A peer
//! whose socket is already gone (connect and reset) is closed at once. A local peer's pid
//! and program (where the daemon may see them) are looked up on the blocking pool once it
//! has shown a token ([`crate::serve::socket::proc_peer`]), for the consumer table.
//!
//! # The tokens
//! 32 bytes from the operating system's random source, hex-encoded (64 characters, so no
//! CR/LF, which botocore and aws-sdk-rust refuse), made for each client at each start. Each
//! is written to its `token_file` with mode 0600 and no trailing newline through
//! [`crate::sink::atomic`] (missing folders made 0700, links and other users' files
//! refused), once every address is bound and before any request is answered. Every
//! [`crate::sink::RESYNC_INTERVAL`] the files are checked and rewritten if deleted or
//! changed; a failure shows in the endpoint's health rows.
//!
//! ## A new token at each start, and no token file after a clean stop
//! - SDKs read the token file again at every credentials fetch, not once per process, so a
//!   long-running SDK client takes a restarted daemon's new token at its next fetch. It
//!   keeps using its cached credentials until minutes before they expire, so a restart
//!   costs it nothing unless it lands in that window, and then one failed fetch that it
//!   retries. Keeping the token across restarts would help only clients that copied its
//!   value into `AWS_CONTAINER_AUTHORIZATION_TOKEN`, which must use the file variable instead.
//! - At a clean stop each file is removed, if it still holds our token (a newer daemon's is
//!   left alone). While the daemon is down its tokens open nothing; without the files the
//!   SDKs fail before sending anything, so they hand no token to, and take no credentials
//!   from, whatever else might bind the port meanwhile. After a crash the files stay until
//!   the next start replaces them.
//! - Each write is a rename (a new inode): mount the token's folder into a container, not
//!   the file itself, or the container keeps seeing the first token.
//!
//! # A port someone else holds
//! Any local user can bind a free unprivileged port first, on loopback or on the container
//! address. That never stops the daemon: the socket API and every file sink go on, the
//! address's health row (in `status`, `/v1/status`, `/metrics` and systemd's `STATUS=`)
//! says why, and the bind is retried with backoff (`BIND_RETRY_FIRST` doubling to
//! `BIND_RETRY_MAX`). Meanwhile no token file exists: one left from an earlier run is
//! removed, because SDKs reading it would send the token to, and take credentials from,
//! whoever holds the port (a client may use any of the addresses, so no token is written
//! until all are ours). To hold the loopback port from boot, enable
//! `imds-credd-container.socket`: systemd binds it before any user runs and passes it to
//! the daemon ([`crate::serve::activation`]) for the first `listen` address.

use crate::clock::SharedClock;
use crate::config::{
    is_container_listen_address, is_loopback, Cidr, ContainerConfig, ContainerKey,
    DEFAULT_CLIENT_NAME,
};
use crate::credentials::secret::Secret;
use crate::health::{SinkHealth, SinkReporter};
use crate::serve::api::{ApiError, Body};
use crate::serve::consumers::{Consumer, Program};
use crate::serve::refusals::RefusalLog;
use crate::serve::server::{self, Admission, Frontend, ServerLimits, Share, UnauthenticatedLimits};
use crate::serve::socket::proc_peer::{program_of, SocketOwners};
use crate::serve::socket::sock_diag::{peer_socket, PeerSocket};
use crate::serve::subuid::SubordinateIds;
use crate::serve::{Api, Endpoint};
use crate::sink::atomic::{FileError, ManagedFile};
use crate::sink::RESYNC_INTERVAL;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, FORWARDED};
use hyper::{Request, Response, StatusCode, Uri};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use subtle::{Choice, ConstantTimeEq};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// Random bytes in a token (64 hex characters).
const TOKEN_BYTES: usize = 32;
/// Only the daemon's user may read the token.
const TOKEN_FILE_MODE: u32 = 0o600;
/// Connections served at once on each address. Each SDK client fetches about once an hour,
/// so a few hundred cover a crowded host; the rest is headroom over [`UNAUTHENTICATED`]'s
/// total, so that token holders always find a slot. Should these and the socket's cap
/// together pass the open-files limit, `accept` fails with `EMFILE`, which the server logs
/// and retries after a pause.
const MAX_CONNECTIONS: usize = 512;
/// An SDK sends its request as soon as it connects and fetches once an hour, so a short
/// head and idle timeout costs it nothing and frees a slot a silent client holds.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections that have sent nothing yet: each uid (or, for a container in another
/// network namespace, each address) may hold 64, all together 128; past that the oldest
/// silent one is closed for the newcomer.
const UNAUTHENTICATED: UnauthenticatedLimits = UnauthenticatedLimits {
    per_peer: 64,
    total: 128,
};
/// Pending connections the kernel queues while the accept loop catches up: a connection
/// flood that fills the queue makes the kernel drop new clients' SYNs, which they resend
/// only after a second.
const LISTEN_BACKLOG: i32 = 1024;
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
    /// A `[container]` setting the endpoint cannot use.
    #[error("key `{key}`: {message}")]
    Config {
        /// The key.
        key: ContainerKey,
        /// What is wrong with it.
        message: String,
    },
    /// No random bytes for a token.
    #[error("cannot read the operating system's random source for the container token")]
    Random(#[source] getrandom::Error),
    /// A token file could not be written.
    #[error("cannot write the container token file")]
    TokenFile(#[source] FileError),
}

/// An endpoint with its tokens made, bound (and its token files written) if every port was
/// free, not yet served.
pub struct ContainerEndpoint {
    addresses: Vec<Address>,
    service: Arc<ContainerService>,
}

/// One `listen` address: its server's view, and its listener once bound.
struct Address {
    front: Arc<AddressFront>,
    listener: Option<TcpListener>,
}

/// What every connection on every address shares: the API, the clients, the refusal log's
/// memory.
struct ContainerService {
    api: Arc<Api>,
    clients: Vec<Client>,
    clock: SharedClock,
    refusals: RefusalLog,
    owners: Arc<SocketOwners>,
    subuids: SubordinateIds,
    /// Each address's health row, for what concerns them all (the token files).
    reporters: Vec<Arc<SinkReporter>>,
}

/// A client: its token and file, and what the token grants.
struct Client {
    name: Arc<str>,
    token: Secret,
    token_file: ManagedFile,
    grant: Grant,
    /// Source ranges the token is accepted from; empty: any.
    allow_from: Vec<Cidr>,
}

/// A request let through: its client, and the query to answer it with.
type Granted<'a> = (&'a Client, Option<String>);
/// A request refused: why, and its client when its token was right.
type Refused<'a> = (Option<&'a Client>, ApiError);

/// The credentials a token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    /// The default client: the instance role, or any `?profile=` (as before clients).
    Any,
    /// The instance role only.
    Instance,
    /// This `[[assume]]` profile only.
    Profile(String),
}

/// The server of one address.
struct AddressFront {
    service: Arc<ContainerService>,
    /// The configured address (port 0 until bound).
    listen: SocketAddr,
    /// Our listening address once bound (the token files wait for every address).
    bound: OnceLock<SocketAddr>,
    reporter: Arc<SinkReporter>,
}

impl ContainerEndpoint {
    /// Takes the first address's port from systemd ([`crate::serve::activation`]) or binds
    /// it, binds the others (port 0 picks a free port: see [`Self::local_addrs`]), makes a
    /// token per client and writes them once every address is bound, and adds a health row
    /// per address to `health`. An address that cannot be bound is reported and retried by
    /// [`Self::serve`].
    pub async fn open(
        config: &ContainerConfig,
        api: Arc<Api>,
        health: &SinkHealth,
        clock: SharedClock,
    ) -> Result<Self, ContainerError> {
        config
            .check()
            .map_err(|(key, message)| ContainerError::Config { key, message })?;
        let mut clients = vec![Client::new(
            DEFAULT_CLIENT_NAME,
            &config.token_file,
            Grant::Any,
            Vec::new(),
        )?];
        for client in &config.clients {
            let grant = client
                .profile
                .clone()
                .map_or(Grant::Instance, Grant::Profile);
            clients.push(Client::new(
                &client.name,
                &client.token_file,
                grant,
                client.allow_from.clone(),
            )?);
        }
        let bound: Vec<(SocketAddr, io::Result<TcpListener>)> = config
            .listen
            .iter()
            .enumerate()
            .map(|(i, addr)| (*addr, listen(*addr, i == 0)))
            .collect();
        let reporters: Vec<Arc<SinkReporter>> = bound
            .iter()
            .map(|(addr, listener)| {
                let target = listener
                    .as_ref()
                    .ok()
                    .and_then(|l| l.local_addr().ok())
                    .unwrap_or(*addr);
                Arc::new(health.register("container", target.to_string()))
            })
            .collect();
        let service = Arc::new(ContainerService {
            api,
            clients,
            clock,
            refusals: RefusalLog::default(),
            owners: Arc::default(),
            subuids: SubordinateIds::system(),
            reporters: reporters.clone(),
        });
        let mut addresses = Vec::new();
        for ((addr, listener), reporter) in bound.into_iter().zip(reporters) {
            let front = Arc::new(AddressFront {
                service: Arc::clone(&service),
                listen: addr,
                bound: OnceLock::new(),
                reporter,
            });
            let listener = match listener {
                Ok(listener) => {
                    front.bound_to(&listener);
                    Some(listener)
                }
                Err(error) => {
                    front.cannot_listen(&error, BIND_RETRY_FIRST);
                    None
                }
            };
            addresses.push(Address { front, listener });
        }
        if addresses.iter().all(|a| a.listener.is_some()) {
            service
                .write_token_files(&bound_addresses(&addresses))
                .await?;
        } else {
            service.remove_stale_token_files();
        }
        Ok(ContainerEndpoint { addresses, service })
    }

    /// The addresses bound, in `listen` order, with the port resolved when the config said
    /// 0; `None` for one that could not be bound.
    pub fn local_addrs(&self) -> Vec<Option<SocketAddr>> {
        self.addresses
            .iter()
            .map(|a| a.listener.as_ref().and_then(|l| l.local_addr().ok()))
            .collect()
    }

    /// Binds with backoff what [`Self::open`] could not (then writes the token files), then
    /// serves every address until `shutdown` is cancelled, keeping the token files in place
    /// meanwhile; then drains and removes the token files (see the module doc).
    pub async fn serve(mut self, shutdown: CancellationToken) {
        let service = self.service;
        if self.addresses.iter().any(|a| a.listener.is_none())
            && !bind_with_backoff(&service, &mut self.addresses, &shutdown).await
        {
            return;
        }
        let limits = ServerLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_TIMEOUT,
            unauthenticated: Some(UNAUTHENTICATED),
            ..ServerLimits::default()
        };
        let mut servers = tokio::task::JoinSet::new();
        for address in self.addresses {
            let Some(listener) = address.listener else {
                continue;
            };
            servers.spawn(server::serve(
                listener,
                address.front,
                limits,
                shutdown.clone(),
            ));
        }
        let served = async {
            while let Some(ended) = servers.join_next().await {
                if let Err(error) = ended {
                    tracing::error!(%error, "a container endpoint server panicked");
                    shutdown.cancel();
                }
            }
        };
        tokio::join!(served, keep_token_files(&service, &shutdown));
        if tokio::task::spawn_blocking(move || service.remove_token_files())
            .await
            .is_err()
        {
            tracing::warn!("removing the container token files panicked");
        }
    }
}

/// The listener systemd passed for the endpoint (`activated`: only for the first address),
/// else a new one bound to `addr`.
fn listen(addr: SocketAddr, activated: bool) -> io::Result<TcpListener> {
    let passed = activated
        .then(|| crate::serve::activation::take(crate::serve::activation::CONTAINER_SOCKET_NAMES))
        .flatten();
    let std_listener = match passed {
        Some(fd) => activated_listener(fd)?,
        None => {
            let listener = std::net::TcpListener::bind(addr)?;
            // Again, with our backlog (std's is smaller): on Linux it replaces the first.
            let backlog = nix::sys::socket::Backlog::new(LISTEN_BACKLOG)
                .expect("backlog within the kernel's range");
            nix::sys::socket::listen(&listener, backlog).map_err(io::Error::from)?;
            listener
        }
    };
    std_listener.set_nonblocking(true)?;
    TcpListener::from_std(std_listener)
}

/// Wraps the fd systemd passed, refusing it unless it is a listening TCP socket on an
/// address the endpoint may listen on (it answers over plain HTTP).
fn activated_listener(fd: std::os::fd::RawFd) -> io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: systemd passed this fd to us (LISTEN_PID is our pid) and
    // `activation::take` hands each fd out once, so this is its only owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listening = nix::sys::socket::getsockopt(&owned, nix::sys::socket::sockopt::AcceptConn)
        .map_err(io::Error::from)?;
    let listener = std::net::TcpListener::from(owned);
    let addr = listener.local_addr()?;
    if !listening || !is_container_listen_address(addr.ip()) {
        return Err(io::Error::other(format!(
            "the socket systemd passed ({addr}) is not a listening TCP socket on loopback or a container address"
        )));
    }
    tracing::info!(listen = %addr, "using the container endpoint socket passed by systemd");
    Ok(listener)
}

/// Binds the unbound addresses again and again with backoff until all are bound (then
/// writes the token files) or `shutdown`; `false` when stopped first or the token files
/// cannot be written.
async fn bind_with_backoff(
    service: &Arc<ContainerService>,
    addresses: &mut [Address],
    shutdown: &CancellationToken,
) -> bool {
    for attempt in 1.. {
        let wait = crate::backoff::ceiling(BIND_RETRY_FIRST, BIND_RETRY_MAX, attempt);
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = service.clock.sleep_for(wait) => {}
        }
        let next = crate::backoff::ceiling(BIND_RETRY_FIRST, BIND_RETRY_MAX, attempt + 1);
        for address in addresses.iter_mut().filter(|a| a.listener.is_none()) {
            match listen(address.front.listen, false) {
                Ok(listener) => {
                    address.front.bound_to(&listener);
                    address.listener = Some(listener);
                }
                Err(error) => address.front.cannot_listen(&error, next),
            }
        }
        if addresses.iter().all(|a| a.listener.is_some()) {
            return match service.write_token_files(&bound_addresses(addresses)).await {
                Ok(()) => true,
                Err(error) => {
                    let message = crate::error_chain::render(&error);
                    tracing::error!(error = %message, "the container endpoint cannot start");
                    service.report(|r| r.failed(message.clone()));
                    false
                }
            };
        }
    }
    false
}

/// Rewrites each token file every [`RESYNC_INTERVAL`] if it no longer holds its token with
/// its mode, until `shutdown`.
async fn keep_token_files(service: &Arc<ContainerService>, shutdown: &CancellationToken) {
    loop {
        // A delay, not a deadline: a clock step back does not put the check off.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = service.clock.sleep_for(RESYNC_INTERVAL) => {}
        }
        let task_service = Arc::clone(service);
        let restored = tokio::task::spawn_blocking(move || {
            task_service
                .clients
                .iter()
                .map(|c| {
                    (
                        c.token_file.path().display().to_string(),
                        c.restore_token_file(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|_| vec![(String::new(), Err("the token file check panicked".into()))]);
        let mut failed = None;
        for (path, outcome) in restored {
            match outcome {
                Ok(false) => {}
                Ok(true) => {
                    tracing::warn!(token_file = %path, "the container token file was deleted or changed; rewrote it")
                }
                Err(error) => {
                    tracing::warn!(token_file = %path, %error, "cannot restore the container token file");
                    failed = Some(error);
                }
            }
        }
        let now = service.clock.now();
        match failed {
            Some(error) => service.report(|r| r.failed(error.clone())),
            None => service.report(|r| r.succeeded(now)),
        }
    }
}

impl Client {
    fn new(
        name: &str,
        token_file: &std::path::Path,
        grant: Grant,
        allow_from: Vec<Cidr>,
    ) -> Result<Client, ContainerError> {
        Ok(Client {
            name: Arc::from(name),
            token: new_token()?,
            token_file: ManagedFile::new(token_file, TOKEN_FILE_MODE, None, None)
                .map_err(ContainerError::TokenFile)?,
            grant,
            allow_from,
        })
    }

    /// Whether `peer` is in `allow_from` (or there is none).
    fn allows(&self, peer: IpAddr) -> bool {
        self.allow_from.is_empty() || self.allow_from.iter().any(|c| c.contains(peer))
    }

    /// The query to answer `query` with for this client, or the refusal when it asks for
    /// what the token does not grant. Other parameters pass through (the API refuses them).
    fn granted_query(&self, query: Option<&str>) -> Result<Option<String>, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let asked: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == "profile")
            .map(|(_, v)| v.as_str())
            .collect();
        let granted = match &self.grant {
            Grant::Any => return Ok(query.map(str::to_string)),
            Grant::Instance => None,
            Grant::Profile(name) => Some(name.as_str()),
        };
        if asked.iter().any(|a| Some(*a) != granted) {
            return Err(ApiError::ProfileNotGranted(match granted {
                Some(name) => format!("profile {name:?}"),
                None => "the instance role".into(),
            }));
        }
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (key, value) in pairs.iter().filter(|(k, _)| k != "profile") {
            out.append_pair(key, value);
        }
        if let Some(name) = granted {
            out.append_pair("profile", name);
        }
        let out = out.finish();
        Ok(Some(out).filter(|q| !q.is_empty()))
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

impl ContainerService {
    /// Runs `what` on every address's health row.
    fn report(&self, what: impl Fn(&SinkReporter)) {
        self.reporters.iter().for_each(|r| what(r));
    }

    /// Writes every client's token file (on the blocking pool: file I/O never runs on the
    /// async workers) and reports the endpoint ready on each of `listening`.
    async fn write_token_files(
        self: &Arc<Self>,
        listening: &[SocketAddr],
    ) -> Result<(), ContainerError> {
        let service = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            service
                .clients
                .iter()
                .try_for_each(|client| client.token_file.replace(client.token.expose().as_bytes()))
        })
        .await
        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
        .map_err(ContainerError::TokenFile)?;
        let now = self.clock.now();
        self.report(|r| r.succeeded(now));
        for client in &self.clients {
            tracing::info!(
                client = %client.name,
                token_file = %client.token_file.path().display(),
                "container token file written"
            );
        }
        for addr in listening {
            tracing::info!(listen = %addr, "container-credentials endpoint ready");
        }
        Ok(())
    }

    /// Removes token files left from an earlier run while an address is not ours: they
    /// would point SDKs at whoever holds the port.
    fn remove_stale_token_files(&self) {
        for client in &self.clients {
            match client.token_file.remove() {
                Ok(true) => tracing::warn!(
                    token_file = %client.token_file.path().display(),
                    "removed a container token file left from an earlier run: a port is not ours"
                ),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(error = %crate::error_chain::render(&error), "cannot remove the stale container token file")
                }
            }
        }
    }

    fn remove_token_files(&self) {
        self.clients.iter().for_each(Client::remove_token_file);
    }

    /// The client whose token `presented` is. Every client's token is compared, in
    /// constant time, so the time taken tells nothing about which or how much matched.
    fn client_of(&self, presented: &[u8]) -> Option<&Client> {
        let mut found = None;
        for client in &self.clients {
            let matches: Choice = presented.ct_eq(client.token.expose().as_bytes());
            if bool::from(matches) {
                found = Some(client);
            }
        }
        found
    }

    /// The client a request is from and the query to answer it with; else the refusal,
    /// already logged, with the client when its token was right.
    fn check(&self, peer: &Peer, request: &Request<Incoming>) -> Result<Granted<'_>, Refused<'_>> {
        let headers = request.headers();
        let mut authorization = headers.get_all(AUTHORIZATION).iter();
        let verdict = if headers.contains_key(X_FORWARDED_FOR) || headers.contains_key(FORWARDED) {
            Err((None, ApiError::Forwarded))
        } else {
            match (authorization.next(), authorization.next()) {
                (None, _) => Err((None, ApiError::MissingToken)),
                (Some(value), None) => self
                    .client_of(value.as_bytes())
                    .ok_or((None, ApiError::WrongToken)),
                _ => Err((None, ApiError::WrongToken)),
            }
        };
        let verdict = verdict.and_then(|client| {
            if !client.allows(peer.addr.ip()) {
                return Err((Some(client), ApiError::NotAllowedFrom));
            }
            let query = client
                .granted_query(request.uri().query())
                .map_err(|refusal| (Some(client), refusal))?;
            Ok((client, query))
        });
        if let Err((client, reason)) = &verdict {
            let share = peer.share;
            let client = client.map(|c| c.name.as_ref());
            if let Some(unlogged) = self.refusals.admit_line(format!("{share} {reason}")) {
                tracing::warn!(peer = %peer.addr.ip(), %share, client, %reason, refused_since_last_line = unlogged, "refusing a container endpoint request");
            }
        }
        verdict
    }
}

impl AddressFront {
    fn bound_to(&self, listener: &TcpListener) {
        if let Ok(bound) = listener.local_addr() {
            let _ = self.bound.set(bound);
            tracing::info!(listen = %bound, "container-credentials endpoint bound");
        }
    }

    /// Reports a failed bind (health row and log).
    fn cannot_listen(&self, error: &io::Error, retry_in: Duration) {
        let message = format!(
            "cannot listen on {} ({error}); retrying in {}",
            self.listen,
            humantime::format_duration(retry_in)
        );
        tracing::warn!(error = %message, "the container endpoint is not serving; everything else is");
        self.reporter.failed(message);
    }

    /// Who is on the other end of an admitted connection, as `client`: a local peer's uid
    /// from admission, its pid and program from `/proc` (on the blocking pool; bounded, see
    /// `proc_peer`); a peer elsewhere (another network namespace) is its address only.
    async fn consumer(&self, peer: &Peer, client: &Client) -> Consumer {
        let mut consumer = match peer.socket {
            Some(socket) => {
                let owners = Arc::clone(&self.service.owners);
                let found = tokio::task::spawn_blocking(move || {
                    let pid = owners.pid_of(socket.uid, socket.inode);
                    (pid, pid.map_or_else(Program::unknown, program_of))
                })
                .await;
                let (pid, program) = found.unwrap_or_else(|_| (None, Program::unknown()));
                Consumer {
                    uid: Some(peer.owner.unwrap_or(socket.uid)),
                    subordinate: peer.owner.map(|_| socket.uid),
                    pid,
                    program,
                    ..Consumer::unknown()
                }
            }
            None => Consumer::unknown(),
        };
        consumer.client = Some(Arc::clone(&client.name));
        consumer.address = Some(peer.addr.ip().to_canonical());
        consumer
    }

    /// Whether this address takes peers that are not on loopback: only a container address
    /// (loopback ones keep loopback peers only, a second lock).
    fn takes_remote_peers(&self) -> bool {
        !is_loopback(self.listen.ip())
    }
}

/// Where `addresses` listen, once bound.
fn bound_addresses(addresses: &[Address]) -> Vec<SocketAddr> {
    addresses
        .iter()
        .filter_map(|a| a.front.bound.get().copied())
        .collect()
}

/// `uri` with its query replaced by `query`.
fn with_query(uri: &Uri, query: Option<&str>) -> Uri {
    let path_and_query = match query {
        Some(query) => format!("{}?{query}", uri.path()),
        None => uri.path().to_string(),
    };
    path_and_query.parse().unwrap_or_else(|_| uri.clone())
}

/// An admitted container peer: its address, its socket as the kernel knows it (`None` for a
/// peer in another network namespace, or when the lookup failed), the owner of its uid if
/// that is a subordinate uid, and the share it counts in.
pub struct Peer {
    addr: SocketAddr,
    socket: Option<PeerSocket>,
    owner: Option<u32>,
    share: Share,
    /// Looked up once the connection has shown a token, so an unauthenticated flood
    /// costs no `/proc` reads.
    consumer: tokio::sync::OnceCell<Consumer>,
}

/// A loopback peer's socket as the kernel knows it (`None` when the lookup failed), the
/// owner of its uid, and its share.
type LocalPeer = (Option<PeerSocket>, Option<u32>, Share);

impl AddressFront {
    /// Who a loopback peer is: its uid (its owner's share, for a subordinate uid) from one
    /// sock_diag lookup; `None` when its socket is already gone.
    async fn local_peer(&self, addr: SocketAddr, local: SocketAddr) -> Option<LocalPeer> {
        let service = &self.service;
        let socket = match peer_socket(addr, local) {
            Ok(Some(socket)) => Some(socket),
            Ok(None) => return None,
            Err(error) => {
                if let Some(unlogged) = service.refusals.admit_line("lookup failed".to_string()) {
                    tracing::warn!(peer = %addr, error = %crate::error_chain::render(&error), refused_since_last_line = unlogged, "cannot find a container endpoint peer's uid; counting it with the unknown ones");
                }
                None
            }
        };
        Some(self.share_of(socket).await)
    }

    /// Who a peer on a container address is. A process on the host reaches that address
    /// from any of the host's own addresses (the address itself, a bridge's, eth0's), not
    /// from loopback: its socket is then in our network namespace, and it counts by its
    /// uid as on loopback, or it would take a fresh share and rate-limit budget per host
    /// address and pass for a container. A peer whose socket is not here is in another
    /// namespace (a bridged container) and counts by its address.
    async fn remote_peer(&self, addr: SocketAddr, local: SocketAddr) -> LocalPeer {
        match peer_socket(addr, local) {
            Ok(Some(socket)) => self.share_of(Some(socket)).await,
            _ => (None, None, Share::Address(addr.ip().to_canonical())),
        }
    }

    /// The owner of a local peer's uid and its share (`socket` `None`: the unknown one).
    async fn share_of(&self, socket: Option<PeerSocket>) -> LocalPeer {
        let owner = match socket {
            Some(socket) => self.service.subuids.owner_of(socket.uid).await,
            None => None,
        };
        let share = match (socket, owner) {
            (None, _) => Share::Unknown,
            (Some(socket), None) if socket.uid == 0 => Share::Exempt,
            (Some(socket), owner) => Share::Uid(owner.unwrap_or(socket.uid)),
        };
        (socket, owner, share)
    }
}

impl Frontend for AddressFront {
    type Stream = TcpStream;
    type Peer = Peer;
    const NAME: &'static str = "container endpoint";
    const ENDPOINT: Endpoint = Endpoint::Container;

    async fn admit(&self, stream: &TcpStream) -> Admission<Peer> {
        let service = &self.service;
        let closed = service.api.closed_counters(Endpoint::Container);
        let (addr, local) = match (stream.peer_addr(), stream.local_addr()) {
            (Ok(addr), Ok(local)) => (addr, local),
            (Err(error), _) | (_, Err(error)) => {
                let key = "unknown address".to_string();
                if let Some(unlogged) =
                    server::note_closed(&closed.vanished, &service.refusals, key)
                {
                    tracing::warn!(error = %crate::error_chain::render(&error), refused_since_last_line = unlogged, "cannot read a container endpoint peer's address; closing it");
                }
                return Admission::Drop;
            }
        };
        let (socket, owner, share) = if is_loopback(addr.ip()) {
            match self.local_peer(addr, local).await {
                Some(found) => found,
                None => {
                    let key = "gone".to_string();
                    if let Some(unlogged) =
                        server::note_closed(&closed.vanished, &service.refusals, key)
                    {
                        tracing::debug!(peer = %addr, refused_since_last_line = unlogged, "a container endpoint peer was gone at accept; closed it");
                    }
                    return Admission::Drop;
                }
            }
        } else if self.takes_remote_peers() {
            self.remote_peer(addr, local).await
        } else {
            let reason = ApiError::NotLoopback;
            let key = format!("{} {reason}", addr.ip());
            if let Some(unlogged) = server::note_closed(&closed.refused, &service.refusals, key) {
                tracing::warn!(peer = %addr.ip(), %reason, refused_since_last_line = unlogged, "refusing a container endpoint peer");
            }
            return Admission::Refuse(service.api.refuse(Endpoint::Container, reason));
        };
        Admission::Admit {
            peer: Peer {
                addr,
                socket,
                owner,
                share,
                consumer: tokio::sync::OnceCell::new(),
            },
            share,
        }
    }

    fn api(&self) -> &Api {
        &self.service.api
    }

    async fn respond(&self, peer: &Peer, request: &Request<Incoming>) -> Response<Body> {
        let api = &self.service.api;
        let (client, query) = match self.service.check(peer, request) {
            Ok(granted) => granted,
            Err((client, refusal)) => {
                // Not looked up in `/proc`: a refused request is counted under its client
                // (when its token was right) and address only.
                let refused = Consumer {
                    client: client.map(|c| Arc::clone(&c.name)),
                    address: client.map(|_| peer.addr.ip().to_canonical()),
                    ..Consumer::unknown()
                };
                return api.refuse_consumer(Endpoint::Container, &refused, request.uri(), refusal);
            }
        };
        let consumer = peer
            .consumer
            .get_or_init(|| self.consumer(peer, client))
            .await;
        let uri = with_query(request.uri(), query.as_deref());
        let response = api.respond_to(Endpoint::Container, consumer, request.method(), &uri);
        if response.status() == StatusCode::OK {
            self.reporter.succeeded(self.service.clock.now());
        }
        response
    }

    fn refusals(&self) -> &RefusalLog {
        &self.service.refusals
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

    fn client(grant: Grant) -> Client {
        let dir = std::env::temp_dir().join("imds-credd-unit-never-written/token");
        Client::new("web", &dir, grant, Vec::new()).unwrap()
    }

    #[test]
    fn a_token_grants_its_clients_profile_only() {
        let audit = client(Grant::Profile("audit".into()));
        assert_eq!(audit.granted_query(None), Ok(Some("profile=audit".into())));
        assert_eq!(
            audit.granted_query(Some("profile=audit")),
            Ok(Some("profile=audit".into()))
        );
        assert!(matches!(
            audit.granted_query(Some("profile=admin")),
            Err(ApiError::ProfileNotGranted(_))
        ));
        assert!(audit
            .granted_query(Some("profile=audit&profile=admin"))
            .is_err());
        // Other parameters pass through, for the API to refuse.
        assert_eq!(
            audit.granted_query(Some("x=1")),
            Ok(Some("x=1&profile=audit".into()))
        );
        let instance = client(Grant::Instance);
        assert_eq!(instance.granted_query(None), Ok(None));
        assert!(instance.granted_query(Some("profile=audit")).is_err());
        let default = client(Grant::Any);
        assert_eq!(
            default.granted_query(Some("profile=audit")),
            Ok(Some("profile=audit".into()))
        );
    }
}

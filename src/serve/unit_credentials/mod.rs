//! The unit-credentials socket (Linux): systemd's `LoadCredential=ID:PATH` with `PATH` our
//! socket (`/run/imds-credd/unit-credentials.sock`, beside the API socket). systemd
//! connects once at unit start from an abstract name that says who asks, sends nothing,
//! and reads until EOF; the bytes become `$CREDENTIALS_DIRECTORY/ID`, in memory, readable
//! by the unit's user only, gone when it stops. No HTTP: we write the body and shut down.
//!
//! Each connection: the peer's uid (`SO_PEERCRED`) and name ([`request`]), the
//! `[[unit]]` entries ([`policy`]), the unit's cgroup where `/proc` shows it ([`cgroup`]),
//! then, for an allowed unit, a set valid now in the format the credential ID picks,
//! after waiting (a few seconds at most) for the first refresh like the API socket does.
//! Anything else closes without a byte (systemd then gives the unit an empty credential)
//! and is logged (unit and credential ID, never a value) at a limited rate and counted.
//!
//! The socket is mode 0600: only root (systemd) and the daemon's own user may connect; a
//! user manager's units need `imds-credd.socket` with a drop-in that opens it to that user,
//! whose mode is then kept (`docs/systemd-units.md`).

pub mod cgroup;
pub mod policy;
pub mod request;

use super::api::Api;
use super::consumers::{Consumer, Program};
use super::refusals::RefusalLog;
use super::socket::listener::{self, SocketGuard};
use super::socket::peer::{peer_of, Peer};
use super::socket::SocketError;
use crate::config::{Config, FileMode, SocketConfig};
use policy::UnitPolicy;
use request::UnitRequest;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The socket's mode: root and the daemon's user only.
const SOCKET_MODE: u32 = 0o600;
/// Connections handled at once; more wait in the listen backlog. systemd opens one per
/// `LoadCredential=` line of a starting unit, so a boot with many units stays well below.
const MAX_CONNECTIONS: usize = 64;
/// How long writing a set (and the EOF) may take: systemd reads at once.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept()` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The open unit-credentials socket, not yet served.
#[derive(Debug)]
pub struct UnitCredentialsServer {
    listener: UnixListener,
    guard: Option<SocketGuard>,
    policy: UnitPolicy,
}

impl UnitCredentialsServer {
    /// The socket systemd passed at the unit-credentials path (served even without a
    /// `[[unit]]` entry, refusing everyone, so that no unit waits on a socket nobody
    /// accepts on), else the socket bound here when a `[[unit]]` entry exists, else `None`.
    /// Call it inside the tokio runtime, before the API socket is opened.
    pub fn open(config: &Config) -> Result<Option<Self>, SocketError> {
        let socket = SocketConfig {
            path: config.socket.unit_socket_path(),
            mode: FileMode(SOCKET_MODE),
            ..SocketConfig::default()
        };
        let policy = UnitPolicy::from_config(&config.units);
        let opened = match listener::passed_at(&socket)? {
            Some(passed) => {
                tighten_passed_mode(&socket, &policy);
                passed
            }
            None if config.units.is_empty() => return Ok(None),
            None => listener::bind(&socket)?,
        };
        let listener =
            UnixListener::from_std(opened.listener).map_err(|source| SocketError::Create {
                path: socket.path.clone(),
                step: "register with the runtime",
                source,
            })?;
        Ok(Some(UnitCredentialsServer {
            listener,
            guard: opened.guard,
            policy,
        }))
    }

    /// Serves until `shutdown` is cancelled, then removes the socket file if we made it.
    pub async fn serve(self, api: Arc<Api>, shutdown: CancellationToken) {
        let shared = Arc::new(Shared {
            api,
            policy: self.policy,
            refusals: RefusalLog::default(),
        });
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = JoinSet::new();
        loop {
            while let Some(ended) = connections.try_join_next() {
                // A connection that panicked takes the server (and so the daemon) down.
                if let Err(error) = ended {
                    if error.is_panic() {
                        std::panic::resume_unwind(error.into_panic());
                    }
                }
            }
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    connections.spawn(async move {
                        shared.handle(stream).await;
                        drop(slot);
                    });
                }
                Err(error) => {
                    tracing::warn!(error = %crate::error_chain::render(&error), "unit-credentials socket: accept failed");
                    // A pause, not a deadline: monotonic time is what is meant.
                    #[allow(clippy::disallowed_methods)]
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
        connections.shutdown().await;
        drop(self.guard);
    }
}

/// A socket systemd made has the API socket's mode and group (one `.socket` unit, one
/// `SocketMode=`): narrowed to [`SOCKET_MODE`] at once. The peer check does not depend on
/// it; this keeps other users from even connecting. Not when an entry names a user: the
/// operator opened the socket to that user's manager (a `SocketMode=` drop-in, an ACL,
/// which a chmod would void by clearing its mask), and the peer check is what stands.
fn tighten_passed_mode(socket: &SocketConfig, policy: &UnitPolicy) {
    if policy.serves_user_managers() {
        tracing::info!(path = %socket.path.display(), "the unit-credentials socket keeps the mode systemd gave it: a [[unit]] entry names a user manager");
        return;
    }
    let mode = std::fs::Permissions::from_mode(SOCKET_MODE);
    if let Err(error) = std::fs::set_permissions(&socket.path, mode) {
        tracing::warn!(path = %socket.path.display(), error = %crate::error_chain::render(&error), "cannot narrow the unit-credentials socket to mode 0600; peers are still checked");
    }
}

/// What every connection reads.
struct Shared {
    api: Arc<Api>,
    policy: UnitPolicy,
    refusals: RefusalLog,
}

impl Shared {
    async fn handle(&self, mut stream: UnixStream) {
        let peer = match peer_of(&stream) {
            Ok(peer) => peer,
            Err(error) => {
                if let Some(unlogged) = self.refusals.admit_line("unknown".into()) {
                    tracing::warn!(error = %crate::error_chain::render(&error), refused_since_last_line = unlogged, "unit-credentials socket: cannot read the peer's credentials; closing");
                }
                return;
            }
        };
        let name = nix::sys::socket::getpeername::<nix::sys::socket::UnixAddr>(stream.as_raw_fd());
        let request = match UnitRequest::from_peer_name(
            name.as_ref().ok().and_then(|address| address.as_abstract()),
        ) {
            Ok(request) => request,
            Err(error) => {
                self.refuse(&peer, None, &error.to_string());
                return;
            }
        };
        let profile = match self.policy.decide(peer.uid, &request.unit) {
            Ok(profile) => profile,
            Err(refusal) => {
                self.refuse(&peer, Some(&request), &refusal.to_string());
                return;
            }
        };
        let in_cgroup = cgroup::unit_of_pid(peer.pid).await;
        if let Some(actual) = in_cgroup.as_deref().filter(|unit| *unit != request.unit) {
            let why = format!("the peer process runs in {actual}, not in the unit it names");
            self.refuse(&peer, Some(&request), &why);
            return;
        }
        let consumer = consumer(&peer, Some(&request), in_cgroup.is_some());
        self.api.first_outcome_for(profile).await;
        let body = match self
            .api
            .unit_credentials(&consumer, profile, request.format())
        {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(unit = request.unit, credential = request.credential_id, error = %error, "no valid credentials for a unit; closing without a byte");
                return;
            }
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&body).await?;
            stream.shutdown().await
        })
        .await;
        match written {
            Ok(Ok(())) => tracing::info!(
                unit = request.unit,
                credential = request.credential_id,
                profile,
                uid = peer.uid,
                "credentials given to a unit"
            ),
            Ok(Err(error)) => {
                tracing::warn!(unit = request.unit, credential = request.credential_id, error = %crate::error_chain::render(&error), "could not write a unit's credentials")
            }
            Err(_) => tracing::warn!(
                unit = request.unit,
                credential = request.credential_id,
                "a unit did not read its credentials in time; closed"
            ),
        }
    }

    /// Logs (at a limited rate) and counts a refused connection, which is then closed
    /// without a byte. The system manager's refusals are logged per unit (each names a
    /// unit to fix); any other uid's per uid, since it picks the unit names it claims.
    fn refuse(&self, peer: &Peer, request: Option<&UnitRequest>, why: &str) {
        let unit = request.map(|r| r.unit.as_str());
        let credential = request.map(|r| r.credential_id.as_str());
        let key = match peer.uid {
            0 => format!("uid 0 unit {}", unit.unwrap_or("-")),
            uid => format!("uid {uid}"),
        };
        if let Some(unlogged) = self.refusals.admit_line(key) {
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                unit,
                credential,
                refused_since_last_line = unlogged,
                "refusing a unit-credentials peer: {why}"
            );
        }
        self.api.note_unit_refused(&consumer(peer, request, false));
    }
}

/// The consumer-table row of a unit: `unit NAME` in place of a program (the peer's program
/// is systemd, about to exec the unit's), the credential ID as its command line.
fn consumer(peer: &Peer, request: Option<&UnitRequest>, verified: bool) -> Consumer {
    let (exe, cmdline) = match request {
        Some(request) => (
            format!("unit {}", request.unit),
            format!("credential {}", request.credential_id),
        ),
        None => (
            "unit (not a LoadCredential= request)".to_string(),
            String::new(),
        ),
    };
    Consumer {
        uid: Some(peer.uid),
        gid: Some(peer.gid),
        pid: Some(peer.pid),
        program: Program {
            exe,
            verified,
            cmdline,
        },
        ..Consumer::unknown()
    }
}

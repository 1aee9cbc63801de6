//! Getting a listening unix socket: either bound by us at the configured path, with its mode
//! and group set before anyone can connect, or handed over by systemd socket activation.
//!
//! # Binding without a permission window
//! The socket is created at a private temporary name in the same folder, `chmod`ed and
//! `chown`ed there, and only then put into the listening state and renamed over the final
//! path. A unix socket that is bound but not listening refuses every `connect()`, so no client
//! can ever connect through a looser mode than the configured one, and the rename swaps the
//! socket in atomically (a stale socket from a crashed run is replaced without a moment where
//! the path is missing). Setting the umask around `bind` would also close the window, but the
//! umask is process-wide: other threads (file sinks creating temp files) would be affected.

use super::SocketError;
use crate::config::SocketConfig;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::unistd::{Gid, Group};
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The group that the packages create; used when `socket.group` is not configured.
pub const DEFAULT_GROUP: &str = "imds-credd";
/// Mode of a socket folder we create: others may traverse it; the socket's own mode decides
/// who may connect.
const FOLDER_MODE: u32 = 0o755;
/// Pending connections the kernel queues while all connection slots are busy.
const LISTEN_BACKLOG: i32 = 1024;
/// A listening socket, and whether we own its path.
#[derive(Debug)]
pub struct OpenedSocket {
    /// The listening socket.
    pub listener: UnixListener,
    /// Removes the socket file on drop; `None` for a socket systemd owns.
    pub guard: Option<SocketGuard>,
}

/// Removes the socket file we bound when dropped (clean stop), unless the path now holds
/// another socket (a newer daemon's): the inode is compared first.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                if let Err(error) = fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %crate::error_chain::render(&error), "cannot remove the socket");
                }
            }
            Ok(_) => tracing::info!(
                path = %self.path.display(),
                "socket path now belongs to another socket; left in place"
            ),
            Err(_) => {}
        }
    }
}

/// Takes the socket systemd passed if we were socket-activated (see [`crate::serve::activation`]),
/// else binds `config.path`. The passed socket bound at `config.path` first, else the
/// first passed one not taken yet (the unit-credentials socket, which systemd passes under
/// the same name, is taken before).
///
/// A further socket passed under the API's name that no listener took (the unit-credentials
/// socket of an `imds-credd.socket` whose paths disagree with `[socket] path`) is a start
/// error: left unserved, its clients (a unit's `LoadCredential=`) would wait forever.
pub fn open(config: &SocketConfig) -> Result<OpenedSocket, SocketError> {
    use crate::serve::activation::{take, take_at, API_SOCKET_NAMES};
    let passed = take_at(API_SOCKET_NAMES, &config.path).or_else(|| take(API_SOCKET_NAMES));
    let opened = open_passed_or_bind(passed, config)?;
    if let Some(leftover) = take(API_SOCKET_NAMES) {
        // SAFETY: as in `take_activated`: systemd passed it, `take` hands it out once; owned
        // here only to be closed.
        let leftover = unsafe { OwnedFd::from_raw_fd(leftover) };
        let path = socket::getsockname::<UnixAddr>(leftover.as_raw_fd())
            .ok()
            .and_then(|address| address.path().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "(not a unix socket path)".to_string());
        return Err(SocketError::ActivationFd {
            detail: format!(
                "systemd also passed {path}, which no listener serves (the unit-credentials \
                 socket sits beside [socket] path): make imds-credd.socket's ListenStream= \
                 lines and [socket] path agree"
            ),
        });
    }
    Ok(opened)
}

/// The socket systemd passed bound at `config.path` (no other), if it passed one: the
/// unit-credentials socket, which `imds-credd.socket` carries beside the API's.
pub fn passed_at(config: &SocketConfig) -> Result<Option<OpenedSocket>, SocketError> {
    crate::serve::activation::take_at(crate::serve::activation::API_SOCKET_NAMES, &config.path)
        .map(|fd| open_passed_or_bind(Some(fd), config))
        .transpose()
}

fn open_passed_or_bind(
    passed: Option<RawFd>,
    config: &SocketConfig,
) -> Result<OpenedSocket, SocketError> {
    match passed {
        Some(fd) => Ok(OpenedSocket {
            listener: take_activated(fd, &config.path)?,
            guard: None,
        }),
        None => bind(config),
    }
}

fn take_activated(fd: RawFd, configured: &Path) -> Result<UnixListener, SocketError> {
    // SAFETY: systemd guarantees the fd is open and ours when LISTEN_PID is our pid,
    // `activation::take` hands each fd out once, so this is its only owner, and the checks
    // below refuse it before use if it is not a listening unix stream socket.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let invalid = |detail: String| SocketError::ActivationFd { detail };
    let kind = socket::getsockopt(&owned, socket::sockopt::SockType)
        .map_err(|e| invalid(format!("not a socket ({e})")))?;
    let listening = socket::getsockopt(&owned, socket::sockopt::AcceptConn)
        .map_err(|e| invalid(format!("cannot read SO_ACCEPTCONN ({e})")))?;
    let address = socket::getsockname::<UnixAddr>(owned.as_raw_fd())
        .map_err(|_| invalid("not a unix socket".to_string()))?;
    if kind != SockType::Stream || !listening {
        return Err(invalid("not a listening stream socket".to_string()));
    }
    // Programs the daemon runs (`on_rotate`) must not inherit the listener.
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| invalid(format!("cannot set close-on-exec ({e})")))?;
    match address.path() {
        Some(path) if path == configured => {
            tracing::info!(path = %path.display(), "using the socket passed by systemd");
        }
        other => tracing::warn!(
            activated = ?other,
            configured = %configured.display(),
            "systemd passed a socket at another path than socket.path; clients using socket.path will not reach it"
        ),
    }
    let listener = UnixListener::from(owned);
    listener
        .set_nonblocking(true)
        .map_err(|e| invalid(format!("cannot make it non-blocking ({e})")))?;
    Ok(listener)
}

/// Binds `config.path` with the configured mode and group (see the module doc for why it
/// goes through a temporary name), replacing a stale socket and refusing anything else.
pub fn bind(config: &SocketConfig) -> Result<OpenedSocket, SocketError> {
    let path = config.path.as_path();
    let folder = ensure_folder(path)?;
    check_existing(path)?;
    let group = resolve_group(config.group.as_deref())?;
    let file_name = path
        .file_name()
        .ok_or_else(|| SocketError::NoFileName {
            path: path.to_path_buf(),
        })?
        .to_string_lossy();
    let temp = folder.join(format!(".{file_name}.{}", std::process::id()));
    let fail = |step: &'static str| {
        let path = path.to_path_buf();
        move |source: io::Error| SocketError::Create { path, step, source }
    };
    // A temp socket left by a crashed run that had our pid; a non-socket there is refused.
    match fs::symlink_metadata(&temp) {
        Ok(meta) if meta.file_type().is_socket() => {
            fs::remove_file(&temp).map_err(fail("remove a leftover temporary socket"))?
        }
        Ok(_) => return Err(SocketError::NotASocket { path: temp }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(SocketError::Inspect { path: temp, source }),
    }
    let address =
        UnixAddr::new(&temp).map_err(|_| SocketError::PathTooLong { path: temp.clone() })?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| fail("socket")(e.into()))?;
    socket::bind(fd.as_raw_fd(), &address).map_err(|e| fail("bind")(e.into()))?;
    let temp_guard = TempSocket(&temp);
    fs::set_permissions(&temp, Permissions::from_mode(config.mode.0)).map_err(fail("chmod"))?;
    if let Some(gid) = group {
        std::os::unix::fs::lchown(&temp, None, Some(gid.as_raw())).map_err(fail("chown"))?;
    }
    let backlog = Backlog::new(LISTEN_BACKLOG).expect("backlog within the kernel's range");
    socket::listen(&fd, backlog).map_err(|e| fail("listen")(e.into()))?;
    fs::rename(&temp, path).map_err(fail("rename into place"))?;
    std::mem::forget(temp_guard);
    let meta = fs::symlink_metadata(path).map_err(|source| SocketError::Inspect {
        path: path.to_path_buf(),
        source,
    })?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    let listener = UnixListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(fail("set non-blocking"))?;
    tracing::info!(path = %path.display(), mode = ?config.mode, gid = group.map(Gid::as_raw), "listening");
    Ok(OpenedSocket {
        listener,
        guard: Some(guard),
    })
}

/// Removes the temporary socket if binding fails half-way.
struct TempSocket<'a>(&'a Path);

impl Drop for TempSocket<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

/// Creates the socket's folder (mode 0755) if missing; an existing one, such as systemd's
/// `RuntimeDirectory=`, is left as it is.
fn ensure_folder(path: &Path) -> Result<PathBuf, SocketError> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let failed = |source| SocketError::Folder {
        path: folder.clone(),
        source,
    };
    match fs::metadata(&folder) {
        Ok(meta) if meta.is_dir() => Ok(folder),
        Ok(_) => Err(failed(io::Error::other("not a folder"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(FOLDER_MODE)
                .create(&folder)
                .map_err(failed)?;
            Ok(folder)
        }
        Err(source) => Err(failed(source)),
    }
}

/// Nothing at `path`, or a stale socket nobody answers on: fine (it will be replaced).
/// A socket somebody answers on, or anything that is not a socket: refused.
fn check_existing(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Inspect {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketError::AlreadyServing {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale socket from an earlier run");
            Ok(())
        }
        Err(source) => Err(SocketError::Probe {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The group to give the socket: the configured one (name or number), which must exist;
/// unconfigured, the packages' `imds-credd` group if present, else none (left as created).
fn resolve_group(configured: Option<&str>) -> Result<Option<Gid>, SocketError> {
    let Some(name) = configured else {
        return Group::from_name(DEFAULT_GROUP)
            .map(|g| g.map(|g| g.gid))
            .map_err(|source| SocketError::GroupLookup {
                group: DEFAULT_GROUP.to_string(),
                source,
            });
    };
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(Gid::from_raw(gid)));
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(Some(group.gid)),
        Ok(None) => Err(SocketError::UnknownGroup {
            group: name.to_string(),
        }),
        Err(source) => Err(SocketError::GroupLookup {
            group: name.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_configured_group_is_a_clear_error() {
        let err = resolve_group(Some("no-such-group-imds-credd-test")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "socket group \"no-such-group-imds-credd-test\" does not exist"
        );
    }

    #[test]
    fn a_numeric_group_is_taken_as_a_gid() {
        assert_eq!(
            resolve_group(Some("4242")).unwrap(),
            Some(Gid::from_raw(4242))
        );
    }
}

//! A sink's `signal = { pid_file, signal }`: the signal the daemon sends with `CAP_KILL`,
//! aimed so that a local user cannot turn it on a process that is not theirs.
//!
//! - The pid file is read through the same checked walk as a sink's own file (see
//!   [`crate::sink::atomic`]): no link as the file itself, links in its folder path only
//!   when root or the daemon owns them, opened non-blocking so a FIFO, device or socket is
//!   refused at once instead of hanging the daemon.
//! - It must be a regular file with one link, owned by root or by the sink's `owner` (the
//!   daemon's own user when the sink names none), and not writable by group or others:
//!   whoever may write it chooses the target.
//! - The process it names must run as the file's owner (real, effective and saved uid),
//!   unless root owns the file (root's pid files may name any process: root chose it). Never
//!   the daemon itself, pid 1, or a process group (pid 0 or below).
//! - The process is pinned with a pidfd before its owner is checked, and signalled through
//!   that pidfd: if it exits and its pid is reused meanwhile, the signal fails (`ESRCH`)
//!   instead of hitting the newcomer.
//!
//! Who runs a process comes from `PIDFD_GET_INFO` (Linux 6.13+), else `/proc/PID/status`.
//! Under the unit's `ProtectProc=invisible` other users' `/proc` entries are hidden, so on an
//! older kernel only root-owned pid files work there; the refusal says so.
//!
//! nix 0.31 has no pidfd calls: the three system calls are wrapped here, in one place.

use crate::sink::atomic::{FileError, FileOwner, ManagedFile};
use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::Signal;
use nix::unistd::{geteuid, getpid};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A pid file holds a number and a newline; anything longer is not a pid file.
const MAX_PID_FILE_BYTES: usize = 64;

/// Why a signal was not sent. Every message names the pid file.
#[derive(Debug, Error)]
pub enum PidFileError {
    /// The pid file could not be read.
    #[error("cannot read pid file")]
    Read(#[source] FileError),
    /// There is no pid file.
    #[error("pid file {}: missing", .path.display())]
    Missing {
        /// The pid file.
        path: PathBuf,
    },
    /// The pid file is owned by neither root nor the sink's owner.
    #[error(
        "pid file {}: owned by uid {uid}; only root or the sink's owner (uid {owner}) may own it",
        .path.display()
    )]
    ForeignOwner {
        /// The pid file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The sink's owner.
        owner: u32,
    },
    /// Others could write another pid into the pid file.
    #[error("pid file {}: writable by group or others (mode {mode:04o})", .path.display())]
    Writable {
        /// The pid file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The pid file holds no pid above 1.
    #[error("pid file {}: does not hold a process id above 1", .path.display())]
    BadPid {
        /// The pid file.
        path: PathBuf,
    },
    /// The pid is the daemon's own.
    #[error("pid file {}: names the daemon itself (pid {pid})", .path.display())]
    Daemon {
        /// The pid file.
        path: PathBuf,
        /// The pid.
        pid: i32,
    },
    /// The process is not the sink owner's.
    #[error(
        "pid file {}: pid {pid} runs as uid {uids}, not as the pid file's owner (uid {owner})",
        .path.display()
    )]
    ForeignProcess {
        /// The pid file.
        path: PathBuf,
        /// The pid.
        pid: i32,
        /// Real, effective and saved uid, as `1000/1000/1000`.
        uids: String,
        /// The sink's owner.
        owner: u32,
    },
    /// Whose process it is cannot be read.
    #[error(
        "pid file {}: cannot tell who runs pid {pid} (this kernel lacks PIDFD_GET_INFO and /proc hides the process: the unit's ProtectProc=invisible); use a root-owned pid file or Linux 6.13+",
        .path.display()
    )]
    Unknowable {
        /// The pid file.
        path: PathBuf,
        /// The pid.
        pid: i32,
    },
    /// `kill(2)` failed.
    #[error("cannot send SIG{signal} to pid {pid} (from {})", .path.display())]
    Signal {
        /// The signal.
        signal: &'static str,
        /// The pid.
        pid: i32,
        /// The pid file.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
}

/// Reads `path`, checks it and the process it names, and sends `signal` (see the module
/// doc). `owner` is the sink's `owner` setting. Returns the pid signalled. Blocking: call
/// it off the async threads.
pub fn signal_from(path: &Path, owner: Option<&str>, signal: Signal) -> Result<i32, PidFileError> {
    let file = ManagedFile::for_reading(path).map_err(PidFileError::Read)?;
    let existing = file
        .read_any_owner()
        .map_err(PidFileError::Read)?
        .ok_or_else(|| PidFileError::Missing {
            path: path.to_path_buf(),
        })?;
    let owner = match FileOwner::resolve(owner, None)
        .map_err(PidFileError::Read)?
        .uid
    {
        Some(uid) => uid.as_raw(),
        None => geteuid().as_raw(),
    };
    if existing.uid != 0 && existing.uid != owner {
        return Err(PidFileError::ForeignOwner {
            path: path.to_path_buf(),
            uid: existing.uid,
            owner,
        });
    }
    if existing.mode & 0o022 != 0 {
        return Err(PidFileError::Writable {
            path: path.to_path_buf(),
            mode: existing.mode,
        });
    }
    let pid = parse_pid(&existing.contents).ok_or_else(|| PidFileError::BadPid {
        path: path.to_path_buf(),
    })?;
    if pid == getpid().as_raw() {
        return Err(PidFileError::Daemon {
            path: path.to_path_buf(),
            pid,
        });
    }
    let signal_error = |source| PidFileError::Signal {
        signal: signal.as_str().trim_start_matches("SIG"),
        pid,
        path: path.to_path_buf(),
        source,
    };
    let process = PidFd::open(pid).map_err(signal_error)?;
    if existing.uid != 0 {
        let uids = match process.uids() {
            Some(uids) => uids,
            None => match proc_status_uids(pid) {
                Some(uids) => uids,
                // Gone already, or hidden: refuse either way; a gone one says so.
                None => {
                    process.send(None).map_err(signal_error)?;
                    return Err(PidFileError::Unknowable {
                        path: path.to_path_buf(),
                        pid,
                    });
                }
            },
        };
        if uids.iter().any(|uid| *uid != owner) {
            return Err(PidFileError::ForeignProcess {
                path: path.to_path_buf(),
                pid,
                uids: format!("{}/{}/{}", uids[0], uids[1], uids[2]),
                owner,
            });
        }
    }
    // Alive now means alive since the pidfd was opened: the owner read above was its own.
    process.send(Some(signal)).map_err(signal_error)?;
    Ok(pid)
}

/// One integer above 1, surrounding whitespace allowed. 0, 1 and negative numbers would
/// signal a process group, init, or every process: refused.
fn parse_pid(contents: &[u8]) -> Option<i32> {
    if contents.len() > MAX_PID_FILE_BYTES {
        return None;
    }
    std::str::from_utf8(contents)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 1)
}

/// Real, effective and saved uid from `/proc/PID/status` (`Uid:\tR\tE\tS\tFS`).
fn proc_status_uids(pid: i32) -> Option<[u32; 3]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_uids(&status)
}

fn parse_status_uids(status: &str) -> Option<[u32; 3]> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = line.split_whitespace().map(|id| id.parse::<u32>().ok());
    Some([ids.next()??, ids.next()??, ids.next()??])
}

/// A process pinned by a pidfd.
struct PidFd(OwnedFd);

impl PidFd {
    fn open(pid: i32) -> Result<PidFd, Errno> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: the kernel just returned this fd to us; nobody else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `signal` (`None`: only checks that the process is still there).
    fn send(&self, signal: Option<Signal>) -> Result<(), Errno> {
        let number = signal.map_or(0, |s| s as i32);
        // SAFETY: pidfd_send_signal(fd, sig, info = NULL, flags = 0) reads nothing from us.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                number,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }

    /// Real, effective and saved uid through `PIDFD_GET_INFO`; `None` on a kernel without
    /// it (before 6.13) or when the process is gone.
    fn uids(&self) -> Option<[u32; 3]> {
        // SAFETY: a plain C struct of integers; all zeroes is a valid value.
        let mut info: libc::pidfd_info = unsafe { std::mem::zeroed() };
        info.mask = libc::PIDFD_INFO_CREDS as u64;
        // SAFETY: the ioctl writes at most size_of::<pidfd_info>() bytes, which its number
        // encodes, into `info`.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::PIDFD_GET_INFO, &mut info) };
        (rc == 0 && info.mask & libc::PIDFD_INFO_CREDS as u64 != 0)
            .then_some([info.ruid, info.euid, info.suid])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_that_would_reach_a_group_init_or_everyone_are_refused() {
        assert_eq!(parse_pid(b" 4242\n"), Some(4242));
        for bad in [
            &b"garbage"[..],
            b"1",
            b"0",
            b"-1",
            b"12 34",
            b"",
            &[b'9'; 65],
        ] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_uids_are_real_effective_saved() {
        let status = "Name:\tnginx\nUid:\t33\t34\t35\t36\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_status_uids(status), Some([33, 34, 35]));
        assert_eq!(parse_status_uids("Name:\tx\n"), None);
        let own = proc_status_uids(getpid().as_raw()).unwrap();
        assert_eq!(own[0], nix::unistd::getuid().as_raw());
    }

    #[test]
    fn the_pidfd_sees_who_runs_a_process_on_kernels_that_tell() {
        let own = PidFd::open(getpid().as_raw()).unwrap();
        own.send(None).unwrap();
        if let Some(uids) = own.uids() {
            assert_eq!(uids, proc_status_uids(getpid().as_raw()).unwrap());
        }
    }
}

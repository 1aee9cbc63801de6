//! Which local program is on the other end of a connection, from `/proc`: the executable
//! and command line of a pid (the socket's `SO_PEERCRED` pid), and for a loopback TCP peer
//! (whose uid and socket inode [`super::sock_diag`] finds) the pid holding that inode.
//! Everything here reads files: callers run it on the blocking pool.
//!
//! What the daemon may see (it runs as its own unprivileged user, without `CAP_SYS_PTRACE`):
//! - `/proc/PID/cmdline` of any process: world-readable. It is what the process says about
//!   itself, so it may lie; only the uid (from the kernel) cannot.
//! - `/proc/PID/exe` and `/proc/PID/fd/*` only of its own processes (ptrace rules). For
//!   other users' programs the executable is then `argv[0]` from the command line, marked as
//!   not verified, and a container-endpoint peer's pid stays unknown; its uid is still known.
//!
//! Finding the pid of a socket inode means reading every fd link of the peer uid's
//! processes: that scan is bounded ([`MAX_FD_LINKS`] links, 32,768 `/proc` entries) and its result cached per uid, so a
//! program that reconnects is found by its last pid at once.
//!
//! Every string from `/proc` is made printable and capped here (with
//! [`crate::serve::consumers::printable`]), before it reaches a log line, the JSON or the table.

use crate::serve::consumers::{printable, Program};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

/// Longest executable path kept, in characters.
const EXE_LIMIT: usize = 256;
/// Longest command line kept, in characters (read: 4 KiB at most).
const CMDLINE_LIMIT: usize = 512;
const CMDLINE_READ: u64 = 4096;
/// Fd links read at most when looking for a socket's owner.
pub const MAX_FD_LINKS: usize = 4096;
/// `/proc` entries looked at most when looking for a socket's owner.
const MAX_PROCESSES: usize = 32_768;

/// The program of `pid` now; [`Program::unknown`] if it has gone.
pub fn program_of(pid: i32) -> Program {
    let proc = Path::new("/proc").join(pid.to_string());
    let cmdline = read_cmdline(&proc.join("cmdline"));
    match std::fs::read_link(proc.join("exe")) {
        Ok(exe) => Program {
            exe: printable(&exe.to_string_lossy(), EXE_LIMIT),
            verified: true,
            cmdline: printable(&cmdline.join(" "), CMDLINE_LIMIT),
        },
        Err(_) => match cmdline.first().filter(|a| !a.is_empty()) {
            Some(argv0) => Program {
                exe: printable(argv0, EXE_LIMIT),
                verified: false,
                cmdline: printable(&cmdline.join(" "), CMDLINE_LIMIT),
            },
            None => Program::unknown(),
        },
    }
}

fn read_cmdline(path: &Path) -> Vec<String> {
    let mut bytes = Vec::new();
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if file.take(CMDLINE_READ).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Finds the pid that holds socket `inode`, among the processes of `uid` (see the module
/// doc for the bound and the cache).
#[derive(Debug, Default)]
pub struct SocketOwners {
    last_pid: Mutex<HashMap<u32, i32>>,
}

impl SocketOwners {
    /// The pid of `uid`'s process holding the socket `inode`, if one is found.
    pub fn pid_of(&self, uid: u32, inode: u64) -> Option<i32> {
        let target = format!("socket:[{inode}]");
        let cached = self
            .last_pid
            .lock()
            .expect("socket owners lock")
            .get(&uid)
            .copied();
        let mut budget = MAX_FD_LINKS;
        if let Some(pid) = cached {
            if holds(pid, &target, &mut budget) {
                return Some(pid);
            }
        }
        let found = std::fs::read_dir("/proc")
            .ok()?
            .take(MAX_PROCESSES)
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                use std::os::unix::fs::MetadataExt;
                (entry.metadata().ok()?.uid() == uid && Some(pid) != cached).then_some(pid)
            })
            .find(|pid| budget > 0 && holds(*pid, &target, &mut budget));
        if let Some(pid) = found {
            let mut last = self.last_pid.lock().expect("socket owners lock");
            if last.len() >= MAX_FD_LINKS {
                last.clear();
            }
            last.insert(uid, pid);
        }
        found
    }
}

/// Whether `pid` has an fd on `target`, reading at most `budget` links.
fn holds(pid: i32, target: &str, budget: &mut usize) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    for fd in fds.flatten() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_program() {
        let me = program_of(std::process::id() as i32);
        assert!(me.verified);
        assert_eq!(
            me.exe,
            std::env::current_exe().unwrap().display().to_string()
        );
        assert!(!me.cmdline.is_empty());
        assert_eq!(program_of(-1), Program::unknown());
    }

    #[test]
    fn finds_the_uid_and_pid_of_a_real_loopback_client() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(local).unwrap();
        let found = super::super::sock_diag::peer_socket(client.local_addr().unwrap(), local)
            .unwrap()
            .unwrap();
        let (uid, inode) = (found.uid, found.inode);
        assert_eq!(uid, nix::unistd::geteuid().as_raw());
        let owners = SocketOwners::default();
        assert_eq!(owners.pid_of(uid, inode), Some(std::process::id() as i32));
        assert_eq!(owners.pid_of(uid, inode), Some(std::process::id() as i32));
    }
}

//! Which local program is on the other end of a connection, from `/proc`: the executable
//! and command line of a pid (the socket's `SO_PEERCRED` pid), and for a loopback TCP peer
//! its uid and socket inode from `/proc/net/tcp{,6}`, then the pid holding that inode.
//!
//! What the daemon may see (it runs as its own unprivileged user, without `CAP_SYS_PTRACE`):
//! - `/proc/PID/cmdline` of any process: world-readable. It is what the process says about
//!   itself, so it may lie; only the uid (from the kernel) cannot.
//! - `/proc/PID/exe` and `/proc/PID/fd/*` only of its own processes (ptrace rules). For
//!   other users' programs the executable is then `argv[0]` from the command line, marked as
//!   not verified, and a container-endpoint peer's pid stays unknown; its uid is still known.
//!
//! Finding the pid of a socket inode means reading every fd link of the peer uid's
//! processes: that scan is bounded ([`MAX_FD_LINKS`]) and its result cached per uid, so a
//! program that reconnects is found by its last pid at once.
//!
//! Every string from `/proc` is made printable and capped here (with
//! [`crate::serve::consumers::printable`]), before it reaches a log line, the JSON or the table.

use crate::serve::consumers::{printable, Program};
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;

/// Longest executable path kept, in characters.
const EXE_LIMIT: usize = 256;
/// Longest command line kept, in characters (read: 4 KiB at most).
const CMDLINE_LIMIT: usize = 512;
const CMDLINE_READ: u64 = 4096;
/// Fd links read at most when looking for a socket's owner.
pub const MAX_FD_LINKS: usize = 4096;

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

/// The uid and socket inode of the loopback TCP connection from `peer` to our `local`
/// address, from `/proc/net/tcp` (IPv4) or `/proc/net/tcp6`.
pub fn loopback_socket(peer: SocketAddr, local: SocketAddr) -> Option<(u32, u64)> {
    let table = match peer {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    find_socket(&text, peer, local)
}

/// The pure part of [`loopback_socket`]: the line whose local address is `peer` and remote
/// address is `local` (the client's side of the connection).
fn find_socket(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<(u32, u64)> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (from, to) = (fields.get(1)?, fields.get(2)?);
        if parse_address(from)? != peer || parse_address(to)? != local {
            return None;
        }
        Some((fields.get(7)?.parse().ok()?, fields.get(9)?.parse().ok()?))
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word of the
/// address in the host's byte order, as the kernel prints it.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Finds the pid that holds socket `inode`, among the processes of `uid` (see the module
/// doc for the bound and the cache).
#[derive(Debug, Default)]
pub struct SocketOwners {
    last_pid: Mutex<HashMap<u32, i32>>,
}

impl SocketOwners {
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
    fn parses_the_kernels_tcp_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1\n   \
            1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000   999        0 434343 1 0000000000000000 20 4 30 10 -1\n";
        let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(find_socket(v4, client, server), Some((1000, 424242)));
            assert_eq!(find_socket(v4, server, client), Some((999, 434343)));
            let v6 = "header\n   0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:1F90 01 0:0 0:0 0 1001 0 515151\n";
            let client6: SocketAddr = "[::1]:50000".parse().unwrap();
            let server6: SocketAddr = "[::1]:8080".parse().unwrap();
            assert_eq!(find_socket(v6, client6, server6), Some((1001, 515151)));
        }
        assert_eq!(find_socket(v4, client, client), None);
    }

    #[test]
    fn finds_the_uid_and_pid_of_a_real_loopback_client() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(local).unwrap();
        let (uid, inode) = loopback_socket(client.local_addr().unwrap(), local).unwrap();
        assert_eq!(uid, nix::unistd::geteuid().as_raw());
        let owners = SocketOwners::default();
        assert_eq!(owners.pid_of(uid, inode), Some(std::process::id() as i32));
        assert_eq!(owners.pid_of(uid, inode), Some(std::process::id() as i32));
    }
}

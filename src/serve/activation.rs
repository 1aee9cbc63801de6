//! Sockets that systemd passed us (socket activation, `sd_listen_fds_with_names(3)`), picked
//! by name: `imds-credd.socket` holds the API's unix socket and the optional
//! `imds-credd-container.socket` the `[container]` port, and either may be enabled without
//! the other, so a position says nothing. Each unit names its socket with
//! `FileDescriptorName=`; without that systemd uses the unit's name, accepted as well.

use std::os::fd::RawFd;
use std::sync::Mutex;

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// `FileDescriptorName=` of `imds-credd.socket`, and the name systemd gives it without one.
pub const API_SOCKET_NAMES: &[&str] = &["credentials", "imds-credd.socket"];
/// `FileDescriptorName=` of `imds-credd-container.socket`, and its unit name.
pub const CONTAINER_SOCKET_NAMES: &[&str] = &["container", "imds-credd-container.socket"];

/// Fds handed out already, so no two owners wrap (and later close) the same one.
static TAKEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// The passed fd named one of `names`, at most once per process. `None` when we were not
/// socket-activated or no passed socket has such a name.
pub fn take(names: &[&str]) -> Option<RawFd> {
    let listen_pid = std::env::var("LISTEN_PID").ok();
    let listen_fds = std::env::var("LISTEN_FDS").ok();
    let listen_fdnames = std::env::var("LISTEN_FDNAMES").ok();
    let fd = pick(
        listen_pid.as_deref(),
        listen_fds.as_deref(),
        listen_fdnames.as_deref(),
        std::process::id(),
        names,
    )?;
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if taken.contains(&fd) {
        return None;
    }
    taken.push(fd);
    Some(fd)
}

/// Pure part of [`take`]. `LISTEN_PID` must be our pid (the variables may have been
/// inherited from an activated parent). Without `LISTEN_FDNAMES` (an older systemd, or a
/// hand-written activation) the first fd is taken to be the API socket, as before names.
pub fn pick(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    our_pid: u32,
    names: &[&str],
) -> Option<RawFd> {
    let pid: u32 = listen_pid?.trim().parse().ok()?;
    let count: usize = listen_fds?.trim().parse().ok()?;
    if pid != our_pid || count == 0 {
        return None;
    }
    match listen_fdnames {
        None => (names == API_SOCKET_NAMES).then_some(FIRST_FD),
        Some(passed) => passed
            .split(':')
            .take(count)
            .position(|name| names.contains(&name))
            .and_then(|index| RawFd::try_from(index).ok())
            .map(|index| FIRST_FD + index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_picked_by_name_whatever_their_order() {
        let both = Some("container:credentials");
        assert_eq!(
            pick(Some("42"), Some("2"), both, 42, API_SOCKET_NAMES),
            Some(4)
        );
        assert_eq!(
            pick(Some("42"), Some("2"), both, 42, CONTAINER_SOCKET_NAMES),
            Some(3)
        );
        let unit_names = Some("imds-credd.socket:imds-credd-container.socket");
        assert_eq!(
            pick(
                Some("42"),
                Some("2"),
                unit_names,
                42,
                CONTAINER_SOCKET_NAMES
            ),
            Some(4)
        );
        let only_api = Some("credentials");
        assert_eq!(
            pick(Some("42"), Some("1"), only_api, 42, CONTAINER_SOCKET_NAMES),
            None
        );
        assert_eq!(
            pick(Some("42"), Some("1"), Some("other"), 42, API_SOCKET_NAMES),
            None
        );
    }

    #[test]
    fn activation_needs_our_pid_and_at_least_one_fd_and_unnamed_means_the_api_socket() {
        assert_eq!(
            pick(Some("42"), Some("1"), None, 42, API_SOCKET_NAMES),
            Some(3)
        );
        assert_eq!(
            pick(Some("42"), Some("1"), None, 42, CONTAINER_SOCKET_NAMES),
            None
        );
        assert_eq!(
            pick(Some("41"), Some("1"), None, 42, API_SOCKET_NAMES),
            None
        );
        assert_eq!(
            pick(Some("42"), Some("0"), None, 42, API_SOCKET_NAMES),
            None
        );
        assert_eq!(pick(None, Some("1"), None, 42, API_SOCKET_NAMES), None);
        assert_eq!(pick(Some("42"), None, None, 42, API_SOCKET_NAMES), None);
        assert_eq!(pick(Some("x"), Some("1"), None, 42, API_SOCKET_NAMES), None);
    }
}

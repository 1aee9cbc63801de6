//! Sockets that systemd passed us (socket activation, `sd_listen_fds_with_names(3)`), picked
//! by name: `imds-credd.socket` holds the API's unix socket and the optional
//! `imds-credd-container.socket` the `[container]` port, and either may be enabled without
//! the other, so a position says nothing. Each unit names its socket with
//! `FileDescriptorName=`; without that systemd uses the unit's name, accepted as well.
//!
//! Reading `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` is `sd_notify`'s: it passes
//! nothing unless `LISTEN_PID` is our pid (the variables may have been inherited from an
//! activated parent), and marks the passed fds close-on-exec. Here: which one is ours.

use std::os::fd::RawFd;
use std::sync::Mutex;

/// `FileDescriptorName=` of `imds-credd.socket`, and the name systemd gives it without one.
pub const API_SOCKET_NAMES: &[&str] = &["credentials", "imds-credd.socket"];
/// `FileDescriptorName=` of `imds-credd-container.socket`, and its unit name.
pub const CONTAINER_SOCKET_NAMES: &[&str] = &["container", "imds-credd-container.socket"];

/// The name `sd_listen_fds_with_names(3)` gives every fd when `LISTEN_FDNAMES` is unset.
const UNNAMED: &str = "unknown";

/// Fds handed out already, so no two owners wrap (and later close) the same one.
static TAKEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// The passed fd named one of `names`, at most once per process. `None` when we were not
/// socket-activated (or the variables are malformed) or no passed socket has such a name.
pub fn take(names: &[&str]) -> Option<RawFd> {
    let passed = sd_notify::listen_fds_with_names().ok()?;
    let fd = pick(passed, names)?;
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if taken.contains(&fd) {
        return None;
    }
    taken.push(fd);
    Some(fd)
}

/// Pure part of [`take`]: the first of the `passed` fds named one of `names`. Without
/// `LISTEN_FDNAMES` (an older systemd, or a hand-written activation) every fd is unnamed,
/// and the first is taken to be the API socket, as before names.
fn pick(passed: impl IntoIterator<Item = (RawFd, String)>, names: &[&str]) -> Option<RawFd> {
    let passed: Vec<(RawFd, String)> = passed.into_iter().collect();
    if passed.iter().all(|(_, name)| name == UNNAMED) {
        return passed
            .first()
            .filter(|_| names == API_SOCKET_NAMES)
            .map(|(fd, _)| *fd);
    }
    passed
        .into_iter()
        .find(|(_, name)| names.contains(&name.as_str()))
        .map(|(fd, _)| fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fds from 3 named as in `LISTEN_FDNAMES`.
    fn passed(names: &[&str]) -> Vec<(RawFd, String)> {
        (3..)
            .zip(names.iter().map(|name| name.to_string()))
            .collect()
    }

    #[test]
    fn sockets_are_picked_by_name_whatever_their_order() {
        let both = passed(&["container", "credentials"]);
        assert_eq!(pick(both.clone(), API_SOCKET_NAMES), Some(4));
        assert_eq!(pick(both, CONTAINER_SOCKET_NAMES), Some(3));
        let unit_names = passed(&["imds-credd.socket", "imds-credd-container.socket"]);
        assert_eq!(pick(unit_names, CONTAINER_SOCKET_NAMES), Some(4));
        assert_eq!(pick(passed(&["credentials"]), CONTAINER_SOCKET_NAMES), None);
        assert_eq!(pick(passed(&["other"]), API_SOCKET_NAMES), None);
    }

    #[test]
    fn unnamed_fds_mean_the_api_socket_first_and_none_means_none() {
        let unnamed = passed(&[UNNAMED, UNNAMED]);
        assert_eq!(pick(unnamed.clone(), API_SOCKET_NAMES), Some(3));
        assert_eq!(pick(unnamed, CONTAINER_SOCKET_NAMES), None);
        assert_eq!(pick(passed(&[]), API_SOCKET_NAMES), None);
    }
}

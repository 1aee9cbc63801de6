//! Sockets that systemd passed us (socket activation, `sd_listen_fds_with_names(3)`), picked
//! by name: `imds-credd.socket` holds the API's unix socket and the optional
//! `imds-credd-container.socket` the `[container]` port, and either may be enabled without
//! the other, so a position says nothing. Each unit names its socket with
//! `FileDescriptorName=`; without that systemd uses the unit's name, accepted as well.
//! `imds-credd.socket` also carries the unit-credentials socket (a second `ListenStream=`,
//! so the same name): that one is picked by the path it is bound to ([`take_at`]).
//!
//! Reading `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` is `sd_notify`'s: it passes
//! nothing unless `LISTEN_PID` is our pid (the variables may have been inherited from an
//! activated parent), and marks the passed fds close-on-exec. Here: which one is ours.

use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Mutex;

/// `FileDescriptorName=` of `imds-credd.socket`, and the name systemd gives it without one.
pub const API_SOCKET_NAMES: &[&str] = &["credentials", "imds-credd.socket"];
/// `FileDescriptorName=` of `imds-credd-container.socket`, and its unit name.
pub const CONTAINER_SOCKET_NAMES: &[&str] = &["container", "imds-credd-container.socket"];

/// The name `sd_listen_fds_with_names(3)` gives every fd when `LISTEN_FDNAMES` is unset.
const UNNAMED: &str = "unknown";

/// Fds handed out already, so no two owners wrap (and later close) the same one.
static TAKEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// The first passed fd named one of `names` and not handed out yet, at most once per
/// process. `None` when we were not socket-activated (or the variables are malformed) or no
/// passed socket has such a name.
pub fn take(names: &[&str]) -> Option<RawFd> {
    take_first(names, |_| true)
}

/// [`take`], of the fd that is a unix socket bound at `path`.
pub fn take_at(names: &[&str], path: &Path) -> Option<RawFd> {
    take_first(names, |fd| {
        nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd)
            .is_ok_and(|address| address.path() == Some(path))
    })
}

fn take_first(names: &[&str], wanted: impl Fn(RawFd) -> bool) -> Option<RawFd> {
    let passed = sd_notify::listen_fds_with_names().ok()?;
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let fd = candidates(passed, names)
        .into_iter()
        .find(|fd| !taken.contains(fd) && wanted(*fd))?;
    taken.push(fd);
    Some(fd)
}

/// Pure part of [`take`]: the `passed` fds named one of `names`, in order. Without
/// `LISTEN_FDNAMES` (an older systemd, or a hand-written activation) every fd is unnamed,
/// and they are taken to be the API socket's unit's, as before names.
fn candidates(passed: impl IntoIterator<Item = (RawFd, String)>, names: &[&str]) -> Vec<RawFd> {
    let passed: Vec<(RawFd, String)> = passed.into_iter().collect();
    let unnamed = passed.iter().all(|(_, name)| name == UNNAMED);
    passed
        .into_iter()
        .filter(|(_, name)| match unnamed {
            true => names == API_SOCKET_NAMES,
            false => names.contains(&name.as_str()),
        })
        .map(|(fd, _)| fd)
        .collect()
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
        let both = passed(&["container", "credentials", "credentials"]);
        assert_eq!(candidates(both.clone(), API_SOCKET_NAMES), [4, 5]);
        assert_eq!(candidates(both, CONTAINER_SOCKET_NAMES), [3]);
        let unit_names = passed(&["imds-credd.socket", "imds-credd-container.socket"]);
        assert_eq!(candidates(unit_names, CONTAINER_SOCKET_NAMES), [4]);
        assert!(candidates(passed(&["credentials"]), CONTAINER_SOCKET_NAMES).is_empty());
        assert!(candidates(passed(&["other"]), API_SOCKET_NAMES).is_empty());
    }

    #[test]
    fn unnamed_fds_mean_the_api_socket_s_unit_and_none_means_none() {
        let unnamed = passed(&[UNNAMED, UNNAMED]);
        assert_eq!(candidates(unnamed.clone(), API_SOCKET_NAMES), [3, 4]);
        assert!(candidates(unnamed, CONTAINER_SOCKET_NAMES).is_empty());
        assert!(candidates(passed(&[]), API_SOCKET_NAMES).is_empty());
    }
}

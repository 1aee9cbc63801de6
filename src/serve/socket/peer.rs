//! Who is on the other end of a connection (`SO_PEERCRED`: the uid, gid and pid the kernel
//! recorded at `connect()`), and whether `socket.allow_uids` / `socket.allow_gids` let them in.
//!
//! # Policy
//! - Both lists empty: everyone who can open the socket (its mode and group decide).
//! - Otherwise a peer is allowed when its uid is in `allow_uids` or its gid in `allow_gids`.
//!   The gid is the peer's primary (effective) group: `SO_PEERCRED` does not carry
//!   supplementary groups, so list a user's uid, or make the group its primary one.
//! - A subordinate uid ([`crate::serve::subuid`]) is allowed when its owner's uid is listed:
//!   it counts as its owner everywhere. (Root's subordinate uids are not root.)
//! - uid 0 is always allowed. Root passes the socket's mode check anyway, can read IMDS
//!   itself and can read the daemon's memory, so refusing it protects nothing; allowing it
//!   keeps `sudo imds-credd status` working when the lists name only the application user.

use crate::config::SocketConfig;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::os::fd::AsFd;

/// The peer's identity as the kernel recorded it when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The peer's uid.
    pub uid: u32,
    /// The peer's primary gid.
    pub gid: u32,
    /// The peer's pid.
    pub pid: i32,
}

/// Reads `SO_PEERCRED` from a connected unix socket.
pub fn peer_of(stream: &impl AsFd) -> nix::Result<Peer> {
    let creds = getsockopt(stream, PeerCredentials)?;
    Ok(Peer {
        uid: creds.uid(),
        gid: creds.gid(),
        pid: creds.pid(),
    })
}

/// Which peers may use the socket (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    allow_uids: Vec<u32>,
    allow_gids: Vec<u32>,
}

impl PeerPolicy {
    /// Admits the listed uids and gids; both empty: everyone.
    pub fn new(allow_uids: Vec<u32>, allow_gids: Vec<u32>) -> Self {
        PeerPolicy {
            allow_uids,
            allow_gids,
        }
    }

    /// The policy of `[socket]`.
    pub fn from_config(config: &SocketConfig) -> Self {
        Self::new(config.allow_uids.clone(), config.allow_gids.clone())
    }

    /// `owner`: the user whose subordinate uid the peer's is, if any.
    pub fn allows(&self, peer: &Peer, owner: Option<u32>) -> bool {
        (self.allow_uids.is_empty() && self.allow_gids.is_empty())
            || peer.uid == 0
            || self.allow_uids.contains(&peer.uid)
            || owner.is_some_and(|owner| self.allow_uids.contains(&owner))
            || self.allow_gids.contains(&peer.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer { uid, gid, pid: 1 }
    }

    #[test]
    fn empty_lists_allow_everyone() {
        assert!(PeerPolicy::default().allows(&peer(1234, 1234), None));
    }

    #[test]
    fn a_listed_uid_or_gid_is_enough() {
        let policy = PeerPolicy::new(vec![1000], vec![2000]);
        assert!(policy.allows(&peer(1000, 1), None));
        assert!(policy.allows(&peer(1, 2000), None));
        assert!(!policy.allows(&peer(1001, 1001), None));
        assert!(
            policy.allows(&peer(100_000, 100_000), Some(1000)),
            "a subordinate"
        );
        assert!(
            !policy.allows(&peer(100_000, 100_000), Some(0)),
            "root's is not root"
        );
    }

    #[test]
    fn root_is_always_allowed() {
        assert!(PeerPolicy::new(vec![1000], vec![]).allows(&peer(0, 0), None));
        assert!(PeerPolicy::new(vec![], vec![2000]).allows(&peer(0, 5), None));
    }

    #[test]
    fn reads_our_own_credentials_from_a_socket_pair() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = peer_of(&a).unwrap();
        assert_eq!(me.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(me.gid, nix::unistd::getegid().as_raw());
        assert_eq!(me.pid as u32, std::process::id());
    }
}

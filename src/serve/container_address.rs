//! `imds-credd container-address up|down`: puts the link-local container addresses
//! (`169.254.170.23/32`, `fd00:ec2::23/128`) on the host's `lo` for the `[container]`
//! endpoint, and takes them off again. The unit runs it privileged (`ExecStartPre=+`,
//! `ExecStopPost=+`) so the daemon itself needs no `CAP_NET_ADMIN`.
//!
//! An address on `lo` is local to the whole host: a bridged container reaches it through its
//! default route (the host end of its bridge), with no NAT and no forwarding, as it reaches
//! any other address of the host. `lo` rather than a dummy link: it exists in every network
//! namespace, needs no kernel module, and a link of our own would be one more thing to
//! leave behind.
//!
//! One small rtnetlink request per address (`RTM_NEWADDR` with `NLM_F_REPLACE`, so `up`
//! twice is fine; `RTM_DELADDR`, where "not there" is fine), built by hand: a netlink crate
//! would be far larger than these few dozen bytes.
//!
//! `up` puts on only the addresses `[container] listen` names; `down` takes both off `lo`
//! whatever the config says now (it may have changed since `up`), and nothing else.

use crate::config::{Config, CONTAINER_ADDRESS_V4, CONTAINER_ADDRESS_V6};
use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use thiserror::Error;

/// The link the addresses go on...
const LINK: &str = "lo";
/// ...and its index: the kernel registers loopback first in every network namespace
/// (`LOOPBACK_IFINDEX`), so it is always 1.
const LINK_INDEX: u32 = 1;

/// `up` or `down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Put the addresses `[container] listen` names on `lo`.
    Up,
    /// Take both container addresses off `lo`.
    Down,
}

#[derive(Debug, Error)]
pub enum AddressError {
    #[error("cannot talk to the kernel over rtnetlink")]
    Netlink(#[source] Errno),
    #[error(
        "the kernel refused to {action} {address} on {LINK} (run as root, or with CAP_NET_ADMIN)"
    )]
    Refused {
        action: &'static str,
        address: IpAddr,
        #[source]
        source: Errno,
    },
    #[error("the kernel's answer to the rtnetlink request is malformed")]
    Malformed,
}

/// Carries out `action` for `config`; returns the addresses it put on or took off.
pub(crate) fn apply(action: Action, config: &Config) -> Result<Vec<IpAddr>, AddressError> {
    let addresses = match action {
        Action::Up => config
            .container
            .as_ref()
            .map(|c| c.container_addresses())
            .unwrap_or_default(),
        Action::Down => vec![CONTAINER_ADDRESS_V4.into(), CONTAINER_ADDRESS_V6.into()],
    };
    if addresses.is_empty() {
        return Ok(addresses);
    }
    let netlink = Netlink::open()?;
    for (seq, address) in (1..).zip(&addresses) {
        let (kind, flags, action) = match action {
            Action::Up => (
                libc::RTM_NEWADDR,
                libc::NLM_F_CREATE | libc::NLM_F_REPLACE,
                "add",
            ),
            Action::Down => (libc::RTM_DELADDR, 0, "remove"),
        };
        let request = address_request(kind, flags, seq, LINK_INDEX, *address);
        match netlink.exchange(&request, seq)? {
            Ok(()) => {}
            // Not there: already down.
            Err(Errno::EADDRNOTAVAIL) if action == "remove" => {}
            Err(source) => {
                return Err(AddressError::Refused {
                    action,
                    address: *address,
                    source,
                })
            }
        }
    }
    Ok(addresses)
}

/// An `NETLINK_ROUTE` socket.
struct Netlink(OwnedFd);

impl Netlink {
    fn open() -> Result<Netlink, AddressError> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            socket::SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(AddressError::Netlink)?;
        Ok(Netlink(fd))
    }

    /// Sends `request` and reads the kernel's acknowledgement of message `seq`: `Ok(Err)`
    /// is the errno it refused with.
    fn exchange(&self, request: &[u8], seq: u32) -> Result<Result<(), Errno>, AddressError> {
        let kernel = NetlinkAddr::new(0, 0);
        socket::sendto(self.0.as_raw_fd(), request, &kernel, MsgFlags::empty())
            .map_err(AddressError::Netlink)?;
        let mut buffer = [0u8; 4096];
        loop {
            let read = socket::recv(self.0.as_raw_fd(), &mut buffer, MsgFlags::empty())
                .map_err(AddressError::Netlink)?;
            if let Some(answer) = acknowledgement(&buffer[..read], seq)? {
                return Ok(answer);
            }
        }
    }
}

/// `nlmsghdr` + `ifaddrmsg` + `IFA_LOCAL` and `IFA_ADDRESS`, for `address` as a host route
/// (/32 or /128) on link `index`.
fn address_request(
    kind: u16,
    flags: libc::c_int,
    seq: u32,
    index: u32,
    address: IpAddr,
) -> Vec<u8> {
    let (family, prefix, bytes): (u8, u8, Vec<u8>) = match address {
        IpAddr::V4(v4) => (libc::AF_INET as u8, 32, v4.octets().to_vec()),
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, 128, v6.octets().to_vec()),
    };
    let mut body = Vec::new();
    // ifaddrmsg: family, prefix length, flags (no duplicate address detection: the address
    // is ours alone, and a tentative one cannot be bound), scope universe, link index.
    body.extend_from_slice(&[family, prefix, libc::IFA_F_NODAD as u8, 0]);
    body.extend_from_slice(&index.to_ne_bytes());
    for kind in [libc::IFA_LOCAL, libc::IFA_ADDRESS] {
        let length = 4 + bytes.len() as u16;
        body.extend_from_slice(&length.to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(&bytes);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut message = Vec::with_capacity(16 + body.len());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | flags) as u16;
    message.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&seq.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&body);
    message
}

/// The outcome the kernel reports for message `seq` in one datagram (`NLMSG_ERROR`, whose
/// error 0 is the acknowledgement), or `None` when the datagram holds no answer to it.
fn acknowledgement(datagram: &[u8], seq: u32) -> Result<Option<Result<(), Errno>>, AddressError> {
    let mut rest = datagram;
    while rest.len() >= 16 {
        let word = |at: usize| u32::from_ne_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
        let length = word(0) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if length < 16 || length > rest.len() {
            return Err(AddressError::Malformed);
        }
        if kind == libc::NLMSG_ERROR as u16 && word(8) == seq {
            if length < 20 {
                return Err(AddressError::Malformed);
            }
            let error = i32::from_ne_bytes(rest[16..20].try_into().expect("4 bytes"));
            return Ok(Some(match error {
                0 => Ok(()),
                negative => Err(Errno::from_raw(-negative)),
            }));
        }
        rest = &rest[length.next_multiple_of(4).min(rest.len())..];
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_what_ip_addr_add_sends() {
        let request = address_request(libc::RTM_NEWADDR, 0, 7, 1, CONTAINER_ADDRESS_V4.into());
        // 16 header + 8 ifaddrmsg + two 8-byte attributes.
        assert_eq!(request.len(), 40);
        assert_eq!(u32::from_ne_bytes(request[0..4].try_into().unwrap()), 40);
        assert_eq!(&request[16..18], &[libc::AF_INET as u8, 32]);
        assert_eq!(&request[28..32], &[169, 254, 170, 23]);
        assert_eq!(&request[36..40], &[169, 254, 170, 23]);
        let v6 = address_request(libc::RTM_DELADDR, 0, 8, 1, CONTAINER_ADDRESS_V6.into());
        assert_eq!(v6.len(), 16 + 8 + 2 * 20);
        assert_eq!(v6[17], 128);
    }

    #[test]
    fn acknowledgements_and_refusals_are_read_by_sequence() {
        let answer = |seq: u32, error: i32| {
            let mut m = Vec::new();
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&error.to_ne_bytes());
            m.extend_from_slice(&[0; 16]);
            m
        };
        assert_eq!(acknowledgement(&answer(3, 0), 3).unwrap(), Some(Ok(())));
        assert_eq!(
            acknowledgement(&answer(3, -libc::EPERM), 3).unwrap(),
            Some(Err(Errno::EPERM))
        );
        assert_eq!(acknowledgement(&answer(2, 0), 3).unwrap(), None);
        assert!(acknowledgement(&answer(3, 0)[..20], 3).is_err());
    }
}

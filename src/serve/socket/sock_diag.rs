//! Who holds the other end of a loopback TCP connection: one `NETLINK_SOCK_DIAG` request
//! (`SOCK_DIAG_BY_FAMILY` with an `inet_diag_req_v2` naming the exact 4-tuple, no dump),
//! which the kernel answers with that one socket's uid and inode. Its cost does not depend
//! on how many sockets the host has (reading `/proc/net/tcp` does, and any user can fill the
//! table with `TIME_WAIT` rows). The kernel builds the answer while it takes the request
//! (inside `sendto`), so the netlink socket is non-blocking and read once without waiting:
//! four quick system calls, none of which sleeps, fit on an async worker. Any user may make
//! the request (the kernel allows exact lookups to all).

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

const NLMSG_HEADER: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const IPPROTO_TCP: u8 = 6;
/// `inet_diag_req_v2`: family, protocol, extensions, pad, states, then the socket id.
const REQUEST_BODY: usize = 8 + SOCKET_ID;
/// `inet_diag_sockid`: ports, addresses, interface, cookie.
const SOCKET_ID: usize = 4 + 16 + 16 + 4 + 8;
/// In `inet_diag_msg`: after family, state, timer, retrans, the id, expires, rqueue, wqueue.
const UID_OFFSET: usize = 4 + SOCKET_ID + 12;
const INODE_OFFSET: usize = UID_OFFSET + 4;

/// The socket on the other end of a connection, as the kernel records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSocket {
    /// The uid that created the socket (in the daemon's user namespace).
    pub uid: u32,
    /// Its inode (`socket:[INODE]` among the holder's file descriptors).
    pub inode: u64,
}

/// The socket bound to `peer` and connected to `local` (the client's side of a connection
/// we accepted on `local`). `Ok(None)`: there is none any more, or it is closed (its
/// owner gone, or in `TIME_WAIT`, where the kernel reports no uid). An error of kind
/// `WouldBlock` if the kernel had not answered by the time it was read.
pub fn peer_socket(peer: SocketAddr, local: SocketAddr) -> io::Result<Option<PeerSocket>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkSockDiag,
    )?;
    let request = request(peer, local).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the peer and local addresses are of different families",
        )
    })?;
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut reply = [0u8; 1024];
    let length = recv(fd.as_raw_fd(), &mut reply, MsgFlags::MSG_DONTWAIT)?;
    parse_reply(&reply[..length], peer, local)
}

/// The request for the socket bound to `source` and connected to `destination`.
fn request(source: SocketAddr, destination: SocketAddr) -> Option<Vec<u8>> {
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => nix::libc::AF_INET as u8,
        (IpAddr::V6(_), IpAddr::V6(_)) => nix::libc::AF_INET6 as u8,
        _ => return None,
    };
    let length = NLMSG_HEADER + REQUEST_BODY;
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&(length as u32).to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    out.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    out.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out.extend_from_slice(&address_bytes(source.ip()));
    out.extend_from_slice(&address_bytes(destination.ip()));
    out.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    out.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    Some(out)
}

/// An address as `inet_diag_sockid` holds it: 16 bytes, an IPv4 one in the first four.
fn address_bytes(ip: IpAddr) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    bytes
}

/// The socket in `reply` if it is the one connected from `peer` to `local`. For a 4-tuple
/// nobody is connected on, the kernel answers with a socket listening on `peer`'s port if
/// there is one (its remote port 0): anyone's, since any user may listen on a free port, and
/// for a container peer (whose socket is in another namespace) it would pass that user off
/// as the container. That answer is no peer.
fn parse_reply(
    reply: &[u8],
    peer: SocketAddr,
    local: SocketAddr,
) -> io::Result<Option<PeerSocket>> {
    let short = || io::Error::new(io::ErrorKind::InvalidData, "short sock_diag reply");
    let u32_at = |offset: usize| -> io::Result<u32> {
        let bytes = reply.get(offset..offset + 4).ok_or_else(short)?;
        Ok(u32::from_ne_bytes(bytes.try_into().expect("four bytes")))
    };
    let kind = u16::from_ne_bytes(
        reply
            .get(4..6)
            .ok_or_else(short)?
            .try_into()
            .expect("two bytes"),
    );
    if kind == NLMSG_ERROR {
        let errno = -(u32_at(NLMSG_HEADER)? as i32);
        return match errno {
            0 => Err(short()),
            nix::libc::ENOENT => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected sock_diag reply type {kind}"),
        ));
    }
    let port_at = |offset: usize| -> io::Result<u16> {
        let bytes = reply.get(offset..offset + 2).ok_or_else(short)?;
        Ok(u16::from_be_bytes(bytes.try_into().expect("two bytes")))
    };
    let ports = (port_at(NLMSG_HEADER + 4)?, port_at(NLMSG_HEADER + 6)?);
    if ports != (peer.port(), local.port()) {
        return Ok(None);
    }
    let uid = u32_at(NLMSG_HEADER + UID_OFFSET)?;
    let inode = u32_at(NLMSG_HEADER + INODE_OFFSET)?;
    Ok((inode != 0).then_some(PeerSocket {
        uid,
        inode: u64::from(inode),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn socket_inode(stream: &std::net::TcpStream) -> u64 {
        let link = std::fs::metadata(format!("/proc/self/fd/{}", stream.as_raw_fd())).unwrap();
        link.ino()
    }

    #[test]
    fn finds_the_uid_and_inode_of_a_real_loopback_client_v4_and_v6() {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(host) else {
                continue; // no IPv6 loopback here
            };
            let local = listener.local_addr().unwrap();
            let client = std::net::TcpStream::connect(local).unwrap();
            let found = peer_socket(client.local_addr().unwrap(), local)
                .unwrap()
                .unwrap();
            assert_eq!(found.uid, nix::unistd::geteuid().as_raw());
            assert_eq!(found.inode, socket_inode(&client));
        }
    }

    #[test]
    fn a_socket_that_is_gone_is_none() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(local).unwrap();
        let from = client.local_addr().unwrap();
        drop(client);
        assert_eq!(peer_socket(from, local).unwrap(), None, "closed");
        let never: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(peer_socket(never, local).unwrap(), None, "never there");
        assert!(peer_socket("[::1]:1".parse().unwrap(), local).is_err());
    }

    #[test]
    fn a_listener_on_the_peers_port_is_not_the_peer() {
        // The kernel answers a 4-tuple nobody is connected on with a socket listening on
        // its port, if any: anyone's, for a container peer whose socket is elsewhere.
        let squatter = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = squatter.local_addr().unwrap().port();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let container: SocketAddr = format!("169.254.201.2:{port}").parse().unwrap();
        let local = server.local_addr().unwrap();
        assert_eq!(peer_socket(container, local).unwrap(), None);
    }
}

//! Admission at accept: whose share of the connection slots a connection takes, the cap on
//! each share, the canned answer a refused or over-share peer gets without holding a slot,
//! and the watch on a connection's first byte (the deadline for one that sends nothing).
//!
//! A refused or over-share peer gets its canned answer without holding a slot: its request
//! head is read (and dropped) for at most [`LINGER`], then the answer is written and the
//! connection closed. Reading first matters: HTTP clients (hyper's among them) treat an
//! answer that comes before their request as a broken connection, and closing with the
//! request unread would reset it before the answer is read. That wait holds a file
//! descriptor but no slot, and at most [`MAX_LINGERING`] wait at once; past that the answer
//! is written at once.

use super::Body;
use http_body_util::BodyExt;
use hyper::Response;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections one uid may hold at once, on each listener. A client command holds one and an
/// SDK one per fetch, so 64 cover a busy program's thread pool; against the socket's 1,024
/// slots it takes 16 users acting together to fill them, where before one could.
pub const PER_UID_CONNECTIONS: usize = 64;
/// Peers in other network namespaces (bridged containers, [`Share::Address`]) hold at most
/// this many shares' worth of connections together: a container that may add addresses to
/// its interface (one with `CAP_NET_ADMIN`) takes a share per address, and without this cap
/// could fill the endpoint's slots and shut out the host's own users.
pub(super) const REMOTE_SHARES: usize = 4;
/// A connection that has sent no byte this long after its accept is closed: local clients
/// send their request at once. (The header timeout, longer, bounds a slow request head.)
pub const FIRST_BYTE_DEADLINE: Duration = Duration::from_secs(2);
/// How long a refused peer's request head is waited for before its answer.
pub(super) const LINGER: Duration = Duration::from_secs(1);
/// Refused connections waiting for their request head at once, at most.
const MAX_LINGERING: usize = 256;
/// Bytes read and dropped from a refused peer, at most (the server's head limit).
const LINGER_BYTES: usize = 16 * 1024;
/// Time to write a canned answer (a few hundred bytes: it fits in the socket buffer).
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// Whose share of the connection slots a connection takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Share {
    /// Root itself: not capped. It can read IMDS and the daemon's memory anyway, and
    /// `sudo imds-credd status` must get in whatever the users do.
    Exempt,
    /// A uid, with its subordinate uids ([`crate::serve::subuid`]).
    Uid(u32),
    /// Peers whose uid could not be read share one cap.
    Unknown,
    /// A container endpoint peer in another network namespace (a bridged container): it
    /// has no uid here, so it counts by its address.
    Address(std::net::IpAddr),
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Share::Exempt => f.write_str("uid 0"),
            Share::Uid(uid) => write!(f, "uid {uid}"),
            Share::Unknown => f.write_str("unknown uid"),
            Share::Address(address) => write!(f, "address {address}"),
        }
    }
}

/// How many connections each share holds.
type Held = Arc<Mutex<HashMap<Share, usize>>>;

/// The connections each share holds now.
#[derive(Debug, Default)]
pub(super) struct Shares {
    held: Held,
}

/// One connection's place in its share; given back on drop.
#[derive(Debug)]
pub(super) struct ShareSlot {
    held: Option<(Held, Share)>,
}

impl Shares {
    /// A slot in `share` if it holds fewer than `cap` connections (always, when exempt).
    pub(super) fn take(&self, share: Share, cap: usize) -> Option<ShareSlot> {
        if share == Share::Exempt {
            return Some(ShareSlot { held: None });
        }
        let mut held = lock(&self.held);
        if let Share::Address(_) = share {
            let remote: usize = held
                .iter()
                .filter(|(held_by, _)| matches!(held_by, Share::Address(_)))
                .map(|(_, count)| count)
                .sum();
            if remote >= cap * REMOTE_SHARES {
                return None;
            }
        }
        let count = held.entry(share).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ShareSlot {
            held: Some((Arc::clone(&self.held), share)),
        })
    }
}

impl Drop for ShareSlot {
    fn drop(&mut self) {
        if let Some((held, share)) = self.held.take() {
            let mut held = lock(&held);
            if let Some(count) = held.get_mut(&share) {
                *count -= 1;
                if *count == 0 {
                    held.remove(&share);
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Refused connections draining now (see the module doc).
#[derive(Debug)]
pub(super) struct Lingering(Arc<Semaphore>);

impl Default for Lingering {
    fn default() -> Self {
        Lingering(Arc::new(Semaphore::new(MAX_LINGERING)))
    }
}

impl Lingering {
    /// Reads `stream`'s request head when a waiting place is free (see the module doc),
    /// then writes `response` (with `Connection: close`) and closes it.
    pub(super) async fn answer_and_close<S>(&self, mut stream: S, response: Response<Body>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Ok(_place) = Arc::clone(&self.0).try_acquire_owned() {
            let _ = tokio::time::timeout(LINGER, read_head(&mut stream)).await;
        }
        let bytes = serialize(response).await;
        let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        })
        .await;
    }
}

/// Reads until the end of a request head (a blank line), the end of the stream, or
/// [`LINGER_BYTES`].
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while head.len() < LINGER_BYTES {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return;
        }
    }
}

/// An HTTP/1.1 answer as bytes, closing the connection.
async fn serialize(response: Response<Body>) -> Vec<u8> {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

/// A stream that says when its first byte arrived: `heard` is cancelled then.
pub(super) struct Heard<S> {
    inner: S,
    heard: CancellationToken,
}

impl<S> Heard<S> {
    pub(super) fn new(inner: S) -> (Self, CancellationToken) {
        let heard = CancellationToken::new();
        (
            Heard {
                inner,
                heard: heard.clone(),
            },
            heard,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && !self.heard.is_cancelled() {
            self.heard.cancel();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    #[test]
    fn a_share_holds_at_most_its_cap_and_root_is_not_counted() {
        let shares = Shares::default();
        let a: Vec<ShareSlot> = (0..3)
            .map(|_| shares.take(Share::Uid(1000), 3).unwrap())
            .collect();
        assert!(shares.take(Share::Uid(1000), 3).is_none());
        assert!(shares.take(Share::Uid(1001), 3).is_some(), "another uid");
        assert!((0..100).all(|_| shares.take(Share::Exempt, 3).is_some()));
        drop(a);
        assert!(shares.take(Share::Uid(1000), 3).is_some(), "given back");
    }

    #[test]
    fn peers_without_a_uid_hold_a_few_shares_together_whatever_their_addresses() {
        let shares = Shares::default();
        let address = |i: u8| Share::Address(std::net::IpAddr::from([172, 17, 0, i]));
        let held: Vec<ShareSlot> = (0..REMOTE_SHARES as u8 * 3)
            .filter_map(|i| shares.take(address(i), 3))
            .collect();
        assert_eq!(
            held.len(),
            3 * REMOTE_SHARES,
            "one slot per address, up to four shares' worth in all"
        );
        assert!(
            shares.take(address(200), 3).is_none(),
            "a new address is over the cap"
        );
        assert!(
            shares.take(Share::Uid(1000), 3).is_some(),
            "local users keep theirs"
        );
    }

    #[tokio::test]
    async fn a_refused_peer_reads_the_whole_answer_then_the_end() {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = Response::new(Body::from("{\"code\":\"Forbidden\"}"));
        *response.status_mut() = StatusCode::FORBIDDEN;
        Lingering::default()
            .answer_and_close(server, response)
            .await;
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
        assert!(answer.contains("content-length: 20\r\nconnection: close\r\n\r\n"));
        assert!(answer.ends_with("{\"code\":\"Forbidden\"}"));
    }
}

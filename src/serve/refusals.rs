//! Refusal log lines, rate-limited: a local user who sends refused requests in a loop (or
//! connects and resets, or floods a listener past its share) must not fill the journal (and
//! drown the lines that matter). Every line an unauthenticated or refused peer can cause
//! goes through here. The first refusal of a peer (and reason) is logged; further ones
//! within [`INTERVAL`] are only counted, and the next line after it carries that count.
//! Past 1,024 peers logged within the interval, the others share one line. Counters in `/metrics` still
//! count every refusal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// At most one line per peer and reason in this long.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Peers remembered before those quiet for an interval are forgotten; bounds the memory
/// a crowd of peers can take.
const MAX_REMEMBERED: usize = 1024;
/// The key of the peers past [`MAX_REMEMBERED`].
const OTHER_PEERS: &str = "(other peers)";

/// When each peer was last logged, and how many of its refusals went unlogged since.
#[derive(Debug, Default)]
pub struct RefusalLog {
    peers: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RefusalLog {
    /// Whether to log a refusal of `peer` now: `Some(n)` with the refusals not logged since
    /// its previous line, or `None` to stay quiet (the refusal is counted).
    pub fn admit_line(&self, peer: String) -> Option<u64> {
        let now = Instant::now();
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if peers.len() >= MAX_REMEMBERED && !peers.contains_key(&peer) {
            peers.retain(|_, (last, _)| now.duration_since(*last) < INTERVAL);
        }
        // Still full of peers logged within the interval: the newcomer shares one line.
        let peer = match peers.len() >= MAX_REMEMBERED && !peers.contains_key(&peer) {
            true => OTHER_PEERS.to_string(),
            false => peer,
        };
        match peers.get_mut(&peer) {
            Some((last, quiet)) if now.duration_since(*last) < INTERVAL => {
                *quiet += 1;
                None
            }
            Some((last, quiet)) => {
                *last = now;
                Some(std::mem::take(quiet))
            }
            None => {
                peers.insert(peer, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_peer_per_interval_then_the_count() {
        let log = RefusalLog::default();
        assert_eq!(log.admit_line("a".into()), Some(0));
        for _ in 0..99 {
            assert_eq!(log.admit_line("a".into()), None);
        }
        assert_eq!(
            log.admit_line("b".into()),
            Some(0),
            "another peer has its own line"
        );
        tokio::time::advance(INTERVAL).await;
        assert_eq!(log.admit_line("a".into()), Some(99));
        assert_eq!(log.admit_line("a".into()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_crowd_of_peers_past_the_memory_shares_one_line() {
        let log = RefusalLog::default();
        let lines = (0..10 * MAX_REMEMBERED)
            .filter(|i| log.admit_line(format!("uid {i}")).is_some())
            .count();
        assert_eq!(
            lines,
            MAX_REMEMBERED + 1,
            "the remembered ones and one for the rest"
        );
    }
}

//! The refresher's check-in, which the systemd watchdog pings depend on: a daemon whose
//! refresher is stuck (a wait that never ends, a lost wake-up) must stop pinging, so that
//! systemd restarts it, although its other tasks still run.
//!
//! On every turn of its loop the refresher says how long it will be away: the fetch
//! allowance while it asks IMDS, its sleep until the next wake-up otherwise. Past that plus
//! the allowance it is overdue. Monotonic time: a wall-clock step (NTP) moves the
//! refresher's wall-clock wake-up, and must not look like a hang, so a sleeping refresher
//! checks in again at least every 30 s with how far its wake-up is then.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// When the refresher must check in again.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    due: Arc<Mutex<Instant>>,
    allowance: Duration,
}

impl Heartbeat {
    /// `allowance`: the longest a whole fetch may take (every IMDS request timing out
    /// through its retries), added to every promised wake-up.
    pub fn new(allowance: Duration) -> Self {
        Heartbeat {
            due: Arc::new(Mutex::new(Instant::now() + allowance)),
            allowance,
        }
    }

    /// The allowance for the refresher with IMDS `timeout`: the token, role and credentials
    /// requests, each retried up to three times, plus a minute for backoff and scheduling.
    pub fn allowance_for(timeout: Duration) -> Duration {
        timeout * 9 + Duration::from_secs(60)
    }

    /// The refresher checks in: it will be back within `away` (zero while it fetches).
    pub fn check_in(&self, away: Duration) {
        *self.due.lock().expect("heartbeat lock") = Instant::now() + away + self.allowance;
    }

    /// Whether the refresher has missed its own deadline.
    pub fn is_overdue(&self) -> bool {
        Instant::now() > *self.due.lock().expect("heartbeat lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn overdue_only_past_the_promised_wake_up_plus_the_allowance() {
        let heartbeat = Heartbeat::new(Duration::from_secs(60));
        heartbeat.check_in(Duration::from_secs(3600));
        tokio::time::advance(Duration::from_secs(3600 + 59)).await;
        assert!(!heartbeat.is_overdue());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(heartbeat.is_overdue());
        heartbeat.check_in(Duration::ZERO);
        assert!(!heartbeat.is_overdue(), "a check-in clears it");
    }

    #[test]
    fn the_allowance_covers_every_request_timing_out_through_its_retries() {
        assert_eq!(
            Heartbeat::allowance_for(Duration::from_secs(2)),
            Duration::from_secs(78)
        );
    }
}

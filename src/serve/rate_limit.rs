//! The per-uid request budget of `[socket] rate_limit` (the socket and the container
//! endpoint): a token bucket per uid that refills at the rate and holds twice that, so a
//! program may burst for a moment but one uid cannot take the daemon from everyone else.
//! A container endpoint peer in another network namespace has no uid here: it has a
//! bucket per address instead.
//! Root is exempt (it can read IMDS itself): the caller skips the check for root itself,
//! while root's subordinate uids ([`crate::serve::subuid`]) are limited under uid 0 like any
//! other user's. A request over budget gets `429` with `Retry-After`.

use crate::config::RateLimit;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most; past it, full buckets (which behave like new ones) are dropped.
const MAX_BUCKETS: usize = 4096;

/// Whose budget a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// A local peer's uid; `None` when it could not be found.
    Uid(Option<u32>),
    /// A peer without a uid here (a container): its address.
    Address(IpAddr),
}

impl From<Option<u32>> for Budget {
    fn from(uid: Option<u32>) -> Self {
        Budget::Uid(uid)
    }
}

/// The buckets of every uid (and uid-less address) seen.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<Budget, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter with no bucket yet, at `limit`.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit it enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one request from `budget` (a uid, or an address) at `now`, or says how long
    /// until there is one. The caller exempts root itself.
    pub fn check(&self, budget: impl Into<Budget>, now: Instant) -> Result<(), Duration> {
        let budget = budget.into();
        if self.limit.per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(self.limit.per_second);
        let burst = 2.0 * rate;
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&budget) {
            buckets.retain(|_, b| b.tokens + elapsed(b.updated, now) * rate < burst);
        }
        let bucket = buckets.entry(budget).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens = (bucket.tokens + elapsed(bucket.updated, now) * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

fn elapsed(since: Instant, now: Instant) -> f64 {
    now.saturating_duration_since(since).as_secs_f64()
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: &str) -> RateLimiter {
        RateLimiter::new(rate.parse().unwrap())
    }

    #[test]
    fn a_uid_gets_twice_the_rate_at_once_then_the_rate() {
        let l = limiter("10/s");
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(l.check(Some(1000), t0).is_ok());
        }
        let wait = l.check(Some(1000), t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(l.check(Some(1000), t0 + Duration::from_millis(100)).is_ok());
        assert!(l
            .check(Some(1000), t0 + Duration::from_millis(100))
            .is_err());
    }

    #[test]
    fn uids_have_their_own_budgets_and_a_zero_rate_is_unlimited() {
        let l = limiter("1/s");
        let t0 = Instant::now();
        assert!(l.check(Some(1000), t0).is_ok() && l.check(Some(1000), t0).is_ok());
        assert!(l.check(Some(1000), t0).is_err());
        assert!(l.check(Some(1001), t0).is_ok());
        let off = limiter("0");
        for _ in 0..1000 {
            assert!(off.check(Some(1000), t0).is_ok());
        }
    }

    #[test]
    fn uid_less_peers_have_a_budget_per_address() {
        let l = limiter("1/s");
        let t0 = Instant::now();
        let a = Budget::Address("172.17.0.2".parse().unwrap());
        let b = Budget::Address("172.17.0.3".parse().unwrap());
        assert!(l.check(a, t0).is_ok() && l.check(a, t0).is_ok());
        assert!(l.check(a, t0).is_err());
        assert!(l.check(b, t0).is_ok());
        assert!(l.check(None, t0).is_ok(), "not the unknown uid's budget");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
    }
}

//! Counters that `status` and `/metrics` report. Plain atomics: incremented on the hot path
//! without locks, read when someone asks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters, shared as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Token PUTs sent to IMDS.
    pub imds_token_requests: AtomicU64,
    /// GETs sent to IMDS (role list and credentials).
    pub imds_get_requests: AtomicU64,
    /// IMDS requests that failed (any reason, before retries).
    pub imds_errors: AtomicU64,
    /// Refreshes that published new credentials.
    pub refresh_successes: AtomicU64,
    /// Refresh attempts that ended without credentials.
    pub refresh_failures: AtomicU64,
}

impl Metrics {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

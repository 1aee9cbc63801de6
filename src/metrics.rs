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
    /// Connections accepted on the unix socket.
    pub socket_connections: AtomicU64,
    /// Socket answers by status: 200.
    pub socket_ok: AtomicU64,
    /// 400: unknown format or query parameter.
    pub socket_bad_request: AtomicU64,
    /// 403: peers refused by `allow_uids` / `allow_gids`.
    pub socket_forbidden: AtomicU64,
    /// 404: unknown path or profile.
    pub socket_not_found: AtomicU64,
    /// 405: a method other than GET.
    pub socket_method_not_allowed: AtomicU64,
    /// 503: no valid credentials to give.
    pub socket_unavailable: AtomicU64,
    /// `AssumeRole` calls that published chained credentials (all profiles).
    pub assume_successes: AtomicU64,
    /// `AssumeRole` attempts that ended without credentials (all profiles).
    pub assume_failures: AtomicU64,
}

impl Metrics {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

//! Counters that `status` and `/metrics` report. Plain atomics: incremented on the hot path
//! without locks, read when someone asks.

use crate::clock::skew::ClockSkewGauge;
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
    /// Answers on the unix socket, by status.
    pub socket_requests: RequestCounters,
    /// Answers on the container-credentials endpoint, by status.
    pub container_requests: RequestCounters,
    /// Connections on the unit-credentials socket, by how they ended.
    pub unit_credentials: UnitCounters,
    /// Connections the unix socket closed at accept or before their first byte.
    pub socket_closed: ClosedCounters,
    /// Connections the container endpoint closed at accept or before their first byte.
    pub container_closed: ClosedCounters,
    /// `AssumeRole` calls that published chained credentials (all profiles).
    pub assume_successes: AtomicU64,
    /// `AssumeRole` attempts that ended without credentials (all profiles).
    pub assume_failures: AtomicU64,
    /// IMDS's clock minus ours, from the latest IMDS answer's `Date` header.
    pub clock_skew: ClockSkewGauge,
}

/// One listener's answers, by HTTP status.
#[derive(Debug, Default)]
pub struct RequestCounters {
    /// 200.
    pub ok: AtomicU64,
    /// 400: unknown format or query parameter.
    pub bad_request: AtomicU64,
    /// 401: no `Authorization` header (container endpoint).
    pub unauthorized: AtomicU64,
    /// 403: a peer refused by `allow_uids` / `allow_gids` or not on loopback, a wrong
    /// token, a forwarded request.
    pub forbidden: AtomicU64,
    /// 404: unknown path or profile.
    pub not_found: AtomicU64,
    /// 405: a method other than GET.
    pub method_not_allowed: AtomicU64,
    /// 429: a uid over `[socket] rate_limit`.
    pub too_many_requests: AtomicU64,
    /// 503: no valid credentials to give.
    pub unavailable: AtomicU64,
}

/// The unit-credentials socket's connections (one per `LoadCredential=` line), by outcome.
#[derive(Debug, Default)]
pub struct UnitCounters {
    /// A unit got its credentials.
    pub served: AtomicU64,
    /// Refused: a peer or unit no `[[unit]]` entry allows, or a name that is no request.
    pub refused: AtomicU64,
    /// Allowed, but no valid credentials to give (or the unit did not read them in time).
    pub unavailable: AtomicU64,
}

/// One listener's connections closed by admission (`serve::server`), by reason.
#[derive(Debug, Default)]
pub struct ClosedCounters {
    /// Refused at accept (`allow_uids` / `allow_gids`, not on loopback), answered at once.
    pub refused: AtomicU64,
    /// Over its uid's share of the connection slots, answered `503` at once.
    pub over_share: AtomicU64,
    /// Sent nothing within the first-byte deadline.
    pub silent: AtomicU64,
    /// Gone before it could be identified (connect and reset).
    pub vanished: AtomicU64,
}

impl Metrics {
    /// Counts one more. Relaxed: a counter orders nothing else.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counter's value now.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

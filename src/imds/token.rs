//! The IMDSv2 session token and when to stop trusting it. Expiry is judged on the injected
//! wall clock, with a margin so a token never dies in flight.

use crate::credentials::secret::Secret;
use std::time::{Duration, SystemTime};

/// A token is replaced this long before IMDS would expire it (the AWS SDK for Rust uses
/// the same 120 s).
pub(crate) const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// How this client currently authenticates to IMDS.
#[derive(Debug, Clone)]
pub(crate) enum Session {
    /// IMDSv2: send this token on every GET until `replace_at`.
    Token {
        /// The session token; never leaves `imds`.
        token: Secret,
        /// When to ask for a new one: shortly before the token ends.
        replace_at: SystemTime,
    },
    /// IMDSv1 fallback (only when allowed): no token; try v2 again at `retry_v2_at`.
    V1 {
        /// When to try the token `PUT` again.
        retry_v2_at: SystemTime,
    },
}

impl Session {
    /// A token granted at `now` for `ttl`, replaced [`TOKEN_REFRESH_MARGIN`] early (or at
    /// half its life when the TTL is short).
    pub(crate) fn token(token: Secret, now: SystemTime, ttl: Duration) -> Session {
        let margin = TOKEN_REFRESH_MARGIN.min(ttl / 2);
        Session::Token {
            token,
            replace_at: now + ttl - margin,
        }
    }

    /// True while the session may be used without asking IMDS for a new token.
    pub(crate) fn is_fresh(&self, now: SystemTime) -> bool {
        match self {
            Session::Token { replace_at, .. } => now < *replace_at,
            Session::V1 { retry_v2_at } => now < *retry_v2_at,
        }
    }

    /// The token to send, or `None` in IMDSv1 mode.
    pub(crate) fn header_value(&self) -> Option<&Secret> {
        match self {
            Session::Token { token, .. } => Some(token),
            Session::V1 { .. } => None,
        }
    }
}

/// Reads the TTL IMDS grants from its answer header, falling back to what we asked for
/// (moto's IMDS does not send the header).
pub(crate) fn granted_ttl(header: Option<&str>, requested: Duration) -> Duration {
    header
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
        .unwrap_or(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_replaced_before_it_expires() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let session = Session::token(Secret::new("t".into()), now, Duration::from_secs(21600));
        assert!(session.is_fresh(now));
        assert!(session.is_fresh(now + Duration::from_secs(21600 - 121)));
        assert!(!session.is_fresh(now + Duration::from_secs(21600 - 120)));
        let short = Session::token(Secret::new("t".into()), now, Duration::from_secs(10));
        assert!(short.is_fresh(now + Duration::from_secs(4)));
        assert!(!short.is_fresh(now + Duration::from_secs(5)));
    }

    #[test]
    fn granted_ttl_prefers_the_header_and_falls_back_to_the_request() {
        let asked = Duration::from_secs(21600);
        assert_eq!(granted_ttl(Some("300"), asked), Duration::from_secs(300));
        assert_eq!(granted_ttl(None, asked), asked);
        assert_eq!(granted_ttl(Some("junk"), asked), asked);
    }
}

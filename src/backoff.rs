//! Exponential backoff, shared by every retry in the daemon: IMDS requests and STS calls
//! (a few quick attempts), refreshes and sink writes (patient retries).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// `base · 2^(attempt−1)`, capped at `max`; `attempt` counts from 1.
pub(crate) fn ceiling(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(max)
}

/// How persistent one call is before it reports failure to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait before attempt n+1 is uniform in `[0, ceiling(base_delay, max_delay, n)]`
    /// ("full jitter"), so many clients throttled at once spread their retries.
    pub base_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, as the SDKs make: a throttled service usually answers the second.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// Runs `attempt` until it succeeds, fails with an error `retryable` refuses, or the policy's
/// attempts are spent; logs each retry at debug with `what`.
pub(crate) async fn retry<T, E, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    retryable: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut number = 1;
    loop {
        match attempt().await {
            Err(error) if retryable(&error) && number < policy.max_attempts => {
                let delay =
                    ceiling(policy.base_delay, policy.max_delay, number).mul_f64(fastrand::f64());
                tracing::debug!(what, attempt = number, ?delay, %error, "failed; retrying");
                // Monotonic: a retry delay is a length of time, not a deadline.
                #[allow(clippy::disallowed_methods)]
                tokio::time::sleep(delay).await;
                number += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_from_base_and_stops_at_max() {
        let s = Duration::from_secs;
        let delays: Vec<u64> = (1..=9).map(|n| ceiling(s(1), s(60), n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(ceiling(s(1), s(60), u32::MAX), s(60));
        assert_eq!(ceiling(s(1), s(60), 0), s(1));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_success_at_a_final_error_or_after_the_last_attempt() {
        let policy = RetryPolicy::default();
        let mut calls = 0;
        let result: Result<u32, String> = retry(
            policy,
            "test",
            |_| true,
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 2 {
                        Err("busy".to_string())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(result, Ok(2));

        let mut calls = 0;
        let result: Result<(), String> = retry(
            policy,
            "test",
            |e: &String| e == "busy",
            || {
                calls += 1;
                async { Err("denied".to_string()) }
            },
        )
        .await;
        assert_eq!((result, calls), (Err("denied".to_string()), 1));

        let mut calls = 0;
        let result: Result<(), String> = retry(
            policy,
            "test",
            |_| true,
            || {
                calls += 1;
                async { Err("busy".to_string()) }
            },
        )
        .await;
        assert_eq!((result, calls), (Err("busy".to_string()), 3));
    }
}

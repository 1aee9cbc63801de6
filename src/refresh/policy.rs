//! When to ask again: the refresh decisions as pure functions of the time, the set's expiry,
//! the policy, the run of failures and a jitter draw in `[0, 1)`. The engine
//! ([`super::engine`]) carries them out for the instance role and every `[[assume]]` profile
//! alike; `docs/DESIGN.md` states the schedule operators rely on.
//!
//! Refresh at the earlier of `Expiration − before_expiry` and `now + max_interval`, minus a
//! little jitter so a fleet does not ask in the same second. On failure, retry with backoff
//! while the last good set is served, until it expires — then withdraw it.
//!
//! The regular refresh is a deadline on the wall clock (it follows the set's expiry); a
//! retry is a delay from the failure ([`Attempt::After`]), which the engine waits out in
//! real elapsed time, so a clock step back does not put it off by the size of the step.

use crate::config::RefreshConfig;
use std::time::{Duration, SystemTime};

/// Jitter takes at most this share of the wait before a refresh...
const JITTER_SHARE: f64 = 0.1;
/// ...and never more than this.
const MAX_JITTER: Duration = Duration::from_secs(300);

/// The timing rules, from `[refresh]` plus the retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// `[refresh] before_expiry`.
    pub before_expiry: Duration,
    /// `[refresh] max_interval`.
    pub max_interval: Duration,
    /// First retry after a failed refresh; doubles each time...
    pub retry_base: Duration,
    /// ...up to this.
    pub retry_max: Duration,
}

impl From<&RefreshConfig> for RefreshPolicy {
    fn from(config: &RefreshConfig) -> Self {
        RefreshPolicy {
            before_expiry: config.before_expiry,
            max_interval: config.max_interval,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

impl RefreshPolicy {
    /// This policy for sessions that last `duration` (an `[[assume]]` profile's), with
    /// `before_expiry` capped at a quarter of it: a 15-minute session with the default
    /// 15-minute margin would otherwise be due the moment it arrives.
    pub fn for_session(&self, duration: Duration) -> RefreshPolicy {
        RefreshPolicy {
            before_expiry: self.before_expiry.min(duration / 4),
            ..*self
        }
    }
}

/// When to refresh credentials fetched at `now` that expire at `expiration`. Returns `None`
/// when the credentials already expire within `before_expiry` (a short-lived set): the
/// caller retries sooner instead ([`after_success`]).
pub fn next_refresh(
    now: SystemTime,
    expiration: SystemTime,
    policy: &RefreshPolicy,
    jitter: f64,
) -> Option<SystemTime> {
    let by_expiry = expiration.checked_sub(policy.before_expiry)?;
    let target = by_expiry.min(now + policy.max_interval);
    let wait = target.duration_since(now).ok().filter(|w| !w.is_zero())?;
    let jitter = wait.mul_f64(JITTER_SHARE).min(MAX_JITTER).mul_f64(jitter);
    Some(target - jitter)
}

/// Wait before retry number `failures` (1-based): exponential from `retry_base`, capped at
/// `retry_max`, with "equal jitter" (between half and all of it) so it never collapses to 0.
pub fn retry_delay(failures: u32, policy: &RefreshPolicy, jitter: f64) -> Duration {
    let exp = crate::backoff::ceiling(policy.retry_base, policy.retry_max, failures);
    exp / 2 + (exp / 2).mul_f64(jitter)
}

/// When the next attempt is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// At this wall-clock time: the regular refresh, set by the held set's expiry.
    At(SystemTime),
    /// This long after the decision: a retry on the failure schedule.
    After(Duration),
}

/// A try again on the failure schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// How long to wait before trying again.
    pub delay: Duration,
    /// The run of failures, this one included.
    pub failures: u32,
}

/// After a failed attempt, `failures` having failed before it in a row.
pub fn after_failure(policy: &RefreshPolicy, failures: u32, jitter: f64) -> Retry {
    let failures = failures + 1;
    Retry {
        delay: retry_delay(failures, policy, jitter),
        failures,
    }
}

/// What publishing a set leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSuccess {
    /// The regular refresh; the run of failures ends.
    Scheduled(SystemTime),
    /// The set already expires within `before_expiry`: it is served, and asked for again on
    /// the failure schedule (it counts in the run of failures), never after it expires.
    TooShort(Retry),
}

impl AfterSuccess {
    /// When the next attempt is due.
    pub fn attempt(&self) -> Attempt {
        match self {
            AfterSuccess::Scheduled(at) => Attempt::At(*at),
            AfterSuccess::TooShort(retry) => Attempt::After(retry.delay),
        }
    }

    /// The run of failures from now on.
    pub fn failures(&self) -> u32 {
        match self {
            AfterSuccess::Scheduled(_) => 0,
            AfterSuccess::TooShort(retry) => retry.failures,
        }
    }
}

/// After a set expiring at `expiration` was published at `now`, `failures` having failed
/// before it in a row.
pub fn after_success(
    now: SystemTime,
    expiration: SystemTime,
    policy: &RefreshPolicy,
    failures: u32,
    jitter: f64,
) -> AfterSuccess {
    match next_refresh(now, expiration, policy, jitter) {
        Some(at) => AfterSuccess::Scheduled(at),
        None => {
            let retry = after_failure(policy, failures, jitter);
            let left = expiration.duration_since(now).unwrap_or_default();
            AfterSuccess::TooShort(Retry {
                delay: retry.delay.min(left),
                ..retry
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    fn policy() -> RefreshPolicy {
        RefreshPolicy::from(&RefreshConfig::default())
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn six_hour_credentials_refresh_after_max_interval() {
        let at = next_refresh(t0(), t0() + 6 * HOUR, &policy(), 0.0).unwrap();
        assert_eq!(at, t0() + HOUR);
    }

    #[test]
    fn near_expiry_refreshes_before_expiry_minus_margin() {
        let at = next_refresh(t0(), t0() + 40 * MIN, &policy(), 0.0).unwrap();
        assert_eq!(at, t0() + 25 * MIN);
    }

    #[test]
    fn jitter_only_moves_earlier_and_is_bounded() {
        let latest = next_refresh(t0(), t0() + 6 * HOUR, &policy(), 0.0).unwrap();
        let earliest = next_refresh(t0(), t0() + 6 * HOUR, &policy(), 0.999_999).unwrap();
        assert!(earliest < latest);
        assert!(latest.duration_since(earliest).unwrap() <= MAX_JITTER);
        let short = next_refresh(t0(), t0() + 20 * MIN, &policy(), 0.999_999).unwrap();
        assert!(short >= t0() + 5 * MIN - MIN / 2 && short < t0() + 5 * MIN);
    }

    #[test]
    fn credentials_inside_the_margin_get_no_regular_refresh() {
        assert_eq!(next_refresh(t0(), t0() + 10 * MIN, &policy(), 0.5), None);
        assert_eq!(next_refresh(t0(), t0() + 15 * MIN, &policy(), 0.5), None);
        assert_eq!(next_refresh(t0(), t0() - MIN, &policy(), 0.5), None);
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let p = policy();
        assert!(retry_delay(1, &p, 0.0) >= Duration::from_millis(500));
        assert!(retry_delay(1, &p, 0.999) < Duration::from_secs(1));
        assert_eq!(retry_delay(3, &p, 0.0), Duration::from_secs(2));
        assert_eq!(retry_delay(30, &p, 0.0), Duration::from_secs(30));
        assert!(retry_delay(30, &p, 0.999) <= Duration::from_secs(60));
    }

    #[test]
    fn short_sessions_get_a_proportionate_margin() {
        let policy = policy();
        assert_eq!(policy.for_session(HOUR), policy);
        let quarter = policy.for_session(15 * MIN);
        assert_eq!(quarter.before_expiry, Duration::from_secs(225));
        assert_eq!(quarter.max_interval, policy.max_interval);
        let at = next_refresh(t0(), t0() + 15 * MIN, &quarter, 0.0);
        assert_eq!(at, Some(t0() + Duration::from_secs(675)));
    }

    #[test]
    fn each_failure_extends_the_run_and_backs_off() {
        let first = after_failure(&policy(), 0, 0.0);
        assert_eq!(first.failures, 1);
        assert_eq!(first.delay, Duration::from_millis(500));
        let third = after_failure(&policy(), 2, 0.0);
        assert_eq!(
            third,
            Retry {
                delay: Duration::from_secs(2),
                failures: 3
            }
        );
    }

    #[test]
    fn a_success_on_schedule_ends_the_run_of_failures() {
        let next = after_success(t0(), t0() + 6 * HOUR, &policy(), 7, 0.0);
        assert_eq!(next, AfterSuccess::Scheduled(t0() + HOUR));
        assert_eq!(next.failures(), 0);
        assert_eq!(next.attempt(), Attempt::At(t0() + HOUR));
    }

    #[test]
    fn a_set_inside_the_margin_is_retried_on_the_failure_schedule() {
        let next = after_success(t0(), t0() + 10 * MIN, &policy(), 2, 0.0);
        let retry = Retry {
            delay: Duration::from_secs(2),
            failures: 3,
        };
        assert_eq!(next, AfterSuccess::TooShort(retry));
        assert_eq!(next.failures(), 3);
    }

    #[test]
    fn the_retry_after_a_too_short_set_is_never_after_its_expiry() {
        let expiry = t0() + Duration::from_secs(5);
        let next = after_success(t0(), expiry, &policy(), 30, 0.999);
        assert_eq!(next.attempt(), Attempt::After(Duration::from_secs(5)));
    }
}

//! When to ask IMDS again, and the loop that does it and publishes the result.
//!
//! Policy: refresh at the earlier of `Expiration − before_expiry` and `now + max_interval`,
//! minus a little jitter so a fleet does not hit IMDS in the same second. On failure, retry
//! with backoff while the last good credentials are served, until they expire — then
//! withdraw them. Between refreshes the loop sleeps; nothing polls.

pub mod state;

use crate::clock::SharedClock;
use crate::config::RefreshConfig;
use crate::credentials::{format_utc_timestamp, Credentials};
use crate::error_chain;
use crate::health::heartbeat::Heartbeat;
use crate::health::metrics::Metrics;
use crate::imds::{ImdsClient, ImdsError};
use crate::refresh::state::{withdraw_if_expired, CredentialState, StateSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// Jitter takes at most this share of the wait before a refresh...
const JITTER_SHARE: f64 = 0.1;
/// ...and never more than this.
const MAX_JITTER: Duration = Duration::from_secs(300);

/// The timing rules, from `[refresh]` plus the retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    pub before_expiry: Duration,
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

/// When to refresh credentials fetched at `now` that expire at `expiration`. `jitter` is a
/// random number in `[0, 1)`. Returns `None` when the credentials already expire within
/// `before_expiry` (IMDS gave a short-lived set): the caller retries sooner instead.
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

/// Why a refresh produced no credentials.
#[derive(Debug, Error)]
pub enum RefreshError {
    #[error("no IAM role is attached to this instance")]
    NoRole,
    #[error("role {0} is not attached to this instance (IMDS answers 404)")]
    RoleNotFound(String),
    /// IMDS lists the role but has no credentials for it yet (it happens briefly while a
    /// profile is being replaced): a glitch, so the last good set stays served.
    #[error("IMDS lists role {0} but answers 404 for its credentials")]
    ListedRoleWithoutCredentials(String),
    #[error(transparent)]
    Imds(#[from] ImdsError),
}

/// Fetches credentials for the instance role and publishes them.
pub struct Refresher {
    imds: Arc<ImdsClient>,
    clock: SharedClock,
    policy: RefreshPolicy,
    /// The configured role; `None` to discover the attached one on every refresh.
    configured_role: Option<String>,
    state: StateSender,
    metrics: Arc<Metrics>,
    /// Checked in on every turn of the loop, for the watchdog.
    heartbeat: Heartbeat,
}

impl Refresher {
    pub fn new(
        imds: Arc<ImdsClient>,
        clock: SharedClock,
        policy: RefreshPolicy,
        configured_role: Option<String>,
        state: StateSender,
        metrics: Arc<Metrics>,
        heartbeat: Heartbeat,
    ) -> Self {
        Refresher {
            imds,
            clock,
            policy,
            configured_role,
            state,
            metrics,
            heartbeat,
        }
    }

    /// Refreshes until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            self.heartbeat.check_in(Duration::ZERO);
            let wake_at = match self.fetch().await {
                Ok((role, credentials)) => self.accept(role, credentials, &mut failures),
                Err(error) => self.reject(error, &mut failures),
            };
            self.state.send_modify(|s| s.next_refresh = Some(wake_at));
            if !self.sleep_until(wake_at, &shutdown).await {
                return;
            }
        }
    }

    /// Sleeps until `wake_at`, withdrawing the credentials if they expire first. Returns
    /// false when asked to stop.
    async fn sleep_until(&self, wake_at: SystemTime, shutdown: &CancellationToken) -> bool {
        loop {
            let expiry = self.state.borrow().expiration().filter(|e| *e < wake_at);
            let next_wake = expiry.unwrap_or(wake_at);
            let away = next_wake
                .duration_since(self.clock.now())
                .unwrap_or_default();
            self.heartbeat.check_in(away);
            let Some(expiry) = expiry else {
                return tokio::select! {
                    _ = shutdown.cancelled() => false,
                    _ = self.clock.sleep_until(wake_at) => true,
                };
            };
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = self.clock.sleep_until(expiry) => self.withdraw_expired(),
            }
        }
    }

    /// Asks IMDS for the role (unless configured) and its credentials.
    async fn fetch(&self) -> Result<(String, Credentials), RefreshError> {
        let (role, missing): (String, fn(String) -> RefreshError) = match &self.configured_role {
            Some(role) => (role.clone(), RefreshError::RoleNotFound),
            None => (
                self.imds.role_name().await?.ok_or(RefreshError::NoRole)?,
                RefreshError::ListedRoleWithoutCredentials,
            ),
        };
        let credentials = self
            .imds
            .role_credentials(&role)
            .await?
            .ok_or_else(|| missing(role.clone()))?;
        Ok((role, credentials))
    }

    /// Publishes what IMDS gave, and decides when to ask again.
    fn accept(&self, role: String, credentials: Credentials, failures: &mut u32) -> SystemTime {
        let credentials = self.on_local_clock(credentials);
        let now = self.clock.now();
        let expires = format_utc_timestamp(credentials.expiration);
        if let Err(source) = credentials.check_expiration(now) {
            let error = ImdsError::Credentials { role, source };
            return self.reject(RefreshError::Imds(error), failures);
        }
        self.note_role_change(Some(&role));
        let next = next_refresh(now, credentials.expiration, &self.policy, fastrand::f64());
        let wake_at = match next {
            Some(at) => {
                *failures = 0;
                at
            }
            None => {
                *failures += 1;
                let retry = now + retry_delay(*failures, &self.policy, fastrand::f64());
                tracing::warn!(
                    role, expiration = %expires,
                    "IMDS returned credentials that expire within before_expiry; serving them and asking again soon"
                );
                retry.min(credentials.expiration)
            }
        };
        tracing::info!(
            role,
            access_key_id = %masked(&credentials.access_key_id),
            expiration = %expires,
            next_refresh = %format_utc_timestamp(wake_at),
            "published new credentials"
        );
        Metrics::incr(&self.metrics.refresh_successes);
        self.state.send_modify(|s| {
            s.role = Some(role);
            s.credentials = Some(Arc::new(credentials));
            s.last_refresh = Some(now);
            s.last_error = None;
        });
        wake_at
    }

    /// The set with its `Expiration` moved onto the local clock when the instance clock is
    /// off by more than the threshold, so every expiry decision here, and every client on
    /// this instance (which reads the same clock), judges it on IMDS time.
    fn on_local_clock(&self, mut credentials: Credentials) -> Credentials {
        let skew = self.metrics.clock_skew.get().filter(|s| s.is_significant());
        if let Some(skew) = skew {
            credentials.expiration = skew.to_local(credentials.expiration);
        }
        credentials
    }

    /// Records a failed refresh; withdraws the credentials if the role is gone.
    fn reject(&self, error: RefreshError, failures: &mut u32) -> SystemTime {
        let message = error_chain::render(&error);
        match error {
            RefreshError::NoRole | RefreshError::RoleNotFound(_) => {
                if *failures == 0 {
                    tracing::warn!(error = %message, "no credentials to publish; checking IMDS again with backoff");
                }
                self.note_role_change(None);
                self.state.send_modify(|s| {
                    s.role = None;
                    s.credentials = None;
                });
            }
            RefreshError::Imds(_) | RefreshError::ListedRoleWithoutCredentials(_) => {
                let held = self
                    .state
                    .borrow()
                    .valid_credentials(self.clock.now())
                    .is_some();
                if held {
                    tracing::warn!(error = %message, "refresh failed; still serving the last good credentials until they expire");
                } else {
                    tracing::error!(error = %message, "refresh failed; no valid credentials to serve");
                }
            }
        }
        self.failed(message, failures)
    }

    fn failed(&self, message: String, failures: &mut u32) -> SystemTime {
        *failures += 1;
        Metrics::incr(&self.metrics.refresh_failures);
        self.state.send_modify(|s| s.last_error = Some(message));
        let now = self.clock.now();
        now + retry_delay(*failures, &self.policy, fastrand::f64())
    }

    /// Logs a role appearing, changing or disappearing.
    fn note_role_change(&self, role: Option<&str>) {
        let previous = self.state.borrow().role.clone();
        match (previous.as_deref(), role) {
            (None, Some(new)) => tracing::info!(role = new, "instance role found"),
            (Some(old), Some(new)) if old != new => {
                tracing::warn!(
                    previous = old,
                    role = new,
                    "instance role was replaced; publishing the new role's credentials"
                )
            }
            (Some(old), None) => tracing::warn!(
                previous = old,
                "instance role was removed; credentials withdrawn"
            ),
            _ => {}
        }
    }

    /// The held credentials reached their expiry with no replacement: stop serving them.
    fn withdraw_expired(&self) {
        if withdraw_if_expired(&self.state, self.clock.now()) {
            let last_error = self.state.borrow().last_error.clone().unwrap_or_default();
            tracing::error!(
                last_error,
                "credentials expired without a successful refresh; withdrawn from every sink"
            );
        }
    }
}

/// `ASIA…WXYZ`: enough to match CloudTrail entries, not the whole id in every log line.
/// Counts characters, not bytes: IMDS answers are not trusted to be ASCII.
pub fn masked(access_key_id: &str) -> String {
    let chars: Vec<char> = access_key_id.chars().collect();
    if chars.len() <= 8 {
        return "…".to_string();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// A fresh state channel with nothing published yet.
pub fn state_channel() -> (StateSender, crate::refresh::state::StateReceiver) {
    tokio::sync::watch::channel(CredentialState::default())
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
    fn masked_key_keeps_prefix_and_suffix() {
        assert_eq!(masked("ASIAABCDEFGHIJKLWXYZ"), "ASIA…WXYZ");
        assert_eq!(masked("short"), "…");
    }

    #[test]
    fn masked_key_of_multibyte_characters_does_not_panic() {
        assert_eq!(masked("ASIéÄBCDEFGHIJKLWXYé"), "ASIé…WXYé");
        assert_eq!(masked("ééééééééé"), "éééé…éééé");
        assert_eq!(masked("éééééééé"), "…");
    }
}

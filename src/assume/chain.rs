//! One task per `[[assume]]` profile: it watches the instance-role state, assumes the
//! profile's role with those credentials, and publishes the chained credentials on the
//! profile's own watch channel (same [`CredentialState`] shape as the instance role, so every
//! sink reads either the same way).
//!
//! Policy, shared with the instance refresher ([`next_refresh`], [`retry_delay`]): refresh
//! before the chained set expires, and at once when the instance credentials rotate (a new
//! access key id), since a chain signed by a replaced key is what operators expect to be
//! replaced too. On failure: log, retry with backoff, serve the last good set until it
//! expires — then withdraw it. With no instance credentials there is nothing to sign with:
//! the task waits for them and withdraws its own set when that expires.

use super::sts::{
    default_session_name, is_region_name, parse_endpoint, regional_endpoint, AssumeRoleParams,
    AssumedRole, StsClient, StsError, StsTarget,
};
use crate::clock::SharedClock;
use crate::config::AssumeConfig;
use crate::credentials::account::account_of_arn;
use crate::credentials::{format_utc_timestamp, Credentials};
use crate::daemon::supervisor::Supervisor;
use crate::error_chain;
use crate::health::metrics::Metrics;
use crate::imds::{ImdsClient, ImdsError};
use crate::refresh::state::{withdraw_if_expired, StateReceiver, StateSender};
use crate::refresh::{masked, next_refresh, retry_delay, state_channel, RefreshPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
const REGION_PATH: &str = "/latest/meta-data/placement/region";

/// What every profile task shares with the daemon.
#[derive(Clone)]
pub struct ChainContext {
    /// The instance-role state the refresher publishes.
    pub source: StateReceiver,
    /// For the region and instance id, when the config does not give them.
    pub imds: Arc<ImdsClient>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// The `[refresh]` policy; see [`chain_policy`] for how a profile adapts it.
    pub policy: RefreshPolicy,
}

/// Starts one task per profile on `tasks` and returns each profile's state channel, by
/// profile name. Builds the STS client only when there is a profile.
pub fn start_profiles(
    configs: &[AssumeConfig],
    context: &ChainContext,
    shutdown: &CancellationToken,
    tasks: &mut Supervisor,
) -> Result<BTreeMap<String, StateReceiver>, StsError> {
    let mut profiles = BTreeMap::new();
    if configs.is_empty() {
        return Ok(profiles);
    }
    let sts = Arc::new(StsClient::new()?);
    for config in configs {
        let (state, receiver) = state_channel();
        let chain = ProfileChain {
            config: config.clone(),
            policy: chain_policy(&context.policy, config),
            sts: sts.clone(),
            context: context.clone(),
            state,
            resolved: None,
        };
        let name = format!("assume-role profile {}", config.profile);
        tasks.spawn(name, shutdown, chain.run(shutdown.clone()));
        profiles.insert(config.profile.clone(), receiver);
    }
    Ok(profiles)
}

/// The refresher's policy with `before_expiry` capped at a quarter of the session
/// `duration`: a 15-minute session with the default 15-minute margin would otherwise be
/// "due" the moment it arrives.
pub fn chain_policy(policy: &RefreshPolicy, config: &AssumeConfig) -> RefreshPolicy {
    RefreshPolicy {
        before_expiry: policy.before_expiry.min(config.duration / 4),
        ..*policy
    }
}

/// Why a profile's refresh produced no credentials. The message names the profile.
#[derive(Debug, Error)]
#[error("assume-role profile {profile}")]
pub struct ProfileError {
    pub profile: String,
    #[source]
    pub cause: ProfileFailure,
}

#[derive(Debug, Error)]
pub enum ProfileFailure {
    #[error("cannot read the instance's {what} from IMDS")]
    Imds {
        what: &'static str,
        #[source]
        source: ImdsError,
    },
    #[error("IMDS has no {0} for this instance; set it in the [[assume]] entry")]
    NoMetadata(&'static str),
    #[error("{0:?} is not an AWS region name")]
    BadRegion(String),
    #[error(transparent)]
    Sts(#[from] StsError),
}

/// One profile's task.
struct ProfileChain {
    config: AssumeConfig,
    policy: RefreshPolicy,
    sts: Arc<StsClient>,
    context: ChainContext,
    state: StateSender,
    /// Endpoint, region and session name, looked up once.
    resolved: Option<(StsTarget, AssumeRoleParams)>,
}

/// What woke the task between attempts.
enum Wake {
    Refresh,
    Stop,
}

impl ProfileChain {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        // The instance access key id the last attempt signed with.
        let mut signed_with: Option<String> = None;
        loop {
            let now = self.context.clock.now();
            let source = self
                .context
                .source
                .borrow_and_update()
                .valid_credentials(now)
                .cloned();
            let wake_at = match source {
                Some(source) => {
                    signed_with = Some(source.access_key_id.clone());
                    // An STS call can take its full timeout: do not hold up a stop.
                    let outcome = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        outcome = self.attempt(&source) => outcome,
                    };
                    Some(match outcome {
                        Ok(assumed) => self.accept(assumed, &mut failures),
                        Err(error) => self.reject(error, &mut failures),
                    })
                }
                None => {
                    tracing::info!(
                        profile = self.config.profile,
                        "no instance-role credentials to assume the role with; waiting for them"
                    );
                    None
                }
            };
            self.state.send_modify(|s| s.next_refresh = wake_at);
            match self.wait(wake_at, signed_with.as_deref(), &shutdown).await {
                Wake::Refresh => {}
                Wake::Stop => return,
            }
        }
    }

    /// Sleeps until `wake_at`, or until the instance credentials rotate (or come back),
    /// withdrawing the chained set if it expires meanwhile.
    async fn wait(
        &mut self,
        wake_at: Option<SystemTime>,
        signed_with: Option<&str>,
        shutdown: &CancellationToken,
    ) -> Wake {
        let mut source_open = true;
        loop {
            let expiry = self.state.borrow().expiration();
            let expiry_first = match (expiry, wake_at) {
                (Some(e), Some(w)) => e < w,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let deadline = if expiry_first { expiry } else { wake_at };
            let sleep = async {
                match deadline {
                    Some(at) => self.context.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let mut source = self.context.source.clone();
            tokio::select! {
                _ = shutdown.cancelled() => return Wake::Stop,
                _ = sleep => {
                    if expiry_first {
                        self.withdraw_expired();
                    } else {
                        return Wake::Refresh;
                    }
                }
                changed = source.changed(), if source_open => {
                    if changed.is_err() {
                        // The refresher is gone (the daemon is stopping): only the
                        // clock and the shutdown can wake us now.
                        source_open = false;
                        continue;
                    }
                    let now = self.context.clock.now();
                    let current = self
                        .context
                        .source
                        .borrow_and_update()
                        .valid_credentials(now)
                        .map(|c| c.access_key_id.clone());
                    if let Some(key) = current {
                        if wake_at.is_none() || signed_with != Some(key.as_str()) {
                            tracing::info!(
                                profile = self.config.profile,
                                "instance-role credentials rotated; assuming the role again"
                            );
                            return Wake::Refresh;
                        }
                    }
                }
            }
        }
    }

    /// One `AssumeRole`, after looking up what the config leaves to IMDS.
    async fn attempt(&mut self, source: &Credentials) -> Result<AssumedRole, ProfileError> {
        let outcome = async {
            let (target, params) = self.resolve().await?;
            let now = self.context.clock.now();
            Ok(self.sts.assume_role(&target, &params, source, now).await?)
        };
        outcome.await.map_err(|cause| ProfileError {
            profile: self.config.profile.clone(),
            cause,
        })
    }

    /// The STS endpoint, signing region and session name: from the config where set, else
    /// from IMDS (`placement/region`, `instance-id`). Cached after the first success.
    async fn resolve(&mut self) -> Result<(StsTarget, AssumeRoleParams), ProfileFailure> {
        if let Some(resolved) = &self.resolved {
            return Ok(resolved.clone());
        }
        let region = match self.config.region.trim() {
            "" => self.metadata("region", REGION_PATH).await?,
            region => region.to_string(),
        };
        if !is_region_name(&region) {
            return Err(ProfileFailure::BadRegion(region));
        }
        let endpoint = match self.config.sts_endpoint.trim() {
            "" => regional_endpoint(&region),
            endpoint => endpoint.to_string(),
        };
        let session_name = match self.config.session_name.trim() {
            "" => default_session_name(&self.metadata("instance id", INSTANCE_ID_PATH).await?),
            name => name.to_string(),
        };
        let resolved = (
            StsTarget {
                endpoint: parse_endpoint(&endpoint)?,
                region,
            },
            AssumeRoleParams {
                role_arn: self.config.role_arn.clone(),
                session_name,
                duration: self.config.duration,
                external_id: Some(self.config.external_id.clone()).filter(|e| !e.is_empty()),
            },
        );
        tracing::info!(
            profile = self.config.profile,
            endpoint = %resolved.0.endpoint,
            region = resolved.0.region,
            session_name = resolved.1.session_name,
            "assume-role profile ready"
        );
        self.resolved = Some(resolved.clone());
        Ok(resolved)
    }

    async fn metadata(&self, what: &'static str, path: &str) -> Result<String, ProfileFailure> {
        let body = self
            .context
            .imds
            .get(path)
            .await
            .map_err(|source| ProfileFailure::Imds { what, source })?
            .ok_or(ProfileFailure::NoMetadata(what))?;
        let text = String::from_utf8_lossy(&body).trim().to_string();
        if text.is_empty() {
            return Err(ProfileFailure::NoMetadata(what));
        }
        Ok(text)
    }

    /// Publishes the chained credentials and decides when to refresh them.
    fn accept(&self, assumed: AssumedRole, failures: &mut u32) -> SystemTime {
        let now = self.context.clock.now();
        let mut credentials = assumed.credentials;
        // STS names the account in `AssumedRoleUser/Arn`; the configured ARN is the same
        // account, for an STS that leaves the user out.
        if credentials.account_id.is_none() {
            credentials.account_id = account_of_arn(&self.config.role_arn);
        }
        let wake_at = match next_refresh(now, credentials.expiration, &self.policy, fastrand::f64())
        {
            Some(at) => {
                *failures = 0;
                at
            }
            None => {
                *failures += 1;
                let retry = now + retry_delay(*failures, &self.policy, fastrand::f64());
                retry.min(credentials.expiration)
            }
        };
        tracing::info!(
            profile = self.config.profile,
            role_arn = self.config.role_arn,
            assumed_role = assumed.assumed_role_arn,
            access_key_id = %masked(&credentials.access_key_id),
            expiration = %credentials.expiration_rfc3339(),
            next_refresh = %format_utc_timestamp(wake_at),
            "assumed role; published chained credentials"
        );
        Metrics::incr(&self.context.metrics.assume_successes);
        self.state.send_modify(|s| {
            s.role = Some(self.config.role_arn.clone());
            s.credentials = Some(Arc::new(credentials));
            s.last_refresh = Some(now);
            s.last_error = None;
        });
        wake_at
    }

    /// Records a failed attempt; the last good set stays until it expires.
    fn reject(&self, error: ProfileError, failures: &mut u32) -> SystemTime {
        *failures += 1;
        Metrics::incr(&self.context.metrics.assume_failures);
        let message = error_chain::render(&error);
        let (code, retryable) = match &error.cause {
            ProfileFailure::Sts(sts) => (sts.code().unwrap_or(""), sts.is_retryable()),
            _ => ("", true),
        };
        let now = self.context.clock.now();
        let held = self.state.borrow().valid_credentials(now).is_some();
        if held {
            tracing::warn!(
                profile = self.config.profile, code, retryable, error = %message,
                "AssumeRole failed; still serving the last good chained credentials until they expire"
            );
        } else {
            tracing::error!(
                profile = self.config.profile, code, retryable, error = %message,
                "AssumeRole failed; no chained credentials to serve"
            );
        }
        self.state.send_modify(|s| s.last_error = Some(message));
        now + retry_delay(*failures, &self.policy, fastrand::f64())
    }

    /// The chained set reached its expiry with no replacement: stop serving it.
    fn withdraw_expired(&self) {
        if withdraw_if_expired(&self.state, self.context.clock.now()) {
            let last_error = self.state.borrow().last_error.clone().unwrap_or_default();
            tracing::error!(
                profile = self.config.profile,
                last_error,
                "chained credentials expired without a successful refresh; withdrawn"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RefreshConfig;
    use std::time::Duration;

    fn profile(duration: Duration) -> AssumeConfig {
        AssumeConfig {
            profile: "audit".into(),
            role_arn: "arn:aws:iam::222222222222:role/efgh".into(),
            external_id: String::new(),
            session_name: String::new(),
            duration,
            region: String::new(),
            sts_endpoint: String::new(),
        }
    }

    #[test]
    fn short_sessions_get_a_proportionate_margin() {
        let policy = RefreshPolicy::from(&RefreshConfig::default());
        let hour = chain_policy(&policy, &profile(Duration::from_secs(3600)));
        assert_eq!(hour, policy);
        let quarter = chain_policy(&policy, &profile(Duration::from_secs(900)));
        assert_eq!(quarter.before_expiry, Duration::from_secs(225));
        assert_eq!(quarter.max_interval, policy.max_interval);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = next_refresh(t0, t0 + Duration::from_secs(900), &quarter, 0.0);
        assert_eq!(at, Some(t0 + Duration::from_secs(675)));
    }
}

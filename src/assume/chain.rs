//! One task per `[[assume]]` profile: the refresh engine ([`crate::refresh::engine`]) over
//! an STS issuer chained on the instance-role state. It assumes the profile's role with the
//! instance credentials and publishes the chained credentials on the profile's own watch
//! channel (same [`CredentialState`](crate::refresh::state::CredentialState) shape as the
//! instance role, so every sink reads either the same way). What stays here: resolving the
//! endpoint, region and session name, and the profile's log lines. See
//! `docs/ARCHITECTURE.md`.
//!
//! The engine refreshes before the chained set expires, and at once when the instance
//! credentials rotate (a new access key id), since a chain signed by a replaced key is what
//! operators expect to be replaced too. On failure: log, retry with backoff, serve the last
//! good set until it expires — then withdraw it. With no instance credentials there is
//! nothing to sign with: the task waits for them and withdraws its own set when that expires.

use super::sts::{
    parse_endpoint, regional_endpoint, AssumeRoleParams, StsClient, StsError, StsTarget,
};
use crate::clock::skew::AnswerTimes;
use crate::clock::SharedClock;
use crate::config::sts_limits::{default_session_name, is_region_name};
use crate::config::AssumeConfig;
use crate::credentials::account::account_of_arn;
use crate::credentials::{format_utc_timestamp, Credentials};
use crate::health::metrics::Metrics;
use crate::imds::paths::{INSTANCE_ID_PATH, REGION_PATH};
use crate::imds::{ImdsClient, ImdsError};
use crate::refresh::engine::{Counters, Engine, Event, Fetched, Issuer, Upstream};
use crate::refresh::policy::RefreshPolicy;
use crate::refresh::state::StateReceiver;
use crate::refresh::{masked, state_channel};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// What every profile task shares with the daemon.
#[derive(Clone)]
pub struct ChainContext {
    /// The instance-role state the refresher publishes.
    pub instance_role: StateReceiver,
    /// For the region and instance id, when the config does not give them.
    pub imds: Arc<ImdsClient>,
    /// The clock each profile's engine reads and sleeps on.
    pub clock: SharedClock,
    /// The counters the STS calls go to.
    pub metrics: Arc<Metrics>,
    /// The `[refresh]` policy; each profile adapts it to its session length
    /// ([`RefreshPolicy::for_session`]).
    pub policy: RefreshPolicy,
}

/// A profile ready to run: its name, the state channel its loop publishes on, and the loop
/// itself, for the caller to run under its supervision.
pub struct Profile {
    pub name: String,
    pub state: StateReceiver,
    pub task: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Builds one refresh loop per profile, each stopping on `shutdown`. Builds the STS client
/// only when there is a profile.
pub fn start_profiles(
    configs: &[AssumeConfig],
    context: &ChainContext,
    shutdown: &CancellationToken,
) -> Result<Vec<Profile>, StsError> {
    let mut profiles = Vec::new();
    if configs.is_empty() {
        return Ok(profiles);
    }
    let sts = Arc::new(StsClient::new()?);
    for config in configs {
        let (state, receiver) = state_channel();
        let issuer = AssumedProfile {
            config: config.clone(),
            sts: sts.clone(),
            imds: context.imds.clone(),
            clock: context.clock.clone(),
            upstream: Upstream::new(context.instance_role.clone(), context.clock.clone()),
            resolved: None,
        };
        let engine = Engine::new(
            issuer,
            context.clock.clone(),
            context.policy.for_session(config.duration),
            state,
            context.metrics.clone(),
        );
        profiles.push(Profile {
            name: config.profile.clone(),
            state: receiver,
            task: Box::pin(engine.run(shutdown.clone())),
        });
    }
    Ok(profiles)
}

/// Why a profile's refresh produced no credentials. The message names the profile.
#[derive(Debug, Error)]
#[error("assume-role profile {profile}")]
pub struct ProfileError {
    /// The `[[assume]]` profile that failed.
    pub profile: String,
    /// What failed.
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

/// One profile's credentials, from STS `AssumeRole` signed with the instance role's.
struct AssumedProfile {
    config: AssumeConfig,
    sts: Arc<StsClient>,
    imds: Arc<ImdsClient>,
    clock: SharedClock,
    /// The instance-role state it signs with.
    upstream: Upstream,
    /// Endpoint, region and session name, looked up once.
    resolved: Option<(StsTarget, AssumeRoleParams)>,
}

impl Issuer for AssumedProfile {
    /// The instance-role credentials to sign with.
    type Input = Arc<Credentials>;
    /// `AssumedRoleUser/Arn`, for the log.
    type Detail = String;
    type Error = ProfileError;

    fn input(&mut self) -> Option<Arc<Credentials>> {
        self.upstream.signer()
    }

    async fn upstream_rotated(&mut self, waiting: bool) {
        self.upstream.rotated(waiting).await
    }

    /// One `AssumeRole`, after looking up what the config leaves to IMDS.
    async fn fetch(&mut self, signer: Arc<Credentials>) -> Result<Fetched<String>, ProfileError> {
        let outcome = async {
            let (target, params) = self.resolve().await?;
            let now = self.clock.now();
            let signed_at = self.upstream.signing_time(now);
            Ok(self
                .sts
                .assume_role(&target, &params, &signer, now, signed_at)
                .await?)
        };
        let assumed = outcome.await.map_err(|cause| ProfileError {
            profile: self.config.profile.clone(),
            cause,
        })?;
        // STS gives no issue time; a session starts `duration` before its `Expiration` (or
        // later, when the role caps it shorter).
        let issued = assumed
            .credentials
            .expiration
            .checked_sub(self.config.duration);
        Ok(Fetched {
            role: self.config.role_arn.clone(),
            times: assumed.date.map(|date| AnswerTimes { date, issued }),
            credentials: assumed.credentials,
            detail: assumed.assumed_role_arn,
        })
    }

    /// STS names the account in `AssumedRoleUser/Arn`; the configured ARN is the same
    /// account, for an STS that leaves the user out.
    fn admit(&self, fetched: &mut Fetched<String>, _now: SystemTime) -> Result<(), ProfileError> {
        if fetched.credentials.account_id.is_none() {
            fetched.credentials.account_id = account_of_arn(&self.config.role_arn);
        }
        Ok(())
    }

    /// The role ARN is the config's: no answer takes it away.
    fn revokes(&self, _error: &ProfileError) -> bool {
        false
    }

    fn report(&self, event: Event<'_, String, ProfileError>) {
        let profile = &self.config.profile;
        match event {
            Event::Published {
                fetched,
                next_refresh,
            } => tracing::info!(
                profile,
                role_arn = self.config.role_arn,
                assumed_role = fetched.detail,
                access_key_id = %masked(&fetched.credentials.access_key_id),
                expiration = %fetched.credentials.expiration_rfc3339(),
                next_refresh = %format_utc_timestamp(next_refresh),
                "assumed role; published chained credentials"
            ),
            Event::Failed {
                error,
                message,
                held,
                ..
            } => {
                let (code, retryable) = match &error.cause {
                    ProfileFailure::Sts(sts) => (sts.code().unwrap_or(""), sts.is_retryable()),
                    _ => ("", true),
                };
                if held {
                    tracing::warn!(
                        profile, code, retryable, error = %message,
                        "AssumeRole failed; still serving the last good chained credentials until they expire"
                    );
                } else {
                    tracing::error!(
                        profile, code, retryable, error = %message,
                        "AssumeRole failed; no chained credentials to serve"
                    );
                }
            }
            Event::Expired { last_error } => tracing::error!(
                profile,
                last_error,
                "chained credentials expired without a successful refresh; withdrawn"
            ),
            Event::WaitingForUpstream => tracing::info!(
                profile,
                "no instance-role credentials to assume the role with; waiting for them"
            ),
            Event::UpstreamRotated => tracing::info!(
                profile,
                "instance-role credentials rotated; assuming the role again"
            ),
            Event::ClockSkew(verdict) => match verdict.describe("STS") {
                Some(said) => tracing::warn!(profile, "clock skew: {said}"),
                None => tracing::info!(
                    profile,
                    "clock skew against STS is back within the threshold"
                ),
            },
            // The role is the configured ARN; a short session is the operator's choice.
            Event::RoleChanged { .. } | Event::TooShort(_) => {}
        }
    }

    fn counters<'m>(&self, metrics: &'m Metrics) -> Counters<'m> {
        Counters {
            published: &metrics.assume_successes,
            failed: &metrics.assume_failures,
        }
    }
}

impl AssumedProfile {
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
}

//! The instance role as an [`Issuer`]: IMDS's role and its credentials, with `Expiration`
//! moved onto the local clock when the instance clock is off, and the log lines operators
//! grep for. The loop around it is [`super::engine`]; see `docs/ARCHITECTURE.md`.

use crate::clock::skew::SkewVerdict;
use crate::clock::SharedClock;
use crate::credentials::format_utc_timestamp;
use crate::health::heartbeat::Heartbeat;
use crate::health::metrics::Metrics;
use crate::imds::{ImdsClient, ImdsError};
use crate::refresh::engine::{Counters, Engine, Event, Fetched, Issuer};
use crate::refresh::masked;
use crate::refresh::policy::RefreshPolicy;
use crate::refresh::state::StateSender;
use std::sync::Arc;
use std::time::SystemTime;
use thiserror::Error;

/// Why a refresh produced no credentials.
#[derive(Debug, Error)]
pub enum RefreshError {
    /// IMDS lists no role.
    #[error("no IAM role is attached to this instance")]
    NoRole,
    /// The configured role is not the one attached.
    #[error("role {0} is not attached to this instance (IMDS answers 404)")]
    RoleNotFound(String),
    /// IMDS lists the role but has no credentials for it yet (it happens briefly while a
    /// profile is being replaced): a glitch, so the last good set stays served.
    #[error("IMDS lists role {0} but answers 404 for its credentials")]
    ListedRoleWithoutCredentials(String),
    /// IMDS could not be asked.
    #[error(transparent)]
    Imds(#[from] ImdsError),
}

/// What the instance role's refresher is built from.
pub struct RefresherParts {
    /// The IMDS client.
    pub imds: Arc<ImdsClient>,
    /// The clock expiry is judged by.
    pub clock: SharedClock,
    /// When to ask again.
    pub policy: RefreshPolicy,
    /// The configured role; `None` to discover the attached one on every refresh.
    pub configured_role: Option<String>,
    /// Where the instance role's state is published.
    pub state: StateSender,
    /// The counters of refreshes.
    pub metrics: Arc<Metrics>,
    /// Checked in with on every pass, for the systemd watchdog.
    pub heartbeat: Heartbeat,
}

/// The instance role's refresh loop: the engine on IMDS, checking in with `heartbeat`.
pub fn refresher(parts: RefresherParts) -> Engine<InstanceRole> {
    let issuer = InstanceRole {
        imds: parts.imds,
        configured_role: parts.configured_role,
    };
    Engine::new(
        issuer,
        parts.clock,
        parts.policy,
        parts.state,
        parts.metrics,
    )
    .with_heartbeat(parts.heartbeat)
}

/// Credentials for the role attached to this instance, from IMDS.
pub struct InstanceRole {
    imds: Arc<ImdsClient>,
    /// The configured role; `None` to discover the attached one on every refresh.
    configured_role: Option<String>,
}

impl Issuer for InstanceRole {
    type Input = ();
    type Detail = ();
    type Error = RefreshError;

    /// IMDS is asked directly: always ready.
    fn input(&mut self) -> Option<()> {
        Some(())
    }

    /// Nothing upstream.
    async fn upstream_rotated(&mut self, _waiting: bool) {
        std::future::pending().await
    }

    /// Asks IMDS for the role (unless configured) and its credentials.
    async fn fetch(&mut self, (): ()) -> Result<Fetched<()>, RefreshError> {
        let (role, missing): (String, fn(String) -> RefreshError) = match &self.configured_role {
            Some(role) => (role.clone(), RefreshError::RoleNotFound),
            None => (
                self.imds.role_name().await?.ok_or(RefreshError::NoRole)?,
                RefreshError::ListedRoleWithoutCredentials,
            ),
        };
        let (credentials, times) = self
            .imds
            .dated_role_credentials(&role)
            .await?
            .ok_or_else(|| missing(role.clone()))?;
        Ok(Fetched {
            role,
            credentials,
            detail: (),
            times,
        })
    }

    /// Refuses a set that has already expired, on the local clock (where the engine moved
    /// `Expiration` when the clock-skew correction applies).
    fn admit(&self, fetched: &mut Fetched<()>, now: SystemTime) -> Result<(), RefreshError> {
        fetched.credentials.check_expiration(now).map_err(|source| {
            let role = fetched.role.clone();
            RefreshError::Imds(ImdsError::Credentials { role, source })
        })
    }

    /// No role, or not the configured one: the set is no longer this instance's.
    fn revokes(&self, error: &RefreshError) -> bool {
        matches!(error, RefreshError::NoRole | RefreshError::RoleNotFound(_))
    }

    fn report(&self, event: Event<'_, (), RefreshError>) {
        match event {
            Event::RoleChanged { previous, current } => note_role_change(previous, current),
            Event::TooShort(fetched) => tracing::warn!(
                role = fetched.role,
                expiration = %format_utc_timestamp(fetched.credentials.expiration),
                "IMDS returned credentials that expire within before_expiry; serving them and asking again soon"
            ),
            Event::Published {
                fetched,
                next_refresh,
            } => tracing::info!(
                role = fetched.role,
                access_key_id = %masked(&fetched.credentials.access_key_id),
                expiration = %format_utc_timestamp(fetched.credentials.expiration),
                next_refresh = %format_utc_timestamp(next_refresh),
                "published new credentials"
            ),
            Event::Failed {
                error,
                message,
                held,
                failures,
            } => {
                if self.revokes(error) {
                    if failures == 0 {
                        tracing::warn!(error = %message, "no credentials to publish; checking IMDS again with backoff");
                    }
                } else if held {
                    tracing::warn!(error = %message, "refresh failed; still serving the last good credentials until they expire");
                } else {
                    tracing::error!(error = %message, "refresh failed; no valid credentials to serve");
                }
            }
            Event::Expired { last_error } => tracing::error!(
                last_error,
                "credentials expired without a successful refresh; withdrawn from every sink"
            ),
            // The IMDS client logs the skew it measures; a refusal to correct it is news.
            Event::ClockSkew(verdict @ SkewVerdict::Refused(..)) => tracing::warn!(
                "clock skew: {}",
                verdict.describe("IMDS").unwrap_or_default()
            ),
            // The instance role signs with nothing upstream.
            Event::WaitingForUpstream | Event::UpstreamRotated | Event::ClockSkew(_) => {}
        }
    }

    fn counters<'m>(&self, metrics: &'m Metrics) -> Counters<'m> {
        Counters {
            published: &metrics.refresh_successes,
            failed: &metrics.refresh_failures,
        }
    }
}

/// Logs a role appearing, changing or disappearing.
fn note_role_change(previous: Option<&str>, role: Option<&str>) {
    match (previous, role) {
        (None, Some(new)) => tracing::info!(role = new, "instance role found"),
        (Some(old), Some(new)) => tracing::warn!(
            previous = old,
            role = new,
            "instance role was replaced; publishing the new role's credentials"
        ),
        (Some(old), None) => tracing::warn!(
            previous = old,
            "instance role was removed; credentials withdrawn"
        ),
        (None, None) => {}
    }
}

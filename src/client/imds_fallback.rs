//! `credential-process --fallback-imds`: the instance role's credentials straight from IMDS
//! (IMDSv2), for a machine where the daemon is not running (not installed yet, stopped).
//! One token, one role lookup, one credentials request, through the daemon's own
//! [`ImdsClient`]; the endpoint follows the SDKs' environment variables
//! (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, `…_ENDPOINT_MODE`, `AWS_EC2_METADATA_DISABLED`).

use crate::clock::SystemClock;
use crate::config::ImdsConfig;
use crate::credentials::Credentials;
use crate::failure::Fault;
use crate::health::metrics::Metrics;
use crate::imds::endpoint::{imdsv1_allowed, resolve_endpoint};
use crate::imds::{ImdsClient, ImdsError, ImdsSettings, RetryPolicy};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// The session token lives only as long as this process: ask for a short one.
const TOKEN_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum FallbackError {
    #[error("IMDS fallback failed")]
    Imds(#[source] ImdsError),
    #[error("IMDS fallback: no IAM role is attached to this instance")]
    NoRole,
    #[error("IMDS fallback: IMDS has no credentials for role {0}")]
    UnknownRole(String),
    #[error("IMDS fallback: IMDS issued credentials that expired at {0}; refusing them")]
    Expired(String),
}

impl FallbackError {
    /// Whose move it is: the operator's only when IMDS is unusable as configured.
    pub fn fault(&self) -> Fault {
        match self {
            FallbackError::Imds(imds) => imds.fault(),
            FallbackError::NoRole | FallbackError::UnknownRole(_) | FallbackError::Expired(_) => {
                Fault::Unavailable
            }
        }
    }
}

/// Fetches the attached role's credentials from IMDS, refusing a set already expired at
/// `now`. `env` reads an environment variable (the process environment in the command).
pub(crate) async fn instance_role_credentials(
    env: impl Fn(&str) -> Option<String> + Copy,
    now: SystemTime,
) -> Result<Credentials, FallbackError> {
    let defaults = ImdsConfig::default();
    let settings = ImdsSettings {
        endpoint: resolve_endpoint(&defaults, env).map_err(FallbackError::Imds)?,
        token_ttl: TOKEN_TTL,
        timeout: defaults.timeout,
        allow_imdsv1: imdsv1_allowed(&defaults, env),
        retry: RetryPolicy::default(),
    };
    let imds = ImdsClient::new(
        settings,
        Arc::new(SystemClock),
        Arc::new(Metrics::default()),
    )
    .map_err(FallbackError::Imds)?;
    let role = imds
        .role_name()
        .await
        .map_err(FallbackError::Imds)?
        .ok_or(FallbackError::NoRole)?;
    let creds = imds
        .role_credentials(&role)
        .await
        .map_err(FallbackError::Imds)?
        .ok_or(FallbackError::UnknownRole(role))?;
    if !creds.is_valid_at(now) {
        return Err(FallbackError::Expired(creds.expiration_rfc3339()));
    }
    Ok(creds)
}

// The tests serve on unix sockets (see `test_support`).
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::client::test_support::runtime;
    use crate::demo::simulator::{ImdsSimulator, SimulatorOptions};

    /// Starts a simulator (with `role`) and runs the fallback against it.
    fn fetch(
        role: Option<&str>,
        disabled: bool,
    ) -> (Result<Credentials, FallbackError>, ImdsSimulator) {
        runtime().block_on(async {
            let options = SimulatorOptions {
                role: role.map(str::to_string),
                ..SimulatorOptions::default()
            };
            let sim = ImdsSimulator::start(options).await.unwrap();
            let endpoint = sim.endpoint();
            let env = |name: &str| match name {
                "AWS_EC2_METADATA_SERVICE_ENDPOINT" => Some(endpoint.clone()),
                "AWS_EC2_METADATA_DISABLED" if disabled => Some("true".to_string()),
                _ => None,
            };
            let result = instance_role_credentials(&env, SystemTime::now()).await;
            (result, sim)
        })
    }

    #[test]
    fn fetches_the_attached_roles_credentials_with_imdsv2() {
        let (result, sim) = fetch(Some("web"), false);
        assert_eq!(Some(result.unwrap()), sim.current_credentials());
        let counts = sim.counts();
        assert_eq!(
            (counts.token_puts, counts.role_lists, counts.credential_gets),
            (1, 1, 1)
        );
    }

    #[test]
    fn no_role_is_no_credentials() {
        let (result, _sim) = fetch(None, false);
        let err = result.unwrap_err();
        assert!(matches!(err, FallbackError::NoRole), "{err:?}");
    }

    #[test]
    fn disabled_imds_asks_nothing() {
        let (result, sim) = fetch(Some("web"), true);
        let err = result.unwrap_err();
        assert!(
            matches!(err, FallbackError::Imds(ImdsError::Disabled(_))),
            "{err:?}"
        );
        assert_eq!(sim.counts().token_puts, 0);
    }
}

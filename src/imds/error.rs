//! What can go wrong talking to IMDS, and which of it is worth retrying. Messages name the
//! request (path, status), never a token or a credential.

use crate::credentials::CredentialsError;
use crate::http_client::HttpError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImdsError {
    #[error(
        "IMDS is disabled by AWS_EC2_METADATA_DISABLED={0}; unset it to let imds-credd use IMDS"
    )]
    Disabled(String),
    #[error("invalid IMDS endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("IMDS endpoint mode {0:?} is neither IPv4 nor IPv6 (AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE)")]
    BadEndpointMode(String),
    #[error(
        "IMDS token request timed out; from inside a container this usually means the \
         instance's metadata hop limit is 1 (aws ec2 modify-instance-metadata-options \
         --http-put-response-hop-limit 2)"
    )]
    TokenTimeout,
    #[error("IMDS refused the session token request with HTTP {0}; IMDSv2 is required (allow_imdsv1 = false)")]
    TokenRefused(u16),
    #[error("IMDS answered the token request with HTTP 400: token TTL rejected")]
    TokenBadRequest,
    #[error("IMDS request {path} timed out")]
    Timeout { path: String },
    #[error("cannot connect to IMDS at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: HttpError,
    },
    #[error("IMDS request {path} failed")]
    Transport {
        path: String,
        #[source]
        source: HttpError,
    },
    #[error("IMDS rejected the session token for {path} (HTTP 401) even after a new token")]
    Unauthorized { path: String },
    #[error("IMDS answered {path} with HTTP 403: access to instance metadata is turned off or forbidden")]
    Forbidden { path: String },
    #[error("IMDS answered {path} with HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("IMDS answer for {path} exceeds {limit} bytes")]
    BodyTooLarge { path: String, limit: usize },
    #[error("IMDS answer for {path} is not UTF-8 text")]
    NotText { path: String },
    #[error("IMDS credentials for role {role} are unusable")]
    Credentials {
        role: String,
        #[source]
        source: CredentialsError,
    },
}

/// What kind of failure an [`ImdsError`] is, decided once per variant (no `_` arm: a new
/// variant does not compile until someone decides): the retry loop asks whether to try again,
/// the command line whether the operator's setup is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// IMDS cannot be used as configured: disabled, or a bad endpoint.
    Setup,
    /// Worth another try after a backoff: timeouts, refused connections, resets, throttling
    /// (429) and server errors.
    Transient,
    /// An answer, not a glitch (a 403, a 404, a bad document): asking again at once changes
    /// nothing.
    Answer,
}

impl ImdsError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ImdsError::Disabled(_)
            | ImdsError::BadEndpoint { .. }
            | ImdsError::BadEndpointMode(_) => FailureKind::Setup,
            ImdsError::TokenTimeout
            | ImdsError::Timeout { .. }
            | ImdsError::Connect { .. }
            | ImdsError::Transport { .. } => FailureKind::Transient,
            ImdsError::Status { status, .. } if *status == 429 || *status >= 500 => {
                FailureKind::Transient
            }
            ImdsError::Status { .. }
            | ImdsError::TokenRefused(_)
            | ImdsError::TokenBadRequest
            | ImdsError::Unauthorized { .. }
            | ImdsError::Forbidden { .. }
            | ImdsError::BodyTooLarge { .. }
            | ImdsError::NotText { .. }
            | ImdsError::Credentials { .. } => FailureKind::Answer,
        }
    }

    /// See [`FailureKind::Transient`].
    pub fn is_retryable(&self) -> bool {
        self.kind() == FailureKind::Transient
    }
}

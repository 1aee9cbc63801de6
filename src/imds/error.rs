//! What can go wrong talking to IMDS, and which of it is worth retrying. Messages name the
//! request (path, status), never a token or a credential.

use crate::credentials::CredentialsError;
use crate::failure::Fault;
use crate::http_client::HttpError;
use thiserror::Error;

/// Why a request to IMDS failed. [`ImdsError::kind`] says whether it is worth retrying.
#[derive(Debug, Error)]
pub enum ImdsError {
    /// `AWS_EC2_METADATA_DISABLED` is set to true; the value as given.
    #[error(
        "IMDS is disabled by AWS_EC2_METADATA_DISABLED={0}; unset it to let imds-credd use IMDS"
    )]
    Disabled(String),
    /// The configured or environment endpoint is not a usable `http://` URL.
    #[error("invalid IMDS endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` is neither `IPv4` nor `IPv6`.
    #[error("IMDS endpoint mode {0:?} is neither IPv4 nor IPv6 (AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE)")]
    BadEndpointMode(String),
    /// The session token `PUT` got no answer in time (the hop limit, from a container).
    #[error(
        "IMDS token request timed out; from inside a container this usually means the \
         instance's metadata hop limit is 1 (aws ec2 modify-instance-metadata-options \
         --http-put-response-hop-limit 2)"
    )]
    TokenTimeout,
    /// IMDS refused the token `PUT` with this status, and IMDSv1 is not allowed.
    #[error("IMDS refused the session token request with HTTP {0}; IMDSv2 is required (allow_imdsv1 = false)")]
    TokenRefused(u16),
    /// IMDS refused the token's TTL (HTTP 400).
    #[error("IMDS answered the token request with HTTP 400: token TTL rejected")]
    TokenBadRequest,
    /// A request got no whole answer in time.
    #[error("IMDS request {path} timed out")]
    Timeout {
        /// The request path.
        path: String,
    },
    /// No connection to IMDS (refused, unreachable).
    #[error("cannot connect to IMDS at {endpoint}")]
    Connect {
        /// The endpoint we tried.
        endpoint: String,
        /// Why the connection failed.
        #[source]
        source: HttpError,
    },
    /// The connection failed during a request (a reset, a broken answer).
    #[error("IMDS request {path} failed")]
    Transport {
        /// The request path.
        path: String,
        /// Why the request failed.
        #[source]
        source: HttpError,
    },
    /// A 401 even with a freshly made token.
    #[error("IMDS rejected the session token for {path} (HTTP 401) even after a new token")]
    Unauthorized {
        /// The request path.
        path: String,
    },
    /// A 403: instance metadata is turned off, or a firewall forbids it.
    #[error("IMDS answered {path} with HTTP 403: access to instance metadata is turned off or forbidden")]
    Forbidden {
        /// The request path.
        path: String,
    },
    /// Any other unexpected status.
    #[error("IMDS answered {path} with HTTP {status}")]
    Status {
        /// The request path.
        path: String,
        /// The HTTP status IMDS answered.
        status: u16,
    },
    /// An answer over the body cap.
    #[error("IMDS answer for {path} exceeds {limit} bytes")]
    BodyTooLarge {
        /// The request path.
        path: String,
        /// The body cap, in bytes.
        limit: usize,
    },
    /// An answer that is not UTF-8.
    #[error("IMDS answer for {path} is not UTF-8 text")]
    NotText {
        /// The request path.
        path: String,
    },
    /// The credentials document for the role was refused.
    #[error("IMDS credentials for role {role} are unusable")]
    Credentials {
        /// The instance role's name.
        role: String,
        /// The rule the document broke.
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
    /// The kind of failure this is; every variant decides here.
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

    /// Whose move it is: a [`FailureKind::Setup`] is the operator's, anything else leaves
    /// no credentials this time.
    pub fn fault(&self) -> Fault {
        match self.kind() {
            FailureKind::Setup => Fault::Setup,
            FailureKind::Transient | FailureKind::Answer => Fault::Unavailable,
        }
    }

    /// See [`FailureKind::Transient`].
    pub fn is_retryable(&self) -> bool {
        self.kind() == FailureKind::Transient
    }
}

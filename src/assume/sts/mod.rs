//! STS `AssumeRole` over HTTPS: the form POST, signed with SigV4 (`aws-sigv4`) using the
//! instance-role credentials, sent through [`crate::http_client`] (rustls, the `ring`
//! provider, system trust roots, no proxy), and the answer parsed into [`Credentials`] or a
//! typed refusal.
//! - [`endpoint`]: the regional endpoint and the checks on a configured one.
//! - [`xml`]: the `AssumeRoleResponse` and `ErrorResponse` documents.
//!
//! Nothing here logs a request body or header: the signed headers carry the instance
//! session token. Errors name the STS error code and status, never a credential.

pub(crate) mod endpoint;
pub(crate) mod xml;

pub use endpoint::{parse_endpoint, regional_endpoint};
pub use xml::{parse_assume_role_response, parse_error_response};

use crate::backoff::{retry, RetryPolicy};
use crate::credentials::{rules, Credentials};
use crate::failure::Fault;
use crate::http_client::{HttpClient, HttpError, Limits};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// The STS query API version every SDK sends.
const API_VERSION: &str = "2011-06-15";
/// The SigV4 service name of STS.
const SIGNING_NAME: &str = "sts";
/// Largest STS answer we read; an AssumeRole answer is about 2 KiB with a session token.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Connect timeout, and the bound on one whole exchange (connect, TLS, answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts for one `assume_role` call when the failure is transient (throttling, 5xx,
/// network); the caller's own backoff takes over after that.
const ATTEMPTS: u32 = 3;
const RETRY_BASE: Duration = Duration::from_millis(250);
/// STS error codes that mean "slow down", sent with HTTP 400 rather than 429.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
];

/// One `AssumeRole` call's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleParams {
    /// The role to assume (`role_arn`).
    pub role_arn: String,
    /// `RoleSessionName`: what CloudTrail shows for the session.
    pub session_name: String,
    /// `DurationSeconds`: how long the set lasts.
    pub duration: Duration,
    /// Sent only when set.
    pub external_id: Option<String>,
}

/// Where and how to reach STS for one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsTarget {
    /// The STS URL the call goes to.
    pub endpoint: Uri,
    /// The SigV4 signing region.
    pub region: String,
}

/// A successful `AssumeRole`.
#[derive(Debug, Clone)]
pub struct AssumedRole {
    /// The assumed role's set.
    pub credentials: Credentials,
    /// `AssumedRoleUser/Arn`: `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub assumed_role_arn: String,
    /// The answer's `Date` header, which the clock-skew correction judges the set by.
    pub date: Option<SystemTime>,
}

/// Why `AssumeRole` produced no credentials.
#[derive(Debug, Error)]
pub enum StsError {
    /// STS answered with an error document.
    #[error("STS refused AssumeRole with HTTP {status} {code}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error document's `Code`, which decides whether it is retried.
        code: String,
        /// The error document's `Message`.
        message: String,
    },
    /// STS answered an error status with no error document.
    #[error("STS answered HTTP {status} without an error document")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The request did not get through.
    #[error("cannot reach STS at {endpoint}")]
    Transport {
        /// The STS URL.
        endpoint: String,
        /// Why.
        #[source]
        source: HttpError,
    },
    /// The answer's body broke off.
    #[error("reading the STS answer failed")]
    Read(#[source] HttpError),
    /// No answer within the request timeout.
    #[error("STS at {endpoint} did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The STS URL.
        endpoint: String,
    },
    /// The answer is larger than any `AssumeRoleResponse` (a body cap, so a broken or hostile
    /// endpoint cannot fill memory).
    #[error("STS answer exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The answer is no `AssumeRoleResponse` with a usable set; the text says what is wrong.
    #[error("STS answer is not a usable AssumeRoleResponse: {0}")]
    BadResponse(String),
    /// SigV4 signing failed.
    #[error("cannot sign the AssumeRole request")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The configured endpoint is no URL STS can be reached at.
    #[error("invalid STS endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// HTTPS to STS needs the system's roots, and they could not be read.
    #[error("cannot load the system's trusted root certificates for HTTPS to STS")]
    TrustRoots(#[source] std::io::Error),
}

impl StsError {
    /// Worth another try soon: throttling, server errors, timeouts and network failures.
    /// A refusal such as `AccessDenied` or `ValidationError` stays a refusal until someone
    /// changes a policy or the config.
    pub fn is_retryable(&self) -> bool {
        match self {
            StsError::Refused { status, code, .. } => {
                *status >= 500 || *status == 429 || THROTTLING_CODES.contains(&code.as_str())
            }
            StsError::Status { status } => *status >= 500 || *status == 429,
            StsError::Transport { .. } | StsError::Read(_) | StsError::Timeout { .. } => true,
            StsError::TooLarge
            | StsError::BadResponse(_)
            | StsError::Signing(_)
            | StsError::BadEndpoint { .. }
            | StsError::TrustRoots(_) => false,
        }
    }

    /// Whose move it is: only a bad endpoint is in what the operator wrote.
    pub fn fault(&self) -> Fault {
        match self {
            StsError::BadEndpoint { .. } => Fault::Setup,
            StsError::Refused { .. }
            | StsError::Status { .. }
            | StsError::Transport { .. }
            | StsError::Read(_)
            | StsError::Timeout { .. }
            | StsError::TooLarge
            | StsError::BadResponse(_)
            | StsError::Signing(_)
            | StsError::TrustRoots(_) => Fault::Unavailable,
        }
    }

    /// The STS error code (`AccessDenied`, `Throttling`, …) when STS sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            StsError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The HTTPS client for STS. One per daemon: connections are pooled across profiles.
#[derive(Debug)]
pub struct StsClient {
    http: HttpClient<HttpsConnector<HttpConnector>>,
}

impl StsClient {
    /// Builds the client with rustls (`ring`) and the system's trust roots. Never goes
    /// through a proxy.
    pub fn new() -> Result<StsClient, StsError> {
        let limits = Limits {
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_body_bytes: MAX_RESPONSE_BYTES,
        };
        let http = HttpClient::https(limits).map_err(StsError::TrustRoots)?;
        Ok(StsClient { http })
    }

    /// Calls `AssumeRole` with `source` (the instance-role credentials) at `now`, signed as
    /// of `signed_at` (`now` on AWS's clock when a skew was measured: STS refuses a
    /// signature more than 5 minutes off), retrying transient failures a few times with
    /// jittered backoff.
    pub async fn assume_role(
        &self,
        target: &StsTarget,
        params: &AssumeRoleParams,
        source: &Credentials,
        now: SystemTime,
        signed_at: SystemTime,
    ) -> Result<AssumedRole, StsError> {
        let policy = RetryPolicy {
            max_attempts: ATTEMPTS,
            base_delay: RETRY_BASE,
            max_delay: RETRY_BASE * 4,
        };
        let attempt = || async {
            let request = signed_request(target, params, source, signed_at)?;
            self.call(request, &target.endpoint, now).await
        };
        retry(policy, &params.role_arn, StsError::is_retryable, attempt).await
    }

    /// Sends one signed `AssumeRole` to `endpoint` and reads its answer at `now`.
    async fn call(
        &self,
        request: Request<Full<Bytes>>,
        endpoint: &Uri,
        now: SystemTime,
    ) -> Result<AssumedRole, StsError> {
        let endpoint = endpoint.to_string();
        let answer = self
            .http
            .send(Ok(request))
            .await
            .map_err(|error| match error {
                HttpError::Timeout => StsError::Timeout {
                    endpoint: endpoint.clone(),
                },
                HttpError::TooLarge { .. } => StsError::TooLarge,
                HttpError::Read(_) => StsError::Read(error),
                HttpError::Request(_) | HttpError::Connect(_) | HttpError::Send(_) => {
                    StsError::Transport {
                        endpoint: endpoint.clone(),
                        source: error,
                    }
                }
            })?;
        let status = answer.status.as_u16();
        tracing::debug!(
            endpoint,
            status,
            bytes = answer.body.len(),
            "STS answered AssumeRole"
        );
        if status != 200 {
            return Err(parse_error_response(status, &answer.body));
        }
        let mut assumed = parse_assume_role_response(&answer.body)?;
        assumed.date = crate::clock::skew::date_header(&answer.headers);
        rules::expiration(assumed.credentials.expiration, now)
            .map_err(|rule| StsError::BadResponse(format!("Credentials/Expiration is {rule}")))?;
        Ok(assumed)
    }
}

/// The `AssumeRole` form body (`application/x-www-form-urlencoded`).
fn form_body(params: &AssumeRoleParams) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "AssumeRole")
        .append_pair("Version", API_VERSION)
        .append_pair("RoleArn", &params.role_arn)
        .append_pair("RoleSessionName", &params.session_name)
        .append_pair("DurationSeconds", &params.duration.as_secs().to_string());
    if let Some(external_id) = &params.external_id {
        form.append_pair("ExternalId", external_id);
    }
    form.finish()
}

/// Builds the POST and signs it (SigV4, headers) with `source`, session token included,
/// as of `signed_at`.
fn signed_request(
    target: &StsTarget,
    params: &AssumeRoleParams,
    source: &Credentials,
    signed_at: SystemTime,
) -> Result<Request<Full<Bytes>>, StsError> {
    let signing = |e: Box<dyn std::error::Error + Send + Sync>| StsError::Signing(e);
    let body = form_body(params);
    let mut request = Request::post(target.endpoint.clone())
        .header(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header(
            USER_AGENT,
            concat!("imds-credd/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body.clone())))
        .map_err(|e| signing(Box::new(e)))?;
    let identity = aws_credential_types::Credentials::new(
        source.access_key_id.clone(),
        source.secret_access_key.expose(),
        Some(source.session_token.expose().to_string()),
        Some(source.expiration),
        "imds-credd-instance-role",
    )
    .into();
    let signing_params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name(SIGNING_NAME)
        .time(signed_at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| signing(Box::new(e)))?
        .into();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    let signable = SignableRequest::new(
        "POST",
        target.endpoint.to_string(),
        headers,
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| signing(Box::new(e)))?;
    let (instructions, _signature) = sign(signable, &signing_params)
        .map_err(|e| signing(Box::new(e)))?
        .into_parts();
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_body_names_every_parameter_and_external_id_only_when_set() {
        let mut params = AssumeRoleParams {
            role_arn: "arn:aws:iam::222222222222:role/efgh".into(),
            session_name: "imds-credd-i-0".into(),
            duration: Duration::from_secs(3600),
            external_id: None,
        };
        assert_eq!(
            form_body(&params),
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A222222222222%3Arole%2Fefgh&RoleSessionName=imds-credd-i-0&DurationSeconds=3600"
        );
        params.external_id = Some("a b&c".into());
        assert!(form_body(&params).ends_with("&ExternalId=a+b%26c"));
    }
}

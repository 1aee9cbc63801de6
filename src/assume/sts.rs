//! STS `AssumeRole` over HTTPS: the form POST, signed with SigV4 (`aws-sigv4`) using the
//! instance-role credentials, sent with rustls (the `ring` provider; system trust roots),
//! and the XML answer parsed into [`Credentials`] or a typed refusal.
//!
//! Nothing here logs a request body or header: the signed headers carry the instance
//! session token. Errors name the STS error code and status, never a credential.

use crate::backoff::{retry, RetryPolicy};
use crate::config::AssumeConfig;
use crate::credentials::account::account_of_arn;
use crate::credentials::secret::Secret;
use crate::credentials::{parse_utc_timestamp, rules, Credentials};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use zeroize::Zeroize;

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
/// STS error messages are short; a longer one is cut so a log line stays a line.
const MAX_MESSAGE_CHARS: usize = 300;
/// The `DurationSeconds` range STS accepts (the role's own maximum may be lower).
const MIN_DURATION_SECS: u64 = 900;
/// The instance role's credentials are themselves role credentials, so every `[[assume]]`
/// is role chaining, which STS limits to one hour whatever the role's maximum says.
const MAX_DURATION_SECS: u64 = 3_600;
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
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    /// Sent only when set.
    pub external_id: Option<String>,
}

/// Where and how to reach STS for one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsTarget {
    pub endpoint: Uri,
    /// The SigV4 signing region.
    pub region: String,
}

/// A successful `AssumeRole`.
#[derive(Debug, Clone)]
pub struct AssumedRole {
    pub credentials: Credentials,
    /// `AssumedRoleUser/Arn`: `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub assumed_role_arn: String,
}

/// Why `AssumeRole` produced no credentials.
#[derive(Debug, Error)]
pub enum StsError {
    #[error("STS refused AssumeRole with HTTP {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("STS answered HTTP {status} without an error document")]
    Status { status: u16 },
    #[error("cannot reach STS at {endpoint}")]
    Transport {
        endpoint: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the STS answer failed")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("STS at {endpoint} did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout { endpoint: String },
    #[error("STS answer exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("STS answer is not a usable AssumeRoleResponse: {0}")]
    BadResponse(String),
    #[error("cannot sign the AssumeRole request")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("invalid STS endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
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

    /// The STS error code (`AccessDenied`, `Throttling`, …) when STS sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            StsError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// `https://sts.REGION.amazonaws.com`, or `.amazonaws.com.cn` in the China partition.
pub fn regional_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://sts.{region}.{domain}")
}

/// Parses an endpoint URL for POSTing to: `http`/`https` with a host; the path defaults to
/// `/`. Plain `http` is for loopback tests only; a real deployment uses `https`.
pub fn parse_endpoint(endpoint: &str) -> Result<Uri, StsError> {
    let bad = |reason: &str| StsError::BadEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = endpoint
        .trim()
        .parse()
        .map_err(|_| bad("not a URL such as https://sts.us-east-1.amazonaws.com"))?;
    let host = match uri.host() {
        Some(host) if !host.is_empty() => host,
        _ => return Err(bad("no host")),
    };
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback_host(host) => {}
        Some("http") => {
            return Err(bad(
                "plain http would send signed requests and receive credentials in the clear; use https (http is allowed to loopback only)",
            ))
        }
        _ => return Err(bad("the scheme must be https")),
    }
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    let mut parts = uri.into_parts();
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).map_err(|_| bad("not a URL"))
}

/// `localhost` or a loopback address (`127.0.0.0/8`, `[::1]`): where a test STS listens.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse().is_ok_and(crate::config::is_loopback)
}

/// STS's `RoleSessionName` characters: `[\w+=,.@-]`.
fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// `imds-credd-<instance-id>` made to fit STS's `RoleSessionName`: `[\w+=,.@-]{2,64}`.
pub fn default_session_name(instance_id: &str) -> String {
    let mut name: String = format!("imds-credd-{}", instance_id.trim())
        .chars()
        .map(|c| if is_session_name_char(c) { c } else { '-' })
        .take(64)
        .collect();
    if name.len() < 2 {
        name.push('-');
    }
    name
}

/// True for a region name as it appears in an endpoint host: `eu-west-1`.
pub fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks an `[[assume]]` entry against the limits STS itself enforces, so `check-config`
/// refuses what STS would refuse at every refresh. Returns the key at fault and why.
pub fn check_assume_config(config: &AssumeConfig) -> Result<(), (&'static str, String)> {
    let seconds = config.duration.as_secs();
    if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&seconds)
        || config.duration.subsec_nanos() != 0
    {
        return Err((
            "duration",
            format!(
                "STS accepts whole seconds from 15m to 1h for a role assumed with role credentials (role chaining: the instance role's credentials are role credentials), not {}",
                humantime::format_duration(config.duration)
            ),
        ));
    }
    let name = &config.session_name;
    let name_ok = (2..=64).contains(&name.len()) && name.chars().all(is_session_name_char);
    if !name.is_empty() && !name_ok {
        return Err((
            "session_name",
            format!("{name:?} is not 2-64 of letters, digits and _+=,.@-"),
        ));
    }
    let id = &config.external_id;
    let id_ok = (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| is_session_name_char(c) || ":/".contains(c));
    if !id.is_empty() && !id_ok {
        return Err((
            "external_id",
            "must be 2-1224 of letters, digits and _+=,.@:/-".to_string(),
        ));
    }
    if !config.region.is_empty() && !is_region_name(&config.region) {
        return Err((
            "region",
            format!("{:?} is not an AWS region name", config.region),
        ));
    }
    if !config.sts_endpoint.is_empty() {
        parse_endpoint(&config.sts_endpoint).map_err(|e| ("sts_endpoint", e.to_string()))?;
    }
    Ok(())
}

/// The HTTPS client for STS. One per daemon: connections are pooled across profiles.
#[derive(Debug)]
pub struct StsClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl StsClient {
    /// Builds the client with rustls (`ring`) and the system's trust roots. Never goes
    /// through a proxy.
    pub fn new() -> Result<StsClient, StsError> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(StsError::TrustRoots)?
            // `http://` only so tests can run against a loopback STS.
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new()).build(https);
        Ok(StsClient { http })
    }

    /// Calls `AssumeRole` with `source` (the instance-role credentials) at `now`, retrying
    /// transient failures a few times with jittered backoff.
    pub async fn assume_role(
        &self,
        target: &StsTarget,
        params: &AssumeRoleParams,
        source: &Credentials,
        now: SystemTime,
    ) -> Result<AssumedRole, StsError> {
        let policy = RetryPolicy {
            max_attempts: ATTEMPTS,
            base_delay: RETRY_BASE,
            max_delay: RETRY_BASE * 4,
        };
        let attempt = || self.assume_role_once(target, params, source, now);
        retry(policy, &params.role_arn, StsError::is_retryable, attempt).await
    }

    async fn assume_role_once(
        &self,
        target: &StsTarget,
        params: &AssumeRoleParams,
        source: &Credentials,
        now: SystemTime,
    ) -> Result<AssumedRole, StsError> {
        let request = signed_request(target, params, source, now)?;
        let endpoint = target.endpoint.to_string();
        let exchange = async {
            let response =
                self.http
                    .request(request)
                    .await
                    .map_err(|source| StsError::Transport {
                        endpoint: endpoint.clone(),
                        source,
                    })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        StsError::TooLarge
                    } else {
                        StsError::Read(e)
                    }
                })?
                .to_bytes();
            Ok::<_, StsError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| StsError::Timeout {
                endpoint: endpoint.clone(),
            })??;
        tracing::debug!(
            endpoint,
            status,
            bytes = body.len(),
            "STS answered AssumeRole"
        );
        if status != 200 {
            return Err(parse_error_response(status, &body));
        }
        let assumed = parse_assume_role_response(&body)?;
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

/// Builds the POST and signs it (SigV4, headers) with `source`, session token included.
fn signed_request(
    target: &StsTarget,
    params: &AssumeRoleParams,
    source: &Credentials,
    now: SystemTime,
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
        .time(now)
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

/// Collects the text of the elements at `wanted` paths (element names from the root, e.g.
/// `["AssumeRoleResponse", "AssumeRoleResult", "Credentials", "AccessKeyId"]`), entity
/// references resolved. Namespaces are ignored: STS puts everything in one default one.
fn collect_texts<const N: usize>(
    xml: &[u8],
    wanted: [&[&str]; N],
) -> Result<[Option<String>; N], String> {
    let mut reader = Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut raw = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|_| format!("malformed XML at byte {}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                path.push(name);
                raw.clear();
            }
            Event::Text(text) => {
                raw.push_str(&text.decode().map_err(|_| "XML text is not UTF-8")?);
            }
            Event::CData(data) => {
                // CDATA is literal: escape it so the unescape below gives it back as is.
                let text = data.decode().map_err(|_| "XML text is not UTF-8")?;
                raw.push_str(&quick_xml::escape::escape(text));
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().map_err(|_| "XML text is not UTF-8")?;
                raw.push('&');
                raw.push_str(&name);
                raw.push(';');
            }
            Event::End(_) => {
                if let Some(index) = wanted.iter().position(|w| path_is(&path, w)) {
                    let text = quick_xml::escape::unescape(&raw)
                        .map_err(|_| "unknown entity in XML text")?;
                    found[index] = Some(text.trim().to_string());
                }
                path.pop();
                raw.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(found)
}

fn path_is(path: &[String], wanted: &[&str]) -> bool {
    path.len() == wanted.len() && path.iter().zip(wanted).all(|(a, b)| a == b)
}

/// Parses `AssumeRoleResponse/AssumeRoleResult/{Credentials, AssumedRoleUser}`. Errors name
/// the missing element, never a value.
pub fn parse_assume_role_response(xml: &[u8]) -> Result<AssumedRole, StsError> {
    const RESULT: [&str; 2] = ["AssumeRoleResponse", "AssumeRoleResult"];
    const FIELDS: [&str; 5] = [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
        "Arn",
    ];
    let credentials_path = |field| [RESULT[0], RESULT[1], "Credentials", field];
    let [access_key_id, secret, token, expiration, arn] = {
        let c0 = credentials_path(FIELDS[0]);
        let c1 = credentials_path(FIELDS[1]);
        let c2 = credentials_path(FIELDS[2]);
        let c3 = credentials_path(FIELDS[3]);
        let user = [RESULT[0], RESULT[1], "AssumedRoleUser", FIELDS[4]];
        collect_texts(xml, [&c0[..], &c1[..], &c2[..], &c3[..], &user[..]])
            .map_err(StsError::BadResponse)?
    };
    let required = |value: Option<String>, field: &str| {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| StsError::BadResponse(format!("no Credentials/{field}")))
    };
    let checked =
        |value: Option<String>, field: &str, rule: fn(&str) -> Result<(), &'static str>| {
            let mut value = required(value, field)?;
            match rule(&value) {
                Ok(()) => Ok(value),
                Err(rule) => {
                    value.zeroize();
                    Err(StsError::BadResponse(format!(
                        "Credentials/{field} is {rule}"
                    )))
                }
            }
        };
    let access_key_id = checked(access_key_id, FIELDS[0], rules::access_key_id)?;
    let secret_access_key = Secret::new(checked(secret, FIELDS[1], rules::secret_access_key)?);
    let session_token = Secret::new(checked(token, FIELDS[2], rules::session_token)?);
    let expiration = required(expiration, FIELDS[3])?;
    let expiration = parse_utc_timestamp(&expiration)
        .ok_or_else(|| StsError::BadResponse("Credentials/Expiration is not a UTC time".into()))?;
    Ok(AssumedRole {
        credentials: Credentials {
            access_key_id,
            secret_access_key,
            session_token,
            expiration,
            account_id: arn.as_deref().and_then(account_of_arn),
        },
        assumed_role_arn: arn.unwrap_or_default(),
    })
}

/// Turns a non-200 answer into [`StsError::Refused`] when it carries
/// `ErrorResponse/Error/{Code,Message}`, else [`StsError::Status`].
pub fn parse_error_response(status: u16, xml: &[u8]) -> StsError {
    let code_path = ["ErrorResponse", "Error", "Code"];
    let message_path = ["ErrorResponse", "Error", "Message"];
    match collect_texts(xml, [&code_path[..], &message_path[..]]) {
        Ok([Some(code), message]) if !code.is_empty() => StsError::Refused {
            status,
            code: printable(&code, 64),
            message: printable(&message.unwrap_or_default(), MAX_MESSAGE_CHARS),
        },
        _ => StsError::Status { status },
    }
}

/// `text` cut to `max` characters with control characters replaced, so a hostile or broken
/// answer cannot forge log lines.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>DevUser123</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/John</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:John</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764&amp;more</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2026-11-23T09:00:00Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <PackedPolicySize>8</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;

    const DENIED: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:sts::123456789012:assumed-role/demo/i-0 is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::222222222222:role/efgh</Message>
  </Error>
  <RequestId>4c9a1b6e-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>"#;

    #[test]
    fn parses_the_documented_assume_role_answer() {
        let assumed = parse_assume_role_response(SUCCESS.as_bytes()).unwrap();
        let creds = &assumed.credentials;
        assert_eq!(creds.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            creds.secret_access_key.expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        assert_eq!(
            creds.session_token.expose(),
            "AQoDYXdzEPT//////////wEXAMPLEtc764&more"
        );
        assert_eq!(creds.expiration_rfc3339(), "2026-11-23T09:00:00Z");
        assert_eq!(
            assumed.assumed_role_arn,
            "arn:aws:sts::123456789012:assumed-role/demo/John"
        );
    }

    #[test]
    fn a_missing_element_is_named_and_no_value_is_quoted() {
        let xml = SUCCESS.replace("<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>", "");
        let err = parse_assume_role_response(xml.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "STS answer is not a usable AssumeRoleResponse: no Credentials/AccessKeyId"
        );
        let xml = SUCCESS.replace("2026-11-23T09:00:00Z", "wJalrXUtnFEMI");
        let err = parse_assume_role_response(xml.as_bytes()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("wJalrXUtnFEMI"));
        let truncated = &SUCCESS[..SUCCESS.len() / 2];
        let err = parse_assume_role_response(truncated.as_bytes()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("wJalrXUtnFEMI"), "{err}");
    }

    #[test]
    fn a_field_that_breaks_its_rule_is_named_and_not_quoted() {
        let cases = [
            (
                "ASIAIOSFODNN7EXAMPLE",
                "ASIAIOSFODNN7ÉXAMPLE",
                "AccessKeyId",
            ),
            (
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                "wJalrXUtnFEMI K7MDENG",
                "SecretAccessKey",
            ),
            ("wEXAMPLEtc764", "wEXAMPLE\ttc764", "SessionToken"),
        ];
        for (good, bad, field) in cases {
            let xml = SUCCESS.replace(good, bad);
            let err = parse_assume_role_response(xml.as_bytes()).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(
                shown.contains(&format!("Credentials/{field} is not")),
                "{shown}"
            );
            assert!(!shown.contains(bad), "{shown}");
        }
    }

    #[test]
    fn an_error_document_becomes_a_refusal_with_code_and_message() {
        let err = parse_error_response(403, DENIED.as_bytes());
        assert_eq!(err.code(), Some("AccessDenied"));
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.starts_with(
                "STS refused AssumeRole with HTTP 403 AccessDenied: User: arn:aws:sts::"
            ),
            "{text}"
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_refusals_are_not() {
        let throttled = DENIED.replace("AccessDenied", "Throttling");
        assert!(parse_error_response(400, throttled.as_bytes()).is_retryable());
        let internal = DENIED.replace("AccessDenied", "InternalFailure");
        assert!(parse_error_response(500, internal.as_bytes()).is_retryable());
        assert!(parse_error_response(503, b"<html>busy</html>").is_retryable());
        for code in ["ExpiredToken", "RegionDisabledException", "ValidationError"] {
            let doc = DENIED.replace("AccessDenied", code);
            let err = parse_error_response(400, doc.as_bytes());
            assert_eq!(err.code(), Some(code));
            assert!(!err.is_retryable(), "{code}");
        }
        assert!(matches!(
            parse_error_response(400, b"not xml <"),
            StsError::Status { status: 400 }
        ));
    }

    #[test]
    fn error_messages_are_cut_and_cannot_forge_log_lines() {
        let long = "x".repeat(1000);
        let doc = DENIED.replace("User: arn", &format!("line1&#10;fake line {long}"));
        let StsError::Refused { message, .. } = parse_error_response(403, doc.as_bytes()) else {
            panic!("not a refusal");
        };
        assert!(!message.contains('\n'));
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn regional_endpoints_follow_the_partition() {
        assert_eq!(
            regional_endpoint("eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn endpoints_get_a_root_path_and_bad_ones_are_refused() {
        let uri = parse_endpoint("https://sts.us-east-1.amazonaws.com").unwrap();
        assert_eq!(uri.to_string(), "https://sts.us-east-1.amazonaws.com/");
        let uri = parse_endpoint("http://127.0.0.1:8080").unwrap();
        assert_eq!(uri.path(), "/");
        for loopback in [
            "http://[::1]:8080",
            "http://localhost:1",
            "http://127.1.2.3",
        ] {
            assert!(parse_endpoint(loopback).is_ok(), "{loopback}");
        }
        for bad in [
            "sts.amazonaws.com",
            "ftp://sts.amazonaws.com",
            "http://sts.us-east-1.amazonaws.com",
            "http://10.0.0.5",
            "http://127.0.0.1.example.com",
            "https://",
            "https://h/?a=b",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_session_names_fit_the_sts_pattern() {
        assert_eq!(
            default_session_name("i-0123456789abcdef0"),
            "imds-credd-i-0123456789abcdef0"
        );
        assert_eq!(default_session_name("i 0/1"), "imds-credd-i-0-1");
        let long = default_session_name(&"a".repeat(100));
        assert_eq!(long.len(), 64);
    }

    fn assume(edit: impl FnOnce(&mut AssumeConfig)) -> Result<(), (&'static str, String)> {
        let mut config = AssumeConfig {
            profile: "audit".into(),
            role_arn: "arn:aws:iam::222222222222:role/efgh".into(),
            external_id: String::new(),
            session_name: String::new(),
            duration: Duration::from_secs(3600),
            region: String::new(),
            sts_endpoint: String::new(),
        };
        edit(&mut config);
        check_assume_config(&config)
    }

    #[test]
    fn assume_entries_are_checked_against_the_limits_of_sts() {
        assert_eq!(assume(|_| {}), Ok(()));
        assert_eq!(
            assume(|c| {
                c.session_name = "batch@job.1".into();
                c.external_id = "arn:x/y".into();
                c.region = "cn-north-1".into();
                c.sts_endpoint = "https://sts.vpce.example".into();
                c.duration = Duration::from_secs(900);
            }),
            Ok(())
        );
        let key = |edit: fn(&mut AssumeConfig)| assume(edit).unwrap_err().0;
        assert_eq!(key(|c| c.duration = Duration::from_secs(600)), "duration");
        let (at, message) = assume(|c| c.duration = Duration::from_secs(2 * 3600)).unwrap_err();
        assert!(
            at == "duration" && message.contains("role chaining"),
            "{message}"
        );
        assert_eq!(
            key(|c| c.sts_endpoint = "http://sts.us-east-1.amazonaws.com".into()),
            "sts_endpoint"
        );
        assert_eq!(key(|c| c.session_name = "has space".into()), "session_name");
        assert_eq!(key(|c| c.session_name = "x".into()), "session_name");
        assert_eq!(key(|c| c.external_id = "a b".into()), "external_id");
        assert_eq!(key(|c| c.region = "EU_WEST".into()), "region");
        assert_eq!(
            key(|c| c.sts_endpoint = "sts.amazonaws.com".into()),
            "sts_endpoint"
        );
    }

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

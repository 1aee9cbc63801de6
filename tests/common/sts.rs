//! A loopback STS for the assume-role tests: real HTTP/1.1 (plain `http://127.0.0.1:PORT`;
//! a real deployment uses https), that VERIFIES each request's SigV4 signature before it
//! answers. It recomputes the signature with its own HMAC-SHA256 over the canonical request
//! (not with `aws-sigv4`, which the daemon signs with) from the instance credentials the
//! IMDS simulator issued for the request's access key id, and requires `X-Amz-Security-Token` to be that set's session token
//! and the date to be within 5 minutes of the shared clock (as STS does). A request that
//! fails any check gets 403 `SignatureDoesNotMatch` and is counted.
//!
//! Good requests get a valid `AssumeRoleResponse` with fresh random credentials expiring
//! `DurationSeconds` after the clock's now, or a queued fault's error answer.

use super::daemon_process::Sandbox;
use super::recorder::Recorded;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use imds_credd::clock::SharedClock;
use imds_credd::config::AssumeConfig;
use imds_credd::credentials::secret::Secret;
use imds_credd::credentials::{format_utc_timestamp, parse_utc_timestamp, Credentials};
use imds_credd::demo::simulator::ImdsSimulator;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How far `X-Amz-Date` may be from the clock, as STS allows.
const MAX_SKEW: Duration = Duration::from_secs(300);

/// An error answer to give instead of credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsFault {
    /// 403 `AccessDenied`: the role does not trust the instance role.
    AccessDenied,
    /// 400 `Throttling`, as STS sends it.
    Throttling,
    /// 500 `InternalFailure`.
    ServerError,
    /// 200 with a body larger than any AssumeRole answer.
    Oversize,
    /// No answer for a minute (real time), then 500.
    Hang,
    /// 200 with credentials whose `AccessKeyId` holds a non-ASCII letter.
    NonAsciiKeyId,
    /// 200 with credentials expiring 48 h from now.
    FarExpiration,
}

/// One request STS received.
#[derive(Debug, Clone)]
pub struct StsRequest {
    /// The form parameters.
    pub params: BTreeMap<String, String>,
    /// The access key id in the `Authorization` credential scope.
    pub signed_by: String,
    /// `None` when the signature checked out, else why not.
    pub rejected: Option<String>,
    /// The `X-Amz-Date` sent.
    pub signed_at: SystemTime,
}

struct State {
    clock: SharedClock,
    /// Set by [`StsServer::attach`] once the simulator runs.
    sim: Option<ImdsSimulator>,
    region: String,
    faults: VecDeque<StsFault>,
    issued: Vec<Credentials>,
    requests: Vec<StsRequest>,
    /// How far the `Date` header runs ahead of (negative: behind) the server's clock.
    date_ahead_secs: i64,
}

/// The running server; stops when dropped.
pub struct StsServer {
    endpoint: String,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Drop for StsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl StsServer {
    /// Serves on `127.0.0.1:0`; checks signatures for `region` against the credentials of
    /// the simulator given to [`StsServer::attach`].
    pub async fn start(clock: SharedClock, region: &str) -> StsServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            clock,
            sim: None,
            region: region.to_string(),
            faults: VecDeque::new(),
            issued: Vec::new(),
            requests: Vec::new(),
            date_ahead_secs: 0,
        }));
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, state.clone(), stop.clone()));
        StsServer {
            endpoint,
            state,
            stop,
        }
    }

    /// A `HarnessOptions::prepare` step that gives the server the simulator whose issued
    /// credentials it checks signatures against.
    pub fn attach(&self) -> Box<dyn FnOnce(&ImdsSimulator)> {
        let state = self.state.clone();
        Box::new(move |sim| state.lock().unwrap().sim = Some(sim.clone()))
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Answers the next `times` requests with `fault`.
    pub fn inject(&self, fault: StsFault, times: usize) {
        let mut state = self.state.lock().unwrap();
        state.faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Dates every answer `ahead_secs` off the server's clock (negative: behind), as a
    /// server whose `Date` disagrees with the sets it issues.
    pub fn date_answers_off_by(&self, ahead_secs: i64) {
        self.state.lock().unwrap().date_ahead_secs = ahead_secs;
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// An hour-long `[[assume]]` profile `name` of `role_arn` against this server, its
    /// other keys left empty.
    pub fn profile(&self, name: &str, role_arn: &str) -> AssumeConfig {
        AssumeConfig {
            profile: name.into(),
            role_arn: role_arn.into(),
            external_id: String::new(),
            session_name: String::new(),
            duration: Duration::from_secs(3600),
            region: String::new(),
            sts_endpoint: self.endpoint(),
        }
    }

    /// Every credential set handed out, in order.
    pub fn issued(&self) -> Vec<Credentials> {
        self.state.lock().unwrap().issued.clone()
    }

    pub fn requests(&self) -> Vec<StsRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Fails if a secret this server issued appears in `text`.
    pub fn assert_no_issued_secrets(&self, text: &str, what: &str) {
        super::assert_no_credential_secrets(text, &self.issued(), &format!("{what} (STS)"));
    }

    /// Fails the test if any request's signature did not check out.
    pub fn assert_all_signatures_valid(&self) {
        for request in self.requests() {
            assert_eq!(request.rejected, None, "a request was badly signed");
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(request, &state).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

/// Every answer is dated from the server's clock, as STS's are: the daemon judges the
/// chained sets' clock skew by it.
async fn answer(request: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let mut response = match respond(&parts, &body, state) {
        Some(response) => response,
        None => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            error(500, "InternalFailure", "An internal error occurred")
        }
    };
    let (now, ahead_secs) = {
        let state = state.lock().unwrap();
        (state.clock.now(), state.date_ahead_secs)
    };
    let off = Duration::from_secs(ahead_secs.unsigned_abs());
    let dated = if ahead_secs >= 0 {
        now + off
    } else {
        now - off
    };
    let date = httpdate::fmt_http_date(dated).parse().unwrap();
    response.headers_mut().insert(hyper::header::DATE, date);
    response
}

/// The answer to a request, or `None` to hang (a queued [`StsFault::Hang`]).
fn respond(
    parts: &http::request::Parts,
    body: &[u8],
    state: &Mutex<State>,
) -> Option<Response<Full<Bytes>>> {
    let params: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let mut state = state.lock().unwrap();
    let (signed_by, signed_at, verdict) = verify(parts, body, &state);
    state.requests.push(StsRequest {
        params: params.clone(),
        signed_by,
        rejected: verdict.clone().err(),
        signed_at,
    });
    if verdict.is_err() {
        return Some(error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    if params.get("Action").map(String::as_str) != Some("AssumeRole")
        || params.get("Version").map(String::as_str) != Some("2011-06-15")
    {
        return Some(error(400, "InvalidAction", "Could not find operation"));
    }
    let fault = state.faults.pop_front();
    match fault {
        Some(StsFault::AccessDenied) => {
            return Some(error(
                403,
                "AccessDenied",
                &format!(
                    "User: arn:aws:sts::123456789012:assumed-role/demo-role/i-0 is not authorized to perform: sts:AssumeRole on resource: {}",
                    params.get("RoleArn").cloned().unwrap_or_default()
                ),
            ))
        }
        Some(StsFault::Throttling) => return Some(error(400, "Throttling", "Rate exceeded")),
        Some(StsFault::ServerError) => {
            return Some(error(500, "InternalFailure", "An internal error occurred"))
        }
        Some(StsFault::Oversize) => {
            return Some(Response::new(Full::new(Bytes::from(vec![b' '; 200 * 1024]))))
        }
        Some(StsFault::Hang) => return None,
        Some(StsFault::NonAsciiKeyId | StsFault::FarExpiration) | None => {}
    }
    let duration: u64 = params
        .get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(3600);
    let mut credentials = Credentials {
        access_key_id: format!(
            "ASIA{}",
            random_text(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        ),
        secret_access_key: Secret::new(random_text(40, BASE64)),
        session_token: Secret::new(random_text(300, BASE64)),
        expiration: state.clock.now() + Duration::from_secs(duration),
        account_id: Some(ASSUMED_ACCOUNT.to_string()),
    };
    match fault {
        Some(StsFault::NonAsciiKeyId) => credentials.access_key_id.insert(4, 'É'),
        Some(StsFault::FarExpiration) => {
            credentials.expiration = state.clock.now() + Duration::from_secs(48 * 3600)
        }
        _ => {}
    }
    state.issued.push(credentials.clone());
    let session = params.get("RoleSessionName").cloned().unwrap_or_default();
    let role = params
        .get("RoleArn")
        .and_then(|arn| arn.rsplit('/').next())
        .unwrap_or("role")
        .to_string();
    let xml = format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{ASSUMED_ACCOUNT}:assumed-role/{role}/{session}</Arn>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{}</AccessKeyId>
      <SecretAccessKey>{}</SecretAccessKey>
      <SessionToken>{}</SessionToken>
      <Expiration>{}</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#,
        credentials.access_key_id,
        credentials.secret_access_key.expose(),
        credentials.session_token.expose(),
        credentials.expiration_rfc3339(),
    );
    Some(Response::new(Full::new(Bytes::from(xml))))
}

/// Starts a loopback STS for `role_arn` and the daemon with an `[[assume]]` profile
/// `audit` for that role, and waits until STS has issued its first set.
pub fn start_daemon_with_audit_profile(sandbox: &mut Sandbox, role_arn: &str) -> StsServer {
    let clock = Arc::new(imds_credd::clock::SystemClock) as SharedClock;
    let sts = sandbox
        .runtime()
        .block_on(StsServer::start(clock, "us-east-1"));
    sts.attach()(&sandbox.sim);
    let assume = format!(
        "profile=audit,role_arn={role_arn},region=us-east-1,sts_endpoint={}",
        sts.endpoint()
    );
    sandbox.start_daemon(&["--assume", &assume]);
    sandbox.wait_until("the assumed role", Duration::from_secs(15), || {
        !sts.issued().is_empty()
    });
    sts
}

/// The account of every role this STS hands out (in `AssumedRoleUser/Arn`).
pub const ASSUMED_ACCOUNT: &str = "222222222222";

const BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_text(len: usize, alphabet: &str) -> String {
    let alphabet: Vec<char> = alphabet.chars().collect();
    (0..len)
        .map(|_| alphabet[fastrand::usize(..alphabet.len())])
        .collect()
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let xml = format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>
</ErrorResponse>"#
    );
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
}

/// Checks the request's SigV4 signature. Returns the signing access key id, the signing
/// time, and the verdict.
fn verify(
    parts: &http::request::Parts,
    body: &[u8],
    state: &State,
) -> (String, SystemTime, Result<(), String>) {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let signed_at = header("x-amz-date")
        .and_then(|d| amz_date(&d))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let Some(authorization) = header("authorization") else {
        return (String::new(), signed_at, Err("no Authorization".into()));
    };
    let Some((akid, scope_date, region, service, _signed_headers)) =
        parse_authorization(&authorization)
    else {
        return (
            String::new(),
            signed_at,
            Err("malformed Authorization".into()),
        );
    };
    let check = || -> Result<(), String> {
        if region != state.region || service != "sts" {
            return Err(format!("scope {region}/{service}"));
        }
        let now = state.clock.now();
        let skew = now
            .duration_since(signed_at)
            .or_else(|_| signed_at.duration_since(now))
            .unwrap();
        if skew > MAX_SKEW {
            return Err("X-Amz-Date too far from the clock".into());
        }
        if !format_utc_timestamp(signed_at)
            .replace('-', "")
            .starts_with(&scope_date)
        {
            return Err("scope date is not the X-Amz-Date".into());
        }
        let source = state
            .sim
            .as_ref()
            .ok_or("no simulator attached")?
            .issued_credentials()
            .into_iter()
            .find(|c| c.access_key_id == akid)
            .ok_or("not an access key id the instance was issued")?;
        if header("x-amz-security-token").as_deref() != Some(source.session_token.expose()) {
            return Err("X-Amz-Security-Token is not the instance session token".into());
        }
        // Our own HMAC-SHA256 over the canonical request (the recorder's, which checks
        // boto3 and the AWS CLI too), not aws-sigv4: the daemon signs with that crate, so
        // it could not catch a mistake both make.
        let received = Recorded {
            method: parts.method.to_string(),
            target: parts
                .uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        };
        received.verify_signature(source.secret_access_key.expose())?;
        Ok(())
    };
    let verdict = check();
    (akid, signed_at, verdict)
}

/// `20261123T040000Z` → time.
fn amz_date(text: &str) -> Option<SystemTime> {
    if text.len() != 16 {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    parse_utc_timestamp(&rfc)
}

/// `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=…` → its parts.
#[allow(clippy::type_complexity)]
fn parse_authorization(value: &str) -> Option<(String, String, String, String, Vec<String>)> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed = None;
    for field in rest.split(',').map(str::trim) {
        if let Some(v) = field.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = field.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        }
    }
    let scope: Vec<&str> = credential?.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return None;
    }
    Some((
        scope[0].to_string(),
        scope[1].to_string(),
        scope[2].to_string(),
        scope[3].to_string(),
        signed?.split(';').map(str::to_string).collect(),
    ))
}

//! A simulated IMDSv2 that speaks real HTTP/1.1 on loopback: the `demo` command runs the
//! daemon against it, and the tests use it to inject faults request by request.
//!
//! It follows the real service where clients can tell (see `PROTOCOL.md`): a token `PUT`
//! with a TTL of 1..21600 seconds, `401` for a missing, unknown or expired token, `403` for
//! a `PUT` that carries `X-Forwarded-For` or goes to another path, credentials as
//! `" : "`-separated JSON served as `text/plain`, errors as HTTP 200 with `Code` other than
//! `Success`. Time (token expiry, credential rotation) comes from the injected
//! [`SharedClock`], so tests can move hours ahead while the HTTP traffic stays real.
//! Rotation is checked lazily when a request (or [`ImdsSimulator::current_credentials`])
//! looks at the credentials: no background task.

use crate::clock::{SharedClock, SystemClock};
use crate::credentials::secret::Secret;
use crate::credentials::{format_utc_timestamp, Credentials};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, SERVER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PREFIX: &str = "/latest/meta-data/iam/security-credentials/";
const EXTENDED_PREFIX: &str = "/latest/meta-data/iam/security-credentials-extended/";
const INFO_PATH: &str = "/latest/meta-data/iam/info";
const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
const REGION_PATH: &str = "/latest/meta-data/placement/region";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// The largest token TTL IMDS accepts: 6 hours.
const MAX_TOKEN_TTL_SECS: u64 = 21_600;

/// The simulated instance's id (`GET /latest/meta-data/instance-id`).
pub const INSTANCE_ID: &str = "i-0123456789abcdef0";
/// The simulated instance's region (`GET /latest/meta-data/placement/region`).
pub const REGION: &str = "us-east-1";
/// The account in the instance profile ARN (`GET /latest/meta-data/iam/info`).
pub const ACCOUNT_ID: &str = "123456789012";

/// How long a random "short delay" fault waits: well under any sane client timeout.
const RANDOM_FAULT_DELAY: Duration = Duration::from_millis(50);

/// How the simulator behaves. `Default` is a real-time instance with `demo-role` attached
/// and credentials as EC2 issues them: 6 h lifetime, replaced after 5 h.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    pub clock: SharedClock,
    /// The attached role; `None` starts with no instance profile.
    pub role: Option<String>,
    /// Time from issue to `Expiration` of each credential set.
    pub credential_lifetime: Duration,
    /// Age at which a set is replaced by a fresh one.
    pub rotate_every: Duration,
    /// Answer `GET`s without a token (IMDSv1), as an instance with `HttpTokens=optional`.
    pub allow_imdsv1: bool,
    /// Serve `…/security-credentials-extended/<role>` (the credentials plus `AccountId`), as
    /// current IMDS does; `false` answers it 404, as older IMDS does.
    pub extended_credentials: bool,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        let credential_lifetime = Duration::from_secs(6 * 3600);
        SimulatorOptions {
            clock: Arc::new(SystemClock),
            role: Some("demo-role".to_string()),
            credential_lifetime,
            rotate_every: credential_lifetime - Duration::from_secs(3600),
            allow_imdsv1: false,
            extended_credentials: true,
        }
    }
}

/// Which requests an injected fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `PUT /latest/api/token`.
    Token,
    /// `GET …/security-credentials/` (the role name).
    RoleList,
    /// `GET …/security-credentials/<role>` and `…/security-credentials-extended/<role>`.
    Credentials,
    /// Every request.
    Any,
}

/// What an injected fault does to a request. Every fault except `Delay` replaces the answer
/// entirely (no token check); the body faults are meant for [`Target::Credentials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (e.g. 401, 403, 404, 429, 500, 503) and a short body.
    Status(u16),
    /// Wait this long (real time), then answer normally.
    Delay(Duration),
    /// Close the connection with a TCP reset, without answering.
    Reset,
    /// 200 with a truncated JSON document.
    MalformedJson,
    /// 200 with a body of this many bytes.
    OversizeBody(usize),
    /// 200 with `Code` `Failure` and a `Message`, as for a role that does not trust EC2.
    CodeFailure,
    /// 200 with a fresh credential set whose `Expiration` is already past.
    Expired,
    /// 200 with a fresh credential set expiring this soon.
    ExpiresIn(Duration),
    /// 200 with the normal answer, its body sent one byte at a time with this wait (real
    /// time) before each: a connection that trickles, as over a congested link.
    Trickle(Duration),
    /// 200 with a fresh credential set whose field `name` (`AccessKeyId`, `Token`,
    /// `Expiration`, …) holds `value` instead: an answer that parses but must be refused.
    Field { name: &'static str, value: String },
}

/// How many requests of each kind the simulator has answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub token_puts: usize,
    pub role_lists: usize,
    pub credential_gets: usize,
    /// Every other `GET`/`HEAD`.
    pub other_gets: usize,
    /// Responses with status 401, injected or not.
    pub unauthorized: usize,
    /// Injected faults applied, queued or random.
    pub faults_injected: usize,
}

/// One answered request, in the order answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The status sent; 0 when the connection was reset instead.
    pub status: u16,
}

/// A running simulator. Clones share it; the server stops when the last clone is dropped
/// or on [`ImdsSimulator::shutdown`].
#[derive(Clone)]
pub struct ImdsSimulator {
    handle: Arc<ServerHandle>,
}

impl std::fmt::Debug for ImdsSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImdsSimulator")
            .field("endpoint", &self.handle.endpoint)
            .finish_non_exhaustive()
    }
}

struct ServerHandle {
    state: Arc<State>,
    endpoint: String,
    stop: CancellationToken,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ImdsSimulator {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(options: SimulatorOptions) -> std::io::Result<ImdsSimulator> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State::new(options));
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state.clone(), stop.clone()));
        Ok(ImdsSimulator {
            handle: Arc::new(ServerHandle {
                state,
                endpoint,
                stop,
                server: Mutex::new(Some(server)),
            }),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.handle.endpoint.clone()
    }

    /// Attaches a role (with fresh credentials), or detaches it with `None`: the role list
    /// then answers 404, like an instance without an instance profile.
    pub fn set_role(&self, role: Option<&str>) {
        self.state().lock().role = role.map(str::to_string);
        self.rotate_now();
    }

    /// Replaces the current credentials with a fresh set now (if a role is attached).
    pub fn rotate_now(&self) {
        let now = self.state().clock.now();
        let mut inner = self.state().lock();
        inner.current = None;
        self.state().current_set(&mut inner, now);
    }

    /// The set served now, after any rotation due at `clock.now()`.
    pub fn current_credentials(&self) -> Option<Credentials> {
        let now = self.state().clock.now();
        let mut inner = self.state().lock();
        self.state()
            .current_set(&mut inner, now)
            .map(|set| set.credentials.clone())
    }

    /// Every credential set ever issued, including one-off sets from faults.
    pub fn issued_credentials(&self) -> Vec<Credentials> {
        self.state().lock().issued_credentials.clone()
    }

    /// Every IMDS session token ever issued.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().lock().issued_tokens.clone()
    }

    /// Makes every outstanding token invalid: their next use gets 401.
    pub fn invalidate_tokens(&self) {
        self.state().lock().live_tokens.clear();
    }

    /// Queues a fault for the next `times` requests that match `target`. Faults queued
    /// earlier are used up first.
    pub fn inject(&self, target: Target, fault: Fault, times: usize) {
        if let Fault::Status(code) = fault {
            assert!(
                StatusCode::from_u16(code).is_ok(),
                "Fault::Status({code}) is not an HTTP status"
            );
        }
        if times > 0 {
            let mut inner = self.state().lock();
            inner.queued_faults.push_back(QueuedFault {
                target,
                fault,
                remaining: times,
            });
        }
    }

    /// Drops every queued fault: the end of a simulated outage.
    pub fn clear_faults(&self) {
        self.state().lock().queued_faults.clear();
    }

    /// Gives each request, independently, a random retryable fault (500, 503, 429, a short
    /// delay or a reset) with `probability`; the sequence is reproducible from `seed`.
    /// A probability of 0 turns random faults off.
    pub fn set_random_faults(&self, probability: f64, seed: u64) {
        self.state().lock().random_faults = (probability > 0.0).then(|| RandomFaults {
            probability,
            rng: fastrand::Rng::with_seed(seed),
        });
    }

    /// Requests answered so far, by kind.
    pub fn counts(&self) -> RequestCounts {
        self.state().lock().counts
    }

    /// Every request answered so far, in the order answered.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().lock().requests.clone()
    }

    /// Stops the server and its connections, and waits for the accept loop to end.
    pub async fn shutdown(self) {
        self.handle.stop.cancel();
        let server = self.handle.server.lock().expect("simulator lock").take();
        if let Some(server) = server {
            // The task only ends by cancellation; a join error would be a panic in it,
            // which has already been reported.
            let _ = server.await;
        }
    }

    fn state(&self) -> &State {
        &self.handle.state
    }
}

/// The simulated instance, shared by the handle and every connection.
struct State {
    clock: SharedClock,
    credential_lifetime: Duration,
    rotate_every: Duration,
    allow_imdsv1: bool,
    extended_credentials: bool,
    inner: Mutex<Inner>,
}

struct Inner {
    role: Option<String>,
    current: Option<IssuedSet>,
    issued_credentials: Vec<Credentials>,
    /// Token → expiry on the injected clock.
    live_tokens: HashMap<String, SystemTime>,
    issued_tokens: Vec<String>,
    queued_faults: VecDeque<QueuedFault>,
    random_faults: Option<RandomFaults>,
    counts: RequestCounts,
    requests: Vec<RequestRecord>,
}

struct IssuedSet {
    credentials: Credentials,
    last_updated: SystemTime,
}

struct QueuedFault {
    target: Target,
    fault: Fault,
    remaining: usize,
}

struct RandomFaults {
    probability: f64,
    rng: fastrand::Rng,
}

/// What a request asks for, as far as counting and fault targets care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    TokenPut,
    RoleList,
    CredentialGet,
    OtherGet,
    Other,
}

impl RequestKind {
    fn of(method: &Method, path: &str) -> RequestKind {
        let is_get = method == Method::GET || method == Method::HEAD;
        if method == Method::PUT && path == TOKEN_PATH {
            RequestKind::TokenPut
        } else if is_get && path == CREDENTIALS_PREFIX {
            RequestKind::RoleList
        } else if is_get
            && (path.starts_with(CREDENTIALS_PREFIX) || path.starts_with(EXTENDED_PREFIX))
        {
            RequestKind::CredentialGet
        } else if is_get {
            RequestKind::OtherGet
        } else {
            RequestKind::Other
        }
    }

    fn is_targeted_by(self, target: Target) -> bool {
        match target {
            Target::Any => true,
            Target::Token => self == RequestKind::TokenPut,
            Target::RoleList => self == RequestKind::RoleList,
            Target::Credentials => self == RequestKind::CredentialGet,
        }
    }
}

impl State {
    fn new(options: SimulatorOptions) -> State {
        let state = State {
            clock: options.clock,
            credential_lifetime: options.credential_lifetime,
            rotate_every: options.rotate_every,
            allow_imdsv1: options.allow_imdsv1,
            extended_credentials: options.extended_credentials,
            inner: Mutex::new(Inner {
                role: options.role,
                current: None,
                issued_credentials: Vec::new(),
                live_tokens: HashMap::new(),
                issued_tokens: Vec::new(),
                queued_faults: VecDeque::new(),
                random_faults: None,
                counts: RequestCounts::default(),
                requests: Vec::new(),
            }),
        };
        let now = state.clock.now();
        let mut inner = state.lock();
        state.current_set(&mut inner, now);
        drop(inner);
        state
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("simulator lock")
    }

    /// The set to serve at `now`, issuing a fresh one when none exists or the current one
    /// has reached `rotate_every`. `None` when no role is attached.
    fn current_set<'a>(&self, inner: &'a mut Inner, now: SystemTime) -> Option<&'a IssuedSet> {
        inner.role.as_ref()?;
        let due = match &inner.current {
            None => true,
            Some(set) => now
                .duration_since(set.last_updated)
                .is_ok_and(|age| age >= self.rotate_every),
        };
        if due {
            let credentials = issue_credentials(inner, now + self.credential_lifetime);
            inner.current = Some(IssuedSet {
                credentials,
                last_updated: now,
            });
        }
        inner.current.as_ref()
    }

    /// Counts the request and takes the fault it gets, if any: queued faults first, then
    /// a random one.
    fn take_fault(&self, kind: RequestKind) -> Option<Fault> {
        let mut inner = self.lock();
        let counts = &mut inner.counts;
        match kind {
            RequestKind::TokenPut => counts.token_puts += 1,
            RequestKind::RoleList => counts.role_lists += 1,
            RequestKind::CredentialGet => counts.credential_gets += 1,
            RequestKind::OtherGet => counts.other_gets += 1,
            RequestKind::Other => {}
        }
        let queued = inner
            .queued_faults
            .iter()
            .position(|queued| kind.is_targeted_by(queued.target));
        let fault = match queued {
            Some(index) => {
                let queued = &mut inner.queued_faults[index];
                queued.remaining -= 1;
                let fault = queued.fault.clone();
                if queued.remaining == 0 {
                    inner.queued_faults.remove(index);
                }
                Some(fault)
            }
            None => inner.random_faults.as_mut().and_then(RandomFaults::draw),
        };
        if fault.is_some() {
            inner.counts.faults_injected += 1;
        }
        fault
    }

    fn record(&self, method: &Method, path: &str, status: u16) {
        tracing::debug!(%method, path, status, "simulated IMDS answered");
        let mut inner = self.lock();
        if status == 401 {
            inner.counts.unauthorized += 1;
        }
        inner.requests.push(RequestRecord {
            method: method.to_string(),
            path: path.to_string(),
            status,
        });
    }

    /// The answer the real service would give.
    fn respond(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if method == Method::PUT {
            if path != TOKEN_PATH || headers.contains_key("x-forwarded-for") {
                return status_response(StatusCode::FORBIDDEN);
            }
            let Some(ttl) = headers
                .get(TTL_HEADER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok())
                .filter(|ttl| (1..=MAX_TOKEN_TTL_SECS).contains(ttl))
            else {
                return status_response(StatusCode::BAD_REQUEST);
            };
            let token = format!("AQAE{}==", random_string(BASE64_URL, 52));
            // Forget expired tokens so a soak test does not grow the table forever.
            inner.live_tokens.retain(|_, expiry| *expiry > now);
            inner
                .live_tokens
                .insert(token.clone(), now + Duration::from_secs(ttl));
            inner.issued_tokens.push(token.clone());
            let mut response = text_response(StatusCode::OK, token);
            response
                .headers_mut()
                .insert(TTL_HEADER, HeaderValue::from(ttl));
            return response;
        }
        if method != Method::GET && method != Method::HEAD {
            return status_response(StatusCode::METHOD_NOT_ALLOWED);
        }
        // A token that is sent must be valid even where IMDSv1 is allowed, as on EC2.
        let authorized = match headers.get(TOKEN_HEADER).map(HeaderValue::to_str) {
            None => self.allow_imdsv1,
            Some(Ok(token)) => inner
                .live_tokens
                .get(token)
                .is_some_and(|expiry| *expiry > now),
            Some(Err(_)) => false,
        };
        if !authorized {
            return status_response(StatusCode::UNAUTHORIZED);
        }
        let not_found = || status_response(StatusCode::NOT_FOUND);
        match path {
            CREDENTIALS_PREFIX => match &inner.role {
                Some(role) => text_response(StatusCode::OK, format!("{role}\n")),
                None => not_found(),
            },
            INFO_PATH => match &inner.role {
                Some(role) => text_response(StatusCode::OK, info_json(role, now)),
                None => not_found(),
            },
            INSTANCE_ID_PATH => text_response(StatusCode::OK, INSTANCE_ID.to_string()),
            REGION_PATH => text_response(StatusCode::OK, REGION.to_string()),
            _ => {
                let (name, extended) = match path.strip_prefix(EXTENDED_PREFIX) {
                    Some(name) if self.extended_credentials => (Some(name), true),
                    Some(_) => (None, true),
                    None => (path.strip_prefix(CREDENTIALS_PREFIX), false),
                };
                match name {
                    Some(name) if inner.role.as_deref() == Some(name) => {
                        let set = self
                            .current_set(&mut inner, now)
                            .expect("a role is attached");
                        let body = if extended {
                            extended_credential_json(&set.credentials, set.last_updated)
                        } else {
                            credential_json(&set.credentials, set.last_updated)
                        };
                        text_response(StatusCode::OK, body)
                    }
                    _ => not_found(),
                }
            }
        }
    }

    /// The answer for an injected fault other than `Delay` and `Reset`.
    fn fault_response(&self, fault: Fault) -> Response<Full<Bytes>> {
        let now = self.clock.now();
        let one_off_set = |expiration: SystemTime| {
            let credentials = issue_credentials(&mut self.lock(), expiration);
            credential_json(&credentials, now)
        };
        match fault {
            Fault::Status(code) => {
                status_response(StatusCode::from_u16(code).expect("checked by inject"))
            }
            Fault::MalformedJson => text_response(
                StatusCode::OK,
                "{\n  \"Code\" : \"Success\",\n  \"AccessKeyId\" : \"ASIA".to_string(),
            ),
            Fault::OversizeBody(size) => text_response(StatusCode::OK, "A".repeat(size)),
            Fault::CodeFailure => text_response(
                StatusCode::OK,
                imds_json(&[
                    ("Code", "Failure"),
                    (
                        "Message",
                        "Instance profile role cannot be assumed: the role does not trust ec2.amazonaws.com",
                    ),
                    ("LastUpdated", &format_utc_timestamp(now)),
                ]),
            ),
            Fault::Expired => text_response(
                StatusCode::OK,
                one_off_set(now - Duration::from_secs(60)),
            ),
            Fault::ExpiresIn(soon) => text_response(StatusCode::OK, one_off_set(now + soon)),
            Fault::Field { name, value } => {
                let mut doc: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&one_off_set(now + self.credential_lifetime))
                        .expect("the simulator writes valid JSON");
                doc.insert(name.to_string(), value.into());
                text_response(StatusCode::OK, serde_json::Value::Object(doc).to_string())
            }
            Fault::Delay(_) | Fault::Reset | Fault::Trickle(_) => {
                unreachable!("handled by the connection")
            }
        }
    }
}

impl RandomFaults {
    fn draw(&mut self) -> Option<Fault> {
        if self.rng.f64() >= self.probability {
            return None;
        }
        Some(match self.rng.usize(0..5) {
            0 => Fault::Status(500),
            1 => Fault::Status(503),
            2 => Fault::Status(429),
            3 => Fault::Delay(RANDOM_FAULT_DELAY),
            _ => Fault::Reset,
        })
    }
}

/// Accepts connections until `stop` is cancelled; each connection ends with it too.
async fn serve(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %crate::error_chain::render(&error), "simulated IMDS could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = serve_connection(stream, state) => {}
            }
        });
    }
}

/// Returned by the service to make hyper drop the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("simulated connection reset")]
struct ConnectionReset;

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    // A second handle on the same socket, kept outside hyper, so that a `Reset` fault can
    // set SO_LINGER 0: when hyper then drops the connection the kernel sends RST, and the
    // client sees "connection reset" rather than a clean close.
    let socket = match socket2::SockRef::from(&stream).try_clone() {
        Ok(socket) => Arc::new(Mutex::new(Some(socket))),
        Err(error) => {
            tracing::warn!(error = %crate::error_chain::render(&error), "simulated IMDS could not duplicate a socket");
            return;
        }
    };
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let state = state.clone();
        let socket = socket.clone();
        async move {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let response = match state.take_fault(RequestKind::of(&method, &path)) {
                Some(Fault::Reset) => {
                    state.record(&method, &path, 0);
                    // Taking the duplicate out closes it, so hyper's drop is the last close.
                    if let Some(socket) = socket.lock().expect("socket lock").take() {
                        // Without linger 0 the client still sees the connection end early.
                        let _ = socket.set_linger(Some(Duration::ZERO));
                    }
                    return Err(ConnectionReset);
                }
                Some(Fault::Delay(delay)) => {
                    tokio::time::sleep(delay).await;
                    state.respond(&method, &path, request.headers())
                }
                Some(Fault::Trickle(every)) => {
                    let response = state.respond(&method, &path, request.headers());
                    state.record(&method, &path, response.status().as_u16());
                    let response = dated(response, state.clock.now());
                    return Ok(trickled(response, every).await);
                }
                Some(fault) => state.fault_response(fault),
                None => state.respond(&method, &path, request.headers()),
            };
            state.record(&method, &path, response.status().as_u16());
            Ok::<_, ConnectionReset>(dated(response, state.clock.now()).map(BodyExt::boxed))
        }
    });
    // Errors here are client hang-ups and our own resets: nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

// --- A body that trickles in -------------------------------------------------------------

/// Every answer's body type: whole (`Full`) or trickled.
type AnswerBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// `response` with its body sent one byte per `every`.
async fn trickled(response: Response<Full<Bytes>>, every: Duration) -> Response<AnswerBody> {
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(whole) => whole.to_bytes(),
        Err(never) => match never {},
    };
    let body = TrickleBody {
        rest: bytes,
        every,
        wait: Box::pin(tokio::time::sleep(every)),
    };
    Response::from_parts(parts, body.boxed())
}

struct TrickleBody {
    rest: Bytes,
    every: Duration,
    wait: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for TrickleBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(std::future::Future::poll(self.wait.as_mut(), cx));
        let every = self.every;
        self.wait
            .as_mut()
            .reset(tokio::time::Instant::now() + every);
        let byte = self.rest.split_to(1);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(byte))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

// --- The simulated instance's own clock, as IMDS shows it -------------------------------

/// Stamps `Date` from the simulator's clock, which a test may skew against the daemon's: the
/// real service sends one on every answer, and it is how the daemon measures clock skew.
/// (hyper adds its own `Date`, from the host clock, only when the answer has none.)
fn dated(mut response: Response<Full<Bytes>>, now: SystemTime) -> Response<Full<Bytes>> {
    let date = HeaderValue::from_str(&httpdate::fmt_http_date(now))
        .expect("an HTTP date is a valid header value");
    response.headers_mut().insert(hyper::header::DATE, date);
    response
}

/// Issues a fresh random set expiring at `expiration` (whole seconds, as IMDS writes it)
/// and remembers it.
fn issue_credentials(inner: &mut Inner, expiration: SystemTime) -> Credentials {
    let whole_seconds = expiration
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("expiration after 1970")
        .as_secs();
    let credentials = Credentials {
        access_key_id: format!("ASIA{}", random_string(UPPER_ALNUM, 16)),
        secret_access_key: Secret::new(random_string(BASE64, 40)),
        session_token: Secret::new(format!("IQoJb3JpZ2luX2Vj{}", random_string(BASE64, 284))),
        expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(whole_seconds),
        account_id: Some(ACCOUNT_ID.to_string()),
    };
    inner.issued_credentials.push(credentials.clone());
    credentials
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn random_string(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[fastrand::usize(..alphabet.len())]))
        .collect()
}

/// The credentials document exactly as IMDS lays it out.
fn credential_json(credentials: &Credentials, last_updated: SystemTime) -> String {
    imds_json(&[
        ("Code", "Success"),
        ("LastUpdated", &format_utc_timestamp(last_updated)),
        ("Type", "AWS-HMAC"),
        ("AccessKeyId", &credentials.access_key_id),
        ("SecretAccessKey", credentials.secret_access_key.expose()),
        ("Token", credentials.session_token.expose()),
        ("Expiration", &credentials.expiration_rfc3339()),
    ])
}

/// The extended document: the legacy fields with `AccountId` after `Type`.
fn extended_credential_json(credentials: &Credentials, last_updated: SystemTime) -> String {
    imds_json(&[
        ("Code", "Success"),
        ("LastUpdated", &format_utc_timestamp(last_updated)),
        ("Type", "AWS-HMAC"),
        ("AccountId", ACCOUNT_ID),
        ("AccessKeyId", &credentials.access_key_id),
        ("SecretAccessKey", credentials.secret_access_key.expose()),
        ("Token", credentials.session_token.expose()),
        ("Expiration", &credentials.expiration_rfc3339()),
    ])
}

fn info_json(role: &str, now: SystemTime) -> String {
    imds_json(&[
        ("Code", "Success"),
        ("LastUpdated", &format_utc_timestamp(now)),
        (
            "InstanceProfileArn",
            &format!("arn:aws:iam::{ACCOUNT_ID}:instance-profile/{role}"),
        ),
        ("InstanceProfileId", "AIPAEXAMPLEPROFILE000"),
    ])
}

/// A flat JSON object of strings, pretty-printed with IMDS's `" : "` separators.
fn imds_json(fields: &[(&str, &str)]) -> String {
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let lines: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("  {} : {}", quote(key), quote(value)))
        .collect();
    format!("{{\n{}\n}}", lines.join(",\n"))
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(SERVER, HeaderValue::from_static("EC2ws"));
    response
}

/// An error answer with the short body a person would recognise.
fn status_response(status: StatusCode) -> Response<Full<Bytes>> {
    let reason = status.canonical_reason().unwrap_or("Error");
    text_response(status, format!("{} - {reason}\n", status.as_u16()))
}

//! Faults a test injects into the simulated IMDS, request by request: a status, a delay, a
//! reset, a malformed, oversized, failing, expired or tampered document, a body that
//! trickles; queued for the next requests of a kind or drawn at random from a seed. Also the
//! connection that applies them, and the `Date` header from the instance's own clock, which
//! a test may skew against the daemon's. Test machinery: built with the `test-util` feature
//! only (see `docs/ARCHITECTURE.md`).

use super::documents::{credential_json, imds_json, status_response, text_response};
use super::{ImdsSimulator, State};
use crate::credentials::format_utc_timestamp;
use crate::imds::paths::{EXTENDED_PATH, ROLE_LIST_PATH, TOKEN_PATH};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;

/// How long a random "short delay" fault waits: well under any sane client timeout.
const RANDOM_FAULT_DELAY: Duration = Duration::from_millis(50);

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
    Field {
        /// The field of the IMDS document.
        name: &'static str,
        /// What it holds instead.
        value: String,
    },
}

/// The faults waiting for requests: queued ones first, then the random draw.
#[derive(Default)]
pub(super) struct FaultPlan {
    queued: VecDeque<QueuedFault>,
    random: Option<RandomFaults>,
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

impl ImdsSimulator {
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
            inner.journal.faults.queued.push_back(QueuedFault {
                target,
                fault,
                remaining: times,
            });
        }
    }

    /// Drops every queued fault: the end of a simulated outage.
    pub fn clear_faults(&self) {
        self.state().lock().journal.faults.queued.clear();
    }

    /// Gives each request, independently, a random retryable fault (500, 503, 429, a short
    /// delay or a reset) with `probability`; the sequence is reproducible from `seed`.
    /// A probability of 0 turns random faults off.
    pub fn set_random_faults(&self, probability: f64, seed: u64) {
        self.state().lock().journal.faults.random = (probability > 0.0).then(|| RandomFaults {
            probability,
            rng: fastrand::Rng::with_seed(seed),
        });
    }
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
        } else if is_get && path == ROLE_LIST_PATH {
            RequestKind::RoleList
        } else if is_get && (path.starts_with(ROLE_LIST_PATH) || path.starts_with(EXTENDED_PATH)) {
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
    /// Counts the request and takes the fault it gets, if any: queued faults first, then
    /// a random one.
    fn take_fault(&self, kind: RequestKind) -> Option<Fault> {
        let mut inner = self.lock();
        let journal = &mut inner.journal;
        let counts = &mut journal.counts;
        match kind {
            RequestKind::TokenPut => counts.token_puts += 1,
            RequestKind::RoleList => counts.role_lists += 1,
            RequestKind::CredentialGet => counts.credential_gets += 1,
            RequestKind::OtherGet => counts.other_gets += 1,
            RequestKind::Other => {}
        }
        let plan = &mut journal.faults;
        let queued = plan
            .queued
            .iter()
            .position(|queued| kind.is_targeted_by(queued.target));
        let fault = match queued {
            Some(index) => {
                let queued = &mut plan.queued[index];
                queued.remaining -= 1;
                let fault = queued.fault.clone();
                if queued.remaining == 0 {
                    plan.queued.remove(index);
                }
                Some(fault)
            }
            None => plan.random.as_mut().and_then(RandomFaults::draw),
        };
        if fault.is_some() {
            journal.counts.faults_injected += 1;
        }
        fault
    }

    /// The answer for an injected fault other than `Delay` and `Reset`.
    fn fault_response(&self, fault: Fault) -> Response<Full<Bytes>> {
        let now = self.clock.now();
        let one_off_set = |expiration: SystemTime| {
            let credentials = super::documents::random_credentials(expiration);
            self.lock()
                .journal
                .issued_credentials
                .push(credentials.clone());
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

/// Returned by the service to make hyper drop the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("simulated connection reset")]
struct ConnectionReset;

/// Answers every request on one connection, applying the fault it gets, journaling the
/// answer and dating it from the instance's clock.
pub(super) async fn serve_connection(stream: TcpStream, state: Arc<State>) {
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
                    // Monotonic: an injected delay is real time.
                    #[allow(clippy::disallowed_methods)]
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
        // Monotonic: a trickle waits real time between bytes.
        #[allow(clippy::disallowed_methods)]
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

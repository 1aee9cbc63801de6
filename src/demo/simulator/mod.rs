//! A simulated IMDSv2 that speaks real HTTP/1.1 on loopback, for the `demo` command and the
//! tests. The shipped simulator is plain: an instance with a role, credentials that rotate
//! on schedule, IMDSv2 session tokens and the extended credentials path, which is all the
//! demo needs. With the `test-util` feature (tests and benches only, see
//! `docs/ARCHITECTURE.md`) it also takes faults request by request (`faults.rs`) and lets a
//! test steer and read back the instance (`controls.rs`).
//!
//! It follows the real service where clients can tell (see `docs/DESIGN.md`): a token `PUT`
//! with a TTL of 1..21600 seconds, `401` for a missing, unknown or expired token, `403` for
//! a `PUT` that carries `X-Forwarded-For` or goes to another path, credentials as
//! `" : "`-separated JSON served as `text/plain` (`documents.rs`), errors as HTTP 200 with
//! `Code` other than `Success`. Time (token expiry, credential rotation) comes from the
//! injected [`SharedClock`], so tests can move hours ahead while the HTTP traffic stays real.
//! Rotation is checked lazily when a request looks at the credentials: no background task.

#[cfg(feature = "test-util")]
mod controls;
mod documents;
#[cfg(feature = "test-util")]
mod faults;

#[cfg(feature = "test-util")]
pub use controls::{RequestCounts, RequestRecord};
#[cfg(feature = "test-util")]
pub use faults::{Fault, Target};

use crate::clock::{SharedClock, SystemClock};
use crate::credentials::Credentials;
use crate::imds::paths::{
    EXTENDED_PATH, INFO_PATH, INSTANCE_ID_PATH, REGION_PATH, ROLE_LIST_PATH, TOKEN_HEADER,
    TOKEN_PATH, TOKEN_TTL_HEADER,
};
use bytes::Bytes;
use documents::{
    credential_json, extended_credential_json, info_json, status_response, text_response,
};
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The largest token TTL IMDS accepts: 6 hours.
const MAX_TOKEN_TTL_SECS: u64 = 21_600;

/// The simulated instance's id (`GET /latest/meta-data/instance-id`).
pub const INSTANCE_ID: &str = "i-0123456789abcdef0";
/// The simulated instance's region (`GET /latest/meta-data/placement/region`).
pub const REGION: &str = "us-east-1";
/// The account in the instance profile ARN (`GET /latest/meta-data/iam/info`).
pub const ACCOUNT_ID: &str = "123456789012";

/// How the simulator behaves. `Default` is a real-time instance with `demo-role` attached
/// and credentials as EC2 issues them: 6 h lifetime, replaced after 5 h.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// The instance's time: token expiry and credential rotation follow it.
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
    /// The instance, for the test controls; the server task holds its own handle on it.
    #[cfg(feature = "test-util")]
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
                #[cfg(feature = "test-util")]
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
    /// Token → expiry on the injected clock.
    live_tokens: HashMap<String, SystemTime>,
    /// What tests queued and what they read back (`test-util` only).
    #[cfg(feature = "test-util")]
    journal: controls::Journal,
}

struct IssuedSet {
    credentials: Credentials,
    last_updated: SystemTime,
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
                live_tokens: HashMap::new(),
                #[cfg(feature = "test-util")]
                journal: controls::Journal::default(),
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
            let credentials = documents::random_credentials(now + self.credential_lifetime);
            #[cfg(feature = "test-util")]
            inner.journal.issued_credentials.push(credentials.clone());
            inner.current = Some(IssuedSet {
                credentials,
                last_updated: now,
            });
        }
        inner.current.as_ref()
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
                .get(TOKEN_TTL_HEADER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok())
                .filter(|ttl| (1..=MAX_TOKEN_TTL_SECS).contains(ttl))
            else {
                return status_response(StatusCode::BAD_REQUEST);
            };
            let token = documents::random_token();
            // Forget expired tokens so a soak test does not grow the table forever.
            inner.live_tokens.retain(|_, expiry| *expiry > now);
            inner
                .live_tokens
                .insert(token.clone(), now + Duration::from_secs(ttl));
            #[cfg(feature = "test-util")]
            inner.journal.issued_tokens.push(token.clone());
            let mut response = text_response(StatusCode::OK, token);
            response
                .headers_mut()
                .insert(TOKEN_TTL_HEADER, HeaderValue::from(ttl));
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
            ROLE_LIST_PATH => match &inner.role {
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
                let (name, extended) = match path.strip_prefix(EXTENDED_PATH) {
                    Some(name) if self.extended_credentials => (Some(name), true),
                    Some(_) => (None, true),
                    None => (path.strip_prefix(ROLE_LIST_PATH), false),
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
                    // Monotonic: a pause after a failed accept.
                    #[allow(clippy::disallowed_methods)]
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

/// Answers every request on one connection as the real service would. (With `test-util`,
/// `faults::serve_connection` takes its place and applies the faults a test queued.)
#[cfg(not(feature = "test-util"))]
async fn serve_connection(stream: tokio::net::TcpStream, state: Arc<State>) {
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let response = state.respond(request.method(), request.uri().path(), request.headers());
        tracing::debug!(
            method = %request.method(),
            path = request.uri().path(),
            status = response.status().as_u16(),
            "simulated IMDS answered"
        );
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    });
    // Errors here are client hang-ups: nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

#[cfg(feature = "test-util")]
use faults::serve_connection;

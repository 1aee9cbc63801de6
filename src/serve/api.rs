//! The daemon's HTTP routes (`docs/DESIGN.md`, "Socket API"): credentials in three
//! formats, status, health and Prometheus metrics, each read from the refresher's watch
//! channel at the moment of the request. Validity is checked against the clock when the
//! answer is made, so a set that expired since its publication is never served.
//!
//! Two listeners share one [`Api`] (and so one rendering of each credentials set): the unix
//! socket gets every route, the container endpoint ([`crate::serve::container`]) only
//! `/v1/credentials` in the container shape. [`Endpoint`] says which one asks; each has its
//! own request counters.
//!
//! Only credential answers carry secrets; `/v1/status`, `/v1/consumers` and `/metrics` are
//! built from fields that hold none (role name, times, counters, sink paths, error
//! messages, the programs of [`super::consumers`]).
//!
//! [`Api::respond_to`] is the entry of both listeners: the uid's rate limit
//! ([`super::rate_limit`]) first, then the route, and the consumer table records every
//! credentials request and every refusal.

use crate::clock::SharedClock;
use crate::credentials::render::{render_env, EnvSyntax};
use crate::credentials::{format_utc_timestamp, Credentials};
use crate::health::metrics::{Metrics, RequestCounters};
use crate::health::SinkHealth;
use crate::imds::clock_skew::ClockSkew;
use crate::refresh::state::{CredentialState, StateReceiver};
use crate::serve::consumers::{Consumer, Consumers, Outcome};
use crate::serve::rate_limit::{retry_after_seconds, RateLimit, RateLimiter};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Response, StatusCode, Uri};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use zeroize::Zeroizing;

/// Response body type: every answer is small and built whole.
pub type Body = Full<Bytes>;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
/// At start (and after socket activation), how long a credentials request waits for the
/// refresher's first outcome before it is answered anyway: the first refresh takes about
/// 100 ms against IMDS, and the client commands give up after 5 s.
pub const FIRST_OUTCOME_WAIT: Duration = Duration::from_secs(3);
/// Longest client-supplied text (a profile or format name) echoed back in an error.
const ECHO_LIMIT: usize = 64;

/// What the routes read. Built once by the daemon and shared by every connection.
pub struct Api {
    instance: Channel,
    profiles: BTreeMap<String, Channel>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    sinks: SinkHealth,
    consumers: Consumers,
    limiter: RateLimiter,
}

/// One refresher channel and the credential answers rendered from its current set.
struct Channel {
    receiver: StateReceiver,
    /// Whether the state's `role` is a role ARN (an `[[assume]]` profile's), which the
    /// container shape then reports as `RoleArn`. The instance role's is only a name.
    role_is_arn: bool,
    rendered: Mutex<Rendered>,
}

/// The bodies of one credentials set, rendered on first use and kept until the set changes:
/// building the JSON on every request cost a quarter of the throughput
/// (`benches/socket_load.rs`). Cleared when the channel has no valid set, so rendered
/// secrets of an expired set do not linger.
#[derive(Default)]
struct Rendered {
    creds: Option<Arc<Credentials>>,
    bodies: [Option<Bytes>; Format::COUNT],
}

impl Channel {
    fn new(receiver: StateReceiver, role_is_arn: bool) -> Self {
        Channel {
            receiver,
            role_is_arn,
            rendered: Mutex::new(Rendered::default()),
        }
    }

    /// The body of `format` for `creds`, which must be this channel's current valid set.
    fn body(&self, creds: &Arc<Credentials>, format: Format) -> Bytes {
        let mut rendered = self.rendered.lock().expect("rendered bodies lock");
        if !rendered
            .creds
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, creds))
        {
            *rendered = Rendered {
                creds: Some(Arc::clone(creds)),
                bodies: Default::default(),
            };
        }
        rendered.bodies[format.slot()]
            .get_or_insert_with(|| {
                let mut text = format.render(creds, self.role_arn().as_deref());
                // The last clone of the body dropped (the cache's or a response's) zeroizes it.
                Bytes::from_owner(Zeroizing::new(std::mem::take(&mut *text).into_bytes()))
            })
            .clone()
    }

    /// A profile's role ARN, constant for the profile's life (so caching bodies that hold
    /// it by credentials set is safe).
    fn role_arn(&self) -> Option<String> {
        if self.role_is_arn {
            self.receiver.borrow().role.clone()
        } else {
            None
        }
    }

    fn forget_rendered(&self) {
        *self.rendered.lock().expect("rendered bodies lock") = Rendered::default();
    }
}

/// The paths we answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Credentials,
    Status,
    Health,
    Metrics,
    Consumers,
}

impl Route {
    fn from_path(path: &str) -> Option<Route> {
        match path {
            "/v1/credentials" => Some(Route::Credentials),
            "/v1/status" => Some(Route::Status),
            "/healthz" => Some(Route::Health),
            "/metrics" => Some(Route::Metrics),
            "/v1/consumers" => Some(Route::Consumers),
            _ => None,
        }
    }
}

/// `?format=` of a credentials request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `credential_process` Version 1 JSON (also `json` and the default).
    Process,
    /// The container-credentials shape (`Token`, not `SessionToken`).
    Container,
    /// `export NAME='value'` lines.
    Env,
}

impl Format {
    const COUNT: usize = 3;

    fn slot(self) -> usize {
        match self {
            Format::Process => 0,
            Format::Container => 1,
            Format::Env => 2,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Process | Format::Container => JSON,
            Format::Env => TEXT,
        }
    }

    fn render(self, creds: &Credentials, role_arn: Option<&str>) -> Zeroizing<String> {
        match self {
            Format::Process => Zeroizing::new(creds.to_process_json()),
            Format::Container => Zeroizing::new(container_json(creds, role_arn)),
            Format::Env => render_env(creds, EnvSyntax::Sh),
        }
    }
}

/// The listener a request came in on: it decides the routes and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The unix socket: every route, every format.
    Socket,
    /// The container-credentials endpoint: `/v1/credentials` in the container shape only.
    Container,
}

impl Endpoint {
    fn counters(self, metrics: &Metrics) -> &RequestCounters {
        match self {
            Endpoint::Socket => &metrics.socket_requests,
            Endpoint::Container => &metrics.container_requests,
        }
    }
}

/// Every status the API answers with; each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    TooManyRequests,
    Unavailable,
}

impl Status {
    const ALL: [Status; 8] = [
        Status::Ok,
        Status::BadRequest,
        Status::Unauthorized,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::TooManyRequests,
        Status::Unavailable,
    ];

    fn code(self) -> StatusCode {
        match self {
            Status::Ok => StatusCode::OK,
            Status::BadRequest => StatusCode::BAD_REQUEST,
            Status::Unauthorized => StatusCode::UNAUTHORIZED,
            Status::Forbidden => StatusCode::FORBIDDEN,
            Status::NotFound => StatusCode::NOT_FOUND,
            Status::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Status::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn counter(self, counters: &RequestCounters) -> &AtomicU64 {
        match self {
            Status::Ok => &counters.ok,
            Status::BadRequest => &counters.bad_request,
            Status::Unauthorized => &counters.unauthorized,
            Status::Forbidden => &counters.forbidden,
            Status::NotFound => &counters.not_found,
            Status::MethodNotAllowed => &counters.method_not_allowed,
            Status::TooManyRequests => &counters.too_many_requests,
            Status::Unavailable => &counters.unavailable,
        }
    }
}

/// Why a request was not answered with what it asked for. The message goes to the client
/// in the JSON error; none holds a secret.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("unknown format {0:?}: use json, container or env")]
    UnknownFormat(String),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("this peer is not allowed by socket.allow_uids / socket.allow_gids")]
    Forbidden,
    #[error("no Authorization header: send the token from the file named by AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")]
    MissingToken,
    #[error("the Authorization header is not the current token: read the token file again")]
    WrongToken,
    #[error("forwarded requests (X-Forwarded-For, Forwarded) are refused")]
    Forwarded,
    #[error("only loopback peers may use the container endpoint")]
    NotLoopback,
    #[error("no such path {0:?}")]
    NotFound(String),
    #[error("no [[assume]] profile named {0:?}")]
    UnknownProfile(String),
    #[error("method {0} not allowed: only GET")]
    MethodNotAllowed(Method),
    #[error("too many requests from this uid (socket.rate_limit is {per_second}/s); retry after {retry_after} s")]
    RateLimited { per_second: u32, retry_after: u64 },
    #[error("{0}")]
    NoCredentials(String),
}

impl ApiError {
    /// Exhaustive on purpose: a new variant does not compile until someone decides what
    /// the client sees.
    fn status(&self) -> Status {
        match self {
            ApiError::UnknownFormat(_) | ApiError::BadQuery(_) => Status::BadRequest,
            ApiError::MissingToken => Status::Unauthorized,
            ApiError::Forbidden
            | ApiError::WrongToken
            | ApiError::Forwarded
            | ApiError::NotLoopback => Status::Forbidden,
            ApiError::NotFound(_) | ApiError::UnknownProfile(_) => Status::NotFound,
            ApiError::MethodNotAllowed(_) => Status::MethodNotAllowed,
            ApiError::RateLimited { .. } => Status::TooManyRequests,
            ApiError::NoCredentials(_) => Status::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownFormat(_) => "UnknownFormat",
            ApiError::BadQuery(_) => "BadQuery",
            ApiError::Forbidden => "Forbidden",
            ApiError::MissingToken => "MissingToken",
            ApiError::WrongToken => "WrongToken",
            ApiError::Forwarded => "Forwarded",
            ApiError::NotLoopback => "NotLoopback",
            ApiError::NotFound(_) => "NotFound",
            ApiError::UnknownProfile(_) => "UnknownProfile",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::RateLimited { .. } => "RateLimited",
            ApiError::NoCredentials(_) => "NoCredentials",
        }
    }

    fn into_response(self) -> (Status, Response<Body>) {
        let status = self.status();
        let body = json!({ "code": self.code(), "message": self.to_string() }).to_string();
        let mut response = reply(status, JSON, body);
        match self {
            ApiError::MethodNotAllowed(_) => {
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET"));
            }
            ApiError::RateLimited { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        (status, response)
    }
}

impl Api {
    /// `instance`: the refresher's channel for the instance role. `profiles`: one channel
    /// per `[[assume]]` profile, by profile name (`?profile=NAME`). `sinks`: the daemon's
    /// sink table, shown in `/v1/status` and `/metrics`.
    pub fn new(
        instance: StateReceiver,
        profiles: BTreeMap<String, StateReceiver>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        sinks: SinkHealth,
    ) -> Self {
        Api {
            instance: Channel::new(instance, false),
            profiles: profiles
                .into_iter()
                .map(|(name, receiver)| (name, Channel::new(receiver, true)))
                .collect(),
            clock,
            metrics,
            sinks,
            consumers: Consumers::default(),
            limiter: RateLimiter::new(RateLimit { per_second: 0 }),
        }
    }

    /// Limits every uid but root to `limit` (none by default).
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.limiter = RateLimiter::new(limit);
        self
    }

    /// Answers a request from `consumer` on `endpoint` (a peer and, on the container
    /// endpoint, a token already checked): over its uid's rate limit, `429`; else the
    /// route. Credentials requests and refusals go into the consumer table.
    pub fn respond_to(
        &self,
        endpoint: Endpoint,
        consumer: &Consumer,
        method: &Method,
        uri: &Uri,
    ) -> Response<Body> {
        if let Err(wait) = self.limiter.check(consumer.uid, Instant::now()) {
            self.record(endpoint, consumer, uri, Outcome::RateLimited);
            let error = ApiError::RateLimited {
                per_second: self.limiter.limit().per_second,
                retry_after: retry_after_seconds(wait),
            };
            return self.refuse(endpoint, error);
        }
        if Route::from_path(uri.path()) == Some(Route::Credentials) {
            self.record(endpoint, consumer, uri, Outcome::Answered);
        }
        self.respond(endpoint, method, uri)
    }

    /// [`Self::refuse`], recording the refusal against `consumer`.
    pub fn refuse_consumer(
        &self,
        endpoint: Endpoint,
        consumer: &Consumer,
        uri: &Uri,
        error: ApiError,
    ) -> Response<Body> {
        self.record(endpoint, consumer, uri, Outcome::Refused);
        self.refuse(endpoint, error)
    }

    /// Records a refusal made before any request was read (a peer not allowed).
    pub fn note_refused(&self, endpoint: Endpoint, consumer: &Consumer) {
        self.record(endpoint, consumer, &Uri::from_static("/"), Outcome::Refused);
    }

    fn record(&self, endpoint: Endpoint, consumer: &Consumer, uri: &Uri, outcome: Outcome) {
        let name = match endpoint {
            Endpoint::Socket => "socket",
            Endpoint::Container => "container",
        };
        let profile = self.profile_named(uri.query());
        let now = self.clock.now();
        self.consumers
            .record(name, consumer, profile.as_deref(), outcome, now);
    }

    /// The `?profile=` of a query as the consumer table keeps it: a configured profile's
    /// name, or `(unknown)` so that made-up names do not each make a row.
    fn profile_named(&self, query: Option<&str>) -> Option<String> {
        let asked = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(key, _)| key == "profile")
            .map(|(_, value)| value.into_owned())?;
        Some(match self.profiles.contains_key(&asked) {
            true => asked,
            false => "(unknown)".to_string(),
        })
    }

    /// Answers one request that `endpoint` has let through (an allowed peer; on the
    /// container endpoint, the right token too). Only the method and URI matter: every route
    /// is a GET without a body.
    pub fn respond(&self, endpoint: Endpoint, method: &Method, uri: &Uri) -> Response<Body> {
        let routed = match endpoint {
            Endpoint::Socket => self.route(method, uri),
            Endpoint::Container => self.container_route(method, uri),
        };
        let (status, response) = match routed {
            Ok(response) => (Status::Ok, response),
            Err(error) => error.into_response(),
        };
        Metrics::incr(status.counter(endpoint.counters(&self.metrics)));
        tracing::debug!(?endpoint, %method, path = uri.path(), status = status.code().as_u16(), "request");
        response
    }

    /// Resolves when the channel a credentials request at `uri` reads has had its first
    /// outcome, or after [`FIRST_OUTCOME_WAIT`]; at once for other routes and afterwards.
    pub fn first_outcome(
        &self,
        uri: &Uri,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let channel = if Route::from_path(uri.path()) == Some(Route::Credentials) {
            match requested_profile(uri) {
                None => Some(&self.instance),
                Some(name) => self.profiles.get(&name),
            }
        } else {
            None
        };
        let mut receiver = channel.map(|c| c.receiver.clone());
        async move {
            if let Some(receiver) = &mut receiver {
                let settled = receiver.wait_for(CredentialState::has_outcome);
                // Timed out or the refresher is gone: the answer says what is known.
                let _ = tokio::time::timeout(FIRST_OUTCOME_WAIT, settled).await;
            }
        }
    }

    /// Counts a connection accepted on the socket.
    pub fn note_connection(&self) {
        Metrics::incr(&self.metrics.socket_connections);
    }

    /// The answer to a request `endpoint` refuses before routing: a peer it does not
    /// allow, a missing or wrong token, a forwarded request.
    pub fn refuse(&self, endpoint: Endpoint, error: ApiError) -> Response<Body> {
        let (status, response) = error.into_response();
        Metrics::incr(status.counter(endpoint.counters(&self.metrics)));
        response
    }

    fn route(&self, method: &Method, uri: &Uri) -> Result<Response<Body>, ApiError> {
        let route =
            Route::from_path(uri.path()).ok_or_else(|| ApiError::NotFound(echo(uri.path())))?;
        if method != Method::GET {
            return Err(ApiError::MethodNotAllowed(method.clone()));
        }
        match route {
            Route::Credentials => self.credentials(uri.query(), Endpoint::Socket),
            Route::Status => Ok(reply(Status::Ok, JSON, self.status().to_string())),
            Route::Health => {
                self.valid(&self.instance, None)?;
                Ok(reply(Status::Ok, TEXT, "ok\n"))
            }
            Route::Metrics => Ok(reply(Status::Ok, PROMETHEUS, self.prometheus())),
            Route::Consumers => Ok(reply(
                Status::Ok,
                JSON,
                self.consumers.to_json().to_string(),
            )),
        }
    }

    /// The container endpoint serves credentials only, in the one shape SDKs read: the
    /// status and metrics routes stay on the socket, where the file mode guards them.
    fn container_route(&self, method: &Method, uri: &Uri) -> Result<Response<Body>, ApiError> {
        if Route::from_path(uri.path()) != Some(Route::Credentials) {
            return Err(ApiError::NotFound(echo(uri.path())));
        }
        if method != Method::GET {
            return Err(ApiError::MethodNotAllowed(method.clone()));
        }
        self.credentials(uri.query(), Endpoint::Container)
    }

    fn credentials(
        &self,
        query: Option<&str>,
        endpoint: Endpoint,
    ) -> Result<Response<Body>, ApiError> {
        let (mut format, parameters) = match endpoint {
            Endpoint::Socket => (Format::Process, "format or profile"),
            Endpoint::Container => (Format::Container, "profile"),
        };
        let mut profile = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "format" if endpoint == Endpoint::Socket => {
                    format = match value.as_ref() {
                        "json" | "process" => Format::Process,
                        "container" => Format::Container,
                        "env" => Format::Env,
                        other => return Err(ApiError::UnknownFormat(echo(other))),
                    }
                }
                "profile" => profile = Some(value.into_owned()),
                other => {
                    return Err(ApiError::BadQuery(format!(
                        "unknown parameter {:?}: use {parameters}",
                        echo(other)
                    )))
                }
            }
        }
        let channel = match &profile {
            None => &self.instance,
            Some(name) => self
                .profiles
                .get(name)
                .ok_or_else(|| ApiError::UnknownProfile(echo(name)))?,
        };
        let creds = self.valid(channel, profile.as_deref())?;
        let body = channel.body(&creds, format);
        Ok(reply(Status::Ok, format.content_type(), body))
    }

    /// The credentials of a channel if they are valid now, else why not.
    fn valid(
        &self,
        channel: &Channel,
        profile: Option<&str>,
    ) -> Result<Arc<Credentials>, ApiError> {
        let now = self.clock.now();
        let state = channel.receiver.borrow();
        if let Some(creds) = state.valid_credentials(now) {
            return Ok(Arc::clone(creds));
        }
        channel.forget_rendered();
        let whose = match profile {
            None => "the instance role".to_string(),
            Some(name) => format!("profile {name:?}"),
        };
        let mut message = match &state.credentials {
            Some(expired) => format!(
                "the credentials of {whose} expired at {}",
                expired.expiration_rfc3339()
            ),
            None => format!("no valid credentials for {whose}"),
        };
        match &state.last_error {
            Some(error) => write!(message, "; last error: {error}").expect("write to String"),
            None if state.last_refresh.is_none() => {
                message.push_str("; no refresh has succeeded yet")
            }
            None => {}
        }
        Err(ApiError::NoCredentials(message))
    }

    /// `/v1/status`: the instance role's summary at the top level, then the assumed-role
    /// profiles, the sinks and the counters.
    fn status(&self) -> Value {
        let now = self.clock.now();
        let mut status = summary(&self.instance.receiver.borrow(), now);
        status.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        let profiles: Map<String, Value> = self
            .profiles
            .iter()
            .map(|(name, channel)| {
                let state = channel.receiver.borrow();
                (name.clone(), Value::Object(summary(&state, now)))
            })
            .collect();
        status.insert("profiles".into(), Value::Object(profiles));
        let sinks: Vec<Value> = self
            .sinks
            .snapshot()
            .into_iter()
            .map(|sink| {
                json!({
                    "kind": sink.kind,
                    "target": sink.target,
                    "last_success": sink.last_success.map(format_utc_timestamp),
                    "last_error": sink.last_error,
                    "hook_error": sink.hook_error,
                })
            })
            .collect();
        status.insert("sinks".into(), sinks.into());
        let skew = self.metrics.clock_skew.get();
        status.insert(
            "clock_skew_seconds".into(),
            skew.map(|s| s.imds_ahead_secs).into(),
        );
        status.insert(
            "clock_skew_warning".into(),
            skew.filter(|s| s.is_significant())
                .map(ClockSkew::describe)
                .into(),
        );
        let m = &*self.metrics;
        // Only the statuses answered so far: `status` prints every counter on one line, and
        // a daemon without the container endpoint should not list seven zeros for it.
        // `/metrics` keeps every series.
        let by_code = |counters: &RequestCounters| -> Map<String, Value> {
            Status::ALL
                .iter()
                .map(|s| {
                    (
                        s.code().as_u16().to_string(),
                        Metrics::get(s.counter(counters)),
                    )
                })
                .filter(|(_, count)| *count > 0)
                .map(|(code, count)| (code, count.into()))
                .collect()
        };
        status.insert(
            "counters".into(),
            json!({
                "imds_token_requests": Metrics::get(&m.imds_token_requests),
                "imds_get_requests": Metrics::get(&m.imds_get_requests),
                "imds_errors": Metrics::get(&m.imds_errors),
                "refresh_successes": Metrics::get(&m.refresh_successes),
                "refresh_failures": Metrics::get(&m.refresh_failures),
                "socket_connections": Metrics::get(&m.socket_connections),
                "socket_requests": by_code(&m.socket_requests),
                "container_requests": by_code(&m.container_requests),
            }),
        );
        Value::Object(status)
    }

    /// `/metrics` in the Prometheus text exposition format.
    fn prometheus(&self) -> String {
        let now = self.clock.now();
        let state = self.instance.receiver.borrow().clone();
        let m = &*self.metrics;
        let mut out = String::new();
        let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
        family(
            &mut out,
            "imds_credd_build_info",
            "gauge",
            "Version of the running daemon.",
            &[(version, 1)],
        );
        let valid = u64::from(state.valid_credentials(now).is_some());
        family(
            &mut out,
            "imds_credd_credentials_valid",
            "gauge",
            "1 when valid instance-role credentials are held.",
            &[(String::new(), valid)],
        );
        if let Some(creds) = &state.credentials {
            family(
                &mut out,
                "imds_credd_credentials_expiry_timestamp_seconds",
                "gauge",
                "When the held instance-role credentials expire.",
                &[(String::new(), unix_seconds(creds.expiration))],
            );
        }
        if let Some(skew) = self.metrics.clock_skew.get() {
            // Signed, so not through `family`, whose samples are counts.
            writeln!(
                out,
                "# HELP imds_credd_clock_skew_seconds IMDS's clock minus the instance's, from IMDS's Date header; past 300 either way expiry is judged on IMDS time.\n# TYPE imds_credd_clock_skew_seconds gauge\nimds_credd_clock_skew_seconds {}",
                skew.imds_ahead_secs
            )
            .expect("write to String");
        }
        if let Some(at) = state.last_refresh {
            family(
                &mut out,
                "imds_credd_last_refresh_timestamp_seconds",
                "gauge",
                "When credentials were last fetched from IMDS.",
                &[(String::new(), unix_seconds(at))],
            );
        }
        family(
            &mut out,
            "imds_credd_imds_requests_total",
            "counter",
            "Requests sent to IMDS, by kind (token PUT or GET).",
            &[
                (
                    "kind=\"token\"".into(),
                    Metrics::get(&m.imds_token_requests),
                ),
                ("kind=\"get\"".into(), Metrics::get(&m.imds_get_requests)),
            ],
        );
        family(
            &mut out,
            "imds_credd_imds_errors_total",
            "counter",
            "IMDS requests that failed, before retries.",
            &[(String::new(), Metrics::get(&m.imds_errors))],
        );
        family(
            &mut out,
            "imds_credd_refreshes_total",
            "counter",
            "Refresh attempts, by result.",
            &[
                (
                    "result=\"success\"".into(),
                    Metrics::get(&m.refresh_successes),
                ),
                (
                    "result=\"failure\"".into(),
                    Metrics::get(&m.refresh_failures),
                ),
            ],
        );
        family(
            &mut out,
            "imds_credd_socket_connections_total",
            "counter",
            "Connections accepted on the unix socket.",
            &[(String::new(), Metrics::get(&m.socket_connections))],
        );
        let by_status = |counters: &RequestCounters| -> Vec<(String, u64)> {
            Status::ALL
                .iter()
                .map(|s| {
                    (
                        format!("status=\"{}\"", s.code().as_u16()),
                        Metrics::get(s.counter(counters)),
                    )
                })
                .collect()
        };
        family(
            &mut out,
            "imds_credd_socket_requests_total",
            "counter",
            "Requests answered on the unix socket, by HTTP status.",
            &by_status(&m.socket_requests),
        );
        family(
            &mut out,
            "imds_credd_container_requests_total",
            "counter",
            "Requests answered on the container-credentials endpoint, by HTTP status.",
            &by_status(&m.container_requests),
        );
        let by_uid: Vec<(String, u64)> = self
            .consumers
            .per_uid()
            .into_iter()
            .flat_map(|(uid, counts)| {
                let uid = uid.map_or_else(|| "unknown".to_string(), |uid| uid.to_string());
                [
                    ("answered", counts.answered),
                    ("refused", counts.refused),
                    ("rate_limited", counts.rate_limited),
                ]
                .map(|(result, count)| (format!("uid=\"{uid}\",result=\"{result}\""), count))
            })
            .collect();
        family(
            &mut out,
            "imds_credd_consumer_requests_total",
            "counter",
            "Credentials requests and refusals on the socket and the container endpoint, by peer uid and result.",
            &by_uid,
        );
        family(
            &mut out,
            "imds_credd_consumers_evicted_total",
            "counter",
            "Rows dropped from the consumer table to keep it bounded.",
            &[(String::new(), self.consumers.evicted())],
        );
        let sinks = self.sinks.snapshot();
        let sink_labels = |kind: &str, target: &str| {
            format!(
                "kind=\"{}\",target=\"{}\"",
                label_value(kind),
                label_value(target)
            )
        };
        let errors: Vec<(String, u64)> = sinks
            .iter()
            .map(|s| {
                (
                    sink_labels(s.kind, &s.target),
                    u64::from(s.last_error.is_some()),
                )
            })
            .collect();
        family(
            &mut out,
            "imds_credd_sink_error",
            "gauge",
            "1 while a sink's last attempt failed.",
            &errors,
        );
        let successes: Vec<(String, u64)> = sinks
            .iter()
            .filter_map(|s| {
                Some((
                    sink_labels(s.kind, &s.target),
                    unix_seconds(s.last_success?),
                ))
            })
            .collect();
        family(
            &mut out,
            "imds_credd_sink_last_success_timestamp_seconds",
            "gauge",
            "When a sink last published successfully.",
            &successes,
        );
        out
    }
}

/// A response with our fixed headers: nothing here may be cached by a proxy or a client.
fn reply(status: Status, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status.code();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The shape the SDKs' container-credentials provider reads, with `AccountId` when known.
/// `RoleArn` only for an assumed-role profile: IMDS names the instance role, not its ARN.
fn container_json(creds: &Credentials, role_arn: Option<&str>) -> String {
    let mut doc = json!({
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.expose(),
        "Token": creds.session_token.expose(),
        "Expiration": creds.expiration_rfc3339(),
    });
    if let Some(arn) = role_arn {
        doc["RoleArn"] = arn.into();
    }
    if let Some(account) = &creds.account_id {
        doc["AccountId"] = account.as_str().into();
    }
    doc.to_string()
}

/// A channel's state for `/v1/status`; no secret field is read.
fn summary(state: &CredentialState, now: SystemTime) -> Map<String, Value> {
    let expiration = state.credentials.as_ref().map(|c| c.expiration);
    let expires_in = expiration.map(|at| match at.duration_since(now) {
        Ok(left) => left.as_secs() as i64,
        Err(past) => -(past.duration().as_secs() as i64),
    });
    let mut map = Map::new();
    map.insert("role".into(), state.role.clone().into());
    let account = state
        .credentials
        .as_ref()
        .and_then(|c| c.account_id.clone());
    map.insert("account_id".into(), account.into());
    map.insert(
        "credentials_valid".into(),
        state.valid_credentials(now).is_some().into(),
    );
    map.insert(
        "expiration".into(),
        expiration.map(format_utc_timestamp).into(),
    );
    map.insert("expires_in_seconds".into(), expires_in.into());
    map.insert(
        "last_refresh".into(),
        state.last_refresh.map(format_utc_timestamp).into(),
    );
    map.insert(
        "next_refresh".into(),
        state.next_refresh.map(format_utc_timestamp).into(),
    );
    map.insert("last_error".into(), state.last_error.clone().into());
    map
}

/// One metric family: HELP and TYPE lines, then one sample per label set.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}").expect("write to String");
    for (labels, value) in samples {
        if labels.is_empty() {
            writeln!(out, "{name} {value}").expect("write to String");
        } else {
            writeln!(out, "{name}{{{labels}}} {value}").expect("write to String");
        }
    }
}

/// Escapes a label value as the exposition format requires.
fn label_value(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The `profile` a credentials request names in its query, if any.
fn requested_profile(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(key, _)| key == "profile")
        .map(|(_, value)| value.into_owned())
}

/// Client-supplied text shortened before it is echoed in an error.
fn echo(text: &str) -> String {
    text.chars().take(ECHO_LIMIT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn every_error_maps_to_its_status() {
        let cases = [
            (ApiError::UnknownFormat("x".into()), 400),
            (ApiError::BadQuery("x".into()), 400),
            (ApiError::Forbidden, 403),
            (ApiError::MissingToken, 401),
            (ApiError::WrongToken, 403),
            (ApiError::Forwarded, 403),
            (ApiError::NotLoopback, 403),
            (ApiError::NotFound("/x".into()), 404),
            (ApiError::UnknownProfile("p".into()), 404),
            (ApiError::MethodNotAllowed(Method::POST), 405),
            (
                ApiError::RateLimited {
                    per_second: 1,
                    retry_after: 1,
                },
                429,
            ),
            (ApiError::NoCredentials("none".into()), 503),
        ];
        for (error, code) in cases {
            assert_eq!(error.status().code().as_u16(), code, "{error}");
        }
    }
}

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
//!
//! Here: routing, the statuses and [`ApiError`]'s mapping to them, the shared response
//! shape. The answers themselves: `credentials` (the three credentials formats),
//! `status` (`/v1/status`, `/healthz`, `/v1/consumers`), `metrics` (Prometheus text),
//! `unit` (what the unit-credentials socket asks for: a body without HTTP around it).

mod credentials;
mod metrics;
mod status;
#[cfg(target_os = "linux")]
mod unit;

use crate::clock::SharedClock;
use crate::config::RateLimit;
use crate::health::metrics::{ClosedCounters, Metrics, RequestCounters};
use crate::health::SinkHealth;
use crate::refresh::state::{CredentialState, StateReceiver};
use crate::serve::consumers::{Consumer, Consumers, RequestResult};
use crate::serve::rate_limit::{retry_after_seconds, Budget, RateLimiter};
use bytes::Bytes;
use credentials::Channel;
pub use credentials::Format;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Response, StatusCode, Uri};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Response body type: every answer is small and built whole.
pub type Body = Full<Bytes>;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
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

    fn closed(self, metrics: &Metrics) -> &ClosedCounters {
        match self {
            Endpoint::Socket => &metrics.socket_closed,
            Endpoint::Container => &metrics.container_closed,
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
    /// `?format=` names no format.
    #[error("unknown format {0:?}: use json, container or env")]
    UnknownFormat(String),
    /// The query string is malformed.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// The peer is not in the socket's allow lists.
    #[error("this peer is not allowed by socket.allow_uids / socket.allow_gids")]
    Forbidden,
    /// A container request without its token.
    #[error("no Authorization header: send the token from the file named by AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")]
    MissingToken,
    /// A container request with a token that is not the current one.
    #[error("the Authorization header is not the current token: read the token file again")]
    WrongToken,
    /// A request that came through a proxy.
    #[error("forwarded requests (X-Forwarded-For, Forwarded) are refused")]
    Forwarded,
    /// A container request from a peer not on loopback.
    #[error("only loopback peers may use the container endpoint")]
    NotLoopback,
    /// A token shown from an address its client's `allow_from` does not list.
    #[error("this token is not accepted from this address (container.client.allow_from)")]
    NotAllowedFrom,
    /// A token asked for a profile it does not grant.
    #[error("this token grants {0} only")]
    ProfileNotGranted(String),
    /// No route at this path.
    #[error("no such path {0:?}")]
    NotFound(String),
    /// `?profile=` names no `[[assume]]` profile.
    #[error("no [[assume]] profile named {0:?}")]
    UnknownProfile(String),
    /// A method other than GET.
    #[error("method {0} not allowed: only GET")]
    MethodNotAllowed(Method),
    /// The peer's uid (or container address) is over its rate limit.
    #[error("too many requests from this uid (a container: this address; socket.rate_limit is {per_second}/s); retry after {retry_after} s")]
    RateLimited {
        /// The configured rate.
        per_second: u32,
        /// Seconds until a token is back.
        retry_after: u64,
    },
    /// No valid set to serve; the text says why.
    #[error("{0}")]
    NoCredentials(String),
    /// The peer's uid holds all its connections.
    #[error("this uid holds all the connections it may ({cap}); close one, or retry after 1 s")]
    TooManyConnections {
        /// Connections a uid may hold.
        cap: usize,
    },
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
            | ApiError::NotLoopback
            | ApiError::NotAllowedFrom
            | ApiError::ProfileNotGranted(_) => Status::Forbidden,
            ApiError::NotFound(_) | ApiError::UnknownProfile(_) => Status::NotFound,
            ApiError::MethodNotAllowed(_) => Status::MethodNotAllowed,
            ApiError::RateLimited { .. } => Status::TooManyRequests,
            ApiError::NoCredentials(_) | ApiError::TooManyConnections { .. } => Status::Unavailable,
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
            ApiError::NotAllowedFrom => "NotAllowedFrom",
            ApiError::ProfileNotGranted(_) => "ProfileNotGranted",
            ApiError::NotFound(_) => "NotFound",
            ApiError::UnknownProfile(_) => "UnknownProfile",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::RateLimited { .. } => "RateLimited",
            ApiError::NoCredentials(_) => "NoCredentials",
            ApiError::TooManyConnections { .. } => "TooManyConnections",
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
            ApiError::TooManyConnections { .. } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
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
        let budget = match (consumer.uid, consumer.address) {
            (None, Some(address)) => Budget::Address(address),
            (uid, _) => Budget::Uid(uid),
        };
        // Monotonic: the rate limit's budget refills with elapsed time, whatever the wall clock does.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let limited = match consumer.is_root() {
            true => Ok(()),
            false => self.limiter.check(budget, now),
        };
        if let Err(wait) = limited {
            self.record(endpoint, consumer, uri, RequestResult::RateLimited);
            let error = ApiError::RateLimited {
                per_second: self.limiter.limit().per_second,
                retry_after: retry_after_seconds(wait),
            };
            return self.refuse(endpoint, error);
        }
        if Route::from_path(uri.path()) == Some(Route::Credentials) {
            self.record(endpoint, consumer, uri, RequestResult::Answered);
        }
        self.respond(endpoint, consumer, method, uri)
    }

    /// [`Self::refuse`], recording the refusal against `consumer`.
    pub fn refuse_consumer(
        &self,
        endpoint: Endpoint,
        consumer: &Consumer,
        uri: &Uri,
        error: ApiError,
    ) -> Response<Body> {
        self.record(endpoint, consumer, uri, RequestResult::Refused);
        self.refuse(endpoint, error)
    }

    /// Records a refusal made before any request was read (a peer not allowed).
    pub fn note_refused(&self, endpoint: Endpoint, consumer: &Consumer) {
        self.record(
            endpoint,
            consumer,
            &Uri::from_static("/"),
            RequestResult::Refused,
        );
    }

    fn record(&self, endpoint: Endpoint, consumer: &Consumer, uri: &Uri, result: RequestResult) {
        let name = match endpoint {
            Endpoint::Socket => "socket",
            Endpoint::Container => "container",
        };
        let profile = self.profile_named(uri.query());
        let now = self.clock.now();
        self.consumers
            .record(name, consumer, profile.as_deref(), result, now);
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
    /// `viewer` is who asks: `/v1/consumers` shows a non-root viewer only its own rows.
    pub fn respond(
        &self,
        endpoint: Endpoint,
        viewer: &Consumer,
        method: &Method,
        uri: &Uri,
    ) -> Response<Body> {
        let routed = match endpoint {
            Endpoint::Socket => self.route(viewer, method, uri),
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
            self.channel(requested_profile(uri).as_deref()).ok()
        } else {
            None
        };
        Self::first_outcome_of(channel)
    }

    /// [`Self::first_outcome`] of `profile`'s channel (`None`: the instance role's).
    pub fn first_outcome_for(
        &self,
        profile: Option<&str>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        Self::first_outcome_of(self.channel(profile).ok())
    }

    fn first_outcome_of(
        channel: Option<&Channel>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = channel.map(|c| c.receiver.clone());
        async move {
            if let Some(receiver) = &mut receiver {
                let settled = receiver.wait_for(CredentialState::has_outcome);
                // Timed out or the refresher is gone: the answer says what is known.
                let _ = tokio::time::timeout(FIRST_OUTCOME_WAIT, settled).await;
            }
        }
    }

    /// The counters of connections `endpoint` closed at admission.
    pub fn closed_counters(&self, endpoint: Endpoint) -> &ClosedCounters {
        endpoint.closed(&self.metrics)
    }

    /// The answer to a connection over its uid's share (see [`crate::serve::server`]).
    pub fn over_share(&self, endpoint: Endpoint, cap: usize) -> Response<Body> {
        self.refuse(endpoint, ApiError::TooManyConnections { cap })
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

    fn route(
        &self,
        viewer: &Consumer,
        method: &Method,
        uri: &Uri,
    ) -> Result<Response<Body>, ApiError> {
        let route =
            Route::from_path(uri.path()).ok_or_else(|| ApiError::NotFound(echo(uri.path())))?;
        if method != Method::GET {
            return Err(ApiError::MethodNotAllowed(method.clone()));
        }
        match route {
            Route::Credentials => self.credentials(uri.query(), Endpoint::Socket),
            Route::Status => Ok(self.status()),
            Route::Health => self.health(),
            Route::Metrics => Ok(self.prometheus()),
            Route::Consumers => Ok(self.consumer_table(viewer)),
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
    fn every_error_maps_to_its_status() {
        let cases = [
            (ApiError::UnknownFormat("x".into()), 400),
            (ApiError::BadQuery("x".into()), 400),
            (ApiError::Forbidden, 403),
            (ApiError::MissingToken, 401),
            (ApiError::WrongToken, 403),
            (ApiError::Forwarded, 403),
            (ApiError::NotLoopback, 403),
            (ApiError::NotAllowedFrom, 403),
            (ApiError::ProfileNotGranted("the instance role".into()), 403),
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
            (ApiError::TooManyConnections { cap: 64 }, 503),
        ];
        for (error, code) in cases {
            assert_eq!(error.status().code().as_u16(), code, "{error}");
        }
    }
}

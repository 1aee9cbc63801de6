//! The one outbound HTTP client stack, hyper-util's pooled client: plain HTTP for IMDS
//! ([`crate::imds`]), HTTPS with rustls (`ring`, the system's trust roots) for STS
//! ([`crate::assume::sts`]). What both need lives here: a client with a connect timeout,
//! one exchange bounded by a whole-request timeout, the answer read in full within a size
//! cap, and the transport error each caller turns into its own.
//!
//! No proxy, by construction: hyper-util's connector dials the URL's own host and never
//! reads `HTTP_PROXY`, `HTTPS_PROXY` or `NO_PROXY`. IMDS is link-local, and a proxy from the
//! environment must never see the IMDS session token; an STS request carries the instance
//! role's session token in its signed headers (`docs/ARCHITECTURE.md`, secrets).

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use zeroize::Zeroizing;

/// The bounds on every exchange of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long one whole exchange may take: connect, TLS, request, the whole answer.
    pub request_timeout: Duration,
    /// The largest answer body read; a larger one is refused, not cut.
    pub max_body_bytes: usize,
}

/// A pooled HTTP/1.1 client with its [`Limits`].
#[derive(Debug)]
pub struct HttpClient<C> {
    client: Client<C, Full<Bytes>>,
    limits: Limits,
}

/// An answer read in full. The body is wiped on drop: IMDS and STS answers hold credentials.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The whole body, wiped on drop.
    pub body: Zeroizing<Vec<u8>>,
}

/// Why an exchange produced no [`Answer`]. The transparent variants show hyper's own
/// message and causes, which name the failure (refused, reset), never a header value.
#[derive(Debug, Error)]
pub enum HttpError {
    /// No complete answer within the request timeout, or the connect timed out.
    #[error("timed out")]
    Timeout,
    /// The request could not be built (a header value that is not valid in HTTP).
    #[error(transparent)]
    Request(http::Error),
    /// No connection: refused, unreachable, a failed TLS handshake, a scheme the client
    /// does not speak.
    #[error(transparent)]
    Connect(hyper_util::client::legacy::Error),
    /// The connection broke before the answer's head arrived (reset, closed).
    #[error(transparent)]
    Send(hyper_util::client::legacy::Error),
    /// The answer's body broke off.
    #[error(transparent)]
    Read(hyper::Error),
    /// The answer's body is larger than [`Limits::max_body_bytes`].
    #[error("the answer exceeds {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
}

impl HttpClient<HttpConnector> {
    /// A plain-HTTP client (IMDS): `https://` URLs are refused as connect errors.
    pub fn plain(limits: Limits) -> Self {
        Self::with_connector(tcp_connector(limits), limits)
    }
}

impl HttpClient<HttpsConnector<HttpConnector>> {
    /// An HTTPS client with rustls (`ring`) and the system's trust roots (STS). It also
    /// speaks plain `http://`, which STS endpoint validation allows to loopback only, for
    /// tests against a local STS.
    pub fn https(limits: Limits) -> std::io::Result<Self> {
        let mut tcp = tcp_connector(limits);
        tcp.enforce_http(false);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Self::with_connector(https, limits))
    }
}

fn tcp_connector(limits: Limits) -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.set_connect_timeout(Some(limits.connect_timeout));
    tcp
}

impl<C> HttpClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn with_connector(connector: C, limits: Limits) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        HttpClient { client, limits }
    }

    /// Sends `request` (as `http`'s builder left it: a builder error is reported as
    /// [`HttpError::Request`]) and reads the whole answer, within the request timeout and
    /// the body cap.
    pub async fn send(
        &self,
        request: Result<Request<Full<Bytes>>, http::Error>,
    ) -> Result<Answer, HttpError> {
        let request = request.map_err(HttpError::Request)?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(classify_client_error)?;
            let (head, body) = response.into_parts();
            let body = read_capped(body, self.limits.max_body_bytes).await?;
            Ok(Answer {
                status: head.status,
                headers: head.headers,
                body,
            })
        };
        tokio::time::timeout(self.limits.request_timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

/// A connect that timed out is a timeout (the callers' messages and retries say so); any
/// other failure to connect is a connect error.
fn classify_client_error(error: hyper_util::client::legacy::Error) -> HttpError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return HttpError::Timeout;
            }
        }
        cause = inner.source();
    }
    if error.is_connect() {
        HttpError::Connect(error)
    } else {
        HttpError::Send(error)
    }
}

/// Reads `body` to its end, refusing it as soon as it announces or delivers more than
/// `limit` bytes.
async fn read_capped(mut body: Incoming, limit: usize) -> Result<Zeroizing<Vec<u8>>, HttpError> {
    let too_large = HttpError::TooLarge { limit };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large);
    }
    let mut bytes = Zeroizing::new(Vec::new());
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(HttpError::Read)?.into_data() else {
            continue; // trailers
        };
        if bytes.len() + data.len() > limit {
            return Err(too_large);
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

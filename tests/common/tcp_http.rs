//! HTTP over TCP for the tests, on the daemon's own client stack
//! ([`imds_credd::http_client`], hyper-util, no proxy): pooled connections, the whole
//! answer read into a string.

use super::unix_http::Answer;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use imds_credd::http_client::{HttpClient, HttpError, Limits};
use std::time::Duration;

/// The largest body a test reads; the simulator's oversize fault sends 100 kB.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A plain-HTTP client.
pub type TcpClient = HttpClient<HttpConnector>;

/// A client whose whole exchange (connect included) must finish within `timeout`.
pub fn client(timeout: Duration) -> TcpClient {
    HttpClient::plain(Limits {
        connect_timeout: timeout,
        request_timeout: timeout,
        max_body_bytes: MAX_BODY_BYTES,
    })
}

/// Sends `method url` with `headers` and reads the answer; the body must be UTF-8.
pub async fn send(
    client: &TcpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, HttpError> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = client.send(request.body(Full::<Bytes>::default())).await?;
    Ok(Answer {
        status: answer.status.as_u16(),
        body: String::from_utf8(answer.body.to_vec()).expect("a UTF-8 body"),
        headers: answer.headers,
    })
}

/// `GET url` with `headers` on a fresh client; panics if the exchange itself fails.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    send(&client(Duration::from_secs(5)), Method::GET, url, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

//! A small HTTP/1.1 client for the tests, over a unix socket or any other stream: one
//! request per connection, the whole answer read into a string.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::path::Path;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body parsed as JSON; panics with the body in the message if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `method uri` on a new connection to `socket` and reads the answer.
pub async fn request(socket: &Path, method: Method, uri: &str) -> Result<Answer, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    exchange(stream, request).await
}

/// Sends `request` on `stream` (a fresh connection) and reads the answer.
pub async fn exchange<S>(stream: S, request: Request<Empty<Bytes>>) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).map_err(|e| format!("body not UTF-8: {e}"))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// `GET uri`; panics if the exchange itself fails.
pub async fn get(socket: &Path, uri: &str) -> Answer {
    request(socket, Method::GET, uri)
        .await
        .unwrap_or_else(|e| panic!("GET {uri}: {e}"))
}

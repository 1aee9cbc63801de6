//! Test helpers for the client modules: a unix socket that answers one request with canned
//! raw HTTP, so the client's side of the exchange runs for real.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// The runtime the client commands use.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    super::runtime().unwrap()
}

/// Serves one connection with `answer` (a whole raw HTTP response) and returns the request
/// head it read.
pub(super) async fn serve_once(listener: UnixListener, answer: Vec<u8>) -> String {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed before sending a request");
        request.extend_from_slice(&buf[..n]);
    }
    stream.write_all(&answer).await.unwrap();
    stream.shutdown().await.unwrap();
    String::from_utf8(request).unwrap()
}

/// A raw answer with `status_line` (e.g. `200 OK`) carrying `body` as JSON.
pub(super) fn json_answer(status_line: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

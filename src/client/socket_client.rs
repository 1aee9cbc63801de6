//! A minimal HTTP/1.1 client for the daemon's unix socket (a named pipe on Windows): one GET per connection, an
//! overall timeout and a cap on the body. It tells "there is no daemon to ask" (socket
//! missing, refused, not permitted) apart from "the daemon answered", because the client
//! commands exit differently for each.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{header, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// The whole exchange (connect, request, body) must finish within this: the daemon answers
/// from memory, so anything slower means it is stuck, and a caller such as the AWS CLI
/// would rather see an error than hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client waits for a free slot while the daemon's listen backlog is full (a
/// unix socket's `connect()` then fails at once with `EAGAIN`): a burst of clients or one
/// user holding many connections should delay a cron job, not fail it.
#[cfg(target_os = "linux")]
pub const BUSY_WAIT: Duration = Duration::from_secs(2);

/// Larger answers are refused: a credentials document or a status document is a few KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Talks to the daemon listening on one unix socket.
#[derive(Debug, Clone)]
pub struct SocketClient {
    path: PathBuf,
    timeout: Duration,
}

/// What the daemon answered: any status, with its (capped) body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// `Retry-After` in seconds, when the daemon sent one (with `429`).
    pub retry_after: Option<u64>,
    /// The body, capped at [`MAX_BODY_BYTES`].
    pub body: Bytes,
}

/// Why no answer came back. Every variant means "cannot reach the daemon".
#[derive(Debug, Error)]
pub enum UnreachableDaemon {
    /// Nothing at the socket path.
    #[error("no daemon socket at {} (is imds-credd running?)", path.display())]
    Missing {
        /// The socket path.
        path: PathBuf,
    },
    /// A socket file with no daemon behind it.
    #[error("daemon socket {} refused the connection (imds-credd is not running)", path.display())]
    Refused {
        /// The socket path.
        path: PathBuf,
    },
    /// This user may not connect.
    #[cfg_attr(not(windows), error("permission denied on daemon socket {} (is this user in the socket's group?)", path.display()))]
    #[cfg_attr(windows, error("permission denied on daemon pipe {} (is this account an Administrator or in [socket] allow_sids?)", path.display()))]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// Every connection slot stayed busy for the whole wait.
    #[cfg(target_os = "linux")]
    #[error("daemon socket {} had no free connection slot within {}", path.display(), humantime::format_duration(BUSY_WAIT))]
    Busy {
        /// The socket path.
        path: PathBuf,
        /// The last connect's error.
        #[source]
        source: io::Error,
    },
    /// Connecting failed otherwise.
    #[error("cannot connect to daemon socket {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No whole answer within the timeout.
    #[error("daemon at {} did not answer within {}", path.display(), humantime::format_duration(*timeout))]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// The HTTP exchange broke off.
    #[error("HTTP exchange with the daemon at {} failed", path.display())]
    Http {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The answer is larger than [`MAX_BODY_BYTES`].
    #[error("answer from the daemon at {} is larger than {MAX_BODY_BYTES} bytes", path.display())]
    TooLarge {
        /// The socket path.
        path: PathBuf,
    },
}

impl SocketClient {
    /// A client of the daemon listening at `path` (the pipe's name on Windows).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SocketClient {
            path: path.into(),
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Where it connects, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `GET path_and_query` and returns the answer, whatever its status.
    pub async fn get(&self, path_and_query: &str) -> Result<Answer, UnreachableDaemon> {
        match tokio::time::timeout(self.timeout, self.exchange(path_and_query)).await {
            Ok(result) => result,
            Err(_) => Err(UnreachableDaemon::Timeout {
                path: self.path.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(&self, path_and_query: &str) -> Result<Answer, UnreachableDaemon> {
        let stream = connect(&self.path)
            .await
            .map_err(|e| self.connect_error(e))?;
        let http_error = |source| UnreachableDaemon::Http {
            path: self.path.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        // The connection future drives the socket; it ends when the answer is read and the
        // sender is dropped, or with the runtime.
        tokio::spawn(connection);
        let request = Request::get(path_and_query)
            .header(header::HOST, "localhost")
            .body(Empty::<Bytes>::new())
            .expect("a GET with a fixed header is a valid request");
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(source) => http_error(*source),
                Err(_) => UnreachableDaemon::TooLarge {
                    path: self.path.clone(),
                },
            })?
            .to_bytes();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    fn connect_error(&self, source: io::Error) -> UnreachableDaemon {
        let path = self.path.clone();
        match source.kind() {
            io::ErrorKind::NotFound => UnreachableDaemon::Missing { path },
            io::ErrorKind::ConnectionRefused => UnreachableDaemon::Refused { path },
            io::ErrorKind::PermissionDenied => UnreachableDaemon::PermissionDenied { path },
            #[cfg(target_os = "linux")]
            io::ErrorKind::WouldBlock => UnreachableDaemon::Busy { path, source },
            _ => UnreachableDaemon::Connect { path, source },
        }
    }
}

/// Opens the daemon's unix socket. While its listen backlog is full, `connect()` fails at
/// once with `EAGAIN`: try again after short jittered pauses (so that waiting clients do not
/// retry in step) until [`BUSY_WAIT`] has passed, then give up with that error.
#[cfg(target_os = "linux")]
async fn connect(path: &Path) -> io::Result<tokio::net::UnixStream> {
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    loop {
        match tokio::net::UnixStream::connect(path).await {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(e);
                }
                let pause = Duration::from_millis(fastrand::u64(5..=25));
                // A short monotonic wait within a bound, not a wall-clock deadline.
                #[allow(clippy::disallowed_methods)]
                tokio::time::sleep(pause.min(deadline - now)).await;
            }
            connected => return connected,
        }
    }
}

/// Opens the daemon's named pipe. While every instance of the pipe is taken by other
/// clients, Windows answers `ERROR_PIPE_BUSY`: wait a little and try again, within the
/// caller's overall timeout. A missing pipe is `NotFound`, as a missing socket is.
#[cfg(windows)]
async fn connect(path: &Path) -> io::Result<tokio::net::windows::named_pipe::NamedPipeClient> {
    use tokio::net::windows::named_pipe::ClientOptions;
    const ERROR_PIPE_BUSY: i32 = 231;
    loop {
        match ClientOptions::new().open(path) {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                // Monotonic: a short pause before trying the busy pipe again.
                #[allow(clippy::disallowed_methods)]
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            opened => return opened,
        }
    }
}

// The tests serve on unix sockets; the Windows pipe is exercised by the wine test.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::client::test_support::{runtime, serve_once};
    use tokio::net::UnixListener;

    /// Runs `test` on the client runtime with a socket path in a fresh folder.
    fn in_socket_folder<F: std::future::Future>(test: impl FnOnce(PathBuf) -> F) -> F::Output {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(test(dir.path().join("daemon.sock")))
    }

    #[test]
    fn gets_status_and_body_over_the_socket() {
        in_socket_folder(|path| async move {
            let listener = UnixListener::bind(&path).unwrap();
            let server = tokio::spawn(serve_once(
                listener,
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 13\r\n\r\n{\"code\":\"x\"}\n"
                    .to_vec(),
            ));
            let answer = SocketClient::new(&path)
                .get("/v1/credentials?profile=a")
                .await
                .unwrap();
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(&answer.body[..], b"{\"code\":\"x\"}\n");
            let request = server.await.unwrap();
            assert!(
                request.starts_with("GET /v1/credentials?profile=a HTTP/1.1\r\n"),
                "{request}"
            );
        });
    }

    #[test]
    fn a_missing_socket_is_named() {
        in_socket_folder(|path| async move {
            let err = SocketClient::new(&path)
                .get("/v1/status")
                .await
                .unwrap_err();
            assert!(matches!(err, UnreachableDaemon::Missing { .. }), "{err:?}");
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        });
    }

    #[test]
    fn a_stale_socket_file_is_refused() {
        in_socket_folder(|path| async move {
            // A socket file whose listener is gone: what a crashed daemon leaves behind.
            drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
            let err = SocketClient::new(&path)
                .get("/v1/status")
                .await
                .unwrap_err();
            assert!(matches!(err, UnreachableDaemon::Refused { .. }), "{err:?}");
        });
    }

    #[test]
    fn connect_errors_name_the_reason_and_the_path() {
        // A real EACCES needs a non-root user; the binary's tests run one. Here: the mapping.
        let client = SocketClient::new("/run/imds-credd/credentials.sock");
        let denied = client.connect_error(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(
            denied.to_string(),
            "permission denied on daemon socket /run/imds-credd/credentials.sock \
             (is this user in the socket's group?)"
        );
        let other = client.connect_error(io::Error::from(io::ErrorKind::InvalidInput));
        assert!(
            matches!(other, UnreachableDaemon::Connect { .. }),
            "{other:?}"
        );
    }

    #[test]
    fn a_silent_daemon_times_out() {
        in_socket_folder(|path| async move {
            // Accepts and never answers.
            let _listener = UnixListener::bind(&path).unwrap();
            let client = SocketClient {
                path,
                timeout: Duration::from_millis(200),
            };
            let err = client.get("/v1/status").await.unwrap_err();
            assert!(matches!(err, UnreachableDaemon::Timeout { .. }), "{err:?}");
        });
    }

    #[test]
    fn an_oversized_answer_is_refused() {
        in_socket_folder(|path| async move {
            let listener = UnixListener::bind(&path).unwrap();
            let size = MAX_BODY_BYTES + 1;
            let mut answer =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n").into_bytes();
            answer.resize(answer.len() + size, b'x');
            let server = tokio::spawn(serve_once(listener, answer));
            let err = SocketClient::new(&path)
                .get("/v1/status")
                .await
                .unwrap_err();
            assert!(matches!(err, UnreachableDaemon::TooLarge { .. }), "{err:?}");
            server.abort();
        });
    }
}

//! The daemon's socket API as the client commands use it: credentials (checked for expiry
//! here, whatever the daemon sent) and the status document, with the daemon's JSON errors
//! turned into [`ClientError`] (`cli` maps each to the exit code of `docs/DESIGN.md`).

use super::socket_client::{Answer, SocketClient, UnreachableDaemon};
use crate::credentials::{Credentials, CredentialsError};
use crate::failure::Fault;
use hyper::StatusCode;
use serde_json::Value;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// The longest daemon error message we repeat: a message is one line for people, and a
/// daemon gone wrong must not flood a terminal.
const MAX_MESSAGE_CHARS: usize = 300;
/// The longest `Retry-After` a client command waits before its one retry.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Why a client command got nothing usable from the daemon.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error(transparent)]
    Unreachable(#[from] UnreachableDaemon),
    /// The daemon answered with an error document.
    #[error("daemon answered {status}: {code}: {message}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The error document's `code`.
        code: String,
        /// The error document's `message`.
        message: String,
    },
    /// The credentials document did not pass the rules a set must meet.
    #[error("daemon sent an unusable credentials document")]
    BadCredentials(#[source] CredentialsError),
    /// The set the daemon served had expired by the time it arrived.
    #[error("daemon served credentials that expired at {expiration}; refusing to pass them on")]
    Expired {
        /// Its `Expiration`, as the daemon sent it.
        expiration: String,
    },
    /// `/v1/status` answered something other than a JSON object.
    #[error("daemon sent a status document that is not a JSON object")]
    BadStatus,
}

impl ClientError {
    /// Whose move it is: no daemon to ask, a 403 (this user may not use the socket) or a 404
    /// (unknown profile or path) is fixed by changing the setup, not by waiting; anything
    /// else, a 429 still over the limit after one retry included, leaves no credentials
    /// this time.
    pub fn fault(&self) -> Fault {
        match self {
            ClientError::Unreachable(_) => Fault::Setup,
            ClientError::Refused { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                Fault::Unavailable
            }
            ClientError::Refused { status, .. } if status.is_client_error() => Fault::Setup,
            ClientError::Refused { .. }
            | ClientError::BadCredentials(_)
            | ClientError::Expired { .. }
            | ClientError::BadStatus => Fault::Unavailable,
        }
    }
}

/// The daemon behind one socket.
#[derive(Debug, Clone)]
pub struct DaemonApi {
    socket: SocketClient,
}

impl DaemonApi {
    /// The API behind `socket`.
    pub fn new(socket: SocketClient) -> Self {
        DaemonApi { socket }
    }

    /// `GET /v1/credentials[?profile=NAME]`, parsed, and refused if already expired at `now`.
    pub async fn credentials(
        &self,
        profile: Option<&str>,
        now: SystemTime,
    ) -> Result<Credentials, ClientError> {
        let answer = self.get(&credentials_path(profile)).await?;
        let body = success_body(answer)?;
        let creds = Credentials::from_process_json(&body).map_err(ClientError::BadCredentials)?;
        if !creds.is_valid_at(now) {
            return Err(ClientError::Expired {
                expiration: creds.expiration_rfc3339(),
            });
        }
        Ok(creds)
    }

    /// `GET /v1/status`: the daemon's status document, and its raw text for `status --json`.
    pub async fn status(&self) -> Result<(Value, String), ClientError> {
        let answer = self.get("/v1/status").await?;
        let body = success_body(answer)?;
        let text = String::from_utf8(body.to_vec()).map_err(|_| ClientError::BadStatus)?;
        match serde_json::from_str::<Value>(&text) {
            Ok(doc @ Value::Object(_)) => Ok((doc, text)),
            _ => Err(ClientError::BadStatus),
        }
    }
}

impl DaemonApi {
    /// `GET /v1/consumers`: the daemon's consumer table (a JSON array) and its raw text.
    pub async fn consumers(&self) -> Result<(Vec<Value>, String), ClientError> {
        let answer = self.get("/v1/consumers").await?;
        let body = success_body(answer)?;
        let text = String::from_utf8(body.to_vec()).map_err(|_| ClientError::BadStatus)?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(rows)) => Ok((rows, text)),
            _ => Err(ClientError::BadStatus),
        }
    }

    /// GETs `path`; over the rate limit (`429`), says so on stderr in one line and asks once
    /// more after `Retry-After` (at most [`MAX_RETRY_WAIT`]).
    async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        let answer = self.socket.get(path).await?;
        if answer.status != StatusCode::TOO_MANY_REQUESTS {
            return Ok(answer);
        }
        let wait = Duration::from_secs(answer.retry_after.unwrap_or(1)).min(MAX_RETRY_WAIT);
        eprintln!(
            "imds-credd: the daemon is rate-limiting this user (429, socket.rate_limit); retrying once in {}",
            humantime::format_duration(wait)
        );
        // Monotonic: the daemon's Retry-After is a length of time.
        #[allow(clippy::disallowed_methods)]
        tokio::time::sleep(wait).await;
        Ok(self.socket.get(path).await?)
    }
}

/// The request path for a profile's credentials. Profile names are limited to letters,
/// digits and `-_.@+` (checked when parsed); `+` means a space in a query string, so it is
/// percent-encoded.
fn credentials_path(profile: Option<&str>) -> String {
    match profile {
        None => "/v1/credentials".to_string(),
        Some(name) => format!("/v1/credentials?profile={}", name.replace('+', "%2B")),
    }
}

/// The body of a 2xx answer, or the daemon's `{"code","message"}` error as a [`ClientError`].
fn success_body(answer: Answer) -> Result<bytes::Bytes, ClientError> {
    if answer.status.is_success() {
        return Ok(answer.body);
    }
    let error: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let field = |name: &str| error.get(name).and_then(Value::as_str).map(one_line);
    Err(ClientError::Refused {
        status: answer.status,
        code: field("code").unwrap_or_else(|| "-".to_string()),
        message: field("message").unwrap_or_else(|| {
            answer
                .status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        }),
    })
}

/// Control characters (a newline included) become spaces and the text is capped, so the
/// error stays one line on stderr.
fn one_line(text: &str) -> String {
    text.chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// The tests serve on unix sockets (see `test_support`).
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::client::test_support::{json_answer, runtime, serve_once};
    use bytes::Bytes;
    use tokio::net::UnixListener;

    const PROCESS_DOC: &str = r#"{"Version":1,"AccessKeyId":"ASIAFROMDAEMON01","SecretAccessKey":"sec/ret+EXAMPLE","SessionToken":"tok/en+EXAMPLE","Expiration":"2026-11-23T09:00:00Z"}"#;

    /// Asks a socket that answers `body` once for credentials, as seen at `now`.
    fn credentials_at(body: &str, now: &str) -> Result<Credentials, ClientError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let now = crate::credentials::parse_utc_timestamp(now).unwrap();
        runtime().block_on(async {
            let listener = UnixListener::bind(&path).unwrap();
            let server = tokio::spawn(serve_once(listener, json_answer("200 OK", body)));
            let api = DaemonApi::new(SocketClient::new(&path));
            let result = api.credentials(Some("audit"), now).await;
            let request = server.await.unwrap();
            assert!(request.starts_with("GET /v1/credentials?profile=audit HTTP/1.1"));
            result
        })
    }

    #[test]
    fn credentials_are_parsed_from_the_process_document() {
        let creds = credentials_at(PROCESS_DOC, "2026-11-23T08:00:00Z").unwrap();
        assert_eq!(creds.access_key_id, "ASIAFROMDAEMON01");
        assert_eq!(creds.session_token.expose(), "tok/en+EXAMPLE");
        assert_eq!(
            creds.expiration,
            crate::credentials::parse_utc_timestamp("2026-11-23T09:00:00Z").unwrap()
        );
    }

    #[test]
    fn an_expired_set_from_the_daemon_is_refused_without_quoting_it() {
        let err = credentials_at(PROCESS_DOC, "2026-11-23T09:00:00Z").unwrap_err();
        assert!(matches!(err, ClientError::Expired { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("2026-11-23T09:00:00Z"), "{shown}");
        assert!(!shown.contains("EXAMPLE"), "{shown}");
    }

    #[test]
    fn a_malformed_document_is_no_credentials_and_names_no_secret() {
        let broken = PROCESS_DOC.replace("\"Version\":1", "\"Version\":2");
        let err = credentials_at(&broken, "2026-11-23T08:00:00Z").unwrap_err();
        let shown = super::super::error_line(&err);
        assert_eq!(
            shown,
            "daemon sent an unusable credentials document: \
             credentials document `Version` is not the number 1"
        );
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn daemon_errors_keep_code_and_message_on_one_line() {
        let err = success_body(answer(
            503,
            r#"{"code":"NoCredentials","message":"no role\nattached"}"#,
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "daemon answered 503 Service Unavailable: NoCredentials: no role attached"
        );
    }

    #[test]
    fn a_non_json_error_shows_the_status_reason() {
        let err = success_body(answer(502, "<html>")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "daemon answered 502 Bad Gateway: -: Bad Gateway"
        );
    }

    #[test]
    fn profile_names_are_encoded_for_the_query() {
        assert_eq!(credentials_path(None), "/v1/credentials");
        assert_eq!(
            credentials_path(Some("a+b@c.d")),
            "/v1/credentials?profile=a%2Bb@c.d"
        );
    }
}

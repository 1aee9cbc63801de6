//! A small IMDSv2 client: one session token shared by all requests, a new token once on
//! 401, bounded retries with jittered exponential backoff on throttling, server errors,
//! timeouts and refused connections, a cap on answer size, and no proxy ever (plain HTTP
//! through [`crate::http_client`]).

use super::account::{account_of_info, AccountSource};
use super::paths::{
    EXTENDED_PATH, INFO_PATH, ROLE_LIST_PATH, TOKEN_HEADER, TOKEN_PATH, TOKEN_TTL_HEADER,
};
use super::token::{granted_ttl, Session};
use super::ImdsError;
use crate::backoff::{retry, RetryPolicy};
use crate::clock::skew::{date_header, AnswerTimes, ClockSkew};
use crate::clock::SharedClock;
use crate::credentials::secret::Secret;
use crate::credentials::{parse_utc_timestamp, Credentials};
use crate::error_chain;
use crate::health::metrics::Metrics;
use crate::http_client::{Answer, HttpClient, HttpError, Limits};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// Largest IMDS answer we read; a credentials document is about 1.5 KiB.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// After falling back to IMDSv1, try IMDSv2 again this much later.
const V1_FALLBACK_PERIOD: Duration = Duration::from_secs(300);

/// An answer's body and the time its `Date` header gives.
type DatedBody = (Zeroizing<Vec<u8>>, Option<SystemTime>);

/// A credentials document's `LastUpdated`, when it has a readable one. Only that field is
/// read: the secrets in the document are skipped, not copied.
fn last_updated(body: &[u8]) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Issued {
        #[serde(rename = "LastUpdated")]
        last_updated: Option<String>,
    }
    let issued: Issued = serde_json::from_slice(body).ok()?;
    parse_utc_timestamp(&issued.last_updated?)
}

/// Everything the client needs to know, resolved from config and environment.
#[derive(Debug, Clone)]
pub struct ImdsSettings {
    /// Base URL without trailing `/`.
    pub endpoint: String,
    /// How long a session token is asked to live (`[imds] token_ttl`).
    pub token_ttl: Duration,
    /// Per-request timeout (connect included).
    pub timeout: Duration,
    /// Whether to fall back to IMDSv1 when the token `PUT` is refused.
    pub allow_imdsv1: bool,
    /// Attempts and backoff for one logical request.
    pub retry: RetryPolicy,
}

/// Talks to IMDS. Cheap to share behind an `Arc`; concurrent callers share one token.
#[derive(Debug)]
pub struct ImdsClient {
    http: HttpClient<HttpConnector>,
    settings: ImdsSettings,
    session: Mutex<Option<Session>>,
    account: AccountSource,
    clock: SharedClock,
    metrics: Arc<Metrics>,
}

impl ImdsClient {
    /// A client for `settings.endpoint`; no request is sent until the first call.
    pub fn new(
        settings: ImdsSettings,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ImdsError> {
        // `resolve_endpoint` checked the scheme; every request URL is this base plus a path.
        if format!("{}/", settings.endpoint).parse::<Uri>().is_err() {
            return Err(ImdsError::BadEndpoint {
                endpoint: settings.endpoint,
                reason: "it is not a URL".into(),
            });
        }
        let http = HttpClient::plain(Limits {
            connect_timeout: settings.timeout,
            request_timeout: settings.timeout,
            max_body_bytes: MAX_BODY_BYTES,
        });
        Ok(ImdsClient {
            http,
            settings,
            session: Mutex::new(None),
            account: AccountSource::default(),
            clock,
            metrics,
        })
    }

    /// The base URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.settings.endpoint
    }

    /// The attached role's name, or `None` when no role is attached (IMDS answers 404).
    pub async fn role_name(&self) -> Result<Option<String>, ImdsError> {
        let Some(body) = self.get(ROLE_LIST_PATH).await? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&body).map_err(|_| ImdsError::NotText {
            path: ROLE_LIST_PATH.to_string(),
        })?;
        Ok(text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string))
    }

    /// The role's credentials with the account id, or `None` when IMDS does not know the
    /// role (404). The extended path first, the legacy one after a 404 there (see
    /// [`super::account`]).
    pub async fn role_credentials(&self, role: &str) -> Result<Option<Credentials>, ImdsError> {
        Ok(self
            .dated_role_credentials(role)
            .await?
            .map(|(credentials, _)| credentials))
    }

    /// [`ImdsClient::role_credentials`], with the answer's `Date` and the set's
    /// `LastUpdated`, which the refresher judges the clock skew by
    /// ([`crate::clock::skew::judge`]).
    pub async fn dated_role_credentials(
        &self,
        role: &str,
    ) -> Result<Option<(Credentials, Option<AnswerTimes>)>, ImdsError> {
        let legacy = format!("{ROLE_LIST_PATH}{role}");
        let answer = if self.account.try_extended(self.clock.now()) {
            match self.get_dated(&format!("{EXTENDED_PATH}{role}")).await? {
                Some(answer) => Some(answer),
                None => {
                    let answer = self.get_dated(&legacy).await?;
                    if answer.is_some() {
                        tracing::info!(
                            "IMDS has no security-credentials-extended path (an older IMDS); \
                             using the legacy path and iam/info for the account id for a day"
                        );
                        self.account.extended_missing(self.clock.now());
                    }
                    answer
                }
            }
        } else {
            self.get_dated(&legacy).await?
        };
        let Some((body, date)) = answer else {
            return Ok(None);
        };
        let mut credentials =
            Credentials::from_imds_json(&body).map_err(|source| ImdsError::Credentials {
                role: role.to_string(),
                source,
            })?;
        let times = date.map(|date| AnswerTimes {
            date,
            issued: last_updated(&body),
        });
        if credentials.account_id.is_none() {
            credentials.account_id = self.profile_account().await;
        }
        Ok(Some((credentials, times)))
    }

    /// The account of the instance profile (`iam/info`), read once. The credentials do not
    /// depend on it: when it cannot be read they are published without an account id, and
    /// the next refresh asks again.
    async fn profile_account(&self) -> Option<String> {
        if let Some(account) = self.account.profile_account() {
            return Some(account);
        }
        let found = match self.get(INFO_PATH).await {
            Ok(Some(body)) => {
                account_of_info(&body).ok_or("no InstanceProfileArn with an account id".to_string())
            }
            Ok(None) => Err("IMDS answered 404".to_string()),
            Err(error) => Err(error_chain::render(&error)),
        };
        match found {
            Ok(account) => {
                self.account.set_profile_account(account.clone());
                Some(account)
            }
            Err(error) => {
                tracing::warn!(path = INFO_PATH, %error, "cannot read the account id; publishing credentials without it");
                None
            }
        }
    }

    /// GETs `path` with retries; `Ok(None)` for 404.
    pub async fn get(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ImdsError> {
        Ok(self.get_dated(path).await?.map(|(body, _)| body))
    }

    /// [`ImdsClient::get`], with the time the answer's `Date` header gives.
    async fn get_dated(&self, path: &str) -> Result<Option<DatedBody>, ImdsError> {
        let retryable = ImdsError::is_retryable;
        retry(self.settings.retry, path, retryable, || self.get_once(path)).await
    }

    /// One GET, with one new token and a second try if IMDS says the token is bad.
    async fn get_once(&self, path: &str) -> Result<Option<DatedBody>, ImdsError> {
        let session = self.session().await?;
        let mut answer = self.send_get(path, session.header_value()).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            tracing::debug!(path, "IMDS rejected the session token; fetching a new one");
            self.discard_session().await;
            let session = self.session().await?;
            answer = self.send_get(path, session.header_value()).await?;
        }
        match answer.status.as_u16() {
            200 => {
                let date = date_header(&answer.headers);
                Ok(Some((answer.body, date)))
            }
            404 => Ok(None),
            401 => Err(ImdsError::Unauthorized { path: path.into() }),
            403 => Err(ImdsError::Forbidden { path: path.into() }),
            status => Err(ImdsError::Status {
                path: path.into(),
                status,
            }),
        }
    }

    async fn send_get(&self, path: &str, token: Option<&Secret>) -> Result<Answer, ImdsError> {
        Metrics::incr(&self.metrics.imds_get_requests);
        let mut request = self.request(Method::GET, path);
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token.expose());
        }
        self.send(request.body(Full::default()), path).await
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.settings.endpoint))
    }

    /// The current session, asking IMDS for a token when there is none or it is stale.
    async fn session(&self) -> Result<Session, ImdsError> {
        let mut session = self.session.lock().await;
        let now = self.clock.now();
        if let Some(current) = session.as_ref().filter(|s| s.is_fresh(now)) {
            return Ok(current.clone());
        }
        let fresh = self.new_session().await?;
        *session = Some(fresh.clone());
        Ok(fresh)
    }

    async fn discard_session(&self) {
        *self.session.lock().await = None;
    }

    /// PUTs for a token. Falls back to IMDSv1, when allowed, on the answers after which the
    /// SDKs do: 403, 404, 405 or a timeout.
    async fn new_session(&self) -> Result<Session, ImdsError> {
        Metrics::incr(&self.metrics.imds_token_requests);
        let ttl = self.settings.token_ttl;
        let request = self
            .request(Method::PUT, TOKEN_PATH)
            .header(TOKEN_TTL_HEADER, ttl.as_secs())
            .body(Full::default());
        let now = self.clock.now();
        let v1 = Session::V1 {
            retry_v2_at: now + V1_FALLBACK_PERIOD,
        };
        let answer = match self.send(request, TOKEN_PATH).await {
            Ok(answer) => answer,
            Err(ImdsError::Timeout { .. }) if self.settings.allow_imdsv1 => {
                tracing::warn!(
                    "IMDS token request timed out; falling back to IMDSv1 (allow_imdsv1 = true)"
                );
                return Ok(v1);
            }
            Err(ImdsError::Timeout { .. }) => return Err(ImdsError::TokenTimeout),
            Err(e) => return Err(e),
        };
        match answer.status.as_u16() {
            200 => {
                let text =
                    String::from_utf8(answer.body.to_vec()).map_err(|_| ImdsError::NotText {
                        path: TOKEN_PATH.into(),
                    })?;
                let ttl_header = answer.headers.get(TOKEN_TTL_HEADER);
                let granted = granted_ttl(ttl_header.and_then(|v| v.to_str().ok()), ttl);
                Ok(Session::token(
                    Secret::new(text.trim().to_string()),
                    now,
                    granted,
                ))
            }
            status @ 403..=405 if self.settings.allow_imdsv1 => {
                tracing::warn!(
                    status,
                    "IMDS refused a session token; falling back to IMDSv1 (allow_imdsv1 = true)"
                );
                Ok(v1)
            }
            status @ 403..=405 => Err(ImdsError::TokenRefused(status)),
            400 => Err(ImdsError::TokenBadRequest),
            status => Err(ImdsError::Status {
                path: TOKEN_PATH.into(),
                status,
            }),
        }
    }

    /// Sends a request and reads the whole answer, refusing one larger than the cap.
    async fn send(
        &self,
        request: Result<Request<Full<Bytes>>, http::Error>,
        path: &str,
    ) -> Result<Answer, ImdsError> {
        let result = self.http.send(request).await;
        if !matches!(&result, Ok(answer) if answer.status.is_success()) {
            Metrics::incr(&self.metrics.imds_errors);
        }
        let answer = result.map_err(|error| self.transport_error(error, path))?;
        self.note_date(date_header(&answer.headers));
        tracing::debug!(
            path,
            status = answer.status.as_u16(),
            bytes = answer.body.len(),
            "IMDS answered"
        );
        Ok(answer)
    }

    /// Measures the clock skew from an answer's `Date` header; says so in the log when it
    /// crosses the threshold either way.
    fn note_date(&self, date: Option<SystemTime>) {
        let Some(imds_date) = date else {
            return;
        };
        let skew = ClockSkew::measure(imds_date, self.clock.now());
        let was = self.metrics.clock_skew.get();
        self.metrics.clock_skew.set(skew);
        let was_significant = was.is_some_and(ClockSkew::is_significant);
        if skew.is_significant() && !was_significant {
            tracing::warn!(
                imds_ahead_secs = skew.imds_ahead_secs,
                "clock skew: {}; fix the instance's time sync (chrony, the Amazon Time Sync Service)",
                skew.against("IMDS")
            );
        } else if !skew.is_significant() && was_significant {
            tracing::info!(
                imds_ahead_secs = skew.imds_ahead_secs,
                "clock skew is back within the threshold"
            );
        }
    }

    fn transport_error(&self, error: HttpError, path: &str) -> ImdsError {
        match error {
            HttpError::Timeout => ImdsError::Timeout { path: path.into() },
            HttpError::TooLarge { limit } => ImdsError::BodyTooLarge {
                path: path.into(),
                limit,
            },
            HttpError::Connect(_) => ImdsError::Connect {
                endpoint: self.settings.endpoint.clone(),
                source: error,
            },
            HttpError::Request(_) | HttpError::Send(_) | HttpError::Read(_) => {
                ImdsError::Transport {
                    path: path.into(),
                    source: error,
                }
            }
        }
    }
}

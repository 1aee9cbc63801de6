//! The IMDS simulator, driven over real HTTP (the daemon's own client stack): it must
//! behave like IMDSv2 where a client can tell, and each injected fault must have exactly
//! its described effect.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;

use common::tcp_http::{self, client, TcpClient};
use common::unix_http::Answer;
use hyper::Method;
use imds_credd::clock::{Clock, ManualClock, SharedClock};
use imds_credd::credentials::{format_utc_timestamp, Credentials, CredentialsError};
use imds_credd::demo::simulator::{
    Fault, ImdsSimulator, RequestCounts, RequestRecord, SimulatorOptions, Target, ACCOUNT_ID,
};
use imds_credd::http_client::HttpError;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "/latest/api/token";
const ROLES: &str = "/latest/meta-data/iam/security-credentials/";
const DEMO_ROLE: &str = "/latest/meta-data/iam/security-credentials/demo-role";
const EXTENDED_DEMO_ROLE: &str = "/latest/meta-data/iam/security-credentials-extended/demo-role";
const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
const HOUR: Duration = Duration::from_secs(3600);

/// A simulator on a manual clock, and a client for it.
struct Fixture {
    sim: ImdsSimulator,
    clock: ManualClock,
    http: TcpClient,
}

impl Fixture {
    async fn start() -> Fixture {
        Self::with(|_| {}).await
    }

    /// The default simulator and an IMDSv2 token it issued.
    async fn start_with_token() -> (Fixture, String) {
        let f = Fixture::start().await;
        let token = f.token().await;
        (f, token)
    }

    async fn with(adjust: impl FnOnce(&mut SimulatorOptions)) -> Fixture {
        let clock = ManualClock::starting_now();
        let mut options = SimulatorOptions {
            clock: Arc::new(clock.clone()) as SharedClock,
            ..SimulatorOptions::default()
        };
        adjust(&mut options);
        let sim = ImdsSimulator::start(options)
            .await
            .expect("simulator starts");
        Fixture {
            sim,
            clock,
            http: client(Duration::from_secs(5)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.endpoint())
    }

    /// Sends one request with the given headers.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, HttpError> {
        tcp_http::send(&self.http, method, &self.url(path), headers).await
    }

    async fn put_token(&self, ttl: Option<&str>) -> Answer {
        let headers: Vec<_> = ttl.map(|ttl| (TTL_HEADER, ttl)).into_iter().collect();
        let response = self.send(Method::PUT, TOKEN, &headers).await;
        response.expect("token PUT answered")
    }

    async fn token(&self) -> String {
        let response = self.put_token(Some("21600")).await;
        assert_eq!(response.status, 200);
        response.body
    }

    async fn try_get(&self, path: &str, token: Option<&str>) -> Result<(u16, String), HttpError> {
        let headers: Vec<_> = token.map(|t| (TOKEN_HEADER, t)).into_iter().collect();
        let response = self.send(Method::GET, path, &headers).await?;
        Ok((response.status, response.body))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        self.try_get(path, token).await.expect("GET answered")
    }
}

/// A legacy-path document parsed, with the account the simulator serves on the extended
/// path (which its issued sets carry) filled in, so it compares with those sets.
fn legacy_credentials(body: &str) -> Credentials {
    let parsed = Credentials::from_imds_json(body.as_bytes()).unwrap();
    assert_eq!(
        parsed.account_id, None,
        "the legacy document has no AccountId"
    );
    Credentials {
        account_id: Some(ACCOUNT_ID.into()),
        ..parsed
    }
}

fn statuses(sim: &ImdsSimulator) -> Vec<u16> {
    sim.requests().iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn gets_need_a_live_token() {
    let f = Fixture::start().await;
    assert_eq!(f.get(ROLES, None).await.0, 401);
    assert_eq!(f.get(ROLES, Some("AQAEnotatoken==")).await.0, 401);

    let response = f.put_token(Some("60")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "text/plain");
    let token = response.body;
    assert_eq!(f.sim.issued_tokens(), vec![token.clone()]);
    assert_eq!(
        f.get(ROLES, Some(&token)).await,
        (200, "demo-role\n".into())
    );

    f.clock.advance(Duration::from_secs(59));
    assert_eq!(f.get(ROLES, Some(&token)).await.0, 200);
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.get(ROLES, Some(&token)).await.0, 401, "expired token");
    // Unknown paths are still behind the token.
    assert_eq!(f.get("/latest/meta-data/nothing", None).await.0, 401);

    assert_eq!(
        f.sim.counts(),
        RequestCounts {
            token_puts: 1,
            role_lists: 5,
            other_gets: 1,
            unauthorized: 4,
            ..RequestCounts::default()
        }
    );
}

#[tokio::test]
async fn token_put_checks_the_ttl_and_echoes_it() {
    let f = Fixture::start().await;
    for bad in [None, Some("0"), Some("21601"), Some("-5"), Some("6h")] {
        assert_eq!(f.put_token(bad).await.status, 400, "TTL {bad:?}");
    }
    for good in ["1", "21600"] {
        let response = f.put_token(Some(good)).await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.headers["x-aws-ec2-metadata-token-ttl-seconds"],
            good
        );
    }
    assert_eq!(f.sim.issued_tokens().len(), 2);
    assert_eq!(f.sim.counts().token_puts, 7);
}

#[tokio::test]
async fn forwarded_puts_other_paths_and_other_methods_are_refused() {
    let f = Fixture::start().await;
    let forwarded = [(TTL_HEADER, "60"), ("X-Forwarded-For", "10.0.0.1")];
    let response = f.send(Method::PUT, TOKEN, &forwarded).await.unwrap();
    assert_eq!(response.status, 403);
    let versioned = f.send(Method::PUT, "/2021-03-23/api/token", &[(TTL_HEADER, "60")]);
    assert_eq!(versioned.await.unwrap().status, 403);

    let token = f.token().await;
    let with_token = [(TOKEN_HEADER, token.as_str())];
    let delete = f.send(Method::DELETE, ROLES, &with_token).await.unwrap();
    assert_eq!(delete.status, 405);
    // HEAD is answered like GET, as on EC2.
    let head = f.send(Method::HEAD, ROLES, &with_token).await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(f.sim.issued_tokens(), vec![token]);
    assert_eq!(f.sim.counts().role_lists, 1);
}

#[tokio::test]
async fn serves_credentials_in_the_imds_layout() {
    let (f, token) = Fixture::start_with_token().await;
    let with_token = [(TOKEN_HEADER, token.as_str())];
    let response = f.send(Method::GET, DEMO_ROLE, &with_token).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "text/plain");
    let body = response.body;

    let now = f.clock.now();
    let served = f.sim.current_credentials().unwrap();
    let expected_start = format!(
        "{{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"{}\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"{}\",\n",
        format_utc_timestamp(now),
        served.access_key_id
    );
    assert!(body.starts_with(&expected_start), "{body}");
    assert!(body.ends_with(&format!(
        "  \"Expiration\" : \"{}\"\n}}",
        format_utc_timestamp(now + 6 * HOUR)
    )));

    let parsed = legacy_credentials(&body);
    assert_eq!(parsed, served);
    assert_eq!(f.sim.issued_credentials(), vec![served.clone()]);
    let key = &parsed.access_key_id;
    assert!(key.len() == 20 && key.starts_with("ASIA"), "{key}");
    assert!(key[4..]
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    let secret = parsed.secret_access_key.expose();
    assert_eq!(secret.len(), 40);
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    assert!(secret.chars().all(base64));
    let session = parsed.session_token.expose();
    assert!(session.len() >= 300 && session.chars().all(base64));

    let other_role = "/latest/meta-data/iam/security-credentials/other-role";
    assert_eq!(f.get(other_role, Some(&token)).await.0, 404);
    assert_eq!(
        f.get("/latest/meta-data/nothing", Some(&token)).await.0,
        404
    );
    assert_eq!(f.sim.counts().credential_gets, 2);
}

#[tokio::test]
async fn the_extended_path_adds_the_account_id_to_the_same_credentials() {
    let (f, token) = Fixture::start_with_token().await;
    let (status, body) = f.get(EXTENDED_DEMO_ROLE, Some(&token)).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"Type\" : \"AWS-HMAC\",\n  \"AccountId\" : \"123456789012\",\n"),
        "{body}"
    );
    let parsed = Credentials::from_imds_json(body.as_bytes()).unwrap();
    assert_eq!(parsed.account_id.as_deref(), Some("123456789012"));
    assert_eq!(Some(parsed), f.sim.current_credentials());
    let other = "/latest/meta-data/iam/security-credentials-extended/other-role";
    assert_eq!(f.get(other, Some(&token)).await.0, 404);
    assert_eq!(f.get(EXTENDED_DEMO_ROLE, None).await.0, 401);
    assert_eq!(f.sim.counts().credential_gets, 3);
}

#[tokio::test]
async fn an_older_imds_answers_the_extended_path_404_and_still_serves_the_legacy_one() {
    let f = Fixture::with(|o| o.extended_credentials = false).await;
    let token = f.token().await;
    assert_eq!(f.get(EXTENDED_DEMO_ROLE, Some(&token)).await.0, 404);
    let (status, body) = f.get(DEMO_ROLE, Some(&token)).await;
    assert_eq!(status, 200);
    assert!(!body.contains("AccountId"), "{body}");
    let (status, info) = f.get("/latest/meta-data/iam/info", Some(&token)).await;
    assert_eq!(status, 200);
    assert!(
        info.contains(":123456789012:instance-profile/demo-role"),
        "{info}"
    );
}

#[tokio::test]
async fn extended_credentials_get_the_credentials_faults() {
    let (f, token) = Fixture::start_with_token().await;
    f.sim.inject(Target::Credentials, Fault::Status(503), 1);
    assert_eq!(f.get(EXTENDED_DEMO_ROLE, Some(&token)).await.0, 503);
    assert_eq!(f.get(EXTENDED_DEMO_ROLE, Some(&token)).await.0, 200);
}

#[tokio::test]
async fn serves_instance_identity_and_profile_info() {
    let (f, token) = Fixture::start_with_token().await;
    let (status, info) = f.get("/latest/meta-data/iam/info", Some(&token)).await;
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Code"], "Success");
    assert_eq!(
        info["InstanceProfileArn"],
        "arn:aws:iam::123456789012:instance-profile/demo-role"
    );
    assert!(info["InstanceProfileId"].is_string() && info["LastUpdated"].is_string());
    assert_eq!(
        f.get("/latest/meta-data/instance-id", Some(&token)).await,
        (200, "i-0123456789abcdef0".into())
    );
    assert_eq!(
        f.get("/latest/meta-data/placement/region", Some(&token))
            .await,
        (200, "us-east-1".into())
    );
    assert_eq!(f.sim.counts().other_gets, 3);
}

#[tokio::test]
async fn rotates_credentials_once_they_reach_rotate_every() {
    let f = Fixture::with(|o| {
        o.credential_lifetime = 6 * HOUR;
        o.rotate_every = 5 * HOUR;
    })
    .await;
    let token = f.token().await;
    let first = legacy_credentials(&f.get(DEMO_ROLE, Some(&token)).await.1);

    f.clock.advance(5 * HOUR - Duration::from_secs(1));
    let (_, body) = f.get(DEMO_ROLE, Some(&token)).await;
    assert_eq!(legacy_credentials(&body), first);

    f.clock.advance(Duration::from_secs(1));
    let second = legacy_credentials(&f.get(DEMO_ROLE, Some(&token)).await.1);
    assert_ne!(second.access_key_id, first.access_key_id);
    assert_ne!(second.secret_access_key, first.secret_access_key);
    assert_eq!(second.expiration, f.clock.now() + 6 * HOUR);
    assert_eq!(f.sim.issued_credentials(), vec![first, second.clone()]);

    // current_credentials rotates lazily too.
    f.clock.advance(5 * HOUR);
    let third = f.sim.current_credentials().unwrap();
    assert_ne!(third, second);
    f.sim.rotate_now();
    assert_ne!(f.sim.current_credentials().unwrap(), third);
    assert_eq!(f.sim.issued_credentials().len(), 4);
}

#[tokio::test]
async fn set_role_removes_and_replaces_the_role() {
    let (f, token) = Fixture::start_with_token().await;
    let before = f.sim.current_credentials().unwrap();

    f.sim.set_role(None);
    assert_eq!(f.sim.current_credentials(), None);
    assert_eq!(f.get(ROLES, Some(&token)).await.0, 404);
    assert_eq!(f.get(DEMO_ROLE, Some(&token)).await.0, 404);
    assert_eq!(
        f.get("/latest/meta-data/iam/info", Some(&token)).await.0,
        404
    );

    f.sim.set_role(Some("renamed-role"));
    assert_eq!(
        f.get(ROLES, Some(&token)).await,
        (200, "renamed-role\n".into())
    );
    assert_eq!(f.get(DEMO_ROLE, Some(&token)).await.0, 404);
    let (status, body) = f
        .get(
            "/latest/meta-data/iam/security-credentials/renamed-role",
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    let after = legacy_credentials(&body);
    assert_ne!(after.access_key_id, before.access_key_id);
    assert_eq!(f.sim.issued_credentials(), vec![before, after]);
}

#[tokio::test]
async fn invalidated_tokens_get_401_until_a_new_one_is_fetched() {
    let f = Fixture::start().await;
    let old = f.token().await;
    f.sim.invalidate_tokens();
    assert_eq!(f.get(ROLES, Some(&old)).await.0, 401);
    let new = f.token().await;
    assert_eq!(f.get(ROLES, Some(&new)).await.0, 200);
    assert_eq!(f.sim.issued_tokens(), vec![old, new]);
    assert_eq!(f.sim.counts().unauthorized, 1);
}

#[tokio::test]
async fn imdsv1_mode_answers_without_a_token_but_not_with_a_bad_one() {
    let f = Fixture::with(|o| o.allow_imdsv1 = true).await;
    assert_eq!(f.get(ROLES, None).await, (200, "demo-role\n".into()));
    assert_eq!(f.get(ROLES, Some("AQAEstale==")).await.0, 401);
    let strict = Fixture::start().await;
    assert_eq!(strict.get(ROLES, None).await.0, 401);
}

#[tokio::test]
async fn status_faults_hit_only_their_target_then_stop() {
    let (f, token) = Fixture::start_with_token().await;
    for code in [401, 403, 404, 429, 500, 503] {
        f.sim.inject(Target::Credentials, Fault::Status(code), 2);
        assert_eq!(f.get(ROLES, Some(&token)).await.0, 200, "other target");
        assert_eq!(f.get(DEMO_ROLE, Some(&token)).await.0, code);
        assert_eq!(f.get(DEMO_ROLE, Some(&token)).await.0, code);
        assert_eq!(f.get(DEMO_ROLE, Some(&token)).await.0, 200, "recovered");
    }
    let counts = f.sim.counts();
    assert_eq!(counts.faults_injected, 12);
    assert_eq!(counts.unauthorized, 2);

    f.sim.inject(Target::Token, Fault::Status(503), 1);
    assert_eq!(f.put_token(Some("60")).await.status, 503);
    f.sim.inject(Target::RoleList, Fault::Status(500), 1);
    f.sim.inject(Target::Any, Fault::Status(429), 1);
    assert_eq!(f.get(ROLES, Some(&token)).await.0, 500, "queued first");
    assert_eq!(f.get(DEMO_ROLE, Some(&token)).await.0, 429);
    assert_eq!(f.get(DEMO_ROLE, Some(&token)).await.0, 200);
}

#[tokio::test]
async fn delay_fault_outlasts_a_client_timeout_then_answers_normally() {
    let (f, token) = Fixture::start_with_token().await;
    f.sim.inject(
        Target::Credentials,
        Fault::Delay(Duration::from_millis(400)),
        2,
    );
    let impatient = client(Duration::from_millis(100));
    let headers = [(TOKEN_HEADER, token.as_str())];
    let error = tcp_http::send(&impatient, Method::GET, &f.url(DEMO_ROLE), &headers)
        .await
        .unwrap_err();
    assert!(matches!(error, HttpError::Timeout), "{error:?}");
    // A patient client gets the normal answer after the delay.
    let (status, body) = f.get(DEMO_ROLE, Some(&token)).await;
    assert_eq!(status, 200);
    Credentials::from_imds_json(body.as_bytes()).unwrap();
}

#[tokio::test]
async fn reset_fault_resets_the_connection() {
    let (f, token) = Fixture::start_with_token().await;
    f.sim.inject(Target::Credentials, Fault::Reset, 1);
    let error = f.try_get(DEMO_ROLE, Some(&token)).await.unwrap_err();
    let mut cause: Option<&dyn std::error::Error> = error.source();
    let mut reset = false;
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            reset |= io.kind() == std::io::ErrorKind::ConnectionReset;
        }
        cause = inner.source();
    }
    assert!(reset, "expected a TCP reset, got {error:?}");
    assert_eq!(f.get(DEMO_ROLE, Some(&token)).await.0, 200, "recovered");
    let requests = f.sim.requests();
    assert_eq!(
        requests[1],
        RequestRecord {
            method: "GET".into(),
            path: DEMO_ROLE.into(),
            status: 0
        }
    );
}

#[tokio::test]
async fn body_faults_serve_what_they_promise() {
    let (f, token) = Fixture::start_with_token().await;
    let fetch = |fault: Fault| {
        f.sim.inject(Target::Credentials, fault, 1);
        f.get(DEMO_ROLE, Some(&token))
    };

    let (status, body) = fetch(Fault::MalformedJson).await;
    assert_eq!(status, 200);
    assert!(matches!(
        Credentials::from_imds_json(body.as_bytes()),
        Err(CredentialsError::Malformed { .. })
    ));

    let (status, body) = fetch(Fault::OversizeBody(100_000)).await;
    assert_eq!((status, body.len()), (200, 100_000));

    let (status, body) = fetch(Fault::CodeFailure).await;
    assert_eq!(status, 200);
    let error = Credentials::from_imds_json(body.as_bytes()).unwrap_err();
    assert!(
        matches!(error, CredentialsError::NotSuccess { ref code, ref message } if code == "Failure" && !message.is_empty()),
        "{error:?}"
    );

    let now = f.clock.now();
    let (_, body) = fetch(Fault::Expired).await;
    let expired = legacy_credentials(&body);
    assert!(!expired.is_valid_at(now));
    let (_, body) = fetch(Fault::ExpiresIn(Duration::from_secs(120))).await;
    let short = legacy_credentials(&body);
    assert_eq!(short.expiration, now + Duration::from_secs(120));

    // One-off sets are recorded (tests scan logs for them) but do not replace the current one.
    let issued = f.sim.issued_credentials();
    assert!(issued.contains(&expired) && issued.contains(&short));
    let (_, body) = f.get(DEMO_ROLE, Some(&token)).await;
    let current = legacy_credentials(&body);
    assert_eq!(current, issued[0]);
    assert_eq!(f.sim.counts().faults_injected, 5);
}

#[tokio::test]
async fn random_faults_are_retryable_and_reproducible_from_the_seed() {
    async fn run(seed: u64) -> Vec<u16> {
        let f = Fixture::with(|o| o.allow_imdsv1 = true).await;
        f.sim.set_random_faults(0.5, seed);
        for _ in 0..40 {
            let _ = f.try_get(ROLES, None).await;
        }
        let counts = f.sim.counts();
        assert!(counts.faults_injected > 5 && counts.faults_injected < 35);
        statuses(&f.sim)
    }
    let first = run(7).await;
    assert!(first.iter().all(|s| [0, 200, 429, 500, 503].contains(s)));
    for kind in [0, 429, 500, 503] {
        assert!(first.contains(&kind), "no {kind} in {first:?}");
    }
    assert_eq!(run(7).await, first);

    let f = Fixture::with(|o| o.allow_imdsv1 = true).await;
    f.sim.set_random_faults(0.5, 7);
    f.sim.set_random_faults(0.0, 7);
    for _ in 0..10 {
        assert_eq!(f.get(ROLES, None).await.0, 200);
    }
}

#[tokio::test]
async fn server_stops_on_shutdown_and_when_the_last_handle_drops() {
    let f = Fixture::start().await;
    let url = f.url(ROLES);
    f.sim.shutdown().await;
    let error = tcp_http::send(&f.http, Method::GET, &url, &[]).await;
    assert!(matches!(error, Err(HttpError::Connect(_))), "{error:?}");

    let sim = ImdsSimulator::start(SimulatorOptions::default())
        .await
        .unwrap();
    let url = format!("{}{ROLES}", sim.endpoint());
    let http = client(Duration::from_secs(5));
    let clone = sim.clone();
    drop(sim);
    let answer = tcp_http::send(&http, Method::GET, &url, &[]).await;
    assert_eq!(answer.unwrap().status, 401);
    drop(clone);
    let mut refused = false;
    for _ in 0..100 {
        // A fresh client: a pooled connection would outlive the listener.
        match tcp_http::send(&client(Duration::from_secs(5)), Method::GET, &url, &[]).await {
            Err(HttpError::Connect(_)) => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(
        refused,
        "server still answering after the last handle dropped"
    );
}

#[tokio::test]
async fn logs_name_requests_but_never_secrets_or_tokens() {
    let logs = common::LogCapture::default();
    // A current-thread test runtime: the server's tasks log on this thread too.
    let _guard = logs.install();

    let (f, token) = Fixture::start_with_token().await;
    f.get(DEMO_ROLE, Some(&token)).await;
    f.sim.inject(Target::Credentials, Fault::ExpiresIn(HOUR), 1);
    f.get(DEMO_ROLE, Some(&token)).await;
    f.sim.inject(Target::Credentials, Fault::Reset, 1);
    let _ = f.try_get(DEMO_ROLE, Some(&token)).await;

    let logs = logs.text();
    assert!(logs.contains("security-credentials/demo-role"), "{logs}");
    for creds in f.sim.issued_credentials() {
        assert!(!logs.contains(creds.secret_access_key.expose()));
        assert!(!logs.contains(creds.session_token.expose()));
    }
    assert!(!logs.contains(&token));
}

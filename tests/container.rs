//! The `[container]` endpoint end to end: the daemon in-process against the IMDS simulator
//! (and a loopback STS for a profile), requests over real TCP on 127.0.0.1, the token file
//! on disk, and boto3 as the real SDK client signing for a recorder that checks SigV4. Every
//! test ends by scanning the trace logs for the issued secrets and the container token.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;
use common::unix_http;

use bytes::Bytes;
use common::aws_clients::python_bin;
use common::recorder::Recorder;
use common::sts::StsServer;
use common::{wait_until, Harness, HarnessOptions};
use http_body_util::Empty;
use hyper::{Method, Request};
use imds_credd::clock::{Clock, ManualClock, SharedClock};
use imds_credd::config::{Config, ContainerConfig};
use imds_credd::demo::simulator::{Fault, Target};
use imds_credd::sink::RESYNC_INTERVAL;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use unix_http::{exchange, Answer};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const PROFILE: &str = "audit";
const ROLE_ARN: &str = "arn:aws:iam::222222222222:role/efgh";

/// Request headers as (name, value).
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The daemon with `[container]` on `127.0.0.1:0`, its token file in a folder of its own.
struct Setup {
    h: Harness,
    addr: SocketAddr,
    token_file: PathBuf,
    _token_dir: Option<tempfile::TempDir>,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("run/imds-credd/container-token");
        let mut setup = Setup::start_at(&token_file, ManualClock::starting_now(), |_| {}).await;
        setup._token_dir = Some(dir);
        setup
    }

    /// A daemon on `clock` whose token file is `token_file`; `edit` adjusts the harness
    /// first.
    async fn start_at(
        token_file: &Path,
        clock: ManualClock,
        edit: impl FnOnce(&mut HarnessOptions),
    ) -> Setup {
        let mut options = HarnessOptions::new(&clock);
        edit(&mut options);
        let earlier = std::mem::replace(&mut options.configure, Box::new(|_| {}));
        let container = ContainerConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            token_file: token_file.to_path_buf(),
            clients: Vec::new(),
        };
        options.configure = Box::new(move |config| {
            earlier(config);
            config.container = Some(container);
        });
        let h = Harness::start_with(clock, options).await;
        let addr = h.daemon.container.expect("the container endpoint listens");
        Setup {
            h,
            addr,
            token_file: token_file.to_path_buf(),
            _token_dir: None,
        }
    }

    fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file).unwrap()
    }

    /// `GET uri` with `headers`, on a new connection.
    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Answer {
        send(self.addr, Method::GET, uri, headers).await
    }

    /// `GET uri` with the current token.
    async fn authorized(&self, uri: &str) -> Answer {
        let token = self.token();
        self.get(uri, &[("authorization", &token)]).await
    }

    /// Stops the daemon; fails if the token or an issued secret was logged.
    async fn finish(self, token: &str) {
        assert!(
            !self.h.logs.contains(token),
            "the logs contain the container token"
        );
        self.h.finish().await;
    }
}

async fn send(addr: SocketAddr, method: Method, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the endpoint");
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    exchange(stream, request)
        .await
        .unwrap_or_else(|e| panic!("GET {uri}: {e}"))
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn the_right_token_gets_the_simulators_credentials_in_the_container_shape() {
    let s = Setup::start().await;
    let issued = s.h.sim.current_credentials().unwrap();
    let token = s.token();

    let answer = s.authorized("/v1/credentials").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let doc = answer.json();
    assert_eq!(doc["AccessKeyId"], issued.access_key_id.as_str());
    assert_eq!(doc["SecretAccessKey"], issued.secret_access_key.expose());
    assert_eq!(doc["Token"], issued.session_token.expose());
    assert_eq!(doc["Expiration"], issued.expiration_rfc3339().as_str());
    let mut keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "AccountId",
            "Expiration",
            "SecretAccessKey",
            "Token"
        ],
        "the instance role's ARN is not known, so no RoleArn"
    );
    assert_eq!(doc["AccountId"], "123456789012");

    // The token: 64 hex characters, owner-only, in an owner-only folder we created.
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token:?}");
    assert!(!token.ends_with('\n') && !token.contains('\r'));
    assert_eq!(mode_of(&s.token_file), 0o600);
    assert_eq!(mode_of(s.token_file.parent().unwrap()), 0o700);

    // Counted, and shown as a sink with its real address.
    let counters = &s.h.daemon.metrics.container_requests;
    assert_eq!(counters.ok.load(Ordering::Relaxed), 1);
    assert_eq!(
        s.h.daemon
            .metrics
            .socket_requests
            .ok
            .load(Ordering::Relaxed),
        0
    );
    // `/v1/status` on the socket shows the endpoint's answers and its sink row.
    let status = unix_http::get(&s.h.dir.path().join("credentials.sock"), "/v1/status")
        .await
        .json();
    assert_eq!(
        status["counters"]["container_requests"],
        serde_json::json!({"200": 1})
    );
    assert_eq!(status["sinks"][0]["kind"], "container");
    assert_eq!(status["sinks"][0]["target"], s.addr.to_string().as_str());
    let rows = s.h.daemon.health.snapshot();
    let row = rows
        .iter()
        .find(|r| r.kind == "container")
        .expect("a container row");
    assert_eq!(row.target, s.addr.to_string());
    assert!(row.last_success.is_some() && row.last_error.is_none());
    s.finish(&token).await;
}

#[tokio::test]
async fn a_missing_wrong_or_forwarded_token_is_refused_and_logged_without_it() {
    let s = Setup::start().await;
    let token = s.token();
    let issued = s.h.sim.current_credentials().unwrap();
    let bearer = format!("Bearer {token}");
    let upper = token.to_uppercase();
    let truncated = &token[..63];
    let mut flipped = token.clone().into_bytes();
    flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();

    let cases: [(Headers, u16, &str); 9] = [
        (vec![], 401, "MissingToken"),
        (vec![("authorization", "")], 403, "WrongToken"),
        (vec![("authorization", &bearer)], 403, "WrongToken"),
        (vec![("authorization", &upper)], 403, "WrongToken"),
        (vec![("authorization", truncated)], 403, "WrongToken"),
        (vec![("authorization", &flipped)], 403, "WrongToken"),
        (
            vec![("authorization", &token), ("authorization", "other")],
            403,
            "WrongToken",
        ),
        (
            vec![
                ("authorization", &token),
                ("x-forwarded-for", "203.0.113.9"),
            ],
            403,
            "Forwarded",
        ),
        (
            vec![("authorization", &token), ("forwarded", "for=203.0.113.9")],
            403,
            "Forwarded",
        ),
    ];
    for (headers, status, code) in &cases {
        let answer = s.get("/v1/credentials", headers).await;
        assert_eq!(answer.status, *status, "{headers:?}: {}", answer.body);
        assert_eq!(answer.json()["code"], *code, "{headers:?}");
        assert!(!answer.body.contains(issued.secret_access_key.expose()));
    }
    // The token is checked before the route: without it nothing is told about paths.
    assert_eq!(s.get("/v1/status", &[]).await.status, 401);
    // With it, only credentials are served here.
    for (uri, status) in [
        ("/v1/status", 404),
        ("/metrics", 404),
        ("/healthz", 404),
        ("/v1/credentials?format=env", 400),
        ("/v1/credentials?profile=nosuch", 404),
    ] {
        let answer = s.authorized(uri).await;
        assert_eq!(answer.status, status, "{uri}: {}", answer.body);
    }
    let answer = send(
        s.addr,
        Method::POST,
        "/v1/credentials",
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(answer.status, 405);
    assert_eq!(s.authorized("/v1/credentials").await.status, 200);

    let counters = &s.h.daemon.metrics.container_requests;
    assert_eq!(counters.unauthorized.load(Ordering::Relaxed), 2);
    assert_eq!(counters.forbidden.load(Ordering::Relaxed), 8);
    assert_eq!(counters.ok.load(Ordering::Relaxed), 1);
    let logs = s.h.logs.text();
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refusing a container endpoint request"))
        .collect();
    // One line per peer and reason in the interval, however many refusals.
    let reasons: std::collections::BTreeSet<&str> = refusals
        .iter()
        .filter_map(|l| l.split("reason=").nth(1))
        .map(|rest| {
            rest.split(" refused_since_last_line")
                .next()
                .unwrap_or(rest)
        })
        .collect();
    assert_eq!(refusals.len(), reasons.len(), "{logs}");
    assert!(refusals.len() < 10, "{logs}");
    assert!(
        refusals.iter().all(|l| l.contains("peer=127.0.0.1 ")),
        "{logs}"
    );
    assert!(refusals
        .iter()
        .any(|l| l.contains("reason=no Authorization header")));
    assert!(refusals
        .iter()
        .any(|l| l.contains("reason=forwarded requests")));
    assert!(refusals
        .iter()
        .any(|l| l.contains("reason=the Authorization header is not")));
    assert!(!logs.contains(&flipped) && !logs.contains(&upper) && !logs.contains(truncated));
    s.finish(&token).await;
}

#[tokio::test]
async fn expired_credentials_get_503_and_fresh_ones_are_served_again() {
    let s = Setup::start().await;
    let token = s.token();
    let held = s.h.served().unwrap();
    s.h.sim.inject(Target::Any, Fault::Status(503), usize::MAX);
    let now = s.h.clock.now();
    s.h.clock
        .advance(held.expiration.duration_since(now).unwrap() + Duration::from_secs(1));

    let answer = s.authorized("/v1/credentials").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()["code"], "NoCredentials");
    assert!(!answer.body.contains(held.secret_access_key.expose()));
    assert!(!answer.body.contains(&held.access_key_id));
    assert_eq!(
        s.h.daemon
            .metrics
            .container_requests
            .unavailable
            .load(Ordering::Relaxed),
        1
    );

    s.h.sim.clear_faults();
    s.h.clock.advance(MINUTE); // past the refresher's longest backoff
    let held_key = held.access_key_id.clone();
    let state =
        s.h.wait_for("new credentials", move |st| {
            st.credentials
                .as_ref()
                .is_some_and(|c| c.access_key_id != held_key)
        })
        .await;
    let fresh = state.credentials.unwrap();
    let answer = s.authorized("/v1/credentials").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["AccessKeyId"], fresh.access_key_id.as_str());
    s.finish(&token).await;
}

#[tokio::test]
async fn a_profile_is_served_with_its_role_arn() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let sts = StsServer::start(Arc::new(clock.clone()) as SharedClock, "us-east-1").await;
    let attach = sts.attach();
    let assume = sts.profile(PROFILE, ROLE_ARN);
    let edit = move |options: &mut HarnessOptions| {
        options.prepare = attach;
        options.configure = Box::new(move |config: &mut Config| config.assumes.push(assume));
    };
    let s = Setup::start_at(&dir.path().join("token"), clock, edit).await;
    let token = s.token();
    let mut profile = s.h.daemon.profiles[PROFILE].clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        profile.wait_for(|st| st.credentials.is_some()),
    )
    .await
    .expect("the profile gets credentials")
    .unwrap();
    let chained = sts.issued().last().cloned().expect("STS issued a set");

    let answer = s.authorized("/v1/credentials?profile=audit").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let doc = answer.json();
    assert_eq!(doc["AccessKeyId"], chained.access_key_id.as_str());
    assert_eq!(doc["SecretAccessKey"], chained.secret_access_key.expose());
    assert_eq!(doc["Token"], chained.session_token.expose());
    assert_eq!(doc["RoleArn"], ROLE_ARN);
    // An SDK reaches the profile with the query in its URI.
    let recorder = Recorder::start().await;
    boto3_through_the_endpoint(&s, "/v1/credentials?profile=audit", &recorder).await;
    recorder.assert_last_signed_with(&chained, "boto3 with ?profile=audit");
    sts.assert_all_signatures_valid();
    sts.assert_no_issued_secrets(&s.h.logs.text(), "the logs");
    s.finish(&token).await;
}

const BOTO3_CALL: &str = "import boto3, sys
session = boto3.Session()
print(session.get_credentials().method)
sts = session.client('sts', endpoint_url=sys.argv[1], region_name='us-east-1')
print(sts.get_caller_identity()['Account'])";

/// boto3 with exactly the two container variables (the URI ends in `uri`), IMDS off, no
/// other credentials.
async fn boto3_through_the_endpoint(s: &Setup, uri: &str, recorder: &Recorder) -> String {
    let home = tempfile::tempdir().unwrap();
    let empty = home.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let output = tokio::process::Command::new(python_bin().join("python"))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", python_bin().display()))
        .env("HOME", home.path())
        .env("LANG", "C.UTF-8")
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{}{uri}", s.addr),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &s.token_file)
        .args(["-c", BOTO3_CALL, &recorder.url()])
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "boto3 failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn boto3_signs_with_the_simulators_credentials_from_the_endpoint() {
    let recorder = Recorder::start().await;
    let s = Setup::start().await;
    let token = s.token();

    let issued = s.h.sim.current_credentials().unwrap();
    let out = boto3_through_the_endpoint(&s, "/v1/credentials", &recorder).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["container-role", "123456789012"]
    );
    recorder.assert_last_signed_with(&issued, "boto3");
    let served =
        s.h.daemon
            .metrics
            .container_requests
            .ok
            .load(Ordering::Relaxed);
    assert!(served >= 1, "boto3 fetched from the endpoint");

    // After a rotation a new process gets the new set.
    s.h.sim.rotate_now();
    s.h.advance_and_settle(HOUR).await;
    let rotated = s.h.sim.current_credentials().unwrap();
    assert_ne!(rotated.access_key_id, issued.access_key_id);
    assert_eq!(s.h.served().as_ref(), Some(&rotated));
    boto3_through_the_endpoint(&s, "/v1/credentials", &recorder).await;
    recorder.assert_last_signed_with(&rotated, "boto3 after rotation");
    s.finish(&token).await;
}

#[tokio::test]
async fn a_restart_rotates_the_token_and_a_clean_stop_removes_only_our_file() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("container-token");

    let first = Setup::start_at(&token_file, ManualClock::starting_now(), |_| {}).await;
    let old_token = first.token();
    assert_eq!(first.authorized("/v1/credentials").await.status, 200);
    first.finish(&old_token).await;
    assert!(!token_file.exists(), "a clean stop removes the token file");

    let second = Setup::start_at(&token_file, ManualClock::starting_now(), |_| {}).await;
    let new_token = second.token();
    assert_ne!(new_token, old_token);
    let stale = second
        .get("/v1/credentials", &[("authorization", &old_token)])
        .await;
    assert_eq!(stale.status, 403);
    assert_eq!(second.authorized("/v1/credentials").await.status, 200);
    // Another daemon's token in the file by now: it is left in place at our stop.
    std::fs::write(&token_file, "a-newer-daemons-token").unwrap();
    second.finish(&new_token).await;
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "a-newer-daemons-token"
    );
}

#[tokio::test]
async fn a_deleted_or_loosened_token_file_is_restored_with_the_same_token() {
    let s = Setup::start().await;
    let token = s.token();

    std::fs::remove_file(&s.token_file).unwrap();
    s.h.clock.advance(RESYNC_INTERVAL);
    wait_until("the token file is back", || s.token_file.exists()).await;
    assert_eq!(s.token(), token);
    assert_eq!(mode_of(&s.token_file), 0o600);

    std::fs::write(&s.token_file, "edited").unwrap();
    std::fs::set_permissions(&s.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The checker may be between two checks: keep moving time until it has run again.
    for _ in 0..200 {
        if std::fs::read_to_string(&s.token_file).unwrap() == token {
            break;
        }
        s.h.clock.advance(RESYNC_INTERVAL);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.token(), token);
    assert_eq!(mode_of(&s.token_file), 0o600);
    assert!(s
        .h
        .logs
        .contains("the container token file was deleted or changed"));
    assert_eq!(s.authorized("/v1/credentials").await.status, 200);
    s.finish(&token).await;
}

/// Someone else holds the port at start: the daemon starts anyway (the socket serves), the
/// endpoint's health row says why, a token file left from an earlier run is removed, and
/// once the port is free the endpoint binds it at its next retry and serves.
#[tokio::test]
async fn a_busy_port_never_stops_the_daemon_and_is_taken_once_free() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = squatter.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("container-token");
    std::fs::write(&token_file, "a-token-from-an-earlier-run").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let clock = ManualClock::starting_now();
    let mut options = HarnessOptions::new(&clock);
    let container = ContainerConfig {
        listen: vec![addr],
        token_file: token_file.clone(),
        clients: Vec::new(),
    };
    options.configure = Box::new(move |config| config.container = Some(container));
    let h = Harness::start_with(clock, options).await;
    assert_eq!(h.daemon.container, None, "not bound");
    assert!(h.served().is_some(), "the daemon runs and refreshes");
    let row = |h: &Harness| {
        h.daemon
            .health
            .snapshot()
            .into_iter()
            .find(|r| r.kind == "container")
            .expect("the endpoint has a health row")
    };
    let error = row(&h).last_error.expect("the failure is reported");
    assert!(
        error.contains(&format!("cannot listen on {addr}")) && error.contains("retrying in"),
        "{error}"
    );
    assert!(
        !token_file.exists(),
        "no token file pointing at the squatter"
    );
    assert!(h
        .logs
        .contains("removed a container token file left from an earlier run"));

    drop(squatter);
    // The endpoint writes its token file, then marks its row healthy: wait for both.
    for _ in 0..200 {
        if token_file.exists() && row(&h).last_error.is_none() {
            break;
        }
        h.clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = std::fs::read_to_string(&token_file).expect("the token file once bound");
    assert!(row(&h).last_error.is_none(), "{:?}", row(&h));
    let answer = send(
        addr,
        Method::GET,
        "/v1/credentials",
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!h.logs.contains(&token));
    h.finish().await;
}

#[test]
fn check_config_refuses_a_listen_address_off_loopback_and_bad_clients() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_imds-credd"))
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let refused = |text: &str, fragments: &[&str]| {
        let output = check(text);
        assert_eq!(output.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for fragment in fragments {
            assert!(stderr.contains(fragment), "{fragment:?} not in {stderr}");
        }
    };
    refused(
        "[container]\nlisten = \"0.0.0.0:28679\"\n",
        &[
            "config.toml:2:",
            "container.listen",
            "loopback",
            "169.254.170.23",
        ],
    );
    refused(
        "[container]\nlisten = [\"127.0.0.1:28679\", \"169.254.170.2:80\"]\n",
        &["config.toml:2:", "container.listen", "169.254.170.2:80"],
    );
    let clients = "[container]\nlisten = [\"127.0.0.1:28679\", \"169.254.170.23:80\"]\n\
                   [[container.client]]\nname = \"web\"\ntoken_file = \"/run/c/web/token\"\n\
                   [[container.client]]\nname = \"api\"\n";
    refused(
        &format!("{clients}token_file = \"/run/c/web/t2\"\n"),
        &[
            "config.toml:8:",
            "container.client.token_file",
            "folder of its own",
        ],
    );
    refused(
        &format!("{clients}token_file = \"/run/c/api/token\"\nprofile = \"audit\"\n"),
        &[
            "config.toml:9:",
            "container.client.profile",
            "no [[assume]]",
        ],
    );
    refused(
        &format!("{clients}token_file = \"/run/c/api/token\"\nallow_from = [\"172.17.0.0/33\"]\n"),
        &["config.toml:9:", "container.client.allow_from"],
    );
    let accepted = check("[container]\nlisten = \"127.0.0.1:28679\"\n");
    assert_eq!(accepted.status.code(), Some(0), "{accepted:?}");
    let accepted = check(&format!(
        "{clients}token_file = \"/run/c/api/token\"\nallow_from = [\"172.17.0.0/16\", \"fd00::/8\"]\n"
    ));
    assert_eq!(accepted.status.code(), Some(0), "{accepted:?}");
}

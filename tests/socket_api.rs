//! The unix socket API over real sockets in a temp folder: every route and format, peer
//! checks, the socket file's life (mode, group, stale, refusals, removal), systemd
//! activation in a child process, and the limits that keep hostile clients from starving
//! good ones. Every test ends by scanning the captured logs for the secrets.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]
#![cfg(target_os = "linux")]

mod common;

use common::reachable::reachable;
use common::{unix_http, LogCapture};
use imds_credd::clock::{Clock, ManualClock, SharedClock};
use imds_credd::config::{FileMode, SocketConfig};
use imds_credd::credentials::secret::Secret;
use imds_credd::credentials::Credentials;
use imds_credd::health::metrics::Metrics;
use imds_credd::health::SinkHealth;
use imds_credd::refresh::state::{CredentialState, StateSender};
use imds_credd::serve::{Api, ServerLimits, SocketError, SocketServer};
use nix::unistd::{getegid, geteuid, Gid, Group};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use unix_http::{get, request};

const ACCESS_KEY_ID: &str = "ASIASOCKETTESTKEY001";
/// Holds `'`, `$` and a space so the env format's quoting is exercised by a real `sh`.
const SECRET_KEY: &str = "wJalr'XUtn$FEMI/K7MDENG bPxRfiCYSECRET";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjSESSIONTOKEN//+EXAMPLE==";
const AUDIT_SECRET_KEY: &str = "auditSECRETkey/+0123456789";
const AUDIT_TOKEN: &str = "auditSESSIONtoken//==";
const SECRETS: [&str; 4] = [SECRET_KEY, SESSION_TOKEN, AUDIT_SECRET_KEY, AUDIT_TOKEN];
const CRED_TTL: Duration = Duration::from_secs(6 * 3600);

/// Everything the daemon logs in this test binary, at `trace`.
fn logs() -> &'static LogCapture {
    static LOGS: OnceLock<LogCapture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let capture = LogCapture::default();
        capture.install_for_the_process();
        capture
    })
}

fn captured_logs() -> String {
    logs().text()
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "a secret appears in {what}:\n{text}"
        );
    }
}

fn assert_no_secret_in_logs() {
    assert_no_secret(&captured_logs(), "the logs");
}

/// The daemon side of a test: a clock, the refresher's channels, and the API over them.
struct World {
    clock: ManualClock,
    instance: StateSender,
    audit: StateSender,
    metrics: Arc<Metrics>,
    sinks: SinkHealth,
    api: Arc<Api>,
}

fn world() -> World {
    logs();
    let clock = ManualClock::starting_now();
    let (instance, instance_rx) = tokio::sync::watch::channel(CredentialState::default());
    let (audit, audit_rx) = tokio::sync::watch::channel(CredentialState::default());
    let metrics = Arc::new(Metrics::default());
    let sinks = SinkHealth::default();
    let shared: SharedClock = Arc::new(clock.clone());
    let profiles = BTreeMap::from([("audit".to_string(), audit_rx)]);
    let api = Arc::new(Api::new(
        instance_rx,
        profiles,
        shared,
        Arc::clone(&metrics),
        sinks.clone(),
    ));
    World {
        clock,
        instance,
        audit,
        metrics,
        sinks,
        api,
    }
}

fn credentials(key: &str, secret: &str, token: &str, expiration: SystemTime) -> Arc<Credentials> {
    Arc::new(Credentials {
        access_key_id: key.to_string(),
        secret_access_key: Secret::new(secret.to_string()),
        session_token: Secret::new(token.to_string()),
        expiration,
        account_id: None,
    })
}

impl World {
    /// Publishes a fresh instance-role set (and an audit-profile set) as the refresher would.
    fn publish(&self) {
        let now = self.clock.now();
        self.instance.send_replace(CredentialState {
            role: Some("app-role".into()),
            credentials: Some(credentials(
                ACCESS_KEY_ID,
                SECRET_KEY,
                SESSION_TOKEN,
                now + CRED_TTL,
            )),
            last_refresh: Some(now),
            next_refresh: Some(now + CRED_TTL - Duration::from_secs(3600)),
            last_error: None,
            clock_skew: None,
        });
        self.audit.send_replace(CredentialState {
            role: Some("arn:aws:iam::222222222222:role/audit".into()),
            credentials: Some(credentials(
                "ASIAAUDITKEY00000001",
                AUDIT_SECRET_KEY,
                AUDIT_TOKEN,
                now + Duration::from_secs(3600),
            )),
            last_refresh: Some(now),
            next_refresh: Some(now + Duration::from_secs(2700)),
            last_error: None,
            clock_skew: None,
        });
    }
}

fn socket_config(path: &Path) -> SocketConfig {
    SocketConfig {
        path: path.to_path_buf(),
        mode: FileMode(0o660),
        group: None,
        allow_uids: Vec::new(),
        allow_gids: Vec::new(),
        allow_sids: Vec::new(),
        ..SocketConfig::default()
    }
}

/// A socket being served by a background task.
struct Served {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    fn start(api: &Arc<Api>, config: &SocketConfig, limits: ServerLimits) -> Served {
        let server = SocketServer::open(config).expect("socket opens");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(Arc::clone(api), limits, shutdown.clone()));
        Served { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops within its grace")
            .expect("server task did not panic");
    }
}

/// A world with published credentials, served on a fresh socket within `limits`.
fn serve_published(limits: ServerLimits) -> (World, tempfile::TempDir, PathBuf, Served) {
    let w = world();
    w.publish();
    let (dir, path) = temp_socket();
    let served = Served::start(&w.api, &socket_config(&path), limits);
    (w, dir, path, served)
}

fn temp_socket() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.sock");
    (dir, path)
}

#[tokio::test]
async fn credentials_are_served_in_every_format() {
    let (w, dir, path, served) = serve_published(ServerLimits::default());
    let expiration = imds_credd::credentials::format_utc_timestamp(w.clock.now() + CRED_TTL);

    for uri in ["/v1/credentials", "/v1/credentials?format=json"] {
        let answer = get(&path, uri).await;
        assert_eq!(answer.status, 200, "{uri}: {}", answer.body);
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let doc = answer.json();
        assert_eq!(doc["Version"], 1);
        assert_eq!(doc["AccessKeyId"], ACCESS_KEY_ID);
        assert_eq!(doc["SecretAccessKey"], SECRET_KEY);
        assert_eq!(doc["SessionToken"], SESSION_TOKEN);
        assert_eq!(doc["Expiration"], expiration.as_str());
    }

    let answer = get(&path, "/v1/credentials?format=container").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let doc = answer.json();
    assert_eq!(doc["AccessKeyId"], ACCESS_KEY_ID);
    assert_eq!(doc["SecretAccessKey"], SECRET_KEY);
    assert_eq!(doc["Token"], SESSION_TOKEN);
    assert_eq!(doc["Expiration"], expiration.as_str());
    assert!(doc.get("SessionToken").is_none() && doc.get("Version").is_none());

    let answer = get(&path, "/v1/credentials?format=env").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let env_file = dir.path().join("credentials.env");
    std::fs::write(&env_file, &answer.body).unwrap();
    let sourced = Command::new("sh")
        .arg("-c")
        .arg(r#"set -eu; . "$1"; printf '%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN" "$AWS_CREDENTIAL_EXPIRATION""#)
        .arg("sh")
        .arg(&env_file)
        .output()
        .unwrap();
    assert!(sourced.status.success(), "{sourced:?}");
    let lines: Vec<String> = String::from_utf8(sourced.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let offset_expiration = expiration.replace('Z', "+00:00");
    assert_eq!(
        lines,
        [
            ACCESS_KEY_ID,
            SECRET_KEY,
            SESSION_TOKEN,
            offset_expiration.as_str()
        ]
    );

    served.stop().await;
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn a_profile_query_serves_the_assumed_role_and_an_unknown_one_is_404() {
    let (w, _dir, path, served) = serve_published(ServerLimits::default());

    let answer = get(&path, "/v1/credentials?profile=audit").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["SecretAccessKey"], AUDIT_SECRET_KEY);
    let answer = get(&path, "/v1/credentials?profile=audit&format=container").await;
    assert_eq!(answer.json()["Token"], AUDIT_TOKEN);
    // A profile's role ARN is known; the instance role's (a bare name from IMDS) is not.
    assert_eq!(
        answer.json()["RoleArn"],
        "arn:aws:iam::222222222222:role/audit"
    );
    let answer = get(&path, "/v1/credentials?format=container").await;
    assert!(answer.json().get("RoleArn").is_none(), "{}", answer.body);

    let answer = get(&path, "/v1/credentials?profile=nosuch").await;
    assert_eq!(answer.status, 404);
    let doc = answer.json();
    assert_eq!(doc["code"], "UnknownProfile");
    assert!(
        doc["message"].as_str().unwrap().contains("\"nosuch\""),
        "{doc}"
    );

    // The audit set lives one hour: past it only that profile goes to 503.
    w.clock.advance(Duration::from_secs(3600));
    let answer = get(&path, "/v1/credentials?profile=audit").await;
    assert_eq!(answer.status, 503);
    assert!(answer.json()["message"]
        .as_str()
        .unwrap()
        .contains("profile \"audit\""));
    assert_eq!(get(&path, "/v1/credentials").await.status, 200);

    served.stop().await;
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn without_credentials_every_credentials_request_is_503_json_with_the_last_error() {
    let w = world();
    w.instance.send_replace(CredentialState {
        role: Some("app-role".into()),
        credentials: None,
        last_refresh: None,
        next_refresh: None,
        last_error: Some("IMDS unreachable: connection refused".into()),
        clock_skew: None,
    });
    let (_dir, path) = temp_socket();
    let served = Served::start(&w.api, &socket_config(&path), ServerLimits::default());

    for uri in [
        "/v1/credentials",
        "/v1/credentials?format=container",
        "/v1/credentials?format=env",
    ] {
        let answer = get(&path, uri).await;
        assert_eq!(answer.status, 503, "{uri}");
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        let doc = answer.json();
        assert_eq!(doc["code"], "NoCredentials");
        let message = doc["message"].as_str().unwrap();
        assert!(
            message.contains("IMDS unreachable: connection refused"),
            "{message}"
        );
    }
    let health = get(&path, "/healthz").await;
    assert_eq!(health.status, 503);

    w.publish();
    let health = get(&path, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    served.stop().await;
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn held_credentials_flip_to_503_at_expiry_without_a_new_publication() {
    let (w, _dir, path, served) = serve_published(ServerLimits::default());
    assert_eq!(get(&path, "/v1/credentials").await.status, 200);

    w.clock.advance(CRED_TTL - Duration::from_secs(1));
    assert_eq!(get(&path, "/v1/credentials").await.status, 200);
    assert_eq!(get(&path, "/healthz").await.status, 200);

    w.clock.advance(Duration::from_secs(1));
    let answer = get(&path, "/v1/credentials?format=env").await;
    assert_eq!(answer.status, 503);
    let doc = answer.json();
    assert_eq!(doc["code"], "NoCredentials");
    assert!(
        doc["message"].as_str().unwrap().contains("expired at"),
        "{doc}"
    );
    assert_eq!(get(&path, "/healthz").await.status, 503);
    let status = get(&path, "/v1/status").await.json();
    assert_eq!(status["credentials_valid"], false);
    assert_eq!(status["expires_in_seconds"], 0);
    let metrics = get(&path, "/metrics").await.body;
    assert!(
        metrics.contains("\nimds_credd_credentials_valid 0\n"),
        "{metrics}"
    );

    served.stop().await;
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn a_rotated_set_is_served_at_once_in_every_format() {
    let (w, _dir, path, served) = serve_published(ServerLimits::default());
    let uris = [
        "/v1/credentials",
        "/v1/credentials?format=container",
        "/v1/credentials?format=env",
    ];
    for uri in uris {
        assert!(get(&path, uri).await.body.contains(ACCESS_KEY_ID));
    }
    w.clock.advance(Duration::from_secs(3600));
    let now = w.clock.now();
    w.instance.send_modify(|state| {
        state.credentials = Some(credentials(
            "ASIAROTATEDKEY000002",
            SECRET_KEY,
            SESSION_TOKEN,
            now + CRED_TTL,
        ));
    });
    for uri in uris {
        let body = get(&path, uri).await.body;
        assert!(
            body.contains("ASIAROTATEDKEY000002") && !body.contains(ACCESS_KEY_ID),
            "{uri}: {body}"
        );
    }
    served.stop().await;
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn status_and_metrics_report_state_counters_and_sinks_without_secrets() {
    let w = world();
    w.publish();
    w.metrics.imds_token_requests.store(3, Ordering::Relaxed);
    w.metrics.imds_get_requests.store(7, Ordering::Relaxed);
    w.metrics.refresh_successes.store(2, Ordering::Relaxed);
    w.metrics.refresh_failures.store(1, Ordering::Relaxed);
    let file = w
        .sinks
        .register("file", "/home/app/.aws/credentials".into());
    file.failed("cannot write /home/app/.aws/credentials: disk full".into());
    let env = w
        .sinks
        .register("env", "/run/imds-credd/credentials.env".into());
    env.succeeded(w.clock.now());
    let (_dir, path) = temp_socket();
    let served = Served::start(&w.api, &socket_config(&path), ServerLimits::default());
    w.clock.advance(Duration::from_secs(600));
    assert_eq!(get(&path, "/v1/credentials").await.status, 200);
    assert_eq!(get(&path, "/nope").await.status, 404);

    let answer = get(&path, "/v1/status").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_no_secret(&answer.body, "/v1/status");
    let status = answer.json();
    assert_eq!(status["role"], "app-role");
    assert_eq!(status["credentials_valid"], true);
    assert_eq!(status["expires_in_seconds"], CRED_TTL.as_secs() - 600);
    let expiration = imds_credd::credentials::format_utc_timestamp(
        w.clock.now() - Duration::from_secs(600) + CRED_TTL,
    );
    assert_eq!(status["expiration"], expiration.as_str());
    assert!(status["last_refresh"].as_str().unwrap().ends_with('Z'));
    assert!(status["next_refresh"].as_str().unwrap().ends_with('Z'));
    assert_eq!(status["last_error"], serde_json::Value::Null);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["profiles"]["audit"]["credentials_valid"], true);
    assert_eq!(status["sinks"][0]["kind"], "file");
    assert_eq!(status["sinks"][0]["target"], "/home/app/.aws/credentials");
    assert!(status["sinks"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("disk full"));
    assert_eq!(status["sinks"][1]["last_error"], serde_json::Value::Null);
    assert!(status["sinks"][1]["last_success"].is_string());
    assert_eq!(status["counters"]["imds_token_requests"], 3);
    assert_eq!(status["counters"]["refresh_failures"], 1);
    assert_eq!(status["counters"]["socket_requests"]["200"], 1);
    assert_eq!(status["counters"]["socket_requests"]["404"], 1);
    assert_eq!(status["counters"]["socket_connections"], 3);

    let answer = get(&path, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert!(answer
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let metrics = answer.body;
    assert_no_secret(&metrics, "/metrics");
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        assert!(series.starts_with("imds_credd_"), "{line:?}");
    }
    let expected = [
        "# TYPE imds_credd_credentials_valid gauge",
        "imds_credd_credentials_valid 1",
        "imds_credd_imds_requests_total{kind=\"token\"} 3",
        "imds_credd_imds_requests_total{kind=\"get\"} 7",
        "imds_credd_refreshes_total{result=\"success\"} 2",
        "imds_credd_refreshes_total{result=\"failure\"} 1",
        "imds_credd_socket_requests_total{status=\"200\"} 2",
        "imds_credd_socket_requests_total{status=\"404\"} 1",
        "imds_credd_sink_error{kind=\"file\",target=\"/home/app/.aws/credentials\"} 1",
        "imds_credd_sink_error{kind=\"env\",target=\"/run/imds-credd/credentials.env\"} 0",
        "# TYPE imds_credd_socket_requests_total counter",
        "# HELP imds_credd_credentials_expiry_timestamp_seconds ",
    ];
    for line in expected {
        assert!(
            metrics.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in:\n{metrics}"
        );
    }
    let expiry_seconds = (w.clock.now() - Duration::from_secs(600) + CRED_TTL)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(metrics.contains(&format!(
        "imds_credd_credentials_expiry_timestamp_seconds {expiry_seconds}\n"
    )));

    served.stop().await;
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn unknown_paths_methods_formats_and_parameters_get_json_errors() {
    let (_w, _dir, path, served) = serve_published(ServerLimits::default());

    let cases = [
        (hyper::Method::GET, "/v2/credentials", 404, "NotFound"),
        (hyper::Method::POST, "/nope", 404, "NotFound"),
        (
            hyper::Method::POST,
            "/v1/credentials",
            405,
            "MethodNotAllowed",
        ),
        (hyper::Method::DELETE, "/v1/status", 405, "MethodNotAllowed"),
        (hyper::Method::PUT, "/healthz", 405, "MethodNotAllowed"),
        (
            hyper::Method::GET,
            "/v1/credentials?format=xml",
            400,
            "UnknownFormat",
        ),
        (
            hyper::Method::GET,
            "/v1/credentials?fromat=env",
            400,
            "BadQuery",
        ),
    ];
    for (method, uri, status, code) in cases {
        let answer = request(&path, method.clone(), uri).await.unwrap();
        assert_eq!(answer.status, status, "{method} {uri}: {}", answer.body);
        assert_eq!(answer.json()["code"], code, "{method} {uri}");
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        if status == 405 {
            assert_eq!(answer.header("allow"), Some("GET"));
        }
    }

    served.stop().await;
    assert_no_secret_in_logs();
}

/// Runs `GET uri` on `socket` in a child process (this test binary again, running
/// `child_get`) under `uid`/`gid`, so the server sees another peer. Returns the status.
fn get_as(uid: u32, gid: u32, socket: &Path, uri: &str) -> u16 {
    use std::os::unix::process::CommandExt;
    let output = Command::new(reachable(&std::env::current_exe().unwrap()))
        .args([
            "child_get",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SOCKET_TEST_CHILD_PATH", socket)
        .env("SOCKET_TEST_CHILD_URI", uri)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD STATUS ").map(|(_, rest)| rest.get(..3)))
        .flatten()
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("child printed no status: {output:?}"))
}

/// Not a test of its own: the child half of `get_as`.
#[tokio::test]
#[ignore = "run by peer tests in a child process"]
async fn child_get() {
    let path = std::env::var("SOCKET_TEST_CHILD_PATH").expect("run by get_as");
    let uri = std::env::var("SOCKET_TEST_CHILD_URI").expect("run by get_as");
    let answer = get(Path::new(&path), &uri).await;
    println!("CHILD STATUS {}", answer.status);
}

#[tokio::test]
async fn a_peer_outside_the_allow_lists_gets_403_and_is_logged_by_uid_and_pid() {
    let w = world();
    w.publish();
    let (dir, path) = temp_socket();
    let me = geteuid().as_raw();
    if me == 0 {
        // Root is always allowed (see `socket::peer`), so the refused peer is a child
        // process running as nobody. It needs to reach the socket: open folder and mode.
        const NOBODY: u32 = 65534;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut config = socket_config(&path);
        config.mode = FileMode(0o666);
        config.allow_uids = vec![4242];
        let served = Served::start(&w.api, &config, ServerLimits::default());
        assert_eq!(
            get(&path, "/v1/credentials").await.status,
            200,
            "root always allowed"
        );
        let status = tokio::task::spawn_blocking({
            let path = path.clone();
            move || get_as(NOBODY, NOBODY, &path, "/v1/credentials")
        })
        .await
        .unwrap();
        assert_eq!(status, 403);
        let logs = captured_logs();
        assert!(
            logs.lines().any(|l| l.contains("refusing a socket peer")
                && l.contains(&format!("uid={NOBODY}"))
                && l.contains("pid=")),
            "{logs}"
        );
        served.stop().await;

        for (uids, gids) in [(vec![NOBODY], vec![]), (vec![4242], vec![NOBODY])] {
            config.allow_uids = uids;
            config.allow_gids = gids;
            let served = Served::start(&w.api, &config, ServerLimits::default());
            let path = path.clone();
            let status = tokio::task::spawn_blocking(move || {
                get_as(NOBODY, NOBODY, &path, "/v1/credentials")
            })
            .await
            .unwrap();
            assert_eq!(status, 200, "allowed by {:?}", config);
            served.stop().await;
        }
    } else {
        let mut config = socket_config(&path);
        config.allow_uids = vec![me + 1];
        let served = Served::start(&w.api, &config, ServerLimits::default());
        let answer = get(&path, "/v1/credentials").await;
        assert_eq!(answer.status, 403);
        assert_eq!(answer.json()["code"], "Forbidden");
        assert_no_secret(&answer.body, "a 403 answer");
        let logs = captured_logs();
        assert!(
            logs.lines()
                .any(|l| l.contains("refusing a socket peer") && l.contains(&format!("uid={me}"))),
            "{logs}"
        );
        served.stop().await;
        config.allow_uids = vec![me];
        let served = Served::start(&w.api, &config, ServerLimits::default());
        assert_eq!(get(&path, "/v1/credentials").await.status, 200);
        served.stop().await;
    }
    assert_eq!(
        w.metrics.socket_requests.forbidden.load(Ordering::Relaxed),
        1
    );
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn the_socket_gets_the_configured_mode_and_group_in_a_created_folder() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/imds-credd/credentials.sock");
    let mut config = socket_config(&path);
    config.mode = FileMode(0o640);
    // Root may give the socket any group: pick one that is not ours to see it applied.
    let egid = getegid();
    let group = if egid.as_raw() == 0 {
        (1..1000)
            .find_map(|g| Group::from_gid(Gid::from_raw(g)).ok().flatten())
            .expect("a group other than root")
    } else {
        Group::from_gid(egid)
            .unwrap()
            .expect("our own group has a name")
    };
    config.group = Some(group.name.clone());
    let served = Served::start(&w.api, &config, ServerLimits::default());

    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), group.gid.as_raw());
    let folder = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(folder.mode() & 0o777, 0o755 & !current_umask());
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["credentials.sock"], "no temporary socket left");
    served.stop().await;

    // No group configured and no `imds-credd` group on this machine: left as created.
    config.group = None;
    let served = Served::start(&w.api, &config, ServerLimits::default());
    if Group::from_name("imds-credd").unwrap().is_none() {
        assert_eq!(std::fs::metadata(&path).unwrap().gid(), egid.as_raw());
    }
    served.stop().await;

    config.group = Some("no-such-group-for-imds-credd".into());
    let err = SocketServer::open(&config).unwrap_err();
    assert!(matches!(err, SocketError::UnknownGroup { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "socket group \"no-such-group-for-imds-credd\" does not exist"
    );
    assert!(!path.exists(), "nothing bound when the group is refused");
    assert_no_secret_in_logs();
}

fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_a_live_one_or_a_regular_file_is_refused() {
    let w = world();
    w.publish();
    let (dir, path) = temp_socket();
    // A crashed run: the socket file stays, nothing listens on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(common::file_type(&path).is_socket());
    let served = Served::start(&w.api, &socket_config(&path), ServerLimits::default());
    assert_eq!(get(&path, "/healthz").await.status, 200);

    // A second daemon on the same path finds the first one answering.
    let err = SocketServer::open(&socket_config(&path)).unwrap_err();
    assert!(matches!(err, SocketError::AlreadyServing { .. }), "{err:?}");
    assert!(err.to_string().contains("already answering"), "{err}");
    assert_eq!(
        get(&path, "/healthz").await.status,
        200,
        "the first one is untouched"
    );
    served.stop().await;

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "precious data\n").unwrap();
    let err = SocketServer::open(&socket_config(&file)).unwrap_err();
    assert!(matches!(err, SocketError::NotASocket { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} exists and is not a socket; refusing to replace it",
            file.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious data\n");
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn a_clean_stop_closes_idle_connections_and_removes_the_socket() {
    let limits = ServerLimits {
        shutdown_grace: Duration::from_secs(60),
        ..ServerLimits::default()
    };
    let (_w, _dir, path, served) = serve_published(limits);
    // A keep-alive connection that has had its answer and sits idle.
    let mut idle = tokio::net::UnixStream::connect(&path).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));

    // Stops well within the 60 s grace: idle connections are closed, not waited out.
    served.stop().await;
    assert!(!path.exists(), "socket removed on clean stop");
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut answer))
        .await
        .expect("idle connection closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "idle connection closed by the server");
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped_while_others_are_served() {
    let limits = ServerLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(500),
        ..ServerLimits::default()
    };
    let (_w, _dir, path, served) = serve_published(limits);
    let mut stuck = tokio::net::UnixStream::connect(&path).await.unwrap();
    stuck
        .write_all(b"GET /v1/credentials HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One slot is held by the stuck client; the other serves good clients meanwhile.
    for _ in 0..5 {
        assert_eq!(get(&path, "/v1/credentials").await.status, 200);
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stuck.read_to_end(&mut rest))
        .await
        .expect("the stuck client is dropped after the header timeout")
        .ok();
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "never answered"
    );
    assert_eq!(get(&path, "/healthz").await.status, 200);
    served.stop().await;
    assert_no_secret_in_logs();
}

/// A connection that sends nothing is closed after the first-byte deadline (2 s), long
/// before the header timeout; one that has sent part of its head keeps the header timeout.
#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_first_byte_deadline() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(10),
        ..ServerLimits::default()
    };
    let (_w, _dir, path, served) = serve_published(limits);
    let started = std::time::Instant::now();
    let mut silent = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut partial = tokio::net::UnixStream::connect(&path).await.unwrap();
    partial.write_all(b"GET /v1/cred").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(6), silent.read_to_end(&mut rest))
        .await
        .expect("the silent connection is closed")
        .ok();
    let closed_after = started.elapsed();
    assert!(
        closed_after >= imds_credd::serve::server::FIRST_BYTE_DEADLINE
            && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
    assert!(rest.is_empty(), "nothing was sent to it");
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), partial.read(&mut byte))
            .await
            .is_err(),
        "the connection that sent part of a head is still open"
    );
    drop(partial);
    assert_eq!(get(&path, "/v1/credentials").await.status, 200);
    served.stop().await;
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn past_the_connection_cap_new_clients_wait_for_a_slot_instead_of_failing() {
    let limits = ServerLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let (_w, _dir, path, served) = serve_published(limits);
    // Connects and never sends a byte.
    let _silent = tokio::net::UnixStream::connect(&path).await.unwrap();
    // The only slot is taken; this client queues until the silent one times out.
    let answer = tokio::time::timeout(Duration::from_secs(10), get(&path, "/healthz"))
        .await
        .expect("served once the slot frees");
    assert_eq!(answer.status, 200);
    served.stop().await;
    assert_no_secret_in_logs();
}

#[tokio::test]
async fn huge_headers_and_garbage_are_refused_and_the_server_stays_up() {
    let (_w, _dir, path, served) = serve_published(ServerLimits::default());

    let mut huge = tokio::net::UnixStream::connect(&path).await.unwrap();
    let filler = "a".repeat(64 * 1024);
    let request = format!("GET /v1/credentials HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n");
    // The server may close before reading it all; a broken pipe is part of the answer.
    let _ = huge.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), huge.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let mut garbage = tokio::net::UnixStream::connect(&path).await.unwrap();
    garbage
        .write_all(b"\x00\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), garbage.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    assert_eq!(get(&path, "/v1/credentials").await.status, 200);
    served.stop().await;
    assert_no_secret_in_logs();
}

/// Not a test of its own: the daemon half of the activation test, run in a child process
/// whose fd 3 is the listening socket and whose environment has LISTEN_PID/LISTEN_FDS.
#[tokio::test]
#[ignore = "run by systemd_activation_serves_the_passed_socket_and_leaves_it"]
async fn child_activated_server() {
    let path = std::env::var("SOCKET_TEST_CHILD_PATH").expect("run by the activation test");
    let w = world();
    w.publish();
    let shutdown = CancellationToken::new();
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        sigterm.recv().await;
        stop.cancel();
    });
    let config = socket_config(Path::new(&path));
    let result = imds_credd::serve::run(&config, Arc::clone(&w.api), shutdown).await;
    println!("CHILD RESULT {result:?}");
    result.unwrap();
}

#[tokio::test]
async fn systemd_activation_serves_the_passed_socket_and_leaves_it() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    logs();
    let (_dir, path) = temp_socket();
    // What systemd does: bind and listen, then pass the socket as fd 3.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args([
            "child_activated_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LISTEN_FDS", "1")
        .env("SOCKET_TEST_CHILD_PATH", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only async-signal-safe calls (fcntl, dup2) run between fork and exec, on fds
    // that are open: `fd` is our listener, alive until the child is spawned.
    unsafe {
        command.pre_exec(move || {
            let listener = std::os::fd::BorrowedFd::borrow_raw(fd);
            if fd == 3 {
                // Already at 3: only clear close-on-exec so it survives the exec.
                let keep = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty());
                nix::fcntl::fcntl(listener, keep)?;
            } else {
                // dup2 leaves the copy without close-on-exec; the exec'd child owns it.
                std::mem::forget(nix::unistd::dup2_raw(listener, 3)?);
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();

    // The child must be the one answering: we never accept on our copy. Had it bound the
    // path itself, it would have found our listener answering and refused to start.
    let answer = tokio::time::timeout(Duration::from_secs(30), get(&path, "/healthz"))
        .await
        .expect("the activated child answers");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
    let answer = get(&path, "/v1/credentials").await;
    assert_eq!(answer.json()["AccessKeyId"], ACCESS_KEY_ID);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "child failed: {status:?}");
    assert!(status.1.contains("CHILD RESULT Ok(())"), "{status:?}");
    assert!(
        status.1.contains("1 passed"),
        "the child ran the server: {status:?}"
    );
    assert!(
        common::file_type(&path).is_socket(),
        "a socket systemd owns is not unlinked"
    );
    assert_no_secret(&status.1, "the child's output");
    assert_no_secret(&status.2, "the child's errors");
    drop(listener);
    std::io::stdout().flush().unwrap();
}

#[tokio::test]
async fn a_path_too_long_for_a_unix_socket_is_refused_by_name() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{}.sock", "x".repeat(120)));
    let err = SocketServer::open(&socket_config(&path)).unwrap_err();
    assert!(matches!(err, SocketError::PathTooLong { .. }), "{err:?}");
    assert!(err.to_string().contains("too long"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

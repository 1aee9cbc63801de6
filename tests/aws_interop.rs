//! Real AWS clients (the AWS CLI v1 and boto3 from PyPI, in `target/pyenv`) get their
//! credentials through the client commands of a running daemon, and sign a request to a
//! loopback STS stand-in with exactly the set the IMDS simulator issued: the access key id
//! and session token from the headers, the secret key by checking the SigV4 signature.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;

use bytes::Bytes;
use common::aws_clients::python_bin;
use common::daemon_process::{text, Sandbox, BIN};
use common::recorder::Recorder;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Request, Response};
use hyper_util::rt::TokioIo;
use imds_credd::client::socket_client::SocketClient;
use imds_credd::demo::simulator::SimulatorOptions;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ACCOUNT: &str = "123456789012";

/// boto3's default chain (or a named profile), calling STS at the recorder.
const BOTO3_CALL: &str = "import boto3, sys
session = boto3.Session(profile_name=sys.argv[2]) if len(sys.argv) > 2 else boto3.Session()
sts = session.client('sts', endpoint_url=sys.argv[1], region_name='us-east-1')
print(sts.get_caller_identity()['Account'])";

/// `aws` arguments for one STS call to the recorder at `url`, printing only the account.
fn sts_call(url: &str) -> [&str; 10] {
    [
        "sts",
        "get-caller-identity",
        "--endpoint-url",
        url,
        "--region",
        "us-east-1",
        "--query",
        "Account",
        "--output",
        "text",
    ]
}

/// A client process with nothing of the caller's: no AWS variables, an empty HOME, the
/// given config file, no shared credentials file, IMDS disabled so no SDK falls back to it.
fn aws_client(program: &str, home: &Path, config_file: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", python_bin().display()))
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("AWS_CONFIG_FILE", config_file)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-credentials-file"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// Runs `command`, requires success, and requires that it printed the account id.
fn assert_called_sts(command: &mut Command, client: &str) {
    let output = command.output().expect("client runs");
    assert!(
        output.status.success(),
        "{client} failed: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(text(&output.stdout).trim(), ACCOUNT, "{client}");
}

/// A temp HOME with an empty config file, for clients that must find nothing there.
fn empty_home(sandbox: &Sandbox) -> (PathBuf, PathBuf) {
    let home = sandbox.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("empty-config");
    std::fs::write(&config, "").unwrap();
    (home, config)
}

#[test]
fn credential_process_in_aws_config_makes_the_cli_and_boto3_sign_with_the_issued_set() {
    // The daemon refreshes every ~2 s, so a rotation reaches it within the test.
    let sandbox = Sandbox::with_daemon(
        SimulatorOptions::default(),
        &["--refresh-max-interval", "2s"],
    );
    let recorder = sandbox.runtime().block_on(Recorder::start());
    let url = recorder.url();
    let (home, _) = empty_home(&sandbox);
    let config = home.join("config");
    std::fs::write(
        &config,
        format!(
            "[profile imds]\ncredential_process = {BIN} credential-process --socket {}\n",
            sandbox.socket.display()
        ),
    )
    .unwrap();

    for round in ["first set", "after a rotation"] {
        let issued = sandbox.current();
        let mut aws = aws_client("aws", &home, &config);
        aws.args(sts_call(&url)).args(["--profile", "imds"]);
        assert_called_sts(&mut aws, "aws cli");
        recorder.assert_last_signed_with(&issued, &format!("aws cli, {round}"));

        let mut boto3 = aws_client("python", &home, &config);
        boto3.args(["-c", BOTO3_CALL, &url, "imds"]);
        assert_called_sts(&mut boto3, "boto3");
        recorder.assert_last_signed_with(&issued, &format!("boto3, {round}"));

        sandbox.sim.rotate_now();
        let rotated = sandbox.current();
        sandbox.wait_until(
            "the daemon to serve the rotated set",
            Duration::from_secs(15),
            || sandbox.served().as_ref() == Some(&rotated),
        );
    }
}

#[test]
fn exec_and_a_shell_evaluating_env_sign_with_the_issued_set() {
    let sandbox = Sandbox::healthy();
    let recorder = sandbox.runtime().block_on(Recorder::start());
    let url = recorder.url();
    let (home, config) = empty_home(&sandbox);
    let issued = sandbox.current();
    let socket = sandbox.socket.to_str().unwrap();

    // A profile that does not exist and a stale token: exec must remove both, or the CLI
    // fails on the profile and botocore sends the stale token.
    let mut aws = aws_client(BIN, &home, &config);
    aws.env("AWS_PROFILE", "not-configured")
        .env("AWS_SECURITY_TOKEN", "stale-token")
        .args(["exec", "--socket", socket, "--"])
        .arg("aws")
        .args(sts_call(&url));
    assert_called_sts(&mut aws, "imds-credd exec -- aws");
    recorder.assert_last_signed_with(&issued, "imds-credd exec -- aws");

    let mut boto3 = aws_client(BIN, &home, &config);
    boto3
        .args(["exec", "--socket", socket, "--", "python", "-c", BOTO3_CALL])
        .arg(&url);
    assert_called_sts(&mut boto3, "imds-credd exec -- python");
    recorder.assert_last_signed_with(&issued, "imds-credd exec -- python");

    let mut sh = aws_client("sh", &home, &config);
    sh.args([
        "-c",
        r#"eval "$("$0" env --socket "$1")" && exec aws sts get-caller-identity --endpoint-url "$2" --region us-east-1 --query Account --output text"#,
        BIN,
        socket,
        &url,
    ]);
    assert_called_sts(&mut sh, "eval imds-credd env; aws");
    recorder.assert_last_signed_with(&issued, "eval imds-credd env; aws");
}

/// The token the container endpoint below requires, verbatim, as SDKs send it.
const CONTAINER_TOKEN: &str = "test-container-token";

/// A loopback HTTP endpoint in the shape SDKs expect from
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI`: it checks `Authorization` and answers with the
/// daemon's `?format=container` document, fetched from the socket for each request.
/// Returns its address and how many authorized requests it answered.
async fn container_endpoint(socket: PathBuf) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let socket = socket.clone();
            let counter = Arc::clone(&counter);
            let service = service_fn(move |request: Request<Incoming>| {
                let socket = socket.clone();
                let counter = Arc::clone(&counter);
                async move {
                    let authorized = request
                        .headers()
                        .get(header::AUTHORIZATION)
                        .is_some_and(|value| value == CONTAINER_TOKEN);
                    let (status, body) = if authorized {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let answer = SocketClient::new(&socket)
                            .get("/v1/credentials?format=container")
                            .await
                            .expect("the daemon answers");
                        (answer.status, answer.body)
                    } else {
                        let error = r#"{"code":"Unauthorized","message":"bad token"}"#;
                        (hyper::StatusCode::UNAUTHORIZED, Bytes::from(error))
                    };
                    let response = Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body))
                        .expect("valid response");
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, served)
}

#[test]
fn botocore_container_provider_accepts_the_container_format() {
    let sandbox = Sandbox::healthy();
    let recorder = sandbox.runtime().block_on(Recorder::start());
    let url = recorder.url();
    let (addr, served) = sandbox
        .runtime()
        .block_on(container_endpoint(sandbox.socket.clone()));
    let (home, config) = empty_home(&sandbox);
    let issued = sandbox.current();
    let container = |program: &str| {
        let mut command = aws_client(program, &home, &config);
        command
            .env(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{addr}/v1/credentials"),
            )
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN);
        command
    };

    let mut aws = container("aws");
    aws.args(sts_call(&url));
    assert_called_sts(&mut aws, "aws cli (container provider)");
    recorder.assert_last_signed_with(&issued, "aws cli (container provider)");

    let mut boto3 = container("python");
    boto3.args(["-c", BOTO3_CALL, &url]);
    assert_called_sts(&mut boto3, "boto3 (container provider)");
    recorder.assert_last_signed_with(&issued, "boto3 (container provider)");
    assert!(
        served.load(Ordering::SeqCst) >= 2,
        "the container endpoint was not used"
    );
}

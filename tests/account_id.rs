//! The account id reaches every output: against the simulator with the extended credentials
//! path and against one that answers it 404 as older IMDS does (then `iam/info` names the
//! account), for the instance role and for an `[[assume]]` profile, and boto3 and the AWS
//! CLI from `target/pyenv` read it. The daemon and the client commands are child processes.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;
use common::{tcp_http, unix_http};

use common::assert_no_secrets;
use common::aws_clients::python_bin;
use common::daemon_process::{assert_success, text, Sandbox, BIN};
use common::sts::{start_daemon_with_audit_profile, ASSUMED_ACCOUNT};
use imds_credd::demo::simulator::{SimulatorOptions, ACCOUNT_ID};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const EXTENDED_PATH: &str = "/latest/meta-data/iam/security-credentials-extended/demo-role";
const LEGACY_PATH: &str = "/latest/meta-data/iam/security-credentials/demo-role";
const INFO_PATH: &str = "/latest/meta-data/iam/info";

/// A daemon with a `[[file]]` sink and the container endpoint (on a free port), against a
/// simulator with or without the extended path.
struct Setup {
    sandbox: Sandbox,
    credentials_file: PathBuf,
    token_file: PathBuf,
}

impl Setup {
    fn start(extended_credentials: bool, daemon_args: &[&str]) -> Setup {
        let mut sandbox = Sandbox::simulator(SimulatorOptions {
            extended_credentials,
            ..SimulatorOptions::default()
        });
        let credentials_file = sandbox.path("credentials");
        let file = format!("path={},profile=instance", credentials_file.display());
        let mut args = vec!["--file", &file];
        args.extend_from_slice(daemon_args);
        let token_file = sandbox.start_daemon_with_container(&args);
        sandbox.wait_until("the credentials file", Duration::from_secs(10), || {
            credentials_file.exists()
        });
        Setup {
            sandbox,
            credentials_file,
            token_file,
        }
    }

    fn ok(&self, command: &str, args: &[&str]) -> String {
        let output = self.sandbox.client(command, args).output().unwrap();
        assert_success(&output, &format!("{command} {args:?}"))
    }
}

/// Every output of the daemon names `account`: the `credential_process` JSON, every `env`
/// format, `exec`'s environment, `status` and `/v1/status`, the socket's container shape,
/// the credentials file and the container endpoint.
fn assert_every_output_names(setup: &Setup, account: &str) {
    let process: serde_json::Value =
        serde_json::from_str(&setup.ok("credential-process", &[])).unwrap();
    assert_eq!(process["AccountId"], account, "{process}");

    let lines = [
        ("sh", format!("export AWS_ACCOUNT_ID='{account}'")),
        ("systemd", format!("AWS_ACCOUNT_ID={account}")),
        ("powershell", format!("$Env:AWS_ACCOUNT_ID=\"{account}\"")),
        ("cmd", format!("set AWS_ACCOUNT_ID={account}")),
        ("env", format!("export AWS_ACCOUNT_ID={account}")),
        ("env-no-export", format!("AWS_ACCOUNT_ID={account}")),
        ("windows-cmd", format!("set AWS_ACCOUNT_ID={account}")),
    ];
    for (format, line) in lines {
        let out = setup.ok("env", &["--format", format]);
        assert_eq!(out.lines().last(), Some(line.as_str()), "{format}: {out}");
    }
    for format in ["json", "process"] {
        let out = setup.ok("env", &["--format", format]);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["AccountId"], account, "{format}: {out}");
    }
    let process = setup.ok("env", &["--format", "process"]);
    assert!(
        process.ends_with(&format!(",\n  \"AccountId\": \"{account}\"\n}}\n")),
        "{process}"
    );

    let listed = setup.ok("exec", &["--", "env"]);
    let line = format!("AWS_ACCOUNT_ID={account}");
    assert!(listed.lines().any(|l| l == line), "{listed}");

    let status = setup.ok("status", &[]);
    assert!(
        status.contains(&format!("\naccount:       {account}\n")),
        "{status}"
    );
    let status: serde_json::Value = serde_json::from_str(&setup.ok("status", &["--json"])).unwrap();
    assert_eq!(status["account_id"], account);

    let answer = setup.sandbox.runtime().block_on(unix_http::get(
        &setup.sandbox.socket,
        "/v1/credentials?format=container",
    ));
    assert_eq!(answer.json()["AccountId"], account, "{}", answer.body);

    let file = std::fs::read_to_string(&setup.credentials_file).unwrap();
    assert!(
        file.contains(&format!("\naws_account_id = {account}\n")),
        "{file}"
    );

    let token = std::fs::read_to_string(&setup.token_file).unwrap();
    let uri = setup.sandbox.container_uri();
    let answer = setup
        .sandbox
        .runtime()
        .block_on(tcp_http::get(&uri, &[("authorization", &token)]));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["AccountId"], account, "{}", answer.body);
}

/// The paths the simulator was asked, in order.
fn paths_asked(setup: &Setup) -> Vec<(String, u16)> {
    setup
        .sandbox
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| (r.path, r.status))
        .collect()
}

#[test]
fn with_the_extended_path_every_output_carries_its_account_id() {
    let setup = Setup::start(true, &[]);
    assert_every_output_names(&setup, ACCOUNT_ID);
    let asked = paths_asked(&setup);
    assert!(asked.contains(&(EXTENDED_PATH.into(), 200)), "{asked:?}");
    assert!(
        !asked
            .iter()
            .any(|(path, _)| path == LEGACY_PATH || path == INFO_PATH),
        "the extended document names the account: {asked:?}"
    );
    assert_no_secrets(
        &setup.sandbox.daemon_log(),
        &setup.sandbox.sim,
        "daemon log",
    );
}

#[test]
fn an_older_imds_gets_the_account_from_iam_info_and_the_legacy_path_is_remembered() {
    let setup = Setup::start(false, &["--refresh-max-interval", "1s"]);
    assert_every_output_names(&setup, ACCOUNT_ID);
    setup
        .sandbox
        .wait_until("three refreshes", Duration::from_secs(15), || {
            let asked = paths_asked(&setup);
            asked.iter().filter(|(p, _)| p == LEGACY_PATH).count() >= 3
        });
    let asked = paths_asked(&setup);
    let count = |path: &str| asked.iter().filter(|(p, _)| p == path).count();
    assert_eq!(
        count(EXTENDED_PATH),
        1,
        "asked once, then remembered: {asked:?}"
    );
    assert!(asked.contains(&(EXTENDED_PATH.into(), 404)), "{asked:?}");
    assert_eq!(count(INFO_PATH), 1, "the account is read once: {asked:?}");
    let log = setup.sandbox.daemon_log();
    assert_eq!(
        log.matches("IMDS has no security-credentials-extended path")
            .count(),
        1,
        "{log}"
    );
    assert_no_secrets(&log, &setup.sandbox.sim, "daemon log");
}

#[test]
fn an_assumed_role_profile_carries_the_assumed_roles_account() {
    let mut sandbox = Sandbox::simulator(SimulatorOptions::default());
    let role_arn = format!("arn:aws:iam::{ASSUMED_ACCOUNT}:role/efgh");
    let sts = start_daemon_with_audit_profile(&mut sandbox, &role_arn);
    let run = |command: &str, args: &[&str]| {
        let output = sandbox.client(command, args).output().unwrap();
        assert_success(&output, command)
    };
    let doc: serde_json::Value =
        serde_json::from_str(&run("credential-process", &["--profile", "audit"])).unwrap();
    assert_eq!(doc["AccountId"], ASSUMED_ACCOUNT);
    let env = run("env", &["--profile", "audit", "--format", "env"]);
    assert!(
        env.ends_with(&format!("export AWS_ACCOUNT_ID={ASSUMED_ACCOUNT}\n")),
        "{env}"
    );
    let doc: serde_json::Value = serde_json::from_str(&run("credential-process", &[])).unwrap();
    assert_eq!(
        doc["AccountId"], ACCOUNT_ID,
        "the instance role keeps its own"
    );
    let status = run("status", &[]);
    assert!(
        status.contains(&format!("; account {ASSUMED_ACCOUNT}")),
        "{status}"
    );
    sts.assert_no_issued_secrets(&sandbox.daemon_log(), "daemon log");
}

/// boto3's view of a session's credentials: `ACCESS_KEY ACCOUNT_ID`.
const BOTO3_ACCOUNT: &str = "import boto3, sys
session = boto3.Session(profile_name=sys.argv[1]) if len(sys.argv) > 1 else boto3.Session()
creds = session.get_credentials().get_frozen_credentials()
print(creds.access_key, creds.account_id)";

/// A Python or AWS CLI child with nothing of the caller's but `PATH`, an empty `HOME` and
/// the given config and credentials files; IMDS disabled so no SDK falls back to it, and
/// every HTTPS request sent to a closed loopback port so nothing leaves the machine.
fn client(program: &str, home: &Path, config: &Path, credentials: &Path) -> Command {
    let mut command = Command::new(python_bin().join(program));
    command
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", python_bin().display()))
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("AWS_CONFIG_FILE", config)
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("AWS_MAX_ATTEMPTS", "1");
    command
}

#[test]
fn boto3_and_the_aws_cli_read_the_account_id_from_what_the_daemon_publishes() {
    let setup = Setup::start(false, &[]);
    let issued = setup.sandbox.current();
    let expected = format!("{} {ACCOUNT_ID}", issued.access_key_id);
    let home = setup.sandbox.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("config");
    std::fs::write(
        &config,
        format!(
            "[profile imds]\ncredential_process = {BIN} credential-process --socket {}\n",
            setup.sandbox.socket.display()
        ),
    )
    .unwrap();
    let no_file = home.join("no-credentials-file");
    let boto3 = |credentials: &Path, args: &[&str]| {
        let mut python = client("python", &home, &config, credentials);
        python.args(["-c", BOTO3_ACCOUNT]).args(args);
        python
    };

    let out = assert_success(
        &boto3(&no_file, &["imds"]).output().unwrap(),
        "credential_process",
    );
    assert_eq!(out.trim(), expected, "boto3 through credential_process");

    let out = assert_success(
        &boto3(&setup.credentials_file, &["instance"])
            .output()
            .unwrap(),
        "credentials file",
    );
    assert_eq!(out.trim(), expected, "boto3 through the credentials file");

    let mut exec = setup.sandbox.client("exec", &["--"]);
    exec.arg(python_bin().join("python"))
        .args(["-c", BOTO3_ACCOUNT])
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &no_file)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let out = assert_success(&exec.output().unwrap(), "exec");
    assert_eq!(out.trim(), expected, "boto3 through exec's environment");

    let mut container = boto3(&no_file, &[]);
    container
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            setup.sandbox.container_uri(),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &setup.token_file);
    let out = assert_success(&container.output().unwrap(), "container endpoint");
    assert_eq!(out.trim(), expected, "boto3 through the container endpoint");

    // The AWS CLI puts the account into DynamoDB's account-based endpoint: its debug log
    // names the host it resolved before the (refused) connection.
    let mut aws = client("aws", &home, &config, &no_file);
    aws.args([
        "dynamodb",
        "list-tables",
        "--region",
        "us-east-1",
        "--profile",
        "imds",
        "--debug",
    ]);
    let output = aws.output().unwrap();
    let log = text(&output.stderr);
    let host =
        format!("Endpoint provider result: https://{ACCOUNT_ID}.ddb.us-east-1.amazonaws.com");
    assert!(log.contains(&host), "aws cli resolved no account endpoint");
}

//! Bridged containers on `169.254.170.23`, with network namespaces this test makes (as
//! root): a "host" namespace holding the IMDS simulator, the loopback STS, the real daemon
//! (`imds-credd run`) and `169.254.170.23/32` on `lo` (put there by `imds-credd
//! container-address up` run inside it), and two "container" namespaces, each joined to the
//! host by a veth pair with link-local addresses and a default route via the host end. In
//! each container botocore (the test venv) with `AWS_CONTAINER_CREDENTIALS_FULL_URI` and its
//! client's token file gets its client's set, and the AWS CLI signs a call with it (to a
//! recorder listening inside that container); the refusals are checked from inside the
//! containers too. The namespaces go away even when the test fails (a Drop guard).
#![allow(clippy::disallowed_methods)]
// Tests time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use common::aws_clients::python_bin;
use common::daemon_process::{assert_success, clear_aws_variables, text, Sandbox, BIN};
use common::netns::{in_namespace, ip};
use common::recorder::Recorder;
use common::sts::StsServer;
use common::{require, unix_http};
use imds_credd::clock::{SharedClock, SystemClock};
use imds_credd::credentials::Credentials;
use imds_credd::demo::simulator::SimulatorOptions;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The port on `169.254.170.23` in the host namespace (a namespace of our own: no clash).
const PORT: u16 = 8080;
const ROLE_ARN: &str = "arn:aws:iam::222222222222:role/audit-role";

/// `ip netns …` names of one run, removed (with their veths) on drop, after the daemon.
struct Namespaces {
    host: String,
    containers: Vec<String>,
    daemon: Option<Child>,
}

impl Namespaces {
    fn create() -> Namespaces {
        // Tests of this file run at once: each run's names differ.
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{run}-{}", std::process::id());
        let namespaces = Namespaces {
            host: format!("icd-host-{tag}"),
            containers: vec![format!("icd-c1-{tag}"), format!("icd-c2-{tag}")],
            daemon: None,
        };
        ip(&["netns", "add", &namespaces.host]);
        ip(&["-n", &namespaces.host, "link", "set", "lo", "up"]);
        for (i, container) in namespaces.containers.iter().enumerate() {
            let (host_end, container_end) = (format!("icdh{i}-{tag}"), format!("icdc{i}-{tag}"));
            let (host_end, container_end) = (short(&host_end), short(&container_end));
            let subnet = 201 + i;
            ip(&["netns", "add", container]);
            ip(&["-n", container, "link", "set", "lo", "up"]);
            ip(&[
                "link",
                "add",
                &host_end,
                "netns",
                &namespaces.host,
                "type",
                "veth",
                "peer",
                "name",
                &container_end,
                "netns",
                container,
            ]);
            let host_address = format!("169.254.{subnet}.1/30");
            let container_address = format!("169.254.{subnet}.2/30");
            ip(&[
                "-n",
                &namespaces.host,
                "addr",
                "add",
                &host_address,
                "dev",
                &host_end,
            ]);
            ip(&["-n", &namespaces.host, "link", "set", &host_end, "up"]);
            ip(&[
                "-n",
                container,
                "addr",
                "add",
                &container_address,
                "dev",
                &container_end,
            ]);
            ip(&["-n", container, "link", "set", &container_end, "up"]);
            let gateway = format!("169.254.{subnet}.1");
            ip(&["-n", container, "route", "add", "default", "via", &gateway]);
        }
        namespaces
    }

    /// `ip netns exec NS PROGRAM ARGS…`, with no AWS variables inherited.
    fn exec(&self, namespace: &str, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", namespace]).arg(program);
        clear_aws_variables(&mut command);
        command
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        for namespace in self.containers.iter().chain([&self.host]) {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

/// Interface names are at most 15 bytes.
fn short(name: &str) -> String {
    name.chars().take(15).collect()
}

/// What botocore's container provider resolves in `namespace` with `token_file`: the
/// three parts of the set, or its error.
const BOTOCORE: &str = r#"
import json, botocore.session
creds = botocore.session.get_session().get_credentials()
frozen = creds.get_frozen_credentials()
print(json.dumps({"method": creds.method, "key": frozen.access_key, "secret": frozen.secret_key, "token": frozen.token}))
"#;

/// `sys.argv[3]` GETs in a row from inside a container, printing each status.
const FLOOD: &str = r#"
import sys, urllib.request, urllib.error
token = open(sys.argv[2]).read()
for _ in range(int(sys.argv[3])):
    request = urllib.request.Request(sys.argv[1], headers={"Authorization": token})
    try:
        print(urllib.request.urlopen(request, timeout=5).status)
    except urllib.error.HTTPError as error:
        print(error.code)
"#;

/// One GET from inside a container, printing the status and the body.
const GET: &str = r#"
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    request.add_header("Authorization", open(sys.argv[2]).read())
try:
    answer = urllib.request.urlopen(request, timeout=5)
    print(answer.status, answer.read().decode())
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
"#;

struct Run {
    namespaces: Namespaces,
    sandbox: Sandbox,
    sts: StsServer,
    dir: PathBuf,
}

impl Run {
    /// A program of the test venv (`python`, `aws`) in `container`, with no credentials
    /// file, no config file and no IMDS to fall back to.
    fn venv_program(&self, container: usize, program: &str) -> Command {
        let mut command = self.namespaces.exec(
            &self.namespaces.containers[container],
            &python_bin().join(program),
        );
        command
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        command
    }

    fn python(&self, container: usize) -> Command {
        self.venv_program(container, "python")
    }

    /// `program` in `container` pointed at the endpoint with the token of `client`, as a
    /// container is configured for it.
    fn container_provider(&self, container: usize, program: &str, client: &str) -> Command {
        let uri = format!("http://169.254.170.23:{PORT}/v1/credentials");
        let mut command = self.venv_program(container, program);
        command.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri).env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            self.token_file(client),
        );
        command
    }

    /// botocore in `container` with the token of `client`.
    fn botocore(&self, container: usize, client: &str) -> Output {
        self.container_provider(container, "python", client)
            .args(["-c", BOTOCORE])
            .output()
            .unwrap()
    }

    /// The AWS CLI in `container` with the token of `client`, calling
    /// `sts get-caller-identity` on a recorder that listens inside that container.
    fn aws_cli_signs(&self, container: usize, client: &str, expected: &Credentials) {
        let handle = self.sandbox.runtime().handle().clone();
        // The recorder's socket is made on a thread inside the container's namespace.
        let recorder = in_namespace(&self.namespaces.containers[container], move || {
            handle.block_on(Recorder::start())
        });
        let home = self.dir.join(format!("home-{client}"));
        std::fs::create_dir_all(&home).unwrap();
        let out = self
            .container_provider(container, "aws", client)
            .env("HOME", &home)
            .args(["sts", "get-caller-identity", "--endpoint-url"])
            .arg(recorder.url())
            .args(["--region", "us-east-1", "--output", "json"])
            .output()
            .unwrap();
        assert_success(&out, &format!("the AWS CLI in container {}", container + 1));
        let requests = recorder.requests();
        let signed_with = requests
            .last()
            .and_then(|r| r.access_key_id())
            .unwrap_or("nothing");
        eprintln!(
            "container {} ({client}): the AWS CLI signed sts get-caller-identity with {signed_with}",
            container + 1,
        );
        recorder.assert_last_signed_with(expected, &format!("the AWS CLI as {client}"));
    }

    /// A GET of `query` from `container`, with `client`'s token if given: (status, body).
    fn get(&self, container: usize, query: &str, client: Option<&str>) -> (u16, String) {
        let uri = format!("http://169.254.170.23:{PORT}/v1/credentials{query}");
        let mut command = self.python(container);
        command.args(["-c", GET, &uri]);
        if let Some(client) = client {
            command.arg(self.token_file(client));
        }
        let out = assert_success(&command.output().unwrap(), "the GET");
        let (status, body) = out.trim().split_once(' ').unwrap();
        (status.parse().unwrap(), body.to_string())
    }

    /// `consumers --json`: its text, and its rows.
    fn consumer_rows(&self) -> (String, Vec<Value>) {
        let consumers = assert_success(
            &self
                .sandbox
                .client("consumers", &["--json"])
                .output()
                .unwrap(),
            "consumers --json",
        );
        let rows = serde_json::from_str(&consumers).unwrap();
        (consumers, rows)
    }

    fn token_file(&self, client: &str) -> PathBuf {
        self.dir.join(client).join("token")
    }
}

/// The namespaces, the simulator and STS in the host namespace, the address up, and the
/// daemon with a `web` client (instance role, only from container 1) and an `audit` client
/// (the `audit` profile, only from container 2).
fn start() -> Run {
    let namespaces = Namespaces::create();
    let (sandbox, sts) = in_namespace(&namespaces.host, || {
        let sandbox = Sandbox::simulator(SimulatorOptions::default());
        let clock = Arc::new(SystemClock) as SharedClock;
        let sts = sandbox
            .runtime()
            .block_on(StsServer::start(clock, "us-east-1"));
        sts.attach()(&sandbox.sim);
        (sandbox, sts)
    });
    let dir = sandbox.dir.path().to_path_buf();
    let config = format!(
        r#"[imds]
endpoint = "{imds}"

[socket]
path = "{socket}"
rate_limit = "2/s"

[[assume]]
profile = "audit"
role_arn = "{ROLE_ARN}"
region = "us-east-1"
sts_endpoint = "{sts}"

[container]
listen = ["127.0.0.1:{PORT}", "169.254.170.23:{PORT}"]
token_file = "{dir}/default/token"

[[container.client]]
name = "web"
token_file = "{dir}/web/token"
allow_from = ["169.254.201.2"]

[[container.client]]
name = "audit"
token_file = "{dir}/audit/token"
profile = "audit"
allow_from = ["169.254.202.0/30"]
"#,
        imds = sandbox.sim.endpoint(),
        socket = sandbox.socket.display(),
        sts = sts.endpoint(),
        dir = dir.display(),
    );
    let config_file = dir.join("config.toml");
    std::fs::write(&config_file, config).unwrap();
    let mut run = Run {
        namespaces,
        sandbox,
        sts,
        dir,
    };
    let up = run
        .namespaces
        .exec(&run.namespaces.host, Path::new(BIN))
        .args(["container-address", "up", "--config"])
        .arg(&config_file)
        .output()
        .unwrap();
    assert_eq!(
        assert_success(&up, "container-address up"),
        "169.254.170.23 is on lo\n"
    );
    let log = std::fs::File::create(run.dir.join("daemon.log")).unwrap();
    let daemon = run
        .namespaces
        .exec(&run.namespaces.host, Path::new(BIN))
        .args(["run", "--config"])
        .arg(&config_file)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    run.namespaces.daemon = Some(daemon);
    let within = Duration::from_secs(15);
    run.sandbox
        .wait_until("the assumed role and the token files", within, || {
            !run.sts.issued().is_empty()
                && ["default", "web", "audit"]
                    .iter()
                    .all(|c| run.token_file(c).exists())
        });
    run
}

fn set_of(output: &Output, what: &str) -> Value {
    serde_json::from_str(&assert_success(output, what)).unwrap()
}

fn assert_is(seen: &Value, expected: &Credentials, what: &str) {
    assert_eq!(seen["method"], "container-role", "{what}: {seen}");
    assert_eq!(seen["key"], expected.access_key_id.as_str(), "{what}");
    assert_eq!(
        seen["secret"],
        expected.secret_access_key.expose(),
        "{what}"
    );
    assert_eq!(seen["token"], expected.session_token.expose(), "{what}");
}

#[test]
fn bridged_containers_get_their_own_clients_set_through_169_254_170_23() {
    if !require::root("make network namespaces") || !require::tool("ip") {
        return;
    }
    let run = start();

    // Each container's botocore gets what its token grants: the socket's instance set for
    // web, the STS-issued audit set for audit.
    let instance = run
        .sandbox
        .served()
        .expect("the socket serves the instance role");
    let web = set_of(&run.botocore(0, "web"), "botocore in container 1 as web");
    assert_is(&web, &instance, "web");
    let audit = set_of(
        &run.botocore(1, "audit"),
        "botocore in container 2 as audit",
    );
    let issued = run.sts.issued();
    assert_is(&audit, issued.last().unwrap(), "audit");
    assert_ne!(audit["key"], web["key"]);
    run.aws_cli_signs(0, "web", &instance);
    run.aws_cli_signs(1, "audit", issued.last().unwrap());
    eprintln!(
        "container 1 (web) saw {}, container 2 (audit) saw {}",
        web["key"], audit["key"]
    );

    // No token: 401. The web token asking for audit's profile: 403. Audit's token from
    // container 1, outside its allow_from: 403. Web's token from container 2: 403.
    let (status, body) = run.get(0, "", None);
    assert_eq!(
        (status, body.contains("MissingToken")),
        (401, true),
        "{body}"
    );
    let (status, body) = run.get(0, "?profile=audit", Some("web"));
    assert_eq!(
        (status, body.contains("ProfileNotGranted")),
        (403, true),
        "{body}"
    );
    let (status, body) = run.get(0, "", Some("audit"));
    assert_eq!(
        (status, body.contains("NotAllowedFrom")),
        (403, true),
        "{body}"
    );
    let (status, body) = run.get(1, "", Some("web"));
    assert_eq!(
        (status, body.contains("NotAllowedFrom")),
        (403, true),
        "{body}"
    );
    // The default client's token still works from a container (nothing restricts it).
    let (status, body) = run.get(1, "", Some("default"));
    assert_eq!(status, 200, "{body}");

    // Containers have no uid here: each address has a budget of its own ([socket]
    // rate_limit is 2/s, burst 4), so container 1 flooding leaves container 2 served.
    let uri = format!("http://169.254.170.23:{PORT}/v1/credentials");
    let flood = run
        .python(0)
        .args(["-c", FLOOD, &uri])
        .arg(run.token_file("web"))
        .arg("20")
        .output()
        .unwrap();
    let statuses = assert_success(&flood, "the flood from container 1");
    assert!(statuses.lines().any(|s| s == "429"), "{statuses}");
    let (status, body) = run.get(1, "", Some("audit"));
    assert_eq!(status, 200, "container 2 after container 1's flood: {body}");

    // consumers names each client and its container's address.
    let (consumers, rows) = run.consumer_rows();
    let answered = |client: &str, address: &str| {
        rows.iter().any(|r| {
            r["client"] == client
                && r["address"] == address
                && r["requests"].as_u64() > Some(r["refused"].as_u64().unwrap())
        })
    };
    assert!(answered("web", "169.254.201.2"), "{consumers}");
    assert!(answered("audit", "169.254.202.2"), "{consumers}");
    // Audit's token from container 1 was refused, and counted under audit and that address.
    let refused_audit = rows.iter().any(|r| {
        r["client"] == "audit"
            && r["address"] == "169.254.201.2"
            && r["refused"].as_u64() >= Some(1)
    });
    assert!(refused_audit, "{consumers}");
    let table = assert_success(
        &run.sandbox.client("consumers", &[]).output().unwrap(),
        "consumers",
    );
    for shown in [
        "container/web@169.254.201.2",
        "container/audit@169.254.202.2",
    ] {
        assert!(table.contains(shown), "{shown} not in\n{table}");
    }
    let metrics = run
        .sandbox
        .runtime()
        .block_on(unix_http::get(&run.sandbox.socket, "/metrics"))
        .body;
    for (client, peer) in [("web", "169.254.201.2"), ("audit", "169.254.202.2")] {
        let line = format!(
            "imds_credd_container_client_requests_total{{client=\"{client}\",peer=\"{peer}\",result=\"answered\"}}"
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }

    // Nothing secret in the daemon's trace log: no credentials, no token.
    let log = run.sandbox.daemon_log();
    common::assert_no_secrets(&log, &run.sandbox.sim, "the daemon log");
    run.sts.assert_no_issued_secrets(&log, "the daemon log");
    for client in ["default", "web", "audit"] {
        let token = std::fs::read_to_string(run.token_file(client)).unwrap();
        assert!(
            !log.contains(&token),
            "the daemon log holds {client}'s token"
        );
    }
    assert!(
        log.contains("refusing a container endpoint request"),
        "{log}"
    );
}

#[test]
fn container_address_up_and_down_are_idempotent_and_need_privilege() {
    if !require::root("make network namespaces") || !require::tool("ip") {
        return;
    }
    let namespace = format!("icd-addr-{}", std::process::id());
    let namespaces = Namespaces {
        host: namespace.clone(),
        containers: Vec::new(),
        daemon: None,
    };
    ip(&["netns", "add", &namespace]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let lo_addresses = || {
        let out = Command::new("ip")
            .args(["-n", &namespace, "-o", "addr", "show", "dev", "lo"])
            .output()
            .unwrap();
        text(&out.stdout)
    };
    let address = |action: &str| {
        namespaces
            .exec(&namespace, Path::new(BIN))
            .args(["container-address", action, "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    // Not listening on a container address: nothing to do.
    std::fs::write(&config, "[container]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let out = assert_success(&address("up"), "up without a container address");
    assert!(out.contains("nothing to do"), "{out}");
    assert!(!lo_addresses().contains("169.254.170.23"));

    std::fs::write(
        &config,
        "[container]\nlisten = [\"169.254.170.23:80\", \"[fd00:ec2::23]:80\"]\n",
    )
    .unwrap();
    for _ in 0..2 {
        assert_success(&address("up"), "up");
        let shown = lo_addresses();
        assert!(shown.contains("169.254.170.23/32"), "{shown}");
        assert!(shown.contains("fd00:ec2::23/128"), "{shown}");
    }
    // An unprivileged user cannot take it off.
    let mut as_nobody = namespaces.exec(&namespace, Path::new("setpriv"));
    let refused = as_nobody
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["container-address", "down"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("CAP_NET_ADMIN"));
    assert!(lo_addresses().contains("169.254.170.23/32"));
    // Down twice: off, then nothing to take off. A broken config does not stop it.
    std::fs::write(&config, "[container\n").unwrap();
    for _ in 0..2 {
        assert_success(&address("down"), "down");
        let shown = lo_addresses();
        assert!(
            !shown.contains("169.254.170.23") && !shown.contains("fd00:ec2::23"),
            "{shown}"
        );
    }
}

/// `sys.argv[4]` GETs from each `SOURCE` (`ADDRESS` or `ADDRESS,PORT`; `-`: the kernel's
/// choice) to `sys.argv[1]`
/// `sys.argv[2]` with the token in the file `sys.argv[3]`; prints how many were answered
/// 200 and the seconds the whole took.
const FROM_SOURCES: &str = r#"
import sys, time, http.client
host, port, token, count = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read(), int(sys.argv[4])
answered, started = 0, time.monotonic()
for source in sys.argv[5:]:
    for _ in range(count):
        source_ip, _, source_port = source.partition(",")
        bind = None if source == "-" else (source_ip, int(source_port or 0))
        connection = http.client.HTTPConnection(host, port, timeout=5, source_address=bind)
        connection.request("GET", "/v1/credentials", headers={"Authorization": token})
        answered += connection.getresponse().status == 200
        connection.close()
print(answered, time.monotonic() - started)
"#;

#[test]
fn a_host_user_on_the_container_address_counts_by_its_uid_whatever_host_address_it_uses() {
    if !require::root("make network namespaces")
        || !require::tool("ip")
        || !common::unit_user::can_switch_users()
    {
        return;
    }
    let run = start();
    // The user was given a token (say, for its own containers): a copy it can read.
    let shared = tempfile::tempdir().unwrap();
    let token = shared.path().join("token");
    std::fs::copy(run.token_file("default"), &token).unwrap();
    for (path, mode) in [(shared.path(), 0o755), (token.as_path(), 0o644)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    // On the host, as another uid: first loopback, then the container address from each of
    // the host's own addresses (the address itself, each veth's host end).
    const EACH: usize = 8;
    let attacker = common::unit_user::as_user(common::unit_user::ATTACKER_UID);
    let mut command = run
        .namespaces
        .exec(&run.namespaces.host, Path::new("setpriv"));
    command
        .args(attacker.get_args())
        .args(["/usr/bin/python3", "-c", FROM_SOURCES, "169.254.170.23"])
        .arg(PORT.to_string())
        .arg(&token)
        .arg(EACH.to_string())
        .args(["127.0.0.1", "-", "169.254.201.1", "169.254.202.1"]);
    let out = assert_success(&command.output().unwrap(), "the attacker's GETs");
    let (answered, took) = out.trim().split_once(' ').unwrap();
    let (answered, took): (f64, f64) = (answered.parse().unwrap(), took.parse().unwrap());
    // One budget, the uid's ([socket] rate_limit 2/s, burst 4): at most the burst plus what
    // refilled meanwhile (and one for rounding), not a fresh burst per host address.
    let budget = 4.0 + 2.0 * took + 1.0;
    eprintln!("{answered} of {} answered in {took:.2} s", 4 * EACH);
    assert!(
        answered >= 4.0 && answered <= budget,
        "{answered} answered in {took:.2} s: more than one uid's budget ({budget:.1})"
    );

    // consumers shows the user by its uid, at each address it used: not as a container.
    let (consumers, rows) = run.consumer_rows();
    for address in ["169.254.170.23", "169.254.201.1", "169.254.202.1"] {
        let row = rows
            .iter()
            .find(|r| r["address"] == address)
            .unwrap_or_else(|| panic!("no row for {address} in {consumers}"));
        assert_eq!(
            row["uid"],
            common::unit_user::ATTACKER_UID,
            "{address}: {consumers}"
        );
    }
}

/// Listens on every address at port `sys.argv[1]`, says so, and exits after 20 s.
const LISTENER: &str = r#"
import socket, sys, time
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(20)
"#;

/// A host user listening on the port a container connects from is not taken for that
/// container (the kernel's uid lookup falls back to such a listener when the 4-tuple has
/// no socket in the host's namespace): the container is answered, and its row names its
/// client and address, no uid.
#[test]
fn a_host_listener_on_a_containers_source_port_does_not_make_it_that_user() {
    if !require::root("make network namespaces")
        || !require::tool("ip")
        || !common::unit_user::can_switch_users()
    {
        return;
    }
    let run = start();
    const SOURCE_PORT: &str = "45678";
    let attacker = common::unit_user::as_user(common::unit_user::ATTACKER_UID);
    let mut listener = run
        .namespaces
        .exec(&run.namespaces.host, Path::new("setpriv"))
        .args(attacker.get_args())
        .args(["/usr/bin/python3", "-c", LISTENER, SOURCE_PORT])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let listening = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(listener.stdout.as_mut().unwrap()),
        &mut said,
    );
    let out = run
        .python(0)
        .args(["-c", FROM_SOURCES, "169.254.170.23"])
        .arg(PORT.to_string())
        .arg(run.token_file("web"))
        .arg("1")
        .arg(format!("169.254.201.2,{SOURCE_PORT}"))
        .output()
        .unwrap();
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!((listening.is_ok(), said.as_str()), (true, "listening\n"));
    let answered = assert_success(&out, "the container's GET");
    assert!(answered.starts_with("1 "), "{answered}");
    let (consumers, rows) = run.consumer_rows();
    let row = rows
        .iter()
        .find(|r| r["address"] == "169.254.201.2")
        .unwrap_or_else(|| panic!("no row for the container in {consumers}"));
    assert!(row["uid"].is_null(), "{consumers}");
    assert_eq!(row["client"], "web", "{consumers}");
}

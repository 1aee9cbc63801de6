//! Who used the role, and the per-uid rate limit: the daemon (a child process) records the
//! uids and programs that fetch credentials on its socket and its container endpoint, and a
//! uid that floods it gets `429` while another uid is served every time. The clients are
//! real processes of other uids (`setpriv --reuid`), as on a shared host. The daemon runs
//! as root in the first test (so it may read every `/proc` entry) and as its unit runs it
//! in the others (an unprivileged uid with the unit's capabilities, [`common::as_unit`]).
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(target_os = "linux")]

mod common;
use common::unix_http;

use common::assert_no_secrets;
use common::daemon_process::{assert_success, run_args, text, Sandbox};
use common::reachable::reachable_binary;
use common::unit_user::{as_daemon_user, as_user, can_switch_users, unit_capabilities, DAEMON_UID};
use imds_credd::demo::simulator::SimulatorOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Two users besides root: `nobody` and a uid with no passwd entry.
const NOBODY: u32 = 65_534;
const OTHER_UID: u32 = 64_250;

/// `setpriv` running `program` as `uid` (its own gid, no supplementary groups).
fn as_uid(uid: u32, program: impl Into<PathBuf>) -> Command {
    let mut command = as_user(uid);
    command.arg(program.into());
    command
}

/// A daemon whose socket every uid may open, with the container endpoint on a free port.
struct Setup {
    sandbox: Sandbox,
    token_file: PathBuf,
    /// The daemon when started as the unit runs it (the sandbox stops the other kind).
    unit_daemon: Option<std::process::Child>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.unit_daemon.take() {
            let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = daemon.wait();
        }
    }
}

impl Setup {
    /// `None` (the test skipped) where this machine cannot run processes as other uids.
    fn start(daemon_args: &[&str]) -> Option<Setup> {
        if !can_switch_users() {
            return None;
        }
        let mut sandbox = Sandbox::simulator(SimulatorOptions::default());
        std::fs::set_permissions(sandbox.dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let mut args = vec![
            "--socket-mode",
            "0666",
            "--allow-uid",
            "65534",
            "--allow-uid",
            "64250",
        ];
        args.extend_from_slice(daemon_args);
        let token_file = sandbox.start_daemon_with_container(&args);
        Some(Setup {
            sandbox,
            token_file,
            unit_daemon: None,
        })
    }

    /// The same daemon run as its unit runs it: as [`DAEMON_UID`] with exactly the unit's
    /// capabilities, its socket and token in a folder it owns. `None` (after one line saying
    /// so) where that cannot be done outside CI; in CI it fails instead.
    fn start_as_unit(daemon_args: &[&str]) -> Option<Setup> {
        if !can_switch_users() {
            return None;
        }
        let mut sandbox = Sandbox::simulator(SimulatorOptions::default());
        std::fs::set_permissions(sandbox.dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let run_dir = sandbox.path("run");
        std::fs::create_dir(&run_dir).unwrap();
        std::os::unix::fs::chown(&run_dir, Some(DAEMON_UID), Some(DAEMON_UID)).unwrap();
        sandbox.socket = run_dir.join("credentials.sock");
        let token_file = run_dir.join("container/token");
        let daemon = as_daemon_user(&unit_capabilities())
            .arg(reachable_binary())
            .args(run_args(&sandbox.sim.endpoint()))
            .arg("--socket")
            .arg(&sandbox.socket)
            .args([
                "--socket-mode",
                "0666",
                "--allow-uid",
                "65534",
                "--allow-uid",
                "64250",
            ])
            .args(["--container-listen", "127.0.0.1:0"])
            .arg("--container-token-file")
            .arg(&token_file)
            .args(daemon_args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(sandbox.path("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let setup = Setup {
            sandbox,
            token_file,
            unit_daemon: Some(daemon),
        };
        let sandbox = &setup.sandbox;
        sandbox.wait_until(
            "the daemon's first refresh",
            Duration::from_secs(15),
            || sandbox.served().is_some(),
        );
        Some(setup)
    }

    /// `imds-credd COMMAND --socket S ARGS…` as `uid`.
    fn client_as(&self, uid: u32, command: &str, args: &[&str]) -> Command {
        let mut cmd = as_uid(uid, reachable_binary());
        cmd.arg(command)
            .arg("--socket")
            .arg(&self.sandbox.socket)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        cmd
    }

    /// Runs [`CONTAINER_CLIENT`] as `uid`, requires a 200, and returns the token it used.
    fn fetch_from_the_container_endpoint_as(&self, uid: u32) -> String {
        let token = std::fs::read_to_string(&self.token_file).unwrap();
        // The system Python: the venv sits under the target dir, which other uids may not reach.
        let mut container = as_uid(uid, "/usr/bin/python3");
        container
            .args(["-c", CONTAINER_CLIENT, &self.sandbox.container_uri()])
            .env_clear()
            .env("TOKEN", &token);
        let output = container.output().unwrap();
        assert_eq!(assert_success(&output, "container client").trim(), "200");
        token
    }

    fn consumers(&self) -> Vec<serde_json::Value> {
        let output = self
            .sandbox
            .client("consumers", &["--json"])
            .output()
            .unwrap();
        serde_json::from_str(&assert_success(&output, "consumers --json")).unwrap()
    }

    fn metrics(&self) -> String {
        self.sandbox
            .runtime()
            .block_on(unix_http::get(&self.sandbox.socket, "/metrics"))
            .body
    }
}

/// A container-endpoint client in Python: GETs the URI with the token, prints the status.
const CONTAINER_CLIENT: &str = "import os, sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={'Authorization': os.environ['TOKEN']})
print(urllib.request.urlopen(request).status)";

#[test]
fn consumers_names_the_uids_and_programs_that_fetched_including_a_container_client() {
    let Some(setup) = Setup::start(&[]) else {
        return;
    };
    let output = setup
        .client_as(NOBODY, "credential-process", &[])
        .output()
        .unwrap();
    assert_success(&output, "credential-process as nobody");
    // A program that makes its command line two lines, to forge a row if it could.
    let mut forger = as_uid(NOBODY, "/bin/bash");
    forger
        .arg("-c")
        .arg("exec -a \"$(printf 'evil\\n65534 root')\" \"$BIN\" credential-process --socket \"$SOCKET\"")
        .env("BIN", reachable_binary())
        .env("SOCKET", &setup.sandbox.socket);
    let forged = forger.output().unwrap();
    assert_success(
        &forged,
        "credential-process as nobody with a two-line argv[0]",
    );
    let output = setup.sandbox.client("env", &[]).output().unwrap();
    assert_success(&output, "env as root");
    let token = setup.fetch_from_the_container_endpoint_as(OTHER_UID);

    let rows = setup.consumers();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let row = |uid: u32| {
        rows.iter()
            .find(|r| r["uid"] == uid)
            .unwrap_or_else(|| panic!("no row for uid {uid}: {rows:#?}"))
    };
    let nobody = row(NOBODY);
    assert_eq!(nobody["user"], "nobody");
    assert_eq!(nobody["exe"], reachable_binary().to_str().unwrap());
    assert_eq!(nobody["exe_verified"], true);
    assert_eq!(nobody["endpoint"], "socket");
    assert_eq!(
        (nobody["requests"].as_u64(), nobody["refused"].as_u64()),
        (Some(2), Some(0))
    );
    let cmdline = nobody["cmdline"].as_str().unwrap();
    assert!(
        cmdline.starts_with("evil\\u{a}65534 root credential-process"),
        "{cmdline}"
    );
    assert!(
        nobody["profile"].is_null() && nobody["pid"].is_u64(),
        "{nobody}"
    );
    assert!(nobody["first_seen"].is_string() && nobody["last_seen"].is_string());
    assert_eq!(row(0)["user"], "root");
    let other = row(OTHER_UID);
    assert_eq!(other["endpoint"], "container");
    assert_eq!(
        other["user"],
        OTHER_UID.to_string(),
        "no passwd entry: the number"
    );
    let exe = other["exe"].as_str().unwrap();
    assert!(
        exe.contains("python"),
        "the container client's pid was found: {other}"
    );

    let table = setup.sandbox.client("consumers", &[]).output().unwrap();
    let table = assert_success(&table, "consumers");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("UID "), "{table}");
    let nobody_line = lines.iter().find(|l| l.starts_with("65534 ")).unwrap();
    assert!(
        nobody_line.contains(" nobody ")
            && nobody_line.ends_with(reachable_binary().to_str().unwrap()),
        "{table}"
    );
    let other_line = lines.iter().find(|l| l.starts_with("64250 ")).unwrap();
    assert!(
        other_line.contains(" container/default@127.0.0.1 ") && other_line.ends_with(exe),
        "{table}"
    );

    let metrics = setup.metrics();
    for line in [
        "imds_credd_consumer_requests_total{uid=\"65534\",result=\"answered\"} 2",
        "imds_credd_consumer_requests_total{uid=\"64250\",result=\"answered\"} 1",
        "imds_credd_consumers_evicted_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let log = setup.sandbox.daemon_log();
    assert_eq!(log.matches("new credentials consumer").count(), 3, "{log}");
    assert!(!log.contains("evil\n"), "{log}");
    assert_no_secrets(&log, &setup.sandbox.sim, "daemon log");
    assert!(
        !log.contains(token.as_str()),
        "the container token was logged"
    );
}

/// Floods the socket on one keep-alive connection for a few seconds; prints the count of
/// each status and the first 429 (its `Retry-After` and body) as JSON.
const FLOODER: &str = "import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile('rb')
counts, sample = {}, None
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s.sendall(b'GET /v1/credentials HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n')
    status = int(f.readline().split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b'\\r\\n', b''):
            break
        name, value = line.decode().split(':', 1)
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers['content-length']))
    counts[status] = counts.get(status, 0) + 1
    if status == 429 and sample is None:
        sample = {'retry_after': headers.get('retry-after'), 'body': json.loads(body)}
print(json.dumps({'counts': counts, 'sample': sample}))";

#[test]
fn a_flooding_uid_gets_429s_while_another_uid_is_served_every_time() {
    const FLOOD_SECONDS: f64 = 3.0;
    let Some(setup) = Setup::start_as_unit(&["--socket-rate-limit", "20/s"]) else {
        return;
    };
    let mut flooder = as_uid(NOBODY, "/usr/bin/python3");
    flooder
        .args(["-c", FLOODER])
        .arg(&setup.sandbox.socket)
        .arg(FLOOD_SECONDS.to_string())
        .env_clear();
    let flooding = flooder
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Another uid, well under the limit, is served every time during the flood.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs_f64(FLOOD_SECONDS - 0.5) {
        let output = setup
            .client_as(OTHER_UID, "credential-process", &[])
            .output()
            .unwrap();
        let stdout = assert_success(&output, "credential-process as the other uid");
        assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
        assert!(stdout.contains("\"AccessKeyId\""), "{stdout}");
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served >= 10, "served {served} times");

    let report = flooding.wait_with_output().unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&assert_success(&report, "flooder")).unwrap();
    let count = |status: &str| report["counts"][status].as_u64().unwrap_or(0);
    let (answered, limited) = (count("200"), count("429"));
    // A burst of 40, then 20 a second: about 100 in 3 s (a little slack for timing).
    assert!((40..=120).contains(&answered), "{report}");
    assert!(limited > 10 * answered, "{report}");
    let sample = &report["sample"];
    assert_eq!(sample["retry_after"], "1", "{report}");
    assert_eq!(sample["body"]["code"], "RateLimited", "{report}");
    assert!(
        sample["body"]["message"]
            .as_str()
            .unwrap()
            .contains("socket.rate_limit is 20/s"),
        "{report}"
    );

    let rows = setup.consumers();
    let flood_row = rows.iter().find(|r| r["uid"] == NOBODY).unwrap();
    assert_eq!(flood_row["refused"], limited, "{flood_row}");
    assert_eq!(flood_row["requests"], limited + answered, "{flood_row}");
    let other_row = rows.iter().find(|r| r["uid"] == OTHER_UID).unwrap();
    assert_eq!(other_row["refused"], 0, "{other_row}");
    assert_eq!(other_row["requests"], served, "{other_row}");
    let metrics = setup.metrics();
    let line = format!(
        "imds_credd_consumer_requests_total{{uid=\"65534\",result=\"rate_limited\"}} {limited}"
    );
    assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    assert!(
        metrics.contains(&format!(
            "imds_credd_socket_requests_total{{status=\"429\"}} {limited}"
        )),
        "{metrics}"
    );
}

#[test]
fn a_client_command_over_the_limit_says_so_in_one_line_and_retries_once() {
    let Some(setup) = Setup::start_as_unit(&["--socket-rate-limit", "1/s"]) else {
        return;
    };
    // The burst (2) is used up by two calls; the third is refused, waits and retries.
    for _ in 0..2 {
        let output = setup
            .client_as(NOBODY, "credential-process", &[])
            .output()
            .unwrap();
        assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    }
    let started = Instant::now();
    let output = setup
        .client_as(NOBODY, "credential-process", &[])
        .output()
        .unwrap();
    let stdout = assert_success(&output, "credential-process after the burst");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(stdout.contains("\"AccessKeyId\""), "{stdout}");
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("imds-credd: the daemon is rate-limiting this user (429, socket.rate_limit); retrying once in 1s"),
        "{stderr}"
    );
    // Root is never limited.
    for _ in 0..10 {
        let output = setup
            .sandbox
            .client("credential-process", &[])
            .output()
            .unwrap();
        assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    }
}

#[test]
fn run_as_the_unit_runs_it_other_users_show_their_argv0_and_container_peers_their_uid() {
    let Some(setup) = Setup::start_as_unit(&[]) else {
        return;
    };
    let output = setup
        .client_as(NOBODY, "credential-process", &[])
        .output()
        .unwrap();
    assert_success(&output, "credential-process as nobody");
    setup.fetch_from_the_container_endpoint_as(OTHER_UID);

    let rows = setup.consumers();
    let nobody = rows.iter().find(|r| r["uid"] == NOBODY).unwrap();
    // The daemon may not read another user's /proc/PID/exe: the program is its argv[0].
    assert_eq!(
        nobody["exe"],
        reachable_binary().to_str().unwrap(),
        "{nobody}"
    );
    assert_eq!(nobody["exe_verified"], false, "{nobody}");
    assert!(
        nobody["pid"].is_u64(),
        "SO_PEERCRED gives the pid: {nobody}"
    );
    // Nor its fd links: the container peer has its uid (from sock_diag), no pid.
    let other = rows.iter().find(|r| r["uid"] == OTHER_UID).unwrap();
    assert_eq!(other["endpoint"], "container", "{other}");
    assert!(other["pid"].is_null(), "{other}");
    assert_eq!(other["exe"], "(unknown)", "{other}");

    let log = setup.sandbox.daemon_log();
    assert_no_secrets(&log, &setup.sandbox.sim, "daemon log");
}

/// `/v1/consumers` as another user (issue #18: any socket user read every user's command
/// lines, a password in one among them): its own rows only; root sees all.
#[test]
fn a_user_sees_only_its_own_consumer_rows_and_root_sees_all() {
    let Some(setup) = Setup::start_as_unit(&[]) else {
        return;
    };
    let secret_argv = "--database-url=postgres://app:hunter2@db/app";
    let output = setup
        .client_as(NOBODY, "credential-process", &[])
        .output()
        .unwrap();
    assert_success(&output, "credential-process as nobody");
    setup.fetch_from_the_container_endpoint_as(OTHER_UID);
    let mut as_root = setup.sandbox.client("credential-process", &[]);
    as_root.arg(secret_argv);
    let _ = as_root.output().unwrap();

    let all = setup.consumers();
    assert!(
        [0, NOBODY, OTHER_UID]
            .iter()
            .all(|uid| all.iter().any(|r| r["uid"] == *uid)),
        "root sees every row: {all:#?}"
    );
    let output = setup
        .client_as(NOBODY, "consumers", &["--json"])
        .output()
        .unwrap();
    let text = assert_success(&output, "consumers --json as nobody");
    let seen: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(!seen.is_empty(), "nobody sees its own row");
    assert!(
        seen.iter().all(|r| r["uid"] == NOBODY),
        "nobody sees only its rows: {seen:#?}"
    );
    assert!(!text.contains("hunter2"), "another user's argv: {text}");
}

/// Subordinate uids (issue #18: 1,100 of them filled the consumer table in 0.9 s, evicting
/// root's and app's rows, and 300 got 63,440 answers in 1.1 s against 200 for one uid):
/// 300 uids of nobody's `/etc/subuid` range, each its own uid in a user namespace, count as
/// nobody. Together they get one uid's rate limit, fill only nobody's share of the table,
/// and root's and the other user's rows stay.
#[test]
fn subordinate_uids_count_as_their_owner() {
    const FIRST: u32 = 300_000;
    const SUBORDINATES: u32 = 300;
    const PER_UID: u32 = 3;
    const RATE: u64 = 20;
    let subuid_file =
        std::env::temp_dir().join(format!("imds-credd-subuid-{}", std::process::id()));
    std::fs::write(&subuid_file, format!("nobody:{FIRST}:65536\n")).unwrap();
    std::fs::set_permissions(&subuid_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::env::set_var("IMDS_CREDD_TEST_SUBUID_FILE", &subuid_file);
    // Inherited by the daemon (a `test-util` knob). Other tests of this file starting a
    // daemon meanwhile get it too; it only names nobody's subordinate uids, which they do
    // not use.
    let setup = Setup::start_as_unit(&["--socket-rate-limit", "20/s"]);
    std::env::remove_var("IMDS_CREDD_TEST_SUBUID_FILE");
    let Some(setup) = setup else {
        return;
    };
    let output = setup
        .sandbox
        .client("credential-process", &[])
        .output()
        .unwrap();
    assert_success(&output, "credential-process as root");
    setup.fetch_from_the_container_endpoint_as(OTHER_UID);

    let started = std::time::Instant::now();
    let flood = Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/local_flood.py"))
        .arg("subuids")
        .arg(&setup.sandbox.socket)
        .args([FIRST, SUBORDINATES, PER_UID].map(|n| n.to_string()))
        .output()
        .unwrap();
    let took = started.elapsed();
    let report = assert_success(&flood, "the subordinate uids");
    let counts: Vec<u64> = report
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let [ok, limited, over_share, other] = counts[..] else {
        panic!("the flood printed {report:?}")
    };
    println!("{SUBORDINATES} subordinate uids x {PER_UID}: {ok} answered, {limited} 429, {over_share} 503 (over the owner's connections), {other} other in {took:?}");
    // One uid's budget: a burst of twice the rate, then the rate.
    let budget = 2 * RATE + RATE * (took.as_secs() + 1);
    assert!(ok <= budget, "{ok} answered, over one uid's {budget}");
    assert!(limited > 0 && other == 0, "{limited} 429s, {other} other");
    std::fs::remove_file(&subuid_file).unwrap();

    let rows = setup.consumers();
    assert!(
        rows.iter().any(|r| r["uid"] == 0),
        "root's row stays: {rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r["uid"] == OTHER_UID),
        "the other user's row stays"
    );
    let nobody: Vec<&serde_json::Value> = rows.iter().filter(|r| r["uid"] == NOBODY).collect();
    assert!(
        (1..=33).contains(&nobody.len()),
        "nobody's share of rows: {}",
        nobody.len()
    );
    assert!(nobody
        .iter()
        .filter(|r| r["exe"] != "(other programs)")
        .all(|r| r["subordinate_uid"]
            .as_u64()
            .is_some_and(|s| s > u64::from(FIRST))));
    assert_eq!(
        rows.len(),
        2 + nobody.len(),
        "no row of its own per subordinate uid"
    );
    let metrics = setup.metrics();
    assert!(
        !metrics.contains(&format!("uid=\"{}\"", FIRST + 1)),
        "a subordinate uid counted as its own uid:\n{metrics}"
    );
}

//! The unit-credentials socket as systemd's `LoadCredential=` uses it: a connection from an
//! abstract socket named `\0<hex>/unit/<unit>/<ID>`, nothing sent, everything read until
//! EOF. The daemon runs in-process against the simulator; the peers are this process (root,
//! as the system manager is), other uids through `setpriv` with a name they forged, and
//! botocore reading what a unit received. Every test scans the daemon's logs for secrets.
#![allow(clippy::disallowed_methods)]
// Tests time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use common::unit_user::{as_user, can_switch_users, APP_UID, ATTACKER_UID};
use common::{Harness, HarnessOptions};
use imds_credd::clock::ManualClock;
use imds_credd::config::units::is_unit_name;
use imds_credd::config::{Config, UnitConfig};
use imds_credd::credentials::Credentials;
use imds_credd::demo::simulator::{Fault, Target};
use imds_credd::serve::unit_credentials::cgroup::unit_in_cgroup;
use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(3600);

/// A Python peer that binds the abstract name `argv[2]`, connects to `argv[1]` and prints
/// how many bytes it read before EOF.
const FORGED_PEER: &str = "import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(b'\\0' + sys.argv[2].encode())
s.connect(sys.argv[1])
data = s.makefile('rb').read()
print(len(data), 'bytes', 'default' if b'[default]' in data else '')
";

/// The unit this test process can truthfully claim: the one its cgroup shows (the daemon
/// cross-checks it), or `job.service` when `/proc` shows none. `None` (skipped) inside a
/// scope, which is no unit that loads credentials.
fn our_unit() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    match unit_in_cgroup(&cgroup) {
        None => Some("job.service".to_string()),
        Some(unit) if is_unit_name(unit) => Some(unit.to_string()),
        Some(scope) => {
            let _ = common::require::unavailable(&format!(
                "runs in {scope}, which no unit-credentials request can name"
            ));
            None
        }
    }
}

fn entry(name: &str, profile: &str, user: Option<u32>) -> UnitConfig {
    UnitConfig {
        name: name.to_string(),
        profile: profile.to_string(),
        user: user.map(|uid| uid.to_string()),
    }
}

/// The daemon with these `[[unit]]` entries; waiting for the first set or not.
async fn start(
    units: Vec<UnitConfig>,
    wait: bool,
    prepare: fn(&imds_credd::demo::simulator::ImdsSimulator),
) -> Harness {
    let clock = ManualClock::starting_now();
    let mut options = HarnessOptions::new(&clock);
    options.configure = Box::new(move |config: &mut Config| config.units = units);
    options.prepare = Box::new(prepare);
    options.wait_for_credentials = wait;
    Harness::start_with(clock, options).await
}

fn unit_socket(h: &Harness) -> PathBuf {
    h.daemon_socket.with_file_name("unit-credentials.sock")
}

/// What systemd does for `LoadCredential=ID:SOCKET` of `unit`: bind an abstract name that
/// says who asks, connect, read until EOF (off the runtime: the daemon runs on this thread).
async fn load_credential(socket: PathBuf, unit: &str, id: &str) -> Vec<u8> {
    let name = format!("{:x}/unit/{unit}/{id}", fastrand::u64(..));
    tokio::task::spawn_blocking(move || {
        let fd = socket_fd();
        bind(
            fd.as_raw_fd(),
            &UnixAddr::new_abstract(name.as_bytes()).unwrap(),
        )
        .unwrap();
        read_all(fd, &socket)
    })
    .await
    .unwrap()
}

/// A connection from a socket with no name at all (not systemd).
async fn plain_connect(socket: PathBuf) -> Vec<u8> {
    tokio::task::spawn_blocking(move || read_all(socket_fd(), &socket))
        .await
        .unwrap()
}

fn socket_fd() -> std::os::fd::OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap()
}

fn read_all(fd: std::os::fd::OwnedFd, socket: &Path) -> Vec<u8> {
    connect(fd.as_raw_fd(), &UnixAddr::new(socket).unwrap()).unwrap();
    let mut stream = std::os::unix::net::UnixStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Asserts that `ini` is one `[default]` profile holding `creds`.
fn assert_shared_credentials(ini: &str, creds: &Credentials) {
    assert!(
        ini.starts_with("[default]\n"),
        "{}",
        ini.lines().next().unwrap_or("")
    );
    assert_eq!(ini.matches('[').count(), 1, "one profile");
    for line in [
        format!("aws_access_key_id = {}", creds.access_key_id),
        format!(
            "aws_secret_access_key = {}",
            creds.secret_access_key.expose()
        ),
        format!("aws_session_token = {}", creds.session_token.expose()),
    ] {
        assert!(ini.lines().any(|l| l == line), "a line is missing or wrong");
    }
    if let Some(account) = &creds.account_id {
        assert!(ini.contains(&format!("aws_account_id = {}", account.as_str())));
    }
}

/// The system's Python running `script` with `args` as `uid` (on the blocking pool): its
/// output, trimmed, once it succeeded.
async fn python_as(uid: u32, script: &'static str, args: [String; 2]) -> String {
    let output = tokio::task::spawn_blocking(move || {
        as_user(uid)
            .args(["/usr/bin/python3", "-c", script])
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text(&output.stdout).trim().to_string()
}

fn unit_counter(h: &Harness, which: &str) -> u64 {
    let counters = &h.daemon.metrics.unit_credentials;
    match which {
        "served" => counters.served.load(Ordering::Relaxed),
        "refused" => counters.refused.load(Ordering::Relaxed),
        _ => counters.unavailable.load(Ordering::Relaxed),
    }
}

#[tokio::test]
async fn a_listed_unit_gets_each_format_and_after_a_rotation_the_new_set() {
    let Some(unit) = our_unit() else { return };
    let h = start(vec![entry(&unit, "", None)], true, |_| {}).await;
    let socket = unit_socket(&h);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "root and the daemon only");
    let served = h.served().unwrap();

    let ini = text(&load_credential(socket.clone(), &unit, "aws").await);
    assert_shared_credentials(&ini, &served);
    let json = load_credential(socket.clone(), &unit, "aws.json").await;
    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(doc["Version"], 1);
    assert_eq!(Credentials::from_process_json(&json).unwrap(), served);
    if let Some(account) = &served.account_id {
        assert_eq!(doc["AccountId"], account.as_str());
    }
    let env = text(&load_credential(socket.clone(), &unit, "aws.env").await);
    assert!(env.contains(&format!(
        "export AWS_ACCESS_KEY_ID='{}'\n",
        served.access_key_id
    )));
    assert!(env.contains(&format!(
        "export AWS_SESSION_TOKEN='{}'\n",
        served.session_token.expose()
    )));
    assert_eq!(unit_counter(&h, "served"), 3);

    h.sim.rotate_now();
    h.advance_and_settle(HOUR).await;
    let rotated = h.served().unwrap();
    assert_ne!(rotated.access_key_id, served.access_key_id);
    let ini = text(&load_credential(socket.clone(), &unit, "aws").await);
    assert_shared_credentials(&ini, &rotated);

    let consumers = common::unix_http::get(&h.daemon_socket, "/v1/consumers")
        .await
        .json();
    let row = consumers
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["exe"] == format!("unit {unit}"))
        .unwrap_or_else(|| panic!("no row for the unit: {consumers}"));
    assert_eq!(
        (row["endpoint"].as_str(), row["uid"].as_u64()),
        (Some("unit"), Some(0))
    );
    let metrics = common::unix_http::get(&h.daemon_socket, "/metrics")
        .await
        .body;
    assert!(
        metrics.contains("imds_credd_unit_credentials_total{result=\"served\"} 4"),
        "{metrics}"
    );
    h.finish().await;
}

#[tokio::test]
async fn an_unlisted_unit_and_a_peer_with_no_systemd_name_get_not_a_byte() {
    let Some(unit) = our_unit() else { return };
    let h = start(vec![entry("backup.service", "", None)], true, |_| {}).await;
    let socket = unit_socket(&h);
    assert!(load_credential(socket.clone(), &unit, "aws")
        .await
        .is_empty());
    assert!(plain_connect(socket.clone()).await.is_empty());
    assert_eq!(unit_counter(&h, "refused"), 2);
    assert_eq!(unit_counter(&h, "served"), 0);
    let logs = h.logs.text();
    assert!(
        logs.contains("no [[unit]] entry names this unit") && logs.contains(&unit),
        "{logs}"
    );
    assert!(logs.contains("no abstract socket name"), "{logs}");
    h.finish().await;
}

#[tokio::test]
async fn other_uids_get_nothing_whatever_name_they_bind_unless_an_entry_names_their_user() {
    // The system's Python: one every uid can run (not a per-user or venv one).
    let system_python = Path::new("/usr/bin/python3").exists()
        || common::require::unavailable("needs /usr/bin/python3 (apt-get install python3)");
    if !can_switch_users() || !system_python {
        return;
    }
    let Some(unit) = our_unit() else { return };
    let h = start(
        vec![entry(&unit, "", None), entry(&unit, "", Some(APP_UID))],
        true,
        |_| {},
    )
    .await;
    let socket = unit_socket(&h);
    // As an operator who opens the socket to a user manager would (docs/systemd-units.md):
    // then only the peer check stands between other users and the credentials.
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let forged = format!("e6bcf1fad9213c61/unit/{unit}/aws");
    let peer = |uid: u32| {
        python_as(
            uid,
            FORGED_PEER,
            [socket.display().to_string(), forged.clone()],
        )
    };
    assert_eq!(peer(ATTACKER_UID).await, "0 bytes");
    let app = peer(APP_UID).await;
    assert!(
        app.ends_with("bytes default") && !app.starts_with("0 "),
        "{app}"
    );
    assert_eq!(unit_counter(&h, "refused"), 1);
    let logs = h.logs.text();
    assert!(
        logs.contains(&format!("uid {ATTACKER_UID}, not 0")),
        "the refusal names the uid: {logs}"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_unit_started_with_the_daemon_waits_for_the_first_refresh() {
    let Some(unit) = our_unit() else { return };
    let h = start(vec![entry(&unit, "", None)], false, |sim| {
        sim.inject(
            Target::Credentials,
            Fault::Delay(Duration::from_millis(800)),
            1,
        )
    })
    .await;
    let started = Instant::now();
    let ini = text(&load_credential(unit_socket(&h), &unit, "aws").await);
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited");
    assert_shared_credentials(&ini, &h.served().unwrap());
    h.finish().await;
}

#[tokio::test]
async fn no_valid_set_means_not_a_byte_and_a_log_line() {
    let Some(unit) = our_unit() else { return };
    let h = start(vec![entry(&unit, "", None)], false, |sim| {
        sim.inject(Target::Credentials, Fault::Status(500), 1000)
    })
    .await;
    h.wait_for("the first failed refresh", |s| s.last_error.is_some())
        .await;
    assert!(load_credential(unit_socket(&h), &unit, "aws.json")
        .await
        .is_empty());
    assert_eq!(unit_counter(&h, "unavailable"), 1);
    h.logs
        .assert_contains("no valid credentials for a unit; closing without a byte");
    h.finish().await;
}

#[tokio::test]
async fn botocore_reads_the_shared_credentials_file_a_unit_received() {
    let Some(unit) = our_unit() else { return };
    let h = start(vec![entry(&unit, "", None)], true, |_| {}).await;
    let received = load_credential(unit_socket(&h), &unit, "aws").await;
    // Where systemd puts it: $CREDENTIALS_DIRECTORY/aws, read through
    // Environment=AWS_SHARED_CREDENTIALS_FILE=%d/aws.
    let credentials_directory = h.dir.path().join("credentials-directory");
    std::fs::create_dir(&credentials_directory).unwrap();
    let file = credentials_directory.join("aws");
    std::fs::write(&file, &received).unwrap();
    let served = h.served().unwrap();
    let python = common::aws_clients::python_bin().join("python");
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(python);
        common::daemon_process::clear_aws_variables(&mut command);
        command
            .env("AWS_SHARED_CREDENTIALS_FILE", &file)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args([
                "-c",
                "import botocore.session, hashlib\n\
                 c = botocore.session.get_session().get_credentials()\n\
                 print(c.method, c.access_key, hashlib.sha256(c.secret_key.encode()).hexdigest(), hashlib.sha256(c.token.encode()).hexdigest())",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sha = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    assert_eq!(
        text(&output.stdout).trim(),
        format!(
            "shared-credentials-file {} {} {}",
            served.access_key_id,
            sha(served.secret_access_key.expose()),
            sha(served.session_token.expose())
        )
    );
    h.finish().await;
}

/// A cgroup made for the test under the unified hierarchy, beneath this process's own,
/// ending in `unit` (as systemd's `…/system.slice/UNIT`); removed on drop. `None` when
/// this machine has no writable cgroup2 hierarchy.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn make(unit: &str) -> Option<TestCgroup> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = mountinfo.lines().find_map(|line| {
            let (fields, fstype) = line.split_once(" - ")?;
            fstype
                .starts_with("cgroup2 ")
                .then(|| fields.split(' ').nth(4).map(PathBuf::from))?
        })?;
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let ours = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
        let dir = mount
            .join(ours.trim_start_matches('/'))
            .join(format!("imds-credd-test-{}", std::process::id()))
            .join(unit);
        std::fs::create_dir_all(&dir).ok()?;
        Some(TestCgroup(dir))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
        let _ = std::fs::remove_dir(self.0.parent().unwrap());
    }
}

/// The forged-peer program run as root from inside `cgroup`, naming `unit`.
async fn peer_in_cgroup(cgroup: &TestCgroup, socket: &Path, unit: &str) -> String {
    let procs = cgroup.0.join("cgroup.procs");
    let name = format!("e6bcf1fad9213c61/unit/{unit}/aws");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("echo $$ > \"$1\" && exec /usr/bin/python3 -c \"$2\" \"$3\" \"$4\"")
        .args(["sh".as_ref(), procs.as_os_str()])
        .args([FORGED_PEER.as_ref(), socket.as_os_str(), name.as_ref()]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text(&output.stdout).trim().to_string()
}

#[tokio::test]
async fn a_root_peer_whose_cgroup_is_another_unit_gets_nothing() {
    let system_python = Path::new("/usr/bin/python3").exists()
        || common::require::unavailable("needs /usr/bin/python3 (apt-get install python3)");
    if !common::require::root("make cgroups") || !system_python {
        return;
    }
    let (Some(wrong), Some(right)) = (
        TestCgroup::make("wrong.service"),
        TestCgroup::make("job.service"),
    ) else {
        let _ = common::require::unavailable("needs a writable cgroup2 hierarchy");
        return;
    };
    let h = start(vec![entry("job.service", "", None)], true, |_| {}).await;
    let socket = unit_socket(&h);
    let served = peer_in_cgroup(&right, &socket, "job.service").await;
    assert!(
        served.ends_with("bytes default") && !served.starts_with("0 "),
        "{served}"
    );
    assert_eq!(
        peer_in_cgroup(&wrong, &socket, "job.service").await,
        "0 bytes"
    );
    let logs = h.logs.text();
    assert!(
        logs.contains("runs in wrong.service, not in the unit it names"),
        "{logs}"
    );
    let consumers = common::unix_http::get(&h.daemon_socket, "/v1/consumers")
        .await
        .json();
    let verified = consumers
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["exe"] == "unit job.service" && row["exe_verified"] == true);
    assert!(
        verified,
        "a unit its cgroup confirms is shown verified: {consumers}"
    );
    h.finish().await;
}

/// `imds-credd run --config CONFIG` handed `passed` as systemd hands `imds-credd.socket`'s
/// sockets: fds 3, 4… in that order, one name for all (`LISTEN_FDNAMES`), `LISTEN_PID` its
/// own pid.
fn activated_daemon(
    sandbox: &common::daemon_process::Sandbox,
    config: &Path,
    passed: &[&std::os::unix::net::UnixListener],
) -> std::process::Child {
    use std::os::fd::BorrowedFd;
    use std::os::unix::process::CommandExt;
    let fds: Vec<i32> = passed.iter().map(|l| l.as_raw_fd()).collect();
    let names = vec!["credentials"; fds.len()].join(":");
    let log = std::fs::File::create(sandbox.path("daemon.log")).unwrap();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!(
            r#"LISTEN_PID=$$ LISTEN_FDS={} LISTEN_FDNAMES={names} exec "$0" "$@""#,
            fds.len()
        ))
        .arg(common::daemon_process::BIN)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--imds-endpoint")
        .arg(sandbox.sim.endpoint())
        .arg("--socket")
        .arg(&sandbox.socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    common::daemon_process::clear_aws_variables(&mut command);
    // SAFETY: dup2 and fcntl are async-signal-safe; in the child only, each listener goes
    // to a high fd first (so none is overwritten), then to 3, 4…, without close-on-exec.
    unsafe {
        command.pre_exec(move || {
            use nix::fcntl::{fcntl, FcntlArg, FdFlag};
            for (i, fd) in fds.iter().enumerate() {
                let high = nix::unistd::dup2_raw(BorrowedFd::borrow_raw(*fd), 100 + i as i32)?;
                fcntl(&high, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
                std::mem::forget(high);
            }
            for i in 0..fds.len() as i32 {
                let passed = nix::unistd::dup2_raw(BorrowedFd::borrow_raw(100 + i), 3 + i)?;
                std::mem::forget(passed);
            }
            Ok(())
        });
    }
    command.spawn().unwrap()
}

/// Stops an [`activated_daemon`] as systemd does (SIGTERM); it must exit cleanly.
fn stop(daemon: &mut std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(daemon.wait().unwrap().success());
}

/// The unit-credentials socket passed before the API's, under the same name (as
/// `imds-credd.socket` passes them): each is told by its path; without a `[[unit]]` entry
/// the unit socket is still answered (closed without a byte, so no unit start hangs), and
/// with one it serves; either way it is narrowed to mode 0600.
#[test]
fn sockets_passed_by_systemd_are_told_apart_by_path() {
    let Some(unit) = our_unit() else { return };
    let sandbox = common::daemon_process::Sandbox::simulator(Default::default());
    let unit_path = sandbox.socket.with_file_name("unit-credentials.sock");
    let unit_socket = std::os::unix::net::UnixListener::bind(&unit_path).unwrap();
    let api_socket = std::os::unix::net::UnixListener::bind(&sandbox.socket).unwrap();
    let with_unit = sandbox.path("with-unit.toml");
    std::fs::write(&with_unit, format!("[[unit]]\nname = \"{unit}\"\n")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (config, expect_served) in [(Path::new("/dev/null"), false), (with_unit.as_path(), true)] {
        std::fs::set_permissions(&unit_path, std::fs::Permissions::from_mode(0o660)).unwrap();
        let mut daemon = activated_daemon(&sandbox, config, &[&unit_socket, &api_socket]);
        let process = sandbox.client("credential-process", &[]).output().unwrap();
        assert!(
            process.status.success(),
            "the API socket answers: {}",
            sandbox.daemon_log()
        );
        let received = runtime.block_on(load_credential(unit_path.clone(), &unit, "aws"));
        assert_eq!(
            !received.is_empty(),
            expect_served,
            "{}",
            sandbox.daemon_log()
        );
        if expect_served {
            assert_shared_credentials(&text(&received), &sandbox.current());
        }
        let mode = std::fs::metadata(&unit_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        stop(&mut daemon);
        common::assert_no_secrets(&sandbox.daemon_log(), &sandbox.sim, "daemon log");
    }
    assert!(unit_path.exists(), "a socket systemd owns is left in place");
}

/// A socket systemd passes under the API's name that no listener serves (an
/// `imds-credd.socket` whose paths disagree with `[socket] path`) stops the start with a
/// clear line, instead of leaving its clients (a unit's `LoadCredential=`) waiting forever.
#[test]
fn a_passed_socket_no_listener_serves_stops_the_start() {
    let sandbox = common::daemon_process::Sandbox::simulator(Default::default());
    let api_socket = std::os::unix::net::UnixListener::bind(&sandbox.socket).unwrap();
    let stray_path = sandbox.path("elsewhere.sock");
    let stray = std::os::unix::net::UnixListener::bind(&stray_path).unwrap();
    let mut daemon = activated_daemon(&sandbox, Path::new("/dev/null"), &[&api_socket, &stray]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            daemon.kill().unwrap();
            panic!("the daemon kept running: {}", sandbox.daemon_log());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", sandbox.daemon_log());
    let log = sandbox.daemon_log();
    assert!(
        log.contains("which no listener serves") && log.contains(&stray_path.display().to_string()),
        "the log names the stray socket: {log}"
    );
}

/// A `[[unit]]` entry with `user`, and `imds-credd.socket` opened to that user by a drop-in
/// (`SocketMode=0666`, docs/systemd-units.md): the daemon keeps that mode, so the user's
/// manager gets its unit's set, and another uid that reaches the socket still gets nothing.
#[test]
fn a_socket_systemd_opened_to_a_user_manager_stays_open_to_it() {
    let system_python = Path::new("/usr/bin/python3").exists()
        || common::require::unavailable("needs /usr/bin/python3 (apt-get install python3)");
    if !can_switch_users() || !system_python {
        return;
    }
    let Some(unit) = our_unit() else { return };
    let sandbox = common::daemon_process::Sandbox::simulator(Default::default());
    std::fs::set_permissions(sandbox.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let unit_path = sandbox.socket.with_file_name("unit-credentials.sock");
    let unit_socket = std::os::unix::net::UnixListener::bind(&unit_path).unwrap();
    let api_socket = std::os::unix::net::UnixListener::bind(&sandbox.socket).unwrap();
    std::fs::set_permissions(&unit_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let config = sandbox.path("user-manager.toml");
    let entry = format!("[[unit]]\nname = \"{unit}\"\nuser = \"{APP_UID}\"\n");
    std::fs::write(&config, entry).unwrap();
    let mut daemon = activated_daemon(&sandbox, &config, &[&unit_socket, &api_socket]);
    let process = sandbox.client("credential-process", &[]).output().unwrap();
    assert!(process.status.success(), "{}", sandbox.daemon_log());
    let peer = |uid: u32| {
        let output = as_user(uid)
            .args(["/usr/bin/python3", "-c", FORGED_PEER])
            .arg(&unit_path)
            .arg(format!("e6bcf1fad9213c61/unit/{unit}/aws"))
            .output()
            .unwrap();
        let shown = format!("{}{}", text(&output.stdout), text(&output.stderr));
        (output.status.success(), shown.trim().to_string())
    };
    let (connected, app) = peer(APP_UID);
    assert!(
        connected && app.ends_with("bytes default") && !app.starts_with("0 "),
        "the user's manager: {app}\n{}",
        sandbox.daemon_log()
    );
    assert_eq!(peer(ATTACKER_UID), (true, "0 bytes".to_string()));
    let mode = std::fs::metadata(&unit_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "the drop-in's mode is kept");
    stop(&mut daemon);
    common::assert_no_secrets(&sandbox.daemon_log(), &sandbox.sim, "daemon log");
}

/// `argv[2]` connections to `argv[1]`, each from a name claiming another unit.
const NAME_CHURN: &str = "import socket, sys
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(b'\\0' + ('%x/unit/churn-%d.service/aws' % (i + 1, i)).encode())
    s.connect(sys.argv[1])
    assert s.recv(1) == b''
    s.close()
";

/// A uid that reaches the socket and claims a new unit at each connection gets one log line
/// per interval, like any refused peer: the unit names it picks do not multiply the lines.
#[tokio::test]
async fn a_refused_uid_naming_many_units_does_not_fill_the_log() {
    let system_python = Path::new("/usr/bin/python3").exists()
        || common::require::unavailable("needs /usr/bin/python3 (apt-get install python3)");
    if !can_switch_users() || !system_python {
        return;
    }
    let Some(unit) = our_unit() else { return };
    let h = start(vec![entry(&unit, "", Some(APP_UID))], true, |_| {}).await;
    let socket = unit_socket(&h);
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    const CONNECTIONS: u64 = 40;
    for uid in [ATTACKER_UID, APP_UID] {
        let args = [socket.display().to_string(), CONNECTIONS.to_string()];
        python_as(uid, NAME_CHURN, args).await;
    }
    assert_eq!(
        unit_counter(&h, "refused"),
        2 * CONNECTIONS,
        "each is counted"
    );
    let logs = h.logs.text();
    for uid in [ATTACKER_UID, APP_UID] {
        let lines = logs
            .lines()
            .filter(|l| l.contains("refusing a unit-credentials peer"))
            .filter(|l| l.contains(&format!("uid={uid} ")))
            .count();
        assert_eq!(lines, 1, "uid {uid}: {logs}");
    }
    h.finish().await;
}

//! `imds-credd run` and `check-config` as real child processes: start-up against the
//! simulator, a clean stop on SIGTERM, and the exit codes and messages for bad input.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;

use imds_credd::credentials::Credentials;
use imds_credd::demo::simulator::{ImdsSimulator, SimulatorOptions};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imds-credd");

/// A child whose stderr is collected in the background.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Daemon { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                self.child.kill().ok();
                panic!("did not exit within {within:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_publishes_then_stops_cleanly_on_sigterm_without_logging_secrets() {
    let sim = ImdsSimulator::start(SimulatorOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("credentials.sock");
    let endpoint = sim.endpoint();
    let mut args = common::daemon_process::run_args(&endpoint).to_vec();
    args.extend([
        "--socket",
        socket.to_str().unwrap(),
        "--log-level",
        "trace",
        "--log-format",
        "json",
    ]);
    let mut daemon = Daemon::spawn(&args, &[]);
    daemon.wait_for_log("published new credentials");
    for line in daemon.stderr().lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every log line is JSON");
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(6)), 0);
    assert!(daemon.stderr().contains("stopped"));
    common::assert_no_secrets(&daemon.stderr(), &sim, "the daemon's stderr");
}

#[test]
fn a_bad_config_is_refused_with_file_line_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        "[imds]\ntimeout = \"2s\"\n\n[refresh]\nmax_interval = \"soon\"\n",
    );
    for command in ["run", "check-config"] {
        let out = Command::new(BIN)
            .args([command, "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("{}:5: key `refresh.max_interval`", path.display());
        assert!(stderr.contains(&expected), "{command}: {stderr}");
    }
}

/// Configurations that would hand secrets to other local users: refused by `run` and
/// `check-config` alike, exit 2, with the file, the line and the key.
#[test]
fn configurations_that_put_secrets_at_risk_are_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let shared = common::folder_with_mode(dir.path().join("shared"), 0o1777);
    let shared = shared.display();
    let own_socket = format!(
        "[socket]\npath = \"{}\"\n",
        dir.path().join("s.sock").display()
    );
    let assume =
        "[[assume]]\nprofile = \"audit\"\nrole_arn = \"arn:aws:iam::222222222222:role/r\"\n";
    let cases = [
        (
            format!("{own_socket}[[file]]\npath = \"/home/app/.aws/credentials\"\nprofile = \"instance\"\nmode = \"0644\"\n"),
            6,
            "file.mode",
            "other users read",
        ),
        (
            format!("{own_socket}[[env]]\npath = \"/run/x.env\"\nmode = \"0606\"\n"),
            5,
            "env.mode",
            "other users read",
        ),
        (
            format!("{own_socket}[[env]]\npath = \"/run/x.env\"\nmode = 438\n"),
            5,
            "env.mode",
            "write the mode as a string, e.g. \"0600\"",
        ),
        (
            format!("{own_socket}{assume}duration = \"2h\"\n"),
            3,
            "assume.duration",
            "role chaining",
        ),
        (
            format!("{own_socket}{assume}sts_endpoint = \"http://sts.us-east-1.amazonaws.com\"\n"),
            3,
            "assume.sts_endpoint",
            "loopback only",
        ),
        (
            format!("[socket]\npath = \"{}\"\nmode = \"0666\"\n", dir.path().join("s.sock").display()),
            3,
            "socket.mode",
            "allow_uids",
        ),
        (
            format!("[log]\nlevel = \"info\"\n[socket]\npath = \"{shared}/s.sock\"\n"),
            4,
            "socket.path",
            "can be written by other users",
        ),
        (
            format!("{own_socket}[[file]]\nprofile = \"instance\"\npath = \"{shared}/credentials\"\n"),
            5,
            "file.path",
            "can be written by other users, who could create the file first",
        ),
        (
            format!("{own_socket}[[env]]\npath = \"{shared}/not-yet/x.env\"\n"),
            4,
            "env.path",
            "can be written by other users, who could create the file first",
        ),
        (
            format!("{own_socket}[container]\ntoken_file = \"{shared}/token\"\n"),
            4,
            "container.token_file",
            "who could create or replace the token file",
        ),
        (
            format!(
                "{own_socket}[container]\ntoken_file = \"{}\"\n[[container.client]]\nname = \"web\"\ntoken_file = \"{shared}/web/token\"\n",
                dir.path().join("own/token").display(),
            ),
            7,
            "container.client.token_file",
            "who could create or replace the token file",
        ),
    ];
    let path = dir.path().join("config.toml");
    for (text, line, key, why) in cases {
        std::fs::write(&path, &text).unwrap();
        for command in ["run", "check-config"] {
            let out = Command::new(BIN)
                .args([command, "--config", path.to_str().unwrap()])
                .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {key}: {stderr}");
            let expected = format!("{}:{line}: key `{key}`", path.display());
            assert!(
                stderr.contains(&expected) && stderr.contains(why),
                "{command}: expected {expected:?} and {why:?} in {stderr}"
            );
        }
    }
}

#[test]
fn check_config_accepts_a_valid_file_and_a_missing_explicit_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), "[refresh]\nbefore_expiry = \"10m\"\n");
    let out = Command::new(BIN)
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
    let out = Command::new(BIN)
        .args(["check-config", "--config", "/nonexistent/imds-credd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn run_refuses_to_start_when_imds_is_disabled_by_the_environment() {
    let mut daemon = Daemon::spawn(
        &["run", "--config", "/dev/null"],
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    assert_eq!(daemon.wait_exit(Duration::from_secs(5)), 2);
    assert!(daemon.stderr().contains("AWS_EC2_METADATA_DISABLED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_starts_and_stops_sinks_and_keeps_the_old_config_when_the_new_one_is_bad() {
    // Sets rotate every 2 s and the daemon refreshes at least every second, so a sink
    // that still works after the refused reload shows a newer set within seconds.
    let sim = ImdsSimulator::start(SimulatorOptions {
        rotate_every: Duration::from_secs(2),
        ..SimulatorOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let socket = dir.path().join("s.sock");
    let env_file = dir.path().join("out/credentials.env");
    let creds_file = dir.path().join("out/credentials");
    let base = format!(
        "[imds]\nendpoint = \"{}\"\n[refresh]\nmax_interval = \"1s\"\n[socket]\npath = \"{}\"\n",
        sim.endpoint(),
        socket.display()
    );
    let env_sink = format!("[[env]]\npath = \"{}\"\n", env_file.display());
    let file_sink = format!(
        "[[file]]\npath = \"{}\"\nprofile = \"instance\"\n",
        creds_file.display()
    );
    std::fs::write(&config, format!("{base}{env_sink}")).unwrap();
    let mut daemon = Daemon::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    daemon.wait_for_log("published new credentials");
    wait_for_file(&env_file);

    // A bad edit that, applied even in part, would drop the env sink and start a
    // credentials file: refused whole, naming the file and the key.
    std::fs::write(
        &config,
        format!("{base}{file_sink}[[file]]\npath = \"relative\"\nprofile = \"other\"\n"),
    )
    .unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("new configuration refused; keeping the running one");
    let refusal = daemon
        .stderr()
        .lines()
        .find(|line| line.contains("new configuration refused"))
        .unwrap()
        .to_owned();
    assert!(
        refusal.contains(&format!("{}:", config.display())) && refusal.contains("relative"),
        "{refusal}"
    );
    // The running config goes on: the env sink and the socket follow the next rotations,
    // and no credentials file was started.
    let refused_at = sim.current_credentials().unwrap();
    let newer = wait_for_new_set(&sim, &refused_at);
    wait_until_contains(&env_file, &newer.access_key_id);
    let answer = common::unix_http::get(&socket, "/v1/credentials").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let served = answer.json()["AccessKeyId"].as_str().unwrap().to_owned();
    assert!(
        sim.issued_credentials()
            .iter()
            .skip_while(|c| c.access_key_id != newer.access_key_id)
            .any(|c| c.access_key_id == served),
        "the socket serves a set issued after the refusal"
    );
    assert!(!creds_file.exists(), "a sink of the refused config started");

    // So is a credentials file that other users could read.
    let exposed = file_sink.replace("profile", "mode = \"0644\"\nprofile");
    std::fs::write(&config, format!("{base}{env_sink}{exposed}")).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("key `file.mode`: 0644");
    assert!(!creds_file.exists());
    assert!(env_file.exists(), "the running env sink goes on");

    // A good edit adds the credentials file and removes the env sink.
    std::fs::write(&config, format!("{base}{file_sink}")).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_log("configuration reloaded");
    wait_for_file(&creds_file);
    let current = sim.current_credentials().unwrap();
    let text = std::fs::read_to_string(&creds_file).unwrap();
    assert!(
        text.contains(&format!("aws_access_key_id = {}", current.access_key_id)),
        "{text}"
    );
    assert!(daemon.stderr().contains("sink removed by reload"));

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(6)), 0);
    common::assert_no_secrets(&daemon.stderr(), &sim, "the daemon's stderr");
}

/// Waits (real time) until the simulator issues a set other than `old`.
fn wait_for_new_set(sim: &ImdsSimulator, old: &Credentials) -> Credentials {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = sim.current_credentials().unwrap();
        if current.access_key_id != old.access_key_id {
            return current;
        }
        assert!(Instant::now() < deadline, "the simulator never rotated");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to `config.toml` in `dir`; returns its path.
fn config_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until the file at `path` holds `needle`.
fn wait_until_contains(path: &std::path::Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {needle}: {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_file(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! The real daemon as a child process (`imds-credd run` serving a unix socket in a temp
//! folder) against the IMDS simulator in this process, and the client commands as child
//! processes: what the client tests, the AWS interop tests and the benchmark share.
#![allow(dead_code)] // each test binary uses a different part of this module

use imds_credd::credentials::Credentials;
use imds_credd::demo::simulator::{ImdsSimulator, SimulatorOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_imds-credd");

/// Variables that would give a child process credentials, a profile or an IMDS other than
/// the ones under test.
pub const AWS_VARIABLES: [&str; 15] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
    "IMDS_CREDD_SOCKET",
];

/// `imds-credd run` on its built-in defaults (no config file) against `endpoint`: the
/// start of every daemon command line, before the flags a test adds.
pub fn run_args(endpoint: &str) -> [&str; 5] {
    ["run", "--config", "/dev/null", "--imds-endpoint", endpoint]
}

/// The simulator (on its own runtime, so the test thread may block on child processes),
/// the daemon as a child process, and a temp folder holding the socket and the daemon's log.
pub struct Sandbox {
    pub sim: ImdsSimulator,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    daemon: Option<Child>,
    runtime: tokio::runtime::Runtime,
}

impl Sandbox {
    /// A simulator with `options` and no daemon yet.
    pub fn simulator(options: SimulatorOptions) -> Sandbox {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sim = runtime.block_on(ImdsSimulator::start(options)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        Sandbox {
            sim,
            dir,
            socket,
            daemon: None,
            runtime,
        }
    }

    /// A simulator with `options` and a daemon (with `daemon_args`) that answers.
    pub fn with_daemon(options: SimulatorOptions, daemon_args: &[&str]) -> Sandbox {
        let mut sandbox = Sandbox::simulator(options);
        sandbox.start_daemon(daemon_args);
        sandbox
    }

    /// The default simulator (role `demo-role`, 6 h credentials) and a daemon.
    pub fn healthy() -> Sandbox {
        Sandbox::with_daemon(SimulatorOptions::default(), &[])
    }

    /// The runtime the simulator runs on, for other servers a test starts.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Starts `imds-credd run` on the socket and waits until it answers with the outcome
    /// of its first refresh (credentials or an error).
    pub fn start_daemon(&mut self, daemon_args: &[&str]) {
        self.start_daemon_with_env(daemon_args, &[]);
    }

    /// [`Sandbox::start_daemon`] with `env` added to the daemon's environment.
    pub fn start_daemon_with_env(&mut self, daemon_args: &[&str], env: &[(String, String)]) {
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).unwrap();
        let mut command = Command::new(BIN);
        command
            .envs(env.iter().map(|(name, value)| (name, value)))
            .args(run_args(&self.sim.endpoint()))
            .arg("--socket")
            .arg(&self.socket)
            .args(daemon_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        clear_aws_variables(&mut command);
        let mut daemon = command.spawn().unwrap();
        self.wait_until("the daemon to answer", Duration::from_secs(15), || {
            if let Some(status) = daemon.try_wait().unwrap() {
                panic!(
                    "the daemon exited ({status}); its log:\n{}",
                    self.daemon_log()
                );
            }
            self.first_refresh_done()
        });
        self.daemon = Some(daemon);
    }

    /// Stops the daemon with SIGTERM, as systemd does, and returns its exit code.
    pub fn stop_daemon(&mut self) -> Option<i32> {
        let mut daemon = self.daemon.take().expect("the daemon was started");
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        daemon.wait().unwrap().code()
    }

    /// The daemon's process id (for its `/proc` figures); panics if it was not started.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("the daemon was started").id()
    }

    /// The daemon answers `status` and has either refreshed once or recorded an error.
    fn first_refresh_done(&self) -> bool {
        let output = self.client("status", &["--json"]).output().unwrap();
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
            return false;
        };
        !doc["last_refresh"].is_null() || !doc["last_error"].is_null()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// `imds-credd COMMAND --socket S ARGS…`, with no AWS variables inherited.
    pub fn client(&self, command: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg(command)
            .arg("--socket")
            .arg(&self.socket)
            .args(args);
        clear_aws_variables(&mut cmd);
        cmd
    }

    /// The set the simulator hands out now.
    pub fn current(&self) -> Credentials {
        self.sim
            .current_credentials()
            .expect("the simulator has a role")
    }

    /// What `credential-process` prints now, parsed (`None` on failure).
    pub fn served(&self) -> Option<Credentials> {
        let output = self.client("credential-process", &[]).output().unwrap();
        Credentials::from_process_json(&output.stdout).ok()
    }

    /// Waits until `check` holds, or fails naming `what` and showing the daemon's log.
    pub fn wait_until(&self, what: &str, within: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; daemon log:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the daemon with `daemon_args` and the container endpoint on a free loopback
    /// port; returns its token file.
    pub fn start_daemon_with_container(&mut self, daemon_args: &[&str]) -> PathBuf {
        let token_file = self.path("container-token");
        let token = token_file.display().to_string();
        let mut args = vec![
            "--container-listen",
            "127.0.0.1:0",
            "--container-token-file",
            &token,
        ];
        args.extend_from_slice(daemon_args);
        self.start_daemon(&args);
        token_file
    }

    /// `http://127.0.0.1:PORT/v1/credentials` of a daemon started with `--container-listen`,
    /// the port (when 0 was asked) read from the status sink table.
    pub fn container_uri(&self) -> String {
        let output = self.client("status", &["--json"]).output().unwrap();
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let addr = status["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == "container")
            .and_then(|s| s["target"].as_str())
            .expect("the container endpoint is in the sink table")
            .to_string();
        format!("http://{addr}/v1/credentials")
    }

    /// A path in the sandbox's temp folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM);
            let _ = daemon.wait();
        }
    }
}

/// `imds-credd run` handed `listener` as systemd hands it (see [`activated`]), logging to
/// `log` in the sandbox.
pub fn activated_daemon(
    sandbox: &Sandbox,
    listener: &std::os::unix::net::UnixListener,
    log: &str,
) -> Child {
    let endpoint = sandbox.sim.endpoint();
    let socket = sandbox.socket.to_str().unwrap();
    let mut args = run_args(&endpoint).to_vec();
    args.extend(["--socket", socket]);
    activated(listener, &sandbox.path(log), &args)
}

/// `imds-credd ARGS…` handed `listener` as systemd hands it (fd 3, `LISTEN_FDS=1`,
/// `LISTEN_PID` its own pid), its stderr to `log`.
pub fn activated(
    listener: &std::os::unix::net::UnixListener,
    log: &std::path::Path,
    args: &[&str],
) -> Child {
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    let log = std::fs::File::create(log).unwrap();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
        .arg(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    clear_aws_variables(&mut command);
    // SAFETY: fcntl and dup2 are async-signal-safe; they put the listener at fd 3, without
    // close-on-exec, in the child only (the fd dup2 returns is that fd 3: kept open).
    unsafe {
        command.pre_exec(move || {
            use nix::fcntl::{fcntl, FcntlArg, FdFlag};
            let listener = BorrowedFd::borrow_raw(fd);
            if fd == 3 {
                fcntl(listener, FcntlArg::F_SETFD(FdFlag::empty()))?;
            } else {
                std::mem::forget(nix::unistd::dup2_raw(listener, 3)?);
            }
            Ok(())
        });
    }
    command.spawn().unwrap()
}

pub fn clear_aws_variables(command: &mut Command) {
    for name in AWS_VARIABLES {
        command.env_remove(name);
    }
}

/// Requires exit code 0 (else fails with `what` and stderr) and returns stdout.
pub fn assert_success(output: &std::process::Output, what: &str) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{what}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

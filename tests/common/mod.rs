//! Shared test support: log capture with a secret scan, and a harness that runs the daemon
//! in-process against the IMDS simulator on a clock the test moves.
#![allow(dead_code)] // each test binary uses a different part of this module

/// The AWS CLI and boto3 from the test venv.
pub mod aws_clients;
/// The socket, the files and `imds-credd status`, as a client reads them.
pub mod client_view;
/// The daemon and the client commands as child processes.
pub mod daemon_process;
/// Network namespaces of a test's own, and threads that bind inside them.
#[cfg(target_os = "linux")]
pub mod netns;
/// Our binaries copied where other uids can run them.
pub mod reachable;
/// A loopback stand-in for STS that records and verifies how real clients signed.
pub mod recorder;
/// Root and tools a test needs: skipped outside CI, a failure in CI.
pub mod require;
/// Sink configurations with only the keys a test sets.
pub mod sink_config;
/// An IMDS clock skewed against the daemon's.
pub mod skewed_clock;
pub mod sts;
/// HTTP over TCP on the daemon's own client stack.
pub mod tcp_http;
/// The daemon as the systemd unit runs it, and other local users, through setpriv.
pub mod unit_user;
pub mod unix_http;

use imds_credd::clock::{Clock, ManualClock, SharedClock};
use imds_credd::config::Config;
use imds_credd::daemon::{self, DaemonHandle};
use imds_credd::demo::simulator::{ImdsSimulator, SimulatorOptions};
use imds_credd::refresh::state::CredentialState;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// Everything logged while installed, at `trace` level, for every crate.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(self.0.clone())
    }
}

impl LogCapture {
    /// Captures this thread's logs (use a current-thread runtime) until the guard drops.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(self.subscriber())
    }

    /// Captures every thread's logs for the rest of the process: for a test binary whose
    /// tests share one capture (and may run on several threads).
    pub fn install_for_the_process(&self) {
        use tracing_subscriber::util::SubscriberInitExt as _;
        self.subscriber().init();
    }

    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }

    /// Fails, showing the logs, unless something logged contains `needle`.
    pub fn assert_contains(&self, needle: &str) {
        let text = self.text();
        assert!(text.contains(needle), "nothing logged {needle:?}:\n{text}");
    }
}

/// Fails if any secret the simulator ever issued (secret keys, session tokens, IMDS
/// tokens) appears in `text`.
pub fn assert_no_secrets(text: &str, sim: &ImdsSimulator, what: &str) {
    assert_no_credential_secrets(text, &sim.issued_credentials(), what);
    for token in sim.issued_tokens() {
        assert!(!text.contains(&token), "{what} contains an IMDS token");
    }
}

/// Fails if the secret key or session token of any of `issued` appears in `text`.
pub fn assert_no_credential_secrets(
    text: &str,
    issued: &[imds_credd::credentials::Credentials],
    what: &str,
) {
    for creds in issued {
        for secret in [
            creds.secret_access_key.expose(),
            creds.session_token.expose(),
        ] {
            assert!(
                !text.contains(secret),
                "{what} contains a credential secret"
            );
        }
    }
}

/// Creates the folder `path` with exactly `mode` (set after creating it: the umask would
/// clear the bits a test wants others to have).
#[cfg(unix)]
pub fn folder_with_mode(path: std::path::PathBuf, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// The type of what is at `path`, a link not followed.
pub fn file_type(path: &std::path::Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

/// Polls `condition` (real time, for up to 10 s) until it holds: for what a task does on
/// its own schedule, such as a sink writing its file.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The daemon in-process against the simulator, both on one manual clock.
pub struct Harness {
    pub clock: ManualClock,
    pub sim: ImdsSimulator,
    pub daemon: DaemonHandle,
    pub logs: LogCapture,
    pub dir: tempfile::TempDir,
    /// The daemon's unix socket, in `dir`.
    pub daemon_socket: std::path::PathBuf,
    _log_guard: tracing::subscriber::DefaultGuard,
}

pub struct HarnessOptions {
    pub sim: SimulatorOptions,
    /// Adjusts the daemon's config after the endpoint and paths are filled in.
    pub configure: Box<dyn FnOnce(&mut Config)>,
    /// Runs on the simulator before the daemon starts (e.g. to inject faults).
    pub prepare: Box<dyn FnOnce(&ImdsSimulator)>,
    /// Whether to wait for the first credentials before returning.
    pub wait_for_credentials: bool,
    /// Whether to give the daemon the credentials file and env file that
    /// [`Harness::assert_clients_see`] reads.
    pub file_sinks: bool,
}

impl HarnessOptions {
    pub fn new(clock: &ManualClock) -> Self {
        HarnessOptions {
            sim: SimulatorOptions {
                clock: Arc::new(clock.clone()) as SharedClock,
                ..SimulatorOptions::default()
            },
            configure: Box::new(|_| {}),
            prepare: Box::new(|_| {}),
            wait_for_credentials: true,
            file_sinks: false,
        }
    }
}

impl Harness {
    pub async fn start() -> Harness {
        let clock = ManualClock::starting_now();
        Harness::start_with(clock.clone(), HarnessOptions::new(&clock)).await
    }

    /// [`Harness::start`] with the sinks a client reads: a credentials file and an env file.
    pub async fn start_with_file_sinks() -> Harness {
        Harness::start_with_file_sinks_and(|_| {}).await
    }

    /// [`Harness::start_with_file_sinks`] with `edit` applied to its options first.
    pub async fn start_with_file_sinks_and(edit: impl FnOnce(&mut HarnessOptions)) -> Harness {
        let clock = ManualClock::starting_now();
        let mut options = HarnessOptions::new(&clock);
        options.file_sinks = true;
        edit(&mut options);
        Harness::start_with(clock, options).await
    }

    pub async fn start_with(clock: ManualClock, options: HarnessOptions) -> Harness {
        let logs = LogCapture::default();
        let guard = logs.install();
        let sim = ImdsSimulator::start(options.sim)
            .await
            .expect("simulator starts");
        (options.prepare)(&sim);
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.imds.endpoint = sim.endpoint();
        config.imds.timeout = Duration::from_millis(500);
        config.socket.path = dir.path().join("credentials.sock");
        if options.file_sinks {
            client_view::add_file_sinks(&mut config, dir.path());
        }
        (options.configure)(&mut config);
        let daemon_socket = config.socket.path.clone();
        let daemon = daemon::start(&config, Arc::new(clock.clone()))
            .await
            .expect("daemon starts");
        let harness = Harness {
            clock,
            sim,
            daemon,
            logs,
            dir,
            daemon_socket,
            _log_guard: guard,
        };
        if options.wait_for_credentials {
            harness
                .wait_for("first credentials", |s| s.credentials.is_some())
                .await;
        }
        harness
    }

    /// Waits (real time, bounded) until the published state satisfies `condition`.
    pub async fn wait_for(
        &self,
        what: &str,
        condition: impl FnMut(&CredentialState) -> bool,
    ) -> CredentialState {
        let mut rx = self.daemon.instance_role.clone();
        let outcome = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(condition)).await;
        let state = match outcome {
            Ok(Ok(state)) => state.clone(),
            _ => panic!(
                "timed out waiting for {what}; state: {:?}\nlogs:\n{}",
                *self.daemon.instance_role.borrow(),
                self.logs.text()
            ),
        };
        state
    }

    /// Moves the clock and waits until the daemon has acted on it: the refresher publishes
    /// a new `next_refresh` after every attempt.
    pub async fn advance_and_settle(&self, by: Duration) -> CredentialState {
        let before = self.daemon.instance_role.borrow().next_refresh;
        let target = Clock::now(&self.clock) + by;
        self.clock.advance(by);
        if before.is_some_and(|at| at <= target) {
            self.wait_for("a refresh attempt", |s| s.next_refresh != before)
                .await
        } else {
            self.daemon.instance_role.borrow().clone()
        }
    }

    /// The credentials the daemon now serves, if any.
    pub fn served(&self) -> Option<imds_credd::credentials::Credentials> {
        let state = self.daemon.instance_role.borrow();
        state
            .valid_credentials(Clock::now(&self.clock))
            .map(|c| (**c).clone())
    }

    /// Stops the daemon and checks that nothing secret was logged.
    pub async fn finish(self) {
        self.daemon.stop().await;
        assert_no_secrets(&self.logs.text(), &self.sim, "the logs");
    }
}

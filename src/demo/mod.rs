//! `imds-credd demo`: the daemon against the built-in IMDS simulator, with every sink in a
//! private temporary folder, on any machine and without an AWS account. Credentials live
//! five minutes and rotate every two and a half, so a rotation shows within minutes.
//!
//! The daemon's tasks run under the same supervisor as `run`'s: a task that panics or ends
//! unasked ends the demo with the same log line and exit code, rather than leaving a demo
//! that prints its guide and then answers nothing.

pub mod simulator;

use crate::clock::SystemClock;
use crate::config::{Config, EnvFormat, EnvSinkConfig, FileMode, FileSinkConfig, SinkConfig};
use crate::credentials::format_utc_timestamp;
use crate::demo::simulator::{ImdsSimulator, SimulatorOptions};
use crate::failure::Fault;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(5 * 60);
const ROTATE_EVERY: Duration = Duration::from_secs(150);

/// Options of the `demo` command.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop by itself after this long (default: run until Ctrl-C).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_positive_duration)]
    pub run_for: Option<Duration>,
}

/// Why the demo could not run.
#[derive(Debug, Error)]
pub enum DemoError {
    /// The demo's temp folder could not be made.
    #[error("cannot create a temporary folder")]
    Folder(#[source] std::io::Error),
    /// The tokio runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The simulated IMDS could not listen on loopback.
    #[error("cannot start the simulated IMDS on loopback")]
    Simulator(#[source] std::io::Error),
    /// The daemon could not start.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// A supervised task of the daemon ended or panicked.
    #[error(transparent)]
    TaskFailed(crate::daemon::supervisor::TaskFailure),
}

impl DemoError {
    /// Whose move it is: the daemon's start decides; the demo's own parts are the machine's;
    /// a task of its daemon that ended is as for `run`.
    pub fn fault(&self) -> Fault {
        match self {
            DemoError::Daemon(daemon) => daemon.fault(),
            DemoError::Folder(_) | DemoError::Runtime(_) | DemoError::Simulator(_) => {
                Fault::Unavailable
            }
            DemoError::TaskFailed(_) => Fault::TaskFailed,
        }
    }
}

/// Runs the demo until Ctrl-C (or `--run-for`), then removes its folder. A panic anywhere
/// ends the process with `panic_exit_code` (see [`crate::daemon::supervisor::exit_on_panic`]).
pub fn run(args: &DemoArgs, panic_exit_code: u8) -> Result<(), DemoError> {
    crate::daemon::logging::init(
        crate::config::LogLevel::Info,
        crate::config::LogFormat::Text,
    );
    crate::daemon::supervisor::exit_on_panic(panic_exit_code);
    let folder = make_private_folder().map_err(DemoError::Folder)?;
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)
        .and_then(|runtime| runtime.block_on(run_demo(&folder, args.run_for)));
    let _ = std::fs::remove_dir_all(&folder);
    outcome
}

async fn run_demo(folder: &Path, run_for: Option<Duration>) -> Result<(), DemoError> {
    let sim = ImdsSimulator::start(SimulatorOptions {
        credential_lifetime: CREDENTIAL_LIFETIME,
        rotate_every: ROTATE_EVERY,
        ..SimulatorOptions::default()
    })
    .await
    .map_err(DemoError::Simulator)?;
    let config = demo_config(folder, &sim.endpoint());
    let mut daemon = crate::daemon::start(&config, Arc::new(SystemClock)).await?;
    print_guide(&config, &sim.endpoint());
    let mut state = daemon.instance_role.clone();
    let announce = async {
        let mut last_key = None;
        while state.changed().await.is_ok() {
            let current = state.borrow_and_update().clone();
            let Some(creds) = current.credentials else {
                continue;
            };
            if last_key.as_ref() != Some(&creds.access_key_id) {
                let verb = if last_key.is_none() {
                    "published"
                } else {
                    "ROTATED"
                };
                println!(
                    "[demo] {verb}: access key {} (expires {})",
                    creds.access_key_id,
                    format_utc_timestamp(creds.expiration)
                );
                last_key = Some(creds.access_key_id.clone());
            }
        }
    };
    let stop = async {
        match run_for {
            // Monotonic: `--run-for` is a length of time.
            #[allow(clippy::disallowed_methods)]
            Some(d) => tokio::time::sleep(d).await,
            None => crate::daemon::wait_for_stop_signal().await,
        }
    };
    let failed = tokio::select! {
        _ = announce => None,
        _ = stop => None,
        failure = daemon.failure() => Some(failure),
    };
    if let Some(failure) = &failed {
        tracing::error!(error = %crate::error_chain::render(failure), "the demo's daemon lost a task; stopping");
    }
    println!("[demo] stopping; removing {}", folder.display());
    daemon.stop().await;
    sim.shutdown().await;
    failed.map_or(Ok(()), |failure| Err(DemoError::TaskFailed(failure)))
}

/// The demo's socket: in its folder.
#[cfg(target_os = "linux")]
fn demo_socket_path(folder: &Path) -> PathBuf {
    folder.join("credentials.sock")
}

/// The demo's named pipe, named after its folder so two demos do not collide.
#[cfg(windows)]
fn demo_socket_path(folder: &Path) -> PathBuf {
    let name = folder.file_name().unwrap_or_default().to_string_lossy();
    PathBuf::from(format!(r"\\.\pipe\{name}"))
}

#[cfg(target_os = "linux")]
const DEMO_ENV_FILE: &str = "credentials.env";
#[cfg(target_os = "linux")]
const DEMO_ENV_FORMAT: EnvFormat = EnvFormat::Sh;
#[cfg(windows)]
const DEMO_ENV_FILE: &str = "credentials.ps1";
#[cfg(windows)]
const DEMO_ENV_FORMAT: EnvFormat = EnvFormat::Powershell;

/// Every sink in `folder`, refresh timings scaled to five-minute credentials.
fn demo_config(folder: &Path, endpoint: &str) -> Config {
    let mut config = Config::default();
    config.imds.endpoint = endpoint.to_string();
    config.refresh.before_expiry = Duration::from_secs(60);
    config.refresh.max_interval = Duration::from_secs(60);
    config.socket.path = demo_socket_path(folder);
    config.socket.mode = FileMode(0o600);
    config.files.push(FileSinkConfig {
        sink: SinkConfig::new(folder.join("credentials")),
        profile: "demo".to_string(),
    });
    config.envs.push(EnvSinkConfig {
        sink: SinkConfig::new(folder.join(DEMO_ENV_FILE)),
        format: DEMO_ENV_FORMAT,
    });
    config
}

fn print_guide(config: &Config, endpoint: &str) {
    let socket = config.socket.path.display();
    let file = config.files[0].sink.path.display();
    let env = config.envs[0].sink.path.display();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "imds-credd".to_string());
    #[cfg(windows)]
    let tries = format!(
        r#"  {exe} status --socket {socket}
  {exe} credential-process --socket {socket}
  {exe} env --format powershell --socket {socket}
  type {file}          # profile [demo]
  . {env}; $Env:AWS_ACCESS_KEY_ID      # in PowerShell"#
    );
    #[cfg(target_os = "linux")]
    let tries = format!(
        r#"  {exe} status --socket {socket}
  {exe} credential-process --socket {socket}
  {exe} env --socket {socket}
  {exe} exec --socket {socket} -- env | grep ^AWS_
  curl -s --unix-socket {socket} http://localhost/v1/credentials
  curl -s --unix-socket {socket} http://localhost/v1/status
  cat {file}          # profile [demo]
  . {env} && echo "$AWS_ACCESS_KEY_ID""#
    );
    println!(
        r#"
imds-credd demo: a simulated IMDS at {endpoint} issues credentials that live
5 minutes and rotate every 2.5 minutes; the daemon republishes them. Try, in
another terminal:

{tries}

Rotations are announced below. Ctrl-C stops the demo and removes its folder.
"#
    );
}

/// A fresh 0700 folder under the system temp folder.
fn make_private_folder() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    loop {
        let folder = base.join(format!("imds-credd-demo-{:08x}", fastrand::u32(..)));
        #[cfg_attr(windows, allow(unused_mut))]
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(target_os = "linux")]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&folder) {
            Ok(()) => return Ok(folder),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

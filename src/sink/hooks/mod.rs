//! Rotation hooks: what a sink does after it has published new credentials, so programs
//! that read them once (nginx, a JVM) pick them up. Per sink, from its config:
//! - `on_rotate = ["cmd", "arg"]`: run directly (no shell), stdin from `/dev/null`, in its
//!   own process group, which is killed after a timeout; its exit status is logged at info (success) or warn, its output at
//!   debug, cut short. On Linux the child drops every capability before it execs
//!   ([`crate::privileges::drop_capabilities`]): a hook has the daemon's uid, not its
//!   `CAP_DAC_OVERRIDE` or `CAP_KILL`. It gets a minimal environment, not the daemon's
//!   ([`hook_environment`]): nothing systemd hands the daemon (`NOTIFY_SOCKET`,
//!   `LISTEN_FDS`, `WATCHDOG_USEC`, `INVOCATION_ID`, `CREDENTIALS_DIRECTORY`) and no AWS
//!   variable reaches a hook, which could act on them in the daemon's name.
//! - `signal = { pid_file, signal = "HUP" }`: the signal sent to the process whose pid the
//!   file holds, only when the file and the process pass the checks of [`crate::sink::pid_file`];
//!   read and sent on the blocking pool, given at most [`SIGNAL_TIMEOUT`].
//!
//! What went wrong in a run (a refused pid file, a failed command) goes to the log and to the
//! sink's row in `status`.
//!
//! On Windows only `on_rotate` exists: there are no signals to send (config validation
//! refuses `signal` there), and a timed-out command is killed alone, not with the processes
//! it started (Windows has no process groups to kill at once).
//!
//! Hooks run on their own task: a slow hook never delays the sink or the refresher. Runs of
//! one sink's hooks do not overlap; a rotation that comes while one runs waits for it.

#[cfg(target_os = "linux")]
mod signal;

#[cfg(target_os = "linux")]
pub use signal::SIGNAL_TIMEOUT;

use crate::config::SignalConfig;
use crate::health::SinkReporter;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;
#[cfg(target_os = "linux")]
use {crate::sink::pid_file::PidFileError, signal::SignalTarget, std::path::PathBuf};

/// How long an `on_rotate` command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Output kept for the log, per stream; the rest is read and dropped so the command never
/// blocks on a full pipe.
const MAX_LOGGED_OUTPUT: usize = 2048;
/// After the command exits, how long to wait for its pipes to close (a background child
/// may hold them open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// A hook configuration that cannot work, refused when the sink is set up.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HookConfigError {
    /// `on_rotate` is an empty list.
    #[error("on_rotate for {sink} is empty; give the program and its arguments, e.g. [\"systemctl\", \"reload\", \"nginx\"]")]
    EmptyCommand {
        /// The sink.
        sink: String,
    },
    /// `signal` names no signal.
    #[error("signal {name:?} for {sink} is not a signal name such as HUP, USR1 or TERM")]
    UnknownSignal {
        /// The sink.
        sink: String,
        /// The name as configured.
        name: String,
    },
    /// `signal` on Windows.
    #[error("signal for {sink}: Windows has no signals to send; use on_rotate instead")]
    SignalUnsupported {
        /// The sink.
        sink: String,
    },
}

/// Why a hook did not do its work. Logged; never fatal to the sink.
#[derive(Debug, Error)]
pub enum HookError {
    /// The command could not start.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("waiting for {program} failed")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pid file refused the signal.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Signal(#[from] PidFileError),
    /// The pid file is not read yet.
    #[cfg(target_os = "linux")]
    #[error("pid file {}: not read within {} s (a hung file system?); the signal goes out only if the read ever ends", path.display(), SIGNAL_TIMEOUT.as_secs())]
    SignalStuck {
        /// The pid file.
        path: PathBuf,
    },
    /// The signal task panicked.
    #[cfg(target_os = "linux")]
    #[error("pid file {}: the signal task panicked; signal not sent", path.display())]
    SignalPanicked {
        /// The pid file.
        path: PathBuf,
    },
}

/// How an `on_rotate` command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// It ended on its own, with this status.
    Exited(ExitStatus),
    /// Still running at the timeout: killed (SIGKILL, or TerminateProcess on Windows) and
    /// reaped.
    Killed {
        /// Its pid, if the system gave one.
        pid: Option<u32>,
    },
}

/// What one run of a sink's hooks did.
#[derive(Debug)]
pub struct HookReport {
    /// How the `on_rotate` command went, if there is one.
    pub command: Option<Result<CommandOutcome, HookError>>,
    /// The pid signalled.
    pub signal: Option<Result<i32, HookError>>,
}

impl HookReport {
    /// What went wrong, for the sink's row in `status`; `None` when everything worked.
    pub fn problem(&self) -> Option<String> {
        let command = match &self.command {
            Some(Err(error)) => Some(format!("on_rotate: {}", crate::error_chain::render(error))),
            Some(Ok(CommandOutcome::Exited(status))) if !status.success() => {
                Some(format!("on_rotate: {status}"))
            }
            Some(Ok(CommandOutcome::Killed { .. })) => {
                Some("on_rotate: did not finish in time; killed".to_string())
            }
            _ => None,
        };
        let signal = match &self.signal {
            Some(Err(error)) => Some(format!("signal: {}", crate::error_chain::render(error))),
            _ => None,
        };
        match (command, signal) {
            (Some(c), Some(s)) => Some(format!("{c}; {s}")),
            (c, s) => c.or(s),
        }
    }
}

/// A sink's hooks, built from its `on_rotate` and `signal` settings.
#[derive(Debug, Clone)]
pub struct RotationHooks {
    inner: Arc<Hooks>,
    /// How long the command may run.
    timeout: Duration,
}

#[derive(Debug)]
struct Hooks {
    /// Names the sink in log lines, e.g. `file /home/app/.aws/credentials`.
    sink: String,
    command: Option<Vec<String>>,
    #[cfg(target_os = "linux")]
    signal: Option<SignalTarget>,
    /// Held while the hooks run, so runs for one sink do not overlap.
    running: tokio::sync::Mutex<()>,
}

impl RotationHooks {
    /// Checks the settings of one sink. `sink` names it in logs and errors.
    pub fn new(
        sink: &str,
        on_rotate: Option<&[String]>,
        signal: Option<&SignalConfig>,
    ) -> Result<RotationHooks, HookConfigError> {
        let command = match on_rotate {
            Some([]) => {
                return Err(HookConfigError::EmptyCommand {
                    sink: sink.to_string(),
                })
            }
            Some(argv) => Some(argv.to_vec()),
            None => None,
        };
        #[cfg(windows)]
        if signal.is_some() {
            return Err(HookConfigError::SignalUnsupported {
                sink: sink.to_string(),
            });
        }
        #[cfg(target_os = "linux")]
        let signal = signal
            .map(|config| SignalTarget::new(sink, config))
            .transpose()?;
        Ok(RotationHooks {
            inner: Arc::new(Hooks {
                sink: sink.to_string(),
                command,
                #[cfg(target_os = "linux")]
                signal,
                running: tokio::sync::Mutex::new(()),
            }),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same hooks for a sink with this `owner` (a user name or uid): a pid file and
    /// process of that user may be signalled. Without, only the daemon's own user's and
    /// root's pid files are.
    #[cfg_attr(windows, allow(unused_variables, unused_mut))]
    pub fn owned_by(mut self, owner: Option<String>) -> RotationHooks {
        #[cfg(target_os = "linux")]
        {
            let hooks = Arc::get_mut(&mut self.inner)
                .expect("owned_by is called while the hooks are built, before any run");
            if let Some(target) = &mut hooks.signal {
                target.owner = owner;
            }
        }
        self
    }
}

/// What only tests need: another timeout, a look inside, a run without a status row.
#[cfg(feature = "test-util")]
impl RotationHooks {
    /// The same hooks with another command timeout.
    pub fn with_timeout(self, timeout: Duration) -> RotationHooks {
        RotationHooks { timeout, ..self }
    }

    /// True when neither a command nor a signal is configured.
    pub fn is_empty(&self) -> bool {
        #[cfg(target_os = "linux")]
        if self.inner.signal.is_some() {
            return false;
        }
        self.inner.command.is_none()
    }

    /// Runs the hooks on a new task (the caller does not wait): first the command, then
    /// the signal. Call after the sink has published new credentials. The handle tells
    /// what happened; dropping it is fine.
    pub fn after_publish(&self) -> JoinHandle<HookReport> {
        self.spawn(None)
    }
}

impl RotationHooks {
    /// Runs the hooks on a new task (the caller does not wait), first the command, then the
    /// signal, and reports the outcome to the sink's row in `status`.
    pub fn after_publish_reporting(&self, reporter: Arc<SinkReporter>) -> JoinHandle<HookReport> {
        self.spawn(Some(reporter))
    }

    fn spawn(&self, reporter: Option<Arc<SinkReporter>>) -> JoinHandle<HookReport> {
        let hooks = self.inner.clone();
        let timeout = self.timeout;
        tokio::spawn(async move {
            let report = hooks.run(timeout).await;
            if let Some(reporter) = reporter {
                reporter.hooks_ran(report.problem());
            }
            report
        })
    }
}

impl Hooks {
    async fn run(&self, timeout: Duration) -> HookReport {
        let _one_at_a_time = self.running.lock().await;
        let command = match &self.command {
            Some(argv) => Some(self.run_command(argv, timeout).await),
            None => None,
        };
        if let Some(Err(error)) = &command {
            tracing::warn!(sink = self.sink, error = %crate::error_chain::render(error), "on_rotate command failed");
        }
        #[cfg(windows)]
        let signal = None;
        #[cfg(target_os = "linux")]
        let signal = match &self.signal {
            Some(target) => Some(target.send_logged(&self.sink).await),
            None => None,
        };
        HookReport { command, signal }
    }

    async fn run_command(
        &self,
        argv: &[String],
        timeout: Duration,
    ) -> Result<CommandOutcome, HookError> {
        let program = argv[0].clone();
        let mut command = Command::new(&program);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        hook_environment(&mut command);
        // Its own process group, so a timeout kills what it started too.
        #[cfg(target_os = "linux")]
        signal::isolate(&mut command);
        let mut child = command.spawn().map_err(|source| HookError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = child.id();
        let stdout = child.stdout.take().map(|s| tokio::spawn(read_capped(s)));
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_capped(s)));
        let outcome = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => CommandOutcome::Exited(status),
            Ok(Err(source)) => return Err(HookError::Wait { program, source }),
            Err(_) => {
                // The child leads its group: this reaches the processes it started.
                #[cfg(target_os = "linux")]
                signal::kill_group(pid);
                // `kill` sends SIGKILL to the child (again) and reaps it.
                if let Err(error) = child.kill().await {
                    tracing::warn!(sink = self.sink, program, error = %crate::error_chain::render(&error), "cannot kill the timed-out on_rotate command");
                }
                CommandOutcome::Killed { pid }
            }
        };
        let stdout = collect_output(stdout).await;
        let stderr = collect_output(stderr).await;
        tracing::debug!(
            sink = self.sink,
            program,
            stdout,
            stderr,
            "on_rotate output"
        );
        match &outcome {
            CommandOutcome::Exited(status) if status.success() => {
                tracing::info!(sink = self.sink, program, "on_rotate command succeeded")
            }
            CommandOutcome::Exited(status) => {
                tracing::warn!(sink = self.sink, program, status = %status, "on_rotate command failed")
            }
            CommandOutcome::Killed { .. } => tracing::warn!(
                sink = self.sink,
                program,
                timeout_secs = timeout.as_secs_f64(),
                "on_rotate command did not finish in time; killed"
            ),
        }
        Ok(outcome)
    }
}

/// Reads a stream to its end, keeping the first [`MAX_LOGGED_OUTPUT`] bytes.
/// The `PATH` a hook gets on Linux: systemd's default for services, the same on every box.
#[cfg(target_os = "linux")]
const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables a hook gets from the daemon's environment when they are set: the locale on
/// Linux; on Windows also what programs need to start at all.
#[cfg(target_os = "linux")]
const HOOK_PASSED: [&str; 2] = ["LANG", "LC_ALL"];
#[cfg(windows)]
const HOOK_PASSED: [&str; 9] = [
    "LANG",
    "LC_ALL",
    "SystemRoot",
    "windir",
    "PATH",
    "PATHEXT",
    "ComSpec",
    "TEMP",
    "TMP",
];

/// Gives `command` the documented hook environment and nothing else: `PATH` (fixed on
/// Linux) and [`HOOK_PASSED`] when set.
fn hook_environment(command: &mut Command) {
    command.env_clear();
    #[cfg(target_os = "linux")]
    command.env("PATH", HOOK_PATH);
    for name in HOOK_PASSED {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
}

async fn read_capped(mut stream: impl AsyncRead + Unpin) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut cut = false;
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let room = MAX_LOGGED_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..n.min(room)]);
        cut |= n > room;
    }
    (kept, cut)
}

/// The captured text of one stream, waiting at most [`OUTPUT_GRACE`] for its end.
async fn collect_output(reader: Option<JoinHandle<(Vec<u8>, bool)>>) -> String {
    let Some(mut reader) = reader else {
        return String::new();
    };
    let (bytes, cut) = match tokio::time::timeout(OUTPUT_GRACE, &mut reader).await {
        Ok(Ok(read)) => read,
        _ => {
            reader.abort();
            return "<output still open after the command ended>".to_string();
        }
    };
    let mut text = String::from_utf8_lossy(&bytes).trim_end().to_string();
    if cut {
        text.push_str(" …(cut)");
    }
    text
}

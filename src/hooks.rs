//! Rotation hooks: what a sink does after it has published new credentials, so programs
//! that read them once (nginx, a JVM) pick them up. Per sink, from its config:
//! - `on_rotate = ["cmd", "arg"]`: run directly (no shell), stdin from `/dev/null`, in its
//!   own process group, which is killed after a timeout; its exit status is logged at info (success) or warn, its output at
//!   debug, cut short.
//! - `signal = { pid_file, signal = "HUP" }`: the signal sent to the process whose pid the
//!   file holds.
//!
//! On Windows only `on_rotate` exists: there are no signals to send (config validation
//! refuses `signal` there), and a timed-out command is killed alone, not with the processes
//! it started (Windows has no process groups to kill at once).
//!
//! Hooks run on their own task: a slow hook never delays the sink or the refresher. Runs of
//! one sink's hooks do not overlap; a rotation that comes while one runs waits for it.

use crate::config::SignalConfig;
#[cfg(unix)]
use nix::sys::signal::{kill, killpg, Signal};
#[cfg(unix)]
use nix::unistd::Pid;
#[cfg(unix)]
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
#[cfg(unix)]
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// How long an `on_rotate` command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Output kept for the log, per stream; the rest is read and dropped so the command never
/// blocks on a full pipe.
const MAX_LOGGED_OUTPUT: usize = 2048;
/// After the command exits, how long to wait for its pipes to close (a background child
/// may hold them open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// A pid file holds a number and a newline; anything longer is not a pid file.
#[cfg(unix)]
const MAX_PID_FILE_BYTES: u64 = 64;

/// A hook configuration that cannot work, refused when the sink is set up.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HookConfigError {
    #[error("on_rotate for {sink} is empty; give the program and its arguments, e.g. [\"systemctl\", \"reload\", \"nginx\"]")]
    EmptyCommand { sink: String },
    #[error("signal {name:?} for {sink} is not a signal name such as HUP, USR1 or TERM")]
    UnknownSignal { sink: String, name: String },
    #[error("signal for {sink}: Windows has no signals to send; use on_rotate instead")]
    SignalUnsupported { sink: String },
}

/// Why a hook did not do its work. Logged; never fatal to the sink.
#[derive(Debug, Error)]
pub enum HookError {
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program} failed")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[cfg(unix)]
    #[error("cannot read pid file {}", path.display())]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[cfg(unix)]
    #[error("pid file {} does not hold a process id above 1", path.display())]
    BadPid { path: PathBuf },
    #[cfg(unix)]
    #[error("cannot send SIG{signal} to pid {pid} (from {})", path.display())]
    Signal {
        signal: &'static str,
        pid: i32,
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
}

/// How an `on_rotate` command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Exited(ExitStatus),
    /// Still running at the timeout: killed (SIGKILL, or TerminateProcess on Windows) and
    /// reaped.
    Killed {
        pid: Option<u32>,
    },
}

/// What one run of a sink's hooks did.
#[derive(Debug)]
pub struct HookReport {
    pub command: Option<Result<CommandOutcome, HookError>>,
    /// The pid signalled.
    pub signal: Option<Result<i32, HookError>>,
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
    #[cfg(unix)]
    signal: Option<SignalTarget>,
    /// Held while the hooks run, so runs for one sink do not overlap.
    running: tokio::sync::Mutex<()>,
}

#[cfg(unix)]
#[derive(Debug)]
struct SignalTarget {
    pid_file: PathBuf,
    signal: Signal,
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
        #[cfg(unix)]
        let signal = signal
            .map(|s| {
                Ok(SignalTarget {
                    pid_file: s.pid_file.clone(),
                    signal: parse_signal(&s.signal).ok_or_else(|| {
                        HookConfigError::UnknownSignal {
                            sink: sink.to_string(),
                            name: s.signal.clone(),
                        }
                    })?,
                })
            })
            .transpose()?;
        Ok(RotationHooks {
            inner: Arc::new(Hooks {
                sink: sink.to_string(),
                command,
                #[cfg(unix)]
                signal,
                running: tokio::sync::Mutex::new(()),
            }),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same hooks with another command timeout.
    pub fn with_timeout(self, timeout: Duration) -> RotationHooks {
        RotationHooks { timeout, ..self }
    }

    /// True when neither a command nor a signal is configured.
    pub fn is_empty(&self) -> bool {
        #[cfg(unix)]
        let no_signal = self.inner.signal.is_none();
        #[cfg(windows)]
        let no_signal = true;
        self.inner.command.is_none() && no_signal
    }

    /// Runs the hooks on a new task (the caller does not wait): first the command, then
    /// the signal. Call after the sink has published new credentials. The handle tells
    /// what happened; dropping it is fine.
    pub fn after_publish(&self) -> JoinHandle<HookReport> {
        let hooks = self.inner.clone();
        let timeout = self.timeout;
        tokio::spawn(async move { hooks.run(timeout).await })
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
            tracing::warn!(sink = self.sink, error = %crate::imds::error_chain(error), "on_rotate command failed");
        }
        #[cfg(windows)]
        let signal = None;
        #[cfg(unix)]
        let signal = self.signal.as_ref().map(|target| {
            let outcome = send_signal(target);
            match &outcome {
                Ok(pid) => tracing::info!(
                    sink = self.sink,
                    pid,
                    signal = target.signal.as_str(),
                    "signalled the process from the pid file after rotation"
                ),
                Err(error) => tracing::warn!(
                    sink = self.sink, error = %crate::imds::error_chain(error),
                    "rotation signal not sent"
                ),
            }
            outcome
        });
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
        // Its own process group, so a timeout kills what it started too.
        #[cfg(unix)]
        command.process_group(0);
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
                #[cfg(unix)]
                if let Some(group) = pid.and_then(|p| i32::try_from(p).ok()) {
                    // The child leads its group: this reaches the processes it started.
                    let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
                }
                // `kill` sends SIGKILL to the child (again) and reaps it.
                if let Err(error) = child.kill().await {
                    tracing::warn!(sink = self.sink, program, error = %error, "cannot kill the timed-out on_rotate command");
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

#[cfg(unix)]
/// `HUP`, `SIGHUP` or `hup` → `SIGHUP`.
fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok()
}

#[cfg(unix)]
/// Reads the pid file and sends the signal; returns the pid signalled.
fn send_signal(target: &SignalTarget) -> Result<i32, HookError> {
    let pid = read_pid_file(&target.pid_file)?;
    kill(Pid::from_raw(pid), target.signal).map_err(|source| HookError::Signal {
        signal: target.signal.as_str().trim_start_matches("SIG"),
        pid,
        path: target.pid_file.clone(),
        source,
    })?;
    Ok(pid)
}

#[cfg(unix)]
/// A pid file: one integer above 1, surrounding whitespace allowed. 0, 1 and negative
/// numbers would signal a process group, init, or every process: refused.
fn read_pid_file(path: &Path) -> Result<i32, HookError> {
    use std::io::Read;
    let read_error = |source| HookError::PidFile {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_PID_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 1)
        .ok_or_else(|| HookError::BadPid {
            path: path.to_path_buf(),
        })
}

// The unit tests cover signal parsing, which exists only on unix.
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_accepted_with_or_without_sig() {
        assert_eq!(parse_signal("HUP"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal(" usr2 "), Some(Signal::SIGUSR2));
        assert_eq!(parse_signal("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("RELOAD"), None);
        assert_eq!(parse_signal(""), None);
    }

    #[test]
    fn bad_settings_are_refused_up_front() {
        let err = RotationHooks::new("file /x", Some(&[]), None).unwrap_err();
        assert!(matches!(err, HookConfigError::EmptyCommand { .. }));
        let signal = SignalConfig {
            pid_file: "/run/app.pid".into(),
            signal: "RELOAD".into(),
        };
        let err = RotationHooks::new("file /x", None, Some(&signal)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signal \"RELOAD\" for file /x is not a signal name such as HUP, USR1 or TERM"
        );
        assert!(RotationHooks::new("file /x", None, None)
            .unwrap()
            .is_empty());
    }
}

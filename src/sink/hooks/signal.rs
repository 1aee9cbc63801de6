//! The Linux side of rotation hooks: the `signal = { pid_file, signal }` setting (the
//! signal sent to the process a pid file names, after the checks of
//! [`crate::sink::pid_file`]), and the process group an `on_rotate` command runs in, so that
//! a timeout kills what it started too. Windows has neither (config validation refuses
//! `signal` there).

use super::{HookConfigError, HookError};
use crate::config::SignalConfig;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio::process::Command;

/// How long reading a pid file and sending the signal may take: a regular file on a sane
/// disk takes microseconds; past this the sink reports the hook as stuck.
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a sink's rotation signal goes, and which signal.
#[derive(Debug)]
pub(super) struct SignalTarget {
    pid_file: PathBuf,
    pub(super) signal: Signal,
    /// The sink's `owner` setting: who may own the pid file and the process it names.
    pub(super) owner: Option<String>,
}

impl SignalTarget {
    /// Checks a sink's `signal` setting. `sink` names it in errors.
    pub(super) fn new(sink: &str, config: &SignalConfig) -> Result<Self, HookConfigError> {
        Ok(SignalTarget {
            pid_file: config.pid_file.clone(),
            owner: None,
            signal: parse_signal(&config.signal).ok_or_else(|| HookConfigError::UnknownSignal {
                sink: sink.to_string(),
                name: config.signal.clone(),
            })?,
        })
    }

    /// Reads the pid file and signals on the blocking pool (a pid file on a hung disk must
    /// not stall the async threads), for at most [`SIGNAL_TIMEOUT`].
    pub(super) async fn send(&self) -> Result<i32, HookError> {
        let (path, owner, signal) = (self.pid_file.clone(), self.owner.clone(), self.signal);
        let task = tokio::task::spawn_blocking(move || {
            crate::sink::pid_file::signal_from(&path, owner.as_deref(), signal)
        });
        match tokio::time::timeout(SIGNAL_TIMEOUT, task).await {
            Ok(Ok(outcome)) => Ok(outcome?),
            Ok(Err(_panicked)) => Err(HookError::SignalPanicked {
                path: self.pid_file.clone(),
            }),
            Err(_elapsed) => Err(HookError::SignalStuck {
                path: self.pid_file.clone(),
            }),
        }
    }

    /// [`Self::send`], its outcome logged for `sink`.
    pub(super) async fn send_logged(&self, sink: &str) -> Result<i32, HookError> {
        let outcome = self.send().await;
        match &outcome {
            Ok(pid) => tracing::info!(
                sink,
                pid,
                signal = self.signal.as_str(),
                "signalled the process from the pid file after rotation"
            ),
            Err(error) => tracing::warn!(
                sink, error = %crate::error_chain::render(error),
                "rotation signal not sent"
            ),
        }
        outcome
    }
}

/// Prepares `command` to run in its own process group (so [`kill_group`] reaches what it
/// starts) and without any capability: a hook has the daemon's uid, not its
/// `CAP_DAC_OVERRIDE` or `CAP_KILL`.
pub(super) fn isolate(command: &mut Command) {
    command.process_group(0);
    // SAFETY: the closure runs between fork and exec and makes system calls only.
    unsafe {
        command.pre_exec(crate::privileges::drop_capabilities);
    }
}

/// Kills the process group an [`isolate`]d command leads, `pid` being the command's.
pub(super) fn kill_group(pid: Option<u32>) {
    if let Some(group) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::hooks::RotationHooks;

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

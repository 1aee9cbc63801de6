//! Why the daemon could not start ([`DaemonError`]) and why `run` ended other than by a stop
//! signal ([`RunError`]).

use crate::assume::StsError;
use crate::daemon::supervisor::TaskFailure;
use crate::imds::ImdsError;
use crate::sink::hooks::HookConfigError;
use thiserror::Error;

/// Why the daemon could not start, or a reload could not start a sink.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Imds(#[from] ImdsError),
    #[error(transparent)]
    Assume(#[from] StsError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Socket(#[from] crate::serve::SocketError),
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Container(#[from] crate::serve::container::ContainerError),
    #[cfg(windows)]
    #[error(transparent)]
    Pipe(#[from] crate::serve::pipe::PipeError),
    #[error(transparent)]
    Hooks(#[from] HookConfigError),
    #[error("sink {sink} publishes profile {profile:?}, which no [[assume]] entry provides")]
    UnknownProfile { sink: String, profile: String },
}

/// Why `run` ended other than by a stop signal. Each is logged where it happens (the
/// daemon's log, in its format), so whoever turns it into an exit code prints nothing.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start")]
    Start(#[source] DaemonError),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("a supervised task failed")]
    TaskFailed(#[source] TaskFailure),
}

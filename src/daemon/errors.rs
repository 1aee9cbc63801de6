//! Why the daemon could not start ([`DaemonError`]) and why `run` ended other than by a stop
//! signal ([`RunError`]).

use crate::assume::StsError;
use crate::daemon::supervisor::TaskFailure;
use crate::failure::Fault;
use crate::imds::ImdsError;
use crate::sink::hooks::HookConfigError;
use thiserror::Error;

/// Why the daemon could not start, or a reload could not start a sink.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// IMDS could not be set up.
    #[error(transparent)]
    Imds(#[from] ImdsError),
    /// An `[[assume]]` profile could not be set up.
    #[error(transparent)]
    Assume(#[from] StsError),
    /// A sink could not be set up.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// The API socket could not be opened.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Socket(#[from] crate::serve::SocketError),
    /// The container endpoint could not be set up.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Container(#[from] crate::serve::container::ContainerError),
    /// The named pipe could not be created.
    #[cfg(windows)]
    #[error(transparent)]
    Pipe(#[from] crate::serve::pipe::PipeError),
    /// A sink's rotation hooks are wrong.
    #[error(transparent)]
    Hooks(#[from] HookConfigError),
    /// A sink names a profile the running daemon does not have (after a reload).
    #[error("sink {sink} publishes profile {profile:?}, which no [[assume]] entry provides")]
    UnknownProfile {
        /// The sink, as its table and path.
        sink: String,
        /// The profile it names.
        profile: String,
    },
}

/// Why `run` ended other than by a stop signal. Each is logged where it happens (the
/// daemon's log, in its format), so whoever turns it into an exit code prints nothing.
#[derive(Debug, Error)]
pub enum RunError {
    /// The tokio runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The daemon could not start.
    #[error("cannot start")]
    Start(#[source] DaemonError),
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// A supervised task ended or panicked.
    #[error("a supervised task failed")]
    TaskFailed(#[source] TaskFailure),
}

impl DaemonError {
    /// Whose move it is: a start failure the operator fixes in what they wrote (config,
    /// flags, environment), as opposed to the state of the machine at start.
    pub fn fault(&self) -> Fault {
        match self {
            DaemonError::Imds(imds) => imds.fault(),
            DaemonError::Assume(sts) => sts.fault(),
            DaemonError::Sink(sink) => sink.fault(),
            #[cfg(target_os = "linux")]
            DaemonError::Socket(socket) => socket_fault(socket),
            #[cfg(target_os = "linux")]
            DaemonError::Container(container) => container_fault(container),
            // The pipe's security descriptor is built from SIDs the config validation checked.
            #[cfg(windows)]
            DaemonError::Pipe(_) => Fault::Unavailable,
            DaemonError::Hooks(_) | DaemonError::UnknownProfile { .. } => Fault::Setup,
        }
    }
}

// The socket's and the container endpoint's errors are answered here until the rewrite of
// `serve/socket/` and `serve/container.rs` under way lands; then each moves next to its type.

/// A socket path or group the config names wrongly is the operator's.
#[cfg(target_os = "linux")]
fn socket_fault(error: &crate::serve::SocketError) -> Fault {
    use crate::serve::SocketError;
    match error {
        SocketError::NoFileName { .. }
        | SocketError::PathTooLong { .. }
        | SocketError::UnknownGroup { .. } => Fault::Setup,
        SocketError::Folder { .. }
        | SocketError::Inspect { .. }
        | SocketError::NotASocket { .. }
        | SocketError::AlreadyServing { .. }
        | SocketError::Probe { .. }
        | SocketError::GroupLookup { .. }
        | SocketError::Create { .. }
        | SocketError::ActivationFd { .. } => Fault::Unavailable,
    }
}

/// A `[container]` setting the endpoint cannot use is the operator's.
#[cfg(target_os = "linux")]
fn container_fault(error: &crate::serve::container::ContainerError) -> Fault {
    use crate::serve::container::ContainerError;
    match error {
        ContainerError::Config { .. } => Fault::Setup,
        ContainerError::Random(_) | ContainerError::TokenFile(_) => Fault::Unavailable,
    }
}

impl RunError {
    /// Whose move it is: the start decides; a failed task is its own kind, so the service
    /// manager restarts the daemon.
    pub fn fault(&self) -> Fault {
        match self {
            RunError::Start(daemon) => daemon.fault(),
            RunError::Runtime(_) | RunError::Signals(_) => Fault::Unavailable,
            RunError::TaskFailed(_) => Fault::TaskFailed,
        }
    }
}

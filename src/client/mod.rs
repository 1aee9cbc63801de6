//! The client commands (`credential-process`, `exec`, `env`, `status`, `consumers`): short-lived
//! processes that ask the running daemon over its unix socket. They start fast (a
//! current-thread runtime, no logging setup), print their product on stdout and nothing
//! else, and fail with a [`ClientCommandError`], which `cli` prints as one line on stderr and
//! turns into the exit code of `docs/DESIGN.md`.

pub mod api;
pub mod consumers;
pub(crate) mod credential_process;
pub mod env;
// `exec` supervises its command with unix signals (forwarding, SIGTERM then SIGKILL).
#[cfg(target_os = "linux")]
pub mod exec;
pub(crate) mod imds_fallback;
pub mod socket_client;
pub mod status;
#[cfg(all(test, target_os = "linux"))]
mod test_support;

use crate::config::{parse_profile_name, DEFAULT_SOCKET_PATH};
use crate::error_chain;
use crate::failure::Fault;
use api::{ClientError, DaemonApi};
use imds_fallback::FallbackError;
use socket_client::{SocketClient, UnreachableDaemon};
use std::io::{self, Write};
use std::path::PathBuf;
use thiserror::Error;

/// Why a client command failed. Each variant keeps the text the user has always seen.
#[derive(Debug, Error)]
pub enum ClientCommandError {
    /// The command's runtime could not start.
    #[error(transparent)]
    Runtime(io::Error),
    /// The daemon could not be asked, or gave nothing usable.
    #[error(transparent)]
    Daemon(#[from] ClientError),
    /// No daemon to ask, and `--fallback-imds` failed too. Two failures side by side,
    /// neither the cause of the other, so the message holds both and there is no source.
    #[error(
        "{}; {}",
        error_chain::render(no_daemon),
        error_chain::render(fallback)
    )]
    Fallback {
        /// Why the daemon could not be asked.
        no_daemon: UnreachableDaemon,
        /// Boxed: IMDS's errors are large, and every command's `Result` carries this one.
        fallback: Box<FallbackError>,
    },
    /// The product could not be written to stdout (closed, full).
    #[error(transparent)]
    Stdout(io::Error),
    /// `exec` could not run or supervise its command.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
}

impl ClientCommandError {
    /// Whose move it is; stdout closed or full is the caller's setup.
    pub fn fault(&self) -> Fault {
        match self {
            ClientCommandError::Runtime(_) => Fault::Unavailable,
            ClientCommandError::Daemon(daemon) => daemon.fault(),
            ClientCommandError::Fallback { fallback, .. } => fallback.fault(),
            ClientCommandError::Stdout(_) => Fault::Setup,
            #[cfg(target_os = "linux")]
            ClientCommandError::Exec(exec) => exec.fault(),
        }
    }
}

/// `--socket`, shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// The daemon's unix socket.
    #[arg(
        long = "socket",
        value_name = "PATH",
        env = "IMDS_CREDD_SOCKET",
        default_value = DEFAULT_SOCKET_PATH
    )]
    pub socket: PathBuf,
}

impl SocketArgs {
    /// The daemon's API on this socket.
    pub fn api(&self) -> DaemonApi {
        DaemonApi::new(SocketClient::new(&self.socket))
    }
}

/// `--profile`: an `[[assume]]` profile instead of the instance role.
#[derive(Debug, Clone, clap::Args)]
pub struct ProfileArgs {
    /// Credentials of this `[[assume]]` profile instead of the instance role.
    #[arg(long, value_name = "NAME", value_parser = parse_profile_name)]
    pub profile: Option<String>,
}

/// The runtime of a client command: one thread, I/O and timers, built in microseconds.
fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs `command` on a fresh [`runtime`].
fn block_on<T, F>(command: F) -> Result<T, ClientCommandError>
where
    F: std::future::Future<Output = Result<T, ClientCommandError>>,
{
    runtime()
        .map_err(ClientCommandError::Runtime)?
        .block_on(command)
}

/// `error: cause: cause`, on one line whatever the messages hold: a client command's failure
/// is one line on stderr.
pub fn error_line(error: &dyn std::error::Error) -> String {
    error_chain::render(error).replace(['\n', '\r'], " ")
}

/// Writes a command's product to stdout. A closed stdout is an error, not a panic.
fn print_stdout(text: &str) -> Result<(), ClientCommandError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(ClientCommandError::Stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_joins_causes_on_one_line() {
        let err = socket_client::UnreachableDaemon::Connect {
            path: "/run/x.sock".into(),
            source: io::Error::other("line one\nline two"),
        };
        assert_eq!(
            error_line(&err),
            "cannot connect to daemon socket /run/x.sock: line one line two"
        );
    }
}

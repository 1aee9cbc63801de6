//! The client commands (`credential-process`, `exec`, `env`, `status`, `consumers`): short-lived
//! processes that ask the running daemon over its unix socket. They start fast (a
//! current-thread runtime, no logging setup), print their product on stdout and nothing
//! else, and report a failure as one line on stderr with the exit code of `DESIGN.md`:
//! 0 ok, 1 no valid credentials, 2 no daemon to ask or bad usage.

pub mod api;
pub mod consumers;
pub mod credential_process;
pub mod env;
// `exec` supervises its command with unix signals (forwarding, SIGTERM then SIGKILL).
#[cfg(target_os = "linux")]
pub mod exec;
pub mod imds_fallback;
pub mod socket_client;
pub mod status;
#[cfg(all(test, target_os = "linux"))]
mod test_support;

use crate::cli::EXIT_USAGE;
use crate::config::{parse_profile_name, DEFAULT_SOCKET_PATH};
use api::DaemonApi;
use socket_client::SocketClient;
use std::error::Error;
use std::io::{self, Write};
use std::path::PathBuf;

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

/// Runs `command` on a fresh [`runtime`]; a runtime that cannot start is reported as a usage
/// failure of `name`.
fn block_on<F: std::future::Future<Output = u8>>(name: &str, command: F) -> u8 {
    match runtime() {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => fail(name, &e, EXIT_USAGE),
    }
}

/// Prints `error` and its causes as one line on stderr and returns `code`.
fn fail(command: &str, error: &dyn Error, code: u8) -> u8 {
    eprintln!("imds-credd {command}: {}", error_line(error));
    code
}

/// `error: cause: cause`, on one line whatever the messages hold.
fn error_line(error: &dyn Error) -> String {
    crate::imds::error_chain(error).replace(['\n', '\r'], " ")
}

/// Writes a command's product to stdout. A closed stdout is an error, not a panic.
fn print_stdout(command: &str, text: &str) -> u8 {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => crate::cli::EXIT_OK,
        Err(e) => fail(command, &e, EXIT_USAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_joins_causes_on_one_line() {
        let err = socket_client::SocketError::Connect {
            path: "/run/x.sock".into(),
            source: io::Error::other("line one\nline two"),
        };
        assert_eq!(
            error_line(&err),
            "cannot connect to daemon socket /run/x.sock: line one line two"
        );
    }
}

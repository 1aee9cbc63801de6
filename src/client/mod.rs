//! The client commands (`credential-process`, `exec`, `env`, `status`): short-lived
//! processes that ask the running daemon over its unix socket. They start fast (a
//! current-thread runtime, no logging setup), print their product on stdout and nothing
//! else, and report a failure as one line on stderr with the exit code of `DESIGN.md`:
//! 0 ok, 1 no valid credentials, 2 no daemon to ask or bad usage.

pub mod api;
pub mod credential_process;
pub mod env;
pub mod exec;
pub mod socket_client;
pub mod status;
#[cfg(test)]
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
    eprintln!("imds-credd {command}: {}", error_chain(error));
    code
}

/// `error: cause: cause`, on one line.
fn error_chain(error: &dyn Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line.replace(['\n', '\r'], " ")
}

/// The body of `credential-process` and `env`: asks the daemon for the credentials and
/// prints `render(credentials)`, or fails with the matching exit code.
fn print_credentials(
    command: &str,
    socket: &SocketArgs,
    profile: &ProfileArgs,
    render: impl FnOnce(&crate::credentials::Credentials) -> String,
) -> u8 {
    block_on(command, async {
        let now = std::time::SystemTime::now();
        match socket
            .api()
            .credentials(profile.profile.as_deref(), now)
            .await
        {
            Ok(creds) => print_stdout(command, &render(&creds)),
            Err(e) => fail(command, &e, e.exit_code()),
        }
    })
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
    fn error_chain_joins_causes_on_one_line() {
        let err = socket_client::SocketError::Connect {
            path: "/run/x.sock".into(),
            source: io::Error::other("line one\nline two"),
        };
        assert_eq!(
            error_chain(&err),
            "cannot connect to daemon socket /run/x.sock: line one line two"
        );
    }
}

//! The process exit codes (`docs/DESIGN.md`), and the one place a command's outcome becomes
//! one: every command returns its own error type, gathered in [`CommandError`]; each error
//! answers its kind (`fault()`, a [`Fault`]) and [`Exit::for_error`] maps kinds to codes in
//! one exhaustive match. Nothing below `cli` names an exit code.
//!
//! A failure is a usage error (2) when the operator must change something they wrote (the
//! config file, a flag, an environment variable the daemon honours, the command line) or
//! there is no daemon to ask; a daemon that could not start or keep running for any other
//! reason (the runtime, a socket or pipe it could not create, a task that failed) exits 1,
//! so `Restart=on-failure` tries again.

use super::assets::AssetsError;
#[cfg(target_os = "linux")]
use super::ReloadError;
use crate::config::ConfigError;
use crate::daemon::RunError;
use crate::demo::DemoError;
use crate::failure::Fault;
use std::process::ExitCode;
use thiserror::Error;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did its job.
    Ok,
    /// 1: no valid credentials could be had (from the daemon, from IMDS), or the daemon
    /// could not start for a reason other than its configuration.
    NoCredentials,
    /// 2: bad usage or configuration; for client commands, also no daemon to ask.
    Usage,
    /// 1: a supervised task of the daemon panicked or ended unasked: not a usage error,
    /// and non-zero so that the service manager restarts the daemon.
    TaskFailed,
    /// 126: `exec`'s command exists but cannot be run (as in shells).
    CannotExecute,
    /// 127: `exec`'s command does not exist (as in shells).
    CommandNotFound,
    /// `exec`'s command's own code, or 128+N when signal N killed it.
    Child(u8),
}

impl Exit {
    /// The code the process exits with.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::NoCredentials | Exit::TaskFailed => 1,
            Exit::Usage => 2,
            Exit::CannotExecute => 126,
            Exit::CommandNotFound => 127,
            Exit::Child(code) => code,
        }
    }

    /// `exec` ends as its command did: its code, or 128+N when signal N killed it.
    #[cfg(target_os = "linux")]
    pub fn of_child(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Child(u8::try_from(code).unwrap_or(u8::MAX)),
            (None, Some(signal)) => Exit::Child(u8::try_from(128 + signal).unwrap_or(u8::MAX)),
            // Neither exited nor killed: `wait` reports neither stopped nor continued.
            (None, None) => Exit::NoCredentials,
        }
    }

    /// The exit of a failed command: its kind, each to its code. Exhaustive on purpose: a
    /// new kind does not compile until someone decides its code.
    pub fn for_error(error: &CommandError) -> Exit {
        match error.fault() {
            Fault::Setup => Exit::Usage,
            Fault::Unavailable => Exit::NoCredentials,
            Fault::TaskFailed => Exit::TaskFailed,
            Fault::CannotExecute => Exit::CannotExecute,
            Fault::CommandNotFound => Exit::CommandNotFound,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// What a command failed with: each command's own error.
#[derive(Debug, Error)]
pub enum CommandError {
    /// `run`, `check-config`, `service run`: the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `check-config --reload-pid`.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// `run` (logged by the daemon before it returns).
    #[error(transparent)]
    Run(#[from] RunError),
    /// `demo`.
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// The client commands.
    #[error(transparent)]
    Client(#[from] crate::client::ClientCommandError),
    /// `service install|uninstall|run` (the SCM's side).
    #[cfg(windows)]
    #[error(transparent)]
    Service(#[from] crate::daemon::service::ServiceError),
    /// `generate-assets`.
    #[error(transparent)]
    Assets(#[from] AssetsError),
    /// `container-address up|down`.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    ContainerAddress(#[from] crate::serve::container_address::AddressError),
}

impl CommandError {
    /// Whose move it is: each command's error answers for itself.
    pub fn fault(&self) -> Fault {
        match self {
            CommandError::Config(_) | CommandError::Assets(_) => Fault::Setup,
            #[cfg(target_os = "linux")]
            CommandError::Reload(_) => Fault::Setup,
            #[cfg(windows)]
            CommandError::Service(_) => Fault::Setup,
            // Not the operator's text but the machine (privileges, the kernel): exit 1, so
            // the unit's `ExecStartPre=` failing fails the start visibly.
            #[cfg(target_os = "linux")]
            CommandError::ContainerAddress(_) => Fault::Unavailable,
            CommandError::Run(run) => run.fault(),
            CommandError::Demo(demo) => demo.fault(),
            CommandError::Client(client) => client.fault(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::api::ClientError;
    use crate::client::imds_fallback::FallbackError;
    use crate::client::socket_client::UnreachableDaemon;
    use crate::client::ClientCommandError as Client;
    use crate::daemon::DaemonError;
    use crate::imds::ImdsError;
    use hyper::StatusCode;

    fn client_exit(error: ClientError) -> Exit {
        Exit::for_error(&Client::Daemon(error).into())
    }

    fn refused(status: u16) -> ClientError {
        ClientError::Refused {
            status: StatusCode::from_u16(status).unwrap(),
            code: "x".into(),
            message: "y".into(),
        }
    }

    #[test]
    fn codes_are_those_of_the_design() {
        let codes = [
            Exit::Ok,
            Exit::NoCredentials,
            Exit::Usage,
            Exit::TaskFailed,
            Exit::CannotExecute,
            Exit::CommandNotFound,
            Exit::Child(7),
        ]
        .map(Exit::code);
        assert_eq!(codes, [0, 1, 2, 1, 126, 127, 7]);
    }

    #[test]
    fn no_daemon_forbidden_and_unknown_profile_are_usage_errors() {
        let missing = ClientError::Unreachable(UnreachableDaemon::Missing {
            path: "/nowhere".into(),
        });
        assert_eq!(client_exit(missing), Exit::Usage);
        assert_eq!(client_exit(refused(403)), Exit::Usage);
        assert_eq!(client_exit(refused(404)), Exit::Usage);
    }

    #[test]
    fn a_daemon_without_credentials_or_still_rate_limiting_is_no_credentials() {
        assert_eq!(client_exit(refused(503)), Exit::NoCredentials);
        assert_eq!(client_exit(refused(429)), Exit::NoCredentials);
        let expired = ClientError::Expired {
            expiration: "2026-11-23T09:00:00Z".into(),
        };
        assert_eq!(client_exit(expired), Exit::NoCredentials);
        assert_eq!(client_exit(ClientError::BadStatus), Exit::NoCredentials);
    }

    #[test]
    fn a_fallback_is_usage_only_when_imds_is_unusable_as_configured() {
        let fallback = |fallback| {
            Exit::for_error(
                &Client::Fallback {
                    no_daemon: UnreachableDaemon::Missing {
                        path: "/nowhere".into(),
                    },
                    fallback: Box::new(fallback),
                }
                .into(),
            )
        };
        let disabled = FallbackError::Imds(ImdsError::Disabled("true".into()));
        assert_eq!(fallback(disabled), Exit::Usage);
        assert_eq!(fallback(FallbackError::NoRole), Exit::NoCredentials);
    }

    #[test]
    fn a_start_failure_is_usage_only_when_the_operator_wrote_it() {
        let start = |error: DaemonError| Exit::for_error(&RunError::Start(error).into());
        let disabled = DaemonError::Imds(ImdsError::Disabled("true".into()));
        assert_eq!(start(disabled), Exit::Usage);
        let unknown = DaemonError::UnknownProfile {
            sink: "[[file]] /x".into(),
            profile: "audit".into(),
        };
        assert_eq!(start(unknown), Exit::Usage);
        #[cfg(target_os = "linux")]
        {
            use crate::serve::SocketError;
            let busy = SocketError::AlreadyServing {
                path: "/run/imds-credd/credentials.sock".into(),
            };
            assert_eq!(start(busy.into()), Exit::NoCredentials);
            let group = SocketError::UnknownGroup {
                group: "nobody-here".into(),
            };
            assert_eq!(start(group.into()), Exit::Usage);
        }
        let runtime = RunError::Runtime(std::io::Error::other("no threads"));
        assert_eq!(Exit::for_error(&runtime.into()), Exit::NoCredentials);
        let signals = RunError::Signals(std::io::Error::other("no signalfd"));
        assert_eq!(Exit::for_error(&signals.into()), Exit::NoCredentials);
        let failed = RunError::TaskFailed(crate::daemon::supervisor::TaskFailure::Ended(
            "refresher".into(),
        ));
        assert_eq!(Exit::for_error(&failed.into()), Exit::TaskFailed);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn exec_ends_as_its_command_did_or_as_a_shell_would() {
        use std::os::unix::fs::PermissionsExt;
        let run = |script: &str| {
            let status = std::process::Command::new("sh")
                .args(["-c", script])
                .status()
                .unwrap();
            Exit::of_child(status).code()
        };
        assert_eq!(run("exit 0"), 0);
        assert_eq!(run("exit 7"), 7);
        assert_eq!(run("kill -TERM $$"), 128 + 15);
        assert_eq!(run("kill -KILL $$"), 128 + 9);
        let exec_exit = |program: &std::path::Path| {
            let error = std::process::Command::new(program).spawn().unwrap_err();
            let error = crate::client::exec::ExecError::spawn(&program.into(), error);
            Exit::for_error(&Client::Exec(error).into()).code()
        };
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(exec_exit(&dir.path().join("no-such-command")), 127);
        let not_executable = dir.path().join("script");
        std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(exec_exit(&not_executable), 126);
    }
}

//! `imds-credd exec -- CMD ARGS…`: runs CMD with the credentials in its environment, as a
//! small supervisor. CMD inherits stdin/stdout/stderr; signals sent to `imds-credd` are
//! passed on to it; `imds-credd` exits with CMD's code (128+N when CMD was killed by signal
//! N, 127 when CMD does not exist, 126 when it cannot be run, as shells do: `cli` turns
//! CMD's [`ExitStatus`] and an [`ExecError`] into those codes).
//!
//! A process reads its environment once, so a long-running CMD keeps the set it started
//! with. `--on-rotation` says what happens when the daemon rotates the credentials:
//! - `none` (default): nothing; `imds-credd` does not poll the daemon. Five minutes before
//!   the set CMD holds expires, a warning goes to stderr.
//! - `restart`: CMD gets SIGTERM, is killed after `--restart-grace` if still running, and is
//!   started again with the new set (the restart-on-change of Vault Agent's supervisor).
//! - `signal:NAME` (e.g. `signal:HUP`): CMD gets that signal and keeps running. Its
//!   environment cannot change, so CMD must re-read credentials from somewhere that does
//!   (a `[[file]]` sink, `credential_process`, the socket).
//!
//! For `restart` and `signal:…`, `imds-credd` asks the daemon shortly after the daemon's
//! `next_refresh` for the role or profile (from `/v1/status`), and at least every minute,
//! whether the access key id changed. It exits when CMD exits, whatever the policy: it restarts CMD only for a
//! rotation. A Ctrl-C typed in a terminal reaches CMD directly (same process group) and
//! again through `imds-credd`, as with other exec wrappers (`aws-vault exec`).

use super::api::DaemonApi;
use super::{block_on, error_line, ClientCommandError, ProfileArgs, SocketArgs};
use crate::clock::{Clock, SystemClock};
use crate::credentials::render::env_variables;
use crate::credentials::Credentials;
use crate::failure::Fault;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::future::poll_fn;
use std::io;
use std::process::ExitStatus;
use std::str::FromStr;
use std::task::Poll;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

const NAME: &str = "exec";

/// Why `exec` could not run or supervise CMD.
#[derive(Debug, Error)]
pub enum ExecError {
    /// The signal handlers that forward to CMD could not be installed.
    #[error(transparent)]
    Signals(io::Error),
    /// CMD does not exist (a shell's 127).
    #[error("{command}: command not found")]
    CommandNotFound {
        /// The program as given.
        command: String,
    },
    /// CMD exists but cannot be run (a shell's 126).
    #[error("{command}")]
    CannotRun {
        /// The program as given.
        command: String,
        /// Why it could not run.
        #[source]
        source: io::Error,
    },
    /// CMD's status could not be read.
    #[error(transparent)]
    Wait(io::Error),
}

impl ExecError {
    /// Whose move it is: a command that does not exist or cannot be run, told apart as a
    /// shell does; the signals or the wait failing leaves no credentials this time.
    pub fn fault(&self) -> Fault {
        match self {
            ExecError::CommandNotFound { .. } => Fault::CommandNotFound,
            ExecError::CannotRun { .. } => Fault::CannotExecute,
            ExecError::Signals(_) | ExecError::Wait(_) => Fault::Unavailable,
        }
    }

    /// Why `command` did not start, told apart as a shell does.
    pub fn spawn(command: &OsString, error: io::Error) -> Self {
        let command = command.to_string_lossy().into_owned();
        match error.kind() {
            io::ErrorKind::NotFound => ExecError::CommandNotFound { command },
            _ => ExecError::CannotRun {
                command,
                source: error,
            },
        }
    }
}

/// Variables removed from CMD's environment: each would override the four we set, or offer
/// the SDK a competing source (botocore skips the environment provider when a profile is
/// named, and reads `AWS_SECURITY_TOKEN` before `AWS_SESSION_TOKEN`).
pub const SCRUBBED_VARIABLES: [&str; 12] = [
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    // Set again from the credentials when they name their account; an inherited one could
    // name another account.
    "AWS_ACCOUNT_ID",
];

/// Signals passed on to CMD.
const FORWARDED_SIGNALS: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// How long before expiry the holder of a set is warned that it has not been replaced.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(5 * 60);
/// The longest wait between two rotation checks: the daemon may rotate off its schedule
/// (role swapped, SIGHUP, restart).
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How long after the daemon's `next_refresh` to ask, so the refresh has finished.
const AFTER_REFRESH: Duration = Duration::from_secs(2);
/// The wait when the daemon's `next_refresh` has passed (a refresh is under way).
const REFRESH_UNDER_WAY: Duration = Duration::from_secs(5);

/// `imds-credd exec`: which daemon to ask, which profile, the command and what to do at a
/// rotation.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// The daemon's socket.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Which profile's set.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// When the daemon rotates the credentials: `none`, `restart` (SIGTERM, then start CMD
    /// again with the new set) or `signal:NAME` (e.g. `signal:HUP`; CMD must re-read
    /// credentials from a file or credential_process, its environment cannot change).
    #[arg(long, value_name = "POLICY", default_value = "none", value_parser = parse_on_rotation)]
    pub on_rotation: OnRotation,
    /// With `--on-rotation restart`: how long CMD has to exit after SIGTERM before SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub restart_grace: Duration,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// What `exec` does to CMD when the daemon rotates the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRotation {
    /// Leave CMD alone: it keeps the set it started with.
    None,
    /// Stop CMD and start it again with the new set.
    Restart,
    /// Send CMD this signal; it reads the new set itself.
    Signal(Signal),
}

/// Parses `none`, `restart` or `signal:NAME` (`HUP`, `SIGHUP`, `hup`).
pub fn parse_on_rotation(text: &str) -> Result<OnRotation, String> {
    match text {
        "none" => Ok(OnRotation::None),
        "restart" => Ok(OnRotation::Restart),
        _ => {
            let name = text
                .strip_prefix("signal:")
                .ok_or_else(|| format!("{text:?} is not none, restart or signal:NAME"))?
                .to_ascii_uppercase();
            let full = if name.starts_with("SIG") {
                name
            } else {
                format!("SIG{name}")
            };
            Signal::from_str(&full)
                .map(OnRotation::Signal)
                .map_err(|_| format!("{text:?}: unknown signal (try signal:HUP)"))
        }
    }
}

/// Runs the command until CMD exits for good; returns CMD's status.
pub fn run(args: &ExecArgs) -> Result<ExitStatus, ClientCommandError> {
    block_on(supervise(args))
}

async fn supervise(args: &ExecArgs) -> Result<ExitStatus, ClientCommandError> {
    let api = args.socket.api();
    let profile = args.profile.profile.as_deref();
    let mut creds = api.credentials(profile, SystemClock.now()).await?;
    // Handlers go in before CMD starts, so no signal between the two is lost.
    let mut signals = ForwardedSignals::install().map_err(ExecError::Signals)?;
    let mut child = start(&args.command, &creds)?;
    let polling = args.on_rotation != OnRotation::None;
    // The first check at once: it learns when the daemon will next refresh. A delay from
    // each check, so a clock step back does not put the next one off.
    let mut next_check = SystemClock.after(Duration::ZERO);
    let mut expiry_warned = false;
    let mut poll_problem: Option<String> = None;
    loop {
        let warn_at = creds.expiration.checked_sub(EXPIRY_WARNING);
        tokio::select! {
            status = child.wait() => return Ok(status.map_err(ExecError::Wait)?),
            sig = signals.recv() => forward(&child, sig),
            () = SystemClock.sleep_until_due(next_check), if polling => {
                let now = SystemClock.now();
                match check(&api, profile, now).await {
                    Ok((fresh, next_refresh)) => {
                        poll_problem = None;
                        next_check = SystemClock.after(next_check_delay(now, next_refresh));
                        if fresh.access_key_id == creds.access_key_id {
                            continue;
                        }
                        creds = fresh;
                        expiry_warned = false;
                        if let Some(status) = apply_rotation(args, &mut child, &mut signals, &creds).await? {
                            return Ok(status);
                        }
                    }
                    Err(e) => {
                        next_check = SystemClock.after(MAX_CHECK_INTERVAL);
                        let problem = error_line(&e);
                        if poll_problem.as_ref() != Some(&problem) {
                            eprintln!("imds-credd {NAME}: cannot check for rotated credentials: {problem}");
                            poll_problem = Some(problem);
                        }
                    }
                }
            }
            () = sleep_until(warn_at.unwrap_or(SystemTime::UNIX_EPOCH)), if !expiry_warned => {
                expiry_warned = true;
                eprintln!(
                    "imds-credd {NAME}: the credentials given to {} expire at {} and no newer set has reached it{}",
                    args.command[0].to_string_lossy(),
                    creds.expiration_rfc3339(),
                    if polling { "" } else { " (see --on-rotation, or use credential_process for long-running programs)" },
                );
            }
        }
    }
}

/// Applies `--on-rotation` to a new set: a restart with it, or the signal. `Some(status)`
/// when CMD was asked to stop meanwhile and `exec` ends with it; an error when CMD cannot
/// start again.
async fn apply_rotation(
    args: &ExecArgs,
    child: &mut Child,
    signals: &mut ForwardedSignals,
    creds: &Credentials,
) -> Result<Option<ExitStatus>, ExecError> {
    match args.on_rotation {
        OnRotation::Restart => {
            if let Some(status) = stop(child, signals, args.restart_grace).await {
                // A stop signal arrived while restarting: stop for good.
                return Ok(Some(status));
            }
            *child = start(&args.command, creds)?;
        }
        OnRotation::Signal(sig) => forward(child, sig),
        OnRotation::None => {}
    }
    Ok(None)
}

/// Asks the daemon for its current credentials, and when it will next refresh them.
async fn check(
    api: &DaemonApi,
    profile: Option<&str>,
    now: SystemTime,
) -> Result<(Credentials, Option<SystemTime>), super::api::ClientError> {
    let creds = api.credentials(profile, now).await?;
    let next_refresh = match api.status().await {
        Ok((doc, _)) => super::status::next_refresh(&doc, profile),
        Err(_) => None,
    };
    Ok((creds, next_refresh))
}

/// How long to wait before the next rotation check: just after the daemon's next refresh,
/// at most [`MAX_CHECK_INTERVAL`].
pub fn next_check_delay(now: SystemTime, daemon_next_refresh: Option<SystemTime>) -> Duration {
    match daemon_next_refresh.map(|at| at.duration_since(now)) {
        None => MAX_CHECK_INTERVAL,
        Some(Err(_)) => REFRESH_UNDER_WAY,
        Some(Ok(ahead)) => (ahead + AFTER_REFRESH).min(MAX_CHECK_INTERVAL),
    }
}

/// Completes at `deadline` on the wall clock (at once if it has passed), however the clock
/// gets there: a resume from suspend counts.
fn sleep_until(deadline: SystemTime) -> crate::clock::Sleep {
    SystemClock.sleep_until(deadline)
}

/// Puts the credentials in `cmd`'s environment and removes the competing variables,
/// whether inherited or set on `cmd` before.
pub fn apply_credentials(cmd: &mut Command, creds: &Credentials) {
    for name in SCRUBBED_VARIABLES {
        cmd.env_remove(name);
    }
    for (name, value) in env_variables(creds) {
        cmd.env(name, value);
    }
}

/// Starts CMD with the credentials in its environment.
fn start(command: &[OsString], creds: &Credentials) -> Result<Child, ExecError> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    apply_credentials(&mut cmd, creds);
    cmd.spawn().map_err(|e| ExecError::spawn(&command[0], e))
}

/// Stops CMD for a restart: SIGTERM, then SIGKILL after `grace`. Returns CMD's status if a
/// terminating signal arrived meanwhile (the user wants everything to stop), else `None`.
async fn stop(
    child: &mut Child,
    signals: &mut ForwardedSignals,
    grace: Duration,
) -> Option<ExitStatus> {
    forward(child, Signal::SIGTERM);
    // Monotonic: the restart grace is a length of time.
    #[allow(clippy::disallowed_methods)]
    let kill_at = tokio::time::sleep(grace);
    tokio::pin!(kill_at);
    let mut killed = false;
    let mut stop_for_good = false;
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(status) if stop_for_good => Some(status),
                    _ => None,
                };
            }
            sig = signals.recv() => {
                stop_for_good |= matches!(sig, Signal::SIGINT | Signal::SIGTERM | Signal::SIGQUIT);
                forward(child, sig);
            }
            () = &mut kill_at, if !killed => {
                killed = true;
                eprintln!(
                    "imds-credd {NAME}: command still running {} after SIGTERM; killing it",
                    humantime::format_duration(grace)
                );
                forward(child, Signal::SIGKILL);
            }
        }
    }
}

/// Sends `sig` to CMD if it has not been reaped yet (its pid cannot have been reused).
fn forward(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // ESRCH: CMD exited and awaits reaping; nothing to do.
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// The signal streams of [`FORWARDED_SIGNALS`], read as one.
struct ForwardedSignals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl ForwardedSignals {
    fn install() -> io::Result<Self> {
        let streams = FORWARDED_SIGNALS
            .iter()
            .map(|&sig| Ok((sig, signal(SignalKind::from_raw(sig as i32))?)))
            .collect::<io::Result<_>>()?;
        Ok(ForwardedSignals { streams })
    }

    /// The next signal received, whichever it is.
    async fn recv(&mut self) -> Signal {
        poll_fn(|cx| {
            for (sig, stream) in &mut self.streams {
                if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return Poll::Ready(*sig);
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as CliCommand};
    use crate::credentials::secret::Secret;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "ASIAEXECTEST".into(),
            secret_access_key: Secret::new("sec'ret".into()),
            session_token: Secret::new("tok/en=".into()),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            account_id: None,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        crate::client::test_support::runtime()
    }

    fn exec_args(argv: &[&str]) -> ExecArgs {
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.command {
            CliCommand::Exec(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn command_after_double_dash_keeps_its_own_flags() {
        let args = exec_args(&[
            "imds-credd",
            "exec",
            "--profile",
            "audit",
            "--on-rotation",
            "signal:usr1",
            "--",
            "aws",
            "--profile",
            "x",
            "s3",
            "ls",
        ]);
        assert_eq!(args.profile.profile.as_deref(), Some("audit"));
        assert_eq!(args.on_rotation, OnRotation::Signal(Signal::SIGUSR1));
        assert_eq!(args.command, ["aws", "--profile", "x", "s3", "ls"]);
        assert_eq!(args.restart_grace, Duration::from_secs(10));
    }

    #[test]
    fn exec_needs_a_command_and_a_known_policy() {
        assert!(Cli::try_parse_from(["imds-credd", "exec"]).is_err());
        assert!(Cli::try_parse_from(["imds-credd", "exec", "--", "true"]).is_ok());
        for bad in ["sometimes", "signal:NOPE", "HUP"] {
            let err =
                Cli::try_parse_from(["imds-credd", "exec", "--on-rotation", bad, "--", "true"])
                    .unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert_eq!(
            parse_on_rotation("signal:SIGHUP"),
            Ok(OnRotation::Signal(Signal::SIGHUP))
        );
        assert_eq!(parse_on_rotation("restart"), Ok(OnRotation::Restart));
    }

    #[test]
    fn child_sees_the_credentials_and_none_of_the_competing_variables() {
        let mut cmd = Command::new("env");
        // Present before the credentials are applied, as inherited variables would be.
        for name in SCRUBBED_VARIABLES {
            cmd.env(name, "competing");
        }
        cmd.env("AWS_ACCESS_KEY_ID", "AKIAOLD")
            .env("UNRELATED", "kept");
        apply_credentials(&mut cmd, &creds());
        let output = runtime().block_on(async { cmd.output().await }).unwrap();
        let listed = String::from_utf8(output.stdout).unwrap();
        let vars: Vec<&str> = listed.lines().collect();
        for expected in [
            "AWS_ACCESS_KEY_ID=ASIAEXECTEST",
            "AWS_SECRET_ACCESS_KEY=sec'ret",
            "AWS_SESSION_TOKEN=tok/en=",
            "AWS_CREDENTIAL_EXPIRATION=2026-11-18T11:06:40+00:00",
            "UNRELATED=kept",
        ] {
            assert!(vars.contains(&expected), "{expected} missing in {listed}");
        }
        for name in SCRUBBED_VARIABLES {
            assert!(
                !vars.iter().any(|v| v.starts_with(&format!("{name}="))),
                "{name} leaked into {listed}"
            );
        }
    }

    #[test]
    fn missing_and_unrunnable_commands_are_told_apart_like_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-command");
        let err = start(&[missing.clone().into()], &creds()).unwrap_err();
        assert!(matches!(err, ExecError::CommandNotFound { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("{}: command not found", missing.display())
        );
        let not_executable = dir.path().join("script");
        std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = start(&[not_executable.clone().into()], &creds()).unwrap_err();
        assert!(matches!(err, ExecError::CannotRun { .. }), "{err:?}");
        assert!(
            crate::error_chain::render(&err)
                .starts_with(&format!("{}: Permission denied", not_executable.display())),
            "{err}"
        );
    }

    #[test]
    fn checks_just_after_the_daemons_next_refresh_and_at_least_every_minute() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(next_check_delay(now, None), MAX_CHECK_INTERVAL);
        assert_eq!(
            next_check_delay(now, Some(now + Duration::from_secs(10))),
            Duration::from_secs(12)
        );
        assert_eq!(
            next_check_delay(now, Some(now + Duration::from_secs(3600))),
            MAX_CHECK_INTERVAL
        );
        assert_eq!(
            next_check_delay(now, Some(now - Duration::from_secs(1))),
            REFRESH_UNDER_WAY
        );
    }
}

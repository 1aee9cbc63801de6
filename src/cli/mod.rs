//! The command line: one binary, one subcommand per job (see `docs/DESIGN.md`), each
//! returning its own error; the one place where errors are printed for the operator and
//! become exit codes ([`exit`]: 0 ok, 1 no valid credentials, 2 usage or config error).

mod assets;
pub mod exit;
mod fast_path;

use crate::config::{Config, ConfigError, ConfigOverrides};
use crate::error_chain;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
pub use exit::{CommandError, Exit};
use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(target_os = "linux")]
use thiserror::Error;

/// The whole command line: one subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "imds-credd",
    version,
    about = "Keeps EC2 instance-profile credentials fresh and republishes them locally",
    long_about = None,
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing worth boxing for.
/// Every command; the doc comment of each is its one-line help.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd `Type=notify`).
    Run(ConfigArgs),
    /// Run the daemon against a built-in simulated IMDS, every sink in a temp folder.
    Demo(crate::demo::DemoArgs),
    /// Validate the configuration without starting, as `nginx -t` does.
    CheckConfig(CheckConfigArgs),
    /// Print the credentials as `credential_process` JSON (Version 1), for `~/.aws/config`.
    CredentialProcess(crate::client::credential_process::CredentialProcessArgs),
    /// Run a command with the credentials in its environment.
    #[cfg(target_os = "linux")]
    Exec(crate::client::exec::ExecArgs),
    /// Print the credentials as environment assignments.
    Env(crate::client::env::EnvArgs),
    /// Show the daemon's state: role, expiry, refreshes, last error, sinks.
    Status(crate::client::status::StatusArgs),
    /// Show who on this box fetched credentials: uid, user, program, profile, counts.
    Consumers(crate::client::consumers::ConsumersArgs),
    /// Install, uninstall or run the Windows service.
    #[cfg(windows)]
    Service(ServiceArgs),
    /// Put the container endpoint's link-local address (169.254.170.23, fd00:ec2::23) on
    /// the host's lo, or take it off; as root (the unit's ExecStartPre=+ / ExecStopPost=+).
    #[cfg(target_os = "linux")]
    ContainerAddress(ContainerAddressArgs),
}

/// `imds-credd container-address up|down`.
#[cfg(target_os = "linux")]
#[derive(Debug, clap::Args)]
pub struct ContainerAddressArgs {
    /// `up`: the addresses `[container] listen` names (none: nothing to do); `down`: both,
    /// whatever the config says now.
    #[arg(value_enum)]
    pub action: crate::serve::container_address::Action,
    /// The configuration, whose `[container] listen` says which addresses `up` adds.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `imds-credd service …`.
#[cfg(windows)]
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// What to do with the service.
    #[command(subcommand)]
    pub action: ServiceAction,
}

/// `install`, `uninstall` or `run` (the last is what the SCM starts).
#[cfg(windows)]
#[derive(Debug, clap::Subcommand)]
pub enum ServiceAction {
    /// Register the Windows service (automatic start, LocalSystem).
    Install {
        /// Config file the service reads (default C:\ProgramData\imds-credd\config.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Stop and delete the Windows service.
    Uninstall,
    /// Run as the service; only the service control manager starts this.
    Run(Box<ConfigArgs>),
}

/// Where the configuration comes from: the file, then the flags on top.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Config file (default /etc/imds-credd/config.toml; a missing default file means defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// One flag per config key, on top of the file.
    #[command(flatten)]
    pub overrides: ConfigOverrides,
}

/// `check-config`: the configuration to validate, and (hidden, for the unit's
/// `ExecReload=`) the daemon to tell to re-read it once it is valid.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The configuration to validate.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// After a successful check, send SIGHUP to this process (the unit's `$MAINPID`):
    /// `systemctl reload` then needs no `kill` binary, which a minimal system lacks.
    #[cfg(target_os = "linux")]
    #[arg(long, value_name = "PID", hide = true)]
    pub reload_pid: Option<i32>,
}

/// Loads the config file and applies the flags: what `run` and `check-config` share.
pub fn resolve_config(
    path: Option<&std::path::Path>,
    overrides: &ConfigOverrides,
) -> Result<Config, ConfigError> {
    let mut config = Config::load(path)?;
    overrides.apply(&mut config)?;
    #[cfg(target_os = "linux")]
    crate::config::check_config_folders(
        &config,
        path.unwrap_or(std::path::Path::new(crate::config::DEFAULT_CONFIG_PATH)),
        crate::config::PathsFromFlags {
            socket: overrides.socket_path.is_some(),
            token_file: overrides.container_token_file.is_some(),
        },
    )?;
    Ok(config)
}

/// Parses the command line and runs the command; `main.rs` only calls this.
pub fn main() -> ExitCode {
    // First of all, before any secret is in memory: no core file, no ptrace by the same uid.
    // Clients hold credentials too (`credential-process` prints them), so every command.
    #[cfg(target_os = "linux")]
    if let Err(e) = crate::privileges::forbid_core_dumps() {
        eprintln!(
            "imds-credd: cannot turn off core dumps (PR_SET_DUMPABLE): {}",
            error_chain::render(&e)
        );
    }
    let (shown_as, outcome) = match fast_path::parse_process_args() {
        Some(command) => run_command(command),
        None => parse_and_run(),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(error) => {
            report(shown_as, &error);
            Exit::for_error(&error).into()
        }
    }
}

/// Parses the command line with clap (exiting on a usage error or after help), and runs it.
fn parse_and_run() -> (&'static str, Result<Exit, CommandError>) {
    // `generate-assets` is parsed here but is no part of `Cli`, so that the man pages and
    // completions rendered from `Cli` do not offer it (see `cli/assets.rs`).
    let matches = assets::add_command(Cli::command()).get_matches();
    match matches.subcommand() {
        Some((assets::COMMAND_NAME, args)) => ("imds-credd", ok(assets::run(args))),
        _ => run_command(
            Cli::from_arg_matches(&matches)
                .unwrap_or_else(|e| e.exit())
                .command,
        ),
    }
}

/// Runs one command; returns how it is named on stderr, and its outcome.
fn run_command(command: Command) -> (&'static str, Result<Exit, CommandError>) {
    use crate::client;
    match command {
        Command::Run(args) => ("imds-credd", run(&args)),
        Command::Demo(args) => (
            "imds-credd demo",
            ok(crate::demo::run(&args, Exit::TaskFailed.code())),
        ),
        Command::CheckConfig(args) => ("imds-credd", check_config(&args)),
        Command::CredentialProcess(args) => (
            "imds-credd credential-process",
            ok(client::credential_process::run(&args)),
        ),
        #[cfg(target_os = "linux")]
        Command::Exec(args) => (
            "imds-credd exec",
            client::exec::run(&args)
                .map(Exit::of_child)
                .map_err(Into::into),
        ),
        Command::Env(args) => ("imds-credd env", ok(client::env::run(&args))),
        Command::Status(args) => (
            "imds-credd status",
            client::status::run(&args)
                .map(|verdict| match verdict {
                    client::status::Verdict::Valid => Exit::Ok,
                    client::status::Verdict::NoValidCredentials => Exit::NoCredentials,
                })
                .map_err(Into::into),
        ),
        Command::Consumers(args) => ("imds-credd consumers", ok(client::consumers::run(&args))),
        #[cfg(windows)]
        Command::Service(args) => ("imds-credd service", service(args)),
        #[cfg(target_os = "linux")]
        Command::ContainerAddress(args) => {
            ("imds-credd container-address", container_address(&args))
        }
    }
}

/// A command that either did its job or failed.
fn ok<E: Into<CommandError>>(outcome: Result<(), E>) -> Result<Exit, CommandError> {
    outcome.map(|()| Exit::Ok).map_err(Into::into)
}

/// Prints a failure for the operator, through the one renderer. The daemon has logged its
/// own failures (in its log format) before returning them; a client command's failure is
/// one line, whatever its messages hold.
fn report(shown_as: &str, error: &CommandError) {
    match error {
        CommandError::Run(_) => {}
        CommandError::Client(client) => {
            eprintln!("{shown_as}: {}", crate::client::error_line(client));
        }
        other => eprintln!("{shown_as}: {}", error_chain::render(other)),
    }
}

/// `run`: the daemon in the foreground, re-reading its config on SIGHUP.
fn run(args: &ConfigArgs) -> Result<Exit, CommandError> {
    let config = resolve_config(args.config.as_deref(), &args.overrides)?;
    crate::daemon::supervisor::exit_on_panic(Exit::TaskFailed.code());
    crate::daemon::run_foreground(config, || {
        resolve_config(args.config.as_deref(), &args.overrides)
    })?;
    Ok(Exit::Ok)
}

/// `service install|uninstall|run`.
#[cfg(windows)]
fn service(args: ServiceArgs) -> Result<Exit, CommandError> {
    use crate::daemon::service::{self, ServiceRunError};
    match args.action {
        ServiceAction::Install { config } => service::install(config.as_deref())?,
        ServiceAction::Uninstall => service::uninstall()?,
        ServiceAction::Run(args) => {
            crate::daemon::supervisor::exit_on_panic(Exit::TaskFailed.code());
            service::dispatch(Box::new(move |stop| {
                let resolve = || resolve_config(args.config.as_deref(), &args.overrides);
                let exit = match service::run_daemon(resolve, stop) {
                    Ok(()) => Exit::Ok,
                    Err(ServiceRunError::Config(e)) => Exit::for_error(&e.into()),
                    Err(ServiceRunError::Run(e)) => Exit::for_error(&e.into()),
                };
                exit.code()
            }))?;
        }
    }
    Ok(Exit::Ok)
}

/// `container-address up|down`: reads the config only for `up` (a config changed since
/// `up` must not keep `down` from taking the address off).
#[cfg(target_os = "linux")]
fn container_address(args: &ContainerAddressArgs) -> Result<Exit, CommandError> {
    use crate::serve::container_address::{apply, Action};
    let config = match args.action {
        Action::Up => resolve_config(args.config.config.as_deref(), &args.config.overrides)?,
        Action::Down => Config::default(),
    };
    let changed = apply(args.action, &config)?;
    let verb = match args.action {
        Action::Up => "on",
        Action::Down => "off",
    };
    if changed.is_empty() {
        println!("[container] does not listen on a container address: nothing to do");
    }
    for address in changed {
        println!("{address} is {verb} lo");
    }
    Ok(Exit::Ok)
}

/// Why `check-config --reload-pid` could not ask the daemon to reload.
#[cfg(target_os = "linux")]
#[derive(Debug, Error)]
pub enum ReloadError {
    /// The pid is not a running `imds-credd run`: signalling it could hit another program.
    #[error("--reload-pid {0} is not a daemon's process id")]
    NotADaemon(i32),
    /// `kill(2)` failed.
    #[error("cannot send SIGHUP to process {pid}")]
    Signal {
        /// The process signalled.
        pid: i32,
        /// Why `kill(2)` failed.
        #[source]
        source: nix::Error,
    },
}

fn check_config(args: &CheckConfigArgs) -> Result<Exit, CommandError> {
    let config = &args.config;
    let shown = config
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_PATH));
    resolve_config(config.config.as_deref(), &config.overrides)?;
    println!("{}: configuration is valid", shown.display());
    #[cfg(target_os = "linux")]
    if let Some(pid) = args.reload_pid {
        signal_reload(pid)?;
    }
    Ok(Exit::Ok)
}

/// Sends SIGHUP to the daemon at `pid`, which re-reads its configuration.
#[cfg(target_os = "linux")]
fn signal_reload(pid: i32) -> Result<(), ReloadError> {
    use nix::sys::signal::{kill, Signal};
    if pid <= 1 {
        return Err(ReloadError::NotADaemon(pid));
    }
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP)
        .map_err(|source| ReloadError::Signal { pid, source })?;
    println!("asked process {pid} to reload its configuration");
    Ok(())
}

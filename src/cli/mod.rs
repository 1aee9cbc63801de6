//! The command line: one binary, one subcommand per job (see `docs/DESIGN.md`).
//! Exit codes: 0 ok, 1 no valid credentials, 2 usage or config error.

mod assets;

use crate::config::{Config, ConfigOverrides};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: no valid credentials could be had.
pub const EXIT_NO_CREDENTIALS: u8 = 1;
/// Exit code: bad usage or configuration (or, for client commands, no daemon to ask).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "imds-credd",
    version,
    about = "Keeps EC2 instance-profile credentials fresh and republishes them locally",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing worth boxing for.
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
    Service(crate::daemon::service::ServiceArgs),
}

/// Where the configuration comes from: the file, then the flags on top.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Config file (default /etc/imds-credd/config.toml; a missing default file means defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: ConfigOverrides,
}

/// `check-config`: the configuration to validate, and (hidden, for the unit's
/// `ExecReload=`) the daemon to tell to re-read it once it is valid.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
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
) -> Result<Config, crate::config::ConfigError> {
    let mut config = Config::load(path)?;
    overrides.apply(&mut config)?;
    #[cfg(target_os = "linux")]
    crate::config::check_config_socket_folder(
        &config,
        path.unwrap_or(std::path::Path::new(crate::config::DEFAULT_CONFIG_PATH)),
        overrides.socket_path.is_some(),
    )?;
    Ok(config)
}

/// Parses the command line and runs the command; `main.rs` only calls this.
pub fn main() -> ExitCode {
    // First of all, before any secret is in memory: no core file, no ptrace by the same uid.
    // Clients hold credentials too (`credential-process` prints them), so every command.
    #[cfg(target_os = "linux")]
    if let Err(e) = crate::daemon::privileges::forbid_core_dumps() {
        eprintln!("imds-credd: cannot turn off core dumps (PR_SET_DUMPABLE): {e}");
    }
    // `generate-assets` is parsed here but is no part of `Cli`, so that the man pages and
    // completions rendered from `Cli` do not offer it (see `cli/assets.rs`).
    let matches = assets::add_command(Cli::command()).get_matches();
    if let Some((assets::COMMAND_NAME, args)) = matches.subcommand() {
        return ExitCode::from(assets::run(args));
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let code = match cli.command {
        Command::Run(args) => match resolve_config(args.config.as_deref(), &args.overrides) {
            Ok(config) => crate::daemon::run_foreground(config, || {
                resolve_config(args.config.as_deref(), &args.overrides)
            }),
            Err(e) => {
                eprintln!("imds-credd: {e}");
                EXIT_USAGE
            }
        },
        Command::Demo(args) => crate::demo::run(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::CredentialProcess(args) => crate::client::credential_process::run(&args),
        #[cfg(target_os = "linux")]
        Command::Exec(args) => crate::client::exec::run(&args),
        Command::Env(args) => crate::client::env::run(&args),
        Command::Status(args) => crate::client::status::run(&args),
        Command::Consumers(args) => crate::client::consumers::run(&args),
        #[cfg(windows)]
        Command::Service(args) => crate::daemon::service::run(args),
    };
    ExitCode::from(code)
}

fn check_config(args: &CheckConfigArgs) -> u8 {
    let config = &args.config;
    let shown = config
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_PATH));
    if let Err(e) = resolve_config(config.config.as_deref(), &config.overrides) {
        eprintln!("imds-credd: {e}");
        return EXIT_USAGE;
    }
    println!("{}: configuration is valid", shown.display());
    #[cfg(target_os = "linux")]
    if let Some(pid) = args.reload_pid {
        return signal_reload(pid);
    }
    EXIT_OK
}

/// Sends SIGHUP to the daemon at `pid`, which re-reads its configuration.
#[cfg(target_os = "linux")]
fn signal_reload(pid: i32) -> u8 {
    use nix::sys::signal::{kill, Signal};
    if pid <= 1 {
        eprintln!("imds-credd: --reload-pid {pid} is not a daemon's process id");
        return EXIT_USAGE;
    }
    match kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP) {
        Ok(()) => {
            println!("asked process {pid} to reload its configuration");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("imds-credd: cannot send SIGHUP to process {pid}: {e}");
            EXIT_USAGE
        }
    }
}

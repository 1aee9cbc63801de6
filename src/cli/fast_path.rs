//! The command lines the AWS CLI and shells run on every call (`credential-process` and
//! `env`, with `--socket`, `--profile`, `--fallback-imds`, `--format`), recognised without
//! building the clap parser: building it for every subcommand costs more than the exchange
//! with the daemon. Anything else, including a value clap would refuse, `--help` and any
//! flag given twice, is left to clap, so help, errors and exit codes stay clap's.

use super::Command;
use crate::client::credential_process::CredentialProcessArgs;
use crate::client::env::EnvArgs;
use crate::client::{ProfileArgs, SocketArgs};
use crate::config::{parse_profile_name, DEFAULT_SOCKET_PATH};
use crate::credentials::render::EnvSyntax;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// The environment variable `--socket` falls back to (as its clap definition says).
const SOCKET_ENV: &str = "IMDS_CREDD_SOCKET";

/// `args` (without the program name) as a [`Command`], or `None` for clap to parse.
/// `socket_env` is the value of `IMDS_CREDD_SOCKET`.
pub(super) fn parse(args: &[OsString], socket_env: Option<&OsStr>) -> Option<Command> {
    let (subcommand, options) = args.split_first()?;
    let mut seen = Options::default();
    let mut rest = options.iter();
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(OsString::from(value))),
            None => (arg, None),
        };
        let mut value = || match inline.clone() {
            Some(value) => Some(value),
            None => rest.next().cloned(),
        };
        match name {
            "--socket" => set(&mut seen.socket, value()?)?,
            "--profile" => set(&mut seen.profile, value()?)?,
            "--format" => set(&mut seen.format, value()?)?,
            "--fallback-imds" if inline.is_none() && !seen.fallback_imds => {
                seen.fallback_imds = true
            }
            _ => return None,
        }
    }
    match subcommand.to_str()? {
        "credential-process" if seen.format.is_none() => {
            if seen.fallback_imds && seen.profile.is_some() {
                return None; // clap says they conflict
            }
            Some(Command::CredentialProcess(CredentialProcessArgs {
                socket: socket_args(seen.socket, socket_env)?,
                profile: profile_args(seen.profile)?,
                fallback_imds: seen.fallback_imds,
            }))
        }
        "env" if !seen.fallback_imds => {
            let format = match seen.format {
                Some(text) => clap::ValueEnum::from_str(text.to_str()?, false).ok()?,
                None => EnvSyntax::Sh,
            };
            Some(Command::Env(EnvArgs {
                socket: socket_args(seen.socket, socket_env)?,
                profile: profile_args(seen.profile)?,
                format,
            }))
        }
        _ => None,
    }
}

/// `parse` on this process's arguments and environment.
pub(super) fn parse_process_args() -> Option<Command> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    parse(&args, std::env::var_os(SOCKET_ENV).as_deref())
}

/// The options as given, each at most once.
#[derive(Default)]
struct Options {
    socket: Option<OsString>,
    profile: Option<OsString>,
    format: Option<OsString>,
    fallback_imds: bool,
}

/// Records a flag's value; `None` (clap's turn) if the flag came before or the value is one
/// clap would not take as a value.
fn set(slot: &mut Option<OsString>, value: OsString) -> Option<()> {
    let usable = slot.is_none() && !value.is_empty() && !value.as_encoded_bytes().starts_with(b"-");
    usable.then(|| *slot = Some(value))
}

fn socket_args(flag: Option<OsString>, env: Option<&OsStr>) -> Option<SocketArgs> {
    let socket = match (flag, env) {
        (Some(path), _) => PathBuf::from(path),
        // An empty variable is left to clap, which decides what it means.
        (None, Some(env)) if env.is_empty() => return None,
        (None, Some(env)) => PathBuf::from(env),
        (None, None) => PathBuf::from(DEFAULT_SOCKET_PATH),
    };
    Some(SocketArgs { socket })
}

fn profile_args(flag: Option<OsString>) -> Option<ProfileArgs> {
    let profile = match flag {
        Some(name) => Some(parse_profile_name(name.to_str()?).ok()?),
        None => None,
    };
    Some(ProfileArgs { profile })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    /// What clap makes of `args` with `IMDS_CREDD_SOCKET` as `socket_env`, in the same
    /// `Debug` form, or `None` where clap refuses or prints help.
    fn clap_parse(args: &[&str]) -> Option<String> {
        let argv = std::iter::once("imds-credd").chain(args.iter().copied());
        let matches = super::super::Cli::command()
            .try_get_matches_from(argv)
            .ok()?;
        let cli = super::super::Cli::from_arg_matches(&matches).ok()?;
        Some(format!("{:?}", cli.command))
    }

    fn fast_parse(args: &[&str], socket_env: Option<&str>) -> Option<String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&args, socket_env.map(OsStr::new)).map(|command| format!("{command:?}"))
    }

    #[test]
    fn agrees_with_clap_wherever_it_answers() {
        // Without IMDS_CREDD_SOCKET in this process, clap uses the default path; the fast
        // path is given none either.
        assert!(
            std::env::var_os(SOCKET_ENV).is_none(),
            "unset {SOCKET_ENV} for this test"
        );
        let recognised: &[&[&str]] = &[
            &["credential-process"],
            &["credential-process", "--socket", "/run/x.sock"],
            &[
                "credential-process",
                "--socket=/run/x.sock",
                "--profile",
                "audit",
            ],
            &["credential-process", "--profile=a.b@c+d_e-f"],
            &["credential-process", "--fallback-imds", "--socket", "/s"],
            &["env"],
            &[
                "env",
                "--format",
                "systemd",
                "--socket",
                "/s",
                "--profile",
                "p",
            ],
            &["env", "--format=powershell"],
            &["env", "--format", "env-no-export"],
            &["env", "--format", "process"],
        ];
        for args in recognised {
            let fast = fast_parse(args, None);
            assert!(fast.is_some(), "not recognised: {args:?}");
            assert_eq!(fast, clap_parse(args), "{args:?}");
        }
    }

    #[test]
    fn leaves_to_clap_what_clap_refuses_explains_or_parses_otherwise() {
        let left: &[&[&str]] = &[
            &[],
            &["--version"],
            &["credential-process", "--help"],
            &["credential-process", "-h"],
            &["credential-process", "--socket"],
            &["credential-process", "--socket", ""],
            &["credential-process", "--socket", "-x"],
            &["credential-process", "--socket", "/a", "--socket", "/b"],
            &["credential-process", "--profile", "a]b"],
            &["credential-process", "--profile", "p", "--fallback-imds"],
            &["credential-process", "--fallback-imds", "--fallback-imds"],
            &["credential-process", "--fallback-imds=yes"],
            &["credential-process", "--format", "sh"],
            &["credential-process", "--sock", "/s"],
            &["credential-process", "extra"],
            &["credential-process", "--", "x"],
            &["env", "--format", "fish"],
            &["env", "--fallback-imds"],
            &["status"],
            &["run"],
            &["exec", "--", "true"],
        ];
        for args in left {
            assert_eq!(fast_parse(args, None), None, "{args:?}");
        }
    }

    #[test]
    fn the_socket_variable_counts_unless_the_flag_is_given() {
        let from_env = fast_parse(&["credential-process"], Some("/env.sock")).unwrap();
        assert!(from_env.contains("\"/env.sock\""), "{from_env}");
        let from_flag = fast_parse(&["env", "--socket", "/flag.sock"], Some("/env.sock")).unwrap();
        assert!(from_flag.contains("\"/flag.sock\""), "{from_flag}");
        assert_eq!(fast_parse(&["credential-process"], Some("")), None);
    }
}

//! `imds-credd env`: the credentials as environment assignments, in the syntax of the
//! shell that reads them (`eval "$(imds-credd env)"`), quoted by [`crate::render`].

use super::{print_credentials, ProfileArgs, SocketArgs};
use crate::render::{render_env, EnvSyntax};

const NAME: &str = "env";

#[derive(Debug, Clone, clap::Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Syntax of the assignments: sh (`export NAME='value'`), systemd (`EnvironmentFile=`),
    /// powershell, cmd, or json (the `credential_process` document).
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "sh")]
    pub format: EnvSyntax,
}

/// Runs the command and returns the exit code.
pub fn run(args: &EnvArgs) -> u8 {
    print_credentials(NAME, &args.socket, &args.profile, |creds| {
        render_env(creds, args.format)
    })
}

//! `imds-credd env`: the credentials as environment assignments, in the syntax of the
//! shell that reads them (`eval "$(imds-credd env)"`), quoted by [`crate::credentials::render`].

use super::{block_on, print_stdout, ClientCommandError, ProfileArgs, SocketArgs};
use crate::clock::{Clock, SystemClock};
use crate::credentials::render::{render_env, EnvSyntax};

/// `imds-credd env`: which daemon to ask, which profile, in which syntax.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvArgs {
    /// The daemon's socket.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Which profile's set.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Syntax of the assignments: sh (`export NAME='value'`), systemd (`EnvironmentFile=`),
    /// powershell, cmd, or json (the `credential_process` document); or the AWS CLI v2
    /// `configure export-credentials` shapes env, env-no-export, windows-cmd, process.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "sh")]
    pub format: EnvSyntax,
}

/// Runs the command: the assignments on stdout, or why there are none.
pub fn run(args: &EnvArgs) -> Result<(), ClientCommandError> {
    block_on(async {
        let creds = args
            .socket
            .api()
            .credentials(args.profile.profile.as_deref(), SystemClock.now())
            .await?;
        print_stdout(&render_env(&creds, args.format))
    })
}

//! `imds-credd env`: the credentials as environment assignments, in the syntax of the
//! shell that reads them (`eval "$(imds-credd env)"`), quoted by [`crate::credentials::render`].

use super::{block_on, fail, print_stdout, ProfileArgs, SocketArgs};
use crate::credentials::render::{render_env, EnvSyntax};
use std::time::SystemTime;

const NAME: &str = "env";

#[derive(Debug, Clone, clap::Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Syntax of the assignments: sh (`export NAME='value'`), systemd (`EnvironmentFile=`),
    /// powershell, cmd, or json (the `credential_process` document); or the AWS CLI v2
    /// `configure export-credentials` shapes env, env-no-export, windows-cmd, process.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "sh")]
    pub format: EnvSyntax,
}

/// Runs the command and returns the exit code.
pub fn run(args: &EnvArgs) -> u8 {
    block_on(NAME, async {
        let api = args.socket.api();
        match api
            .credentials(args.profile.profile.as_deref(), SystemTime::now())
            .await
        {
            Ok(creds) => print_stdout(NAME, &render_env(&creds, args.format)),
            Err(e) => fail(NAME, &e, e.exit_code()),
        }
    })
}

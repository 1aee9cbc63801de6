//! `imds-credd credential-process`: the `credential_process` helper of `~/.aws/config`. It
//! prints the Version 1 JSON on stdout and nothing else; on failure stdout stays empty and
//! one line on stderr says why (the AWS CLI shows it), with exit 1 (no valid credentials)
//! or 2 (no daemon to ask).

use super::{print_credentials, ProfileArgs, SocketArgs};

const NAME: &str = "credential-process";

#[derive(Debug, Clone, clap::Args)]
pub struct CredentialProcessArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
}

/// Runs the command and returns the exit code.
pub fn run(args: &CredentialProcessArgs) -> u8 {
    // Re-serialized from the parsed credentials, never a copy of the daemon's bytes: what
    // the CLI reads is always a well-formed, unexpired document.
    print_credentials(NAME, &args.socket, &args.profile, |creds| {
        format!("{}\n", creds.to_process_json())
    })
}

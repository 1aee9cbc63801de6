//! `imds-credd credential-process`: the `credential_process` helper of `~/.aws/config`. It
//! prints the Version 1 JSON on stdout and nothing else; on failure stdout stays empty and
//! one line on stderr says why (the AWS CLI shows it), with exit 1 (no valid credentials)
//! or 2 (no daemon to ask).

use super::api::ClientError;
use super::imds_fallback::instance_role_credentials;
use super::socket_client::UnreachableDaemon;
use super::{block_on, print_stdout, ClientCommandError, ProfileArgs, SocketArgs};
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Clone, clap::Args)]
pub struct CredentialProcessArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// When no daemon is running (no socket, or nobody listening on it), fetch the instance
    /// role's credentials straight from IMDS (IMDSv2). The endpoint follows
    /// AWS_EC2_METADATA_SERVICE_ENDPOINT like the SDKs.
    #[arg(long, conflicts_with = "profile")]
    pub fallback_imds: bool,
}

/// Runs the command: the document on stdout, or why there is none.
pub(crate) fn run(args: &CredentialProcessArgs) -> Result<(), ClientCommandError> {
    block_on(async {
        let now = SystemClock.now();
        let api = args.socket.api();
        let creds = match api.credentials(args.profile.profile.as_deref(), now).await {
            Ok(creds) => creds,
            Err(ClientError::Unreachable(
                no_daemon @ (UnreachableDaemon::Missing { .. } | UnreachableDaemon::Refused { .. }),
            )) if args.fallback_imds => {
                let env = |name: &str| std::env::var(name).ok();
                instance_role_credentials(env, now)
                    .await
                    .map_err(|fallback| ClientCommandError::Fallback {
                        no_daemon,
                        fallback: Box::new(fallback),
                    })?
            }
            Err(e) => return Err(e.into()),
        };
        // Re-serialized from the parsed credentials, never a copy of the daemon's bytes:
        // what the CLI reads is always a well-formed, unexpired document.
        print_stdout(&format!("{}\n", creds.to_process_json()))
    })
}

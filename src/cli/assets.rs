//! `imds-credd generate-assets --out DIR`: the man pages and the bash, zsh and fish
//! completions, generated from the clap definitions so they never drift from `--help`.
//!
//! Packagers run it (`packaging/build-packages.sh`). It is not one of the operator's
//! commands, so it is added only to the parser the binary runs ([`add_command`]) and never
//! to [`Cli`](super::Cli): the man pages and completions, which are rendered from `Cli`,
//! do not mention it (clap's completion generators would list even a hidden subcommand).

use clap::{ArgMatches, Args, FromArgMatches};
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The subcommand's name on the command line.
pub(super) const COMMAND_NAME: &str = "generate-assets";

/// The shells that get a completion script; their file names are clap_complete's
/// conventional ones (`imds-credd.bash`, `_imds-credd`, `imds-credd.fish`).
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Arguments of `generate-assets`.
#[derive(Debug, Args)]
pub(super) struct GenerateAssetsArgs {
    /// Folder to write into; `man/` (section 1 pages) and `completions/` are created in it.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The assets could not be written. The message names the file or folder.
#[derive(Debug, Error)]
pub enum AssetsError {
    #[error("cannot create folder {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write man pages into {path}")]
    ManPages {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {shell} completions into {path}")]
    Completions {
        shell: Shell,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Adds the hidden `generate-assets` subcommand to the parser `main` runs.
pub(super) fn add_command(cli: clap::Command) -> clap::Command {
    let command = clap::Command::new(COMMAND_NAME)
        .about("Write the man pages and shell completions (for packagers)")
        .hide(true);
    cli.subcommand(GenerateAssetsArgs::augment_args(command))
}

/// Writes the man pages of `cli` and each of its visible subcommands into `out/man/`, and
/// its completion scripts into `out/completions/`. Returns the files written.
pub(super) fn write_assets(
    mut cli: clap::Command,
    out: &Path,
) -> Result<Vec<PathBuf>, AssetsError> {
    let man_dir = out.join("man");
    let completions_dir = out.join("completions");
    for dir in [&man_dir, &completions_dir] {
        std::fs::create_dir_all(dir).map_err(|source| AssetsError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    }
    clap_mangen::generate_to(cli.clone(), &man_dir)
        .and_then(|()| write_main_page(&cli, &man_dir))
        .map_err(|source| AssetsError::ManPages {
            path: man_dir.clone(),
            source,
        })?;
    let mut written = man_pages_in(&man_dir).map_err(|source| AssetsError::ManPages {
        path: man_dir.clone(),
        source,
    })?;
    let bin_name = cli.get_name().to_owned();
    for shell in SHELLS {
        let path = clap_complete::generate_to(shell, &mut cli, &bin_name, &completions_dir)
            .map_err(|source| AssetsError::Completions {
                shell,
                path: completions_dir.clone(),
                source,
            })?;
        written.push(path);
    }
    Ok(written)
}

/// Rewrites `imds-credd.1` with the sections an operator looks for on the main page and
/// that clap does not know: exit status, files, environment, see also.
fn write_main_page(cli: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cli.clone().disable_help_subcommand(true));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.extend_from_slice(main_page_sections().as_bytes());
    man.render_version_section(&mut page)?;
    std::fs::write(dir.join(man.get_filename()), page)
}

fn main_page_sections() -> String {
    use super::Exit;
    let (ok, no_credentials, usage) = (
        Exit::Ok.code(),
        Exit::NoCredentials.code(),
        Exit::Usage.code(),
    );
    let (cannot_execute, not_found) = (Exit::CannotExecute.code(), Exit::CommandNotFound.code());
    let config = crate::config::DEFAULT_CONFIG_PATH.replace('-', "\\-");
    let socket = crate::config::DEFAULT_SOCKET_PATH.replace('-', "\\-");
    format!(
        r#".SH "EXIT STATUS"
.TP
{ok}
Success.
.TP
{no_credentials}
No valid credentials could be had: a client command got none (the daemon holds none, or
refused again after a rate-limit retry), or the daemon could not start or keep running for a
reason other than its configuration (the runtime, a socket, pipe or file it could not create,
a task that panicked or ended): \fBRestart=on\-failure\fR starts it again.
.TP
{usage}
Bad usage or configuration: the command line, the config file (named with its line and key),
an environment variable the daemon honours (\fBAWS_EC2_METADATA_DISABLED\fR, a bad endpoint);
for client commands, also no daemon to ask, an unknown profile or a refused user.
.TP
{cannot_execute}, {not_found}
\fBexec\fR: the command cannot be run, or does not exist (as in shells). Otherwise
\fBexec\fR exits with the command's own code, or 128+N when signal N killed it.
.SH FILES
.TP
\fI{config}\fR
The configuration (TOML). Check an edit with \fBimds\-credd check\-config\fR, apply it with
\fBsystemctl reload imds\-credd\fR (a bad file is refused and the old one kept).
.TP
\fI{socket}\fR
The daemon's HTTP API, open to root and the members of the \fBimds\-credd\fR group.
.SH ENVIRONMENT
.TP
\fBAWS_EC2_METADATA_SERVICE_ENDPOINT\fR, \fBAWS_EC2_METADATA_SERVICE_ENDPOINT_MODE\fR
The IMDS endpoint and address family (IPv4 or IPv6), when the configuration sets none.
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBimds\-credd\-run\fR(1)
"#
    )
}

/// The section 1 pages in `dir`, sorted, so the list printed is stable.
fn man_pages_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "1") {
            pages.push(path);
        }
    }
    pages.sort();
    Ok(pages)
}

/// Runs `generate-assets` with its parsed arguments; prints each file written.
pub(super) fn run(matches: &ArgMatches) -> Result<(), AssetsError> {
    let args = GenerateAssetsArgs::from_arg_matches(matches).unwrap_or_else(|e| e.exit());
    let written = write_assets(<super::Cli as clap::CommandFactory>::command(), &args.out)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

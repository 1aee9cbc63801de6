//! The folders of the socket, the container token file and every sink, checked on the file
//! system (Linux): other users must not be able to create or replace our files in them.
//! Run by `check-config`, by the daemon at start and on each `SIGHUP`.

use super::{Config, ConfigError, Spot};
use std::path::Path;

/// Folder bits that let someone other than the owner add, remove or rename entries.
const FOLDER_SHARED_WRITE: u32 = 0o022;

/// Refuses a socket folder that other users can write: they could replace our socket with
/// their own and answer clients with credentials of their choosing, or take the path
/// before we bind. It must be owned by root or by the uid checking (the daemon's own at
/// start), and writable by its owner only (no group or others write, sticky or not).
///
/// A folder that does not exist yet is created by the daemon at start, inside its nearest
/// existing ancestor, so that ancestor is checked instead: `check-config` gives the same
/// verdict before and after the daemon's first start. Run as root, `check-config` cannot
/// know the daemon's uid and checks the mode bits only.
pub(super) fn check_socket_folder(socket: &Path) -> Result<(), String> {
    check_own_folder(socket, "socket", "replace the socket")
}

/// The rule of [`check_socket_folder`] for the container endpoint's token file: a folder
/// others may write lets them create the file first (the daemon then refuses to start) or
/// swap it for one holding a token of their choosing.
fn check_token_folder(token_file: &Path) -> Result<(), String> {
    check_own_folder(token_file, "token file", "create or replace the token file")
}

fn check_own_folder(path: &Path, what: &str, attack: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Some((folder, meta)) = nearest_existing_folder(path, what)? else {
        return Ok(());
    };
    let checker = nix::unistd::geteuid().as_raw();
    let owner_ok = meta.uid() == 0 || meta.uid() == checker || checker == 0;
    if !owner_ok || meta.mode() & FOLDER_SHARED_WRITE != 0 {
        return Err(format!(
            "the {what}'s folder {} (mode {:04o}, owner uid {}) can be written by other users, who could {attack}; use a folder owned by root or the daemon's user and writable by its owner only, such as /run/imds-credd",
            folder.display(),
            meta.mode() & 0o7777,
            meta.uid()
        ));
    }
    Ok(())
}

/// Refuses a sink's folder (`[[file]]`, `[[env]]`) that its group or everyone may write,
/// sticky or not (`/tmp`): another user could create the file first, or a name the daemon
/// writes next. Its owner may be anyone (a user's own `~/.aws` is theirs); the sink
/// writer's checks at each write decide whether that owner may receive the file.
fn check_sink_folder(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Some((folder, meta)) = nearest_existing_folder(path, "sink file")? else {
        return Ok(());
    };
    if meta.mode() & FOLDER_SHARED_WRITE != 0 {
        return Err(format!(
            "the sink file's folder {} (mode {:04o}) can be written by other users, who could create the file first or put their own in its place; use a folder writable by its owner only",
            folder.display(),
            meta.mode() & 0o7777,
        ));
    }
    Ok(())
}

/// The folder of `path`, or its nearest existing ancestor (the daemon creates the missing
/// ones in it), with its metadata; `None` when nothing on the way exists.
fn nearest_existing_folder(
    path: &Path,
    what: &str,
) -> Result<Option<(std::path::PathBuf, std::fs::Metadata)>, String> {
    let mut folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    loop {
        match std::fs::metadata(folder) {
            Ok(meta) => return Ok(Some((folder.to_path_buf(), meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match folder.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => folder = parent,
                _ => return Ok(None),
            },
            Err(e) => {
                return Err(format!(
                    "cannot inspect the {what}'s folder {}: {e}",
                    folder.display()
                ))
            }
        }
    }
}

/// Which paths a command-line flag set, so that an error names the flag instead of a line.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathsFromFlags {
    /// `--socket` set the socket path.
    pub socket: bool,
    /// `--container-token-file` set the token file.
    pub token_file: bool,
}

/// The folder rules for a resolved config: the socket's and every container token file's
/// folders ([`check_socket_folder`]), every sink's ([`check_sink_folder`]). The error is
/// placed like the others: at the flag when one set the path, else at the key in the
/// config `file` (its table's header, or line 1, when the path is the default).
pub fn check_config_folders(
    config: &Config,
    file: &Path,
    flags: PathsFromFlags,
) -> Result<(), ConfigError> {
    /// One path's verdict and where an error about it points.
    struct Checked {
        verdict: Result<(), String>,
        spot: Spot,
        key: &'static str,
        flag: Option<&'static str>,
    }
    let mut checks = vec![Checked {
        verdict: check_socket_folder(&config.socket.path),
        spot: Spot::Key("socket", "path"),
        key: "socket.path",
        flag: flags.socket.then_some("--socket"),
    }];
    if let Some(container) = &config.container {
        checks.push(Checked {
            verdict: check_token_folder(&container.token_file),
            spot: Spot::Key("container", "token_file"),
            key: "container.token_file",
            flag: flags.token_file.then_some("--container-token-file"),
        });
        for (index, client) in container.clients.iter().enumerate() {
            checks.push(Checked {
                verdict: check_token_folder(&client.token_file),
                spot: Spot::SubEntryKey("container", "client", index, "token_file"),
                key: "container.client.token_file",
                flag: None,
            });
        }
    }
    for (table, index, sink) in config.sinks() {
        checks.push(Checked {
            verdict: check_sink_folder(&sink.path),
            spot: Spot::EntryKey(table, index, "path"),
            key: if table == "file" {
                "file.path"
            } else {
                "env.path"
            },
            flag: None,
        });
    }
    let Some((problem, spot, key, flag)) = checks.into_iter().find_map(|c| {
        c.verdict
            .err()
            .map(|problem| (problem, c.spot, c.key, c.flag))
    }) else {
        return Ok(());
    };
    let message = format!("key `{key}`: {problem}");
    if let Some(flag) = flag {
        return Err(ConfigError::Flag {
            origin: flag.to_string(),
            message,
        });
    }
    let text = std::fs::read_to_string(file).unwrap_or_default();
    Err(ConfigError::Invalid {
        path: file.to_path_buf(),
        line: spot.line(&text).unwrap_or(1),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_socket_folder_others_can_write_is_refused_and_a_missing_one_checks_its_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = check_socket_folder(&shared.join("s.sock")).unwrap_err();
        assert!(err.contains("1777") && err.contains("shared"), "{err}");
        let err = check_socket_folder(&shared.join("not/yet/s.sock")).unwrap_err();
        assert!(err.contains("shared"), "{err}");
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_socket_folder(&private.join("s.sock")), Ok(()));
        assert_eq!(check_socket_folder(&private.join("new/s.sock")), Ok(()));
    }

    #[test]
    fn sink_and_token_folders_others_can_write_are_refused_sticky_or_not() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o1777, 0o777, 0o770, 0o1770] {
            let shared = dir.path().join(format!("shared-{mode:o}"));
            std::fs::create_dir(&shared).unwrap();
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = check_sink_folder(&shared.join("credentials")).unwrap_err();
            assert!(err.contains(&format!("{mode:04o}")), "{err}");
            assert!(check_sink_folder(&shared.join("new/x.env")).is_err());
            assert!(check_token_folder(&shared.join("token")).is_err());
        }
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_sink_folder(&private.join("credentials")), Ok(()));
        assert_eq!(check_token_folder(&private.join("token")), Ok(()));
    }
}

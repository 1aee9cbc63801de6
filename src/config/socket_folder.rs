//! The socket's folder, checked on the file system (Linux): other users must not be able
//! to replace the socket in it. Run by `check-config` and by the daemon at start.

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
    use std::os::unix::fs::MetadataExt;
    let mut folder = match socket.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let meta = loop {
        match std::fs::metadata(folder) {
            Ok(meta) => break meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match folder.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => folder = parent,
                _ => return Ok(()),
            },
            Err(e) => {
                return Err(format!(
                    "cannot inspect the socket's folder {}: {e}",
                    folder.display()
                ))
            }
        }
    };
    let checker = nix::unistd::geteuid().as_raw();
    let owner_ok = meta.uid() == 0 || meta.uid() == checker || checker == 0;
    if !owner_ok || meta.mode() & FOLDER_SHARED_WRITE != 0 {
        return Err(format!(
            "the socket's folder {} (mode {:04o}, owner uid {}) can be written by other users, who could replace the socket; use a folder owned by root or the daemon's user and writable by its owner only, such as /run/imds-credd",
            folder.display(),
            meta.mode() & 0o7777,
            meta.uid()
        ));
    }
    Ok(())
}

/// `check_socket_folder` for a resolved config, the error placed like the others: at the
/// `--socket` flag when it set the path, else at `socket.path` in the config `file` (its
/// `[socket]` header, or line 1, when the path is the default).
pub fn check_config_socket_folder(
    config: &Config,
    file: &Path,
    from_flag: bool,
) -> Result<(), ConfigError> {
    let Err(problem) = check_socket_folder(&config.socket.path) else {
        return Ok(());
    };
    let message = format!("key `socket.path`: {problem}");
    if from_flag {
        return Err(ConfigError::Flag {
            origin: "--socket".to_string(),
            message,
        });
    }
    let text = std::fs::read_to_string(file).unwrap_or_default();
    Err(ConfigError::Invalid {
        path: file.to_path_buf(),
        line: Spot::Key("socket", "path").line(&text).unwrap_or(1),
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
}

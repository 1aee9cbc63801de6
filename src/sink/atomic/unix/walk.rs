//! The walk to a managed file's folder, one component at a time, so that every operation
//! goes through a folder file descriptor reached without trusting links other users could
//! plant:
//! - The folder path is walked one component at a time with `O_NOFOLLOW`. A symbolic link on
//!   the way is followed only when root or the daemon's own user owns it (`/var/run → /run`);
//!   a link owned by anyone else is refused, since its owner could point it at `/etc`. A
//!   trusted link is not handed to the kernel to resolve: its target is read and walked the
//!   same way, one component at a time, so a root-owned link into a user's folder cannot
//!   smuggle that user's own links past the checks (at most [`MAX_LINKS`] links per walk).
//! - No folder on the way may be writable by everyone without the sticky bit.
//! - Missing folders are created owner-only plus traverse rights for exactly the classes the
//!   file mode lets read (`0600` → `0700`, `0640` → `0750`, `0644` → `0755`), owned by the
//!   configured owner and group: the file's readers can reach it, nobody else can list it.
//!   (A fixed `0755` would disclose the file names to everyone; a fixed root-owned `0700`
//!   would lock the file's own owner out of `~app/.aws`.)
//!
//! The file at the end of the walk is checked in `owner`.

use super::{file_type, FileError, FileOwner, ManagedFile};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, geteuid};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Symbolic links one folder walk follows at most, as the kernel's own limit (`ELOOP`).
pub const MAX_LINKS: usize = 40;

impl ManagedFile {
    /// Walks to the target's folder (see the module doc). With `create`, missing folders are
    /// made for that owner; without, a missing folder gives `None`.
    pub(super) fn open_folder(
        &self,
        create: Option<&FileOwner>,
    ) -> Result<Option<OwnedFd>, FileError> {
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let open_root = |walked: &Path| -> Result<OwnedFd, FileError> {
            let fd =
                openat(AT_FDCWD, "/", dir_flags, Mode::empty()).map_err(|e| FileError::Io {
                    action: "opening",
                    path: walked.to_path_buf(),
                    source: e,
                })?;
            check_folder_stat(&fd, walked)?;
            Ok(fd)
        };
        // `walked` is the path as followed so far, for messages; `pending` what is left,
        // into which a trusted link's target is spliced.
        let mut walked = PathBuf::from("/");
        let mut fd = open_root(&walked)?;
        let mut pending = VecDeque::new();
        push_components(&mut pending, &self.folder, &self.path)?;
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                walked.pop();
            } else {
                walked.push(&name);
            }
            let io = |action, source, walked: &Path| FileError::Io {
                action,
                path: walked.to_path_buf(),
                source,
            };
            fd = match openat(
                &fd,
                name.as_os_str(),
                dir_flags | OFlag::O_NOFOLLOW,
                Mode::empty(),
            ) {
                Ok(next) => next,
                Err(Errno::ENOENT) => match create {
                    None => return Ok(None),
                    Some(owner) => self.make_folder(&fd, &name, owner, &walked)?,
                },
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let stat = fstatat(
                        &fd,
                        name.as_os_str(),
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io("inspecting", e, &walked))?;
                    if file_type(&stat) != SFlag::S_IFLNK {
                        return Err(FileError::NotAFolder { path: walked });
                    }
                    if stat.st_uid != 0 && stat.st_uid != geteuid().as_raw() {
                        return Err(FileError::UntrustedLink {
                            path: walked,
                            uid: stat.st_uid,
                        });
                    }
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(FileError::TooManyLinks { path: walked });
                    }
                    let target = readlinkat(&fd, name.as_os_str())
                        .map_err(|e| io("reading link", e, &walked))?;
                    let target = PathBuf::from(target);
                    walked.pop();
                    let mut spliced = VecDeque::new();
                    push_components(&mut spliced, &target, &walked)?;
                    spliced.append(&mut pending);
                    pending = spliced;
                    if target.is_absolute() {
                        walked = PathBuf::from("/");
                        fd = open_root(&walked)?;
                    }
                    continue;
                }
                Err(e) => return Err(io("opening", e, &walked)),
            };
            check_folder_stat(&fd, &walked)?;
        }
        Ok(Some(fd))
    }

    fn make_folder(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        owner: &FileOwner,
        path: &Path,
    ) -> Result<OwnedFd, FileError> {
        let io = |action, source| FileError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let mode = Mode::from_bits_truncate(folder_mode_for(self.mode));
        match mkdirat(parent, name, mode) {
            // Someone made it meanwhile: use theirs, through the same checks as any folder.
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(io("creating folder", e)),
        }
        let fd = openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("opening", e))?;
        let stat = fstat(&fd).map_err(|e| io("inspecting", e))?;
        if stat.st_uid == geteuid().as_raw() {
            // Ours (just made): set owner and the exact mode, which the umask may have cut.
            if owner.uid.is_some() || owner.gid.is_some() {
                fchown(&fd, owner.uid, owner.gid).map_err(|e| io("setting owner of", e))?;
            }
            fchmod(&fd, mode).map_err(|e| io("setting mode of", e))?;
        }
        Ok(fd)
    }
}

/// Mode of a folder we create for a file with `file_mode`: full rights for the owner, and
/// read+traverse for each class that may read the file.
pub fn folder_mode_for(file_mode: u32) -> u32 {
    let mut mode = 0o700;
    if file_mode & 0o040 != 0 {
        mode |= 0o050;
    }
    if file_mode & 0o004 != 0 {
        mode |= 0o005;
    }
    mode
}

/// Appends the names to walk in `path` (`..` kept, `.` and `/` dropped) to `pending`.
fn push_components(
    pending: &mut VecDeque<OsString>,
    path: &Path,
    shown: &Path,
) -> Result<(), FileError> {
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => pending.push_back(OsString::from("..")),
            Component::Normal(name) => pending.push_back(name.to_os_string()),
            Component::Prefix(_) => {
                return Err(FileError::BadPath {
                    path: shown.to_path_buf(),
                })
            }
        }
    }
    Ok(())
}

/// Refuses a folder anyone may write into without the sticky bit: anyone could swap the
/// files in it between our checks and our writes.
fn check_folder_stat(fd: &OwnedFd, path: &Path) -> Result<(), FileError> {
    let stat = fstat(fd.as_fd()).map_err(|source| FileError::Io {
        action: "inspecting",
        path: path.to_path_buf(),
        source,
    })?;
    let mode = stat.st_mode;
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(FileError::UnsafeFolder {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_mode_grants_traverse_to_the_file_readers_only() {
        assert_eq!(folder_mode_for(0o600), 0o700);
        assert_eq!(folder_mode_for(0o640), 0o750);
        assert_eq!(folder_mode_for(0o644), 0o755);
        assert_eq!(folder_mode_for(0o400), 0o700);
    }
}

//! Safe, atomic replacement of one file that other programs read: the only way a sink touches
//! the disk.
//!
//! A write goes to a temp file in the same folder, created with `O_EXCL` and the final mode
//! (owner and group set with `fchown` before any byte is written), then fsynced, renamed over
//! the target, and the folder fsynced. A reader at any moment sees the whole old file or the
//! whole new one; after a crash the target is still one of the two, and at most a temp file
//! (`.NAME.<random>.imds-credd-tmp`, never world-readable unless the configured mode is) is
//! left, which the next write through the same [`ManagedFile`] sweeps away.
//!
//! The daemon usually runs as root and writes into folders other users own (`~app/.aws`), so
//! every operation goes through a folder file descriptor reached by `walk`, which trusts no
//! link other users could plant, and the file already at the target must pass the checks of
//! `owner` (a regular file, one link, owned by the daemon's user or the configured owner).
//!
//! Errors name the path and carry the errno (`ENOSPC`, `EROFS`, `EACCES`…) as their source;
//! the temp file is removed on every error path.

mod owner;
mod walk;

pub use owner::FileOwner;
pub use walk::{folder_mode_for, MAX_LINKS};

use super::{leftover_temps, temp_name, MAX_FILE_SIZE};
use crate::failure::Fault;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, fsync, geteuid, unlinkat, UnlinkatFlags};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

/// Why a file could not be read, replaced or removed. Messages name the path, never content.
#[derive(Debug, Error)]
pub enum FileError {
    /// A symbolic link is at the target.
    #[error("{}: is a symbolic link; refusing to write through it", .path.display())]
    Symlink {
        /// The target.
        path: PathBuf,
    },
    /// A link on the way is owned by someone who could point it anywhere.
    #[error(
        "{}: is a symbolic link owned by uid {uid}; only links owned by root or the daemon are followed",
        .path.display()
    )]
    UntrustedLink {
        /// The link.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Something other than a file is at the target.
    #[error("{}: is not a regular file", .path.display())]
    NotRegularFile {
        /// The target.
        path: PathBuf,
    },
    /// The target is also reachable under another name.
    #[error(
        "{}: has {links} hard links; refusing a file that is also reachable under another name",
        .path.display()
    )]
    HardLinked {
        /// The target.
        path: PathBuf,
        /// Its link count.
        links: u64,
    },
    /// Too many links to follow on the way.
    #[error("{}: more than {MAX_LINKS} symbolic links on the way", .path.display())]
    TooManyLinks {
        /// The path.
        path: PathBuf,
    },
    /// Something other than a folder is on the way.
    #[error("{}: is not a folder", .path.display())]
    NotAFolder {
        /// The path.
        path: PathBuf,
    },
    /// The target is owned by someone the daemon does not write for.
    #[error(
        "{}: owned by uid {uid}, which is neither the daemon (uid {daemon}) nor the configured owner",
        .path.display()
    )]
    ForeignOwner {
        /// The target.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The daemon's uid.
        daemon: u32,
    },
    /// A folder on the way lets anyone replace what is in it.
    #[error("{}: folder is writable by everyone and has no sticky bit", .path.display())]
    UnsafeFolder {
        /// The folder.
        path: PathBuf,
    },
    /// The target is too large to be a file the daemon wrote.
    #[error("{}: larger than {MAX_FILE_SIZE} bytes; refusing to rewrite it", .path.display())]
    TooLarge {
        /// The target.
        path: PathBuf,
    },
    /// The path is not an absolute path to a file.
    #[error("{}: not an absolute path to a file", .path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
    },
    /// The configured owner or group does not exist.
    #[error("{key} {name:?}: no such {what}")]
    UnknownId {
        /// The config key (`owner`, `group`).
        key: &'static str,
        /// `user` or `group`.
        what: &'static str,
        /// The name as configured.
        name: String,
    },
    /// The user or group database could not be read.
    #[error("looking up {what} {name:?}")]
    Lookup {
        /// `user` or `group`.
        what: &'static str,
        /// The name as configured.
        name: String,
        /// Why.
        #[source]
        source: Errno,
    },
    /// A system call failed.
    #[error("{action} {}", .path.display())]
    Io {
        /// What was being done (`open`, `rename`…).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
}

impl FileError {
    /// Whose move it is: not an absolute path or an owner or group that does not exist is
    /// in what the operator wrote; the rest is the state of the file system.
    pub fn fault(&self) -> Fault {
        match self {
            FileError::BadPath { .. } | FileError::UnknownId { .. } => Fault::Setup,
            // Links on the way or at the target that the daemon does not follow.
            FileError::Symlink { .. }
            | FileError::UntrustedLink { .. }
            | FileError::HardLinked { .. }
            | FileError::TooManyLinks { .. } => Fault::Unavailable,
            // Something other than a file the daemon wrote, or a folder, is at the path.
            FileError::NotRegularFile { .. }
            | FileError::NotAFolder { .. }
            | FileError::TooLarge { .. } => Fault::Unavailable,
            // Others own the file, or may swap the folder's entries.
            FileError::ForeignOwner { .. } | FileError::UnsafeFolder { .. } => Fault::Unavailable,
            // The system failed a call.
            FileError::Lookup { .. } | FileError::Io { .. } => Fault::Unavailable,
        }
    }
}

/// What is at the target now: its bytes and the facts a rewrite must restore.
#[derive(Debug)]
pub struct Existing {
    /// Zeroized on drop: it holds the credentials the daemon wrote last time.
    pub contents: Vec<u8>,
    /// Its mode, which a rewrite keeps checking.
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

impl Drop for Existing {
    fn drop(&mut self) {
        self.contents.zeroize();
    }
}

/// One file the daemon owns: where it is, its mode, its owner and group (names or numbers,
/// resolved on each write).
#[derive(Debug)]
pub struct ManagedFile {
    path: PathBuf,
    folder: PathBuf,
    name: OsString,
    mode: u32,
    owner: Option<String>,
    group: Option<String>,
    /// Set once leftovers of a crashed run have been swept from the folder.
    swept: AtomicBool,
}

impl ManagedFile {
    /// `path` must be absolute and name a file (the config checks this too).
    pub fn new(
        path: &Path,
        mode: u32,
        owner: Option<String>,
        group: Option<String>,
    ) -> Result<ManagedFile, FileError> {
        let (folder, name) = super::split_target(path)?;
        Ok(ManagedFile {
            path: path.to_path_buf(),
            folder,
            name,
            mode: mode & 0o777,
            owner,
            group,
            swept: AtomicBool::new(false),
        })
    }

    /// The target.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file the daemon only reads, never writes (a sink's pid file): the same checked walk
    /// and file-type checks, no owner check ([`Self::read_any_owner`]; the caller judges the
    /// owner).
    pub fn for_reading(path: &Path) -> Result<ManagedFile, FileError> {
        ManagedFile::new(path, 0o600, None, None)
    }

    /// The target's contents and metadata; `None` when it (or its folder) does not exist.
    /// Refuses a link, a non-regular file, a hard-linked file, a file owned by someone
    /// else, or a huge file.
    pub fn read(&self) -> Result<Option<Existing>, FileError> {
        let owner = self.resolve_owner()?;
        self.read_checked(|stat| self.check_target(stat, &owner))
    }

    /// As [`Self::read`], but whoever owns the file: for a caller with its own rule about
    /// owners, which it applies to [`Existing::uid`] and [`Existing::mode`].
    pub fn read_any_owner(&self) -> Result<Option<Existing>, FileError> {
        self.read_checked(|stat| self.check_kind(stat))
    }

    fn read_checked(
        &self,
        check: impl Fn(&FileStat) -> Result<(), FileError>,
    ) -> Result<Option<Existing>, FileError> {
        let Some(folder) = self.open_folder(None)? else {
            return Ok(None);
        };
        let stat = match fstatat(
            &folder,
            self.name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.io("inspecting", e)),
        };
        check(&stat)?;
        // O_NONBLOCK: should the file be swapped for a FIFO after the check, open must not
        // hang; the fstat below then refuses it.
        let fd = match openat(
            &folder,
            self.name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(self.symlink()),
            Err(source) => return Err(self.io("opening", source)),
        };
        let opened = fstat(&fd).map_err(|e| self.io("inspecting", e))?;
        if opened.st_ino != stat.st_ino || opened.st_dev != stat.st_dev {
            // Replaced between the check and the open: check the new one.
            check(&opened)?;
        }
        // Sized up front so that reading does not grow the buffer and free copies of it.
        let expected = (opened.st_size.max(0) as u64).min(MAX_FILE_SIZE) as usize + 1;
        let mut contents = Zeroizing::new(Vec::with_capacity(expected));
        std::fs::File::from(fd)
            .take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut contents)
            .map_err(|e| self.io("reading", errno_of(&e)))?;
        if contents.len() as u64 > MAX_FILE_SIZE {
            return Err(FileError::TooLarge {
                path: self.path.clone(),
            });
        }
        Ok(Some(Existing {
            contents: std::mem::take(&mut *contents),
            mode: opened.st_mode & 0o7777,
            uid: opened.st_uid,
            gid: opened.st_gid,
        }))
    }

    /// Replaces the target with `contents` unless `existing` (what [`Self::read`] gave)
    /// already holds them with the configured mode and owner. Returns whether it wrote.
    pub fn replace_if_changed(
        &self,
        existing: Option<&Existing>,
        contents: &[u8],
    ) -> Result<bool, FileError> {
        if let Some(existing) = existing {
            if self.is_current(existing, contents)? {
                return Ok(false);
            }
        }
        self.replace(contents)?;
        Ok(true)
    }

    fn is_current(&self, existing: &Existing, contents: &[u8]) -> Result<bool, FileError> {
        let owner = self.resolve_owner()?;
        let uid = owner.uid.unwrap_or_else(geteuid).as_raw();
        let gid_ok = owner.gid.is_none_or(|g| g.as_raw() == existing.gid);
        Ok(existing.contents.as_slice() == contents
            && existing.mode == self.mode
            && existing.uid == uid
            && gid_ok)
    }

    /// Replaces the target with `contents` atomically, creating missing folders.
    pub fn replace(&self, contents: &[u8]) -> Result<(), FileError> {
        let owner = self.resolve_owner()?;
        // With an owner to create for, a missing folder is made, never reported as `None`.
        let folder = self
            .open_folder(Some(&owner))?
            .ok_or_else(|| self.io("opening folder of", Errno::ENOENT))?;
        self.inspect_target(&folder, &owner)?;
        self.sweep_once(&folder);
        let (temp_name, temp) = self.create_temp(&folder)?;
        let written = self.fill_temp(temp, &owner, contents).and_then(|()| {
            renameat(
                &folder,
                temp_name.as_os_str(),
                &folder,
                self.name.as_os_str(),
            )
            .map_err(|e| self.io("renaming temp file over", e))
        });
        if let Err(e) = written {
            let _ = unlinkat(&folder, temp_name.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        // The rename is durable only once the folder is: without this a power cut could bring
        // back the old file (or none) after we reported success.
        fsync(&folder).map_err(|e| self.io("syncing folder of", e))
    }

    /// Deletes the target. Returns whether there was one.
    pub fn remove(&self) -> Result<bool, FileError> {
        let owner = self.resolve_owner()?;
        let Some(folder) = self.open_folder(None)? else {
            return Ok(false);
        };
        self.sweep_once(&folder);
        if self.inspect_target(&folder, &owner)?.is_none() {
            return Ok(false);
        }
        match unlinkat(&folder, self.name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {}
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(self.io("removing", e)),
        }
        fsync(&folder).map_err(|e| self.io("syncing folder of", e))?;
        Ok(true)
    }

    fn resolve_owner(&self) -> Result<FileOwner, FileError> {
        FileOwner::resolve(self.owner.as_deref(), self.group.as_deref())
    }

    /// Creates `.NAME.<random>.imds-credd-tmp` with `O_EXCL`: a name planted by someone else
    /// (even a link) makes `openat` fail instead of writing through it, and we try another.
    fn create_temp(&self, folder: &OwnedFd) -> Result<(OsString, OwnedFd), FileError> {
        let mut last = Errno::EEXIST;
        for _ in 0..16 {
            let temp_name = temp_name(&self.name, fastrand::u64(..));
            match openat(
                folder,
                temp_name.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(self.mode),
            ) {
                Ok(fd) => return Ok((temp_name, fd)),
                Err(Errno::EEXIST) => last = Errno::EEXIST,
                Err(e) => return Err(self.io("creating temp file for", e)),
            }
        }
        Err(self.io("creating temp file for", last))
    }

    /// Owner, group and exact mode first (the file was created with at most the final mode,
    /// the umask only removing bits), then the contents, then fsync.
    fn fill_temp(&self, fd: OwnedFd, owner: &FileOwner, contents: &[u8]) -> Result<(), FileError> {
        if owner.uid.is_some() || owner.gid.is_some() {
            fchown(&fd, owner.uid, owner.gid)
                .map_err(|e| self.io("setting owner of temp file for", e))?;
        }
        fchmod(&fd, Mode::from_bits_truncate(self.mode))
            .map_err(|e| self.io("setting mode of temp file for", e))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(contents)
            .map_err(|e| self.io("writing temp file for", errno_of(&e)))?;
        file.sync_all()
            .map_err(|e| self.io("syncing temp file for", errno_of(&e)))
    }

    /// Removes, on this file's first write or removal, the temp files a crashed run left
    /// behind. Best effort: a leftover that cannot be removed does not stop the write.
    fn sweep_once(&self, folder: &OwnedFd) {
        if self.swept.swap(true, Ordering::Relaxed) {
            return;
        }
        for entry in leftover_temps(&self.folder, &self.name) {
            let name = entry.file_name();
            // Through the checked folder fd: the listing is only a hint of names.
            if unlinkat(folder, name.as_os_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                tracing::info!(
                    path = %self.folder.join(&name).display(),
                    "removed a temp file left by an interrupted write"
                );
            }
        }
    }

    fn symlink(&self) -> FileError {
        FileError::Symlink {
            path: self.path.clone(),
        }
    }

    fn io(&self, action: &'static str, source: Errno) -> FileError {
        FileError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

/// The kind of file a stat describes (regular, link, folder…).
fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// The errno behind an I/O error from `std::fs::File` (always an OS error there).
fn errno_of(error: &std::io::Error) -> Errno {
    error.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_or_folder_paths_are_refused() {
        for path in ["relative/file", "/"] {
            let err = ManagedFile::new(Path::new(path), 0o600, None, None).unwrap_err();
            assert!(matches!(err, FileError::BadPath { .. }), "{path}: {err}");
        }
    }

    #[test]
    fn io_errors_show_the_path_and_errno_name() {
        let err = FileError::Io {
            action: "writing temp file for",
            path: PathBuf::from("/x/credentials"),
            source: Errno::ENOSPC,
        };
        let shown = crate::error_chain::render(&err);
        assert!(
            shown.contains("/x/credentials") && shown.contains("ENOSPC"),
            "{shown}"
        );
    }
}

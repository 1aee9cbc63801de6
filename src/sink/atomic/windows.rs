//! Atomic replacement of one file that other programs read, on Windows: the only way a sink
//! touches the disk there. The unix build has its own module with the same API.
//!
//! A write goes to a temp file in the same folder (created new, never opened over an existing
//! name), is flushed to disk, then renamed over the target: `std::fs::rename` replaces an
//! existing target in one step (`MoveFileExW` with `MOVEFILE_REPLACE_EXISTING`, or the POSIX
//! rename of `SetFileInformationByHandle` on newer Windows). A reader sees the whole old file
//! or the whole new one; after a crash at most a temp file (`.NAME.<random>.imds-credd-tmp`)
//! is left, which the next write through the same [`ManagedFile`] sweeps away.
//!
//! What differs from unix, on purpose:
//! - There is no mode, owner or group. A new file takes the inheritable ACL of its folder,
//!   so the folder's ACL decides who can read it (`C:\ProgramData\imds-credd` admits
//!   SYSTEM and Administrators by default; a folder under a user profile admits that user).
//!   Config validation refuses `owner` and `group` on Windows, and [`ManagedFile::new`]
//!   refuses them too; the configured `mode` is not applied.
//! - Missing folders are created with the ACL they inherit from their parent.
//! - A reparse point (symbolic link, junction) at the target is refused, as a link is on unix.
//! - A reader that holds the target open without `FILE_SHARE_DELETE` makes the rename fail
//!   with "access denied"; the sink logs it and retries with backoff.
//!
//! Errors name the path and carry the OS error as their source; the temp file is removed on
//! every error path.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;

use super::{leftover_temps, temp_name, MAX_FILE_SIZE};
use crate::failure::Fault;

/// Why a file could not be read, replaced or removed. Messages name the path, never content.
#[derive(Debug, Error)]
pub enum FileError {
    /// A symbolic link or junction is at the target.
    #[error("{}: is a symbolic link or junction; refusing to write through it", .path.display())]
    Symlink {
        /// The target.
        path: PathBuf,
    },
    /// Something other than a file is at the target.
    #[error("{}: is not a regular file", .path.display())]
    NotRegularFile {
        /// The target.
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
    /// A key with no Windows meaning is set.
    #[error("{}: `{key}` is not supported on Windows; the folder's ACL decides who can read the file", .path.display())]
    Unsupported {
        /// The target.
        path: PathBuf,
        /// The key (`owner`, `group`).
        key: &'static str,
    },
    /// A file operation failed.
    #[error("{action} {}", .path.display())]
    Io {
        /// What was being done (`open`, `rename`…).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    /// Whose move it is: not an absolute path or a key Windows does not support is in what
    /// the operator wrote; the rest is the state of the file system.
    pub fn fault(&self) -> Fault {
        match self {
            FileError::BadPath { .. } | FileError::Unsupported { .. } => Fault::Setup,
            FileError::Symlink { .. }
            | FileError::NotRegularFile { .. }
            | FileError::TooLarge { .. }
            | FileError::Io { .. } => Fault::Unavailable,
        }
    }
}

/// What is at the target now.
#[derive(Debug)]
pub struct Existing {
    /// What it holds.
    pub contents: Vec<u8>,
}

/// One file the daemon owns.
#[derive(Debug)]
pub struct ManagedFile {
    path: PathBuf,
    folder: PathBuf,
    name: OsString,
    /// Set once leftovers of a crashed run have been swept from the folder.
    swept: AtomicBool,
}

impl ManagedFile {
    /// `path` must be absolute and name a file. `mode` does not apply on Windows (see the
    /// module doc); `owner` and `group` are refused.
    pub fn new(
        path: &Path,
        _mode: u32,
        owner: Option<String>,
        group: Option<String>,
    ) -> Result<ManagedFile, FileError> {
        for (key, value) in [("owner", &owner), ("group", &group)] {
            if value.is_some() {
                return Err(FileError::Unsupported {
                    path: path.to_path_buf(),
                    key,
                });
            }
        }
        let (folder, name) = super::split_target(path)?;
        Ok(ManagedFile {
            path: path.to_path_buf(),
            folder,
            name,
            swept: AtomicBool::new(false),
        })
    }

    /// The target.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The target's contents; `None` when it (or its folder) does not exist. Refuses a
    /// link, a folder, or a huge file.
    pub fn read(&self) -> Result<Option<Existing>, FileError> {
        if !self.check_target()? {
            return Ok(None);
        }
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("opening", e)),
        };
        let mut contents = Vec::new();
        file.take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut contents)
            .map_err(|e| self.io("reading", e))?;
        if contents.len() as u64 > MAX_FILE_SIZE {
            return Err(FileError::TooLarge {
                path: self.path.clone(),
            });
        }
        Ok(Some(Existing { contents }))
    }

    /// Replaces the target with `contents` unless `existing` (what [`Self::read`] gave)
    /// already holds them. Returns whether it wrote.
    pub fn replace_if_changed(
        &self,
        existing: Option<&Existing>,
        contents: &[u8],
    ) -> Result<bool, FileError> {
        if existing.is_some_and(|e| e.contents == contents) {
            return Ok(false);
        }
        self.replace(contents)?;
        Ok(true)
    }

    /// Replaces the target with `contents` atomically, creating missing folders.
    pub fn replace(&self, contents: &[u8]) -> Result<(), FileError> {
        std::fs::create_dir_all(&self.folder).map_err(|e| self.io("creating folder of", e))?;
        self.check_target()?;
        self.sweep_once();
        let (temp_path, mut temp) = self.create_temp()?;
        let written = temp
            .write_all(contents)
            .and_then(|()| temp.sync_all())
            .map_err(|e| self.io("writing temp file for", e))
            .and_then(|()| {
                // Closed before the rename: Windows cannot rename a file we hold open
                // without delete sharing.
                drop(temp);
                std::fs::rename(&temp_path, &self.path)
                    .map_err(|e| self.io("renaming temp file over", e))
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp_path);
            return Err(e);
        }
        Ok(())
    }

    /// Deletes the target. Returns whether there was one.
    pub fn remove(&self) -> Result<bool, FileError> {
        if !self.check_target()? {
            return Ok(false);
        }
        self.sweep_once();
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("removing", e)),
        }
    }

    /// Whether the target exists; refuses one that is a link or not a regular file.
    fn check_target(&self) -> Result<bool, FileError> {
        let meta = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.io("inspecting", e)),
        };
        if meta.file_type().is_symlink() {
            return Err(FileError::Symlink {
                path: self.path.clone(),
            });
        }
        if !meta.is_file() {
            return Err(FileError::NotRegularFile {
                path: self.path.clone(),
            });
        }
        Ok(true)
    }

    /// Creates `.NAME.<random>.imds-credd-tmp`, never opening an existing name.
    fn create_temp(&self) -> Result<(PathBuf, std::fs::File), FileError> {
        let mut last = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
        for _ in 0..16 {
            let temp_path = self.folder.join(temp_name(&self.name, fastrand::u64(..)));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp_path)
            {
                Ok(file) => return Ok((temp_path, file)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = e,
                Err(e) => return Err(self.io("creating temp file for", e)),
            }
        }
        Err(self.io("creating temp file for", last))
    }

    /// Removes, on this file's first write or removal, the temp files a crashed run left
    /// behind. Best effort: a leftover that cannot be removed does not stop the write.
    fn sweep_once(&self) {
        if self.swept.swap(true, Ordering::Relaxed) {
            return;
        }
        for entry in leftover_temps(&self.folder, &self.name) {
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file && std::fs::remove_file(entry.path()).is_ok() {
                tracing::info!(
                    path = %entry.path().display(),
                    "removed a temp file left by an interrupted write"
                );
            }
        }
    }

    fn io(&self, action: &'static str, source: std::io::Error) -> FileError {
        FileError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

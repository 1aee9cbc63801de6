//! Safe, atomic replacement of one file that other programs read: the only way a sink
//! touches the disk. One API ([`ManagedFile`]) on both platforms: unix calls (`openat`,
//! `fchown`…) in `unix`, their Windows counterparts in `windows`.

use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
mod unix;
#[cfg(target_os = "linux")]
pub use unix::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// Files we rewrite are small (a credentials file, a few assignment lines); anything bigger
/// at the target is not what we think it is, and is refused rather than read into memory.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Suffix of our temp files; with the target's name in front, it tells a leftover of a
/// crashed write from anything else in the folder.
pub(crate) const TEMP_SUFFIX: &str = ".imds-credd-tmp";

/// The folder and file name of an absolute target path, or `None` when the path is relative
/// or does not end in a plain name (`/`, `..`): a sink replaces its file by renaming a
/// temp file inside that folder.
pub(crate) fn split_target(path: &Path) -> Option<(PathBuf, std::ffi::OsString)> {
    if !path.is_absolute() {
        return None;
    }
    let name = match path.components().next_back() {
        Some(std::path::Component::Normal(name)) => name.to_os_string(),
        _ => return None,
    };
    Some((path.parent()?.to_path_buf(), name))
}

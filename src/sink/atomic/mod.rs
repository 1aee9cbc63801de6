//! Safe, atomic replacement of one file that other programs read: the only way a sink
//! touches the disk. One API ([`ManagedFile`]) on both platforms: unix calls (`openat`,
//! `fchown`…) in `unix`, their Windows counterparts in `windows`.

use std::ffi::{OsStr, OsString};
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
const TEMP_SUFFIX: &str = ".imds-credd-tmp";

/// `.NAME.`: what every temp file of the target named `target` starts with.
fn temp_prefix(target: &OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(target);
    prefix.push(".");
    prefix
}

/// `.NAME.<random>.imds-credd-tmp`: a temp file for the target named `target`, renamed over
/// it once written.
fn temp_name(target: &OsStr, random: u64) -> OsString {
    let mut name = temp_prefix(target);
    name.push(format!("{random:016x}{TEMP_SUFFIX}"));
    name
}

/// The temp files of the target named `target` in `folder`: what crashed writes left
/// behind. A folder that cannot be listed has none (the sweep is best effort); each entry
/// is only a name to act on with the platform's own checks.
fn leftover_temps(folder: &Path, target: &OsStr) -> Vec<std::fs::DirEntry> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let prefix = temp_prefix(target);
    entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .as_encoded_bytes()
                .strip_prefix(prefix.as_encoded_bytes())
                .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX.as_bytes()))
                .is_some_and(|random| {
                    random.len() == 16 && random.iter().all(u8::is_ascii_hexdigit)
                })
        })
        .collect()
}

/// The folder and file name of an absolute target path; [`FileError::BadPath`] when the
/// path is relative or does not end in a plain name (`/`, `..`): a sink replaces its file
/// by renaming a temp file inside that folder.
fn split_target(path: &Path) -> Result<(PathBuf, OsString), FileError> {
    let bad = || FileError::BadPath {
        path: path.to_path_buf(),
    };
    if !path.is_absolute() {
        return Err(bad());
    }
    let name = match path.components().next_back() {
        Some(std::path::Component::Normal(name)) => name.to_os_string(),
        _ => return Err(bad()),
    };
    let folder = path.parent().ok_or_else(bad)?;
    Ok((folder.to_path_buf(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_targets_temp_names_are_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let target = OsStr::new("credentials");
        let ours = temp_name(target, 0x0123_4567_89ab_cdef);
        assert_eq!(ours, ".credentials.0123456789abcdef.imds-credd-tmp");
        let others = [
            ".credentials.0123456789abcdeg.imds-credd-tmp",
            ".credentials.0123456789abcde.imds-credd-tmp",
            ".credentials2.0123456789abcdef.imds-credd-tmp",
            ".credentials.0123456789abcdef.imds-credd-tmp.bak",
            "credentials",
        ];
        for name in others.iter().map(OsStr::new).chain([ours.as_os_str()]) {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let found: Vec<OsString> = leftover_temps(dir.path(), target)
            .iter()
            .map(std::fs::DirEntry::file_name)
            .collect();
        assert_eq!(found, [ours]);
        assert!(leftover_temps(&dir.path().join("missing"), target).is_empty());
    }
}

//! Who owns a managed file: the configured owner and group resolved to ids on every
//! write, and the checks the file already at the target must pass before it is read,
//! replaced or removed: a regular file (not a link, FIFO, device, socket or folder) with
//! exactly one link, owned by the daemon's user or the configured owner. A second hard link
//! would let whoever made it read what the daemon merges into the file (its other
//! sections) under a name of their choosing, or point the daemon at another sink's file.

use super::{file_type, FileError, ManagedFile};
use nix::errno::Errno;
use nix::sys::stat::{fstatat, FileStat, SFlag};
use nix::unistd::{geteuid, Gid, Group, Uid, User};
use std::os::fd::OwnedFd;

/// Who should own a written file; `None` keeps the daemon's own uid or gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileOwner {
    /// The uid to give the file.
    pub uid: Option<Uid>,
    /// The gid to give the file.
    pub gid: Option<Gid>,
}

impl FileOwner {
    /// Resolves `owner`/`group` (a name, or a number used as is) through the system's user
    /// database. Called on every write rather than once at start: on a fresh instance the
    /// user may be created by cloud-init after the daemon starts, and the sink recovers by
    /// itself once it exists.
    pub fn resolve(owner: Option<&str>, group: Option<&str>) -> Result<FileOwner, FileError> {
        Ok(FileOwner {
            uid: lookup_id(owner, "owner", "user", Uid::from_raw, |name| {
                User::from_name(name).map(|user| user.map(|u| u.uid))
            })?,
            gid: lookup_id(group, "group", "group", Gid::from_raw, |name| {
                Group::from_name(name).map(|group| group.map(|g| g.gid))
            })?,
        })
    }
}

/// A user or group id from a config value: a number as is, else a name looked up.
fn lookup_id<T>(
    value: Option<&str>,
    key: &'static str,
    what: &'static str,
    from_raw: fn(u32) -> T,
    by_name: fn(&str) -> nix::Result<Option<T>>,
) -> Result<Option<T>, FileError> {
    let Some(text) = value else {
        return Ok(None);
    };
    if let Ok(n) = text.parse::<u32>() {
        return Ok(Some(from_raw(n)));
    }
    let name = || text.to_string();
    match by_name(text) {
        Ok(Some(id)) => Ok(Some(id)),
        Ok(None) => Err(FileError::UnknownId {
            key,
            what,
            name: name(),
        }),
        Err(source) => Err(FileError::Lookup {
            what,
            name: name(),
            source,
        }),
    }
}

impl ManagedFile {
    /// Looks at the target without following a link: `None` if missing, else its stat once
    /// it passed [`Self::check_target`].
    pub(super) fn inspect_target(
        &self,
        folder: &OwnedFd,
        owner: &FileOwner,
    ) -> Result<Option<FileStat>, FileError> {
        match fstatat(
            folder,
            self.name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => self.check_target(&stat, owner).map(|()| Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.io("inspecting", e)),
        }
    }

    pub(super) fn check_target(&self, stat: &FileStat, owner: &FileOwner) -> Result<(), FileError> {
        self.check_kind(stat)?;
        let daemon = geteuid().as_raw();
        if stat.st_uid != daemon && Some(stat.st_uid) != owner.uid.map(Uid::as_raw) {
            return Err(FileError::ForeignOwner {
                path: self.path.clone(),
                uid: stat.st_uid,
                daemon,
            });
        }
        Ok(())
    }

    /// A regular file with one link: not a link, FIFO, device, socket or folder.
    pub(super) fn check_kind(&self, stat: &FileStat) -> Result<(), FileError> {
        match file_type(stat) {
            SFlag::S_IFREG => {}
            SFlag::S_IFLNK => return Err(self.symlink()),
            _ => {
                return Err(FileError::NotRegularFile {
                    path: self.path.clone(),
                })
            }
        }
        if stat.st_nlink > 1 {
            return Err(FileError::HardLinked {
                path: self.path.clone(),
                links: stat.st_nlink,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_and_group_are_named() {
        let err = FileOwner::resolve(Some("no-such-user-imds-credd"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "owner \"no-such-user-imds-credd\": no such user"
        );
        let err = FileOwner::resolve(None, Some("no-such-group-imds-credd")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "group \"no-such-group-imds-credd\": no such group"
        );
        let ids = FileOwner::resolve(Some("65534"), Some("root")).unwrap();
        assert_eq!(ids.uid, Some(Uid::from_raw(65534)));
        assert_eq!(ids.gid, Some(Gid::from_raw(0)));
    }
}

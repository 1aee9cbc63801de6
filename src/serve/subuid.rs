//! Subordinate uids (`/etc/subuid`): with `uidmap` installed (Podman pulls it in), a user
//! may run processes under each uid of its ranges (65,536 by default on Debian), and each
//! would otherwise count as a user of its own for every per-uid limit. A uid inside another
//! user's range counts as that user: its connections, its rate limit and its consumer rows
//! are the owner's ([`crate::serve::server`], [`crate::serve::rate_limit`],
//! [`crate::serve::consumers`]), with the subordinate uid kept beside it in the rows.
//!
//! The file (`NAME_OR_UID:START:COUNT` lines) is read on the blocking pool, at the first
//! connection and again when it changed (its inode, size or mtime), looked at no more than
//! every [`RECHECK`]: never per connection. A missing file means no subordinate uids; a
//! line that does not parse, or names an unknown user, is skipped with a warning.

use nix::unistd::User;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The system's file.
const SUBUID_FILE: &str = "/etc/subuid";
/// How often the file is looked at for a change, at most.
pub const RECHECK: Duration = Duration::from_secs(5);
/// Bytes read at most (a line per user: ample).
const READ_LIMIT: u64 = 4 * 1024 * 1024;

/// The subordinate uid ranges, kept up to date with the file.
#[derive(Debug, Clone)]
pub struct SubordinateIds {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ranges: Arc<Vec<Range>>,
    /// What the file looked like when read: (device, inode, size, mtime in ns).
    stamp: Option<(u64, u64, u64, i64)>,
    checked: Option<Instant>,
    checking: bool,
}

/// `count` uids from `start`, owned by `owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u32,
    count: u32,
    owner: u32,
}

impl SubordinateIds {
    /// The system's `/etc/subuid`. (With the `test-util` feature, the file named by
    /// `IMDS_CREDD_TEST_SUBUID_FILE` when set, so tests need not touch the system's.)
    pub fn system() -> Self {
        #[cfg(feature = "test-util")]
        if let Some(path) = std::env::var_os("IMDS_CREDD_TEST_SUBUID_FILE") {
            return Self::at(PathBuf::from(path));
        }
        Self::at(PathBuf::from(SUBUID_FILE))
    }

    fn at(path: PathBuf) -> Self {
        SubordinateIds {
            inner: Arc::new(Inner {
                path,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The user whose range holds `uid`, when that is another user than `uid` itself.
    pub async fn owner_of(&self, uid: u32) -> Option<u32> {
        self.refresh_if_due().await;
        let ranges = Arc::clone(&self.inner.lock().ranges);
        ranges
            .iter()
            .find(|r| uid >= r.start && u64::from(uid) < u64::from(r.start) + u64::from(r.count))
            .map(|r| r.owner)
            .filter(|owner| *owner != uid)
    }

    /// Reads the file again on the blocking pool if [`RECHECK`] has passed since the last
    /// look and it changed. One caller looks; the others use the ranges as they are.
    async fn refresh_if_due(&self) {
        {
            let mut state = self.inner.lock();
            let due = state.checked.is_none_or(|at| at.elapsed() >= RECHECK);
            if state.checking || !due {
                return;
            }
            state.checking = true;
        }
        let inner = Arc::clone(&self.inner);
        // Finishes (and clears `checking`) even if this caller stops waiting.
        let _ = tokio::task::spawn_blocking(move || inner.refresh()).await;
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refresh(&self) {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| {
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
            )
        });
        let changed = self.lock().stamp != stamp;
        let ranges = changed.then(|| self.read());
        let mut state = self.lock();
        if let Some(ranges) = ranges {
            state.ranges = Arc::new(ranges);
            state.stamp = stamp;
        }
        // Monotonic: how often the file is looked at, whatever the wall clock does.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        state.checked = Some(now);
        state.checking = false;
    }

    fn read(&self) -> Vec<Range> {
        use std::io::Read;
        let mut text = String::new();
        let opened = std::fs::File::open(&self.path);
        let read = opened.and_then(|file| file.take(READ_LIMIT).read_to_string(&mut text));
        match read {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), error = %crate::error_chain::render(&error), "cannot read the subordinate uids; counting none");
                return Vec::new();
            }
        }
        let (ranges, skipped) = parse(&text, |name| {
            User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
        });
        if skipped > 0 {
            tracing::warn!(path = %self.path.display(), skipped, "skipped lines of the subordinate uids that do not parse or name no user");
        }
        tracing::info!(path = %self.path.display(), ranges = ranges.len(), "read the subordinate uids");
        ranges
    }
}

/// The ranges of `text`, and how many lines were skipped; `uid_of` resolves a user name.
fn parse(text: &str, uid_of: impl Fn(&str) -> Option<u32>) -> (Vec<Range>, usize) {
    let mut skipped = 0;
    let ranges = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let range = (|| {
                let mut fields = line.split(':');
                let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
                let owner = who.parse().ok().or_else(|| uid_of(who))?;
                Some(Range {
                    start: start.parse().ok()?,
                    count: count.parse().ok()?,
                    owner,
                })
            })();
            skipped += usize::from(range.is_none());
            range
        })
        .collect();
    (ranges, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_uids_and_skips_what_does_not_parse() {
        let text = "# comment\nalice:100000:65536\n1001:165536:65536\nbob:1:x\nnobody-here:5:5\n\n";
        let (ranges, skipped) = parse(text, |name| (name == "alice").then_some(1000));
        assert_eq!(
            ranges,
            [
                Range {
                    start: 100_000,
                    count: 65_536,
                    owner: 1000
                },
                Range {
                    start: 165_536,
                    count: 65_536,
                    owner: 1001
                },
            ]
        );
        assert_eq!(skipped, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_uid_in_a_range_counts_as_its_owner_and_a_change_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subuid");
        std::fs::write(&path, "1000:100000:10\n").unwrap();
        let ids = SubordinateIds::at(path.clone());
        assert_eq!(ids.owner_of(100_000).await, Some(1000));
        assert_eq!(ids.owner_of(100_009).await, Some(1000));
        assert_eq!(ids.owner_of(100_010).await, None);
        assert_eq!(ids.owner_of(1000).await, None, "the owner itself");
        std::fs::write(&path, "2000:100000:100\n").unwrap();
        assert_eq!(
            ids.owner_of(100_000).await,
            Some(1000),
            "not looked at again before RECHECK"
        );
        ids.inner.lock().checked = None;
        assert_eq!(ids.owner_of(100_050).await, Some(2000));
        std::fs::remove_file(&path).unwrap();
        ids.inner.lock().checked = None;
        assert_eq!(ids.owner_of(100_050).await, None, "no file, no ranges");
    }
}

//! The cross-check of a unit's name against its process: systemd connects from the unit's
//! about-to-exec process, already in the unit's cgroup (`/proc/PID/cgroup`
//! `0::/system.slice/backup.service`). Read off the async workers, bounded in size and
//! time; where `/proc` does not show it (another pid namespace, `ProtectProc=invisible`),
//! there is nothing to check and the peer's uid decides alone.

use std::io::Read;
use std::time::Duration;

/// Longest `/proc/PID/cgroup` read; a real one is a line or a dozen.
const CGROUP_MAX: u64 = 8192;
/// How long the read may take before the check is skipped.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// The types of units a process can sit in (the deepest such path component is its unit).
const PROCESS_UNIT_TYPES: &[&str] = &["service", "scope", "socket", "mount", "swap"];

/// The unit the process `pid` runs in, if `/proc` shows one.
pub async fn unit_of_pid(pid: i32) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    let read = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::fs::File::open(format!("/proc/{pid}/cgroup"))
            .ok()?
            .take(CGROUP_MAX)
            .read_to_string(&mut text)
            .ok()?;
        unit_in_cgroup(&text).map(str::to_string)
    });
    tokio::time::timeout(READ_TIMEOUT, read).await.ok()?.ok()?
}

/// The deepest unit in a `/proc/PID/cgroup` text: from the unified hierarchy's line
/// (`0::/…`), else the legacy `name=systemd` one; `None` when neither names a unit.
pub fn unit_in_cgroup(text: &str) -> Option<&str> {
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .or_else(|| {
            text.lines()
                .find_map(|line| line.split_once(":name=systemd:").map(|(_, path)| path))
        })?;
    path.rsplit('/').find(|component| {
        component
            .rsplit_once('.')
            .is_some_and(|(stem, kind)| !stem.is_empty() && PROCESS_UNIT_TYPES.contains(&kind))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_unit_of_the_cgroup_path() {
        assert_eq!(
            unit_in_cgroup("0::/system.slice/job.service\n"),
            Some("job.service")
        );
        assert_eq!(
            unit_in_cgroup(
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/sync.service"
            ),
            Some("sync.service")
        );
        assert_eq!(
            unit_in_cgroup("0::/system.slice/job.service/payload"),
            Some("job.service"),
            "a delegated subgroup"
        );
        assert_eq!(
            unit_in_cgroup("12:pids:/x\n1:name=systemd:/system.slice/old.service\n0::/\n"),
            None,
            "the unified line wins, and names no unit"
        );
        assert_eq!(
            unit_in_cgroup("1:name=systemd:/system.slice/old.service\n"),
            Some("old.service")
        );
        assert_eq!(unit_in_cgroup("0::/init.scope"), Some("init.scope"));
        assert_eq!(unit_in_cgroup("0::/user.slice"), None);
        assert_eq!(unit_in_cgroup(""), None);
    }

    #[tokio::test]
    async fn our_own_process_shows_its_cgroup_or_nothing() {
        let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let pid = std::process::id() as i32;
        assert_eq!(unit_of_pid(pid).await.as_deref(), unit_in_cgroup(&ours));
        assert_eq!(unit_of_pid(0).await, None);
    }
}

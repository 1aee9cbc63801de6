//! The daemon run as its systemd unit runs it: an unprivileged uid holding exactly the
//! unit's capabilities (ambient, inheritable and bounding, no new privileges: what systemd
//! does for `User=` and the capability lines), and local attackers as other uids without
//! any. Needs root and `setpriv`.

use std::path::Path;
use std::process::Command;

/// Uid (and gid) of the throwaway daemon user.
pub const DAEMON_UID: u32 = 64_243;
/// A local user whose files a sink writes.
pub const APP_UID: u32 = 64_242;
/// A local user who attacks the daemon.
pub const ATTACKER_UID: u32 = 64_244;

/// The capabilities the unit grants (`AmbientCapabilities=`), as setpriv spells them
/// (`CAP_CHOWN` → `chown`); the bounding set must be the same list.
pub fn unit_capabilities() -> Vec<String> {
    let unit_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/imds-credd.service");
    let unit = std::fs::read_to_string(unit_path).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .to_string()
    };
    let ambient = value("AmbientCapabilities=");
    assert_eq!(ambient, value("CapabilityBoundingSet="));
    ambient
        .split_whitespace()
        .map(|cap| cap.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// `program` to run as `uid` (and gid `uid`, no supplementary groups, no new privileges)
/// holding exactly `caps`; an empty list runs it with none.
pub fn as_user(uid: u32, caps: &[String], program: impl AsRef<std::ffi::OsStr>) -> Command {
    let set = |prefix: &str| {
        let plus: String = caps.iter().map(|c| format!(",+{c}")).collect();
        format!("{prefix}=-all{plus}")
    };
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--no-new-privs"])
        .arg(set("--inh-caps"))
        .arg(set("--ambient-caps"))
        .arg(set("--bounding-set"))
        .arg("--")
        .arg(program);
    command
}

/// Why a test that needs root and setpriv cannot run here, if it cannot.
pub fn missing_privileges() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to run the daemon and the attacker as other users");
    }
    let found = Command::new("sh")
        .args(["-c", "command -v setpriv"])
        .output()
        .is_ok_and(|o| o.status.success());
    (!found).then_some("needs setpriv (util-linux)")
}

/// True in CI (`CI` set and non-empty, as `.ci/run` exports it): a test must not skip there.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Skips (one printed line) a test whose needs are missing, except in CI, where it fails.
pub fn skip_unless_privileged(test: &str) -> bool {
    match missing_privileges() {
        None => false,
        Some(reason) if in_ci() => panic!("{test}: {reason}, and CI must run it"),
        Some(reason) => {
            println!("SKIPPED {test}: {reason}");
            true
        }
    }
}

//! The daemon run as the systemd unit runs it: an unprivileged uid holding exactly the
//! unit's capabilities (ambient, inheritable and bounding, no new privileges: what systemd
//! does for `User=` and the capability lines), and other local users, through `setpriv`.
//! Switching uids needs root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The throwaway daemon user (`User=imds-credd` in the unit).
pub const DAEMON_UID: u32 = 64_243;
/// A user whose files a sink writes (a sink's `owner`).
pub const APP_UID: u32 = 64_242;
/// Another local user, owner of nothing the daemon serves.
pub const ATTACKER_UID: u32 = 64_244;

/// Whether this machine can switch uids (root and setpriv); when it cannot, the test is
/// skipped with one line, or fails in CI (see [`super::require`]).
#[must_use]
pub fn can_switch_users() -> bool {
    super::require::root("run processes as other users") && super::require::tool("setpriv")
}

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

/// `setpriv … --`: what follows runs as [`DAEMON_UID`] holding exactly `caps`.
pub fn as_daemon_user(caps: &[String]) -> Command {
    let set = |prefix: &str| {
        let plus: String = caps.iter().map(|c| format!(",+{c}")).collect();
        format!("{prefix}=-all{plus}")
    };
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={DAEMON_UID}"))
        .arg(format!("--regid={DAEMON_UID}"))
        .args(["--clear-groups", "--no-new-privs"])
        .arg(set("--inh-caps"))
        .arg(set("--ambient-caps"))
        .arg(set("--bounding-set"))
        .arg("--");
    command
}

/// `setpriv … --`: what follows runs as plain `uid` (group `uid`, no capabilities).
pub fn as_user(uid: u32) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--inh-caps=-all", "--"]);
    command
}

/// A copy in `dir` of `tests/support/local_flood.py` that other users can read (the
/// checkout may sit in a folder only its owner enters), made once: copying again would
/// rewrite it under an interpreter still reading it.
pub fn local_flood_script(dir: &Path) -> PathBuf {
    let script = dir.join("local_flood.py");
    if !script.exists() {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/local_flood.py"),
            &script,
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    script
}

/// Runs `local_flood.py MODE ARGS…` (copied into `dir`) as [`ATTACKER_UID`], its output
/// piped.
pub fn local_flood_as_attacker(dir: &Path, args: &[&str]) -> Child {
    as_user(ATTACKER_UID)
        .arg("/usr/bin/python3")
        .arg(local_flood_script(dir))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 runs as the attacker")
}

/// The numbers a `local_flood.py` run printed, once it ended (it must exit 0).
pub fn local_flood_report(flood: Child) -> Vec<u64> {
    let output = flood.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The `Cap…` lines (`CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`) of a
/// `/proc/PID/status` text, by name.
pub fn capability_sets(status: &str) -> std::collections::BTreeMap<String, u64> {
    status
        .lines()
        .filter_map(|line| line.split_once(":\t"))
        .filter(|(name, _)| name.starts_with("Cap"))
        .map(|(name, hex)| {
            (
                name.to_string(),
                u64::from_str_radix(hex.trim(), 16).unwrap(),
            )
        })
        .collect()
}

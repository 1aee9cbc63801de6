//! The daemon as its systemd unit runs it: an unprivileged uid holding exactly the unit's
//! capabilities (ambient, inheritable and bounding, no new privileges: what systemd does for
//! the unit's `User=` and capability lines), through `setpriv`. The packaging test checks
//! the capability set with it; other tests run the daemon this way to see what it may see.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::Path;
use std::process::Command;

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

/// `setpriv … -- program` running `program` as `uid` (and its own gid, no supplementary
/// groups) with exactly `caps`.
pub fn as_daemon_user(uid: u32, caps: &[String], program: &str) -> Command {
    let set = |prefix: &str| {
        let plus: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
        format!(
            "{prefix}=-all{}",
            plus.iter().map(|p| format!(",{p}")).collect::<String>()
        )
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

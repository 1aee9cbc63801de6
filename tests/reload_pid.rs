//! `check-config --reload-pid PID` (the unit's `ExecReload=`): a valid configuration makes
//! the binary send SIGHUP to the daemon itself, so `systemctl reload` needs no `kill`
//! binary; an invalid one is refused and the daemon is not signalled.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use common::daemon_process::{text, Sandbox, BIN};
use std::process::Command;
use std::time::Duration;

const SIGHUP_LINE: &str = "SIGHUP: re-reading the configuration";

#[test]
fn check_config_signals_the_daemon_only_when_the_config_is_valid() {
    let sandbox = Sandbox::healthy();
    let pid = sandbox.daemon_pid().to_string();
    // `check-config --reload-pid PID` on a file `name` holding `config`.
    let check_config = |name: &str, config: &str| {
        let path = sandbox.path(name);
        std::fs::write(&path, config).unwrap();
        Command::new(BIN)
            .args(["check-config", "--config", path.to_str().unwrap()])
            .args(["--reload-pid", &pid])
            .output()
            .unwrap()
    };
    let refused = check_config("bad.toml", "[refresh]\nbefore_expiry = \"15 parsecs\"\n");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("bad.toml:2"),
        "{}",
        text(&refused.stderr)
    );
    let accepted = check_config("good.toml", "[refresh]\nbefore_expiry = \"20m\"\n");
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}",
        text(&accepted.stderr)
    );
    sandbox.wait_until("the daemon to reload", Duration::from_secs(10), || {
        sandbox.daemon_log().contains("configuration reloaded")
    });
    // One SIGHUP: the refused check sent none.
    assert_eq!(sandbox.daemon_log().matches(SIGHUP_LINE).count(), 1);
    assert!(sandbox.served().is_some(), "still serving after the reload");
}

#[test]
fn a_reload_pid_that_names_no_process_is_an_error() {
    let output = Command::new(BIN)
        .args(["check-config", "--config", "/dev/null", "--reload-pid", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--reload-pid 1"));
}

//! What a test needs from the machine (root, a tool). Outside CI a missing need skips the
//! test with one line on the terminal saying which test and why; in CI (the variable `CI`
//! set and non-empty, as `.ci/run` exports) it fails the test, so CI runs everything.

use std::io::Write;
use std::process::Command;

/// Whether this run is CI's: `CI` is set and not empty.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// True when the tests run as root; otherwise skips (or fails in CI) saying `why`.
#[must_use]
pub fn root(why: &str) -> bool {
    nix::unistd::geteuid().is_root() || unavailable(&format!("needs root to {why}"))
}

/// True when `name` is on `PATH`; otherwise skips (or fails in CI) naming it.
#[must_use]
pub fn tool(name: &str) -> bool {
    has_tool(name) || unavailable(&format!("needs `{name}`, which is not installed"))
}

/// Whether `name` is on `PATH`, without skipping.
pub fn has_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Fails in CI; elsewhere prints one line and returns false so the test returns early.
/// The line goes straight to stderr: libtest would swallow `eprintln!` of a passing test.
#[must_use]
pub fn unavailable(reason: &str) -> bool {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(!in_ci(), "{test} {reason}; in CI every test must run");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
    false
}

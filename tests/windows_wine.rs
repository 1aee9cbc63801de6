//! The Windows build, run under Debian's wine: `--version`, `check-config` on a good and a
//! bad file (exit 0 and 2), `demo` serving the API on a named pipe that
//! `credential-process` reads, and the service installed in wine's service manager, started,
//! serving, stopped cleanly and uninstalled. Wine runs in its own prefix under the target
//! folder, so a service left by a failed run never reaches `~/.wine`; it is made once
//! (`wineboot -i` under a lock, then a ready marker) however many tests ask at once. Needs
//! the `x86_64-pc-windows-gnu` Rust target, the mingw linker and wine64 (`.ci/run` installs
//! them); without them it says why and is skipped, except in CI, where that fails.
//!
//! wine 8 lacks `bcryptprimitives.dll`, which Rust's std imports on Windows; the test builds
//! the test-only shim `support/bcryptprimitives-shim.c` next to the .exe.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

const TARGET: &str = "x86_64-pc-windows-gnu";
const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver64";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

/// Why the Windows build cannot run here, if it cannot.
fn missing_tool() -> Option<String> {
    if !Path::new(WINE).exists() {
        return Some(format!("{WINE} not found (apt-get install wine64)"));
    }
    let gcc = Command::new(MINGW_GCC).arg("--version").output();
    if !gcc.is_ok_and(|o| o.status.success()) {
        return Some(format!(
            "{MINGW_GCC} not found (apt-get install gcc-mingw-w64-x86-64)"
        ));
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == TARGET) =>
        {
            None
        }
        _ => Some(format!(
            "Rust target {TARGET} not installed (rustup target add {TARGET})"
        )),
    }
}

/// Builds `imds-credd.exe` and the shim next to it (once per test binary: two tests
/// writing the shim at once could hand wine a half-written DLL), and makes the wine prefix
/// ready; returns the .exe.
fn build_windows_exe() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    let exe = EXE.get_or_init(build_exe_and_shim).clone();
    ready_prefix(&exe);
    exe
}

fn build_exe_and_shim() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--bin",
            "imds-credd",
            "--target",
            TARGET,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the Windows build failed");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let folder = target_dir.join(TARGET).join("debug");
    let shim_source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/bcryptprimitives-shim.c");
    let status = Command::new(MINGW_GCC)
        .args(["-shared", "-o"])
        .arg(folder.join("bcryptprimitives.dll"))
        .arg(&shim_source)
        .arg("-ladvapi32")
        .status()
        .expect("mingw gcc runs");
    assert!(status.success(), "the bcryptprimitives shim did not build");
    folder.join("imds-credd.exe")
}

/// The wine prefix of these tests: `<target>/x86_64-pc-windows-gnu/wine-prefix`.
fn prefix(exe: &Path) -> PathBuf {
    exe.parent().unwrap().parent().unwrap().join("wine-prefix")
}

/// Makes the prefix once: under an exclusive lock on `wine-prefix.lock`, a prefix without
/// its `wine-prefix.ready` marker (missing, or half made by a killed run) is made afresh
/// with `wineboot -i`, and `wineserver -w` waits until wine has finished writing it. Tests
/// that find the marker go straight on; the others wait on the lock. (Two tests creating
/// one prefix at once made wine fail with "chdir to …/server-…: No such file or
/// directory".)
fn ready_prefix(exe: &Path) {
    let prefix = prefix(exe);
    let marker = prefix.with_extension("ready");
    if marker.exists() {
        return;
    }
    let lock_file = std::fs::File::create(prefix.with_extension("lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the wine prefix");
    if marker.exists() {
        return;
    }
    if prefix.exists() {
        std::fs::remove_dir_all(&prefix).unwrap();
    }
    let booted = Command::new(WINE)
        .arg("wineboot")
        .arg("-i")
        .env("WINEDEBUG", "-all")
        .env("WINEPREFIX", &prefix)
        .output()
        .expect("wine runs wineboot");
    assert!(booted.status.success(), "wineboot -i failed: {booted:?}");
    let waited = Command::new(WINESERVER)
        .arg("-w")
        .env("WINEPREFIX", &prefix)
        .output()
        .expect("wineserver runs");
    assert!(waited.status.success(), "wineserver -w failed: {waited:?}");
    std::fs::write(&marker, "").unwrap();
}

fn wine(exe: &Path) -> Command {
    let mut command = Command::new(WINE);
    command
        .arg(exe)
        .env("WINEDEBUG", "-all")
        .env("WINEPREFIX", prefix(exe));
    command
}

/// A wine built-in program (`sc`), in the same prefix.
fn wine_tool(exe: &Path, tool: &str, args: &[&str]) -> Output {
    Command::new(WINE)
        .arg(tool)
        .args(args)
        .env("WINEDEBUG", "-all")
        .env("WINEPREFIX", prefix(exe))
        .output()
        .expect("wine runs")
}

fn run(exe: &Path, args: &[&str]) -> Output {
    wine(exe).args(args).output().expect("wine runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_windows_build_runs_its_commands_under_wine() {
    if let Some(reason) = missing_tool() {
        let _ = common::require::unavailable(&reason);
        return;
    }
    let exe = build_windows_exe();

    let version = run(&exe, &["--version"]);
    assert_eq!(version.status.code(), Some(0), "{version:?}");
    assert!(
        text(&version.stdout).starts_with("imds-credd "),
        "{version:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[env]]\npath = 'C:\\imds-credd\\credentials.ps1'\nformat = \"powershell\"\n\
         [[file]]\npath = 'C:\\imds-credd\\credentials'\nprofile = \"default\"\n\
         on_rotate = [\"cmd\", \"/c\", \"echo\"]\n",
    )
    .unwrap();
    let checked = run(&exe, &["check-config", "--config", good.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");

    // A unix owner means nothing on Windows: refused with the file, line and key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[file]]\npath = 'C:\\imds-credd\\credentials'\nprofile = \"default\"\nowner = \"app\"\n",
    )
    .unwrap();
    let refused = run(&exe, &["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let message = text(&refused.stderr);
    assert!(
        message.contains("bad.toml:1:")
            && message.contains("file.owner")
            && message.contains("not supported on Windows"),
        "{message}"
    );

    // The demo serves the API on a named pipe; credential-process reads it there.
    let mut demo = wine(&exe)
        .args(["demo", "--run-for", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wine runs the demo");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut pipe = None;
    let mut published_key = None;
    while published_key.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo announces its pipe and first credentials");
        if let Some(at) = line.find(r"\\.\pipe\") {
            pipe.get_or_insert_with(|| line[at..].split_whitespace().next().unwrap().to_string());
        }
        if let Some(rest) = line.strip_prefix("[demo] published: access key ") {
            published_key = rest.split_whitespace().next().map(str::to_string);
        }
    }
    let pipe = pipe.expect("the demo names its pipe");
    let answer = run(&exe, &["credential-process", "--socket", &pipe]);
    assert_eq!(answer.status.code(), Some(0), "{answer:?}");
    let document: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
    assert_eq!(document["Version"], 1);
    assert_eq!(document["AccessKeyId"].as_str(), published_key.as_deref());
    assert!(document["SessionToken"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    // No daemon behind a pipe name: "cannot ask", exit 2.
    let absent = run(
        &exe,
        &[
            "credential-process",
            "--socket",
            r"\\.\pipe\imds-credd-absent-test",
        ],
    );
    assert_eq!(absent.status.code(), Some(2), "{absent:?}");
    assert!(
        text(&absent.stderr).contains("no daemon socket"),
        "{absent:?}"
    );

    let status = demo.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the demo stops cleanly after --run-for"
    );
}

#[test]
fn the_windows_service_installs_serves_stops_and_uninstalls_under_wine() {
    if let Some(reason) = missing_tool() {
        let _ = common::require::unavailable(&reason);
        return;
    }
    let exe = build_windows_exe();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime
        .block_on(imds_credd::demo::simulator::ImdsSimulator::start(
            imds_credd::demo::simulator::SimulatorOptions::default(),
        ))
        .expect("the IMDS simulator starts");
    // A service left by an earlier failed run would hold the pipe name.
    let _ = run(&exe, &["service", "uninstall"]);
    if let Some(old) = service_log_path(&exe) {
        std::fs::remove_file(old).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    let pipe = r"\\.\pipe\imds-credd-service-test";
    std::fs::write(
        &config,
        format!(
            "[imds]\nendpoint = \"{}\"\n[socket]\npath = '{pipe}'\n",
            sim.endpoint()
        ),
    )
    .unwrap();
    let installed = run(
        &exe,
        &["service", "install", "--config", config.to_str().unwrap()],
    );
    assert_eq!(installed.status.code(), Some(0), "{installed:?}");
    // Wine starts automatic services whenever it boots the prefix, which may happen between
    // two commands; then `sc start` fails as "already running". Either way it must run.
    let _ = wine_tool(&exe, "sc", &["start", "imds-credd"]);
    let queried = wine_tool(&exe, "sc", &["query", "imds-credd"]);
    assert!(text(&queried.stdout).contains("RUNNING"), "{queried:?}");

    let mut answer = run(&exe, &["credential-process", "--socket", pipe]);
    for _ in 0..30 {
        if answer.status.code() == Some(0) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        answer = run(&exe, &["credential-process", "--socket", pipe]);
    }
    assert_eq!(answer.status.code(), Some(0), "{answer:?}");
    let document: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
    let issued = sim
        .current_credentials()
        .expect("the simulator issued credentials");
    assert_eq!(
        document["AccessKeyId"].as_str(),
        Some(issued.access_key_id.as_str())
    );

    let stopped = wine_tool(&exe, "sc", &["stop", "imds-credd"]);
    assert!(text(&stopped.stdout).contains("imds-credd"), "{stopped:?}");
    let uninstalled = run(&exe, &["service", "uninstall"]);
    assert_eq!(uninstalled.status.code(), Some(0), "{uninstalled:?}");

    // The SCM stop reached the daemon: its log (a file, the service has no console) shows
    // an orderly stop after the start.
    let log = service_log(&exe);
    let started_at = log
        .rfind("imds-credd started")
        .expect("the log shows the start");
    let stopping_at = log[started_at..].find("stopping").map(|i| started_at + i);
    let stopped_at = stopping_at.and_then(|at| log[at..].find("INFO stopped"));
    assert!(stopped_at.is_some(), "{log}");
    for secret in [
        issued.secret_access_key.expose(),
        issued.session_token.expose(),
    ] {
        assert!(!log.contains(secret), "a secret reached the service log");
    }
    runtime.block_on(sim.shutdown());
}

/// `%ProgramData%\imds-credd\imds-credd.log` inside the prefix (wine 8 keeps ProgramData
/// under `users/Public`; newer wine under `ProgramData`).
fn service_log_path(exe: &Path) -> Option<PathBuf> {
    let drive_c = prefix(exe).join("drive_c");
    ["ProgramData", "users/Public"]
        .iter()
        .map(|base| drive_c.join(base).join("imds-credd/imds-credd.log"))
        .find(|path| path.exists())
}

fn service_log(exe: &Path) -> String {
    let path = service_log_path(exe).expect("the service wrote its log");
    std::fs::read_to_string(path).unwrap()
}

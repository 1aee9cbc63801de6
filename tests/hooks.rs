//! Rotation hooks with real child processes: commands run without a shell and without
//! capabilities, output and exit status logged, a command past its timeout killed, a signal
//! delivered to the process a pid file names, and bad pid files refused (what they hold,
//! who owns them, who may write them, what they are). The same attacks against the daemon
//! binary run as the unit runs it are in `local_attacker.rs`.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;

use common::unit_user::capability_sets;
use common::LogCapture;
use imds_credd::config::SignalConfig;
use imds_credd::sink::hooks::{CommandOutcome, HookError, RotationHooks};
use imds_credd::sink::pid_file::PidFileError;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn command_hooks(items: &[&str]) -> RotationHooks {
    RotationHooks::new("file /tmp/test", Some(&argv(items)), None).unwrap()
}

fn signal_hooks(pid_file: &Path, signal: &str) -> RotationHooks {
    let config = SignalConfig {
        pid_file: pid_file.to_path_buf(),
        signal: signal.to_string(),
    };
    RotationHooks::new("env /tmp/test", None, Some(&config)).unwrap()
}

/// Polls (real time, bounded) until `path` has non-empty content.
async fn wait_for_file(path: &Path) -> String {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.trim().is_empty() {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} never appeared", path.display());
}

#[tokio::test]
async fn a_command_runs_directly_without_a_shell_and_with_empty_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let literal = dir.path().join("$(id);x");
    let hooks = command_hooks(&["touch", literal.to_str().unwrap()]);
    let report = hooks.after_publish().await.unwrap();
    assert!(matches!(report.command, Some(Ok(CommandOutcome::Exited(s))) if s.success()));
    assert!(literal.exists(), "the argument reached touch verbatim");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // `cat` would wait forever on an inherited terminal or pipe; /dev/null ends it at once.
    let marker = dir.path().join("after-cat");
    let script = format!("cat; echo done > '{}'", marker.display());
    let report = command_hooks(&["sh", "-c", &script])
        .after_publish()
        .await
        .unwrap();
    assert!(matches!(report.command, Some(Ok(CommandOutcome::Exited(s))) if s.success()));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "done\n");
}

#[tokio::test]
async fn exit_status_and_output_are_logged() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let hooks = command_hooks(&["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]);
    let report = hooks.after_publish().await.unwrap();
    match report.command {
        Some(Ok(CommandOutcome::Exited(status))) => assert_eq!(status.code(), Some(3)),
        other => panic!("unexpected outcome {other:?}"),
    }
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("on_rotate command failed"),
        "{text}"
    );
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("DEBUG") && text.contains("to-stdout") && text.contains("to-stderr"));

    let report = command_hooks(&["true"]).after_publish().await.unwrap();
    assert!(matches!(report.command, Some(Ok(CommandOutcome::Exited(s))) if s.success()));
    assert!(logs.contains("on_rotate command succeeded"));
}

#[tokio::test]
async fn long_output_is_cut_in_the_log() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let report = command_hooks(&["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"])
        .after_publish()
        .await
        .unwrap();
    assert!(matches!(report.command, Some(Ok(CommandOutcome::Exited(s))) if s.success()));
    let text = logs.text();
    assert!(text.contains("…(cut)"), "{}", &text[..text.len().min(500)]);
    assert!(
        text.len() < 10_000,
        "the log keeps only the start of the output"
    );
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_and_reaped() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let hooks = command_hooks(&["sleep", "30"]).with_timeout(Duration::from_millis(300));
    let report = hooks.after_publish().await.unwrap();
    let pid = match report.command {
        Some(Ok(CommandOutcome::Killed { pid: Some(pid) })) => pid,
        other => panic!("unexpected outcome {other:?}"),
    };
    // Reaped, not a zombie: the pid no longer exists.
    assert_eq!(
        kill(Pid::from_raw(pid as i32), None),
        Err(nix::errno::Errno::ESRCH)
    );
    assert!(logs.contains("on_rotate command did not finish in time; killed"));
}

/// True when `pid` is gone or a zombie waiting for init: either way no longer running.
fn not_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[tokio::test]
async fn a_timeout_also_kills_what_the_command_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("background.pid");
    let script = format!("sleep 30 & echo $! > '{}'; wait", pid_file.display());
    let hooks = command_hooks(&["sh", "-c", &script]).with_timeout(Duration::from_millis(500));
    let report = hooks.after_publish().await.unwrap();
    assert!(matches!(
        report.command,
        Some(Ok(CommandOutcome::Killed { .. }))
    ));
    let background: i32 = wait_for_file(&pid_file).await.trim().parse().unwrap();
    let mut gone = false;
    for _ in 0..100 {
        gone = not_running(background);
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gone,
        "the background sleep {background} survived the timeout"
    );
}

#[tokio::test]
async fn a_missing_program_is_reported() {
    let report = command_hooks(&["/nonexistent/reload-app"])
        .after_publish()
        .await
        .unwrap();
    assert!(matches!(
        report.command,
        Some(Err(HookError::Spawn { ref program, .. })) if program == "/nonexistent/reload-app"
    ));
}

#[tokio::test]
async fn runs_for_one_sink_do_not_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs");
    let script = format!(
        "echo start >> '{0}'; sleep 0.2; echo end >> '{0}'",
        log.display()
    );
    let hooks = command_hooks(&["sh", "-c", &script]);
    let first = hooks.after_publish();
    let second = hooks.after_publish();
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "start\nend\nstart\nend\n"
    );
}

/// A shell that writes its pid, then waits for SIGHUP and records it.
struct Trapper {
    child: std::process::Child,
    pid_file: PathBuf,
    marker: PathBuf,
}

impl Trapper {
    async fn start(dir: &Path) -> Trapper {
        let pid_file = dir.join("app.pid");
        let marker = dir.join("got-hup");
        let script = format!(
            "trap 'echo hup > \"{}\"; exit 0' HUP; echo $$ > \"{}\"; while :; do sleep 0.05; done",
            marker.display(),
            pid_file.display()
        );
        // A shell cannot trap a signal ignored when it started (POSIX), as SIGHUP is under
        // `nohup`: the signal's default is restored for it first.
        let child = std::process::Command::new("env")
            .args(["--default-signal=HUP", "sh", "-c", &script])
            .spawn()
            .unwrap();
        wait_for_file(&pid_file).await;
        Trapper {
            child,
            pid_file,
            marker,
        }
    }
}

impl Drop for Trapper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_signal_reaches_the_process_named_in_the_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = Trapper::start(dir.path()).await;
    let logs = LogCapture::default();
    let _guard = logs.install();
    let report = signal_hooks(&app.pid_file, "HUP")
        .after_publish()
        .await
        .unwrap();
    assert_eq!(report.signal.unwrap().unwrap(), app.child.id() as i32);
    assert_eq!(wait_for_file(&app.marker).await, "hup\n");
    let status = app.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "exited from the trap, not killed");
    assert!(status.signal().is_none());
    assert!(logs.contains("signalled the process from the pid file after rotation"));
}

#[tokio::test]
async fn bad_pid_files_are_refused_and_nothing_is_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let logs = LogCapture::default();
    let _guard = logs.install();
    let pid_file = dir.path().join("app.pid");
    for content in ["garbage", "1", "0", "-1", "12 34", ""] {
        std::fs::write(&pid_file, content).unwrap();
        let report = signal_hooks(&pid_file, "TERM")
            .after_publish()
            .await
            .unwrap();
        assert!(
            matches!(
                report.signal,
                Some(Err(HookError::Signal(PidFileError::BadPid { .. })))
            ),
            "{content:?}: {:?}",
            report.signal
        );
    }
    let missing = dir.path().join("missing.pid");
    let report = signal_hooks(&missing, "HUP").after_publish().await.unwrap();
    assert!(matches!(
        report.signal,
        Some(Err(HookError::Signal(PidFileError::Missing { .. })))
    ));

    // A pid that was real but has exited (and been reaped) gets ESRCH.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    std::fs::write(&pid_file, format!("{}\n", gone.id())).unwrap();
    let report = signal_hooks(&pid_file, "HUP")
        .after_publish()
        .await
        .unwrap();
    assert!(matches!(
        report.signal,
        Some(Err(HookError::Signal(PidFileError::Signal {
            source: nix::errno::Errno::ESRCH,
            ..
        })))
    ));
    assert!(logs.contains("rotation signal not sent"));
}

/// End to end: a `[[file]]` sink's `on_rotate` runs once per new credential set the daemon
/// writes, and not again for a rewrite of the same set.
#[tokio::test]
async fn a_sink_runs_its_hook_once_per_rotation() {
    let clock = imds_credd::clock::ManualClock::starting_now();
    let mut options = common::HarnessOptions::new(&clock);
    let folder = tempfile::tempdir().unwrap();
    let marker = folder.path().join("rotations");
    let credentials = folder.path().join("credentials");
    let (file, hook_marker) = (credentials.clone(), marker.clone());
    options.configure = Box::new(move |config| {
        let mut sink = common::sink_config::file_sink(&file, "instance", 0o600);
        sink.sink.on_rotate = Some(argv(&[
            "sh",
            "-c",
            "echo rotated >> \"$0\"",
            hook_marker.to_str().unwrap(),
        ]));
        config.files.push(sink)
    });
    let h = common::Harness::start_with(clock, options).await;
    wait_for_lines(&marker, 1).await;
    // A rewrite of the same set (the file deleted under us, repaired on the next check)
    // does not fire the hook.
    std::fs::remove_file(&credentials).unwrap();
    h.advance_and_settle(Duration::from_secs(61)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(credentials.exists(), "the sink repaired its file");
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    h.sim.rotate_now();
    h.advance_and_settle(Duration::from_secs(3600)).await;
    wait_for_lines(&marker, 2).await;
    h.finish().await;
}

async fn wait_for_lines(path: &Path, lines: usize) {
    for _ in 0..200 {
        let count = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if count >= lines {
            assert_eq!(count, lines, "hook ran too often");
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} never reached {lines} lines", path.display());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_on_rotate_child_holds_no_capability() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caps");
    let report = command_hooks(&[
        "sh",
        "-c",
        "cat /proc/self/status > \"$0\"",
        out.to_str().unwrap(),
    ])
    .after_publish()
    .await
    .unwrap();
    assert!(matches!(report.command, Some(Ok(CommandOutcome::Exited(s))) if s.success()));
    let sets = capability_sets(&std::fs::read_to_string(&out).unwrap());
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(sets.get(set), Some(&0), "{set} of the hook: {sets:?}");
    }
    // This test's own process: root holds CAP_SETPCAP (bit 8), so the hook's bounding set
    // is emptied too; without it the bounding set is left as it was.
    let ours = capability_sets(&std::fs::read_to_string("/proc/self/status").unwrap());
    if ours["CapEff"] & (1 << 8) != 0 {
        assert_eq!(sets["CapBnd"], 0, "{sets:?}");
    } else {
        assert_eq!(sets["CapBnd"], ours["CapBnd"], "{sets:?}");
    }
}

/// Runs the signal hook on `pid_file` (owner setting `owner`) and returns its error.
async fn refusal(pid_file: &Path, owner: Option<&str>) -> PidFileError {
    let hooks = signal_hooks(pid_file, "HUP").owned_by(owner.map(str::to_string));
    let started = std::time::Instant::now();
    let report = hooks.after_publish().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal took {:?}",
        started.elapsed()
    );
    match report.signal {
        Some(Err(HookError::Signal(error))) => error,
        other => panic!("{}: not refused: {other:?}", pid_file.display()),
    }
}

#[tokio::test]
async fn pid_files_that_others_could_aim_are_refused_and_nothing_is_signalled() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let app = Trapper::start(dir.path()).await;
    let pid = app.child.id().to_string();
    let write_pid_file = |name: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, &pid).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };

    let writable = write_pid_file("writable.pid", 0o666);
    let error = refusal(&writable, None).await;
    assert!(
        matches!(error, PidFileError::Writable { mode: 0o666, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("writable by group or others"),
        "{error}"
    );

    if common::require::root("chown pid files to the sink's owner") {
        // Owned by a user who is neither root, the daemon, nor the sink's owner.
        let foreign = write_pid_file("foreign.pid", 0o644);
        std::os::unix::fs::chown(&foreign, Some(64_250), None).unwrap();
        let error = refusal(&foreign, None).await;
        assert!(
            matches!(error, PidFileError::ForeignOwner { uid: 64_250, .. }),
            "{error}"
        );
        // Owned by the sink's owner, but naming a root process: not theirs to signal.
        let error = refusal(&foreign, Some("64250")).await;
        assert!(
            matches!(error, PidFileError::ForeignProcess { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("runs as uid 0/0/0"), "{error}");
    }

    let daemon = dir.path().join("daemon.pid");
    std::fs::write(&daemon, std::process::id().to_string()).unwrap();
    assert!(matches!(
        refusal(&daemon, None).await,
        PidFileError::Daemon { .. }
    ));

    let fifo = dir.path().join("fifo.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let error = refusal(&fifo, None).await;
    assert!(
        error_chain(&error).contains("is not a regular file"),
        "{error}"
    );

    let link = dir.path().join("link.pid");
    std::os::unix::fs::symlink(&app.pid_file, &link).unwrap();
    let error = refusal(&link, None).await;
    assert!(
        error_chain(&error).contains("is a symbolic link"),
        "{error}"
    );

    let hard = dir.path().join("hard.pid");
    std::fs::hard_link(&app.pid_file, &hard).unwrap();
    let error = refusal(&hard, None).await;
    assert!(error_chain(&error).contains("has 2 hard links"), "{error}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!app.marker.exists(), "the process was signalled");
}

fn error_chain(error: &dyn std::error::Error) -> String {
    imds_credd::error_chain::render(error)
}

/// Set in the child process of the environment test: the file its hook copies its
/// environment to.
const ENVIRONMENT_CHILD: &str = "IMDS_CREDD_TEST_HOOK_ENVIRONMENT";

/// A daemon started by systemd holds `NOTIFY_SOCKET`, `LISTEN_FDS`, `WATCHDOG_USEC`,
/// `INVOCATION_ID`, `CREDENTIALS_DIRECTORY`, perhaps AWS variables and an odd `PATH`: its
/// hook gets none of them, only the fixed `PATH` and the locale. The hook (`cp`, run
/// directly) copies its own `/proc/self/environ`. Runs in a child process that has that
/// environment, so this process's stays as it is.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_on_rotate_command_gets_only_the_documented_environment() {
    if let Some(out) = std::env::var_os(ENVIRONMENT_CHILD) {
        let report = command_hooks(&["cp", "/proc/self/environ", out.to_str().unwrap()])
            .after_publish()
            .await
            .unwrap();
        assert!(matches!(report.command, Some(Ok(CommandOutcome::Exited(s))) if s.success()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("environ");
    let inherited = [
        ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ("LISTEN_FDS", "1"),
        ("LISTEN_PID", "1"),
        ("LISTEN_FDNAMES", "api"),
        ("WATCHDOG_USEC", "30000000"),
        ("WATCHDOG_PID", "1"),
        ("INVOCATION_ID", "0123456789abcdef0123456789abcdef"),
        (
            "CREDENTIALS_DIRECTORY",
            "/run/credentials/imds-credd.service",
        ),
        ("AWS_ACCESS_KEY_ID", "AKIAINHERITEDEXAMPLE"),
        ("AWS_PROFILE", "inherited"),
        ("IMDS_CREDD_SOCKET", "/tmp/other.sock"),
        ("HOME", "/root"),
        ("PATH", "/tmp/planted:/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
    ];
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_on_rotate_command_gets_only_the_documented_environment",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .envs(inherited)
        .env(ENVIRONMENT_CHILD, &out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let environ = std::fs::read(&out).unwrap();
    let got: std::collections::BTreeMap<String, String> = String::from_utf8(environ)
        .unwrap()
        .split_terminator('\0')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect();
    let expected: std::collections::BTreeMap<String, String> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    assert_eq!(got, expected);
}
